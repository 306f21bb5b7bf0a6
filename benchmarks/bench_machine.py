"""The machine a benchmark ran on, for the dated sections of docs/benchmarks*.md."""

import platform
import subprocess


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
