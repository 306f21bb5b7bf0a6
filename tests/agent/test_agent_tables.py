"""gdb_mptrack.agent_tables: the decoder of the agent's in-memory tables.

* the decoder's offsets equal the C header's (a program prints offsetof());
* hand-built bytes decode to what was put in, and bad tables give one-line errors;
* a live process under the agent (read through /proc/PID/mem) and its core
  (gdb's gcore, read with gdb_mptrack.memory.CoreMemory) give the in-use set
  the program wrote as its truth, and the faults with their stacks.
"""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess

import pytest
from elftools.elf.elffile import ELFFile

from agent_support import HERE, wait_file
from gdb_mptrack import agent_tables as at
from gdb_mptrack.agent import AGENT_DIR

# --------------------------------------------------------------------------- layout

LAYOUT_C = r"""
#include <stddef.h>
#include <stdio.h>
#include "mptrack_agent.h"
#define F(s, f) printf("%s\"%s\": %zu", first++ ? ", " : "", #f, offsetof(struct s, f))
int main(void) {
    int first;
    printf("{\"tables\": {"); first = 0;
    F(mptrack_tables, magic); F(mptrack_tables, version); F(mptrack_tables, header_size);
    F(mptrack_tables, pool_size); F(mptrack_tables, obj_size); F(mptrack_tables, chunk_size);
    F(mptrack_tables, fault_size); F(mptrack_tables, bt_depth);
    F(mptrack_tables, stack_record_size); F(mptrack_tables, stacks);
    F(mptrack_tables, stacks_capacity); F(mptrack_tables, stacks_used);
    F(mptrack_tables, stacks_dropped); F(mptrack_tables, tsc_hz); F(mptrack_tables, start_tsc);
    F(mptrack_tables, pid); F(mptrack_tables, on_error); F(mptrack_tables, bt_sample);
    F(mptrack_tables, max_pools); F(mptrack_tables, nfaults); F(mptrack_tables, malloc);
    F(mptrack_tables, faults);
    printf("}, \"pool\": {"); first = 0;
    F(mptrack_pool, magic); F(mptrack_pool, mp); F(mptrack_pool, name); F(mptrack_pool, live);
    F(mptrack_pool, capacity); F(mptrack_pool, nobjs); F(mptrack_pool, shift);
    F(mptrack_pool, objs); F(mptrack_pool, chunks); F(mptrack_pool, nchunks);
    F(mptrack_pool, max_chunks); F(mptrack_pool, ops_index); F(mptrack_pool, cache_size);
    F(mptrack_pool, elt_size); F(mptrack_pool, header_size); F(mptrack_pool, trailer_size);
    F(mptrack_pool, faults); F(mptrack_pool, create_tsc); F(mptrack_pool, shared);
    F(mptrack_pool, slot);
    printf("}, \"obj\": {"); first = 0;
    F(mptrack_obj, addr); F(mptrack_obj, state); F(mptrack_obj, alloc_stack);
    F(mptrack_obj, free_stack); F(mptrack_obj, alloc_lcore); F(mptrack_obj, free_lcore);
    F(mptrack_obj, alloc_tsc); F(mptrack_obj, free_tsc); F(mptrack_obj, allocs);
    printf("}, \"chunk\": {"); first = 0;
    F(mptrack_chunk, base); F(mptrack_chunk, len); F(mptrack_chunk, map);
    F(mptrack_chunk, first); F(mptrack_chunk, count);
    printf("}, \"fault\": {"); first = 0;
    F(mptrack_fault, seq); F(mptrack_fault, kind); F(mptrack_fault, lcore);
    F(mptrack_fault, pool); F(mptrack_fault, obj); F(mptrack_fault, other_pool);
    F(mptrack_fault, stack); F(mptrack_fault, prev_free_stack);
    F(mptrack_fault, prev_alloc_stack); F(mptrack_fault, tsc);
    printf("}, \"stack\": {"); first = 0;
    F(mptrack_stack, hash); F(mptrack_stack, depth);
    printf("}, \"malloc\": {"); first = 0;
    F(mptrack_malloc_table, slots); F(mptrack_malloc_table, capacity);
    F(mptrack_malloc_table, block_size); F(mptrack_malloc_table, dropped);
    F(mptrack_malloc_table, faults);
    printf("}, \"block\": {"); first = 0;
    F(mptrack_block, addr); F(mptrack_block, size); F(mptrack_block, state);
    F(mptrack_block, alloc_stack); F(mptrack_block, free_stack); F(mptrack_block, alloc_lcore);
    F(mptrack_block, free_lcore); F(mptrack_block, alloc_tsc); F(mptrack_block, free_tsc);
    printf("}, \"sizes\": {\"pool\": %zu, \"obj\": %zu, \"chunk\": %zu, \"fault\": %zu, "
           "\"stack\": %zu, \"block\": %zu, \"fault_ring\": %d}}\n",
           sizeof(struct mptrack_pool), sizeof(struct mptrack_obj),
           sizeof(struct mptrack_chunk), sizeof(struct mptrack_fault),
           sizeof(struct mptrack_stack), sizeof(struct mptrack_block), MPTRACK_FAULT_RING);
    return 0;
}
"""


