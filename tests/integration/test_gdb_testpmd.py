"""mptrack on a real, busy DPDK application: dpdk-testpmd (stripped, packaged).

Two set-ups: the issue's txonly forwarding on net_null ports (mbufs are
allocated and freed within a burst, so few or none are in use when we stop
it), and io forwarding on two net_ring ports after a first burst
(--tx-first), where mbufs circulate through the rings and some are always in
use.  We attach, list and dump its pools, detach, and check from testpmd's
periodic statistics that it kept forwarding.
"""

import json
import subprocess

import pytest
from testpmd_helpers import TESTPMD, tx_counts, wait_for

SETUPS = {
    "txonly-net_null": (["--vdev", "net_null0", "--vdev", "net_null1"], ["--forward-mode=txonly"], False),
    "io-net_ring": (["--vdev", "net_ring0", "--vdev", "net_ring1"], ["--forward-mode=io", "--tx-first"], True),
}


@pytest.mark.skipif(TESTPMD is None, reason="dpdk-testpmd is not installed (package dpdk)")
@pytest.mark.parametrize("setup", sorted(SETUPS))
def test_testpmd_attach_list_dump_detach(lab, tmp_path, setup):
    vdevs, forwarding, always_in_use = SETUPS[setup]
    prefix = lab.prefix()
    out = tmp_path / "testpmd.out"
    with open(out, "wb") as logf:
        # stdin: a pipe that stays open until teardown, so testpmd never sees EOF
        pmd = lab.spawn([TESTPMD, "--no-huge", "-m", "256", "--no-pci", "-l", "0,1",
                         "--file-prefix", prefix] + vdevs
                        + ["--"] + forwarding + ["--stats-period", "1", "--total-num-mbufs=4096"],
                        stdin=subprocess.PIPE, stdout=logf, stderr=subprocess.STDOUT)

    def log():
        return out.read_text(errors="replace")

    wait_for(lambda: len(tx_counts(log())) >= 2 or pmd.poll() is not None, 30,
              "testpmd statistics", log)
    assert pmd.poll() is None, f"testpmd exited:\n{log()}"

    pools_json, dump_json = tmp_path / "pools.json", tmp_path / "dump.json"
    res = lab.run_gdb([("pools", f"mptrack pools --json {pools_json}"),
                       ("dump", f"mptrack dump mb_pool_0 --state in-use --json {dump_json}"),
                       ("table", "mptrack pools")],
                      pid=pmd.pid, cwd=tmp_path)
    detached_at = len(log())
    assert "Traceback" not in res.stderr, str(res)
    assert not res.error_lines(), str(res)

    assert pools_json.exists(), str(res)
    pools = {p["name"]: p for p in json.loads(pools_json.read_text())}
    assert "mb_pool_0" in pools, pools.keys()
    mb = pools["mb_pool_0"]
    assert mb["ops"] == "ring_mp_mc"
    assert mb["pktmbuf"] is True
    assert mb["size"] == 4096
    assert mb["in_use"] > 0 or not always_in_use
    assert mb["in_use"] + mb["avail"] == mb["size"]
    assert "mb_pool_0" in res.section("table")

    assert dump_json.exists(), str(res)
    rows = json.loads(dump_json.read_text())
    assert len(rows) == mb["in_use"]
    assert all(r["state"] == "in-use" and r["refcnt"] >= 1 for r in rows), rows[:3]

    # testpmd goes on forwarding after the detach.
    wait_for(lambda: len(tx_counts(log()[detached_at:])) >= 3 or pmd.poll() is not None,
              30, "statistics after the detach", log)
    assert pmd.poll() is None, f"testpmd died after the detach:\n{log()[-3000:]}"
    after = tx_counts(log()[detached_at:])
    assert all(b > a for a, b in zip(after, after[1:])), after
