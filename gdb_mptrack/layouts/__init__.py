"""Choosing the layout for a target's DPDK version.

Sources, in order:
1. the target's own DWARF, for each DPDK structure type it carries (a program
   built with -g has those its code uses): exact for that build; the build
   constants (RTE_MAX_LCORE)
   still come from the release's table below, and the pool decoder checks
   them against memory (every lcore cache's `size` must equal the pool's
   cache_size);
2. a table for the exact release: shipped here as dpdk-VERSION.json, or made
   earlier in ~/.cache/gdb-mptrack/, or generated now from the installed
   headers when `pkg-config libdpdk` reports that same version.
A target whose version cannot be read, or has no table, is refused.
"""

import os

from ..layout import Layout, LayoutError

SHIPPED = os.path.dirname(os.path.abspath(__file__))
CACHE = os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "gdb-mptrack")


def table_path(version, directory=SHIPPED):
    return os.path.join(directory, "dpdk-%s.json" % version)


def known_versions():
    names = []
    for directory in (SHIPPED, CACHE):
        if os.path.isdir(directory):
            names += [f[5:-5] for f in os.listdir(directory) if f.startswith("dpdk-") and f.endswith(".json")]
    return sorted(set(names))


def release_table(version):
    """The Layout table for exactly `version`, generating it from installed headers if they match."""
    for directory in (SHIPPED, CACHE):
        path = table_path(version, directory)
        if os.path.exists(path):
            with open(path) as f:
                return Layout.from_json(f.read(), "DPDK %s table %s" % (version, path))
    from ..layout_gen import installed_dpdk_version, layout_from_installed_headers
    installed = installed_dpdk_version()
    if installed != version:
        raise LayoutError(
            "no layout for DPDK %s (tables for: %s; installed headers: %s); install the headers "
            "of that release (libdpdk-dev %s) or debug the target with its debug info"
            % (version, ", ".join(known_versions()) or "none", installed or "none", version))
    layout = layout_from_installed_headers()
    try:
        os.makedirs(CACHE, exist_ok=True)
        with open(table_path(version, CACHE), "w") as f:
            f.write(layout.to_json())
    except OSError:
        pass  # a read-only home only costs a recompile next time
    return layout


def select_layout(version, dwarf_structs):
    """The Layout for a target of `version`, preferring its own DWARF ({name: Struct}) per structure."""
    if version is None:
        raise LayoutError("cannot read the target's DPDK version (rte_version_year/month/minor); "
                          "refusing to guess a layout")
    table = release_table(version)
    if not dwarf_structs:
        return table
    structs = dict(table.structs)
    structs.update(dwarf_structs)
    merged = Layout(structs, table.constants, version, "target DWARF for %d structs, the rest and "
                    "constants from %s" % (len(dwarf_structs), table.source)).check()
    differences = merged.differences(table)
    if differences:
        merged.source += "; DWARF differs from the table in " + "; ".join(differences[:3])
    return merged
