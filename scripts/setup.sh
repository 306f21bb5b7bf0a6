#!/usr/bin/env bash
# Install what gdb-mptrack needs on Debian 12, then check that it works.
#
# Idempotent: when every package is already installed it changes nothing and
# only runs the checks. Missing packages are installed with apt-get (as root,
# or through sudo when not root); 'apt-get update' runs only in that case.
#
# gdb embeds Debian's system Python (/usr/bin/python3), not whichever python3
# comes first on PATH, so the Python modules come from Debian packages too.
set -euo pipefail

PACKAGES=(
	gdb
	pkg-config
	gcc
	libc6-dev
	binutils
	libdpdk-dev # DPDK headers and 'pkg-config libdpdk'
	dpdk-dev    # dpdk-testpmd, dpdk-test, dpdk-proc-info
	python3
	python3-pygments
	python3-pyelftools
	python3-tabulate
	python3-numpy # bulk walks and classification of large pools
	python3-pytest
	python3-pytest-xdist
	libunwind8 # the preload agent's unwinder (dlopen'ed; glibc backtrace() is the slow fallback)
)

say() { printf 'setup: %s\n' "$*"; }
die() {
	printf 'setup: ERROR: %s\n' "$*" >&2
	exit 1
}

command -v dpkg-query >/dev/null 2>&1 ||
	die "dpkg-query not found: this script supports Debian 12 only"

is_installed() {
	[ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" = installed ]
}

missing=()
for pkg in "${PACKAGES[@]}"; do
	is_installed "$pkg" || missing+=("$pkg")
done

if [ "${#missing[@]}" -gt 0 ]; then
	if [ "$(id -u)" -eq 0 ]; then
		as_root=()
	elif command -v sudo >/dev/null 2>&1; then
		as_root=(sudo)
	else
		die "missing packages (${missing[*]}) and not root, with no sudo: install them as root"
	fi
	say "installing missing packages: ${missing[*]}"
	"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q ||
		die "apt-get update failed"
	"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -q --no-install-recommends "${missing[@]}" ||
		die "apt-get install failed for: ${missing[*]}"
else
	say "all ${#PACKAGES[@]} packages already installed"
fi

# Checks: each one says what is wrong and how to look closer.
failed=0
check_failed() {
	printf 'setup: CHECK FAILED: %s\n' "$*" >&2
	failed=1
}

if ! out=$(/usr/bin/python3 -c 'import pygments, elftools, tabulate, numpy, pytest' 2>&1); then
	check_failed "/usr/bin/python3 cannot import pygments, elftools, tabulate, numpy, pytest: $out"
fi

# gdb -batch does not always exit non-zero on a Python error: look for the marker.
gdb_out=$(gdb -nx -batch \
	-ex 'python import sys, pygments, elftools, tabulate, numpy; print("mptrack-setup-ok", sys.version.split()[0])' \
	2>&1 || true)
if ! grep -q '^mptrack-setup-ok' <<<"$gdb_out"; then
	check_failed "gdb's Python cannot import pygments, elftools, tabulate, numpy: $gdb_out"
fi
gdb_python=$(sed -n 's/^mptrack-setup-ok //p' <<<"$gdb_out")

if ! dpdk_version=$(pkg-config --modversion libdpdk 2>&1); then
	check_failed "pkg-config --modversion libdpdk: $dpdk_version"
fi

command -v cc >/dev/null 2>&1 || check_failed "no C compiler 'cc' on PATH"

if [ "$failed" -ne 0 ]; then
	die "the environment is not ready (see the messages above)"
fi

say "ok: $(gdb --version | head -n 1), gdb's Python ${gdb_python}, DPDK ${dpdk_version}"
