"""What the gdb-mptrack benchmarks share: running commands, building a DPDK program,
gdb's and the preload agent's environments, the machine description and the dated results
sections of docs/."""

import os
import platform
import re
import subprocess


class BenchError(Exception):
    """The benchmark could not run, or the tool gave a wrong answer."""


def run(cmd, timeout=None, **kwargs):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kwargs)
    except FileNotFoundError:
        raise BenchError("%s is not installed" % cmd[0]) from None
    except subprocess.TimeoutExpired:
        raise BenchError("%s took more than %d s" % (" ".join(map(str, cmd))[:200], timeout)) from None


def pkg_config(what):
    res = run(["pkg-config", what, "libdpdk"])
    if res.returncode != 0:
        raise BenchError("pkg-config %s libdpdk failed: %s (install libdpdk-dev)" % (what, res.stderr.strip()))
    return res.stdout.split()


def build(source, program, log):
    """Compile a DPDK C program with debug info; returns its path."""
    cmd = (["cc", "-g", "-O1", "-rdynamic", "-Wall"] + pkg_config("--cflags") + [str(source), "-o", str(program)]
           + pkg_config("--libs"))
    log("building: " + " ".join(cmd))
    res = run(cmd)
    if res.returncode != 0:
        raise BenchError("building %s failed:\n%s" % (source, res.stderr))
    return program


def gdb_env():
    env = dict(os.environ)
    env["TERM"] = "dumb"
    env.pop("DEBUGINFOD_URLS", None)
    return env


def agent_env(lib, preload, extra):
    """This environment without any MPTRACK_* setting or LD_PRELOAD, then the agent `lib`
    preloaded if `preload`, then `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MPTRACK_")}
    env.pop("LD_PRELOAD", None)
    if preload:
        env["LD_PRELOAD"] = str(lib)
    env.update(extra)
    return env


def update_docs(path, header, mark, start_format, end, key, section):
    """Put `section` (one run) under `mark` in the markdown file `path`, replacing the section with the same key."""
    text = path.read_text() if path.exists() else header
    if mark not in text:
        text = text.rstrip("\n") + "\n\n" + mark + "\n"
    start = start_format % key
    block = start + "\n" + section + end + "\n"
    i = text.find(start)
    if i >= 0:
        j = text.find(end, i)
        if j < 0:
            raise BenchError("%s: section %r has no end marker" % (path, key))
        text = text[:i] + block + text[j + len(end):].lstrip("\n")
    else:
        i = text.find(mark) + len(mark) + 1
        text = text[:i] + "\n" + block + text[i:]
    text = re.sub(r"\n{3,}", "\n\n", text)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _out(argv):
    return subprocess.run(argv, capture_output=True, text=True).stdout.strip()


def machine(repo):
    """Date, CPU, memory, kernel, gdb, Python, DPDK and the checkout's commit (noting local edits)."""
    cpu = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    ram_kb = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                ram_kb = int(line.split()[1])
    commit = _out(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"]) or "unknown"
    dirty = _out(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no", "--",
                  "gdb_mptrack", "gdbinit.py"])
    return {
        "date": _out(["date", "-u", "+%Y-%m-%d %H:%M UTC"]),
        "day": _out(["date", "-u", "+%Y-%m-%d"]),
        "nproc": _out(["nproc"]),
        "cpu": cpu,
        "ram": "%.1f GiB" % (ram_kb / (1 << 20)),
        "kernel": platform.release(),
        "gdb": (_out(["gdb", "--version"]).splitlines() or ["unknown"])[0].strip(),
        "python": platform.python_version(),
        "dpdk": _out(["pkg-config", "--modversion", "libdpdk"]),
        "commit": commit + (" with uncommitted changes to gdb_mptrack/" if dirty else ""),
    }
