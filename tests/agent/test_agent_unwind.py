"""The agent's cached CFI unwinder (gdb_mptrack/agent/unwind.c, MPTRACK_UNWIND=cfi, the default).

MPTRACK_UNWIND_VERIFY=1 makes the agent compare every stack the CFI unwinder
gives (fresh or memoised) with libunwind's for the same event and print a
summary at exit; the truth here is libunwind's stack, on code without frame
pointers: unwind_prog.c (built with -O1) and Debian's DPDK (dpdk-test).
"""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from agent_support import EAL

SUMMARY = re.compile(
    r"mptrack-agent: unwind verify: (?P<compared>\d+) stacks compared with libunwind, "
    r"(?P<differ>\d+) differ; (?P<walks>\d+) walks, (?P<rules>\d+) rules \((?P<bp>\d+) rbp-based, "
    r"(?P<realigned>\d+) realigned, (?P<unsupported>\d+) not followed\), "
    r"(?P<fallback>\d+) stacks by the fallback")


def summary(text: str) -> dict[str, int]:
    m = SUMMARY.search(text)
    assert m, text[-4000:]
    return {k: int(v) for k, v in m.groupdict().items()}


def test_cfi_stacks_equal_libunwinds_on_every_kind_of_frame(agent, agent_programs):
    run = agent.run(agent_programs["unwind_prog"], "mixed", MPTRACK_UNWIND_VERIFY=1)
    assert run.returncode == 0, str(run)
    s = summary(run.stderr)
    assert s["differ"] == 0, str(run)
    # every get and put of the program was compared (the signal handler's by the fallback)
    assert s["compared"] + s["fallback"] >= run.truth["events"], (s, run.truth)
    # the frames were of every kind: rbp-based (alloca), realigned (DRAP), signal frames
    assert s["bp"] >= 1 and s["realigned"] >= 1, s
    # 4 signals on the thread's stack, 4 on an alternate stack, a get and a put each
    assert s["unsupported"] >= 1 and s["fallback"] >= 16, s
    # walks are memoised: far fewer walks than stacks
    assert s["walks"] < s["compared"] // 2, s


@pytest.mark.skipif(shutil.which("dpdk-test") is None, reason="dpdk-test not installed")
@pytest.mark.parametrize("test", ["mempool_autotest", "mbuf_autotest"])
def test_cfi_stacks_equal_libunwinds_in_dpdk_test(agent, lab, test):
    """Debian's DPDK is built without frame pointers; its unit tests get and put
    from many functions, on two lcores."""
    env = agent.env(DPDK_TEST=test, MPTRACK_UNWIND_VERIFY="1")
    argv = ["dpdk-test"] + EAL + ["--file-prefix", lab.prefix()]
    proc = lab.spawn(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                     stderr=subprocess.STDOUT, text=True)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0 and "Test OK" in out, out[-4000:]
    s = summary(out)
    assert s["differ"] == 0 and s["compared"] > 1000, s


def _frames(section: str) -> list[str]:
    """'#0 0x55.. give_back+0xf6 (./agent_prog)' -> 'give_back+0xf6 (./agent_prog)'."""
    return [line.split(" ", 2)[2] for line in section.splitlines()]


def test_fault_report_stacks_are_the_same_with_every_correct_unwinder(agent, agent_programs):
    reports = {}
    for unwinder in ("cfi", "libunwind", "glibc"):
        run = agent.run(agent_programs["agent_prog"], "double-free", MPTRACK_ON_ERROR="log",
                        MPTRACK_UNWIND=unwinder)
        assert run.returncode == 0 and len(run.faults()) == 1, str(run)
        rep = run.report()
        reports[unwinder] = {k: _frames(rep[k]) for k in ("this free", "previous free", "last alloc")}
        assert "give_back_again" in reports[unwinder]["this free"][0], str(run)
        assert len(reports[unwinder]["this free"]) >= 3, str(run)
    assert reports["cfi"] == reports["libunwind"] == reports["glibc"]


@pytest.mark.parametrize("unwinder", ["fp", "caller"])
def test_other_unwinders_still_selectable(agent, agent_programs, unwinder):
    run = agent.run(agent_programs["agent_prog"], "double-free", MPTRACK_ON_ERROR="log",
                    MPTRACK_UNWIND=unwinder, MPTRACK_VERBOSE=1)
    assert run.returncode == 0 and len(run.faults()) == 1, str(run)
    assert f"depth 8 ({unwinder})" in run.stderr, str(run)
    assert "give_back_again" in run.report()["this free"].splitlines()[0], str(run)


def test_unknown_unwinder_is_said_once(agent, agent_programs):
    run = agent.run(agent_programs["agent_prog"], "double-free", MPTRACK_ON_ERROR="log",
                    MPTRACK_UNWIND="dwarf", MPTRACK_VERBOSE=1)
    assert run.returncode == 0, str(run)
    assert run.stderr.count("ignoring MPTRACK_UNWIND=dwarf") == 1, str(run)
    assert "depth 8 (cfi)" in run.stderr, str(run)
