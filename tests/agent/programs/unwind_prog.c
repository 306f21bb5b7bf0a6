/* SPDX-License-Identifier: BSD-3-Clause
 * Copyright (c) 2026 The gdb-mptrack authors
 *
 * unwind_prog.c: gets and puts from frames of every kind the agent's CFI
 * unwinder must follow, in code built without frame pointers (the tests build
 * it with -O1, which omits them), for MPTRACK_UNWIND_VERIFY=1 to compare each
 * stack with libunwind's:
 *   - plain frames (CFA = rsp + k), at recursion depths 0..12;
 *   - alloca (CFA = rbp + 16);
 *   - an over-aligned local with alloca and stack arguments (GCC's realigned
 *     frame: CFA = *(rbp - 8), rbp saved at rbp + 0);
 *   - one function reached from two callers with equal frames (the same pc and
 *     sp, different callers: a memoised walk must not be reused);
 *   - a signal handler (a signal frame: the agent's fallback unwinder), on the
 *     thread's stack and on an alternate signal stack;
 *   - a thread that is not an EAL lcore, which then exits.
 *
 *   unwind_prog EAL-ARGS -- TRUTH mixed
 */
#include <alloca.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_mempool.h>

#define NOINLINE __attribute__((noinline, noclone, used))
#define ROUNDS 200

static struct rte_mempool *pool;
static volatile unsigned long events;
static volatile int sink;

static void
die(const char *what)
{
	fprintf(stderr, "unwind_prog: %s: %s\n", what, rte_strerror(rte_errno));
	exit(2);
}

NOINLINE void
get_put(void)
{
	void *obj;

	if (rte_mempool_get(pool, &obj) != 0)
		die("rte_mempool_get");
	sink += *(volatile char *)obj;
	rte_mempool_put(pool, obj);
	events += 2;
}

NOINLINE int
recurse(int depth)
{
	int r;

	if (depth == 0) {
		get_put();
		return 1;
	}
	r = recurse(depth - 1) + 1;  /* not a tail call */
	sink += r;
	return r;
}

NOINLINE void
with_alloca(size_t n)
{
	volatile char *buf = alloca(n);

	buf[0] = 1;
	buf[n - 1] = 2;
	get_put();
	sink += buf[0];
}

/* an over-aligned local, alloca and stack arguments: GCC realigns the stack
 * through a DRAP register, CFA = *(rbp - 8), rbp saved at rbp + 0 */
NOINLINE void
with_aligned_local(long a, long b, long c, long d, long e, long f, long g, long h)
{
	volatile char buf[128] __attribute__((aligned(64)));
	volatile char *more = alloca((size_t)(16 + (h & 63)));

	memset((char *)buf, (int)(a + b + c + d + e + f + g + h), sizeof(buf));
	more[0] = 1;
	get_put();
	sink += buf[3] + more[0] + (int)h;
}

NOINLINE void
common(void)
{
	get_put();
	sink++;
}

NOINLINE void
via_a(void)
{
	common();
	sink++;
}

NOINLINE void
via_b(void)
{
	common();
	sink++;
}

static void
on_usr1(int sig)
{
	(void)sig;
	get_put();
}

NOINLINE void
signal_me(void)
{
	raise(SIGUSR1);
	raise(SIGUSR2);   /* on the alternate stack */
	sink++;
}

static void
alt_stack_handler(void)
{
	static char alt[64 * 1024];
	stack_t ss = {.ss_sp = alt, .ss_size = sizeof(alt), .ss_flags = 0};
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_usr1;
	sa.sa_flags = SA_ONSTACK;
	sigemptyset(&sa.sa_mask);
	if (sigaltstack(&ss, NULL) != 0 || sigaction(SIGUSR2, &sa, NULL) != 0)
		die("sigaltstack");
}

static void *
thread_main(void *arg)
{
	(void)arg;
	for (int i = 0; i < ROUNDS; i++) {
		recurse(i % 5);
		with_alloca(64 + (size_t)i);
	}
	return NULL;
}

int
main(int argc, char **argv)
{
	int n = rte_eal_init(argc, argv);
	pthread_t t;
	FILE *truth;
	char tmp[4096];

	if (n < 0)
		die("rte_eal_init");
	argc -= n;
	argv += n;
	if (argc != 3 || strcmp(argv[2], "mixed") != 0) {
		fprintf(stderr, "usage: unwind_prog EAL-ARGS -- TRUTH mixed\n");
		return 2;
	}
	pool = rte_mempool_create("unwind_pool", 255, 64, 0, 0, NULL, NULL, NULL, NULL,
				  SOCKET_ID_ANY, 0);
	if (pool == NULL)
		die("rte_mempool_create");
	signal(SIGUSR1, on_usr1);
	alt_stack_handler();
	for (int i = 0; i < ROUNDS; i++) {
		recurse(i % 13);
		with_alloca(16 + (size_t)(i % 7) * 100);
		with_aligned_local(i, 2, 3, 4, 5, 6, 7, i);
		if (i % 2)
			via_a();
		else
			via_b();
		if (i % 50 == 0)
			signal_me();
	}
	if (pthread_create(&t, NULL, thread_main, NULL) != 0 || pthread_join(t, NULL) != 0)
		die("pthread");
	snprintf(tmp, sizeof(tmp), "%s.tmp", argv[1]);
	truth = fopen(tmp, "w");
	if (truth == NULL)
		die("truth file");
	fprintf(truth, "{\"pid\": %d, \"events\": %lu}\n", (int)getpid(), events);
	fclose(truth);
	rename(tmp, argv[1]);
	return 0;
}
