#!/usr/bin/python3
"""Benchmark: the speed of `mptrack track` against bare breakpoints, and rte_malloc flatness.

    /usr/bin/python3 benchmarks/track_bench.py [--n N] [--m M] [--repeats R] [--no-docs] [--profile]

A benchmark, not a timed test: it measures and records, and fails (exit 1) only
when an answer is wrong or it cannot run; with --check-targets it also exits 3
when a target is missed.  Run it as root with gdb, DPDK (libdpdk-dev,
pkg-config) and a C compiler.  It takes a few minutes.

What the issue asks (issue 3, "Speed"): events per second of a tracked get/put
loop and of the same loop hitting bare `break X if 0` breakpoints, measured in
one run; tracked >= 80% of bare.  And the rte_malloc tracking rate must stay
flat over 10,000 calls, where one gdb.FinishBreakpoint per call slows down
worse than linearly.

Steps:
1. Build benchmarks/track_loop.c (-g -O1 -rdynamic, against the installed
   DPDK) into a temporary directory.  The program makes "benchpool" (255
   objects, cache 0, ring_mp_mc), keeps 3 objects, does N get/put pairs in
   pool_loop() and times them itself (CLOCK_MONOTONIC); then keeps 3 rte_malloc
   blocks and does M rte_malloc/rte_free pairs in malloc_loop(), timing each
   successive CHUNK pairs.  Both loops run below 10 distinct noinline frames
   (nest9() ... nest0()), so a depth-8 backtrace has 8 frames to unwind.
   phase_start()/phase_end() are noinline markers.
2. Every measurement is its own gdb (`gdb -nx -batch`, extension loaded with
   -x gdbinit.py), same binary, same N: gdb stops at phase_start (a silent
   breakpoint), arms what the configuration needs, `continue`s from the CLI
   (as a user would), stops at phase_end and this module, imported in gdb,
   reads the program's timings and writes a JSON result.
   Pool loop (an event is one get or one put; a pair is 2 events and, when
   tracked, 3 breakpoint hits: driver enqueue entry, dequeue entry, dequeue
   return address):
   - tracked:     `mptrack track benchpool` before `run` (armed at creation),
                  default backtrace depth 8;
   - tracked-bt1: the same after `set mptrack backtrace-depth 1`;
   - bare3:       `break *ADDR if 0` on exactly the three locations the
                  tracker stops at for a pair, read from `maint info
                  breakpoints` in the first tracked run (its internal
                  breakpoints at the driver's enqueue and dequeue, which are
                  checked against rte_mempool_ops_table as the program saw it,
                  and its return-address breakpoint in pool_loop);
   - bare2:       `break *ADDR if 0` on the enqueue and dequeue entries only
                  (context);
   - pynoop3:     a gdb.Breakpoint subclass whose stop() only returns False,
                  internal and silent like the tracker's, on the same three
                  locations (context: the floor of any design that runs Python
                  at each hit);
   - fastpath3:   a sketch, not the tool: Python breakpoints on the same three
                  locations doing the least depth-1 tracking needs, the
                  cheapest way found (registers with gdb.parse_and_eval("$reg"),
                  no gdb.Frame; the caller's PC from [rsp] at entry; the object
                  table with one read_memory).  It counts objects, no shadow.
   rte_malloc loop (an event is one rte_malloc or one rte_free):
   - malloc:        `mptrack track --malloc` at phase_start, M = --m pairs,
                    timed per --chunk pairs (flatness: the last chunk's rate
                    within 20% of the first's; also shown from gdb's own CPU
                    time per chunk, read at a silent breakpoint on
                    chunk_mark(), and from a line fitted through all chunks);
   - malloc-bare:   `break *ADDR if 0` on every location of the tracker's
                    internal breakpoints in the first malloc run (context);
   - finish-300, finish-2000: the way the tool does not work: a breakpoint on
                    rte_malloc whose stop() makes one gdb.FinishBreakpoint per
                    call (reading rax when it is hit) and one on rte_free, as
                    GEF's heap tracer does; 300 pairs (3 runs) and
                    2,000 pairs (one run: it alone takes about 40 s; see
                    --finish and --finish-repeats).
   Configurations are interleaved round by round (--repeats rounds), so a
   change in the machine's load hits them alike; medians are reported.
   gdb is pinned to CPU 0 (--gdb-cpu), where the program's main lcore runs:
   a breakpoint hit is a ptrace round trip between gdb and the program, and
   whether the scheduler puts gdb on the program's CPU or the other one
   changes its cost several times over from run to run (same CPU: about
   0.15 ms a hit here; the other CPU: 0.5 to 1.8 ms).  Pinned, the bare hits
   are the cheapest and steadiest, which makes the ratio the strictest.
3. Correctness, checked in every tracked run: `mptrack status` counts
   2*N + 255 (the populate enqueues, seen because tracking armed at creation)
   + 3 events for the pool and says 3 in use, as rte_mempool_in_use_count()
   does in the program; for rte_malloc 2*M + 3 events and 3 blocks out.  The
   FinishBreakpoint baseline must see every return too.  A wrong count fails
   the benchmark.
4. Two more tracked runs (depth 8 and 1) with time.perf_counter()
   accumulators around the tracker's breakpoint stop() methods, the functions
   they call and the gdb API calls they make (the extension's own Python time
   per hit; not counted in the rates); with --profile, one more under
   cProfile, whose top entries are printed.
5. Print a table and put a dated section in docs/benchmarks-tracking.md (one
   per date and machine: a second run the same day replaces it).
"""

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import bench_common  # benchmarks/bench_common.py, beside this file
from bench_common import BenchError, gdb_env, run

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
GDBINIT = REPO / "gdbinit.py"
SOURCE = BENCH_DIR / "track_loop.c"
DOCS = REPO / "docs" / "benchmarks-tracking.md"
POOL = "benchpool"
TARGET_RATIO = 0.80
FLAT_TOLERANCE = 0.20
GDB_TIMEOUT = 900

POOL_CONFIGS = ("tracked", "bare3", "bare2", "pynoop3", "fastpath3", "tracked-bt1")
MALLOC_CONFIGS = ("malloc", "malloc-bare")
DESCRIPTIONS = {
    "tracked": "`mptrack track benchpool`, backtrace depth 8 (default)",
    "tracked-bt1": "`mptrack track benchpool`, `set mptrack backtrace-depth 1`",
    "bare3": "bare `break *ADDR if 0` on the tracker's 3 locations",
    "bare2": "bare `break *ADDR if 0` on enqueue and dequeue entries only",
    "pynoop3": "Python breakpoint, stop() returns False, on the 3 locations",
    "fastpath3": "sketch: Python breakpoints reading only `$reg` values and memory (depth 1 from [rsp])",
    "malloc": "`mptrack track --malloc`",
    "malloc-bare": "bare `break *ADDR if 0` on the tracker's rte_malloc locations",
    "finish": "gdb.FinishBreakpoint per rte_malloc call",
}


def log(text):
    print("track_bench: " + text, flush=True)


# =========================================================================== outside gdb


def build(workdir):
    return bench_common.build(SOURCE, workdir / "track_loop", log)


def remove_runtime_dir(prefix):
    for base in ("/var/run/dpdk", os.path.join(os.environ.get("XDG_RUNTIME_DIR", "/tmp"), "dpdk"), "/tmp/dpdk"):
        shutil.rmtree(os.path.join(base, prefix), ignore_errors=True)


