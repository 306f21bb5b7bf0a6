/* SPDX-License-Identifier: BSD-3-Clause
 * Copyright (c) 2026 The gdb-mptrack authors
 *
 * agent_private.h: what the preload agent's files share.  Not an interface:
 * the tables other tools read are in mptrack_agent.h.
 *
 * The core, mptrack_agent.c (configuration, pools, tracking, ops wrappers,
 * interposition, start), and the modules around it: agent_stacks.c (the
 * stack table and the unwinders), agent_faults.c (fault reports),
 * agent_malloc.c (rte_malloc tracking), agent_dump.c (the SIGRTMIN dump),
 * agent_log.c (the event log) and agent_attach.c (attach / detach).
 *
 * Everything declared here is hidden (HIDDEN, and the build's
 * -fvisibility=hidden): only the EXPORT symbols leave the library.  The ops
 * wrappers and all their quick path stay in mptrack_agent.c, one translation
 * unit, so that the compiler inlines them as it did in a single file; the
 * few helpers an event needs in another file too (the lcore, the clock, the
 * caller-only stack memo) are static inline here.  A thread-local variable
 * shared between files is declared with the same TLS model as its definition.
 */
#ifndef MPTRACK_AGENT_PRIVATE_H
#define MPTRACK_AGENT_PRIVATE_H

#include <dlfcn.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include <rte_cycles.h>
#include <rte_lcore.h>
#include <rte_mempool.h>

#include "mptrack_agent.h"

#define EXPORT __attribute__((visibility("default")))
#define HIDDEN __attribute__((visibility("hidden")))
#define LIKELY(x) __builtin_expect(!!(x), 1)
#define UNLIKELY(x) __builtin_expect(!!(x), 0)
/* The attach build (dlopen'ed into a running process by `mptrack agent attach`)
 * is compiled with MPTRACK_TLS_DYNAMIC: there the initial-exec TLS would have
 * to fit glibc's small static TLS surplus for dlopen, and it does not. */
#ifdef MPTRACK_TLS_DYNAMIC
#define TLS __thread __attribute__((tls_model("global-dynamic")))
#else
#define TLS __thread __attribute__((tls_model("initial-exec")))
#endif

#define A_LOAD(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define A_STORE(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)
#define A_XCHG(p, v) __atomic_exchange_n((p), (v), __ATOMIC_ACQ_REL)
#define A_ADD(p, v) __atomic_fetch_add((p), (v), __ATOMIC_RELAXED)
#define A_CAS(p, e, v) __atomic_compare_exchange_n((p), (e), (v), 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)

#define T mptrack_agent_tables

