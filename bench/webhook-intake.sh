#!/usr/bin/env bash
# bench/webhook-intake.sh: signed GitHub webhooks accepted per second by
# "tryd pubsubhelper" with durable journaling (every delivery fsynced,
# group-committed, before its 200), from a load generator on loopback
# (bench/webhookload: 64 concurrent senders, the recorded GitHub payloads
# of ../shared/fixtures in turn, 1 s warm-up then WEBHOOK_SECONDS, default
# 5 s), next to the same server with --no-journal as the baseline. Each
# mode runs ROUNDS times (default 2), alternating, and the better round of
# each is reported, since the machine is shared and noisy. Both modes keep
# at most 256 MiB of events (--retention-bytes), so that the in-memory
# baseline does not hold every payload of the run.
#
# Targets: at least 5,000 deliveries/s with journaling, p99
# acknowledgement latency under 20 ms. The final line reports both, the
# ratio to the baseline and the 1-minute load average when the run ended
# (the figures are only meaningful on an otherwise idle machine).
#
# Each RESULT line also shows, to tell where time goes: srv_cpu_us and
# cpu_us, the server's and the generator's CPU time (user+sys) per
# delivery, warm-up included; and, durable only, the journal's group
# commit (fsyncs, mean fsync, records per fsync) and append_p99_ms, the
# server-side time from append to durable (an upper bound from the
# histogram buckets of tryd_pubsubhelper_journal_append_seconds): a p99
# acknowledgement far above append_p99_ms is time spent waiting for CPU
# (the generator and the server share the cores), not for the disk.
. "$(dirname "$0")/lib.sh"

dir=$(benchdir)
secs=${WEBHOOK_SECONDS:-5}
rounds=${ROUNDS:-2}
fixtures="${TRYD_SHARED:-$(cd .. && pwd)/shared}/fixtures/github/webhooks"
[ -d "$fixtures" ] || { echo "webhook-intake: fixtures not found at $fixtures (set TRYD_SHARED)" >&2; exit 1; }
go build -o "$dir/tryd" ./cmd/tryd
go build -o "$dir/webhookload" ./bench/webhookload
echo "bench-secret-$RANDOM$RANDOM" >"$dir/secret"

pid=
stop_server() {
	if [ -n "$pid" ]; then
		kill -TERM "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
		pid=
	fi
}
trap 'stop_server; rm -rf "$dir"' EXIT

# run MODE ROUND: start a server (MODE durable or memory), load it, print
# the load generator's RESULT line.
run() {
	local mode=$1 round=$2 log="$dir/server-$1-$2.log" extra=()
	[ "$mode" = memory ] && extra=(--no-journal)
	"$dir/tryd" pubsubhelper --listen 127.0.0.1:0 --data-dir "$dir/data-$mode-$round" \
		--github-secret "file:$dir/secret" --retention-bytes $((256 << 20)) \
		--log-format json --log-level info "${extra[@]}" 2>"$log" &
	pid=$!
	local url=
	for _ in $(seq 100); do
		url=$(sed -n 's/.*"addr":"\(http:[^"]*\)".*/\1/p' "$log" 2>/dev/null | head -1)
		[ -n "$url" ] && break
		sleep 0.1
	done
	[ -n "$url" ] || { cat "$log" >&2; echo "webhook-intake: server did not start" >&2; exit 1; }
	local out diag=
	out=$("$dir/webhookload" -url "$url" -secret-file "$dir/secret" -fixtures "$fixtures" -c 64 -d "${secs}s" -warmup 1s -id-prefix "$mode-$round")
	if command -v curl >/dev/null; then
		local metrics
		metrics=$(curl -s "$url/metrics")
		# The server's CPU per accepted delivery (clock ticks of
		# /proc/PID/stat, 100 per second).
		diag=$(awk -v stat="$(cat /proc/$pid/stat 2>/dev/null)" '
			/^tryd_pubsubhelper_webhooks_total/ && /result="ok"/ { ok = $2 }
			END { split(stat, f, " "); if (ok > 0 && f[14] != "") printf " srv_cpu_us=%.0f", (f[14] + f[15]) * 1e4 / ok }' <<<"$metrics")
		if [ "$mode" = durable ]; then
			# Group commit: fsyncs, their mean time, records per fsync;
			# the append latency's p99 bucket.
			diag+=$(awk '
				/^tryd_pubsubhelper_journal_fsync_seconds_sum/ { s = $2 }
				/^tryd_pubsubhelper_journal_fsync_seconds_count/ { n = $2 }
				/^tryd_pubsubhelper_journal_batch_records_sum/ { r = $2 }
				/^tryd_pubsubhelper_journal_append_seconds_bucket/ { match($0, /le="[^"]*"/); le[++nb] = substr($0, RSTART + 4, RLENGTH - 5); c[nb] = $2 }
				/^tryd_pubsubhelper_journal_append_seconds_count/ { total = $2 }
				END {
					if (n > 0) printf " fsyncs=%d fsync_mean_ms=%.2f records_per_fsync=%.1f", n, 1000 * s / n, r / n
					for (i = 1; i <= nb; i++) if (total > 0 && c[i] >= 0.99 * total) { printf " append_p99_ms<=%s", (le[i] == "+Inf" ? "inf" : 1000 * le[i]); break }
				}' <<<"$metrics")
		fi
	fi
	stop_server
	# The line goes to the caller and, as progress, to stderr (through
	# the inherited descriptor: tee /dev/stderr would reopen a
	# redirected stderr file at offset 0 and overwrite it).
	local line
	line=$(echo "$out$diag" | sed "s/^RESULT/RESULT mode=$mode round=$round/")
	echo "$line" >&2
	echo "$line"
}

results=""
for r in $(seq "$rounds"); do
	results+="$(run memory "$r")"$'\n'
	results+="$(run durable "$r")"$'\n'
done

# best MODE: the line of MODE's round with the highest rate.
best() { grep "mode=$1 " <<<"$results" | sed 's/.* rate=\([^ ]*\).*/\1 &/' | sort -n | tail -1 | cut -d' ' -f2-; }
get() { sed -n "s/.* $2=\([^ ]*\).*/\1/p" <<<"$1"; }
dur=$(best durable) mem=$(best memory)
rate=$(get "$dur" rate) p99=$(get "$dur" p99_ms) p50=$(get "$dur" p50_ms)
brate=$(get "$mem" rate) bp99=$(get "$mem" p99_ms)
ratio=$(ratio "$rate" "$brate")
load=$(cut -d' ' -f1 /proc/loadavg 2>/dev/null || echo "?")

pass=1
le 5000 "$rate" || pass=0
awk -v p="$p99" 'BEGIN { exit !(p < 20) }' || pass=0
figure="${rate}/s durable, p50 ${p50} ms, p99 ${p99} ms (no-journal baseline ${brate}/s, p99 ${bp99} ms; ${ratio}x of baseline; load average ${load})"
report webhook-intake "$figure" ">=5000/s, p99 <20 ms" "$pass"
