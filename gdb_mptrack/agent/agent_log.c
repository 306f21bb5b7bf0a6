/* SPDX-License-Identifier: BSD-3-Clause
 * Copyright (c) 2026 The gdb-mptrack authors
 *
 * agent_log.c: the preload agent's event log (MPTRACK_LOG=FILE): every get,
 * put, rte_malloc block event, pool and fault, as 32-byte records (struct
 * mptrack_event and the file's header: mptrack_agent.h).
 *
 * Each thread appends events to its own ring (mmap'ed at its first event:
 * one syscall per thread, none per event); a writer thread drains the rings
 * to the file (at once while busy, every 5 ms when idle), sending each stack
 * and pool definition before its first use.  A thread whose ring is full
 * waits for the writer (spinning, no syscall), so the log is complete; with
 * MPTRACK_LOG_DROP=1 it drops the event instead and counts it (a LOST record).
 *
 * Assumptions: the file order does not order two threads' events, so each
 * event carries a sequence number its reader orders by (a pool event the
 * pool's epoch and the object's alloc count, an rte_malloc event its
 * address's generation).  At most LOG_THREADS threads get a ring; the
 * events of the others are counted, not logged.  Faults flush the log
 * before acting (the process may die).  A forked child starts its own writer
 * and FILE.PID (the core's fork handlers call log_fork_*()).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <rte_cycles.h>
#include <rte_pause.h>

#include "agent_private.h"
#include "mptrack_agent.h"

#define LOG_THREADS 256

int log_on;                         /* the log is open: events go to it */
uint32_t log_epoch[MPTRACK_MAX_POOLS];

struct log_ring {
	uint64_t head;          /* written by the owning thread */
	uint64_t lost;
	char pad1[48];
	uint64_t tail;          /* written by the writer */
	uint64_t lost_seen;
	char pad2[48];
	struct mptrack_event ev[];
};

static struct log_ring *log_rings[LOG_THREADS];
static uint32_t log_nthreads;
static uint64_t log_lost_threads;   /* events of threads past LOG_THREADS */
static uint32_t log_ring_size = 1u << 16;
static TLS uint32_t tls_log_slot;   /* slot + 1; 0: none yet */
static TLS int tls_log_busy;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static int log_fd = -1;
static char log_file[4096];
static uint8_t *log_stack_sent;
static unsigned long long log_adds;
static int log_clock_sent;
static volatile int log_stop;
static int log_drop;                /* MPTRACK_LOG_DROP=1: drop events when a ring is full */
static pthread_t log_thread;
static int log_thread_started;
static unsigned char log_out[1 << 16];
static size_t log_out_n;

static struct log_ring *
log_my_ring(void)
{
	uint32_t s = tls_log_slot;

	if (UNLIKELY(s == 0)) {
		s = A_ADD(&log_nthreads, 1) + 1;
		if (s <= LOG_THREADS) {
			struct log_ring *r = map_anon(sizeof(struct log_ring) +
						      (size_t)log_ring_size * sizeof(struct mptrack_event), 0);
			if (r == NULL)
				s = LOG_THREADS + 1;
			else
				A_STORE(&log_rings[s - 1], r);
		}
		tls_log_slot = s;
	}
	return s <= LOG_THREADS ? log_rings[s - 1] : NULL;
}

/*
 * Append an event to this thread's ring.  seq: the 24-bit sequence field (a
 * pool event's pool epoch, an rte_malloc event's generation; see
 * mptrack_agent.h).
 */
