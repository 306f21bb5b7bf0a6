/* SPDX-License-Identifier: BSD-3-Clause
 * Copyright (c) 2026 The gdb-mptrack authors
 *
 * agent_bench.c: the program benchmarks/agent_bench.py runs, with and without
 * the preload agent.  It creates two identical pools, "benchpool" (the one the
 * agent tracks) and "refpool" (never tracked: agent_bench.py sets
 * MPTRACK_POOLS=benchpool), both without per-lcore cache, ring_mp_mc, and
 * times, on the main lcore, ROUNDS rounds of
 *   single: rte_mempool_get + rte_mempool_put of one object;
 *   burst:  rte_mempool_get_bulk + rte_mempool_put_bulk of 32 objects,
 * on each pool in turn (each first every other time), REPEAT times
 * interleaved, so that the tracked and the untracked pool see the same noise
 * from other work on the machine.
 * The get and put sites sit a few calls deep (bench_level1..3), like an
 * application's, so that an unwinder has frames to walk.
 * It prints "single NS", "burst NS", "ref_single NS" and "ref_burst NS": the
 * best of the REPEAT runs, in nanoseconds per object for one get and one put.
 *
 *   agent_bench EAL-ARGS -- [ROUNDS]
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_mempool.h>

#define BURST 32
#define REPEAT 11

static uint64_t
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + ts.tv_nsec;
}

__attribute__((noinline)) static void
bench_single(struct rte_mempool *pool, unsigned int rounds)
{
	void *obj;

	for (unsigned int i = 0; i < rounds; i++) {
		if (rte_mempool_get(pool, &obj) != 0)
			abort();
		rte_mempool_put(pool, obj);
	}
}

__attribute__((noinline)) static void
bench_burst(struct rte_mempool *pool, unsigned int rounds)
{
	void *objs[BURST];

	for (unsigned int i = 0; i < rounds; i++) {
		if (rte_mempool_get_bulk(pool, objs, BURST) != 0)
			abort();
		rte_mempool_put_bulk(pool, objs, BURST);
	}
}

/* A few frames between main and the get/put sites. */
__attribute__((noinline)) static double
bench_level3(struct rte_mempool *pool, int burst, unsigned int rounds)
{
	uint64_t t0 = now_ns();

	if (burst)
		bench_burst(pool, rounds);
	else
		bench_single(pool, rounds);
	return (double)(now_ns() - t0) / ((double)rounds * (burst ? BURST : 1));
}

struct best {
	double single, burst, ref_single, ref_burst;
};

static void
keep(double *best, double ns)
{
	if (ns < *best)
		*best = ns;
}

__attribute__((noinline)) static void
bench_level2(struct rte_mempool *pool, struct rte_mempool *ref, unsigned int rounds,
	     struct best *b)
{
	for (int r = 0; r < REPEAT; r++) {
		/* each pool first every other time: no bias from the order */
		struct rte_mempool *first = r % 2 ? pool : ref, *second = r % 2 ? ref : pool;
		double *first_single = r % 2 ? &b->single : &b->ref_single;
		double *second_single = r % 2 ? &b->ref_single : &b->single;
		double *first_burst = r % 2 ? &b->burst : &b->ref_burst;
		double *second_burst = r % 2 ? &b->ref_burst : &b->burst;

		keep(first_single, bench_level3(first, 0, rounds));
		keep(second_single, bench_level3(second, 0, rounds));
		keep(first_burst, bench_level3(first, 1, rounds / BURST * 4));
		keep(second_burst, bench_level3(second, 1, rounds / BURST * 4));
	}
}

__attribute__((noinline)) static void
bench_level1(struct rte_mempool *pool, struct rte_mempool *ref, unsigned int rounds,
	     struct best *b)
{
	bench_level2(pool, ref, rounds, b);
}

static struct rte_mempool *
create(const char *name)
{
	struct rte_mempool *mp = rte_mempool_create(name, 4095, 64, 0, 0, NULL, NULL, NULL, NULL,
						    SOCKET_ID_ANY, 0);
	if (mp == NULL) {
		fprintf(stderr, "agent_bench: rte_mempool_create: %s\n", rte_strerror(rte_errno));
		exit(1);
	}
	return mp;
}

int
main(int argc, char **argv)
{
	int n = rte_eal_init(argc, argv);
	unsigned int rounds = 200000;
	struct best warm = {1e30, 1e30, 1e30, 1e30}, b = warm;
	struct rte_mempool *pool, *ref;

	if (n < 0) {
		fprintf(stderr, "agent_bench: rte_eal_init: %s\n", rte_strerror(rte_errno));
		return 1;
	}
	argc -= n;
	argv += n;
	if (argc > 1)
		rounds = (unsigned int)strtoul(argv[1], NULL, 0);
	pool = create("benchpool");
	ref = create("refpool");
	bench_level1(pool, ref, rounds / 10, &warm);  /* warm up */
	bench_level1(pool, ref, rounds, &b);
	printf("single %.2f\nburst %.2f\nref_single %.2f\nref_burst %.2f\n", b.single, b.burst,
	       b.ref_single, b.ref_burst);
	fflush(stdout);
	rte_mempool_free(pool);
	rte_mempool_free(ref);
	rte_eal_cleanup();
	return 0;
}
