"""Helpers for the `mptrack track` tests against tests/programs/track_faults.c.

They build on conftest.py's ``lab`` (unique --file-prefix, gdb batch runner,
cleanup) and ``programs`` (debug and stripped builds); nothing here imports
gdb_mptrack.

* ``run_mode``: run ``track_faults --mode MODE`` under gdb with some steps and
  return a ``TrackRun`` (the gdb result, the program's truth file, the
  directory the steps write their files into).
* ``start_waiting``: start ``track_faults --mode wait`` in the background, for
  attach tests, with the trigger file that makes it commit its fault.
* ``fault_reports``, ``json_in``, ``site_line``: read what gdb printed.
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass
from pathlib import Path

from written_files import csv_lines, load_written_json

SOURCE = Path(__file__).resolve().parent.parent / "programs" / "track_faults.c"

FAULT_KINDS = ("duplicate free", "foreign free", "stray free", "duplicate alloc",
               "double rte_free", "rte_free of unknown pointer")
FAULT_HEADER = re.compile(r"^mptrack: (%s)\b.*$" % "|".join(re.escape(k) for k in FAULT_KINDS),
                          re.M)

# Sourced in gdb once the program has written its truth file: each top-level
# hex string KEY becomes $t_KEY and each list of them $t_KEY0, $t_KEY1, ...
_TRUTH_SCRIPT = """\
import json
for _k, _v in json.load(open({truth!r})).items():
    if isinstance(_v, str) and _v.startswith("0x"):
        gdb.set_convenience_variable("t_" + _k, int(_v, 16))
    elif isinstance(_v, list):
        for _i, _x in enumerate(_v):
            if isinstance(_x, str) and _x.startswith("0x"):
                gdb.set_convenience_variable("t_%s%d" % (_k, _i), int(_x, 16))
"""


def site_line(function: str, needle: str) -> int:
    """Line number, in track_faults.c, of the first line containing ``needle``
    after the definition of ``function`` (where gdb puts that frame)."""
    lines = SOURCE.read_text().splitlines()
    start = next((i for i, line in enumerate(lines) if re.match(rf"{function}\(", line)), None)
    assert start is not None, f"no definition of {function} in {SOURCE}"
    for i in range(start, len(lines)):
        if needle in lines[i]:
            return i + 1
    raise AssertionError(f"{needle!r} not found in {function}")


@dataclass
class TrackRun:
    """One gdb run of track_faults in one mode."""
    mode: str
    build: str
    out: Path
    truth_path: Path
    gdb: object  # conftest.GdbResult

    @property
    def truth(self) -> dict:
        if not self.truth_path.exists():
            raise AssertionError(f"[{self.mode}] the program wrote no truth file\n{self.gdb}")
        return json.loads(self.truth_path.read_text())

    def section(self, label: str) -> str:
        return self.gdb.section(label)

    @property
    def all_output(self) -> str:
        return self.gdb.stdout + self.gdb.stderr

    def load_json(self, name: str):
        return load_written_json(self.out, name, f"{self.mode}-{self.build}", self.gdb)

    def load_csv(self, name: str) -> list[dict]:
        return list(csv.DictReader(csv_lines(self.out, name, f"{self.mode}-{self.build}", self.gdb)))

    def reports(self, label: str | None = None) -> list[tuple[str, str]]:
        return fault_reports(self.gdb, label)

    def report(self, label: str, kind: str) -> str:
        """The one fault report printed during step ``label``; it must be of ``kind``."""
        found = self.reports(label)
        assert len(found) == 1, (f"expected one fault report during {label!r}, got "
                                 f"{[k for k, _ in found]}\n{self.gdb}")
        got_kind, text = found[0]
        assert got_kind == kind, f"expected a {kind!r} report, got {got_kind!r}:\n{text}"
        return text


def fault_reports(res, label: str | None = None) -> list[tuple[str, str]]:
    """(kind, text) of each fault report: in stdout during step ``label`` (or
    anywhere), and on stderr (where the order of steps is lost).  A report runs
    from its ``mptrack: KIND`` line to the next report or the end of the step."""
    texts = [res.section(label) if label else res.stdout, res.stderr]
    found = []
    for text in texts:
        heads = list(FAULT_HEADER.finditer(text))
        for i, m in enumerate(heads):
            end = heads[i + 1].start() if i + 1 < len(heads) else len(text)
            found.append((m.group(1), text[m.start():end]))
    return found


def json_in(text: str):
    """The JSON document printed in ``text`` (a step's stdout)."""
    text = text.strip()
    try:
        return json.loads(text)
    except ValueError:
        pass
    start = min((i for i in (text.find("["), text.find("{")) if i >= 0), default=-1)
    end = max(text.rfind("]"), text.rfind("}"))
    assert start >= 0 and end > start, f"no JSON in:\n{text}"
    try:
        return json.loads(text[start:end + 1])
    except ValueError as exc:
        raise AssertionError(f"not JSON ({exc}):\n{text}") from None


def hex_ints(text: str) -> set[int]:
    return {int(h, 16) for h in re.findall(r"0x[0-9a-fA-F]+", text)}


def frames_naming(text: str, function: str) -> list[str]:
    """Lines of ``text`` that name ``function`` as a whole word."""
    return [line for line in text.splitlines() if re.search(rf"\b{function}\b", line)]


def eal_args(lab, truth: Path, mode: str, *extra) -> list[str]:
    return lab.eal_args(lab.prefix(), truth) + ["--mode", mode] + [str(e) for e in extra]


def run_mode(lab, programs, mode: str, build: str, steps, *, name: str | None = None,
             timeout: float = 120) -> TrackRun:
    """``track_faults --mode MODE`` run under gdb with ``steps``.

    ``steps`` is a function of (out directory, truth-script path) returning
    the gdb steps; source the truth script once the program has written its
    truth file to get $t_* variables.  The program is killed on teardown.
    """
    binary = programs["track_faults"].build(build)
    out = lab.subdir(f"{name or mode}-{build}")
    truth_path = out / "truth.json"
    script = out / "truth.py"
    script.write_text(_TRUTH_SCRIPT.format(truth=str(truth_path)))
    res = lab.run_gdb(steps(out, script), args=[binary] + eal_args(lab, truth_path, mode),
                      cwd=out, timeout=timeout)
    run = TrackRun(mode, build, out, truth_path, res)
    if truth_path.exists():
        lab.kill_on_teardown(run.truth["pid"])
    return run


def start_waiting(lab, binary: Path):
    """Start ``binary --mode=wait`` in the background (conftest's ``Started``,
    truth file written); it commits its fault once ``trigger_of(started)``
    exists."""
    started = lab.start(binary, "mode=wait")
    started.wait_truth()
    return started


def trigger_of(started) -> Path:
    """The file whose existence makes ``--mode wait`` double-free (its default)."""
    return started.cwd / "trigger"
