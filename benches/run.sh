#!/usr/bin/env bash
# Load benchmark: the same load sent straight to a zero-latency fake OpenAI upstream and through
# llm-relay (release build, usage recording on into a temporary DATA_DIR), non-streaming and
# streaming (20 chunks + usage chunk), at 1, 32 and 256 connections; and through a bare hyper
# pass-through (benches/load/src/bin/passthrough.rs: forwards bytes, parses nothing), issue 8's
# reference point, measured in the same run. Prints Markdown tables; every ratio comes from this
# one run. Not part of the test command (slow, machine-dependent).
#
#   bash benches/run.sh            # ~3 min on 2 cores after the build
#   BENCH_SECS=10 bash benches/run.sh
#
# Needs: cargo, wrk (Debian: apt-get install wrk), python3 (to pick a free port), curl, Linux /proc.
# Tools: target/release/fake-upstream, passthrough and stream-probe (benches/load/), benches/wrk.lua.
set -euo pipefail
cd "$(dirname "$0")/.."

secs=${BENCH_SECS:-5}
fake_threads=${BENCH_FAKE_THREADS:-1}
for tool in wrk python3 curl; do
  command -v "$tool" >/dev/null || { echo "benches/run.sh: needs $tool" >&2; exit 1; }
done

cargo build --release --locked -p llm-relay -p llm-relay-load --bins >&2
source benches/common.sh
bench_init bench
# 1,000 client + 1,000 accepted + 1,000 upstream sockets per process at most.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# A /proc/PID/status field in KiB.
status_kib() { awk -v f="$2:" '$1 == f {print $2}' "/proc/$1/status"; }
mib() { awk -v k="$1" 'BEGIN {printf "%.1f", k / 1024}'; }

write_bodies
printf '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"HOLD-STREAM-OPEN"}],"stream":true,"stream_options":{"include_usage":true}}' >"$work/hold.json"

start_fake "$fake_threads"

# The bare hyper pass-through in front of the same fake.
pt_port=$(free_port)
"$bin/passthrough" "$fake_addr" "$pt_port" >"$work/pt.out" &
pt_pid=$!
pids+=("$pt_pid")
for _ in $(seq 100); do grep -q listening "$work/pt.out" 2>/dev/null && break; sleep 0.05; done
passthrough="http://127.0.0.1:$pt_port/v1/chat/completions"

# llm-relay: release build, default logging, usage recording on into a fresh DATA_DIR.
relay_port=$(free_port)
mkdir -p "$work/data"
env HOST=127.0.0.1 PORT="$relay_port" DATA_DIR="$work/data" OPENAI_API_KEY=sk-bench \
  OPENAI_BASE_URL="http://$fake_addr/v1" USAGE_TRACKING=true \
  "$bin/llm-relay" serve 2>"$work/relay.log" &
relay_pid=$!
pids+=("$relay_pid")
for _ in $(seq 200); do
  curl -sf "http://127.0.0.1:$relay_port/api/version" >/dev/null 2>&1 && break
  sleep 0.05
done
curl -sf "http://127.0.0.1:$relay_port/api/version" >/dev/null || { cat "$work/relay.log" >&2; exit 1; }
direct="http://$fake_addr/v1/chat/completions"
relay="http://127.0.0.1:$relay_port/v1/chat/completions"

# Sanity: the relay relays (a broken route would benchmark error paths).
curl -sf -H 'content-type: application/json' -H 'authorization: Bearer sk-bench' \
  --data-binary @"$work/plain.json" "$relay" | grep -q '"finish_reason":"stop"' \
  || { echo "relay answer is wrong" >&2; cat "$work/relay.log" >&2; exit 1; }
curl -sfN -H 'content-type: application/json' -H 'authorization: Bearer sk-bench' \
  --data-binary @"$work/stream.json" "$relay" | grep -q 'data: \[DONE\]' \
  || { echo "relay stream is wrong" >&2; exit 1; }
sleep 1
idle_rss=$(status_kib "$relay_pid" VmRSS)

# One wrk run: prints "requests req_s p50_us p99_us proxy_cpu_us_per_req fake_cpu_us_per_req",
# the proxy being llm-relay, or the pass-through when PROXY_PID names it.
run_wrk() { # URL BODY CONNECTIONS SECONDS
  local threads=$(( $3 < 2 ? 1 : 2 )) r0 f0 r1 f1 out proxy=${PROXY_PID:-$relay_pid}
  r0=$(cpu_ticks "$proxy"); f0=$(cpu_ticks "$fake_pid")
  out=$(BENCH_BODY="$2" timeout $(($4 + 60)) wrk -t"$threads" -c"$3" -d"$4"s --timeout 10s -s benches/wrk.lua "$1" \
        | grep '^RESULT')
  sleep 0.3 # the usage writer's last batch belongs to this run
  r1=$(cpu_ticks "$proxy"); f1=$(cpu_ticks "$fake_pid")
  echo "$out" | awk -v rc=$((r1 - r0)) -v fc=$((f1 - f0)) -v tck="$tck" '{
    for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
    if (v["errors"] + v["status_errors"] > 0) { print "wrk errors: " $0 > "/dev/stderr"; exit 1 }
    n = v["requests"]
    printf "%d %.0f %d %d %.1f %.1f\n", n, n / (v["duration_us"] / 1e6), v["p50_us"], v["p99_us"],
      rc / tck * 1e6 / n, fc / tck * 1e6 / n
  }'
}

