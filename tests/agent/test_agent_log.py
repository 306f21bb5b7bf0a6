"""MPTRACK_LOG: the binary event log, replayed by gdb_mptrack.report, against truth."""

from __future__ import annotations

import json
import signal

from agent_support import wait_file
from gdb_mptrack.report import read_file


def test_log_replay_in_use_equals_truth(agent, agent_programs, tmp_path):
    log = tmp_path / "events.log"
    proc, truth_path = agent.start(agent_programs["agent_prog"], "held", MPTRACK_LOG=log)
    wait_file(truth_path, proc)
    truth = json.loads(truth_path.read_text())
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    trace = read_file(str(log))
    assert trace.pid == truth["pid"] and trace.lost == 0 and trace.tsc_hz > 0
    in_use = {}
    for b in trace.blocks:
        in_use.setdefault(b.pool, set()).add(b.addr)
    assert in_use == {"agent_pool": {int(a, 16) for a in truth["held"]},
                      "agent_mbufs": {int(a, 16) for a in truth["held_mbufs"]}}
    # two lcores churned 2 x 20000 bulk gets and puts: all of them are in the log
    assert trace.events > 4 * 20000
    assert {b.alloc_lcore for b in trace.blocks} == {0, 1}
    assert trace.maps and str(agent_programs["agent_prog"]) in trace.maps


def test_log_records_faults_and_survives_abort(agent, agent_programs, tmp_path):
    log = tmp_path / "events-%p.log"
    run = agent.run(agent_programs["agent_prog"], "double-free", MPTRACK_LOG=log)
    assert run.returncode == -signal.SIGABRT, str(run)
    path = tmp_path / f"events-{run.truth['pid']}.log"
    trace = read_file(str(path))
    assert [(k, p, a) for k, p, a, _ in trace.faults] == [
        ("duplicate free", "agent_pool", int(run.truth["obj"], 16))]
    assert len(trace.faults[0][3]) >= 2


def test_fork_child_gets_its_own_log(agent, agent_programs, tmp_path):
    """A forked child reports its own fault and writes LOG.PID; DPDK's memory is
    shared with the child here (memfd), and so are the agent's tables: the
    parent's later free of the same object is a duplicate free too."""
    log = tmp_path / "events.log"
    run = agent.run(agent_programs["agent_prog"], "fork", MPTRACK_LOG=log, MPTRACK_ON_ERROR="log")
    assert run.returncode == 0 and run.truth["child_status"] == 0, str(run)
    assert len(run.faults()) == 2, str(run)
    child_log = tmp_path / f"events.log.{run.truth['child']}"
    child = read_file(str(child_log))
    assert child.pid == run.truth["child"]
    assert [f[0] for f in child.faults] == ["duplicate free"]
    parent = read_file(str(log))
    assert parent.pid == run.truth["pid"]
    assert [f[0] for f in parent.faults] == ["duplicate free"]


def test_unwritable_log_says_so_once_and_goes_on(agent, agent_programs, tmp_path):
    run = agent.run(agent_programs["agent_prog"], "double-free", MPTRACK_ON_ERROR="log",
                    MPTRACK_LOG=tmp_path / "missing" / "x.log")
    assert run.returncode == 0 and "done" in run.stdout, str(run)
    assert run.stderr.count("cannot write the event log") == 1, str(run)
    assert len(run.faults()) == 1
