"""Benchmark: per-object get/put cost under the preload agent, as ratios from one run.

    /usr/bin/python3 benchmarks/agent_bench.py [--rounds N] [--repeat R] [--markdown]

Builds benchmarks/agent_bench.c and the agent, then runs the program once per
configuration, R times round-robin (configurations interleaved, so that noise
from other work on the machine spreads over all of them), keeping each
configuration's best time.  Each run prints the best of 5 timed loops of
single get+put and of bursts of 32 (ns per object for one get and one put) on
"benchpool" (no per-lcore cache, ring_mp_mc).  Ratios are against the run
without the agent.  --markdown prints the table docs/agent.md records.
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

EAL = ["--no-huge", "-m", "256", "--no-pci", "-l", "0,1", "--log-level", "error"]

# name -> (preload?, environment)
CONFIGS = [
    ("untracked (no agent)", False, {}),
    ("agent loaded, pool not tracked", True, {"MPTRACK_POOLS": "none"}),
    ("tracked, no stacks (depth 0)", True, {"MPTRACK_BT_DEPTH": "0"}),
    ("tracked, depth 1 (caller)", True, {"MPTRACK_BT_DEPTH": "1"}),
    ("tracked, depth 8, libunwind", True, {"MPTRACK_UNWIND": "libunwind"}),
    ("tracked, depth 8, frame pointers", True, {"MPTRACK_UNWIND": "fp"}),
    ("tracked, depth 8, glibc backtrace()", True, {"MPTRACK_UNWIND": "glibc"}),
    ("tracked, depth 8, libunwind, 1 in 16 sampled", True,
     {"MPTRACK_UNWIND": "libunwind", "MPTRACK_BT_SAMPLE": "16"}),
    ("tracked, depth 1, precise clock (rdtsc)", True,
     {"MPTRACK_BT_DEPTH": "1", "MPTRACK_CLOCK": "tsc"}),
    ("tracked, depth 1, strict (xchg) states", True,
     {"MPTRACK_BT_DEPTH": "1", "MPTRACK_STRICT": "1"}),
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
    env = {k: v for k, v in os.environ.items() if not k.startswith("MPTRACK_")}
    env.pop("LD_PRELOAD", None)
    if preload:
        env["LD_PRELOAD"] = str(lib)
    env.update(env_extra)
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


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=200000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        program = build_program(Path(tmp) / "agent_bench")
        lib = agent_build.build(Path(tmp))
        best: dict[str, dict[str, float]] = {}
        n = 0
        for _ in range(args.repeat):
            for name, preload, env in CONFIGS:
                n += 1
                res = run_once(program, lib, preload, env, args.rounds, n)
                cur = best.setdefault(name, res)
                for k, v in res.items():
                    cur[k] = min(cur[k], v)
    base = best[CONFIGS[0][0]]
    rows = []
    for name, _, _ in CONFIGS:
        r = best[name]
        rows.append((name, r["single"], r["single"] / base["single"], r["burst"],
                     r["burst"] / base["burst"]))
    cpu = ""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    when = datetime.date.today().isoformat()
    machine = f"{cpu}, {os.cpu_count()} CPUs, {platform.system()} {platform.release()}"
    if args.markdown:
        print(f"Measured {when} on {machine}; best of {args.repeat} interleaved runs of "
              f"{args.rounds} rounds, ns per object (one get and one put).\n")
        print("| configuration | single ns | single ratio | burst-32 ns/object | burst ratio |")
        print("| --- | ---: | ---: | ---: | ---: |")
        for name, s, sr, b, br in rows:
            print(f"| {name} | {s:.1f} | {sr:.2f}x | {b:.2f} | {br:.2f}x |")
    else:
        print(f"{when}  {machine}")
        print(f"{'configuration':48} {'single':>8} {'ratio':>7} {'burst':>8} {'ratio':>7}")
        for name, s, sr, b, br in rows:
            print(f"{name:48} {s:8.1f} {sr:6.2f}x {b:8.2f} {br:6.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
