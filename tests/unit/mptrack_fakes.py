"""Fake target memory for the unit tests, and DPDK structures written into it.

`FakeMemory` is the `Memory` interface of gdb_mptrack.memory made of
bytearrays: `read(addr, size)` and `regions()`.  `PoolImage` lays out one
struct rte_mempool the way rte_mempool_create() does (the struct, then
RTE_MAX_LCORE caches when cache_size is set, then the private data; one
memory chunk of elements, each an rte_mempool_objhdr right before its object,
linked in `elt_list`; the driver's ring or stack), at the offsets of a Layout,
so the tests decode memory that looks like a real process's and know exactly
what they put there.
"""

import functools
import os
import struct

from gdb_mptrack.layout import Layout
from gdb_mptrack.memory import MemoryMissing, Region

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHIPPED_TABLE = os.path.join(REPO, "gdb_mptrack", "layouts", "dpdk-22.11.11.json")

#: Mempool drivers registered in the fake rte_mempool_ops_table, by ops_index.
OPS = ("ring_mp_mc", "ring_sp_sc", "ring_mt_rts", "stack", "lf_stack", "bucket")
OPS_TABLE_ADDR = 0x7e0000000000
MASK32 = (1 << 32) - 1


@functools.lru_cache(maxsize=None)
def shipped_text():
    with open(SHIPPED_TABLE) as f:
        return f.read()


def shipped_layout():
    """A fresh Layout from the shipped 22.11.11 table (tests may mutate it)."""
    return Layout.from_json(shipped_text())


def align(value, to=64):
    return (value + to - 1) & ~(to - 1)


class FakeMemory:
    """Regions of bytes at addresses; reads outside them raise MemoryMissing."""

    def __init__(self):
        self._regions = []  # [start, bytearray, writable, path, present]

    def add(self, start, size_or_data, writable=True, path="", present=True):
        data = bytearray(size_or_data)
        for other_start, other, *_ in self._regions:
            assert start + len(data) <= other_start or other_start + len(other) <= start, "regions overlap"
        self._regions.append([start, data, writable, path, present])
        self._regions.sort(key=lambda r: r[0])
        return data

    def protect(self, start):
        """Make the region starting at `start` read-only."""
        for region in self._regions:
            if region[0] == start:
                region[2] = False

    def _find(self, addr, size):
        for start, data, _, _, present in self._regions:
            if start <= addr and addr + size <= start + len(data):
                return start, data, present
        return None

    def write(self, addr, raw):
        found = self._find(addr, len(raw))
        assert found, "fake write outside every region: 0x%x+%d" % (addr, len(raw))
        start, data, _ = found
        data[addr - start:addr - start + len(raw)] = raw

    def read(self, addr, size):
        found = self._find(addr, size)
        if found is None:
            raise MemoryMissing(addr, size, "is not mapped in the fake")
        start, data, present = found
        if not present:
            raise MemoryMissing(addr, size, "was left out of the fake core")
        return bytes(data[addr - start:addr - start + size])

    def regions(self):
        return [Region(start, start + len(data), writable, path, present)
                for start, data, writable, path, present in self._regions]

    def u64(self, addr):
        return struct.unpack("<Q", self.read(addr, 8))[0]


def put(mem, layout, struct_name, base, /, **fields):
    """Write fields of `struct_name` at address base: ints sized by the layout, str/bytes NUL-padded, tuples of u64."""
    s = layout[struct_name]
    for name, value in fields.items():
        f = s[name]
        if isinstance(value, str):
            value = value.encode()
        if isinstance(value, bytes):
            assert len(value) <= f.size, "%s.%s: %r too long" % (struct_name, name, value)
            raw = value.ljust(f.size, b"\0")
        elif isinstance(value, tuple):
            raw = struct.pack("<%dQ" % len(value), *value)
            assert len(raw) <= f.size
        else:
            raw = value.to_bytes(f.size, "little", signed=value < 0)
        mem.write(base + f.offset, raw)


