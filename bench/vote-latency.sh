#!/usr/bin/env bash
# bench/vote-latency.sh: latency from a Run-TryBot+1 vote (the first
# webhook the vote sends leaving the Gerrit simulator) to the first job of
# the try run starting on an idle worker, p50 and p99 over VOTES votes
# (default 50, after 3 warm-up votes), each on a new change whose upload
# gitmirror has already fetched (as it does on the upload's event, long
# before a person votes). Measured by bench/votelatency in three setups,
# each with a fresh stack (Gerrit simulator, corpus server fed from its
# webhooks, gitmirror, coordinator, one 2-slot worker, trybot):
#
#   inproc  every component in one process, talking HTTP on loopback
#   procs   gitmirror, coordinator, worker and trybot each in its own
#           "tryd" process (simulator and corpus server in the driver)
#   poll    the baseline: like inproc, but the trybot scans the corpus
#           every second instead of after each change, the polling design
#           of golang.org/x/build's coordinator (which also sat behind a
#           15 s cache, not modelled here)
#
# Each line also shows the part after the vote reached the corpus
# (after_corpus: follower, trybot, coordinator, worker), the rest being
# maintnerd's ingestion (a git fetch from the simulator per nudge).
#
# Target: p50 under 100 ms and p99 under 500 ms in both inproc and procs.
# The final line reports the worse of the two setups for each figure.
. "$(dirname "$0")/lib.sh"

dir=$(benchdir)
votes=${VOTES:-50}
go build -o "$dir/tryd" ./cmd/tryd
go build -o "$dir/votelatency" ./bench/votelatency
"$dir/votelatency" -votes "$votes" -warmup 3 -tryd "$dir/tryd" -dir "$dir/run" 2>"$dir/stderr" | tee "$dir/out" || {
	cat "$dir/stderr" >&2
	exit 1
}
get() { grep "mode=$1 " "$dir/out" | tr ' ' '\n' | grep "^$2=" | cut -d= -f2; }
ip50=$(get inproc p50_ms) ip99=$(get inproc p99_ms)
pp50=$(get procs p50_ms) pp99=$(get procs p99_ms)
bp50=$(get poll p50_ms) bp99=$(get poll p99_ms)
p50=$(awk -v a="$ip50" -v b="$pp50" 'BEGIN { print (a > b ? a : b) }')
p99=$(awk -v a="$ip99" -v b="$pp99" 'BEGIN { print (a > b ? a : b) }')
echo "one process:        p50 $ip50 ms, p99 $ip99 ms (after the corpus has the vote: p50 $(get inproc after_corpus_p50_ms) ms, p99 $(get inproc after_corpus_p99_ms) ms)"
echo "own processes:      p50 $pp50 ms, p99 $pp99 ms (after the corpus has the vote: p50 $(get procs after_corpus_p50_ms) ms, p99 $(get procs after_corpus_p99_ms) ms)"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo unknown) on $(nproc 2>/dev/null || echo '?') cores"
echo "1 s polling (x/build design, one process): p50 $bp50 ms, p99 $bp99 ms"
echo "polling/event-driven (one process): p50 $(ratio "$bp50" "$ip50")x, p99 $(ratio "$bp99" "$ip99")x"
pass=0
if le "$p50" 100 && le "$p99" 500; then pass=1; fi
report vote-latency "p50 $p50 ms, p99 $p99 ms" "p50 < 100 ms, p99 < 500 ms" "$pass"
