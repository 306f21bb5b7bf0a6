"""`mptrack agent attach|status|detach` on a running program that never had the agent.

attach_prog (tests/agent/programs/attach_prog.c) churns four pools from two
lcores in rounds, keeps known objects and writes its truth after each round.
One gdb session attaches to it with `gdb -p`, loads the agent with dlopen and
attaches its pools, lets it run a round of traffic, stops at the round's end,
lets it commit a duplicate free (the agent raises SIGTRAP: gdb must stop with
the report and select the faulting function), then detaches.  The program
then runs a round on its own: its ops table must hold the original pointers
and its caches their sizes again.  A second session attaches again to the
same process (the library is already loaded) and leaves gdb without a
detach: the exit hook must give the pools back.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import subprocess
import time
from pathlib import Path

import pytest

from agent_support import EAL
from gdb_mptrack import agent_attach

POOLS = ["att_ring", "att_mbufs", "att_stack"]
FAULT = re.compile(r"^mptrack: duplicate free of object (0x[0-9a-f]+) in pool 'att_victim'", re.M)

# gdb step: write the agent's in-use objects per pool (from its tables) to a JSON file
INUSE = ('python import json; from gdb_mptrack.agent_view import agent_tables as _at; _t = _at(); '
         'json.dump({p.name: ["0x%x" % o.addr for o in _t.objects(p, state="in-use")] '
         'for p in _t.pools()}, open("{path}", "w"))')
# gdb step: run a command, print its error instead of stopping the script
TRY = "python exec(\"try:\\n gdb.execute('{cmd}')\\nexcept gdb.error as e:\\n print('ERROR:', e)\")"


@pytest.fixture(scope="session")
def attach_lib(tmp_path_factory) -> Path:
    return agent_attach.build(tmp_path_factory.mktemp("agent-attach"))


class Prog:
    def __init__(self, lab, binary: Path, workdir: Path):
        self.dir = workdir
        self.truth_path = workdir / "truth.json"
        self.log_path = workdir / "prog.log"
        with open(self.log_path, "w") as log:
            self.proc = lab.spawn([binary] + EAL + ["--file-prefix", lab.prefix(), "--",
                                                    self.truth_path, "rounds"],
                                  cwd=workdir, stdin=subprocess.DEVNULL, stdout=log,
                                  stderr=subprocess.STDOUT)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def truth(self, round_: int, timeout: float = 30) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            if self.truth_path.exists():
                data = json.loads(self.truth_path.read_text())
                if data["round"] >= round_:
                    assert data["round"] == round_, data["round"]
                    return data
            assert self.proc.poll() is None, f"attach_prog exited {self.proc.returncode}:\n{self.log()}"
            assert time.monotonic() < deadline, f"no truth for round {round_}:\n{self.log()}"
            time.sleep(0.05)


def held(truth: dict) -> dict[str, set[int]]:
    return {name: {int(a, 16) for a in p["held"]} for name, p in truth["pools"].items()}


def load(path: Path):
    assert path.exists(), f"gdb wrote no {path.name}"
    return json.loads(path.read_text())


class Output:
    """A gdb run's output (conftest.GdbResult, through JSON): sections by step label."""

    MARK = "@@mptrack-test:"

    def __init__(self, res):
        self.stdout, self.stderr = res["stdout"], res["stderr"]

    def section(self, label: str) -> str:
        start = f"{self.MARK}{label}@@\n"
        i = self.stdout.find(start)
        assert i >= 0, f"gdb never reached step {label!r}\n{self}"
        rest = self.stdout[i + len(start):]
        j = rest.find(self.MARK)
        return rest if j < 0 else rest[:j]

    def __str__(self):
        return f"--- stdout:\n{self.stdout}\n--- stderr:\n{self.stderr}"


def shared(tmp_path_factory, name: str, make):
    """make() once per test run, its JSON result shared by the xdist workers (one waits for the other)."""
    base = tmp_path_factory.getbasetemp()
    root = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    path = root / f"{name}.json"
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not path.exists():
            path.write_text(json.dumps(make()))
    return json.loads(path.read_text())


