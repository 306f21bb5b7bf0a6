"""MPTRACK_LOG: the binary event log, replayed by gdb_mptrack.report, against truth."""

from __future__ import annotations

import json
import signal

import struct

import pytest

from agent_support import wait_file
from gdb_mptrack import report
from gdb_mptrack.report import read_file, read_log


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


def test_log_replay_orders_cross_lcore_handoffs_by_generation(agent, agent_programs, tmp_path):
    """An object put on one lcore and got on the other a microsecond later, 50 x 64
    times both ways: the put and the get sit in different threads' rings, in one
    drain of the writer and one tick of the 1 ms clock, so the file holds many
    gets before the put they follow.  Replayed by generation, every held object
    is in use (a replay in file or timestamp order lost half of them, every run)."""
    log = tmp_path / "order.log"
    run = agent.run(agent_programs["log_order"], "handoff", MPTRACK_LOG=log)
    assert run.returncode == 0, str(run)
    held = {int(a, 16) for a in run.truth["held"]}
    assert len(held) == 64 and run.truth["in_use"] == 64
    trace = read_file(str(log))
    assert trace.lost == 0
    assert {b.addr for b in trace.blocks if b.pool == "order_pool"} == held
    # the interleaving really happened: some get is in the file before the put it follows
    assert _file_order_inversions(log.read_bytes()) > 0


def _file_order_inversions(data: bytes) -> int:
    """Events whose object already had a later generation earlier in the file."""
    header_size = struct.unpack_from("<I", data, 12)[0]
    newest: dict[int, tuple] = {}
    inversions = 0
    off = header_size
    while off + 32 <= len(data):
        _tsc, addr, _stack, aux, _pool, _lcore, kind, _lo, _hi = report.EVENT.unpack_from(data, off)
        off += 32
        if kind == report.EV_STACK:
            off += 32 * ((aux * 8 + 31) // 32)
        elif kind == report.EV_MAPS:
            off += 32 * ((aux + 31) // 32)
        elif kind == report.EV_POOL:
            off += 32
        elif kind in (report.EV_ALLOC, report.EV_FREE):
            key = (aux, kind == report.EV_FREE)
            if addr in newest and newest[addr] > key:
                inversions += 1
            else:
                newest[addr] = key
    return inversions


# --- synthetic logs: the replay's rules, event by event


def _log(events, version=2) -> bytes:
    out = bytearray(report.HEADER.pack(report.LOG_MAGIC, version, report.HEADER.size, 32, 1,
                                       1000000, 0, 42, 0))
    for ev in events:
        if isinstance(ev, bytes):
            out += ev.ljust(32, b"\0")
            continue
        kind, pool, addr, aux, seq = ev
        out += report.EVENT.pack(7, addr, 0, aux, pool, 0, kind, seq & 0xFF, seq >> 8)
    return bytes(out)


def _pool(slot, epoch, name):
    return [(report.EV_POOL, slot, 0x1000, 16, epoch), name.encode()]


A, F, MA, MF = report.EV_ALLOC, report.EV_FREE, report.EV_MALLOC, report.EV_MFREE
M = report.MALLOC_POOL


def _in_use(data):
    return sorted((b.pool, b.addr) for b in read_log(data).blocks)


def test_replay_a_put_after_the_get_that_follows_it():
    # lcore 1's put of generation 1 reaches the file after lcore 0's get of generation 2
    events = _pool(0, 1, "p") + [(A, 0, 0x10, 1, 1), (A, 0, 0x10, 2, 1), (F, 0, 0x10, 1, 1),
                                 (A, 0, 0x20, 1, 1), (F, 0, 0x20, 1, 1)]
    assert _in_use(_log(events)) == [("p", 0x10)]
    # the same file as version 1 (no generations) is replayed in file order: both freed
    assert _in_use(_log(events, version=1)) == []


def test_replay_generations_wrap_as_serial_numbers():
    events = _pool(0, 1, "p") + [(A, 0, 0x10, 0, 1), (F, 0, 0x10, 0xFFFFFFFF, 1),
                                 (F, 0, 0x30, 0, 1), (A, 0, 0x30, 0xFFFFFFFF, 1)]
    assert _in_use(_log(events)) == [("p", 0x10)]


def test_replay_keys_objects_by_pool_epoch():
    """Slot 0 reused by a second pool at the same addresses: the first pool's late
    events (and its POOL_GONE) do not touch the second pool's objects."""
    events = (_pool(0, 1, "old") + [(A, 0, 0x10, 5, 1)] + _pool(0, 2, "new")
              + [(A, 0, 0x10, 1, 2), (A, 0, 0x20, 9, 1), (report.EV_POOL_GONE, 0, 0, 0, 1)])
    assert _in_use(_log(events)) == [("new", 0x10)]


def test_replay_rte_malloc_blocks_by_generation():
    events = [(MA, M, 0x10, 64, 1), (MA, M, 0x10, 32, 2), (MF, M, 0x10, 0, 1),
              (MF, M, 0x20, 0, 3), (MA, M, 0x20, 8, 3)]
    blocks = read_log(_log(events)).blocks
    assert [(b.pool, b.addr, b.size) for b in blocks] == [("rte_malloc", 0x10, 32)]


def test_replay_rejects_unknown_versions():
    with pytest.raises(report.ReportError, match="log version 3"):
        read_log(_log([], version=3))
