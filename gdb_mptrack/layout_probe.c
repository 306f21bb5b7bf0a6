/*
 * Layout probe: compiled with -g against the installed DPDK headers and never
 * linked or run.  gdb-mptrack reads the DWARF of the object file (pyelftools)
 * to learn the offsets of the structures it decodes, for the exact DPDK
 * release and build configuration (rte_config.h) those headers describe.
 * The enum carries the build constants DWARF would otherwise not keep.
 */
#include <rte_mempool.h>
#include <rte_ring.h>
#include <rte_stack.h>
#include <rte_mbuf.h>
#include <rte_version.h>

enum mptrack_constants {
	MPTRACK_RTE_VER_YEAR = RTE_VER_YEAR,
	MPTRACK_RTE_VER_MONTH = RTE_VER_MONTH,
	MPTRACK_RTE_VER_MINOR = RTE_VER_MINOR,
	MPTRACK_RTE_VER_RELEASE = RTE_VER_RELEASE,
	MPTRACK_RTE_MAX_LCORE = RTE_MAX_LCORE,
	MPTRACK_RTE_MEMPOOL_CACHE_MAX_SIZE = RTE_MEMPOOL_CACHE_MAX_SIZE,
	MPTRACK_RTE_MEMPOOL_MAX_OPS_IDX = RTE_MEMPOOL_MAX_OPS_IDX,
	MPTRACK_RTE_STACK_F_LF = RTE_STACK_F_LF,
	MPTRACK_RTE_PKTMBUF_HEADROOM = RTE_PKTMBUF_HEADROOM,
};

enum mptrack_constants mptrack_probe_constants;
struct rte_mempool *mptrack_probe_mempool;
struct rte_mempool_cache *mptrack_probe_cache;
struct rte_mempool_objhdr *mptrack_probe_objhdr;
struct rte_mempool_memhdr *mptrack_probe_memhdr;
struct rte_mempool_ops_table *mptrack_probe_ops_table;
struct rte_ring *mptrack_probe_ring;
struct rte_stack *mptrack_probe_stack;
struct rte_mbuf *mptrack_probe_mbuf;
struct rte_pktmbuf_pool_private *mptrack_probe_pktmbuf_private;
