"""Tracking with gdb breakpoints: mempool ops and the rte_malloc family.

Part of the target layer (it talks to gdb); the shadow tables it feeds are
shadow.py.  Approach and limits:

- Mempool objects: a silent internal breakpoint on each driver's `enqueue`
  and `dequeue` functions, read from rte_mempool_ops_table (so stripped
  drivers work).  Enqueue entry sees the objects being put (x86-64 System V
  registers: rdi mp, rsi obj_table, edx n).  Dequeue results exist only
  after it returns, and one gdb.FinishBreakpoint per call slows down worse
  than linearly, so at dequeue entry we note (thread, stack pointer after
  return, obj_table, n) and put a permanent breakpoint on the return
  address; when it is hit with that thread and stack pointer, rax is the
  result.  Return sites are few (the inlined get paths), so after warm-up
  each event is one breakpoint hit at entry and one at return.
- rte_malloc family: entry breakpoints on every allocator (outermost call per
  thread only, so rte_malloc calling rte_malloc_socket counts once), return
  sites as above for the pointer, and rte_free entry.
- Per-lcore caches serve gets and puts without reaching the driver, so a
  tracked pool is made cache-less: its caches are flushed into the driver
  (an inferior call of the driver's own enqueue, scheduler-locked, refused
  when another thread is mid-operation on the ring or stack) and its
  cache_size set to 0; untrack restores it.  Pools tracked before they exist
  are armed at rte_mempool_populate_*, before their first object.
- Backtraces are frame PCs only, symbolized lazily once per distinct PC
  (backtraces.py).
Breakpoints return False from stop() unless a fault is found and the
matching `set mptrack stop-on` setting is on.
"""

import fnmatch
import os
import struct

import gdb  # pylint: disable=import-error

from . import shadow
from .backtraces import SYMBOLS, caller_pcs
from .decode import PoolHeader, Record
from .memory import MemoryMissing
from .registers import REGISTERS
from .shadow import FREE, HEAP_POOL, IN_USE

POPULATE_FUNCTIONS = ("rte_mempool_populate_default", "rte_mempool_populate_iova",
                      "rte_mempool_populate_virt", "rte_mempool_populate_anon")
# allocator -> (index of the size argument, index of a count argument or None, index of the old pointer or None)
ALLOCATORS = {
    "rte_malloc": (1, None, None), "rte_zmalloc": (1, None, None), "rte_calloc": (2, 1, None),
    "rte_realloc": (1, None, 0), "rte_malloc_socket": (1, None, None), "rte_zmalloc_socket": (1, None, None),
    "rte_calloc_socket": (2, 1, None), "rte_realloc_socket": (1, None, 0),
}
ARG_REGISTERS = ("rdi", "rsi", "rdx", "rcx", "r8", "r9")
FAULT_KINDS = ("duplicate-free", "foreign-free", "stray-free", "duplicate-alloc")


class TrackError(Exception):
    """Tracking cannot be set up as asked (one line for the user)."""


# --- settings (gdb parameters read by the breakpoints) ---------------------

class Settings:
    def __init__(self):
        self.stop_on = {kind: True for kind in FAULT_KINDS}
        self.backtrace_depth = 8

    def stops_for(self, kind):
        """Whether a fault of this kind (report wording) stops the program."""
        key = {"duplicate free": "duplicate-free", "double rte_free": "duplicate-free",
               "foreign free": "foreign-free", "stray free": "stray-free",
               "rte_free of unknown pointer": "stray-free", "duplicate alloc": "duplicate-alloc"}[kind]
        return self.stop_on[key]


SETTINGS = Settings()


# --- registers, threads, memory -----------------------------------------

#: A register of the thread stopped at this breakpoint (registers.py: one snapshot per stop).
_reg = REGISTERS.__getitem__


def _arg(index):
    return REGISTERS[ARG_REGISTERS[index]]


_thread_id = REGISTERS.thread


