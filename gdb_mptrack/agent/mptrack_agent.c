/* SPDX-License-Identifier: BSD-3-Clause
 * Copyright (c) 2026 The gdb-mptrack authors
 *
 * mptrack_agent.c: the gdb-mptrack preload agent.
 *
 *   LD_PRELOAD=$(python3 -m gdb_mptrack preload-path) app EAL-ARGS...
 *
 * How it sees every get and put of a pool
 * ---------------------------------------
 * DPDK's gets and puts are inline functions in the application that end in
 * rte_mempool_ops_table.ops[mp->ops_index].dequeue/.enqueue.  The table has
 * RTE_MEMPOOL_MAX_OPS_IDX (16) slots and Debian's DPDK registers 14 drivers,
 * so there is no room for one wrapper driver per real driver.  Instead the
 * agent patches the function pointers of every registered ops entry in place
 * (enqueue, dequeue, populate, dequeue_contig_blocks), keeping the originals,
 * and each wrapper looks the pool up (a small lock-free hash of rte_mempool
 * pointers) and tracks it or passes straight through.  Entries are patched at
 * load time, when a driver registers later (rte_mempool_register_ops is
 * interposed: DPDK's drivers call it through the PLT), and again whenever a
 * pool picks its ops (rte_mempool_set_ops_byname).
 *
 * A pool is tracked from rte_mempool_create_empty (interposed: the calls from
 * rte_mempool_create and rte_pktmbuf_pool_create inside DPDK go through the
 * PLT too), which is also where its per-lcore cache is turned off: the agent
 * passes cache_size 0, so every get and put reaches the ops.  A pool created
 * some other way is picked up at its first populate, with its per-lcore
 * caches neutralised (size and flush threshold 0: the inline code then goes
 * to the ops for every object).  The populate wrapper records every object
 * address and builds, per memory chunk, a direct map from address to object
 * index: a get or put costs one range check, one load and one compare per
 * object to find the shadow entry, then an atomic exchange of its state.
 *
 * Fast path rules: no malloc, no lock, no syscall; memory is mmap'ed when a
 * pool is created and populated; stacks are stored once in a lock-free hash.
 * A thread-local flag makes the agent recursion-safe (an event seen while the
 * agent is busy on the same thread is tracked without a backtrace).
 *
 * The tables are documented in mptrack_agent.h and start at the exported
 * symbol mptrack_agent_tables.
 *
 * This file is the core: tables, configuration, pools, tracking, the ops
 * wrappers (with everything on their quick path, in this one translation
 * unit), interposition and start.  Around it: agent_stacks.c (the stack
 * table and the unwinders), agent_faults.c (fault reports), agent_malloc.c
 * (rte_malloc tracking), agent_dump.c (the SIGRTMIN dump), agent_log.c (the
 * event log), agent_attach.c (attach / detach) and unwind.c (the cfi
 * unwinder); agent_private.h declares what they share.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <execinfo.h>
#include <fnmatch.h>
#include <time.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <rte_cycles.h>
#include <rte_lcore.h>
#include <rte_mempool.h>

#include "agent_private.h"
#include "mptrack_agent.h"
#include "unwind.h"

/* ------------------------------------------------------------------ tables */

EXPORT struct mptrack_tables mptrack_agent_tables;

static const char *const unwinder_names[] = {"none", "caller", "libunwind", "glibc", "fp", "cfi"};

struct agent_config cfg;

pthread_mutex_t slow_lock = PTHREAD_MUTEX_INITIALIZER;  /* creation, faults */

/*
 * Timestamps.  rdtsc costs about 10 ns in this kind of VM, half an untracked
 * get+put: by default a clock thread stores rte_rdtsc() in coarse_tsc every
 * millisecond and events read that (one load).  MPTRACK_CLOCK=tsc reads the
 * TSC at every event instead: coarse_tsc is then 0, as it is when the clock
 * thread cannot start or has not stored anything yet.
 */
uint64_t coarse_tsc;     /* now_tsc() reads it: agent_private.h */
static int clock_precise;
static pthread_t clock_thread;

static void *
clock_run(void *arg)
{
	struct timespec ts = {0, 1000 * 1000};

	(void)arg;
	for (;;) {
		__atomic_store_n(&coarse_tsc, rte_rdtsc(), __ATOMIC_RELAXED);
		nanosleep(&ts, NULL);
	}
	return NULL;
}

static void
clock_start(void)
{
	sigset_t all, old;

	if (clock_precise)
		return;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	if (pthread_create(&clock_thread, NULL, clock_run, NULL) == 0) {
		pthread_detach(clock_thread);
		pthread_setname_np(clock_thread, "mptrack-clock");
	} else {
		clock_precise = 1;
		__atomic_store_n(&coarse_tsc, 0, __ATOMIC_RELAXED);  /* a forked child's copy */
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
}

/* MPTRACK_STRICT=1: exchange object states atomically (catches two threads
 * freeing one object at the same instant; costs a locked instruction per
 * object).  Default: an atomic load then an atomic store. */
static int strict_state;

/* One thread's state (struct thread_state: agent_private.h). */
TLS struct thread_state tls = {.lcore = 0xffffffffu};

/* ------------------------------------------------------------- messages */

void
write_all(int fd, const char *s, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, s, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return;
		}
		s += w;
		n -= (size_t)w;
	}
}

/* Not for signal handlers: uses vsnprintf. */
void
say(const char *fmt, ...)
{
	char buf[1024];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n >= sizeof(buf))
		n = sizeof(buf) - 1;
	write_all(2, buf, (size_t)n);
}

/* --------------------------------------------------------------- config */

static const char *
env2(const char *name, const char *alias)
{
	const char *v = getenv(name);

	if ((v == NULL || *v == '\0') && alias != NULL)
		v = getenv(alias);
	return (v != NULL && *v != '\0') ? v : NULL;
}

unsigned long
env_ulong(const char *name, const char *alias, unsigned long dflt, unsigned long max)
{
	const char *v = env2(name, alias);
	char *end;
	unsigned long n;

	if (v == NULL)
		return dflt;
	errno = 0;
	n = strtoul(v, &end, 0);
	if (errno != 0 || *end != '\0' || n > max) {
		say("mptrack-agent: ignoring %s=%s (want 0..%lu)\n", name, v, max);
		return dflt;
	}
	return n;
}

