#!/usr/bin/env bash
# bench/sched-overhead.sh: tryd's scheduling overhead. A real coordinator
# and 2 real workers (slots = CPUs each) run N trivial jobs ("true <n>",
# N = 10,000 unless SCHED_JOBS says otherwise) as a wide graph, compared
# with xargs -P <total slots> running the same commands, and as a deep
# chain, compared with xargs -P 1 (a chain can only run one job at a
# time; the chain is scaled down if the time budget requires, and the
# job count is printed). Then both graphs are resubmitted (all cached;
# three times each, the median counts, see schedbench) and
# dispatch latency (submit to job start on an idle worker) is sampled.
#
# Targets: wide and deep within 1.5x of xargs; cached resubmit at most 2%
# of the cold run; dispatch latency p50 under 10 ms. The final line
# reports the worse of the two xargs ratios against 1.5x and says whether
# the other two targets were met.
. "$(dirname "$0")/lib.sh"

dir=$(benchdir)
jobs=${SCHED_JOBS:-10000}
cpus=$(getconf _NPROCESSORS_ONLN)
go build -o "$dir/tryd" ./cmd/tryd
go build -o "$dir/schedbench" ./worker/internal/schedbench
"$dir/schedbench" -v -tryd "$dir/tryd" -jobs "$jobs" -workers 2 -slots "$cpus" -budget 190s | tee "$dir/out"
out=$(cat "$dir/out")
result=$(grep '^RESULT ' <<<"$out")
get() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$result"; }
wide=$(get wide_ratio) deep=$(get deep_ratio) cached=$(get cached_pct) p50=$(get p50_ms)
widen=$(get wide_jobs) deepn=$(get deep_jobs)
worst=$(awk -v a="$wide" -v b="$deep" 'BEGIN { print (a > b) ? a : b }')

pass=1
le "$worst" 1.5 || pass=0
le "$cached" 2 || pass=0
awk -v p="$p50" 'BEGIN { exit !(p < 10) }' || pass=0
figure="wide ${wide}x, deep ${deep}x xargs on ${widen}/${deepn} jobs; cached ${cached}% of cold; dispatch p50 ${p50}ms"
report sched-overhead "$figure" "<=1.5x xargs, cached <=2%, p50 <10ms" "$pass"
