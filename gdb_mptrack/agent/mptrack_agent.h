/* SPDX-License-Identifier: BSD-3-Clause
 * Copyright (c) 2026 The gdb-mptrack authors
 *
 * mptrack_agent.h: the in-memory tables of the gdb-mptrack preload agent.
 *
 * The agent (mptrack_agent.c, loaded with LD_PRELOAD) keeps its shadow tables
 * in the process's own memory.  gdb, live or from a core, and
 * gdb_mptrack/agent_tables.py read them starting from one exported symbol:
 *
 *     struct mptrack_tables mptrack_agent_tables;
 *
 * Every pointer below is stored as a uint64_t address in the target process,
 * every structure has a fixed size that the header also records, and the
 * header starts with a magic and a version: a reader checks both and uses the
 * recorded sizes to step through arrays, so fields added at the end of a
 * record in a later minor revision do not break an older reader.
 *
 * Layout, version 2 (all little-endian, x86-64; version 1 had the object
 * record's fields in another order):
 *
 *   mptrack_agent_tables (struct mptrack_tables)
 *     .pools[i]     -> struct mptrack_pool (one mmap per tracked pool) or 0
 *        .objs      -> struct mptrack_obj[capacity], nobjs of them populated
 *        .chunks    -> struct mptrack_chunk[max_chunks], nchunks used
 *           .map    -> uint32_t[(len >> shift) + 1]: object index + 1, 0 none
 *     .stacks       -> stack records, stack_record_size bytes each:
 *                        struct mptrack_stack + uint64_t frames[bt_depth]
 *                      stack id N (N >= 1) is record N - 1; 0 means none
 *     .faults[]     -> the last MPTRACK_FAULT_RING faults (nfaults in all)
 *     .malloc       -> struct mptrack_malloc_table (MPTRACK_MALLOC=1) or 0
 *        .slots     -> struct mptrack_block[capacity]
 *
 * Object state: 0 never handed out nor given back (being populated),
 * 1 free (in the pool), 2 in use (handed out by a get).
 */
#ifndef MPTRACK_AGENT_H
#define MPTRACK_AGENT_H

#include <stdint.h>

#define MPTRACK_TABLES_MAGIC "MPTRACK"  /* 8 bytes with the NUL */
#define MPTRACK_POOL_MAGIC "MPTPOOL"
#define MPTRACK_TABLES_VERSION 2

#define MPTRACK_MAX_POOLS 256
#define MPTRACK_FAULT_RING 32
#define MPTRACK_NAME_SIZE 32     /* RTE_MEMPOOL_NAMESIZE */
#define MPTRACK_MAX_DEPTH 64

enum mptrack_obj_state {
	MPTRACK_STATE_NEW = 0,
	MPTRACK_STATE_FREE = 1,
	MPTRACK_STATE_IN_USE = 2,
};

enum mptrack_fault_kind {
	MPTRACK_FAULT_DUPLICATE_FREE = 1,
	MPTRACK_FAULT_FOREIGN_FREE = 2,
	MPTRACK_FAULT_STRAY_FREE = 3,
	MPTRACK_FAULT_DUPLICATE_ALLOC = 4,
};

enum mptrack_on_error {
	MPTRACK_ON_ERROR_ABORT = 0,
	MPTRACK_ON_ERROR_TRAP = 1,
	MPTRACK_ON_ERROR_LOG = 2,
};

/* lcore value recorded for a thread that is not an EAL lcore */
#define MPTRACK_LCORE_NONE 0xffff

/* Who did the last get or put of an object, and when: 16 bytes. */
struct mptrack_stamp {
	uint32_t stack;         /* stack id, 0 none */
	uint16_t lcore;         /* rte_lcore_id() */
	uint16_t reserved;
	uint64_t tsc;           /* rte_rdtsc(), 0 never */
};

/*
 * One object of a tracked pool: 48 bytes.  The fields an event writes are
 * together (version 2): a get reads and writes state and allocs as one 64-bit
 * word and writes the alloc stamp as one 16-byte block; a put writes state and
 * the free stamp.  (Little-endian: state is the word's low half.)
 */
struct mptrack_obj {
	uint64_t addr;          /* the object's address (what get returns) */
	union {
		struct {
			uint32_t state;   /* enum mptrack_obj_state, updated atomically */
			uint32_t allocs;  /* number of gets of this object */
		};
		uint64_t state_allocs;
	};
	union {
		struct {
			uint32_t alloc_stack;   /* the last get's */
			uint16_t alloc_lcore;
			uint16_t alloc_reserved;
			uint64_t alloc_tsc;
		};
		struct mptrack_stamp alloc;
	};
	union {
		struct {
			uint32_t free_stack;    /* the last put's */
			uint16_t free_lcore;
			uint16_t free_reserved;
			uint64_t free_tsc;
		};
		struct mptrack_stamp free;
	};
};

