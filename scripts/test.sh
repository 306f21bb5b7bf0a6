#!/usr/bin/env bash
# Run gdb-mptrack's tests: scripts/setup.sh, then pytest with Debian's system
# Python (the one gdb embeds), not whichever python3 comes first on PATH.
#
#   bash scripts/test.sh                      # every test under tests/
#   bash scripts/test.sh -k pools -x          # extra arguments go to pytest
#   bash scripts/test.sh tests/unit           # a path under tests/ replaces tests/
#   MPTRACK_TEST_JOBS=1 bash scripts/test.sh  # no parallel workers
#
# With pytest-xdist installed the tests run on MPTRACK_TEST_JOBS workers
# (default 2), unless the arguments already choose (-n / --numprocesses).
# The exit status is pytest's: 5 (no test collected) is a failure too.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/setup.sh

PYTHON=/usr/bin/python3
jobs=${MPTRACK_TEST_JOBS:-2}

args=()
chose_jobs=0
chose_paths=0
for arg in "$@"; do
	case $arg in
	-n | -n* | --numprocesses | --numprocesses=*) chose_jobs=1 ;;
	tests | tests/* | ./tests | ./tests/*) chose_paths=1 ;;
	esac
done

if [ "$chose_jobs" -eq 0 ] && [ "$jobs" != 1 ] && [ "$jobs" != 0 ] &&
	"$PYTHON" -c 'import xdist' >/dev/null 2>&1; then
	args+=(-n "$jobs")
fi
if [ "$chose_paths" -eq 0 ]; then
	args+=(tests)
fi

echo "test: $PYTHON -m pytest ${args[*]} $*"
# exec: pytest's status and its summary are the last things this script gives.
exec "$PYTHON" -m pytest "${args[@]}" "$@"
