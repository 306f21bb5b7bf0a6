/* SPDX-License-Identifier: BSD-3-Clause
 * Copyright (c) 2026 The gdb-mptrack authors
 *
 * agent_faults.c: the preload agent's fault reports.
 *
 * The tracking (mptrack_agent.c) calls fault() when an object is freed while
 * already free or handed out while already in use, or when a put gives back
 * an address that is not an object of the pool.  Such an address is told
 * apart by looking at the other tracked pools (an object's start there: a
 * foreign free) then at every DPDK pool's memory (rte_mempool_walk: inside an
 * object, between objects, or in no pool at all: a stray free).  The fault is
 * recorded in the ring T.faults (the last MPTRACK_FAULT_RING, struct
 * mptrack_fault in mptrack_agent.h), printed on stderr with the full stack of
 * this event whatever the sampling and, for a duplicate, the object's
 * previous free and alloc, each frame named with dladdr(); written to the
 * event log if there is one, flushed at once; then MPTRACK_ON_ERROR acts
 * (fault_action(): abort, raise SIGTRAP, or go on).
 *
 * The slow path by design: fault() is noinline and cold, so the ops wrappers
 * only call it.  Reports are serialised by slow_lock and formatted into one
 * static buffer written with one write(2), so that two never interleave;
 * bprintf(), print_stack() and fault_action() serve agent_malloc.c's reports
 * too.  Not for signal handlers (vsnprintf, dladdr).
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

#include <rte_mempool.h>

#include "agent_private.h"
#include "mptrack_agent.h"

static const char *const fault_names[] = {
	[MPTRACK_FAULT_DUPLICATE_FREE] = "duplicate free",
	[MPTRACK_FAULT_FOREIGN_FREE] = "foreign free",
	[MPTRACK_FAULT_STRAY_FREE] = "stray free",
	[MPTRACK_FAULT_DUPLICATE_ALLOC] = "duplicate alloc",
};

void
bprintf(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (b->n >= sizeof(b->s))
		return;
	va_start(ap, fmt);
	n = vsnprintf(b->s + b->n, sizeof(b->s) - b->n, fmt, ap);
	va_end(ap);
	if (n > 0)
		b->n += (size_t)n;
	if (b->n > sizeof(b->s))
		b->n = sizeof(b->s);
}

static void
print_frames(struct buf *b, const uint64_t *f, int n)
{
	for (int i = 0; i < n; i++) {
		Dl_info di;
		uintptr_t pc = (uintptr_t)f[i];

		/* a return address: look up the call instruction before it */
		if (dladdr((void *)(pc - 1), &di) != 0 && di.dli_fname != NULL) {
			if (di.dli_sname != NULL)
				bprintf(b, "    #%d 0x%" PRIxPTR " %s+0x%" PRIxPTR " (%s)\n", i, pc,
					di.dli_sname, pc - (uintptr_t)di.dli_saddr, di.dli_fname);
			else
				bprintf(b, "    #%d 0x%" PRIxPTR " (%s+0x%" PRIxPTR ")\n", i, pc,
					di.dli_fname, pc - (uintptr_t)di.dli_fbase);
		} else {
			bprintf(b, "    #%d 0x%" PRIxPTR "\n", i, pc);
		}
	}
}

void
print_stack(struct buf *b, const char *what, uint32_t id, uint16_t lcore, int have)
{
	uint64_t f[MPTRACK_MAX_DEPTH];
	int n;

	if (!have) {
		bprintf(b, "  %s: none recorded\n", what);
		return;
	}
	if (lcore == MPTRACK_LCORE_NONE)
		bprintf(b, "  %s (non-EAL thread):\n", what);
	else
		bprintf(b, "  %s (lcore %u):\n", what, lcore);
	n = stack_frames(id, f);
	if (n == 0)
		bprintf(b, "    (no backtrace recorded)\n");
	print_frames(b, f, n);
}

struct find_ctx {
	uintptr_t addr;
	uintptr_t obj;          /* object start containing addr, 0 none */
	struct rte_mempool *mp;
};

static void
find_obj_cb(struct rte_mempool *mp, void *opaque, void *obj, unsigned int idx)
{
	struct find_ctx *c = opaque;
	uintptr_t o = (uintptr_t)obj;

	(void)idx;
	if (c->obj == 0 && c->addr >= o - mp->header_size && c->addr < o + mp->elt_size + mp->trailer_size) {
		c->obj = o;
		c->mp = mp;
	}
}

static void
find_pool_cb(struct rte_mempool *mp, void *opaque)
{
	struct find_ctx *c = opaque;
	struct rte_mempool_memhdr *m;

	if (c->mp != NULL)
		return;
	STAILQ_FOREACH(m, &mp->mem_list, next) {
		uintptr_t lo = (uintptr_t)m->addr;
		if (c->addr >= lo && c->addr < lo + m->len) {
			rte_mempool_obj_iter(mp, find_obj_cb, c);
			if (c->mp == NULL)
				c->mp = mp;  /* in the pool's memory, not in an object */
			return;
		}
	}
}

void
fault_action(void)
{
	switch (cfg.on_error) {
	case MPTRACK_ON_ERROR_TRAP:
		raise(SIGTRAP);
		break;
	case MPTRACK_ON_ERROR_LOG:
		break;
	default:
		abort();
	}
}

