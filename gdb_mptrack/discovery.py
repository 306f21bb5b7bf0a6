"""Finding every mempool in a process image without DPDK's own lists.

DPDK lists its pools in a tailq whose head lives in the shared EAL config
(/var/run/dpdk/PREFIX/config).  A core does not hold that file mapping, and
the file on disk may since belong to another process, so we do not use it.
Instead we scan the writable memory the image holds for struct rte_mempool:
each is cache-line aligned, starts with a NUL-padded printable name, has
sizes in range, an ops_index below the number of registered drivers, a
`local_cache` pointing just past itself when it has a cache (NULL when not),
and, decisively, its first element's header (rte_mempool_objhdr) points back
at it.  The scan takes memory in large blocks (without copying from a core:
CoreMemory.view), and numpy filters every 64-byte aligned slot at once: a
printable first byte, a NUL within the name, local_cache, size,
populated_size and ops_index in range (the cheap part of
PoolHeader.implausible).  Only the few slots left are decoded one by one, so
the 800 MB of a core holding a 1,048,576-object pool take about 0.1 s.
"""

import struct

import numpy as np

from .decode import PoolHeader
from .memory import MemoryMissing

ALIGN = 64
BLOCK = 1 << 24


class ScanResult:
    """Pools found, plus the writable ranges the image does not hold."""

    def __init__(self):
        self.pools = []
        self.missing = []
        self.scanned_bytes = 0


def find_pools(memory, layout, num_ops):
    """Scan every present writable region of `memory`; returns a ScanResult."""
    result = ScanResult()
    take = getattr(memory, "view", memory.read)
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
                data = take(base, size)
            except MemoryMissing:
                result.missing.append(region)
                break
            result.scanned_bytes += size
            result.pools += _pools_in_block(memory, layout, num_ops, base, data)
    result.pools.sort(key=lambda h: h.addr)
    return result


def _gather(raw, offsets, size):
    """The little-endian unsigned integers of `size` bytes at each of `offsets` in `raw`."""
    cells = raw[offsets[:, None] + np.arange(size)]
    return cells.view("<u%d" % size).ravel()


def _plausible(raw, offsets, base, mp, num_ops):
    """Which slots at `offsets` (each with a whole struct rte_mempool in `raw`) pass the cheap checks."""
    name = mp["name"]
    names = raw[offsets[:, None] + name.offset + np.arange(name.size)]
    keep = (names == 0).any(axis=1)
    local_cache = _gather(raw, offsets + mp.offset("local_cache"), 8)
    keep &= (local_cache == 0) | (local_cache == np.uint64(base) + offsets.astype(np.uint64) + np.uint64(mp.size))
    size = _gather(raw, offsets + mp.offset("size"), mp["size"].size)
    populated = _gather(raw, offsets + mp.offset("populated_size"), mp["populated_size"].size)
    keep &= (size > 0) & (size < 1 << 31) & (populated <= size)
    # ops_index is signed: a negative one reads as a huge unsigned value
    keep &= _gather(raw, offsets + mp.offset("ops_index"), mp["ops_index"].size) < num_ops
    return offsets[keep]


def _pools_in_block(memory, layout, num_ops, base, data):
    mp = layout["rte_mempool"]
    objhdr = layout["rte_mempool_objhdr"]
    raw = np.frombuffer(data, dtype=np.uint8)
    firsts = raw[::ALIGN]
    slots = np.flatnonzero((firsts >= 0x21) & (firsts <= 0x7e)) * ALIGN
    whole = slots[slots + mp.size <= len(raw)]
    found = []
    for off in _plausible(raw, whole, base, mp, num_ops).tolist():
        _keep_if_pool(memory, layout, num_ops, objhdr, found, base + off, bytes(data[off:off + mp.size]))
    # a slot whose struct runs past the block: read it on its own
    for off in slots[slots + mp.size > len(raw)].tolist():
        try:
            header_bytes = memory.read(base + off, mp.size)
        except MemoryMissing:
            continue
        _keep_if_pool(memory, layout, num_ops, objhdr, found, base + off, header_bytes)
    return found


def _keep_if_pool(memory, layout, num_ops, objhdr, found, addr, header_bytes):
    header = PoolHeader(layout, addr, header_bytes)
    if header.implausible(num_ops, objhdr.size) is None and _first_object_points_back(memory, objhdr, header):
        found.append(header)


def _first_object_points_back(memory, objhdr, header):
    if not header.populated_size:
        # An empty STAILQ's last pointer points at its own first pointer.
        return header.elt_first == 0 and header.elt_last == header.elt_list_addr
    try:
        data = memory.read(header.elt_first, objhdr.size)
    except MemoryMissing:
        return False
    return struct.unpack_from("<Q", data, objhdr.offset("mp"))[0] == header.addr
