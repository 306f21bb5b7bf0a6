#!/usr/bin/python3
"""Benchmark: `mptrack dump` on a core holding a pool of 1,048,576 objects.

    /usr/bin/python3 benchmarks/dump_bench.py [--repeats N] [--sample N] [--no-docs] ...

A benchmark, not a timed test: it measures and records, and fails only when
an answer is wrong (or with --check-targets, when a target is missed).  Run it
as root on an idle machine with gdb, DPDK (libdpdk-dev, pkg-config) and a C
compiler; it needs about 1 GB in the temporary directory for the core.

Steps:
1. Build benchmarks/bigpool.c (-g, against the installed DPDK) into a temp dir.
2. Run it without hugepages; it makes "bigpool" (1,048,576 objects of 64 bytes,
   cache 256, ring_mp_mc), takes and gives back objects on lcores 0 and 1, and
   writes its own counts (rte_mempool_in_use_count, ...) to a file.
3. Take a core with `gdb -p PID -batch -ex 'gcore FILE'` (coredump_filter
   0x7f first, so that DPDK's memory is in it), then kill the program.
4. In ONE gdb run on that core (this file is imported inside gdb and
   `gdb_main` runs there):
   a. the tool: first one dump to a real CSV and `mptrack pools --json`,
      checked against the program's own counts (a wrong answer stops the
      benchmark); then `mptrack pools` and `mptrack dump bigpool --csv
      /dev/null`, each timed around gdb.execute with time.perf_counter (wall)
      and time.process_time (CPU of the gdb process), cold every time: the
      extension's cached session is dropped first, so each run opens the
      core, finds the pools, walks the objects and writes the CSV.  The dump
      is timed once more right after an untimed `mptrack pools`;
   b. the tool's classification alone, what the naive way (c) does: a new
      gdb_mptrack.pools.Pool for the pool's address on a freshly opened core
      (reads the header, the ring and the caches) and Pool.classify() (walks
      the element list, places every free entry, marks the rest in use),
      timed with the same clocks; and the same with the core's opening and
      the pool search included ("cold").  Its counts are checked too;
   c. the naive way: the same classification through gdb.Value field access.
      Read every lcore cache (`mp->local_cache[i].len`, `.objs[j]`) and every
      ring slot from cons.tail to prod.tail (`((void **)(ring + 1))[k & mask]`)
      into a Python set (a per-pool cost, timed whole), then walk the first
      --sample objects of `mp->elt_list` (`hdr->next.stqe_next`, checking
      `hdr->mp`) and classify each by set membership (a per-object cost,
      extrapolated to the pool size).  The sample's states are checked against
      the tool's CSV.  Set membership is the cheapest naive way there is, so
      the ratio is a lower bound on the tool's advantage.
   d. for context only: the naive walk with one gdb.parse_and_eval string
      expression per field, timed on --eval-sample objects and ring slots.
   Each measurement runs --repeats times; the medians are reported.  gc.collect()
   runs before each timed step, so one step's garbage is not collected in the next.
5. Print a table and put a dated section in docs/benchmarks.md (one per date
   and machine: a second run the same day on the same machine replaces it).

Targets (from the issue): at least 200,000 objects/s for the whole dump (a), and
the classification (b) at least 50x faster than the naive way (c), judged on
wall-clock time.  The ratio of the whole dump (CSV writing included) to the
naive classification is shown too, for context.
"""

import argparse
import csv
import gc
import json
import os
import re
import shutil
import signal
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
SOURCE = BENCH_DIR / "bigpool.c"
DOCS = REPO / "docs" / "benchmarks.md"
POOL = "bigpool"
EAL_MEMORY_MB = "768"
TARGET_RATE = 200_000
TARGET_RATIO = 50.0
READY_TIMEOUT = 120
GDB_TIMEOUT = 1800

RESULTS_MARK = "<!-- dump_bench results: newest first -->"
SECTION_START = "<!-- dump_bench run: %s -->"
SECTION_END = "<!-- /dump_bench run -->"


def log(text):
    print("dump_bench: " + text, flush=True)


# =========================================================================== outside gdb


def build(workdir):
    return bench_common.build(SOURCE, workdir / "bigpool", log)


def read_counts(path):
    counts = {}
    for line in path.read_text().splitlines():
        key, _, value = line.partition(" ")
        counts[key] = int(value, 0) if re.fullmatch(r"(0x[0-9a-fA-F]+|\d+)", value) else value
    return counts


