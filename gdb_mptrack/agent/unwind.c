/* SPDX-License-Identifier: BSD-3-Clause
 * Copyright (c) 2026 The gdb-mptrack authors
 *
 * unwind.c: the preload agent's cached CFI unwinder (x86-64).  See unwind.h.
 *
 * A frame's state is (pc, sp, bp): the return address into it, the stack
 * pointer at that call (the callee's CFA) and rbp.  The rule of a return
 * address says how to get its caller's state:
 *
 *     CFA = sp + k | bp + k | *(bp + k)      (the forms GCC and clang emit)
 *     caller pc = *(CFA - 8)                  (else: not followed)
 *     caller bp = bp | *(CFA + j)             (rbp unchanged or saved)
 *     caller sp = CFA
 *
 * Rules come from the object's .eh_frame: _dl_find_object (glibc >= 2.35,
 * lock-free and async-signal-safe; else dl_iterate_phdr, which takes the
 * loader's lock) gives the PT_GNU_EH_FRAME segment, its binary search table
 * gives the FDE, and a small interpreter runs the CIE's and the FDE's call
 * frame instructions up to the call instruction (pc - 1).  Each rule is
 * learned once per return address and kept in an open-addressing table shared
 * by all threads (a slot is claimed with one compare-and-swap, its value
 * written, then its key published), so the steady state is a few loads per
 * frame.  A rule this interpreter does not follow (a signal frame, a CFA in
 * another register, the return address elsewhere than CFA - 8) is recorded as
 * unsupported and makes mpt_unwind() return -1.  Every stack read is bounded
 * by the live part of the thread's stack: above the unwinder's own frame, below
 * the top of the stack's mapping (found in /proc/self/maps with open and read
 * at the thread's first walk, so that even a first walk in a signal handler
 * does no malloc).
 *
 * Memo.  The walk is a function of (pc, sp, bp) of the first frame and of
 * the stack words it reads: the callers' return addresses and the saved rbp
 * values that a later rbp-based CFA uses.  Each thread keeps its recent
 * walks (direct-mapped by pc and sp) with the words they read and the stack
 * id the agent gave them; a walk from the same pc and sp whose words all read
 * the same again is the same walk, so its stack id is reused with no rule
 * lookup, no hashing and no interning.  The per-thread memo is mapped at the
 * thread's first walk and unmapped at its exit.
 *
 * Limits: code unloaded and other code loaded at the same address keeps the
 * old rules (stacks through it may be wrong, never an invalid read, since
 * reads are bounded by the stack); a walk that meets a signal frame or leaves
 * the thread's stack (sigaltstack) is done by the agent's other unwinder.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <link.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include "unwind.h"

/* as in agent_private.h: the attach build (dlopen'ed) uses dynamic TLS */
#ifdef MPTRACK_TLS_DYNAMIC
#define TLS __thread __attribute__((tls_model("global-dynamic")))
#else
#define TLS __thread __attribute__((tls_model("initial-exec")))
#endif
#define LIKELY(x) __builtin_expect(!!(x), 1)
#define UNLIKELY(x) __builtin_expect(!!(x), 0)

/* ------------------------------------------------------------------ rules */

/*
 * A rule, packed in 64 bits (0: none):
 *   bits 0-1   CFA kind: 1 sp + off, 2 bp + off, 3 *(bp + off)
 *   bit 2      valid (set in every learned rule)
 *   bit 3      end of stack: the caller's pc is undefined (_start, thread start)
 *   bit 4      unsupported: mpt_unwind() returns -1 here
 *   bit 5      rbp saved at CFA + bp_off (else unchanged)
 *   bit 6      with bit 5: saved at rbp + bp_off instead (GCC's realigned frames)
 *   bits 16-31 bp_off (int16)
 *   bits 32-63 cfa_off (int32)
 */
#define R_SP 1u
#define R_BP 2u
#define R_BPDEREF 3u
#define R_VALID (1u << 2)
#define R_END (1u << 3)
#define R_UNSUP (1u << 4)
#define R_BPSAVED (1u << 5)
#define R_BPREL (1u << 6)

static inline uint64_t
rule_make(unsigned int kind, int32_t cfa_off, unsigned int bp_flags, int16_t bp_off)
{
	return (uint64_t)(uint32_t)cfa_off << 32 | (uint64_t)(uint16_t)bp_off << 16 |
	       bp_flags | R_VALID | kind;
}