void *
map_anon(size_t size, int shared)
{
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE,
		       (shared ? MAP_SHARED : MAP_PRIVATE) | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	return p == MAP_FAILED ? NULL : p;
}

static void patch_all_ops(void);

void
config_init(void)
{
	const char *v;

	if (cfg.ready)
		return;
	cfg.ready = 1;
	T.version = MPTRACK_TABLES_VERSION;
	T.header_size = sizeof(struct mptrack_tables);
	T.pool_size = sizeof(struct mptrack_pool);
	T.obj_size = sizeof(struct mptrack_obj);
	T.chunk_size = sizeof(struct mptrack_chunk);
	T.fault_size = sizeof(struct mptrack_fault);
	T.max_pools = MPTRACK_MAX_POOLS;
	T.pid = getpid();
	T.start_tsc = rte_rdtsc();

	v = env2("MPTRACK_POOLS", "RTE_MP_TRACK_NAME");
	if (v != NULL && strcmp(v, "*") != 0)
		cfg.pools = strdup(v);
	cfg.depth = (unsigned int)env_ulong("MPTRACK_BT_DEPTH", "RTE_MP_TRACK_NUM_BT", 8,
					    MPTRACK_MAX_DEPTH);
	cfg.sample = (unsigned int)env_ulong("MPTRACK_BT_SAMPLE", NULL, 1, 1u << 30);
	if (cfg.sample == 0)
		cfg.sample = 1;
	cfg.verbose = (int)env_ulong("MPTRACK_VERBOSE", NULL, 0, 9);
	strict_state = (int)env_ulong("MPTRACK_STRICT", NULL, 0, 1);
	v = env2("MPTRACK_CLOCK", NULL);
	clock_precise = v != NULL && strcmp(v, "tsc") == 0;
	if (v != NULL && !clock_precise && strcmp(v, "coarse") != 0)
		say("mptrack-agent: ignoring MPTRACK_CLOCK=%s (want coarse or tsc)\n", v);
	clock_start();
	v = env2("MPTRACK_ON_ERROR", NULL);
	if (v == NULL || strcmp(v, "abort") == 0)
		cfg.on_error = MPTRACK_ON_ERROR_ABORT;
	else if (strcmp(v, "trap") == 0)
		cfg.on_error = MPTRACK_ON_ERROR_TRAP;
	else if (strcmp(v, "log") == 0)
		cfg.on_error = MPTRACK_ON_ERROR_LOG;
	else {
		say("mptrack-agent: ignoring MPTRACK_ON_ERROR=%s (want abort, trap or log)\n", v);
		cfg.on_error = MPTRACK_ON_ERROR_ABORT;
	}
	cfg.malloc_on = env2("MPTRACK_MALLOC", NULL) != NULL &&
			strcmp(env2("MPTRACK_MALLOC", NULL), "0") != 0;
	if ((v = env2("MPTRACK_DUMP", NULL)) != NULL)
		cfg.dump_path = strdup(v);
	if ((v = env2("MPTRACK_LOG", NULL)) != NULL)
		cfg.log_path = strdup(v);

	/* the unwinder for depth > 1: cfi (unwind.c), its fallback libunwind, else glibc */
	cfg.unwinder = cfg.depth == 0 ? UNW_NONE : cfg.depth == 1 ? UNW_CALLER : UNW_CFI;
	v = env2("MPTRACK_UNWIND", NULL);
	if (cfg.depth > 1 && v != NULL) {
		if (strcmp(v, "glibc") == 0)
			cfg.unwinder = UNW_GLIBC;
		else if (strcmp(v, "fp") == 0)
			cfg.unwinder = UNW_FP;
		else if (strcmp(v, "caller") == 0)
			cfg.unwinder = UNW_CALLER;
		else if (strcmp(v, "libunwind") == 0)
			cfg.unwinder = UNW_LIBUNWIND;
		else if (strcmp(v, "cfi") != 0)
			say("mptrack-agent: ignoring MPTRACK_UNWIND=%s "
			    "(want cfi, libunwind, glibc, fp or caller)\n", v);
	}
	cfg.unwind_verify = (int)env_ulong("MPTRACK_UNWIND_VERIFY", NULL, 0, 1);
	if (cfg.unwinder == UNW_CFI &&
	    mpt_unwind_init(env_ulong("MPTRACK_UNWIND_RULES", NULL, 1u << 16, 1u << 24),
			    cfg.depth, cfg.unwind_verify) != 0) {
		say("mptrack-agent: cannot map the unwinder's rule table: using libunwind\n");
		cfg.unwinder = UNW_LIBUNWIND;
	}
	if (cfg.unwinder == UNW_LIBUNWIND || cfg.unwinder == UNW_CFI) {
		void *h = dlopen("libunwind.so.8", RTLD_NOW | RTLD_LOCAL);
		if (h != NULL)
			cfg.unw_backtrace = (int (*)(void **, int))dlsym(h, "unw_backtrace");
		if (cfg.unw_backtrace == NULL && cfg.unwinder == UNW_LIBUNWIND) {
			if (v != NULL)
				say("mptrack-agent: libunwind.so.8 not found, using glibc's backtrace()\n");
			cfg.unwinder = UNW_GLIBC;
		}
	}
	cfg.fallback = cfg.unw_backtrace != NULL ? UNW_LIBUNWIND : UNW_GLIBC;
	if (cfg.unwinder == UNW_GLIBC || (cfg.unwinder == UNW_CFI && cfg.fallback == UNW_GLIBC)) {
		void *b[2];
		backtrace(b, 2);  /* loads libgcc_s now, not on the fast path */
	}
	if (cfg.unwinder == UNW_CFI && cfg.unwind_verify && cfg.unw_backtrace != NULL)
		atexit(unwind_verify_report);
	T.bt_depth = cfg.depth;
	T.bt_sample = cfg.sample;
	T.on_error = (uint32_t)cfg.on_error;
	if (cfg.depth > 0)
		stacks_init(env_ulong("MPTRACK_STACKS", NULL, 1u << 16, 1u << 28));
	if (cfg.malloc_on)
		malloc_init(env_ulong("MPTRACK_MALLOC_BLOCKS", NULL, 1u << 18, 1u << 28));
	if (cfg.dump_path != NULL)
		dump_init();
	if (cfg.log_path != NULL)
		log_init();
	/* the magic last: a reader that sees it sees a complete header */
	__atomic_thread_fence(__ATOMIC_RELEASE);
	memcpy(T.magic, MPTRACK_TABLES_MAGIC, sizeof(MPTRACK_TABLES_MAGIC));
	if (cfg.verbose)
		say("mptrack-agent: [%d] pools %s, depth %u (%s), sample %u, on error %s\n",
		    (int)getpid(), cfg.pools ? cfg.pools : "*", cfg.depth, unwinder_names[cfg.unwinder],
		    cfg.sample, cfg.on_error == MPTRACK_ON_ERROR_ABORT ? "abort" :
		    cfg.on_error == MPTRACK_ON_ERROR_TRAP ? "trap" : "log");
}