class Program:
    """bigpool running with a unique --file-prefix; stop() kills it and removes its runtime dir."""

    def __init__(self, path, workdir):
        self.prefix = "mptrack-bench-%d" % os.getpid()
        self.counts_path = workdir / "counts"
        self.log_path = workdir / "bigpool.log"
        argv = [str(path), "--no-huge", "-m", EAL_MEMORY_MB, "--no-pci", "-l", "0,1",
                "--file-prefix", self.prefix, "--", str(self.counts_path)]
        log("running: " + " ".join(argv))
        with open(self.log_path, "w") as out:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)

    def wait_ready(self):
        deadline = time.monotonic() + READY_TIMEOUT
        while not self.counts_path.exists():
            if self.proc.poll() is not None:
                raise BenchError("bigpool exited with status %d before it was ready:\n%s"
                                 % (self.proc.returncode, self.log_path.read_text()))
            if time.monotonic() > deadline:
                raise BenchError("bigpool was not ready after %d s:\n%s" % (READY_TIMEOUT, self.log_path.read_text()))
            time.sleep(0.2)
        return read_counts(self.counts_path)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
        for base in ("/var/run/dpdk", os.path.join(os.environ.get("XDG_RUNTIME_DIR", "/tmp"), "dpdk"), "/tmp/dpdk"):
            shutil.rmtree(os.path.join(base, self.prefix), ignore_errors=True)


def take_core(pid, core):
    # Keep every kind of mapping, whatever DPDK's memory turns out to be (README: Cores).
    with open("/proc/%d/coredump_filter" % pid, "w") as f:
        f.write("0x7f")
    log("taking a core of process %d: gdb -p %d -batch -ex 'gcore %s'" % (pid, pid, core))
    started = time.perf_counter()
    res = run(["gdb", "-nx", "-batch", "-iex", "set debuginfod enabled off", "-p", str(pid),
               "-ex", "gcore %s" % core], timeout=600, env=gdb_env())
    if not core.exists() or core.stat().st_size == 0:
        raise BenchError("gcore made no core:\n%s\n%s" % (res.stdout, res.stderr))
    log("core: %d MB in %.1f s" % (core.stat().st_size >> 20, time.perf_counter() - started))


def measure_in_gdb(program, core, counts, args, workdir):
    params = {"pool": POOL, "counts": counts, "repeats": args.repeats, "sample": args.sample,
              "eval_sample": args.eval_sample,
              "workdir": str(workdir), "profile": args.profile, "results": str(workdir / "results.json")}
    params_path = workdir / "params.json"
    params_path.write_text(json.dumps(params))
    script = ("import sys; sys.path.insert(0, %r); import dump_bench; dump_bench.gdb_main(%r)"
              % (str(BENCH_DIR), str(params_path)))
    cmd = ["gdb", "-nx", "-batch", "-iex", "set debuginfod enabled off", "-ex", "set pagination off",
           "-ex", "set style enabled off", "-ex", "set width 0", "-x", str(args.gdbinit),
           str(program), str(core), "-ex", "python " + script]
    log("measuring in one gdb run (%d repeats; a minute or two): gdb -nx -batch -x %s %s %s -ex 'python ...'"
        % (args.repeats, args.gdbinit, program.name, core.name))
    res = run(cmd, timeout=GDB_TIMEOUT, env=gdb_env(), stdin=subprocess.DEVNULL)
    (workdir / "gdb.log").write_text(res.stdout + "\n--- stderr\n" + res.stderr)
    results_path = Path(params["results"])
    if not results_path.exists():
        raise BenchError("gdb wrote no results (exit %d):\n%s\n%s" % (res.returncode, res.stdout[-4000:],
                                                                       res.stderr[-4000:]))
    results = json.loads(results_path.read_text())
    if results.get("error"):
        raise BenchError("in gdb: " + results["error"])
    if results.get("profile"):
        print(results["profile"])
    return results


# ------------------------------------------------------------------ machine, report, docs


def machine():
    return bench_common.machine(REPO)


CLOCKS = ("wall", "cpu")  # time.perf_counter(), time.process_time() of the gdb process


def figures(results, clock):
    """Medians and rates for one clock ('wall' or 'cpu')."""
    c = CLOCKS.index(clock)
    size, sample = results["size"], results["sample"]

    def median(key):
        return statistics.median(run[c] for run in results[key])

    naive_times = [free[c] + walk[c] * size / sample
                   for free, walk in zip(results["naive_free"], results["naive_walk"])]
    naive_s = statistics.median(naive_times)
    dump_s = median("tool_dump")
    tool_rate = size / dump_s
    naive_rate = size / naive_s
    classify_s, classify_cold_s = median("tool_classify"), median("tool_classify_cold")
    eval_rate = statistics.median(size / (obj[c] * size + entry[c] * results["naive_free_entries"])
                                  for obj, entry in zip(results["eval_object"], results["eval_entry"]))
    return {
        "eval_rate": eval_rate,
        "eval_ratio": tool_rate / eval_rate,
        "eval_object_us": statistics.median(run[c] for run in results["eval_object"]) * 1e6,
        "eval_entry_us": statistics.median(run[c] for run in results["eval_entry"]) * 1e6,
        "size": size,
        "dump_s": dump_s,
        "pools_s": median("tool_pools"),
        "dump_warm_s": median("tool_dump_warm"),
        "tool_rate": tool_rate,
        "naive_rate": naive_rate,
        "naive_walk_us": median("naive_walk") / sample * 1e6,
        "naive_free_s": median("naive_free"),
        "naive_free_entries": results["naive_free_entries"],
        "naive_slot_us": median("naive_free") / results["naive_free_entries"] * 1e6,
        "naive_s": naive_s,
        "classify_s": classify_s,
        "classify_rate": size / classify_s,
        "classify_ratio": naive_s / classify_s,
        "classify_cold_s": classify_cold_s,
        "classify_cold_ratio": naive_s / classify_cold_s,
        "dump_ratio": tool_rate / naive_rate,
        "rate_ok": tool_rate >= TARGET_RATE,
        "ratio_ok": naive_s / classify_s >= TARGET_RATIO,
    }


