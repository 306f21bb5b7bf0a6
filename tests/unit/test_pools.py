"""pools.Pool: counts, object states, contains(), drivers, mbufs, and corrupt pools."""

import numpy as np
import pytest

from gdb_mptrack.decode import decode_mbuf
from gdb_mptrack.pools import FREE, GUESSES, IN_USE, UNKNOWN, Pool, PoolError, read_ops_names

from mptrack_fakes import MASK32, OPS, OPS_TABLE_ADDR, PoolImage, put, write_ops_table

BASE = 0x7f0000000000


def free_map(pool):
    """{index: where} of the free objects in pool.states(); asserts the rest are in use."""
    free = {}
    for index, addr, state, where in pool.states():
        assert addr == pool.objects[index]
        if state == FREE:
            free[index] = where
        else:
            assert (state, where) == (IN_USE, None), (index, state, where)
    return free


@pytest.fixture
def image(mem, layout):
    """10 objects, cache_size 4, ring driver: objects 1, 4, 7 in the ring, 2 and 3 in lcore 0's cache,
    9 in lcore 5's cache; 0, 5, 6, 8 in use."""
    img = PoolImage(mem, layout, BASE, name="cached", n=10, elt_size=100, trailer_size=12, cache_size=4)
    img.ring_put([img.objects[i] for i in (1, 4, 7)])
    img.cache_put(0, [img.objects[2], img.objects[3]])
    img.cache_put(5, [img.objects[9]])
    return img


# --- ops table -------------------------------------------------------------------

def test_read_ops_names(mem, layout):
    assert read_ops_names(mem, layout, OPS_TABLE_ADDR) == list(OPS)


def test_read_ops_names_refuses_more_drivers_than_room(mem, layout):
    put(mem, layout, "rte_mempool_ops_table", OPS_TABLE_ADDR, num_ops=17)
    with pytest.raises(PoolError, match="17 drivers, room for 16"):
        read_ops_names(mem, layout, OPS_TABLE_ADDR)


def test_read_ops_names_unnamed_driver(mem, layout):
    other = 0x7e0000100000
    write_ops_table(mem, layout, ("ring_mp_mc", ""), other)
    assert read_ops_names(mem, layout, other) == ["ring_mp_mc", "?"]


# --- counts ----------------------------------------------------------------------

def test_counts_agree_with_what_was_placed(image):
    pool = image.pool()
    assert (pool.name, pool.ops, pool.addr) == ("cached", "ring_mp_mc", image.addr)
    assert pool.counts_known
    assert pool.avail == 6
    assert pool.in_use == 4
    assert pool.cache_fill == {0: 2, 5: 1}
    assert pool.driver_objects == [image.objects[i] for i in (1, 4, 7)]
    assert pool.anomalies == []
    assert not pool.pktmbuf


def test_counts_of_an_untouched_pool(mem, layout):
    pool = PoolImage(mem, layout, BASE, n=5).pool()
    assert (pool.avail, pool.in_use, pool.cache_fill) == (0, 5, {})


def test_avail_is_capped_at_size_like_dpdk(mem, layout):
    img = PoolImage(mem, layout, BASE, n=4, cache_size=4)
    img.ring_put(img.objects[:3])
    img.cache_put(1, img.objects[:3])  # 6 "free" in a pool of 4: corrupt, DPDK reports size
    pool = img.pool()
    assert (pool.avail, pool.in_use) == (4, 0)


# --- states and objects --------------------------------------------------------

def test_objects_are_the_element_list_in_order(image):
    pool = image.pool()
    assert pool.load_objects() == image.objects
    assert pool.chunk_ranges() == [(image.chunk, image.chunk_len)]
    assert pool.anomalies == []


def test_states_mark_exactly_the_placed_objects_free(image):
    pool = image.pool()
    assert free_map(pool) == {1: "ring", 4: "ring", 7: "ring", 2: "lcore 0 cache", 3: "lcore 0 cache",
                              9: "lcore 5 cache"}
    assert [row[0] for row in pool.states()] == list(range(10))
    assert pool.anomalies == []


def test_ring_wraps_around_2_to_the_32(mem, layout):
    img = PoolImage(mem, layout, BASE, n=10)  # ring of 16
    tail = (1 << 32) - 3
    img.ring_put([img.objects[i] for i in (0, 2, 4, 6, 8)], tail=tail)
    ring = layout["rte_ring"]
    # prod.tail wrapped to 2; the slots used are 13, 14, 15, 0, 1.
    assert mem.read(img.store + ring.offset("prod") + 4, 4) == (2).to_bytes(4, "little")
    assert mem.u64(img.store + ring.size + 15 * 8) == img.objects[4]
    assert mem.u64(img.store + ring.size + 1 * 8) == img.objects[8]
    pool = img.pool()
    assert pool.driver_objects == [img.objects[i] for i in (0, 2, 4, 6, 8)]
    assert (pool.avail, pool.in_use) == (5, 5)
    assert free_map(pool) == {0: "ring", 2: "ring", 4: "ring", 6: "ring", 8: "ring"}
    assert pool.anomalies == []


