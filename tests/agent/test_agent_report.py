"""python3 -m gdb_mptrack report: leaks and faults from an agent log or dump, symbolized."""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
import signal
import subprocess
import sys

import pytest

from agent_support import wait_file

REPO = __import__("pathlib").Path(__file__).resolve().parents[2]


def report(*args, check=True):
    res = subprocess.run([sys.executable, "-m", "gdb_mptrack", "report", *map(str, args)],
                         cwd=REPO, capture_output=True, text=True)
    if check:
        assert res.returncode == 0, res.stderr
    return res


@pytest.fixture
def leak_log(agent, agent_programs, tmp_path):
    log = tmp_path / "leak.log"
    dump = tmp_path / "leak.csv"
    proc, truth_path = agent.start(agent_programs["agent_prog"], "malloc-leak", MPTRACK_LOG=log,
                                   MPTRACK_MALLOC=1, MPTRACK_DUMP=dump)
    wait_file(truth_path, proc)
    proc.send_signal(signal.SIGRTMIN)
    wait_file(dump, proc)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    return log, dump, json.loads(truth_path.read_text())


def test_json_groups_the_leak_with_file_and_line(leak_log):
    log, _, truth = leak_log
    data = json.loads(report(log, "--format", "json").stdout)
    top = data["leaks"][0]
    assert top["count"] == 5 and top["bytes"] == 500 and top["pool"] == "rte_malloc"
    assert top["backtrace"][0].startswith("leak_block+") and "agent_prog.c:" in top["backtrace"][0]
    assert {int(a, 16) for a in top["addresses"]} == {int(a, 16) for a in truth["leaked"]}
    assert not any("churn_blocks" in f for g in data["leaks"] for f in g["backtrace"])
    assert data["faults"] == [] and data["lost"] == 0


def test_dump_input_and_other_formats(leak_log):
    _, dump, _ = leak_log
    table = report(dump).stdout
    assert "5 in use from pool rte_malloc, 500 bytes" in table and "leak_block+" in table
    rows = list(csv.DictReader(io.StringIO(report(dump, "--format", "csv").stdout)))
    assert rows[0]["count"] == "5" and rows[0]["backtrace"].startswith("leak_block+")
    folded = report(dump, "--format", "folded").stdout.splitlines()
    assert folded[0].startswith("rte_malloc;") and folded[0].endswith(" 5")
    assert folded[0].split()[0].split(";")[-1] == "leak_block"
    cg = report(dump, "--format", "callgrind").stdout
    assert cg.startswith("# callgrind format") and "events: Objects Bytes" in cg
    assert "cfn=leak_block+" in cg


def test_table_summary_and_colour(leak_log):
    """The table format starts with a tabulate summary; --color always colours the same text."""
    _, dump, truth = leak_log
    plain = report(dump, "--color", "never").stdout
    lines = plain.splitlines()
    header = next(i for i, line in enumerate(lines) if line.split()[:3] == ["group", "in", "use"])
    first = lines[header + 2]
    assert first.split()[:4] == ["1", "5", "500", "rte_malloc"] and " leak_block+" in first, plain
    assert "\x1b[" not in plain
    assert report(dump).stdout == plain    # auto: stdout is not a terminal here
    coloured = report(dump, "--color", "always").stdout
    assert "\x1b[" in coloured and re.sub(r"\x1b\[[0-9;]*m", "", coloured) == plain
    # other formats are never coloured
    assert "\x1b[" not in report(dump, "--format", "csv", "--color", "always").stdout


def test_binaries_found_under_paths(leak_log, agent_programs, tmp_path):
    """Maps that name a path this machine lacks: --paths finds the binary by name."""
    _, dump, _ = leak_log
    program = agent_programs["agent_prog"]
    bins = tmp_path / "bins"
    bins.mkdir()
    shutil.copy(program, bins / program.name)
    maps = tmp_path / "other.maps"
    maps.write_text((dump.parent / (dump.name + ".maps")).read_text()
                    .replace(str(program), "/elsewhere/agent_prog"))
    without = report(dump, "--maps", maps, "--format", "json").stdout
    assert "leak_block" not in without
    found = json.loads(report(dump, "--maps", maps, "--paths", f"/nonexistent:{bins}",
                              "--format", "json").stdout)
    assert found["leaks"][0]["backtrace"][0].startswith("leak_block+")


def test_faults_from_the_log(agent, agent_programs, tmp_path):
    log = tmp_path / "df.log"
    agent.run(agent_programs["agent_prog"], "double-free", MPTRACK_LOG=log,
              MPTRACK_ON_ERROR="log")
    data = json.loads(report(log, "--format", "json").stdout)
    (f,) = data["faults"]
    assert f["kind"] == "duplicate free" and f["pool"] == "agent_pool"
    assert f["backtrace"][0].startswith("give_back_again+")
    table = report(log).stdout.splitlines()
    header = table.index(next(line for line in table if line.split()[:2] == ["fault", "pool"]))
    row = table[header + 2].split()
    assert row[:3] == ["duplicate", "free", "agent_pool"] and row[4].startswith("give_back_again+")


def test_not_a_log_is_one_line(tmp_path):
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"hello\n")
    res = report(bad, check=False)
    assert res.returncode != 0 and "Traceback" not in res.stderr
    assert res.stderr.strip().startswith("gdb_mptrack: ") and len(res.stderr.strip().splitlines()) == 1
    res = report(tmp_path / "missing.log", check=False)
    assert res.returncode != 0 and "cannot read" in res.stderr