/* One memory chunk of a pool and its address -> object map. */
struct mptrack_chunk {
	uint64_t base;          /* chunk start (virtual address) */
	uint64_t len;           /* chunk length in bytes */
	uint64_t map;           /* uint32_t map[(len >> shift) + 1] */
	uint32_t first;         /* index of the chunk's first object */
	uint32_t count;         /* objects in the chunk */
};

/* A tracked pool. */
struct mptrack_pool {
	char magic[8];          /* MPTRACK_POOL_MAGIC */
	uint64_t mp;            /* struct rte_mempool * */
	char name[MPTRACK_NAME_SIZE];
	uint32_t live;          /* 1 while the pool exists */
	uint32_t capacity;      /* mp->size: objects the arrays have room for */
	uint32_t nobjs;         /* objects populated so far */
	uint32_t shift;         /* chunk map granularity: 1 << shift bytes */
	uint64_t objs;          /* struct mptrack_obj[capacity] */
	uint64_t chunks;        /* struct mptrack_chunk[max_chunks] */
	uint32_t nchunks;
	uint32_t max_chunks;
	uint32_t ops_index;     /* mp->ops_index when tracking started */
	uint32_t cache_size;    /* cache size the program asked for (now 0) */
	uint64_t elt_size;      /* mp->elt_size */
	uint64_t header_size;   /* mp->header_size */
	uint64_t trailer_size;  /* mp->trailer_size */
	uint64_t faults;        /* faults seen on this pool */
	uint64_t create_tsc;    /* when tracking started */
	uint32_t shared;        /* 1: tables in shared memory, like the pool's */
	uint32_t slot;          /* index in mptrack_tables.pools[] (the log's pool id) */
};

/* A stack record; bt_depth uint64_t frames follow it. */
struct mptrack_stack {
	uint64_t hash;          /* 0: free slot; top bit set while being written */
	uint32_t depth;         /* frames used */
	uint32_t reserved;
	/* uint64_t frames[bt_depth]: return addresses, innermost first */
};

/* One recorded fault. */
struct mptrack_fault {
	uint64_t seq;           /* 1-based fault number, 0: empty slot */
	uint32_t kind;          /* enum mptrack_fault_kind */
	uint16_t lcore;
	uint16_t reserved;
	uint64_t pool;          /* struct mptrack_pool * it was put to / got from */
	uint64_t obj;           /* the pointer */
	uint64_t other_pool;    /* foreign free: the pool holding obj (rte_mempool *) */
	uint32_t stack;         /* this event's stack */
	uint32_t prev_free_stack;
	uint32_t prev_alloc_stack;
	uint32_t reserved2;
	uint64_t tsc;
};

/* rte_malloc family (MPTRACK_MALLOC=1): one slot per block address. */
struct mptrack_block {
	uint64_t addr;          /* key; 0: empty slot */
	uint64_t size;          /* requested size */
	uint32_t state;         /* 1 freed, 2 allocated */
	uint32_t alloc_stack;
	uint32_t free_stack;
	uint16_t alloc_lcore;
	uint16_t free_lcore;
	uint64_t alloc_tsc;
	uint64_t free_tsc;
};

struct mptrack_malloc_table {
	uint64_t slots;         /* struct mptrack_block[capacity] */
	uint32_t capacity;      /* a power of two */
	uint32_t block_size;    /* sizeof(struct mptrack_block) */
	uint64_t dropped;       /* allocations not recorded: table full */
	uint64_t faults;
};

struct mptrack_tables {
	char magic[8];          /* MPTRACK_TABLES_MAGIC */
	uint32_t version;       /* MPTRACK_TABLES_VERSION */
	uint32_t header_size;   /* sizeof(struct mptrack_tables) */
	uint32_t pool_size;     /* sizeof(struct mptrack_pool) */
	uint32_t obj_size;      /* sizeof(struct mptrack_obj) */
	uint32_t chunk_size;    /* sizeof(struct mptrack_chunk) */
	uint32_t fault_size;    /* sizeof(struct mptrack_fault) */
	uint32_t bt_depth;      /* frames per stack record (0: no stacks) */
	uint32_t stack_record_size;
	uint64_t stacks;        /* stack records */
	uint32_t stacks_capacity;
	uint32_t stacks_used;
	uint64_t stacks_dropped;  /* events whose stack did not fit */
	uint64_t tsc_hz;        /* rte_get_tsc_hz(), 0 until known */
	uint64_t start_tsc;
	int32_t pid;
	uint32_t on_error;      /* enum mptrack_on_error */
	uint32_t bt_sample;     /* a full stack for 1 event in bt_sample */
	uint32_t max_pools;     /* MPTRACK_MAX_POOLS */
	uint64_t nfaults;
	uint64_t malloc;        /* struct mptrack_malloc_table *, 0 when off */
	struct mptrack_fault faults[MPTRACK_FAULT_RING];  /* faults[(seq-1) % RING] */
	uint64_t pools[MPTRACK_MAX_POOLS];                /* struct mptrack_pool * */
};

