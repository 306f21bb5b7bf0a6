"""The SIGRTMIN dump (MPTRACK_DUMP) against the program's own truth.

agent_prog's held mode churns two pools from lcores 0 and 1 at once, keeps
some objects and writes what it holds; the in-use rows of the dump must be
exactly those objects, with the backtraces of the sites that took them.
"""

from __future__ import annotations

import csv
import signal
import time
from pathlib import Path

import pytest

from agent_support import wait_file

COLUMNS = ["addr", "state", "alloc_backtrace", "free_backtrace", "pool", "alloc_lcore",
           "free_lcore", "size"]


def read_dump(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return rows


def dump_now(proc, path: Path) -> list[dict]:
    proc.send_signal(signal.SIGRTMIN)
    wait_file(path, proc)
    return read_dump(path)


def symbol_of(addr: int, maps: Path, program: Path) -> str:
    """The function of the program's binary that holds addr (via nm)."""
    import subprocess
    base = None
    for line in maps.read_text().splitlines():
        fields = line.split()
        lo, hi = (int(x, 16) for x in fields[0].split("-"))
        if len(fields) >= 6 and fields[5] == str(program) and fields[2] == "00000000":
            base = lo if base is None else min(base, lo)
    assert base is not None, f"{program} not in maps"
    off = addr - 1 - base
    best = None
    for line in subprocess.run(["nm", "--defined-only", str(program)], capture_output=True,
                               text=True, check=True).stdout.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] in "tT" and int(parts[0], 16) <= off:
            if best is None or int(parts[0], 16) > best[0]:
                best = (int(parts[0], 16), parts[2])
    return best[1] if best else "?"


@pytest.mark.parametrize("depth", ["8", "1", "0"])   # depth 1 and 0: most events take the quick path
def test_dump_in_use_equals_truth(agent, agent_programs, tmp_path, depth):
    dump = tmp_path / "dump.csv"
    proc, truth_path = agent.start(agent_programs["agent_prog"], "held", MPTRACK_DUMP=dump,
                                   MPTRACK_BT_DEPTH=depth)
    wait_file(truth_path, proc)
    import json
    truth = json.loads(truth_path.read_text())
    rows = dump_now(proc, dump)
    assert list(rows[0].keys()) == COLUMNS
    in_use = {}
    for r in rows:
        if r["state"] == "in-use":
            in_use.setdefault(r["pool"], set()).add(int(r["addr"], 16))
    assert in_use.get("agent_pool") == {int(a, 16) for a in truth["held"]}
    assert in_use.get("agent_mbufs") == {int(a, 16) for a in truth["held_mbufs"]}
    assert len(in_use["agent_pool"]) == truth["in_use"]["agent_pool"]
    assert len(in_use["agent_mbufs"]) == truth["in_use"]["agent_mbufs"]
    assert set(in_use) == {"agent_pool", "agent_mbufs"}  # agent_other is untouched
    # both lcores are in the in-use rows, and the given-back objects are free
    by_addr = {int(r["addr"], 16): r for r in rows}
    assert {by_addr[int(a, 16)]["alloc_lcore"] for a in truth["held"]} == {"0", "1"}
    for a in truth["freed_last"]:
        assert by_addr[int(a, 16)]["state"] == "free"
    # the alloc backtrace of every held object starts in take_object, of every held mbuf in
    # churn_and_hold (rte_pktmbuf_alloc is inline); depth 0 records none
    maps = Path(str(dump) + ".maps")
    program = agent_programs["agent_prog"]

    def first_frames(addrs, column):
        return {symbol_of(int(bt.split()[0], 16), maps, program) if bt else ""
                for bt in (by_addr[int(a, 16)][column] for a in addrs)}
    sites = {"8": ("take_object", "churn_and_hold"), "1": ("take_object", "churn_and_hold"),
             "0": ("", "")}[depth]
    assert first_frames(truth["held"], "alloc_backtrace") == {sites[0]}
    assert first_frames(truth["held_mbufs"], "alloc_backtrace") == {sites[1]}
    if depth == "1":
        assert {len(by_addr[int(a, 16)]["alloc_backtrace"].split()) for a in truth["held"]} == {1}
    if depth == "8":   # the whole stack, from the unwinder's memo on the quick path too
        assert {symbol_of(int(by_addr[int(a, 16)]["alloc_backtrace"].split()[1], 16), maps, program)
                for a in truth["held"]} == {"churn_and_hold"}
    # a second dump after more signals still parses (the file is replaced whole)
    dump.unlink()
    assert len(dump_now(proc, dump)) == len(rows)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0


def test_dump_lists_rte_malloc_leaks(agent, agent_programs, tmp_path):
    dump = tmp_path / "dump.csv"
    proc, truth_path = agent.start(agent_programs["agent_prog"], "malloc-leak", MPTRACK_DUMP=dump,
                                   MPTRACK_MALLOC=1)
    wait_file(truth_path, proc)
    import json
    truth = json.loads(truth_path.read_text())
    rows = [r for r in dump_now(proc, dump) if r["pool"] == "rte_malloc"]
    in_use = {int(r["addr"], 16): r for r in rows if r["state"] == "in-use"}
    leaked = {int(a, 16) for a in truth["leaked"]}
    assert leaked <= set(in_use)
    maps = Path(str(dump) + ".maps")
    program = agent_programs["agent_prog"]
    sites = {symbol_of(int(r["alloc_backtrace"].split()[0], 16), maps, program)
             for r in in_use.values() if r["alloc_backtrace"]}
    # the only in-use blocks the program made are the five leak_block ones
    from_leak = {a for a, r in in_use.items() if r["alloc_backtrace"] and
                 symbol_of(int(r["alloc_backtrace"].split()[0], 16), maps, program) == "leak_block"}
    assert from_leak == leaked
    assert "churn_blocks" not in sites
    assert all(in_use[a]["size"] == "100" for a in leaked)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0


def test_dump_to_unwritable_path_says_so_once(agent, agent_programs, tmp_path):
    dump = tmp_path / "no-such-dir" / "dump.csv"
    proc, truth_path = agent.start(agent_programs["agent_prog"], "held", MPTRACK_DUMP=dump)
    wait_file(truth_path, proc)
    for _ in range(3):
        proc.send_signal(signal.SIGRTMIN)
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0, "the program goes on"
    proc.log_file.seek(0)
    log = proc.log_file.read()
    assert log.count("cannot write the dump") == 1, log