static int
pool_wanted(const char *name)
{
	char *list, *save = NULL, *tok;
	int hit = 0;

	if (cfg.pools == NULL)
		return 1;
	list = strdup(cfg.pools);
	if (list == NULL)
		return 0;
	for (tok = strtok_r(list, ",", &save); tok != NULL && !hit; tok = strtok_r(NULL, ",", &save)) {
		while (*tok == ' ')
			tok++;
		if (fnmatch(tok, name, 0) == 0)
			hit = 1;
	}
	free(list);
	return hit;
}

/* ---------------------------------------------------------------- pools */

/*
 * Object index without the chunk loop.  A pool's chunk maps are what readers
 * use, but finding the chunk is a loop over up to max_chunks chunks (a pool
 * populated page by page, without IOVA-contiguous memory, has one chunk per
 * page; a hugepage pool one per page that is not contiguous with the last).
 * Once a pool is fully populated, the agent builds a private direct map of
 * its whole address span (per 1 << shift bytes, as the chunk maps, but the
 * byte offset of the object's entry + 1 entry instead of its index + 1), if
 * the span is at most 4 times the chunks' memory: a get or put then costs one
 * range check, one load, one add and one compare, however many chunks.  (An
 * index computed from DPDK's regular page layout, without the map's load, was
 * measured slower: more instructions for a load that hits the cache.)  Pools
 * populated in several steps, or given tables by attach, use the chunk list
 * until fast_index_build() is called for them.
 */
struct fast_index {
	const struct mptrack_pool *p;   /* the pool it was built for; NULL: none */
	uintptr_t lo;           /* the span: [lo, lo + span) */
	uint64_t span;
	const uint32_t *map;    /* per 1 << shift bytes: (index + 1) * entry size, 0 none */
	uint32_t shift;
	char *before_objs;      /* the pool's objects - 1 (map values are offsets from there) */
	size_t map_bytes;
};

static struct fast_index fast_index[MPTRACK_MAX_POOLS];

#define MAP_SLOTS 1024
struct pool_entry {
	uintptr_t mp;                   /* key; never cleared */
	struct mptrack_pool *pool;      /* NULL: not tracked (any more) */
};
static struct pool_entry pool_map[MAP_SLOTS];

static inline uint32_t
mp_slot(uintptr_t mp)
{
	return (uint32_t)((mp >> 6) * 0x9e3779b97f4a7c15ull >> 54) & (MAP_SLOTS - 1);
}

/* mp's entry in the pool map, or NULL. */
static inline const struct pool_entry *
pool_entry_of(const struct rte_mempool *mp)
{
	uintptr_t key = (uintptr_t)mp;
	uint32_t i = mp_slot(key);

	for (unsigned int probe = 0; probe < MAP_SLOTS; probe++, i = (i + 1) & (MAP_SLOTS - 1)) {
		uintptr_t k = A_LOAD(&pool_map[i].mp);
		if (k == key)
			return &pool_map[i];
		if (k == 0)
			return NULL;
	}
	return NULL;
}

/* inline: an external definition (agent_private.h declares it) inlined here as before */
inline struct mptrack_pool *
pool_lookup(const struct rte_mempool *mp)
{
	const struct pool_entry *e = pool_entry_of(mp);

	return e == NULL ? NULL : A_LOAD(&e->pool);
}

/* Under slow_lock. */
static int
pool_map_set(const struct rte_mempool *mp, struct mptrack_pool *p)
{
	uintptr_t key = (uintptr_t)mp;
	uint32_t i = mp_slot(key);

	for (unsigned int probe = 0; probe < MAP_SLOTS; probe++, i = (i + 1) & (MAP_SLOTS - 1)) {
		uintptr_t k = pool_map[i].mp;
		if (k == key || k == 0) {
			A_STORE(&pool_map[i].pool, p);
			if (k == 0)
				A_STORE(&pool_map[i].mp, key);
			return 0;
		}
	}
	return -1;
}


/* A pool takes slot (under slow_lock): forget the previous pool's index. */
static void
fast_index_reset(uint32_t slot)
{
	struct fast_index *f = &fast_index[slot];

	A_STORE(&f->p, NULL);
	if (f->map != NULL)
		munmap((void *)(uintptr_t)f->map, f->map_bytes);
	f->map = NULL;
}

