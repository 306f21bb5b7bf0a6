"""Byte layouts of the DPDK structures gdb-mptrack decodes.

A layout is plain data: for each structure its size and, for each field we
read, its byte offset and size; plus the build constants that shape memory
(RTE_MAX_LCORE sizes the per-lcore cache array) and the DPDK version the
layout describes.  Anonymous unions and structs are flattened, so
`rte_mempool.pool_data` and `rte_mbuf.pkt_len` are found by their C names.

Layouts come from DWARF: the target's own when it carries DPDK's types, else
a small probe object compiled with -g against DPDK's installed headers
(layout_gen.py), else a table shipped in layouts/ for the release.  Every
source is checked by `Layout.check()` against REQUIRED_FIELDS, so a layout
with a missing field is refused instead of silently decoding garbage.
"""

import json

#: The fields each decoder reads.  A layout lacking one is unusable.
REQUIRED_FIELDS = {
    "rte_mempool": (
        "name", "pool_data", "flags", "socket_id", "size", "cache_size",
        "elt_size", "header_size", "trailer_size", "private_data_size",
        "ops_index", "local_cache", "populated_size", "elt_list",
        "nb_mem_chunks", "mem_list",
    ),
    "rte_mempool_cache": ("size", "flushthresh", "len", "objs"),
    "rte_mempool_objhdr": ("next", "mp"),
    "rte_mempool_memhdr": ("next", "mp", "addr", "len"),
    "rte_mempool_ops": ("name", "enqueue", "dequeue", "get_count"),
    "rte_mempool_ops_table": ("num_ops", "ops"),
    "rte_ring": ("name", "flags", "size", "mask", "capacity", "prod", "cons"),
    "rte_ring_headtail": ("head", "tail", "sync_type"),
    "rte_ring_rts_headtail": ("tail", "head"),
    "rte_stack": ("name", "capacity", "flags", "stack_std", "stack_lf"),
    "rte_stack_std": ("lock", "len", "objs"),
    "rte_stack_lf": ("used",),
    "rte_stack_lf_list": ("head", "len"),
    "rte_stack_lf_head": ("top",),
    "rte_stack_lf_elem": ("data", "next"),
    "rte_mbuf": (
        "buf_addr", "data_off", "refcnt", "nb_segs", "port", "ol_flags",
        "pkt_len", "data_len", "buf_len", "pool", "next",
    ),
    "rte_pktmbuf_pool_private": ("mbuf_data_room_size", "mbuf_priv_size"),
}

#: Build constants every layout must carry.
REQUIRED_CONSTANTS = ("RTE_MAX_LCORE", "RTE_STACK_F_LF")

#: The version reported by `RTE_VER_*` in the headers, as "YY.MM.m".
VERSION_CONSTANTS = ("RTE_VER_YEAR", "RTE_VER_MONTH", "RTE_VER_MINOR")


class LayoutError(Exception):
    """A layout is incomplete, inconsistent, or unknown for a version."""


class Field:
    """One field: byte offset inside its structure and byte size."""

    __slots__ = ("offset", "size")

    def __init__(self, offset, size):
        self.offset = offset
        self.size = size

    def __repr__(self):
        return "Field(%d, %d)" % (self.offset, self.size)


class Struct:
    """A structure's size and its (flattened) fields by name."""

    def __init__(self, name, size, fields):
        self.name = name
        self.size = size
        self.fields = fields

    def __getitem__(self, field):
        try:
            return self.fields[field]
        except KeyError:
            raise LayoutError("layout of struct %s has no field %r" % (self.name, field)) from None

    def offset(self, field):
        return self[field].offset


class Layout:
    """Structures and constants of one DPDK build, with where they came from."""

    def __init__(self, structs, constants, version, source):
        self.structs = structs
        self.constants = constants
        self.version = version
        self.source = source

    def __getitem__(self, struct):
        try:
            return self.structs[struct]
        except KeyError:
            raise LayoutError("layout has no struct %s" % struct) from None

    def constant(self, name):
        try:
            return self.constants[name]
        except KeyError:
            raise LayoutError("layout has no constant %s" % name) from None

    def check(self):
        """Raise LayoutError unless every decoder's fields are present and sane."""
        missing = []
        for struct, fields in REQUIRED_FIELDS.items():
            if struct not in self.structs:
                missing.append("struct " + struct)
                continue
            have = self.structs[struct]
            for field in fields:
                if field not in have.fields:
                    missing.append("%s.%s" % (struct, field))
                elif have.fields[field].offset + have.fields[field].size > have.size:
                    raise LayoutError("layout (%s): %s.%s lies outside the struct"
                                      % (self.source, struct, field))
        missing += [c for c in REQUIRED_CONSTANTS if c not in self.constants]
        if missing:
            raise LayoutError("layout (%s) lacks %s" % (self.source, ", ".join(missing)))
        return self

    def differences(self, other):
        """Fields whose offset or size differ between two layouts (for cross-checks)."""
        diffs = []
        for struct, fields in REQUIRED_FIELDS.items():
            mine, theirs = self.structs.get(struct), other.structs.get(struct)
            if mine is None or theirs is None:
                continue
            if mine.size != theirs.size:
                diffs.append("sizeof(struct %s): %d vs %d" % (struct, mine.size, theirs.size))
            for field in fields:
                a, b = mine.fields.get(field), theirs.fields.get(field)
                if a and b and (a.offset, a.size) != (b.offset, b.size):
                    diffs.append("%s.%s at %d+%d vs %d+%d"
                                 % (struct, field, a.offset, a.size, b.offset, b.size))
        return diffs

    def to_json(self):
        return json.dumps({
            "version": self.version,
            "source": self.source,
            "constants": self.constants,
            "structs": {
                name: {"size": s.size,
                       "fields": {f: [v.offset, v.size] for f, v in sorted(s.fields.items())}}
                for name, s in sorted(self.structs.items())
            },
        }, indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text, source=None):
        data = json.loads(text)
        structs = {
            name: Struct(name, s["size"], {f: Field(*v) for f, v in s["fields"].items()})
            for name, s in data["structs"].items()
        }
        return cls(structs, data["constants"], data["version"], source or data["source"]).check()


def version_from_constants(constants):
    """'22.11.11' from RTE_VER_YEAR/MONTH/MINOR, or None when they are absent."""
    if not all(c in constants for c in VERSION_CONSTANTS):
        return None
    return format_version(*(constants[c] for c in VERSION_CONSTANTS))


def format_version(year, month, minor):
    return "%d.%02d.%d" % (year, month, minor)


def flatten_fields(members, base=0, into=None):
    """Flatten (name, offset, size, anonymous_members) tuples into {name: Field}.

    `anonymous_members` is None for a named member, else a callable giving the
    members of that anonymous union or struct, whose fields are lifted into
    the parent at their absolute offset (as C lets you name them).
    """
    fields = {} if into is None else into
    for name, offset, size, anonymous_members in members:
        if name is None and anonymous_members is not None:
            flatten_fields(anonymous_members(), base + offset, fields)
        elif name is not None:
            fields.setdefault(name, Field(base + offset, size))
    return fields
