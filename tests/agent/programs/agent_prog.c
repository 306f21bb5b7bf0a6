/* SPDX-License-Identifier: BSD-3-Clause
 * Copyright (c) 2026 The gdb-mptrack authors
 *
 * agent_prog.c: a DPDK program the agent tests run under LD_PRELOAD.  It knows
 * its own truth and writes it as JSON (whole, by rename) to TRUTH:
 *
 *   agent_prog EAL-ARGS -- TRUTH MODE
 *
 * MODE
 *   held             lcores 0 and 1 churn "agent_pool" and "agent_mbufs" at the
 *                    same time, then keep some objects; the truth lists what is
 *                    held; then it waits for signals (SIGRTMIN: the agent's dump)
 *                    until SIGTERM, and exits 0.
 *   double-free      take_object, give_back, give_back_again: the same object.
 *   foreign-free     take_object from agent_pool, free_to_other_pool into
 *                    agent_other.
 *   stray-free       take_object, free_inside_pointer puts object + 8 back.
 *   duplicate-alloc  take_object, then sneak_back puts it in the pool's ring
 *                    behind the agent's back; take_all then gets it again.
 *   rte-free-twice   MPTRACK_MALLOC: rte_malloc in malloc_block, rte_free in
 *                    free_block and again in free_block_again.
 *   rte-free-stray   MPTRACK_MALLOC: free_block of a pointer to the stack.
 *   fork             take_object; a forked child frees it twice (one fault, in
 *                    the child); the parent then frees it once (no fault).
 *   malloc-leak      MPTRACK_MALLOC: leak_block allocates 5 blocks kept,
 *                    churn_blocks allocates and frees 20.
 * The fault modes print "done" and exit 0 when the program survives the fault
 * (with AGENT_PROG_WAIT set in the environment, they wait for SIGTERM first).
 * The named functions are not inlined and exported (-rdynamic), so the
 * agent's backtraces name them.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_launch.h>
#include <rte_lcore.h>
#include <rte_malloc.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>
#include <rte_ring.h>

#define NOINLINE __attribute__((noinline, noclone, used))
#define POOL_N 1023
#define HELD_PER_LCORE 7
#define MBUFS_PER_LCORE 5
#define CHURN 20000

static struct rte_mempool *pool, *other, *mbufs;
static const char *truth_path;
static FILE *truth;

struct held {
	void *objs[HELD_PER_LCORE];
	struct rte_mbuf *mbufs[MBUFS_PER_LCORE];
};
static struct held held[2];

static void
die(const char *what)
{
	fprintf(stderr, "agent_prog: %s: %s\n", what, rte_strerror(rte_errno));
	exit(2);
}

static void
truth_open(void)
{
	char tmp[4096];

	snprintf(tmp, sizeof(tmp), "%s.tmp", truth_path);
	truth = fopen(tmp, "w");
	if (truth == NULL)
		die("truth file");
	fprintf(truth, "{\"pid\": %d", (int)getpid());
}

static void
truth_close(void)
{
	char tmp[4096];

	fprintf(truth, "}\n");
	fclose(truth);
	snprintf(tmp, sizeof(tmp), "%s.tmp", truth_path);
	rename(tmp, truth_path);
}

NOINLINE void *
take_object(struct rte_mempool *mp)
{
	void *obj;

	if (rte_mempool_get(mp, &obj) != 0)
		die("rte_mempool_get");
	return obj;
}

NOINLINE void
give_back(struct rte_mempool *mp, void *obj)
{
	rte_mempool_put(mp, obj);
}

NOINLINE void
give_back_again(struct rte_mempool *mp, void *obj)
{
	rte_mempool_put(mp, obj);
}

NOINLINE void
free_to_other_pool(struct rte_mempool *mp, void *obj)
{
	rte_mempool_put(mp, obj);
}

NOINLINE void
free_inside_pointer(struct rte_mempool *mp, void *obj)
{
	rte_mempool_put(mp, (char *)obj + 8);
}

NOINLINE void
sneak_back(struct rte_mempool *mp, void *obj)
{
	/* straight into the ring driver's ring: neither DPDK nor the agent sees a put */
	rte_ring_enqueue((struct rte_ring *)mp->pool_data, obj);
}

