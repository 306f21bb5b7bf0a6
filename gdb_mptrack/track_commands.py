"""The tracking commands: track, untrack, status, leaks, history, mark, diff, and settings.

Thin: parse, call tracking.py (breakpoints) and shadow.py (tables), print.
Leak groups are printed as a table (tabulate) or written as JSON/CSV with
one backtrace per group, frames symbolized once per distinct PC.
"""

import fnmatch
import os

import gdb  # pylint: disable=import-error

from . import backtraces, render, tracking
from .commands import Subcommand, complete_pool, emit, evaluate_address, make_parser, note
from .shadow import HEAP_POOL
from .target import UserError, session

TRACK = make_parser("track", "Track gets and puts of pools (and/or the rte_malloc family) with breakpoints, "
                             "keep shadow tables with backtraces, and stop on duplicate, foreign and stray "
                             "frees. A pool that does not exist yet is armed when it is created. Tracked "
                             "pools' per-lcore caches are flushed and bypassed (cache_size 0) while tracked.")
TRACK.add_argument("pools", metavar="POOL", nargs="*", help="pool names or globs")
TRACK.add_argument("--all", action="store_true", help="every pool, present and future")
TRACK.add_argument("--malloc", action="store_true", help="the rte_malloc family and rte_free")
TRACK.add_argument("--bt", type=int, metavar="N", help="backtrace depth (default 8; same as set mptrack backtrace-depth)")


def _live_process():
    inferior = gdb.selected_inferior()
    if inferior.pid == 0:
        return False
    if inferior.connection is not None and inferior.connection.type == "core":
        raise UserError("tracking needs a live process; a core holds no breakpoints "
                        "(use 'mptrack dump' on it, or the preload agent's tables)")
    return True


class TrackCommand(Subcommand):
    __doc__ = "Track pools or the rte_malloc family with breakpoints.\n" + TRACK.format_help()
    parser = TRACK

    def __init__(self):
        super().__init__("track")

    def complete(self, text, word):
        return complete_pool(word or "")

    def run(self, args):
        if not (args.pools or args.all or args.malloc):
            raise UserError("name pools, or give --all or --malloc (see 'help mptrack track')")
        if args.bt is not None:
            if args.bt < 0:
                raise UserError("--bt must be 0 or more")
            tracking.SETTINGS.backtrace_depth = args.bt
        live = _live_process()
        t = tracking.tracker()
        if args.malloc:
            t.track_malloc(from_start=not live)
            gdb.write("tracking the rte_malloc family%s\n" % (
                "" if not live else " (blocks allocated before now are of unknown origin)"))
        if not (args.pools or args.all):
            return
        t.arm_creation()
        t.track_all = t.track_all or args.all
        t.pending_names |= set(args.pools)
        wanted = set(args.pools)
        if live:
            s = session()
            pools, errors = s.pools()
            for error in errors:
                note("mptrack: " + error)
            for pool in pools:
                if t.wants(pool.name) and pool.addr not in t.pools:
                    try:
                        tracked = tracking.track_live(t, pool, s.ops_names)
                    except tracking.TrackError as e:
                        note("mptrack: %s" % e)
                        continue
                    gdb.write("tracking pool %s at 0x%x (%s): %d in use (origin unknown), %s\n" % (
                        pool.name, pool.addr, pool.ops, tracked.shadow.in_use_count(),
                        "cache of %d bypassed" % tracked.original_cache_size
                        if tracked.original_cache_size else "no cache"))
                    wanted = {w for w in wanted if not fnmatch.fnmatchcase(pool.name, w)}
        for name in sorted(wanted):
            gdb.write("no pool matches %s yet: tracking arms when one is created\n" % name)


UNTRACK = make_parser("untrack", "Stop tracking pools (their cache size is restored) or the rte_malloc family.")
UNTRACK.add_argument("pools", metavar="POOL", nargs="*", help="pool names")
UNTRACK.add_argument("--all", action="store_true", help="every tracked pool")
UNTRACK.add_argument("--malloc", action="store_true", help="the rte_malloc family")