void
log_event(uint8_t kind, uint16_t pool, uint64_t addr, uint32_t stack, uint32_t aux,
	  uint16_t lcore, uint64_t tsc, uint32_t seq)
{
	struct log_ring *r;
	struct mptrack_event *e;
	uint64_t h;

	if (!log_on || tls_log_busy)
		return;
	tls_log_busy = 1;
	r = log_my_ring();
	if (r == NULL) {
		A_ADD(&log_lost_threads, 1);
		goto out;
	}
	h = r->head;
	if (h - A_LOAD(&r->tail) >= log_ring_size) {
		/* full: wait for the writer (no syscall: it polls), or drop */
		while (!log_drop && log_thread_started && !log_stop &&
		       h - A_LOAD(&r->tail) >= log_ring_size)
			rte_pause();
		if (h - A_LOAD(&r->tail) >= log_ring_size) {
			A_STORE(&r->lost, r->lost + 1);
			goto out;
		}
	}
	e = &r->ev[h & (log_ring_size - 1)];
	e->tsc = tsc;
	e->addr = addr;
	e->stack = stack;
	e->aux = aux;
	e->pool = pool;
	e->lcore = lcore;
	e->kind = kind;
	e->seq[0] = (uint8_t)seq;
	e->seq[1] = (uint8_t)(seq >> 8);
	e->seq[2] = (uint8_t)(seq >> 16);
	A_STORE(&r->head, h + 1);
out:
	tls_log_busy = 0;
}

void
log_simple(uint8_t kind, uint16_t pool, uint64_t addr, uint32_t stack, uint32_t aux)
{
	if (log_on)
		log_event(kind, pool, addr, stack, aux, cur_lcore(), rte_rdtsc(),
			  pool < MPTRACK_MAX_POOLS ? log_epoch[pool] : 0);
}

/*
 * A pool starts being tracked (under slow_lock): its slot gets a new epoch,
 * then a POOL record and its name block, published together.
 */
void
log_pool(const struct mptrack_pool *p)
{
	static uint32_t epochs;
	struct log_ring *r;
	uint64_t h;

	log_epoch[p->slot] = ++epochs & 0xffffff;
	if (!log_on || tls_log_busy)
		return;
	tls_log_busy = 1;
	r = log_my_ring();
	if (r != NULL && (h = r->head) - A_LOAD(&r->tail) + 2 <= log_ring_size) {
		struct mptrack_event *e = &r->ev[h & (log_ring_size - 1)];
		struct mptrack_event *name = &r->ev[(h + 1) & (log_ring_size - 1)];
		memset(e, 0, sizeof(*e));
		e->tsc = rte_rdtsc();
		e->addr = p->mp;
		e->aux = p->capacity;
		e->pool = (uint16_t)p->slot;
		e->lcore = cur_lcore();
		e->kind = MPTRACK_EV_POOL;
		e->seq[0] = (uint8_t)log_epoch[p->slot];
		e->seq[1] = (uint8_t)(log_epoch[p->slot] >> 8);
		e->seq[2] = (uint8_t)(log_epoch[p->slot] >> 16);
		memset(name, 0, sizeof(*name));
		memcpy(name, p->name, sizeof(*name) < sizeof(p->name) ? sizeof(*name) : sizeof(p->name));
		((char *)name)[sizeof(*name) - 1] = '\0';
		A_STORE(&r->head, h + 2);
	}
	tls_log_busy = 0;
}

/* Writer side, under log_lock. */
static void
log_fail(int err)
{
	say("mptrack-agent: cannot write the event log %s: %s (said once; the program goes on "
	    "without a log)\n", log_file, strerror(err));
	log_on = 0;
	if (log_fd >= 0)
		close(log_fd);
	log_fd = -1;
}

static void
log_out_flush(void)
{
	size_t off = 0;

	while (log_fd >= 0 && off < log_out_n) {
		ssize_t w = write(log_fd, log_out + off, log_out_n - off);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			log_fail(errno);
			break;
		}
		off += (size_t)w;
	}
	log_out_n = 0;
}

static void
log_put(const void *data, size_t len)
{
	const unsigned char *d = data;

	while (len > 0) {
		size_t n = sizeof(log_out) - log_out_n;
		if (n == 0) {
			log_out_flush();
			if (log_fd < 0)
				return;
			continue;
		}
		if (n > len)
			n = len;
		memcpy(log_out + log_out_n, d, n);
		log_out_n += n;
		d += n;
		len -= n;
	}
}

