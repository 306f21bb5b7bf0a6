/* SPDX-License-Identifier: BSD-3-Clause
 * Copyright (c) 2026 The gdb-mptrack authors
 *
 * bigpool.c: the program benchmarks/dump_bench.py takes a core of.
 *
 * It creates "bigpool": BIGPOOL_SIZE objects of BIGPOOL_ELT bytes, a per-lcore
 * cache of BIGPOOL_CACHE, the default driver (ring_mp_mc). Then:
 *   - lcore 0 (main) takes MAIN_TAKEN objects and gives the first MAIN_RETURNED
 *     it took back,
 *   - lcore 1 takes WORKER_TAKEN objects and gives the first WORKER_RETURNED back,
 * so objects are in use, free in the ring, and free in both lcores' caches.
 * The objects given back are among the first of the pool's element list, so a
 * sample taken from the start of that list holds both states.
 * bigpool_ring is there so that the debug info describes struct rte_ring: the
 * benchmark's naive reader reads the ring through gdb.Value.
 * It writes what it holds and DPDK's own counts (rte_mempool_in_use_count,
 * rte_mempool_avail_count, each lcore's cache length) as "key value" lines
 * to OUTFILE, then sleeps until it is killed.
 *
 *   bigpool EAL-ARGS -- OUTFILE
 *   e.g. bigpool --no-huge -m 768 --no-pci -l 0,1 --file-prefix bigpool -- /tmp/counts
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_launch.h>
#include <rte_lcore.h>
#include <rte_mempool.h>
#include <rte_ring.h>

#define BIGPOOL_NAME "bigpool"
#define BIGPOOL_SIZE (1u << 20) /* 1,048,576 objects */
#define BIGPOOL_ELT 64
#define BIGPOOL_CACHE 256

#define BULK 32                  /* get/put this many at a time: through the lcore cache */
#define MAIN_TAKEN 300000u       /* lcore 0 takes these... */
#define MAIN_RETURNED 200u       /* ...and gives the first ones back (they stay in its cache) */
#define WORKER_TAKEN 5000u       /* lcore 1 likewise */
#define WORKER_RETURNED 100u

struct rte_mempool *bigpool;
struct rte_ring *bigpool_ring; /* bigpool->pool_data */
void **bigpool_main_held;      /* what lcore 0 holds (NULL where it gave an object back) */
void **bigpool_worker_held;    /* what lcore 1 holds */

static int
take_and_return(void **objs, unsigned int taken, unsigned int returned)
{
	unsigned int i, n;

	for (i = 0; i < taken; i += n) {
		n = taken - i < BULK ? taken - i : BULK;
		if (rte_mempool_get_bulk(bigpool, objs + i, n) != 0)
			return -ENOBUFS;
	}
	for (i = 0; i < returned; i += n) {
		n = returned - i < BULK ? returned - i : BULK;
		rte_mempool_put_bulk(bigpool, objs + i, n);
		memset(objs + i, 0, n * sizeof(void *));
	}
	return 0;
}

static int
worker(void *arg)
{
	(void)arg;
	return take_and_return(bigpool_worker_held, WORKER_TAKEN, WORKER_RETURNED);
}

int
main(int argc, char **argv)
{
	unsigned int worker_lcore, lcore;
	const char *outfile;
	char tmpfile[4096];
	FILE *f;
	int n, rc;

	n = rte_eal_init(argc, argv);
	if (n < 0) {
		fprintf(stderr, "bigpool: rte_eal_init: %s\n", rte_strerror(rte_errno));
		return 1;
	}
	argc -= n;
	argv += n;
	if (argc != 2) {
		fprintf(stderr, "usage: bigpool EAL-ARGS -- OUTFILE\n");
		return 2;
	}
	outfile = argv[1];

	bigpool = rte_mempool_create(BIGPOOL_NAME, BIGPOOL_SIZE, BIGPOOL_ELT, BIGPOOL_CACHE, 0,
				     NULL, NULL, NULL, NULL, SOCKET_ID_ANY, 0);
	if (bigpool == NULL) {
		fprintf(stderr, "bigpool: rte_mempool_create: %s\n", rte_strerror(rte_errno));
		return 1;
	}
	bigpool_main_held = calloc(MAIN_TAKEN, sizeof(void *));
	bigpool_worker_held = calloc(WORKER_TAKEN, sizeof(void *));
	if (bigpool_main_held == NULL || bigpool_worker_held == NULL) {
		fprintf(stderr, "bigpool: out of memory\n");
		return 1;
	}

	bigpool_ring = bigpool->pool_data;

	worker_lcore = rte_get_next_lcore(-1, 1, 0);
	if (worker_lcore >= RTE_MAX_LCORE) {
		fprintf(stderr, "bigpool: needs a second lcore (-l 0,1)\n");
		return 1;
	}
	/* Main first, so the objects it gives back are the pool's first ones. */
	rc = take_and_return(bigpool_main_held, MAIN_TAKEN, MAIN_RETURNED);
	if (rc == 0)
		rc = rte_eal_remote_launch(worker, NULL, worker_lcore);
	if (rc == 0)
		rc = rte_eal_wait_lcore(worker_lcore);
	if (rc != 0) {
		fprintf(stderr, "bigpool: taking objects failed (%d)\n", rc);
		return 1;
	}

	/* Write to a temporary name, then rename: the reader never sees half a file. */
	snprintf(tmpfile, sizeof(tmpfile), "%s.tmp", outfile);
	f = fopen(tmpfile, "w");
	if (f == NULL) {
		fprintf(stderr, "bigpool: %s: %s\n", tmpfile, strerror(errno));
		return 1;
	}
	fprintf(f, "name %s\n", bigpool->name);
	fprintf(f, "addr 0x%lx\n", (unsigned long)bigpool);
	fprintf(f, "size %u\n", bigpool->size);
	fprintf(f, "max_lcore %u\n", (unsigned int)RTE_MAX_LCORE);
	fprintf(f, "held %u\n", MAIN_TAKEN - MAIN_RETURNED + WORKER_TAKEN - WORKER_RETURNED);
	fprintf(f, "in_use %u\n", rte_mempool_in_use_count(bigpool));
	fprintf(f, "avail %u\n", rte_mempool_avail_count(bigpool));
	RTE_LCORE_FOREACH(lcore)
		fprintf(f, "cache_len_%u %u\n", lcore, bigpool->local_cache[lcore].len);
	fprintf(f, "ready 1\n");
	if (fclose(f) != 0 || rename(tmpfile, outfile) != 0) {
		fprintf(stderr, "bigpool: writing %s: %s\n", outfile, strerror(errno));
		return 1;
	}

	for (;;)
		sleep(1);
	return 0;
}