#define RULE_KIND(r) ((unsigned int)(r) & 3u)
#define RULE_CFA_OFF(r) ((int64_t)(int32_t)((r) >> 32))
#define RULE_BP_OFF(r) ((int64_t)(int16_t)((r) >> 16))

struct rule_slot {
	uint64_t key;   /* pc; BUSY | pc while being written; 0 empty */
	uint64_t rule;
};
#define BUSY (1ull << 63)
#define PROBES 32

static struct rule_slot *rules;
static uint64_t rules_mask;
static unsigned int memo_depth;
static int counting;            /* stats.walks: a shared counter, for tests only */
static struct mpt_unwind_stats stats;
static pthread_key_t memo_key;

/* --- reading DWARF */

struct rd {
	const uint8_t *p, *end;
	int bad;
};

static uint64_t
rd_uleb(struct rd *r)
{
	uint64_t v = 0;
	unsigned int shift = 0;

	while (r->p < r->end) {
		uint8_t b = *r->p++;
		if (shift < 64)
			v |= (uint64_t)(b & 0x7f) << shift;
		shift += 7;
		if (!(b & 0x80))
			return v;
	}
	r->bad = 1;
	return 0;
}

static int64_t
rd_sleb(struct rd *r)
{
	int64_t v = 0;
	unsigned int shift = 0;
	uint8_t b = 0;

	while (r->p < r->end) {
		b = *r->p++;
		if (shift < 64)
			v |= (int64_t)((uint64_t)(b & 0x7f) << shift);
		shift += 7;
		if (!(b & 0x80)) {
			if (shift < 64 && (b & 0x40))
				v |= -((int64_t)1 << shift);
			return v;
		}
	}
	r->bad = 1;
	return 0;
}

static uint64_t
rd_fixed(struct rd *r, unsigned int n)
{
	uint64_t v = 0;

	if ((size_t)(r->end - r->p) < n) {
		r->bad = 1;
		return 0;
	}
	memcpy(&v, r->p, n);  /* little-endian */
	r->p += n;
	return v;
}

/* A pointer in DW_EH_PE encoding enc; datarel relative to dbase. */
static uint64_t
rd_enc(struct rd *r, uint8_t enc, uintptr_t dbase)
{
	uintptr_t at = (uintptr_t)r->p;
	uint64_t v;

	if (enc == 0xff)        /* DW_EH_PE_omit */
		return 0;
	switch (enc & 0x0f) {
	case 0x00: v = rd_fixed(r, 8); break;                          /* absptr */
	case 0x01: v = rd_uleb(r); break;
	case 0x02: v = rd_fixed(r, 2); break;
	case 0x03: v = rd_fixed(r, 4); break;
	case 0x04: v = rd_fixed(r, 8); break;
	case 0x09: v = (uint64_t)rd_sleb(r); break;
	case 0x0a: v = (uint64_t)(int64_t)(int16_t)rd_fixed(r, 2); break;
	case 0x0b: v = (uint64_t)(int64_t)(int32_t)rd_fixed(r, 4); break;
	case 0x0c: v = rd_fixed(r, 8); break;
	default: r->bad = 1; return 0;
	}
	switch (enc & 0x70) {
	case 0x00: break;
	case 0x10: v += at; break;      /* pcrel */
	case 0x30: v += dbase; break;   /* datarel */
	default: r->bad = 1; return 0;  /* textrel, funcrel, aligned: not on x86-64 Linux */
	}
	if (enc & 0x80)                 /* indirect */
		r->bad = 1;
	return v;
}

/* --- finding the FDE */

#ifndef DLFO_EH_SEGMENT_TYPE
#error "the CFI unwinder needs glibc >= 2.35 (_dl_find_object)"
#endif

/* The PT_GNU_EH_FRAME segment (.eh_frame_hdr) of the object holding pc. */
static const uint8_t *
eh_frame_hdr_of(uintptr_t pc)
{
	struct dl_find_object dlfo;

	if (_dl_find_object((void *)pc, &dlfo) != 0)
		return NULL;
	return dlfo.dlfo_eh_frame;
}

