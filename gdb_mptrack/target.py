"""The target layer: the only module that talks to gdb.

It answers four questions for the commands: what is loaded (a live process,
started under gdb or attached, or a core), how to read its memory (gdb's
inferior for a live process; the core file itself for a core, see
memory.CoreMemory), where a symbol is, and which layout describes the
target's DPDK (layouts.select_layout).  The discovered pools are cached
until the inferior runs again or objfiles change, so successive commands
on a stopped process or a core do not rescan memory.

No function is ever called in the inferior.
"""

import re

import gdb  # pylint: disable=import-error

from . import layouts
from .discovery import find_pools
from .layout import REQUIRED_FIELDS, LayoutError, Struct, flatten_fields, format_version
from .memory import COREDUMP_FILTER_HINT, CoreError, CoreMemory, MemoryMissing, parse_proc_maps
from .pools import Pool, PoolError, read_ops_names


class UserError(Exception):
    """A problem to report to the user as one line, without a traceback."""


USER_ERRORS = (UserError, LayoutError, PoolError, MemoryMissing, CoreError)


class LiveMemory:
    """Memory of a live inferior through gdb; regions from /proc/PID/maps."""

    SKIP = ("[vvar]", "[vvar_vclock]", "[vsyscall]", "[vdso]")

    def __init__(self, inferior):
        self.inferior = inferior

    def read(self, addr, size):
        try:
            return self.inferior.read_memory(addr, size).tobytes()
        except gdb.MemoryError:
            raise MemoryMissing(addr, size, "cannot be read in the process") from None

    def regions(self):
        try:
            with open("/proc/%d/maps" % self.inferior.pid) as maps:
                text = maps.read()
        except OSError as e:
            raise UserError("cannot read /proc/%d/maps: %s (is the process on this machine?)"
                            % (self.inferior.pid, e.strerror)) from None
        return [r for r in parse_proc_maps(text) if r.path not in self.SKIP]


class Session:
    """What we know about the current inferior until it runs again."""

    def __init__(self):
        inferior = gdb.selected_inferior()
        connection = getattr(inferior, "connection", None)
        if inferior.pid == 0 or connection is None:
            raise UserError("no process or core: run a DPDK program, attach with 'gdb -p PID', "
                            "or open a core ('gdb PROGRAM CORE'; if gdb refused the core above, it is truncated or not a core)")
        self.inferior = inferior
        self.kind = "core" if connection.type == "core" else "live"
        if self.kind == "core":
            path = _core_path()
            try:
                self.memory = CoreMemory(path)
            except CoreError as e:
                raise UserError(str(e)) from None
            self.description = "core %s" % path
        else:
            self.memory = LiveMemory(inferior)
            self.description = "process %d" % inferior.pid
        self.ops_table_addr = symbol_address("rte_mempool_ops_table")
        if self.ops_table_addr is None:
            raise UserError(self._missing_memory_prefix() + "%s does not use DPDK mempools (no symbol "
                            "rte_mempool_ops_table; is librte_mempool loaded?)" % self.description)
        self.version = dpdk_version(self.inferior)
        try:
            self.layout = layouts.select_layout(self.version, target_layout_from_dwarf())
        except LayoutError as e:
            raise UserError(self._missing_memory_prefix() + str(e)) from None
        try:
            self.ops_names = read_ops_names(self.memory, self.layout, self.ops_table_addr)
        except MemoryMissing as e:
            raise UserError("rte_mempool_ops_table: %s" % e) from None
        except PoolError as e:
            raise UserError(str(e)) from None
        self._scan = None
        self._pools = {}
        self.derived = {}  # other layers' results for this stop (e.g. the agent's tables)

    def _missing_memory_prefix(self):
        """For a core without most of its writable memory: say so first, since it explains what follows."""
        if self.kind != "core":
            return ""
        if self.memory.truncated:
            return ("the core file is truncated (%d memory segments cut short; take it again with enough "
                    "disk space and 'ulimit -c unlimited'); so: " % len(self.memory.truncated))
        regions = [r for r in self.memory.regions() if r.writable]
        total = sum(r.end - r.start for r in regions)
        present = sum(r.end - r.start for r in regions if r.present)
        if present >= 1 << 20 and present * 2 > total:
            return ""
        return ("the core holds only %d KB of the process's writable memory (%s); so: "
                % (present >> 10, COREDUMP_FILTER_HINT))

    def scan(self):
        if self._scan is None:
            self._scan = find_pools(self.memory, self.layout, len(self.ops_names))
        if not self._scan.pools:
            raise UserError(self._no_pools_message())
        return self._scan

    def _no_pools_message(self):
        truncated = getattr(self.memory, "truncated", [])
        if truncated:
            return ("no mempool found: the core file is truncated (%d memory segments cut short); "
                    "take the core again with enough disk space and no size limit (ulimit -c unlimited)"
                    % len(truncated))
        missing = [r for r in self._scan.missing if r.end - r.start >= 1 << 20]
        if missing:
            big = max(missing, key=lambda r: r.end - r.start)
            return ("no mempool found: %d MB of writable memory is not in the %s (largest: %s at 0x%x, %d MB); "
                    "%s" % (sum(r.end - r.start for r in missing) >> 20, self.description,
                            big.path or "anonymous", big.start, (big.end - big.start) >> 20,
                            COREDUMP_FILTER_HINT))
        return "no mempool found in %s (%d MB scanned)" % (self.description, self._scan.scanned_bytes >> 20)

    def pools(self):
        """Every Pool, in address order; pools whose store cannot be read are reported in errors."""
        result, errors = [], []
        for header in self.scan().pools:
            try:
                result.append(self.pool_at(header))
            except (MemoryMissing, PoolError) as e:
                errors.append("pool %s at 0x%x: %s" % (header.name, header.addr, _explain(e)))
        return result, errors

    def pool_at(self, header):
        if header.addr not in self._pools:
            self._pools[header.addr] = Pool(self.memory, self.layout, header.addr, self.ops_names, header)
        return self._pools[header.addr]

    def pool_names(self):
        return [h.name for h in self.scan().pools]

    def pool(self, name):
        """The pool called `name` (or at address `name`); UserError listing the pools otherwise."""
        headers = self.scan().pools
        matches = [h for h in headers if h.name == name or _is_addr(name, h.addr)]
        if not matches:
            raise UserError("no mempool named %r; pools: %s" % (name, ", ".join(h.name for h in headers)))
        if len(matches) > 1:
            raise UserError("%d pools are named %r; name one by address: %s"
                            % (len(matches), name, ", ".join("0x%x" % h.addr for h in matches)))
        try:
            return self.pool_at(matches[0])
        except (MemoryMissing, PoolError) as e:
            raise UserError("pool %s: %s" % (name, _explain(e))) from None


