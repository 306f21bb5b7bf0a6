/*
 * pools.c - a real DPDK program that knows its own truth.
 *
 * It creates mempools with and without per-lcore caches on several drivers,
 * gets and puts objects on two lcores, holds some, then writes what it holds
 * and what it gave back to a JSON "truth" file and calls mptrack_checkpoint()
 * so a debugger (or a core file) can be compared against that truth.
 *
 * Usage:  pools EAL-ARGS -- --truth FILE [--wait | --abort]
 *   (default)  clean up and exit 0 after the checkpoint
 *   --wait     sleep forever after the checkpoint (attach tests)
 *   --abort    abort() after the checkpoint (kernel core tests)
 *
 * Every address in the truth file is "0x%lx" of the pointer that
 * rte_mempool_get*() / rte_pktmbuf_alloc*() returned.  "held" is exactly the
 * set of objects out of the pool (checked against rte_mempool_in_use_count
 * before the file is written); "freed" is every address the program put back
 * and did not get again.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_launch.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>

#define die(...)                                                  \
	do {                                                      \
		fprintf(stderr, "pools: " __VA_ARGS__);           \
		fputc('\n', stderr);                              \
		exit(1);                                          \
	} while (0)

/* What the program did with one object. */
struct track {
	void *addr;
	int held; /* 1: out of the pool, 0: put back */
};

#define MAX_TRACK 1024

struct pool_def {
	const char *name;
	const char *ops; /* NULL: pktmbuf pool */
	unsigned int n;
	unsigned int elt_size;
	unsigned int cache_size;
	/* filled in at run time */
	struct rte_mempool *mp;
	struct track track[MAX_TRACK];
	unsigned int ntrack;
};

static struct pool_def pools[] = {
	{ .name = "cached", .ops = "ring_mp_mc", .n = 1024, .elt_size = 100, .cache_size = 32 },
	{ .name = "nocache", .ops = "ring_sp_sc", .n = 256, .elt_size = 64, .cache_size = 0 },
	{ .name = "stack", .ops = "stack", .n = 512, .elt_size = 128, .cache_size = 16 },
	{ .name = "rts", .ops = "ring_mt_rts", .n = 300, .elt_size = 48, .cache_size = 8 },
	{ .name = "hts", .ops = "ring_mt_hts", .n = 200, .elt_size = 80, .cache_size = 0 },
	{ .name = "mpsc", .ops = "ring_mp_sc", .n = 128, .elt_size = 32, .cache_size = 4 },
	{ .name = "spmc", .ops = "ring_sp_mc", .n = 160, .elt_size = 256, .cache_size = 0 },
	{ .name = "mbufs", .ops = NULL, .n = 511, .elt_size = 0, .cache_size = 32 },
};
#define NPOOLS (sizeof(pools) / sizeof(pools[0]))

/* The chained mbuf: head (two segments) and its second segment. */
static struct rte_mbuf *chain_head;

static void
note(struct pool_def *p, void *addr, int held)
{
	unsigned int i;

	for (i = 0; i < p->ntrack; i++) {
		if (p->track[i].addr == addr) {
			if (p->track[i].held == held)
				die("%s: %p %s twice", p->name, addr,
				    held ? "got" : "put");
			p->track[i].held = held;
			return;
		}
	}
	if (!held)
		die("%s: put %p that was never got", p->name, addr);
	if (p->ntrack == MAX_TRACK)
		die("%s: too many tracked objects", p->name);
	p->track[p->ntrack].addr = addr;
	p->track[p->ntrack].held = 1;
	p->ntrack++;
}

/* Leave a recognizable mark at the start of an object we hold. */
static void
mark(struct pool_def *p, void *obj, unsigned int lcore, unsigned int i)
{
	char buf[32];
	int len = snprintf(buf, sizeof(buf), "mptrack-%u-%u", lcore, i);

	if ((unsigned int)len + 1 <= p->mp->elt_size)
		memcpy(obj, buf, (size_t)len + 1);
}

/*
 * One lcore's work on a plain pool: 5 single gets, one bulk get of 20,
 * 3 single puts and a bulk put of 10; the other 12 stay held.  With a
 * cache, what was put sits in this lcore's cache.
 */