/* data padded with zeros to whole 32-byte blocks */
static void
log_put_blocks(const void *data, size_t len)
{
	static const unsigned char zeros[32];

	log_put(data, len);
	if (len % 32)
		log_put(zeros, 32 - len % 32);
}

static void
log_put_record(uint8_t kind, uint64_t addr, uint32_t stack, uint32_t aux)
{
	struct mptrack_event e;

	memset(&e, 0, sizeof(e));
	e.tsc = rte_rdtsc();
	e.addr = addr;
	e.stack = stack;
	e.aux = aux;
	e.kind = kind;
	e.lcore = MPTRACK_LCORE_NONE;
	log_put(&e, sizeof(e));
}

static void
log_send_stack(uint32_t id)
{
	uint64_t f[MPTRACK_MAX_DEPTH];
	int n;

	if (id == 0 || id > T.stacks_capacity || log_stack_sent == NULL ||
	    (log_stack_sent[(id - 1) / 8] & (1u << ((id - 1) % 8))))
		return;
	n = stack_frames(id, f);
	log_stack_sent[(id - 1) / 8] |= (uint8_t)(1u << ((id - 1) % 8));
	log_put_record(MPTRACK_EV_STACK, 0, id, (uint32_t)n);
	log_put_blocks(f, 8 * (size_t)n);
}

static int
phdr_adds(struct dl_phdr_info *info, size_t size, void *data)
{
	(void)size;
	*(unsigned long long *)data = info->dlpi_adds;
	return 1;
}

static void
log_send_maps(void)
{
	static char text[1 << 20];
	size_t n = 0;
	ssize_t r;
	int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return;
	while (n < sizeof(text) && (r = read(fd, text + n, sizeof(text) - n)) > 0)
		n += (size_t)r;
	close(fd);
	log_put_record(MPTRACK_EV_MAPS, 0, 0, (uint32_t)n);
	log_put_blocks(text, n);
}

/* Drain every ring; returns the number of events written. */
static uint64_t
log_drain(void)
{
	unsigned long long adds = 0;
	uint32_t nthreads;
	uint64_t count = 0;

	pthread_mutex_lock(&log_lock);
	if (log_fd < 0)
		goto out;
	dl_iterate_phdr(phdr_adds, &adds);
	if (adds != log_adds) {
		log_adds = adds;
		log_send_maps();
	}
	if (!log_clock_sent && T.tsc_hz != 0) {
		log_clock_sent = 1;
		log_put_record(MPTRACK_EV_CLOCK, T.tsc_hz, 0, 0);
	}
	nthreads = A_LOAD(&log_nthreads);
	if (nthreads > LOG_THREADS)
		nthreads = LOG_THREADS;
	for (uint32_t s = 0; s < nthreads; s++) {
		struct log_ring *r = A_LOAD(&log_rings[s]);
		uint64_t h, t, lost;

		if (r == NULL)
			continue;
		h = A_LOAD(&r->head);
		for (t = r->tail; t < h; t++) {
			struct mptrack_event *e = &r->ev[t & (log_ring_size - 1)];
			log_send_stack(e->stack);
			log_put(e, sizeof(*e));
			if (e->kind == MPTRACK_EV_POOL && t + 1 < h) {
				t++;
				log_put(&r->ev[t & (log_ring_size - 1)], sizeof(*e));
			}
		}
		count += t - r->tail;
		A_STORE(&r->tail, t);
		lost = A_LOAD(&r->lost);
		if (lost != r->lost_seen) {
			log_put_record(MPTRACK_EV_LOST, 0, 0, (uint32_t)(lost - r->lost_seen));
			r->lost_seen = lost;
		}
	}
	log_out_flush();
out:
	pthread_mutex_unlock(&log_lock);
	return count;
}

void
log_flush_now(void)
{
	(void)log_drain();
}

static void *
log_writer(void *arg)
{
	struct timespec ts = {0, 5 * 1000 * 1000};

	(void)arg;
	while (!log_stop) {
		/* busy: go again at once; idle: sleep 5 ms */
		if (log_drain() < log_ring_size / 8)
			nanosleep(&ts, NULL);
	}
	return NULL;
}

