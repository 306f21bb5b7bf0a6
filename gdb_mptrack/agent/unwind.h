/* SPDX-License-Identifier: BSD-3-Clause
 * Copyright (c) 2026 The gdb-mptrack authors
 *
 * unwind.h: the preload agent's cached CFI unwinder (MPTRACK_UNWIND=cfi).
 *
 * Walks the program's stack from the frame that called into the agent using
 * the .eh_frame unwind rules of each return address, so it is correct on
 * code built without frame pointers.  Each return address's rule (where its
 * frame's CFA is, where the caller's rbp was saved) is read once from the
 * object's .eh_frame_hdr/.eh_frame and kept in a lock-free table shared by
 * all threads; each thread also memoises recent walks together with the
 * stack words they read, so a walk from a site seen before costs one load and
 * one compare per frame.  No malloc, no lock, no syscall in the steady state;
 * see unwind.c for the first-sight costs and the limits.
 */
#ifndef MPTRACK_UNWIND_H
#define MPTRACK_UNWIND_H

#include <stdint.h>

/* Set up: a rule table of about `rules` entries (a power of two is used),
 * walks memoised per thread for depth <= 16; count fresh walks in the stats
 * when counting (a counter shared by all threads: for tests only).  0 on
 * success. */
int mpt_unwind_init(unsigned long rules, unsigned int depth, int counting);

/*
 * The stack of the program frame that called into the agent, whose return
 * address is ra: ra first, then its callers, at most max (<= depth given to
 * init) frames into out.  The caller of this function must be agent code
 * built with frame pointers, reached from ra's function through agent frames
 * only.  Returns the number of frames, or -1 if some frame before max has a
 * rule this unwinder does not follow (signal frame, unusual CFA): use another
 * unwinder for this event.
 *
 * *tag: the tag of the memoised walk this one repeats (nonzero: out is not
 * filled, the caller reuses what it stored), or 0 after a fresh walk; then
 * mpt_unwind_memo_store(tag) attaches a nonzero tag to it.  Not re-entrant on
 * one thread (the agent's recursion guard ensures that).
 *
 * caller_sp, when not NULL, is where the agent frame that returns to ra
 * keeps its return address + 8 (its frame address + 16): the stack pointer of
 * ra's function.  It spares the walk up the agent's own frames; it is used
 * only if the word below it is ra and it lies in the live stack.
 */
int mpt_unwind(void *ra, const void *caller_sp, uint64_t *out, unsigned int max, uint32_t *tag);
void mpt_unwind_memo_store(uint32_t tag);

/*
 * The tag of the memoised walk from ra and caller_sp (as mpt_unwind() takes
 * them; not NULL here) if its stack words still read the same, else 0: a
 * lookup only, no walk and no change to the memo.
 */
uint32_t mpt_unwind_memo_lookup(void *ra, const void *caller_sp, unsigned int max);

/* Counters, for the agent's verbose report and the tests. */
struct mpt_unwind_stats {
	uint64_t rules;         /* rules learned (return addresses seen) */
	uint64_t rules_bp;      /* of which CFA = rbp + k (alloca, frame pointers) */
	uint64_t rules_bpderef; /* of which CFA = *(rbp + k) (stack realignment) */
	uint64_t rules_unsupported;
	uint64_t rules_dropped; /* table full: computed each time */
	uint64_t walks;         /* fresh walks (when counting) */
	uint64_t memo_hits;     /* only counted when verbose counters are on */
};
void mpt_unwind_stats(struct mpt_unwind_stats *out);

#endif /* MPTRACK_UNWIND_H */