class UntrackCommand(Subcommand):
    __doc__ = "Stop tracking pools or the rte_malloc family.\n" + UNTRACK.format_help()
    parser = UNTRACK

    def __init__(self):
        super().__init__("untrack")

    def complete(self, text, word):
        t = tracking.tracker(create=False)
        return [p.name for p in t.pools.values() if p.name.startswith(word or "")] if t else []

    def run(self, args):
        t = tracking.tracker(create=False)
        if t is None:
            raise UserError("nothing is tracked")
        if args.malloc:
            t.untrack_malloc()
            gdb.write("no longer tracking the rte_malloc family\n")
        names = set(args.pools)
        unknown = names - {p.name for p in t.pools.values()} - t.pending_names
        if unknown:
            raise UserError("not tracked: %s" % ", ".join(sorted(unknown)))
        for mp, tracked in list(t.pools.items()):
            if args.all or tracked.name in names:
                t.untrack(mp)
                gdb.write("no longer tracking pool %s%s\n" % (tracked.name, " (cache size %d restored)" % (
                    tracked.original_cache_size) if tracked.original_cache_size else ""))
        t.pending_names -= names
        if args.all:
            t.pending_names.clear()
            t.track_all = False


class StatusCommand(Subcommand):
    """Show what is tracked, events seen, faults, and the cache bypass.
usage: mptrack status"""
    parser = make_parser("status", "Show what is tracked, events seen, faults and settings.")

    def __init__(self):
        super().__init__("status")

    def run(self, args):
        t = tracking.tracker(create=False)
        if t is None or not (t.pools or t.pending_names or t.track_all or t.shadows.heap is not None):
            gdb.write("nothing is tracked (see 'help mptrack track')\n")
            return
        settings = tracking.SETTINGS
        for tracked in t.pools.values():
            gdb.write("pool %s at 0x%x: %d events, %d in use in the shadow; %s\n" % (
                tracked.name, tracked.addr, tracked.shadow.events, tracked.shadow.in_use_count(),
                "per-lcore cache of %d bypassed (cache_size 0 while tracked)" % tracked.original_cache_size
                if tracked.original_cache_size else "no per-lcore cache"))
        pending = sorted(t.pending_names - {p.name for p in t.pools.values()})
        if t.track_all:
            pending.append("every new pool (--all)")
        if pending:
            gdb.write("armed for creation: %s\n" % ", ".join(pending))
        heap = t.shadows.heap
        if heap is not None:
            gdb.write("rte_malloc family: %d events, %d blocks out (%d bytes)%s\n" % (
                heap.events, heap.in_use_count(), sum(e.size for _, e in heap.in_use()),
                "" if t.malloc_from_start else ", %d frees of blocks allocated before tracking" % t.unknown_frees))
        kinds = {}
        for fault in t.shadows.faults:
            kinds[fault.kind] = kinds.get(fault.kind, 0) + 1
        gdb.write("faults: %s\n" % (", ".join("%d %s" % (n, k) for k, n in sorted(kinds.items())) or "none"))
        gdb.write("backtrace depth %d; stop on %s\n" % (settings.backtrace_depth, ", ".join(
            "%s %s" % (k, "on" if v else "off") for k, v in settings.stop_on.items())))


LEAKS = make_parser("leaks", "Objects and blocks still out, grouped by allocation backtrace, largest group first.")
LEAKS.add_argument("pools", metavar="POOL", nargs="*", help="tracked pools (default: all tracked)")
LEAKS.add_argument("--malloc", action="store_true", help="rte_malloc blocks (alone, unless pools are named)")
LEAKS.add_argument("--since", metavar="MARK", help="only what was allocated after 'mptrack mark MARK'")
LEAKS.add_argument("--json", metavar="FILE", help="write a JSON array to FILE ('-' for stdout)")
LEAKS.add_argument("--csv", metavar="FILE", help="write CSV to FILE ('-' for stdout)")

LEAK_KEYS = ("count", "bytes", "pool", "oldest_age", "backtrace")


def current_shadows(required=True):
    """(source, shadow.Tracker): breakpoint tracking when active, else the preload agent's tables."""
    t = tracking.tracker(create=False)
    if t is not None and (t.shadows.pools or t.shadows.heap is not None or t.pools):
        return "breakpoints", t.shadows
    if gdb.selected_inferior().pid:
        s = session()
        if "agent" not in s.derived:
            from .agent_view import agent_tables, shadows_from_agent
            tables = agent_tables()
            s.derived["agent"] = shadows_from_agent(tables) if tables is not None else None
        if s.derived["agent"] is not None:
            return "agent", s.derived["agent"]
    if required:
        checkout = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        raise UserError("nothing is tracked: use 'mptrack track ...', or run the program with the preload "
                        "agent (LD_PRELOAD=$(cd %s && python3 -m gdb_mptrack preload-path))" % checkout)
    return None, None


