#!/usr/bin/env bash
# Instructions llm-relay executes per relayed request, counted by callgrind (deterministic, unlike
# wall-clock figures on a shared machine). Runs the release llm-relay under valgrind with usage
# recording on, sends N1 and then N2 sequential requests (each plus a 10% warm-up) through it to
# benches/load's fake upstream with stream-probe, and prints the difference per request, so
# start-up and shutdown cancel out. Profiles stay in target/callgrind/ for callgrind_annotate.
#
#   bash benches/callgrind.sh             # non-streaming and 20-chunk streams
#   bash benches/callgrind.sh stream      # one mode only (plain | stream)
#
# Needs valgrind, curl and the release binaries (bash benches/run.sh builds them; or
# cargo build --release -p llm-relay -p llm-relay-load --bins). ~3 min on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
modes=${1:-plain stream}
out=target/callgrind
mkdir -p "$out"
source benches/common.sh
bench_init cg
write_bodies
start_fake 1
port=$(free_port)

# Instructions of one valgrind run serving N requests (plus stream-probe's warm-up).
count() { # MODE N
  local f="$out/$1-$2.out" pid
  rm -rf "$work/data"; mkdir -p "$work/data"
  env HOST=127.0.0.1 PORT="$port" DATA_DIR="$work/data" OPENAI_API_KEY=sk-bench \
    OPENAI_BASE_URL="http://$fake_addr/v1" \
    valgrind --tool=callgrind --callgrind-out-file="$f" "$bin/llm-relay" serve 2>"$work/relay.log" &
  pid=$!
  for _ in $(seq 300); do
    curl -sf "http://127.0.0.1:$port/api/version" >/dev/null 2>&1 && break
    sleep 0.1
  done
  timeout 600 "$bin/stream-probe" ttfb "http://127.0.0.1:$port/v1/chat/completions" "$work/$1.json" "$2" >/dev/null
  kill -TERM "$pid"
  wait "$pid" || true
  awk '/^summary:/ {print $2}' "$f"
}

# Instructions of the usage writer's commits in a profile (Writer::commit, inclusive). How many
# records a commit takes depends on timing (FLUSH_INTERVAL), so this share moves between runs, by
# up to ~20,000 instructions per request when other processes slow valgrind down; the rest of the
# count (the request path) repeats within ~1%.
writer() { # PROFILE
  callgrind_annotate --inclusive=yes "$1" 2>/dev/null |
    awk '/usage::recorder::Writer::commit \[/ {gsub(",", "", $1); print $1; found=1} END {if (!found) print 0}'
}

for mode in $modes; do
  # stream-probe adds a warm-up of max(N/10, 10) requests.
  a=$(count "$mode" 200)
  b=$(count "$mode" 1200)
  wa=$(writer "$out/$mode-200.out")
  wb=$(writer "$out/$mode-1200.out")
  echo "$mode: $(( (b - a) / 1100 )) instructions per request (callgrind, usage recording on; profiles in $out/$mode-{200,1200}.out)"
  echo "$mode: $(( ((b - wb) - (a - wa)) / 1100 )) without the usage writer's commits, $(( (wb - wa) / 1100 )) in them"
done
