"""DPDK's own mempool and mbuf unit tests pass under the agent, every pool tracked.

dpdk-test runs one test named by DPDK_TEST; it prints 'Test OK' and exits 0.
The agent tracks every pool (no MPTRACK_POOLS), aborts on any fault, and the
rte_malloc family is tracked too.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest

from agent_support import EAL

pytestmark = pytest.mark.skipif(shutil.which("dpdk-test") is None,
                                reason="dpdk-test not installed (Debian package dpdk-dev)")


@pytest.mark.parametrize("test", ["mempool_autotest", "mbuf_autotest"])
@pytest.mark.parametrize("extra", [{}, {"MPTRACK_MALLOC": "1", "MPTRACK_BT_DEPTH": "1"}],
                         ids=["default", "malloc-depth1"])
def test_dpdk_unit_test_passes_under_the_agent(agent, lab, test, extra):
    env = agent.env(DPDK_TEST=test, MPTRACK_VERBOSE="1", **extra)
    argv = ["dpdk-test"] + EAL + ["--file-prefix", lab.prefix()]
    proc = lab.spawn(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                     stderr=subprocess.STDOUT, text=True)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0 and "Test OK" in out, out[-4000:]
    assert "mptrack: " not in out, out[-4000:]
    # the agent was there and tracked the test's pools
    assert "mptrack-agent: tracking pool" in out, out[-4000:]