static void
work_plain(struct pool_def *p, unsigned int lcore)
{
	void *single[5], *bulk[20];
	unsigned int i;

	for (i = 0; i < 5; i++) {
		if (rte_mempool_get(p->mp, &single[i]) != 0)
			die("%s: rte_mempool_get failed on lcore %u", p->name, lcore);
		note(p, single[i], 1);
		mark(p, single[i], lcore, i);
	}
	if (rte_mempool_get_bulk(p->mp, bulk, 20) != 0)
		die("%s: rte_mempool_get_bulk failed on lcore %u", p->name, lcore);
	for (i = 0; i < 20; i++) {
		note(p, bulk[i], 1);
		mark(p, bulk[i], lcore, 5 + i);
	}
	for (i = 0; i < 3; i++) {
		note(p, single[i], 0);
		rte_mempool_put(p->mp, single[i]);
	}
	for (i = 0; i < 10; i++)
		note(p, bulk[i], 0);
	rte_mempool_put_bulk(p->mp, bulk, 10);
}

static struct rte_mbuf *
alloc_mbuf(struct pool_def *p, unsigned int lcore, unsigned int i, uint16_t port)
{
	struct rte_mbuf *m = rte_pktmbuf_alloc(p->mp);
	char payload[32];
	char *data;
	int len;

	if (m == NULL)
		die("mbufs: rte_pktmbuf_alloc failed on lcore %u", lcore);
	note(p, m, 1);
	len = snprintf(payload, sizeof(payload), "mptrack-test-%u", i);
	data = rte_pktmbuf_append(m, (uint16_t)len);
	if (data == NULL)
		die("mbufs: rte_pktmbuf_append failed");
	memcpy(data, payload, (size_t)len);
	m->port = port;
	return m;
}

static void
free_mbuf(struct pool_def *p, struct rte_mbuf *m)
{
	struct rte_mbuf *seg;

	for (seg = m; seg != NULL; seg = seg->next)
		note(p, seg, 0);
	rte_pktmbuf_free(m);
}

/*
 * Main lcore: 8 single allocs with payload "mptrack-test-N" and port N,
 * a bulk alloc of 8; chain #1 onto #0; free #2, #3 and 4 of the bulk.
 * Worker lcore: 6 single allocs, frees 3.
 */
static void
work_mbufs(struct pool_def *p, unsigned int lcore)
{
	struct rte_mbuf *m[8], *bulk[8];
	unsigned int i;

	if (lcore != rte_get_main_lcore()) {
		for (i = 0; i < 6; i++)
			m[i] = alloc_mbuf(p, lcore, 100 + i, 7);
		for (i = 0; i < 3; i++)
			free_mbuf(p, m[i]);
		return;
	}
	for (i = 0; i < 8; i++)
		m[i] = alloc_mbuf(p, lcore, i, (uint16_t)i);
	if (rte_pktmbuf_alloc_bulk(p->mp, bulk, 8) != 0)
		die("mbufs: rte_pktmbuf_alloc_bulk failed");
	for (i = 0; i < 8; i++)
		note(p, bulk[i], 1);
	if (rte_pktmbuf_chain(m[0], m[1]) != 0)
		die("mbufs: rte_pktmbuf_chain failed");
	chain_head = m[0];
	free_mbuf(p, m[2]);
	free_mbuf(p, m[3]);
	for (i = 0; i < 4; i++)
		free_mbuf(p, bulk[i]);
}

static void
work(unsigned int lcore)
{
	unsigned int i;

	for (i = 0; i < NPOOLS; i++) {
		struct pool_def *p = &pools[i];

		/* The worker only touches pools that have a cache. */
		if (lcore != rte_get_main_lcore() && p->cache_size == 0)
			continue;
		if (p->ops == NULL)
			work_mbufs(p, lcore);
		else
			work_plain(p, lcore);
	}
}

static int
worker_main(void *arg)
{
	(void)arg;
	work(rte_lcore_id());
	return 0;
}