def _verdict(flag, bold=False):
    if flag:
        return "pass"
    return "**FAIL**" if bold else "FAIL"


def report_markdown(m, wall, cpu, results, args):
    counts = results["counts"]
    lines = [
        "### %s, %s" % (m["date"], m["cpu"]),
        "",
        "Machine: %s CPUs (`nproc`), %s, %s RAM, kernel %s, %s, Python %s, numpy %s, DPDK %s; gdb-mptrack %s. "
        "1-minute load average %s the measurements in gdb."
        % (m["nproc"], m["cpu"], m["ram"], m["kernel"], m["gdb"], m["python"], results.get("numpy", "?"),
           m["dpdk"], m["commit"], _load(results["load"])),
        "",
        "Pool `%s`: %s objects of %d bytes, %s in use, %s free (%s of them in lcore caches), checked "
        "against the program's own counts. Medians of %d runs; naive sample: the first %s objects. "
        "Wall: `time.perf_counter()`; CPU: `time.process_time()` of the gdb process (less sensitive to "
        "other load). The targets are judged on wall-clock time."
        % (POOL, _n(wall["size"]), results["elt_size"], _n(counts["in_use"]), _n(counts["avail"]),
           _n(sum(v for k, v in counts.items() if k.startswith("cache_len_"))), args.repeats, _n(args.sample)),
        "",
        "| measure | wall | CPU | target | result |",
        "| --- | --- | --- | --- | --- |",
        "| classification: new `Pool` + `Pool.classify()` on the open core | %.3f s | %.3f s | | |"
        % (wall["classify_s"], cpu["classify_s"]),
        "| naive classification through gdb.Value (extrapolated to the pool) | %.2f s | %.2f s | | |"
        % (wall["naive_s"], cpu["naive_s"]),
        "| ratio naive / tool, classification | **%.0fx** | %.0fx | >= %gx | %s |"
        % (wall["classify_ratio"], cpu["classify_ratio"], TARGET_RATIO, _verdict(wall["ratio_ok"], True)),
        "| classification cold (core opened, pools found, then as above) | %.2f s | %.2f s | | |"
        % (wall["classify_cold_s"], cpu["classify_cold_s"]),
        "| context: ratio naive / tool, cold classification | %.1fx | %.1fx | | |"
        % (wall["classify_cold_ratio"], cpu["classify_cold_ratio"]),
        "| `mptrack dump %s --csv /dev/null`, cold | %.2f s | %.2f s | | |" % (POOL, wall["dump_s"], cpu["dump_s"]),
        "| dump objects/s | **%s** | %s | >= %s | %s |"
        % (_n(round(wall["tool_rate"])), _n(round(cpu["tool_rate"])), _n(TARGET_RATE),
           _verdict(wall["rate_ok"], True)),
        "| naive objects/s (gdb.Value, extrapolated) | %s | %s | | |"
        % (_n(round(wall["naive_rate"])), _n(round(cpu["naive_rate"]))),
        "| context: ratio dump / naive classification (CSV writing included) | %.1fx | %.1fx | | |"
        % (wall["dump_ratio"], cpu["dump_ratio"]),
        "| `mptrack pools`, cold | %.2f s | %.2f s | | |" % (wall["pools_s"], cpu["pools_s"]),
        "| `mptrack dump` right after `mptrack pools` (pools already found) | %.2f s | %.2f s | | |"
        % (wall["dump_warm_s"], cpu["dump_warm_s"]),
        "| naive: walk + classify, per object | %.1f us | %.1f us | | |" % (wall["naive_walk_us"], cpu["naive_walk_us"]),
        "| naive: read the %s free entries (ring + caches) | %.2f s | %.2f s | | |"
        % (_n(wall["naive_free_entries"]), wall["naive_free_s"], cpu["naive_free_s"]),
        "| context, not the target: naive with one `gdb.parse_and_eval` per field, objects/s "
        "(%.0f us per object, %.0f us per free entry, wall) | %s | %s | | |"
        % (wall["eval_object_us"], wall["eval_entry_us"], _n(round(wall["eval_rate"])), _n(round(cpu["eval_rate"]))),
        "| context: ratio dump / parse_and_eval naive | %.1fx | %.1fx | | |" % (wall["eval_ratio"], cpu["eval_ratio"]),
        "",
        "Every run, wall seconds: classification %s; cold classification %s; dump %s; pools %s; dump after "
        "pools %s; naive free-store read %s; naive walk of the sample %s. CPU seconds: classification %s; "
        "dump %s."
        % (_list(results["tool_classify"], "%.3f"), _list(results["tool_classify_cold"]),
           _list(results["tool_dump"]), _list(results["tool_pools"]), _list(results["tool_dump_warm"]),
           _list(results["naive_free"]), _list(results["naive_walk"], "%.3f"),
           _list(results["tool_classify"], "%.3f", 1), _list(results["tool_dump"], "%.2f", 1)),
    ]
    if args.note:
        lines += ["", args.note]
    return "\n".join(lines) + "\n"


