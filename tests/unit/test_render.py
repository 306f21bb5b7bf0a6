"""render.py: pool records, object tables, CSV, JSON, hex dumps and the `mptrack object` line."""

import csv
import io
import json
import re

import pytest
from pygments.lexers import HexdumpLexer
from pygments.token import Error

from gdb_mptrack import render
from gdb_mptrack.decode import MBUF_FIELDS

from mptrack_fakes import PoolImage, put

BASE = 0x7f0000000000
DESCRIBE = re.compile(r"object (\d+) of pool '([^']+)' at (0x[0-9a-f]+) \+(\d+): (in-use|free)")


@pytest.fixture
def image(mem, layout):
    img = PoolImage(mem, layout, BASE, name="cached", n=6, cache_size=4)
    img.ring_put([img.objects[1]])
    img.cache_put(2, [img.objects[4], img.objects[5]])
    return img


@pytest.fixture
def mbuf_image(mem, layout):
    size = layout["rte_mbuf"].size + 0 + 256
    img = PoolImage(mem, layout, BASE + 0x1000000, name="mbufs", n=3, elt_size=size, cache_size=0)
    put(mem, layout, "rte_pktmbuf_pool_private", img.private_addr, mbuf_data_room_size=256, mbuf_priv_size=0)
    m0, m1 = img.objects[0], img.objects[1]
    put(mem, layout, "rte_mbuf", m0, refcnt=1, port=2, nb_segs=2, pkt_len=300, data_len=200, ol_flags=0x182,
        next=m1, buf_addr=m0 + 128, data_off=0, buf_len=256, pool=img.addr)
    put(mem, layout, "rte_mbuf", m1, refcnt=1, port=2, nb_segs=1, pkt_len=100, data_len=100, ol_flags=0,
        next=0, buf_addr=m1 + 128, data_off=0, buf_len=256, pool=img.addr)
    img.ring_put([img.objects[2]])
    return img


# --- pools -------------------------------------------------------------------

def test_pool_record_keys_and_values(image):
    record = render.pool_record(image.pool())
    assert tuple(record) == render.POOL_KEYS
    assert record == {"name": "cached", "addr": "0x%x" % image.addr, "ops": "ring_mp_mc", "size": 6,
                      "elt_size": 64, "cache_size": 4, "avail": 3, "in_use": 3, "cache_fill": {"2": 2},
                      "pktmbuf": False}
    assert re.fullmatch(r"0x[0-9a-f]+", record["addr"])
    assert int(record["addr"], 16) == image.addr
    assert json.loads(json.dumps(record)) == record


def test_pool_record_of_undecoded_driver(mem, layout):
    record = render.pool_record(PoolImage(mem, layout, BASE, n=4, ops="bucket", cache_size=0).pool())
    assert (record["avail"], record["in_use"], record["ops"]) == (None, None, "bucket")
    assert "unknown" in render.pools_table([record])


def test_pools_table(image, mbuf_image):
    records = [render.pool_record(image.pool()), render.pool_record(mbuf_image.pool())]
    assert records[1]["pktmbuf"] is True
    lines = render.pools_table(records).splitlines()
    assert lines[0].split()[:3] == ["name", "addr", "ops"]
    row = dict(zip(("name", "addr", "ops"), lines[2].split()))
    assert row == {"name": "cached", "addr": "0x%x" % image.addr, "ops": "ring_mp_mc"}
    assert lines[2].split()[-1] == "2:2"
    assert "ring_mp_mc (mbuf)" in lines[3]
    assert lines[3].split()[-1] == "-"


# --- objects -----------------------------------------------------------------

def test_object_records(image):
    pool = image.pool()
    records = render.object_records(pool, pool.states())
    assert render.object_keys(False) == ("addr", "index", "state", "where")
    assert records[1] == {"addr": "0x%x" % image.objects[1], "index": 1, "state": "free", "where": "ring"}
    assert records[0] == {"addr": "0x%x" % image.objects[0], "index": 0, "state": "in-use", "where": None}
    assert [r["where"] for r in records] == [None, "ring", None, None, "lcore 2 cache", "lcore 2 cache"]


def test_object_records_of_mbufs(mbuf_image):
    pool = mbuf_image.pool()
    records = render.object_records(pool, pool.states())
    keys = render.object_keys(True)
    assert keys == render.OBJECT_KEYS + MBUF_FIELDS
    assert all(tuple(r) == keys for r in records)
    assert records[0]["refcnt"] == 1 and records[0]["port"] == 2 and records[0]["pkt_len"] == 300
    assert records[0]["next"] == "0x%x" % mbuf_image.objects[1]
    assert records[1]["next"] is None
    assert records[2]["state"] == "free" and records[2]["where"] == "ring"


def test_to_csv(image):
    pool = image.pool()
    keys = render.object_keys(False)
    text = render.to_csv(render.object_records(pool, pool.states()), keys)
    lines = text.splitlines()
    assert lines[0] == "addr,index,state,where"
    assert lines[0].startswith("addr")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == 6
    assert rows[0] == {"addr": "0x%x" % image.objects[0], "index": "0", "state": "in-use", "where": ""}
    assert rows[4] == {"addr": "0x%x" % image.objects[4], "index": "4", "state": "free", "where": "lcore 2 cache"}
    assert text.endswith("\n") and "\r" not in text


