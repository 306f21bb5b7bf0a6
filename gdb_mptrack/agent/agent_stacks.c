/* SPDX-License-Identifier: BSD-3-Clause
 * Copyright (c) 2026 The gdb-mptrack authors
 *
 * agent_stacks.c: the preload agent's backtraces: the stack table, the
 * unwinder chosen by MPTRACK_UNWIND and the stack id of an event.
 *
 * A stack is stored once, in the table T.stacks (struct mptrack_stack and
 * its frames, mptrack_agent.h), mapped at start for MPTRACK_STACKS records
 * of cfg.depth frames.  stack_intern() hashes the frames and probes the
 * table: an empty record is claimed with one compare-and-swap of its hash
 * (top bit set while the frames are written, then the hash published), a
 * record with the same frames is reused, and the id is the record's index
 * + 1; 0 is "no stack" (no table, or no room within 128 probes: counted in
 * T.stacks_dropped).  No lock and no malloc, so any thread interns at any
 * time; a per-thread memo of recent hashes spares the probe.
 *
 * The frames come from the unwinder config_init() chose: cfi (unwind.c,
 * whose memoised walks give a stack id directly), with libunwind or glibc
 * for the stacks it does not follow; libunwind, glibc's backtrace() or
 * frame pointers, each of which walks from its own frame, so the agent's
 * frames are skipped up to the event's return address; or the caller only
 * (depth 1, the events that MPTRACK_BT_SAMPLE leaves out, and an event seen
 * while the agent is busy on the same thread: the unwinders may not be
 * re-entrant).  event_stack() is the events' way in (a single get or put
 * usually finds its stack id in a memo before: the quick path of
 * mptrack_agent.c), capture() that of the fault reports, which always want
 * the full stack.
 * MPTRACK_UNWIND_VERIFY=1 compares every cfi stack with libunwind's and
 * sums up at exit.
 */
#define _GNU_SOURCE
#include <execinfo.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "agent_private.h"
#include "mptrack_agent.h"
#include "unwind.h"

static unsigned char *stack_base;   /* T.stacks */
static uint32_t stack_mask;

void
stacks_init(unsigned long capacity)
{
	size_t rec = sizeof(struct mptrack_stack) + 8 * (size_t)cfg.depth;
	unsigned long cap = 1;

	while (cap < capacity)
		cap <<= 1;
	stack_base = map_anon(cap * rec, 0);
	if (stack_base == NULL) {
		say("mptrack-agent: cannot map the stack table (%lu records): no backtraces\n", cap);
		cfg.depth = 0;
		cfg.unwinder = UNW_NONE;
		T.bt_depth = 0;
		return;
	}
	stack_mask = (uint32_t)(cap - 1);
	T.stack_record_size = (uint32_t)rec;
	T.stacks_capacity = (uint32_t)cap;
	T.stacks = (uint64_t)(uintptr_t)stack_base;
}

static inline struct mptrack_stack *
stack_rec(uint32_t i)
{
	return (struct mptrack_stack *)(stack_base + (size_t)i * T.stack_record_size);
}

static inline uint64_t
stack_hash(const uint64_t *f, unsigned int n)
{
	uint64_t h = 0x9e3779b97f4a7c15ull ^ n;

	for (unsigned int i = 0; i < n; i++)
		h = mix64(h ^ f[i]) + i;
	h &= ~(1ull << 63);
	return h ? h : 1;
}

/* Per-thread memo of recent stacks: hash -> id. */
static TLS struct { uint64_t hash; uint32_t id; } tls_memo[MEMO];

uint32_t
stack_intern(const uint64_t *f, unsigned int n)
{
	uint64_t h, want;
	uint32_t i;

	if (n == 0 || stack_base == NULL)
		return 0;
	h = stack_hash(f, n);
	if (tls_memo[h & (MEMO - 1)].hash == h)
		return tls_memo[h & (MEMO - 1)].id;
	i = (uint32_t)h & stack_mask;
	for (unsigned int probe = 0; probe < 128; probe++, i = (i + 1) & stack_mask) {
		struct mptrack_stack *r = stack_rec(i);
		uint64_t cur = A_LOAD(&r->hash);

		if (cur == 0) {
			want = 0;
			if (A_CAS(&r->hash, &want, h | (1ull << 63))) {
				r->depth = n;
				memcpy(r + 1, f, 8 * (size_t)n);
				A_STORE(&r->hash, h);
				A_ADD(&T.stacks_used, 1);
				goto found;
			}
			cur = want;
		}
		if (cur == h && r->depth == n && memcmp(r + 1, f, 8 * (size_t)n) == 0)
			goto found;
		continue;
found:
		tls_memo[h & (MEMO - 1)].hash = h;
		tls_memo[h & (MEMO - 1)].id = i + 1;
		return i + 1;
	}
	A_ADD(&T.stacks_dropped, 1);
	return 0;
}

