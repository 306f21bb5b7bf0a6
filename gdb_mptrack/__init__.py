"""gdb-mptrack: find DPDK mempool leaks, double frees and foreign frees from gdb.

Layers: pure modules that never import gdb (layout, layout_gen, memory,
decode, discovery, pools, render), the target layer (target.py, the only
importer of gdb), and thin commands (commands.py).  `gdbinit.py` loads the
gdb side; `python3 -m gdb_mptrack` is the command-line side.
"""

__version__ = "0.1.0"
