"""The state of every object of a mempool, decided from memory alone.

Approach (no function is called in the target, so this works on cores):
- objects: walk the pool's element list (`elt_list`, one rte_mempool_objhdr
  before each object) inside the memory chunks of `mem_list`, each chunk read
  in one piece (a view of a core's mmap, no copy); an object's index is its
  position in that list, the order of rte_mempool_obj_iter().  Where the
  elements follow a layout (objects `stride` apart in runs, runs `period`
  apart), whole blocks of the list are checked at once with numpy: every
  header must name the pool and link to the one the layout predicts; the
  rest (other layouts, corruption) is walked one element at a time.
- free objects: those in the driver's store (the ring's slots from cons.tail
  to prod.tail, or the stack's table) and in each lcore's default cache
  (`local_cache[lcore].objs[0:len]`).  Everything else is in use.  Caches an
  application made with rte_mempool_cache_create() are invisible here, so
  their objects show as in use.  Each free entry is matched to its object by
  the layout's arithmetic (checked against the object list), and the states
  are kept as numpy arrays in index order (`Pool.classify`).
- the counts match DPDK's: avail = driver count + every lcore cache's len,
  in use = size - avail (rte_mempool_avail_count, rte_mempool_in_use_count).
Drivers other than the ring family and the stacks are listed with their
driver counts unknown.  Every loop is bounded by sizes read from the pool,
and what does not add up is reported as an anomaly rather than hidden.
"""

import collections
import struct
from typing import NamedTuple

import numpy as np
from numpy.lib.stride_tricks import as_strided

from .decode import PoolHeader, Record, decode_mbuf
from .memory import MemoryMissing

RING_DRIVERS = frozenset(("ring_mp_mc", "ring_sp_sc", "ring_mp_sc", "ring_sp_mc",
                          "ring_mt_rts", "ring_mt_hts"))
STACK_DRIVERS = frozenset(("stack", "lf_stack"))
IN_USE, FREE, UNKNOWN = "in-use", "free", "unknown"
U64 = np.dtype("<u8")
#: Elements checked in the first numpy block of a learned layout, and at most in one (the blocks
#: grow 4 times while the layout holds: little lost when it breaks, temporary arrays bounded).
FIRST_BLOCK, BLOCK = 256, 1 << 20
#: Links followed to learn a layout, in stages: further only while the pattern is not clear.
PROBES = (64, 1024, 8192)
#: Elements in a straight run worth a numpy block when no period shows.
MIN_RUN = 16
MORE = object()
#: Blocks of the walk tried, largest first, to match free entries to objects by arithmetic.
GUESSES = 16


class PoolError(Exception):
    """A pool whose memory cannot be read or does not decode."""


def read_ops_names(memory, layout, table_addr):
    """Driver names indexed by ops_index, from rte_mempool_ops_table."""
    table = layout["rte_mempool_ops_table"]
    ops = layout["rte_mempool_ops"]
    data = memory.read(table_addr, table.size)
    head = Record(table, data)
    num = head.uint("num_ops")
    capacity = table["ops"].size // ops.size
    if num > capacity:
        raise PoolError("rte_mempool_ops_table says %d drivers, room for %d: wrong layout or corrupt"
                        % (num, capacity))
    names = []
    for i in range(num):
        name = Record(ops, data, table.offset("ops") + i * ops.size).cstr("name")
        names.append(name or "?")
    return names


def _words(data, start):
    """data as a memoryview of 8-byte words, or None when the chunk is not 8-byte aligned."""
    if start % 8:
        return None
    return memoryview(data)[:len(data) - len(data) % 8].cast("Q")


