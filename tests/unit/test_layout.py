"""layout.py, layout_gen.py and layouts/: where offsets come from, and what is refused."""

import json
import subprocess
import sys

import pytest

from gdb_mptrack import layouts
from gdb_mptrack.layout import (REQUIRED_FIELDS, Field, Layout, LayoutError, Struct,
                                flatten_fields, format_version, version_from_constants)
from gdb_mptrack.layout_gen import installed_dpdk_version, layout_from_installed_headers

from mptrack_fakes import REPO, shipped_layout, shipped_text


def as_plain(layout):
    """{struct: (size, {field: (offset, size)})}: comparable with ==."""
    return {name: (s.size, {f: (v.offset, v.size) for f, v in s.fields.items()})
            for name, s in layout.structs.items()}


def edited_table(edit):
    data = json.loads(shipped_text())
    edit(data)
    return json.dumps(data)


# --- the shipped table -------------------------------------------------------

def test_shipped_table_is_22_11_11_with_known_offsets():
    layout = shipped_layout()
    assert layout.version == "22.11.11"
    assert layout.constant("RTE_MAX_LCORE") == 128
    assert layout.constant("RTE_STACK_F_LF") == 1
    # A few offsets anyone can check in DPDK 22.11's rte_mempool.h / rte_ring_core.h on x86-64.
    mp = layout["rte_mempool"]
    assert (mp.size, mp["name"].size, mp.offset("size"), mp.offset("local_cache")) == (192, 26, 64, 96)
    assert (layout["rte_mempool_objhdr"].size, layout["rte_mempool_objhdr"].offset("mp")) == (24, 8)
    assert layout["rte_mempool_cache"].size == 64 + 2 * 512 * 8
    assert (layout["rte_ring"].offset("prod"), layout["rte_ring"].offset("cons"), layout["rte_ring"].size) == (128, 256, 384)
    assert layout["rte_mbuf"].size == 128


def test_from_json_round_trip_keeps_everything():
    first = shipped_layout()
    second = Layout.from_json(first.to_json())
    assert as_plain(second) == as_plain(first)
    assert second.constants == first.constants
    assert (second.version, second.source) == (first.version, first.source)
    assert json.loads(second.to_json()) == json.loads(first.to_json())
    # Every struct and field of the file survives, not only the required ones.
    data = json.loads(shipped_text())
    assert {name: (s["size"], {f: tuple(v) for f, v in s["fields"].items()}) for name, s in data["structs"].items()} \
        == as_plain(first)


def test_from_json_source_override():
    layout = Layout.from_json(shipped_text(), source="test table")
    assert layout.source == "test table"
    assert "test table" in Layout.from_json(layout.to_json()).source


def test_every_required_field_is_in_the_shipped_table():
    layout = shipped_layout()
    for struct, fields in REQUIRED_FIELDS.items():
        for field in fields:
            f = layout[struct][field]
            assert 0 <= f.offset and f.offset + f.size <= layout[struct].size, (struct, field)


# --- check() -----------------------------------------------------------------

def test_check_refuses_a_missing_field_by_name():
    text = edited_table(lambda d: d["structs"]["rte_mempool"]["fields"].pop("elt_size"))
    with pytest.raises(LayoutError, match=r"rte_mempool\.elt_size"):
        Layout.from_json(text)


def test_check_refuses_a_missing_constant_by_name():
    text = edited_table(lambda d: d["constants"].pop("RTE_MAX_LCORE"))
    with pytest.raises(LayoutError, match="RTE_MAX_LCORE"):
        Layout.from_json(text)


def test_check_refuses_a_missing_struct_and_names_the_source():
    text = edited_table(lambda d: d["structs"].pop("rte_stack_lf_elem"))
    with pytest.raises(LayoutError, match=r"\(broken table\) lacks .*struct rte_stack_lf_elem"):
        Layout.from_json(text, source="broken table")