def _tracker_or_fail():
    """The breakpoint tracker (marks and diffs need its event sequence)."""
    t = tracking.tracker(create=False)
    if t is None:
        raise UserError("nothing is tracked with breakpoints (see 'help mptrack track'); marks need it")
    return t


def _mark(t, name):
    try:
        return t.shadows.mark_seq(name)
    except KeyError:
        raise UserError("no mark %r; marks: %s" % (name, ", ".join(sorted(t.shadows.marks)) or "none")) from None


def _leak_records(groups, now):
    return [{"count": g.count, "bytes": g.bytes, "pool": g.pool,
             "oldest_age": None if g.oldest is None else round(now - g.oldest, 3),
             "backtrace": backtraces.SYMBOLS.frames(g.pcs),
             "addrs": [render.hexaddr(a) for a in g.addrs[:16]]} for g in groups]


def _print_leaks(records, args):
    if args.json:
        emit(render.to_json(records), args.json)
    if args.csv:
        rows = [dict(r, backtrace=" | ".join(r["backtrace"])) for r in records]
        emit(render.to_csv(rows, LEAK_KEYS), args.csv)
    if args.json or args.csv:
        return
    if not records:
        gdb.write("no leaks: everything allocated is back\n")
    for r in records:
        age = "origin unknown (out before tracking)" if not r["backtrace"] else (
            "oldest %.1f s ago" % r["oldest_age"] if r["oldest_age"] is not None else "")
        noun = "block" if r["pool"] == HEAP_POOL else "object"
        gdb.write("%d %s%s (%d bytes) in %s, %s\n" % (r["count"], noun, "" if r["count"] == 1 else "s",
                                                     r["bytes"], r["pool"], age))
        for i, frame in enumerate(r["backtrace"]):
            gdb.write("    #%d %s\n" % (i, frame))


def _chosen_shadows(shadows, pools, heap_flag):
    names = set(pools) if pools else None
    if names:
        unknown = names - {p.name for p in shadows.pools.values()}
        if unknown:
            raise UserError("not tracked: %s" % ", ".join(sorted(unknown)))
    if heap_flag and not pools:
        if shadows.heap is None:
            raise UserError("the rte_malloc family is not tracked (mptrack track --malloc, or MPTRACK_MALLOC=1 "
                            "for the agent)")
        return [shadows.heap]
    return shadows.shadows(names, heap=heap_flag or not pools)


class LeaksCommand(Subcommand):
    __doc__ = "Show what is still allocated, grouped by allocation backtrace.\n" + LEAKS.format_help()
    parser = LEAKS

    def __init__(self):
        super().__init__("leaks")

    def complete(self, text, word):
        return complete_pool(word or "")

    def run(self, args):
        source, shadows = current_shadows()
        since = _mark(_tracker_or_fail(), args.since) if args.since else 0
        groups = shadows.leaks(_chosen_shadows(shadows, args.pools, args.malloc), since)
        if source == "agent" and not (args.json or args.csv):
            gdb.write("from the preload agent's tables (ages relative to its newest event)\n")
        _print_leaks(_leak_records(groups, shadows.now()), args)


DIFF = make_parser("diff", "What was allocated between two marks and is still out.")
DIFF.add_argument("first", metavar="A", help="earlier mark")
DIFF.add_argument("second", metavar="B", help="later mark")
DIFF.add_argument("--json", metavar="FILE", help="write a JSON array to FILE ('-' for stdout)")
DIFF.add_argument("--csv", metavar="FILE", help="write CSV to FILE ('-' for stdout)")


class DiffCommand(Subcommand):
    __doc__ = "Leaks allocated between two marks.\n" + DIFF.format_help()
    parser = DIFF

    def __init__(self):
        super().__init__("diff")

    def run(self, args):
        t = _tracker_or_fail()
        first, second = _mark(t, args.first), _mark(t, args.second)
        if second < first:
            first, second = second, first
        groups = t.shadows.leaks(t.shadows.shadows(heap=True), first, second)
        _print_leaks(_leak_records(groups, t.shadows.now()), args)


MARK = make_parser("mark", "Name the current point of the event stream, for 'leaks --since' and 'diff'.")
MARK.add_argument("name", metavar="NAME")


class MarkCommand(Subcommand):
    __doc__ = "Name the current point in time for leaks --since and diff.\n" + MARK.format_help()
    parser = MARK

    def __init__(self):
        super().__init__("mark")

    def run(self, args):
        t = tracking.tracker()
        seq = t.shadows.mark(args.name)
        gdb.write("mark %s at event %d\n" % (args.name, seq))