def test_to_csv_of_mbufs_starts_with_addr(mbuf_image):
    pool = mbuf_image.pool()
    keys = render.object_keys(True)
    text = render.to_csv(render.object_records(pool, pool.states()), keys)
    header = text.splitlines()[0].split(",")
    assert header[0] == "addr" and header == list(keys)
    assert text.splitlines()[1].split(",")[header.index("pkt_len")] == "300"


def test_to_json(mbuf_image):
    pool = mbuf_image.pool()
    records = render.object_records(pool, pool.states())
    text = render.to_json(records)
    assert text.endswith("\n")
    back = json.loads(text)
    assert back == records
    assert isinstance(back[0]["index"], int) and isinstance(back[0]["ol_flags"], int)
    assert back[0]["ol_flags"] == 0x182
    assert back[0]["addr"] == "0x%x" % mbuf_image.objects[0]
    assert json.loads(render.to_json([])) == []


def test_objects_table(image):
    pool = image.pool()
    keys = render.object_keys(False)
    lines = render.objects_table(render.object_records(pool, pool.states()), keys).splitlines()
    assert lines[0].split() == ["addr", "index", "state", "where"]
    assert lines[2].split() == ["0x%x" % image.objects[0], "0", "in-use", "-"]
    assert lines[6].split() == ["0x%x" % image.objects[4], "4", "free", "lcore", "2", "cache"]


# --- hex dumps ---------------------------------------------------------------

def test_hexdump_lines_like_hexdump_C():
    data = b"ABCDEFGHIJKLMNOP" + b"Q\x00\x7f\xff"
    assert render.hexdump(data, 0x7f0000001000) == (
        "00007f0000001000  41 42 43 44 45 46 47 48  49 4a 4b 4c 4d 4e 4f 50  |ABCDEFGHIJKLMNOP|\n"
        "00007f0000001010  51 00 7f ff                                       |Q...|\n")


def test_hexdump_columns():
    data = bytes(range(0x20, 0x20 + 40)) + b"\n\t\x80"
    lines = render.hexdump(data, 0x1000).splitlines()
    assert len(lines) == 3
    parsed = [re.fullmatch(r"([0-9a-f]{16})  (.{48}) +\|(.*)\|", line) for line in lines]
    assert all(parsed), lines
    assert [int(m.group(1), 16) for m in parsed] == [0x1000, 0x1010, 0x1020]
    assert bytes.fromhex("".join(m.group(2) for m in parsed)) == data
    assert "".join(m.group(3) for m in parsed) == data[:40].decode() + "..."


def test_hexdump_empty():
    assert render.hexdump(b"", 0) == ""
    assert render.hexdump(b"", 0, color=True) == ""


def test_hexdump_colour_yields_ansi_escapes():
    plain = render.hexdump(b"hello, mempool!!" * 2, 0x2000)
    coloured = render.hexdump(b"hello, mempool!!" * 2, 0x2000, color=True)
    assert "\x1b[" not in plain
    assert "\x1b[" in coloured
    assert re.sub(r"\x1b\[[0-9;]*m", "", coloured) == plain


def test_hexdump_colour_marks_nothing_as_an_error():
    """pygments' HexdumpLexer must understand the dump, or it paints columns red as errors."""
    plain = render.hexdump(b"ABCDEFGHIJKLMNOPQRST", 0x7f0000001000)
    errors = [text for token, text in HexdumpLexer().get_tokens(plain) if token in Error]
    assert errors == []


# --- the `mptrack object` line ---------------------------------------------------

def test_describe_object_inside_an_object(image):
    pool = image.pool()
    index, obj = pool.contains(image.objects[3] + 5)
    line = render.describe_object(pool, index, obj, image.objects[3] + 5, "in-use", None)
    m = DESCRIBE.search(line)
    assert m, line
    assert m.groups() == ("3", "cached", "0x%x" % image.objects[3], "5", "in-use")
    assert line.startswith("0x%x is " % (image.objects[3] + 5))
    assert "(" not in line


def test_describe_object_free_names_where(image):
    pool = image.pool()
    rows = {index: (state, where) for index, _, state, where in pool.states()}
    state, where = rows[4]
    line = render.describe_object(pool, 4, image.objects[4], image.objects[4], state, where)
    m = DESCRIBE.search(line)
    assert m, line
    assert m.groups() == ("4", "cached", "0x%x" % image.objects[4], "0", "free")
    assert line.endswith(": free (lcore 2 cache)")


def test_describe_object_in_its_header(image):
    pool = image.pool()
    addr = image.objects[2] - 10
    index, obj = pool.contains(addr)
    line = render.describe_object(pool, index, obj, addr, "in-use", None)
    assert line == "0x%x is in the header (10 bytes before) of object 2 of pool 'cached' at 0x%x: in-use" % (
        addr, image.objects[2])


def test_describe_mbuf(mbuf_image):
    pool = mbuf_image.pool()
    line = render.describe_mbuf(pool.mbuf(mbuf_image.objects[0]))
    assert "refcnt=1 port=2 nb_segs=2 pkt_len=300 data_len=200 ol_flags=0x182" in line
    assert "next=0x%x" % mbuf_image.objects[1] in line
    assert "next=NULL" in render.describe_mbuf(pool.mbuf(mbuf_image.objects[1]))