echo "warming up..." >&2
run_wrk "$direct" "$work/plain.json" 32 1 >/dev/null
PROXY_PID=$pt_pid run_wrk "$passthrough" "$work/plain.json" 32 1 >/dev/null
run_wrk "$relay" "$work/plain.json" 32 1 >/dev/null
run_wrk "$relay" "$work/stream.json" 32 1 >/dev/null

rows=()
pt_rows=()
relay_requests=0
for mode in plain stream; do
  for c in 1 32 256; do
    echo "$mode c=$c ..." >&2
    res=$(run_wrk "$direct" "$work/$mode.json" "$c" "$secs")
    read -r _ drps dp50 dp99 _ dfake <<<"$res"
    res=$(PROXY_PID=$pt_pid run_wrk "$passthrough" "$work/$mode.json" "$c" "$secs")
    read -r _ prps pp50 pp99 pcpu _ <<<"$res"
    res=$(run_wrk "$relay" "$work/$mode.json" "$c" "$secs")
    read -r rn rrps rp50 rp99 rcpu _ <<<"$res"
    relay_requests=$((relay_requests + rn))
    label=$([ "$mode" = plain ] && echo "non-streaming" || echo "streaming")
    rows+=("$(awk -v l="$label" -v c="$c" -v drps="$drps" -v rrps="$rrps" -v dp50="$dp50" \
      -v dp99="$dp99" -v rp50="$rp50" -v rp99="$rp99" -v rcpu="$rcpu" -v dfake="$dfake" 'BEGIN {
      printf "| %s | %d | %d | %d | %.0f%% | %d / %d | %d / %d | %+d / %+d | %.1f | %.1f |", l, c,
        drps, rrps, 100 * rrps / drps, dp50, dp99, rp50, rp99, rp50 - dp50, rp99 - dp99, rcpu, dfake
    }')")
    pt_rows+=("$(awk -v l="$label" -v c="$c" -v drps="$drps" -v prps="$prps" -v rrps="$rrps" \
      -v dp50="$dp50" -v pp50="$pp50" -v pp99="$pp99" -v dp99="$dp99" -v pcpu="$pcpu" -v rcpu="$rcpu" 'BEGIN {
      printf "| %s | %d | %d | %.0f%% | %d / %d | %+d / %+d | %.1f | %.0f%% | %.1fx |", l, c, prps,
        100 * prps / drps, pp50, pp99, pp50 - dp50, pp99 - dp99, pcpu, 100 * rrps / prps, rcpu / pcpu
    }')")
  done
done
load_hwm=$(status_kib "$relay_pid" VmHWM)

# Latency at a fixed request rate (open loop): wrk's closed loop runs every cell at saturation,
# where latency is connections / throughput and says nothing about what the relay adds.
paced_rows=()
for mode in plain stream; do
  for cr in "1 500" "32 2000"; do
    read -r c rate <<<"$cr"
    echo "$mode c=$c at $rate req/s ..." >&2
    d=$(timeout 120 "$bin/stream-probe" paced "$direct" "$work/$mode.json" "$c" "$rate" "$secs")
    p=$(timeout 120 "$bin/stream-probe" paced "$passthrough" "$work/$mode.json" "$c" "$rate" "$secs")
    r=$(timeout 120 "$bin/stream-probe" paced "$relay" "$work/$mode.json" "$c" "$rate" "$secs")
    relay_requests=$((relay_requests + $(echo "$r" | sed 's/.*n=//') + c))
    label=$([ "$mode" = plain ] && echo "non-streaming" || echo "streaming (to the end)")
    paced_rows+=("$(echo "$d $p $r" | awk -v l="$label" -v c="$c" -v rate="$rate" '{
      for (i = 1; i <= NF; i++) { split($i, kv, "="); v[(i > 6 ? "r" : i > 3 ? "p" : "d") kv[1]] = kv[2] }
      printf "| %s | %d | %d | %d / %d | %d / %d | %d / %d | %+d / %+d | %+d / %+d |", l, c, rate,
        v["dp50_us"], v["dp99_us"], v["pp50_us"], v["pp99_us"], v["rp50_us"], v["rp99_us"],
        v["pp50_us"] - v["dp50_us"], v["pp99_us"] - v["dp99_us"],
        v["rp50_us"] - v["dp50_us"], v["rp99_us"] - v["dp99_us"]
    }')")
  done
