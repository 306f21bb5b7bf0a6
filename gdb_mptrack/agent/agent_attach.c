/* SPDX-License-Identifier: BSD-3-Clause
 * Copyright (c) 2026 The gdb-mptrack authors
 *
 * agent_attach.c: attach and detach, for an agent loaded into a running
 * process (or preloaded) while gdb holds it stopped.
 *
 * `mptrack agent attach` (gdb_mptrack/agent_commands.py) loads this library
 * into a running process that gdb holds stopped (an inferior call of dlopen,
 * of the attach build: see MPTRACK_TLS_DYNAMIC), which patches the ops table
 * (the constructor), then asks it to take over existing pools, one call of
 * mptrack_agent_attach() per pool.  gdb decides which objects are free (the
 * driver's ring or stack and the per-lcore caches, read from memory with the
 * same code as `mptrack dump`) and writes the request into memory from
 * mptrack_agent_scratch(); the agent builds the pool's tables from
 * rte_mempool_obj_iter (every object in use, origin unknown: no stack, no
 * timestamp), marks the listed ones free, flushes the per-lcore caches into
 * the driver with the driver's own enqueue and turns them off (size and
 * flush threshold 0: DPDK's inline code then goes to the ops for every
 * object; mp->cache_size is kept, since rte_mempool_get_priv() depends on it).
 * Faults then raise SIGTRAP (MPTRACK_ON_ERROR=trap) so gdb stops in the
 * faulting thread; a do-nothing SIGTRAP handler, installed only where the
 * program had none, keeps a process that gdb left from dying of a trap.
 *
 * mptrack_agent_detach() gives everything back: each attached pool's cache
 * sizes and thresholds (as DPDK sets them up), the original ops function pointers (when the agent
 * was loaded by attach; a preloaded agent keeps tracking the pools it had),
 * the error mode and the SIGTRAP disposition.  Its tables stay mapped but
 * leave mptrack_agent_tables (a thread may still be inside a wrapper with
 * them) and the library stays loaded (unloading code a thread may be
 * returning through is not safe).
 *
 * Both must run with every other thread stopped (gdb's scheduler-locking),
 * none of them in the middle of a get or put on the pools concerned (gdb
 * brings each to the entry of a wrapper first: see mptrack_agent_prepare);
 * they take no lock but try-locks, and fail with a message instead of
 * waiting.  The result, as one line, is in mptrack_agent_message.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <rte_mempool.h>

#include "agent_private.h"
#include "mptrack_agent.h"

#define MPTRACK_ATTACH_VERSION 1
#define MPTRACK_ATTACH_TRAP 1u          /* faults raise SIGTRAP while attached */

/* What gdb writes for one pool; `nfree` addresses follow it. */
struct mptrack_attach_req {
	uint32_t version;       /* MPTRACK_ATTACH_VERSION */
	uint32_t flags;         /* MPTRACK_ATTACH_* */
	uint64_t mp;            /* struct rte_mempool * */
	uint64_t nfree;         /* free objects (driver and caches) */
	char pools[256];        /* names or globs of pools created later ("" none, "*" all) */
	/* uint64_t free[nfree]; */
};

enum { ATTACH_NONE = 0, ATTACH_DLOPEN = 1, ATTACH_PRELOADED = 2 };

/* 0: not attached; 1: attached, the agent loaded by attach; 2: attached to a
 * preloaded agent (LD_PRELOAD). */
EXPORT int mptrack_agent_attach_mode;
EXPORT char mptrack_agent_message[512];

static struct attached {
	struct rte_mempool *mp;
	struct mptrack_pool *p;
} *attached;                            /* MPTRACK_MAX_POOLS of them, mapped at first use */
static unsigned int nattached;
static int saved_on_error;
static char *saved_pools;
static int trap_handler_set;
static struct sigaction saved_sigtrap;
static void *scratch;
static size_t scratch_size;

static void __attribute__((format(printf, 1, 2)))
attach_msg(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(mptrack_agent_message, sizeof(mptrack_agent_message), fmt, ap);
	va_end(ap);
}

