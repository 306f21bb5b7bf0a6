"""Build a Layout from DPDK's installed headers, by way of DWARF.

`layout_probe.c` includes the headers and names every structure we decode.
We compile it with `cc -g -c` using `pkg-config --cflags libdpdk`, so the
compiler, not us, works out offsets, padding and the build configuration,
and read the object's DWARF with pyelftools.  Results are cached per DPDK
version under ~/.cache/gdb-mptrack.  `python3 -m gdb_mptrack gen-layout`
writes the shipped table for the installed release into layouts/.
"""

import os
import subprocess
import tempfile

from elftools.elf.elffile import ELFFile

from .layout import REQUIRED_FIELDS, Layout, LayoutError, Struct, flatten_fields, version_from_constants

PROBE_SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "layout_probe.c")
CONSTANT_PREFIX = "MPTRACK_"


def installed_dpdk_version():
    """The version pkg-config reports for libdpdk, or None when it is not installed."""
    try:
        out = subprocess.run(["pkg-config", "--modversion", "libdpdk"], capture_output=True,
                             text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.stdout.strip() or None


def compile_probe(output):
    """Compile the probe against the installed headers into object file `output`."""
    try:
        cflags = subprocess.run(["pkg-config", "--cflags", "libdpdk"], capture_output=True,
                                text=True, check=True).stdout.split()
    except (OSError, subprocess.CalledProcessError):
        raise LayoutError("DPDK headers not found (pkg-config libdpdk failed); "
                          "install libdpdk-dev for the target's DPDK version") from None
    cmd = ["cc", "-g", "-c", "-w", "-fno-eliminate-unused-debug-types",
           "-DALLOW_EXPERIMENTAL_API"] + cflags + [PROBE_SOURCE, "-o", output]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise LayoutError("compiling the layout probe failed: %s"
                          % (result.stderr.strip().splitlines() or ["?"])[-1])


def layout_from_object(path, source):
    """Read the structures and constants named in REQUIRED_FIELDS from an ELF's DWARF."""
    with open(path, "rb") as stream:
        elf = ELFFile(stream)
        if not elf.has_dwarf_info():
            raise LayoutError("%s has no DWARF" % path)
        structs, constants = {}, {}
        for cu in elf.get_dwarf_info().iter_CUs():
            for die in cu.iter_DIEs():
                if die.tag == "DW_TAG_structure_type":
                    name = _name(die)
                    if name in REQUIRED_FIELDS and name not in structs and "DW_AT_byte_size" in die.attributes:
                        structs[name] = Struct(name, die.attributes["DW_AT_byte_size"].value,
                                               flatten_fields(_members(die)))
                elif die.tag == "DW_TAG_enumerator":
                    name = _name(die)
                    if name and name.startswith(CONSTANT_PREFIX):
                        constants[name[len(CONSTANT_PREFIX):]] = die.attributes["DW_AT_const_value"].value
    version = version_from_constants(constants)
    return Layout(structs, constants, version, source).check()


def layout_from_installed_headers():
    """Compile the probe and read it; LayoutError when headers or compiler are missing."""
    with tempfile.TemporaryDirectory(prefix="mptrack-probe-") as tmp:
        obj = os.path.join(tmp, "probe.o")
        compile_probe(obj)
        layout = layout_from_object(obj, "DPDK %s installed headers" % installed_dpdk_version())
    return layout


def _name(die):
    attr = die.attributes.get("DW_AT_name")
    return attr.value.decode() if attr else None


def _resolve(die):
    """Follow typedefs and qualifiers to the underlying type DIE."""
    while die.tag in ("DW_TAG_typedef", "DW_TAG_const_type", "DW_TAG_volatile_type"):
        die = die.get_DIE_from_attribute("DW_AT_type")
    return die


def _byte_size(die):
    die = _resolve(die)
    if "DW_AT_byte_size" in die.attributes:
        return die.attributes["DW_AT_byte_size"].value
    if die.tag == "DW_TAG_array_type":
        count = 1
        for sub in die.iter_children():
            if "DW_AT_count" in sub.attributes:
                count *= sub.attributes["DW_AT_count"].value
            elif "DW_AT_upper_bound" in sub.attributes:
                count *= sub.attributes["DW_AT_upper_bound"].value + 1
            else:
                count = 0  # flexible array member
        return count * _byte_size(die.get_DIE_from_attribute("DW_AT_type"))
    return 0


def _members(die):
    for member in die.iter_children():
        if member.tag != "DW_TAG_member":
            continue
        location = member.attributes.get("DW_AT_data_member_location")
        offset = location.value if location is not None else 0
        type_die = _resolve(member.get_DIE_from_attribute("DW_AT_type"))
        name = _name(member)
        anonymous = None
        if name is None and type_die.tag in ("DW_TAG_structure_type", "DW_TAG_union_type"):
            anonymous = lambda t=type_die: _members(t)
        yield name, offset, _byte_size(type_die), anonymous