def run_scenario(lab, program: Path, lib: Path, out: Path) -> dict:
    prog = Prog(lab, program, out)
    truths = {0: prog.truth(0)}
    steps = [("err-status", TRY.format(cmd="mptrack agent status")),
             ("err-detach", TRY.format(cmd="mptrack agent detach")),
             ("err-noargs", TRY.format(cmd="mptrack agent attach")),
             ("err-nopool", TRY.format(cmd="mptrack agent attach no_such_pool")),
             ("err-nolib", TRY.format(cmd="mptrack agent attach att_ring --library /nonexistent/lib.so")),
             ("attach", f"mptrack agent attach {' '.join(POOLS)} att_victim --library {lib}"),
             ("status0", f"mptrack agent status --json {out / 'status0.json'}"),
             ("inuse0", INUSE.replace("{path}", str(out / "inuse0.json"))),
             ("break", "break round_done"),
             ("go1", f"shell touch {out / 'go.1'}"),
             ("cont1", "continue"),
             ("copy1", f"shell cp {prog.truth_path} {out / 'truth1.json'}"),
             ("inuse1", INUSE.replace("{path}", str(out / "inuse1.json"))),
             ("status1", f"mptrack agent status --json {out / 'status1.json'}"),
             ("fault", f"shell touch {out / 'fault.2'}"),
             ("cont2", "continue"),
             ("frame", "frame"),
             ("status2", "mptrack agent status"),
             ("delete", "delete"),
             ("detach", "mptrack agent detach"),
             ("status3", "mptrack agent status"),
             ("err-detach2", TRY.format(cmd="mptrack agent detach")),
             ("end", "echo done\\n")]
    res = lab.run_gdb(steps, pid=prog.proc.pid, cwd=out, timeout=90)
    truth1 = out / "truth1.json"
    truths[1] = json.loads(truth1.read_text()) if truth1.exists() else None
    truths[2] = prog.truth(2)
    (out / "go.3").touch()
    truths[3] = prog.truth(3)
    # again, with the library already loaded; gdb leaves without a detach
    again = lab.run_gdb([("attach", "mptrack agent attach att_ring"),
                         ("status", "mptrack agent status"),
                         ("end", "echo done\\n")], pid=prog.proc.pid, cwd=out, timeout=60)
    (out / "go.4").touch()
    truths[4] = prog.truth(4)
    files = {name: json.loads((out / name).read_text()) if (out / name).exists() else None
             for name in ("status0.json", "status1.json", "inuse0.json", "inuse1.json")}
    return {"pid": prog.proc.pid, "alive": prog.proc.poll() is None, "log": prog.log(),
            "res": {"stdout": res.stdout, "stderr": res.stderr},
            "again": {"stdout": again.stdout, "stderr": again.stderr},
            "truths": {str(k): v for k, v in truths.items()}, "files": files}


@pytest.fixture(scope="module")
def attached(session_lab, agent_programs, attach_lib, tmp_path_factory):
    out = tmp_path_factory.mktemp("attach")
    data = shared(tmp_path_factory, "agent-attach-scenario",
                  lambda: run_scenario(session_lab, agent_programs["attach_prog"], attach_lib, out))
    data["truths"] = {int(k): v for k, v in data["truths"].items()}
    return data, Output(data["res"]), Output(data["again"])


def test_gdb_ran_cleanly(attached):
    _, res, again = attached
    for r in (res, again):
        assert "Traceback" not in r.stdout + r.stderr, str(r)
        assert "Python Exception" not in r.stdout + r.stderr, str(r)
        assert "done" in r.section("end"), str(r)


def test_errors_are_one_line(attached):
    _, res, _ = attached
    expected = {"err-status": r"the agent is not loaded",
                "err-detach": r"the agent is not loaded in this process",
                "err-noargs": r"name pools, or give --all",
                "err-nopool": r"no pool matches no_such_pool; pools: .*att_ring",
                "err-nolib": r"no agent library /nonexistent/lib.so",
                "err-detach2": r"the agent is not attached"}
    for label, pattern in expected.items():
        lines = [line for line in res.section(label).splitlines() if line.startswith("ERROR:")]
        assert len(lines) == 1, f"{label}: {res.section(label)!r}"
        assert re.match(r"ERROR: mptrack: " + pattern + "[^\n]*$", lines[0]), f"{label}: {lines[0]!r}"


def test_attach_loads_the_agent_and_tracks_the_pools(attached):
    data, res, _ = attached
    text = res.section("attach")
    assert f"loaded the agent into process {data['pid']}: " in text, text
    for name in POOLS:
        n_held = len(data["truths"][0]["pools"][name]["held"])
        assert re.search(rf'tracking pool "{name}": \d+ objects, \d+ free, {n_held} in use \(origin unknown\), '
                         r"per-lcore caches flushed and bypassed", text), text
    assert 'tracking pool "att_victim": 63 objects, 63 free, 0 in use' in text, text


def test_in_use_after_attach_equals_truth(attached):
    data, res, _ = attached
    inuse = data["files"]["inuse0.json"]
    assert inuse is not None, str(res)
    assert {k: {int(a, 16) for a in v} for k, v in inuse.items()} == dict(held(data["truths"][0]), att_victim=set())