/* The FDE covering pc from the .eh_frame_hdr's binary search table. */
static const uint8_t *
find_fde(uintptr_t pc)
{
	const uint8_t *hdr = eh_frame_hdr_of(pc);
	struct rd r;
	uint64_t count;
	const int32_t *table;
	size_t lo, hi;

	if (hdr == NULL || hdr[0] != 1)
		return NULL;
	r.p = hdr + 4;
	r.end = hdr + 64;
	r.bad = 0;
	(void)rd_enc(&r, hdr[1], (uintptr_t)hdr);      /* eh_frame_ptr */
	count = rd_enc(&r, hdr[2], (uintptr_t)hdr);
	if (r.bad || hdr[3] != 0x3b || count == 0)     /* datarel | sdata4: what ld writes */
		return NULL;
	table = (const int32_t *)r.p;
	lo = 0;
	hi = count;
	while (hi - lo > 1) {  /* the last entry whose initial location is <= pc */
		size_t mid = lo + (hi - lo) / 2;
		if ((uintptr_t)hdr + (intptr_t)table[2 * mid] <= pc)
			lo = mid;
		else
			hi = mid;
	}
	if ((uintptr_t)hdr + (intptr_t)table[2 * lo] > pc)
		return NULL;
	return hdr + (intptr_t)table[2 * lo + 1];
}

/* --- the interpreter */

enum { REG_BP = 6, REG_SP = 7, REG_RA = 16 };
enum { BP_SAME, BP_SAVED, BP_SAVED_BPREL, BP_BAD };
enum { RA_STD, RA_END, RA_BAD };

struct cfi_state {
	unsigned int cfa_kind;  /* R_SP, R_BP, R_BPDEREF; 0: not followed */
	int64_t cfa_off;
	int bp;                 /* BP_* */
	int64_t bp_off;
	int ra;                 /* RA_* */
};

struct cie {
	uint64_t code_align;
	int64_t data_align;
	uint64_t ra_reg;
	uint8_t fde_enc;
	int signal;
	int has_z;              /* FDEs have augmentation data */
	const uint8_t *insns, *insns_end;
};

static int
parse_cie(const uint8_t *p, struct cie *c)
{
	struct rd r;
	uint32_t len;
	const char *aug;
	uint8_t version;

	memcpy(&len, p, 4);
	if (len == 0 || len == 0xffffffffu)
		return -1;
	r.p = p + 8;            /* past length and CIE id (0) */
	r.end = p + 4 + len;
	r.bad = 0;
	version = (uint8_t)rd_fixed(&r, 1);
	if (version != 1 && version != 3)
		return -1;
	aug = (const char *)r.p;
	while (r.p < r.end && *r.p)
		r.p++;
	r.p++;
	c->code_align = rd_uleb(&r);
	c->data_align = rd_sleb(&r);
	c->ra_reg = version == 1 ? rd_fixed(&r, 1) : rd_uleb(&r);
	c->fde_enc = 0;
	c->signal = 0;
	c->has_z = aug[0] == 'z';
	if (aug[0] == 'z') {
		uint64_t alen = rd_uleb(&r);
		const uint8_t *aend = r.p + alen;
		for (const char *a = aug + 1; *a && !r.bad; a++) {
			if (*a == 'R') {
				c->fde_enc = (uint8_t)rd_fixed(&r, 1);
			} else if (*a == 'P') {
				uint8_t enc = (uint8_t)rd_fixed(&r, 1);
				(void)rd_enc(&r, (uint8_t)(enc & 0x7f), 0);  /* skip the personality */
				r.bad = 0;
			} else if (*a == 'L') {
				(void)rd_fixed(&r, 1);
			} else if (*a == 'S') {
				c->signal = 1;
			} else {
				break;  /* unknown: the rest is skipped by length */
			}
		}
		r.p = aend;
	} else if (aug[0] != '\0') {
		return -1;
	}
	if (r.bad || r.p > r.end || c->ra_reg != REG_RA)
		return -1;
	c->insns = r.p;
	c->insns_end = r.end;
	return 0;
}

#define STATE_STACK 8