static void
create_pools(void)
{
	unsigned int i;
	int ret;

	for (i = 0; i < NPOOLS; i++) {
		struct pool_def *p = &pools[i];

		if (p->ops == NULL) {
			p->mp = rte_pktmbuf_pool_create(p->name, p->n, p->cache_size, 0,
							RTE_MBUF_DEFAULT_BUF_SIZE,
							SOCKET_ID_ANY);
			if (p->mp == NULL)
				die("%s: rte_pktmbuf_pool_create: %s", p->name,
				    rte_strerror(rte_errno));
			continue;
		}
		p->mp = rte_mempool_create_empty(p->name, p->n, p->elt_size,
						 p->cache_size, 0, SOCKET_ID_ANY, 0);
		if (p->mp == NULL)
			die("%s: rte_mempool_create_empty: %s", p->name,
			    rte_strerror(rte_errno));
		ret = rte_mempool_set_ops_byname(p->mp, p->ops, NULL);
		if (ret != 0)
			die("%s: rte_mempool_set_ops_byname(%s): %s", p->name, p->ops,
			    strerror(-ret));
		ret = rte_mempool_populate_default(p->mp);
		if (ret < 0)
			die("%s: rte_mempool_populate_default: %s", p->name, strerror(-ret));
		if ((unsigned int)ret != p->n)
			die("%s: populated %d objects, wanted %u", p->name, ret, p->n);
	}
}

static void
write_addrs(FILE *f, const struct pool_def *p, int held)
{
	unsigned int i;
	const char *sep = "";

	for (i = 0; i < p->ntrack; i++) {
		if (p->track[i].held != held)
			continue;
		fprintf(f, "%s\"0x%lx\"", sep, (unsigned long)(uintptr_t)p->track[i].addr);
		sep = ", ";
	}
}

static void
write_mbufs(FILE *f, const struct pool_def *p)
{
	unsigned int i;
	const char *sep = "";

	for (i = 0; i < p->ntrack; i++) {
		const struct rte_mbuf *m = p->track[i].addr;

		if (!p->track[i].held)
			continue;
		fprintf(f, "%s\n      \"0x%lx\": {\"refcnt\": %u, \"port\": %u, "
			"\"nb_segs\": %u, \"pkt_len\": %u, \"data_len\": %u, "
			"\"ol_flags\": %lu, \"next\": ",
			sep, (unsigned long)(uintptr_t)m, rte_mbuf_refcnt_read(m),
			m->port, m->nb_segs, m->pkt_len, m->data_len,
			(unsigned long)m->ol_flags);
		if (m->next != NULL)
			fprintf(f, "\"0x%lx\"}", (unsigned long)(uintptr_t)m->next);
		else
			fprintf(f, "null}");
		sep = ",";
	}
}