int
stack_frames(uint32_t id, uint64_t *out)
{
	struct mptrack_stack *r;

	if (id == 0 || stack_base == NULL || id > T.stacks_capacity)
		return 0;
	r = stack_rec(id - 1);
	if (A_LOAD(&r->hash) == 0 || (A_LOAD(&r->hash) >> 63))
		return 0;
	memcpy(out, r + 1, 8 * (size_t)r->depth);
	return (int)r->depth;
}

static TLS uintptr_t tls_stack_lo, tls_stack_hi;  /* fp unwinder bounds */

static void
stack_bounds(void)
{
	pthread_attr_t a;
	void *addr;
	size_t size;

	tls_stack_lo = 1;
	if (pthread_getattr_np(pthread_self(), &a) == 0) {
		if (pthread_attr_getstack(&a, &addr, &size) == 0) {
			tls_stack_lo = (uintptr_t)addr;
			tls_stack_hi = (uintptr_t)addr + size;
		}
		pthread_attr_destroy(&a);
	}
}

/* Frame-pointer walk from our own frame, bounded by the thread's stack. */
static __attribute__((noinline)) int
fp_backtrace(void **buf, int max)
{
	uintptr_t *fp = __builtin_frame_address(0);
	int n = 0;

	if (UNLIKELY(tls_stack_lo == 0))
		stack_bounds();
	while (n < max) {
		uintptr_t *next;

		if ((uintptr_t)fp < tls_stack_lo || (uintptr_t)fp + 16 > tls_stack_hi ||
		    ((uintptr_t)fp & 7) != 0)
			break;
		buf[n++] = (void *)fp[1];
		next = (uintptr_t *)fp[0];
		if (next <= fp)
			break;
		fp = next;
	}
	return n;
}

/*
 * The stack of the event whose first frame (the return address into the
 * program) is ra, with unwinder u (libunwind, glibc or fp): each walks from
 * its own frame, so the agent's frames are skipped up to ra.
 */
static __attribute__((noinline)) unsigned int
capture_with(enum unwinder u, void *ra, uint64_t *out)
{
	void *buf[MPTRACK_MAX_DEPTH + 8];
	int n = 0, start = -1;

	switch (u) {
	case UNW_LIBUNWIND:
		n = cfg.unw_backtrace(buf, (int)cfg.depth + 6);
		break;
	case UNW_GLIBC:
		n = backtrace(buf, (int)cfg.depth + 6);
		break;
	case UNW_FP:
		n = fp_backtrace(buf, (int)cfg.depth + 6);
		break;
	default:
		break;
	}
	for (int i = 0; i < n && i < 8; i++)
		if (buf[i] == ra) {
			start = i;
			break;
		}
	if (start < 0) {
		out[0] = (uint64_t)(uintptr_t)ra;
		return 1;
	}
	n -= start;
	if (n > (int)cfg.depth)
		n = (int)cfg.depth;
	for (int i = 0; i < n; i++)
		out[i] = (uint64_t)(uintptr_t)buf[start + i];
	return (unsigned int)n;
}

static uint64_t unwind_fallbacks;       /* cfi walks done by the fallback (verify mode only) */

/*
 * The stack of the event whose first frame is ra: frames innermost first, at
 * most cfg.depth; the caller only when not full.
 */
__attribute__((noinline)) unsigned int
capture(void *ra, uint64_t *out, int full)
{
	if (!full || cfg.unwinder == UNW_CALLER) {
		out[0] = (uint64_t)(uintptr_t)ra;
		return 1;
	}
	if (cfg.unwinder == UNW_CFI) {
		uint32_t tag;
		int n = mpt_unwind(ra, NULL, out, cfg.depth, &tag);
		if (n >= 0 && tag != 0 && (n = stack_frames(tag, out)) > 0)
			return (unsigned int)n;
		if (n >= 0) {
			mpt_unwind_memo_store(0);  /* not interned here: forget the walk */
			return (unsigned int)n;
		}
		if (UNLIKELY(cfg.unwind_verify))
			A_ADD(&unwind_fallbacks, 1);
		return capture_with(cfg.fallback, ra, out);
	}
	return capture_with(cfg.unwinder, ra, out);
}