HISTORY = make_parser("history", "Every recorded event of the object or block holding ADDR, with backtraces.")
HISTORY.add_argument("address", metavar="ADDR", nargs="+", help="address or expression")


class HistoryCommand(Subcommand):
    __doc__ = "Show the recorded events of an object or block.\n" + HISTORY.format_help()
    parser = HISTORY

    def __init__(self):
        super().__init__("history")

    def run(self, args):
        _, shadows = current_shadows()
        addr = evaluate_address(args.address)
        for shadow_pool in shadows.shadows(heap=True):
            entry = shadow_pool.entries.get(addr)
            if entry is None:
                continue
            gdb.write("0x%x in %s: %s, %d events recorded (last %d kept)\n" % (
                addr, shadow_pool.name, entry.state, len(entry.history), entry.history.maxlen))
            if not entry.history:
                gdb.write("  origin unknown: it was %s before tracking began\n" % entry.state)
            for event in entry.history:
                gdb.write(tracking.format_event(event.kind, event) + "\n")
            return
        raise UserError("no tracked object or block starts at 0x%x" % addr)


def backtrace_columns(pool):
    """For `mptrack dump`: addr -> (alloc_backtrace, free_backtrace) when pool is tracked, else None."""
    _, shadows = current_shadows(required=False)
    shadow_pool = shadows.pools.get(pool.addr) if shadows else None
    if shadow_pool is None:
        return None

    def columns(addr):
        entry = shadow_pool.entries.get(addr)
        if entry is None:
            return "", ""
        return tracking.backtrace_text(entry.last_alloc), tracking.backtrace_text(entry.last_free)
    return columns


# --- settings ---------------------------------------------------------------

class _Prefix(gdb.Command):
    """`set mptrack ...` / `show mptrack ...`; a bare `show` prefix shows every setting under it."""

    def __init__(self, name, doc):
        self.__doc__ = doc
        self.name = name
        super().__init__(name, gdb.COMMAND_DATA, prefix=True)

    def invoke(self, argument, from_tty):
        if not self.name.startswith("show "):
            raise gdb.GdbError("mptrack: name a setting (see 'help %s')" % self.name)
        settings = ["show mptrack stop-on " + kind for kind in tracking.FAULT_KINDS]
        if self.name == "show mptrack":
            settings.append("show mptrack backtrace-depth")
        for command in settings:
            gdb.execute(command, from_tty)


class StopOnParameter(gdb.Parameter):
    """Whether a fault of this kind stops the program (on) or is only recorded and reported (off)."""

    set_doc = "Set whether this kind of fault stops the program."
    show_doc = "Show whether this kind of fault stops the program."

    def __init__(self, kind):
        self.kind = kind
        super().__init__("mptrack stop-on " + kind, gdb.COMMAND_DATA, gdb.PARAM_BOOLEAN)
        self.value = tracking.SETTINGS.stop_on[kind]

    def get_set_string(self):
        tracking.SETTINGS.stop_on[self.kind] = bool(self.value)
        return ""

    def get_show_string(self, svalue):
        return "Stopping on %s faults is %s." % (self.kind, svalue)


class BacktraceDepthParameter(gdb.Parameter):
    """Frames recorded per alloc and free event (0: none)."""

    set_doc = "Set how many frames each tracked event records."
    show_doc = "Show how many frames each tracked event records."

    def __init__(self):
        super().__init__("mptrack backtrace-depth", gdb.COMMAND_DATA, gdb.PARAM_ZUINTEGER)
        self.value = tracking.SETTINGS.backtrace_depth

    def get_set_string(self):
        tracking.SETTINGS.backtrace_depth = int(self.value)
        return ""

    def get_show_string(self, svalue):
        return "Tracked events record %s frames." % tracking.SETTINGS.backtrace_depth


def register():
    TrackCommand()
    UntrackCommand()
    StatusCommand()
    LeaksCommand()
    DiffCommand()
    MarkCommand()
    HistoryCommand()
    _Prefix("set mptrack", "Settings of gdb-mptrack.")
    _Prefix("show mptrack", "Settings of gdb-mptrack.")
    _Prefix("set mptrack stop-on", "Which faults stop the program.")
    _Prefix("show mptrack stop-on", "Which faults stop the program.")
    for kind in tracking.FAULT_KINDS:
        StopOnParameter(kind)
    BacktraceDepthParameter()
    tracking.install_detach_hook()