/* Run instructions [p, end) from location loc while loc <= target. */
static int
run_cfi(const uint8_t *p, const uint8_t *end, const struct cie *c, uintptr_t loc,
	uintptr_t target, struct cfi_state *s, const struct cfi_state *initial)
{
	struct cfi_state saved[STATE_STACK];
	unsigned int nsaved = 0;
	struct rd r = {p, end, 0};

	while (r.p < r.end && !r.bad) {
		uint8_t op = *r.p++;
		uint64_t reg, delta = 0;
		int64_t off;

		switch (op >> 6) {
		case 1:         /* DW_CFA_advance_loc */
			delta = (op & 0x3f) * c->code_align;
			goto advance;
		case 2:         /* DW_CFA_offset */
			reg = op & 0x3f;
			off = (int64_t)rd_uleb(&r) * c->data_align;
			goto offset;
		case 3:         /* DW_CFA_restore */
			reg = op & 0x3f;
			goto restore;
		default:
			break;
		}
		switch (op) {
		case 0x00:      /* nop */
			continue;
		case 0x01:      /* set_loc */
			loc = rd_enc(&r, c->fde_enc, 0);
			if (loc > target)
				return 0;
			continue;
		case 0x02: delta = rd_fixed(&r, 1) * c->code_align; goto advance;
		case 0x03: delta = rd_fixed(&r, 2) * c->code_align; goto advance;
		case 0x04: delta = rd_fixed(&r, 4) * c->code_align; goto advance;
		case 0x05:      /* offset_extended */
			reg = rd_uleb(&r);
			off = (int64_t)rd_uleb(&r) * c->data_align;
			goto offset;
		case 0x11:      /* offset_extended_sf */
			reg = rd_uleb(&r);
			off = rd_sleb(&r) * c->data_align;
			goto offset;
		case 0x2f:      /* GNU_negative_offset_extended */
			reg = rd_uleb(&r);
			off = -(int64_t)rd_uleb(&r) * c->data_align;
			goto offset;
		case 0x06:      /* restore_extended */
			reg = rd_uleb(&r);
			goto restore;
		case 0x07:      /* undefined */
			reg = rd_uleb(&r);
			if (reg == REG_RA)
				s->ra = RA_END;
			else if (reg == REG_BP)
				s->bp = BP_BAD;
			continue;
		case 0x08:      /* same_value */
			reg = rd_uleb(&r);
			if (reg == REG_BP)
				s->bp = BP_SAME;
			else if (reg == REG_RA)
				s->ra = RA_BAD;
			continue;
		case 0x09:      /* register */
			reg = rd_uleb(&r);
			(void)rd_uleb(&r);
			goto other;
		case 0x0a:      /* remember_state */
			if (nsaved == STATE_STACK)
				return -1;
			saved[nsaved++] = *s;
			continue;
		case 0x0b:      /* restore_state */
			if (nsaved == 0)
				return -1;
			/* the CFA is part of the state too (DWARF 5 keeps it; GCC expects that) */
			*s = saved[--nsaved];
			continue;
		case 0x0c:      /* def_cfa */
			reg = rd_uleb(&r);
			s->cfa_off = (int64_t)rd_uleb(&r);
			s->cfa_kind = reg == REG_SP ? R_SP : reg == REG_BP ? R_BP : 0;
			continue;
		case 0x12:      /* def_cfa_sf */
			reg = rd_uleb(&r);
			s->cfa_off = rd_sleb(&r) * c->data_align;
			s->cfa_kind = reg == REG_SP ? R_SP : reg == REG_BP ? R_BP : 0;
			continue;
		case 0x0d:      /* def_cfa_register */
			reg = rd_uleb(&r);
			if (s->cfa_kind == R_BPDEREF)
				s->cfa_kind = 0;
			else
				s->cfa_kind = reg == REG_SP ? R_SP : reg == REG_BP ? R_BP : 0;
			continue;
		case 0x0e:      /* def_cfa_offset */
			s->cfa_off = (int64_t)rd_uleb(&r);
			if (s->cfa_kind == R_BPDEREF)
				s->cfa_kind = 0;
			continue;
		case 0x13:      /* def_cfa_offset_sf */
			s->cfa_off = rd_sleb(&r) * c->data_align;
			if (s->cfa_kind == R_BPDEREF)
				s->cfa_kind = 0;
			continue;
		case 0x0f: {    /* def_cfa_expression: DW_OP_breg6 k; DW_OP_deref (GCC's DRAP) */
			uint64_t len = rd_uleb(&r);
			const uint8_t *e = r.p;
			r.p += len;
			s->cfa_kind = 0;
			if (r.p > r.end || len < 3)
				continue;
			if (e[0] == 0x76 && e[len - 1] == 0x06) {
				struct rd x = {e + 1, e + len - 1, 0};
				int64_t k = rd_sleb(&x);
				if (!x.bad && x.p == e + len - 1) {
					s->cfa_kind = R_BPDEREF;
					s->cfa_off = k;
				}
			}
			continue;
		}
		case 0x10: {    /* expression: rbp at DW_OP_breg6 k is understood */
			uint64_t len;
			const uint8_t *e;
			reg = rd_uleb(&r);
			len = rd_uleb(&r);
			e = r.p;
			r.p += len;
			if (reg == REG_BP && len >= 2 && r.p <= r.end && e[0] == 0x76) {
				struct rd x = {e + 1, e + len, 0};
				int64_t k = rd_sleb(&x);
				if (!x.bad && x.p == e + len) {
					s->bp = BP_SAVED_BPREL;
					s->bp_off = k;
					continue;
				}
			}
			goto other;
		}
		case 0x16:      /* val_expression */
			reg = rd_uleb(&r);
			r.p += rd_uleb(&r);
			goto other;
		case 0x14:      /* val_offset */
			reg = rd_uleb(&r);
			(void)rd_uleb(&r);
			goto other;
		case 0x15:      /* val_offset_sf */
			reg = rd_uleb(&r);
			(void)rd_sleb(&r);
			goto other;
		case 0x2e:      /* GNU_args_size */
			(void)rd_uleb(&r);
			continue;
		default:
			return -1;
		}
advance:
		loc += delta;
		if (loc > target)
			return 0;
		continue;
offset:
		if (reg == REG_BP) {
			s->bp = BP_SAVED;
			s->bp_off = off;
		} else if (reg == REG_RA) {
			s->ra = off == -8 ? RA_STD : RA_BAD;
		}
		continue;
restore:
		if (initial != NULL) {
			if (reg == REG_BP) {
				s->bp = initial->bp;
				s->bp_off = initial->bp_off;
			} else if (reg == REG_RA) {
				s->ra = initial->ra;
			}
		}
		continue;
other:
		if (reg == REG_BP)
			s->bp = BP_BAD;
		else if (reg == REG_RA)
			s->ra = RA_BAD;
		continue;
	}
	return r.bad || r.p > r.end ? -1 : 0;
}