class Runner:
    """Runs one configuration in its own gdb and returns the JSON it wrote."""

    def __init__(self, program, workdir, args):
        self.program = program
        self.workdir = workdir
        self.args = args
        self.count = 0

    def __call__(self, config, n=0, m=0, chunk=1000, addrs=None, profile=None):
        self.count += 1
        tag = "%02d-%s" % (self.count, config)
        prefix = "mptrack-tb-%d-%d" % (os.getpid(), self.count)
        params = {"config": config, "n": n, "m": m, "chunk": chunk, "addrs": addrs or {}, "profile": profile,
                  "results": str(self.workdir / (tag + ".json"))}
        params_path = self.workdir / (tag + ".params.json")
        params_path.write_text(json.dumps(params))
        pre = []
        if config in ("tracked", "tracked-bt1"):
            if config == "tracked-bt1":
                pre.append("set mptrack backtrace-depth 1")
            pre.append("mptrack track %s" % POOL)
        script = "\n".join([
            "set pagination off", "set confirm off", "set style enabled off", "set width 0",
            "python import sys; sys.path.insert(0, %r); import track_bench; track_bench.gdb_begin(%r)"
            % (str(BENCH_DIR), str(params_path)),
        ] + pre + [
            "run",
            "python track_bench.gdb_phase_start()",
            "continue",
            "python track_bench.gdb_phase_end()",
            "kill",
        ]) + "\n"
        script_path = self.workdir / (tag + ".gdb")
        script_path.write_text(script)
        cmd = ["gdb", "-nx", "-batch", "-iex", "set debuginfod enabled off", "-x", str(self.args.gdbinit),
               "-x", str(script_path), "--args", str(self.program), "--no-huge", "-m", "256", "--no-pci",
               "-l", "0,1", "--file-prefix", prefix, "--", str(n), str(m), str(chunk)]
        load = os.getloadavg()[0]
        started = time.perf_counter()
        cpu = self.args.gdb_cpu
        pin = (lambda: os.sched_setaffinity(0, {cpu})) if cpu is not None else None
        try:
            res = run(cmd, timeout=GDB_TIMEOUT, env=gdb_env(), stdin=subprocess.DEVNULL, preexec_fn=pin)
        finally:
            remove_runtime_dir(prefix)
        elapsed = time.perf_counter() - started
        output = res.stdout + "\n--- stderr\n" + res.stderr
        (self.workdir / (tag + ".log")).write_text(output)
        results_path = Path(params["results"])
        if not results_path.exists():
            raise BenchError("%s: gdb wrote no results (exit %d):\n%s" % (tag, res.returncode, output[-4000:]))
        results = json.loads(results_path.read_text())
        if results.get("error"):
            raise BenchError("%s: in gdb: %s\n%s" % (tag, results["error"], output[-3000:]))
        if "mptrack: tracking error" in output:
            raise BenchError("%s: the tracker reported an error:\n%s" % (tag, output[-3000:]))
        results["load"] = load
        results["gdb_seconds"] = elapsed
        results["tag"] = tag
        self.report(results)
        return results

    @staticmethod
    def report(r):
        if r["phase"] == "pool":
            what = "%s events/s" % _n(round(r["events"] / r["program_s"]))
        else:
            what = "%s pairs/s" % _n(round(r["m"] / r["program_s"]))
        log("  %-14s %s in %.2f s (program), gdb ran %.1f s, load %.1f"
            % (r["config"], what, r["program_s"], r["gdb_seconds"], r["load"]))


def discover_pool(results):
    """The three locations the tracker stops at for a get/put pair, from its `maint info breakpoints`."""
    locs = results["tracker_locations"]
    enq, deq = results["ops_enqueue"], results["ops_dequeue"]
    addrs = {loc["addr"] for loc in locs}
    if enq not in addrs or deq not in addrs:
        raise BenchError("the tracker has no internal breakpoint at the driver's enqueue 0x%x and dequeue 0x%x "
                         "(rte_mempool_ops_table); its locations: %s" % (enq, deq, _locs(locs)))
    ret = [loc["addr"] for loc in locs if re.search(r"\bin pool_loop\b", loc["what"])]
    if len(ret) != 1:
        raise BenchError("expected one tracker return-address breakpoint in pool_loop, found %d: %s"
                         % (len(ret), _locs(locs)))
    return {"enqueue": enq, "dequeue": deq, "return": ret[0], "pool_loop": results["pool_loop"]}


def discover_malloc(results):
    """Every location of the tracker's internal breakpoints in a `mptrack track --malloc` run."""
    locs = results["tracker_locations"]
    if not any(re.search(r"<rte_malloc(\+\d+)?>", loc["what"]) for loc in locs):
        raise BenchError("no tracker breakpoint on rte_malloc: %s" % _locs(locs))
    if not any(re.search(r"\bin malloc_loop\b", loc["what"]) for loc in locs):
        raise BenchError("no tracker return-address breakpoint in malloc_loop: %s" % _locs(locs))
    return {"locations": {"0x%x" % loc["addr"]: loc["what"] for loc in locs}, "pool_loop": results["pool_loop"]}


def _locs(locs):
    return "; ".join("0x%x %s" % (loc["addr"], loc["what"]) for loc in locs) or "none"


def check_pool(r, expected_events):
    if r["program_in_use"] != r["hold"]:
        raise BenchError("%s: the program has %d objects in use, expected %d" % (r["tag"], r["program_in_use"], r["hold"]))
    if r["config"].startswith("tracked"):
        st = r["status"]
        if st.get("events") != expected_events or st.get("in_use") != r["program_in_use"]:
            raise BenchError("%s: mptrack status says %s events and %s in use; expected %d events (2*N + %d populate "
                             "+ %d held) and %d in use (rte_mempool_in_use_count)\n%s"
                             % (r["tag"], st.get("events"), st.get("in_use"), expected_events, r["pool_size"],
                                r["hold"], r["program_in_use"], r["status_text"]))
        if st.get("faults") != "none":
            raise BenchError("%s: faults in a correct program: %s" % (r["tag"], r["status_text"]))
    if r["config"] == "fastpath3":
        fp, n = r["fastpath"], r["n"]
        # armed at phase_start: the 3 held objects' dequeue returns to pool_hold, not watched
        if fp["free"] != n or fp["alloc"] != n:
            raise BenchError("%s: the fast-path sketch counted %d gets and %d puts, expected %d each"
                             % (r["tag"], fp["alloc"], fp["free"], n))


def check_malloc(r):
    m, hold = r["m"], r["hold"]
    if r["config"] == "malloc":
        st = r["status"]
        if st.get("heap_events") != 2 * m + hold or st.get("heap_out") != hold:
            raise BenchError("%s: mptrack status says %s rte_malloc events and %s blocks out; expected %d and %d\n%s"
                             % (r["tag"], st.get("heap_events"), st.get("heap_out"), 2 * m + hold, hold,
                                r["status_text"]))
    if r["config"] == "finish":
        f = r["finish"]
        if f["returns"] != m + hold or f["frees"] != m or f["live"] != hold:
            raise BenchError("%s: the FinishBreakpoint baseline saw %d returns, %d frees, %d live; expected %d, %d, %d"
                             % (r["tag"], f["returns"], f["frees"], f["live"], m + hold, m, hold))


