/* SPDX-License-Identifier: BSD-3-Clause
 * Copyright (c) 2026 The gdb-mptrack authors
 *
 * demo.c: a small DPDK program for scripts/demo.sh to look at with gdb-mptrack.
 *
 * It creates two mempools:
 *   demo_pool   4096 objects of struct demo_obj, per-lcore cache of 64;
 *   demo_mbufs  a pktmbuf pool made by rte_pktmbuf_pool_create().
 * Lcores 0 and 1 each take objects and mbufs, keep a few ("leaks", stored in
 * the global arrays below so that gdb can see them), give the rest back (they
 * land in that lcore's cache), and write a recognisable payload into a couple
 * of the mbufs they keep. Then main calls demo_checkpoint(), where the demo
 * stops the program in gdb.
 *
 * Run alone it prints what it holds and exits:
 *   build/demo --no-huge -m 256 --no-pci -l 0,1 --file-prefix demo
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_launch.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>

#define DEMO_POOL_NAME "demo_pool"
#define DEMO_POOL_SIZE 4096
#define DEMO_POOL_CACHE 64
#define DEMO_MBUF_POOL_NAME "demo_mbufs"
#define DEMO_MBUF_POOL_SIZE 1023 /* 2^n - 1 is the best size for a ring-backed pool */
#define DEMO_MBUF_CACHE 32

#define DEMO_LCORES 2         /* lcores 0 and 1 */
#define DEMO_OBJ_TAKEN 40     /* objects each lcore takes from demo_pool... */
#define DEMO_OBJ_KEPT 8       /* ...and keeps; the other 32 go to its cache */
#define DEMO_MBUF_TAKEN 16    /* mbufs each lcore takes from demo_mbufs... */
#define DEMO_MBUF_KEPT 4      /* ...and keeps */
#define DEMO_MBUF_PAYLOADS 2  /* kept mbufs per lcore that carry a payload */

#define DEMO_OBJ_MAGIC 0xD3E00B1Cu

/* One element of demo_pool: 64 bytes. */
struct demo_obj {
	uint32_t magic;  /* DEMO_OBJ_MAGIC, set when the pool is populated */
	uint32_t index;  /* order in which the pool created the object */
	int32_t owner;   /* lcore that holds it, -1 when free */
	uint32_t seq;    /* position in that lcore's demo_held_objs row */
	char note[48];   /* human-readable state */
};

/* What the program holds at demo_checkpoint(): gdb can print these. */
struct rte_mempool *demo_pool;
struct rte_mempool *demo_mbufs;
struct demo_obj *demo_held_objs[DEMO_LCORES][DEMO_OBJ_KEPT];
struct rte_mbuf *demo_held_mbufs[DEMO_LCORES][DEMO_MBUF_KEPT];

/* The demo stops here. noipa keeps gcc from dropping the call. */
__attribute__((noinline, noipa, used)) void
demo_checkpoint(void)
{
	__asm__ volatile("" ::: "memory");
}

static void
demo_obj_init(struct rte_mempool *mp, void *arg, void *obj, unsigned int index)
{
	struct demo_obj *o = obj;

	(void)mp;
	(void)arg;
	memset(o, 0, sizeof(*o));
	o->magic = DEMO_OBJ_MAGIC;
	o->index = index;
	o->owner = -1;
	snprintf(o->note, sizeof(o->note), "free (never used)");
}

/* Runs on lcores 0 and 1: take, keep some, give back the rest. */
static int
demo_work(void *arg)
{
	unsigned int lcore = rte_lcore_id();
	void *objs[DEMO_OBJ_TAKEN];
	struct rte_mbuf *mbufs[DEMO_MBUF_TAKEN];
	unsigned int i;

	(void)arg;
	if (lcore >= DEMO_LCORES)
		return -1;

	/* One at a time, so each get goes through this lcore's cache. */
	for (i = 0; i < DEMO_OBJ_TAKEN; i++) {
		if (rte_mempool_get(demo_pool, &objs[i]) != 0) {
			fprintf(stderr, "demo: lcore %u: demo_pool is empty\n", lcore);
			return -1;
		}
	}
	for (i = 0; i < DEMO_OBJ_TAKEN; i++) {
		struct demo_obj *o = objs[i];

		if (i < DEMO_OBJ_KEPT) {
			o->owner = (int32_t)lcore;
			o->seq = i;
			snprintf(o->note, sizeof(o->note), "held by lcore %u (#%u)", lcore, i);
			demo_held_objs[lcore][i] = o;
		} else {
			o->owner = -1;
			snprintf(o->note, sizeof(o->note), "freed by lcore %u", lcore);
			rte_mempool_put(demo_pool, o);
		}
	}

	for (i = 0; i < DEMO_MBUF_TAKEN; i++) {
		mbufs[i] = rte_pktmbuf_alloc(demo_mbufs);
		if (mbufs[i] == NULL) {
			fprintf(stderr, "demo: lcore %u: demo_mbufs is empty\n", lcore);
			return -1;
		}
	}
	for (i = 0; i < DEMO_MBUF_TAKEN; i++) {
		if (i >= DEMO_MBUF_KEPT) {
			rte_pktmbuf_free(mbufs[i]);
			continue;
		}
		demo_held_mbufs[lcore][i] = mbufs[i];
		if (i < DEMO_MBUF_PAYLOADS) {
			char text[64];
			int len = snprintf(text, sizeof(text),
					   "MPTRACK-DEMO payload: lcore %u mbuf %u", lcore, i);
			char *data = rte_pktmbuf_append(mbufs[i], (uint16_t)len);

			if (data != NULL)
				memcpy(data, text, (size_t)len);
		}
	}
	return 0;
}

