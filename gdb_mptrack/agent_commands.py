"""`mptrack agent attach|detach|status`: the preload agent injected into a live process.

Part of the target layer (it talks to gdb).  Approach (docs/agent.md, "Attaching to a live
process", has the details and the limits):

- attach: with the process stopped and scheduler-locking on (only the thread
  gdb runs moves), load the agent's attach build (agent_attach.py) with an
  inferior call of dlopen, unless an agent is loaded already (preloaded, or
  attached before); set the chosen pools' cache flush thresholds to 0 and
  patch the ops (mptrack_agent_prepare); bring every thread that may be in
  the middle of a get or put to a safe point (rendezvous); then, per pool,
  write its free objects (the driver's ring or stack and every lcore cache,
  read from memory by pools.Pool as `mptrack dump` does) into the agent's
  scratch memory and call mptrack_agent_attach(): the agent builds the
  pool's tables (everything else in use, origin unknown), flushes the caches
  into the driver and turns them off.  Faults then raise SIGTRAP.
- rendezvous (agent_rendezvous.py): each thread not blocked in a system call
  runs alone until it calls the agent's enqueue or dequeue wrapper outside a
  cache operation, or stays quiet for a while and counts as idle.
- a stop on a SIGTRAP the program raised whose stack passes through the
  agent is a fault: the newest fault of the agent's tables is printed
  (symbolized here, with inlined frames and lines) and the program's frame
  that called into the pool is selected.
- detach: rendezvous again, then mptrack_agent_detach() restores caches,
  ops, error mode; the library stays loaded and inert.  It also runs before
  gdb detaches or exits.
"""

import fnmatch
import os

import gdb  # pylint: disable=import-error

from . import agent_attach, backtraces, tracking
from .agent import BuildError
from .agent_rendezvous import FRAMES_CHECKED, MEMPOOL_FUNCTIONS, in_agent, rendezvous, settling
from .agent_tables import AgentTablesError
from .agent_view import agent_faults, agent_tables
from .commands import Subcommand, complete_pool, emit, make_parser, note
from .decode import PoolHeader
from .pools import Pool
from .render import hexaddr, to_json
from .target import USER_ERRORS, UserError, forget, session, symbol_address

ATTACH_MODES = {1: "attached by gdb (loaded with dlopen)", 2: "preloaded (LD_PRELOAD), pools attached by gdb too"}

_state = {"last_fault": {}}


# --- small gdb helpers --------------------------------------------------------

def _live_inferior():
    inferior = gdb.selected_inferior()
    if inferior.pid == 0:
        raise UserError("no process: run the program or attach to it first")
    if inferior.connection is not None and inferior.connection.type == "core":
        raise UserError("the agent attaches to a live process, not a core (for a core of a process that "
                        "ran with the agent, use 'mptrack agent status', leaks, history)")
    if any(t.is_running() for t in inferior.threads()):
        raise UserError("the process is running: stop it first (Ctrl-C, or 'interrupt')")
    return inferior


def loaded_agent():
    """The path of the agent library loaded in the process, or None."""
    for objfile in gdb.objfiles():
        if objfile.is_valid() and os.path.basename(objfile.filename).startswith(agent_attach.LIBRARY_PREFIX):
            return objfile.filename
    return None


def _read_message():
    addr = symbol_address("mptrack_agent_message")
    if addr is None:
        return ""
    data = gdb.selected_inferior().read_memory(addr, 512).tobytes()
    return data.split(b"\0", 1)[0].decode("utf-8", "replace")


def attach_mode(read=None):
    """0 (not attached), 1 or 2 (ATTACH_MODES) from the process, or None when no agent with attach support
    is loaded; ``read(addr, size)`` reads the target (default: gdb's live inferior)."""
    addr = symbol_address("mptrack_agent_attach_mode")
    if addr is None:
        return None
    read = read or (lambda a, n: gdb.selected_inferior().read_memory(a, n).tobytes())
    try:
        return int.from_bytes(bytes(read(addr, 4)), "little", signed=True)
    except (gdb.MemoryError,) + USER_ERRORS:
        return None


def mode_text(mode, library):
    """How the agent came to be in the process, for status."""
    if mode in ATTACH_MODES:
        return ATTACH_MODES[mode]
    if mode == 0 and library and "-attach-" in os.path.basename(library):
        return "loaded by gdb, detached (inert)"
    return "preloaded (LD_PRELOAD)"