/* Index p's objects (all populated, before any get of them elsewhere). */
void
fast_index_build(struct mptrack_pool *p)
{
	struct fast_index *f = &fast_index[p->slot];
	const struct mptrack_obj *o = pool_objs(p);
	const struct mptrack_chunk *ch = pool_chunks(p);
	uintptr_t lo = UINTPTR_MAX, hi = 0;
	uint64_t chunks = 0;
	uint32_t *map;

	fast_index_reset(p->slot);
	for (uint32_t k = 0; k < p->nchunks; k++) {
		if (ch[k].base < lo)
			lo = ch[k].base;
		if (ch[k].base + ch[k].len > hi)
			hi = ch[k].base + ch[k].len;
		chunks += ch[k].len;
	}
	if (p->nobjs == 0 || p->nobjs >= UINT32_MAX / sizeof(*o) || hi <= lo || hi - lo > 4 * chunks ||
	    (map = map_anon((((hi - lo) >> p->shift) + 1) * sizeof(uint32_t), 0)) == NULL) {
		if (cfg.verbose)
			say("mptrack-agent: pool \"%s\": objects found by chunk (chunks: %u)\n",
			    p->name, p->nchunks);
		return;
	}
	f->map_bytes = (((hi - lo) >> p->shift) + 1) * sizeof(uint32_t);
	for (uint32_t i = 0; i < p->nobjs; i++) {
		if (o[i].addr < lo || o[i].addr >= hi) {
			munmap(map, f->map_bytes);
			return;
		}
		map[(o[i].addr - lo) >> p->shift] = (i + 1) * (uint32_t)sizeof(*o);
	}
	f->lo = lo;
	f->span = hi - lo;
	f->map = map;
	f->shift = p->shift;
	f->before_objs = (char *)(pool_objs(p) - 1);
	A_STORE(&f->p, p);
	if (cfg.verbose)
		say("mptrack-agent: pool \"%s\": objects indexed by an address map (chunks: %u)\n",
		    p->name, p->nchunks);
}

/*
 * A pool's address map copied into locals: the loops over a burst keep it in
 * registers (the compiler cannot, across the stores to the shadow entries,
 * which might alias the fast_index).
 */
struct finder {
	uintptr_t lo;
	uint64_t span;
	const uint32_t *map;
	uint32_t shift;
	char *before_objs;      /* one entry before the pool's first */
};

/* Copy p's address map (in f, its fast index entry) into *fd; 0 if p has none (yet). */
static inline int
finder_load(const struct fast_index *f, const struct mptrack_pool *p, struct finder *fd)
{
	if (UNLIKELY(__atomic_load_n(&f->p, __ATOMIC_ACQUIRE) != p))
		return 0;
	fd->lo = f->lo;
	fd->span = f->span;
	fd->map = f->map;
	fd->shift = f->shift;
	fd->before_objs = f->before_objs;
	return 1;
}

static __attribute__((always_inline)) inline struct mptrack_obj *
finder_lookup(const struct finder *fd, uintptr_t addr)
{
	uint64_t off = addr - fd->lo;
	uint32_t v;
	struct mptrack_obj *o;

	if (UNLIKELY(off >= fd->span) || UNLIKELY((v = fd->map[off >> fd->shift]) == 0))
		return NULL;
	o = (struct mptrack_obj *)(fd->before_objs + v);
	return LIKELY(o->addr == addr) ? o : NULL;
}

/* The shadow entry of the object that starts at addr, or NULL (inline: as pool_lookup). */
inline struct mptrack_obj *
obj_lookup(const struct mptrack_pool *p, uintptr_t addr)
{
	const struct mptrack_chunk *c;
	struct finder fd;
	uint32_t n;

	if (LIKELY(finder_load(&fast_index[p->slot], p, &fd)))
		return finder_lookup(&fd, addr);
	/* not indexed (yet): find the chunk, then its map */
	n = A_LOAD(&p->nchunks);
	c = pool_chunks(p);

	for (uint32_t k = 0; k < n; k++, c++) {
		uintptr_t off = addr - (uintptr_t)c->base;
		if (off < c->len) {
			uint32_t v = ((const uint32_t *)(uintptr_t)c->map)[off >> p->shift];
			if (v != 0) {
				struct mptrack_obj *o = &pool_objs(p)[v - 1];
				if (o->addr == addr)
					return o;
			}
			return NULL;
		}
	}
	return NULL;
}

static size_t
pool_record_size(uint32_t capacity, uint32_t max_chunks)
{
	size_t sz = sizeof(struct mptrack_pool);

	sz = (sz + 63) & ~(size_t)63;
	sz += (size_t)capacity * sizeof(struct mptrack_obj);
	sz = (sz + 63) & ~(size_t)63;
	sz += (size_t)max_chunks * sizeof(struct mptrack_chunk);
	return sz;
}

/* Is the pool's memory (its header, from DPDK's memory) a shared mapping? */
static int
addr_is_shared(const void *addr)
{
	char line[512];
	FILE *f = fopen("/proc/self/maps", "re");
	int shared = 0;

	if (f == NULL)
		return 0;
	while (fgets(line, sizeof(line), f) != NULL) {
		unsigned long lo, hi;
		char perms[8];
		if (sscanf(line, "%lx-%lx %7s", &lo, &hi, perms) == 3 &&
		    (uintptr_t)addr >= lo && (uintptr_t)addr < hi) {
			shared = perms[3] == 's';
			break;
		}
	}
	fclose(f);
	return shared;
}

/* Start tracking mp (under slow_lock). */
struct mptrack_pool *
pool_track(struct rte_mempool *mp, uint32_t asked_cache)
{
	struct mptrack_pool *p;
	uint32_t max_chunks = 256, slot;
	size_t total = (size_t)mp->header_size + mp->elt_size + mp->trailer_size;
	int shared;

	for (slot = 0; slot < MPTRACK_MAX_POOLS; slot++)
		if (T.pools[slot] == 0)
			break;
	if (slot == MPTRACK_MAX_POOLS) {
		say("mptrack-agent: more than %d tracked pools: pool \"%s\" is not tracked\n",
		    MPTRACK_MAX_POOLS, mp->name);
		return NULL;
	}
	shared = addr_is_shared(mp);
	p = map_anon(pool_record_size(mp->size, max_chunks), shared);
	if (p != NULL)
		p->shared = (uint32_t)shared;
	if (p == NULL) {
		say("mptrack-agent: no memory to track pool \"%s\" (%u objects)\n", mp->name, mp->size);
		return NULL;
	}
	memcpy(p->magic, MPTRACK_POOL_MAGIC, sizeof(MPTRACK_POOL_MAGIC));
	p->mp = (uint64_t)(uintptr_t)mp;
	snprintf(p->name, sizeof(p->name), "%s", mp->name);
	p->live = 1;
	p->capacity = mp->size;
	p->shift = 3;
	while (p->shift < 20 && (2ull << p->shift) <= total)
		p->shift++;
	p->objs = (uint64_t)(uintptr_t)p + ((sizeof(*p) + 63) & ~(size_t)63);
	p->chunks = p->objs + (((size_t)mp->size * sizeof(struct mptrack_obj) + 63) & ~(size_t)63);
	p->max_chunks = max_chunks;
	p->ops_index = (uint32_t)mp->ops_index;
	p->cache_size = asked_cache;
	p->elt_size = mp->elt_size;
	p->header_size = mp->header_size;
	p->trailer_size = mp->trailer_size;
	p->create_tsc = rte_rdtsc();
	if (T.tsc_hz == 0)
		T.tsc_hz = rte_get_tsc_hz();
	if (pool_map_set(mp, p) != 0) {
		munmap(p, pool_record_size(mp->size, max_chunks));
		say("mptrack-agent: pool map full: pool \"%s\" is not tracked\n", mp->name);
		return NULL;
	}
	p->slot = slot;
	fast_index_reset(slot);
	A_STORE(&T.pools[slot], (uint64_t)(uintptr_t)p);
	log_pool(p);
	if (cfg.verbose)
		say("mptrack-agent: tracking pool \"%s\" (%u objects, cache %u -> 0)\n",
		    mp->name, mp->size, asked_cache);
	return p;
}

