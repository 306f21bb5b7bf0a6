"""memory.py: /proc/PID/maps parsing and CoreMemory on small ELF cores built here."""

import struct

import pytest

from gdb_mptrack.memory import CoreError, CoreMemory, MemoryMissing, parse_proc_maps

# --- parse_proc_maps -----------------------------------------------------------

MAPS = """\
555555554000-555555556000 r--p 00000000 08:01 1234                       /usr/bin/app
555555556000-555555558000 r-xp 00002000 08:01 1234                       /usr/bin/app
555555558000-55555555a000 rw-p 00004000 08:01 1234                       /usr/bin/app
7ffff0000000-7ffff0021000 rw-p 00000000 00:00 0 
7ffff0021000-7ffff4000000 ---p 00000000 00:00 0 
100000000-140000000 rw-s 00000000 00:2f 77                         /dev/hugepages/rtemap_0
7ffff7fc1000-7ffff7fc5000 rw-s 00000000 00:19 88                         /run/dpdk/my prefix/config (deleted)
7ffffffde000-7ffffffff000 rw-p 00000000 00:00 0                          [stack]
"""


def test_parse_proc_maps():
    regions = parse_proc_maps(MAPS)
    got = [(r.start, r.end, r.writable, r.path, r.present) for r in regions]
    assert got == [
        (0x555555554000, 0x555555556000, False, "/usr/bin/app", True),
        (0x555555556000, 0x555555558000, False, "/usr/bin/app", True),
        (0x555555558000, 0x55555555a000, True, "/usr/bin/app", True),
        (0x7ffff0000000, 0x7ffff0021000, True, "", True),
        # the ---p guard mapping is not readable: left out
        (0x100000000, 0x140000000, True, "/dev/hugepages/rtemap_0", True),
        (0x7ffff7fc1000, 0x7ffff7fc5000, True, "/run/dpdk/my prefix/config (deleted)", True),
        (0x7ffffffde000, 0x7ffffffff000, True, "[stack]", True),
    ]
    assert 0x100000000 in regions[4] and 0x140000000 not in regions[4]


def test_parse_proc_maps_ignores_junk_lines():
    assert parse_proc_maps("\n  \ngarbage\n") == []


# --- a minimal ELF64 core --------------------------------------------------------

PT_LOAD, PT_NOTE = 1, 4
PF_R, PF_W, PF_X = 4, 2, 1
NT_FILE = 0x46494C45
ET_CORE, ET_EXEC = 4, 2
EHDR, PHDR = 64, 56


def _note(name, ntype, desc):
    name = name.encode() + b"\0"
    pad = lambda b: b + b"\0" * (-len(b) % 4)  # noqa: E731
    return struct.pack("<III", len(name), len(desc), ntype) + pad(name) + pad(desc)


def nt_file(mappings, page_size=4096):
    """NT_FILE descriptor: [(start, end, file page offset, path)]."""
    desc = struct.pack("<QQ", len(mappings), page_size)
    desc += b"".join(struct.pack("<QQQ", s, e, o) for s, e, o, _ in mappings)
    desc += b"".join(p.encode() + b"\0" for *_, p in mappings)
    return _note("CORE", NT_FILE, desc)


def build_elf(segments, notes=b"", e_type=ET_CORE):
    """ELF64 little-endian x86-64 bytes: one PT_NOTE (when notes) then PT_LOADs.

    segments: [(vaddr, memsz, flags, data)]; data may be shorter than memsz
    (b"" leaves the segment out of the file, p_filesz 0, as the kernel does
    for mappings coredump_filter excludes).
    """
    phnum = len(segments) + (1 if notes else 0)
    offset = EHDR + PHDR * phnum
    phdrs, body = [], b""
    if notes:
        phdrs.append(struct.pack("<IIQQQQQQ", PT_NOTE, 0, offset, 0, 0, len(notes), 0, 4))
        body += notes
    for vaddr, memsz, flags, data in segments:
        here = offset + len(body)
        pad = -here % 4096 if data else 0
        body += b"\0" * pad
        here += pad
        phdrs.append(struct.pack("<IIQQQQQQ", PT_LOAD, flags, here if data else 0, vaddr, 0, len(data), memsz, 4096))
        body += data
    ident = b"\x7fELF" + bytes([2, 1, 1, 0]) + b"\0" * 8
    ehdr = ident + struct.pack("<HHIQQQIHHHHHH", e_type, 62, 1, 0, EHDR, 0, 0, EHDR, PHDR, phnum, 64, 0, 0)
    assert len(ehdr) == EHDR
    return ehdr + b"".join(phdrs) + body


def pattern(seed, size):
    return bytes((seed * 31 + i * 7 + (i >> 8)) & 0xFF for i in range(size))


