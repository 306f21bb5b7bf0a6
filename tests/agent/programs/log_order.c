/* SPDX-License-Identifier: BSD-3-Clause
 * Copyright (c) 2026 The gdb-mptrack authors
 *
 * log_order.c: an object put on one lcore and got on the other a microsecond
 * later, many times, both ways, so that the event log holds the put and the
 * get in different threads' rings, within one drain of the writer and one
 * tick of the agent's 1 ms clock.  A log replayed in file or timestamp order
 * then loses held objects; replayed by generation it does not.
 *
 *   log_order EAL-ARGS -- TRUTH handoff
 *
 * "order_pool" (64 objects, no cache): the main lcore gets all of them, then
 * for each object i in turn
 *   even i: main hands i to the worker, which puts it; main gets it back;
 *   odd i:  main puts i, the worker gets it.
 * ROUNDS times: the holders put everything back and main gets all 64 again.
 * Every object is held at the end (even ones by main, odd ones by the worker);
 * TRUTH lists them.
 */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_launch.h>
#include <rte_lcore.h>
#include <rte_mempool.h>
#include <rte_pause.h>

#define N 64
#define ROUNDS 50

static struct rte_mempool *pool;
static void *objs[N];
static void *mailbox;            /* main -> worker: put this */
static unsigned int step;        /* main -> worker: the step to do */
static unsigned int done;        /* worker -> main: last step done */

static void
die(const char *what)
{
	fprintf(stderr, "log_order: %s: %s\n", what, rte_strerror(rte_errno));
	exit(2);
}

static void
wait_for(unsigned int *v, unsigned int want)
{
	while (__atomic_load_n(v, __ATOMIC_ACQUIRE) != want)
		rte_pause();
}

/* Step s of round s / (N + 1): objects' handoffs, then the end of the round. */
static int
worker(void *arg)
{
	(void)arg;
	for (unsigned int s = 1; s <= ROUNDS * (N + 1); s++) {
		unsigned int i = (s - 1) % (N + 1), round = (s - 1) / (N + 1);

		wait_for(&step, s);
		if (i < N && i % 2 == 0) {
			rte_mempool_put(pool, mailbox);
		} else if (i < N) {
			if (rte_mempool_get(pool, &objs[i]) != 0)
				die("worker get");
		} else if (round + 1 < ROUNDS) {
			for (unsigned int k = 1; k < N; k += 2)
				rte_mempool_put(pool, objs[k]);
		}
		__atomic_store_n(&done, s, __ATOMIC_RELEASE);
	}
	return 0;
}

static void
ask(unsigned int s, void *put)
{
	mailbox = put;
	__atomic_store_n(&step, s, __ATOMIC_RELEASE);
	wait_for(&done, s);
}

int
main(int argc, char **argv)
{
	int n = rte_eal_init(argc, argv);
	unsigned int w, s = 0;
	FILE *truth;
	char tmp[4096];

	if (n < 0)
		die("rte_eal_init");
	argc -= n;
	argv += n;
	if (argc != 3) {
		fprintf(stderr, "usage: log_order EAL-ARGS -- TRUTH handoff\n");
		return 2;
	}
	pool = rte_mempool_create("order_pool", N, 64, 0, 0, NULL, NULL, NULL, NULL,
				  SOCKET_ID_ANY, 0);
	if (pool == NULL)
		die("rte_mempool_create");
	w = rte_get_next_lcore(-1, 1, 0);
	if (w >= RTE_MAX_LCORE || rte_eal_remote_launch(worker, NULL, w) != 0)
		die("rte_eal_remote_launch");
	for (unsigned int r = 0; r < ROUNDS; r++) {
		if (r > 0)
			for (unsigned int k = 0; k < N; k += 2)
				rte_mempool_put(pool, objs[k]);
		for (unsigned int k = 0; k < N; k++)
			if (rte_mempool_get(pool, &objs[k]) != 0)
				die("main get");
		for (unsigned int i = 0; i < N; i++) {
			if (i % 2 == 0) {
				ask(++s, objs[i]);            /* the worker puts it */
				if (rte_mempool_get(pool, &objs[i]) != 0)
					die("main get back");
			} else {
				rte_mempool_put(pool, objs[i]);
				ask(++s, NULL);               /* the worker gets it */
			}
		}
		ask(++s, NULL);   /* end of the round */
	}
	rte_eal_wait_lcore(w);
	snprintf(tmp, sizeof(tmp), "%s.tmp", argv[1]);
	truth = fopen(tmp, "w");
	if (truth == NULL)
		die("truth file");
	fprintf(truth, "{\"pid\": %d, \"held\": [", (int)getpid());
	for (unsigned int i = 0; i < N; i++)
		fprintf(truth, "%s\"%p\"", i ? ", " : "", objs[i]);
	fprintf(truth, "], \"in_use\": %u}\n", rte_mempool_in_use_count(pool));
	fclose(truth);
	rename(tmp, argv[1]);
	return 0;
}