/* Stop tracking p without unmapping its tables (under slow_lock). */
void
pool_forget(struct mptrack_pool *p)
{
	pool_map_set((struct rte_mempool *)(uintptr_t)p->mp, NULL);
	for (uint32_t s = 0; s < MPTRACK_MAX_POOLS; s++)
		if (T.pools[s] == (uint64_t)(uintptr_t)p)
			A_STORE(&T.pools[s], 0);
	A_STORE(&p->live, 0);
	log_simple(MPTRACK_EV_POOL_GONE, (uint16_t)p->slot, p->mp, 0, 0);
}

/* Stop tracking mp and release its tables (under slow_lock). */
void
pool_untrack(struct rte_mempool *mp)
{
	struct mptrack_pool *p = pool_lookup(mp);

	if (p == NULL)
		return;
	pool_forget(p);
	for (uint32_t k = 0; k < p->nchunks; k++) {
		struct mptrack_chunk *c = &pool_chunks(p)[k];
		munmap((void *)(uintptr_t)c->map, ((c->len >> p->shift) + 1) * 4);
	}
	munmap(p, pool_record_size(p->capacity, p->max_chunks));
}

/* A pool created before the agent saw it: turn its per-lcore caches off. */
static void
neutralise_caches(struct rte_mempool *mp)
{
	if (mp->cache_size == 0 || mp->local_cache == NULL)
		return;
	for (unsigned int l = 0; l < RTE_MAX_LCORE; l++) {
		struct rte_mempool_cache *c = &mp->local_cache[l];
		if (c->len != 0)
			rte_mempool_ops_enqueue_bulk(mp, c->objs, c->len);
		c->len = 0;
		c->size = 0;
		c->flushthresh = 0;
	}
}

/* --------------------------------------------------------------- tracking */

/*
 * A get or put of objs[0..n).  The settings the loop needs are read once per
 * call.  The common case (a pool with an address map, neither strict states
 * nor a log) runs a loop with the map in registers (struct finder), one load
 * and one store of the state word, and one 16-byte store of the event's
 * stamp, built once per call.  (Looking a burst's entries up first and
 * prefetching them was measured slower here: the tables stay in the cache.)
 */
#ifdef __SSE2__
#include <emmintrin.h>
typedef __m128i stamp_block;
#else
typedef struct mptrack_stamp stamp_block;
#endif

/*
 * A stamp from its first 8 bytes (who: stack id, lcore; little-endian) and
 * its TSC, in registers: a copy through memory would stall the first store.
 */
static inline stamp_block
stamp_block_of(uint64_t who, uint64_t tsc)
{
#ifdef __SSE2__
	return _mm_set_epi64x((long long)tsc, (long long)who);
#else
	struct mptrack_stamp st;
	memcpy(&st, &who, 8);
	st.tsc = tsc;
	return st;
#endif
}

/* The state word (state, allocs) of an object handed out: allocs + 1, state in use. */
static inline uint64_t
taken_word(uint64_t w)
{
	return w - (uint32_t)w + ((1ull << 32) | MPTRACK_STATE_IN_USE);
}

/* One store of all of a stamp's fields (the compiler splits a struct copy). */
static __attribute__((always_inline)) inline void
stamp_store(struct mptrack_stamp *to, stamp_block b)
{
#ifdef __SSE2__
	_mm_storeu_si128((__m128i *)to, b);
#else
	*to = b;
#endif
}

static __attribute__((always_inline)) inline void
got_one(struct mptrack_pool *p, struct mptrack_obj *o, uintptr_t addr,
	const struct mptrack_stamp *st, stamp_block sb, int strict, int logging, void *ra)
{
	uint32_t old;

	if (UNLIKELY(o == NULL))
		return;  /* the driver handed out something never populated */
	if (UNLIKELY(strict)) {
		old = A_XCHG(&o->state, MPTRACK_STATE_IN_USE);
		o->allocs++;
	} else {
		/* state and allocs in one load and one store: allocs + 1, state in use */
		uint64_t w = __atomic_load_n(&o->state_allocs, __ATOMIC_RELAXED);
		old = (uint32_t)w;
		__atomic_store_n(&o->state_allocs, taken_word(w), __ATOMIC_RELEASE);
	}
	if (UNLIKELY(old == MPTRACK_STATE_IN_USE))
		fault(MPTRACK_FAULT_DUPLICATE_ALLOC, p, addr, o, ra);
	stamp_store(&o->alloc, sb);
	if (UNLIKELY(logging))
		log_event(MPTRACK_EV_ALLOC, (uint16_t)p->slot, addr, st->stack, o->allocs, st->lcore,
			  st->tsc, log_epoch[p->slot]);
}

