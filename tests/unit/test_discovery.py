"""discovery.find_pools: real-looking pools are found where they are, lookalikes are not."""

import random

import pytest

from gdb_mptrack import discovery
from gdb_mptrack.discovery import find_pools

from mptrack_fakes import OPS, PoolImage, put

BASE = 0x7f0000000000
NUM_OPS = len(OPS)


def found(mem, layout):
    return [(h.addr, h.name) for h in find_pools(mem, layout, NUM_OPS).pools]


def test_finds_a_pool_at_its_address(mem, layout):
    image = PoolImage(mem, layout, BASE + 0x1000, name="mbuf_pool_0", n=10, cache_size=8)
    result = find_pools(mem, layout, NUM_OPS)
    assert [(h.addr, h.name) for h in result.pools] == [(image.addr, "mbuf_pool_0")]
    header = result.pools[0]
    assert (header.size, header.cache_size, header.elt_size, header.header_size, header.populated_size) \
        == (10, 8, 64, 64, 10)
    assert header.local_cache == image.addr + layout["rte_mempool"].size
    assert header.elt_first == image.hdrs[0]
    assert header.ops_index == OPS.index("ring_mp_mc")
    assert header.socket_id == -1
    assert result.missing == []
    assert result.scanned_bytes == sum(r.end - r.start for r in mem.regions())


def test_finds_several_pools_in_address_order(mem, layout):
    second = PoolImage(mem, layout, BASE + 0x400000, name="second", cache_size=0, ops="stack")
    first = PoolImage(mem, layout, BASE, name="first", n=3)
    assert found(mem, layout) == [(first.addr, "first"), (second.addr, "second")]


def test_finds_an_empty_pool(mem, layout):
    image = PoolImage(mem, layout, BASE, name="empty", cache_size=0)
    elt_list = image.addr + layout["rte_mempool"].offset("elt_list")
    image.header(populated_size=0, elt_list=(0, elt_list), nb_mem_chunks=0, mem_list=(0, 0))
    assert found(mem, layout) == [(image.addr, "empty")]
    image.header(elt_list=(0, 0))  # an empty STAILQ's last pointer is never NULL
    assert found(mem, layout) == []


def test_finds_a_pool_whose_header_straddles_scan_blocks(mem, layout, monkeypatch):
    monkeypatch.setattr(discovery, "BLOCK", 128)
    image = PoolImage(mem, layout, BASE + 64, name="straddling", n=4, cache_size=0)
    assert found(mem, layout) == [(image.addr, "straddling")]


def test_nothing_in_zeroed_memory(mem, layout):
    mem.add(BASE, 1 << 20)
    result = find_pools(mem, layout, NUM_OPS)
    assert result.pools == []
    assert result.scanned_bytes >= 1 << 20


def test_nothing_in_random_noise(mem, layout):
    rng = random.Random(1234)
    mem.add(BASE, bytes(rng.getrandbits(8) for _ in range(1 << 18)))
    assert found(mem, layout) == []


def test_nothing_in_printable_noise(mem, layout):
    rng = random.Random(99)
    mem.add(BASE, bytes(rng.choice(b"abcdefgh_0123\0") for _ in range(1 << 18)))
    assert found(mem, layout) == []


def test_a_name_only_decoy_is_not_a_pool(mem, layout):
    mem.add(BASE, 1 << 16)
    for off in range(0, 1 << 16, 256):
        mem.write(BASE + off, b"mbuf_pool\0")
    assert found(mem, layout) == []


def test_a_copied_header_whose_objects_point_elsewhere_is_not_a_pool(mem, layout):
    image = PoolImage(mem, layout, BASE, name="real", cache_size=0)
    copy = BASE + 0x200000
    mem.add(copy, 4096)
    mem.write(copy, mem.read(image.addr, layout["rte_mempool"].size))
    # Plausible in every field, but its first object header names the real pool.
    assert found(mem, layout) == [(image.addr, "real")]


@pytest.mark.parametrize("corrupt, value", [
    ("name", b"bad\0junk"),          # garbage after the NUL
    ("ops_index", len(OPS)),         # no such driver
    ("local_cache", 0x1234000),      # not just past the struct
    ("header_size", 8),              # smaller than an objhdr
    ("populated_size", 11),          # more than size
    ("size", 0),
])
def test_implausible_headers_are_rejected(mem, layout, corrupt, value):
    image = PoolImage(mem, layout, BASE, name="victim", n=10)
    assert found(mem, layout) == [(image.addr, "victim")]
    image.header(**{corrupt: value})
    assert found(mem, layout) == []


def test_first_object_must_point_back(mem, layout):
    image = PoolImage(mem, layout, BASE, name="victim")
    image.objhdr(0, mp=image.addr + 64)
    assert found(mem, layout) == []


def test_read_only_and_left_out_regions(mem, layout):
    image = PoolImage(mem, layout, BASE, name="visible", cache_size=0)
    # A pool in a read-only mapping is not scanned (DPDK's pools are always writable).
    hidden = PoolImage(mem, layout, BASE + 0x10000000, name="hidden", cache_size=0)
    assert [h.addr for h in find_pools(mem, layout, NUM_OPS).pools] == [image.addr, hidden.addr]
    mem.protect(hidden.addr)
    # A writable mapping the core left out is reported, not read.
    mem.add(BASE + 0x20000000, 1 << 20, path="/dev/hugepages/rtemap_1", present=False)
    result = find_pools(mem, layout, NUM_OPS)
    assert [h.addr for h in result.pools] == [image.addr]
    assert [(r.start, r.path) for r in result.missing] == [(BASE + 0x20000000, "/dev/hugepages/rtemap_1")]