def _load(load):
    """'1.20 before, 2.30 after' from two os.getloadavg() triples (1-minute figures)."""
    return "%.2f before, %.2f after" % (load[0][0], load[1][0])


def _n(value):
    return "{:,}".format(value)


def _list(runs, fmt="%.2f", clock=0):
    return ", ".join(fmt % run[clock] for run in runs)


def report_table(wall, cpu):
    rows = [
        ("", "wall", "CPU"),
        ("pool size (objects)", _n(wall["size"]), ""),
        ("classification: new Pool + classify() (s)", "%.3f" % wall["classify_s"], "%.3f" % cpu["classify_s"]),
        ("naive gdb.Value classification, extrapolated (s)", "%.2f" % wall["naive_s"], "%.2f" % cpu["naive_s"]),
        ("ratio naive/tool, classification", "%.1fx" % wall["classify_ratio"], "%.1fx" % cpu["classify_ratio"]),
        ("classification cold: open core, find pool (s)", "%.3f" % wall["classify_cold_s"],
         "%.3f" % cpu["classify_cold_s"]),
        ("ratio naive/tool, cold classification", "%.1fx" % wall["classify_cold_ratio"],
         "%.1fx" % cpu["classify_cold_ratio"]),
        ("mptrack dump --csv /dev/null, cold (s)", "%.3f" % wall["dump_s"], "%.3f" % cpu["dump_s"]),
        ("dump objects/s", _n(round(wall["tool_rate"])), _n(round(cpu["tool_rate"]))),
        ("naive gdb.Value objects/s", _n(round(wall["naive_rate"])), _n(round(cpu["naive_rate"]))),
        ("ratio dump/naive classification", "%.1fx" % wall["dump_ratio"], "%.1fx" % cpu["dump_ratio"]),
        ("mptrack pools, cold (s)", "%.3f" % wall["pools_s"], "%.3f" % cpu["pools_s"]),
        ("mptrack dump right after mptrack pools (s)", "%.3f" % wall["dump_warm_s"], "%.3f" % cpu["dump_warm_s"]),
        ("naive walk+classify per object (us)", "%.2f" % wall["naive_walk_us"], "%.2f" % cpu["naive_walk_us"]),
        ("naive read of %s free entries (s)" % _n(wall["naive_free_entries"]),
         "%.3f" % wall["naive_free_s"], "%.3f" % cpu["naive_free_s"]),
        ("context: parse_and_eval naive objects/s", _n(round(wall["eval_rate"])), _n(round(cpu["eval_rate"]))),
        ("context: ratio dump/parse_and_eval naive", "%.1fx" % wall["eval_ratio"], "%.1fx" % cpu["eval_ratio"]),
        ("target: dump >= %s objects/s (wall)" % _n(TARGET_RATE), _verdict(wall["rate_ok"]), ""),
        ("target: classification >= %gx the naive way (wall)" % TARGET_RATIO, _verdict(wall["ratio_ok"]), ""),
    ]
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    return "\n".join(("%-*s  %*s  %s" % (w0, r[0], w1, r[1], r[2])).rstrip() for r in rows)