def test_python_offsets_equal_the_c_header(tmp_path):
    src = tmp_path / "layout.c"
    src.write_text(LAYOUT_C)
    subprocess.run(["cc", "-I", str(AGENT_DIR), str(src), "-o", str(tmp_path / "layout")],
                   check=True)
    c = json.loads(subprocess.run([str(tmp_path / "layout")], check=True, capture_output=True,
                                  text=True).stdout)
    for key, fields in [("tables", at.TABLES_FIELDS), ("pool", at.POOL_FIELDS),
                        ("obj", at.OBJ_FIELDS), ("chunk", at.CHUNK_FIELDS),
                        ("fault", at.FAULT_FIELDS), ("stack", at.STACK_FIELDS),
                        ("malloc", at.MALLOC_FIELDS), ("block", at.BLOCK_FIELDS)]:
        assert {k: off for k, (off, _) in fields.items()} == c[key], key
    s = c["sizes"]
    assert (s["pool"], s["obj"], s["chunk"], s["fault"], s["block"]) == (
        at.MIN_SIZES["pool"], at.MIN_SIZES["obj"], at.MIN_SIZES["chunk"], at.MIN_SIZES["fault"],
        at.MIN_SIZES["block"])
    assert s["stack"] == at.STACK_HEADER and s["fault_ring"] == at.FAULT_RING


# --------------------------------------------------------------------------- bytes


def pack(fields: dict, nbytes: int, **values) -> bytearray:
    buf = bytearray(nbytes)
    for name, value in values.items():
        off, code = fields[name]
        struct.pack_into("<" + code, buf, off, value)
    return buf


class FakeMemory:
    """Sparse memory: {address: bytes}; reading a hole raises like gdb would."""

    def __init__(self):
        self.chunks: dict[int, bytes] = {}

    def put(self, addr: int, data: bytes) -> None:
        self.chunks[addr] = bytes(data)

    def read(self, addr: int, size: int) -> bytes:
        for base, data in self.chunks.items():
            if base <= addr and addr + size <= base + len(data):
                return data[addr - base:addr - base + size]
        raise OSError(f"cannot access memory at {addr:#x}")


TABLES = 0x1000
POOL_A, OBJS_A, CHUNKS_A = 0x10000, 0x11000, 0x12000
POOL_B = 0x20000
STACKS = 0x30000
MALLOC, SLOTS = 0x40000, 0x41000
DEPTH = 4
REC = 16 + 8 * DEPTH
HEADER_SIZE = 112 + 32 * 64 + 8 * 8


