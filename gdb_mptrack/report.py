"""Offline reports from the preload agent's files: no gdb, no target process.

``python3 -m gdb_mptrack report FILE [--maps MAPS] [--paths DIR:DIR]
[--format table|csv|json|callgrind|folded]``

FILE is either an event log (``MPTRACK_LOG``, starts with ``MPTLOG1``) or a
SIGRTMIN dump (``MPTRACK_DUMP``, CSV).  The report lists what is still in use
(leaks), grouped by allocation backtrace, largest group first, and the faults
the log recorded.  Addresses are resolved with pyelftools (ELF symbols and DWARF
line tables) in the binaries named by the target's ``/proc/PID/maps``: the log
carries the maps, a dump has ``FILE.maps`` beside it, ``--maps`` overrides
both.  ``--paths`` lists directories where the binaries are looked up by base
name (and by their full path under each directory) before their recorded path,
for reports made on another machine.

The log layout is documented in ``gdb_mptrack/agent/mptrack_agent.h``.
"""

from __future__ import annotations

import bisect
import csv
import io
import json
import os
import struct
import sys
from dataclasses import dataclass, field

LOG_MAGIC = b"MPTLOG1\0"
EVENT = struct.Struct("<QQIIHHB3x")
HEADER = struct.Struct("<8sIIIIQQiI16x")

EV_ALLOC, EV_FREE, EV_FAULT, EV_POOL, EV_POOL_GONE, EV_MALLOC, EV_MFREE, EV_STACK, EV_MAPS, \
    EV_LOST, EV_CLOCK = range(1, 12)
MALLOC_POOL = 0xFFFF
LCORE_NONE = 0xFFFF
FAULT_KINDS = {1: "duplicate free", 2: "foreign free", 3: "stray free", 4: "duplicate alloc"}


class ReportError(Exception):
    """A file that is not what it should be: one line for the user."""


# --------------------------------------------------------------------------- reading


@dataclass
class Event:
    kind: int
    tsc: int
    addr: int
    stack: int
    aux: int
    pool: str
    lcore: int


@dataclass
class Block:
    """An object or rte_malloc block still in use (or as last seen)."""
    addr: int
    pool: str
    state: str
    alloc_frames: tuple = ()
    free_frames: tuple = ()
    size: int = 0
    alloc_lcore: int | None = None
    alloc_tsc: int = 0


@dataclass
class Trace:
    """What a log or dump says: the in-use set and the faults."""
    source: str
    pid: int | None = None
    tsc_hz: int = 0
    end_tsc: int = 0
    maps: str | None = None
    blocks: list = field(default_factory=list)       # Block, state in-use
    faults: list = field(default_factory=list)       # (kind name, pool, addr, frames)
    events: int = 0
    lost: int = 0


def _cstr(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("utf-8", "replace")


def read_log(data: bytes, source: str = "log") -> Trace:
    """Replay an event log: the objects and blocks in use at its end, and its faults."""
    if len(data) < HEADER.size or not data.startswith(LOG_MAGIC):
        raise ReportError(f"{source}: not an mptrack event log (no {LOG_MAGIC[:7].decode()} magic)")
    (_, version, header_size, event_size, _depth, tsc_hz, _start, pid, _r) = HEADER.unpack_from(data)
    if version != 1 or event_size != EVENT.size:
        raise ReportError(f"{source}: log version {version} with {event_size}-byte events "
                          "is not supported (version 1, 32 bytes)")
    trace = Trace(source, pid=pid, tsc_hz=tsc_hz)
    stacks: dict[int, tuple] = {0: ()}
    pools: dict[int, str] = {}
    live: dict[tuple, Block] = {}
    off = header_size
    n = len(data)
    while off + EVENT.size <= n:
        tsc, addr, stack, aux, pool, lcore, kind = EVENT.unpack_from(data, off)
        off += EVENT.size
        if kind == EV_STACK:
            blocks = (aux * 8 + 31) // 32
            raw = data[off:off + aux * 8]
            stacks[stack] = struct.unpack(f"<{len(raw) // 8}Q", raw)
            off += 32 * blocks
            continue
        if kind == EV_MAPS:
            trace.maps = data[off:off + aux].decode("utf-8", "replace")
            off += 32 * ((aux + 31) // 32)
            continue
        if kind == EV_POOL:
            pools[pool] = _cstr(data[off:off + 32])
            off += 32
            continue
        if kind == EV_CLOCK:
            trace.tsc_hz = addr
            continue
        if kind == EV_LOST:
            trace.lost += aux
            continue
        name = "rte_malloc" if pool == MALLOC_POOL else pools.get(pool, f"pool#{pool}")
        trace.end_tsc = max(trace.end_tsc, tsc)
        if kind in (EV_ALLOC, EV_MALLOC):
            trace.events += 1
            live[(name, addr)] = Block(addr, name, "in-use", stacks.get(stack, ()),
                                       size=aux if kind == EV_MALLOC else 0,
                                       alloc_lcore=None if lcore == LCORE_NONE else lcore,
                                       alloc_tsc=tsc)
        elif kind in (EV_FREE, EV_MFREE):
            trace.events += 1
            live.pop((name, addr), None)
        elif kind == EV_POOL_GONE:
            for key in [k for k in live if k[0] == name]:
                del live[key]
        elif kind == EV_FAULT:
            trace.faults.append((FAULT_KINDS.get(aux, f"fault {aux}"), name, addr,
                                 stacks.get(stack, ())))
    trace.blocks = sorted(live.values(), key=lambda b: (b.pool, b.addr))
    return trace


def read_dump(text: str, source: str = "dump") -> Trace:
    """A SIGRTMIN dump: its in-use rows."""
    reader = csv.DictReader(io.StringIO(text))
    if not reader.fieldnames or reader.fieldnames[:4] != ["addr", "state", "alloc_backtrace",
                                                         "free_backtrace"]:
        raise ReportError(f"{source}: not an mptrack dump (want the CSV header "
                          "addr,state,alloc_backtrace,free_backtrace)")
    trace = Trace(source)
    for row in reader:
        if row["state"] != "in-use":
            continue
        frames = tuple(int(x, 16) for x in row["alloc_backtrace"].split())
        lcore = row.get("alloc_lcore") or ""
        trace.blocks.append(Block(int(row["addr"], 16), row.get("pool") or "?", "in-use", frames,
                                  size=int(row.get("size") or 0),
                                  alloc_lcore=int(lcore) if lcore.isdigit() else None))
        trace.events += 1
    return trace


def read_file(path: str) -> Trace:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise ReportError(f"cannot read {path}: {exc.strerror}") from None
    if data.startswith(LOG_MAGIC):
        return read_log(data, path)
    trace = read_dump(data.decode("utf-8", "replace"), path)
    maps = path + ".maps"
    if os.path.exists(maps):
        with open(maps, encoding="utf-8", errors="replace") as f:
            trace.maps = f.read()
    return trace