DOCS_HEADER = """# Benchmarks

## `benchmarks/dump_bench.py`: dumping a pool of 1,048,576 objects from a core

What it measures (the issue: "dump a pool of at least 1,000,000 objects from a core, record objects per
second and, in the same run, the ratio to the same classification done naively through gdb.Value field
access on a sample"; targets: at least 200,000 objects/s and at least 50x the naive way):

- `benchmarks/bigpool.c` makes `bigpool`: 1,048,576 objects of 64 bytes, cache 256, driver `ring_mp_mc`.
  Lcore 0 takes 300,000 objects and gives 200 back, lcore 1 takes 5,000 and gives 100 back, so objects are
  in use, free in the ring and free in both lcores' caches. It writes DPDK's own counts to a file and
  sleeps; the benchmark takes a core with `gdb -p PID -batch -ex 'gcore FILE'` and kills it.
- In one gdb run on the core, each timed with `time.perf_counter()` (wall) and `time.process_time()`
  (CPU time of the gdb process):
  - **the tool's classification** (what the naive way below does, and what the 50x target is about): a
    new `gdb_mptrack.pools.Pool` for the pool's address on a freshly opened core (it reads the header,
    the ring and the lcore caches) and `Pool.classify()` (walks the element list, places every free
    entry, marks the rest in use; numpy arrays). Its counts are checked against the program's. The same
    is timed **cold**, with the opening of the core (pyelftools) and the search for pools included, for
    context: the naive way starts with the core open and the pool's address known.
  - **the whole dump**: `mptrack dump bigpool --csv /dev/null`, cold each time: the extension's cached
    session is dropped first, so a run opens the core, finds the pools, walks and classifies every
    object, builds a row for each and writes the CSV. Objects/s = pool size / median time (the 200,000
    target). `mptrack pools` is timed the same way. Before that, one dump to a real CSV file and
    `mptrack pools --json` are checked against the program's counts (objects, in use, free, each lcore's
    cache); a wrong answer fails the benchmark and nothing is recorded.
  - **the naive way**: the same classification through `gdb.Value` field access: every lcore cache
    (`mp->local_cache[i].len`, `.objs[j]`) and every ring slot from `cons.tail` to `prod.tail`
    (`((void **)(ring + 1))[k & mask]`) read into a Python set (a per-pool cost, timed whole), then the
    first N objects of `mp->elt_list` walked (`hdr->next.stqe_next`, checking `hdr->mp`) and classified
    by set membership (a per-object cost, extrapolated to the pool size). The sample's states must match
    the tool's. Set membership is the cheapest naive way, so the ratio is a lower bound. The ratio of the
    whole dump (CSV writing included) to it is shown too, for context.
  - **for context only**, not what the target means: the same walk with one `gdb.parse_and_eval` string
    expression per field (`((struct rte_mempool_objhdr *)ADDR)->mp`), timed on 200 objects and 200
    ring slots (`--eval-sample`) and extrapolated the same way. On this gdb each such expression costs
    milliseconds (gdb looks the struct up again every time), so this way is far slower than gdb.Value.
  - `mptrack dump` is also timed right after an untimed `mptrack pools` (the pools already found, the
    objects not yet walked), as someone at the gdb prompt would run them; not judged against the targets.
  - Each measurement is repeated (`--repeats`, default 5) and the medians are reported. The naive sample
    is the first 100,000 objects (`--sample`): smaller samples overstate the naive per-object cost here
    (about 5 us per object at 100,000, 8 us at 20,000, 25 us at 2,000: the first few thousand
    gdb.Value operations after the free-store read are slow), which would flatter the ratio. The load
    average before and after is recorded: other work on the machine slows the wall-clock figures (both
    the tool's and the naive way's), and the CPU-time column is then the steadier one. The targets are
    judged on wall-clock time.

Run it as root from a checkout (it builds its own program; about 1 GB of temporary space for the core):

```sh
/usr/bin/python3 benchmarks/dump_bench.py            # measure, print, update this file
/usr/bin/python3 benchmarks/dump_bench.py --no-docs  # measure and print only
/usr/bin/python3 benchmarks/dump_bench.py --profile  # also cProfile one cold dump inside gdb
```

It exits 1 when the tool's answer is wrong or the benchmark cannot run; `--check-targets` also makes it
exit 3 when a target is missed. Each run below is a section the script writes; a later run on the same
day and machine replaces its section.

""" + RESULTS_MARK + "\n"


