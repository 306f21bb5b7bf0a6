"""`mptrack track` against tests/programs/track_faults.c, run under gdb.

Each run is one gdb session on one mode of the program (tracking armed
before `run` unless said otherwise), made lazily once per session and shared
by the tests that look at it.  The program knows its own truth: which
function allocates and frees, which object it double-frees, what it holds.
"""

from __future__ import annotations

import re

import pytest

from tracking_helpers import (FAULT_HEADER, frames_naming, hex_ints, json_in, run_mode,
                              site_line)

# (name, mode) -> steps(out, truth_script); every run ends with an "end" step.


def _steps_dup_free(out, script):
    return [("track", "mptrack track faults"),
            ("status-pending", "mptrack status"),
            ("run", "run"),
            ("bt", "bt"),
            ("truth", f"source {script}"),
            ("status", "mptrack status"),
            ("history", 'eval "mptrack history 0x%lx", $t_obj'),
            ("continue", "continue"),
            ("end", "echo done\\n")]


def _steps_foreign_free(out, script):
    return [("track", "mptrack track pool_a pool_b"),
            ("run", "run"),
            ("bt", "bt"),
            ("continue", "continue"),
            ("end", "echo done\\n")]


def _steps_foreign_free_all(out, script):
    # Tracking starts in the live process, after the object left pool_a.
    return [("break", "break free_into_b"),
            ("run", "run"),
            ("track", "mptrack track --all"),
            ("status", "mptrack status"),
            ("continue", "continue"),
            ("bt", "bt"),
            ("continue2", "continue"),
            ("end", "echo done\\n")]


def _steps_stray_free(out, script):
    return [("track", "mptrack track faults"),
            ("run", "run"),
            ("bt", "bt"),
            ("continue", "continue"),
            ("end", "echo done\\n")]


def _steps_dup_alloc(out, script):
    return [("set-stop", "set mptrack stop-on duplicate-free off"),
            ("show-stop", "show mptrack stop-on duplicate-free"),
            ("track", "mptrack track tiny"),
            ("run", "run"),
            ("bt", "bt"),
            ("status", "mptrack status"),
            ("continue", "continue"),
            ("end", "echo done\\n")]


def _steps_malloc_leak(depth=None):
    def steps(out, script):
        s = []
        if depth is not None:
            s += [("set-depth", f"set mptrack backtrace-depth {depth}"),
                  ("show-depth", "show mptrack backtrace-depth")]
        s += [("track", "mptrack track --malloc"),
              "break leaky_site", "break tidy_site", "break mptrack_checkpoint",
              ("run", "run"),
              ("mark-before", "mptrack mark before"),
              ("continue-mid", "continue"),
              ("mark-mid", "mptrack mark mid"),
              ("continue-end", "continue"),
              ("mark-end", "mptrack mark end"),
              ("truth", f"source {script}"),
              ("leaks-stdout", "mptrack leaks --malloc --json -"),
              ("leaks-file", f"mptrack leaks --malloc --json {out / 'leaks.json'}"),
              ("leaks-csv", f"mptrack leaks --malloc --csv {out / 'leaks.csv'}"),
              ("since-before", f"mptrack leaks --malloc --since before --json {out / 'since-before.json'}"),
              ("since-mid", f"mptrack leaks --malloc --since mid --json {out / 'since-mid.json'}"),
              ("diff-before-mid", "mptrack diff before mid"),
              ("diff-mid-end", "mptrack diff mid end"),
              ("history", 'eval "mptrack history 0x%lx", $t_leaked0'),
              ("status", "mptrack status"),
              "delete",
              ("continue", "continue"),
              ("end", "echo done\\n")]
        return s
    return steps


def _steps_rte_free_fault(out, script):
    return [("track", "mptrack track --malloc"),
            ("run", "run"),
            ("bt", "bt"),
            ("truth", f"source {script}"),
            ("status", "mptrack status"),
            ("continue", "continue"),
            ("end", "echo done\\n")]