/*
 * The event log (MPTRACK_LOG=FILE; "%p" in FILE becomes the pid, and a forked
 * child writes FILE.PID).  A struct mptrack_log_header, then 32-byte records,
 * each a struct mptrack_event; STACK and MAPS records are followed by raw
 * 32-byte blocks (frames, or the text of /proc/self/maps, zero-padded).
 * Events of one thread are in order; threads are interleaved by batches, and
 * neither the file order nor the timestamps (a 1 ms clock by default) order
 * two threads' events.  A reader replays per object instead, by generation:
 * ALLOC carries the object's generation (its alloc count, from 1), FREE the
 * generation of the alloc it ends, so the newest state of an object is its
 * event with the highest (generation, FREE after ALLOC).  rte_malloc events
 * carry a per-address generation the same way (in seq), and every pool event
 * the pool's epoch (in seq: a pool slot reused by a later pool is a new
 * epoch), so a reader keys objects by (pool, epoch, address).  Generations
 * wrap: compare them as serial numbers (RFC 1982).
 * A STACK record precedes the first event that uses its id; a POOL record
 * (followed by one block: the pool name) precedes the pool's events in its
 * thread, not necessarily in the file; a MAPS record is written at start and
 * whenever a library was loaded.
 * Version 1 (no generations, no epochs) could only be replayed in file order.
 */
#define MPTRACK_LOG_MAGIC "MPTLOG1"
#define MPTRACK_LOG_VERSION 2

struct mptrack_log_header {
	char magic[8];          /* MPTRACK_LOG_MAGIC */
	uint32_t version;       /* MPTRACK_LOG_VERSION */
	uint32_t header_size;   /* sizeof(struct mptrack_log_header) */
	uint32_t event_size;    /* sizeof(struct mptrack_event) = 32 */
	uint32_t bt_depth;
	uint64_t tsc_hz;        /* 0 if unknown when the log started */
	uint64_t start_tsc;
	int32_t pid;
	uint32_t reserved;
	uint64_t reserved2[2];
};

enum mptrack_event_kind {
	MPTRACK_EV_ALLOC = 1,   /* get: pool, addr, stack, lcore, tsc; aux: generation (>= 1) */
	MPTRACK_EV_FREE = 2,    /* put; aux: generation of the alloc it ends (0: never got) */
	MPTRACK_EV_FAULT = 3,   /* aux: enum mptrack_fault_kind */
	MPTRACK_EV_POOL = 4,    /* pool created: addr = rte_mempool *, aux = capacity; + name block */
	MPTRACK_EV_POOL_GONE = 5,
	MPTRACK_EV_MALLOC = 6,  /* rte_malloc family: pool = 0xffff, aux = size (capped), seq: generation */
	MPTRACK_EV_MFREE = 7,   /* rte_free; seq: generation of the alloc it ends */
	MPTRACK_EV_STACK = 8,   /* stack: id, aux: depth; + ceil(depth / 4) blocks of frames */
	MPTRACK_EV_MAPS = 9,    /* aux: length in bytes; + ceil(length / 32) blocks of text */
	MPTRACK_EV_LOST = 10,   /* aux: events dropped (a thread's buffer was full) */
	MPTRACK_EV_CLOCK = 11,  /* addr: tsc_hz, once known (the header may say 0) */
};

#define MPTRACK_LOG_MALLOC_POOL 0xffff

struct mptrack_event {
	uint64_t tsc;
	uint64_t addr;
	uint32_t stack;
	uint32_t aux;
	uint16_t pool;          /* slot in mptrack_tables.pools[] */
	uint16_t lcore;
	uint8_t kind;           /* enum mptrack_event_kind */
	uint8_t seq[3];         /* 24 bits, little-endian: pool events (ALLOC, FREE, FAULT,
				 * POOL, POOL_GONE): the pool's epoch; MALLOC, MFREE: the
				 * block's generation; else 0 */
};

#ifdef __cplusplus
extern "C" {
#endif

extern struct mptrack_tables mptrack_agent_tables;

/* Write the SIGRTMIN dump now (to MPTRACK_DUMP, or to path if not NULL). */
int mptrack_agent_dump(const char *path);

#ifdef __cplusplus
}
#endif

#endif /* MPTRACK_AGENT_H */