/* Memory for gdb to write a request into (reused; grown as needed). */
EXPORT void *
mptrack_agent_scratch(uint64_t size)
{
	if (size > scratch_size) {
		void *p = map_anon((size_t)size, 0);
		if (p == NULL)
			return NULL;
		if (scratch != NULL)
			munmap(scratch, scratch_size);
		scratch = p;
		scratch_size = (size_t)size;
	}
	return scratch;
}

/* Is this library the one the program's calls to rte_mempool_create_empty reach (LD_PRELOAD)? */
static int
agent_interposes(void)
{
	Dl_info mine, theirs;
	void *f = dlsym(RTLD_DEFAULT, "rte_mempool_create_empty");

	return f != NULL && dladdr(f, &theirs) != 0 && dladdr((void *)agent_interposes, &mine) != 0 &&
	       theirs.dli_fbase == mine.dli_fbase;
}

static void
attach_sigtrap(int sig)
{
	(void)sig;  /* nobody is debugging: go on, as MPTRACK_ON_ERROR=log would */
}

struct attach_ctx {
	struct mptrack_pool *p;
	int overflow;
};

static void
attach_obj_cb(struct rte_mempool *mp, void *opaque, void *obj, unsigned int idx)
{
	struct attach_ctx *c = opaque;
	struct mptrack_pool *p = c->p;
	uintptr_t addr = (uintptr_t)obj;

	(void)mp;
	(void)idx;
	if (p->nobjs == p->capacity) {
		c->overflow = 1;
		return;
	}
	for (uint32_t k = 0; k < p->nchunks; k++) {
		struct mptrack_chunk *ch = &pool_chunks(p)[k];
		uintptr_t off = addr - (uintptr_t)ch->base;
		if (off < ch->len) {
			struct mptrack_obj *o = &pool_objs(p)[p->nobjs];
			o->addr = addr;
			o->state = MPTRACK_STATE_IN_USE;  /* origin unknown until gdb's list says free */
			((uint32_t *)(uintptr_t)ch->map)[off >> p->shift] = p->nobjs + 1;
			if (ch->count++ == 0)
				ch->first = p->nobjs;
			p->nobjs++;
			return;
		}
	}
	c->overflow = 1;  /* an object outside the pool's memory chunks */
}

/* Tables for mp from its current state; NULL (and a message) on failure. */
static struct mptrack_pool *
attach_tables(struct rte_mempool *mp, const uint64_t *free_objs, uint64_t nfree)
{
	struct attach_ctx ctx = {0};
	struct rte_mempool_memhdr *m;
	struct mptrack_pool *p;

	if (nfree > mp->size) {
		attach_msg("pool \"%s\": %" PRIu64 " free objects listed, it has %u", mp->name, nfree,
			   mp->size);
		return NULL;
	}
	p = pool_track(mp, mp->cache_size);
	if (p == NULL) {
		attach_msg("pool \"%s\": no room or memory for its tables", mp->name);
		return NULL;
	}
	ctx.p = p;
	STAILQ_FOREACH(m, &mp->mem_list, next) {
		struct mptrack_chunk *ch;
		void *map;

		if (p->nchunks == p->max_chunks ||
		    (map = map_anon(((m->len >> p->shift) + 1) * 4, (int)p->shared)) == NULL) {
			attach_msg("pool \"%s\": too many memory chunks", mp->name);
			goto fail;
		}
		ch = &pool_chunks(p)[p->nchunks];
		ch->base = (uint64_t)(uintptr_t)m->addr;
		ch->len = m->len;
		ch->map = (uint64_t)(uintptr_t)map;
		ch->first = 0;
		ch->count = 0;
		p->nchunks++;
	}
	rte_mempool_obj_iter(mp, attach_obj_cb, &ctx);
	if (ctx.overflow || p->nobjs != mp->populated_size) {
		attach_msg("pool \"%s\": its element list does not match its memory (%u objects listed, "
			   "%u populated)", mp->name, p->nobjs, mp->populated_size);
		goto fail;
	}
	for (uint64_t i = 0; i < nfree; i++) {
		struct mptrack_obj *o = obj_lookup(p, (uintptr_t)free_objs[i]);
		if (o == NULL || o->state != MPTRACK_STATE_IN_USE) {
			attach_msg("pool \"%s\": 0x%" PRIx64 " is %s", mp->name, free_objs[i],
				   o == NULL ? "not one of its objects" : "listed free twice");
			goto fail;
		}
		o->state = MPTRACK_STATE_FREE;
	}
	/* every object in a per-lcore cache must be in the list: the cache is flushed next */
	for (unsigned int l = 0; mp->cache_size != 0 && mp->local_cache != NULL && l < RTE_MAX_LCORE; l++) {
		struct rte_mempool_cache *c = &mp->local_cache[l];
		for (uint32_t j = 0; j < c->len && j < RTE_DIM(c->objs); j++) {
			struct mptrack_obj *o = obj_lookup(p, (uintptr_t)c->objs[j]);
			if (o == NULL || o->state != MPTRACK_STATE_FREE) {
				attach_msg("pool \"%s\": lcore %u cache holds %p, which the request does "
					   "not list free (the pool changed since gdb read it)", mp->name, l,
					   c->objs[j]);
				goto fail;
			}
		}
	}
	fast_index_build(p);  /* every object is in: index the pool's whole span */
	return p;
fail:
	pool_untrack(mp);  /* nobody has seen these tables yet */
	return NULL;
}

