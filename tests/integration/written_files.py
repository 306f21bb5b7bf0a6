"""Files that mptrack commands wrote in a test's gdb run (``--json FILE``, ``--csv FILE``).

Each reader fails the test with the run's label and gdb's output when the file
is missing, and with the start of the text when it is not JSON.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path


def written_text(out: Path, name: str, label: str, gdb) -> str:
    path = out / name
    if not path.exists():
        raise AssertionError(f"[{label}] mptrack wrote no {name}\n{gdb}")
    return path.read_text()


def load_written_json(out: Path, name: str, label: str, gdb):
    text = written_text(out, name, label, gdb)
    try:
        return json.loads(text)
    except ValueError as exc:
        raise AssertionError(f"[{label}] {name} is not JSON ({exc}):\n{text[:2000]}") from None


def csv_lines(out: Path, name: str, label: str, gdb) -> io.StringIO:
    """The CSV file's text, for csv.reader or csv.DictReader."""
    return io.StringIO(written_text(out, name, label, gdb), newline="")