NOINLINE void
take_all(struct rte_mempool *mp)
{
	void *objs[64];
	unsigned int n = 0;

	while (n < 64 && rte_mempool_get(mp, &objs[n]) == 0)
		n++;
	rte_mempool_put_bulk(mp, objs, n);
}

NOINLINE void *
malloc_block(size_t size)
{
	return rte_malloc("agent_prog", size, 0);
}

NOINLINE void
free_block(void *p)
{
	rte_free(p);
}

NOINLINE void
free_block_again(void *p)
{
	rte_free(p);
}

NOINLINE void *
leak_block(void)
{
	return rte_zmalloc("agent_prog_leak", 100, 0);
}

NOINLINE void
churn_blocks(void)
{
	for (int i = 0; i < 20; i++)
		rte_free(rte_malloc("agent_prog_churn", 64 + i, 0));
}

/* Both lcores: churn, then keep HELD_PER_LCORE objects and MBUFS_PER_LCORE mbufs. */
NOINLINE int
churn_and_hold(void *arg)
{
	unsigned int me = rte_lcore_id() == rte_get_main_lcore() ? 0 : 1;
	void *objs[32];

	(void)arg;
	for (int i = 0; i < CHURN; i++) {
		unsigned int n = 1 + (unsigned int)i % 32;
		if (rte_mempool_get_bulk(pool, objs, n) == 0)
			rte_mempool_put_bulk(pool, objs, n);
		struct rte_mbuf *m = rte_pktmbuf_alloc(mbufs);
		if (m != NULL)
			rte_pktmbuf_free(m);
	}
	for (int i = 0; i < HELD_PER_LCORE; i++)
		held[me].objs[i] = take_object(pool);
	for (int i = 0; i < MBUFS_PER_LCORE; i++) {
		held[me].mbufs[i] = rte_pktmbuf_alloc(mbufs);
		if (held[me].mbufs[i] == NULL)
			die("rte_pktmbuf_alloc");
	}
	/* give one mbuf back, so the truth has freed mbufs too (the last object of
	 * each lcore is given back by mode_held, once both lcores hold theirs:
	 * given back here, the other lcore could take it again) */
	rte_pktmbuf_free(held[me].mbufs[MBUFS_PER_LCORE - 1]);
	return 0;
}

static void
list(const char *key, void *const *p, int n, int skip_last)
{
	fprintf(truth, ", \"%s\": [", key);
	for (int l = 0; l < 2; l++)
		for (int i = 0; i < n - skip_last; i++)
			fprintf(truth, "%s\"%p\"", l == 0 && i == 0 ? "" : ", ",
				p[l * (sizeof(struct held) / sizeof(void *)) + i]);
	fprintf(truth, "]");
}

static volatile sig_atomic_t stop;

static void
on_term(int sig)
{
	(void)sig;
	stop = 1;
}

static int
mode_held(void)
{
	unsigned int worker = rte_get_next_lcore(-1, 1, 0);

	if (worker >= RTE_MAX_LCORE || rte_eal_remote_launch(churn_and_hold, NULL, worker) != 0)
		die("rte_eal_remote_launch");
	churn_and_hold(NULL);
	rte_eal_wait_lcore(worker);
	for (int l = 0; l < 2; l++)
		give_back(pool, held[l].objs[HELD_PER_LCORE - 1]);
	truth_open();
	list("held", &held[0].objs[0], HELD_PER_LCORE, 1);
	list("freed_last", &held[0].objs[HELD_PER_LCORE - 1], 1, 0);
	list("held_mbufs", (void *const *)&held[0].mbufs[0], MBUFS_PER_LCORE, 1);
	fprintf(truth, ", \"in_use\": {\"agent_pool\": %u, \"agent_mbufs\": %u}",
		rte_mempool_in_use_count(pool), rte_mempool_in_use_count(mbufs));
	truth_close();
	signal(SIGTERM, on_term);
	while (!stop)
		pause();
	return 0;
}

