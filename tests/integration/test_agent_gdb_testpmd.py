"""Attach-by-injection into a running dpdk-testpmd (stripped, packaged): the issue's check.

testpmd forwards with txonly on two net_null ports (its lcore 1 allocates a
burst of mbufs from mb_pool_0 and the null driver frees it, about 20 million
times a second here).  gdb attaches, injects the agent into mb_pool_0 with
`mptrack agent attach`, lets testpmd run 3 seconds, reads `mptrack agent
status`, detaches the agent and leaves.  testpmd's periodic statistics must
show its TX counters increasing while the agent tracks the pool and after it
left, and the agent must have seen gets and no fault.
"""

import json
import re
import subprocess

import pytest
from testpmd_helpers import TESTPMD, tx_counts, wait_for

from gdb_mptrack import agent_attach

RUN_ATTACHED = 3.0

@pytest.mark.skipif(TESTPMD is None, reason="dpdk-testpmd is not installed (package dpdk)")
def test_testpmd_attach_tracks_mbuf_pool_while_forwarding_then_detaches(lab, tmp_path):
    lib = agent_attach.build(tmp_path / "agent")
    out = tmp_path / "testpmd.out"
    with open(out, "wb") as logf:
        # stdin: a pipe that stays open until teardown, so testpmd never sees EOF
        pmd = lab.spawn([TESTPMD, "--no-huge", "-m", "256", "--no-pci", "-l", "0,1",
                         "--file-prefix", lab.prefix(), "--vdev", "net_null0", "--vdev", "net_null1",
                         "--", "--forward-mode=txonly", "--stats-period", "1", "--total-num-mbufs=4096"],
                        stdin=subprocess.PIPE, stdout=logf, stderr=subprocess.STDOUT)

    def log():
        return out.read_text(errors="replace")

    wait_for(lambda: len(tx_counts(log())) >= 2 or pmd.poll() is not None, 30, "testpmd statistics", log)
    assert pmd.poll() is None, f"testpmd exited:\n{log()}"

    status = tmp_path / "status.json"
    attached_at = len(log())
    res = lab.run_gdb([("attach", f"mptrack agent attach mb_pool_0 --library {lib}"),
                       ("timer", "python import threading, os, signal; threading.Timer(%s, os.kill, (%d, "
                                 "signal.SIGINT)).start()" % (RUN_ATTACHED, pmd.pid)),
                       ("run", "continue"),
                       ("status", f"mptrack agent status --json {status}"),
                       ("status-text", "mptrack agent status"),
                       ("detach", "mptrack agent detach"),
                       ("end", "echo done\\n")],
                      pid=pmd.pid, cwd=tmp_path, timeout=90)
    detached_at = len(log())
    assert "Traceback" not in res.stdout + res.stderr, str(res)
    assert not res.error_lines(), str(res)
    assert "done" in res.section("end"), str(res)
    assert re.search(r'tracking pool "mb_pool_0": 4096 objects, \d+ free, \d+ in use \(origin unknown\), '
                     r"per-lcore caches flushed and bypassed", res.section("attach")), str(res)
    assert "SIGTRAP" not in res.section("run"), str(res)  # no fault stopped it

    # the agent tracked testpmd's gets while it forwarded
    assert status.exists(), str(res)
    record = json.loads(status.read_text())
    assert record["mode"] == "attached by gdb (loaded with dlopen)" and record["faults"] == [], record
    pools = {p["name"]: p for p in record["pools"]}
    assert list(pools) == ["mb_pool_0"], record
    mb = pools["mb_pool_0"]
    assert mb["objects"] == 4096 and mb["cache_size"] > 0 and mb["faults"] == 0, mb
    assert mb["gets"] > 100000, mb
    assert re.search(r"pool mb_pool_0 at 0x[0-9a-f]+: 4096 objects, \d+ in use .*, \d+ gets seen, 0 faults",
                     res.section("status-text")), res.section("status-text")
    assert "detached the agent: 1 pool given back, mempool ops restored" in res.section("detach"), str(res)

    # testpmd forwarded while attached (it only runs during `continue`) and goes on after the detach
    during = tx_counts(log()[attached_at:detached_at])
    assert len(during) >= 2 and all(b > a for a, b in zip(during, during[1:])), (during, log()[-3000:])
    wait_for(lambda: len(tx_counts(log()[detached_at:])) >= 3 or pmd.poll() is not None,
              30, "statistics after the detach", log)
    assert pmd.poll() is None, f"testpmd died after the detach:\n{log()[-3000:]}"
    after = tx_counts(log()[detached_at:])
    assert all(b > a for a, b in zip(after, after[1:])) and after[0] > during[-1], (during, after)
