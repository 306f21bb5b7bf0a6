"""mptrack against tests/programs/pools.c's own truth file.

Every test runs once per scenario: the program run under gdb, attached to
while it sleeps, a gcore core and a kernel core, each with and without debug
info (see conftest.py).  The truth file says what each pool is and exactly
which objects the program holds and gave back.
"""

import re

import pytest

OBJECT_LINE = re.compile(
    r"object (\d+) of pool '([^']+)' at (0x[0-9a-f]+) \+(\d+): (in-use|free)")
WHERE = re.compile(r"ring|stack|lcore (\d+) cache")
MBUF_FIELDS = ["refcnt", "port", "nb_segs", "pkt_len", "data_len", "ol_flags", "next"]
HEX = re.compile(r"0x[0-9a-f]+")
POOLS = ["cached", "nocache", "stack", "rts", "hts", "mpsc", "spmc", "mbufs"]
per_pool = pytest.mark.parametrize("name", POOLS)


def addrs(rows):
    return [int(r["addr"], 16) for r in rows]


def as_ints(hexes):
    return {int(a, 16) for a in hexes}


def test_truth_is_consistent(scenario):
    """The program's own claims, before any of them is held against mptrack."""
    assert sorted(scenario.truth["pools"]) == sorted(POOLS)
    for name, t in scenario.truth["pools"].items():
        held, freed = as_ints(t["held"]), as_ints(t["freed"])
        assert len(held) == len(t["held"]) == t["in_use"] > 0, name
        assert freed and not held & freed, name
        assert t["in_use"] + t["avail"] == t["size"], name
        assert sum(t["cache_fill"].values()) <= t["avail"], name
    mbufs = scenario.truth["pools"]["mbufs"]
    assert as_ints(mbufs["mbufs"]) == as_ints(mbufs["held"])


def test_gdb_ran_cleanly(scenario):
    assert "Traceback" not in scenario.gdb.stdout + scenario.gdb.stderr, str(scenario.gdb)
    assert "Python Exception" not in scenario.gdb.stdout + scenario.gdb.stderr, str(scenario.gdb)
    # The only error is the one asked for: an address in no pool.
    errors = scenario.gdb.error_lines()
    assert len(errors) == 1, str(scenario.gdb)
    assert "done" in scenario.section("end")


def test_pools_table_names_every_pool(scenario):
    table = scenario.section("table")
    for name in scenario.truth["pools"]:
        assert re.search(rf"\b{name}\b", table), f"{name} missing from:\n{table}"


def test_pools_json_lists_exactly_the_pools(scenario):
    assert sorted(scenario.pools()) == sorted(scenario.truth["pools"])


def _pool(scenario, name):
    pools = scenario.pools()
    assert name in pools, f"{name} not in mptrack pools --json: {sorted(pools)}"
    return pools[name]


@per_pool
def test_pools_json_matches_truth(scenario, name):
    truth, got = scenario.truth["pools"][name], _pool(scenario, name)
    assert HEX.fullmatch(got["addr"]), got["addr"]
    expect = {k: truth[k] for k in ("ops", "size", "elt_size", "cache_size", "in_use",
                                     "avail", "pktmbuf")}
    expect["addr"] = int(truth["addr"], 16)
    actual = {k: got.get(k) for k in expect}
    actual["addr"] = int(got["addr"], 16)
    assert actual == expect


@per_pool
def test_pools_cache_fill_matches_truth(scenario, name):
    assert _pool(scenario, name)["cache_fill"] == scenario.truth["pools"][name]["cache_fill"]


def test_both_lcore_caches_are_used(scenario):
    # The scenario is only interesting if both lcores' caches hold objects.
    assert set(scenario.truth["pools"]["cached"]["cache_fill"]) == {"0", "1"}
    assert set(scenario.truth["pools"]["mbufs"]["cache_fill"]) == {"0", "1"}


@per_pool
def test_dump_in_use_is_exactly_what_the_program_holds(scenario, name):
    truth = scenario.truth["pools"][name]
    rows = scenario.dump(name, "in-use")
    got = addrs(rows)
    assert len(got) == len(set(got)), "duplicate addresses"
    assert set(got) == as_ints(truth["held"])
    for row in rows:
        assert row["state"] == "in-use" and row["where"] is None, row


@per_pool
def test_dump_free_has_every_freed_object_and_no_held_one(scenario, name):
    truth = scenario.truth["pools"][name]
    rows = scenario.dump(name, "free")
    got = set(addrs(rows))
    assert len(got) == len(rows) == truth["avail"]
    assert as_ints(truth["freed"]) <= got
    assert not as_ints(truth["held"]) & got
    cached = {}
    for row in rows:
        assert row["state"] == "free", row
        m = WHERE.fullmatch(row["where"] or "")
        assert m, f"bad where {row['where']!r}"
        if m.group(1) is not None:
            cached[m.group(1)] = cached.get(m.group(1), 0) + 1
    assert cached == truth["cache_fill"]
    expect_where = "stack" if truth["ops"] == "stack" else "ring"
    assert {r["where"] for r in rows if "cache" not in r["where"]} <= {expect_where}


