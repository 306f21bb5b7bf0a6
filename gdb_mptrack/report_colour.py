"""Colour for the text of ``python3 -m gdb_mptrack report`` (its table format).

A pygments RegexLexer for that text, which report.py writes: summary tables
(tabulate's "simple" format), group headings ("5 in use from pool ..."),
fault headings ("duplicate free: pool ..."), and frames
("    #0 leak_block+0x1f (./prog) at prog.c:88").  Colouring is a view of the
same text: stripping the escapes gives back exactly the uncoloured report.
"""

from pygments import highlight
from pygments.formatters import TerminalFormatter
from pygments.lexer import RegexLexer, bygroups
from pygments.token import Generic, Name, Number, String, Text

FAULT_KINDS = r"(?:duplicate free|foreign free|stray free|duplicate alloc)"


class ReportLexer(RegexLexer):
    """The report's lines, one rule each; anything else stays plain text."""

    name = "gdb-mptrack report"
    tokens = {
        "root": [
            (r"^(\s+)(#\d+)( )([^\s(]+)", bygroups(Text, Number, Text, Name.Function)),
            (r"\([^)\n]*\)", String),
            (r" at \S+:\d+", String),
            (r"^" + FAULT_KINDS + r":[^\n]*", Generic.Error),
            (r"^\d+ in use from pool[^\n]*", Generic.Heading),
            (r"^\d+ faults$", Generic.Heading),
            (r"^-[- ]*$", Generic.Subheading),
            (r"0x[0-9a-fA-F]+", Number.Hex),
            (r"\n", Text),
            (r"[^\n(0]+|.", Text),
        ],
    }


def colour(text: str) -> str:
    """The report text with terminal colours."""
    return highlight(text, ReportLexer(stripnl=False), TerminalFormatter())
