"""Reading target memory: the interface the decoders use, and core files.

Decoders see a `Memory`: `read(addr, size)` returning bytes and `regions()`
listing the readable writable ranges where DPDK data can live; a memory may
also have `view(addr, size)`, the same bytes without a copy.  The gdb layer
provides one for a live process; `CoreMemory` here reads an ELF core file
directly, with pyelftools for the headers and mmap for the bytes (and views
of that mmap).

Reading the core ourselves, not through gdb, is deliberate: for a range the
core does not hold (a shared file mapping such as /var/run/dpdk/PREFIX/config,
or hugepages left out by coredump_filter), gdb silently reads whatever file
is on disk now, which may belong to a newer process.  `CoreMemory` raises
`MemoryMissing` instead, and says which filter bit would have kept it.
"""

import mmap
import os

PF_W = 2
#: Mapped files that hold DPDK memory (no-huge memfd, hugepage files, shared anonymous memory).
SHARED_MEMORY_FILES = ("/memfd:", "rtemap_", "hugepages", "/dev/zero", "/SYSV")
COREDUMP_FILTER_HINT = ("include it by setting /proc/PID/coredump_filter before the crash or gcore "
                        "(bit 0 anonymous private, bit 1 anonymous shared, bit 3 file-backed shared, "
                        "bit 5 private hugepages, bit 6 shared hugepages; e.g. echo 0x73)")


class MemoryMissing(Exception):
    """A range the target does not hold (unmapped, or left out of the core)."""

    def __init__(self, addr, size, why):
        super().__init__("memory 0x%x..0x%x %s" % (addr, addr + size, why))
        self.addr = addr
        self.size = size


class CoreError(Exception):
    """The core file itself is unusable (not ELF, not a core, truncated)."""


class Region:
    """A mapped range [start, end) and the file behind it ('' when anonymous)."""

    __slots__ = ("start", "end", "writable", "path", "present")

    def __init__(self, start, end, writable, path="", present=True):
        self.start = start
        self.end = end
        self.writable = writable
        self.path = path
        self.present = present

    def __repr__(self):
        return "Region(0x%x-0x%x%s %s%s)" % (self.start, self.end, " w" if self.writable else "",
                                            self.path, "" if self.present else " missing")

    def __contains__(self, addr):
        return self.start <= addr < self.end


def parse_proc_maps(text):
    """Regions of /proc/PID/maps text (every mapping, present=True)."""
    regions = []
    for line in text.splitlines():
        parts = line.split(None, 5)
        if len(parts) < 5 or "r" not in parts[1]:
            continue
        start, end = (int(x, 16) for x in parts[0].split("-"))
        regions.append(Region(start, end, "w" in parts[1], parts[5].strip() if len(parts) > 5 else ""))
    return regions


class CoreMemory:
    """Memory held in an ELF core file; anything else raises MemoryMissing."""

    def __init__(self, path):
        from elftools.common.exceptions import ELFError  # only cores need pyelftools
        from elftools.elf.elffile import ELFFile
        self.path = path
        try:
            self._file = open(path, "rb")
        except OSError as e:
            raise CoreError("cannot open core %s: %s" % (path, e.strerror)) from None
        try:
            elf = ELFFile(self._file)
            if elf["e_type"] != "ET_CORE":
                raise CoreError("%s is not a core file" % path)
            segments = [s for s in elf.iter_segments() if s["p_type"] == "PT_LOAD"]
            self._files = files = self._mapped_files(elf)
        except CoreError:
            self._file.close()
            raise
        except (ELFError, ValueError, KeyError, OSError) as e:
            self._file.close()
            raise CoreError("%s is not a readable ELF core (%s)" % (path, e)) from None
        size = os.fstat(self._file.fileno()).st_size
        self._map = mmap.mmap(self._file.fileno(), 0, access=mmap.ACCESS_READ) if size else b""
        self._segments = []
        self.truncated = []
        for seg in segments:
            start, memsz, filesz, offset = seg["p_vaddr"], seg["p_memsz"], seg["p_filesz"], seg["p_offset"]
            if filesz and offset + filesz > size:
                self.truncated.append((start, start + memsz))
                filesz = max(0, size - offset)
            self._segments.append((start, start + memsz, filesz, offset, bool(seg["p_flags"] & PF_W),
                                   files.get(start, (0, ""))[1]))
        self._segments.sort()
        self._starts = [s[0] for s in self._segments]

    @staticmethod
    def _mapped_files(elf):
        """Start address -> file path, from the NT_FILE note (file-backed mappings)."""
        files = {}
        for seg in elf.iter_segments():
            if seg["p_type"] != "PT_NOTE":
                continue
            for note in seg.iter_notes():
                if note["n_type"] == "NT_FILE":
                    desc = note["n_desc"]
                    for entry, name in zip(desc["Elf_Nt_File_Entry"], desc["filename"]):
                        name = name.decode(errors="replace") if isinstance(name, bytes) else name
                        files[entry["vm_start"]] = (entry["vm_end"], name)
        return files

    def _segment(self, addr):
        lo, hi = 0, len(self._starts)
        while lo < hi:
            mid = (lo + hi) // 2
            if self._starts[mid] <= addr:
                lo = mid + 1
            else:
                hi = mid
        if lo and addr < self._segments[lo - 1][1]:
            return self._segments[lo - 1]
        return None

    def _offset(self, addr, size):
        """File offset of [addr, addr + size) when one segment holds it all, None when the range runs
        into the next segment; MemoryMissing when the core does not hold its start."""
        seg = self._segment(addr)
        if seg is None:
            raise MemoryMissing(addr, size, "is not mapped in the core")
        start, end, filesz, offset, _, path = seg
        if addr + size > end:
            return None
        if addr + size > start + filesz:
            what = ("is in a segment truncated in the core file" if (start, end) in self.truncated else
                    "was left out of the core (%s)" % ("mapping of " + path if path else "anonymous mapping"))
            raise MemoryMissing(addr, size, what)
        return offset + addr - start

    def read(self, addr, size):
        where = self._offset(addr, size)
        if where is None:
            # A read may span adjacent segments (one mapping split by permissions).
            head = self._segment(addr)[1] - addr
            return self.read(addr, head) + self.read(addr + head, size - head)
        return self._map[where:where + size]

    def view(self, addr, size):
        """What read(addr, size) returns, without copying: a read-only memoryview of the core's
        mapping (a copy only when the range spans segments).  Views keep the mapping alive after
        close(), so a large chunk (a pool's objects) costs no memory of its own."""
        where = self._offset(addr, size)
        if where is None:
            return self.read(addr, size)
        return memoryview(self._map)[where:where + size]

    def regions(self):
        """Every mapping the core describes, present or left out, in address order.

        gdb's gcore leaves filtered mappings out altogether (no segment at all),
        but the NT_FILE note still lists the file-backed ones: those holding
        DPDK memory (memfd, hugepage files) come back as writable, not present.
        """
        regions = [Region(s, e, w, path, filesz == e - s) for s, e, filesz, _, w, path in self._segments]
        for start, (end, path) in self._files.items():
            if self._segment(start) is None and any(kind in path for kind in SHARED_MEMORY_FILES):
                regions.append(Region(start, end, True, path, present=False))
        return sorted(regions, key=lambda r: r.start)

    def close(self):
        if isinstance(self._map, mmap.mmap):
            try:
                self._map.close()
            except BufferError:
                pass  # views from view() still use it: unmapped when the last one goes
        self._file.close()
