/* SPDX-License-Identifier: BSD-3-Clause
 * Copyright (c) 2026 The gdb-mptrack authors
 *
 * agent_bench.c: the program benchmarks/agent_bench.py runs, with and without
 * the preload agent.  It creates "benchpool" (no per-lcore cache, ring_mp_mc)
 * and times, on the main lcore, ROUNDS rounds of
 *   single: rte_mempool_get + rte_mempool_put of one object, BATCH times;
 *   burst:  rte_mempool_get_bulk + rte_mempool_put_bulk of 32 objects.
 * The get and put sites sit a few calls deep (bench_level1..3), like an
 * application's, so that an unwinder has frames to walk.
 * It prints "single NS" and "burst NS": the best of REPEAT runs, in
 * nanoseconds per object for one get and one put.
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
#define REPEAT 5

static struct rte_mempool *pool;

static uint64_t
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + ts.tv_nsec;
}

__attribute__((noinline)) static void
bench_single(unsigned int rounds)
{
	void *obj;

	for (unsigned int i = 0; i < rounds; i++) {
		if (rte_mempool_get(pool, &obj) != 0)
			abort();
		rte_mempool_put(pool, obj);
	}
}

__attribute__((noinline)) static void
bench_burst(unsigned int rounds)
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
bench_level3(int burst, unsigned int rounds)
{
	uint64_t t0 = now_ns();

	if (burst)
		bench_burst(rounds);
	else
		bench_single(rounds);
	return (double)(now_ns() - t0) / ((double)rounds * (burst ? BURST : 1));
}

__attribute__((noinline)) static double
bench_level2(int burst, unsigned int rounds)
{
	double best = 1e30;

	for (int r = 0; r < REPEAT; r++) {
		double ns = bench_level3(burst, rounds);
		if (ns < best)
			best = ns;
	}
	return best;
}

__attribute__((noinline)) static double
bench_level1(int burst, unsigned int rounds)
{
	return bench_level2(burst, rounds);
}

int
main(int argc, char **argv)
{
	int n = rte_eal_init(argc, argv);
	unsigned int rounds = 200000;

	if (n < 0) {
		fprintf(stderr, "agent_bench: rte_eal_init: %s\n", rte_strerror(rte_errno));
		return 1;
	}
	argc -= n;
	argv += n;
	if (argc > 1)
		rounds = (unsigned int)strtoul(argv[1], NULL, 0);
	pool = rte_mempool_create("benchpool", 4095, 64, 0, 0, NULL, NULL, NULL, NULL,
				  SOCKET_ID_ANY, 0);
	if (pool == NULL) {
		fprintf(stderr, "agent_bench: rte_mempool_create: %s\n", rte_strerror(rte_errno));
		return 1;
	}
	bench_level1(0, rounds / 10); /* warm up */
	printf("single %.2f\n", bench_level1(0, rounds));
	printf("burst %.2f\n", bench_level1(1, rounds / BURST * 4));
	fflush(stdout);
	rte_mempool_free(pool);
	rte_eal_cleanup();
	return 0;
}
