"""decode.py: fields out of bytes at layout offsets, and why a header is no pool."""

import struct

import pytest

from gdb_mptrack.decode import PoolHeader, Record
from gdb_mptrack.layout import Field, LayoutError, Struct

from mptrack_fakes import OPS, PoolImage

BASE = 0x7f0000000000
TOY = Struct("toy", 32, {"u8": Field(0, 1), "s16": Field(2, 2), "u32": Field(4, 4), "p": Field(8, 8),
                         "list": Field(8, 16), "name": Field(24, 8)})


def toy_bytes(name=b"abc\0\0\0\0\0"):
    return struct.pack("<BxhIQQ", 0xfe, -2, 0xdeadbeef, 0x7f0012345678, 0x7f0087654321) + name


def test_record_integers_and_pointers():
    r = Record(TOY, toy_bytes())
    assert r.uint("u8") == 0xfe
    assert r.int("u8") == -2
    assert r.int("s16") == -2 and r.uint("s16") == 0xfffe
    assert r.uint("u32") == 0xdeadbeef
    assert r.ptr("p") == 0x7f0012345678
    assert r.ptr("list", 8) == 0x7f0087654321
    assert r.bytes("name") == b"abc\0\0\0\0\0"


def test_record_at_a_base_offset():
    r = Record(TOY, b"\xff" * 40 + toy_bytes(), base=40)
    assert (r.uint("u32"), r.ptr("p"), r.cstr("name")) == (0xdeadbeef, 0x7f0012345678, "abc")


@pytest.mark.parametrize("raw, expected", [
    (b"abc\0\0\0\0\0", "abc"),
    (b"abc\0zz\0\0", "abc"),           # cstr stops at the NUL; PoolHeader checks the padding
    (b"abcdefgh", None),               # no NUL in the field
    (b"\0" * 8, None),                 # empty
    (b"ab\x01c\0\0\0\0", None),        # not printable
    (b"caf\xc3\xa9\0\0\0", None),      # not ASCII
])
def test_record_cstr(raw, expected):
    assert Record(TOY, toy_bytes(raw)).cstr("name") == expected


def test_record_unknown_field_is_a_layout_error():
    with pytest.raises(LayoutError, match="toy.*'nope'"):
        Record(TOY, toy_bytes()).uint("nope")


def header_of(mem, layout, image):
    return PoolHeader(layout, image.addr, mem.read(image.addr, layout["rte_mempool"].size))


def test_pool_header_fields(mem, layout):
    image = PoolImage(mem, layout, BASE, name="hdr_test", n=7, elt_size=200, trailer_size=8, cache_size=2)
    h = header_of(mem, layout, image)
    assert (h.addr, h.name, h.size, h.elt_size, h.header_size, h.trailer_size) == (image.addr, "hdr_test", 7, 200, 64, 8)
    assert h.total_elt_size == 272
    assert (h.pool_data, h.local_cache, h.populated_size) == (image.store, image.cache_addr, 7)
    assert (h.elt_first, h.elt_last) == (image.hdrs[0], image.hdrs[-1])
    assert h.elt_list_addr == image.addr + layout["rte_mempool"].offset("elt_list")
    assert (h.nb_mem_chunks, h.mem_first) == (1, image.memhdr)
    assert h.private_addr == image.private_addr == image.addr + 192 + 128 * layout["rte_mempool_cache"].size
    assert h.implausible(len(OPS), layout["rte_mempool_objhdr"].size) is None


@pytest.mark.parametrize("fields, reason", [
    ({"name": b"x\0y"}, "name is not a clean C string"),
    ({"name": b"\0"}, "name is not a clean C string"),
    ({"size": 1 << 31}, "size/populated_size out of range"),
    ({"populated_size": 9}, "size/populated_size out of range"),
    ({"elt_size": 0}, "element or header size out of range"),
    ({"header_size": (1 << 20) + 1}, "element or header size out of range"),
    ({"ops_index": -1}, "ops_index out of range"),
    ({"local_cache": 0}, "local_cache does not point after the struct"),
    ({"nb_mem_chunks": 0}, "populated pool without element or memory list"),
])
def test_pool_header_implausible_reasons(mem, layout, fields, reason):
    image = PoolImage(mem, layout, BASE, n=8)
    image.header(**fields)
    assert header_of(mem, layout, image).implausible(len(OPS), layout["rte_mempool_objhdr"].size) == reason


def test_pool_header_without_cache(mem, layout):
    image = PoolImage(mem, layout, BASE, n=8, cache_size=0)
    h = header_of(mem, layout, image)
    assert h.local_cache == 0 and h.private_addr == image.addr + 192
    assert h.implausible(len(OPS), 24) is None


def test_pool_header_with_caches_bypassed(mem, layout):
    """A tracker may set cache_size to 0 on a pool created with caches: they and local_cache stay."""
    image = PoolImage(mem, layout, BASE, n=8, cache_size=4)
    image.header(cache_size=0)
    h = header_of(mem, layout, image)
    assert h.implausible(len(OPS), 24) is None
    assert h.private_addr == image.private_addr
    image.header(local_cache=image.addr + 256)
    assert header_of(mem, layout, image).implausible(len(OPS), 24) == "local_cache does not point after the struct"
