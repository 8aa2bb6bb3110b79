#!/usr/bin/env bash
# A/B of llm-relay binaries: the same cells, one binary after the other, against one fake upstream.
# For before/after figures of a change (README, Benchmark, round 3). Not part of the test command.
#
#   git worktree add /tmp/before <commit> && (cd /tmp/before && cargo build --release -p llm-relay)
#   bash benches/ab.sh /tmp/before/target/release/llm-relay target/release/llm-relay
#   ROUNDS=3 bash benches/ab.sh OLD NEW    # 3 rounds in rotating order, then medians
#
# Cells per binary: wrk 5 s at 32 connections, non-streaming and 20-chunk streams (req/s, p50 µs,
# CPU µs per request from /proc); stream-probe paced at 1 connection / 500 req/s and 32 / 2,000
# (p50 / p99 µs), non-streaming and streams; 2,000 sequential streams (first byte, total).
# Needs: wrk, python3, curl, and the release benches/load tools (bash benches/run.sh builds them).
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 1 ] || { echo "usage: benches/ab.sh LLM_RELAY_BINARY..." >&2; exit 2; }
source benches/common.sh
bench_init ab
[ -x "$bin/fake-upstream" ] && [ -x "$bin/stream-probe" ] \
  || cargo build --release --locked -p llm-relay-load --bins >&2
secs=${BENCH_SECS:-5}
write_bodies
start_fake 1
port=$(free_port)
url="http://127.0.0.1:$port/v1/chat/completions"

cell() { # PID BODY -> "req/s p50 cpu_us"
  local r0 r1 out
  r0=$(cpu_ticks "$1")
  out=$(BENCH_BODY="$2" wrk -t2 -c32 -d"${secs}"s --timeout 10s -s benches/wrk.lua "$url" | grep '^RESULT')
  r1=$(cpu_ticks "$1")
  echo "$out" | awk -v rc=$((r1 - r0)) -v tck="$tck" '{
    for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
    n = v["requests"]
    printf "%.0f req/s, p50 %d µs, CPU %.1f µs/req", n / (v["duration_us"] / 1e6), v["p50_us"], rc / tck * 1e6 / n
  }'
}

# One measurement of every cell for binary $1; each line is also kept in $work/results as
# "binary<TAB>line" for the medians.
measure() { # RELAY
  local relay=$1 pid line
  rm -rf "$work/data"; mkdir -p "$work/data"
  env HOST=127.0.0.1 PORT="$port" ADMIN_ENABLED=false DATA_DIR="$work/data" OPENAI_API_KEY=sk-bench \
    OPENAI_BASE_URL="http://$fake_addr/v1" USAGE_TRACKING=true "$relay" serve 2>"$work/relay.log" &
  pid=$!
  pids+=("$pid")
  for _ in $(seq 200); do curl -sf "http://127.0.0.1:$port/api/version" >/dev/null 2>&1 && break; sleep 0.05; done
  BENCH_BODY="$work/plain.json" wrk -t2 -c32 -d1s -s benches/wrk.lua "$url" >/dev/null # warm-up
  echo "== $relay"
  {
    echo "wrk c=32 non-streaming: $(cell "$pid" "$work/plain.json")"
    echo "wrk c=32 streams:       $(cell "$pid" "$work/stream.json")"
    for mode in plain stream; do
      for cr in "1 500" "32 2000"; do
        read -r c rate <<<"$cr"
        echo "paced $mode c=$c $rate/s: $("$bin/stream-probe" paced "$url" "$work/$mode.json" "$c" "$rate" "$secs")"
      done
    done
    echo "first byte, 2,000 sequential streams: $("$bin/stream-probe" ttfb "$url" "$work/stream.json" 2000)"
  } | while IFS= read -r line; do
    echo "$line"
    printf '%s\t%s\n' "$relay" "$line" >>"$work/results"
  done
  kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
}

# ROUNDS=N: N rounds, the binaries' order rotated each round (so drift over time hits each alike),
# then the median of every figure per binary. Single runs of a cell spread by ~10% on the 2-core
# VM; differences smaller than that need rounds.
rounds=${ROUNDS:-1}
bins=("$@")
for ((r = 0; r < rounds; r++)); do
  [ "$rounds" -gt 1 ] && echo "-- round $((r + 1)) of $rounds"
  for ((i = 0; i < ${#bins[@]}; i++)); do
    measure "${bins[(i + r) % ${#bins[@]}]}"
  done
done
if [ "$rounds" -gt 1 ]; then
  echo "-- medians of $rounds rounds"
  for relay in "${bins[@]}"; do
    echo "== $relay"
    # Every "name=value" or "N unit" figure of each line, by position; the median per position.
    awk -F'\t' -v want="$relay" '$1 == want {
      line = $2; key = line; sub(/:.*/, "", key); rest = line; sub(/^[^:]*: */, "", rest)
      if (!(key in seen)) { seen[key] = 1; order[++nk] = key; fmt[key] = rest }
      n = split(rest, f, /[^0-9.]+/); c = 0
      for (i = 1; i <= n; i++) if (f[i] != "") { c++; val[key, c, ++cnt[key, c]] = f[i] }
      nv[key] = c
    }
    END {
      for (k = 1; k <= nk; k++) {
        key = order[k]; out = fmt[key]; pos = 0; res = ""
        # Replace each number of the first line by the median of that position.
        while (match(out, /[0-9][0-9.]*/)) {
          pos++; m = cnt[key, pos]
          for (i = 1; i <= m; i++) a[i] = val[key, pos, i] + 0
          for (i = 2; i <= m; i++) { x = a[i]; j = i - 1; while (j > 0 && a[j] > x) { a[j + 1] = a[j]; j-- } a[j + 1] = x }
          med = (m % 2) ? a[(m + 1) / 2] : (a[m / 2] + a[m / 2 + 1]) / 2
          res = res substr(out, 1, RSTART - 1) (med == int(med) ? sprintf("%d", med) : sprintf("%.1f", med))
          out = substr(out, RSTART + RLENGTH)
        }
        print key ": " res out
      }
    }' "$work/results"
  done
fi
