#!/usr/bin/env bash
# bench/event-latency.sh: latency from a webhook leaving the GitHub or
# Gerrit simulator to the mutation it causes being delivered to a log
# follower (maintner/logsync over loopback), with pubsubhelper (durable
# journal), maintnerd's ingestion (maintner/ingest, nudged through a
# pubsubhelper subscription) and the follower running in one process and
# talking over loopback HTTP (bench/eventlatency). EVENTS comments per
# source (default 150, so 300 events), one at a time; the clock starts at
# the first webhook the action sends.
#
# Baseline, measured on the same deliveries: the webhook hop alone (until
# pubsubhelper acknowledges, after its fsync).
#
# Target: p50 under 50 ms over all events.
. "$(dirname "$0")/lib.sh"

dir=$(benchdir)
events=${EVENTS:-150}
go build -o "$dir/eventlatency" ./bench/eventlatency
out=$("$dir/eventlatency" -dir "$dir/run" -n "$events")
echo "$out" >&2

get() { grep "source=$1 " <<<"$out" | sed -n "s/.* $2=\([^ ]*\).*/\1/p"; }
p50=$(get all p50_ms) p99=$(get all p99_ms) lost=$(get all lost) n=$(get all n)
ack50=$(get all ack_p50_ms) ack99=$(get all ack_p99_ms)
echo "github: p50 $(get github p50_ms) ms, p99 $(get github p99_ms) ms; gerrit: p50 $(get gerrit p50_ms) ms, p99 $(get gerrit p99_ms) ms; $n events, $lost lost" >&2
echo "baseline (webhook acknowledged by pubsubhelper): p50 $ack50 ms, p99 $ack99 ms; end to end is $(ratio "$p50" "$ack50")x the webhook hop at p50" >&2

pass=1
awk -v p="$p50" 'BEGIN { exit !(p < 50) }' || pass=0
[ "$lost" = 0 ] || pass=0
report event-latency "p50 $p50 ms, p99 $p99 ms" "p50 < 50 ms" "$pass"