def test_full_ring_at_wrap_point(mem, layout):
    img = PoolImage(mem, layout, BASE, n=15, cache_size=0)  # ring of 16, capacity 15
    img.ring_put(img.objects, tail=MASK32 - 6)
    pool = img.pool()
    assert pool.driver_objects == img.objects
    assert (pool.avail, pool.in_use) == (15, 0)


def test_ring_in_progress_operations_are_reported(image, layout):
    image.headtail("prod", head=3 + 2)   # tail 3: an enqueue of 2 not finished
    image.headtail("cons", head=1)       # tail 0: a dequeue of 1 not finished
    pool = image.pool()
    assert pool.avail == 6
    assert any("enqueue of 2 objects is in progress" in a for a in pool.anomalies), pool.anomalies
    assert any("dequeue of 1 objects is in progress" in a for a in pool.anomalies), pool.anomalies


def test_rts_ring_ignores_heads(mem, layout):
    img = PoolImage(mem, layout, BASE, n=6, ops="ring_mt_rts", cache_size=0)
    img.ring_put(img.objects[:2])
    img.headtail("prod", head=77)  # in an RTS ring this word is tail.cnt, not a head
    pool = img.pool()
    assert pool.ops == "ring_mt_rts"
    assert pool.driver_objects == img.objects[:2]
    assert pool.anomalies == []


def test_pool_without_cache(mem, layout):
    img = PoolImage(mem, layout, BASE, n=6, cache_size=0)
    img.ring_put(img.objects[3:])
    pool = img.pool()
    assert pool.header.local_cache == 0
    assert pool.cache_objects == {}
    assert free_map(pool) == {3: "ring", 4: "ring", 5: "ring"}


def test_highest_lcore_cache_is_read(mem, layout):
    img = PoolImage(mem, layout, BASE, n=6, cache_size=2)
    last = layout.constant("RTE_MAX_LCORE") - 1
    img.cache_put(last, [img.objects[5]])
    pool = img.pool()
    assert pool.cache_fill == {last: 1}
    assert free_map(pool) == {5: "lcore %d cache" % last}


# --- contains ------------------------------------------------------------------

def test_contains_maps_addresses_to_objects(image):
    pool = image.pool()
    h = image.header_size
    obj = image.objects
    assert pool.contains(obj[3]) == (3, obj[3])
    assert pool.contains(obj[3] + 5) == (3, obj[3])
    assert pool.contains(obj[3] + 99) == (3, obj[3])           # last byte of the object
    assert pool.contains(obj[3] + 100 + 11) == (3, obj[3])     # last byte of its trailer
    assert pool.contains(obj[4] - 1) == (4, obj[4])            # its objhdr, right before it
    assert pool.contains(obj[4] - h) == (4, obj[4])            # first byte of its element
    assert pool.contains(obj[0] - h) == (0, obj[0])
    assert pool.contains(obj[9] + 111) == (9, obj[9])
    assert pool.contains(obj[9] + 112) is None                 # past the chunk
    assert pool.contains(image.addr) is None                   # the pool struct
    assert pool.contains(image.memhdr) is None
    assert pool.holds(obj[5]) and not pool.holds(image.addr)


def test_contains_uses_list_order_not_address_order(mem, layout):
    img = PoolImage(mem, layout, BASE, n=4, cache_size=0)
    # Link the list 3 -> 2 -> 1 -> 0: index 0 is the highest address.
    for i in range(4):
        img.objhdr(i, next=img.hdrs[i - 1] if i else 0)
    img.header(elt_list=(img.hdrs[3], img.hdrs[0]))
    pool = img.pool()
    assert pool.load_objects() == img.objects[::-1]
    assert pool.contains(img.objects[0] + 1) == (3, img.objects[0])
    assert pool.contains(img.objects[3] - 1) == (0, img.objects[3])


