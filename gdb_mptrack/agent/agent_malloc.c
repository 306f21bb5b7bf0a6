/* SPDX-License-Identifier: BSD-3-Clause
 * Copyright (c) 2026 The gdb-mptrack authors
 *
 * agent_malloc.c: the preload agent's rte_malloc tracking (MPTRACK_MALLOC=1).
 *
 * The rte_malloc family (rte_malloc, rte_zmalloc, rte_calloc, rte_realloc,
 * their _socket forms, rte_free) is interposed.  Each block the family
 * returns gets a slot in an open-addressing table keyed by its address
 * (struct mptrack_malloc_table and struct mptrack_block, mptrack_agent.h; a
 * slot is claimed with one compare-and-swap and never given back), with the
 * stack, lcore and time of its last alloc and of its last free.  An rte_free
 * (or rte_realloc) of a block already freed, or of a pointer the family never
 * returned, is a fault reported as a pool's are, in pool "rte_malloc"; in log
 * mode the bad call is not passed on, so the heap is not corrupted further.
 *
 * Assumptions: rte_malloc_validate() accepts any pointer in DPDK's release
 * builds, so a pointer the agent did not see allocated is checked against the
 * heap's own element header (struct malloc_elem, an internal of DPDK 22.11 to
 * 23.11: see heap_block_busy()); with other versions only the blocks the
 * agent saw freed are reported.  A call of the family made while another runs
 * on the same thread goes straight through (a per-thread depth).  The table
 * is fixed-size (MPTRACK_MALLOC_BLOCKS): blocks past it are counted, not
 * tracked.
 */
#define _GNU_SOURCE
#include <inttypes.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/mman.h>

#include <rte_malloc.h>
#include <rte_memory.h>
#include <rte_version.h>

#include "agent_private.h"
#include "mptrack_agent.h"

struct mptrack_malloc_table mtab;      /* T.malloc */
struct mptrack_block *mslots;
static uint32_t *mgen;      /* per slot: allocs of its address (the log's generation) */

void
malloc_init(unsigned long capacity)
{
	unsigned long cap = 1024;

	while (cap < capacity)
		cap <<= 1;
	mslots = map_anon(cap * sizeof(struct mptrack_block), 0);
	if (mslots == NULL) {
		say("mptrack-agent: cannot map the rte_malloc table: MPTRACK_MALLOC is off\n");
		cfg.malloc_on = 0;
		return;
	}
	mgen = map_anon(cap * sizeof(*mgen), 0);
	if (mgen == NULL) {
		munmap(mslots, cap * sizeof(struct mptrack_block));
		mslots = NULL;
		say("mptrack-agent: cannot map the rte_malloc table: MPTRACK_MALLOC is off\n");
		cfg.malloc_on = 0;
		return;
	}
	mtab.slots = (uint64_t)(uintptr_t)mslots;
	mtab.capacity = (uint32_t)cap;
	mtab.block_size = sizeof(struct mptrack_block);
	T.malloc = (uint64_t)(uintptr_t)&mtab;
}

static TLS int tls_malloc_depth;

/* The slot of addr; with insert, claims an empty slot if addr has none. */
static struct mptrack_block *
block_slot(uintptr_t addr, int insert)
{
	uint32_t mask = mtab.capacity - 1, i = (uint32_t)mix64(addr) & mask;

	for (unsigned int probe = 0; probe < 256; probe++, i = (i + 1) & mask) {
		uint64_t k = A_LOAD(&mslots[i].addr);
		if (k == addr)
			return &mslots[i];
		if (k == 0) {
			uint64_t want = 0;
			if (!insert)
				return NULL;
			if (A_CAS(&mslots[i].addr, &want, addr) || want == addr)
				return &mslots[i];
		}
	}
	if (insert)
		A_ADD(&mtab.dropped, 1);
	return NULL;
}

static void
block_alloc(void *ptr, size_t size, void *ra)
{
	struct mptrack_block *b;
	int nested;

	if (ptr == NULL || mslots == NULL)
		return;
	nested = tls.busy++;
	b = block_slot((uintptr_t)ptr, 1);
	if (b != NULL) {
		b->size = size;
		b->alloc_stack = event_stack(ra, NULL, nested);
		b->alloc_lcore = cur_lcore();
		b->alloc_tsc = now_tsc();
		mgen[b - mslots]++;
		A_STORE(&b->state, 2);
		if (log_on)
			log_event(MPTRACK_EV_MALLOC, MPTRACK_LOG_MALLOC_POOL, (uintptr_t)ptr,
				  b->alloc_stack, size > UINT32_MAX ? UINT32_MAX : (uint32_t)size,
				  b->alloc_lcore, b->alloc_tsc, mgen[b - mslots]);
	}
	tls.busy--;
}