def update_docs(path, key, section):
    bench_common.update_docs(path, DOCS_HEADER, RESULTS_MARK, SECTION_START, SECTION_END, key, section)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="runs of each measurement (default 5)")
    parser.add_argument("--sample", type=int, default=100000, help="objects in the naive sample (default 100000)")
    parser.add_argument("--eval-sample", type=int, default=200,
                        help="objects and ring slots in the parse_and_eval sample (default 200)")
    parser.add_argument("--gdbinit", type=Path, default=GDBINIT, help="gdbinit.py to load (default: this checkout's)")
    parser.add_argument("--docs", type=Path, default=DOCS, help="markdown file to record into (default docs/benchmarks.md)")
    parser.add_argument("--no-docs", action="store_true", help="do not record the figures")
    parser.add_argument("--profile", action="store_true", help="cProfile one cold dump inside gdb and print the top")
    parser.add_argument("--check-targets", action="store_true", help="exit 3 when a target is missed")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (program, core, CSV, logs)")
    parser.add_argument("--note", metavar="TEXT", help="a paragraph to add to the recorded section (e.g. other runs)")
    args = parser.parse_args(argv)
    if min(args.repeats, args.sample, args.eval_sample) < 1:
        parser.error("--repeats, --sample and --eval-sample must be at least 1")

    workdir = Path(tempfile.mkdtemp(prefix="mptrack-bench-"))
    program = None
    try:
        exe = build(workdir)
        program = Program(exe, workdir)
        counts = program.wait_ready()
        log("bigpool ready: " + ", ".join("%s=%s" % kv for kv in counts.items() if kv[0] != "ready"))
        if counts["held"] != counts["in_use"] or counts["in_use"] + counts["avail"] != counts["size"]:
            raise BenchError("bigpool's own counts disagree: %s" % counts)
        core = workdir / "core"
        take_core(program.proc.pid, core)
        program.stop()
        load_before = os.getloadavg()
        results = measure_in_gdb(exe, core, counts, args, workdir)
        results["load"] = (load_before, os.getloadavg())
    except BenchError as e:
        print("dump_bench: FAILED: %s" % e, file=sys.stderr)
        print("dump_bench: files kept in %s" % workdir, file=sys.stderr)
        return 1
    finally:
        if program is not None:
            program.stop()
    if not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    else:
        log("files kept in %s" % workdir)

    log("checked: %s" % "; ".join(results["checks"]))
    m = machine()
    wall, cpu = figures(results, "wall"), figures(results, "cpu")
    print()
    print("%s, %s CPUs, %s; load average %s" % (m["date"], m["nproc"], m["cpu"], _load(results["load"])))
    print(report_table(wall, cpu))
    if not args.no_docs:
        update_docs(args.docs, "%s, %s CPUs, %s" % (m["day"], m["nproc"], m["cpu"]),
                    report_markdown(m, wall, cpu, results, args))
        log("recorded in %s" % args.docs)
    if args.check_targets and not (wall["rate_ok"] and wall["ratio_ok"]):
        return 3
    return 0


# =========================================================================== inside gdb


def gdb_main(params_path):
    """Entry point inside gdb: measure, check, write the results JSON (or the error)."""
    with open(params_path) as f:
        params = json.load(f)
    try:
        results = _gdb_measure(params)
    except Exception as e:  # pylint: disable=broad-except
        import traceback
        results = {"error": "%s\n%s" % (e, traceback.format_exc())}
    with open(params["results"], "w") as f:
        json.dump(results, f)


def _cold():
    """Drop the extension's cached session, so the next command starts from nothing."""
    from gdb_mptrack import target
    target.forget()


def _clock():
    return time.perf_counter(), time.process_time()


def _since(started):
    """[wall, cpu] seconds since a _clock() reading."""
    now = _clock()
    return [now[0] - started[0], now[1] - started[1]]


def _timed(command, after=None):
    """[wall, cpu] seconds of one cold run of a gdb command (run `after` first, untimed, if given)."""
    import gdb  # pylint: disable=import-error
    _cold()
    if after:
        gdb.execute(after, to_string=True)
    gc.collect()
    started = _clock()
    gdb.execute(command, to_string=True)
    return _since(started)


def _gdb_measure(params):
    import gdb  # pylint: disable=import-error

    pool, counts, repeats = params["pool"], params["counts"], params["repeats"]
    workdir = Path(params["workdir"])
    results = {"size": counts["size"], "counts": counts, "sample": params["sample"], "checks": [],
               "tool_dump": [], "tool_dump_warm": [], "tool_pools": [], "tool_classify": [],
               "tool_classify_cold": [], "naive_free": [], "naive_walk": []}

    # The tool's answer first: a wrong answer makes the timings worthless.
    csv_path, json_path = workdir / "dump.csv", workdir / "pools.json"
    _timed("mptrack dump %s --csv %s" % (pool, csv_path))
    _timed("mptrack pools --json %s" % json_path)
    tool_rows = _check_tool(csv_path, json_path, counts, results["checks"])

    _check_classification(_classified(pool)[1], counts, results["checks"])
    for _ in range(repeats):
        results["tool_classify"].append(_classified(pool)[0])
        results["tool_classify_cold"].append(_classified(pool, cold=True)[0])

    for _ in range(repeats):
        results["tool_pools"].append(_timed("mptrack pools"))
        results["tool_dump"].append(_timed("mptrack dump %s --csv /dev/null" % pool))
        results["tool_dump_warm"].append(_timed("mptrack dump %s --csv /dev/null" % pool, after="mptrack pools"))

    for _ in range(repeats):
        gc.collect()
        free, free_time, walk, walk_time = _naive(counts, params["sample"])
        results["naive_free"].append(free_time)
        results["naive_walk"].append(walk_time)
    results["naive_free_entries"] = len(free)
    results["eval_object"], results["eval_entry"] = [], []
    for _ in range(repeats):
        gc.collect()
        objects, per_object, per_entry = _naive_eval(counts, params["eval_sample"])
        results["eval_object"].append(per_object)
        results["eval_entry"].append(per_entry)
    if objects != [int(r["addr"], 16) for r in tool_rows[:len(objects)]]:
        raise BenchError("the naive eval walk and mptrack disagree on the first objects' addresses")
    results["eval_sample"] = params["eval_sample"]
    if len(free) != counts["avail"]:
        raise BenchError("naive read found %d free objects, the program says %d" % (len(free), counts["avail"]))
    _check_sample(walk, tool_rows, results["checks"])
    results["elt_size"] = int(gdb.parse_and_eval("((struct rte_mempool *)%d)->elt_size" % counts["addr"]))
    import numpy
    results["numpy"] = numpy.__version__

    if params["profile"]:
        results["profile"] = _profile("mptrack dump %s --csv /dev/null" % pool)
    return results


