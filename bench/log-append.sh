#!/usr/bin/env bash
# bench/log-append.sh: tryd's mutation log (maintner/mutlog, maintner/logsync)
# measured by bench/logappend against baselines in the same run, on the
# disk under TMPDIR:
#
#   - durable appends/s: 64 concurrent appenders of 500-byte payloads for
#     APPEND_SECONDS (default 3) on a disk-backed log (group commit, every
#     Append returns after fdatasync), against the same 64 appenders each
#     writing its record and calling fdatasync itself (one sync per
#     mutation);
#   - follower catch-up MiB/s: a fresh follower syncing a >= CATCHUP_MB
#     (default 64) MiB log over loopback HTTP into an empty cache (verifying
#     SHA-224, writing the cache, parsing every record), against plain HTTP
#     GETs of the same segments into /dev/null;
#   - tail latency: from Append returning to a tailing follower receiving
#     the record (long poll, no sleeps), 300 samples, beside a loopback
#     HTTP round trip.
#
# The machine is shared, so figures are noisy; the workload is sized to run
# in about 15 s. Target: tail latency p50 under 5 ms on loopback. The final
# line reports it, with the other figures and ratios.
. "$(dirname "$0")/lib.sh"

dir=$(benchdir)
go build -o "$dir/logappend" ./bench/logappend
out=$("$dir/logappend" -dir "$dir" -c 64 -size 500 -d "${APPEND_SECONDS:-3}s" -catchup-mb "${CATCHUP_MB:-64}" -tail-n 300)
echo "$out"
get() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$out"; }
rate=$(get append_rate) base=$(get append_baseline)
cu=$(get catchup_mibs) raw=$(get catchup_raw_mibs)
p50=$(get tail_p50_ms) p99=$(get tail_p99_ms) rtt=$(get rtt_p50_ms)
pass=1
awk -v p="$p50" 'BEGIN { exit !(p < 5) }' || pass=0
figure="tail p50 ${p50} ms, p99 ${p99} ms (loopback RTT ${rtt} ms); appends ${rate}/s durable vs ${base}/s one-fsync-each ($(ratio "$rate" "$base")x); catch-up ${cu} MiB/s vs raw HTTP ${raw} MiB/s ($(ratio "$cu" "$raw")x)"
report log-append "$figure" "tail p50 <5 ms" "$pass"
