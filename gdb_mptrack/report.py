"""Offline reports from the preload agent's files: no gdb, no target process.

``python3 -m gdb_mptrack report FILE [--maps MAPS] [--paths DIR:DIR]
[--format table|csv|json|callgrind|folded] [--color auto|always|never]``

FILE is either an event log (``MPTRACK_LOG``, starts with ``MPTLOG1``) or a
SIGRTMIN dump (``MPTRACK_DUMP``, CSV).  The report lists what is still in use
(leaks), grouped by allocation backtrace, largest group first, and the faults
the log recorded.  Addresses are resolved with pyelftools (ELF symbols and DWARF
line tables) in the binaries named by the target's ``/proc/PID/maps``: the log
carries the maps, a dump has ``FILE.maps`` beside it, ``--maps`` overrides
both.  ``--paths`` lists directories where the binaries are looked up by base
name (and by their full path under each directory) before their recorded path,
for reports made on another machine.  The table format starts with summary
tables (tabulate) of the leak groups and faults, then each one's backtrace; it
is coloured (pygments, report_colour.py) on a terminal or with ``--color
always``.

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
LOG_VERSIONS = (1, 2)   # 1: no generations (replayed in file order); 2: generations and epochs
EVENT = struct.Struct("<QQIIHHBBH")  # ..., kind, seq (3 bytes, little-endian: B + H)
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


def _serial_newer(a: int, b: int, bits: int) -> bool:
    """Is generation ``a`` after ``b``, both taken modulo 2**bits (RFC 1982)?"""
    d = (a - b) % (1 << bits)
    return 0 < d < (1 << (bits - 1))


class _Latest:
    """The newest event of one object or block: (generation, FREE after ALLOC).

    Two threads' events reach the log in batches, and their timestamps come
    from a 1 ms clock: neither orders a put on one lcore and the get of the
    same object on another a microsecond later.  The generation does: a get
    carries the object's alloc count, a put the count of the get it ends."""

    __slots__ = ("gen", "freed", "block", "stack")

    def __init__(self, gen: int, freed: bool, block: Block | None, stack: int):
        self.gen, self.freed, self.block, self.stack = gen, freed, block, stack

    def older_than(self, gen: int, freed: bool, bits: int) -> bool:
        if gen != self.gen:
            return _serial_newer(gen, self.gen, bits) if bits else gen > self.gen
        return freed >= self.freed   # same generation: the free ends the alloc; ties: file order


def read_log(data: bytes, source: str = "log") -> Trace:
    """Replay an event log: the objects and blocks in use at its end, and its faults.

    Version 2 logs are replayed per object by generation (see _Latest), and per
    pool epoch (a pool slot reused by a new pool is a new epoch): the result
    does not depend on the order in which the writer interleaved the threads.
    Version 1 logs carry no generation: they are replayed in file order."""
    if len(data) < HEADER.size or not data.startswith(LOG_MAGIC):
        raise ReportError(f"{source}: not an mptrack event log (no {LOG_MAGIC[:7].decode()} magic)")
    (_, version, header_size, event_size, _depth, tsc_hz, _start, pid, _r) = HEADER.unpack_from(data)
    if version not in LOG_VERSIONS or event_size != EVENT.size:
        raise ReportError(f"{source}: log version {version} with {event_size}-byte events "
                          f"is not supported (versions {', '.join(map(str, LOG_VERSIONS))}, "
                          f"{EVENT.size} bytes)")
    ordered = version >= 2
    trace = Trace(source, pid=pid, tsc_hz=tsc_hz)
    stacks: dict[int, tuple] = {0: ()}
    pools: dict[tuple, str] = {}              # (slot, epoch) -> name
    gone: set[tuple] = set()                  # (slot, epoch) of pools freed
    latest: dict[tuple, _Latest] = {}         # (slot, epoch, addr) -> newest event
    faults: list[tuple] = []                  # (kind, (slot, epoch), addr, stack id)
    off = header_size
    n = len(data)
    index = 0
    while off + EVENT.size <= n:
        tsc, addr, stack, aux, pool, lcore, kind, seq_lo, seq_hi = EVENT.unpack_from(data, off)
        seq = seq_lo | seq_hi << 8 if ordered else 0
        off += EVENT.size
        index += 1
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
            pools[(pool, seq)] = _cstr(data[off:off + 32])
            off += 32
            continue
        if kind == EV_CLOCK:
            trace.tsc_hz = addr
            continue
        if kind == EV_LOST:
            trace.lost += aux
            continue
        malloc = pool == MALLOC_POOL
        where = (MALLOC_POOL, 0) if malloc else (pool, seq)
        trace.end_tsc = max(trace.end_tsc, tsc)
        if kind in (EV_ALLOC, EV_MALLOC, EV_FREE, EV_MFREE):
            trace.events += 1
            freed = kind in (EV_FREE, EV_MFREE)
            if not ordered:
                gen, bits = index, 0
            elif malloc:
                gen, bits = seq, 24
            else:
                gen, bits = aux, 32
            key = where + (addr,)
            cur = latest.get(key)
            if cur is None or cur.older_than(gen, freed, bits):
                block = None if freed else Block(
                    addr, "", "in-use", size=aux if kind == EV_MALLOC else 0,
                    alloc_lcore=None if lcore == LCORE_NONE else lcore, alloc_tsc=tsc)
                if cur is None:
                    latest[key] = _Latest(gen, freed, block, stack)
                else:
                    cur.gen, cur.freed, cur.block, cur.stack = gen, freed, block, stack
        elif kind == EV_POOL_GONE:
            if ordered:
                gone.add(where)
            else:   # version 1: what was logged before the POOL_GONE record
                for key in [k for k in latest if k[:2] == where]:
                    del latest[key]
        elif kind == EV_FAULT:
            faults.append((aux, where, addr, stack))

    def name(where: tuple) -> str:
        if where[0] == MALLOC_POOL:
            return "rte_malloc"
        return pools.get(where, f"pool#{where[0]}")

    blocks = []
    for key, cur in latest.items():
        if cur.block is None or key[:2] in gone:
            continue
        b = cur.block
        b.pool = name(key[:2])
        b.alloc_frames = stacks.get(cur.stack, ())
        blocks.append(b)
    trace.blocks = sorted(blocks, key=lambda b: (b.pool, b.addr))
    trace.faults = [(FAULT_KINDS.get(k, f"fault {k}"), name(w), a, stacks.get(sid, ()))
                    for k, w, a, sid in faults]
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