def measure(program, workdir, args):
    runner = Runner(program, workdir, args)
    out = {c: [] for c in POOL_CONFIGS + MALLOC_CONFIGS}
    out["finish"] = {}
    pool_addrs = malloc_addrs = None
    started = time.perf_counter()

    log("pool loop: %d rounds of %s, N = %d pairs" % (args.repeats, ", ".join(POOL_CONFIGS), args.n))
    for rnd in range(args.repeats):
        for config in POOL_CONFIGS:
            if config != "tracked" and pool_addrs is None:
                continue
            r = runner(config, n=args.n, addrs=pool_addrs)
            if pool_addrs is None:
                pool_addrs = discover_pool(r)
                log("  locations of a pair: enqueue 0x%x, dequeue 0x%x, dequeue return 0x%x"
                    % (pool_addrs["enqueue"], pool_addrs["dequeue"], pool_addrs["return"]))
            check_pool(r, 2 * args.n + r["pool_size"] + r["hold"])
            out[config].append(r)
    # The first round's bare runs were skipped until the tracker had shown its locations: none are.

    log("rte_malloc loop: %d rounds of %s, M = %d pairs, chunks of %d"
        % (args.repeats, ", ".join(MALLOC_CONFIGS), args.m, args.chunk))
    for rnd in range(args.repeats):
        for config in MALLOC_CONFIGS:
            r = runner(config, m=args.m, chunk=args.chunk, addrs=malloc_addrs)
            if malloc_addrs is None:
                malloc_addrs = discover_malloc(r)
            check_malloc(r)
            out[config].append(r)

    log("gdb.FinishBreakpoint baseline: %s pairs (%s runs), chunks of %d"
        % (", ".join(map(str, args.finish)), ", ".join(map(str, args.finish_repeats)), args.finish_chunk))
    for rnd in range(max(args.finish_repeats)):
        for m, repeats in zip(args.finish, args.finish_repeats):
            if rnd < repeats:
                r = runner("finish", m=m, chunk=args.finish_chunk)
                check_malloc(r)
                out["finish"].setdefault(m, []).append(r)

    log("two more tracked runs (depth 8, depth 1) with time.perf_counter() accumulators in the stop() path")
    for config in ("tracked", "tracked-bt1"):
        r = out["timed-" + config] = runner(config, n=args.n, profile="timed")
        check_pool(r, 2 * args.n + r["pool_size"] + r["hold"])
    if args.profile:
        log("one more tracked run under cProfile")
        out["cprofile"] = runner("tracked", n=args.n, profile="cprofile")
    out["measure_seconds"] = time.perf_counter() - started
    out["pool_addrs"] = pool_addrs
    out["malloc_addrs"] = malloc_addrs
    return out


# ------------------------------------------------------------------ figures


def pool_rate(r):
    return r["events"] / r["program_s"]


def chunk_rates(runs):
    """Median over runs of each chunk's pairs/s, and every run's list."""
    per_run = [[pairs / (ns / 1e9) for pairs, ns in zip(r["chunk_pairs"], r["chunk_ns"])] for r in runs]
    return [statistics.median(rates) for rates in zip(*per_run)], per_run


def trend(values):
    """Last / first of a least-squares line through log(values): the change over the run, robust to one bad chunk."""
    import math  # pylint: disable=import-outside-toplevel
    n = len(values)
    if n < 2:
        return 1.0
    xs = range(n)
    ys = [math.log(v) for v in values]
    mx, my = (n - 1) / 2, sum(ys) / n
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
    return math.exp(slope * (n - 1))


FLATNESS = ("last/first, wall", "fitted, wall", "last/first, gdb CPU", "fitted, gdb CPU")


def flatness(rates, cpu_ms):
    """Rate of the last chunk / rate of the first, from the wall clock and from gdb's CPU time per pair,
    each also from a line fitted through all the chunks."""
    return {FLATNESS[0]: rates[-1] / rates[0], FLATNESS[1]: trend(rates),
            FLATNESS[2]: cpu_ms[0] / cpu_ms[-1], FLATNESS[3]: 1 / trend(cpu_ms)}


def chunk_cpu(runs):
    """Median over runs of each chunk's gdb CPU time per pair, in ms."""
    per_run = [[cpu / pairs * 1e3 for pairs, cpu in zip(r["chunk_pairs"], r["chunk_gdb_cpu_s"])] for r in runs]
    return [statistics.median(ms) for ms in zip(*per_run)]


def figures(out, args):
    f = {"n": args.n, "m": args.m, "chunk": args.chunk, "repeats": args.repeats, "gdb_cpu": args.gdb_cpu}
    rows = {}
    for config in POOL_CONFIGS:
        runs = out[config]
        rows[config] = {
            "rates": [pool_rate(r) for r in runs],
            "rate": statistics.median(pool_rate(r) for r in runs),
            "gdb_cpu_ms": statistics.median(r["gdb_cpu_s"] / r["events"] * 1e3 for r in runs),
            "gdb_sys_ms": statistics.median(r["gdb_sys_s"] / r["events"] * 1e3 for r in runs),
            "inferior_cpu_ms": statistics.median(r["inferior_cpu_s"] / r["events"] * 1e3 for r in runs),
            "cpu_ms": statistics.median((r["gdb_cpu_s"] + r["inferior_cpu_s"]) / r["events"] * 1e3 for r in runs),
        }
    for config in POOL_CONFIGS:
        rows[config]["ratio"] = rows[config]["rate"] / rows["bare3"]["rate"]
        rows[config]["cpu_ratio"] = rows["bare3"]["cpu_ms"] / rows[config]["cpu_ms"]
    f["pool"] = rows
    f["ratio"] = rows["tracked"]["ratio"]
    f["ratio_bt1"] = rows["tracked-bt1"]["ratio"]
    f["paired"] = [pool_rate(t) / pool_rate(b) for t, b in zip(out["tracked"], out["bare3"])]
    f["ratio_ok"] = f["ratio"] >= TARGET_RATIO
    f["ratio_bt1_ok"] = f["ratio_bt1"] >= TARGET_RATIO

    mal = {}
    for config in MALLOC_CONFIGS:
        runs = out[config]
        med, per_run = chunk_rates(runs)
        mal[config] = {
            "chunks": med, "per_run": per_run,
            "rates": [r["m"] / r["program_s"] for r in runs],
            "rate": statistics.median(r["m"] / r["program_s"] for r in runs),
            "gdb_cpu_ms": statistics.median(r["gdb_cpu_s"] / (2 * r["m"]) * 1e3 for r in runs),
            "chunk_cpu_ms": chunk_cpu(runs),
        }
        mal[config]["flatness"] = flatness(med, mal[config]["chunk_cpu_ms"])
    mal["malloc"]["ratio"] = mal["malloc"]["rate"] / mal["malloc-bare"]["rate"]
    f["malloc"] = mal
    f["flat"] = mal["malloc"]["flatness"]["last/first, wall"]
    f["flat_ok"] = abs(f["flat"] - 1) <= FLAT_TOLERANCE

    fin = {}
    for m, runs in sorted(out["finish"].items()):
        med, _ = chunk_rates(runs)
        fin[m] = {"rate": statistics.median(r["m"] / r["program_s"] for r in runs),
                  "rates": [r["m"] / r["program_s"] for r in runs], "chunks": med, "chunk": runs[0]["chunk_pairs"][0],
                  "chunk_cpu_ms": chunk_cpu(runs)}
    f["finish"] = fin
    longest = fin[max(fin)]
    longest["flatness"] = flatness(longest["chunks"], longest["chunk_cpu_ms"])
    for config in ("tracked", "tracked-bt1"):
        r = out["timed-" + config]
        f["timed-" + config] = {"acc": r["timed"], "rate": pool_rate(r), "hits": r["hits"], "events": r["events"],
                                "program_s": r["program_s"]}
    f["cprofile"] = out.get("cprofile", {}).get("cprofile")
    f["addrs"] = out["pool_addrs"]
    f["malloc_addrs"] = out["malloc_addrs"]
    f["loads"] = [r["load"] for c in POOL_CONFIGS + MALLOC_CONFIGS for r in out[c]]
    f["measure_seconds"] = out["measure_seconds"]
    return f


