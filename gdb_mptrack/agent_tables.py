"""Decode the preload agent's in-memory tables from bytes; no gdb here.

The agent (gdb_mptrack/agent/mptrack_agent.c) keeps its shadow tables in the
process's memory, from the exported symbol ``mptrack_agent_tables``; the layout
is documented in ``gdb_mptrack/agent/mptrack_agent.h`` (version 2).  This
module reads them through one function, ``read(addr, size) -> bytes``, so the
same code serves a live process (gdb's ``inferior.read_memory`` or
``/proc/PID/mem``), a core dump, and unit tests that build the bytes by hand::

    tables = AgentTables.read(read, address_of_mptrack_agent_tables)
    for pool in tables.pools():
        for obj in tables.objects(pool, state="in-use"):
            print(pool.name, hex(obj.addr), tables.stack(obj.alloc_stack))

``read`` may raise any exception for an unreadable address: reading the
header turns it into ``AgentTablesError``; a pool whose record cannot be read
is skipped with ``pool.error`` set (``pools(errors=True)`` lists it), an
object array that cannot be read stops that pool's listing with ``TableReadError``.
Loops are bounded by the header's capacities, so a corrupt table cannot hang.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Callable, Iterator

Reader = Callable[[int, int], bytes]

MAGIC = b"MPTRACK\0"
POOL_MAGIC = b"MPTPOOL\0"
VERSION = 2

STATES = {0: "new", 1: "free", 2: "in-use"}
FAULT_KINDS = {1: "duplicate free", 2: "foreign free", 3: "stray free", 4: "duplicate alloc"}
ON_ERROR = {0: "abort", 1: "trap", 2: "log"}
LCORE_NONE = 0xFFFF

# Field name -> (offset, struct code), version 2; tests check them against the C header.
TABLES_FIELDS = {
    "magic": (0, "8s"), "version": (8, "I"), "header_size": (12, "I"), "pool_size": (16, "I"),
    "obj_size": (20, "I"), "chunk_size": (24, "I"), "fault_size": (28, "I"),
    "bt_depth": (32, "I"), "stack_record_size": (36, "I"), "stacks": (40, "Q"),
    "stacks_capacity": (48, "I"), "stacks_used": (52, "I"), "stacks_dropped": (56, "Q"),
    "tsc_hz": (64, "Q"), "start_tsc": (72, "Q"), "pid": (80, "i"), "on_error": (84, "I"),
    "bt_sample": (88, "I"), "max_pools": (92, "I"), "nfaults": (96, "Q"), "malloc": (104, "Q"),
    "faults": (112, None),
}
FAULT_RING = 32
POOL_FIELDS = {
    "magic": (0, "8s"), "mp": (8, "Q"), "name": (16, "32s"), "live": (48, "I"),
    "capacity": (52, "I"), "nobjs": (56, "I"), "shift": (60, "I"), "objs": (64, "Q"),
    "chunks": (72, "Q"), "nchunks": (80, "I"), "max_chunks": (84, "I"), "ops_index": (88, "I"),
    "cache_size": (92, "I"), "elt_size": (96, "Q"), "header_size": (104, "Q"),
    "trailer_size": (112, "Q"), "faults": (120, "Q"), "create_tsc": (128, "Q"),
    "shared": (136, "I"), "slot": (140, "I"),
}
OBJ_FIELDS = {
    "addr": (0, "Q"), "state": (8, "I"), "allocs": (12, "I"), "alloc_stack": (16, "I"),
    "alloc_lcore": (20, "H"), "alloc_tsc": (24, "Q"), "free_stack": (32, "I"),
    "free_lcore": (36, "H"), "free_tsc": (40, "Q"),
}
CHUNK_FIELDS = {"base": (0, "Q"), "len": (8, "Q"), "map": (16, "Q"), "first": (24, "I"),
                "count": (28, "I")}
FAULT_FIELDS = {
    "seq": (0, "Q"), "kind": (8, "I"), "lcore": (12, "H"), "pool": (16, "Q"), "obj": (24, "Q"),
    "other_pool": (32, "Q"), "stack": (40, "I"), "prev_free_stack": (44, "I"),
    "prev_alloc_stack": (48, "I"), "tsc": (56, "Q"),
}
STACK_FIELDS = {"hash": (0, "Q"), "depth": (8, "I")}
STACK_HEADER = 16
MALLOC_FIELDS = {"slots": (0, "Q"), "capacity": (8, "I"), "block_size": (12, "I"),
                 "dropped": (16, "Q"), "faults": (24, "Q")}
BLOCK_FIELDS = {
    "addr": (0, "Q"), "size": (8, "Q"), "state": (16, "I"), "alloc_stack": (20, "I"),
    "free_stack": (24, "I"), "alloc_lcore": (28, "H"), "free_lcore": (30, "H"),
    "alloc_tsc": (32, "Q"), "free_tsc": (40, "Q"),
}

MIN_SIZES = {"tables": 112 + FAULT_RING * 64, "pool": 144, "obj": 48, "chunk": 32,
             "fault": 64, "block": 48}
MAX_OBJECTS = 1 << 28        # sanity bound on a pool's capacity
BATCH = 1 << 14              # objects read per call


class AgentTablesError(Exception):
    """The tables cannot be read or are not the agent's: one line for the user."""