# --------------------------------------------------------------------------- symbols


@dataclass
class Mapping:
    lo: int
    hi: int
    offset: int
    path: str


def parse_maps(text: str) -> list[Mapping]:
    out = []
    for line in text.splitlines():
        parts = line.split(None, 5)
        if len(parts) < 6 or not parts[5].startswith("/"):
            continue
        lo, hi = (int(x, 16) for x in parts[0].split("-"))
        out.append(Mapping(lo, hi, int(parts[2], 16), parts[5].replace(" (deleted)", "")))
    out.sort(key=lambda m: m.lo)
    return out


class Binary:
    """One ELF file: its load segments, function symbols and DWARF line table."""

    def __init__(self, path: str):
        from elftools.elf.elffile import ELFFile
        self.path = path
        self._f = open(path, "rb")
        self.elf = ELFFile(self._f)
        self.segments = [(s["p_offset"], s["p_filesz"], s["p_vaddr"]) for s in self.elf.iter_segments()
                         if s["p_type"] == "PT_LOAD"]
        syms = {}
        for name in (".symtab", ".dynsym"):
            sec = self.elf.get_section_by_name(name)
            if sec is None:
                continue
            for s in sec.iter_symbols():
                if s["st_info"]["type"] in ("STT_FUNC", "STT_GNU_IFUNC") and s["st_value"] and s.name:
                    syms.setdefault(s["st_value"], (s.name, s["st_size"]))
        self.sym_addrs = sorted(syms)
        self.syms = [syms[a] for a in self.sym_addrs]
        self._lines = None

    def vaddr(self, file_offset: int) -> int | None:
        for off, size, vaddr in self.segments:
            if off <= file_offset < off + size:
                return file_offset - off + vaddr
        return None

    def function(self, vaddr: int) -> tuple[str, int] | None:
        i = bisect.bisect_right(self.sym_addrs, vaddr) - 1
        if i < 0:
            return None
        name, size = self.syms[i]
        start = self.sym_addrs[i]
        if size and vaddr >= start + size:
            return None
        return name, vaddr - start

    def _line_table(self):
        if self._lines is None:
            rows = []
            try:
                if self.elf.has_dwarf_info():
                    dwarf = self.elf.get_dwarf_info()
                    for cu in dwarf.iter_CUs():
                        lp = dwarf.line_program_for_CU(cu)
                        if lp is None:
                            continue
                        files = lp["file_entry"]
                        dirs = lp["include_directory"]
                        v5 = lp.header.version >= 5
                        for entry in lp.get_entries():
                            st = entry.state
                            if st is None:
                                continue
                            if st.end_sequence:
                                rows.append((st.address, None, 0))
                                continue
                            idx = st.file if v5 else st.file - 1
                            name = "?"
                            if 0 <= idx < len(files):
                                fe = files[idx]
                                name = fe.name.decode(errors="replace")
                                d = fe.dir_index if v5 else fe.dir_index - 1
                                if not name.startswith("/") and 0 <= d < len(dirs):
                                    name = os.path.join(dirs[d].decode(errors="replace"), name)
                            rows.append((st.address, name, st.line))
            except Exception:  # a DWARF form pyelftools does not know: symbols only
                rows = []
            rows.sort(key=lambda r: (r[0], r[1] is not None))
            self._lines = ([r[0] for r in rows], rows)
        return self._lines

    def line(self, vaddr: int) -> tuple[str, int] | None:
        addrs, rows = self._line_table()
        i = bisect.bisect_right(addrs, vaddr) - 1
        if i < 0 or rows[i][1] is None:
            return None
        return rows[i][1], rows[i][2]