def _steps_two_lcores(out, script):
    return [("track", "mptrack track twolc"),
            "break mptrack_checkpoint",
            ("run", "run"),
            ("bt", "bt"),
            ("status", "mptrack status"),
            ("leaks", f"mptrack leaks twolc --json {out / 'leaks.json'}"),
            ("dump", f"mptrack dump twolc --state in-use --json {out / 'in-use.json'}"),
            ("csv", f"mptrack dump twolc --state all --csv {out / 'all.csv'}"),
            ("untrack", "mptrack untrack twolc"),
            ("status-after", "mptrack status"),
            ("pools", f"mptrack pools --json {out / 'pools.json'}"),
            "delete",
            ("continue", "continue"),
            ("end", "echo done\\n")]


RUNS = {
    ("dup-free", "debug"): ("dup-free", _steps_dup_free),
    ("dup-free", "stripped"): ("dup-free", _steps_dup_free),
    ("foreign-free", "debug"): ("foreign-free", _steps_foreign_free),
    ("foreign-free-all", "debug"): ("foreign-free", _steps_foreign_free_all),
    ("stray-free", "debug"): ("stray-free", _steps_stray_free),
    ("dup-alloc", "debug"): ("dup-alloc", _steps_dup_alloc),
    ("malloc-leak", "debug"): ("malloc-leak", _steps_malloc_leak()),
    # stripped, and with a short backtrace: leaky_site is still within 3 frames
    ("malloc-leak", "stripped"): ("malloc-leak", _steps_malloc_leak(depth=3)),
    ("double-rte-free", "debug"): ("double-rte-free", _steps_rte_free_fault),
    ("unknown-rte-free", "debug"): ("unknown-rte-free", _steps_rte_free_fault),
    ("two-lcores", "debug"): ("two-lcores", _steps_two_lcores),
}


@pytest.fixture(scope="session")
def tracked(programs, session_lab):
    """``tracked(name, build)`` -> the TrackRun of RUNS[(name, build)], made once."""
    cache = {}

    def get(name, build="debug"):
        if (name, build) not in cache:
            mode, steps = RUNS[(name, build)]
            cache[(name, build)] = run_mode(session_lab, programs, mode, build, steps,
                                            name=name)
        return cache[(name, build)]

    return get


def assert_clean(run):
    out = run.all_output
    assert "Traceback" not in out and "Python Exception" not in out, str(run.gdb)
    assert "done" in run.section("end"), str(run.gdb)


def assert_stopped_in(run, label, function):
    """After step ``label`` gdb has the program stopped, not exited, and the
    step ``bt`` names ``function``."""
    text = run.section(label)
    assert not re.search(r"exited (normally|with code)", text), \
        f"the program ran to its end instead of stopping during {label!r}\n{run.gdb}"
    bt = run.section("bt")
    assert frames_naming(bt, function), f"bt does not name {function}:\n{bt}\n{run.gdb}"


def assert_exits_normally(run, label="continue"):
    text = run.section(label)
    assert "exited normally" in text, f"`continue` did not run the program to its end:\n{run.gdb}"


def assert_frame(report, function):
    """``report`` has a frame naming ``function`` (its line: see
    test_report_frame_is_at_the_call_line)."""
    assert frames_naming(report, function), f"{function} not named in:\n{report}"


def no_faults(run):
    found = FAULT_HEADER.findall(run.all_output)
    assert not found, f"unexpected fault reports {found}\n{run.gdb}"


# ---------------------------------------------------------------- dup free


@pytest.mark.parametrize("build", ["debug", "stripped"])
def test_dup_free_stops_at_the_second_free(tracked, build):
    run = tracked("dup-free", build)
    assert_clean(run)
    run.report("run", "duplicate free")
    assert_stopped_in(run, "run", "free_site_c")
    bt = run.section("bt")
    assert not frames_naming(bt, "free_site_b"), bt


@pytest.mark.parametrize("build", ["debug", "stripped"])
def test_dup_free_report_names_pool_object_and_three_sites(tracked, build):
    run = tracked("dup-free", build)
    report = run.report("run", "duplicate free")
    assert re.search(r"\bfaults\b", report), f"pool not named:\n{report}"
    assert int(run.truth["obj"], 16) in hex_ints(report), f"object not named:\n{report}"
    # this free, the previous free, the last alloc
    assert_frame(report, "free_site_c")
    assert_frame(report, "free_site_b")
    assert_frame(report, "alloc_site_a")


