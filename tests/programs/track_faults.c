/*
 * track_faults.c - real DPDK mempool and rte_malloc bugs, each in a named,
 * non-inlined function, for the tests of `mptrack track`.
 *
 * Usage:  track_faults EAL-ARGS -- --mode NAME [--truth FILE] [--trigger FILE]
 *
 * Every mode does some real work, commits its fault (if it has one), calls
 * mptrack_checkpoint() and exits 0; DPDK itself does not notice any of these
 * faults.  The truth file (JSON, written whole by rename) says what the
 * program did; it is written before the fault, so it exists when gdb stops
 * there, except in two-lcores (written just before the checkpoint).
 *
 *   dup-free         pool "faults" (ring_mp_mc, cache 32): alloc_site_a() gets
 *                    an object, free_site_b() puts it, free_site_c() puts it
 *                    again.
 *   foreign-free     pools "pool_a" and "pool_b": alloc_from_a() gets an
 *                    object of pool_a, free_into_b() puts it into pool_b.
 *   stray-free       pool "faults": alloc_site_a() gets an object,
 *                    free_inside() puts (obj + 8).
 *   dup-alloc        pool "tiny" (8 objects, no cache): take_all() gets all 8,
 *                    give_back_twice() puts the first one twice, take_again_1()
 *                    and take_again_2() then both get that same object.
 *   malloc-leak      leaky_site() keeps 7 rte_malloc(100) blocks; tidy_site()
 *                    rte_zmalloc()s 5 blocks and rte_free()s them all.
 *   double-rte-free  malloc_site() rte_malloc()s a block, rte_free_once() and
 *                    rte_free_twice() both rte_free() it.
 *   unknown-rte-free malloc_site() rte_zmalloc()s a block, rte_free_inside()
 *                    rte_free()s (block + 16), rte_free_once() frees the block.
 *   two-lcores       pool "twolc" (1024 objects, cache 32): lcores 0 and 1 at
 *                    once each do 200 lcore_get()/lcore_put() rounds of 1-4
 *                    objects and keep 8; the truth has in_use
 *                    (rte_mempool_in_use_count) and every held address.
 *   wait             pool "late" (cache 16): early_hold() keeps 5 objects, the
 *                    truth is written, then every 100 ms late_alloc() and
 *                    late_free() take and give back one object; once the file
 *                    named by --trigger (default: "trigger" in the current
 *                    directory) exists, late_dup_free() puts the object just
 *                    freed once more (one duplicate free), and the loop goes
 *                    on (for at most 10 minutes).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_launch.h>
#include <rte_lcore.h>
#include <rte_malloc.h>
#include <rte_mempool.h>

#define die(...)                                                  \
	do {                                                      \
		fprintf(stderr, "track_faults: " __VA_ARGS__);    \
		fputc('\n', stderr);                              \
		exit(1);                                          \
	} while (0)

/* A site gdb must see in a backtrace: never inlined, cloned, merged or tail-called. */
#define SITE __attribute__((noinline, noipa, used))

/* Stops the compiler from turning a site's last call into a jump. */
#define KEEP_FRAME() __asm__ volatile("" ::: "memory")

static volatile unsigned long sink;

#define HEXP(p) ((unsigned long)(uintptr_t)(p))

/* ------------------------------------------------------------------ truth */

static const char *truth_path;
static char truth_buf[1 << 16];
static size_t truth_len;

