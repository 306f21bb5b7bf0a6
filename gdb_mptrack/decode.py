"""Decoding DPDK structures from bytes at layout offsets.

`Record` reads integer, pointer and string fields of one structure out of a
bytes buffer, the way the kernel's gdb scripts decode a log record: one bulk
read, then `struct.unpack_from` at `Layout` offsets.  Nothing here touches a
target; callers hand in the bytes they read.
"""

import struct

_UNSIGNED = {1: "<B", 2: "<H", 4: "<I", 8: "<Q"}
_SIGNED = {1: "<b", 2: "<h", 4: "<i", 8: "<q"}


class Record:
    """The fields of structure `struct` (a layout.Struct) starting at data[base]."""

    __slots__ = ("struct", "data", "base")

    def __init__(self, struct_layout, data, base=0):
        self.struct = struct_layout
        self.data = data
        self.base = base

    def uint(self, field):
        f = self.struct[field]
        return struct.unpack_from(_UNSIGNED[f.size], self.data, self.base + f.offset)[0]

    def int(self, field):
        f = self.struct[field]
        return struct.unpack_from(_SIGNED[f.size], self.data, self.base + f.offset)[0]

    def ptr(self, field, at=0):
        """A pointer field, or the pointer `at` bytes into a field (list heads)."""
        return struct.unpack_from("<Q", self.data, self.base + self.struct.offset(field) + at)[0]

    def cstr(self, field):
        """A char array field up to its NUL; None unless it is NUL-terminated printable ASCII."""
        f = self.struct[field]
        raw = bytes(self.data[self.base + f.offset:self.base + f.offset + f.size])
        end = raw.find(b"\0")
        if end <= 0 or not all(0x20 <= c < 0x7f for c in raw[:end]):
            return None
        return raw[:end].decode("ascii")

    def bytes(self, field):
        f = self.struct[field]
        return bytes(self.data[self.base + f.offset:self.base + f.offset + f.size])


class PoolHeader:
    """The fields of a struct rte_mempool that gdb-mptrack uses."""

    def __init__(self, layout, addr, data):
        r = Record(layout["rte_mempool"], data)
        self.addr = addr
        self.name = r.cstr("name")
        self.name_padding_clean = self.name is not None and not any(
            r.bytes("name")[len(self.name):])
        self.pool_data = r.ptr("pool_data")
        self.flags = r.uint("flags")
        self.socket_id = r.int("socket_id")
        self.size = r.uint("size")
        self.cache_size = r.uint("cache_size")
        self.elt_size = r.uint("elt_size")
        self.header_size = r.uint("header_size")
        self.trailer_size = r.uint("trailer_size")
        self.private_data_size = r.uint("private_data_size")
        self.ops_index = r.int("ops_index")
        self.local_cache = r.ptr("local_cache")
        self.populated_size = r.uint("populated_size")
        self.elt_first = r.ptr("elt_list")
        self.elt_last = r.ptr("elt_list", 8)
        self.elt_list_addr = addr + r.struct.offset("elt_list")
        self.nb_mem_chunks = r.uint("nb_mem_chunks")
        self.mem_first = r.ptr("mem_list")
        self.struct_size = layout["rte_mempool"].size
        # The caches exist when the pool was created with a cache, even if a tracker has since
        # set cache_size to 0 to bypass them; local_cache tells which.
        self.private_addr = addr + self.struct_size + (
            layout["rte_mempool_cache"].size * layout.constant("RTE_MAX_LCORE") if self.local_cache else 0)

    @property
    def total_elt_size(self):
        return self.header_size + self.elt_size + self.trailer_size

    def implausible(self, num_ops, objhdr_size):
        """Why these bytes cannot be a live mempool, or None when they can."""
        if not self.name_padding_clean:
            return "name is not a clean C string"
        if not 0 < self.size < 1 << 31 or self.populated_size > self.size:
            return "size/populated_size out of range"
        if not 0 < self.elt_size < 1 << 30 or self.header_size < objhdr_size or self.header_size > 1 << 20:
            return "element or header size out of range"
        if not 0 <= self.ops_index < num_ops:
            return "ops_index out of range"
        if self.local_cache not in (0, self.addr + self.struct_size) or (self.cache_size and not self.local_cache):
            return "local_cache does not point after the struct"
        if self.populated_size and not (self.elt_first and self.mem_first and self.nb_mem_chunks):
            return "populated pool without element or memory list"
        return None


MBUF_FIELDS = ("refcnt", "port", "nb_segs", "pkt_len", "data_len", "ol_flags", "next")


def decode_mbuf(layout, data, base=0):
    """The user-facing fields of the struct rte_mbuf at data[base], plus buffer location."""
    r = Record(layout["rte_mbuf"], data, base)
    return {
        "refcnt": r.uint("refcnt"),
        "port": r.uint("port"),
        "nb_segs": r.uint("nb_segs"),
        "pkt_len": r.uint("pkt_len"),
        "data_len": r.uint("data_len"),
        "ol_flags": r.uint("ol_flags"),
        "next": r.ptr("next") or None,
        "buf_addr": r.ptr("buf_addr"),
        "data_off": r.uint("data_off"),
        "buf_len": r.uint("buf_len"),
        "pool": r.ptr("pool"),
    }