def _classified(name, cold=False):
    """([wall, cpu] seconds, Classification) of one classification of pool `name`: a new Pool for
    its address and Pool.classify(), on a core opened afresh (untimed, with the pool search, unless
    `cold`: then timed too)."""
    from gdb_mptrack import target
    from gdb_mptrack.pools import Pool

    _cold()
    if cold:
        gc.collect()
        started = _clock()
        classification = target.session().pool(name).classify()
        return _since(started), classification
    session = target.session()
    addr = session.pool(name).addr
    gc.collect()
    started = _clock()
    classification = Pool(session.memory, session.layout, addr, session.ops_names).classify()
    return _since(started), classification


def _check_classification(c, counts, checks):
    """Pool.classify()'s arrays against the program's counts."""
    free = c.where >= 0
    problems = []
    if len(c.objects) != counts["size"]:
        problems.append("%d objects, the pool has %d" % (len(c.objects), counts["size"]))
    if int(c.in_use.sum()) != counts["in_use"]:
        problems.append("%d in use, rte_mempool_in_use_count says %d" % (int(c.in_use.sum()), counts["in_use"]))
    if int(free.sum()) != counts["avail"]:
        problems.append("%d free, rte_mempool_avail_count says %d" % (int(free.sum()), counts["avail"]))
    for key, value in counts.items():
        if key.startswith("cache_len_"):
            where = "lcore %s cache" % key[len("cache_len_"):]
            got = int((c.where == c.names.index(where)).sum()) if where in c.names else 0
            if got != value:
                problems.append("%d objects in the %s, the program says %d" % (got, where, value))
    if problems:
        raise BenchError("Pool.classify() gave a wrong answer for %s: %s" % (counts["name"], "; ".join(problems)))
    checks.append("Pool.classify(): %d objects, %d in use, %d free, per-lcore caches as the program says"
                  % (len(c.objects), int(c.in_use.sum()), int(free.sum())))


def _check_tool(csv_path, json_path, counts, checks):
    """The tool's CSV and JSON against the program's counts; returns the CSV rows."""
    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    size, in_use, avail = counts["size"], counts["in_use"], counts["avail"]
    got_in_use = sum(1 for r in rows if r["state"] == "in-use")
    got_free = sum(1 for r in rows if r["state"] == "free")
    problems = []
    if len(rows) != size:
        problems.append("%d rows, the pool has %d objects" % (len(rows), size))
    if got_in_use != in_use:
        problems.append("%d in use, rte_mempool_in_use_count says %d" % (got_in_use, in_use))
    if got_free != avail:
        problems.append("%d free, rte_mempool_avail_count says %d" % (got_free, avail))
    if [int(r["index"]) for r in rows] != list(range(len(rows))):
        problems.append("indexes are not 0..N-1 in order")
    if len({r["addr"] for r in rows}) != len(rows):
        problems.append("an address is listed twice")
    for key, value in counts.items():
        if key.startswith("cache_len_"):
            where = "lcore %s cache" % key[len("cache_len_"):]
            got = sum(1 for r in rows if r["where"] == where)
            if got != value:
                problems.append("%d objects in the %s, the program says %d" % (got, where, value))
    with open(json_path) as f:
        pools = [p for p in json.load(f) if p["name"] == counts["name"]]
    if len(pools) != 1:
        problems.append("mptrack pools --json lists %d pools named %s" % (len(pools), counts["name"]))
    else:
        p = pools[0]
        want = {"addr": "0x%x" % counts["addr"], "size": size, "in_use": in_use, "avail": avail}
        for key, value in want.items():
            if p[key] != value:
                problems.append("mptrack pools --json: %s is %r, the program says %r" % (key, p[key], value))
    if problems:
        raise BenchError("mptrack gave a wrong answer for %s: %s" % (counts["name"], "; ".join(problems)))
    checks.append("dump CSV: %d objects, %d in use, %d free, per-lcore caches as the program says"
                  % (len(rows), got_in_use, got_free))
    checks.append("pools JSON: in_use %d, avail %d as the program says" % (in_use, avail))
    return rows