/* The rule of return address pc (0 if the FDE cannot be found or read). */
static uint64_t
learn(uintptr_t pc)
{
	uintptr_t target = pc - 1;      /* the call instruction */
	const uint8_t *fde = find_fde(target), *cie_p;
	struct cie c;
	struct cfi_state s = {0, 0, BP_SAME, 0, RA_BAD}, initial;
	struct rd r;
	uint32_t len, cie_off;
	uintptr_t begin, range;

	if (fde == NULL)
		return R_VALID | R_UNSUP;
	memcpy(&len, fde, 4);
	memcpy(&cie_off, fde + 4, 4);
	if (len == 0 || len == 0xffffffffu || cie_off == 0)
		return R_VALID | R_UNSUP;
	cie_p = fde + 4 - cie_off;
	if (parse_cie(cie_p, &c) != 0 || c.signal)
		return R_VALID | R_UNSUP;
	r.p = fde + 8;
	r.end = fde + 4 + len;
	r.bad = 0;
	begin = rd_enc(&r, c.fde_enc, 0);
	range = rd_enc(&r, (uint8_t)(c.fde_enc & 0x0f), 0);
	if (r.bad || target < begin || target - begin >= range)
		return R_VALID | R_UNSUP;
	if (c.has_z)
		r.p += rd_uleb(&r);
	if (r.bad || r.p > r.end)
		return R_VALID | R_UNSUP;
	if (run_cfi(c.insns, c.insns_end, &c, begin, (uintptr_t)-1, &s, NULL) != 0)
		return R_VALID | R_UNSUP;
	initial = s;
	if (run_cfi(r.p, r.end, &c, begin, target, &s, &initial) != 0)
		return R_VALID | R_UNSUP;
	if (s.ra == RA_END)
		return R_VALID | R_END;
	if (s.ra != RA_STD || s.cfa_kind == 0 || s.bp == BP_BAD ||
	    s.cfa_off != (int32_t)s.cfa_off || s.bp_off != (int16_t)s.bp_off)
		return R_VALID | R_UNSUP;
	return rule_make(s.cfa_kind, (int32_t)s.cfa_off,
			 s.bp == BP_SAVED ? R_BPSAVED : s.bp == BP_SAVED_BPREL ? R_BPSAVED | R_BPREL : 0,
			 (int16_t)s.bp_off);
}

static inline uint64_t
pc_hash(uintptr_t pc)
{
	return (pc * 0x9e3779b97f4a7c15ull) >> 20;
}

