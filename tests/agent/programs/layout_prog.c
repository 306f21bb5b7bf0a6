/* SPDX-License-Identifier: BSD-3-Clause
 * Copyright (c) 2026 The gdb-mptrack authors
 *
 * layout_prog.c: pools whose objects the agent finds in each of its ways
 * (see fast_index_build in mptrack_agent.c), each then used correctly
 * (every object got and put back) and wrongly (a put of a pointer inside an
 * object, a put of a pointer between objects, a duplicate put), for
 * MPTRACK_ON_ERROR=log:
 *   lay_dpdk    rte_mempool_create: one chunk, objects never across a page:
 *               an address map;
 *   lay_map     two chunks close together but not adjacent: an address map;
 *   lay_chunks  two chunks far apart: the chunk list.
 *
 *   layout_prog EAL-ARGS -- TRUTH faults
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_malloc.h>
#include <rte_mempool.h>

#define PER_CHUNK 16

static FILE *truth;

static void
die(const char *what)
{
	fprintf(stderr, "layout_prog: %s: %s\n", what, rte_strerror(rte_errno));
	exit(2);
}

/* A pool of 2 * PER_CHUNK objects in two chunks, gap bytes apart. */
static struct rte_mempool *
two_chunks(const char *name, size_t gap)
{
	struct rte_mempool_objsz sz;
	struct rte_mempool *mp;
	size_t len;
	char *a, *b;

	mp = rte_mempool_create_empty(name, 2 * PER_CHUNK, 100, 0, 0, SOCKET_ID_ANY,
				      RTE_MEMPOOL_F_NO_IOVA_CONTIG);
	if (mp == NULL || rte_mempool_set_ops_byname(mp, "ring_mp_mc", NULL) != 0)
		die("rte_mempool_create_empty");
	rte_mempool_calc_obj_size(100, RTE_MEMPOOL_F_NO_IOVA_CONTIG, &sz);
	len = PER_CHUNK * sz.total_size;
	a = rte_malloc(NULL, 2 * len + gap, RTE_CACHE_LINE_SIZE);
	if (a == NULL)
		die("rte_malloc");
	b = a + len + gap;
	if (rte_mempool_populate_iova(mp, a, RTE_BAD_IOVA, len, NULL, NULL) != PER_CHUNK ||
	    rte_mempool_populate_iova(mp, b, RTE_BAD_IOVA, len, NULL, NULL) != PER_CHUNK)
		die("rte_mempool_populate_iova");
	return mp;
}

static void
exercise(struct rte_mempool *mp)
{
	void *objs[512];
	unsigned int n = 0;

	/* right: everything out and back, one at a time and in bursts */
	while (n < 512 && rte_mempool_get(mp, &objs[n]) == 0)
		n++;
	rte_mempool_put_bulk(mp, objs, n);
	if (rte_mempool_get_bulk(mp, objs, n) != 0)
		die("rte_mempool_get_bulk");
	for (unsigned int i = 0; i < n; i++)
		rte_mempool_put(mp, objs[i]);
	/* wrong: inside an object, between two objects, twice */
	if (rte_mempool_get(mp, &objs[0]) != 0)
		die("rte_mempool_get");
	rte_mempool_put(mp, (char *)objs[0] + 8);
	rte_mempool_put(mp, (char *)objs[0] - mp->header_size / 2);
	rte_mempool_put(mp, objs[0]);
	rte_mempool_put(mp, objs[0]);
	fprintf(truth, "%s\"%s\": {\"objects\": %u, \"obj\": \"%p\"}", ftell(truth) > 1 ? ", " : "",
		mp->name, n, objs[0]);
}

int
main(int argc, char **argv)
{
	int n = rte_eal_init(argc, argv);
	char tmp[4096];

	if (n < 0)
		die("rte_eal_init");
	argc -= n;
	argv += n;
	if (argc != 3 || strcmp(argv[2], "faults") != 0) {
		fprintf(stderr, "usage: layout_prog EAL-ARGS -- TRUTH faults\n");
		return 2;
	}
	snprintf(tmp, sizeof(tmp), "%s.tmp", argv[1]);
	truth = fopen(tmp, "w");
	if (truth == NULL)
		die("truth file");
	fprintf(truth, "{");
	exercise(rte_mempool_create("lay_dpdk", 1000, 64, 0, 0, NULL, NULL, NULL, NULL,
				    SOCKET_ID_ANY, 0));
	exercise(two_chunks("lay_map", 4096));
	exercise(two_chunks("lay_chunks", 1 << 20));
	fprintf(truth, "}\n");
	fclose(truth);
	rename(tmp, argv[1]);
	printf("done\n");
	return 0;
}