@per_pool
def test_dump_all_covers_the_pool(scenario, name):
    truth = scenario.truth["pools"][name]
    rows = scenario.dump(name, "all")
    assert len(rows) == truth["size"]
    indexes = [r["index"] for r in rows]
    assert sorted(indexes) == list(range(truth["size"]))
    assert len(set(addrs(rows))) == truth["size"]
    in_use = {int(r["addr"], 16) for r in rows if r["state"] == "in-use"}
    assert in_use == as_ints(truth["held"])
    # consecutive objects are at least elt_size apart
    by_addr = sorted(addrs(rows))
    gaps = [b - a for a, b in zip(by_addr, by_addr[1:])]
    assert min(gaps) >= truth["elt_size"]


def test_dump_limit(scenario):
    rows = scenario._load("limit.json")
    assert len(rows) == 5
    assert len({r["index"] for r in rows}) == 5


def test_dump_json_to_stdout(scenario):
    text = scenario.section("stdout-json")
    got = {int(a, 16) for a in re.findall(r'"addr":\s*"(0x[0-9a-f]+)"', text)}
    assert got == as_ints(scenario.truth["pools"]["nocache"]["held"]), text


def test_dump_csv(scenario):
    for fname, pool in (("cached.csv", "cached"), ("mbufs.csv", "mbufs")):
        rows = scenario.csv_rows(fname)
        header, body = rows[0], rows[1:]
        assert header[0] == "addr", header
        json_keys = list(scenario.dump(pool, "all")[0])
        assert sorted(header) == sorted(json_keys), (header, json_keys)
        assert len(body) == scenario.truth["pools"][pool]["size"]
        col = header.index("state")
        in_use = {int(r[0], 16) for r in body if r[col] == "in-use"}
        assert in_use == as_ints(scenario.truth["pools"][pool]["held"])


def test_mbuf_fields_match_what_the_program_set(scenario):
    truth = scenario.truth["pools"]["mbufs"]
    rows = {r["addr"]: r for r in scenario.dump("mbufs", "in-use")}
    rows = {int(a, 16): r for a, r in rows.items()}
    for addr, want in truth["mbufs"].items():
        got = rows[int(addr, 16)]
        for key in MBUF_FIELDS:
            if key == "next":
                g = got["next"] and int(got["next"], 16)
                w = want["next"] and int(want["next"], 16)
                assert g == w, (addr, key)
            else:
                assert got[key] == want[key], (addr, key, got)
    head = rows[int(truth["chain_head"], 16)]
    assert head["nb_segs"] == 2 and head["next"] is not None
    assert head["pkt_len"] == 2 * head["data_len"]
    # free mbufs carry the fields too
    for row in scenario.dump("mbufs", "free")[:3]:
        assert all(key in row for key in MBUF_FIELDS), row


def test_plain_pools_have_no_mbuf_fields(scenario):
    row = scenario.dump("cached", "all")[0]
    assert "pkt_len" not in row and "nb_segs" not in row, row


def _object(scenario, label):
    text = scenario.section(f"object-{label}")
    m = OBJECT_LINE.search(text)
    assert m, f"no object line for {label} in:\n{text}\n{scenario.gdb}"
    index, pool, start, offset, state = m.groups()
    return int(index), pool, int(start, 16), int(offset), state, text


def _index_of(scenario, pool, addr):
    for row in scenario.dump(pool, "all"):
        if int(row["addr"], 16) == addr:
            return row["index"]
    raise AssertionError(f"{addr:#x} not in dump of {pool}")


@pytest.mark.parametrize("label, pool, offset, state", [
    ("held", "cached", 0, "in-use"),
    ("inside", "cached", 5, "in-use"),
    ("freed", "cached", 0, "free"),
    ("stack-inside", "stack", 17, "in-use"),
    ("mbuf", "mbufs", 0, "in-use"),
])
def test_object(scenario, label, pool, offset, state):
    index, got_pool, start, got_offset, got_state, _ = _object(scenario, label)
    assert (got_pool, got_offset, got_state) == (pool, offset, state)
    assert start == scenario.probes[label] - offset
    assert index == _index_of(scenario, pool, start)


def test_object_mbuf_prints_mbuf_fields(scenario):
    *_, text = _object(scenario, "mbuf")
    head = scenario.truth["pools"]["mbufs"]["mbufs"][scenario.truth["pools"]["mbufs"]["chain_head"]]
    assert re.search(rf"pkt_len\W+{head['pkt_len']}\b", text), text
    assert re.search(rf"nb_segs\W+2\b", text), text
    assert head["next"] in text, text


def test_object_outside_every_pool(scenario):
    addr = scenario.probes["nopool"]
    assert not OBJECT_LINE.search(scenario.section("object-nopool"))
    assert f"mptrack: {addr:#x} is not inside any mempool object" in scenario.gdb.error_lines()


def _shows_bytes(text, data: bytes) -> bool:
    """A hex dump shows ``data``: as its ASCII column, or as hex digits."""
    if data.decode() in text:
        return True
    digits = re.sub(r"[^0-9a-f]", "", text.lower())
    return data.hex() in digits


def test_dump_hex_shows_object_bytes(scenario):
    text = scenario.section("hex")
    assert _shows_bytes(text, b"mptrack-"), text


def test_dump_hex_shows_mbuf_payloads(scenario):
    text = scenario.section("hex-mbufs")
    # main lcore's mbufs 0, 1 (chained), 4..7 and the worker's 103..105
    for n in (0, 1, 4, 5, 6, 7, 103, 104, 105):
        assert _shows_bytes(text, f"mptrack-test-{n}".encode()), f"payload {n} not in:\n{text}"