def build(memory: FakeMemory, **header_over) -> None:
    hdr = dict(magic=at.MAGIC, version=at.VERSION, header_size=HEADER_SIZE, pool_size=144, obj_size=48,
               chunk_size=32, fault_size=64, bt_depth=DEPTH, stack_record_size=REC, stacks=STACKS,
               stacks_capacity=4, stacks_used=2, tsc_hz=1000, start_tsc=500, pid=4242, on_error=2,
               bt_sample=1, max_pools=8, nfaults=1, malloc=MALLOC)
    hdr.update(header_over)
    t = pack(at.TABLES_FIELDS, HEADER_SIZE, **hdr)
    fault = pack(at.FAULT_FIELDS, 64, seq=1, kind=1, lcore=1, pool=POOL_A, obj=0xA040, stack=2,
                 prev_free_stack=1, prev_alloc_stack=1, tsc=900)
    t[112:112 + 64] = fault
    struct.pack_into("<8Q", t, 112 + 32 * 64, 0, POOL_A, 0, POOL_B, 0, 0, 0, 0)
    memory.put(TABLES, t)
    memory.put(POOL_A, pack(at.POOL_FIELDS, 144, magic=at.POOL_MAGIC, mp=0xAAAA,
                            name=b"pool_a", live=1, capacity=3, nobjs=3, shift=6, objs=OBJS_A,
                            chunks=CHUNKS_A, nchunks=1, max_chunks=4, cache_size=32, elt_size=64,
                            header_size=64, slot=1))
    objs = b"".join([
        pack(at.OBJ_FIELDS, 48, addr=0xA000, state=2, alloc_stack=1, alloc_lcore=0, alloc_tsc=600,
             allocs=1),
        pack(at.OBJ_FIELDS, 48, addr=0xA040, state=1, alloc_stack=1, free_stack=2, alloc_lcore=1,
             free_lcore=1, alloc_tsc=700, free_tsc=800, allocs=1),
        pack(at.OBJ_FIELDS, 48, addr=0xA080, state=0),
    ])
    memory.put(OBJS_A, objs)
    memory.put(CHUNKS_A, pack(at.CHUNK_FIELDS, 32, base=0xA000, len=0xC0, map=0, first=0, count=3))
    # POOL_B is not readable (left out of the "core")
    stacks = bytearray(4 * REC)
    struct.pack_into("<QI4x2Q", stacks, 0, 77, 2, 0x401000, 0x402000)
    struct.pack_into("<QI4x3Q", stacks, REC, 78, 3, 0x401100, 0x402000, 0x403000)
    struct.pack_into("<QI4x", stacks, 2 * REC, (1 << 63) | 5, 1)   # being written
    memory.put(STACKS, stacks)
    memory.put(MALLOC, pack(at.MALLOC_FIELDS, 32, slots=SLOTS, capacity=4, block_size=48))
    memory.put(SLOTS, b"".join([
        pack(at.BLOCK_FIELDS, 48, addr=0xB000, size=100, state=2, alloc_stack=1, alloc_tsc=1),
        pack(at.BLOCK_FIELDS, 48),
        pack(at.BLOCK_FIELDS, 48, addr=0xB100, size=8, state=1, alloc_stack=1, free_stack=2,
             alloc_tsc=1, free_tsc=2, free_lcore=0xFFFF),
        pack(at.BLOCK_FIELDS, 48),
    ]))