/* The rule of pc: from the table, else learned (and stored if there is room). */
static uint64_t
rule_of(uintptr_t pc)
{
	uint64_t i = pc_hash(pc) & rules_mask, rule;

	for (unsigned int probe = 0; probe < PROBES; probe++, i = (i + 1) & rules_mask) {
		uint64_t k = __atomic_load_n(&rules[i].key, __ATOMIC_ACQUIRE);
		if (LIKELY(k == pc))
			return rules[i].rule;
		if (k == 0) {
			uint64_t want = 0;
			rule = learn(pc);
			if (__atomic_compare_exchange_n(&rules[i].key, &want, BUSY | pc, 0,
							__ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
				rules[i].rule = rule;
				__atomic_store_n(&rules[i].key, pc, __ATOMIC_RELEASE);
				__atomic_fetch_add(&stats.rules, 1, __ATOMIC_RELAXED);
				if (rule & R_UNSUP)
					__atomic_fetch_add(&stats.rules_unsupported, 1, __ATOMIC_RELAXED);
				else if (!(rule & R_END) && RULE_KIND(rule) == R_BP)
					__atomic_fetch_add(&stats.rules_bp, 1, __ATOMIC_RELAXED);
				else if (!(rule & R_END) && RULE_KIND(rule) == R_BPDEREF)
					__atomic_fetch_add(&stats.rules_bpderef, 1, __ATOMIC_RELAXED);
				return rule;
			}
			if (want == pc)
				return rule;
			if (want == (BUSY | pc))
				return rule;    /* another thread is storing the same */
		}
	}
	__atomic_fetch_add(&stats.rules_dropped, 1, __ATOMIC_RELAXED);
	return learn(pc);
}

/* ------------------------------------------------------------------- memo */

#define MEMO_SLOTS 64
#define MEMO_MAX_DEPTH 16

struct memo {
	uintptr_t pc, sp, bp;
	uint32_t tag;           /* 0: empty */
	uint8_t need_bp;        /* bp is part of the key */
	uint8_t nreads;
	uint8_t n;              /* frames */
	uint8_t reserved;
	struct {
		uintptr_t addr;
		uint64_t val;
	} reads[3 * MEMO_MAX_DEPTH];
};

struct thread_state {
	uintptr_t lo, hi;       /* the thread's stack mapping (the main thread's as it may grow) */
	struct memo *last;      /* the fresh walk to tag */
	size_t size;
	struct memo memo[MEMO_SLOTS];
};

static TLS struct thread_state *tls_unw;

static void
thread_gone(void *arg)
{
	struct thread_state *t = arg;

	if (t != NULL) {
		if (tls_unw == t)
			tls_unw = NULL;
		munmap(t, t->size);
	}
}

/*
 * The mapping of /proc/self/maps that holds addr, with open, read and close
 * only (async-signal-safe, no malloc: a thread's first walk may be in a signal
 * handler).  *grows: it is the main thread's "[stack]".
 */
static int
mapping_of(uintptr_t addr, uintptr_t *lo, uintptr_t *hi, int *grows)
{
	char buf[4096], line[160], tail[8] = "";
	size_t len = 0, tn = 0;
	ssize_t r;
	int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC), found = 0;

	if (fd < 0)
		return -1;
	while (!found && (r = read(fd, buf, sizeof(buf))) > 0) {
		for (ssize_t i = 0; i < r && !found; i++) {
			char c = buf[i];
			if (c != '\n') {
				if (len < sizeof(line) - 1)
					line[len++] = c;
				memmove(tail, tail + 1, sizeof(tail) - 1);
				tail[sizeof(tail) - 1] = c;
				tn++;
				continue;
			}
			/* "lo-hi perms ..." */
			uintptr_t a = 0, b = 0;
			size_t k = 0;
			line[len] = '\0';
			for (; k < len && line[k] != '-'; k++)
				a = a * 16 + (uintptr_t)(line[k] <= '9' ? line[k] - '0' : (line[k] | 32) - 'a' + 10);
			for (k++; k < len && line[k] != ' '; k++)
				b = b * 16 + (uintptr_t)(line[k] <= '9' ? line[k] - '0' : (line[k] | 32) - 'a' + 10);
			if (addr >= a && addr < b) {
				*lo = a;
				*hi = b;
				*grows = tn >= 7 && memcmp(tail + 1, "[stack]", 7) == 0;
				found = 1;
			}
			len = 0;
			tn = 0;
			memset(tail, 0, sizeof(tail));
		}
	}
	close(fd);
	return found ? 0 : -1;
}

