"""The agent's fast path finds each object's shadow entry by a private address
map of the pool's whole span or, when the span is too sparse for one, by the
chunk list (see fast_index_build in mptrack_agent.c).  Each must find every
object, and nothing else: layout_prog.c makes pools of each kind, uses every
object right, then puts a pointer inside an object, one in an object's header,
and an object twice."""

from __future__ import annotations

import pytest

KINDS = {"lay_dpdk": "indexed by an address map (chunks: 1)",
         "lay_map": "indexed by an address map (chunks: 2)",
         "lay_chunks": "found by chunk (chunks: 2)"}


@pytest.mark.parametrize("depth", ["1", "8"])
def test_every_index_finds_objects_and_only_objects(agent, agent_programs, depth):
    run = agent.run(agent_programs["layout_prog"], "faults", MPTRACK_ON_ERROR="log",
                    MPTRACK_VERBOSE=1, MPTRACK_BT_DEPTH=depth)
    assert run.returncode == 0 and "done" in run.stdout, str(run)
    for pool, kind in KINDS.items():
        assert f'mptrack-agent: pool "{pool}": objects {kind}' in run.stderr, str(run)
    faults = run.faults()
    assert len(faults) == 3 * len(KINDS), str(run)
    for pool in KINDS:
        obj = int(run.truth[pool]["obj"], 16)
        mine = [f for f in faults if f': pool "{pool}" ' in f]
        assert mine == [
            f'mptrack: stray free: pool "{pool}" pointer {obj + 8:#x} is not an object: '
            f'it is inside object {obj:#x} (offset +8) of pool "{pool}"',
            f'mptrack: stray free: pool "{pool}" pointer {obj - 32:#x} is not an object: '
            f'it is inside object {obj:#x} (offset -32) of pool "{pool}"',
            mine[2]], str(run)
        assert mine[2].startswith(f'mptrack: duplicate free: pool "{pool}" object {obj:#x} ')
    # every object was got and put back, one by one and in a burst, with no fault
    assert run.truth["lay_map"]["objects"] == run.truth["lay_chunks"]["objects"] == 32
    assert run.truth["lay_dpdk"]["objects"] == 512