def _explain(error):
    text = str(error)
    if isinstance(error, MemoryMissing) and "core" in text:
        text += "; " + COREDUMP_FILTER_HINT
    return text


def _is_addr(text, addr):
    try:
        return int(text, 0) == addr
    except ValueError:
        return False


def _core_path():
    info = gdb.execute("info target", to_string=True)
    match = re.search(r"Local core dump file:\s*`(.+?)'", info)
    if not match:
        raise UserError("cannot tell which core file is loaded ('info target' names none)")
    return match.group(1)


def symbol_address(name):
    """Address of a global symbol (debug info or ELF symbol tables), or None."""
    try:
        return int(gdb.parse_and_eval("(unsigned long)&'%s'" % name))
    except gdb.error:
        return None


def dpdk_version(inferior):
    """'YY.MM.m' read from the code of rte_version_year/month/minor (each `mov $imm32,%eax; ret`)."""
    parts = []
    for fn in ("rte_version_year", "rte_version_month", "rte_version_minor"):
        addr = symbol_address(fn)
        if addr is None:
            return None
        try:
            code = inferior.read_memory(addr, 6).tobytes()
        except gdb.MemoryError:
            return None
        if code[0] != 0xB8 or code[5] != 0xC3:
            return None
        parts.append(int.from_bytes(code[1:5], "little"))
    return format_version(*parts)


def target_layout_from_dwarf():
    """{struct name: Struct} for the DPDK structures the target's debug info describes (maybe none)."""
    structs = {}
    for name in REQUIRED_FIELDS:
        try:
            t = gdb.lookup_type("struct " + name).strip_typedefs()
        except gdb.error:
            continue
        if t.sizeof and t.fields():
            structs[name] = Struct(name, t.sizeof, flatten_fields(_gdb_members(t)))
    return structs


def _gdb_members(t):
    for f in t.fields():
        ftype = f.type.strip_typedefs()
        anonymous = None
        if not f.name and ftype.code in (gdb.TYPE_CODE_STRUCT, gdb.TYPE_CODE_UNION):
            anonymous = lambda ft=ftype: _gdb_members(ft)
        yield f.name or None, f.bitpos // 8, ftype.sizeof, anonymous


_session = None


def session():
    """The Session of the current inferior, made on first use and kept until it runs again."""
    global _session
    if _session is None or _session.inferior != gdb.selected_inferior() or not _session.inferior.is_valid():
        _session = Session()
    return _session


def forget(_event=None):
    global _session
    _session = None


def styling_enabled():
    try:
        return bool(gdb.parameter("style enabled"))
    except (gdb.error, RuntimeError):
        return False


gdb.events.cont.connect(forget)
gdb.events.exited.connect(forget)
gdb.events.new_objfile.connect(forget)
gdb.events.memory_changed.connect(forget)
gdb.events.clear_objfiles.connect(forget)