static struct thread_state *
thread_state(void)
{
	struct thread_state *t = tls_unw;
	uintptr_t lo, hi;
	int grows;

	if (LIKELY(t != NULL))
		return t;
	if (mapping_of((uintptr_t)__builtin_frame_address(0), &lo, &hi, &grows) != 0)
		return NULL;
	if (grows) {
		/* the kernel extends the main thread's stack down to its limit */
		struct rlimit rl;
		uint64_t limit = 8u << 20;
		if (getrlimit(RLIMIT_STACK, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
			limit = rl.rlim_cur;
		if (hi - lo < limit)
			lo = hi > limit ? hi - limit : 0;
	}
	t = mmap(NULL, sizeof(*t), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (t == MAP_FAILED)
		return NULL;
	t->size = sizeof(*t);
	t->lo = lo;
	t->hi = hi;
	tls_unw = t;
	pthread_setspecific(memo_key, t);
	return t;
}

/* ------------------------------------------------------------------- walk */

int
mpt_unwind_init(unsigned long capacity, unsigned int depth, int count)
{
	unsigned long cap = 1024;

	while (cap < capacity)
		cap <<= 1;
	rules = mmap(NULL, cap * sizeof(*rules), PROT_READ | PROT_WRITE,
		     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (rules == MAP_FAILED) {
		rules = NULL;
		return -1;
	}
	rules_mask = cap - 1;
	counting = count;
	memo_depth = depth <= MEMO_MAX_DEPTH ? depth : 0;
	if (pthread_key_create(&memo_key, thread_gone) != 0)
		memo_depth = 0;
	return 0;
}

void
mpt_unwind_stats(struct mpt_unwind_stats *out)
{
	*out = stats;
}

void
mpt_unwind_memo_store(uint32_t tag)
{
	struct thread_state *t = tls_unw;

	if (t != NULL && t->last != NULL) {
		t->last->tag = tag;
		t->last = NULL;
	}
}

static inline unsigned int
memo_index(uintptr_t pc, uintptr_t sp)
{
	return (unsigned int)(((pc ^ (sp << 7)) * 0x9e3779b97f4a7c15ull) >> 58) & (MEMO_SLOTS - 1);
}

/* m is a tagged walk from (pc, sp, bp) of at most max frames whose stack words all read the same. */
static inline int
memo_holds(const struct memo *m, uintptr_t pc, uintptr_t sp, uintptr_t bp, unsigned int max)
{
	uint64_t diff = 0;

	if (m->tag == 0 || m->pc != pc || m->sp != sp || m->n > max || (m->need_bp && m->bp != bp))
		return 0;
	for (unsigned int i = 0; i < m->nreads; i++)
		diff |= *(const volatile uint64_t *)m->reads[i].addr ^ m->reads[i].val;
	return diff == 0;
}

/* A walk from (pc, sp, bp), reading only [lo, hi); memoised in m if not NULL. */
static __attribute__((noinline)) int
walk(struct thread_state *t, struct memo *m, uintptr_t pc, uintptr_t sp, uintptr_t bp,
     uintptr_t lo, uintptr_t hi, uint64_t *out, unsigned int max)
{
	const uintptr_t pc0 = pc, sp0 = sp, bp0 = bp;
	unsigned int n = 0, nreads = 0, need_bp = 0;
	int bp_origin = -1;     /* where bp came from: -1 the first frame's, else a read */
	struct {
		uintptr_t addr;
		uint64_t val;
		int used;
	} reads[3 * MEMO_MAX_DEPTH];
	/* the words a walk read (only when it is memoised: max <= MEMO_MAX_DEPTH) */
#define READ(a, v, u) do { if (m != NULL) { reads[nreads].addr = (a); reads[nreads].val = (v); \
				reads[nreads].used = (u); } nreads++; } while (0)

	if (UNLIKELY(counting))
		__atomic_fetch_add(&stats.walks, 1, __ATOMIC_RELAXED);
	for (;;) {
		uint64_t rule;
		uintptr_t cfa, at;

		out[n++] = pc;
		if (n == max)
			break;
		rule = rule_of(pc);
		if (rule & R_END)
			break;
		if (rule & R_UNSUP)
			return -1;
		if (RULE_KIND(rule) != R_SP || (rule & R_BPREL)) {
			if (bp_origin < 0)
				need_bp = 1;
			else if (m != NULL)
				reads[bp_origin].used = 1;
		}
		switch (RULE_KIND(rule)) {
		case R_SP:
			cfa = sp + (uintptr_t)RULE_CFA_OFF(rule);
			break;
		case R_BP:
			cfa = bp + (uintptr_t)RULE_CFA_OFF(rule);
			break;
		default:
			at = bp + (uintptr_t)RULE_CFA_OFF(rule);
			if (at < lo || at + 8 > hi || (at & 7))
				return -1;
			cfa = *(const uintptr_t *)at;
			READ(at, cfa, 1);
			break;
		}
		if (cfa <= sp || cfa < lo + 8 || cfa > hi || (cfa & 7))
			return -1;
		if (rule & R_BPSAVED) {
			at = ((rule & R_BPREL) ? bp : cfa) + (uintptr_t)RULE_BP_OFF(rule);
			if (at < lo || at + 8 > hi || (at & 7))
				return -1;
			bp = *(const uintptr_t *)at;
			bp_origin = (int)nreads;
			READ(at, bp, 0);    /* kept only if a later CFA uses it */
		}
		pc = *(const uintptr_t *)(cfa - 8);
		READ(cfa - 8, pc, 1);
		sp = cfa;
		if (pc == 0)
			break;
	}
	if (m != NULL) {
		unsigned int k = 0;
		m->tag = 0;
		for (unsigned int i = 0; i < nreads; i++)
			if (reads[i].used) {
				m->reads[k].addr = reads[i].addr;
				m->reads[k++].val = reads[i].val;
			}
		m->pc = pc0;
		m->sp = sp0;
		m->bp = bp0;
		m->need_bp = (uint8_t)need_bp;
		m->nreads = (uint8_t)k;
		m->n = (uint8_t)n;
		t->last = m;
	}
	return (int)n;
}

int
mpt_unwind(void *ra, const void *caller_sp, uint64_t *out, unsigned int max, uint32_t *tag)
{
	struct thread_state *t = thread_state();
	uintptr_t *fp = __builtin_frame_address(0);
	uintptr_t pc = (uintptr_t)ra, sp, bp, lo, hi;
	struct memo *m = NULL;

	*tag = 0;
	if (UNLIKELY(t == NULL || rules == NULL))
		return -1;
	/* nothing below this frame is live; not on the thread's stack (sigaltstack): no */
	lo = (uintptr_t)fp;
	hi = t->hi;
	if (UNLIKELY(lo < t->lo || lo >= hi))
		return -1;
	sp = (uintptr_t)caller_sp;
	if (sp > lo + 16 && sp <= hi && !(sp & 7) && ((const uintptr_t *)sp)[-1] == pc) {
		bp = ((const uintptr_t *)sp)[-2];
	} else {
		/* the agent's own frames (frame pointers) up to the one ra returns from */
		for (int k = 0;; k++) {
			if (k == 16 || (uintptr_t)fp < lo || (uintptr_t)fp + 16 > hi ||
			    ((uintptr_t)fp & 7))
				return -1;
			if (fp[1] == pc)
				break;
			fp = (uintptr_t *)fp[0];
		}
		sp = (uintptr_t)(fp + 2);
		bp = fp[0];
	}
	if (LIKELY(memo_depth != 0 && max <= memo_depth)) {
		m = &t->memo[memo_index(pc, sp)];
		if (LIKELY(memo_holds(m, pc, sp, bp, max))) {
			*tag = m->tag;
			return m->n;
		}
	}
	return walk(t, m, pc, sp, bp, lo, hi, out, max);
}

uint32_t
mpt_unwind_memo_lookup(void *ra, const void *caller_sp, unsigned int max)
{
	struct thread_state *t = tls_unw;
	uintptr_t pc = (uintptr_t)ra, sp = (uintptr_t)caller_sp;
	const struct memo *m;

	if (UNLIKELY(t == NULL) || memo_depth == 0 || max > memo_depth ||
	    sp <= (uintptr_t)__builtin_frame_address(0) + 16 || sp > t->hi || (sp & 7) ||
	    ((const uintptr_t *)sp)[-1] != pc)
		return 0;
	m = &t->memo[memo_index(pc, sp)];
	return memo_holds(m, pc, sp, ((const uintptr_t *)sp)[-2], max) ? m->tag : 0;
}