/* The real function an interposed one calls, looked up at its first call. */
#define REAL(name) \
	static __typeof__(name) *real_##name; \
	if (real_##name == NULL) \
		real_##name = (__typeof__(name) *)dlsym(RTLD_NEXT, #name)

/* --------------------------------------------------- mptrack_agent.c: config */

enum unwinder { UNW_NONE, UNW_CALLER, UNW_LIBUNWIND, UNW_GLIBC, UNW_FP, UNW_CFI };

struct agent_config {
	int ready;
	char *pools;            /* MPTRACK_POOLS, comma-separated globs; NULL: all */
	unsigned int depth;     /* MPTRACK_BT_DEPTH */
	unsigned int sample;    /* MPTRACK_BT_SAMPLE */
	int on_error;
	int malloc_on;
	char *dump_path;
	char *log_path;
	enum unwinder unwinder;
	enum unwinder fallback; /* cfi: for the stacks it does not follow */
	int (*unw_backtrace)(void **, int);
	int unwind_verify;      /* MPTRACK_UNWIND_VERIFY=1: check cfi against libunwind */
	int verbose;
};
HIDDEN extern struct agent_config cfg;

HIDDEN extern pthread_mutex_t slow_lock;  /* creation, faults */

/* rte_rdtsc() of the last millisecond (the clock thread), 0 when not kept */
HIDDEN extern uint64_t coarse_tsc;

static inline uint64_t
now_tsc(void)
{
	uint64_t t;

	if (UNLIKELY((t = __atomic_load_n(&coarse_tsc, __ATOMIC_RELAXED)) == 0))
		return rte_rdtsc();
	return t;
}

#define MEMO 64
/* A caller-only stack: the caller and the first 8 bytes of its events' stamp
 * (stack id, lcore); kept once the thread's lcore is known. */
struct caller_memo {
	uintptr_t ra;
	uint64_t who;
};

/* One thread's state, in one TLS block: one address computation per event. */
struct thread_state {
	int busy;               /* inside the agent on this thread */
	unsigned int sample;    /* events since the last full backtrace */
	unsigned int lcore;     /* cached rte_lcore_id(), 0xffffffff not yet */
	struct caller_memo ra_memo[MEMO];
};
HIDDEN extern TLS struct thread_state tls;

HIDDEN void write_all(int fd, const char *s, size_t n);
/* Not for signal handlers: uses vsnprintf. */
HIDDEN void __attribute__((format(printf, 1, 2))) say(const char *fmt, ...);
HIDDEN unsigned long env_ulong(const char *name, const char *alias, unsigned long dflt,
			       unsigned long max);
HIDDEN void *map_anon(size_t size, int shared);
HIDDEN void config_init(void);

/* ------------------------------------------------------------ agent_stacks.c */

HIDDEN void stacks_init(unsigned long capacity);
HIDDEN uint32_t stack_intern(const uint64_t *f, unsigned int n);
HIDDEN int stack_frames(uint32_t id, uint64_t *out);
HIDDEN unsigned int capture(void *ra, uint64_t *out, int full);
HIDDEN uint32_t event_stack(void *ra, const void *sp, int nested);
HIDDEN void unwind_verify_report(void);  /* MPTRACK_UNWIND_VERIFY=1, at exit */

/* Inline: the events' quick path (mptrack_agent.c) needs them, as do the modules. */

static inline uint64_t
mix64(uint64_t h)
{
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdull;
	h ^= h >> 33;
	h *= 0xc4ceb9fe1a85ec53ull;
	h ^= h >> 33;
	return h;
}

static inline uint16_t
cur_lcore(void)
{
	unsigned int l = tls.lcore;

	if (UNLIKELY(l == 0xffffffffu)) {
		l = rte_lcore_id();
		if (l != LCORE_ID_ANY)
			tls.lcore = l;
	}
	return l >= MPTRACK_LCORE_NONE ? MPTRACK_LCORE_NONE : (uint16_t)l;
}

/* The caller-only memo's slot for ra (a hit when its ra is ra). */
static __attribute__((always_inline)) inline struct caller_memo *
caller_memo(void *ra)
{
	return &tls.ra_memo[((uintptr_t)ra >> 2) & (MEMO - 1)];
}

/* ---------------------------------------------------- mptrack_agent.c: pools */

static inline struct mptrack_obj *
pool_objs(const struct mptrack_pool *p)
{
	return (struct mptrack_obj *)(uintptr_t)p->objs;
}

static inline struct mptrack_chunk *
pool_chunks(const struct mptrack_pool *p)
{
	return (struct mptrack_chunk *)(uintptr_t)p->chunks;
}

HIDDEN struct mptrack_pool *pool_lookup(const struct rte_mempool *mp);
HIDDEN struct mptrack_obj *obj_lookup(const struct mptrack_pool *p, uintptr_t addr);
HIDDEN struct mptrack_pool *pool_track(struct rte_mempool *mp, uint32_t asked_cache);
HIDDEN void pool_forget(struct mptrack_pool *p);
HIDDEN void pool_untrack(struct rte_mempool *mp);
HIDDEN void fast_index_build(struct mptrack_pool *p);

/* ------------------------------------------------------------ agent_faults.c */

struct buf {
	char s[16384];
	size_t n;
};

HIDDEN void __attribute__((format(printf, 2, 3))) bprintf(struct buf *b, const char *fmt, ...);
HIDDEN void print_stack(struct buf *b, const char *what, uint32_t id, uint16_t lcore, int have);
HIDDEN void fault_action(void);
/* Called by the tracking only: cold, so that its callers' paths to it are laid out as unlikely. */
HIDDEN __attribute__((noinline, cold)) void fault(int kind, struct mptrack_pool *p, uintptr_t addr,
						  struct mptrack_obj *o, void *ra);

/* --------------------------------------------- mptrack_agent.c: ops wrappers */

HIDDEN void patch_ops(unsigned int i);
HIDDEN void unpatch_ops(void);
HIDDEN rte_mempool_enqueue_t driver_enqueue(const struct rte_mempool *mp);

/* ------------------------------------------------------------ agent_malloc.c */

HIDDEN extern struct mptrack_malloc_table mtab;
HIDDEN extern struct mptrack_block *mslots;     /* mtab's slots; NULL: not tracking */
HIDDEN void malloc_init(unsigned long capacity);

/* -------------------------------------------------------------- agent_dump.c */

HIDDEN void dump_init(void);

/* --------------------------------------------------------------- agent_log.c */

HIDDEN extern int log_on;
HIDDEN extern uint32_t log_epoch[MPTRACK_MAX_POOLS];  /* the log's epoch of each pool slot */
HIDDEN void log_init(void);
HIDDEN void log_event(uint8_t kind, uint16_t pool, uint64_t addr, uint32_t stack, uint32_t aux,
		      uint16_t lcore, uint64_t tsc, uint32_t seq);
HIDDEN void log_simple(uint8_t kind, uint16_t pool, uint64_t addr, uint32_t stack, uint32_t aux);
HIDDEN void log_pool(const struct mptrack_pool *p);
HIDDEN void log_flush_now(void);
HIDDEN void log_fork_prepare(void);
HIDDEN void log_fork_parent(void);
HIDDEN void log_fork_child(void);

#endif /* MPTRACK_AGENT_PRIVATE_H */