class Symbolizer:
    """Return addresses -> 'function+0xoff (file:line)' through the target's maps."""

    def __init__(self, maps_text: str | None, paths: list[str] | None = None):
        self.maps = parse_maps(maps_text or "")
        self.starts = [m.lo for m in self.maps]
        self.paths = paths or []
        self.binaries: dict[str, Binary | None] = {}
        self.cache: dict[int, str] = {}

    def _binary(self, path: str) -> Binary | None:
        if path not in self.binaries:
            found = None
            candidates = []
            for d in self.paths:
                candidates += [os.path.join(d, os.path.basename(path)), os.path.join(d, path.lstrip("/"))]
            candidates.append(path)
            for c in candidates:
                if os.path.isfile(c):
                    try:
                        found = Binary(c)
                        break
                    except ImportError as exc:
                        raise ReportError(f"symbols need pyelftools ({exc}); install "
                                          "python3-pyelftools or use /usr/bin/python3") from None
                    except Exception:
                        continue
            self.binaries[path] = found
        return self.binaries[path]

    def frame(self, pc: int) -> str:
        if pc in self.cache:
            return self.cache[pc]
        text = f"{pc:#x}"
        i = bisect.bisect_right(self.starts, pc) - 1
        if i >= 0 and pc < self.maps[i].hi:
            m = self.maps[i]
            base = os.path.basename(m.path)
            offset = pc - m.lo + m.offset
            text = f"{base}+{offset:#x}"
            b = self._binary(m.path)
            if b is not None:
                v = b.vaddr(offset - 1)   # a return address: the call is before it
                if v is not None:
                    fn = b.function(v)
                    line = b.line(v)
                    if fn:
                        text = f"{fn[0]}+{fn[1] + 1:#x}"
                        text += f" ({os.path.basename(line[0])}:{line[1]})" if line else f" ({base})"
                    elif line:
                        text = f"{base}+{offset:#x} ({os.path.basename(line[0])}:{line[1]})"
        self.cache[pc] = text
        return text


# --------------------------------------------------------------------------- reports


@dataclass
class Group:
    pool: str
    frames: tuple
    count: int = 0
    bytes: int = 0
    oldest_tsc: int = 0
    addrs: list = field(default_factory=list)


def leak_groups(trace: Trace) -> list[Group]:
    groups: dict[tuple, Group] = {}
    for b in trace.blocks:
        g = groups.setdefault((b.pool, b.alloc_frames), Group(b.pool, b.alloc_frames))
        g.count += 1
        g.bytes += b.size
        if b.alloc_tsc and (not g.oldest_tsc or b.alloc_tsc < g.oldest_tsc):
            g.oldest_tsc = b.alloc_tsc
        g.addrs.append(b.addr)
    return sorted(groups.values(), key=lambda g: (-g.count, -g.bytes, g.pool))


def _age(trace: Trace, g: Group) -> float | None:
    if not trace.tsc_hz or not g.oldest_tsc or not trace.end_tsc:
        return None
    return (trace.end_tsc - g.oldest_tsc) / trace.tsc_hz


