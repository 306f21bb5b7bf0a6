"""python3 -m gdb_mptrack preload-path: builds the agent once into the cache, prints its path."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def preload_path(cache: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, MPTRACK_CACHE_DIR=str(cache))
    return subprocess.run([sys.executable, "-m", "gdb_mptrack", "preload-path"], cwd=REPO,
                          env=env, capture_output=True, text=True)


def test_preload_path_builds_once_and_reuses(tmp_path):
    first = preload_path(tmp_path / "cache")
    assert first.returncode == 0, first.stderr
    path = Path(first.stdout.strip())
    assert path.is_absolute() and path.exists() and path.parent == tmp_path / "cache"
    mtime = path.stat().st_mtime_ns
    second = preload_path(tmp_path / "cache")
    assert second.stdout.strip() == str(path) and path.stat().st_mtime_ns == mtime
    out = subprocess.run(["nm", "-D", "--defined-only", str(path)], capture_output=True,
                         text=True, check=True).stdout
    for sym in ("mptrack_agent_tables", "rte_mempool_create_empty", "rte_mempool_register_ops",
                "rte_free", "mptrack_agent_dump"):
        assert f" {sym}\n" in out
    assert not list((tmp_path / "cache").glob(".libmptrack_agent-*")), "temporary left behind"


def test_unwritable_cache_is_one_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    res = preload_path(blocker / "cache")
    assert res.returncode != 0 and "Traceback" not in res.stderr
    assert res.stderr.startswith("gdb_mptrack: cannot build the agent: cannot create")