static __attribute__((always_inline)) inline void
put_one(struct mptrack_pool *p, struct mptrack_obj *o, uintptr_t addr,
	const struct mptrack_stamp *st, stamp_block sb, int strict, int logging, void *ra)
{
	uint32_t old;

	if (UNLIKELY(o == NULL)) {
		fault(MPTRACK_FAULT_STRAY_FREE, p, addr, NULL, ra);
		return;
	}
	if (UNLIKELY(strict))
		old = A_XCHG(&o->state, MPTRACK_STATE_FREE);
	else if ((old = __atomic_load_n(&o->state, __ATOMIC_RELAXED)) != MPTRACK_STATE_FREE)
		__atomic_store_n(&o->state, MPTRACK_STATE_FREE, __ATOMIC_RELEASE);
	if (UNLIKELY(old == MPTRACK_STATE_FREE)) {
		fault(MPTRACK_FAULT_DUPLICATE_FREE, p, addr, o, ra);
		return;
	}
	stamp_store(&o->free, sb);
	if (UNLIKELY(logging))
		log_event(MPTRACK_EV_FREE, (uint16_t)p->slot, addr, st->stack, o->allocs, st->lcore,
			  st->tsc, log_epoch[p->slot]);
}

/* This event's stamp; marks the thread busy in the agent (the caller clears it). */
static __attribute__((always_inline)) inline struct mptrack_stamp
event_begin(void *ra, const void *sp)
{
	struct mptrack_stamp st;
	int nested;

	st.lcore = cur_lcore();
	st.reserved = 0;
	st.tsc = now_tsc();
	nested = tls.busy++;
	st.stack = event_stack(ra, sp, nested);
	return st;
}

/* A get (got_one) or a put (put_one) of objs[0..n): get is a constant where it is inlined. */
static __attribute__((always_inline)) inline void
track_event(struct mptrack_pool *p, void *const *objs, unsigned int n, void *ra, const void *sp,
	    int get)
{
	const struct mptrack_stamp st = event_begin(ra, sp);
	const stamp_block sb = stamp_block_of(st.stack | (uint64_t)st.lcore << 32, st.tsc);
	const int strict = strict_state, logging = log_on;
	struct finder fd;

	if (LIKELY(!strict && !logging && finder_load(&fast_index[p->slot], p, &fd)))
		for (unsigned int i = 0; i < n; i++) {
			uintptr_t addr = (uintptr_t)objs[i];
			struct mptrack_obj *o = finder_lookup(&fd, addr);
			if (get)
				got_one(p, o, addr, &st, sb, 0, 0, ra);
			else
				put_one(p, o, addr, &st, sb, 0, 0, ra);
		}
	else
		for (unsigned int i = 0; i < n; i++) {
			uintptr_t addr = (uintptr_t)objs[i];
			struct mptrack_obj *o = obj_lookup(p, addr);
			if (get)
				got_one(p, o, addr, &st, sb, strict, logging, ra);
			else
				put_one(p, o, addr, &st, sb, strict, logging, ra);
		}
	tls.busy--;
}

static __attribute__((noinline)) void
track_get(struct mptrack_pool *p, void **objs, unsigned int n, void *ra, const void *sp)
{
	track_event(p, objs, n, ra, sp, 1);
}

static __attribute__((noinline)) void
track_put(struct mptrack_pool *p, void *const *objs, unsigned int n, void *ra, const void *sp)
{
	track_event(p, objs, n, ra, sp, 0);
}

/*
 * The quick path of a get or put of one object (no sampling, no strict
 * states, no log; at depth 2 or more, the cfi unwinder), inlined in the ops
 * wrappers.  The stamp's first 8 bytes (stack id, lcore) come ready made: at
 * depth 1 from the per-thread memo of callers, at depth 2 or more from the
 * cfi unwinder's memo of walks (a lookup only: the stack words it read must
 * read the same), at depth 0 from the lcore alone.  Only the common
 * transition is handled here (free to in use, in use to free, in a pool with
 * an address map).  Anything else (a stack not in the memo, a fault, a new
 * object) returns 0 before writing anything, and the event goes the general
 * way, which fills the memos.
 */
static int quick_ok;    /* set once the configuration is read (and the log opened) */

static __attribute__((always_inline)) inline int
quick_allowed(unsigned int n)
{
	return n == 1 && quick_ok;
}

/*
 * *who: the first 8 bytes of this event's stamp (stack id, lcore); 0: go the
 * general way.  sp: the caller's stack pointer (CALLER_SP() of the wrapper).
 */
static __attribute__((always_inline)) inline int
quick_who(void *ra, const void *sp, uint64_t *who)
{
	if (cfg.depth == 1) {
		const struct caller_memo *m = caller_memo(ra);
		*who = m->who;
		return m->ra == (uintptr_t)ra;
	}
	if (cfg.depth == 0) {
		*who = (uint64_t)cur_lcore() << 32;
		return tls.lcore != 0xffffffffu;
	}
	*who = mpt_unwind_memo_lookup(ra, sp, cfg.depth);
	if (*who == 0 || tls.lcore == 0xffffffffu)
		return 0;
	*who |= (uint64_t)cur_lcore() << 32;
	return 1;
}

static __attribute__((always_inline)) inline int
quick_event(const struct mptrack_pool *p, uintptr_t addr, void *ra, const void *sp, int get)
{
	struct mptrack_obj *o;
	struct finder fd;
	uint64_t w, who;

	if (UNLIKELY(!quick_who(ra, sp, &who)) ||
	    UNLIKELY(!finder_load(&fast_index[p->slot], p, &fd)) ||
	    UNLIKELY((o = finder_lookup(&fd, addr)) == NULL))
		return 0;
	w = __atomic_load_n(&o->state_allocs, __ATOMIC_RELAXED);
	if (UNLIKELY((uint32_t)w != (get ? MPTRACK_STATE_FREE : MPTRACK_STATE_IN_USE)))
		return 0;
	if (get)
		__atomic_store_n(&o->state_allocs, taken_word(w), __ATOMIC_RELEASE);
	else
		__atomic_store_n(&o->state, MPTRACK_STATE_FREE, __ATOMIC_RELEASE);
	stamp_store(get ? &o->alloc : &o->free, stamp_block_of(who, now_tsc()));
	return 1;
}

/* ------------------------------------------------------------ ops wrappers */