def test_object_bytes(image, mem):
    mem.write(image.objects[2], b"hello")
    pool = image.pool()
    assert pool.object_bytes(image.objects[2], 6) == b"hello\xa5"
    pool.load_objects()
    assert pool.object_bytes(image.objects[2], 6) == b"hello\xa5"
    assert pool.object_bytes(image.objects[9] + 100, 12) == b"\0" * 12  # the trailer
    assert pool.object_bytes(image.addr, 6) == b"cached"  # outside every chunk: read from memory


# --- stacks ----------------------------------------------------------------------

def test_stack_driver(mem, layout):
    img = PoolImage(mem, layout, BASE, n=8, ops="stack", cache_size=2)
    img.stack_put([img.objects[i] for i in (6, 1, 3)])
    img.cache_put(1, [img.objects[0]])
    pool = img.pool()
    assert pool.ops == "stack"
    assert (pool.avail, pool.in_use) == (4, 4)
    assert free_map(pool) == {6: "stack", 1: "stack", 3: "stack", 0: "lcore 1 cache"}
    assert pool.anomalies == []


def test_stack_length_beyond_capacity_is_capped(mem, layout):
    img = PoolImage(mem, layout, BASE, n=4, ops="stack", cache_size=0)
    img.stack_put(img.objects, length=1000)
    pool = img.pool()
    assert pool.driver_objects[:4] == img.objects and len(pool.driver_objects) == 4
    assert any("exceeds its capacity" in a for a in pool.anomalies)


def test_lf_stack_driver(mem, layout):
    img = PoolImage(mem, layout, BASE, n=8, ops="lf_stack", cache_size=0)
    img.lf_put([img.objects[i] for i in (7, 2, 5)])
    pool = img.pool()
    assert pool.ops == "lf_stack"
    assert pool.driver_objects == [img.objects[i] for i in (7, 2, 5)]
    assert (pool.avail, pool.in_use) == (3, 5)
    assert free_map(pool) == {7: "stack", 2: "stack", 5: "stack"}
    assert pool.anomalies == []


def test_lf_stack_list_shorter_than_its_length(mem, layout):
    img = PoolImage(mem, layout, BASE, n=8, ops="lf_stack", cache_size=0)
    img.lf_put(img.objects[:3], length=5)
    pool = img.pool()
    assert pool.driver_objects == img.objects[:3]
    assert any("3 objects listed, length says 5" in a for a in pool.anomalies), pool.anomalies


def test_lf_stack_cycle_is_bounded(mem, layout):
    img = PoolImage(mem, layout, BASE, n=8, ops="lf_stack", cache_size=0)
    elems = img.lf_put(img.objects[:3])
    put(mem, layout, "rte_stack_lf_elem", elems[2], next=elems[0])
    pool = img.pool()
    assert pool.driver_objects == img.objects[:3]


def test_undecoded_driver(mem, layout):
    img = PoolImage(mem, layout, BASE, n=5, ops="bucket", cache_size=2)
    img.cache_put(3, [img.objects[1]])
    pool = img.pool()
    assert (pool.avail, pool.in_use, pool.counts_known) == (None, None, False)
    assert any("'bucket' is not decoded" in a for a in pool.anomalies)
    assert [state for _, _, state, _ in pool.states()] == [UNKNOWN, FREE, UNKNOWN, UNKNOWN, UNKNOWN]


def test_unknown_ops_index_gives_question_mark(mem, layout):
    img = PoolImage(mem, layout, BASE, n=5, ops="stack")
    pool = Pool(mem, layout, img.addr, ["ring_mp_mc"])  # ops_index 3 not registered
    assert pool.ops == "?"
    assert pool.avail is None


# --- mbufs -------------------------------------------------------------------

MBUF_PRIV, DATA_ROOM = 16, 2176


def mbuf_image(mem, layout, cache_size=4, data_room=DATA_ROOM):
    elt_size = layout["rte_mbuf"].size + MBUF_PRIV + DATA_ROOM
    img = PoolImage(mem, layout, BASE, name="mbuf_pool", n=4, elt_size=elt_size, cache_size=cache_size)
    put(mem, layout, "rte_pktmbuf_pool_private", img.private_addr, mbuf_data_room_size=data_room,
        mbuf_priv_size=MBUF_PRIV)
    return img


@pytest.mark.parametrize("cache_size", [4, 0])
def test_pktmbuf_pool_is_detected(mem, layout, cache_size):
    img = mbuf_image(mem, layout, cache_size)
    pool = img.pool()
    assert pool.header.private_addr == img.private_addr
    assert pool.pktmbuf is True


def test_pool_whose_private_data_does_not_fit_is_not_pktmbuf(mem, layout):
    assert mbuf_image(mem, layout, data_room=DATA_ROOM - 64).pool().pktmbuf is False