def test_check_lists_every_missing_item():
    def edit(d):
        d["structs"]["rte_ring"]["fields"].pop("mask")
        d["structs"]["rte_mbuf"]["fields"].pop("pkt_len")
        d["constants"].pop("RTE_STACK_F_LF")
    with pytest.raises(LayoutError) as info:
        Layout.from_json(edited_table(edit))
    message = str(info.value)
    for needle in ("rte_ring.mask", "rte_mbuf.pkt_len", "RTE_STACK_F_LF"):
        assert needle in message


def test_check_refuses_a_field_outside_its_struct():
    text = edited_table(lambda d: d["structs"]["rte_mempool_objhdr"]["fields"].__setitem__("mp", [20, 8]))
    with pytest.raises(LayoutError, match=r"rte_mempool_objhdr\.mp lies outside"):
        Layout.from_json(text)


def test_lookups_name_what_is_missing():
    layout = shipped_layout()
    with pytest.raises(LayoutError, match="rte_mempool.*'nope'"):
        layout["rte_mempool"]["nope"]
    with pytest.raises(LayoutError, match="struct rte_nope"):
        layout["rte_nope"]
    with pytest.raises(LayoutError, match="constant RTE_NOPE"):
        layout.constant("RTE_NOPE")


# --- differences() -----------------------------------------------------------

def test_differences_of_identical_layouts_is_empty():
    assert shipped_layout().differences(shipped_layout()) == []


def test_differences_names_struct_sizes_and_fields():
    mine, theirs = shipped_layout(), shipped_layout()
    theirs.structs["rte_ring"].size = 448
    theirs.structs["rte_mempool"].fields["size"] = Field(68, 4)
    theirs.structs["rte_mempool"].fields["pool_id"] = Field(0, 1)  # not a required field: not compared
    diffs = mine.differences(theirs)
    assert sorted(diffs) == sorted(["sizeof(struct rte_ring): 384 vs 448", "rte_mempool.size at 64+4 vs 68+4"])


def test_differences_skips_structs_one_side_lacks():
    mine, theirs = shipped_layout(), shipped_layout()
    del theirs.structs["rte_stack"]
    theirs.structs["rte_mbuf"].fields["port"] = Field(22, 4)
    assert mine.differences(theirs) == ["rte_mbuf.port at 22+2 vs 22+4"]


# --- versions ----------------------------------------------------------------

def test_version_from_constants():
    assert version_from_constants({"RTE_VER_YEAR": 22, "RTE_VER_MONTH": 11, "RTE_VER_MINOR": 11}) == "22.11.11"
    assert version_from_constants({"RTE_VER_YEAR": 23, "RTE_VER_MONTH": 3, "RTE_VER_MINOR": 0}) == "23.03.0"
    assert version_from_constants({"RTE_VER_YEAR": 22, "RTE_VER_MONTH": 11}) is None
    assert format_version(21, 11, 9) == "21.11.9"


# --- flatten_fields ----------------------------------------------------------

def test_flatten_lifts_anonymous_unions_nested_in_anonymous_structs():
    # struct { u32 a; struct { u64 b; union { u64 c; u32 d; struct { u16 e; u16 f; }; }; }; u8 g; }
    inner_struct = lambda: [("e", 0, 2, None), ("f", 2, 2, None)]  # noqa: E731
    union = lambda: [("c", 0, 8, None), ("d", 0, 4, None), (None, 0, 4, inner_struct)]  # noqa: E731
    anon_struct = lambda: [("b", 0, 8, None), (None, 8, 8, union)]  # noqa: E731
    members = [("a", 0, 4, None), (None, 8, 16, anon_struct), ("g", 24, 1, None)]
    fields = flatten_fields(members)
    assert {n: (f.offset, f.size) for n, f in fields.items()} == {
        "a": (0, 4), "b": (8, 8), "c": (16, 8), "d": (16, 4), "e": (16, 2), "f": (18, 2), "g": (24, 1)}


def test_flatten_keeps_the_first_name_and_skips_unnamed_scalars():
    members = [("x", 0, 4, None), (None, 4, 4, None), (None, 8, 8, lambda: [("x", 0, 8, None), ("y", 4, 4, None)])]
    fields = flatten_fields(members, base=100)
    assert {n: (f.offset, f.size) for n, f in fields.items()} == {"x": (100, 4), "y": (112, 4)}


