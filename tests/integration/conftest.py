"""Scenarios for the integration tests: tests/programs/pools.c seen by mptrack.

One scenario is one way of looking at the program (``run`` under gdb, ``attach``
to a live process, a ``gcore`` core, a ``kcore`` kernel core) with one build
(``debug`` or ``stripped``).  Each scenario runs gdb once with every mptrack
command the checks need, writing JSON/CSV files into its own directory, and is
computed lazily, once per session, the first time a test asks for it.
"""

from __future__ import annotations

import csv
import json
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from written_files import csv_lines, load_written_json

POOLS = ["cached", "nocache", "stack", "rts", "hts", "mpsc", "spmc", "mbufs"]
STATES = ["in-use", "free", "all"]
MODES = ["run", "attach", "gcore", "kcore"]
BUILDS = ["debug", "stripped"]

# Addresses `mptrack object` is asked about: label -> (pool, truth key, index, offset).
PROBES = {
    "held": ("cached", "held", 0, 0),
    "inside": ("cached", "held", 0, 5),
    "freed": ("cached", "freed", 0, 0),
    "stack-inside": ("stack", "held", -1, 17),
    "mbuf": ("mbufs", "chain_head", None, 0),
    "nopool": ("cached", "addr", None, 0),
}

# A gdb Python snippet that sets $mpt_LABEL for each probe from the truth file
# (for `run`, where the addresses are only known once the program has stopped).
_PROBE_SCRIPT = """\
import json
_t = json.load(open({truth!r}))["pools"]
for _label, (_pool, _key, _i, _off) in {probes!r}.items():
    _v = _t[_pool][_key]
    if _i is not None:
        _v = _v[_i]
    gdb.set_convenience_variable("mpt_" + _label.replace("-", "_"), int(_v, 16) + _off)
"""


def probe_addrs(truth: dict) -> dict[str, int]:
    out = {}
    for label, (pool, key, i, off) in PROBES.items():
        v = truth["pools"][pool][key]
        if i is not None:
            v = v[i]
        out[label] = int(v, 16) + off
    return out


def mptrack_steps(out: Path, probes: dict[str, int] | None) -> list:
    """Every mptrack command a scenario runs; ``probes`` None: use $mpt_ vars."""
    steps = [("table", "mptrack pools"),
             ("pools", f"mptrack pools --json {out / 'pools.json'}")]
    for name in POOLS:
        for state in STATES:
            steps.append((f"dump-{name}-{state}",
                          f"mptrack dump {name} --state {state} --json {out / f'dump-{name}-{state}.json'}"))
    steps.append(("csv", f"mptrack dump cached --state all --csv {out / 'cached.csv'}"))
    steps.append(("csv-mbufs", f"mptrack dump mbufs --state all --csv {out / 'mbufs.csv'}"))
    steps.append(("limit", f"mptrack dump cached --state all --limit 5 --json {out / 'limit.json'}"))
    steps.append(("stdout-json", "mptrack dump nocache --state in-use --json -"))
    steps.append(("hex", "mptrack dump cached --state in-use --limit 1 --hex"))
    steps.append(("hex-mbufs", "mptrack dump mbufs --state in-use --limit 100 --hex"))
    for label in PROBES:
        if probes is None:
            var = "$mpt_" + label.replace("-", "_")
            steps.append((f"object-{label}", f'eval "mptrack object 0x%lx", {var}'))
        else:
            steps.append((f"object-{label}", f"mptrack object {probes[label]:#x}"))
    steps.append(("end", "echo done\\n"))
    return steps


@dataclass
class Scenario:
    mode: str
    build: str
    binary: Path
    out: Path
    truth: dict
    gdb: GdbResult
    core: Path | None = None

    @property
    def probes(self) -> dict[str, int]:
        """label -> address `mptrack object` was asked about (section object-LABEL)."""
        return probe_addrs(self.truth)

    @property
    def id(self) -> str:
        return f"{self.mode}-{self.build}"

    def _load(self, name: str):
        return load_written_json(self.out, name, self.id, self.gdb)

    def pools(self) -> dict[str, dict]:
        rows = self._load("pools.json")
        assert isinstance(rows, list), rows
        return {row["name"]: row for row in rows}

    def dump(self, pool: str, state: str) -> list[dict]:
        rows = self._load(f"dump-{pool}-{state}.json")
        assert isinstance(rows, list), rows
        return rows

    def csv_rows(self, name: str) -> list[list[str]]:
        return list(csv.reader(csv_lines(self.out, name, self.id, self.gdb)))

    def section(self, label: str) -> str:
        return self.gdb.section(label)