def test_pool_without_private_data_is_not_pktmbuf(mem, layout):
    img = PoolImage(mem, layout, BASE, n=4, elt_size=128 + 0 + 0, private_data_size=0)
    assert img.pool().pktmbuf is False


def test_decode_mbuf_reads_the_fields_set(mem, layout):
    img = mbuf_image(mem, layout)
    m0, m1 = img.objects[0], img.objects[1]
    buf0 = m0 + layout["rte_mbuf"].size + MBUF_PRIV
    put(mem, layout, "rte_mbuf", m0, buf_addr=buf0, data_off=128, refcnt=1, nb_segs=2, port=3,
        ol_flags=0x8000000000000182, pkt_len=1500, data_len=1000, buf_len=DATA_ROOM, pool=img.addr, next=m1)
    put(mem, layout, "rte_mbuf", m1, buf_addr=m1 + 144, data_off=128, refcnt=1, nb_segs=1, port=3,
        pkt_len=500, data_len=500, buf_len=DATA_ROOM, pool=img.addr, next=0)
    mem.write(buf0 + 128, b"\x45\x00\x05\xdc")
    expected = {"refcnt": 1, "port": 3, "nb_segs": 2, "pkt_len": 1500, "data_len": 1000,
                "ol_flags": 0x8000000000000182, "next": m1, "buf_addr": buf0, "data_off": 128,
                "buf_len": DATA_ROOM, "pool": img.addr}
    assert decode_mbuf(layout, mem.read(m0, 128)) == expected
    assert decode_mbuf(layout, b"\0" * 64 + mem.read(m0, 128), 64) == expected
    pool = img.pool()
    assert pool.mbuf(m0) == expected
    assert pool.mbuf(m1)["next"] is None
    segs = pool.packet_segments(m0)
    assert [m["data_len"] for m, _ in segs] == [1000, 500]
    assert segs[0][1][:4] == b"\x45\x00\x05\xdc" and len(segs[0][1]) == 1000


def test_mbuf_chain_cycle_is_bounded(mem, layout):
    img = mbuf_image(mem, layout)
    m0, m1 = img.objects[0], img.objects[1]
    put(mem, layout, "rte_mbuf", m0, next=m1, buf_addr=0xdead0000, data_len=4)
    put(mem, layout, "rte_mbuf", m1, next=m0, buf_addr=0xdead0000, data_len=4)
    segs = img.pool().packet_segments(m0)
    assert len(segs) == 2
    assert segs[0][1] is None  # unreadable payload: None, not an exception


# --- corruption: reported and bounded ------------------------------------------------

def cyclic_pool(mem, layout):
    img = PoolImage(mem, layout, BASE, n=10)
    img.objhdr(3, next=img.hdrs[1])  # 0 -> 1 -> 2 -> 3 -> 1 -> 2 -> ...
    return img, img.pool()


def test_element_list_cycle_stops_with_an_anomaly(mem, layout):
    img, pool = cyclic_pool(mem, layout)
    assert len(pool.load_objects()) <= 10
    assert pool.anomalies, "the element list loops back to index 1, and no anomaly says so"


def test_element_list_cycle_lists_no_object_twice(mem, layout):
    img, pool = cyclic_pool(mem, layout)
    objects = pool.load_objects()
    assert objects == img.objects[:4], "objects listed: %s" % [img.objects.index(o) for o in objects]


def test_objhdr_of_another_pool_cuts_the_list(mem, layout):
    img = PoolImage(mem, layout, BASE, n=10)
    img.objhdr(5, mp=0x7f00dead0000)
    pool = img.pool()
    assert pool.load_objects() == img.objects[:5]
    assert any("index 5" in a and "names another pool" in a for a in pool.anomalies), pool.anomalies
    assert any("5 objects listed, populated_size says 10" in a for a in pool.anomalies), pool.anomalies


def test_element_list_leaving_the_chunk(mem, layout):
    img = PoolImage(mem, layout, BASE, n=10)
    img.objhdr(6, next=0x5555dead0000)
    pool = img.pool()
    assert pool.load_objects() == img.objects[:7]
    assert any("leaves the pool's memory at index 7" in a for a in pool.anomalies), pool.anomalies


def test_element_list_pointing_into_the_last_bytes_of_the_chunk(mem, layout):
    img = PoolImage(mem, layout, BASE, n=10)
    img.objhdr(6, next=img.chunk + img.chunk_len - 8)  # inside the chunk, no room for an objhdr
    pool = img.pool()
    objects = pool.load_objects()
    assert objects == img.objects[:7]
    assert pool.anomalies


