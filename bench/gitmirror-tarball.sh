#!/usr/bin/env bash
# bench/gitmirror-tarball.sh: tarball serving of `tryd gitmirror` on a real
# repository (the source of golang.org/x/build from the module cache, made
# into a git repository), against git on the command line in the same run.
#
#   cold:   first request for a new revision vs `git archive --format=tar.gz`
#           of it in the same mirror: CPU time summed over COLD runs (the
#           figure judged; target <= 1.2x) and median wall time
#   warm:   cached request vs cold (median of WARM runs; target >= 10x faster)
#   burst:  50 concurrent requests for one new revision: git archive must
#           run once (from /metrics); wall time vs 50 sequential git archive
#   fresh:  push upstream -> POST nudge -> revision listed in /refs (p50), and
#           a patch set uploaded in the Gerrit simulator -> webhook ->
#           pubsubhelper -> gitmirror -> served (p50, p90; go test -bench)
#
# Runs from the repository root; needs go, git and curl. The final line is
# the cold ratio and warm speedup against their targets.
. "$(dirname "$0")/lib.sh"

COLD=${COLD:-7}
WARM=${WARM:-15}
BURST=${BURST:-50}
FRESH=${FRESH:-15}

for tool in go git curl; do
	command -v "$tool" >/dev/null || { echo "gitmirror-tarball: needs $tool" >&2; exit 1; }
done

# Not $(benchdir): its EXIT trap would run when the command substitution's
# subshell exits, removing the directory at once.
dir=$(mktemp -d "${TMPDIR:-/tmp}/tryd-bench.XXXXXX")
srv_pid=
cleanup() {
	if [ -n "$srv_pid" ]; then kill "$srv_pid" 2>/dev/null || true; wait "$srv_pid" 2>/dev/null || true; fi
	rm -rf "$dir"
}
trap cleanup EXIT

echo "building tryd" >&2
go build -o "$dir/tryd" ./cmd/tryd

# The upstream: a bare repository holding a sizeable Go module's source.
src=$(ls -d "$(go env GOMODCACHE)"/golang.org/x/build@*/ 2>/dev/null | tail -1)
if [ -z "$src" ]; then
	go mod download golang.org/x/build
	src=$(ls -d "$(go env GOMODCACHE)"/golang.org/x/build@*/ | tail -1)
fi
export GIT_AUTHOR_NAME=bench GIT_AUTHOR_EMAIL=bench@example.com GIT_COMMITTER_NAME=bench GIT_COMMITTER_EMAIL=bench@example.com
git init -q --bare -b main "$dir/up.git"
git init -q -b main "$dir/work"
cp -R "$src"/. "$dir/work/"
chmod -R u+w "$dir/work"
git -C "$dir/work" add -A
git -C "$dir/work" commit -qm "import $(basename "$src")"
git -C "$dir/work" push -q "$dir/up.git" main
files=$(git -C "$dir/work" ls-files | wc -l)
echo "repository: $(basename "$src"), $files files, $(du -sh "$dir/work" --exclude=.git | cut -f1)" >&2

n=0
# newrev commits a change to one file and pushes it; prints the commit.
newrev() {
	n=$((n + 1))
	echo "// bench $n $RANDOM" >>"$dir/work/README.md"
	git -C "$dir/work" commit -qam "bench $n"
	git -C "$dir/work" push -q "$dir/up.git" main
	git -C "$dir/work" rev-parse HEAD
}

cat >"$dir/tryd.yaml" <<EOF
repos:
  - name: xbuild
    url: $dir/up.git
EOF
: >"$dir/log" # exists before the server's redirection opens it
"$dir/tryd" gitmirror --config "$dir/tryd.yaml" --data-dir "$dir/data" --listen 127.0.0.1:0 \
	--pubsubhelper off --poll -1s --log-format json --log-level info 2>"$dir/log" &
srv_pid=$!
base=
for _ in $(seq 200); do
	base=$(sed -n 's/.*"addr":"\(http:[^"]*\)".*/\1/p' "$dir/log" | head -1 || true)
	if [ -n "$base" ] && curl -sf "$base/healthz" >/dev/null; then break; fi
	sleep 0.1
done
curl -sf "$base/healthz" >/dev/null || { cat "$dir/log" >&2; echo "gitmirror did not start" >&2; exit 1; }
mirror="$dir/data/gitmirror/repos/xbuild.git"

