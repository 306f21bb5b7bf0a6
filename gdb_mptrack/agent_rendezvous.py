"""Bring the threads of a live process to safe points, for `mptrack agent attach` and `detach` (target layer).

Before the agent takes a pool over (or gives it back), no thread may be in
the middle of a get or put on it, halfway through DPDK's inline cache code.
Approach (docs/agent.md, "Attaching to a live process", step 2):

- a thread blocked in a system call is not in a get or put (they make none);
  the agent's own threads ("mptrack-*") never touch a pool;
- any other thread runs alone (scheduler-locking on) until an internal
  breakpoint at the entry of the agent's enqueue or dequeue wrapper finds it
  calling the driver directly (for a chosen pool: objects not in a cache, so
  DPDK's inline code touches the cache no more), a cache refill being made to
  fail on the way (gdb `return -ENOBUFS`: the inline code then gets from the
  driver directly).  No debug info is needed: stripped forwarding loops are
  met where their caches are consistent;
- a thread making no such call for a while (RENDEZVOUS_TIMEOUT) is stopped
  with SIGINT (not passed on) and counts as idle, unless it is inside pool
  code (a frame in a mempool library or an rte_mempool_* function): that is
  refused with a one-line error.  User breakpoints are disabled meanwhile.

Assumes x86-64 Linux (the wrappers' arguments in rdi and rsi, SYS_tgkill)
and that the mempool ops table holds the agent's wrappers already (else
UserError).
"""

import ctypes
import os
import signal
import threading

import gdb  # pylint: disable=import-error

from . import agent_attach
from .decode import Record
from .target import UserError, forget, session

MEMPOOL_LIBRARIES = ("librte_mempool", "librte_ring", "librte_mbuf", "librte_stack",
                     agent_attach.LIBRARY_PREFIX)
MEMPOOL_FUNCTIONS = ("rte_mempool_", "rte_pktmbuf_", "rte_mbuf_", "rte_ring_", "__rte_ring_",
                     "rte_stack_", "__rte_stack_")
FRAMES_CHECKED = 64
RENDEZVOUS_TIMEOUT = 0.25  # s a thread runs alone without a get or put before it counts as idle
RENDEZVOUS_ROUNDS = 20     # times a thread is resumed on its way to a safe point
ENOBUFS = 105
_LIBC = ctypes.CDLL(None, use_errno=True)

_state = {"settling": False, "verdict": None}


def settling():
    """True while a rendezvous runs the threads (their stops are not the program's)."""
    return _state["settling"]


def _library_name(pc):
    name = gdb.current_progspace().solib_name(pc)
    return os.path.basename(name) if name else None


def in_agent(pc):
    """True when pc is in the agent's library."""
    name = _library_name(pc)
    return name is not None and name.startswith(agent_attach.LIBRARY_PREFIX)


def _in_syscall(thread):
    """True when the thread is blocked in a system call (no get or put makes one)."""
    pid, lwp, _ = thread.ptid
    try:
        with open("/proc/%d/task/%d/syscall" % (pid, lwp)) as f:
            first = f.read().split(None, 1)[0]
    except (OSError, IndexError):
        return False
    return first.isdigit()


def _pool_code(thread):
    """A description of the mempool code the thread is in, or None."""
    thread.switch()
    try:
        frame = gdb.newest_frame()
    except gdb.error:
        return None
    for _ in range(FRAMES_CHECKED):
        if frame is None:
            break
        try:
            pc = frame.pc()
            name = frame.name()
        except gdb.error:
            break
        library = _library_name(pc)
        if library is not None and library.startswith(MEMPOOL_LIBRARIES):
            return "%s (%s)" % (name or "0x%x" % pc, library)
        if name is not None and name.startswith(MEMPOOL_FUNCTIONS):
            return name
        try:
            frame = frame.older()
        except gdb.error:
            break
    return None


def _thread_label(thread):
    return "thread %d%s" % (thread.num, ' "%s"' % thread.name if thread.name else "")


def _tgkill(pid, tid, sig):
    return _LIBC.syscall(234, pid, tid, sig)  # SYS_tgkill on x86-64


class _WrapperEntry(gdb.Breakpoint):
    """The entry of the agent's enqueue or dequeue wrapper: stops the thread being run at a safe point.

    At a wrapper's entry the thread is inside no cache operation on another
    pool; for a pool of `spans` ({mp: (first, end) of its local_cache array})
    it is at a safe point when the objects are not in a cache (a put or get
    straight to the driver: the caller touches the cache no more); a get
    refilling the cache is made to fail ("refill": the caller then gets
    straight from the driver), a put flushing the cache is let through.
    """

    def __init__(self, addr, kind, spans):
        super().__init__("*0x%x" % addr, internal=True)
        self.silent = True
        self.kind = kind
        self.spans = spans

    def stop(self):
        try:
            frame = gdb.newest_frame()
            mp = int(frame.read_register("rdi")) & 0xFFFFFFFFFFFFFFFF
            objs = int(frame.read_register("rsi")) & 0xFFFFFFFFFFFFFFFF
        except gdb.error:
            return False
        span = self.spans.get(mp)
        if span is None or not span[0] <= objs < span[1]:
            _state["verdict"] = "safe"
        elif self.kind == "dequeue":
            _state["verdict"] = "refill"
        else:
            return False
        return True