def render(trace: Trace, fmt: str, sym: Symbolizer) -> str:
    groups = leak_groups(trace)
    names = lambda frames: [sym.frame(pc) for pc in frames]  # noqa: E731
    out = io.StringIO()
    if fmt == "json":
        data = {"source": trace.source, "pid": trace.pid, "events": trace.events,
                "lost": trace.lost,
                "leaks": [{"count": g.count, "bytes": g.bytes, "pool": g.pool,
                           "oldest_age_s": _age(trace, g), "backtrace": names(g.frames),
                           "addresses": [f"{a:#x}" for a in g.addrs[:16]]} for g in groups],
                "faults": [{"kind": k, "pool": p, "addr": f"{a:#x}", "backtrace": names(fr)}
                           for k, p, a, fr in trace.faults]}
        json.dump(data, out, indent=2)
        out.write("\n")
    elif fmt == "csv":
        w = csv.writer(out)
        w.writerow(["count", "bytes", "pool", "oldest_age_s", "backtrace"])
        for g in groups:
            age = _age(trace, g)
            w.writerow([g.count, g.bytes, g.pool, "" if age is None else f"{age:.3f}",
                        " <- ".join(names(g.frames))])
    elif fmt == "folded":
        # one frame per function (offsets and lines would split the flames)
        def fold(pc):
            text = sym.frame(pc).split(" (", 1)[0]
            head, _, off = text.rpartition("+0x")
            name = head if head and "." not in head else text
            return name.replace(";", ":").replace(" ", "_")
        for g in groups:
            stack = ";".join(fold(pc) for pc in reversed(g.frames)) or "[no_backtrace]"
            out.write(f"{g.pool};{stack} {g.count}\n")
    elif fmt == "callgrind":
        out.write("# callgrind format\nversion: 1\ncreator: gdb-mptrack report\n")
        out.write("events: Objects Bytes\n\n")
        for g in groups:
            frames = list(reversed(names(g.frames))) or ["[no backtrace]"]
            frames.insert(0, f"[pool {g.pool}]")
            for caller, callee in zip(frames, frames[1:]):
                out.write(f"fn={caller}\ncfn={callee}\ncalls={g.count} 0\n0 {g.count} {g.bytes}\n\n")
            out.write(f"fn={frames[-1]}\n0 {g.count} {g.bytes}\n\n")
    else:
        _table(out, trace, groups, names)
    return out.getvalue()


def _table(out, trace: Trace, groups: list[Group], names) -> None:
    """The table format: summaries (tabulate), then every group's and fault's backtrace."""
    from tabulate import tabulate
    out.write(f"{trace.source}: pid {trace.pid or '?'}, {len(trace.blocks)} objects or blocks "
              f"in use in {len(groups)} groups")
    if trace.lost:
        out.write(f", {trace.lost} events lost")
    out.write("\n")
    if groups:
        rows = []
        for i, g in enumerate(groups, 1):
            age = _age(trace, g)
            rows.append([i, g.count, g.bytes or "", g.pool, "" if age is None else f"{age:.3f}",
                         names(g.frames[:1])[0] if g.frames else "(no backtrace)"])
        out.write("\n" + tabulate(rows, headers=["group", "in use", "bytes", "pool", "oldest (s)",
                                                 "allocated at"], disable_numparse=True) + "\n")
    if trace.faults:
        rows = [[k, p, f"{a:#x}", names(fr[:1])[0] if fr else "(no backtrace)"]
                for k, p, a, fr in trace.faults]
        out.write("\n" + tabulate(rows, headers=["fault", "pool", "object", "at"],
                                  disable_numparse=True) + "\n")
    for g in groups:
        age = _age(trace, g)
        out.write(f"\n{g.count} in use from pool {g.pool}"
                  + (f", {g.bytes} bytes" if g.bytes else "")
                  + (f", oldest {age:.3f} s" if age is not None else "") + "\n")
        for i, name in enumerate(names(g.frames)):
            out.write(f"    #{i} {name}\n")
        if not g.frames:
            out.write("    (no backtrace recorded)\n")
    if trace.faults:
        out.write(f"\n{len(trace.faults)} faults\n")
        for k, p, a, fr in trace.faults:
            out.write(f"\n{k}: pool {p} object {a:#x}\n")
            for i, name in enumerate(names(fr)):
                out.write(f"    #{i} {name}\n")


def main(args) -> int:
    """``args``: argparse namespace with file, maps, paths, format."""
    try:
        trace = read_file(args.file)
        maps = trace.maps
        if args.maps:
            try:
                with open(args.maps, encoding="utf-8", errors="replace") as f:
                    maps = f.read()
            except OSError as exc:
                raise ReportError(f"cannot read {args.maps}: {exc.strerror}") from None
    except ReportError as exc:
        sys.exit(f"gdb_mptrack: {exc}")
    paths = [p for p in (args.paths or "").split(":") if p]
    try:
        text = render(trace, args.format, Symbolizer(maps, paths))
    except ReportError as exc:
        sys.exit(f"gdb_mptrack: {exc}")
    color = getattr(args, "color", "never")
    if args.format == "table" and (color == "always" or (color == "auto" and sys.stdout.isatty())):
        from .report_colour import colour
        text = colour(text)
    sys.stdout.write(text)
    return 0