def _array(data, start):
    """data as a numpy array of 8-byte words (no copy), or None when the chunk is not 8-byte aligned."""
    if start % 8:
        return None
    return np.frombuffer(data, dtype=U64, count=len(data) // 8)


def _learn_layout(words, start, end, node, next_off, hdr_size, probes=PROBES):
    """(stride, run, period, skip) of the element list from node on, by following links.

    Objects sit `stride` apart in runs of `run`, and runs start `period` apart
    (DPDK skips page boundaries); a straight list is run 1, period = stride.
    `skip` elements come first when the list starts inside a run (a chunk that
    starts inside a page): the pattern holds from the one after them.  Links
    are followed in stages (`probes`) until the pattern shows; None when the
    list shows none.
    """
    heads = [node]
    for stage, probe in enumerate(probes):
        while len(heads) < probe:
            off = heads[-1] - start + next_off
            if off % 8 or not 0 <= off < len(words) * 8:
                break
            nxt = words[off // 8]
            if not start <= nxt <= end - hdr_size:
                break
            heads.append(nxt)
        if len(heads) < 3:
            return None
        found = _pattern(heads, final=len(heads) < probe or stage == len(probes) - 1)
        if found is not MORE:
            return found
    return None


def _pattern(heads, final):
    """_learn_layout's answer for these header addresses, or MORE when more of them could tell
    (fewer than 3 breaks in the runs, and not `final`)."""
    steps = [b - a for a, b in zip(heads, heads[1:])]
    stride = collections.Counter(steps).most_common(1)[0][0]
    if stride <= 0:
        return None
    breaks = [i + 1 for i, step in enumerate(steps) if step != stride]
    if len(breaks) < 3 and not final:
        return MORE
    if not breaks:
        return stride, 1, stride, 0
    first = breaks[0]
    skip = first if len(breaks) > 1 and breaks[1] - first > first else 0  # a short first run
    run = (breaks[1] if skip else first) - skip
    period = heads[skip + run] - heads[skip]
    if len(heads) >= skip + 2 * run and all(heads[skip + run + j] == heads[skip + j] + period for j in range(run)):
        return stride, run, period, skip
    # No period: a straight run, when one is long enough to be worth a block.
    if first >= MIN_RUN:
        return stride, 1, stride, 0
    if (breaks[1] if len(breaks) > 1 else len(heads)) - first >= MIN_RUN:
        return stride, 1, stride, first
    return None


def _layout_block(words, start, end, node, stride, run, period, next_off, mp_off, hdr_size, pool_addr, most,
                  periods):
    """Header addresses (numpy uint64, list order) of the elements from node on that follow the
    learned layout, up to the first that does not: each must name the pool and link to the next
    header the layout predicts (a period's last to the next period's first).

    `words` is the chunk as a numpy array of words; the headers' `next` and `mp` words are seen
    through strided views of it, one row per period, and compared with the predicted addresses
    all at once.  At most `periods` periods are checked, only those wholly inside the chunk (the
    rest is left to single steps), and at most `most` elements.
    """
    empty = np.empty(0, U64)
    if (words is None or most <= 0 or stride <= 0 or period < run * stride or stride % 8 or period % 8
            or (node - start) % 8 or next_off % 8 or mp_off % 8 or max(next_off, mp_off) + 8 > hdr_size):
        return empty
    periods = min(periods, -(-most // run), (end - node - ((run - 1) * stride + hdr_size)) // period + 1)
    if periods <= 0:
        return empty
    base = (node - start) // 8
    last = base + ((periods - 1) * period + (run - 1) * stride + max(next_off, mp_off)) // 8
    if last >= len(words):  # cannot happen given the bounds above; never read past the chunk
        return empty
    shape, strides = (periods, run), (period, stride)
    nexts = as_strided(words[base + next_off // 8:], shape, strides, writeable=False)
    owners = as_strided(words[base + mp_off // 8:], shape, strides, writeable=False)
    firsts = np.arange(periods, dtype=U64) * np.uint64(period) + np.uint64(node)  # first header of each period
    offsets = np.arange(run, dtype=U64) * np.uint64(stride)                     # headers within a period
    links = offsets + np.uint64(stride)                                          # where each one's next is
    links[-1] = period
    ok = ((nexts == firsts[:, None] + links) & (owners == np.uint64(pool_addr))).ravel()[:most]
    good = len(ok) if ok.all() else int(ok.argmin())
    return (firsts[:, None] + offsets).ravel()[:good]


class Classification(NamedTuple):
    """Every object's state, as numpy arrays in index order (Pool.classify)."""

    objects: np.ndarray  # uint64: object addresses
    where: np.ndarray    # int16: index into `names` of where the object is free, -1 when it is not
    names: tuple         # the places: the driver's store ("ring" or "stack"), then "lcore N cache"
    in_use: np.ndarray   # bool: not free, and the driver's count is known (else all False)


class Pool:
    """One mempool: header, driver, and (after load_objects) every object's state."""

    def __init__(self, memory, layout, addr, ops_names, header=None):
        self.memory = memory
        self.layout = layout
        self.addr = addr
        self.header = header or PoolHeader(layout, addr, memory.read(addr, layout["rte_mempool"].size))
        h = self.header
        self.name = h.name
        self.ops = ops_names[h.ops_index] if 0 <= h.ops_index < len(ops_names) else "?"
        self.anomalies = []
        self.busy = False  # another thread is mid-operation on the ring or stack
        self.cache_objects = self._read_caches()
        self._driver = self._read_driver()  # numpy uint64 in store order, or None
        self._driver_list = None
        self.pktmbuf = self._is_pktmbuf()
        self._ranges = None
        self._chunks = None
        self._objects = None      # numpy uint64 in index order, once the element list is walked
        self._object_list = None
        self._blocks = []         # (first index, first object, stride, run, period, count) of each bulk block
        self._singles = []        # (first index, [objects]) of each run of single steps
        self._order = None
        self._classified = None
        self._free = None
        self._places = None

    # --- counts -----------------------------------------------------------

    @property
    def cache_fill(self):
        return {lcore: len(objs) for lcore, objs in self.cache_objects.items() if objs}

    @property
    def counts_known(self):
        return self._driver is not None

    @property
    def avail(self):
        if self._driver is None:
            return None
        return min(self.header.size, len(self._driver) + sum(map(len, self.cache_objects.values())))

    @property
    def in_use(self):
        avail = self.avail
        return None if avail is None else self.header.size - avail

    # --- free stores ------------------------------------------------------

    @property
    def driver_objects(self):
        """Objects in the driver's store, in its order, as a list; None when the driver is not understood."""
        if self._driver is not None and self._driver_list is None:
            self._driver_list = self._driver.tolist()
        return self._driver_list

    def _read_caches(self):
        h = self.header
        if not h.cache_size or not h.local_cache:
            return {}
        cache = self.layout["rte_mempool_cache"]
        lcores = self.layout.constant("RTE_MAX_LCORE")
        data = self.memory.read(h.local_cache, cache.size * lcores)
        room = cache["objs"].size // 8
        caches = {}
        for lcore in range(lcores):
            rec = Record(cache, data, lcore * cache.size)
            bypassed = rec.uint("size") == 0 and rec.uint("len") == 0  # turned off by the preload agent
            if rec.uint("size") != h.cache_size and not bypassed:
                raise PoolError("pool %s: lcore %d cache has size %d, the pool says %d: the layout "
                                "(%s) does not fit this build (RTE_MAX_LCORE?) or the pool is corrupt"
                                % (h.name, lcore, rec.uint("size"), h.cache_size, self.layout.source))
            length = rec.uint("len")
            if length == 0:
                continue
            if length > room:
                self.anomalies.append("lcore %d cache claims %d objects, room for %d: ignored"
                                      % (lcore, length, room))
                continue
            start = lcore * cache.size + cache.offset("objs")
            caches[lcore] = list(struct.unpack_from("<%dQ" % length, data, start))
        return caches

    def _bytes(self, addr, size):
        """memory.view (no copy) when the memory has it, else memory.read."""
        view = getattr(self.memory, "view", None)
        return view(addr, size) if view is not None else self.memory.read(addr, size)

    def _read_driver(self):
        """Objects in the driver's store (numpy uint64), or None when the driver is not understood."""
        if self.ops in RING_DRIVERS:
            return self._read_ring(self.header.pool_data)
        if self.ops == "stack" or self.ops == "lf_stack":
            return np.asarray(self._read_stack(self.header.pool_data), dtype=U64)
        self.anomalies.append("driver %r is not decoded: free/in-use counts unknown" % self.ops)
        return None

    def _read_ring(self, ring_addr):
        ring = self.layout["rte_ring"]
        headtail = self.layout["rte_ring_headtail"]
        rec = Record(ring, self.memory.read(ring_addr, ring.size))
        size, mask, capacity = rec.uint("size"), rec.uint("mask"), rec.uint("capacity")
        if size == 0 or size & (size - 1) or mask != size - 1 or capacity > size or size > 1 << 30:
            raise PoolError("pool %s: ring at 0x%x is corrupt (size %d, mask 0x%x, capacity %d)"
                            % (self.name, ring_addr, size, mask, capacity))
        prod = Record(headtail, rec.data, ring.offset("prod"))
        cons = Record(headtail, rec.data, ring.offset("cons"))
        # The tail sits at the same offset in the plain, RTS and HTS head/tail unions.
        prod_head, prod_tail = prod.uint("head"), prod.uint("tail")
        cons_head, cons_tail = cons.uint("head"), cons.uint("tail")
        count = (prod_tail - cons_tail) & mask
        if count > capacity:
            self.anomalies.append("ring count %d exceeds its capacity %d: capped" % (count, capacity))
            count = capacity
        if self.ops == "ring_mt_rts":
            # RTS keeps {cnt, pos} pairs; the position is the second half of each.
            rts = self.layout["rte_ring_rts_headtail"]
            self.busy = any(Record(rts, rec.data, ring.offset(side)).ptr("tail") >> 32
                            != Record(rts, rec.data, ring.offset(side)).ptr("head") >> 32
                            for side in ("prod", "cons"))
        else:
            self.busy = prod_head != prod_tail or cons_head != cons_tail
        if self.ops in ("ring_mp_mc", "ring_sp_sc", "ring_mp_sc", "ring_sp_mc"):
            if prod_head != prod_tail:
                self.anomalies.append("a ring enqueue of %d objects is in progress: they show as in use"
                                      % ((prod_head - prod_tail) & mask))
            if cons_head != cons_tail:
                self.anomalies.append("a ring dequeue of %d objects is in progress: they show as free"
                                      % ((cons_head - cons_tail) & mask))
        slots = np.frombuffer(self._bytes(ring_addr + ring.size, size * 8), dtype=U64)
        first = cons_tail & mask
        if first + count <= size:
            return slots[first:first + count]
        return np.concatenate((slots[first:], slots[:first + count - size]))

    def _read_stack(self, stack_addr):
        layout = self.layout
        stack = layout["rte_stack"]
        rec = Record(stack, self.memory.read(stack_addr, stack.size))
        capacity, flags = rec.uint("capacity"), rec.uint("flags")
        if capacity > 1 << 30:
            raise PoolError("pool %s: stack at 0x%x is corrupt (capacity %d)" % (self.name, stack_addr, capacity))
        if flags & layout.constant("RTE_STACK_F_LF"):
            return self._read_lf_stack(stack_addr + stack.offset("stack_lf"), capacity)
        std = layout["rte_stack_std"]
        base = stack_addr + stack.offset("stack_std")
        std_rec = Record(std, self.memory.read(base, std.size))
        length = std_rec.uint("len")
        self.busy = bool(std_rec.uint("lock"))
        if length > capacity:
            self.anomalies.append("stack length %d exceeds its capacity %d: capped" % (length, capacity))
            length = capacity
        return np.frombuffer(self._bytes(base + std.offset("objs"), length * 8), dtype=U64)

    def _read_lf_stack(self, lf_addr, capacity):
        layout = self.layout
        lf, lst = layout["rte_stack_lf"], layout["rte_stack_lf_list"]
        head, elem = layout["rte_stack_lf_head"], layout["rte_stack_lf_elem"]
        used = lf_addr + lf.offset("used")
        rec = Record(lst, self.memory.read(used, lst.size))
        length = rec.uint("len")
        node = Record(head, rec.data, lst.offset("head")).ptr("top")
        objs = []
        while node and len(objs) < min(length, capacity):
            e = Record(elem, self.memory.read(node, elem.size))
            objs.append(e.ptr("data"))
            node = e.ptr("next")
        if len(objs) != length:
            self.anomalies.append("lock-free stack: %d objects listed, length says %d" % (len(objs), length))
        return objs

    def _is_pktmbuf(self):
        h = self.header
        priv = self.layout["rte_pktmbuf_pool_private"]
        if h.private_data_size < priv.size:
            return False
        try:
            rec = Record(priv, self.memory.read(h.private_addr, priv.size))
        except MemoryMissing:
            return False
        return h.elt_size == (self.layout["rte_mbuf"].size + rec.uint("mbuf_priv_size")
                              + rec.uint("mbuf_data_room_size"))

    # --- objects ----------------------------------------------------------

    def chunk_ranges(self):
        """[(start, length)] of the pool's memory chunks, from mem_list (cheap: no object bytes)."""
        if self._ranges is not None:
            return self._ranges
        memhdr = self.layout["rte_mempool_memhdr"]
        ranges, node = [], self.header.mem_first
        while node and len(ranges) < self.header.nb_mem_chunks:
            rec = Record(memhdr, self.memory.read(node, memhdr.size))
            if rec.ptr("mp") != self.addr:
                self.anomalies.append("memory chunk header at 0x%x names another pool" % node)
                break
            ranges.append((rec.ptr("addr"), rec.uint("len")))
            node = rec.ptr("next")
        if len(ranges) != self.header.nb_mem_chunks:
            self.anomalies.append("%d memory chunks listed, nb_mem_chunks says %d"
                                  % (len(ranges), self.header.nb_mem_chunks))
        self._ranges = sorted(ranges)
        return self._ranges

    def holds(self, addr):
        """True when addr lies in one of the pool's memory chunks."""
        return any(start <= addr < start + length for start, length in self.chunk_ranges())

    @property
    def objects(self):
        """Object addresses in index order, as a list; None until the element list is walked."""
        if self._objects is not None and self._object_list is None:
            self._object_list = self._objects.tolist()
        return self._object_list

    def load_objects(self):
        """Walk elt_list; the object addresses in index order, as a list (object_array: numpy)."""
        self.object_array()
        return self.objects

    def object_array(self):
        """Walk elt_list; the object addresses in index order, as numpy uint64.  Computed once."""
        if self._objects is not None:
            return self._objects
        self._chunks = chunks = [(start, self._bytes(start, length)) for start, length in self.chunk_ranges()]
        objhdr = self.layout["rte_mempool_objhdr"]
        next_off, mp_off, hdr_size = objhdr.offset("next"), objhdr.offset("mp"), objhdr.size
        unpack = struct.unpack_from
        parts, steps, count = [], [], 0  # numpy blocks; objects of the current run of single steps
        limit = self.header.populated_size
        node = self.header.elt_first
        start, data = (chunks[0] if chunks else (0, b""))
        end = start + len(data)
        words, array, layout, slow = _words(data, start), _array(data, start), None, 0
        while node and count < limit:
            if not start <= node <= end - hdr_size:
                found = self._chunk_of(node, hdr_size)
                if found is None:
                    self.anomalies.append("element list leaves the pool's memory at index %d (0x%x)"
                                          % (count, node))
                    break
                start, data = found
                end = start + len(data)
                words, array, layout = _words(data, start), _array(data, start), None
            # Bulk: learn how objects are laid out, then check blocks of that layout at once, each
            # block 4 times the last while they hold.  When there is no pattern (or it breaks), take
            # `slow` single steps before trying again.
            if words is not None and layout is None and not slow:
                learned = _learn_layout(words, start, end, node, next_off, hdr_size)
                if learned is None:
                    slow = 256
                elif learned[3]:
                    slow = learned[3]  # step to the start of a whole run, and learn again there
                else:
                    layout, periods = learned[:3], -(-FIRST_BLOCK // learned[1])
            if layout is not None:
                stride, run, period = layout
                hdrs = _layout_block(array, start, end, node, stride, run, period, next_off, mp_off,
                                     hdr_size, self.addr, limit - count, periods)
                if len(hdrs) < periods * run:
                    layout = None  # it broke (or the chunk ends): learn again from the element it broke at
                periods = min(4 * periods, BLOCK // run + 1)
                if len(hdrs):
                    if steps:
                        self._singles.append((count - len(steps), steps))
                        parts.append(np.array(steps, dtype=U64))
                        steps = []
                    parts.append(hdrs + np.uint64(hdr_size))
                    self._note_block(count, node + hdr_size, stride, run, period, len(hdrs))
                    count += len(hdrs)
                    node = words[(int(hdrs[-1]) - start + next_off) // 8]  # checked: the layout's next
                    continue
                slow = run + 1
            slow = max(0, slow - 1)
            off = node - start
            if unpack("<Q", data, off + mp_off)[0] != self.addr:
                self.anomalies.append("object header at index %d (0x%x) names another pool: list cut"
                                      % (count, node))
                break
            steps.append(node + hdr_size)
            count += 1
            node = unpack("<Q", data, off + next_off)[0]
        if steps:
            self._singles.append((count - len(steps), steps))
            parts.append(np.array(steps, dtype=U64))
        objects = parts[0] if len(parts) == 1 else np.concatenate(parts) if parts else np.empty(0, U64)
        # Loops: checked once at the end, cheaper than per step (a list in address order has none).
        if len(objects) > 1 and not (objects[1:] > objects[:-1]).all():
            ordered = np.sort(objects)
            if (ordered[1:] == ordered[:-1]).any():
                seen = set()
                for index, obj in enumerate(objects.tolist()):
                    if obj in seen:
                        self.anomalies.append("element list loops back at index %d (0x%x): list cut"
                                              % (index, obj - hdr_size))
                        objects = objects[:index]
                        break
                    seen.add(obj)
        if len(objects) != limit:
            self.anomalies.append("%d objects listed, populated_size says %d" % (len(objects), limit))
        self._objects = objects
        return objects

    def _note_block(self, k0, first, stride, run, period, count):
        """Record a bulk block for _index_of, as part of the last one when it continues it."""
        if self._blocks:
            k, f, s, r, p, n = self._blocks[-1]
            if (s, r, p) == (stride, run, period) and k + n == k0 and n % r == 0 and f + n // r * p == first:
                self._blocks[-1] = (k, f, s, r, p, n + count)
                return
        self._blocks.append((k0, first, stride, run, period, count))

    def _chunk_of(self, addr, size=1):
        for start, data in self._chunks:
            if start <= addr and addr + size <= start + len(data):
                return start, data
        return None

    def _index_of(self, addrs):
        """The index of the object at each address (numpy intp), -1 where there is none.

        Each address is placed by the arithmetic of the walk's bulk blocks (largest first): the
        index it would have in the block, a guess that counts only when the object at that index
        is that address.  What is left is looked up among the objects of single steps, or, when
        there were more blocks than the arithmetic tries, in the objects sorted by address.
        """
        objects = self.object_array()
        n = len(objects)
        index = np.full(len(addrs), -1, dtype=np.intp)
        todo = None  # positions in addrs still to place; None: all of them
        blocks = sorted(self._blocks, key=lambda b: -b[5])
        for k0, first, stride, run, period, count in blocks[:GUESSES]:
            count = min(count, n - k0)  # the list may have been cut since
            a = addrs if todo is None else addrs[todo]
            if not len(a) or count <= 0:
                break
            d = a - np.uint64(first)  # addresses below the block wrap around to huge ones
            p = d // np.uint64(period)
            k = p if run == 1 else p * np.uint64(run) + (d - p * np.uint64(period)) // np.uint64(stride)
            k = (np.minimum(k, np.uint64(count - 1)) + np.uint64(k0)).astype(np.intp)
            ok = objects[k] == a
            if todo is None:
                index = np.where(ok, k, -1)
                todo = np.flatnonzero(~ok)
            else:
                index[todo[ok]] = k[ok]
                todo = todo[~ok]
        if todo is None:
            todo = np.arange(len(addrs))
        if len(todo) and len(blocks) > GUESSES:
            order, ordered = self._address_order()
            a = addrs[todo]
            pos = np.minimum(np.searchsorted(ordered, a), n - 1)
            hit = ordered[pos] == a
            index[todo[hit]] = order[pos[hit]]
            todo = todo[~hit]
        if len(todo) and self._singles:
            singles = {obj: k0 + i for k0, objs in self._singles for i, obj in enumerate(objs) if k0 + i < n}
            index[todo] = [singles.get(a, -1) for a in addrs[todo].tolist()]
        return index

    def _address_order(self):
        """(positions that sort the objects by address, the objects so sorted); computed once."""
        if self._order is None:
            objects = self.object_array()
            order = np.argsort(objects, kind="stable")
            self._order = order, objects[order]
        return self._order

    def _free_entries(self):
        """(free entries, the place of each as an index into names, names): the driver's store, then
        each lcore cache, in that order.  Computed once."""
        if self._free is None:
            lcores = sorted(self.cache_objects)
            names = ("stack" if self.ops in STACK_DRIVERS else "ring",) + tuple("lcore %d cache" % lc for lc in lcores)
            arrays = [self._driver if self._driver is not None else np.empty(0, U64)]
            arrays += [np.array(self.cache_objects[lc], dtype=U64) for lc in lcores]
            where = np.repeat(np.arange(len(names), dtype=np.int16), [len(a) for a in arrays])
            self._free = np.concatenate(arrays), where, names
        return self._free

    def _note_free_twice(self, names):
        """Anomalies for objects free twice, store by store in order (the first place is kept)."""
        store = self.driver_objects or []
        sources = [(names[0], store)] + [(name, self.cache_objects[lc])
                                         for name, lc in zip(names[1:], sorted(self.cache_objects))]
        places = {}
        for where, objs in sources:
            new = dict.fromkeys(objs, where)  # what is already free elsewhere keeps its first place
            for obj in sorted(new.keys() & places.keys()):
                self.anomalies.append("0x%x is free twice (%s and %s): the pool is corrupt" % (obj, places[obj], where))
                del new[obj]
            if len(new) != len(objs) - len(places.keys() & set(objs)):
                counts = collections.Counter(objs)
                for obj in sorted(o for o, n in counts.items() if n > 1):
                    self.anomalies.append("0x%x is free twice (%s and %s): the pool is corrupt" % (obj, where, where))
            places.update(new)

    def classify(self):
        """Every object's state from memory, as a Classification of numpy arrays; computed once.

        Free entries that are no object, and objects free twice, are noted as anomalies.
        """
        if self._classified is not None:
            return self._classified
        objects = self.object_array()
        free, place, names = self._free_entries()
        index = self._index_of(free)
        mapped = index >= 0
        strays = free[~mapped]
        index, place = index[mapped], place[mapped]
        where = np.full(len(objects), -1, dtype=np.int16)
        twice = len(index) and np.bincount(index, minlength=len(objects)).max() > 1
        if twice or len(np.unique(strays)) != len(strays):
            self._note_free_twice(names)
            index, first = np.unique(index, return_index=True)  # each object's first place
            place = place[first]
        where[index] = place
        if len(strays):
            strays = np.unique(strays)
            self.anomalies.append("%d free entries are no object of this pool (first 0x%x)"
                                  % (len(strays), int(strays[0])))
        in_use = where < 0 if self.counts_known else np.zeros(len(objects), dtype=bool)
        self._classified = Classification(objects, where, names, in_use)
        return self._classified

    def free_places(self):
        """Object address -> where it is free ('ring', 'stack', 'lcore N cache'); computed once.
        An object free in several places keeps the first; free entries that are no object are in it too."""
        if self._places is None:
            self.classify()  # notes the anomalies
            free, place, names = self._free_entries()
            labels = np.array(names, dtype=object)[place[::-1]].tolist()
            self._places = dict(zip(free[::-1].tolist(), labels))  # the first place written last
        return self._places

    def states(self):
        """[(index, addr, state, where)] for every object, in index order."""
        c = self.classify()
        default = IN_USE if self.counts_known else UNKNOWN
        states = np.array([default, FREE], dtype=object)[(c.where >= 0).view(np.int8)].tolist()
        wheres = np.array((None,) + c.names, dtype=object)[c.where + 1].tolist()
        return list(zip(range(len(c.objects)), self.objects, states, wheres))

    # --- single objects ---------------------------------------------------

    def object_bytes(self, obj, size):
        """`size` bytes at object address `obj`, from the chunk already read when possible."""
        if self._chunks:
            found = self._chunk_of(obj)
            if found and obj + size <= found[0] + len(found[1]):
                return bytes(found[1][obj - found[0]:obj - found[0] + size])
        return self.memory.read(obj, size)

    def mbuf(self, obj):
        return decode_mbuf(self.layout, self.object_bytes(obj, self.layout["rte_mbuf"].size))

    def packet_segments(self, obj, max_segs=64):
        """[(mbuf, bytes of its data)] along the `next` chain of the mbuf at obj."""
        segs, seen = [], set()
        while obj and obj not in seen and len(segs) < max_segs:
            seen.add(obj)
            m = decode_mbuf(self.layout, self.memory.read(obj, self.layout["rte_mbuf"].size))
            try:
                payload = self.memory.read(m["buf_addr"] + m["data_off"], m["data_len"])
            except MemoryMissing:
                payload = None
            segs.append((m, payload))
            obj = m["next"]
        return segs

    def contains(self, addr):
        """The (index, object address) whose element (header to trailer) holds addr, or None."""
        if not self.holds(addr):
            return None
        order, ordered = self._address_order()
        i = int(np.searchsorted(ordered, np.uint64(addr + self.header.header_size), side="right")) - 1
        if i < 0:
            return None
        index, obj = int(order[i]), int(ordered[i])
        if obj - self.header.header_size <= addr < obj + self.header.elt_size + self.header.trailer_size:
            return index, obj
        return None