def test_decode_hand_built_tables():
    mem = FakeMemory()
    build(mem)
    t = at.AgentTables.read(mem.read, TABLES)
    assert (t.pid, t.bt_depth, t.on_error, t.tsc_hz, t.nfaults) == (4242, DEPTH, "log", 1000, 1)
    assert t.pool_addresses() == [POOL_A, POOL_B]
    pools = t.pools(errors=True)
    assert [p.name for p in pools] == ["pool_a", "?"] and "cannot read" in pools[1].error
    (a,) = t.pools()
    assert (a.mp, a.capacity, a.nobjs, a.cache_size, a.slot, a.chunks) == (
        0xAAAA, 3, 3, 32, 1, [(0xA000, 0xC0)])
    objs = list(t.objects(a))
    assert [(o.addr, o.state) for o in objs] == [(0xA000, "in-use"), (0xA040, "free"),
                                                 (0xA080, "new")]
    assert (objs[1].alloc_lcore, objs[1].free_lcore, objs[1].free_stack) == (1, 1, 2)
    assert objs[2].alloc_lcore is None
    assert [o.addr for o in t.objects(a, state="in-use")] == [0xA000]
    assert len(list(t.objects(a, limit=2))) == 2
    assert t.stack(1) == (0x401000, 0x402000)
    assert t.stack(2) == (0x401100, 0x402000, 0x403000)
    assert t.stack(3) == () and t.stack(0) == () and t.stack(99) == ()
    (f,) = t.faults()
    assert (f.kind, f.pool, f.obj, f.stack, f.prev_free_stack, f.lcore) == (
        "duplicate free", "pool_a", 0xA040, 2, 1, 1)
    assert t.object_at(0xA040)[1].index == 1 and t.object_at(0xA041) is None
    blocks = list(t.malloc_blocks())
    assert [(b.addr, b.state, b.size) for b in blocks] == [(0xB000, "in-use", 100),
                                                           (0xB100, "free", 8)]
    assert blocks[1].free_lcore is None
    assert [b.addr for b in t.malloc_blocks("in-use")] == [0xB000]
    assert t.seconds(1500) == 1.0


@pytest.mark.parametrize("over,message", [
    ({"magic": b"NOTTHIS\0"}, "bad magic"),
    ({"magic": b"\0" * 8}, "has not started"),
    ({"version": 1}, "version 1"),
    ({"obj_size": 8}, "implausible obj size"),
])
def test_bad_tables_give_one_line_errors(over, message):
    mem = FakeMemory()
    build(mem, **over)
    with pytest.raises(at.AgentTablesError, match=message):
        at.AgentTables.read(mem.read, TABLES)


def test_unreadable_tables_and_objects():
    mem = FakeMemory()
    with pytest.raises(at.AgentTablesError, match="cannot read"):
        at.AgentTables.read(mem.read, TABLES)
    build(mem)
    del mem.chunks[OBJS_A]
    t = at.AgentTables.read(mem.read, TABLES)
    (a,) = t.pools()
    with pytest.raises(at.TableReadError):
        list(t.objects(a))


# --------------------------------------------------------------------------- real process


def symbol_address(lib, maps_lines, name="mptrack_agent_tables") -> int:
    """Run-time address of a dynamic symbol of lib, from maps lines (lo, offset, path)."""
    with open(lib, "rb") as f:
        sym = ELFFile(f).get_section_by_name(".dynsym").get_symbol_by_name(name)[0]
        value = sym["st_value"]
    real = os.path.realpath(lib)
    base = min(lo for lo, off, path in maps_lines if path and os.path.realpath(path) == real
               and off == 0)
    return base + value


def proc_maps(pid: int):
    out = []
    with open(f"/proc/{pid}/maps") as f:
        for line in f:
            parts = line.split()
            lo = int(parts[0].split("-")[0], 16)
            out.append((lo, int(parts[2], 16), parts[5] if len(parts) > 5 else ""))
    return out


def proc_reader(pid: int):
    fd = os.open(f"/proc/{pid}/mem", os.O_RDONLY)

    def read(addr, size):
        return os.pread(fd, size, addr)
    return read, fd


def symbol_name(program, frames, maps_lines) -> str:
    from test_agent_dump import symbol_of  # noqa: E402
    import tempfile
    with tempfile.NamedTemporaryFile("w", suffix=".maps", delete=False) as f:
        for lo, off, path in maps_lines:
            f.write(f"{lo:x}-{lo + 1:x} r-xp {off:08x} 00:00 0 {path}\n")
    try:
        from pathlib import Path
        return symbol_of(frames[0], Path(f.name), program)
    finally:
        os.unlink(f.name)


