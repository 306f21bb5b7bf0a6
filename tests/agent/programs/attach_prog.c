/* SPDX-License-Identifier: BSD-3-Clause
 * Copyright (c) 2026 The gdb-mptrack authors
 *
 * attach_prog.c: a DPDK program that runs without the agent until gdb attaches
 * it (`mptrack agent attach`), for tests/agent/test_agent_attach*.py.  It knows
 * its own truth and writes it as JSON (whole, by rename) to TRUTH:
 *
 *   attach_prog EAL-ARGS -- TRUTH MODE        (MODE: rounds)
 *
 * Pools: "att_ring" (ring_mp_mc, cache 32), "att_mbufs" (rte_pktmbuf_pool_create,
 * cache 32), "att_stack" (the stack driver, cache 16) and "att_victim" (ring,
 * no cache, used only for the fault).
 *
 * Round 0 runs at start; round N runs when the file "go.N" appears in the
 * current directory: lcores 0 and 1 both churn the three pools (bursts of
 * gets and puts through their per-lcore caches), then each keeps a few more
 * objects of each pool (take_ring, take_mbuf, take_stack) and gives back the
 * oldest one it kept.  Between rounds every lcore sleeps and touches no pool.
 * After each round the truth is written: what is held per pool and the round
 * each was taken in, DPDK's in-use counts, each lcore's cache (size,
 * flushthresh, len), whether rte_mempool_ops_table still holds the function
 * pointers it held at start ("ops_same"), then round_done(N) is called (a
 * place for a breakpoint).
 *
 * The file "fault.N" makes round N a fault instead: take_victim gets an
 * object of att_victim, give_back puts it, give_back_again puts it again
 * (a duplicate free); the truth then names it ("fault_obj").
 * The file "quit" (or SIGTERM) ends the program with status 0.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_launch.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>

#define NOINLINE __attribute__((noinline, noclone, used))
#define KEEP 64          /* objects an lcore keeps per pool, at most */
#define CHURN 3000

enum { P_RING, P_MBUFS, P_STACK, NPOOLS };
static const char *const pool_names[NPOOLS] = {"att_ring", "att_mbufs", "att_stack"};
static struct rte_mempool *pools[NPOOLS], *victim;

struct keep {
	void *objs[KEEP];
	int rounds[KEEP];           /* the round each was taken in */
	unsigned int first, n;      /* a queue: oldest at first */
};
static struct keep kept[2][NPOOLS];

static struct rte_mempool_ops saved_ops[RTE_MEMPOOL_MAX_OPS_IDX];
static unsigned int saved_num_ops;

static volatile int work_round = -1, done_round = -1, quit;
static const char *truth_path;

static void
die(const char *what)
{
	fprintf(stderr, "attach_prog: %s: %s\n", what, rte_strerror(rte_errno));
	exit(2);
}

NOINLINE void *
take_ring(void)
{
	void *obj;

	if (rte_mempool_get(pools[P_RING], &obj) != 0)
		die("take_ring");
	return obj;
}

NOINLINE void *
take_mbuf(void)
{
	struct rte_mbuf *m = rte_pktmbuf_alloc(pools[P_MBUFS]);

	if (m == NULL)
		die("take_mbuf");
	return m;
}

NOINLINE void *
take_stack(void)
{
	void *obj;

	if (rte_mempool_get(pools[P_STACK], &obj) != 0)
		die("take_stack");
	return obj;
}

