"""Shared test harness: build the C test programs, run them, run gdb on them.

Nothing here imports gdb_mptrack: the unit tests and the integration tests
share only these fixtures.

* ``programs`` (session): each ``tests/programs/NAME.c`` compiled once, on first
  use, against the installed DPDK, as ``programs["pools"].debug`` (``-g``) and ``.stripped``
  (no ``-g``, ``strip --strip-debug``; the dynamic symbols stay, so
  ``break mptrack_checkpoint`` still works).
* ``lab`` (function) / ``session_lab`` (session): starts programs with a unique
  ``--file-prefix``, runs gdb in batch mode with ``gdbinit.py`` loaded, and on
  teardown kills every process it started and removes ``/var/run/dpdk/PREFIX``.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
GDBINIT = REPO / "gdbinit.py"
PROGRAM_SOURCES = TESTS / "programs"
DPDK_RUNTIME = Path("/var/run/dpdk")

# EAL arguments that work on a machine without hugepages or NICs.
EAL_MEMORY_MB = "64"
GDB_TIMEOUT = 120
TRUTH_TIMEOUT = 30

_MARK = "@@mptrack-test:"


# --------------------------------------------------------------------------- build


@dataclass(frozen=True)
class Program:
    name: str
    debug: Path
    stripped: Path

    def build(self, kind: str) -> Path:
        return {"debug": self.debug, "stripped": self.stripped}[kind]


def _dpdk_flags(what: str) -> list[str]:
    try:
        out = subprocess.run(["pkg-config", what, "libdpdk"], check=True,
                             capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.fail(f"pkg-config {what} libdpdk failed ({exc}); install libdpdk-dev and pkg-config")
    return out.split()


def _compile(source: Path, out: Path, debug: bool) -> None:
    cmd = ["cc", "-O1", "-Wall", "-rdynamic"] + (["-g"] if debug else [])
    cmd += _dpdk_flags("--cflags") + [str(source), "-o", str(out)] + _dpdk_flags("--libs")
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        pytest.fail(f"building {source.name} failed:\n{' '.join(cmd)}\n{res.stderr}")
    if not debug:
        res = subprocess.run(["strip", "--strip-debug", str(out)], capture_output=True, text=True)
        if res.returncode != 0:
            pytest.fail(f"strip {out} failed: {res.stderr}")


class Programs:
    """tests/programs/NAME.c, each built on first use, debug and stripped."""

    def __init__(self, outdir: Path):
        self.outdir = outdir
        self.built: dict[str, Program] = {}

    def __getitem__(self, name: str) -> Program:
        if name not in self.built:
            source = PROGRAM_SOURCES / f"{name}.c"
            if not source.exists():
                raise KeyError(f"no test program {source}")
            debug, stripped = self.outdir / name, self.outdir / f"{name}-stripped"
            _compile(source, debug, debug=True)
            _compile(source, stripped, debug=False)
            self.built[name] = Program(name, debug, stripped)
        return self.built[name]


@pytest.fixture(scope="session")
def programs(tmp_path_factory) -> Programs:
    """``programs["pools"].debug`` / ``.stripped``: built once per session."""
    return Programs(tmp_path_factory.mktemp("programs"))


# --------------------------------------------------------------------------- gdb


@dataclass
class GdbResult:
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str

    def section(self, label: str) -> str:
        """stdout printed between the marker for ``label`` and the next marker."""
        start = f"{_MARK}{label}@@\n"
        i = self.stdout.find(start)
        if i < 0:
            raise AssertionError(f"gdb never reached step {label!r}\n{self}")
        rest = self.stdout[i + len(start):]
        j = rest.find(_MARK)
        return rest if j < 0 else rest[:j]

    def error_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.startswith("mptrack: ")]

    def __str__(self) -> str:
        return (f"$ {' '.join(self.argv)}\n--- exit {self.returncode}; stdout:\n{self.stdout}"
                f"\n--- stderr:\n{self.stderr}")


def gdb_env() -> dict[str, str]:
    env = dict(os.environ)
    env["TERM"] = "dumb"
    env.pop("DEBUGINFOD_URLS", None)
    env.pop("INSIDE_EMACS", None)
    env["COLUMNS"] = "200"
    return env


def gdb_argv(steps=(), *, files=(), pid=None, args=None) -> list[str]:
    """gdb batch command line: gdbinit.py loaded, colour off, then ``steps``.

    A step is a command string, or ``(label, command)``: the label is echoed
    to stdout before the command so ``GdbResult.section(label)`` finds its
    output.  ``args`` (a list) becomes ``--args PROGRAM...`` and must hold the
    program; ``files`` are positional (program, core).
    """
    argv = ["gdb", "-nx", "-batch", "-iex", "set debuginfod enabled off",
            "-ex", "set style enabled off", "-ex", "set width 0", "-ex", "set height 0",
            "-x", str(GDBINIT)]
    argv += [str(f) for f in files]
    if pid is not None:
        argv += ["-p", str(pid)]
    for step in steps:
        if isinstance(step, tuple):
            label, cmd = step
            argv += ["-ex", f"echo {_MARK}{label}@@\\n", "-ex", cmd]
        else:
            argv += ["-ex", step]
    if args is not None:
        argv += ["--args"] + [str(a) for a in args]
    return argv


def run_gdb(steps=(), *, files=(), pid=None, args=None, cwd=None,
            timeout=GDB_TIMEOUT) -> GdbResult:
    argv = gdb_argv(steps, files=files, pid=pid, args=args)
    proc = subprocess.Popen(argv, cwd=cwd, env=gdb_env(), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc.pid)
        out, err = proc.communicate()
        raise AssertionError(f"gdb timed out after {timeout}s\n"
                             f"{GdbResult(argv, -1, out, err)}") from None
    return GdbResult(argv, proc.returncode, out, err)


# --------------------------------------------------------------------------- processes


def _kill_group(pid: int) -> None:
    """SIGKILL the session/process group led by ``pid`` (one we started)."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _core_unlimited() -> None:
    resource.setrlimit(resource.RLIMIT_CORE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))