@pytest.mark.parametrize("build", ["debug", "stripped"])
def test_dup_free_report_puts_each_site_under_its_heading(tracked, build):
    report = tracked("dup-free", build).report("run", "duplicate free")
    order = ["this free", "free_site_c", "previous free", "free_site_b", "last alloc",
             "alloc_site_a"]
    where = [report.find(word) for word in order]
    assert -1 not in where and where == sorted(where), \
        f"expected {order} in that order:\n{report}"


@pytest.mark.parametrize("build", ["debug", "stripped"])
def test_dup_free_continue_runs_to_the_end(tracked, build):
    run = tracked("dup-free", build)
    assert_exits_normally(run)
    assert len(run.reports()) == 1, run.reports()


def test_pending_pool_is_listed_before_run(tracked):
    run = tracked("dup-free", "debug")
    text = run.section("status-pending")
    # "pending" in the words; the status may say it its own way
    assert re.search(r"\bfaults\b", text), text
    assert re.search(r"pending|armed for creation", text, re.I), text


def test_status_lists_pool_events_faults_and_cache_bypass(tracked):
    run = tracked("dup-free", "debug")
    text = run.section("status")
    assert re.search(r"\bfaults\b", text), text
    assert re.search(r"event", text, re.I), text
    assert re.search(r"cache", text, re.I), f"status does not say caches are bypassed:\n{text}"
    assert re.search(r"duplicate.free|fault\w*\W+1\b", text, re.I), \
        f"status does not show the fault:\n{text}"


def test_history_of_the_double_freed_object(tracked):
    run = tracked("dup-free", "debug")
    text = run.section("history")
    for function in ("alloc_site_a", "free_site_b", "free_site_c"):
        assert frames_naming(text, function), f"{function} missing from history:\n{text}"
    assert text.find("alloc_site_a") < text.find("free_site_b") < text.find("free_site_c") \
        or text.find("free_site_c") < text.find("free_site_b") < text.find("alloc_site_a"), \
        f"history is not in time order:\n{text}"


def test_dup_free_report_keeps_the_caller_lines(tracked):
    """mode_dup_free (inlined into main) calls free_site_b and free_site_c
    from two lines; as in gdb's bt, each backtrace says which one."""
    report = tracked("dup-free", "debug").report("run", "duplicate free")
    this = report[report.find("this free"):report.find("previous free")]
    previous = report[report.find("previous free"):report.find("last alloc")]
    for text, call in ((this, "free_site_c(mp, obj)"), (previous, "free_site_b(mp, obj)")):
        where = f"track_faults.c:{site_line('mode_dup_free', call)}"
        assert where in text, f"{where} (the line of {call}) not in:\n{text}"


# ---------------------------------------------------------------- foreign free


def test_foreign_free_names_both_pools_and_sites(tracked):
    run = tracked("foreign-free")
    assert_clean(run)
    report = run.report("run", "foreign free")
    assert re.search(r"\bpool_a\b", report) and re.search(r"\bpool_b\b", report), report
    assert int(run.truth["obj"], 16) in hex_ints(report), report
    assert_frame(report, "free_into_b")
    assert_frame(report, "alloc_from_a")
    assert_stopped_in(run, "run", "free_into_b")
    assert_exits_normally(run)


def test_track_all_in_a_live_process_catches_foreign_free(tracked):
    run = tracked("foreign-free-all")
    assert_clean(run)
    status = run.section("status")
    for pool in ("pool_a", "pool_b"):
        assert re.search(rf"\b{pool}\b", status), status
    # nothing reported before the foreign free (reports may go to stderr,
    # where steps cannot be told apart, so count them all)
    for label in ("run", "track", "status"):
        assert not FAULT_HEADER.search(run.section(label)), run.gdb
    assert [k for k, _ in run.reports()] == ["foreign free"], run.gdb
    report = run.report("continue", "foreign free")
    assert re.search(r"\bpool_a\b", report) and re.search(r"\bpool_b\b", report), report
    assert frames_naming(report, "free_into_b"), report
    assert_stopped_in(run, "continue", "free_into_b")
    assert_exits_normally(run, "continue2")