/* MPTRACK_UNWIND_VERIFY=1: every cfi stack is compared with libunwind's. */
static uint64_t verify_checked, verify_differ;

static __attribute__((noinline, cold)) void
unwind_verify(void *ra, uint32_t id)
{
	uint64_t mine[MPTRACK_MAX_DEPTH], theirs[MPTRACK_MAX_DEPTH];
	int n = stack_frames(id, mine);
	unsigned int m = capture_with(UNW_LIBUNWIND, ra, theirs);

	A_ADD(&verify_checked, 1);
	if ((unsigned int)n == m && memcmp(mine, theirs, 8 * (size_t)m) == 0)
		return;
	if (A_ADD(&verify_differ, 1) < 5) {
		char line[1024];
		size_t k = 0;
		k += (size_t)snprintf(line + k, sizeof(line) - k, "mptrack-agent: unwind verify: cfi");
		for (int i = 0; i < n && k < sizeof(line) - 40; i++)
			k += (size_t)snprintf(line + k, sizeof(line) - k, " %#" PRIx64, mine[i]);
		k += (size_t)snprintf(line + k, sizeof(line) - k, " | libunwind");
		for (unsigned int i = 0; i < m && k < sizeof(line) - 40; i++)
			k += (size_t)snprintf(line + k, sizeof(line) - k, " %#" PRIx64, theirs[i]);
		say("%s\n", line);
	}
}

void
unwind_verify_report(void)
{
	struct mpt_unwind_stats st;

	mpt_unwind_stats(&st);
	say("mptrack-agent: unwind verify: %" PRIu64 " stacks compared with libunwind, %" PRIu64
	    " differ; %" PRIu64 " walks, %" PRIu64 " rules (%" PRIu64 " rbp-based, %" PRIu64
	    " realigned, %" PRIu64 " not followed), %" PRIu64 " stacks by the fallback\n",
	    A_LOAD(&verify_checked), A_LOAD(&verify_differ), st.walks, st.rules, st.rules_bp,
	    st.rules_bpderef, st.rules_unsupported, A_LOAD(&unwind_fallbacks));
}

/* The stack id of an event; sampled events get the caller only. */
__attribute__((noinline)) uint32_t
event_stack(void *ra, const void *sp, int nested)
{
	uint64_t f[MPTRACK_MAX_DEPTH];
	unsigned int n;
	int full = !nested;  /* the unwinder may not be re-entrant */

	if (cfg.depth == 0)
		return 0;
	if (cfg.sample > 1) {
		if (++tls.sample >= cfg.sample)
			tls.sample = 0;
		else
			full = 0;
	}
	if (cfg.depth == 1 || !full) {
		struct caller_memo *m = caller_memo(ra);
		uint32_t id;
		if (LIKELY(m->ra == (uintptr_t)ra))
			return (uint32_t)m->who;
		f[0] = (uint64_t)(uintptr_t)ra;
		id = stack_intern(f, 1);
		if (tls.lcore != 0xffffffffu) {
			m->ra = (uintptr_t)ra;
			m->who = id | (uint64_t)cur_lcore() << 32;
		}
		return id;
	}
	if (cfg.unwinder == UNW_CFI) {
		uint32_t tag, id;
		int k = mpt_unwind(ra, sp, f, cfg.depth, &tag);
		if (LIKELY(k >= 0)) {
			if (tag != 0) {
				id = tag;   /* the same walk as a memoised one */
			} else {
				id = stack_intern(f, (unsigned int)k);
				mpt_unwind_memo_store(id);
			}
			if (UNLIKELY(cfg.unwind_verify) && cfg.unw_backtrace != NULL && id != 0)
				unwind_verify(ra, id);
			return id;
		}
		if (UNLIKELY(cfg.unwind_verify))
			A_ADD(&unwind_fallbacks, 1);
		n = capture_with(cfg.fallback, ra, f);
		return stack_intern(f, n);
	}
	n = capture(ra, f, 1);
	return stack_intern(f, n);
}