done

echo "first byte ..." >&2
d_ttfb=$(timeout 120 "$bin/stream-probe" ttfb "$direct" "$work/stream.json" 2000)
p_ttfb=$(timeout 120 "$bin/stream-probe" ttfb "$passthrough" "$work/stream.json" 2000)
r_ttfb=$(timeout 120 "$bin/stream-probe" ttfb "$relay" "$work/stream.json" 2000)
relay_requests=$((relay_requests + 2200))
after_rss=$(status_kib "$relay_pid" VmRSS)

echo "1,000 open streams ..." >&2
"$bin/stream-probe" hold "$relay" "$work/hold.json" 1000 4 >"$work/hold.out" &
hold_pid=$!
pids+=("$hold_pid")
for _ in $(seq 400); do grep -q '^open' "$work/hold.out" 2>/dev/null && break; sleep 0.05; done
grep -q '^open 1000' "$work/hold.out" || { echo "1,000 streams did not open" >&2; exit 1; }
sleep 1
hold_rss=$(status_kib "$relay_pid" VmRSS)
wait "$hold_pid" || true
sleep 1
peak_hwm=$(status_kib "$relay_pid" VmHWM)
end_rss=$(status_kib "$relay_pid" VmRSS)

# Stop the relay (SIGTERM flushes usage) and count what it recorded.
kill -TERM "$relay_pid"
wait "$relay_pid" 2>/dev/null || true
read -r recorded rec_errors < <(DATA_DIR="$work/data" "$bin/llm-relay" usage 2>/dev/null \
  | awk '/^TOTAL/ {print $2, $3}') || true

kv() { echo "$1" | tr ' ' '\n' | awk -F= -v k="$2" '$1 == k {print $2}'; }
echo
echo "llm-relay load benchmark, $(date -u +%Y-%m-%d), $(nproc) cores ($(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)), load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "wrk ${secs} s per cell, direct, then through the bare pass-through, then through llm-relay (${SERVER_THREADS:-$(nproc)} server threads); fake upstream $fake_threads thread(s); usage recording on (redb)."
echo
echo "| Load | Conns | Direct req/s | Relay req/s | Relay/direct | Direct p50 / p99 µs | Relay p50 / p99 µs | Added p50 / p99 µs | Relay CPU µs/req | Fake CPU µs/req |"
echo "|---|---|---|---|---|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
echo
echo "Bare hyper pass-through (parses nothing) in front of the same fake, same run; the last two columns compare llm-relay with it:"
echo
echo "| Load | Conns | Pass-through req/s | Pass-through/direct | Pass-through p50 / p99 µs | Added p50 / p99 µs | Pass-through CPU µs/req | llm-relay/pass-through req/s | llm-relay/pass-through CPU |"
echo "|---|---|---|---|---|---|---|---|---|"
printf '%s\n' "${pt_rows[@]}"
echo
echo "| Load at a fixed rate | Conns | Req/s | Direct p50 / p99 µs | Pass-through p50 / p99 µs | Relay p50 / p99 µs | Pass-through added p50 / p99 µs | Relay added p50 / p99 µs |"
echo "|---|---|---|---|---|---|---|---|"
printf '%s\n' "${paced_rows[@]}"
echo
echo "| Streaming, c=1, 2,000 sequential | Direct | Pass-through | Relay | Pass-through added | Relay added |"
echo "|---|---|---|---|---|---|"
for k in ttfb_p50_us ttfb_p99_us total_p50_us total_p99_us; do
  d=$(kv "$d_ttfb" "$k"); p=$(kv "$p_ttfb" "$k"); r=$(kv "$r_ttfb" "$k")
  echo "| ${k%_us} (µs) | $d | $p | $r | $((p - d)) | $((r - d)) |"
done
echo
echo "| llm-relay RSS | MiB |"
echo "|---|---|"
echo "| Idle after start | $(mib "$idle_rss") |"
echo "| Peak during the wrk runs (VmHWM) | $(mib "$load_hwm") |"
echo "| Idle after the wrk runs | $(mib "$after_rss") |"
echo "| 1,000 concurrent open streams | $(mib "$hold_rss") |"
echo "| Peak overall (VmHWM) / after the streams closed | $(mib "$peak_hwm") / $(mib "$end_rss") |"
echo
echo "Usage records stored by llm-relay: ${recorded:-?}, ${rec_errors:-?} of them errors (requests completed through the relay: $relay_requests measured + warm-up + 1,000 held streams, which end as client disconnects; wrk also cuts the requests in flight when each run ends)."
