"""`mptrack track` started after attaching to a live process.

track_faults --mode wait makes pool "late", holds 5 objects, then every
100 ms takes and gives back one object; once its trigger file exists it
double-frees the object it just gave back.  gdb attaches, tracks "late",
creates the trigger and continues: the double free must stop it with the
report, and the 5 objects held from before tracking are "origin unknown",
not faults.
"""

from __future__ import annotations

import os
import re
import signal
import threading
import time

import pytest

from tracking_helpers import (FAULT_HEADER, frames_naming, hex_ints, start_waiting,
                              trigger_of)

ATTACH_TIMEOUT = 60
# If mptrack misses the double free, `continue` never returns: after this
# long, SIGINT the program so gdb stops it and the checks say what went wrong.
MISSED_FAULT_AFTER = 20


@pytest.fixture(scope="module")
def attached(programs, session_lab):
    prog = start_waiting(session_lab, programs["track_faults"].debug)
    held = prog.truth["held"]
    steps = [("track", "mptrack track late"),
             ("status", "mptrack status"),
             ("leaks-before", "mptrack leaks late"),
             ("history-held", f"mptrack history {held[0]}"),
             ("trigger", f"shell touch {trigger_of(prog)}"),
             ("continue", "continue"),
             ("bt", "bt"),
             ("status-after", "mptrack status"),
             ("history-held-after", f"mptrack history {held[1]}"),
             ("untrack", "mptrack untrack late"),
             ("end", "echo done\\n")]
    rescue = threading.Timer(MISSED_FAULT_AFTER, os.kill, (prog.pid, signal.SIGINT))
    rescue.start()
    try:
        res = session_lab.run_gdb(steps, pid=prog.pid, cwd=prog.cwd, timeout=ATTACH_TIMEOUT)
    finally:
        rescue.cancel()
    time.sleep(0.5)  # a few more rounds of the program's loop, untracked
    return prog, res, prog.popen.poll()


def test_attach_gdb_ran_cleanly(attached):
    _, res, _ = attached
    assert "Traceback" not in res.stdout + res.stderr, str(res)
    assert "Python Exception" not in res.stdout + res.stderr, str(res)
    assert "done" in res.section("end"), str(res)


def test_attach_status_before_the_fault(attached):
    _, res, _ = attached
    text = res.section("status")
    assert re.search(r"\blate\b", text), text
    assert re.search(r"cache", text, re.I), text


def test_objects_held_before_tracking_are_origin_unknown(attached):
    prog, res, _ = attached
    for label in ("leaks-before", "history-held", "history-held-after"):
        text = res.section(label)
        assert re.search(r"origin unknown", text, re.I), f"{label}:\n{text}"
    assert not FAULT_HEADER.search(res.section("track") + res.section("status")
                                   + res.section("leaks-before")), str(res)


def test_attach_double_free_stops_with_report(attached):
    prog, res, _ = attached
    reports = [(m.group(1), m) for m in FAULT_HEADER.finditer(res.stdout + res.stderr)]
    assert [k for k, _ in reports] == ["duplicate free"], str(res)
    text = res.section("continue")
    if not FAULT_HEADER.search(text):
        text = res.stderr[res.stderr.find("mptrack: duplicate free"):]
    for function in ("late_dup_free", "late_free", "late_alloc"):
        assert frames_naming(text, function), f"{function} not named:\n{text}"
    assert re.search(r"\blate\b", text), text
    # the object double-freed is one the program did not hold before tracking
    assert not hex_ints(text.splitlines()[0]) & {int(a, 16) for a in prog.truth["held"]}
    bt = res.section("bt")
    assert frames_naming(bt, "late_dup_free"), bt


def test_attach_status_counts_one_fault(attached):
    _, res, _ = attached
    text = res.section("status-after")
    assert re.search(r"duplicate.free|fault\w*\W+1\b", text, re.I), text


def test_program_survives_detach(attached):
    prog, _, returncode = attached
    assert returncode is None, f"the program died after gdb left:\n{prog.log()}"
    assert "trigger seen" in prog.log(), prog.log()