static struct rte_mempool_ops orig_ops[RTE_MEMPOOL_MAX_OPS_IDX];
static int patched[RTE_MEMPOOL_MAX_OPS_IDX];

/*
 * The wrappers' common paths (a pool not tracked; a quick put) end in a tail
 * call of the driver and keep nothing across a call; what does is in the
 * noinline functions below (their frames return where the wrapper's would:
 * the unwinders see the same caller).  Their frame address + 16 is then the
 * caller's stack pointer, which spares the cfi unwinder its walk up the
 * agent's frames (it checks the return address below it first).
 */
#define CALLER_SP() ((const void *)((const uintptr_t *)__builtin_frame_address(0) + 2))
static __attribute__((noinline)) int
w_enqueue_tracked(struct mptrack_pool *p, struct rte_mempool *mp, void *const *objs,
		  unsigned int n, void *ra)
{
	track_put(p, objs, n, ra, CALLER_SP());
	return orig_ops[mp->ops_index].enqueue(mp, objs, n);
}

static int
w_enqueue(struct rte_mempool *mp, void *const *objs, unsigned int n)
{
	struct mptrack_pool *p = pool_lookup(mp);

	if (p != NULL && !(quick_allowed(n) &&
			   quick_event(p, (uintptr_t)objs[0], __builtin_return_address(0),
				       CALLER_SP(), 0)))
		return w_enqueue_tracked(p, mp, objs, n, __builtin_return_address(0));
	return orig_ops[mp->ops_index].enqueue(mp, objs, n);
}

static __attribute__((noinline)) int
w_dequeue_tracked(struct mptrack_pool *p, struct rte_mempool *mp, void **objs, unsigned int n,
		  void *ra)
{
	int ret;

	/*
	 * A get of 0 objects succeeds from a per-lcore cache, but most drivers
	 * fail it: keep the cached behaviour of a pool whose cache we turned off.
	 */
	if (UNLIKELY(n == 0) && p->cache_size != 0)
		return 0;
	ret = orig_ops[mp->ops_index].dequeue(mp, objs, n);
	if (ret == 0 && !(quick_allowed(n) && quick_event(p, (uintptr_t)objs[0], ra, CALLER_SP(), 1)))
		track_get(p, objs, n, ra, CALLER_SP());
	return ret;
}

static int
w_dequeue(struct rte_mempool *mp, void **objs, unsigned int n)
{
	struct mptrack_pool *p = pool_lookup(mp);

	if (p != NULL)
		return w_dequeue_tracked(p, mp, objs, n, __builtin_return_address(0));
	return orig_ops[mp->ops_index].dequeue(mp, objs, n);
}

static int
w_dequeue_contig_blocks(struct rte_mempool *mp, void **first, unsigned int n)
{
	int ret = orig_ops[mp->ops_index].dequeue_contig_blocks(mp, first, n);
	struct mptrack_pool *p;

	if (ret == 0 && (p = pool_lookup(mp)) != NULL) {
		struct rte_mempool_info info;
		size_t stride = (size_t)mp->header_size + mp->elt_size + mp->trailer_size;
		if (orig_ops[mp->ops_index].get_info == NULL ||
		    orig_ops[mp->ops_index].get_info(mp, &info) != 0)
			return ret;
		for (unsigned int b = 0; b < n; b++)
			for (unsigned int j = 0; j < info.contig_block_size; j++) {
				void *obj = (char *)first[b] + j * stride;
				track_get(p, &obj, 1, __builtin_return_address(0), NULL);
			}
	}
	return ret;
}

struct populate_ctx {
	struct mptrack_pool *p;
	struct mptrack_chunk *chunk;
	rte_mempool_populate_obj_cb_t *cb;
	void *arg;
};

static void
populate_cb(struct rte_mempool *mp, void *opaque, void *vaddr, rte_iova_t iova)
{
	struct populate_ctx *c = opaque;
	struct mptrack_pool *p = c->p;
	uintptr_t addr = (uintptr_t)vaddr;  /* the object (its header is before it) */
	uintptr_t off = addr - (uintptr_t)c->chunk->base;

	if (p->nobjs < p->capacity && off < c->chunk->len) {
		struct mptrack_obj *o = &pool_objs(p)[p->nobjs];
		o->addr = addr;
		o->state = MPTRACK_STATE_NEW;
		((uint32_t *)(uintptr_t)c->chunk->map)[off >> p->shift] = p->nobjs + 1;
		c->chunk->count++;
		A_STORE(&p->nobjs, p->nobjs + 1);
	}
	c->cb(mp, c->arg, vaddr, iova);
}

static int
w_populate(struct rte_mempool *mp, unsigned int max_objs, void *vaddr, rte_iova_t iova,
	   size_t len, rte_mempool_populate_obj_cb_t *obj_cb, void *obj_cb_arg)
{
	rte_mempool_populate_t orig = orig_ops[mp->ops_index].populate;
	struct mptrack_pool *p = pool_lookup(mp);
	struct populate_ctx ctx = {.cb = obj_cb, .arg = obj_cb_arg};
	struct mptrack_chunk *c;
	void *map;
	int ret;

	if (orig == NULL)
		orig = rte_mempool_op_populate_default;
	if (p == NULL && mp->populated_size == 0 && !tls.busy && pool_wanted(mp->name)) {
		/* created before the agent could see it: track it from here */
		pthread_mutex_lock(&slow_lock);
		p = pool_lookup(mp);
		if (p == NULL && (p = pool_track(mp, mp->cache_size)) != NULL)
			neutralise_caches(mp);
		pthread_mutex_unlock(&slow_lock);
	}
	if (p == NULL)
		return orig(mp, max_objs, vaddr, iova, len, obj_cb, obj_cb_arg);
	if (p->nchunks == p->max_chunks ||
	    (map = map_anon(((len >> p->shift) + 1) * 4, (int)p->shared)) == NULL) {
		say("mptrack-agent: pool \"%s\" has too many memory chunks: no longer tracked\n",
		    mp->name);
		pthread_mutex_lock(&slow_lock);
		pool_untrack(mp);
		pthread_mutex_unlock(&slow_lock);
		return orig(mp, max_objs, vaddr, iova, len, obj_cb, obj_cb_arg);
	}
	c = &pool_chunks(p)[p->nchunks];
	c->base = (uint64_t)(uintptr_t)vaddr;
	c->len = len;
	c->map = (uint64_t)(uintptr_t)map;
	c->first = p->nobjs;
	c->count = 0;
	A_STORE(&p->nchunks, p->nchunks + 1);  /* before the objects are enqueued */
	ctx.p = p;
	ctx.chunk = c;
	ret = orig(mp, max_objs, vaddr, iova, len, populate_cb, &ctx);
	if (p->nobjs == p->capacity)
		fast_index_build(p);   /* the last chunk: index the whole pool */
	return ret;
}