/* Every lcore cache of mp as DPDK sets it up (mempool_cache_init: flush threshold 1.5 x size). */
static void
caches_on(struct rte_mempool *mp)
{
	for (unsigned int l = 0; mp->cache_size != 0 && mp->local_cache != NULL && l < RTE_MAX_LCORE; l++) {
		mp->local_cache[l].size = mp->cache_size;
		mp->local_cache[l].flushthresh = mp->cache_size * 3 / 2;
	}
}

/*
 * Before attaching mp (on = 1): flush threshold 0 in every lcore cache, so
 * that every put goes to the driver from now on (gets still use the cache).
 * A single store each: a put in progress completes with the old or the new
 * threshold, both consistent.  gdb then runs each thread alone to the entry
 * of an ops wrapper, where it is not in the middle of a cache operation on
 * mp (see agent_commands.py), before mptrack_agent_attach().  It also
 * patches the ops (again, after a detach), where gdb meets the threads.
 * on = 0 undoes the threshold (an attach given up; mptrack_agent_detach()
 * restores the ops).  Returns -1 for a tracked pool, -2 when a thread holds
 * the ops table's lock.
 */
EXPORT int
mptrack_agent_prepare(struct rte_mempool *mp, int on)
{
	if (pool_lookup(mp) != NULL)
		return -1;
	if (on) {
		/* the wrappers where gdb meets the threads (they pass untracked pools through) */
		if (!rte_spinlock_trylock(&rte_mempool_ops_table.sl))
			return -2;
		for (unsigned int i = 0; i < rte_mempool_ops_table.num_ops; i++)
			patch_ops(i);
		rte_spinlock_unlock(&rte_mempool_ops_table.sl);
		for (unsigned int l = 0; mp->cache_size != 0 && mp->local_cache != NULL && l < RTE_MAX_LCORE; l++)
			mp->local_cache[l].flushthresh = 0;
	} else {
		caches_on(mp);
	}
	return 0;
}

/* Flush mp's per-lcore caches into its driver and turn them off. */
static int
attach_caches(struct rte_mempool *mp)
{
	rte_mempool_enqueue_t enqueue = driver_enqueue(mp);

	if (mp->cache_size == 0 || mp->local_cache == NULL)
		return 0;
	for (unsigned int l = 0; l < RTE_MAX_LCORE; l++) {
		struct rte_mempool_cache *c = &mp->local_cache[l];

		if (c->len != 0 && enqueue(mp, c->objs, c->len) != 0) {
			attach_msg("pool \"%s\": the driver refused lcore %u's %u cached objects", mp->name,
				   l, c->len);
			return -1;
		}
		c->len = 0;
		c->size = 0;
		c->flushthresh = 0;
	}
	return 0;
}

