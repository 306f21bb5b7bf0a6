"""Command line: `python3 -m gdb_mptrack COMMAND`.

Works without gdb.  `gen-layout` writes the layout table of the installed
DPDK headers (for shipping with the package or for a workstation that reads
cores of that release); `gdbinit` prints the path to source in gdb.
"""

import argparse
import os
import sys

from .layout import LayoutError


def _needs(module, package):
    """Exit with one line when a module this command needs is missing from this Python."""
    try:
        __import__(module)
    except ImportError:
        sys.exit("gdb_mptrack: this Python (%s) lacks %s; run scripts/setup.sh and use /usr/bin/python3, "
                 "the Python gdb embeds" % (sys.executable, package))


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python3 -m gdb_mptrack",
                                     description="gdb-mptrack: DPDK mempool debugging from gdb. "
                                                 "In gdb: source the path printed by 'gdbinit', then 'help mptrack'.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser("gdbinit", help="print the path of gdbinit.py to source in gdb")
    gen = sub.add_parser("gen-layout", help="write the layout table of the installed DPDK headers")
    gen.add_argument("--output", metavar="FILE", help="default: gdb_mptrack/layouts/dpdk-VERSION.json")
    sub.add_parser("preload-path", help="print the path of the preload agent library (building it if needed)")
    rep = sub.add_parser("report", help="leaks and faults from an agent log or dump, symbolized")
    rep.add_argument("file", metavar="FILE", help="MPTRACK_LOG event log or MPTRACK_DUMP CSV")
    rep.add_argument("--maps", metavar="MAPS", help="the target's /proc/PID/maps (default: from FILE)")
    rep.add_argument("--paths", metavar="DIR:DIR", help="where to look for the target's binaries")
    rep.add_argument("--format", choices=["table", "csv", "json", "callgrind", "folded"], default="table")
    rep.add_argument("--color", choices=["auto", "always", "never"], default="auto",
                     help="colour the table format (auto: on a terminal)")
    args = parser.parse_args(argv)
    if args.command == "gdbinit":
        print(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "gdbinit.py"))
    elif args.command == "gen-layout":
        _needs("elftools", "pyelftools")
        from .layout_gen import layout_from_installed_headers
        from .layouts import table_path
        try:
            layout = layout_from_installed_headers()
        except LayoutError as e:
            sys.exit("gdb_mptrack: %s" % e)
        path = args.output or table_path(layout.version)
        with open(path, "w") as f:
            f.write(layout.to_json() + "\n")
        print("wrote %s (DPDK %s)" % (path, layout.version))
    elif args.command == "report":
        from .report import main as report_main
        return report_main(args)
    elif args.command == "preload-path":
        from .agent import BuildError, preload_path
        try:
            print(preload_path())
        except BuildError as e:
            sys.exit("gdb_mptrack: cannot build the agent: %s" % e)
    else:
        parser.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