class _Stopped:
    """Scheduler-locking and unwindonsignal on; the selected thread and frame restored afterwards."""

    def __enter__(self):
        self.thread = gdb.selected_thread()
        try:
            self.frame = gdb.selected_frame()
        except gdb.error:
            self.frame = None
        self.old = gdb.parameter("scheduler-locking")
        self.unwind = gdb.parameter("unwindonsignal")
        gdb.execute("set scheduler-locking on", to_string=True)
        # a signal during one of our calls (a user's Ctrl-C) unwinds it instead of leaving the thread in it
        gdb.execute("set unwindonsignal on", to_string=True)
        return self

    def __exit__(self, *exc):
        gdb.execute("set unwindonsignal %s" % ("on" if self.unwind else "off"), to_string=True)
        gdb.execute("set scheduler-locking %s" % self.old, to_string=True)
        try:
            if self.thread is not None and self.thread.is_valid():
                self.thread.switch()
                if self.frame is not None and self.frame.is_valid():
                    self.frame.select()
        except gdb.error:
            pass
        return False


def _call(expression, what):
    """Evaluate an inferior call (scheduler-locked by the caller); UserError on failure."""
    try:
        return gdb.parse_and_eval(expression)
    except gdb.error as e:
        raise UserError("%s failed in the process: %s" % (what, str(e).splitlines()[0])) from None


# --- attach ---------------------------------------------------------------------

def _load_agent(library):
    """dlopen the attach build unless an agent is loaded; returns (path, loaded now)."""
    path = loaded_agent()
    if path is not None:
        if symbol_address("mptrack_agent_attach") is None:
            raise UserError("the agent loaded in the process (%s) predates attach support; run the program "
                            "with a current agent (preload-path) or without one" % path)
        return path, False
    if library is None:
        try:
            library = str(agent_attach.attach_path())
        except BuildError as e:
            raise UserError("cannot build the agent: %s" % str(e).splitlines()[0]) from None
    library = os.path.abspath(library)
    if not os.path.exists(library):
        raise UserError("no agent library %s" % library)
    quoted = library.replace("\\", "\\\\").replace('"', '\\"')
    handle = int(_call('(void *) dlopen("%s", 2)' % quoted, "dlopen"))  # RTLD_NOW
    if handle == 0:
        error = _call("(char *) dlerror()", "dlerror")
        text = error.string() if int(error) else "unknown error"
        raise UserError("dlopen of %s failed in the process: %s" % (library, text))
    if symbol_address("mptrack_agent_attach") is None:
        raise UserError("loaded %s, but gdb sees no mptrack_agent_attach in it" % library)
    return library, True


def _attach_pool(pool, globs):
    """Write the request for one pool into the agent's scratch memory and call the agent; (result, message)."""
    free = [addr for _, addr, state, _ in pool.states() if state == "free"]
    try:
        request = agent_attach.attach_request(pool.addr, free, globs)
    except ValueError as e:
        raise UserError(str(e)) from None
    buf = int(_call("(void *) mptrack_agent_scratch(%d)" % len(request), "mptrack_agent_scratch"))
    if buf == 0:
        raise UserError("the agent could not map %d bytes for the request" % len(request))
    gdb.selected_inferior().write_memory(buf, request)
    result = int(_call("(int) mptrack_agent_attach((void *) 0x%x)" % buf, "mptrack_agent_attach"))
    return result, _read_message()


def _detach_agent_now():
    """Call mptrack_agent_detach (scheduler-locked by the caller); (result, message)."""
    result = int(_call("(int) mptrack_agent_detach()", "mptrack_agent_detach"))
    return result, _read_message()


def choose_pools(pools, names, every):
    """The pools matching names or globs (all with every); UserError naming what matched nothing."""
    if every:
        return list(pools)
    chosen, unmatched = [], []
    for name in names:
        hits = [p for p in pools if fnmatch.fnmatchcase(p.name, name)]
        if not hits:
            unmatched.append(name)
        chosen += [p for p in hits if p not in chosen]
    if unmatched:
        raise UserError("no pool matches %s; pools: %s" % (", ".join(unmatched), ", ".join(p.name for p in pools)))
    return chosen


ATTACH = make_parser("agent attach",
                     "Load the preload agent into this stopped process and track the named pools (or --all) at "
                     "native speed from now on: their per-lcore caches are flushed and bypassed, objects already "
                     "out are in use with origin unknown, and a fault stops gdb (SIGTRAP) with its report. "
                     "Pools created later with a matching name are tracked from their creation.")
ATTACH.add_argument("pools", metavar="POOL", nargs="*", help="pool names or globs")
ATTACH.add_argument("--all", action="store_true", help="every pool, present and future")
ATTACH.add_argument("--library", metavar="FILE",
                    help="the agent library to load (default: the attach build, built on first use)")