def test_element_list_shorter_than_populated_size(mem, layout):
    img = PoolImage(mem, layout, BASE, n=10)
    img.objhdr(7, next=0)
    pool = img.pool()
    assert pool.load_objects() == img.objects[:8]
    assert any("8 objects listed, populated_size says 10" in a for a in pool.anomalies)


def test_ring_with_a_non_power_of_two_size_is_refused(mem, layout):
    img = PoolImage(mem, layout, BASE, n=10)
    put(mem, layout, "rte_ring", img.store, size=12, mask=11)
    with pytest.raises(PoolError, match=r"ring at 0x%x is corrupt \(size 12" % img.store):
        img.pool()


def test_ring_with_a_wrong_mask_is_refused(mem, layout):
    img = PoolImage(mem, layout, BASE, n=10)
    put(mem, layout, "rte_ring", img.store, mask=7)
    with pytest.raises(PoolError, match="corrupt"):
        img.pool()


def test_ring_count_beyond_capacity_is_capped(mem, layout):
    img = PoolImage(mem, layout, BASE, n=10, ring_capacity=10, cache_size=0)  # an exact-size ring of 16
    img.ring_put(img.objects + img.objects[:2])  # 12 entries
    pool = img.pool()
    assert pool.driver_objects == img.objects
    assert any("ring count 12 exceeds its capacity 10" in a for a in pool.anomalies), pool.anomalies


def test_cache_len_beyond_its_room_is_ignored(image, layout):
    room = layout["rte_mempool_cache"]["objs"].size // 8
    image.cache_field(5, len=room + 1)
    pool = image.pool()
    assert pool.cache_fill == {0: 2}
    assert pool.avail == 5
    assert any("lcore 5 cache claims %d objects, room for %d" % (room + 1, room) in a for a in pool.anomalies)
    assert free_map(pool) == {1: "ring", 4: "ring", 7: "ring", 2: "lcore 0 cache", 3: "lcore 0 cache"}


def test_object_free_twice_is_reported(image):
    image.cache_put(2, [image.objects[4]])  # also in the ring
    pool = image.pool()
    free = free_map(pool)
    assert free[4] == "ring"
    assert any("0x%x is free twice (ring and lcore 2 cache)" % image.objects[4] in a for a in pool.anomalies), \
        pool.anomalies


def test_free_entry_that_is_no_object_is_reported(image):
    image.cache_put(7, [image.objects[0] + 8])
    pool = image.pool()
    free = free_map(pool)
    assert 0 not in free
    assert any("1 free entries are no object of this pool (first 0x%x)" % (image.objects[0] + 8) in a
               for a in pool.anomalies), pool.anomalies


def test_cache_size_mismatch_is_a_layout_error(image):
    image.cache_field(7, size=8)
    with pytest.raises(PoolError, match="lcore 7 cache has size 8, the pool says 4"):
        image.pool()


def test_anomalies_are_not_repeated_when_states_is_asked_again(image):
    """The gdb session keeps a Pool between commands: a second `mptrack dump` must not double the notes."""
    image.cache_put(2, [image.objects[4]])   # free twice
    image.cache_put(3, [image.addr + 8])      # no object of this pool
    pool = image.pool()
    first = list(pool.states())
    notes = list(pool.anomalies)
    assert len(notes) == 2, notes
    assert pool.states() == first
    assert pool.anomalies == notes


# --- bulk walk and classification (numpy): layouts with gaps, chunks, corruption ---------------

def reference_objects(mem, layout, img, first, limit):
    """The element list walked one element at a time, the plain way: stops where the list leaves the
    chunks, names another pool or comes back to an element already listed."""
    objhdr = layout["rte_mempool_objhdr"]
    chunks = Pool(mem, layout, img.addr, list(img.ops_names)).chunk_ranges()
    objects, seen, node = [], set(), first
    while node and len(objects) < limit:
        if not any(s <= node and node + objhdr.size <= s + n for s, n in chunks):
            break
        if mem.u64(node + objhdr.offset("mp")) != img.addr:
            break
        obj = node + objhdr.size
        if obj in seen:
            break
        seen.add(obj)
        objects.append(obj)
        node = mem.u64(node + objhdr.offset("next"))
    return objects


def reference_states(objects, sources, counts_known=True):
    """(index, addr, state, where) from the objects and [(where, free entries)] in store order."""
    places = {}
    for where, objs in sources:
        for obj in objs:
            places.setdefault(obj, where)
    default = IN_USE if counts_known else UNKNOWN
    return [(i, obj, FREE if obj in places else default, places.get(obj)) for i, obj in enumerate(objects)]