A, B, LEFT_OUT, GAP_AFTER, LAST = 0x10000, 0x11000, 0x20000, 0x12000, 0x40000
HUGEPAGE = "/dev/hugepages/rtemap_0"


@pytest.fixture
def core_bytes():
    segments = [
        (A, 0x1000, PF_R | PF_W, pattern(1, 0x1000)),
        (B, 0x1000, PF_R, pattern(2, 0x1000)),          # adjacent to A, other permissions
        (LEFT_OUT, 0x2000, PF_R | PF_W, b""),          # a shared hugepage mapping the core left out
        (LAST, 0x2000, PF_R | PF_W, pattern(3, 0x2000)),
    ]
    notes = nt_file([(LEFT_OUT, LEFT_OUT + 0x2000, 0, HUGEPAGE), (B, B + 0x1000, 2, "/usr/lib/librte_eal.so.23")])
    return build_elf(segments, notes)


@pytest.fixture
def core(tmp_path, core_bytes):
    path = tmp_path / "core"
    path.write_bytes(core_bytes)
    memory = CoreMemory(str(path))
    yield memory
    memory.close()


def test_core_read_inside_a_segment(core):
    assert core.read(A, 16) == pattern(1, 0x1000)[:16]
    assert core.read(A + 0x123, 100) == pattern(1, 0x1000)[0x123:0x123 + 100]
    assert core.read(LAST + 0x1ff0, 16) == pattern(3, 0x2000)[0x1ff0:]
    assert core.truncated == []


def test_core_read_across_adjacent_segments(core):
    got = core.read(A + 0xff8, 16)
    assert got == pattern(1, 0x1000)[-8:] + pattern(2, 0x1000)[:8]
    assert core.read(A, 0x2000) == pattern(1, 0x1000) + pattern(2, 0x1000)


def test_core_read_outside_every_segment(core):
    for addr in (0x1000, A - 8, GAP_AFTER, GAP_AFTER + 0x100, 0x7fffffff0000):
        with pytest.raises(MemoryMissing, match="not mapped") as info:
            core.read(addr, 8)
        assert info.value.addr == addr and info.value.size == 8
    # Starts in B, runs into the hole after it.
    with pytest.raises(MemoryMissing):
        core.read(B + 0xff8, 16)


def test_core_read_of_a_left_out_file_mapping_names_the_file(core):
    with pytest.raises(MemoryMissing) as info:
        core.read(LEFT_OUT + 0x40, 64)
    message = str(info.value)
    assert HUGEPAGE in message
    assert "left out" in message
    assert "0x%x" % (LEFT_OUT + 0x40) in message


def test_core_regions(core):
    got = [(r.start, r.end, r.writable, r.path, r.present) for r in core.regions()]
    assert got == [
        (A, A + 0x1000, True, "", True),
        (B, B + 0x1000, False, "/usr/lib/librte_eal.so.23", True),
        (LEFT_OUT, LEFT_OUT + 0x2000, True, HUGEPAGE, False),
        (LAST, LAST + 0x2000, True, "", True),
    ]


def test_truncated_core(tmp_path, core_bytes):
    path = tmp_path / "core"
    path.write_bytes(core_bytes[:-0x1800])  # LAST keeps its first 0x800 bytes
    memory = CoreMemory(str(path))
    try:
        assert memory.truncated == [(LAST, LAST + 0x2000)]
        assert memory.read(LAST, 0x800) == pattern(3, 0x2000)[:0x800]
        assert memory.read(A + 8, 8) == pattern(1, 0x1000)[8:16]
        with pytest.raises(MemoryMissing, match="truncated"):
            memory.read(LAST + 0x7f8, 16)
        with pytest.raises(MemoryMissing, match="truncated"):
            memory.read(LAST + 0x1000, 8)
        present = {r.start: r.present for r in memory.regions()}
        assert present[LAST] is False and present[A] is True
    finally:
        memory.close()


def test_non_core_elf_is_refused(tmp_path):
    path = tmp_path / "a.out"
    path.write_bytes(build_elf([(A, 0x1000, PF_R | PF_X, pattern(1, 0x1000))], e_type=ET_EXEC))
    with pytest.raises(CoreError, match="not a core"):
        CoreMemory(str(path))


@pytest.mark.parametrize("content", [b"", b"not an ELF file at all, just text\n" * 10, b"\x7fELF\x02"])
def test_non_elf_is_refused(tmp_path, content):
    path = tmp_path / "notes.txt"
    path.write_bytes(content)
    with pytest.raises(CoreError) as info:
        CoreMemory(str(path))
    assert str(path) in str(info.value)


def test_missing_core_file_is_a_core_error(tmp_path):
    with pytest.raises(CoreError, match="cannot open"):
        CoreMemory(str(tmp_path / "nonexistent"))
