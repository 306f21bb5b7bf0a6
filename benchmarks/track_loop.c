/*
 * track_loop.c - the loop that benchmarks/track_bench.py runs under gdb.
 *
 * Usage:  track_loop EAL-ARGS -- N M CHUNK
 *
 * 1. Makes pool "benchpool" (POOL_SIZE objects of 64 bytes, cache 0, the
 *    default ring_mp_mc driver), prints its driver's name and enqueue and
 *    dequeue addresses (from rte_mempool_ops_table) and keeps the addresses
 *    in bench_ops_enqueue and bench_ops_dequeue.
 * 2. Phase 1: pool_hold() keeps HOLD objects, then pool_loop() does N
 *    rte_mempool_get()/rte_mempool_put() pairs of one object each, then
 *    pool_release() gives the held objects back.  Both loops run 10 distinct
 *    frames below main (nest9() ... nest0()), so that backtraces of depth 8
 *    have that many frames to unwind.  phase_end(1) is called
 *    while they are still held, with bench_pool_in_use set from
 *    rte_mempool_in_use_count().
 * 3. Phase 2: malloc_hold() keeps HOLD rte_malloc blocks, then malloc_loop()
 *    does M rte_malloc(64)/rte_free() pairs, then the blocks are freed;
 *    phase_end(2) comes before that, with bench_malloc_held = HOLD.
 *
 * Each loop is timed by the program itself with CLOCK_MONOTONIC:
 * bench_pool_ns is pool_loop()'s time; bench_chunk_ns[k] is the time of
 * malloc pairs [k*CHUNK, (k+1)*CHUNK) (the last chunk may be shorter); after
 * each, chunk_mark() is called outside the timed span.  gdb
 * reads these globals at phase_end() (a noinline marker, like phase_start()),
 * so the stops at the markers are outside the timed loops.  A phase with a
 * count of 0 is skipped, markers included.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <rte_eal.h>
#include <rte_lcore.h>
#include <rte_malloc.h>
#include <rte_mempool.h>

#define POOL_SIZE 255
#define HOLD 3
#define MAX_CHUNKS 4096

/* A function gdb must see: never inlined, cloned, merged or tail-called. */
#define SITE __attribute__((noinline, noipa, used))
#define KEEP_FRAME() __asm__ volatile("" ::: "memory")

/* Read by gdb at the markers. */
volatile uint64_t bench_pool_ns;
volatile uint64_t bench_chunk_ns[MAX_CHUNKS];
volatile unsigned int bench_chunks;
volatile unsigned int bench_pool_in_use;
volatile unsigned int bench_malloc_held;
volatile unsigned long bench_sink;
volatile uint64_t bench_ops_enqueue, bench_ops_dequeue;
volatile const unsigned int bench_pool_size = POOL_SIZE;
volatile const unsigned int bench_hold = HOLD;

static uint64_t
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

#define die(...)                                                  \
	do {                                                      \
		fprintf(stderr, "track_loop: " __VA_ARGS__);      \
		fputc('\n', stderr);                              \
		exit(1);                                          \
	} while (0)

SITE void
phase_start(int phase)
{
	bench_sink += (unsigned long)phase;
	KEEP_FRAME();
}

SITE void
phase_end(int phase)
{
	bench_sink += (unsigned long)phase;
	KEEP_FRAME();
}

/* Called after each chunk's timestamp; gdb reads its own CPU time there. */
SITE void
chunk_mark(unsigned int k)
{
	bench_sink += k;
	KEEP_FRAME();
}

SITE void
pool_hold(struct rte_mempool *mp, void **held)
{
	if (rte_mempool_get_bulk(mp, held, HOLD) != 0)
		die("pool_hold: rte_mempool_get_bulk failed");
	KEEP_FRAME();
}

SITE void
pool_release(struct rte_mempool *mp, void **held)
{
	rte_mempool_put_bulk(mp, held, HOLD);
	KEEP_FRAME();
}

struct loop_args {
	struct rte_mempool *mp;
	unsigned long count;
	unsigned long chunk;
};

/* N get/put pairs: for each, one driver dequeue and one driver enqueue. */
SITE void
pool_loop(void *arg)
{
	struct loop_args *a = arg;
	void *obj;
	unsigned long i;

	for (i = 0; i < a->count; i++) {
		if (rte_mempool_get(a->mp, &obj) != 0)
			die("pool_loop: rte_mempool_get failed at pair %lu", i);
		bench_sink += (uintptr_t)obj;
		rte_mempool_put(a->mp, obj);
	}
	KEEP_FRAME();
}