def test_flatten_named_struct_members_are_not_lifted():
    calls = []
    members = [("prod", 128, 12, None), ("named", 0, 8, lambda: calls.append(1) or [("inner", 0, 8, None)])]
    assert set(flatten_fields(members)) == {"prod", "named"}
    assert calls == []


# --- layout_gen: the installed headers ----------------------------------------

def test_installed_headers_give_exactly_the_shipped_table():
    generated = layout_from_installed_headers()
    shipped = shipped_layout()
    assert generated.version == "22.11.11"
    assert installed_dpdk_version() == "22.11.11"
    assert "22.11.11" in generated.source
    assert generated.differences(shipped) == []
    assert as_plain(generated) == as_plain(shipped)
    assert generated.constants == shipped.constants


# --- layouts: choosing a layout ------------------------------------------------

@pytest.fixture
def no_cache(monkeypatch, tmp_path):
    """Layout tables only from the shipped directory (not the user's ~/.cache)."""
    monkeypatch.setattr(layouts, "CACHE", str(tmp_path / "cache"))


def test_known_versions_lists_the_shipped_table(no_cache):
    assert layouts.known_versions() == ["22.11.11"]


def test_select_layout_refuses_an_unknown_version(no_cache):
    with pytest.raises(LayoutError) as info:
        layouts.select_layout("99.99.0", {})
    message = str(info.value)
    assert "99.99.0" in message
    assert "tables for: 22.11.11" in message


def test_select_layout_refuses_no_version(no_cache):
    with pytest.raises(LayoutError, match="version"):
        layouts.select_layout(None, {})
    with pytest.raises(LayoutError, match="version"):
        layouts.select_layout(None, {"rte_mempool": shipped_layout()["rte_mempool"]})


def test_select_layout_uses_the_release_table(no_cache):
    layout = layouts.select_layout("22.11.11", {})
    assert as_plain(layout) == as_plain(shipped_layout())
    assert layout.version == "22.11.11"
    assert "22.11.11" in layout.source


def test_select_layout_merges_dwarf_structs_over_the_table(no_cache):
    table = shipped_layout()
    ring = table["rte_ring"]
    dwarf_ring = Struct("rte_ring", 448, dict(ring.fields, size=Field(44, 4)))
    layout = layouts.select_layout("22.11.11", {"rte_ring": dwarf_ring})
    assert layout["rte_ring"] is dwarf_ring
    assert layout["rte_ring"].offset("size") == 44
    assert layout["rte_mempool"].offset("local_cache") == 96  # the rest from the table
    assert layout.constant("RTE_MAX_LCORE") == 128
    assert "target DWARF for 1 structs" in layout.source
    assert "sizeof(struct rte_ring): 448 vs 384" in layout.source
    assert "rte_ring.size at 44+4 vs 48+4" in layout.source


def test_select_layout_with_matching_dwarf_reports_no_difference(no_cache):
    dwarf = {name: shipped_layout()[name] for name in ("rte_mempool", "rte_mbuf")}
    layout = layouts.select_layout("22.11.11", dwarf)
    assert layout["rte_mempool"] is dwarf["rte_mempool"]
    assert "target DWARF for 2 structs" in layout.source
    assert "differs" not in layout.source


def test_select_layout_refuses_dwarf_lacking_a_required_field(no_cache):
    mp = shipped_layout()["rte_mempool"]
    fields = dict(mp.fields)
    del fields["populated_size"]
    with pytest.raises(LayoutError, match=r"rte_mempool\.populated_size"):
        layouts.select_layout("22.11.11", {"rte_mempool": Struct("rte_mempool", mp.size, fields)})


# --- the pure layer never imports gdb ------------------------------------------

def test_pure_modules_import_without_gdb():
    code = ("import sys; sys.modules['gdb'] = None\n"
            "import gdb_mptrack.layout, gdb_mptrack.layout_gen, gdb_mptrack.layouts, gdb_mptrack.memory, "
            "gdb_mptrack.decode, gdb_mptrack.discovery, gdb_mptrack.pools, gdb_mptrack.render\n"
            "print('ok')")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