static __attribute__((noinline, cold)) void
malloc_fault(int kind, uintptr_t addr, struct mptrack_block *blk, void *ra)
{
	static struct buf b;
	uint64_t f[MPTRACK_MAX_DEPTH];
	uint32_t sid = 0;
	uint16_t lcore = cur_lcore();

	if (cfg.depth > 0) {
		unsigned int n = cfg.depth == 1 ? (f[0] = (uint64_t)(uintptr_t)ra, 1) :
				 capture(ra, f, tls.busy == 0);
		sid = stack_intern(f, n);
	}
	tls.busy++;
	pthread_mutex_lock(&slow_lock);
	A_ADD(&mtab.faults, 1);
	b.n = 0;
	if (kind == MPTRACK_FAULT_DUPLICATE_FREE)
		bprintf(&b, "mptrack: duplicate free: pool \"rte_malloc\" block 0x%" PRIxPTR
			" (%" PRIu64 " bytes) freed while already free\n", addr, blk->size);
	else
		bprintf(&b, "mptrack: stray free: pool \"rte_malloc\" pointer 0x%" PRIxPTR
			" was never returned by the rte_malloc family\n", addr);
	print_stack(&b, "this free", sid, lcore, 1);
	if (blk != NULL) {
		print_stack(&b, "previous free", blk->free_stack, blk->free_lcore, blk->free_tsc != 0);
		print_stack(&b, "last alloc", blk->alloc_stack, blk->alloc_lcore, blk->alloc_tsc != 0);
	}
	write_all(2, b.s, b.n);
	pthread_mutex_unlock(&slow_lock);
	if (log_on) {
		log_simple(MPTRACK_EV_FAULT, MPTRACK_LOG_MALLOC_POOL, addr, sid, (uint32_t)kind);
		log_flush_now();  /* the process may die or _exit soon */
	}
	tls.busy--;
	fault_action();
}

/*
 * Is ptr a busy block of DPDK's heap?  1 yes, 0 no, -1 cannot tell.
 * rte_malloc_validate() does not help: without RTE_MALLOC_DEBUG it accepts any
 * pointer.  This reads the heap's element header, struct malloc_elem (an
 * internal of lib/eal/common/malloc_elem.h, 128 bytes before the data in
 * DPDK 22.11 to 23.11 on x86-64: state at offset 48, pad at 52; state 0 free,
 * 1 busy, 2 pad element whose pad field leads to the real element), after
 * checking that the header is in DPDK's memory.
 */
static int
heap_block_busy(const void *ptr)
{
#if RTE_VERSION >= RTE_VERSION_NUM(22, 11, 0, 0) && RTE_VERSION < RTE_VERSION_NUM(24, 0, 0, 0)
	const char *elem = (const char *)ptr - 128;
	uint32_t state;

	if (((uintptr_t)ptr & 7) != 0 || rte_mem_virt2memseg_list(ptr) == NULL ||
	    rte_mem_virt2memseg_list(elem) == NULL)
		return 0;
	state = *(const volatile uint32_t *)(elem + 48);
	if (state == 2) {
		elem -= *(const volatile uint32_t *)(elem + 52);
		if (rte_mem_virt2memseg_list(elem) == NULL)
			return 0;
		state = *(const volatile uint32_t *)(elem + 48);
	}
	return state == 1;
#else
	(void)ptr;
	return -1;
#endif
}

/*
 * Before the real rte_free or rte_realloc of ptr: mark its block free and
 * return 1, or report a duplicate or stray free and return 0 (the call must
 * then not go ahead: in log mode the heap is not corrupted further).
 */
static int
block_free(void *ptr, void *ra)
{
	struct mptrack_block *b;
	uint32_t expect = 2;
	int busy;

	if (ptr == NULL || mslots == NULL)
		return 1;
	b = block_slot((uintptr_t)ptr, 0);
	if (b != NULL && A_CAS(&b->state, &expect, 1)) {
		int nested = tls.busy++;
		b->free_stack = event_stack(ra, NULL, nested);
		b->free_lcore = cur_lcore();
		b->free_tsc = now_tsc();
		if (log_on)
			log_event(MPTRACK_EV_MFREE, MPTRACK_LOG_MALLOC_POOL, (uintptr_t)ptr,
				  b->free_stack, 0, b->free_lcore, b->free_tsc, mgen[b - mslots]);
		tls.busy--;
		return 1;
	}
	/* not allocated as far as the agent knows: ask the heap */
	busy = heap_block_busy(ptr);
	if (busy == 1 || (busy < 0 && b == NULL))
		return 1;  /* a live block the agent did not see allocated */
	if (b != NULL)
		malloc_fault(MPTRACK_FAULT_DUPLICATE_FREE, (uintptr_t)ptr, b, ra);
	else
		malloc_fault(MPTRACK_FAULT_STRAY_FREE, (uintptr_t)ptr, NULL, ra);
	return 0;
}