def _open_proc_mem(inferior):
    """A read-only descriptor of /proc/PID/mem for a local live process, else 0."""
    connection = getattr(inferior, "connection", None)
    if connection is None or connection.type != "native" or not inferior.pid:
        return 0
    try:
        return os.open("/proc/%d/mem" % inferior.pid, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return 0


class Tracker:
    """Breakpoints, pending calls and shadows of one inferior."""

    def __init__(self, inferior):
        self.inferior = inferior
        self.shadows = shadow.Tracker()
        self.pools = {}             # mp address -> TrackedPool
        self.pending_names = set()  # names (globs) to arm at creation
        self.track_all = False
        self.driver_bps = {}        # function address -> breakpoint
        self.return_sites = {}      # return address -> ReturnSite
        self.pending_calls = {}     # thread -> [(sp after return, handler)]
        self.creation_bps = []
        self.malloc_bps = []
        self.malloc_from_start = False
        self.unknown_frees = 0
        self.lcores = {}
        self._layout = None
        self.restarted = False
        self.errors = 0
        self._mem = None            # /proc/PID/mem descriptor (0: not available)
        self.deferred = []          # (class, function name) waiting for their library

    @property
    def layout(self):
        if self._layout is None:
            from .target import session
            self._layout = session().layout
        return self._layout

    # memory helpers
    def read(self, addr, size):
        """Data (never code: breakpoints are not hidden) of the stopped process.

        /proc/PID/mem when gdb debugs a local process (a pread, several times cheaper
        than gdb's read_memory on every event), gdb otherwise.
        """
        if self._mem is None:
            self._mem = _open_proc_mem(self.inferior)
        if self._mem:
            try:
                data = os.pread(self._mem, size, addr)
                if len(data) == size:
                    return data
            except OSError:
                pass
        try:
            return self.inferior.read_memory(addr, size).tobytes()
        except gdb.MemoryError:
            raise MemoryMissing(addr, size, "cannot be read") from None

    def read_ptrs(self, addr, n):
        return struct.unpack("<%dQ" % n, self.read(addr, 8 * n)) if n else ()

    def write_u32(self, addr, value):
        self.inferior.write_memory(addr, struct.pack("<I", value))

    def lcore(self, thread):
        if thread not in self.lcores:
            try:
                value = int(gdb.parse_and_eval("(int)per_lcore__lcore_id"))
                self.lcores[thread] = None if value < 0 or value > 0xFFFF else value
            except gdb.error:
                self.lcores[thread] = None
        return self.lcores[thread]

    def new_event(self, kind, pcs):
        thread = _thread_id()
        return self.shadows.event(kind, thread, self.lcore(thread), pcs)

    # pending calls and return sites
    def expect_return(self, handler, sp, ret=None):
        """Note a call stopped at its entry (stack pointer sp, return address ret if known):
        handler() runs when it returns."""
        if ret is None:
            ret = struct.unpack("<Q", self.read(sp, 8))[0]
        self.pending_calls.setdefault(_thread_id(), []).append((sp + 8, ret, handler))
        if ret not in self.return_sites:
            self.return_sites[ret] = ReturnSite(self, ret)

    def returned(self, site):
        """A return site was hit: run the handler of the pending call of this thread that returns here."""
        stack = self.pending_calls.get(_thread_id())
        if not stack:
            return False
        if stack[-1][1] == site and sum(1 for entry in stack if entry[1] == site) == 1:
            found = len(stack) - 1  # the only call pending on this thread that returns here: no need for rsp
        else:
            sp = _reg("rsp")
            found = next((i for i in range(len(stack) - 1, -1, -1) if stack[i][0] == sp), None)
            if found is None:
                return False
        handler = stack[found][2]
        del stack[found:]
        return handler()

    def in_malloc_call(self):
        return any(h.malloc for _, _, h in self.pending_calls.get(_thread_id(), ()))

    # faults
    def report(self, fault):
        if fault.index is None and fault.pool != HEAP_POOL and fault.kind != "stray free":
            fault.index = locate(fault.addr)[1]
        self.shadows.record_fault(fault)
        gdb.write(format_fault(fault) + "\n", gdb.STDERR)
        return SETTINGS.stops_for(fault.kind)

    def check_free(self, tracked, obj, event):
        """Record a put of obj into tracked; a Fault for duplicate, foreign and stray frees."""
        if obj in tracked.shadow.entries:  # an object of this pool already: its header was checked
            return tracked.shadow.free(obj, event)
        owner = self.owner_of(obj)
        if owner == tracked.addr:
            return tracked.shadow.free(obj, event)
        if owner is not None:
            other = self.pools.get(owner)
            entry = other.shadow.entries.get(obj) if other else None
            return shadow.Fault("foreign free", tracked.name, obj, event,
                                previous_free=entry.last_free if entry else None,
                                last_alloc=entry.last_alloc if entry else None,
                                detail="it belongs to pool '%s'" % self.pool_name(owner))
        text, _, start = locate(obj)
        holder = self.pools.get(self.owner_of(start)) if start is not None else None
        entry = holder.shadow.entries.get(start) if holder else None
        return shadow.Fault("stray free", tracked.name, obj, event, detail="no object starts there (%s)" % text,
                            previous_free=entry.last_free if entry else None,
                            last_alloc=entry.last_alloc if entry else None)

    def heap_free(self, ptr, event):
        heap = self.shadows.heap
        if heap is None:
            return False
        if ptr not in heap.entries:
            if not self.malloc_from_start:
                self.unknown_frees += 1  # allocated before tracking began: not a fault
                return False
            return self.report(shadow.Fault("rte_free of unknown pointer", HEAP_POOL, ptr, event,
                                            detail="never returned by the rte_malloc family"))
        fault = heap.free(ptr, event)
        return fault is not None and self.report(fault)

    # pools
    def pool_name(self, mp):
        tracked = self.pools.get(mp)
        if tracked:
            return tracked.name
        try:
            header = PoolHeader(self.layout, mp, self.read(mp, self.layout["rte_mempool"].size))
        except MemoryMissing:
            return None
        return header.name if header.name_padding_clean else None

    def owner_of(self, obj):
        """The pool address an object's header names, or None when obj is no object start."""
        hdr = self.layout["rte_mempool_objhdr"]
        try:
            data = self.read(obj - hdr.size, hdr.size)
        except MemoryMissing:
            return None
        owner = struct.unpack_from("<Q", data, hdr.offset("mp"))[0]
        return owner if owner and self.pool_name(owner) is not None else None

    def wants(self, name):
        return self.track_all or any(fnmatch.fnmatchcase(name, pattern) for pattern in self.pending_names)

    def driver_functions(self, header):
        from .target import symbol_address
        ops = self.layout["rte_mempool_ops"]
        table = self.layout["rte_mempool_ops_table"]
        base = symbol_address("rte_mempool_ops_table") + table.offset("ops") + header.ops_index * ops.size
        rec = Record(ops, self.read(base, ops.size))
        return rec.ptr("enqueue"), rec.ptr("dequeue")

    def arm(self, header, seed=None):
        """Track the pool whose header is given: bypass its caches, set driver breakpoints."""
        if self.restarted:
            self.shadows = shadow.Tracker()
            self.restarted = False
        original = header.cache_size
        if original:
            self.write_u32(header.addr + self.layout["rte_mempool"].offset("cache_size"), 0)
        tracked = self.pools[header.addr] = TrackedPool(self, header, original)
        for obj, state in seed or ():
            tracked.shadow.seed(obj, state)
        enqueue, dequeue = self.driver_functions(header)
        if enqueue not in self.driver_bps:
            self.driver_bps[enqueue] = EnqueueBreakpoint(self, "*0x%x" % enqueue)
        if dequeue not in self.driver_bps:
            self.driver_bps[dequeue] = DequeueBreakpoint(self, "*0x%x" % dequeue)
        return tracked

    def forget_pool(self, mp):
        self.pools.pop(mp, None)
        self.shadows.pools.pop(mp, None)

    def untrack(self, mp):
        tracked = self.pools.pop(mp)
        if tracked.original_cache_size and self.inferior.pid:
            self.write_u32(mp + self.layout["rte_mempool"].offset("cache_size"), tracked.original_cache_size)
        self.shadows.pools.pop(mp, None)
        if not self.pools:
            for bp in self.driver_bps.values():
                bp.delete()
            self.driver_bps.clear()

    def named_breakpoints(self, group, specs):
        """Breakpoints on functions by name, each created once its library is loaded."""
        from .target import symbol_address
        for cls, function in specs:
            if symbol_address(function) is None:
                self.deferred.append((group, cls, function))
            else:
                group.append(cls(self, function))

    def create_deferred(self):
        waiting, self.deferred = self.deferred, []
        for group, cls, function in waiting:
            self.named_breakpoints(group, [(cls, function)])

    def arm_creation(self):
        if not self.creation_bps:
            self.named_breakpoints(self.creation_bps, [(CreationBreakpoint, fn) for fn in POPULATE_FUNCTIONS]
                                   + [(PoolFreeBreakpoint, "rte_mempool_free")])

    def track_malloc(self, from_start):
        if self.shadows.heap is not None:
            return
        self.malloc_from_start = from_start
        self.shadows.heap = shadow.ShadowPool(HEAP_POOL)
        self.named_breakpoints(self.malloc_bps, [(MallocBreakpoint, fn) for fn in ALLOCATORS]
                               + [(RteFreeBreakpoint, "rte_free")])

    def untrack_malloc(self):
        for bp in self.malloc_bps:
            bp.delete()
        self.malloc_bps.clear()
        self.deferred = [d for d in self.deferred if d[0] is not self.malloc_bps]
        self.shadows.heap = None

    def process_exited(self):
        """Address breakpoints and pending calls die with the process; shadows stay for post-mortem."""
        if self._mem:
            os.close(self._mem)
        self._mem = None
        for bp in list(self.driver_bps.values()) + list(self.return_sites.values()):
            bp.delete()
        self.driver_bps.clear()
        self.return_sites.clear()
        self.pending_calls.clear()
        self.pools.clear()
        self.lcores.clear()
        self._layout = None
        self.restarted = True


class TrackedPool:
    def __init__(self, tracker, header, original_cache_size):
        self.name = header.name
        self.addr = header.addr
        self.header = header
        self.original_cache_size = original_cache_size
        self.shadow = shadow.ShadowPool(header.name, header.addr, header.elt_size)
        tracker.shadows.pools[header.addr] = self.shadow


def format_fault(fault):
    """The multi-line report printed when a fault is found."""
    what = "" if fault.kind.endswith("pointer") else " of " + ("block" if fault.pool == HEAP_POOL else "object")
    lines = ["mptrack: %s%s 0x%x%s in %s%s" % (
        fault.kind, what, fault.addr,
        "" if fault.index is None else " (index %d)" % fault.index,
        "the rte_malloc heap" if fault.pool == HEAP_POOL else "pool '%s'" % fault.pool,
        ": " + fault.detail if fault.detail else "")]
    this = "this alloc" if fault.event.kind == "alloc" else "this free"
    for title, event in ((this, fault.event), ("previous free", fault.previous_free),
                         ("last alloc", fault.last_alloc)):
        lines.append(format_event(title, event))
    return "\n".join(lines)


def format_event(title, event):
    if event is None:
        return "  %s: none recorded" % title
    facts = [("event %d" % event.seq) if event.seq else "", ("thread %s" % event.thread) if event.thread else "",
             ("lcore %d" % event.lcore) if event.lcore is not None else ""]
    facts = ", ".join(f for f in facts if f)
    head = "  %s%s:" % (title, " (%s)" % facts if facts else "")
    frames = ["    #%d %s" % (i, text) for i, text in enumerate(SYMBOLS.frames(event.pcs))]
    return "\n".join([head] + (frames or ["    (no backtrace)"]))


# --- breakpoints ------------------------------------------------------------

class _TrackerBreakpoint(gdb.Breakpoint):
    """A silent internal breakpoint whose `on_hit` never lets an exception stop the program."""

    def __init__(self, tracker, spec):
        super().__init__(spec, internal=True)
        self.silent = True
        self.tracker = tracker

    def stop(self):
        REGISTERS.new_stop()
        try:
            return self.on_hit()
        except Exception as e:  # pylint: disable=broad-except
            # A bug or unreadable memory here must not stop or kill the debugged program.
            self.tracker.errors += 1
            if self.tracker.errors <= 3:
                gdb.write("mptrack: tracking error at %s (event ignored): %s\n" % (self.location, e), gdb.STDERR)
            return False


class ReturnSite(_TrackerBreakpoint):
    """A permanent breakpoint at a call's return address; dispatches to the pending call."""

    def __init__(self, tracker, addr):
        super().__init__(tracker, "*0x%x" % addr)
        self.addr = addr

    def on_hit(self):
        return self.tracker.returned(self.addr)


def _driver_call(tracker):
    """(tracked pool, obj_table, n) of a driver call stopped at entry, or None for untracked pools."""
    tracked = tracker.pools.get(_arg(0))
    if tracked is None:
        return None
    return tracked, _arg(1), min(_arg(2) & 0xFFFFFFFF, tracked.header.size)


def _record_each(tracker, objs, record):
    """Apply record(obj) -> Fault|None to every object; report faults; True when one should stop."""
    stop = False
    for obj in objs:
        fault = record(obj)
        if fault is not None:
            stop = tracker.report(fault) or stop
    return stop


class EnqueueBreakpoint(_TrackerBreakpoint):
    """Driver enqueue entry: objects put back into a pool."""

    def on_hit(self):
        t = self.tracker
        call = _driver_call(t)
        if call is None:
            return False
        tracked, obj_table, n = call
        event = t.new_event("free", caller_pcs(t.read, _reg("rsp"), SETTINGS.backtrace_depth))
        return _record_each(t, t.read_ptrs(obj_table, n), lambda obj: t.check_free(tracked, obj, event))


class _Return:
    """What to do when a noted call returns (handler for Tracker.expect_return)."""

    malloc = False


class _DequeueReturn(_Return):
    def __init__(self, tracker, tracked, obj_table, n, sp):
        self.tracker, self.tracked, self.obj_table, self.n = tracker, tracked, obj_table, n
        # at entry, where the caller's frame still shows the call's line
        self.pcs = caller_pcs(tracker.read, sp, SETTINGS.backtrace_depth)

    def __call__(self):
        t = self.tracker
        if _reg("rax") & 0xFFFFFFFF or t.pools.get(self.tracked.addr) is not self.tracked:
            return False  # the dequeue failed (-ENOBUFS), or the pool is no longer tracked
        event = t.new_event("alloc", self.pcs)
        return _record_each(t, t.read_ptrs(self.obj_table, self.n), lambda obj: self.tracked.shadow.alloc(obj, event))


class DequeueBreakpoint(_TrackerBreakpoint):
    """Driver dequeue entry: note the call; objects are read at its return site."""

    def on_hit(self):
        call = _driver_call(self.tracker)
        if call is not None:
            sp = _reg("rsp")
            handler = _DequeueReturn(self.tracker, *call, sp)
            self.tracker.expect_return(handler, sp, handler.pcs[0] if handler.pcs else None)
        return False


class CreationBreakpoint(_TrackerBreakpoint):
    """rte_mempool_populate_* entry: arm pools tracked by name before their first object."""

    def on_hit(self):
        t = self.tracker
        mp = _arg(0)
        if mp in t.pools:
            return False
        try:
            header = PoolHeader(t.layout, mp, t.read(mp, t.layout["rte_mempool"].size))
        except MemoryMissing:
            return False
        if header.name and t.wants(header.name):
            t.arm(header)
        return False


class PoolFreeBreakpoint(_TrackerBreakpoint):
    """rte_mempool_free entry: forget the pool (its memory is going away)."""

    def on_hit(self):
        t = self.tracker
        mp = _arg(0)
        if mp in t.pools:
            t.forget_pool(mp)
        return False


class _MallocReturn(_Return):
    malloc = True

    def __init__(self, tracker, size, old, sp):
        self.tracker, self.size, self.old = tracker, size, old
        self.pcs = caller_pcs(tracker.read, sp, SETTINGS.backtrace_depth)

    def __call__(self):
        t = self.tracker
        ptr = _reg("rax")
        if not ptr:
            return False
        stop = False
        event = t.new_event("alloc", self.pcs)
        if self.old and self.old != ptr:
            stop = t.heap_free(self.old, t.shadows.event("free", event.thread, event.lcore, event.pcs))
        fault = t.shadows.heap.alloc(ptr, event, self.size)
        return (fault is not None and t.report(fault)) or stop


class MallocBreakpoint(_TrackerBreakpoint):
    """Entry of an rte_malloc-family allocator (outermost call per thread)."""

    def __init__(self, tracker, function):
        super().__init__(tracker, function)
        self.function = function

    def on_hit(self):
        t = self.tracker
        if t.in_malloc_call():
            return False
        size_arg, count_arg, old_arg = ALLOCATORS[self.function]
        size = _arg(size_arg) * (_arg(count_arg) if count_arg is not None else 1)
        old = _arg(old_arg) if old_arg is not None else 0
        sp = _reg("rsp")
        handler = _MallocReturn(t, size, old, sp)
        t.expect_return(handler, sp, handler.pcs[0] if handler.pcs else None)
        return False


class RteFreeBreakpoint(_TrackerBreakpoint):
    """rte_free entry."""

    def on_hit(self):
        t = self.tracker
        if t.in_malloc_call():
            return False
        ptr = _arg(0)
        if not ptr:
            return False
        return t.heap_free(ptr, t.new_event("free", caller_pcs(t.read, _reg("rsp"), SETTINGS.backtrace_depth)))


# --- live set-up (from commands, never from a breakpoint) -------------------

def track_live(tracker, pool, ops_names):
    """Start tracking an existing pool of a stopped live process: flush its caches, seed the shadow."""
    from .pools import Pool
    header = pool.header
    if header.addr in tracker.pools:
        raise TrackError("pool %s is already tracked" % pool.name)
    if pool.cache_objects:
        if pool.busy:
            raise TrackError("pool %s: another thread is in the middle of a %s operation; let the program "
                             "run a little and try again" % (pool.name, pool.ops))
        flush_caches(tracker, pool)
        pool = Pool(pool.memory, pool.layout, header.addr, ops_names)
    seed = [(obj, FREE if state == FREE else IN_USE) for _, obj, state, _ in pool.states()]
    return tracker.arm(pool.header, seed)


def flush_caches(tracker, pool):
    """Give every lcore cache's objects back to the driver with its own enqueue (scheduler-locked call)."""
    cache = pool.layout["rte_mempool_cache"]
    enqueue, _ = tracker.driver_functions(pool.header)
    old = gdb.parameter("scheduler-locking")
    gdb.execute("set scheduler-locking on", to_string=True)
    try:
        for lcore, objs in sorted(pool.cache_objects.items()):
            base = pool.header.local_cache + lcore * cache.size
            call = "((int (*)(void *, void * const *, unsigned int))0x%x)((void *)0x%x, (void * const *)0x%x, %d)" % (
                enqueue, pool.addr, base + cache.offset("objs"), len(objs))
            try:
                rc = int(gdb.parse_and_eval(call))
            except gdb.error as e:
                raise TrackError("flushing lcore %d cache of pool %s failed: %s" % (lcore, pool.name, e)) from None
            if rc != 0:
                raise TrackError("flushing lcore %d cache of pool %s: enqueue returned %d" % (lcore, pool.name, rc))
            tracker.write_u32(base + cache.offset("len"), 0)
    finally:
        gdb.execute("set scheduler-locking %s" % old, to_string=True)


def locate(addr):
    """(text, index, object start) saying which pool object holds addr, from a fresh look at memory."""
    from .target import USER_ERRORS, session
    try:
        pools, _ = session().pools()
        for pool in pools:
            found = pool.contains(addr)
            if found is not None:
                index, obj = found
                if obj == addr:
                    return "object %d of pool '%s'" % (index, pool.name), index, obj
                return ("inside object %d of pool '%s' at 0x%x %+d" % (index, pool.name, obj, addr - obj),
                        index, obj)
        return "in no mempool", None, None
    except USER_ERRORS:
        return "location unknown", None, None


def backtrace_text(event):
    return " | ".join(SYMBOLS.frames(event.pcs)) if event is not None else ""


_trackers = {}


def tracker(create=True):
    """The Tracker of the selected inferior (made on demand)."""
    inferior = gdb.selected_inferior()
    found = _trackers.get(inferior.num)
    if found is None and create:
        found = _trackers[inferior.num] = Tracker(inferior)
    return found


def _on_exit(event):
    inferior = getattr(event, "inferior", None)
    found = _trackers.get(inferior.num if inferior is not None else gdb.selected_inferior().num)
    if found is not None:
        found.process_exited()


def _on_new_objfile(_event):
    for found in _trackers.values():
        if found.deferred:
            found.create_deferred()


def restore_before_leaving(_event=None):
    """Before gdb detaches or exits: give tracked pools back their caches (the process runs on as before)."""
    for found in _trackers.values():
        if not found.pools or not found.inferior.is_valid() or found.inferior.pid == 0:
            continue
        names = [p.name for p in found.pools.values()]
        try:
            for mp in list(found.pools):
                found.untrack(mp)
        except gdb.error as e:
            gdb.write("mptrack: could not restore pools %s: %s\n" % (", ".join(names), e), gdb.STDERR)
            continue
        gdb.write("mptrack: untracked %s before leaving the process (cache sizes restored)\n"
                  % ", ".join(names), gdb.STDERR)


def install_detach_hook():
    """Run restore_before_leaving on 'detach' (a hook-detach, unless the user has one) and on gdb exit."""
    try:
        gdb.execute("show user hook-detach", to_string=True)
        has_hook = True
    except gdb.error:
        has_hook = False
    if not has_hook:
        gdb.execute("define hook-detach\npython import gdb_mptrack.tracking as _t; _t.restore_before_leaving()\nend",
                    to_string=True)
    gdb.events.gdb_exiting.connect(restore_before_leaving)


gdb.events.exited.connect(_on_exit)
gdb.events.new_objfile.connect(_on_new_objfile)