class AgentPrefix(gdb.Command):
    """Inject the preload agent into a live process, take it out, show what it tracks."""

    def __init__(self):
        super().__init__("mptrack agent", gdb.COMMAND_DATA, gdb.COMPLETE_NONE, prefix=True)


class AttachCommand(Subcommand):
    __doc__ = "Attach the preload agent to pools of this live process.\n" + ATTACH.format_help()
    parser = ATTACH

    def __init__(self):
        super().__init__("agent attach")

    def complete(self, text, word):
        return complete_pool(word or "")

    def run(self, args):
        if not args.pools and not args.all:
            raise UserError("name pools, or give --all (see 'help mptrack agent attach')")
        if args.pools and args.all:
            raise UserError("give pool names or --all, not both")
        inferior = _live_inferior()
        pools, errors = session().pools()
        for error in errors:
            note("mptrack: " + error)
        chosen = choose_pools(pools, args.pools, args.all)
        unknown = [p for p in chosen if not p.counts_known]
        if unknown and not args.all:
            raise UserError("pool %s uses the driver %r, whose free objects gdb cannot read: cannot attach it"
                            % (unknown[0].name, unknown[0].ops))
        globs = "*" if args.all else ",".join(args.pools)
        for pool in unknown:
            note("mptrack: pool %s: driver %r not decoded: not attached" % (pool.name, pool.ops))
        chosen = [p for p in chosen if p.counts_known]
        with _Stopped():
            path, loaded_now = _load_agent(args.library)
            if loaded_now:
                gdb.write("loaded the agent into process %d: %s\n" % (inferior.pid, path))
            attached = 0
            prepared = []
            try:
                for pool in chosen:
                    rc = int(_call("(int) mptrack_agent_prepare((void *) 0x%x, 1)" % pool.addr,
                                   "mptrack_agent_prepare"))
                    if rc == -2:
                        raise UserError("a thread is registering a mempool driver: let the program run a little "
                                        "and try again")
                    if rc == 0:
                        prepared.append(pool)
                    else:
                        gdb.write("pool %s is already tracked\n" % pool.name)
                if prepared:
                    rendezvous(inferior, [p.header for p in prepared])
                s = session()  # the threads moved: read the pools again (where they were, no new scan)
                for pool in list(prepared):
                    fresh = Pool(s.memory, s.layout, pool.addr, s.ops_names)
                    if fresh.busy:
                        raise UserError("pool %s: a thread is in the middle of a %s operation; let the program "
                                        "run a little and try again" % (pool.name, pool.ops))
                    result, message = _attach_pool(fresh, globs)
                    if result < 0:
                        raise UserError("attaching pool %s: %s" % (pool.name, message or "failed"))
                    prepared.remove(pool)
                    if result > 0:
                        attached += 1
                        gdb.write("tracking %s\n" % message)
                    else:
                        gdb.write("%s\n" % message)
            finally:
                _give_up(prepared, attached == 0 and loaded_now)
        install_stop_handler()
        forget()
        gdb.write("the agent tracks %d pool%s; faults stop the program (SIGTRAP); 'mptrack agent detach' "
                  "gives the pools back\n" % (attached, "" if attached == 1 else "s"))


def _give_up(prepared, unload_ops):
    """After a failed attach: caches of the pools prepared but not attached back on; ops back if nothing is attached."""
    try:
        for pool in prepared:
            _call("(int) mptrack_agent_prepare((void *) 0x%x, 0)" % pool.addr, "mptrack_agent_prepare")
        if unload_ops and attach_mode() == 0:
            _detach_agent_now()  # the library stays loaded, inert
    except UserError as e:
        note("mptrack: could not undo the preparation: %s" % e)


# --- detach -----------------------------------------------------------------------

def detach(inferior):
    """Give the pools back (threads at safe points, scheduler-locked call); the agent's message."""
    with _Stopped():
        tables = agent_tables()
        s = session()
        headers = []
        for pool in tables.pools() if tables is not None else ():
            try:
                headers.append(PoolHeader(s.layout, pool.mp, s.memory.read(pool.mp, s.layout["rte_mempool"].size)))
            except USER_ERRORS:
                continue  # freed since: nothing to meet the threads about
        rendezvous(inferior, headers)
        result, message = _detach_agent_now()
    forget()
    if result < 0:
        raise UserError(message or "mptrack_agent_detach failed")
    return message


