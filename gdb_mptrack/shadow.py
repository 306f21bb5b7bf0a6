"""Shadow tables: what the tracker believes about every object and block.

Plain data, fed events by whoever sees them (gdb breakpoints today, the
preload agent's tables later) and never importing gdb.  Per mempool object
we keep its state, its last alloc and last free event and a short history;
per rte_malloc block its size and events.  Events carry a sequence number
(for marks), a wall-clock time (for ages), the thread and lcore, and the
frame PCs of a backtrace; symbolizing PCs is the caller's business.

Faults are decided here from the shadow state alone (duplicate free,
duplicate alloc, rte_free of an unknown or freed block); faults that need
memory (foreign and stray frees) are decided by the caller and recorded
with `Tracker.record_fault`.  A fault records, it never repairs: after a
duplicate free the object stays free.
"""

import collections
import time

IN_USE, FREE, UNKNOWN = "in-use", "free", "unknown"
HISTORY = 8
HEAP_POOL = "rte_malloc"


class Event:
    """One alloc or free as seen by the tracker."""

    __slots__ = ("seq", "kind", "time", "thread", "lcore", "pcs")

    def __init__(self, seq, kind, thread=None, lcore=None, pcs=(), when=None):
        self.seq = seq
        self.kind = kind
        self.time = time.time() if when is None else when
        self.thread = thread
        self.lcore = lcore
        self.pcs = tuple(pcs)


class Fault:
    """A detected misuse, with the events that explain it."""

    def __init__(self, kind, pool, addr, event, index=None, previous_free=None, last_alloc=None, detail=""):
        self.kind = kind
        self.pool = pool
        self.addr = addr
        self.event = event
        self.index = index
        self.previous_free = previous_free
        self.last_alloc = last_alloc
        self.detail = detail


class Entry:
    """Shadow of one object or block."""

    __slots__ = ("state", "size", "last_alloc", "last_free", "history")

    def __init__(self, state, size=0):
        self.state = state
        self.size = size
        self.last_alloc = None
        self.last_free = None
        self.history = collections.deque(maxlen=HISTORY)

    def apply(self, event):
        self.history.append(event)
        if event.kind == "alloc":
            self.state, self.last_alloc = IN_USE, event
        else:
            self.state, self.last_free = FREE, event


class ShadowPool:
    """Shadow of one mempool (or, with name HEAP_POOL, of the rte_malloc heap)."""

    def __init__(self, name, addr=None, elt_size=0):
        self.name = name
        self.addr = addr
        self.elt_size = elt_size
        self.entries = {}
        self.events = 0

    def seed(self, addr, state):
        """State of an object before tracking began (no events: origin unknown)."""
        self.entries[addr] = Entry(state, self.elt_size)

    def alloc(self, addr, event, size=None):
        """Record an alloc; a Fault when the shadow already had it in use."""
        self.events += 1
        entry = self.entries.get(addr)
        fault = None
        if entry is not None and entry.state == IN_USE and self.name != HEAP_POOL:
            fault = Fault("duplicate alloc", self.name, addr, event,
                          previous_free=entry.last_free, last_alloc=entry.last_alloc)
        if entry is None or self.name == HEAP_POOL:
            previous = entry
            entry = self.entries[addr] = Entry(IN_USE, self.elt_size if size is None else size)
            if previous is not None:
                entry.history.extend(previous.history)
        entry.apply(event)
        return fault

    def free(self, addr, event):
        """Record a free; a Fault when the shadow already had it free."""
        self.events += 1
        entry = self.entries.get(addr)
        if entry is None:
            entry = self.entries[addr] = Entry(UNKNOWN, self.elt_size)
        if entry.state == FREE:
            fault = Fault("duplicate free" if self.name != HEAP_POOL else "double rte_free", self.name, addr,
                          event, previous_free=entry.last_free, last_alloc=entry.last_alloc)
            entry.history.append(event)
            return fault
        entry.apply(event)
        return None

    def in_use(self):
        """[(addr, Entry)] of everything the shadow has out (including origin unknown)."""
        return [(addr, e) for addr, e in self.entries.items() if e.state == IN_USE]

    def in_use_count(self):
        return sum(1 for e in self.entries.values() if e.state == IN_USE)


class LeakGroup:
    """Objects still out that share one allocation backtrace."""

    def __init__(self, pool, pcs):
        self.pool = pool
        self.pcs = pcs
        self.count = 0
        self.bytes = 0
        self.oldest = None
        self.addrs = []

    def add(self, addr, entry):
        self.count += 1
        self.bytes += entry.size
        self.addrs.append(addr)
        when = entry.last_alloc.time if entry.last_alloc else None
        if when is not None and (self.oldest is None or when < self.oldest):
            self.oldest = when


class Tracker:
    """All shadows, the event counter, marks and faults of one debugging session."""

    def __init__(self):
        self.pools = {}
        self.heap = None
        self.now = time.time  # the clock of the events' times, for ages
        self.seq = 0
        self.marks = {}
        self.faults = []

    def event(self, kind, thread=None, lcore=None, pcs=()):
        self.seq += 1
        return Event(self.seq, kind, thread, lcore, pcs)

    def record_fault(self, fault):
        self.faults.append(fault)
        return fault

    def mark(self, name):
        self.marks[name] = self.seq
        return self.seq

    def mark_seq(self, name):
        if name not in self.marks:
            raise KeyError(name)
        return self.marks[name]

    def shadows(self, names=None, heap=False):
        chosen = [p for p in self.pools.values() if names is None or p.name in names]
        if heap and self.heap is not None:
            chosen.append(self.heap)
        return chosen

    def leaks(self, shadows, since=0, until=None):
        """Groups of entries in use allocated after seq `since` (and up to `until`), largest first.

        Entries of unknown origin (out before tracking) count only when since == 0.
        """
        groups = {}
        for shadow in shadows:
            for addr, entry in shadow.in_use():
                seq = entry.last_alloc.seq if entry.last_alloc else 0
                if entry.last_alloc is None and since:
                    continue
                if seq and (seq <= since or (until is not None and seq > until)):
                    continue
                pcs = entry.last_alloc.pcs if entry.last_alloc else ()
                key = (shadow.name, pcs)
                if key not in groups:
                    groups[key] = LeakGroup(shadow.name, pcs)
                groups[key].add(addr, entry)
        return sorted(groups.values(), key=lambda g: (-g.count, -g.bytes, g.pool))