SITE void *
malloc_hold_one(void)
{
	void *p = rte_malloc("bench_hold", 128, 0);

	KEEP_FRAME();
	return p;
}

/* M rte_malloc/rte_free pairs, a timestamp after every `chunk` pairs. */
SITE void
malloc_loop(void *arg)
{
	struct loop_args *a = arg;
	unsigned long i, m = a->count, chunk = a->chunk;
	uint64_t t = now_ns(), t1;
	void *p;

	bench_chunks = 0;
	for (i = 0; i < m; i++) {
		p = rte_malloc("bench", 64, 0);
		if (p == NULL)
			die("malloc_loop: rte_malloc failed at pair %lu", i);
		bench_sink += (uintptr_t)p;
		rte_free(p);
		if ((i + 1) % chunk == 0 || i + 1 == m) {
			t1 = now_ns();
			if (bench_chunks < MAX_CHUNKS)
				bench_chunk_ns[bench_chunks++] = t1 - t;
			chunk_mark(bench_chunks);
			t = now_ns();
		}
	}
	KEEP_FRAME();
}

/*
 * nest9() -> nest8() -> ... -> nest0() -> fn(arg): the loops run 11 distinct
 * frames below main, so that a backtrace of depth 8 has 8 frames to
 * unwind, as in a real program (gdb stops unwinding at main).
 */
typedef void (*work_fn)(void *);

SITE void
nest0(work_fn fn, void *arg)
{
	fn(arg);
	KEEP_FRAME();
}

#define NEST(i, j)                                \
	SITE void                                 \
	nest##i(work_fn fn, void *arg)            \
	{                                         \
		nest##j(fn, arg);                 \
		KEEP_FRAME();                     \
	}
NEST(1, 0)
NEST(2, 1)
NEST(3, 2)
NEST(4, 3)
NEST(5, 4)
NEST(6, 5)
NEST(7, 6)
NEST(8, 7)
NEST(9, 8)

int
main(int argc, char **argv)
{
	struct rte_mempool *mp;
	struct rte_mempool_ops *ops;
	struct loop_args args;
	void *held[HOLD];
	unsigned long n, m, chunk;
	uint64_t t0;
	int used, i;

	used = rte_eal_init(argc, argv);
	if (used < 0)
		die("rte_eal_init failed");
	argc -= used;
	argv += used;
	if (argc != 4)
		die("usage: track_loop EAL-ARGS -- N M CHUNK");
	n = strtoul(argv[1], NULL, 0);
	m = strtoul(argv[2], NULL, 0);
	chunk = strtoul(argv[3], NULL, 0);
	if (chunk == 0 || (m + chunk - 1) / chunk > MAX_CHUNKS)
		die("CHUNK must be at least 1 and M/CHUNK at most %d", MAX_CHUNKS);

	mp = rte_mempool_create("benchpool", POOL_SIZE, 64, 0, 0, NULL, NULL, NULL, NULL, SOCKET_ID_ANY, 0);
	if (mp == NULL)
		die("rte_mempool_create failed");
	ops = rte_mempool_get_ops(mp->ops_index);
	bench_ops_enqueue = (uintptr_t)ops->enqueue;
	bench_ops_dequeue = (uintptr_t)ops->dequeue;
	printf("ops %s 0x%lx 0x%lx\n", ops->name, (unsigned long)(uintptr_t)ops->enqueue,
	       (unsigned long)(uintptr_t)ops->dequeue);
	fflush(stdout);

	if (n) {
		phase_start(1);
		pool_hold(mp, held);
		args.mp = mp;
		args.count = n;
		t0 = now_ns();
		nest9(pool_loop, &args);
		bench_pool_ns = now_ns() - t0;
		bench_pool_in_use = rte_mempool_in_use_count(mp);
		phase_end(1);
		pool_release(mp, held);
	}
	if (m) {
		phase_start(2);
		for (i = 0; i < HOLD; i++)
			held[i] = malloc_hold_one();
		bench_malloc_held = HOLD;
		args.count = m;
		args.chunk = chunk;
		nest9(malloc_loop, &args);
		phase_end(2);
		for (i = 0; i < HOLD; i++)
			rte_free(held[i]);
	}
	printf("done n=%lu m=%lu\n", n, m);
	rte_mempool_free(mp);
	rte_eal_cleanup();
	return 0;
}
