#!/usr/bin/env bash
# bench/dashboard-grid.sh: the dashboard's grid of 100 commits × 40
# builders rendered server-side, p50 under 50 ms, beside an empty grid
# rendered the same way (the baseline); and a job log page streaming a
# 50 MB log without the server holding it in memory.
#
# Everything is real and on loopback: a coordinator (SQLite) holding
# ~3900 post-submit builds submitted over its API (mostly cached results,
# ~4% failures run by a real worker), the dashboard in front of it, and
# plain HTTP GETs timed from the client side (whole requests, including
# the dashboard's reads from the coordinator). The grid figure is of a
# dashboard that has shown the grid before (it keeps finished builds and
# asks the coordinator only for what changed); the cold figure, every
# build read afresh, is printed beside it. The log is written by a real
# job and streamed as the HTML log page; its figure is the growth of the
# process's live heap (sampled after collections) while the page
# streams. The result is ok when the grid's p50 is under 50 ms and the
# heap grew by less than half the log's size.
#
# The measurement is TestBenchGrid in dashboard/bench_test.go. Sizes can
# be changed with TRYD_BENCH_COMMITS, TRYD_BENCH_BUILDERS,
# TRYD_BENCH_LOG_MB and TRYD_BENCH_REQUESTS.
. "$(dirname "$0")/lib.sh"

# Not $(benchdir): its EXIT trap runs when the command substitution's
# subshell exits, removing the directory at once.
dir=$(mktemp -d "${TMPDIR:-/tmp}/tryd-bench.XXXXXX")
trap 'rm -rf "$dir"' EXIT
if ! TRYD_BENCH_DASHBOARD=1 go test -count=1 -timeout 240s -run '^TestBenchGrid$' -v ./dashboard/ >"$dir/out" 2>&1; then
	cat "$dir/out"
	echo "dashboard-grid: measurement failed" >&2
	exit 1
fi
val() { awk -v k="$1" '$1 == k { print $2 }' "$dir/out"; }

p50=$(val grid_p50_ms)
p90=$(val grid_p90_ms)
empty=$(val empty_p50_ms)
cold=$(val grid_cold_p50_ms)
log_mb=$(awk -v b="$(val log_bytes)" 'BEGIN { printf "%.0f", b / 1048576 }')
growth=$(val log_live_heap_growth_mb)

echo "seeded: $(val seed_builds) builds in $(val seed_seconds) s; grid $(val grid_commits) commits × $(val grid_builders) builders, $(val grid_html_bytes) bytes of HTML"
echo "grid p50: $p50 ms (p90 $p90 ms); empty grid (baseline) p50: $empty ms; ratio $(ratio "$p50" "$empty")x"
echo "grid p50, cold (fresh dashboard, every build read): $cold ms"
echo "log page: ${log_mb} MB log -> $(val log_html_bytes) bytes of HTML in $(val log_seconds) s; live heap $(val log_heap_before_mb) MB before, grew $growth MB while streaming (in-use heap grew $(val log_heap_inuse_growth_mb) MB)"

pass=0
if le "$p50" 50 && le "$growth" "$(awk -v m="$log_mb" 'BEGIN { print m / 2 }')"; then
	pass=1
fi
report dashboard-grid "p50 $p50 ms" "50 ms" "$pass"
