"""Finding every mempool in a process image without DPDK's own lists.

DPDK lists its pools in a tailq whose head lives in the shared EAL config
(/var/run/dpdk/PREFIX/config).  A core does not hold that file mapping, and
the file on disk may since belong to another process, so we do not use it.
Instead we scan the writable memory the image holds for struct rte_mempool:
each is cache-line aligned, starts with a NUL-padded printable name, has
sizes in range, an ops_index below the number of registered drivers, a
`local_cache` pointing just past itself when it has a cache (NULL when not),
and, decisively, its first element's header (rte_mempool_objhdr) points back
at it.  The scan reads memory in large blocks and looks only at 64-byte
aligned slots whose first byte is printable, so 256 MB take about a second.
"""

import re
import struct

from .decode import PoolHeader
from .memory import MemoryMissing

ALIGN = 64
BLOCK = 1 << 24
_PRINTABLE = re.compile(rb"[\x21-\x7e]")


class ScanResult:
    """Pools found, plus the writable ranges the image does not hold."""

    def __init__(self):
        self.pools = []
        self.missing = []
        self.scanned_bytes = 0


def find_pools(memory, layout, num_ops):
    """Scan every present writable region of `memory`; returns a ScanResult."""
    result = ScanResult()
    for region in memory.regions():
        if not region.writable:
            continue
        if not region.present:
            result.missing.append(region)
            continue
        start = (region.start + ALIGN - 1) & ~(ALIGN - 1)
        for base in range(start, region.end, BLOCK):
            size = min(BLOCK, region.end - base)
            try:
                data = memory.read(base, size)
            except MemoryMissing:
                result.missing.append(region)
                break
            result.scanned_bytes += size
            result.pools += _pools_in_block(memory, layout, num_ops, base, data)
    result.pools.sort(key=lambda h: h.addr)
    return result


def _pools_in_block(memory, layout, num_ops, base, data):
    mp = layout["rte_mempool"]
    name_size = mp["name"].size
    local_cache_off = mp.offset("local_cache")
    objhdr = layout["rte_mempool_objhdr"]
    unpack = struct.unpack_from
    found = []
    for match in _PRINTABLE.finditer(data[::ALIGN]):
        off = match.start() * ALIGN
        if off + mp.size > len(data):
            header_bytes = None
        else:
            # Cheap filters first: a NUL inside the name, and local_cache NULL or just past the struct.
            if data.find(b"\0", off, off + name_size) < 0:
                continue
            local_cache = unpack("<Q", data, off + local_cache_off)[0]
            if local_cache and local_cache != base + off + mp.size:
                continue
            header_bytes = data[off:off + mp.size]
        addr = base + off
        try:
            header = PoolHeader(layout, addr, header_bytes or memory.read(addr, mp.size))
        except MemoryMissing:
            continue
        if header.implausible(num_ops, objhdr.size) is None and _first_object_points_back(memory, objhdr, header):
            found.append(header)
    return found


def _first_object_points_back(memory, objhdr, header):
    if not header.populated_size:
        # An empty STAILQ's last pointer points at its own first pointer.
        return header.elt_first == 0 and header.elt_last == header.elt_list_addr
    try:
        data = memory.read(header.elt_first, objhdr.size)
    except MemoryMissing:
        return False
    return struct.unpack_from("<Q", data, objhdr.offset("mp"))[0] == header.addr
