"""Registers of the thread stopped at a tracking breakpoint, cheaply (target layer).

Each tracked event needs four or five registers.  Through gdb, each costs a
`gdb.parse_and_eval("$reg")` (15-25 us here), and building a gdb.Frame to
read them costs more (it runs every unwinder).  For a live process debugged
natively on x86-64 Linux, gdb's own thread is the ptrace tracer, so one
PTRACE_GETREGS from Python (ctypes) returns all of them for a couple of
microseconds.  That path is used only after it has agreed with gdb on a
first snapshot; otherwise (a remote target, another architecture, any
disagreement) every register comes from gdb.  General-purpose registers
other than the PC are what gdb's regcache holds too (gdb adjusts only the PC
after a breakpoint trap), and only those are read.
"""

import ctypes

import gdb  # pylint: disable=import-error

PTRACE_GETREGS = 12
MASK = 0xFFFFFFFFFFFFFFFF
_NAMES = ("r15", "r14", "r13", "r12", "rbp", "rbx", "r11", "r10", "r9", "r8", "rax", "rcx", "rdx",
          "rsi", "rdi", "orig_rax", "rip", "cs", "eflags", "rsp", "ss", "fs_base", "gs_base", "ds", "es",
          "fs", "gs")
CHECKED = ("rdi", "rsi", "rdx", "rsp", "rax")


class _UserRegs(ctypes.Structure):
    """struct user_regs_struct of <sys/user.h>, x86-64."""

    _fields_ = [(name, ctypes.c_ulonglong) for name in _NAMES]


class Registers:
    """Registers of the selected thread, one snapshot per breakpoint stop."""

    def __init__(self):
        self._snapshot = None
        self._thread = None
        self._ptrace = None
        self._trusted = None  # None: not checked yet; then True or False

    def new_stop(self):
        self._snapshot = None
        self._thread = None

    def thread(self):
        """The stopped thread's id (LWP), once per stop."""
        if self._thread is None:
            ptid = gdb.selected_thread().ptid
            self._thread = ptid[1] or ptid[2]
        return self._thread

    def __getitem__(self, name):
        snapshot = self._snapshot
        if snapshot is None:
            snapshot = self._snapshot = self._take()
        value = snapshot.get(name)
        if value is None:
            value = snapshot[name] = _from_gdb(name)
        return value

    def _take(self):
        if self._trusted is False:
            return {}
        regs = self._getregs()
        if regs is None:
            self._trusted = False
            return {}
        snapshot = {"rdi": regs.rdi, "rsi": regs.rsi, "rdx": regs.rdx, "rsp": regs.rsp, "rax": regs.rax}
        if self._trusted is None:
            self._trusted = all(snapshot[name] == _from_gdb(name) for name in CHECKED)
            if not self._trusted:
                return {}
        return snapshot

    def _getregs(self):
        if self._ptrace is None:
            inferior = gdb.selected_inferior()
            connection = getattr(inferior, "connection", None)
            if connection is None or connection.type != "native" or inferior.architecture().name() != "i386:x86-64":
                return None
            libc = ctypes.CDLL(None, use_errno=True)
            self._ptrace = libc.ptrace
            self._ptrace.argtypes = (ctypes.c_long, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p)
            self._ptrace.restype = ctypes.c_long
            self._regs = _UserRegs()
            self._regs_ref = ctypes.byref(self._regs)
        lwp = self.thread()
        if not lwp or self._ptrace(PTRACE_GETREGS, lwp, None, self._regs_ref) != 0:
            return None
        return self._regs


def _from_gdb(name):
    return int(gdb.parse_and_eval("$" + name)) & MASK


REGISTERS = Registers()
