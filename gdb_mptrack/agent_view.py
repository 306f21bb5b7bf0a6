"""The preload agent's tables as seen from gdb, live or from a core.

Part of the target layer: it finds the exported symbol
`mptrack_agent_tables`, reads the tables through the session's memory (gdb
for a live process, the core file itself for a core, so a core's missing
memory is reported instead of read from disk), and turns them into the same
shadow tables (shadow.py) that breakpoint tracking fills, so `mptrack leaks`,
`history` and `dump` speak one vocabulary whichever tracker recorded.

The agent stores timestamps as TSC ticks since it started; ages are given
relative to the newest event it recorded (the closest thing a core has to
"now"), and event sequence numbers are not kept (marks need breakpoint
tracking).
"""

from . import shadow
from .agent_tables import AgentTables, AgentTablesError
from .shadow import FREE, HEAP_POOL, IN_USE, UNKNOWN
from .target import UserError, session, symbol_address

TABLES_SYMBOL = "mptrack_agent_tables"
AGENT_STATES = {"in-use": IN_USE, "free": FREE, "new": FREE}


def agent_tables():
    """AgentTables of the current target, or None when the agent is not loaded in it."""
    addr = symbol_address(TABLES_SYMBOL)
    if addr is None:
        return None
    try:
        return AgentTables.read(session().memory.read, addr)
    except AgentTablesError as e:
        raise UserError("preload agent: %s" % e) from None


def _event(tables, kind, lcore, tsc, stack_id):
    if not tsc:
        return None
    when = tables.seconds(tsc)
    return shadow.Event(0, kind, None, lcore, tables.stack(stack_id), when=when if when is not None else 0.0)


def _entry(tables, state, size, alloc, free):
    entry = shadow.Entry(AGENT_STATES.get(state, UNKNOWN), size)
    entry.last_alloc = _event(tables, "alloc", *alloc)
    entry.last_free = _event(tables, "free", *free)
    entry.history.extend(sorted((e for e in (entry.last_alloc, entry.last_free) if e), key=lambda e: e.time))
    return entry


def shadows_from_agent(tables):
    """A shadow.Tracker holding what the agent's tables say (pools, rte_malloc blocks, faults)."""
    tracker = shadow.Tracker()
    newest = 0.0
    for pool in tables.pools():
        shadow_pool = shadow.ShadowPool(pool.name, pool.mp, pool.elt_size)
        for obj in tables.objects(pool):
            entry = _entry(tables, obj.state, pool.elt_size,
                           (obj.alloc_lcore, obj.alloc_tsc, obj.alloc_stack),
                           (obj.free_lcore, obj.free_tsc, obj.free_stack))
            shadow_pool.entries[obj.addr] = entry
            newest = max([newest] + [e.time for e in entry.history])
        tracker.pools[pool.mp] = shadow_pool
    if tables.malloc_enabled:
        tracker.heap = shadow.ShadowPool(HEAP_POOL)
        for block in tables.malloc_blocks():
            entry = _entry(tables, block.state, block.size,
                           (block.alloc_lcore, block.alloc_tsc, block.alloc_stack),
                           (block.free_lcore, block.free_tsc, block.free_stack))
            tracker.heap.entries[block.addr] = entry
            newest = max([newest] + [e.time for e in entry.history])
    tracker.now = lambda: newest
    return tracker


def agent_faults(tables):
    """shadow.Fault records for the agent's fault ring (oldest first)."""
    faults = []
    for f in tables.faults():
        event = shadow.Event(f.seq, "alloc" if f.kind == "duplicate alloc" else "free", None, f.lcore,
                             tables.stack(f.stack), when=tables.seconds(f.tsc) or 0.0)
        previous_free = shadow.Event(0, "free", None, None, tables.stack(f.prev_free_stack), when=0.0) \
            if f.prev_free_stack else None
        last_alloc = shadow.Event(0, "alloc", None, None, tables.stack(f.prev_alloc_stack), when=0.0) \
            if f.prev_alloc_stack else None
        detail = "it belongs to the pool at 0x%x" % f.other_pool if f.other_pool else ""
        faults.append(shadow.Fault(f.kind, f.pool, f.obj, event, previous_free=previous_free,
                                   last_alloc=last_alloc, detail=detail))
    return faults