static void
truth_add(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void
truth_add(const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(truth_buf + truth_len, sizeof(truth_buf) - truth_len, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(truth_buf) - truth_len)
		die("truth too long");
	truth_len += (size_t)n;
}

static void
truth_addrs(const char *key, void *const *addrs, unsigned int n)
{
	unsigned int i;

	truth_add(", \"%s\": [", key);
	for (i = 0; i < n; i++)
		truth_add("%s\"0x%lx\"", i ? ", " : "", HEXP(addrs[i]));
	truth_add("]");
}

static void
truth_pool(const char *key, const struct rte_mempool *mp)
{
	truth_add(", \"%s\": {\"name\": \"%s\", \"addr\": \"0x%lx\", \"size\": %u, "
		  "\"cache_size\": %u, \"elt_size\": %u, \"in_use\": %u}",
		  key, mp->name, HEXP(mp), mp->size, mp->cache_size, mp->elt_size,
		  rte_mempool_in_use_count(mp));
}

/* Write {"pid": ..., "mode": ... <what truth_add collected>} to --truth. */
static void
truth_write(const char *mode)
{
	char tmp[4096];
	FILE *f;

	if (truth_path == NULL)
		return;
	if (snprintf(tmp, sizeof(tmp), "%s.tmp", truth_path) >= (int)sizeof(tmp))
		die("truth path too long");
	f = fopen(tmp, "w");
	if (f == NULL)
		die("%s: %s", tmp, strerror(errno));
	fprintf(f, "{\"pid\": %d, \"mode\": \"%s\", \"main_lcore\": %u%.*s}\n",
		(int)getpid(), mode, rte_get_main_lcore(), (int)truth_len, truth_buf);
	if (fflush(f) != 0 || fsync(fileno(f)) != 0 || fclose(f) != 0)
		die("%s: write failed: %s", tmp, strerror(errno));
	if (rename(tmp, truth_path) != 0)
		die("rename %s -> %s: %s", tmp, truth_path, strerror(errno));
}

/* gdb breaks here; the program's work (and its fault) is done. */
SITE void
mptrack_checkpoint(void)
{
	KEEP_FRAME();
}

static struct rte_mempool *
make_pool(const char *name, unsigned int n, unsigned int elt_size, unsigned int cache)
{
	struct rte_mempool *mp = rte_mempool_create(name, n, elt_size, cache, 0, NULL, NULL,
						    NULL, NULL, SOCKET_ID_ANY, 0);

	if (mp == NULL)
		die("rte_mempool_create(%s): %s", name, rte_strerror(rte_errno));
	return mp;
}

/* -------------------------------------------------------- mempool faults */

SITE void *
alloc_site_a(struct rte_mempool *mp)
{
	void *obj;

	if (rte_mempool_get(mp, &obj) != 0)
		die("%s: rte_mempool_get failed", mp->name);
	memset(obj, 0xa5, mp->elt_size);
	KEEP_FRAME();
	return obj;
}

SITE void
free_site_b(struct rte_mempool *mp, void *obj)
{
	rte_mempool_put(mp, obj);
	KEEP_FRAME();
	sink++;
}

SITE void
free_site_c(struct rte_mempool *mp, void *obj)
{
	rte_mempool_put(mp, obj);
	KEEP_FRAME();
	sink += 2;
}

SITE void
free_inside(struct rte_mempool *mp, void *obj)
{
	rte_mempool_put(mp, (char *)obj + 8);
	KEEP_FRAME();
	sink += 3;
}

/* Some honest traffic first, so the faulting object is not the only one seen. */
static void
warm_up(struct rte_mempool *mp)
{
	void *objs[10];
	unsigned int i;

	for (i = 0; i < 10; i++)
		if (rte_mempool_get(mp, &objs[i]) != 0)
			die("%s: warm-up get failed", mp->name);
	rte_mempool_put_bulk(mp, objs, 10);
}

static void
mode_dup_free(void)
{
	struct rte_mempool *mp = make_pool("faults", 255, 128, 32);
	void *obj;

	warm_up(mp);
	obj = alloc_site_a(mp);
	truth_pool("pool", mp);
	truth_add(", \"obj\": \"0x%lx\"", HEXP(obj));
	truth_write("dup-free");
	free_site_b(mp, obj);
	free_site_c(mp, obj);
	mptrack_checkpoint();
}

static void
mode_stray_free(void)
{
	struct rte_mempool *mp = make_pool("faults", 255, 128, 32);
	void *obj;

	warm_up(mp);
	obj = alloc_site_a(mp);
	truth_pool("pool", mp);
	truth_add(", \"obj\": \"0x%lx\", \"stray\": \"0x%lx\"", HEXP(obj),
		  HEXP((char *)obj + 8));
	truth_write("stray-free");
	free_inside(mp, obj);
	mptrack_checkpoint();
}

SITE void *
alloc_from_a(struct rte_mempool *pool_a)
{
	void *obj;

	if (rte_mempool_get(pool_a, &obj) != 0)
		die("pool_a: rte_mempool_get failed");
	KEEP_FRAME();
	return obj;
}

SITE void
free_into_b(struct rte_mempool *pool_b, void *obj)
{
	rte_mempool_put(pool_b, obj);
	KEEP_FRAME();
	sink += 4;
}

static void
mode_foreign_free(void)
{
	struct rte_mempool *pool_a = make_pool("pool_a", 200, 64, 32);
	struct rte_mempool *pool_b = make_pool("pool_b", 200, 64, 32);
	void *obj;

	warm_up(pool_a);
	warm_up(pool_b);
	obj = alloc_from_a(pool_a);
	truth_pool("pool_a", pool_a);
	truth_pool("pool_b", pool_b);
	truth_add(", \"obj\": \"0x%lx\"", HEXP(obj));
	truth_write("foreign-free");
	free_into_b(pool_b, obj);
	mptrack_checkpoint();
}

#define TINY_N 8

SITE void
take_all(struct rte_mempool *mp, void **objs)
{
	if (rte_mempool_get_bulk(mp, objs, TINY_N) != 0)
		die("tiny: rte_mempool_get_bulk(%u) failed", TINY_N);
	KEEP_FRAME();
}

SITE void
give_back_twice(struct rte_mempool *mp, void *obj)
{
	rte_mempool_put(mp, obj);
	rte_mempool_put(mp, obj);
	KEEP_FRAME();
	sink += 5;
}

SITE void *
take_again_1(struct rte_mempool *mp)
{
	void *obj;

	if (rte_mempool_get(mp, &obj) != 0)
		die("tiny: take_again_1 failed");
	KEEP_FRAME();
	return obj;
}

SITE void *
take_again_2(struct rte_mempool *mp)
{
	void *obj;

	if (rte_mempool_get(mp, &obj) != 0)
		die("tiny: take_again_2 failed");
	KEEP_FRAME();
	return obj;
}

static void
mode_dup_alloc(void)
{
	struct rte_mempool *mp = make_pool("tiny", TINY_N, 64, 0);
	void *objs[TINY_N], *x, *y;

	take_all(mp, objs);
	truth_pool("pool", mp);
	truth_add(", \"obj\": \"0x%lx\"", HEXP(objs[0]));
	truth_write("dup-alloc");
	give_back_twice(mp, objs[0]);
	x = take_again_1(mp);
	y = take_again_2(mp);
	if (x != objs[0] || y != objs[0])
		die("tiny: expected %p twice, got %p and %p", objs[0], x, y);
	mptrack_checkpoint();
}

/* ------------------------------------------------------ rte_malloc faults */

#define LEAK_N 7
#define LEAK_SIZE 100
#define TIDY_N 5

static void *leaked[LEAK_N];

SITE void
leaky_site(void)
{
	unsigned int i;

	for (i = 0; i < LEAK_N; i++) {
		leaked[i] = rte_malloc(NULL, LEAK_SIZE, 0);
		if (leaked[i] == NULL)
			die("rte_malloc failed");
		KEEP_FRAME();
	}
}

SITE void
tidy_site(void)
{
	void *blocks[TIDY_N];
	unsigned int i;

	for (i = 0; i < TIDY_N; i++) {
		blocks[i] = rte_zmalloc(NULL, 64 + 16 * i, 0);
		if (blocks[i] == NULL)
			die("rte_zmalloc failed");
		KEEP_FRAME();
	}
	for (i = 0; i < TIDY_N; i++) {
		rte_free(blocks[i]);
		KEEP_FRAME();
	}
}

static void
mode_malloc_leak(void)
{
	leaky_site();
	tidy_site();
	truth_add(", \"leak_count\": %u, \"leak_bytes\": %u", LEAK_N, LEAK_N * LEAK_SIZE);
	truth_addrs("leaked", leaked, LEAK_N);
	truth_write("malloc-leak");
	mptrack_checkpoint();
}

SITE void *
malloc_site(int zero)
{
	void *p = zero ? rte_zmalloc(NULL, 256, 0) : rte_malloc(NULL, 256, 0);

	if (p == NULL)
		die("rte_malloc failed");
	KEEP_FRAME();
	return p;
}

SITE void
rte_free_once(void *p)
{
	rte_free(p);
	KEEP_FRAME();
	sink += 6;
}

SITE void
rte_free_twice(void *p)
{
	rte_free(p);
	KEEP_FRAME();
	sink += 7;
}

/*
 * rte_free() of a pointer 16 bytes into a zeroed block: DPDK reads the
 * "header" 64 bytes before it, inside the block's real header, whose state
 * field then falls on the block's first (zero) bytes, so it logs "Invalid
 * memory" and changes nothing.
 */
SITE void
rte_free_inside(void *p)
{
	rte_free((char *)p + 16);
	KEEP_FRAME();
	sink += 8;
}

static void
mode_double_rte_free(void)
{
	void *keep = malloc_site(0); /* a busy neighbour before the block */
	void *p = malloc_site(0);

	truth_add(", \"ptr\": \"0x%lx\"", HEXP(p));
	truth_write("double-rte-free");
	rte_free_once(p);
	rte_free_twice(p);
	rte_free(keep);
	mptrack_checkpoint();
}

static void
mode_unknown_rte_free(void)
{
	void *p = malloc_site(1);

	truth_add(", \"ptr\": \"0x%lx\", \"bad\": \"0x%lx\"", HEXP(p), HEXP((char *)p + 16));
	truth_write("unknown-rte-free");
	rte_free_inside(p);
	rte_free_once(p);
	mptrack_checkpoint();
}

/* ------------------------------------------------------------ two lcores */

#define TL_ROUNDS 200
#define TL_KEEP_EVERY 25
#define TL_MAX_HELD (TL_ROUNDS / TL_KEEP_EVERY)

struct lcore_work {
	unsigned int lcore;
	unsigned int gets, puts, objs_got, objs_put;
	void *held[TL_MAX_HELD];
	unsigned int nheld;
};

static struct rte_mempool *twolc;
static struct lcore_work lw[2];

SITE int
lcore_get(struct rte_mempool *mp, void **objs, unsigned int n)
{
	int ret = rte_mempool_get_bulk(mp, objs, n);

	KEEP_FRAME();
	return ret;
}

SITE void
lcore_put(struct rte_mempool *mp, void *const *objs, unsigned int n)
{
	rte_mempool_put_bulk(mp, objs, n);
	KEEP_FRAME();
	sink += n;
}

/* Round i gets 1 + i % 4 objects, keeps the first every 25th round, puts the rest. */
static int
two_lcores_work(void *arg)
{
	struct lcore_work *w = arg;
	void *objs[4];
	unsigned int i, n, keep;

	w->lcore = rte_lcore_id();
	for (i = 0; i < TL_ROUNDS; i++) {
		n = 1 + i % 4;
		if (lcore_get(twolc, objs, n) != 0)
			die("twolc: get of %u failed on lcore %u", n, w->lcore);
		w->gets++;
		w->objs_got += n;
		keep = i % TL_KEEP_EVERY == 0;
		if (keep)
			w->held[w->nheld++] = objs[0];
		if (n > keep) {
			lcore_put(twolc, objs + keep, n - keep);
			w->puts++;
			w->objs_put += n - keep;
		}
	}
	return 0;
}

static void
mode_two_lcores(void)
{
	unsigned int worker = rte_get_next_lcore(rte_get_main_lcore(), 1, 0);
	unsigned int i, in_use, held = 0;
	int ret;

	twolc = make_pool("twolc", 1024, 64, 32);
	ret = rte_eal_remote_launch(two_lcores_work, &lw[1], worker);
	if (ret != 0)
		die("rte_eal_remote_launch: %s", strerror(-ret));
	two_lcores_work(&lw[0]);
	ret = rte_eal_wait_lcore(worker);
	if (ret != 0)
		die("worker lcore %u returned %d", worker, ret);

	in_use = rte_mempool_in_use_count(twolc);
	for (i = 0; i < 2; i++)
		held += lw[i].nheld;
	if (held != in_use)
		die("twolc: program holds %u objects but in_use is %u", held, in_use);

	truth_pool("pool", twolc);
	truth_add(", \"in_use\": %u, \"lcores\": [", in_use);
	for (i = 0; i < 2; i++) {
		truth_add("%s{\"lcore\": %u, \"gets\": %u, \"puts\": %u, \"objs_got\": %u, "
			  "\"objs_put\": %u", i ? ", " : "", lw[i].lcore, lw[i].gets,
			  lw[i].puts, lw[i].objs_got, lw[i].objs_put);
		truth_addrs("held", lw[i].held, lw[i].nheld);
		truth_add("}");
	}
	truth_add("]");
	{
		void *all[2 * TL_MAX_HELD];

		memcpy(all, lw[0].held, lw[0].nheld * sizeof(void *));
		memcpy(all + lw[0].nheld, lw[1].held, lw[1].nheld * sizeof(void *));
		truth_addrs("held", all, held);
	}
	truth_write("two-lcores");
	mptrack_checkpoint();
	for (i = 0; i < 2; i++)
		rte_mempool_put_bulk(twolc, lw[i].held, lw[i].nheld);
	if (rte_mempool_in_use_count(twolc) != 0)
		die("twolc: %u objects in use after cleanup", rte_mempool_in_use_count(twolc));
}

/* ------------------------------------------------------------------ wait */

#define EARLY_N 5
#define WAIT_PERIOD_US 100000
#define WAIT_MAX_ROUNDS 6000 /* 10 minutes */

SITE void
early_hold(struct rte_mempool *mp, void **objs)
{
	unsigned int i;

	for (i = 0; i < EARLY_N; i++)
		if (rte_mempool_get(mp, &objs[i]) != 0)
			die("late: early get failed");
	KEEP_FRAME();
}

SITE void *
late_alloc(struct rte_mempool *mp)
{
	void *obj;

	if (rte_mempool_get(mp, &obj) != 0)
		die("late: late_alloc failed");
	KEEP_FRAME();
	return obj;
}

SITE void
late_free(struct rte_mempool *mp, void *obj)
{
	rte_mempool_put(mp, obj);
	KEEP_FRAME();
	sink += 9;
}

SITE void
late_dup_free(struct rte_mempool *mp, void *obj)
{
	rte_mempool_put(mp, obj);
	KEEP_FRAME();
	sink += 10;
}

static void
mode_wait(const char *trigger)
{
	struct rte_mempool *mp = make_pool("late", 255, 64, 16);
	void *early[EARLY_N], *obj;
	unsigned int round;
	int fired = 0;

	if (trigger == NULL)
		trigger = "trigger";
	warm_up(mp);
	early_hold(mp, early);
	truth_pool("pool", mp);
	truth_addrs("held", early, EARLY_N);
	truth_write("wait");
	for (round = 0; round < WAIT_MAX_ROUNDS; round++) {
		obj = late_alloc(mp);
		late_free(mp, obj);
		if (!fired && access(trigger, F_OK) == 0) {
			fired = 1;
			fprintf(stderr, "track_faults: trigger seen, double free of %p\n", obj);
			late_dup_free(mp, obj);
			mptrack_checkpoint();
		}
		usleep(WAIT_PERIOD_US);
	}
}

/* ------------------------------------------------------------------ main */

int
main(int argc, char **argv)
{
	const char *mode = NULL, *trigger = NULL;
	unsigned int worker, nworkers = 0;
	int ret, i;

	ret = rte_eal_init(argc, argv);
	if (ret < 0)
		die("rte_eal_init failed: %s", rte_strerror(rte_errno));
	argc -= ret;
	argv += ret;
	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--truth") == 0 && i + 1 < argc)
			truth_path = argv[++i];
		else if (strcmp(argv[i], "--trigger") == 0 && i + 1 < argc)
			trigger = argv[++i];
		else if (strcmp(argv[i], "--mode") == 0 && i + 1 < argc)
			mode = argv[++i];
		else if (strncmp(argv[i], "--mode=", 7) == 0)
			mode = argv[i] + 7;
		else
			die("unknown argument '%s'", argv[i]);
	}
	if (mode == NULL)
		die("usage: track_faults EAL-ARGS -- --mode NAME [--truth FILE] [--trigger FILE]");

	RTE_LCORE_FOREACH_WORKER(worker)
		nworkers++;
	if (nworkers != 1)
		die("need exactly one worker lcore (e.g. -l 0,1), got %u", nworkers);

	if (strcmp(mode, "dup-free") == 0)
		mode_dup_free();
	else if (strcmp(mode, "foreign-free") == 0)
		mode_foreign_free();
	else if (strcmp(mode, "stray-free") == 0)
		mode_stray_free();
	else if (strcmp(mode, "dup-alloc") == 0)
		mode_dup_alloc();
	else if (strcmp(mode, "malloc-leak") == 0)
		mode_malloc_leak();
	else if (strcmp(mode, "double-rte-free") == 0)
		mode_double_rte_free();
	else if (strcmp(mode, "unknown-rte-free") == 0)
		mode_unknown_rte_free();
	else if (strcmp(mode, "two-lcores") == 0)
		mode_two_lcores();
	else if (strcmp(mode, "wait") == 0)
		mode_wait(trigger);
	else
		die("unknown mode '%s'", mode);

	printf("track_faults: %s done\n", mode);
	fflush(stdout);
	rte_eal_cleanup();
	return 0;
}