NOINLINE void *
take_victim(void)
{
	void *obj;

	if (rte_mempool_get(victim, &obj) != 0)
		die("take_victim");
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
round_done(int round)
{
	__asm__ volatile("" : : "r"(round) : "memory");
}

static void
churn(void)
{
	void *objs[8];

	for (unsigned int i = 0; i < CHURN; i++) {
		unsigned int n = 1 + i % 8;
		for (int p = 0; p < NPOOLS; p++) {
			if (p == P_MBUFS) {
				struct rte_mbuf *m[8];
				if (rte_pktmbuf_alloc_bulk(pools[p], m, n) == 0)
					rte_pktmbuf_free_bulk(m, n);
			} else if (rte_mempool_get_bulk(pools[p], objs, n) == 0) {
				rte_mempool_put_bulk(pools[p], objs, n);
			}
		}
	}
}

static void
keep_one(struct keep *k, void *obj, int round)
{
	if (k->n == KEEP)
		die("keep: full");
	k->rounds[(k->first + k->n) % KEEP] = round;
	k->objs[(k->first + k->n++) % KEEP] = obj;
}

/* One lcore's share of a round: churn, keep 3 of each pool, give back the oldest. */
static void
lcore_round(unsigned int me, int round)
{
	static const unsigned int more[NPOOLS] = {3, 2, 2};

	churn();
	for (int p = 0; p < NPOOLS; p++) {
		struct keep *k = &kept[me][p];
		for (unsigned int i = 0; i < more[p]; i++)
			keep_one(k, p == P_RING ? take_ring() : p == P_MBUFS ? take_mbuf() : take_stack(),
				 round);
		if (p == P_MBUFS)
			rte_pktmbuf_free(k->objs[k->first]);
		else
			give_back(pools[p], k->objs[k->first]);
		k->first = (k->first + 1) % KEEP;
		k->n--;
	}
}

static int
worker_main(void *arg)
{
	(void)arg;
	while (!quit) {
		if (work_round != done_round) {
			int r = work_round;
			lcore_round(1, r);
			done_round = r;
		}
		usleep(1000);
	}
	return 0;
}

static void
write_truth(int round, void *fault_obj)
{
	char tmp[4096];
	FILE *f;
	int same;

	snprintf(tmp, sizeof(tmp), "%s.tmp", truth_path);
	f = fopen(tmp, "w");
	if (f == NULL)
		die("truth file");
	same = rte_mempool_ops_table.num_ops == saved_num_ops &&
	       memcmp(saved_ops, rte_mempool_ops_table.ops, sizeof(saved_ops[0]) * saved_num_ops) == 0;
	fprintf(f, "{\"pid\": %d, \"round\": %d, \"ops_same\": %s, \"ops_table\": \"%p\"", (int)getpid(),
		round, same ? "true" : "false", (void *)&rte_mempool_ops_table);
	if (fault_obj != NULL)
		fprintf(f, ", \"fault_obj\": \"%p\"", fault_obj);
	fprintf(f, ", \"pools\": {");
	for (int p = 0; p < NPOOLS; p++) {
		struct rte_mempool *mp = pools[p];
		fprintf(f, "%s\"%s\": {\"addr\": \"%p\", \"in_use\": %u, \"cache_size\": %u, \"held\": [",
			p ? ", " : "", pool_names[p], (void *)mp, rte_mempool_in_use_count(mp),
			mp->cache_size);
		for (int l = 0, first = 1; l < 2; l++)
			for (unsigned int i = 0; i < kept[l][p].n; i++, first = 0)
				fprintf(f, "%s\"%p\"", first ? "" : ", ",
					kept[l][p].objs[(kept[l][p].first + i) % KEEP]);
		fprintf(f, "], \"held_rounds\": [");
		for (int l = 0, first = 1; l < 2; l++)
			for (unsigned int i = 0; i < kept[l][p].n; i++, first = 0)
				fprintf(f, "%s%d", first ? "" : ", ",
					kept[l][p].rounds[(kept[l][p].first + i) % KEEP]);
		fprintf(f, "], \"lcore_cache\": [");
		for (unsigned int l = 0; l < 2; l++) {
			struct rte_mempool_cache *c = &mp->local_cache[l];
			fprintf(f, "%s{\"size\": %u, \"flushthresh\": %u, \"len\": %u}", l ? ", " : "",
				c->size, c->flushthresh, c->len);
		}
		fprintf(f, "]}");
	}
	fprintf(f, "}}\n");
	fclose(f);
	if (rename(tmp, truth_path) != 0)
		die("rename truth");
}

static int
file_exists(const char *fmt, int n)
{
	char name[64];
	struct stat st;

	snprintf(name, sizeof(name), fmt, n);
	return stat(name, &st) == 0;
}

static void
on_term(int sig)
{
	(void)sig;
	quit = 1;
}

static struct rte_mempool *
stack_pool(const char *name, unsigned int n, unsigned int cache)
{
	struct rte_mempool *mp = rte_mempool_create_empty(name, n, 64, cache, 0, SOCKET_ID_ANY, 0);

	if (mp == NULL || rte_mempool_set_ops_byname(mp, "stack", NULL) != 0 ||
	    rte_mempool_populate_default(mp) < 0)
		die("creating the stack pool");
	return mp;
}

int
main(int argc, char **argv)
{
	int n = rte_eal_init(argc, argv), round = 0;
	unsigned int worker;

	if (n < 0)
		die("rte_eal_init");
	argc -= n;
	argv += n;
	if (argc != 3 || strcmp(argv[2], "rounds") != 0) {
		fprintf(stderr, "usage: attach_prog EAL-ARGS -- TRUTH rounds\n");
		return 2;
	}
	truth_path = argv[1];
	saved_num_ops = rte_mempool_ops_table.num_ops;
	memcpy(saved_ops, rte_mempool_ops_table.ops, sizeof(saved_ops[0]) * saved_num_ops);
	pools[P_RING] = rte_mempool_create("att_ring", 1023, 64, 32, 0, NULL, NULL, NULL, NULL,
					   SOCKET_ID_ANY, 0);
	pools[P_MBUFS] = rte_pktmbuf_pool_create("att_mbufs", 511, 32, 0, RTE_MBUF_DEFAULT_BUF_SIZE,
						 SOCKET_ID_ANY);
	pools[P_STACK] = stack_pool("att_stack", 255, 16);
	victim = rte_mempool_create("att_victim", 63, 64, 0, 0, NULL, NULL, NULL, NULL,
				    SOCKET_ID_ANY, 0);
	if (pools[P_RING] == NULL || pools[P_MBUFS] == NULL || victim == NULL)
		die("creating the pools");
	worker = rte_get_next_lcore(-1, 1, 0);
	if (worker >= RTE_MAX_LCORE || rte_eal_remote_launch(worker_main, NULL, worker) != 0)
		die("rte_eal_remote_launch");
	signal(SIGTERM, on_term);

	for (;;) {
		void *fault_obj = NULL;

		if (round > 0) {
			while (!quit && !file_exists("go.%d", round) && !file_exists("fault.%d", round) &&
			       !file_exists("quit", 0))
				usleep(2000);
			if (quit || file_exists("quit", 0))
				break;
		}
		if (round > 0 && file_exists("fault.%d", round)) {
			fault_obj = take_victim();
			give_back(victim, fault_obj);
			give_back_again(victim, fault_obj);
		} else {
			work_round = round;
			lcore_round(0, round);
			while (done_round != round)
				usleep(500);
		}
		write_truth(round, fault_obj);
		round_done(round);
		round++;
	}
	quit = 1;
	rte_eal_mp_wait_lcore();
	return 0;
}