static void
attach_config(const struct mptrack_attach_req *req, int preloaded)
{
	char glob[sizeof(req->pools) + 1];

	if (mptrack_agent_attach_mode == ATTACH_NONE) {
		saved_on_error = cfg.on_error;
		saved_pools = cfg.pools;
		if (!preloaded)
			cfg.pools = strdup("");  /* loaded by attach: only the pools attach names */
	}
	/* pools created from now on: the ones named too (the old string is not
	 * freed: a thread may be reading it) */
	snprintf(glob, sizeof(glob), "%.*s", (int)sizeof(req->pools), req->pools);
	if (strcmp(glob, "*") == 0) {
		cfg.pools = NULL;
	} else if (cfg.pools != NULL && glob[0] != '\0') {
		size_t n = strlen(cfg.pools) + strlen(glob) + 2;
		char *both = malloc(n);
		if (both != NULL) {
			snprintf(both, n, "%s%s%s", cfg.pools, cfg.pools[0] ? "," : "", glob);
			cfg.pools = both;
		}
	}
	if (req->flags & MPTRACK_ATTACH_TRAP) {
		struct sigaction sa, old;
		cfg.on_error = MPTRACK_ON_ERROR_TRAP;
		T.on_error = MPTRACK_ON_ERROR_TRAP;
		if (!trap_handler_set && sigaction(SIGTRAP, NULL, &old) == 0 &&
		    old.sa_handler == SIG_DFL && !(old.sa_flags & SA_SIGINFO)) {
			memset(&sa, 0, sizeof(sa));
			sa.sa_handler = attach_sigtrap;
			sigemptyset(&sa.sa_mask);
			if (sigaction(SIGTRAP, &sa, &saved_sigtrap) == 0)
				trap_handler_set = 1;
		}
	}
	mptrack_agent_attach_mode = preloaded ? ATTACH_PRELOADED : ATTACH_DLOPEN;
}

/*
 * slow_lock, then the ops table's lock, without waiting (the other threads
 * are stopped: one may hold either).  0, or -1 and a message.
 */
static int
attach_lock(void)
{
	if (pthread_mutex_trylock(&slow_lock) != 0) {
		attach_msg("a thread is inside the agent (reporting a fault or taking a new pool): "
			   "let the program run a little and try again");
		return -1;
	}
	if (!rte_spinlock_trylock(&rte_mempool_ops_table.sl)) {
		pthread_mutex_unlock(&slow_lock);
		attach_msg("a thread is registering a mempool driver: let the program run a little "
			   "and try again");
		return -1;
	}
	return 0;
}

/*
 * Take over one existing pool (req: see struct mptrack_attach_req).  Returns
 * 1 when the pool is tracked from now on, 0 when it already was, -1 on
 * failure; mptrack_agent_message says what happened.
 */