/*
 * Report a fault.  o: the shadow entry (NULL for foreign and stray frees).
 * ra: the return address into the program; the report captures the full
 * stack of this event whatever the sampling.
 */
__attribute__((noinline, cold)) void
fault(int kind, struct mptrack_pool *p, uintptr_t addr, struct mptrack_obj *o, void *ra)
{
	static struct buf b;
	uint64_t f[MPTRACK_MAX_DEPTH];
	struct find_ctx where = {.addr = addr};
	uint32_t sid = 0, prev_free = o ? o->free_stack : 0, prev_alloc = o ? o->alloc_stack : 0;
	uint16_t lcore = cur_lcore();
	uint64_t seq;
	struct mptrack_fault *rec;
	const char *verb = kind == MPTRACK_FAULT_DUPLICATE_ALLOC ? "alloc" : "free";
	struct rte_mempool *mp = (struct rte_mempool *)(uintptr_t)p->mp;

	if (cfg.depth > 0) {
		unsigned int n = cfg.depth == 1 ? (f[0] = (uint64_t)(uintptr_t)ra, 1) :
				 capture(ra, f, tls.busy <= 1);
		sid = stack_intern(f, n);
	}
	tls.busy++;
	if (kind == MPTRACK_FAULT_FOREIGN_FREE || kind == MPTRACK_FAULT_STRAY_FREE) {
		/* tracked pools first: an exact object start is a foreign free */
		for (uint32_t s = 0; s < MPTRACK_MAX_POOLS && where.mp == NULL; s++) {
			struct mptrack_pool *q = (struct mptrack_pool *)(uintptr_t)A_LOAD(&T.pools[s]);
			if (q != NULL && q != p && obj_lookup(q, addr) != NULL) {
				where.mp = (struct rte_mempool *)(uintptr_t)q->mp;
				where.obj = addr;
			}
		}
		if (where.mp == NULL)
			rte_mempool_walk(find_pool_cb, &where);
		kind = (where.mp != NULL && where.mp != mp && where.obj == addr) ?
			MPTRACK_FAULT_FOREIGN_FREE : MPTRACK_FAULT_STRAY_FREE;
	}

	pthread_mutex_lock(&slow_lock);
	seq = ++T.nfaults;
	A_ADD(&p->faults, 1);
	rec = &T.faults[(seq - 1) % MPTRACK_FAULT_RING];
	rec->seq = 0;
	rec->kind = (uint32_t)kind;
	rec->lcore = lcore;
	rec->pool = (uint64_t)(uintptr_t)p;
	rec->obj = addr;
	rec->other_pool = (uint64_t)(uintptr_t)where.mp;
	rec->stack = sid;
	rec->prev_free_stack = prev_free;
	rec->prev_alloc_stack = prev_alloc;
	rec->tsc = rte_rdtsc();
	A_STORE(&rec->seq, seq);

	b.n = 0;
	bprintf(&b, "mptrack: %s: pool \"%s\" ", fault_names[kind], p->name);
	switch (kind) {
	case MPTRACK_FAULT_DUPLICATE_FREE:
	case MPTRACK_FAULT_DUPLICATE_ALLOC:
		bprintf(&b, "object 0x%" PRIxPTR " (index %ld) %s while %s\n", addr,
			(long)(o - pool_objs(p)), kind == MPTRACK_FAULT_DUPLICATE_FREE ?
			"freed" : "handed out", kind == MPTRACK_FAULT_DUPLICATE_FREE ?
			"already free" : "already in use");
		break;
	case MPTRACK_FAULT_FOREIGN_FREE:
		bprintf(&b, "object 0x%" PRIxPTR " belongs to pool \"%s\"\n", addr, where.mp->name);
		break;
	default:
		if (where.mp != NULL && where.obj != 0)
			bprintf(&b, "pointer 0x%" PRIxPTR " is not an object: it is inside object 0x%"
				PRIxPTR " (offset %+ld) of pool \"%s\"\n", addr, where.obj,
				(long)(addr - where.obj), where.mp->name);
		else if (where.mp != NULL)
			bprintf(&b, "pointer 0x%" PRIxPTR " is not an object: it is in the memory of "
				"pool \"%s\" between objects\n", addr, where.mp->name);
		else
			bprintf(&b, "pointer 0x%" PRIxPTR " is not an object of any pool\n", addr);
	}
	{
		char what[32];
		snprintf(what, sizeof(what), "this %s", verb);
		print_stack(&b, what, sid, lcore, 1);
	}
	if (kind == MPTRACK_FAULT_DUPLICATE_FREE) {
		print_stack(&b, "previous free", prev_free, o->free_lcore, o->free_tsc != 0);
		print_stack(&b, "last alloc", prev_alloc, o->alloc_lcore, o->alloc_tsc != 0);
	} else if (kind == MPTRACK_FAULT_DUPLICATE_ALLOC) {
		print_stack(&b, "previous alloc", prev_alloc, o->alloc_lcore, o->alloc_tsc != 0);
		print_stack(&b, "last free", prev_free, o->free_lcore, o->free_tsc != 0);
	}
	write_all(2, b.s, b.n);
	pthread_mutex_unlock(&slow_lock);
	if (log_on) {
		log_simple(MPTRACK_EV_FAULT, (uint16_t)p->slot, addr, sid, (uint32_t)kind);
		log_flush_now();  /* the process may die or _exit soon */
	}
	tls.busy--;
	fault_action();
}