# ------------------------------------------------------------------ machine, report, docs


def machine():
    return bench_common.machine(REPO)


def _n(value):
    return "{:,}".format(value)


def _verdict(flag, bold=False):
    if flag:
        return "pass"
    return "**FAIL**" if bold else "FAIL"


def _rates(rates):
    return ", ".join(_n(round(x)) for x in rates)


HITS = {"tracked": 3, "tracked-bt1": 3, "bare3": 3, "bare2": 2, "pynoop3": 3, "fastpath3": 3}
TIMED = ("timed-tracked", "timed-tracked-bt1")


def timed_rows(f):
    """[(name, [(calls per event, us per event) for each timed run])], the costliest first."""
    names = set()
    for key in TIMED:
        names |= set(f[key]["acc"])
    rows = []
    for name in names:
        cells = []
        for key in TIMED:
            calls, total = f[key]["acc"].get(name, (0, 0.0))
            cells.append((calls / f[key]["events"], total / f[key]["events"] * 1e6))
        if any(c[0] for c in cells):
            rows.append((name, cells))
    return sorted(rows, key=lambda row: -row[1][0][1])


def stop_us_per_hit(f, key):
    t = f[key]
    return sum(total for name, (calls, total) in t["acc"].items() if name.endswith(".stop")) / t["hits"] * 1e6