class TableReadError(AgentTablesError):
    """Part of the tables could not be read (an address the core left out, ...)."""


def _decode(fields: dict, data: bytes, base: int = 0) -> dict:
    out = {}
    for name, (off, code) in fields.items():
        if code is None:
            continue
        (value,) = struct.unpack_from("<" + code, data, base + off)
        out[name] = value
    return out


def _cstr(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("utf-8", "replace")


@dataclass
class AgentObject:
    index: int
    addr: int
    state: str                  # "new" (never handed out), "free", "in-use"
    alloc_stack: int            # stack ids: 0 none
    free_stack: int
    alloc_lcore: int | None     # None: never allocated, or not an EAL lcore (see *_tsc)
    free_lcore: int | None
    alloc_tsc: int              # 0: never
    free_tsc: int
    allocs: int


@dataclass
class AgentPool:
    address: int                # of the pool record in the target
    mp: int                     # struct rte_mempool *
    name: str
    live: bool
    capacity: int
    nobjs: int
    objs: int
    ops_index: int
    cache_size: int             # what the program asked for; the agent runs it at 0
    elt_size: int
    header_size: int
    trailer_size: int
    faults: int
    create_tsc: int
    shared: bool
    slot: int
    chunks: list = field(default_factory=list)   # (base, len) of each memory chunk
    error: str | None = None


@dataclass
class AgentFault:
    seq: int
    kind: str
    lcore: int | None
    pool: str                   # name of the pool it was put to / got from
    pool_address: int
    obj: int
    other_pool: int             # foreign free: the rte_mempool * holding obj, else 0
    stack: int
    prev_free_stack: int
    prev_alloc_stack: int
    tsc: int


@dataclass
class AgentBlock:
    """An rte_malloc block (MPTRACK_MALLOC=1)."""
    addr: int
    size: int
    state: str                  # "in-use" or "free"
    alloc_stack: int
    free_stack: int
    alloc_lcore: int | None
    free_lcore: int | None
    alloc_tsc: int
    free_tsc: int


def _lcore(value: int, tsc: int) -> int | None:
    return None if value == LCORE_NONE or tsc == 0 else value


class AgentTables:
    """The agent's tables in one target, read through ``read(addr, size)``."""

    def __init__(self, read: Reader, address: int, header: dict, raw: bytes):
        self._read = read
        self.address = address
        self.header = header
        self._raw = raw
        self._stacks: dict[int, tuple] = {0: ()}
        self.version = header["version"]
        self.bt_depth = header["bt_depth"]
        self.bt_sample = header["bt_sample"]
        self.tsc_hz = header["tsc_hz"]
        self.start_tsc = header["start_tsc"]
        self.pid = header["pid"]
        self.on_error = ON_ERROR.get(header["on_error"], str(header["on_error"]))
        self.nfaults = header["nfaults"]
        self.stacks_used = header["stacks_used"]
        self.stacks_dropped = header["stacks_dropped"]
        self.malloc_enabled = header["malloc"] != 0

    # ------------------------------------------------------------------ reading

    def _get(self, addr: int, size: int) -> bytes:
        try:
            data = bytes(self._read(addr, size))
        except Exception as exc:  # the reader's own error type: gdb.MemoryError, OSError...
            raise TableReadError(f"cannot read {size} bytes at {addr:#x}: {exc}") from None
        if len(data) != size:
            raise TableReadError(f"short read at {addr:#x}: {len(data)} of {size} bytes")
        return data

    @classmethod
    def read(cls, read: Reader, address: int) -> "AgentTables":
        """Check the magic and version at ``address`` and read the header."""
        try:
            head = bytes(read(address, 112))
        except Exception as exc:
            raise AgentTablesError(f"cannot read the agent's tables at {address:#x}: {exc}") from None
        if len(head) < 112 or head[:8] != MAGIC:
            if head[:8] == b"\0" * 8:
                raise AgentTablesError("the agent's tables are empty: the agent has not "
                                       "started in this process")
            raise AgentTablesError(f"no agent tables at {address:#x} (bad magic)")
        header = _decode(TABLES_FIELDS, head)
        if header["version"] != VERSION:
            raise AgentTablesError(f"agent tables version {header['version']}: this gdb-mptrack "
                                   f"reads version {VERSION}")
        sizes = {"tables": header["header_size"], "pool": header["pool_size"],
                 "obj": header["obj_size"], "chunk": header["chunk_size"],
                 "fault": header["fault_size"]}
        for what, size in sizes.items():
            if size < MIN_SIZES[what] or size > (1 << 20):
                raise AgentTablesError(f"agent tables: implausible {what} size {size}")
        if header["max_pools"] > 1 << 16:
            raise AgentTablesError(f"agent tables: implausible pool count {header['max_pools']}")
        try:
            raw = bytes(read(address, header["header_size"]))
        except Exception as exc:
            raise AgentTablesError(f"cannot read the agent's tables at {address:#x}: {exc}") from None
        return cls(read, address, header, raw)

    def _pool_slots_offset(self) -> int:
        return TABLES_FIELDS["faults"][0] + FAULT_RING * self.header["fault_size"]

    def pool_addresses(self) -> list[int]:
        off = self._pool_slots_offset()
        n = self.header["max_pools"]
        if off + 8 * n > len(self._raw):
            raise AgentTablesError("agent tables: header too short for its pool slots")
        return [a for a in struct.unpack_from(f"<{n}Q", self._raw, off) if a]

    def _pool(self, address: int) -> AgentPool:
        raw = self._get(address, self.header["pool_size"])
        if raw[:8] != POOL_MAGIC:
            raise TableReadError(f"pool record at {address:#x}: bad magic")
        d = _decode(POOL_FIELDS, raw)
        capacity = min(d["capacity"], MAX_OBJECTS)
        pool = AgentPool(address, d["mp"], _cstr(d["name"]), bool(d["live"]), capacity,
                         min(d["nobjs"], capacity), d["objs"], d["ops_index"], d["cache_size"],
                         d["elt_size"], d["header_size"], d["trailer_size"], d["faults"],
                         d["create_tsc"], bool(d["shared"]), d["slot"])
        nchunks = min(d["nchunks"], d["max_chunks"], 1 << 16)
        if nchunks:
            size = self.header["chunk_size"]
            craw = self._get(d["chunks"], nchunks * size)
            for i in range(nchunks):
                c = _decode(CHUNK_FIELDS, craw, i * size)
                pool.chunks.append((c["base"], c["len"]))
        return pool

    def pools(self, errors: bool = False) -> list[AgentPool]:
        """Tracked pools, in slot order; with ``errors``, unreadable ones too (``.error`` set)."""
        out = []
        for address in self.pool_addresses():
            try:
                out.append(self._pool(address))
            except TableReadError as exc:
                if errors:
                    out.append(AgentPool(address, 0, "?", False, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                         False, -1, error=str(exc)))
        return out

    def pool(self, key) -> AgentPool | None:
        """The pool named ``key`` (str) or whose rte_mempool address is ``key`` (int)."""
        for p in self.pools():
            if (isinstance(key, str) and p.name == key) or (isinstance(key, int) and p.mp == key):
                return p
        return None

    def objects(self, pool: AgentPool, state: str | None = None,
                limit: int | None = None) -> Iterator[AgentObject]:
        """The pool's populated objects (``state``: new, free, in-use; None: all)."""
        size = self.header["obj_size"]
        yielded = 0
        for start in range(0, pool.nobjs, BATCH):
            count = min(BATCH, pool.nobjs - start)
            raw = self._get(pool.objs + start * size, count * size)
            for i in range(count):
                d = _decode(OBJ_FIELDS, raw, i * size)
                st = STATES.get(d["state"], f"?{d['state']}")
                if state is not None and st != state:
                    continue
                yield AgentObject(start + i, d["addr"], st, d["alloc_stack"], d["free_stack"],
                                  _lcore(d["alloc_lcore"], d["alloc_tsc"]),
                                  _lcore(d["free_lcore"], d["free_tsc"]),
                                  d["alloc_tsc"], d["free_tsc"], d["allocs"])
                yielded += 1
                if limit is not None and yielded >= limit:
                    return

    def object_at(self, addr: int) -> tuple[AgentPool, AgentObject] | None:
        """The tracked object that starts at ``addr``, or None."""
        for pool in self.pools():
            if not any(base <= addr < base + length for base, length in pool.chunks):
                continue
            for obj in self.objects(pool):
                if obj.addr == addr:
                    return pool, obj
        return None

    def stack(self, stack_id: int) -> tuple[int, ...]:
        """Return addresses of stack ``stack_id``, innermost first; () for 0 or unknown."""
        if stack_id in self._stacks:
            return self._stacks[stack_id]
        frames: tuple = ()
        h = self.header
        if 0 < stack_id <= h["stacks_capacity"] and h["stacks"] and h["stack_record_size"]:
            rec = self._get(h["stacks"] + (stack_id - 1) * h["stack_record_size"],
                            h["stack_record_size"])
            d = _decode(STACK_FIELDS, rec)
            if d["hash"] != 0 and not d["hash"] >> 63:
                depth = min(d["depth"], (h["stack_record_size"] - STACK_HEADER) // 8)
                frames = struct.unpack_from(f"<{depth}Q", rec, STACK_HEADER)
        self._stacks[stack_id] = frames
        return frames

    def faults(self) -> list[AgentFault]:
        """The recorded faults still in the ring (the last 32), oldest first."""
        size = self.header["fault_size"]
        base = TABLES_FIELDS["faults"][0]
        names = {}
        out = []
        for i in range(FAULT_RING):
            d = _decode(FAULT_FIELDS, self._raw, base + i * size)
            if d["seq"] == 0:
                continue
            if d["pool"] not in names:
                try:
                    names[d["pool"]] = self._pool(d["pool"]).name
                except TableReadError:
                    names[d["pool"]] = "?"
            out.append(AgentFault(d["seq"], FAULT_KINDS.get(d["kind"], f"fault {d['kind']}"),
                                  None if d["lcore"] == LCORE_NONE else d["lcore"],
                                  names[d["pool"]], d["pool"], d["obj"], d["other_pool"],
                                  d["stack"], d["prev_free_stack"], d["prev_alloc_stack"],
                                  d["tsc"]))
        return sorted(out, key=lambda f: f.seq)

    def malloc_blocks(self, state: str | None = None) -> Iterator[AgentBlock]:
        """rte_malloc blocks the agent recorded (``state``: in-use or free)."""
        if not self.header["malloc"]:
            return
        m = _decode(MALLOC_FIELDS, self._get(self.header["malloc"], 32))
        size = m["block_size"]
        capacity = min(m["capacity"], MAX_OBJECTS)
        if size < MIN_SIZES["block"]:
            raise TableReadError(f"rte_malloc table: implausible block size {size}")
        for start in range(0, capacity, BATCH):
            count = min(BATCH, capacity - start)
            raw = self._get(m["slots"] + start * size, count * size)
            for i in range(count):
                d = _decode(BLOCK_FIELDS, raw, i * size)
                if d["addr"] == 0 or d["state"] not in (1, 2):
                    continue
                st = "in-use" if d["state"] == 2 else "free"
                if state is not None and st != state:
                    continue
                yield AgentBlock(d["addr"], d["size"], st, d["alloc_stack"], d["free_stack"],
                                 _lcore(d["alloc_lcore"], d["alloc_tsc"]),
                                 _lcore(d["free_lcore"], d["free_tsc"]),
                                 d["alloc_tsc"], d["free_tsc"])

    def seconds(self, tsc: int) -> float | None:
        """A tsc value as seconds since the agent started, when the clock rate is known."""
        if not self.tsc_hz or not tsc:
            return None
        return (tsc - self.start_tsc) / self.tsc_hz