def _gcore(pid: int, core: Path) -> None:
    """A core of a live process with plain gdb (no mptrack involved)."""
    res = subprocess.run(["gdb", "-nx", "-batch", "-p", str(pid), "-ex", f"gcore {core}"],
                         capture_output=True, text=True, timeout=120,
                         stdin=subprocess.DEVNULL)
    if not core.exists():
        raise AssertionError(f"gcore wrote no {core}:\n{res.stdout}\n{res.stderr}")


def make_gcore(lab: Lab, binary: Path, coredump_filter: str | None = None):
    """Start ``binary --wait``, gcore it, kill it; return (truth, core)."""
    prog = lab.start(binary, "wait")
    truth = prog.wait_truth()
    if coredump_filter is not None:
        Path(f"/proc/{prog.pid}/coredump_filter").write_text(coredump_filter)
    core = prog.cwd / "gcore.core"
    _gcore(prog.pid, core)
    prog.popen.kill()
    prog.popen.wait()
    return truth, core


def make_kernel_core(lab: Lab, binary: Path):
    """Run ``binary --abort`` with cores on; return (truth, core file)."""
    pattern = Path("/proc/sys/kernel/core_pattern").read_text().strip()
    if pattern.startswith("|") or "/" in pattern:
        pytest.skip(f"kernel cores go to {pattern!r}, not a file in the cwd")
    prog = lab.start(binary, "abort", core=True)
    prog.popen.wait(timeout=60)
    truth = prog.wait_truth()
    assert prog.popen.returncode == -signal.SIGABRT, (prog.popen.returncode, prog.log())
    cores = [p for p in prog.cwd.iterdir() if p.name.startswith("core")]
    assert len(cores) == 1, f"expected one core file in {prog.cwd}, found {cores}"
    return truth, cores[0]


def build_scenario(lab: Lab, programs: dict[str, Program], mode: str, build: str) -> Scenario:
    binary = programs["pools"].build(build)
    out = lab.subdir(f"{mode}-{build}")
    core = None
    if mode == "run":
        prefix = lab.prefix()
        truth_path = out / "truth.json"
        script = out / "probes.py"
        script.write_text(_PROBE_SCRIPT.format(truth=str(truth_path), probes=PROBES))
        steps = ["break mptrack_checkpoint", "run", f"source {script}"]
        steps += mptrack_steps(out, None)
        res = lab.run_gdb(steps, args=[binary] + lab.eal_args(prefix, truth_path), cwd=out)
        if not truth_path.exists():
            raise AssertionError(f"the program wrote no truth file under gdb\n{res}")
        truth = json.loads(truth_path.read_text())
        lab.kill_on_teardown(truth["pid"])
        assert "mptrack_checkpoint" in res.stdout, f"never stopped at the checkpoint\n{res}"
    elif mode == "attach":
        prog = lab.start(binary, "wait")
        truth = prog.wait_truth()
        res = lab.run_gdb(mptrack_steps(out, probe_addrs(truth)), pid=prog.pid, cwd=out)
        assert prog.popen.poll() is None, f"the program died under gdb\n{prog.log()}"
    elif mode in ("gcore", "kcore"):
        if mode == "gcore":
            truth, core = make_gcore(lab, binary)
        else:
            truth, core = make_kernel_core(lab, binary)
        res = lab.run_gdb(mptrack_steps(out, probe_addrs(truth)), files=[binary, core], cwd=out)
    else:
        raise ValueError(mode)
    return Scenario(mode, build, binary, out, truth, res, core)


@pytest.fixture(scope="session")
def scenarios(programs, session_lab):
    """Lazily built scenarios: ``scenarios(mode, build)``."""
    cache: dict[tuple[str, str], Scenario] = {}

    def get(mode: str, build: str) -> Scenario:
        if (mode, build) not in cache:
            cache[(mode, build)] = build_scenario(session_lab, programs, mode, build)
        return cache[(mode, build)]

    return get


@pytest.fixture(scope="session", params=[(m, b) for m in MODES for b in BUILDS],
                ids=lambda p: f"{p[0]}-{p[1]}")
def scenario(request, scenarios) -> Scenario:
    return scenarios(*request.param)


@pytest.fixture(scope="session")
def debug_gcore(scenarios):
    """(truth, core) of the gcore of the debug build, for error tests to reuse."""
    sc = scenarios("gcore", "debug")
    return sc.truth, sc.core


@pytest.fixture(scope="session")
def debug_kcore(scenarios):
    """(truth, core) of the kernel core of the debug build."""
    sc = scenarios("kcore", "debug")
    return sc.truth, sc.core


@pytest.fixture
def gcore_of(lab):
    """``gcore_of(binary, coredump_filter=None)`` -> (truth, core) of a fresh process."""
    def make(binary: Path, coredump_filter: str | None = None):
        return make_gcore(lab, binary, coredump_filter)
    return make
