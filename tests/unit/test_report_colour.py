"""report_colour: colouring never changes the report's text."""

import re

from gdb_mptrack.report_colour import colour

SAMPLE = """leak.log: pid 42, 3 objects or blocks in use in 2 groups, 7 events lost

group    in use    bytes    pool        oldest (s)    allocated at
-------  --------  -------  ----------  ------------  ------------------------
1        2         200      rte_malloc  0.500         leak_block+0x1a (prog.c:167)

duplicate free: pool agent_pool object 0x10000
    #0 give_back_again+0xf6 (./prog) at prog.c:88
    #1 0x7f00 (unbalanced ( paren
odd text: 0 00 0x tabs\tand unicode \u00e9

2 faults
"""


def strip(text):
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


def test_colour_keeps_the_text():
    out = colour(SAMPLE)
    assert out != SAMPLE and strip(out) == SAMPLE


def test_headings_and_frames_are_styled():
    out = colour(SAMPLE)
    line = next(l for l in out.splitlines() if "give_back_again" in l)
    assert re.search(r"\x1b\[[0-9;]+m#0\x1b.*\x1b\[[0-9;]+mgive_back_again\+0xf6\x1b", line), repr(line)
    assert re.search(r"\x1b\[[0-9;]+m\(\./prog\)\x1b", line), repr(line)
    assert any(re.match(r"\x1b\[[0-9;]+mduplicate free: pool", l) for l in out.splitlines())
