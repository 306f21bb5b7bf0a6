"""gdb reads the preload agent's tables, live (gdb -p) and from a kernel core.

tests/programs/pools.c runs under LD_PRELOAD with the agent tracking three of
its pools; `mptrack dump` and `mptrack leaks` (no breakpoint tracking in this
gdb) then take the allocation backtraces from the agent's tables.  The truth
is the program's own: the objects it still holds, and its source file in the
backtraces.
"""

import csv
import io
import json
import os
import resource
import time

import pytest

from gdb_mptrack import agent

POOLS = ("cached", "nocache", "stack")


@pytest.fixture(scope="module")
def preload(tmp_path_factory):
    return agent.build(tmp_path_factory.mktemp("agent"))


def _unlimited_core():
    resource.setrlimit(resource.RLIMIT_CORE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))


def _run_under_agent(lab, programs, preload, mode):
    cwd = lab.subdir("agent-tables")
    truth = cwd / "truth.json"
    env = dict(os.environ, LD_PRELOAD=str(preload), MPTRACK_POOLS=",".join(POOLS))
    with open(cwd / "program.log", "wb") as log:
        popen = lab.spawn([programs["pools"].debug] + lab.eal_args(lab.prefix(), truth, mode), cwd=cwd, env=env,
                          stdin=open(os.devnull), stdout=log, stderr=log, preexec_fn=_unlimited_core)
    return popen, cwd, truth


def _wait(path, popen, what):
    deadline = time.monotonic() + 60
    while not path.exists():
        assert time.monotonic() < deadline, "no %s" % what
        if popen.poll() is not None and not path.exists():
            time.sleep(0.5)
            if not path.exists():
                raise AssertionError("program exited %s before %s:\n%s" % (
                    popen.returncode, what, (path.parent / "program.log").read_text(errors="replace")))
        time.sleep(0.05)


@pytest.mark.parametrize("where", ["live", "core"])
def test_agent_tables_read_by_gdb_match_truth(lab, programs, preload, where):
    popen, cwd, truth_path = _run_under_agent(lab, programs, preload, "wait" if where == "live" else "abort")
    _wait(truth_path, popen, "truth file")
    truth = json.loads(truth_path.read_text())
    steps = []
    for name in POOLS:
        steps.append((name, "mptrack dump %s --state in-use --csv %s" % (name, cwd / (name + ".csv"))))
        steps.append((name + "-leaks", "mptrack leaks %s --json %s" % (name, cwd / (name + ".json"))))
    if where == "live":
        res = lab.run_gdb(steps, pid=popen.pid, cwd=cwd)
    else:
        popen.wait(timeout=60)
        cores = sorted(cwd.glob("core*"))
        assert cores, "no kernel core in %s (core_pattern %s)" % (
            cwd, open("/proc/sys/kernel/core_pattern").read().strip())
        res = lab.run_gdb(steps, files=[programs["pools"].debug, cores[0]], cwd=cwd)
    assert "Traceback" not in res.stderr, str(res)
    assert not res.error_lines(), str(res)
    for name in POOLS:
        held = {int(a, 16) for a in truth["pools"][name]["held"]}
        rows = list(csv.DictReader(io.StringIO((cwd / (name + ".csv")).read_text())))
        assert {int(r["addr"], 16) for r in rows} == held, name
        assert all("pools.c" in r["alloc_backtrace"] for r in rows), (name, rows[:2])
        groups = json.loads((cwd / (name + ".json")).read_text())
        assert sum(g["count"] for g in groups) == len(held), (name, groups)
        assert all(g["pool"] == name and any("pools.c" in f for f in g["backtrace"]) for g in groups), groups
