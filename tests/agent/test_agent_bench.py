"""The benchmark scripts run and report every configuration (no timing asserted:
the numbers belong in docs/agent.md, measured on a quiet machine)."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from agent_support import HERE

ROOT = HERE.parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

import agent_bench  # noqa: E402
import testpmd_bench  # noqa: E402


def test_agent_bench_reports_every_configuration():
    res = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "agent_bench.py"),
                          "--rounds", "3200", "--repeat", "1", "--markdown"],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    rows = [line for line in res.stdout.splitlines() if line.startswith("| ") and "---" not in line]
    assert [r.split(" | ")[0][2:] for r in rows[1:]] == [name for name, _, _ in agent_bench.CONFIGS]
    for row in rows[1:]:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert all(float(c.rstrip("x")) > 0 for c in cells[1:]), row


def test_testpmd_rates_are_read_per_period():
    text = ("Port statistics ====\n  ######### port 0 ####\n  Tx-pps:   100   Tx-bps: 0\n"
            "  ######### port 1 ####\n  Tx-pps:   20   Tx-bps: 0\n"
            "Port statistics ====\n  Tx-pps:   7   Tx-bps: 0\n  Tx-pps:   8   Tx-bps: 0\n")
    assert testpmd_bench.tx_pps(text) == [120, 15]


@pytest.mark.skipif(shutil.which("dpdk-testpmd") is None, reason="dpdk-testpmd not installed")
def test_testpmd_forwards_with_and_without_the_agent(agent_lib):
    assert testpmd_bench.run_once(agent_lib, False, {}, 1, 0) > 0
    assert testpmd_bench.run_once(agent_lib, True, {}, 1, 1) > 0
