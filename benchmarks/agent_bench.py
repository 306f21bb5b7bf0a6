"""Benchmark: per-object get/put cost under the preload agent, as ratios from one run.

    /usr/bin/python3 benchmarks/agent_bench.py [--rounds N] [--repeat R] [--markdown]

Builds benchmarks/agent_bench.c and the agent, then runs the program once per
configuration, R times round-robin (configurations interleaved, so that noise
from other work on the machine spreads over all of them).  Each run times, in
one process, interleaved 11 times, single get+put and bursts of 32 (ns per
object for one get and one put) on two identical pools without per-lcore
cache (ring_mp_mc): "benchpool", the one the agent tracks, and "refpool",
never tracked (MPTRACK_POOLS=benchpool).  Two ratios per configuration:

* vs no agent: the configuration's best time over its runs / the best time of
  the runs without the agent (separate processes);
* vs untracked pool: benchpool / refpool in the same process, in the run where
  benchpool was fastest (the same noise for both pools; refpool still passes
  through the agent's wrappers, about 1.0x: see "agent loaded, pool not
  tracked").

--markdown prints the table docs/agent.md records.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from gdb_mptrack import agent as agent_build  # noqa: E402

import bench_common  # noqa: E402  (benchmarks/bench_common.py, beside this file)

EAL = ["--no-huge", "-m", "256", "--no-pci", "-l", "0,1", "--log-level", "error"]
TRACKED = {"MPTRACK_POOLS": "benchpool"}

# name -> (preload?, environment)
CONFIGS = [
    ("untracked (no agent)", False, {}),
    ("agent loaded, pool not tracked", True, {"MPTRACK_POOLS": "none"}),
    ("tracked, no stacks (depth 0)", True, {**TRACKED, "MPTRACK_BT_DEPTH": "0"}),
    ("tracked, depth 1 (caller)", True, {**TRACKED, "MPTRACK_BT_DEPTH": "1"}),
    ("tracked, depth 8, cfi (default)", True, {**TRACKED, "MPTRACK_UNWIND": "cfi"}),
    ("tracked, depth 8, libunwind", True, {**TRACKED, "MPTRACK_UNWIND": "libunwind"}),
    ("tracked, depth 8, frame pointers", True, {**TRACKED, "MPTRACK_UNWIND": "fp"}),
    ("tracked, depth 8, glibc backtrace()", True, {**TRACKED, "MPTRACK_UNWIND": "glibc"}),
    ("tracked, depth 8, libunwind, 1 in 16 sampled", True,
     {**TRACKED, "MPTRACK_UNWIND": "libunwind", "MPTRACK_BT_SAMPLE": "16"}),
    ("tracked, depth 1, precise clock (rdtsc)", True,
     {**TRACKED, "MPTRACK_BT_DEPTH": "1", "MPTRACK_CLOCK": "tsc"}),
    ("tracked, depth 1, strict (xchg) states", True,
     {**TRACKED, "MPTRACK_BT_DEPTH": "1", "MPTRACK_STRICT": "1"}),
]


def build_program(out: Path) -> Path:
    flags = agent_build.dpdk_flags()
    cmd = (["cc", "-O2", "-g"] + flags[0] + [str(HERE / "agent_bench.c"), "-o", str(out)]
           + flags[1])
    subprocess.run(cmd, check=True)
    return out


def run_once(program: Path, lib: Path, preload: bool, env_extra: dict, rounds: int,
             n: int) -> dict[str, float]:
    prefix = f"mptbench{os.getpid()}x{n}"
    env = bench_common.agent_env(lib, preload, env_extra)
    try:
        out = subprocess.run([str(program)] + EAL + ["--file-prefix", prefix, "--", str(rounds)],
                             env=env, capture_output=True, text=True, timeout=600, check=True).stdout
    finally:
        shutil.rmtree(f"/var/run/dpdk/{prefix}", ignore_errors=True)
    result = {}
    for line in out.splitlines():
        key, value = line.split()
        result[key] = float(value)
    return result


def machine() -> str:
    cpu = ""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} CPUs, {platform.system()} {platform.release()}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=200000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args(argv)
    runs: dict[str, list[dict[str, float]]] = {name: [] for name, _, _ in CONFIGS}
    with tempfile.TemporaryDirectory() as tmp:
        program = build_program(Path(tmp) / "agent_bench")
        lib = agent_build.build(Path(tmp))
        n = 0
        for _ in range(args.repeat):
            for name, preload, env in CONFIGS:
                n += 1
                runs[name].append(run_once(program, lib, preload, env, args.rounds, n))
    base = runs[CONFIGS[0][0]]
    best = {k: min(r[k] for r in base) for k in ("single", "burst")}
    rows = []
    for name, _, _ in CONFIGS:
        rs = runs[name]
        single, burst = min(r["single"] for r in rs), min(r["burst"] for r in rs)
        s_run = min(rs, key=lambda r: r["single"])
        b_run = min(rs, key=lambda r: r["burst"])
        rows.append((name, single, single / best["single"], s_run["single"] / s_run["ref_single"],
                     burst, burst / best["burst"], b_run["burst"] / b_run["ref_burst"]))
    when = datetime.date.today().isoformat()
    if args.markdown:
        print(f"Measured {when} on {machine()}; {args.repeat} interleaved runs of {args.rounds} "
              "rounds, ns per object (one get and one put), best run; ratios vs no agent (best "
              "runs) and vs the untracked pool in the same process (that run).\n")
        print("| configuration | single ns | vs no agent | vs untracked pool "
              "| burst-32 ns/object | vs no agent | vs untracked pool |")
        print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
        for name, s, sr, sp, b, br, bp in rows:
            print(f"| {name} | {s:.1f} | {sr:.2f}x | {sp:.2f}x | {b:.2f} | {br:.2f}x | {bp:.2f}x |")
    else:
        print(f"{when}  {machine()}")
        print(f"{'configuration':46} {'single':>7} {'/none':>6} {'/ref':>6} "
              f"{'burst':>7} {'/none':>6} {'/ref':>6}")
        for name, s, sr, sp, b, br, bp in rows:
            print(f"{name:46} {s:7.1f} {sr:5.2f}x {sp:5.2f}x {b:7.2f} {br:5.2f}x {bp:5.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