@dataclass
class Started:
    """A test program running in the background."""
    popen: subprocess.Popen
    prefix: str
    truth_path: Path
    log_path: Path
    cwd: Path
    truth: dict | None = None

    @property
    def pid(self) -> int:
        return self.popen.pid

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def wait_truth(self, timeout: float = TRUTH_TIMEOUT) -> dict:
        """Wait for the truth file (written whole by rename) and return it."""
        deadline = time.monotonic() + timeout
        while not self.truth_path.exists():
            if self.popen.poll() is not None and not self.truth_path.exists():
                raise AssertionError(f"program exited {self.popen.returncode} before writing "
                                     f"its truth file:\n{self.log()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no truth file after {timeout}s:\n{self.log()}")
            time.sleep(0.05)
        self.truth = json.loads(self.truth_path.read_text())
        assert self.truth["pid"] == self.pid, "truth file is from another process"
        return self.truth


_counter = itertools.count()


class Lab:
    """Starts programs and gdb for tests, and cleans up after them."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.prefixes: list[str] = []
        self.started: list[subprocess.Popen] = []
        self.pids: set[int] = set()

    def prefix(self) -> str:
        """A --file-prefix no other test (or test run) uses."""
        p = f"mpt{os.getpid()}x{next(_counter)}"
        self.prefixes.append(p)
        return p

    def subdir(self, name: str) -> Path:
        d = self.workdir / f"{name}-{next(_counter)}"
        d.mkdir(parents=True)
        return d

    def eal_args(self, prefix: str, truth: Path, mode: str | None = None) -> list[str]:
        args = ["--no-huge", "-m", EAL_MEMORY_MB, "--no-pci", "-l", "0,1",
                "--file-prefix", prefix, "--", "--truth", str(truth)]
        if mode:
            args.append(f"--{mode}")
        return args

    def start(self, binary: Path, mode: str | None = None, *, core: bool = False,
              cwd: Path | None = None) -> Started:
        """Start ``binary`` (a tests/programs one) in the background."""
        cwd = cwd or self.subdir(binary.name)
        prefix = self.prefix()
        truth = cwd / "truth.json"
        log = cwd / "program.log"
        with open(log, "wb") as logf:
            popen = subprocess.Popen([str(binary)] + self.eal_args(prefix, truth, mode),
                                     cwd=cwd, stdin=subprocess.DEVNULL, stdout=logf,
                                     stderr=subprocess.STDOUT, start_new_session=True,
                                     preexec_fn=_core_unlimited if core else None)
        self.started.append(popen)
        return Started(popen, prefix, truth, log, cwd)

    def spawn(self, argv: list, **kwargs) -> subprocess.Popen:
        """Start any other process; it is killed on teardown."""
        popen = subprocess.Popen([str(a) for a in argv], start_new_session=True, **kwargs)
        self.started.append(popen)
        return popen

    def kill_on_teardown(self, pid: int) -> None:
        """Also SIGKILL ``pid`` on teardown (e.g. a program gdb ran)."""
        self.pids.add(pid)

    def run_gdb(self, *a, **kw) -> GdbResult:
        return run_gdb(*a, **kw)

    def close(self) -> None:
        for popen in self.started:
            if popen.poll() is None:
                _kill_group(popen.pid)
            try:
                popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
            for f in (popen.stdin, popen.stdout, popen.stderr):
                if f:
                    f.close()
        for pid in self.pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        for p in self.prefixes:
            shutil.rmtree(DPDK_RUNTIME / p, ignore_errors=True)


@pytest.fixture
def lab(tmp_path):
    lab = Lab(tmp_path)
    yield lab
    lab.close()


@pytest.fixture(scope="session")
def session_lab(tmp_path_factory):
    lab = Lab(tmp_path_factory.mktemp("lab"))
    yield lab
    lab.close()


# --------------------------------------------------------------------------- checks


def _assert_clean_error(res: GdbResult, *needles: str) -> str:
    """One ``mptrack: `` line on stderr containing every needle, no traceback."""
    assert "Traceback" not in res.stderr + res.stdout, str(res)
    assert "Python Exception" not in res.stderr + res.stdout, str(res)
    lines = res.error_lines()
    assert len(lines) == 1, f"expected one 'mptrack: ' error line\n{res}"
    for needle in needles:
        assert re.search(needle, lines[0]), f"{needle!r} not in {lines[0]!r}\n{res}"
    return lines[0]


@pytest.fixture
def assert_clean_error():
    """``assert_clean_error(gdb_result, *regexes)`` -> the one ``mptrack: `` line."""
    return _assert_clean_error
