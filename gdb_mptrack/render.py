"""Turning pools and objects into tables, CSV, JSON and hex dumps.

Pure functions over `pools.Pool` objects and plain dicts; the commands
decide where the text goes.  Addresses are "0x..." lowercase strings in
every format; numbers stay numbers in JSON.  Colour (pygments) is applied
only when the caller says styling is on.
"""

import csv
import io
import json
import operator

from tabulate import tabulate

from .decode import MBUF_FIELDS

POOL_KEYS = ("name", "addr", "ops", "size", "elt_size", "cache_size", "avail", "in_use", "cache_fill", "pktmbuf")
OBJECT_KEYS = ("addr", "index", "state", "where")


def hexaddr(value):
    return None if value is None else "0x%x" % value


def pool_record(pool):
    h = pool.header
    return {
        "name": pool.name,
        "addr": hexaddr(pool.addr),
        "ops": pool.ops,
        "size": h.size,
        "elt_size": h.elt_size,
        "cache_size": h.cache_size,
        "avail": pool.avail,
        "in_use": pool.in_use,
        "cache_fill": {str(lcore): n for lcore, n in sorted(pool.cache_fill.items())},
        "pktmbuf": pool.pktmbuf,
    }


def pools_table(records):
    rows = []
    for r in records:
        fill = " ".join("%s:%d" % item for item in r["cache_fill"].items()) or "-"
        rows.append([r["name"], r["addr"], r["ops"] + (" (mbuf)" if r["pktmbuf"] else ""), r["size"],
                     r["elt_size"], r["cache_size"], _unknown(r["avail"]), _unknown(r["in_use"]), fill])
    return tabulate(rows, headers=["name", "addr", "ops", "size", "elt_size", "cache", "avail", "in use",
                                   "cache fill (lcore:n)"], disable_numparse=True)


def _unknown(value):
    return "unknown" if value is None else value


def object_keys(pktmbuf):
    return OBJECT_KEYS + (MBUF_FIELDS if pktmbuf else ())


def object_records(pool, rows):
    """JSON-ready dicts for (index, addr, state, where) rows, with mbuf fields for mbuf pools."""
    if not pool.pktmbuf:  # one comprehension: a dump may hold millions of rows
        return [{"addr": "0x%x" % addr, "index": index, "state": state, "where": where}
                for index, addr, state, where in rows]
    records = []
    for index, addr, state, where in rows:
        record = {"addr": hexaddr(addr), "index": index, "state": state, "where": where}
        mbuf = pool.mbuf(addr)
        for key in MBUF_FIELDS:
            record[key] = mbuf[key]
        record["next"] = hexaddr(mbuf["next"])
        records.append(record)
    return records


def objects_table(records, keys):
    return tabulate([[_cell(r[k]) for k in keys] for r in records], headers=list(keys), disable_numparse=True)


def _cell(value):
    if value is None:
        return "-"
    return value


def to_csv(records, keys):
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(keys)
    # The csv module writes None as an empty field; the rows are made and written in C.
    writer.writerows(map(operator.itemgetter(*keys), records) if len(keys) > 1 else ([r[keys[0]]] for r in records))
    return out.getvalue()


def to_json(records):
    return json.dumps(records, indent=1) + "\n"


def hexdump(data, base, color=False):
    """`hexdump -C` style lines for data at address base (pygments-coloured when color)."""
    lines = []
    for off in range(0, len(data), 16):
        chunk = bytes(data[off:off + 16])
        hexpart = " ".join("%02x" % b for b in chunk[:8]) + "  " + " ".join("%02x" % b for b in chunk[8:])
        text = "".join(chr(b) if 0x20 <= b < 0x7f else "." for b in chunk)
        lines.append("%016x  %-48s  |%s|" % (base + off, hexpart, text))
    out = "\n".join(lines) + "\n" if lines else ""
    if color and out:
        from pygments import highlight
        from pygments.formatters import TerminalFormatter
        from pygments.lexers import HexdumpLexer
        out = highlight(out, HexdumpLexer(), TerminalFormatter())
    return out


def describe_object(pool, index, obj, addr, state, where):
    """One line naming the object that holds addr (the `mptrack object` contract)."""
    offset = addr - obj
    if offset < 0:
        place = "in the header (%d bytes before) of" % -offset
        return "0x%x is %s object %d of pool '%s' at 0x%x: %s%s" % (
            addr, place, index, pool.name, obj, state, " (%s)" % where if where else "")
    return "0x%x is object %d of pool '%s' at 0x%x +%d: %s%s" % (
        addr, index, pool.name, obj, offset, state, " (%s)" % where if where else "")


def describe_mbuf(mbuf):
    return ("  mbuf: refcnt=%d port=%d nb_segs=%d pkt_len=%d data_len=%d ol_flags=0x%x next=%s "
            "buf_addr=0x%x data_off=%d buf_len=%d" % (
                mbuf["refcnt"], mbuf["port"], mbuf["nb_segs"], mbuf["pkt_len"], mbuf["data_len"],
                mbuf["ol_flags"], hexaddr(mbuf["next"]) or "NULL", mbuf["buf_addr"], mbuf["data_off"],
                mbuf["buf_len"]))