# ---------------------------------------------------------------- stray free


def test_stray_free_names_the_pointer_and_site(tracked):
    run = tracked("stray-free")
    assert_clean(run)
    report = run.report("run", "stray free")
    addrs = hex_ints(report)
    assert int(run.truth["stray"], 16) in addrs, f"stray pointer not named:\n{report}"
    assert int(run.truth["obj"], 16) in addrs, f"the object it points into not named:\n{report}"
    assert re.search(r"\bfaults\b", report), report
    assert_frame(report, "free_inside")
    assert_stopped_in(run, "run", "free_inside")
    assert_exits_normally(run)


# ---------------------------------------------------------------- dup alloc


def test_dup_alloc_stops_when_stop_on_duplicate_free_is_off(tracked):
    run = tracked("dup-alloc")
    assert_clean(run)
    assert re.search(r"\boff\b", run.section("show-stop")), run.section("show-stop")
    # The duplicate free in give_back_twice did not stop the program ...
    bt = run.section("bt")
    assert not frames_naming(bt, "give_back_twice"), f"stopped at the duplicate free:\n{bt}"
    # ... the duplicate alloc did, in take_again_2, naming the earlier alloc.
    report = next((t for k, t in run.reports("run") if k == "duplicate alloc"), None)
    assert report is not None, f"no duplicate alloc report\n{run.gdb}"
    assert re.search(r"\btiny\b", report), report
    assert int(run.truth["obj"], 16) in hex_ints(report), report
    assert_frame(report, "take_again_2")
    assert_frame(report, "take_again_1")
    assert report.find("last alloc") < report.rfind("take_again_1"), report
    assert_stopped_in(run, "run", "take_again_2")
    assert_exits_normally(run)


# ---------------------------------------------------------------- rte_malloc


def _leaky_groups(groups):
    return [g for g in groups if any(re.search(r"\bleaky_site\b", f) for f in g["backtrace"])]


def _tidy_groups(groups):
    return [g for g in groups if any(re.search(r"\btidy_site\b", f) for f in g["backtrace"])]


@pytest.mark.parametrize("build", ["debug", "stripped"])
def test_malloc_leak_is_one_group_of_seven(tracked, build):
    run = tracked("malloc-leak", build)
    assert_clean(run)
    no_faults(run)
    groups = json_in(run.section("leaks-stdout"))
    assert isinstance(groups, list), groups
    for g in groups:
        assert {"count", "bytes", "pool", "backtrace", "oldest_age"} <= set(g), g
        assert g["pool"] == "rte_malloc", g
        assert isinstance(g["backtrace"], list) and all(isinstance(f, str) for f in g["backtrace"]), g
    leaky = _leaky_groups(groups)
    assert len(leaky) == 1, f"expected one group from leaky_site:\n{groups}"
    assert (leaky[0]["count"], leaky[0]["bytes"]) == (run.truth["leak_count"], run.truth["leak_bytes"]) \
        == (7, 700), leaky[0]
    assert not _tidy_groups(groups), f"tidy_site freed everything:\n{groups}"
    if build == "debug":
        where = f"track_faults.c:{site_line('leaky_site', 'rte_malloc(')}"
        assert any("leaky_site" in f and where in f for f in leaky[0]["backtrace"]), \
            f"leaky_site frame not at {where}: {leaky[0]['backtrace']}"


def test_malloc_leak_groups_largest_first(tracked):
    groups = json_in(tracked("malloc-leak").section("leaks-stdout"))
    by_count = [g["count"] for g in groups]
    by_bytes = [g["bytes"] for g in groups]
    assert by_count == sorted(by_count, reverse=True) or by_bytes == sorted(by_bytes, reverse=True), \
        groups


def test_malloc_leak_json_file_and_csv(tracked):
    run = tracked("malloc-leak")
    on_stdout = json_in(run.section("leaks-stdout"))
    in_file = run.load_json("leaks.json")
    strip = [{k: v for k, v in g.items() if k != "oldest_age"} for g in on_stdout]
    assert [{k: v for k, v in g.items() if k != "oldest_age"} for g in in_file] == strip
    rows = run.load_csv("leaks.csv")
    assert rows and {"count", "bytes"} <= set(rows[0]), rows[:1]
    leaky = [r for r in rows if "leaky_site" in " ".join(str(v) for v in r.values())]
    assert len(leaky) == 1 and int(leaky[0]["count"]) == 7 and int(leaky[0]["bytes"]) == 700, leaky
    assert not [r for r in rows if "tidy_site" in " ".join(str(v) for v in r.values())], rows


