"""Benchmark: dpdk-testpmd's forwarding rate with and without the preload agent.

    /usr/bin/python3 benchmarks/testpmd_bench.py [--seconds S] [--repeat R] [--markdown]

Runs the issue's testpmd (txonly forwarding on two net_null ports, one
forwarding lcore) once per configuration, R times round-robin, each for S
seconds, and reads the Tx-pps lines of its periodic statistics:

    dpdk-testpmd --no-huge -m 256 --no-pci -l 0,1 --file-prefix P \\
        --vdev net_null0 --vdev net_null1 -- --forward-mode=txonly --stats-period 1 \\
        --total-num-mbufs=8192

(--total-num-mbufs: testpmd's default of 155456 mbufs does not fit in -m 256.)
txonly allocates every packet's mbuf from the pool and net_null frees it: one
get and one put per packet, in bursts of 32, on the forwarding lcore.  The
rate of a run is the median over its periods of the sum of both ports' Tx-pps
(the first 2 periods are warm-up); a configuration's rate is the median of its
runs.  The agent tracks mb_pool_0 with its per-lcore cache off, as always; the
run without the agent and with --mbcache=0 shows what the cache alone is worth
(net_null frees each mbuf with its own put: without the cache, one ring
operation per packet).
"""

from __future__ import annotations

import argparse
import datetime
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from gdb_mptrack import agent as agent_build  # noqa: E402

import bench_common  # noqa: E402  (benchmarks/bench_common.py, beside this file)

TESTPMD = "dpdk-testpmd"
EAL = ["--no-huge", "-m", "256", "--no-pci", "-l", "0,1", "--vdev", "net_null0", "--vdev",
       "net_null1"]
APP = ["--forward-mode=txonly", "--stats-period", "1", "--total-num-mbufs=8192"]
WARMUP = 2

# name -> (preload?, environment, more testpmd arguments)
CONFIGS = [
    ("no agent", False, {}, []),
    ("no agent, no per-lcore cache (--mbcache=0)", False, {}, ["--mbcache=0"]),
    ("agent, no pool tracked", True, {"MPTRACK_POOLS": "none"}, []),
    ("agent, tracked, no stacks (depth 0)", True, {"MPTRACK_BT_DEPTH": "0"}, []),
    ("agent, tracked, depth 1 (caller)", True, {"MPTRACK_BT_DEPTH": "1"}, []),
    ("agent, tracked, depth 8, cfi (default)", True, {}, []),
    ("agent, tracked, depth 8, libunwind", True, {"MPTRACK_UNWIND": "libunwind"}, []),
]


def tx_pps(text: str) -> list[int]:
    """The sum of all ports' Tx-pps, one value per statistics period."""
    periods: list[int] = []
    for line in text.splitlines():
        if line.startswith("Port statistics"):
            periods.append(0)
        elif "Tx-pps:" in line and periods:
            periods[-1] += int(line.split("Tx-pps:")[1].split()[0])
    return periods


def run_once(lib: Path, preload: bool, env_extra: dict, seconds: float, n: int,
             args: list[str] | None = None) -> float:
    prefix = f"mpttestpmd{os.getpid()}x{n}"
    env = bench_common.agent_env(lib, preload, env_extra)
    with tempfile.TemporaryFile("w+") as out:
        # stdin: a pipe kept open, so testpmd never reads EOF and stops early
        proc = subprocess.Popen([TESTPMD] + EAL + ["--file-prefix", prefix, "--"] + APP
                                + (args or []), env=env,
                                stdin=subprocess.PIPE, stdout=out, stderr=subprocess.STDOUT,
                                text=True, start_new_session=True)
        try:
            time.sleep(seconds + WARMUP + 1)
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stdin.close()
            shutil.rmtree(f"/var/run/dpdk/{prefix}", ignore_errors=True)
        out.seek(0)
        text = out.read()
    rates = tx_pps(text)[WARMUP:]
    rates = [r for r in rates if r > 0]
    if not rates:
        raise SystemExit(f"testpmd printed no Tx-pps (exit {proc.returncode}):\n{text[-3000:]}")
    return statistics.median(rates)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=8)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args(argv)
    if shutil.which(TESTPMD) is None:
        raise SystemExit(f"{TESTPMD} is not installed (Debian package dpdk)")
    rates: dict[str, list[float]] = {name: [] for name, _, _, _ in CONFIGS}
    with tempfile.TemporaryDirectory() as tmp:
        lib = agent_build.build(Path(tmp))
        n = 0
        for _ in range(args.repeat):
            for name, preload, env, more in CONFIGS:
                n += 1
                rates[name].append(run_once(lib, preload, env, args.seconds, n, more))
    base = statistics.median(rates[CONFIGS[0][0]])
    when = datetime.date.today().isoformat()
    rows = [(name, statistics.median(r), statistics.median(r) / base) for name, r in rates.items()]
    if args.markdown:
        print(f"Measured {when}; dpdk-testpmd txonly on net_null0 and net_null1, one forwarding "
              f"lcore; median of {args.repeat} interleaved runs of {args.seconds:g} s.\n")
        print("| configuration | Tx packets/s (both ports) | vs no agent | ns per packet |")
        print("| --- | ---: | ---: | ---: |")
        for name, rate, ratio in rows:
            print(f"| {name} | {rate / 1e6:.2f} M | {ratio:.2f}x | {1e9 / rate:.1f} |")
    else:
        print(f"{when}  txonly, net_null x2, {args.repeat} x {args.seconds:g} s")
        for name, rate, ratio in rows:
            print(f"{name:42} {rate / 1e6:8.2f} Mpps {ratio:6.2f}x {1e9 / rate:7.1f} ns/packet")
    return 0


if __name__ == "__main__":
    sys.exit(main())
