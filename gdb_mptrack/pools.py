"""The state of every object of a mempool, decided from memory alone.

Approach (no function is called in the target, so this works on cores):
- objects: walk the pool's element list (`elt_list`, one rte_mempool_objhdr
  before each object) inside the memory chunks of `mem_list`, each chunk read
  in one piece; an object's index is its position in that list, the order of
  rte_mempool_obj_iter().
- free objects: those in the driver's store (the ring's slots from cons.tail
  to prod.tail, or the stack's table) and in each lcore's default cache
  (`local_cache[lcore].objs[0:len]`).  Everything else is in use.  Caches an
  application made with rte_mempool_cache_create() are invisible here, so
  their objects show as in use.
- the counts match DPDK's: avail = driver count + every lcore cache's len,
  in use = size - avail (rte_mempool_avail_count, rte_mempool_in_use_count).
Drivers other than the ring family and the stacks are listed with their
driver counts unknown.  Every loop is bounded by sizes read from the pool,
and what does not add up is reported as an anomaly rather than hidden.
"""

import bisect
import collections
import struct
from array import array

from .decode import PoolHeader, Record, decode_mbuf
from .memory import MemoryMissing

RING_DRIVERS = frozenset(("ring_mp_mc", "ring_sp_sc", "ring_mp_sc", "ring_sp_mc",
                          "ring_mt_rts", "ring_mt_hts"))
STACK_DRIVERS = frozenset(("stack", "lf_stack"))
IN_USE, FREE, UNKNOWN = "in-use", "free", "unknown"


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