def _naive(counts, sample):
    """The classification through gdb.Value field access.

    Returns (free set, [wall, cpu] seconds to read the free stores, [(addr, state)] of the sample,
    [wall, cpu] seconds to walk and classify the sample)."""
    import gdb  # pylint: disable=import-error

    started = _clock()
    mp = gdb.Value(counts["addr"]).cast(gdb.lookup_type("struct rte_mempool").pointer())
    free = set()
    caches = mp["local_cache"]
    for lcore in range(counts["max_lcore"]):
        cache = caches[lcore]
        objs = cache["objs"]
        for j in range(int(cache["len"])):
            free.add(int(objs[j]))
    ring = mp["pool_data"].cast(gdb.lookup_type("struct rte_ring").pointer())
    mask = int(ring["mask"])
    cons_tail = int(ring["cons"]["tail"])
    count = (int(ring["prod"]["tail"]) - cons_tail) & mask
    slots = (ring + 1).cast(gdb.lookup_type("void").pointer().pointer())
    for k in range(cons_tail, cons_tail + count):
        free.add(int(slots[k & mask]))
    # Once per pool, so with the per-pool part: the list head and the header type.
    mp_addr = int(mp)
    first = mp["elt_list"]["stqh_first"]
    hdr_size = first.dereference().type.sizeof
    free_time = _since(started)

    started = _clock()
    hdr = first
    walk = []
    while int(hdr) and len(walk) < sample:
        if int(hdr["mp"]) != mp_addr:
            raise BenchError("naive walk: object header 0x%x names another pool" % int(hdr))
        obj = int(hdr) + hdr_size
        walk.append((obj, "free" if obj in free else "in-use"))
        hdr = hdr["next"]["stqe_next"]
    walk_time = _since(started)
    if len(walk) != sample:
        raise BenchError("naive walk: the element list ended after %d objects" % len(walk))
    return free, free_time, walk, walk_time


def _naive_eval(counts, sample):
    """The naive way with one gdb.parse_and_eval expression per field (context, not the target's).

    Times `sample` objects of the element walk (hdr->mp, hdr->next.stqe_next) and `sample` ring
    slots; returns ([object addresses], [wall, cpu] per object, [wall, cpu] per free entry)."""
    import gdb  # pylint: disable=import-error

    def ulong(expression):
        return int(gdb.parse_and_eval("(unsigned long)(%s)" % expression))

    addr = counts["addr"]
    started = _clock()
    hdr = ulong("((struct rte_mempool *)%d)->elt_list.stqh_first" % addr)
    hdr_size = ulong("sizeof(struct rte_mempool_objhdr)")
    objects = []
    while hdr and len(objects) < sample:
        if ulong("((struct rte_mempool_objhdr *)%d)->mp" % hdr) != addr:
            raise BenchError("naive eval walk: object header 0x%x names another pool" % hdr)
        objects.append(hdr + hdr_size)
        hdr = ulong("((struct rte_mempool_objhdr *)%d)->next.stqe_next" % hdr)
    per_object = [t / sample for t in _since(started)]

    started = _clock()
    ring = ulong("((struct rte_mempool *)%d)->pool_data" % addr)
    mask = ulong("((struct rte_ring *)%d)->mask" % ring)
    cons_tail = ulong("((struct rte_ring *)%d)->cons.tail" % ring)
    for k in range(cons_tail, cons_tail + sample):
        ulong("((void **)((struct rte_ring *)%d + 1))[%d]" % (ring, k & mask))
    per_entry = [t / sample for t in _since(started)]
    return objects, per_object, per_entry


def _check_sample(walk, tool_rows, checks):
    for index, (obj, state) in enumerate(walk):
        row = tool_rows[index]
        if int(row["addr"], 16) != obj or row["state"] != state:
            raise BenchError("object %d: naive says 0x%x %s, mptrack says %s %s"
                             % (index, obj, state, row["addr"], row["state"]))
    in_use = sum(1 for _, state in walk if state == "in-use")
    checks.append("naive sample: %d objects (%d in use, %d free) classified as mptrack does"
                  % (len(walk), in_use, len(walk) - in_use))


def _profile(command):
    import cProfile
    import io
    import pstats

    import gdb  # pylint: disable=import-error

    _cold()
    profiler = cProfile.Profile()
    profiler.enable()
    gdb.execute(command, to_string=True)
    profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    out.write("cProfile of one cold '%s', by own time:\n" % command)
    stats.sort_stats("tottime").print_stats(15)
    out.write("by cumulative time:\n")
    stats.sort_stats("cumulative").print_stats(25)
    return out.getvalue()


if __name__ == "__main__":
    sys.exit(main())
