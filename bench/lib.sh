# bench/lib.sh: shared helpers for benchmark entry points. Source it from
# bench/NAME.sh, which runs from the repository root, measures tryd and a
# baseline in the same run, and ends with exactly one result line:
#
#   NAME: FIGURE (target TARGET): ok      or      NAME: FIGURE (target TARGET): MISS
#
# Usage in a script:
#   . "$(dirname "$0")/lib.sh"
#   report corpus-load "5.2x faster, 0.61x heap" "4x faster, 0.75x heap" "$ok"

set -euo pipefail

# report NAME FIGURE TARGET PASS prints the result line; PASS is 1 or 0.
report() {
	local name=$1 figure=$2 target=$3 pass=$4
	if [ "$pass" = 1 ]; then
		echo "$name: $figure (target $target): ok"
	else
		echo "$name: $figure (target $target): MISS"
	fi
}

# Scratch space for the whole script, removed when it exits. The trap is
# set here, in the sourcing shell: a trap set inside $(...) would fire as
# soon as the command substitution's subshell ended. A script that sets its
# own EXIT trap should add: rm -rf "$BENCH_TMP".
BENCH_TMP=$(mktemp -d "${TMPDIR:-/tmp}/tryd-bench.XXXXXX")
trap 'rm -rf "$BENCH_TMP"' EXIT

# benchdir makes and prints a fresh scratch directory under $BENCH_TMP;
# use it as dir=$(benchdir).
benchdir() { mktemp -d "$BENCH_TMP/d.XXXXXX"; }

# ratio A B prints A/B with two decimals.
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0) print "inf"; else printf "%.2f", a / b }'; }

# le A B exits 0 when A <= B (floating point).
le() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a <= b) }'; }