now() { date +%s%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.4f\n", (b - a) / 1e9 }'; }
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.4f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
archives() { curl -sf "$base/metrics" | awk '/^tryd_gitmirror_archive_runs_total.*result="ok"/ { s += $2 } END { print s + 0 }'; }
sync_mirror() { curl -sf -X POST "$base/xbuild/nudge?wait=1" >/dev/null; }

# Cold vs git archive, interleaved so that load from others hits both.
# Wall times are noisy on a shared machine, so CPU time is measured too:
# the server's (tryd plus the git processes it waited for, from
# /proc/PID/stat) against this shell's children's for git archive.
srv_cpu() { awk '{ print $14 + $15 + $16 + $17 }' "/proc/$srv_pid/stat"; }
sh_cpu() { awk '{ print $16 + $17 }' "/proc/$$/stat"; }
cold_req() {
	local c0 c1
	c0=$(srv_cpu)
	curl -sf -o "$dir/cold.tgz" -w '%{time_total}\n' "$base/xbuild.tar.gz?rev=$rev" >>"$dir/cold"
	c1=$(srv_cpu)
	cold_cpu=$((cold_cpu + c1 - c0))
}
base_run() {
	local t0 t1 c0 c1
	c0=$(sh_cpu)
	t0=$(now)
	git -C "$mirror" archive --format=tar.gz "$rev" >"$dir/base.tgz"
	t1=$(now)
	c1=$(sh_cpu)
	secs "$t0" "$t1" >>"$dir/base"
	base_cpu=$((base_cpu + c1 - c0))
}
cold_cpu=0
base_cpu=0
: >"$dir/cold" && : >"$dir/base"
for i in $(seq "$COLD"); do
	rev=$(newrev)
	sync_mirror
	git -C "$mirror" cat-file -p "$rev^{tree}" >/dev/null # page the mirror in for both
	if [ $((i % 2)) = 0 ]; then
		base_run
		cold_req
	else
		cold_req
		base_run
	fi
	cmp -s "$dir/cold.tgz" "$dir/base.tgz" || { echo "tarball differs from git archive at $rev" >&2; exit 1; }
done
cold=$(median <"$dir/cold")
basem=$(median <"$dir/base")
size=$(wc -c <"$dir/cold.tgz")
cold_wall_ratio=$(ratio "$cold" "$basem")
cold_cpu_ratio=$(ratio "$cold_cpu" "$base_cpu")
echo "cold tarball: median ${cold}s wall, ${cold_cpu} CPU ticks in $COLD runs; git archive --format=tar.gz: median ${basem}s wall, ${base_cpu} CPU ticks; $size bytes" >&2
echo "cold/git archive: ${cold_wall_ratio}x wall (median), ${cold_cpu_ratio}x CPU (sum)" >&2

# Warm: the last revision again, from the cache.
: >"$dir/warm"
for _ in $(seq "$WARM"); do
	curl -sf -o "$dir/warm.tgz" -w '%{time_total}\n' "$base/xbuild.tar.gz?rev=$rev" >>"$dir/warm"
done
cmp -s "$dir/warm.tgz" "$dir/base.tgz" || { echo "cached tarball differs" >&2; exit 1; }
warm=$(median <"$dir/warm")
echo "warm tarball: median ${warm}s" >&2

# Burst: BURST concurrent requests for one new revision.
rev=$(newrev)
sync_mirror
before=$(archives)
t0=$(now)
for i in $(seq "$BURST"); do
	curl -sf -o "$dir/burst.$i" "$base/xbuild.tar.gz?rev=$rev" &
done
wait_failed=0
for job in $(jobs -p); do
	[ "$job" = "$srv_pid" ] && continue
	wait "$job" || wait_failed=1
done
t1=$(now)
burst=$(secs "$t0" "$t1")
runs=$(($(archives) - before))
for i in $(seq "$BURST"); do cmp -s "$dir/burst.$i" "$dir/burst.1" || wait_failed=1; done
t0=$(now)
for _ in $(seq "$BURST"); do git -C "$mirror" archive --format=tar.gz "$rev" >/dev/null; done
t1=$(now)
seq_base=$(secs "$t0" "$t1")
echo "burst: $BURST concurrent requests in ${burst}s with $runs git archive run(s) (failures: $wait_failed); $BURST sequential git archive: ${seq_base}s ($(ratio "$seq_base" "$burst")x longer)" >&2

# Freshness: push upstream, nudge, poll /refs until the new commit is listed.
: >"$dir/fresh"
for _ in $(seq "$FRESH"); do
	rev=$(newrev)
	t0=$(now)
	curl -sf -X POST "$base/xbuild/nudge" >/dev/null
	for _ in $(seq 2000); do
		curl -sf "$base/xbuild/refs?prefix=refs/heads/" | grep -q "$rev" && break
		sleep 0.002
	done
	t1=$(now)
	secs "$t0" "$t1" >>"$dir/fresh"
done
fresh=$(median <"$dir/fresh")
echo "push -> servable (nudge, then listed in /refs): p50 ${fresh}s over $FRESH pushes" >&2

# The same through the real event path: a patch set uploaded in the Gerrit
# simulator -> webhook -> pubsubhelper -> /waitevent -> fetch -> served.
simout=$(go test -run '^$' -bench '^BenchmarkGerritUploadToServable$' -benchtime "${FRESH}x" ./gitmirror/ 2>&1) || { echo "$simout" >&2; exit 1; }
sim_p50=$(echo "$simout" | awk '/^BenchmarkGerritUploadToServable/ { for (i = 1; i < NF; i++) if ($(i + 1) == "p50-ms") print $i }' | tail -1)
sim_p90=$(echo "$simout" | awk '/^BenchmarkGerritUploadToServable/ { for (i = 1; i < NF; i++) if ($(i + 1) == "p90-ms") print $i }' | tail -1)
echo "Gerrit simulator upload -> webhook -> pubsubhelper -> gitmirror -> servable: p50 ${sim_p50}ms, p90 ${sim_p90}ms over $FRESH patch sets" >&2

# The cold figure that passes or fails is the CPU ratio (the cost, robust
# to other load); the wall ratio is printed beside it.
speedup=$(ratio "$cold" "$warm")
pass=0
if le "$cold_cpu_ratio" 1.2 && le 10 "$speedup" && [ "$runs" = 1 ] && [ "$wait_failed" = 0 ]; then pass=1; fi
report gitmirror-tarball "cold ${cold_cpu_ratio}x git archive CPU (${cold_wall_ratio}x wall), warm ${speedup}x faster than cold, burst of $BURST ran git archive $runs time(s), upload->servable p50 ${sim_p50}ms" "cold <= 1.2x, warm >= 10x, burst runs 1" "$pass"