int
main(int argc, char **argv)
{
	unsigned int lcore, i;
	int ret;

	/* gdb prints between our lines: do not let them sit in a buffer. */
	setvbuf(stdout, NULL, _IOLBF, 0);

	ret = rte_eal_init(argc, argv);
	if (ret < 0)
		rte_exit(EXIT_FAILURE, "demo: rte_eal_init failed: %s\n", rte_strerror(rte_errno));
	if (rte_lcore_count() < DEMO_LCORES || !rte_lcore_is_enabled(1) ||
	    rte_get_main_lcore() != 0)
		rte_exit(EXIT_FAILURE, "demo: run with -l 0,1 (main lcore 0, worker lcore 1)\n");

	demo_pool = rte_mempool_create(DEMO_POOL_NAME, DEMO_POOL_SIZE, sizeof(struct demo_obj),
				       DEMO_POOL_CACHE, 0, NULL, NULL, demo_obj_init, NULL,
				       (int)rte_socket_id(), 0);
	if (demo_pool == NULL)
		rte_exit(EXIT_FAILURE, "demo: cannot create %s: %s\n", DEMO_POOL_NAME,
			 rte_strerror(rte_errno));

	demo_mbufs = rte_pktmbuf_pool_create(DEMO_MBUF_POOL_NAME, DEMO_MBUF_POOL_SIZE,
					     DEMO_MBUF_CACHE, 0, RTE_MBUF_DEFAULT_BUF_SIZE,
					     (int)rte_socket_id());
	if (demo_mbufs == NULL)
		rte_exit(EXIT_FAILURE, "demo: cannot create %s: %s\n", DEMO_MBUF_POOL_NAME,
			 rte_strerror(rte_errno));

	ret = rte_eal_remote_launch(demo_work, NULL, 1);
	if (ret != 0)
		rte_exit(EXIT_FAILURE, "demo: cannot launch lcore 1: %d\n", ret);
	if (demo_work(NULL) != 0)
		rte_exit(EXIT_FAILURE, "demo: lcore 0 failed\n");
	if (rte_eal_wait_lcore(1) != 0)
		rte_exit(EXIT_FAILURE, "demo: lcore 1 failed\n");

	printf("demo: %s: %u of %u objects in use (%d held per lcore, %d freed into each "
	       "lcore's cache)\n", DEMO_POOL_NAME, rte_mempool_in_use_count(demo_pool),
	       DEMO_POOL_SIZE, DEMO_OBJ_KEPT, DEMO_OBJ_TAKEN - DEMO_OBJ_KEPT);
	printf("demo: %s: %u of %u mbufs in use (%d held per lcore, %d of them with a payload)\n",
	       DEMO_MBUF_POOL_NAME, rte_mempool_in_use_count(demo_mbufs), DEMO_MBUF_POOL_SIZE,
	       DEMO_MBUF_KEPT, DEMO_MBUF_PAYLOADS);
	for (lcore = 0; lcore < DEMO_LCORES; lcore++)
		printf("demo: lcore %u holds %s object %p and mbuf %p\n", lcore, DEMO_POOL_NAME,
		       (void *)demo_held_objs[lcore][0], (void *)demo_held_mbufs[lcore][0]);

	demo_checkpoint();

	/* Tidy up, so that the demo also runs cleanly without gdb. */
	for (lcore = 0; lcore < DEMO_LCORES; lcore++) {
		for (i = 0; i < DEMO_OBJ_KEPT; i++)
			rte_mempool_put(demo_pool, demo_held_objs[lcore][i]);
		for (i = 0; i < DEMO_MBUF_KEPT; i++)
			rte_pktmbuf_free(demo_held_mbufs[lcore][i]);
	}
	rte_mempool_free(demo_mbufs);
	rte_mempool_free(demo_pool);
	rte_eal_cleanup();
	printf("demo: done\n");
	return 0;
}
