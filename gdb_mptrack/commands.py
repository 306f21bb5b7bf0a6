"""The `mptrack` gdb commands: argument parsing and output, nothing more.

Each subcommand is a gdb.Command with a module-level argparse parser; its
help text is the parser's.  User errors (bad arguments, unknown pools,
missing memory, unknown layouts) become one-line gdb errors starting with
`mptrack:`, never tracebacks.  The work is done by the target layer
(target.py) and the pure modules it feeds.
"""

import argparse

import gdb  # pylint: disable=import-error

from . import render
from .pools import FREE, IN_USE
from .target import USER_ERRORS, UserError, session, styling_enabled
TABLE_LIMIT = 1000


class _HelpShown(Exception):
    pass


class ArgumentParser(argparse.ArgumentParser):
    """argparse that reports through gdb instead of exiting the process."""

    def error(self, message):
        raise UserError("%s: %s (see 'help %s')" % (self.prog, message, self.prog))

    def exit(self, status=0, message=None):
        if message:
            raise UserError(message.strip())
        raise _HelpShown()

    def print_help(self, file=None):
        gdb.write(self.format_help())


def make_parser(name, description):
    return ArgumentParser(prog="mptrack " + name, description=description, add_help=True)


def emit(text, path):
    """Write text to FILE, or to gdb's stdout for '-'."""
    if path == "-":
        gdb.write(text)
        return
    try:
        with open(path, "w") as f:
            f.write(text)
    except OSError as e:
        raise UserError("cannot write %s: %s" % (path, e.strerror)) from None


def note(text):
    gdb.write(text + "\n", gdb.STDERR)


class MptrackPrefix(gdb.Command):
    """Inspect DPDK mempools: list pools, dump their objects, find an object's pool.

Works on a program run under gdb, a process attached with 'gdb -p PID', and
a core file ('gdb PROGRAM CORE'), with or without debug info, and never
calls functions in the debugged process."""

    def __init__(self):
        super().__init__("mptrack", gdb.COMMAND_DATA, gdb.COMPLETE_NONE, prefix=True)


class Subcommand(gdb.Command):
    """Base: parse arguments with `parser`, run, turn user errors into gdb errors."""

    parser = None

    def __init__(self, name):
        super().__init__("mptrack " + name, gdb.COMMAND_DATA)

    def invoke(self, argument, from_tty):
        try:
            self.run(self.parser.parse_args(gdb.string_to_argv(argument)))
        except _HelpShown:
            pass
        except USER_ERRORS as e:
            raise gdb.GdbError("mptrack: %s" % e) from None

    def run(self, args):
        raise NotImplementedError


def evaluate_address(words):
    """The address an expression (given as argument words) evaluates to in the inferior."""
    expression = " ".join(words)
    try:
        return int(gdb.parse_and_eval(expression)) & 0xFFFFFFFFFFFFFFFF
    except gdb.error as e:
        raise UserError("cannot evaluate %r: %s" % (expression, e)) from None


def complete_pool(text):
    try:
        return [n for n in session().pool_names() if n.startswith(text)]
    except (USER_ERRORS + (gdb.error,)):
        return []


POOLS = make_parser("pools", "List every mempool: driver, sizes, free and in-use counts, per-lcore cache fill.")
POOLS.add_argument("--json", metavar="FILE", help="write a JSON array to FILE ('-' for stdout)")


class PoolsCommand(Subcommand):
    __doc__ = ("List every mempool with its driver, sizes, available and in-use counts.\n"
               + POOLS.format_help())
    parser = POOLS

    def __init__(self):
        super().__init__("pools")

    def run(self, args):
        s = session()
        pools, errors = s.pools()
        records = [render.pool_record(p) for p in pools]
        if args.json:
            emit(render.to_json(records), args.json)
        else:
            gdb.write("DPDK %s, %s; layout from %s\n" % (s.version, s.description, s.layout.source))
            gdb.write(render.pools_table(records) + "\n")
        for pool in pools:
            for anomaly in pool.anomalies:
                note("mptrack: pool %s: %s" % (pool.name, anomaly))
        for error in errors:
            note("mptrack: " + error)


DUMP = make_parser("dump", "Dump every object of a pool with its state (in-use, or free in the ring/stack or an "
                       "lcore's cache); mbuf fields for pktmbuf pools.")
DUMP.add_argument("pool", metavar="POOL", help="pool name (TAB completes) or address")
DUMP.add_argument("--state", choices=("in-use", "free", "all"), default="all", help="objects to show (default all)")
DUMP.add_argument("--limit", type=int, metavar="N",
                  help="at most N objects (0: no limit; default: all in files, %d on the terminal)" % TABLE_LIMIT)