def _learn_layout(words, start, end, node, next_off, hdr_size, probe=1024):
    """(stride, run, period) of the element list from node on, by following a few links.

    Objects sit `stride` apart in runs of `run`, and runs start `period` apart
    (DPDK skips page boundaries); a straight list is run 1, period = stride.
    None when the list does not show such a pattern within `probe` links.
    """
    heads = [node]
    while len(heads) < probe:
        off = heads[-1] - start + next_off
        if off % 8 or not 0 <= off < len(words) * 8:
            break
        nxt = words[off // 8]
        if not start <= nxt <= end - hdr_size:
            break
        heads.append(nxt)
    if len(heads) < 3 or heads[1] <= heads[0]:
        return None
    stride = heads[1] - heads[0]
    run = next((i for i in range(1, len(heads)) if heads[i] - heads[i - 1] != stride), None)
    if run is None:
        return stride, 1, stride
    period = heads[run] - heads[0]
    if len(heads) < 2 * run or any(heads[run + j] != heads[j] + period for j in range(run)):
        return None
    return stride, run, period


def _layout_block(words, start, end, node, stride, run, period, next_off, mp_off, hdr_size, pool_addr, most):
    """How many whole periods from node on follow the learned layout: every element names the pool
    and links to the next; checked with strided slices of the chunk's words, in C.

    Each of the `run` positions in a period is one strided slice across all
    periods, compared with the addresses the layout predicts.
    """
    if words is None or period % 8 or (node - start) % 8:
        return 0
    periods = min(most // run, (end - node - ((run - 1) * stride + hdr_size)) // period + 1)
    if periods <= 0:
        return 0
    step = period // 8
    good = periods
    for j in range(run):
        first = node - start + j * stride
        nexts = words[(first + next_off) // 8::step][:good].tolist()
        owners = words[(first + mp_off) // 8::step][:good].tolist()
        target = node + (j + 1) * stride if j < run - 1 else node + period
        expected = list(range(target, target + good * period, period))
        mine = [pool_addr] * len(nexts)
        if nexts == expected and owners == mine:
            continue
        lo, hi = 0, min(good, len(nexts))
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if nexts[:mid] == expected[:mid] and owners[:mid] == mine[:mid]:
                lo = mid
            else:
                hi = mid - 1
        good = lo
        if not good:
            return 0
    return good


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
        self.driver_objects = self._read_driver()
        self.pktmbuf = self._is_pktmbuf()
        self._ranges = None
        self._chunks = None
        self._by_addr = None
        self._places = None
        self._strays_noted = False
        self.objects = None

    # --- counts -----------------------------------------------------------

    @property
    def cache_fill(self):
        return {lcore: len(objs) for lcore, objs in self.cache_objects.items() if objs}

    @property
    def counts_known(self):
        return self.driver_objects is not None

    @property
    def avail(self):
        if self.driver_objects is None:
            return None
        return min(self.header.size, len(self.driver_objects) + sum(map(len, self.cache_objects.values())))

    @property
    def in_use(self):
        avail = self.avail
        return None if avail is None else self.header.size - avail

    # --- free stores ------------------------------------------------------

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
            if rec.uint("size") != h.cache_size:
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

    def _read_driver(self):
        """Objects in the driver's store, or None when the driver is not understood."""
        if self.ops in RING_DRIVERS:
            return self._read_ring(self.header.pool_data)
        if self.ops == "stack" or self.ops == "lf_stack":
            return self._read_stack(self.header.pool_data)
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
        slots = array("Q")
        slots.frombytes(bytes(self.memory.read(ring_addr + ring.size, size * 8)))
        first = cons_tail & mask
        ordered = slots[first:] + slots[:first]
        return list(ordered[:count])

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
        return list(struct.unpack("<%dQ" % length, self.memory.read(base + std.offset("objs"), length * 8)))

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

    def load_objects(self):
        """Walk elt_list; fills self.objects with object addresses in index order."""
        if self.objects is not None:
            return self.objects
        self._chunks = chunks = [(start, self.memory.read(start, length))
                                 for start, length in self.chunk_ranges()]
        objhdr = self.layout["rte_mempool_objhdr"]
        next_off, mp_off, hdr_size = objhdr.offset("next"), objhdr.offset("mp"), objhdr.size
        unpack = struct.unpack_from
        objects = []
        limit = self.header.populated_size
        node = self.header.elt_first
        start, data = (chunks[0] if chunks else (0, b""))
        end = start + len(data)
        words, layout, slow = _words(data, start), None, 0
        while node and len(objects) < limit:
            if not start <= node <= end - hdr_size:
                found = self._chunk_of(node, hdr_size)
                if found is None:
                    self.anomalies.append("element list leaves the pool's memory at index %d (0x%x)"
                                          % (len(objects), node))
                    break
                start, data = found
                end = start + len(data)
                words, layout = _words(data, start), None
            # Bulk: learn how objects are laid out, then check whole periods of that layout at once.
            # When there is no pattern (or it breaks), take `slow` single steps before trying again.
            if words is not None and layout is None and not slow:
                layout = _learn_layout(words, start, end, node, next_off, hdr_size)
                slow = 0 if layout else 256
            if layout is not None:
                stride, run, period = layout
                periods = _layout_block(words, start, end, node, stride, run, period, next_off, mp_off,
                                        hdr_size, self.addr, limit - len(objects))
                layout = None
                if periods:
                    offsets = [hdr_size + j * stride for j in range(run)]
                    objects.extend([base + off for base in range(node, node + periods * period, period)
                                    for off in offsets])
                    node += periods * period
                    continue
                slow = run + 1
            slow = max(0, slow - 1)
            off = node - start
            if unpack("<Q", data, off + mp_off)[0] != self.addr:
                self.anomalies.append("object header at index %d (0x%x) names another pool: list cut"
                                      % (len(objects), node))
                break
            objects.append(node + hdr_size)
            node = unpack("<Q", data, off + next_off)[0]
        if len(set(objects)) != len(objects):  # checked once at the end: cheaper than per step
            seen = set()
            for index, obj in enumerate(objects):
                if obj in seen:
                    self.anomalies.append("element list loops back at index %d (0x%x): list cut"
                                          % (index, obj - hdr_size))
                    del objects[index:]
                    break
                seen.add(obj)
        if len(objects) != limit:
            self.anomalies.append("%d objects listed, populated_size says %d" % (len(objects), limit))
        self.objects = objects
        return objects

    def _chunk_of(self, addr, size=1):
        for start, data in self._chunks:
            if start <= addr and addr + size <= start + len(data):
                return start, data
        return None

    def free_places(self):
        """Object address -> where it is free ('ring', 'stack', 'lcore N cache'); computed once."""
        if self._places is not None:
            return self._places
        store = "stack" if self.ops in STACK_DRIVERS else "ring"
        sources = [(store, self.driver_objects or [])]
        sources += [("lcore %d cache" % lcore, objs) for lcore, objs in sorted(self.cache_objects.items())]
        places = self._places = {}
        for where, objs in sources:
            new = dict.fromkeys(objs, where)  # in C; what is already free elsewhere keeps its first place
            for obj in sorted(new.keys() & places.keys()):
                self.anomalies.append("0x%x is free twice (%s and %s): the pool is corrupt" % (obj, places[obj], where))
                del new[obj]
            if len(new) != len(objs) - len(places.keys() & set(objs)):
                counts = collections.Counter(objs)
                for obj in sorted(o for o, n in counts.items() if n > 1):
                    self.anomalies.append("0x%x is free twice (%s and %s): the pool is corrupt" % (obj, where, where))
            places.update(new)
        return places

    def classify(self):
        """(objects in index order, {free object: where}, set of objects in use), all from memory."""
        objects = self.load_objects()
        places = self.free_places()
        known = set(objects)
        if not self._strays_noted:
            self._strays_noted = True
            strays = places.keys() - known
            if strays:
                self.anomalies.append("%d free entries are no object of this pool (first 0x%x)"
                                      % (len(strays), min(strays)))
        in_use = known - places.keys() if self.counts_known else set()
        return objects, places, in_use

    def states(self):
        """[(index, addr, state, where)] for every object, in index order."""
        objects, places, _ = self.classify()
        default = IN_USE if self.counts_known else UNKNOWN
        return [(index, obj, FREE if where else default, where)
                for index, (obj, where) in enumerate(zip(objects, map(places.get, objects)))]

    # --- single objects ---------------------------------------------------

    def object_bytes(self, obj, size):
        """`size` bytes at object address `obj`, from the chunk already read when possible."""
        if self._chunks:
            found = self._chunk_of(obj)
            if found and obj + size <= found[0] + len(found[1]):
                return found[1][obj - found[0]:obj - found[0] + size]
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
        objects = self.load_objects()
        if self._by_addr is None:
            self._by_addr = sorted((obj, index) for index, obj in enumerate(objects))
        i = bisect.bisect_right(self._by_addr, (addr + self.header.header_size, len(objects))) - 1
        if i < 0:
            return None
        obj, index = self._by_addr[i]
        if obj - self.header.header_size <= addr < obj + self.header.elt_size + self.header.trailer_size:
            return index, obj
        return None
