"""Backtraces of tracked events: frame PCs only, symbolized lazily once per distinct PC (target layer).

Used by tracking.py's breakpoints (and for the agent's faults, whose frames
it describes).  Approach and assumptions:

- An event's backtrace is a tuple of frame PCs, captured at the entry of the
  tracked function (where the caller's frame still shows the call's line).
- Fast path (StackUnwinder): one read of the stack and frame sizes learned
  from gdb's unwinder once per PC (x86-64: at entry [rsp] is the caller's PC).
  A PC not known yet, or an implausible size, sends the event to gdb's
  unwinder (capture_pcs), which teaches the sizes.  A function whose frame
  size varies at one call site (alloca) could mislead it.
- Symbols (Symbolizer): each distinct PC is described once, the first time a
  backtrace meets it, from gdb's frames at that moment (the only time gdb can
  give the line of each function inlined at that PC, as `bt` does); PCs seen
  only later fall back to a static lookup.
"""

import struct

import gdb  # pylint: disable=import-error

from .memory import MemoryMissing


class Symbolizer:
    """Frame PC -> lines of text (one per frame, inlined ones first), computed once per distinct PC.

    A PC is described the first time a backtrace meets it, from gdb's frames
    at that moment, like gdb's own `bt`: each function inlined at that PC gets
    its own line with the line it was at, marked "(inlined)".  PCs met only
    later fall back to a static lookup (the block chain and the line table).
    """

    def __init__(self):
        self._cache = {}

    def learn(self, pc, frames):
        """Describe pc from its frames, innermost (inlined) first, the real function last."""
        if pc in self._cache:
            return
        lines = []
        for i, frame in enumerate(frames):
            name = frame.name() or self._static_name(pc)
            inlined = " (inlined)" if i < len(frames) - 1 else ""
            lines.append("0x%x %s%s%s" % (pc, name, inlined, self._where(frame.find_sal())))
        self._cache[pc] = lines

    def frames(self, pcs):
        """Text lines for a backtrace's PCs (inlined functions expand to several lines)."""
        out = []
        for pc in pcs:
            lines = self._cache.get(pc)
            if lines is None:
                lines = self._cache[pc] = [self._describe(pc)]
            out += lines
        return out

    @staticmethod
    def _where(sal):
        if sal.symtab is not None and sal.line:
            return " at %s:%d" % (sal.symtab.filename.rsplit("/", 1)[-1], sal.line)
        return ""

    @staticmethod
    def _static_name(pc):
        lookup = pc - 1 if pc else pc  # a return address belongs to the call before it
        info = gdb.execute("info symbol 0x%x" % lookup, to_string=True).strip()
        if info.startswith("No symbol"):
            lib = gdb.current_progspace().solib_name(pc)
            return "?? in %s" % lib.rsplit("/", 1)[-1] if lib else "??"
        return info.split(" in section ")[0].replace(" + ", "+")

    @classmethod
    def _describe(cls, pc):
        lookup = pc - 1 if pc else pc
        names = []
        try:
            block = gdb.block_for_pc(lookup)
        except RuntimeError:
            block = None
        while block is not None:
            if block.function is not None:
                names.append(block.function.print_name)
            block = block.superblock
        if names:
            name = names[-1] + ("" if len(names) == 1 else " (inlined %s)" % " <- ".join(names[:-1]))
        else:
            name = cls._static_name(pc)
        return "0x%x %s%s" % (pc, name, cls._where(gdb.find_pc_line(lookup)))


SYMBOLS = Symbolizer()


class StackUnwinder:
    """Backtraces from one stack read, using frame sizes learned from gdb once per PC.

    At a tracked function's entry, [rsp] is the caller's PC and the caller's
    stack pointer is rsp + 8.  For each PC we remember how far its frame
    reaches (its caller's stack pointer minus its own, which gdb's unwinder
    told us the first time that PC was seen, from the DWARF CFI), so the next
    return address is one load away.  A PC never seen sends the event to gdb's
    unwinder, which teaches us the sizes (and the symbolizer the names).
    Frames whose size varies at one PC (alloca) could mislead it; a PC it
    does not know, or an implausible size, falls back to gdb.
    """

    WINDOW = 512
    END = -1

    def __init__(self):
        self.sizes = {}

    def learn(self, frames):
        """frames: [(pc, rsp)] of consecutive real frames from gdb, and whether the last has no caller."""
        for (pc, rsp), (_, older_rsp) in zip(frames, frames[1:]):
            if 0 < older_rsp - rsp < 1 << 20:
                self.sizes[pc] = older_rsp - rsp

    def backtrace(self, read, sp, depth):
        """PCs from the caller of the function entered at sp, or None when a PC is not known yet."""
        sizes, unpack, end = self.sizes, struct.unpack_from, self.END
        stack = b""
        pcs = []
        rsp = sp + 8
        slot = 0
        for _ in range(depth):
            while slot + 8 > len(stack):  # read on as needed: the stack's top may be near
                try:
                    stack += read(sp + len(stack), self.WINDOW)
                except MemoryMissing:
                    return None
            pc = unpack("<Q", stack, slot)[0]
            pcs.append(pc)
            size = sizes.get(pc)
            if size is None:
                return None
            if size == end:
                break
            rsp += size
            slot = rsp - 8 - sp
        return tuple(pcs)


UNWINDER = StackUnwinder()

def caller_pcs(read, sp, depth):
    """The backtrace of a call stopped at the entry (stack pointer sp) of a tracked function,
    from its caller on, `depth` frames at most; ``read(addr, size)`` reads the stack."""
    if depth <= 0:
        return ()
    pcs = UNWINDER.backtrace(read, sp, depth)
    return pcs if pcs is not None else capture_pcs(depth, skip=1)


def capture_pcs(depth, skip=0):
    """PCs of the newest `depth` functions after skipping `skip` frames, through gdb's unwinder.

    Inlined frames share their caller's PC and are folded into it; a PC met
    for the first time is described from these live frames (Symbolizer.learn),
    and every frame's size is taught to the fast unwinder.
    """
    pcs = []
    group = []
    real = []  # (pc, rsp) of each real frame, for UNWINDER
    if depth <= 0:
        return ()
    try:
        frame = gdb.newest_frame()
        for _ in range(skip):
            frame = frame.older() if frame is not None else None
        while frame is not None:
            pc = frame.pc()
            if group and group[0].pc() != pc:
                SYMBOLS.learn(pcs[-1], group)
                real.append((pcs[-1], int(group[-1].read_register("rsp"))))
                group = []
                if len(pcs) == depth:
                    real.append((pc, int(frame.read_register("rsp"))))
                    break
            if not group:
                pcs.append(pc)
            group.append(frame)
            frame = frame.older()
        if group:
            SYMBOLS.learn(pcs[-1], group)
            real.append((pcs[-1], int(group[-1].read_register("rsp"))))
            if frame is None:
                UNWINDER.sizes[pcs[-1]] = StackUnwinder.END
    except gdb.error:
        pass
    UNWINDER.learn(real)
    return tuple(pcs)