def report_markdown(m, f, args):
    pool, mal, fin = f["pool"], f["malloc"], f["finish"]
    bare_hit_us = 1e6 / (pool["bare3"]["rate"] * 1.5)  # 3 hits per 2 events
    pin = ("gdb pinned to CPU %d, the program's main lcore (`--gdb-cpu`)" % f["gdb_cpu"]
           if f["gdb_cpu"] is not None else "gdb not pinned")
    lines = [
        "### %s, %s" % (m["date"], m["cpu"]),
        "",
        "Machine: %s CPUs (`nproc`), %s, %s RAM, kernel %s, %s, Python %s, DPDK %s; gdb-mptrack %s. %s. "
        "1-minute load average when each run started: %.2f to %.2f. The measurements took %.0f s."
        % (m["nproc"], m["cpu"], m["ram"], m["kernel"], m["gdb"], m["python"], m["dpdk"], m["commit"], pin,
           min(f["loads"]), max(f["loads"]), f["measure_seconds"]),
        "",
        "Pool loop: N = %s get/put pairs (%s events), %d rounds, medians; rates from the program's own "
        "`CLOCK_MONOTONIC` time of the loop. Locations of a pair, from the first tracked run's `maint info "
        "breakpoints`: enqueue 0x%x, dequeue 0x%x (both as in `rte_mempool_ops_table`), dequeue return 0x%x "
        "(in `pool_loop`). CPU columns: per event, of the gdb process (its system part separately) and of "
        "the program; \"/ bare3 by CPU\" compares gdb + program CPU per event, which moves less with other load."
        % (_n(args.n), _n(2 * args.n), args.repeats, f["addrs"]["enqueue"], f["addrs"]["dequeue"],
           f["addrs"]["return"]),
        "",
        "| configuration | hits per pair | events/s | every run | / bare3 | gdb CPU | of it system | program CPU "
        "| / bare3 by CPU |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for config in POOL_CONFIGS:
        row = pool[config]
        b = "**" if config in ("tracked", "tracked-bt1") else ""
        lines.append("| %s: %s | %d | %s%s%s | %s | %s%.2f%s | %.3f ms | %.3f ms | %.3f ms | %.2f |" % (
            config, DESCRIPTIONS[config], HITS[config], b, _n(round(row["rate"])), b, _rates(row["rates"]),
            b, row["ratio"], b, row["gdb_cpu_ms"], row["gdb_sys_ms"], row["inferior_cpu_ms"], row["cpu_ratio"]))
    lines += [
        "",
        "| target | measured | result |",
        "| --- | --- | --- |",
        "| tracked, depth 8: events/s >= %.0f%% of bare3 | %.2f (round by round: %s) | %s |"
        % (TARGET_RATIO * 100, f["ratio"], ", ".join("%.2f" % x for x in f["paired"]), _verdict(f["ratio_ok"], True)),
        "| tracked, depth 1: events/s >= %.0f%% of bare3 | %.2f | %s |"
        % (TARGET_RATIO * 100, f["ratio_bt1"], _verdict(f["ratio_bt1_ok"], True)),
        "| rte_malloc tracking flat over %s calls: last chunk's rate within %.0f%% of the first's (wall) "
        "| %.2f (see below) | %s |"
        % (_n(args.m), FLAT_TOLERANCE * 100, f["flat"], _verdict(f["flat_ok"], True)),
        "",
        "Correct in every tracked run: `mptrack status` counted 2*N + 255 populate enqueues + 3 held = %s pool "
        "events and 3 objects in use, as the program's `rte_mempool_in_use_count()` said; 2*M + 3 = %s "
        "rte_malloc events and 3 blocks out; no fault, no tracking error."
        % (_n(2 * args.n + 258), _n(2 * args.m + 3)),
        "",
        "rte_malloc loop: M = %s rte_malloc/rte_free pairs, pairs/s (= rte_malloc calls/s; events/s are twice "
        "that) for each successive %s pairs, median of %d runs:"
        % (_n(args.m), _n(args.chunk), args.repeats),
        "",
        "| configuration | pairs/s | every run | %s |" % " | ".join(
            "%s-%s" % (_n(i * args.chunk + 1), _n(min((i + 1) * args.chunk, args.m)))
            for i in range(len(mal["malloc"]["chunks"]))),
        "| --- | --- | --- | %s |" % " | ".join("---" for _ in mal["malloc"]["chunks"]),
    ]
    for config in MALLOC_CONFIGS:
        row = mal[config]
        lines.append("| %s: %s | %s | %s | %s |" % (config, DESCRIPTIONS[config], _n(round(row["rate"])),
                                                   _rates(row["rates"]), " | ".join(_n(round(x)) for x in row["chunks"])))
        lines.append("| %s: gdb CPU per pair, ms | %.2f | | %s |" % (config, row["gdb_cpu_ms"] * 2, " | ".join(
            "%.2f" % x for x in row["chunk_cpu_ms"])))
    fin_long = fin[max(fin)]
    lines += [
        "",
        "Tracked rte_malloc / malloc-bare: %.2f." % mal["malloc"]["ratio"],
        "",
        "Flatness: rate of the last chunk / rate of the first, from the program's wall clock (the target) and "
        "from gdb's CPU time per pair, each also from a least-squares line through the logs of all the chunks "
        "(fitted). malloc-bare cannot slow down, so its figures show how much the machine's load alone moves "
        "them; the FinishBreakpoint column is the way the tool does not work (%s pairs, per %d)."
        % (_n(max(fin)), fin_long["chunk"]),
        "",
        "| measure | malloc (tracked) | malloc-bare (control) | FinishBreakpoint | within %.0f%% |" % (FLAT_TOLERANCE * 100),
        "| --- | --- | --- | --- | --- |",
    ]
    for key in FLATNESS:
        value = mal["malloc"]["flatness"][key]
        lines.append("| %s | %.2f | %.2f | %.3f | %s |" % (
            key, value, mal["malloc-bare"]["flatness"][key], fin_long["flatness"][key],
            "yes" if abs(value - 1) <= FLAT_TOLERANCE else "no"))
    lines += [
        "",
        "The way the tool does not work, one `gdb.FinishBreakpoint` per rte_malloc call:",
        "",
        "| pairs | runs | pairs/s | every run | pairs/s per %d pairs, first to last (median of the runs) "
        "| gdb CPU per pair, ms, per %d pairs |" % (args.finish_chunk, args.finish_chunk),
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for mm, row in sorted(fin.items()):
        lines.append("| %s | %d | %s | %s | %s | %s |" % (
            _n(mm), len(row["rates"]), _n(round(row["rate"])), _rates(row["rates"]), _rates(row["chunks"]),
            ", ".join("%.1f" % x for x in row["chunk_cpu_ms"])))
    t8, t1 = f["timed-tracked"], f["timed-tracked-bt1"]
    lines += [
        "",
        "Where the tracked time goes: two more runs (depth 8, depth 1), not in the rates above, with "
        "`time.perf_counter()` accumulators around the tracker's `stop()` methods and the functions they call "
        "(inclusive times, so nested rows overlap; `gdb.newest_frame` etc. are the gdb API calls, wrapped "
        "where the tracker looks them up). The tracker's `stop()` took %.0f us per hit at depth 8 (%s events/s "
        "in that run) and %.0f us at depth 1 (%s events/s); a bare3 hit took %.0f us in all."
        % (stop_us_per_hit(f, "timed-tracked"), _n(round(t8["rate"])), stop_us_per_hit(f, "timed-tracked-bt1"),
           _n(round(t1["rate"])), bare_hit_us),
        "",
        "| function | calls per event, depth 8 | us per event, depth 8 | calls per event, depth 1 "
        "| us per event, depth 1 |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, cells in timed_rows(f):
        lines.append("| `%s` | %.2f | %.1f | %.2f | %.1f |" % (name, cells[0][0], cells[0][1], cells[1][0], cells[1][1]))
    return "\n".join(lines) + "\n"


def report_table(f, args):
    pool = f["pool"]
    out = ["events/s over %s get/put pairs (median of %d; gdb CPU and gdb + program CPU per event):"
           % (_n(args.n), args.repeats)]
    for config in POOL_CONFIGS:
        row = pool[config]
        out.append("  %-12s %7s  / bare3 %.2f  gdb CPU %.3f ms  all CPU %.3f ms (/ bare3 %.2f)  runs: %s"
                   % (config, _n(round(row["rate"])), row["ratio"], row["gdb_cpu_ms"], row["cpu_ms"],
                      row["cpu_ratio"], _rates(row["rates"])))
    out.append("  target tracked / bare3 >= %.2f: depth 8 %s (%.2f; by round %s), depth 1 %s (%.2f)"
               % (TARGET_RATIO, _verdict(f["ratio_ok"]), f["ratio"], ", ".join("%.2f" % x for x in f["paired"]),
                  _verdict(f["ratio_bt1_ok"]), f["ratio_bt1"]))
    for config in MALLOC_CONFIGS:
        row = f["malloc"][config]
        out.append("rte_malloc %-11s %s pairs/s (runs %s); per %s pairs: %s"
                   % (config, _n(round(row["rate"])), _rates(row["rates"]), _n(args.chunk), _rates(row["chunks"])))
        out.append("  %-20s gdb CPU ms per pair, per chunk: %s"
                   % ("", ", ".join("%.2f" % x for x in row["chunk_cpu_ms"])))
    out.append("  target: last / first chunk within %.0f%%: %s (%.2f); tracked / bare %.2f"
               % (FLAT_TOLERANCE * 100, _verdict(f["flat_ok"]), f["flat"], f["malloc"]["malloc"]["ratio"]))
    fin_long = f["finish"][max(f["finish"])]
    for key in FLATNESS:
        out.append("  %-22s tracked %.2f  bare %.2f  FinishBreakpoint %.3f"
                   % (key, f["malloc"]["malloc"]["flatness"][key], f["malloc"]["malloc-bare"]["flatness"][key],
                      fin_long["flatness"][key]))
    for mm, row in sorted(f["finish"].items()):
        out.append("FinishBreakpoint %s pairs: %s pairs/s (runs %s); per %d: %s; gdb CPU ms per pair: %s"
                   % (_n(mm), _n(round(row["rate"])), _rates(row["rates"]), row["chunk"], _rates(row["chunks"]),
                      ", ".join("%.1f" % x for x in row["chunk_cpu_ms"])))
    out.append("stop() path, us per event (inclusive) at depth 8 / depth 1; stop() per hit %.0f / %.0f us:"
               % (stop_us_per_hit(f, "timed-tracked"), stop_us_per_hit(f, "timed-tracked-bt1")))
    for name, cells in timed_rows(f):
        out.append("  %-32s %5.2f calls %7.1f us   %5.2f calls %7.1f us"
                   % (name, cells[0][0], cells[0][1], cells[1][0], cells[1][1]))
    if f["cprofile"]:
        out.append(f["cprofile"])
    return "\n".join(out)


RESULTS_MARK = "<!-- track_bench results: newest first -->"
SECTION_START = "<!-- track_bench run: %s -->"
SECTION_END = "<!-- /track_bench run -->"

DOCS_HEADER = """# Benchmarks: tracking with breakpoints

## `benchmarks/track_bench.py`

What it measures (issue 3, "Speed"): events per second of a tracked get/put loop and of the same loop
hitting bare `break X if 0` breakpoints, in one run, with the target that the extension's own work keeps
the tracked rate at 80% or more of the bare rate; and that tracking rte_malloc stays flat over 10,000
calls, where one `gdb.FinishBreakpoint` per call slows down worse than linearly.

- `benchmarks/track_loop.c` makes `benchpool` (255 objects of 64 bytes, cache 0, driver `ring_mp_mc`),
  keeps 3 objects, then does N `rte_mempool_get`/`rte_mempool_put` pairs in `pool_loop()`; later it keeps 3
  rte_malloc blocks and does M `rte_malloc`/`rte_free` pairs in `malloc_loop()`. Both loops run below 10
  distinct non-inlined frames (`nest9()` ... `nest0()`), so a depth-8 backtrace has 8 frames to unwind, as
  in a real program (gdb stops unwinding at `main`). It times both loops itself with `CLOCK_MONOTONIC`
  (the rte_malloc loop per successive chunk of pairs) and gdb reads the timings at the `phase_end()`
  marker, so gdb's stops at the markers are outside the timed loops.
- Every measurement is its own gdb (`gdb -nx -batch -x gdbinit.py`), same binary, same N; gdb stops at
  `phase_start()`, arms what the configuration needs and `continue`s from the CLI, as a user would. An
  event is one get or one put (one rte_malloc or one rte_free). When a pool is tracked a pair costs 3
  breakpoint hits: the driver's enqueue entry, its dequeue entry and the dequeue's return address.
  - **tracked**: `mptrack track benchpool` before `run` (armed when the pool is created), default
    backtrace depth 8; **tracked-bt1**: the same with `set mptrack backtrace-depth 1`.
  - **bare3**: `break *ADDR if 0` on exactly the 3 locations the tracker stops at for a pair, read from
    `maint info breakpoints` in the first tracked run (the enqueue and dequeue addresses are checked
    against `rte_mempool_ops_table` as the program saw it). The comparison isolates the extension's own
    Python work. **bare2**: only the enqueue and dequeue entries, for context.
  - **pynoop3**, for context: a `gdb.Breakpoint` subclass, internal and silent like the tracker's, whose
    `stop()` only returns False, on the same 3 locations: the floor of any design that runs Python at each
    hit.
  - **fastpath3**, for context, a sketch and not the tool: Python breakpoints on the same 3 locations doing
    the least that depth-1 tracking needs, the cheapest way found: registers with
    `gdb.parse_and_eval("$rdi")` and no `gdb.Frame` at all, the caller's PC from the return address at
    `[rsp]` on entry, the object table with one `read_memory`; it counts objects (checked), keeps no shadow.
  - **rte_malloc**: `mptrack track --malloc` at `phase_start()`, M = 10,000 pairs, timed per 1,000; the
    rate of the last chunk must be within 20% of the first's. gdb's own CPU time per chunk is shown too (a
    silent breakpoint on `chunk_mark()`, called after each chunk outside its timed span), and both are
    also judged from a least-squares line through all the chunks. **malloc-bare**, for context: `break
    *ADDR if 0` on every location of the tracker's breakpoints in that run; it cannot slow down, so its
    flatness figures show how much the machine's load alone moves them.
  - **gdb.FinishBreakpoint baseline** (why the tool does not use it): a breakpoint on `rte_malloc` whose
    `stop()` makes one `gdb.FinishBreakpoint` per call (reading `rax` when it is hit), as GEF's heap tracer
    does, and one on `rte_free`; 300 pairs (3 runs) and 2,000 pairs (1 run: it alone takes about 40 s),
    timed per 100 pairs.
  - Configurations are interleaved round by round (3 rounds), so a change in the machine's load hits them
    alike; the medians are reported, and every run's figure too. The gdb process's CPU time per event
    (`os.times()` in gdb) and the program's (`/proc/PID/stat`) are reported as well: they move less than
    wall time when other work shares the machine.
  - gdb is pinned to CPU 0, where the program's main lcore (the loop) runs (`--gdb-cpu`, `none` to not
    pin). Each hit is a ptrace round trip between gdb and the program; unpinned, the scheduler puts gdb on
    the program's CPU or on the other one from run to run, and a bare hit then costs about 0.15 ms or 0.5
    to 1.8 ms on this 2-CPU VM, which swamps what is measured. Pinned, bare hits are the cheapest and
    steadiest, so the ratio is the strictest it can be.
- Correctness, checked in every tracked run: `mptrack status` counts 2*N + 255 (the populate enqueues,
  seen because tracking armed at creation) + 3 (the held objects) events and 3 in use, as the program's
  `rte_mempool_in_use_count()` says; for rte_malloc, 2*M + 3 events and 3 blocks out. The
  FinishBreakpoint baseline must see every return. A wrong count fails the benchmark.
- Two more tracked runs (depth 8 and depth 1) have `time.perf_counter()` accumulators around the
  tracker's `stop()` methods, the functions they call and the gdb API calls they make: the extension's own
  Python time per hit (those runs are not in the rates).

Run it as root from a checkout (it builds its own program; 3 to 5 minutes on this 2-CPU machine, depending
on other load):

```sh
/usr/bin/python3 benchmarks/track_bench.py            # measure, print, update this file
/usr/bin/python3 benchmarks/track_bench.py --no-docs  # measure and print only
/usr/bin/python3 benchmarks/track_bench.py --profile  # also one tracked run under cProfile, printed
```

It exits 1 when a count is wrong or the benchmark cannot run; `--check-targets` also makes it exit 3 when
a target is missed. Each run below is a section the script writes; a later run on the same day and machine
replaces its section.

""" + RESULTS_MARK + "\n"


def update_docs(path, key, section):
    bench_common.update_docs(path, DOCS_HEADER, RESULTS_MARK, SECTION_START, SECTION_END, key, section)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=2000, help="get/put pairs in the pool loop (default 2000)")
    ap.add_argument("--m", type=int, default=10000, help="rte_malloc/rte_free pairs (default 10000)")
    ap.add_argument("--chunk", type=int, default=1000, help="rte_malloc pairs per timed chunk (default 1000)")
    ap.add_argument("--finish", type=lambda s: [int(x) for x in s.split(",")], default=[300, 2000],
                    help="pairs for the FinishBreakpoint baseline runs (default 300,2000)")
    ap.add_argument("--finish-repeats", type=lambda s: [int(x) for x in s.split(",")], default=[3, 1],
                    help="runs of each of those (default 3,1: the 2,000-pair run alone takes about 40 s)")
    ap.add_argument("--finish-chunk", type=int, default=100, help="pairs per timed chunk there (default 100)")
    ap.add_argument("--gdb-cpu", type=lambda s: None if s == "none" else int(s), default=0,
                    help="pin gdb (and so the program's non-lcore threads) to this CPU, 'none' for no pinning "
                         "(default 0, the CPU of the program's main lcore: see docs)")
    ap.add_argument("--repeats", type=int, default=3, help="rounds of every configuration (default 3)")
    ap.add_argument("--gdbinit", type=Path, default=GDBINIT, help="the extension's gdbinit.py")
    ap.add_argument("--no-docs", action="store_true", help="do not update %s" % DOCS.relative_to(REPO))
    ap.add_argument("--docs", type=Path, default=DOCS, help="the file to update")
    ap.add_argument("--profile", action="store_true", help="also one tracked run under cProfile (printed)")
    ap.add_argument("--check-targets", action="store_true", help="exit 3 when a target is missed")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, JSON)")
    args = ap.parse_args(argv)
    if args.n < 1 or args.m < 1 or args.repeats < 1 or args.chunk < 1 or args.m // args.chunk < 1:
        ap.error("--n, --m, --repeats and --chunk must be positive, with at least one chunk in --m")
    if len(args.finish_repeats) != len(args.finish) or min(args.finish_repeats) < 1:
        ap.error("--finish-repeats needs one positive count per --finish size")
    workdir = Path(tempfile.mkdtemp(prefix="track_bench."))
    started = time.perf_counter()
    try:
        m = machine()
        program = build(workdir)
        out = measure(program, workdir, args)
        f = figures(out, args)
        (workdir / "figures.json").write_text(json.dumps(f, indent=1, default=str))
    except BenchError as e:
        print("track_bench: FAILED: %s" % e, file=sys.stderr)
        print("track_bench: logs kept in %s" % workdir, file=sys.stderr)
        return 1
    print(report_table(f, args))
    section = report_markdown(m, f, args)
    if not args.no_docs:
        update_docs(args.docs, "%s %s" % (m["day"], m["cpu"]), section)
        log("wrote a section in %s" % args.docs)
    log("total %.0f s" % (time.perf_counter() - started))
    if args.keep:
        log("kept %s" % workdir)
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    if args.check_targets and not (f["ratio_ok"] and f["flat_ok"]):
        return 3
    return 0


# =========================================================================== inside gdb
# This module is imported by gdb's Python (see Runner): the functions below run there.

_S = {}


def _write(results):
    with open(_S["params"]["results"], "w") as fh:
        json.dump(results, fh)


def _proc_cpu(pid):
    """utime + stime of a process (all its threads), in seconds."""
    with open("/proc/%d/stat" % pid) as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _stamp():
    t = os.times()
    import gdb  # pylint: disable=import-error,import-outside-toplevel
    pid = gdb.selected_inferior().pid
    return {"wall": time.perf_counter(), "user": t.user, "sys": t.system,
            "inferior": _proc_cpu(pid) if pid else 0.0}


def gdb_begin(params_path):
    import gdb  # pylint: disable=import-error,import-outside-toplevel

    class Marker(gdb.Breakpoint):
        """phase_start / phase_end: stop, silently."""

        def __init__(self, spec):
            super().__init__(spec)
            self.silent = True
            self.stamp = None

        def stop(self):
            self.stamp = _stamp()
            return True

    class ChunkMark(gdb.Breakpoint):
        """chunk_mark: note the gdb process's CPU time after each rte_malloc chunk, do not stop."""

        def __init__(self, spec):
            super().__init__(spec)
            self.silent = True
            self.cpu = []

        def stop(self):
            t = os.times()
            self.cpu.append(t.user + t.system)
            return False

    with open(params_path) as fh:
        _S["params"] = json.load(fh)
    _S["start"] = Marker("phase_start")
    _S["end"] = Marker("phase_end")
    if _S["params"]["m"]:
        _S["chunk_mark"] = ChunkMark("chunk_mark")
    if _S["params"]["profile"]:
        _install_profile(_S["params"]["profile"])


def gdb_phase_start():
    import gdb  # pylint: disable=import-error,import-outside-toplevel
    p = _S["params"]
    try:
        if _S["start"].stamp is None:
            raise BenchError("the program did not stop at phase_start()")
        config = p["config"]
        if config in ("bare3", "bare2", "pynoop3", "fastpath3", "malloc-bare"):
            here = int(gdb.parse_and_eval("(unsigned long)&pool_loop"))
            if here != p["addrs"]["pool_loop"]:
                raise BenchError("pool_loop is at 0x%x here, 0x%x in the tracked run: the layouts differ"
                                 % (here, p["addrs"]["pool_loop"]))
        if config in ("bare3", "bare2", "pynoop3", "fastpath3"):
            a = p["addrs"]
            ops = (int(gdb.parse_and_eval("bench_ops_enqueue")), int(gdb.parse_and_eval("bench_ops_dequeue")))
            if ops != (a["enqueue"], a["dequeue"]):
                raise BenchError("the driver functions moved: 0x%x 0x%x here" % ops)
            where = [a["enqueue"], a["dequeue"]] + ([a["return"]] if config != "bare2" else [])
            if config == "pynoop3":
                _S["noop"] = [_noop_breakpoint(addr) for addr in where]
            elif config == "fastpath3":
                _install_fastpath(a)
            else:
                for addr in where:
                    gdb.execute("break *0x%x if 0" % addr)
        elif config == "malloc-bare":
            for addr in p["addrs"]["locations"]:
                gdb.execute("break *%s if 0" % addr)
        elif config == "malloc":
            gdb.execute("mptrack track --malloc")
        elif config == "finish":
            _install_finish()
        if p["profile"] == "timed":
            for cell in _S["acc"].values():  # count the loop only, not the populate enqueues before it
                cell[0], cell[1] = 0, 0.0
        elif p["profile"] == "cprofile":
            _S["prof"].clear()
        _S["t0"] = _stamp()
    except Exception as e:  # pylint: disable=broad-except
        _write({"error": "%s: %s" % (type(e).__name__, e)})
        raise


def _noop_breakpoint(addr):
    import gdb  # pylint: disable=import-error,import-outside-toplevel

    class Noop(gdb.Breakpoint):
        def stop(self):
            return False

    bp = Noop("*0x%x" % addr, internal=True)
    bp.silent = True
    return bp


def _install_fastpath(a):
    """What depth-1 tracking needs at least, done the cheapest way found: no gdb.Frame at all.

    Registers through gdb.parse_and_eval("$reg") (frame 0's registers come
    from the sentinel frame; gdb.newest_frame() also computes frame 0's ID,
    which runs the unwinder sniffers), memory with one read_memory each, the
    caller's PC from the return address at [rsp] on entry.  No shadow, no
    checks: it counts objects, and gdb_phase_end checks the counts.
    """
    import struct  # pylint: disable=import-outside-toplevel
    import gdb  # pylint: disable=import-error,import-outside-toplevel
    inferior = gdb.selected_inferior()
    box = _S["fastpath"] = {"alloc": 0, "free": 0, "callers": set(), "pending": {}}
    mask = 0xFFFFFFFFFFFFFFFF

    def reg(name):
        return int(gdb.parse_and_eval("$" + name)) & mask

    def thread():
        ptid = gdb.selected_thread().ptid
        return ptid[1] or ptid[2]

    class Enqueue(gdb.Breakpoint):
        def stop(self):
            table, n, sp = reg("rsi"), reg("rdx") & 0xFFFFFFFF, reg("rsp")
            objs = struct.unpack("<%dQ" % n, inferior.read_memory(table, 8 * n).tobytes())
            box["callers"].add(struct.unpack("<Q", inferior.read_memory(sp, 8).tobytes())[0])
            box["free"] += len(objs)
            return False

    class Dequeue(gdb.Breakpoint):
        def stop(self):
            table, n, sp = reg("rsi"), reg("rdx") & 0xFFFFFFFF, reg("rsp")
            ret = struct.unpack("<Q", inferior.read_memory(sp, 8).tobytes())[0]
            box["callers"].add(ret)
            box["pending"].setdefault(thread(), []).append((sp + 8, table, n))
            return False

    class Return(gdb.Breakpoint):
        def stop(self):
            stack = box["pending"].get(thread())
            sp = reg("rsp")
            while stack:
                after, table, n = stack.pop()
                if after == sp:
                    if reg("rax") & 0xFFFFFFFF == 0:
                        box["alloc"] += len(struct.unpack("<%dQ" % n, inferior.read_memory(table, 8 * n).tobytes()))
                    break
            return False

    _S["fastpath_bps"] = []
    for cls, addr in ((Enqueue, a["enqueue"]), (Dequeue, a["dequeue"]), (Return, a["return"])):
        bp = cls("*0x%x" % addr, internal=True)
        bp.silent = True
        _S["fastpath_bps"].append(bp)


def _install_finish():
    """One gdb.FinishBreakpoint per rte_malloc call, created in the entry breakpoint's stop() (GEF's way)."""
    import gdb  # pylint: disable=import-error,import-outside-toplevel
    box = _S["finish"] = {"returns": 0, "frees": 0, "out_of_scope": 0, "live": set()}

    class Return(gdb.FinishBreakpoint):
        def stop(self):
            box["returns"] += 1
            box["live"].add(int(gdb.newest_frame().read_register("rax")) & 0xFFFFFFFFFFFFFFFF)
            return False

        def out_of_scope(self):
            box["out_of_scope"] += 1

    class Entry(gdb.Breakpoint):
        def stop(self):
            Return(gdb.newest_frame(), internal=True)
            return False

    class Free(gdb.Breakpoint):
        def stop(self):
            box["frees"] += 1
            box["live"].discard(int(gdb.newest_frame().read_register("rdi")) & 0xFFFFFFFFFFFFFFFF)
            return False

    for cls, spec in ((Entry, "rte_malloc"), (Free, "rte_free")):
        bp = cls(spec, internal=True)
        bp.silent = True


_LOC = re.compile(r"^(-?\d+)(?:\.\d+)?\s+(?:(\S+(?: \S+)*?)\s+keep\s+)?y\S*\s+(0x[0-9a-f]+)\s*(.*?)\s*(?:inf \d+)?$")


def _tracker_locations(text):
    """[{addr, what}] of the internal 'breakpoint' locations in `maint info breakpoints` (the tracker's)."""
    kinds = {}
    found = {}
    for line in text.splitlines():
        mo = _LOC.match(line)
        if not mo:
            continue
        num, kind, addr, what = mo.groups()
        if kind:
            kinds[num] = kind
        if int(num) < 0 and kinds.get(num) == "breakpoint":
            found[int(addr, 16)] = what
    return [{"addr": a, "what": w} for a, w in sorted(found.items())]


def _status(text):
    st = {}
    mo = re.search(r"pool %s at 0x[0-9a-f]+: (\d+) events, (\d+) in use" % POOL, text)
    if mo:
        st["events"], st["in_use"] = int(mo.group(1)), int(mo.group(2))
    mo = re.search(r"rte_malloc family: (\d+) events, (\d+) blocks out", text)
    if mo:
        st["heap_events"], st["heap_out"] = int(mo.group(1)), int(mo.group(2))
    mo = re.search(r"^faults: (.*)$", text, re.M)
    if mo:
        st["faults"] = mo.group(1).strip()
    return st


def gdb_phase_end():
    import gdb  # pylint: disable=import-error,import-outside-toplevel
    p = _S["params"]
    try:
        t1 = _S["end"].stamp
        if t1 is None:
            raise BenchError("the program did not stop at phase_end()")
        timed = {name: list(cell) for name, cell in _S.get("acc", {}).items()}
        t0 = _S["t0"]

        def val(expr):
            return int(gdb.parse_and_eval(expr))

        config = p["config"]
        r = {"config": "finish" if config == "finish" else config, "n": p["n"], "m": p["m"],
             "phase": "pool" if p["n"] else "malloc",
             "wall_s": t1["wall"] - t0["wall"], "gdb_user_s": t1["user"] - t0["user"],
             "gdb_sys_s": t1["sys"] - t0["sys"], "inferior_cpu_s": t1["inferior"] - t0["inferior"],
             "pool_size": val("bench_pool_size"), "hold": val("bench_hold"),
             "ops_enqueue": val("bench_ops_enqueue"), "ops_dequeue": val("bench_ops_dequeue"),
             "pool_loop": val("(unsigned long)&pool_loop")}
        r["gdb_cpu_s"] = r["gdb_user_s"] + r["gdb_sys_s"]
        if p["n"]:
            r["program_s"] = val("bench_pool_ns") / 1e9
            r["events"] = 2 * p["n"]
            r["hits"] = 3 * p["n"]
            r["program_in_use"] = val("bench_pool_in_use")
        else:
            chunks = val("bench_chunks")
            r["chunk_ns"] = [val("bench_chunk_ns[%d]" % i) for i in range(chunks)]
            r["chunk_pairs"] = [min(p["chunk"], p["m"] - i * p["chunk"]) for i in range(chunks)]
            r["program_s"] = sum(r["chunk_ns"]) / 1e9
            r["program_held"] = val("bench_malloc_held")
            marks = [t0["user"] + t0["sys"]] + _S["chunk_mark"].cpu
            if len(marks) != chunks + 1:
                raise BenchError("chunk_mark was hit %d times for %d chunks" % (len(marks) - 1, chunks))
            r["chunk_gdb_cpu_s"] = [b - a for a, b in zip(marks, marks[1:])]
        if config in ("tracked", "tracked-bt1", "malloc"):
            r["status_text"] = gdb.execute("mptrack status", to_string=True)
            r["status"] = _status(r["status_text"])
            r["tracker_locations"] = _tracker_locations(gdb.execute("maint info breakpoints", to_string=True))
        if config == "fastpath3":
            box = _S["fastpath"]
            r["fastpath"] = {"alloc": box["alloc"], "free": box["free"], "callers": len(box["callers"])}
        if config == "finish":
            box = _S["finish"]
            r["finish"] = {"returns": box["returns"], "frees": box["frees"], "live": len(box["live"]),
                           "out_of_scope": box["out_of_scope"]}
        if p["profile"] == "timed":
            r["timed"] = timed
        elif p["profile"] == "cprofile":
            import io  # pylint: disable=import-outside-toplevel
            import pstats  # pylint: disable=import-outside-toplevel
            buf = io.StringIO()
            pstats.Stats(_S["prof"], stream=buf).sort_stats("tottime").print_stats(30)
            r["cprofile"] = buf.getvalue()
        _write(r)
    except Exception as e:  # pylint: disable=broad-except
        _write({"error": "%s: %s" % (type(e).__name__, e)})
        raise


def _install_profile(kind):
    """Accumulators (or cProfile) around the tracker's stop() path, patched in before `mptrack track`."""
    import functools  # pylint: disable=import-outside-toplevel
    from gdb_mptrack import backtraces, shadow, tracking  # pylint: disable=import-error,import-outside-toplevel

    if kind == "cprofile":
        import cProfile  # pylint: disable=import-outside-toplevel
        prof = _S["prof"] = cProfile.Profile()
        original = tracking._TrackerBreakpoint.stop  # pylint: disable=protected-access

        def profiled_stop(self):
            prof.enable()
            try:
                return original(self)
            finally:
                prof.disable()

        tracking._TrackerBreakpoint.stop = profiled_stop  # pylint: disable=protected-access
        return

    acc = _S["acc"] = {}
    perf = time.perf_counter

    def wrap(owner, attr, name):
        original = getattr(owner, attr)
        cell = acc.setdefault(name, [0, 0.0])

        @functools.wraps(original)
        def timed(*a, **kw):
            t = perf()
            try:
                return original(*a, **kw)
            finally:
                cell[0] += 1
                cell[1] += perf() - t

        setattr(owner, attr, timed)

    # stop() per breakpoint class (each subclass inherits _TrackerBreakpoint.stop)
    original_stop = tracking._TrackerBreakpoint.stop  # pylint: disable=protected-access

    def stop(self):
        cell = acc.setdefault(type(self).__name__ + ".stop", [0, 0.0])
        t = perf()
        try:
            return original_stop(self)
        finally:
            cell[0] += 1
            cell[1] += perf() - t

    tracking._TrackerBreakpoint.stop = stop  # pylint: disable=protected-access
    for attr in ("_thread_id", "_reg"):
        wrap(tracking, attr, "tracking." + attr)
    wrap(backtraces, "capture_pcs", "backtraces.capture_pcs")
    for attr in ("learn",):
        wrap(backtraces.Symbolizer, attr, "Symbolizer." + attr)
    for attr in ("new_event", "lcore", "read", "read_ptrs", "check_free", "owner_of", "pool_name",
                 "expect_return", "returned"):
        wrap(tracking.Tracker, attr, "Tracker." + attr)
    for attr in ("alloc", "free"):
        wrap(shadow.ShadowPool, attr, "ShadowPool." + attr)
    wrap(shadow.Tracker, "event", "shadow.Tracker.event")
    wrap(tracking._DequeueReturn, "__init__", "_DequeueReturn.__init__")  # pylint: disable=protected-access
    wrap(tracking._DequeueReturn, "__call__", "_DequeueReturn.__call__")  # pylint: disable=protected-access

    # the gdb calls the stop() path makes (C functions, wrapped where the tracker looks them up)
    import gdb  # pylint: disable=import-error,import-outside-toplevel
    for attr in ("newest_frame", "selected_thread", "parse_and_eval"):
        wrap(gdb, attr, "gdb." + attr)


if __name__ == "__main__":
    sys.exit(main())