int
main(int argc, char **argv)
{
	int n = rte_eal_init(argc, argv);
	const char *mode;
	void *obj;

	if (n < 0)
		die("rte_eal_init");
	argc -= n;
	argv += n;
	if (argc != 3) {
		fprintf(stderr, "usage: agent_prog EAL-ARGS -- TRUTH MODE\n");
		return 2;
	}
	truth_path = argv[1];
	mode = argv[2];
	pool = rte_mempool_create("agent_pool", POOL_N, 64, 32, 0, NULL, NULL, NULL, NULL,
				  SOCKET_ID_ANY, 0);
	other = rte_mempool_create("agent_other", 63, 64, 0, 0, NULL, NULL, NULL, NULL,
				   SOCKET_ID_ANY, 0);
	mbufs = rte_pktmbuf_pool_create("agent_mbufs", 511, 32, 0, RTE_MBUF_DEFAULT_BUF_SIZE,
					SOCKET_ID_ANY);
	if (pool == NULL || other == NULL || mbufs == NULL)
		die("creating the pools");

	if (strcmp(mode, "held") == 0)
		return mode_held();

	truth_open();
	if (strcmp(mode, "double-free") == 0) {
		obj = take_object(pool);
		fprintf(truth, ", \"obj\": \"%p\"", obj);
		truth_close();
		give_back(pool, obj);
		give_back_again(pool, obj);
	} else if (strcmp(mode, "foreign-free") == 0) {
		obj = take_object(pool);
		fprintf(truth, ", \"obj\": \"%p\"", obj);
		truth_close();
		free_to_other_pool(other, obj);
	} else if (strcmp(mode, "stray-free") == 0) {
		obj = take_object(pool);
		fprintf(truth, ", \"obj\": \"%p\", \"ptr\": \"%p\"", obj, (char *)obj + 8);
		truth_close();
		free_inside_pointer(pool, obj);
	} else if (strcmp(mode, "duplicate-alloc") == 0) {
		/* a pool of 63 objects: take_all gets them all */
		obj = take_object(other);
		fprintf(truth, ", \"obj\": \"%p\"", obj);
		truth_close();
		sneak_back(other, obj);
		take_all(other);
	} else if (strcmp(mode, "rte-free-twice") == 0) {
		obj = malloc_block(256);
		fprintf(truth, ", \"obj\": \"%p\"", obj);
		truth_close();
		free_block(obj);
		free_block_again(obj);
	} else if (strcmp(mode, "fork") == 0) {
		/* the child frees obj twice; the parent then frees it once */
		int status;
		pid_t child;
		obj = take_object(pool);
		fprintf(truth, ", \"obj\": \"%p\"", obj);
		fflush(truth);
		child = fork();
		if (child == 0) {
			give_back(pool, obj);
			give_back_again(pool, obj);
			_exit(0);
		}
		waitpid(child, &status, 0);
		fprintf(truth, ", \"child\": %d, \"child_status\": %d", (int)child, status);
		truth_close();
		give_back(pool, obj);
	} else if (strcmp(mode, "rte-free-stray") == 0) {
		long local[4];
		fprintf(truth, ", \"obj\": \"%p\"", (void *)&local[1]);
		truth_close();
		free_block(&local[1]);
	} else if (strcmp(mode, "malloc-leak") == 0) {
		fprintf(truth, ", \"leaked\": [");
		for (int i = 0; i < 5; i++)
			fprintf(truth, "%s\"%p\"", i ? ", " : "", leak_block());
		fprintf(truth, "]");
		churn_blocks();
		truth_close();
		signal(SIGTERM, on_term);
		while (!stop)
			pause();
	} else {
		fprintf(stderr, "agent_prog: unknown mode %s\n", mode);
		return 2;
	}
	printf("done\n");
	fflush(stdout);
	if (getenv("AGENT_PROG_WAIT") != NULL) {
		/* stay alive for a reader of the agent's tables */
		signal(SIGTERM, on_term);
		while (!stop)
			pause();
	}
	return 0;
}