def check_tables_against_truth(t, truth, program, maps_lines):
    in_use = {p.name: {o.addr for o in t.objects(p, state="in-use")} for p in t.pools()}
    assert in_use["agent_pool"] == {int(a, 16) for a in truth["held"]}
    assert in_use["agent_mbufs"] == {int(a, 16) for a in truth["held_mbufs"]}
    assert in_use["agent_other"] == set()
    pool = t.pool("agent_pool")
    assert pool.cache_size == 32 and pool.live and pool.nobjs == pool.capacity == 1023
    held = [o for o in t.objects(pool, state="in-use")]
    assert {o.alloc_lcore for o in held} == {0, 1}
    assert all(symbol_name(program, t.stack(o.alloc_stack), maps_lines) == "take_object"
               for o in held)


def test_live_process_tables_equal_truth(agent, agent_programs, agent_lib):
    proc, truth_path = agent.start(agent_programs["agent_prog"], "held")
    wait_file(truth_path, proc)
    truth = json.loads(truth_path.read_text())
    maps = proc_maps(proc.pid)
    read, fd = proc_reader(proc.pid)
    try:
        t = at.AgentTables.read(read, symbol_address(agent_lib, maps))
        assert t.pid == proc.pid and t.bt_depth == 8 and t.on_error == "abort"
        check_tables_against_truth(t, truth, agent_programs["agent_prog"], maps)
        assert t.faults() == []
    finally:
        os.close(fd)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0


def test_live_fault_record(agent, agent_programs, agent_lib):
    proc, truth_path = agent.start(agent_programs["agent_prog"], "double-free",
                                   MPTRACK_ON_ERROR="log", AGENT_PROG_WAIT="1")
    wait_file(truth_path, proc)
    truth = json.loads(truth_path.read_text())
    import time
    deadline = time.monotonic() + 30
    maps = proc_maps(proc.pid)
    read, fd = proc_reader(proc.pid)
    try:
        t = at.AgentTables.read(read, symbol_address(agent_lib, maps))
        while not t.faults() and time.monotonic() < deadline:
            time.sleep(0.05)
            t = at.AgentTables.read(read, symbol_address(agent_lib, maps))
        (f,) = t.faults()
        assert (f.kind, f.pool, f.obj) == ("duplicate free", "agent_pool", int(truth["obj"], 16))
        program = agent_programs["agent_prog"]
        assert symbol_name(program, t.stack(f.stack), maps) == "give_back_again"
        assert symbol_name(program, t.stack(f.prev_free_stack), maps) == "give_back"
        assert symbol_name(program, t.stack(f.prev_alloc_stack), maps) == "take_object"
    finally:
        os.close(fd)


def test_core_tables_equal_truth(agent, agent_programs, agent_lib, tmp_path):
    """gcore of the held program: the same in-use set, read from the core file."""
    from gdb_mptrack.memory import CoreMemory
    proc, truth_path = agent.start(agent_programs["agent_prog"], "held")
    wait_file(truth_path, proc)
    truth = json.loads(truth_path.read_text())
    maps = proc_maps(proc.pid)
    core = tmp_path / "held.core"
    res = subprocess.run(["gdb", "-nx", "-batch", "-p", str(proc.pid), "-ex", f"gcore {core}"],
                         capture_output=True, text=True, timeout=120)
    assert core.exists(), res.stdout + res.stderr
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)
    mem = CoreMemory(str(core))
    try:
        t = at.AgentTables.read(mem.read, symbol_address(agent_lib, maps))
        assert t.pid == truth["pid"]
        check_tables_against_truth(t, truth, agent_programs["agent_prog"], maps)
    finally:
        mem.close()