DUMP.add_argument("--csv", metavar="FILE", help="write CSV to FILE ('-' for stdout)")
DUMP.add_argument("--json", metavar="FILE", help="write a JSON array to FILE ('-' for stdout)")
DUMP.add_argument("--hex", action="store_true", help="show packet bytes (mbufs) or object bytes")


class DumpCommand(Subcommand):
    __doc__ = "Dump the objects of a pool and their states.\n" + DUMP.format_help()
    parser = DUMP

    def __init__(self):
        super().__init__("dump")

    def complete(self, text, word):
        return complete_pool(word or "")

    def run(self, args):
        if args.limit is not None and args.limit < 0:
            raise UserError("--limit must be 0 or more")
        pool = session().pool(args.pool)
        rows = pool.states()
        if args.state != "all":
            wanted = IN_USE if args.state == "in-use" else FREE
            rows = [r for r in rows if r[2] == wanted]
        to_file = bool(args.csv or args.json)
        limit = args.limit if args.limit is not None else (0 if to_file else TABLE_LIMIT)
        shown = rows[:limit] if limit else rows
        records = render.object_records(pool, shown)
        keys = render.object_keys(pool.pktmbuf)
        from .track_commands import backtrace_columns
        columns = backtrace_columns(pool)
        if columns is not None:
            keys += ("alloc_backtrace", "free_backtrace")
            for record, row in zip(records, shown):
                record["alloc_backtrace"], record["free_backtrace"] = columns(row[1])
        if args.csv:
            emit(render.to_csv(records, keys), args.csv)
        if args.json:
            emit(render.to_json(records), args.json)
        if not to_file:
            gdb.write("pool %s at 0x%x (%s): %d objects, %s in use; showing %d %s\n" % (
                pool.name, pool.addr, pool.ops, pool.header.size,
                "unknown" if pool.in_use is None else pool.in_use, len(shown),
                "object" if len(shown) == 1 else "objects"))
            gdb.write(render.objects_table(records, keys) + "\n")
            if len(shown) < len(rows):
                gdb.write("... %d more; use --limit 0 for all, or --csv/--json FILE\n" % (len(rows) - len(shown)))
            if args.hex:
                self._hex(pool, shown)
        for anomaly in pool.anomalies:
            note("mptrack: pool %s: %s" % (pool.name, anomaly))

    @staticmethod
    def _hex(pool, rows):
        color = styling_enabled()
        for index, addr, state, _ in rows:
            gdb.write("object %d at 0x%x (%s):\n" % (index, addr, state))
            if pool.pktmbuf:
                for seg, (mbuf, payload) in enumerate(pool.packet_segments(addr)):
                    start = mbuf["buf_addr"] + mbuf["data_off"]
                    gdb.write(" segment %d: %d bytes at 0x%x\n" % (seg, mbuf["data_len"], start))
                    gdb.write(render.hexdump(payload, start, color) if payload is not None
                              else "  (packet data not readable)\n")
            else:
                gdb.write(render.hexdump(pool.object_bytes(addr, pool.header.elt_size), addr, color))


OBJECT = make_parser("object", "Tell which pool and object an address belongs to, its state, and the mbuf fields.")
OBJECT.add_argument("address", metavar="ADDR", nargs="+", help="an address or expression, inside an object")


class ObjectCommand(Subcommand):
    __doc__ = "Find the pool and object an address belongs to.\n" + OBJECT.format_help()
    parser = OBJECT

    def __init__(self):
        super().__init__("object")

    def run(self, args):
        addr = evaluate_address(args.address)
        s = session()
        pools, _ = s.pools()
        for pool in pools:
            found = pool.contains(addr)
            if found is None:
                continue
            index, obj = found
            places = pool.free_places()
            where = places.get(obj)
            state = FREE if where else (IN_USE if pool.counts_known else "unknown")
            gdb.write(render.describe_object(pool, index, obj, addr, state, where) + "\n")
            if pool.pktmbuf:
                gdb.write(render.describe_mbuf(pool.mbuf(obj)) + "\n")
            return
        raise UserError("0x%x is not inside any mempool object" % addr)


def register():
    from . import track_commands
    MptrackPrefix()
    PoolsCommand()
    DumpCommand()
    ObjectCommand()
    track_commands.register()
    from . import agent_commands; agent_commands.register()  # noqa: E702