def test_leaks_since_mark(tracked):
    run = tracked("malloc-leak")
    since_before = run.load_json("since-before.json")
    leaky = _leaky_groups(since_before)
    assert len(leaky) == 1 and leaky[0]["count"] == 7, since_before
    assert not _tidy_groups(since_before), since_before
    since_mid = run.load_json("since-mid.json")
    assert not _leaky_groups(since_mid) and not _tidy_groups(since_mid), since_mid


def test_diff_between_marks(tracked):
    run = tracked("malloc-leak")
    first = run.section("diff-before-mid")
    assert frames_naming(first, "leaky_site") and re.search(r"\b7\b", first), first
    second = run.section("diff-mid-end")
    assert not frames_naming(second, "leaky_site"), second
    assert not frames_naming(second, "tidy_site"), second


def test_history_of_a_leaked_block(tracked):
    run = tracked("malloc-leak")
    text = run.section("history")
    assert frames_naming(text, "leaky_site"), text
    assert not frames_naming(text, "tidy_site"), text


def test_malloc_leak_program_ends_normally(tracked):
    assert_exits_normally(tracked("malloc-leak"))


def test_backtrace_depth_setting(tracked):
    run = tracked("malloc-leak", "stripped")
    assert re.search(r"\b3\b", run.section("show-depth")), run.section("show-depth")
    groups = json_in(run.section("leaks-stdout"))
    assert groups and all(len(g["backtrace"]) <= 3 for g in groups), groups


def test_double_rte_free(tracked):
    run = tracked("double-rte-free")
    assert_clean(run)
    report = run.report("run", "double rte_free")
    assert int(run.truth["ptr"], 16) in hex_ints(report), report
    assert_frame(report, "rte_free_twice")
    assert_frame(report, "rte_free_once")
    assert_frame(report, "malloc_site")
    assert_stopped_in(run, "run", "rte_free_twice")
    assert_exits_normally(run)
    assert len(run.reports()) == 1, run.reports()


def test_rte_free_of_unknown_pointer(tracked):
    run = tracked("unknown-rte-free")
    assert_clean(run)
    report = run.report("run", "rte_free of unknown pointer")
    assert int(run.truth["bad"], 16) in hex_ints(report), report
    assert_frame(report, "rte_free_inside")
    assert_stopped_in(run, "run", "rte_free_inside")
    assert_exits_normally(run)
    assert len(run.reports()) == 1, run.reports()


# ---------------------------------------------------------------- two lcores


def test_two_lcores_no_fault_and_stopped_at_checkpoint(tracked):
    run = tracked("two-lcores")
    assert_clean(run)
    no_faults(run)
    assert frames_naming(run.section("bt"), "mptrack_checkpoint"), run.gdb


def test_two_lcores_shadow_in_use_equals_dpdk(tracked):
    run = tracked("two-lcores")
    truth = run.truth
    groups = run.load_json("leaks.json")
    assert all(g["pool"] == "twolc" for g in groups), groups
    assert sum(g["count"] for g in groups) == truth["in_use"] == 16, groups
    for g in groups:
        assert any(re.search(r"\blcore_get\b", f) for f in g["backtrace"]), g
    status = run.section("status")
    line = [ln for ln in status.splitlines() if "twolc" in ln]
    assert line, status
    assert re.search(rf"\b{truth['in_use']}\b", status), \
        f"status does not show the in-use count {truth['in_use']}:\n{status}"


def test_two_lcores_in_use_set_is_what_the_program_holds(tracked):
    run = tracked("two-lcores")
    rows = run.load_json("in-use.json")
    got = [int(r["addr"], 16) for r in rows]
    assert sorted(got) == sorted(int(a, 16) for a in run.truth["held"])