EXPORT int
mptrack_agent_attach(const struct mptrack_attach_req *req)
{
	struct rte_mempool *mp;
	struct mptrack_pool *p;
	struct attached *a;
	int preloaded, ret = -1;

	mptrack_agent_message[0] = '\0';
	if (req == NULL || req->version != MPTRACK_ATTACH_VERSION) {
		attach_msg("attach request version %u, this agent reads %u", req ? req->version : 0,
			   MPTRACK_ATTACH_VERSION);
		return -1;
	}
	config_init();
	mp = (struct rte_mempool *)(uintptr_t)req->mp;
	if (attached == NULL &&
	    (attached = map_anon(sizeof(*attached) * MPTRACK_MAX_POOLS, 0)) == NULL) {
		attach_msg("no memory for the attach records");
		return -1;
	}
	if (attach_lock() != 0)
		return -1;
	if ((unsigned int)mp->ops_index >= rte_mempool_ops_table.num_ops) {
		attach_msg("pool \"%s\": ops index %d is not a registered driver", mp->name,
			   mp->ops_index);
		goto out;
	}
	if (pool_lookup(mp) != NULL) {
		attach_msg("pool \"%s\" is already tracked", mp->name);
		ret = 0;
		goto out;
	}
	if (nattached == MPTRACK_MAX_POOLS) {
		attach_msg("pool \"%s\": %d pools attached already", mp->name, MPTRACK_MAX_POOLS);
		goto out;
	}
	preloaded = agent_interposes();
	p = attach_tables(mp, (const uint64_t *)(req + 1), req->nfree);
	if (p == NULL)
		goto out;
	a = &attached[nattached];
	memset(a, 0, sizeof(*a));
	a->mp = mp;
	a->p = p;
	if (attach_caches(mp) != 0) {
		caches_on(mp);  /* the caches flushed so far are in the driver: all back on */
		pool_untrack(mp);
		goto out;
	}
	nattached++;
	for (unsigned int i = 0; i < rte_mempool_ops_table.num_ops; i++)
		patch_ops(i);
	attach_config(req, preloaded);
	attach_msg("pool \"%s\": %u objects, %" PRIu64 " free, %" PRIu64 " in use (origin unknown)%s",
		   mp->name, p->nobjs, req->nfree, (uint64_t)p->nobjs - req->nfree,
		   mp->cache_size ? ", per-lcore caches flushed and bypassed" : "");
	ret = 1;
out:
	rte_spinlock_unlock(&rte_mempool_ops_table.sl);
	pthread_mutex_unlock(&slow_lock);
	return ret;
}

/*
 * Undo mptrack_agent_attach() for every pool.  Returns the number of pools
 * given back, or -1 (nothing changed) when the agent is not attached or busy.
 */
EXPORT int
mptrack_agent_detach(void)
{
	int n = 0, attached_now = mptrack_agent_attach_mode != ATTACH_NONE;
	/* loaded by attach (maybe with no pool attached: the constructor patched the ops) */
	int dlopened = mptrack_agent_attach_mode == ATTACH_DLOPEN ||
		       (!attached_now && !agent_interposes());

	mptrack_agent_message[0] = '\0';
	if (mptrack_agent_attach_mode == ATTACH_NONE && agent_interposes()) {
		attach_msg("the agent is not attached (it was preloaded)");
		return -1;
	}
	if (attach_lock() != 0)
		return -1;
	for (unsigned int i = 0; i < nattached; i++) {
		struct attached *a = &attached[i];
		struct rte_mempool *mp = a->mp;

		if (pool_lookup(mp) != a->p)
			continue;  /* freed (rte_mempool_free) since */
		caches_on(mp);
		pool_forget(a->p);
		n++;
	}
	nattached = 0;
	if (dlopened) {
		/* pools taken at their creation since the attach: caches back on, then untracked */
		for (uint32_t s = 0; s < MPTRACK_MAX_POOLS; s++) {
			struct mptrack_pool *p = (struct mptrack_pool *)(uintptr_t)T.pools[s];
			struct rte_mempool *mp;

			if (p == NULL)
				continue;
			mp = (struct rte_mempool *)(uintptr_t)p->mp;
			caches_on(mp);
			pool_forget(p);
			n++;
		}
		/* the original function pointers back; the wrappers stay callable */
		unpatch_ops();
	}
	if (attached_now) {
		cfg.on_error = saved_on_error;
		T.on_error = (uint32_t)saved_on_error;
		cfg.pools = saved_pools;
	} else {
		cfg.pools = strdup("");  /* loaded but never attached: take no new pool */
	}
	if (trap_handler_set) {
		sigaction(SIGTRAP, &saved_sigtrap, NULL);
		trap_handler_set = 0;
	}
	mptrack_agent_attach_mode = ATTACH_NONE;
	rte_spinlock_unlock(&rte_mempool_ops_table.sl);
	pthread_mutex_unlock(&slow_lock);
	attach_msg("%d pool%s given back%s", n, n == 1 ? "" : "s", dlopened ? ", mempool ops restored" : "");
	return n;
}