static void
write_truth(const char *path)
{
	char tmp[4096];
	FILE *f;
	unsigned int i, lcore;

	if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp))
		die("truth path too long");
	f = fopen(tmp, "w");
	if (f == NULL)
		die("%s: %s", tmp, strerror(errno));
	fprintf(f, "{\"pid\": %d, \"main_lcore\": %u, \"pools\": {", (int)getpid(),
		rte_get_main_lcore());
	for (i = 0; i < NPOOLS; i++) {
		struct pool_def *p = &pools[i];
		struct rte_mempool *mp = p->mp;
		unsigned int in_use = rte_mempool_in_use_count(mp);
		unsigned int avail = rte_mempool_avail_count(mp);
		unsigned int held = 0, j;
		const char *sep = "";

		for (j = 0; j < p->ntrack; j++)
			held += p->track[j].held;
		if (held != in_use)
			die("%s: program holds %u objects but in_use is %u", p->name,
			    held, in_use);
		if (in_use + avail != mp->size)
			die("%s: in_use %u + avail %u != size %u", p->name, in_use,
			    avail, mp->size);

		fprintf(f, "%s\n  \"%s\": {\"addr\": \"0x%lx\", \"ops\": \"%s\", "
			"\"size\": %u, \"cache_size\": %u, \"elt_size\": %u, "
			"\"in_use\": %u, \"avail\": %u, \"pktmbuf\": %s,\n    \"cache_fill\": {",
			i ? "," : "", mp->name, (unsigned long)(uintptr_t)mp,
			rte_mempool_get_ops(mp->ops_index)->name, mp->size,
			mp->cache_size, mp->elt_size, in_use, avail,
			p->ops == NULL ? "true" : "false");
		if (mp->cache_size != 0) {
			RTE_LCORE_FOREACH(lcore) {
				struct rte_mempool_cache *c =
					rte_mempool_default_cache(mp, lcore);

				if (c != NULL && c->len != 0) {
					fprintf(f, "%s\"%u\": %u", sep, lcore, c->len);
					sep = ", ";
				}
			}
		}
		fprintf(f, "},\n    \"held\": [");
		write_addrs(f, p, 1);
		fprintf(f, "],\n    \"freed\": [");
		write_addrs(f, p, 0);
		fprintf(f, "]");
		if (p->ops == NULL) {
			fprintf(f, ",\n    \"chain_head\": \"0x%lx\", \"mbufs\": {",
				(unsigned long)(uintptr_t)chain_head);
			write_mbufs(f, p);
			fprintf(f, "}");
		}
		fprintf(f, "}");
	}
	fprintf(f, "\n}}\n");
	if (fflush(f) != 0 || fsync(fileno(f)) != 0 || fclose(f) != 0)
		die("%s: write failed: %s", tmp, strerror(errno));
	if (rename(tmp, path) != 0)
		die("rename %s -> %s: %s", tmp, path, strerror(errno));
}

/* gdb breaks here; everything in the truth file is true at this point. */
__attribute__((noinline, used)) void
mptrack_checkpoint(void)
{
	__asm__ volatile("" ::: "memory");
}

int
main(int argc, char **argv)
{
	const char *truth = NULL;
	int wait = 0, do_abort = 0;
	unsigned int worker, nworkers = 0;
	int ret, i;

	ret = rte_eal_init(argc, argv);
	if (ret < 0)
		die("rte_eal_init failed: %s", rte_strerror(rte_errno));
	argc -= ret;
	argv += ret;
	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--truth") == 0 && i + 1 < argc)
			truth = argv[++i];
		else if (strcmp(argv[i], "--wait") == 0)
			wait = 1;
		else if (strcmp(argv[i], "--abort") == 0)
			do_abort = 1;
		else
			die("unknown argument '%s'", argv[i]);
	}
	if (truth == NULL)
		die("usage: pools EAL-ARGS -- --truth FILE [--wait|--abort]");

	RTE_LCORE_FOREACH_WORKER(worker)
		nworkers++;
	if (nworkers != 1)
		die("need exactly one worker lcore (e.g. -l 0,1), got %u", nworkers);
	worker = rte_get_next_lcore(rte_get_main_lcore(), 1, 0);

	create_pools();
	work(rte_get_main_lcore());
	ret = rte_eal_remote_launch(worker_main, NULL, worker);
	if (ret != 0)
		die("rte_eal_remote_launch: %s", strerror(-ret));
	ret = rte_eal_wait_lcore(worker);
	if (ret != 0)
		die("worker lcore %u returned %d", worker, ret);

	write_truth(truth);
	mptrack_checkpoint();

	if (do_abort)
		abort();
	if (wait)
		for (;;)
			sleep(1);

	for (i = 0; i < (int)NPOOLS; i++) {
		struct pool_def *p = &pools[i];
		unsigned int j;

		for (j = 0; j < p->ntrack; j++) {
			if (!p->track[j].held)
				continue;
			if (p->ops == NULL) {
				struct rte_mbuf *m = p->track[j].addr;

				/* a chain's later segments go with their head */
				if (m == chain_head->next)
					continue;
				rte_pktmbuf_free(m);
			} else {
				rte_mempool_put(p->mp, p->track[j].addr);
			}
		}
		if (rte_mempool_in_use_count(p->mp) != 0)
			die("%s: %u objects still in use after cleanup", p->name,
			    rte_mempool_in_use_count(p->mp));
		rte_mempool_free(p->mp);
	}
	rte_eal_cleanup();
	return 0;
}