def test_dump_csv_has_backtrace_columns(tracked):
    run = tracked("two-lcores")
    rows = run.load_csv("all.csv")
    assert rows and {"addr", "alloc_backtrace", "free_backtrace"} <= set(rows[0]), rows[:1]
    held = {int(a, 16) for a in run.truth["held"]}
    by_addr = {int(r["addr"], 16): r for r in rows}
    assert held <= set(by_addr)
    for a in held:
        assert re.search(r"\blcore_get\b", by_addr[a]["alloc_backtrace"]), by_addr[a]
    # a free object was last freed by lcore_put, or put in the pool when it
    # was made (make_pool) and never got
    freed = [r for r in rows if int(r["addr"], 16) not in held and r["free_backtrace"]]
    assert any(re.search(r"\blcore_put\b", r["free_backtrace"]) for r in freed), freed[:3]
    odd = [r for r in freed if not re.search(r"\b(lcore_put|make_pool)\b", r["free_backtrace"])]
    assert not odd, odd[:3]


def test_untrack_restores_the_cache(tracked):
    run = tracked("two-lcores")
    assert "twolc" not in run.section("status-after"), run.section("status-after")
    # The program wrote its truth while tracked: it saw cache_size 0 (bypassed).
    assert run.truth["pool"]["cache_size"] == 0, run.truth["pool"]
    pools = {p["name"]: p for p in run.load_json("pools.json")}
    assert pools["twolc"]["cache_size"] == 32, pools["twolc"]
    # the program puts back what it holds and checks in_use is 0
    assert_exits_normally(run)


# ---------------------------------------------------------------- frame lines

# (run, function, text of the call in that function): with debug info, the
# report's frame naming the function is at the call's line, as gdb's bt says,
# even when the mempool call is inlined into it.
CALL_LINES = [
    ("dup-free", "free_site_c", "rte_mempool_put("),
    ("dup-free", "free_site_b", "rte_mempool_put("),
    ("dup-free", "alloc_site_a", "rte_mempool_get("),
    ("foreign-free", "free_into_b", "rte_mempool_put("),
    ("foreign-free", "alloc_from_a", "rte_mempool_get("),
    ("stray-free", "free_inside", "rte_mempool_put("),
    ("dup-alloc", "take_again_2", "rte_mempool_get("),
    ("dup-alloc", "take_again_1", "rte_mempool_get("),
    ("double-rte-free", "rte_free_twice", "rte_free("),
    ("double-rte-free", "rte_free_once", "rte_free("),
    ("double-rte-free", "malloc_site", "rte_malloc("),
    ("unknown-rte-free", "rte_free_inside", "rte_free("),
]


@pytest.mark.parametrize("name,function,needle", CALL_LINES,
                         ids=[f"{n}-{f}" for n, f, _ in CALL_LINES])
def test_report_frame_is_at_the_call_line(tracked, name, function, needle):
    run = tracked(name)
    report = "".join(text for _, text in run.reports())
    frames = frames_naming(report, function)
    assert frames, f"{function} not named in:\n{report}"
    where = f"track_faults.c:{site_line(function, needle)}"
    assert any(where in f for f in frames), \
        f"no frame of {function} at {where} (the call's line, as in gdb's bt) in:\n{report}"


def test_two_lcores_leak_groups_split_by_lcore(tracked):
    """Each lcore's gets have their own backtrace (lcore 0 from
    mode_two_lcores, lcore 1 from the EAL thread), so each group is exactly
    what that lcore holds (the groups' optional "addrs")."""
    run = tracked("two-lcores")
    groups = run.load_json("leaks.json")
    if not all("addrs" in g for g in groups):
        pytest.skip("leak groups carry no addrs")
    lcores = {w["lcore"]: {int(a, 16) for a in w["held"]} for w in run.truth["lcores"]}
    main = [g for g in groups if any("mode_two_lcores" in f for f in g["backtrace"])]
    worker = [g for g in groups if g not in main]
    got_main = {int(a, 16) for g in main for a in g["addrs"]}
    got_worker = {int(a, 16) for g in worker for a in g["addrs"]}
    assert got_main == lcores[run.truth["main_lcore"]], groups
    assert got_worker == set().union(*(v for k, v in lcores.items()
                                       if k != run.truth["main_lcore"])), groups
