"""Load gdb-mptrack into gdb: `gdb -x /path/to/gdbinit.py` or `source /path/to/gdbinit.py`.

Puts this file's directory on gdb's Python path (so it works from any working
directory) and registers the `mptrack` commands.  Sourcing it twice is harmless.
"""

import os
import sys

import gdb  # pylint: disable=import-error

_ROOT = os.path.dirname(os.path.abspath(os.path.realpath(__file__)))
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

try:
    from gdb_mptrack import commands as _commands
except ImportError as _error:
    raise gdb.GdbError("mptrack: cannot load (%s); run scripts/setup.sh to install the Python "
                       "packages gdb's Python needs (pygments, pyelftools, tabulate)" % _error) from None

if not getattr(gdb, "_mptrack_registered", False):
    _commands.register()
    gdb._mptrack_registered = True