class DetachCommand(Subcommand):
    """Give the attached pools back: original mempool ops, per-lcore caches on again; the agent stays loaded, inert.
usage: mptrack agent detach"""
    parser = make_parser("agent detach", "Restore the attached pools' ops and caches; the library stays loaded, inert.")

    def __init__(self):
        super().__init__("agent detach")

    def run(self, args):
        inferior = _live_inferior()
        mode = attach_mode()
        if mode is None:
            raise UserError("the agent is not loaded in this process" if loaded_agent() is None else
                            "the agent loaded in this process predates attach support")
        if mode == 0:
            raise UserError("the agent is not attached (see 'mptrack agent status')")
        gdb.write("detached the agent: %s; the library stays loaded, inert\n" % detach(inferior))


def detach_before_leaving(_event=None):
    """Before gdb detaches or exits: detach an attached agent, so the process runs on as before."""
    try:
        inferior = gdb.selected_inferior()
        if inferior.pid == 0 or (inferior.connection is not None and inferior.connection.type == "core"):
            return
        if any(t.is_running() for t in inferior.threads()) or not attach_mode():
            return
        message = detach(inferior)
        gdb.write("mptrack: detached the agent before leaving the process (%s)\n" % message, gdb.STDERR)
    except (gdb.error, RuntimeError) + USER_ERRORS as e:
        gdb.write("mptrack: could not detach the agent before leaving: %s\n" % e, gdb.STDERR)


# --- status -----------------------------------------------------------------------

STATUS = make_parser("agent status", "The agent in this process (live or core): how it was loaded, its settings, "
                                     "tracked pools with their in-use counts, recorded faults.")
STATUS.add_argument("--json", metavar="FILE", help="write it as JSON to FILE ('-' for stdout)")


def status_record():
    """What `mptrack agent status` shows, as a dict (UserError when there is no agent)."""
    if gdb.selected_inferior().pid == 0:
        raise UserError("no process or core")
    tables = agent_tables()
    if tables is None:
        raise UserError("the agent is not loaded in %s (see 'mptrack agent attach')" % session().description)
    library = loaded_agent()
    record = {"library": library, "mode": mode_text(attach_mode(session().memory.read), library),
              "tables_version": tables.version, "pid": tables.pid, "bt_depth": tables.bt_depth,
              "bt_sample": tables.bt_sample, "on_error": tables.on_error, "pools": [], "faults": []}
    try:
        for pool in tables.pools():
            states = {"new": 0, "free": 0, "in-use": 0}
            unknown = gets = 0
            for obj in tables.objects(pool):
                states[obj.state] = states.get(obj.state, 0) + 1
                gets += obj.allocs
                if obj.state == "in-use" and not obj.alloc_tsc:
                    unknown += 1
            record["pools"].append({"name": pool.name, "addr": hexaddr(pool.mp), "objects": pool.nobjs,
                                    "in_use": states["in-use"], "in_use_origin_unknown": unknown,
                                    "free": states["free"] + states["new"], "gets": gets,
                                    "faults": pool.faults, "cache_size": pool.cache_size})
        for fault in tables.faults():
            record["faults"].append({"seq": fault.seq, "kind": fault.kind, "pool": fault.pool,
                                     "obj": hexaddr(fault.obj), "lcore": fault.lcore})
    except AgentTablesError as e:
        raise UserError("preload agent: %s" % e) from None
    record["nfaults"] = tables.nfaults
    return record


class StatusCommand(Subcommand):
    __doc__ = "Show the agent: how it was loaded, settings, pools, faults.\n" + STATUS.format_help()
    parser = STATUS

    def __init__(self):
        super().__init__("agent status")

    def run(self, args):
        r = status_record()
        if args.json:
            emit(to_json(r), args.json)
            return
        gdb.write("agent %s: %s\n" % (r["library"] or "(library not named)", r["mode"]))
        gdb.write("tables version %d, pid %d, backtrace depth %d%s, on error %s\n" % (
            r["tables_version"], r["pid"], r["bt_depth"],
            "" if r["bt_sample"] <= 1 else " (1 event in %d)" % r["bt_sample"], r["on_error"]))
        if not r["pools"]:
            gdb.write("no pool tracked\n")
        for p in r["pools"]:
            gdb.write("pool %s at %s: %d objects, %d in use (%d origin unknown), %d gets seen, %d faults; %s\n" % (
                p["name"], p["addr"], p["objects"], p["in_use"], p["in_use_origin_unknown"], p["gets"],
                p["faults"], "per-lcore cache of %d bypassed" % p["cache_size"] if p["cache_size"]
                else "no per-lcore cache"))
        gdb.write("faults: %d\n" % r["nfaults"])
        for f in r["faults"]:
            gdb.write("  #%d %s: pool %s, object %s%s\n" % (f["seq"], f["kind"], f["pool"], f["obj"],
                                                         "" if f["lcore"] is None else ", lcore %d" % f["lcore"]))