static int
log_open(void)
{
	struct mptrack_log_header h;

	log_fd = open(log_file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (log_fd < 0) {
		log_fail(errno);
		return -1;
	}
	memset(&h, 0, sizeof(h));
	memcpy(h.magic, MPTRACK_LOG_MAGIC, sizeof(MPTRACK_LOG_MAGIC));
	h.version = MPTRACK_LOG_VERSION;
	h.header_size = sizeof(h);
	h.event_size = sizeof(struct mptrack_event);
	h.bt_depth = cfg.depth;
	h.tsc_hz = T.tsc_hz;
	h.start_tsc = T.start_tsc;
	h.pid = getpid();
	log_put(&h, sizeof(h));
	log_out_flush();
	log_adds = 0;
	log_clock_sent = 0;
	if (log_stack_sent != NULL)
		memset(log_stack_sent, 0, (T.stacks_capacity + 7) / 8);
	return log_fd < 0 ? -1 : 0;
}

static void
log_start_writer(void)
{
	sigset_t all, old;

	/* the writer takes no signal meant for the program (SIGRTMIN included) */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	log_stop = 0;
	log_thread_started = pthread_create(&log_thread, NULL, log_writer, NULL) == 0;
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (log_thread_started)
		pthread_setname_np(log_thread, "mptrack-log");
}

static void
log_atexit(void)
{
	if (!log_on && log_fd < 0)
		return;
	log_stop = 1;
	if (log_thread_started && !pthread_equal(pthread_self(), log_thread))
		pthread_join(log_thread, NULL);
	log_thread_started = 0;
	log_drain();
	pthread_mutex_lock(&log_lock);
	if (log_fd >= 0)
		close(log_fd);
	log_fd = -1;
	log_on = 0;
	pthread_mutex_unlock(&log_lock);
}

static void
log_path_expand(const char *path, int child)
{
	size_t n = 0;

	for (const char *c = path; *c && n + 24 < sizeof(log_file); c++) {
		if (c[0] == '%' && c[1] == 'p') {
			n += (size_t)snprintf(log_file + n, sizeof(log_file) - n, "%d", (int)getpid());
			c++;
		} else {
			log_file[n++] = *c;
		}
	}
	log_file[n] = '\0';
	if (child && strstr(path, "%p") == NULL)
		snprintf(log_file + n, sizeof(log_file) - n, ".%d", (int)getpid());
}

void
log_init(void)
{
	unsigned long events = env_ulong("MPTRACK_LOG_EVENTS", NULL, 1u << 16, 1u << 26);

	log_drop = (int)env_ulong("MPTRACK_LOG_DROP", NULL, 0, 1);
	log_ring_size = 64;
	while (log_ring_size < events)
		log_ring_size <<= 1;
	if (T.stacks_capacity)
		log_stack_sent = calloc((T.stacks_capacity + 7) / 8, 1);
	log_path_expand(cfg.log_path, 0);
	if (log_open() != 0)
		return;
	log_on = 1;
	log_start_writer();
	atexit(log_atexit);
}

/*
 * fork (from the core's handlers, which hold slow_lock around these): the
 * child gets its own log file and writer; the parent's pending events stay
 * with it.
 */
void
log_fork_prepare(void)
{
	pthread_mutex_lock(&log_lock);
}

void
log_fork_parent(void)
{
	pthread_mutex_unlock(&log_lock);
}

void
log_fork_child(void)
{
	pthread_mutex_init(&log_lock, NULL);
	if (!log_on)
		return;
	for (uint32_t s = 0; s < LOG_THREADS; s++) {
		struct log_ring *r = log_rings[s];
		if (r != NULL) {
			r->tail = r->head;
			r->lost_seen = r->lost;
		}
	}
	log_out_n = 0;
	if (log_fd >= 0)
		close(log_fd);
	log_fd = -1;
	log_path_expand(cfg.log_path, 1);
	if (log_open() == 0)
		log_start_writer();
}