/* Patch ops entry i in place (under the table's spinlock). */
void
patch_ops(unsigned int i)
{
	struct rte_mempool_ops *ops = &rte_mempool_ops_table.ops[i];

	if (i >= RTE_MEMPOOL_MAX_OPS_IDX || patched[i] || ops->enqueue == NULL)
		return;
	orig_ops[i] = *ops;
	if (ops->enqueue == w_enqueue)
		return;  /* already ours (should not happen) */
	ops->populate = w_populate;
	if (ops->dequeue_contig_blocks != NULL)
		ops->dequeue_contig_blocks = w_dequeue_contig_blocks;
	ops->dequeue = w_dequeue;
	ops->enqueue = w_enqueue;
	patched[i] = 1;
}

static void
patch_all_ops(void)
{
	rte_spinlock_lock(&rte_mempool_ops_table.sl);
	for (unsigned int i = 0; i < rte_mempool_ops_table.num_ops; i++)
		patch_ops(i);
	rte_spinlock_unlock(&rte_mempool_ops_table.sl);
}

/* The original function pointers back (under the table's spinlock); the wrappers stay callable. */
void
unpatch_ops(void)
{
	for (unsigned int i = 0; i < RTE_MEMPOOL_MAX_OPS_IDX; i++) {
		struct rte_mempool_ops *ops = &rte_mempool_ops_table.ops[i];
		if (!patched[i])
			continue;
		if (ops->enqueue == w_enqueue)
			ops->enqueue = orig_ops[i].enqueue;
		if (ops->dequeue == w_dequeue)
			ops->dequeue = orig_ops[i].dequeue;
		if (ops->populate == w_populate)
			ops->populate = orig_ops[i].populate;
		if (ops->dequeue_contig_blocks == w_dequeue_contig_blocks)
			ops->dequeue_contig_blocks = orig_ops[i].dequeue_contig_blocks;
		patched[i] = 0;
	}
}

/* The driver's own enqueue, not the wrapper. */
rte_mempool_enqueue_t
driver_enqueue(const struct rte_mempool *mp)
{
	unsigned int i = (unsigned int)mp->ops_index;

	return patched[i] ? orig_ops[i].enqueue : rte_mempool_ops_table.ops[i].enqueue;
}

/* ----------------------------------------------------------- interposition */

EXPORT int
rte_mempool_register_ops(const struct rte_mempool_ops *h)
{
	int idx;
	REAL(rte_mempool_register_ops);

	config_init();
	idx = real_rte_mempool_register_ops(h);
	if (idx >= 0) {
		rte_spinlock_lock(&rte_mempool_ops_table.sl);
		patch_ops((unsigned int)idx);
		rte_spinlock_unlock(&rte_mempool_ops_table.sl);
	}
	return idx;
}

EXPORT struct rte_mempool *
rte_mempool_create_empty(const char *name, unsigned int n, unsigned int elt_size,
			 unsigned int cache_size, unsigned int private_data_size,
			 int socket_id, unsigned int flags)
{
	struct rte_mempool *mp;
	int want;
	REAL(rte_mempool_create_empty);

	config_init();
	want = name != NULL && pool_wanted(name);
	mp = real_rte_mempool_create_empty(name, n, elt_size, want ? 0 : cache_size,
					   private_data_size, socket_id, flags);
	if (mp != NULL && want) {
		patch_all_ops();
		pthread_mutex_lock(&slow_lock);
		pool_untrack(mp);  /* a stale record at the same address */
		pool_track(mp, cache_size);
		pthread_mutex_unlock(&slow_lock);
	}
	return mp;
}

EXPORT int
rte_mempool_set_ops_byname(struct rte_mempool *mp, const char *name, void *pool_config)
{
	int ret;
	REAL(rte_mempool_set_ops_byname);

	config_init();
	ret = real_rte_mempool_set_ops_byname(mp, name, pool_config);
	if (ret == 0) {
		struct mptrack_pool *p;
		patch_all_ops();
		if ((p = pool_lookup(mp)) != NULL)
			p->ops_index = (uint32_t)mp->ops_index;
	}
	return ret;
}

EXPORT void
rte_mempool_free(struct rte_mempool *mp)
{
	REAL(rte_mempool_free);

	if (mp != NULL) {
		pthread_mutex_lock(&slow_lock);
		pool_untrack(mp);
		pthread_mutex_unlock(&slow_lock);
	}
	real_rte_mempool_free(mp);
}

/* ----------------------------------------------------------------- start */

/* fork: the child gets its own pid, lcore, clock thread and event log (log_fork_child()) */
static void
fork_prepare(void)
{
	pthread_mutex_lock(&slow_lock);
	log_fork_prepare();
}

static void
fork_parent(void)
{
	log_fork_parent();
	pthread_mutex_unlock(&slow_lock);
}

static void
fork_child(void)
{
	pthread_mutex_init(&slow_lock, NULL);
	T.pid = getpid();
	tls.lcore = 0xffffffffu;
	clock_start();
	log_fork_child();
}

__attribute__((constructor)) static void
agent_start(void)
{
	config_init();
	/* log_on only goes from 1 to 0 later (a write error), or back to 1 in a forked child */
	quick_ok = (cfg.depth <= 1 || (cfg.unwinder == UNW_CFI && !cfg.unwind_verify)) &&
		   cfg.sample <= 1 && !strict_state && !log_on;
	patch_all_ops();
	pthread_atfork(fork_prepare, fork_parent, fork_child);
}