# --- faults stop gdb ---------------------------------------------------------------

def _fault_frames():
    """(first agent frame, the program's frame that called into the pool) of the selected thread, or None.

    The program's frame is the first one after the agent's that is not DPDK's
    own get/put code (inlined rte_mempool_* functions, rte_pktmbuf_free_bulk...),
    or else the first one after the agent's.
    """
    frames, frame = [], gdb.newest_frame()
    while frame is not None and len(frames) < FRAMES_CHECKED:
        frames.append(frame)
        frame = frame.older()
    first = next((i for i, f in enumerate(frames) if in_agent(f.pc())), None)
    if first is None:
        return None
    i = first
    while i < len(frames) and in_agent(frames[i].pc()):
        i += 1
    if i == len(frames):
        return None
    caller = next((f for f in frames[i:] if not (f.name() or "").startswith(MEMPOOL_FUNCTIONS)), frames[i])
    _learn(frames[i:])
    return frames[first], caller


def _learn(frames):
    """Describe the live frames' PCs (inlined functions each with its line) for the fault's backtrace."""
    group = []
    for frame in frames + [None]:
        if group and (frame is None or frame.pc() != group[0].pc()):
            backtraces.SYMBOLS.learn(group[0].pc(), group)
            group = []
        if frame is not None:
            group.append(frame)


def _user_trap():
    """True when the selected thread stopped for a SIGTRAP sent by a program (raise), not a breakpoint or step."""
    try:
        info = gdb.parse_and_eval("$_siginfo")
        return int(info["si_signo"]) == 5 and int(info["si_code"]) <= 0
    except (gdb.error, RuntimeError):
        return False


def report_fault_stop():
    """For a stop inside the agent: print its newest fault and select the program's frame. True if it was one."""
    found = _fault_frames()
    if found is None:
        return False
    _, outside = found
    tables = agent_tables()
    faults = agent_faults(tables) if tables is not None else []
    key = gdb.selected_inferior().num
    if faults and faults[-1].event.seq != _state["last_fault"].get(key):
        fault = faults[-1]
        _state["last_fault"][key] = fault.event.seq
        gdb.write(tracking.format_fault(fault) + "\n")
    elif not faults:
        gdb.write("mptrack: stopped in the agent, but its tables hold no fault\n")
    outside.select()
    gdb.write(gdb.execute("frame", to_string=True))
    return True


def _on_stop(event):
    # raise(SIGTRAP) arrives as a plain StopEvent (gdb 13), so ask the thread's siginfo
    if settling() or isinstance(event, gdb.BreakpointEvent) or not _user_trap():
        return
    try:
        report_fault_stop()
    except (gdb.error, RuntimeError) + USER_ERRORS as e:
        gdb.write("mptrack: cannot show the agent's fault: %s\n" % e, gdb.STDERR)


def install_stop_handler():
    if not _state.get("stop_handler"):
        gdb.events.stop.connect(_on_stop)
        _state["stop_handler"] = True


def _on_exit(_event):
    _state["last_fault"].clear()


def install_leaving_hooks():
    """Run detach_before_leaving in the hook-detach tracking.py defines (kept), and on gdb exit."""
    try:
        body = gdb.execute("show user hook-detach", to_string=True)
    except gdb.error:
        body = None
    mine = "python import gdb_mptrack.agent_commands as _a; _a.detach_before_leaving()"
    if body is None or ("restore_before_leaving" in body and "detach_before_leaving" not in body):
        lines = ["python import gdb_mptrack.tracking as _t; _t.restore_before_leaving()"] if body else []
        confirm = gdb.parameter("confirm")
        gdb.execute("set confirm off", to_string=True)
        try:
            gdb.execute("define hook-detach\n%s\nend" % "\n".join(lines + [mine]), to_string=True)
        finally:
            gdb.execute("set confirm %s" % ("on" if confirm else "off"), to_string=True)
    gdb.events.gdb_exiting.connect(detach_before_leaving)


def register():
    AgentPrefix()
    AttachCommand()
    DetachCommand()
    StatusCommand()
    install_stop_handler()
    gdb.events.exited.connect(_on_exit)
    install_leaving_hooks()