def _siginfo_signo():
    try:
        return int(gdb.parse_and_eval("$_siginfo")["si_signo"])
    except (gdb.error, RuntimeError):
        return None


def _run_alone(thread, timeout):
    """Resume only `thread` until a wrapper entry stops it or, after `timeout` s, a SIGINT sent to it."""
    lock, st = threading.Lock(), {"done": False, "sent": False}
    pid, lwp, _ = thread.ptid

    def interrupt():
        with lock:
            if not st["done"]:
                _tgkill(pid, lwp, signal.SIGINT)
                st["sent"] = True
    _state["verdict"] = None
    timer = threading.Timer(timeout, interrupt)
    timer.start()
    try:
        gdb.execute("continue", to_string=True)
    except gdb.error as e:
        raise UserError("running %s alone failed: %s" % (_thread_label(thread), e)) from None
    finally:
        with lock:
            st["done"] = True
        timer.cancel()
    if st["sent"] and thread.is_valid() and _siginfo_signo() != signal.SIGINT:
        # our SIGINT is still pending: take it now (gdb does not pass it on), the thread stays put
        gdb.execute("stepi", to_string=True)
        return _state["verdict"], False
    return _state["verdict"], st["sent"]


def _to_safe_point(thread):
    """Run `thread` alone to a safe point; True when it got there, False when it is idle."""
    for _ in range(RENDEZVOUS_ROUNDS):
        thread.switch()
        verdict, timed_out = _run_alone(thread, RENDEZVOUS_TIMEOUT)
        if not thread.is_valid():
            return False
        if verdict == "safe":
            return True
        if verdict == "refill":
            gdb.execute("return (int) %d" % -ENOBUFS, to_string=True)
            continue
        if timed_out:
            # no get or put reached the driver for a while: idle, unless stuck in pool code
            if _in_syscall(thread):
                return False
            where = _pool_code(thread)
            if where is None:
                return False
            raise UserError("%s stays inside %s (waiting for another thread?): let the program run a little "
                            "and try again" % (_thread_label(thread), where))
        # stopped for something else (a fault of the agent, another signal): go on
    raise UserError("%s did not reach a safe point: let the program run a little and try again"
                    % _thread_label(thread))


def _wrappers():
    """[(address, 'enqueue'|'dequeue')] of the agent's wrappers, as the ops table holds them now."""
    s = session()
    table, ops = s.layout["rte_mempool_ops_table"], s.layout["rte_mempool_ops"]
    data = s.memory.read(s.ops_table_addr, table.size)
    found = set()
    for i in range(len(s.ops_names)):
        rec = Record(ops, data, table.offset("ops") + i * ops.size)
        for kind in ("enqueue", "dequeue"):
            addr = rec.ptr(kind)
            if addr and in_agent(addr):
                found.add((addr, kind))
    if {kind for _, kind in found} != {"enqueue", "dequeue"}:
        raise UserError("the mempool ops are not the agent's wrappers: cannot meet the threads")
    return sorted(found)


def cache_spans(headers):
    """{mp: (start, end)} of each pool's lcore cache array."""
    layout = session().layout
    size = layout["rte_mempool_cache"].size * layout.constant("RTE_MAX_LCORE")
    return {h.addr: (h.local_cache, h.local_cache + size) for h in headers if h.cache_size and h.local_cache}


def rendezvous(inferior, headers):
    """Bring every thread that may be working on these pools to a safe point (see _WrapperEntry).

    Threads blocked in a system call and the agent's own threads are left
    where they are; each other thread runs alone (scheduler-locking) until a
    wrapper entry stops it at a safe point, or is stopped after a quiet
    while.  User breakpoints are disabled meanwhile.  Returns the number of
    threads that were run."""
    spans = cache_spans(headers)
    user_bps = [bp for bp in gdb.breakpoints() if bp.enabled]
    entries = []
    moved = 0
    quiet = gdb.parameter("suppress-cli-notifications")
    confirm = gdb.parameter("confirm")
    _state["settling"] = True
    gdb.execute("set suppress-cli-notifications on", to_string=True)
    gdb.execute("set confirm off", to_string=True)
    try:
        for bp in user_bps:
            bp.enabled = False
        entries = [_WrapperEntry(addr, kind, spans) for addr, kind in _wrappers()]
        for thread in list(inferior.threads()):
            # the agent's own threads (clock, log writer) never touch a pool
            if not thread.is_valid() or (thread.name or "").startswith("mptrack-") or _in_syscall(thread):
                continue
            moved += 1
            _to_safe_point(thread)
    finally:
        for bp in entries:
            if bp.is_valid():
                bp.delete()
        for bp in user_bps:
            if bp.is_valid():
                bp.enabled = True
        gdb.execute("set confirm %s" % ("on" if confirm else "off"), to_string=True)
        gdb.execute("set suppress-cli-notifications %s" % ("on" if quiet else "off"), to_string=True)
        _state["settling"] = False
        forget()  # memory moved on
    return moved
