"""Faults reported by the preload agent, each with the right sites.

agent_prog.c makes each fault from named functions (take_object, give_back,
give_back_again, ...); the agent's report must name the fault kind, the pool and
the object on one 'mptrack: ' line, then show backtraces through those
functions, and act as MPTRACK_ON_ERROR says.
"""

from __future__ import annotations

import signal

import pytest


def test_duplicate_free_names_three_sites(agent, agent_programs):
    run = agent.run(agent_programs["agent_prog"], "double-free", MPTRACK_ON_ERROR="log")
    assert run.returncode == 0 and "done" in run.stdout, str(run)
    assert len(run.faults()) == 1, str(run)
    rep = run.report()
    obj = run.truth["obj"]
    assert rep["line"].startswith(f'mptrack: duplicate free: pool "agent_pool" object {obj} '), str(run)
    assert "give_back_again" in rep["this free"].splitlines()[0], str(run)
    assert "give_back+" in rep["previous free"].splitlines()[0], str(run)
    assert "take_object" in rep["last alloc"].splitlines()[0], str(run)
    # deeper frames are there too (depth 8 by default)
    assert "main+" in rep["this free"], str(run)


def test_foreign_free_names_the_owner(agent, agent_programs):
    run = agent.run(agent_programs["agent_prog"], "foreign-free", MPTRACK_ON_ERROR="log")
    assert run.returncode == 0, str(run)
    assert run.faults() == [f'mptrack: foreign free: pool "agent_other" object {run.truth["obj"]} '
                            'belongs to pool "agent_pool"'], str(run)
    assert "free_to_other_pool" in run.report()["this free"].splitlines()[0], str(run)


def test_stray_free_inside_an_object(agent, agent_programs):
    run = agent.run(agent_programs["agent_prog"], "stray-free", MPTRACK_ON_ERROR="log")
    assert run.returncode == 0, str(run)
    line, = run.faults()
    assert line.startswith(f'mptrack: stray free: pool "agent_pool" pointer {run.truth["ptr"]} '), line
    assert f'inside object {run.truth["obj"]} (offset +8) of pool "agent_pool"' in line
    assert "free_inside_pointer" in run.report()["this free"], str(run)


def test_duplicate_alloc_after_a_put_behind_the_agents_back(agent, agent_programs):
    run = agent.run(agent_programs["agent_prog"], "duplicate-alloc", MPTRACK_ON_ERROR="log")
    assert run.returncode == 0, str(run)
    line, = run.faults()
    assert line.startswith(f'mptrack: duplicate alloc: pool "agent_other" object {run.truth["obj"]} ')
    rep = run.report()
    assert "take_all" in rep["this alloc"].splitlines()[0], str(run)
    assert "take_object" in rep["previous alloc"].splitlines()[0], str(run)


def test_rte_free_twice(agent, agent_programs):
    run = agent.run(agent_programs["agent_prog"], "rte-free-twice", MPTRACK_ON_ERROR="log",
                    MPTRACK_MALLOC=1)
    assert run.returncode == 0, str(run)
    line, = run.faults()
    assert line.startswith(f'mptrack: duplicate free: pool "rte_malloc" block {run.truth["obj"]} '
                           '(256 bytes)'), line
    rep = run.report()
    assert "free_block_again" in rep["this free"].splitlines()[0]
    assert "free_block+" in rep["previous free"].splitlines()[0]
    assert "malloc_block" in rep["last alloc"].splitlines()[0]


def test_no_fault_without_bug(agent, agent_programs):
    """The same program, with the faulty step left out, reports nothing: the held mode."""
    proc, truth = agent.start(agent_programs["agent_prog"], "held", MPTRACK_MALLOC=1)
    from agent_support import wait_file
    wait_file(truth, proc)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    proc.log_file.seek(0)
    log = proc.log_file.read()
    assert "mptrack: " not in log, log


def test_abort_is_the_default(agent, agent_programs):
    run = agent.run(agent_programs["agent_prog"], "double-free")
    assert run.returncode == -signal.SIGABRT, str(run)
    assert len(run.faults()) == 1 and "done" not in run.stdout, str(run)


def test_trap_raises_sigtrap(agent, agent_programs):
    run = agent.run(agent_programs["agent_prog"], "double-free", MPTRACK_ON_ERROR="trap")
    assert run.returncode == -signal.SIGTRAP, str(run)
    assert len(run.faults()) == 1, str(run)


@pytest.mark.parametrize("depth,frames", [("0", 0), ("1", 1), ("3", 3)])
def test_backtrace_depth(agent, agent_programs, depth, frames):
    run = agent.run(agent_programs["agent_prog"], "double-free", MPTRACK_ON_ERROR="log",
                    MPTRACK_BT_DEPTH=depth)
    rep = run.report()
    got = rep["this free"].splitlines()
    if frames == 0:
        assert got == ["(no backtrace recorded)"], str(run)
    else:
        assert len(got) == frames and "give_back_again" in got[0], str(run)
        assert len(rep["previous free"].splitlines()) == frames


def test_old_tool_aliases(agent, agent_programs):
    """RTE_MP_TRACK_NAME / RTE_MP_TRACK_NUM_BT: only agent_other tracked, 2 frames."""
    run = agent.run(agent_programs["agent_prog"], "double-free", MPTRACK_ON_ERROR="log",
                    RTE_MP_TRACK_NAME="agent_oth*")
    assert run.returncode == 0 and run.faults() == [], str(run)
    run = agent.run(agent_programs["agent_prog"], "duplicate-alloc", MPTRACK_ON_ERROR="log",
                    RTE_MP_TRACK_NAME="agent_oth*", RTE_MP_TRACK_NUM_BT="2")
    assert len(run.faults()) == 1, str(run)
    assert len(run.report()["this alloc"].splitlines()) == 2, str(run)


@pytest.mark.parametrize("unwinder", ["libunwind", "glibc", "fp"])
def test_unwinders_find_the_sites(agent, agent_programs, unwinder):
    run = agent.run(agent_programs["agent_prog"], "double-free", MPTRACK_ON_ERROR="log",
                    MPTRACK_UNWIND=unwinder)
    rep = run.report()
    assert "give_back_again" in rep["this free"].splitlines()[0], str(run)
    assert "give_back+" in rep["previous free"].splitlines()[0], str(run)


def test_rte_free_of_a_stray_pointer(agent, agent_programs):
    run = agent.run(agent_programs["agent_prog"], "rte-free-stray", MPTRACK_ON_ERROR="log",
                    MPTRACK_MALLOC=1)
    assert run.returncode == 0 and "done" in run.stdout, str(run)
    line, = run.faults()
    assert line == (f'mptrack: stray free: pool "rte_malloc" pointer {run.truth["obj"]} '
                    'was never returned by the rte_malloc family'), str(run)
    assert "free_block" in run.report()["this free"].splitlines()[0]
