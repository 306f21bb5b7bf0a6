"""Fixtures for the preload agent's tests.

* ``agent_lib`` (session): the agent built by ``gdb_mptrack.agent.build`` into
  a fresh directory (the same code path as ``python3 -m gdb_mptrack
  preload-path``, without touching the user's cache).
* ``agent_programs`` (session): every ``tests/agent/programs/*.c`` compiled
  against the installed DPDK with ``-g -rdynamic`` (the agent's backtraces name
  the programs' functions through their dynamic symbols).
* ``run_agent``: runs a program under ``LD_PRELOAD`` with EAL arguments and a
  unique ``--file-prefix`` (the ``lab`` fixture of tests/conftest.py removes
  /var/run/dpdk/PREFIX and kills what is left on teardown).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from gdb_mptrack import agent as agent_build

from agent_support import EAL, HERE, wait_file  # noqa: F401  (shared with the test modules)
RUN_TIMEOUT = 120


def dpdk_flags(what: str) -> list[str]:
    return subprocess.run(["pkg-config", what, "libdpdk"], check=True, capture_output=True,
                          text=True).stdout.split()


def compile_program(source: Path, out: Path, extra: list[str] | None = None) -> Path:
    cmd = (["cc", "-O1", "-g", "-Wall", "-rdynamic"] + (extra or []) + dpdk_flags("--cflags")
           + [str(source), "-o", str(out)] + dpdk_flags("--libs"))
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        pytest.fail(f"building {source.name} failed:\n{' '.join(cmd)}\n{res.stderr}")
    return out


@pytest.fixture(scope="session")
def agent_lib(tmp_path_factory) -> Path:
    try:
        return agent_build.build(tmp_path_factory.mktemp("agent"))
    except agent_build.BuildError as exc:
        pytest.fail(f"building the agent failed: {exc}")


@pytest.fixture(scope="session")
def agent_programs(tmp_path_factory) -> dict[str, Path]:
    outdir = tmp_path_factory.mktemp("agent-programs")
    return {src.stem: compile_program(src, outdir / src.stem)
            for src in sorted((HERE / "programs").glob("*.c"))}


@dataclass
class AgentRun:
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str
    truth: dict | None

    def faults(self) -> list[str]:
        """The agent's fault lines (each starts with 'mptrack: ')."""
        return [line for line in self.stderr.splitlines() if line.startswith("mptrack: ")]

    def report(self, index: int = 0) -> dict[str, str]:
        """Fault ``index``: {'line': first line, 'this free': frames text, ...}."""
        lines = self.stderr.splitlines()
        starts = [i for i, line in enumerate(lines) if line.startswith("mptrack: ")]
        i = starts[index]
        end = starts[index + 1] if index + 1 < len(starts) else len(lines)
        out = {"line": lines[i]}
        section = None
        for line in lines[i + 1:end]:
            if line.startswith("  ") and not line.startswith("    "):
                section = line.strip().split(" (")[0].rstrip(":")
                out[section] = ""
            elif section is not None and line.startswith("    "):
                out[section] += line.strip() + "\n"
        return out

    def __str__(self) -> str:
        return (f"$ {' '.join(self.argv)}\n--- exit {self.returncode}\n--- stdout:\n{self.stdout}"
                f"\n--- stderr:\n{self.stderr}")


class AgentRunner:
    def __init__(self, lab, lib: Path, workdir: Path):
        self.lab, self.lib, self.workdir = lab, lib, workdir

    def env(self, **agent_env) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("MPTRACK_", "RTE_MP_TRACK_"))}
        env["LD_PRELOAD"] = str(self.lib)
        env.update({k: str(v) for k, v in agent_env.items()})
        return env

    def eal(self) -> list[str]:
        return EAL + ["--file-prefix", self.lab.prefix()]

    def run(self, program: Path, mode: str, *, preload: bool = True, timeout=RUN_TIMEOUT,
            **agent_env) -> AgentRun:
        """Run ``program EAL -- TRUTH MODE`` to its end."""
        truth = self.workdir / f"truth-{mode}-{time.monotonic_ns()}.json"
        argv = [str(program)] + self.eal() + ["--", str(truth), mode]
        env = self.env(**agent_env)
        if not preload:
            env.pop("LD_PRELOAD")
        proc = self.lab.spawn(argv, env=env, cwd=self.workdir, stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            raise AssertionError(f"timed out after {timeout}s\n{out}\n{err}") from None
        data = json.loads(truth.read_text()) if truth.exists() else None
        return AgentRun(argv, proc.returncode, out, err, data)

    def start(self, program: Path, mode: str, **agent_env):
        """Start ``program`` in the background; returns (popen, truth path)."""
        truth = self.workdir / f"truth-{mode}-{time.monotonic_ns()}.json"
        argv = [str(program)] + self.eal() + ["--", str(truth), mode]
        log = open(self.workdir / f"{mode}-{time.monotonic_ns()}.log", "w+")
        proc = self.lab.spawn(argv, env=self.env(**agent_env), cwd=self.workdir,
                              stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        proc.log_file = log
        return proc, truth


@pytest.fixture
def agent(lab, agent_lib, tmp_path) -> AgentRunner:
    return AgentRunner(lab, agent_lib, tmp_path)
