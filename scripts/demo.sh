#!/usr/bin/env bash
# The gdb-mptrack demo: build demo/demo.c (a small DPDK program with two
# mempools), run it under gdb until it stops in demo_checkpoint(), and look at
# its mempools with the mptrack commands.
#
#   bash scripts/demo.sh
#
# Runs scripts/setup.sh first, so it works on a fresh Debian 12 machine.
# DPDK runs without hugepages or PCI devices (--no-huge --no-pci).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

heading() { printf '\n==== %s ====\n' "$*"; }

heading "1. Setup: install what is missing (gdb, DPDK, Python modules)"
bash scripts/setup.sh

heading "2. Build demo/demo.c into build/demo (with -g, so gdb sees DPDK's types)"
read -r -a dpdk_cflags <<<"$(pkg-config --cflags libdpdk)"
read -r -a dpdk_libs <<<"$(pkg-config --libs libdpdk)"
mkdir -p build
build_cmd=(cc -g -O1 -rdynamic -Wall "${dpdk_cflags[@]}" demo/demo.c -o build/demo "${dpdk_libs[@]}")
echo "${build_cmd[*]}"
"${build_cmd[@]}"

# DPDK keeps a runtime directory per --file-prefix: remove ours at the end.
prefix="demo-$$"
# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
	local dir
	for dir in "/var/run/dpdk/$prefix" "${XDG_RUNTIME_DIR:-/tmp}/dpdk/$prefix" "/tmp/dpdk/$prefix"; do
		if [ -d "$dir" ]; then rm -rf -- "$dir"; fi
	done
}
trap cleanup EXIT

gdb_args=(-nx -batch)
if [ -f gdbinit.py ]; then
	gdb_args+=(-x gdbinit.py)
	have_mptrack=1
else
	have_mptrack=0
fi
gdb_args+=(
	-ex 'set pagination off'
	-ex 'set confirm off'
	-ex 'set print thread-events off'
	-ex 'set debuginfod enabled off'
	-ex 'break demo_checkpoint'
	-ex 'echo \n==== 3. Run build/demo under gdb until it stops in demo_checkpoint() ====\n'
	-ex 'echo Lcores 0 and 1 have each taken 40 demo_pool objects and 16 mbufs,\n'
	-ex 'echo kept 8 objects and 4 mbufs, and freed the rest into their per-lcore caches.\n\n'
	-ex run
)
if [ "$have_mptrack" -eq 1 ]; then
	gdb_args+=(
		-ex 'echo \n==== 4. mptrack pools: every mempool in the process ====\n'
		-ex 'mptrack pools'
		-ex 'echo \n==== 5. mptrack dump demo_pool --state in-use --limit 10 ====\n'
		-ex 'echo The objects the program holds (16: 8 per lcore), the first 10 of them.\n'
		-ex 'echo Freed objects sitting in a per-lcore cache are free, so they are not listed.\n'
		-ex 'mptrack dump demo_pool --state in-use --limit 10'
		-ex 'echo \n==== 6. mptrack dump demo_mbufs --state in-use --hex --limit 3 ====\n'
		-ex 'echo Held mbufs with their bytes in hex: some carry the text MPTRACK-DEMO payload.\n'
		-ex 'mptrack dump demo_mbufs --state in-use --hex --limit 3'
		-ex 'echo \n==== 7. mptrack object ADDR: which pool owns an address, and in which state ====\n'
		-ex 'echo ADDR is demo_held_objs[1][0], a demo_pool object that lcore 1 holds.\n'
		-ex 'eval "mptrack object 0x%lx", (unsigned long) demo_held_objs[1][0]'
	)
else
	gdb_args+=(
		-ex 'echo \n==== gdbinit.py is not there yet: the mptrack steps are skipped ====\n'
		-ex 'echo What the program holds, seen with plain gdb:\n'
		-ex 'print demo_held_objs[1][0]'
		-ex 'print *demo_held_objs[1][0]'
		-ex 'print demo_pool->name'
	)
fi
# shellcheck disable=SC2054 # the comma in "-l 0,1" is DPDK's lcore list
gdb_args+=(
	-ex 'echo \n==== 8. kill: end the program ====\n'
	-ex kill
	--args build/demo --no-huge -m 256 --no-pci -l 0,1 --file-prefix "$prefix"
)

echo
echo "Starting gdb (every step below runs inside this one gdb session):"
if [ "$have_mptrack" -eq 1 ]; then
	echo "  gdb -nx -batch -x gdbinit.py -ex 'break demo_checkpoint' -ex run -ex 'mptrack pools' ... \\"
else
	echo "  gdb -nx -batch -ex 'break demo_checkpoint' -ex run ... \\"
fi
echo "    --args build/demo --no-huge -m 256 --no-pci -l 0,1 --file-prefix $prefix"
status=0
gdb "${gdb_args[@]}" </dev/null || status=$?
if [ "$have_mptrack" -eq 0 ]; then
	echo
	echo "demo: gdbinit.py is missing, so only the build and the run to the breakpoint were shown."
	exit "$status"
fi

# Part two: catch a double free in the act, with tests/programs/track_faults.c (mode dup-free:
# alloc_site_a() takes an object, free_site_b() puts it back, free_site_c() puts it back again).
echo
echo "==== 9. Catching a duplicate free: mptrack track, then run ===="
faults_prefix="demo-faults-$$"
# shellcheck disable=SC2046 # pkg-config prints several words on purpose
cc -g -O1 -rdynamic $(pkg-config --cflags libdpdk) tests/programs/track_faults.c -o build/track_faults \
	$(pkg-config --libs libdpdk)
echo "  gdb -x gdbinit.py -ex 'mptrack track faults' -ex run -ex bt --args build/track_faults ... --mode dup-free"
# shellcheck disable=SC2054 # the comma in "-l 0,1" is DPDK's lcore list
gdb -nx -batch -x gdbinit.py -ex 'set pagination off' \
	-ex 'mptrack track faults' -ex run \
	-ex 'echo \n==== 10. The program stopped at the second free; its own frames: ====\n' -ex 'bt 8' \
	-ex 'echo \n==== 11. mptrack status, then continue: the fault is recorded, not repaired ====\n' \
	-ex 'mptrack status' -ex continue \
	--args build/track_faults --no-huge -m 64 --no-pci -l 0,1 --file-prefix "$faults_prefix" \
	-- --truth build/track_faults-truth.json --mode dup-free </dev/null 2>&1 || status=$?
rm -rf "/var/run/dpdk/$faults_prefix"
exit "$status"