def test_in_use_after_traffic_equals_truth(attached):
    data, res, _ = attached
    truth = data["truths"][1]
    inuse = data["files"]["inuse1.json"]
    assert truth is not None and truth["round"] == 1 and inuse is not None, str(res)
    assert {k: {int(a, 16) for a in v} for k, v in inuse.items()} == dict(held(truth), att_victim=set())
    # while attached: DPDK's own counts agree, the ops are patched and the caches off
    for name in POOLS:
        pool = truth["pools"][name]
        assert pool["in_use"] == len(pool["held"]), (name, pool)
        assert all(c == {"size": 0, "flushthresh": 0, "len": 0} for c in pool["lcore_cache"]), (name, pool)
    assert truth["ops_same"] is False


def test_status_while_attached(attached):
    data, res, _ = attached
    truths = data["truths"]
    for label, truth in (("status0", truths[0]), ("status1", truths[1])):
        status = data["files"][f"{label}.json"]
        assert status is not None, str(res)
        assert status["mode"] == "attached by gdb (loaded with dlopen)", status
        assert status["on_error"] == "trap" and status["bt_depth"] == 8, status
        assert status["library"].endswith(".so") and "-attach-" in status["library"], status
        pools = {p["name"]: p for p in status["pools"]}
        assert set(pools) == set(POOLS) | {"att_victim"}, status
        for name in POOLS:
            assert pools[name]["in_use"] == len(truth["pools"][name]["held"]), (label, pools[name])
            assert pools[name]["cache_size"] == truth["pools"][name]["cache_size"], pools[name]
    after = {p["name"]: p for p in data["files"]["status1.json"]["pools"]}
    for name in POOLS:
        # 2 lcores x 3000 bursts went through the agent
        assert after[name]["gets"] > 6000, after[name]
        # objects held since before the attach (round 0) are of unknown origin; the others are not
        assert after[name]["in_use_origin_unknown"] == truths[1]["pools"][name]["held_rounds"].count(0), \
            after[name]


def test_fault_stops_gdb_with_the_report(attached):
    data, res, _ = attached
    fault_obj = data["truths"][2]["fault_obj"]
    text = res.section("cont2")
    assert "SIGTRAP" in text, text
    assert FAULT.findall(text) == [fault_obj], text
    report = text[FAULT.search(text).start():]
    sections = re.split(r"^  (this free|previous free|last alloc)\b.*$", report, flags=re.M)
    parts = dict(zip(sections[1::2], sections[2::2]))
    assert re.search(r"#\d+ 0x[0-9a-f]+ give_back_again\b.* at attach_prog\.c:\d+", parts["this free"]), report
    assert re.search(r"\bgive_back\b", parts["previous free"]), report
    assert re.search(r"\btake_victim\b", parts["last alloc"]), report
    # the frame gdb selected is the program's, not the agent's
    assert re.search(r"^#\d+\s+give_back_again \(", text, re.M), text
    assert re.search(r"^#\d+\s+give_back_again \(", res.section("frame"), re.M), res.section("frame")
    # the agent's own report went to the program's stderr, and the program went on
    assert f'mptrack: duplicate free: pool "att_victim" object {fault_obj}' in data["log"], data["log"]
    status = res.section("status2")
    assert re.search(r"faults: 1\n\s+#1 duplicate free: pool att_victim", status), status


def test_detach_restores_ops_and_caches(attached):
    data, res, _ = attached
    assert "detached the agent: 4 pools given back, mempool ops restored" in res.section("detach"), \
        res.section("detach")
    status = res.section("status3")
    assert "loaded by gdb, detached (inert)" in status and "on error abort" in status, status
    assert "no pool tracked" in status, status
    truth = data["truths"][3]
    assert truth["ops_same"] is True, truth
    for name in POOLS:
        pool = truth["pools"][name]
        size = pool["cache_size"]
        assert all(c["size"] == size and c["flushthresh"] == size * 3 // 2 for c in pool["lcore_cache"]), pool
        assert pool["in_use"] == len(pool["held"]), pool
    # the caches are used again: after a round, each lcore's cache holds objects
    assert all(c["len"] > 0 for c in truth["pools"]["att_ring"]["lcore_cache"]), truth["pools"]["att_ring"]


def test_attach_again_then_gdb_exit_detaches(attached):
    data, _, again = attached
    text = again.section("attach")
    assert "loaded the agent" not in text, text  # already loaded: no second dlopen
    assert re.search(r'tracking pool "att_ring": 1023 objects, \d+ free, \d+ in use', text), text
    assert re.search(r"pool att_ring at 0x[0-9a-f]+: 1023 objects, \d+ in use", again.section("status")), again
    assert "mptrack: detached the agent before leaving the process (1 pool given back, mempool ops restored)" \
        in again.stderr, str(again)
    truth = data["truths"][4]
    assert truth["ops_same"] is True, truth
    pool = truth["pools"]["att_ring"]
    assert all(c["size"] == 32 and c["flushthresh"] == 48 for c in pool["lcore_cache"]), pool
    assert data["alive"], data["log"]