def gapped(mem, layout, run=3, gap=1, periods=200, order=None, **kwargs):
    """A pool whose elements sit in runs of `run` slots with `gap` unused slots after each run (DPDK
    skipping page boundaries); `order` lists the used slots in element-list order (default: address
    order).  Returns (image, [header of each element in list order])."""
    slots = periods * (run + gap)
    img = PoolImage(mem, layout, BASE, n=slots, **kwargs)
    used = order if order is not None else [i for i in range(slots) if i % (run + gap) < run]
    relink(img, [img.hdrs[i] for i in used])
    return img, [img.hdrs[i] for i in used]


def relink(img, hdrs):
    """Make hdrs the element list, in that order (size and populated_size follow)."""
    for i, hdr in enumerate(hdrs):
        put(img.mem, img.layout, "rte_mempool_objhdr", hdr, next=hdrs[i + 1] if i + 1 < len(hdrs) else 0)
    img.header(elt_list=(hdrs[0], hdrs[-1]), size=len(hdrs), populated_size=len(hdrs))


def obj_of(layout, hdr):
    return hdr + layout["rte_mempool_objhdr"].size


@pytest.mark.parametrize("run,gap", [(1, 0), (3, 1), (31, 1), (5, 11)])
def test_bulk_walk_of_layouts_with_gaps(mem, layout, run, gap):
    img, hdrs = gapped(mem, layout, run=run, gap=gap, periods=max(8, 600 // run))
    pool = img.pool()
    objects = [obj_of(layout, h) for h in hdrs]
    assert pool.load_objects() == objects
    assert pool.objects == objects and pool.object_array().dtype == np.uint64
    assert pool.anomalies == []
    assert pool._blocks, "the layout was not walked in bulk"
    assert sum(b[5] for b in pool._blocks) >= len(objects) - run - 1


@pytest.mark.parametrize("at", [0, 1, 2, 3, 149, 150, 151, 598])
def test_bulk_walk_cut_by_a_header_of_another_pool(mem, layout, at):
    img, hdrs = gapped(mem, layout)
    put(mem, layout, "rte_mempool_objhdr", hdrs[at], mp=0x7f00dead0000)
    pool = img.pool()
    assert pool.load_objects() == [obj_of(layout, h) for h in hdrs[:at]]
    assert any("index %d (0x%x) names another pool" % (at, hdrs[at]) in a for a in pool.anomalies), pool.anomalies


@pytest.mark.parametrize("at,to", [(100, 120), (0, 5), (597, 599), (300, 2), (250, 250), (401, 7)])
def test_bulk_walk_follows_a_link_the_layout_does_not_predict(mem, layout, at, to):
    img, hdrs = gapped(mem, layout)
    put(mem, layout, "rte_mempool_objhdr", hdrs[at], next=hdrs[to])
    pool = img.pool()
    want = reference_objects(mem, layout, img, hdrs[0], len(hdrs))
    assert pool.load_objects() == want
    if to <= at:
        assert any("loops back at index %d" % (at + 1) in a for a in pool.anomalies), pool.anomalies
    else:
        assert any("%d objects listed, populated_size says %d" % (len(want), len(hdrs)) in a
                   for a in pool.anomalies), pool.anomalies


def test_bulk_walk_never_reads_past_the_chunk(mem, layout):
    img, hdrs = gapped(mem, layout, run=4, gap=1, periods=50)
    cut = hdrs[-1] + layout["rte_mempool_objhdr"].size - 8  # the last header's last word is outside
    put(mem, layout, "rte_mempool_memhdr", img.memhdr, len=cut - img.chunk)
    pool = img.pool()
    objects = pool.load_objects()
    assert objects == [obj_of(layout, h) for h in hdrs[:-1]]
    assert any("leaves the pool's memory at index %d" % (len(hdrs) - 1) in a for a in pool.anomalies)


def test_bulk_walk_across_two_chunks_listed_out_of_address_order(mem, layout):
    img, hdrs = gapped(mem, layout, run=3, gap=1, periods=100)
    split = img.chunk + 200 * img.total_elt_size  # slot 200's element starts the second chunk
    second = 0x7e0000200000
    mem.add(second, 4096)
    put(mem, layout, "rte_mempool_memhdr", img.memhdr, next=second, addr=img.chunk, len=split - img.chunk)
    put(mem, layout, "rte_mempool_memhdr", second, next=0, mp=img.addr, addr=split,
        len=img.chunk + img.chunk_len - split)
    img.header(nb_mem_chunks=2)
    high = [h for h in hdrs if h >= split]
    low = [h for h in hdrs if h < split]
    relink(img, high + low)
    img.ring_put([obj_of(layout, h) for h in (low[0], high[0], low[-1], high[-1])])
    pool = img.pool()
    objects = [obj_of(layout, h) for h in high + low]
    assert pool.load_objects() == objects
    assert pool.anomalies == []
    assert len(pool.chunk_ranges()) == 2
    free = {objects.index(obj_of(layout, h)) for h in (low[0], high[0], low[-1], high[-1])}
    assert {i for i, _, state, _ in pool.states() if state == FREE} == free
    assert pool.contains(obj_of(layout, low[0]) + 3) == (len(high), obj_of(layout, low[0]))


def test_classification_of_a_layout_with_gaps(mem, layout):
    img, hdrs = gapped(mem, layout, run=7, gap=2, periods=90, cache_size=8)
    objects = [obj_of(layout, h) for h in hdrs]
    ring = objects[5:400:3] + [objects[-1], objects[0]]
    img.ring_put(ring)
    img.cache_put(0, objects[401:405])
    img.cache_put(9, [objects[600]])
    pool = img.pool()
    c = pool.classify()
    assert c.names == ("ring", "lcore 0 cache", "lcore 9 cache")
    assert int(c.in_use.sum()) == len(objects) - len(ring) - 5 == pool.in_use
    assert pool.states() == reference_states(objects, [("ring", ring), ("lcore 0 cache", objects[401:405]),
                                                       ("lcore 9 cache", [objects[600]])])
    assert pool.free_places()[objects[600]] == "lcore 9 cache"
    assert pool.anomalies == []


def test_free_entries_in_the_gaps_of_a_layout_are_no_objects(mem, layout):
    img, hdrs = gapped(mem, layout, run=3, gap=1, periods=100, cache_size=4)
    objects = [obj_of(layout, h) for h in hdrs]
    gap_obj = img.objects[3]  # the slot after the first run: inside the chunk, on the stride, in no list
    strays = [gap_obj, objects[10] + 8, objects[0] - img.total_elt_size, 8, (1 << 64) - 8, 1 << 63, gap_obj]
    img.ring_put([objects[1]] + strays)
    pool = img.pool()
    free = [row for row in pool.states() if row[2] == FREE]
    assert free == [(1, objects[1], FREE, "ring")]
    assert any("6 free entries are no object of this pool (first 0x8)" in a for a in pool.anomalies), pool.anomalies
    assert any("0x%x is free twice (ring and ring)" % gap_obj in a for a in pool.anomalies), pool.anomalies


def test_free_twice_in_a_layout_keeps_the_first_place(mem, layout):
    img, hdrs = gapped(mem, layout, run=3, gap=1, periods=100, cache_size=4)
    objects = [obj_of(layout, h) for h in hdrs]
    img.ring_put([objects[7], objects[8], objects[7]])
    img.cache_put(1, [objects[8], objects[9]])
    img.cache_put(2, [objects[9]])
    pool = img.pool()
    assert {i: w for i, _, s, w in pool.states() if s == FREE} == {7: "ring", 8: "ring", 9: "lcore 1 cache"}
    notes = [a for a in pool.anomalies if "free twice" in a]
    assert notes == ["0x%x is free twice (ring and ring): the pool is corrupt" % objects[7],
                     "0x%x is free twice (ring and lcore 1 cache): the pool is corrupt" % objects[8],
                     "0x%x is free twice (lcore 1 cache and lcore 2 cache): the pool is corrupt" % objects[9]]


def test_many_short_layouts_are_classified_through_the_sorted_search(mem, layout):
    """Groups of 20 elements in address order, the groups shuffled: many bulk blocks, more than
    the arithmetic tries, so free entries are placed by a search in the sorted objects."""
    import random
    rng = random.Random(7)
    groups = [list(range(g * 20, g * 20 + 20)) for g in range(120)]
    rng.shuffle(groups)
    order = [i for g in groups for i in g]
    img, hdrs = gapped(mem, layout, run=1, gap=0, periods=2400, order=order, cache_size=4)
    objects = [obj_of(layout, h) for h in hdrs]
    ring = rng.sample(objects, 700) + [objects[0] + 16]
    img.ring_put(ring)
    img.cache_put(3, objects[-3:])
    pool = img.pool()
    assert pool.load_objects() == objects
    assert len(pool._blocks) > GUESSES
    assert pool.states() == reference_states(objects, [("ring", ring), ("lcore 3 cache", objects[-3:])])
    assert any("1 free entries are no object" in a for a in pool.anomalies), pool.anomalies


@pytest.mark.parametrize("seed", range(40))
def test_random_corruption_matches_a_plain_walk(mem, layout, seed):
    import random
    rng = random.Random(seed)
    run, gap = rng.choice([(1, 0), (2, 1), (4, 1), (16, 3)])
    img, hdrs = gapped(mem, layout, run=run, gap=gap, periods=max(10, 400 // run), cache_size=4)
    for _ in range(rng.randrange(4)):
        at = rng.randrange(len(hdrs))
        kind = rng.randrange(4)
        if kind == 0:
            put(mem, layout, "rte_mempool_objhdr", hdrs[at], mp=img.addr + 64)
        elif kind == 1:
            put(mem, layout, "rte_mempool_objhdr", hdrs[at], next=rng.choice(hdrs))
        elif kind == 2:
            put(mem, layout, "rte_mempool_objhdr", hdrs[at], next=rng.choice(img.hdrs) + rng.choice((0, 0, 8, 24)))
        else:
            put(mem, layout, "rte_mempool_objhdr", hdrs[at], next=0)
    every = [obj_of(layout, h) for h in hdrs]
    ring = rng.sample(every, len(every) // 3) + rng.sample(every, 2)
    cache = rng.sample(every, 3)
    img.ring_put(ring)
    img.cache_put(2, cache)
    pool = img.pool()
    want = reference_objects(mem, layout, img, hdrs[0], len(hdrs))
    assert pool.load_objects() == want
    assert pool.states() == reference_states(want, [("ring", ring), ("lcore 2 cache", cache)])
    strays = {obj for obj in ring + cache if obj not in set(want)}
    assert any(("%d free entries are no object" % len(strays)) in a for a in pool.anomalies) == bool(strays)


def test_pool_read_from_a_core_through_views(mem, layout, tmp_path):
    """The same pool read from an ELF core (CoreMemory.view: the chunk, the ring) as from the fake."""
    from gdb_mptrack.memory import CoreMemory
    from test_memory import PF_R, PF_W, build_elf

    img, hdrs = gapped(mem, layout, run=5, gap=1, periods=100, cache_size=4)
    objects = [obj_of(layout, h) for h in hdrs]
    img.ring_put(objects[10:300:7], tail=(1 << 32) - 9)
    img.cache_put(4, objects[-2:])
    segments = [(r.start, r.end - r.start, PF_R | PF_W, mem.read(r.start, r.end - r.start)) for r in mem.regions()]
    path = tmp_path / "core"
    path.write_bytes(build_elf(segments))
    core = CoreMemory(str(path))
    try:
        assert isinstance(core.view(img.chunk, 64), memoryview)
        assert core.view(img.chunk, 64) == core.read(img.chunk, 64)
        pool = Pool(core, layout, img.addr, list(img.ops_names))
        assert pool.load_objects() == objects
        assert pool.states() == img.pool().states()
        assert pool.object_bytes(objects[3], 4) == b"\xa5" * 4
    finally:
        core.close()  # views still held by the pool: the mapping goes with them, no error
    assert pool.states()[3][1] == objects[3]


@pytest.mark.parametrize("run,gap,first", [(300, 2, 0), (300, 2, 120), (5, 1, 2), (21, 3, 20), (40, 1, 39)])
def test_bulk_walk_learns_long_runs_and_lists_starting_inside_a_run(mem, layout, run, gap, first):
    """Hugepage-like runs (hundreds of objects), and a list whose first run is cut short: a few
    single steps at most, then one layout for the rest."""
    periods = max(6, 1200 // run)
    slots = periods * (run + gap)
    order = [i for i in range(first, slots) if i % (run + gap) < run]
    img, hdrs = gapped(mem, layout, run=run, gap=gap, periods=periods, order=order)
    pool = img.pool()
    assert pool.load_objects() == [obj_of(layout, h) for h in hdrs]
    assert pool.anomalies == []
    singles = sum(len(objs) for _, objs in pool._singles)
    assert singles <= 2 * run + 1, (singles, pool._blocks)
    assert len(pool._blocks) <= 3, pool._blocks


def test_bulk_walk_of_a_list_in_no_order(mem, layout):
    import random
    order = list(range(500))
    random.Random(3).shuffle(order)
    img, hdrs = gapped(mem, layout, run=1, gap=0, periods=500, order=order, cache_size=4)
    objects = [obj_of(layout, h) for h in hdrs]
    img.ring_put(objects[::7])
    pool = img.pool()
    assert pool.load_objects() == objects
    assert pool.states() == reference_states(objects, [("ring", objects[::7])])
    assert pool.anomalies == []
