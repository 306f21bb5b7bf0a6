/* SPDX-License-Identifier: BSD-3-Clause
 * Copyright (c) 2026 The gdb-mptrack authors
 *
 * agent_dump.c: the preload agent's CSV dump, on SIGRTMIN (MPTRACK_DUMP=FILE)
 * or when gdb calls mptrack_agent_dump().
 *
 * One row per populated object of every tracked pool and per rte_malloc
 * block: addr,state,alloc_backtrace,free_backtrace,pool,alloc_lcore,
 * free_lcore,size (frames as hex return addresses, innermost first,
 * separated by spaces), and FILE.maps, a copy of /proc/self/maps for the
 * report.  It runs in the signal handler, so only async-signal-safe calls
 * (open, read, write, close, rename, unlink) and no malloc: the rows are
 * formatted by hand into a fixed buffer flushed with write(2), to FILE.tmp
 * then renamed, so that a reader never sees half a dump.  It reads the
 * tables while the program runs: a row may be a moment older than the next.
 * A failure is said once.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "agent_private.h"
#include "mptrack_agent.h"

/* Async-signal-safe formatting into a fixed buffer flushed with write(2). */
struct sbuf {
	int fd;
	int err;
	size_t n;
	char s[65536];
};

static void
sb_flush(struct sbuf *b)
{
	size_t off = 0;

	while (off < b->n && !b->err) {
		ssize_t w = write(b->fd, b->s + off, b->n - off);
		if (w < 0) {
			if (errno != EINTR)
				b->err = errno;
			continue;
		}
		off += (size_t)w;
	}
	b->n = 0;
}

static void
sb_str(struct sbuf *b, const char *s)
{
	while (*s) {
		if (b->n == sizeof(b->s))
			sb_flush(b);
		b->s[b->n++] = *s++;
	}
}

/* v in decimal (base 10) or in hex with 0x (base 16) */
static void
sb_num(struct sbuf *b, uint64_t v, unsigned int base)
{
	char t[21];
	int i = 20;

	t[i] = '\0';
	do {
		t[--i] = "0123456789abcdef"[v % base];
		v /= base;
	} while (v != 0);
	if (base == 16) {
		t[--i] = 'x';
		t[--i] = '0';
	}
	sb_str(b, t + i);
}

static void
sb_stack(struct sbuf *b, uint32_t id)
{
	uint64_t f[MPTRACK_MAX_DEPTH];
	int n = stack_frames(id, f);

	for (int i = 0; i < n; i++) {
		if (i)
			sb_str(b, " ");
		sb_num(b, f[i], 16);
	}
}

static volatile sig_atomic_t dump_failed_said;
static struct sbuf dump_buf;

static int
copy_file(const char *from, const char *to)
{
	char buf[4096];
	int in = open(from, O_RDONLY | O_CLOEXEC), out;
	ssize_t r;

	if (in < 0)
		return -1;
	out = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (out < 0) {
		close(in);
		return -1;
	}
	while ((r = read(in, buf, sizeof(buf))) > 0)
		write_all(out, buf, (size_t)r);
	close(in);
	close(out);
	return 0;
}

/*
 * Write the CSV dump: addr,state,alloc_backtrace,free_backtrace,pool,
 * alloc_lcore,free_lcore (frames as hex return addresses, innermost first,
 * separated by spaces), and PATH.maps, a copy of /proc/self/maps.  Only
 * async-signal-safe calls: it runs in the SIGRTMIN handler.
 */
EXPORT int
mptrack_agent_dump(const char *path)
{
	static const char *const state_names[] = {"new", "free", "in-use"};
	char tmp[4096], maps[4096];
	struct sbuf *b = &dump_buf;
	size_t len;

	if (path == NULL)
		path = cfg.dump_path;
	if (path == NULL)
		return -1;
	len = strlen(path);
	if (len + 6 > sizeof(tmp))
		return -1;
	memcpy(tmp, path, len);
	memcpy(tmp + len, ".tmp", 5);
	memcpy(maps, path, len);
	memcpy(maps + len, ".maps", 6);
	b->fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	b->err = 0;
	b->n = 0;
	if (b->fd < 0) {
		b->err = errno;
		goto failed;
	}
	sb_str(b, "addr,state,alloc_backtrace,free_backtrace,pool,alloc_lcore,free_lcore,size\n");
	for (uint32_t s = 0; s < MPTRACK_MAX_POOLS; s++) {
		struct mptrack_pool *p = (struct mptrack_pool *)(uintptr_t)A_LOAD(&T.pools[s]);
		uint32_t nobjs;

		if (p == NULL)
			continue;
		nobjs = A_LOAD(&p->nobjs);
		for (uint32_t i = 0; i < nobjs; i++) {
			struct mptrack_obj *o = &pool_objs(p)[i];
			uint32_t st = A_LOAD(&o->state);

			sb_num(b, o->addr, 16);
			sb_str(b, ",");
			sb_str(b, st <= 2 ? state_names[st] : "?");
			sb_str(b, ",");
			sb_stack(b, o->alloc_stack);
			sb_str(b, ",");
			sb_stack(b, o->free_stack);
			sb_str(b, ",");
			sb_str(b, p->name);
			sb_str(b, ",");
			if (o->alloc_tsc)
				sb_num(b, o->alloc_lcore, 10);
			sb_str(b, ",");
			if (o->free_tsc)
				sb_num(b, o->free_lcore, 10);
			sb_str(b, ",");
			sb_num(b, p->elt_size, 10);
			sb_str(b, "\n");
		}
	}
	for (uint32_t i = 0; mslots != NULL && i < mtab.capacity; i++) {
		struct mptrack_block *k = &mslots[i];
		uint32_t st = A_LOAD(&k->state);

		if (A_LOAD(&k->addr) == 0 || st == 0)
			continue;
		sb_num(b, k->addr, 16);
		sb_str(b, st == 2 ? ",in-use," : ",free,");
		sb_stack(b, k->alloc_stack);
		sb_str(b, ",");
		sb_stack(b, st == 1 ? k->free_stack : 0);
		sb_str(b, ",rte_malloc,");
		sb_num(b, k->alloc_lcore, 10);
		sb_str(b, ",");
		if (st == 1)
			sb_num(b, k->free_lcore, 10);
		sb_str(b, ",");
		sb_num(b, k->size, 10);
		sb_str(b, "\n");
	}
	sb_flush(b);
	if (close(b->fd) != 0 && !b->err)
		b->err = errno;
	if (b->err)
		goto failed;
	copy_file("/proc/self/maps", maps);
	if (rename(tmp, path) != 0) {
		b->err = errno;
		goto failed;
	}
	return 0;
failed:
	if (!dump_failed_said) {
		dump_failed_said = 1;
		write_all(2, "mptrack-agent: cannot write the dump to ", 40);
		write_all(2, path, strlen(path));
		write_all(2, ": ", 2);
		write_all(2, strerror(b->err), strlen(strerror(b->err)));
		write_all(2, " (said once; the program goes on)\n", 34);
	}
	unlink(tmp);
	return -1;
}

static void
dump_handler(int sig)
{
	int saved = errno;

	(void)sig;
	tls.busy++;
	mptrack_agent_dump(NULL);
	tls.busy--;
	errno = saved;
}

void
dump_init(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = dump_handler;
	sa.sa_flags = SA_RESTART;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGRTMIN, &sa, NULL) != 0)
		say("mptrack-agent: cannot install the SIGRTMIN handler: %s\n", strerror(errno));
}