#define MALLOC_WRAP(ret_expr, size_expr)                                   \
	do {                                                                   \
		void *r;                                                       \
		config_init();                                                 \
		if (!cfg.malloc_on || tls_malloc_depth > 0)                    \
			return ret_expr;                                       \
		tls_malloc_depth++;                                            \
		r = ret_expr;                                                  \
		tls_malloc_depth--;                                            \
		block_alloc(r, (size_expr), __builtin_return_address(0));     \
		return r;                                                      \
	} while (0)

EXPORT void *
rte_malloc(const char *type, size_t size, unsigned int align)
{
	REAL(rte_malloc);
	MALLOC_WRAP(real_rte_malloc(type, size, align), size);
}

EXPORT void *
rte_zmalloc(const char *type, size_t size, unsigned int align)
{
	REAL(rte_zmalloc);
	MALLOC_WRAP(real_rte_zmalloc(type, size, align), size);
}

EXPORT void *
rte_calloc(const char *type, size_t num, size_t size, unsigned int align)
{
	REAL(rte_calloc);
	MALLOC_WRAP(real_rte_calloc(type, num, size, align), num * size);
}

EXPORT void *
rte_malloc_socket(const char *type, size_t size, unsigned int align, int socket)
{
	REAL(rte_malloc_socket);
	MALLOC_WRAP(real_rte_malloc_socket(type, size, align, socket), size);
}

EXPORT void *
rte_zmalloc_socket(const char *type, size_t size, unsigned int align, int socket)
{
	REAL(rte_zmalloc_socket);
	MALLOC_WRAP(real_rte_zmalloc_socket(type, size, align, socket), size);
}

EXPORT void *
rte_calloc_socket(const char *type, size_t num, size_t size, unsigned int align, int socket)
{
	REAL(rte_calloc_socket);
	MALLOC_WRAP(real_rte_calloc_socket(type, num, size, align, socket), num * size);
}

static void *
realloc_common(void *ptr, size_t size, void *(*call)(void *, size_t, unsigned int, int),
	       unsigned int align, int socket, void *ra)
{
	void *r;

	config_init();
	if (!cfg.malloc_on || tls_malloc_depth > 0)
		return call(ptr, size, align, socket);
	if (ptr != NULL && !block_free(ptr, ra))
		return NULL;
	tls_malloc_depth++;
	r = call(ptr, size, align, socket);
	tls_malloc_depth--;
	if (r != NULL) {
		block_alloc(r, size, ra);
	} else if (ptr != NULL && size != 0) {
		/* failed: ptr is still allocated */
		struct mptrack_block *b = block_slot((uintptr_t)ptr, 0);
		if (b != NULL) {
			/* a new generation in the log: the MFREE before it was undone */
			mgen[b - mslots]++;
			A_STORE(&b->state, 2);
			if (log_on)
				log_event(MPTRACK_EV_MALLOC, MPTRACK_LOG_MALLOC_POOL, (uintptr_t)ptr,
					  b->alloc_stack, b->size > UINT32_MAX ? UINT32_MAX :
					  (uint32_t)b->size, b->alloc_lcore, b->alloc_tsc,
					  mgen[b - mslots]);
		}
	}
	return r;
}

static void *
call_realloc(void *ptr, size_t size, unsigned int align, int socket)
{
	REAL(rte_realloc);
	(void)socket;
	return real_rte_realloc(ptr, size, align);
}

static void *
call_realloc_socket(void *ptr, size_t size, unsigned int align, int socket)
{
	REAL(rte_realloc_socket);
	return real_rte_realloc_socket(ptr, size, align, socket);
}

EXPORT void *
rte_realloc(void *ptr, size_t size, unsigned int align)
{
	return realloc_common(ptr, size, call_realloc, align, SOCKET_ID_ANY,
			      __builtin_return_address(0));
}

EXPORT void *
rte_realloc_socket(void *ptr, size_t size, unsigned int align, int socket)
{
	return realloc_common(ptr, size, call_realloc_socket, align, socket,
			      __builtin_return_address(0));
}

EXPORT void
rte_free(void *ptr)
{
	REAL(rte_free);

	config_init();
	if (!cfg.malloc_on || tls_malloc_depth > 0) {
		real_rte_free(ptr);
		return;
	}
	if (!block_free(ptr, __builtin_return_address(0)))
		return;
	tls_malloc_depth++;
	real_rte_free(ptr);
	tls_malloc_depth--;
}