def write_ops_table(mem, layout, names=OPS, addr=OPS_TABLE_ADDR):
    """An rte_mempool_ops_table registering `names` in order, with plausible function pointers."""
    table, ops = layout["rte_mempool_ops_table"], layout["rte_mempool_ops"]
    mem.add(addr, align(table.size, 4096))
    put(mem, layout, "rte_mempool_ops_table", addr, num_ops=len(names))
    for i, name in enumerate(names):
        entry = addr + table.offset("ops") + i * ops.size
        put(mem, layout, "rte_mempool_ops", entry, name=name, enqueue=0x7ffff7a01000 + 16 * i,
            dequeue=0x7ffff7a02000 + 16 * i, get_count=0x7ffff7a03000 + 16 * i)
    return addr


class PoolImage:
    """One mempool written into a FakeMemory region of its own, starting at `addr`.

    Every object starts in use: the ring/stack and every cache are empty until
    ring_put/cache_put/stack_put/lf_put place objects there.
    """

    def __init__(self, mem, layout, addr, name="pool", n=8, elt_size=64, header_size=64, trailer_size=0,
                 cache_size=4, ops="ring_mp_mc", ops_names=OPS, private_data_size=64,
                 ring_size=None, ring_capacity=None):
        assert addr % 64 == 0
        self.mem, self.layout, self.addr, self.name, self.n = mem, layout, addr, name, n
        self.cache_size, self.ops, self.ops_names = cache_size, ops, ops_names
        self.elt_size, self.header_size, self.trailer_size = elt_size, header_size, trailer_size
        mp, cache = layout["rte_mempool"], layout["rte_mempool_cache"]
        objhdr, memhdr = layout["rte_mempool_objhdr"], layout["rte_mempool_memhdr"]
        self.lcores = layout.constant("RTE_MAX_LCORE")

        off = mp.size
        self.cache_addr = addr + off if cache_size else 0
        off += cache.size * self.lcores if cache_size else 0
        self.private_addr = addr + off
        off = align(off + private_data_size)
        self.memhdr = addr + off
        off = align(off + memhdr.size)
        self.chunk = addr + off
        self.total_elt_size = header_size + elt_size + trailer_size
        self.chunk_len = n * self.total_elt_size
        self.hdrs = [self.chunk + i * self.total_elt_size + header_size - objhdr.size for i in range(n)]
        self.objects = [h + objhdr.size for h in self.hdrs]
        off = align(off + self.chunk_len)
        self.store = addr + off
        if ops.startswith("ring"):
            self.ring_size = ring_size or 1 << n.bit_length()  # rte_align32pow2(n + 1)
            self.ring_capacity = self.ring_size - 1 if ring_capacity is None else ring_capacity
            off += layout["rte_ring"].size + self.ring_size * 8
        else:
            stack = layout["rte_stack"]
            self.lf_elems = self.store + stack.offset("stack_lf") + layout["rte_stack_lf"].offset("elems")
            off = self.lf_elems - addr + n * layout["rte_stack_lf_elem"].size
            off = max(off, self.store - addr + stack.offset("stack_std")
                      + layout["rte_stack_std"].offset("objs") + n * 8)
        self.end = addr + align(off, 4096)
        mem.add(addr, self.end - addr)

        put(mem, layout, "rte_mempool", addr, name=name, pool_data=self.store, flags=0, socket_id=-1,
            size=n, cache_size=cache_size, elt_size=elt_size, header_size=header_size,
            trailer_size=trailer_size, private_data_size=private_data_size, ops_index=ops_names.index(ops),
            local_cache=self.cache_addr, populated_size=n, elt_list=(self.hdrs[0], self.hdrs[-1]),
            nb_mem_chunks=1, mem_list=(self.memhdr, self.memhdr))
        for lcore in range(self.lcores if cache_size else 0):
            put(mem, layout, "rte_mempool_cache", self.cache_addr + lcore * cache.size, size=cache_size,
                flushthresh=cache_size * 3 // 2, len=0)
        put(mem, layout, "rte_mempool_memhdr", self.memhdr, next=0, mp=addr, addr=self.chunk, len=self.chunk_len)
        for i, hdr in enumerate(self.hdrs):
            put(mem, layout, "rte_mempool_objhdr", hdr, next=self.hdrs[i + 1] if i + 1 < n else 0, mp=addr,
                iova=0x100000000 + hdr)
            mem.write(self.objects[i], bytes([0xa5]) * elt_size)
        if ops.startswith("ring"):
            put(mem, layout, "rte_ring", self.store, name="MP_" + name, flags=0, size=self.ring_size,
                mask=self.ring_size - 1, capacity=self.ring_capacity)
            self.ring_put([])
        else:
            flags = layout.constant("RTE_STACK_F_LF") if ops == "lf_stack" else 0
            put(mem, layout, "rte_stack", self.store, name="MP_" + name, capacity=n, flags=flags)

    def header(self, **fields):
        put(self.mem, self.layout, "rte_mempool", self.addr, **fields)

    def objhdr(self, index, **fields):
        put(self.mem, self.layout, "rte_mempool_objhdr", self.hdrs[index], **fields)

    def ring_put(self, objs, tail=0):
        """Make `objs` the ring's content, the first at slot `tail & mask` (cons.tail = tail)."""
        ring = self.layout["rte_ring"]
        mask = self.ring_size - 1
        for i, obj in enumerate(objs):
            self.mem.write(self.store + ring.size + ((tail + i) & mask) * 8, struct.pack("<Q", obj))
        prod = (tail + len(objs)) & MASK32
        self.headtail("prod", head=prod, tail=prod)
        self.headtail("cons", head=tail & MASK32, tail=tail & MASK32)
        if self.ops == "ring_mt_rts":
            # struct rte_ring_rts_headtail: {cnt, pos} tail at 0 (written above), then the same for head.
            for which, pos in (("prod", prod), ("cons", tail & MASK32)):
                word = struct.pack("<II", pos, pos)
                self.mem.write(self.store + ring.offset(which) + 16, word)

    def headtail(self, which, **fields):
        put(self.mem, self.layout, "rte_ring_headtail", self.store + self.layout["rte_ring"].offset(which), **fields)

    def cache_put(self, lcore, objs, length=None):
        cache = self.layout["rte_mempool_cache"]
        base = self.cache_addr + lcore * cache.size
        put(self.mem, self.layout, "rte_mempool_cache", base, len=len(objs) if length is None else length)
        if objs:
            self.mem.write(base + cache.offset("objs"), struct.pack("<%dQ" % len(objs), *objs))

    def cache_field(self, lcore, **fields):
        put(self.mem, self.layout, "rte_mempool_cache",
            self.cache_addr + lcore * self.layout["rte_mempool_cache"].size, **fields)

    def stack_put(self, objs, length=None):
        base = self.store + self.layout["rte_stack"].offset("stack_std")
        std = self.layout["rte_stack_std"]
        put(self.mem, self.layout, "rte_stack_std", base, len=len(objs) if length is None else length)
        if objs:
            self.mem.write(base + std.offset("objs"), struct.pack("<%dQ" % len(objs), *objs))

    def lf_put(self, objs, length=None):
        """The lock-free stack's `used` list: top -> elems[0] -> elems[1] ... holding objs."""
        elem = self.layout["rte_stack_lf_elem"]
        elems = [self.lf_elems + i * elem.size for i in range(len(objs))]
        for i, (e, obj) in enumerate(zip(elems, objs)):
            put(self.mem, self.layout, "rte_stack_lf_elem", e, data=obj, next=elems[i + 1] if i + 1 < len(elems) else 0)
        lf = self.layout["rte_stack_lf"]
        used = self.store + self.layout["rte_stack"].offset("stack_lf") + lf.offset("used")
        lst = self.layout["rte_stack_lf_list"]
        put(self.mem, self.layout, "rte_stack_lf_list", used, len=len(objs) if length is None else length)
        put(self.mem, self.layout, "rte_stack_lf_head", used + lst.offset("head"), top=elems[0] if elems else 0)
        return elems

    def pool(self):
        from gdb_mptrack.pools import Pool
        return Pool(self.mem, self.layout, self.addr, list(self.ops_names))
