# Shared by benches/run.sh, benches/callgrind.sh and benches/ab.sh (sourced, from the repo root):
# a temporary work directory removed on exit with every process the script started, the request
# bodies, the fake upstream, free ports and process CPU counters.

# `bench_init NAME`: $work (a fresh temporary directory), $pids (add every background PID: they
# are killed and reaped on exit, also on Ctrl-C or failure), $bin (release binaries), $tck.
bench_init() {
  work=$(mktemp -d "${TMPDIR:-/tmp}/llm-relay-$1.XXXXXX")
  pids=()
  bin=target/release
  tck=$(getconf CLK_TCK)
  trap bench_cleanup EXIT
  trap 'exit 130' INT TERM
}

bench_cleanup() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}

# Request bodies (compact JSON, as clients send it): $work/plain.json (non-streaming) and
# $work/stream.json (streaming, usage chunk asked for).
write_bodies() {
  local msgs='"messages":[{"role":"system","content":"You are a concise assistant."},{"role":"user","content":"In two sentences, why do people pick Rust for network services?"}]'
  printf '{"model":"gpt-4o-mini",%s,"temperature":0.7,"max_tokens":256}' "$msgs" >"$work/plain.json"
  printf '{"model":"gpt-4o-mini",%s,"temperature":0.7,"max_tokens":256,"stream":true,"stream_options":{"include_usage":true}}' "$msgs" >"$work/stream.json"
}

# `start_fake THREADS`: the zero-latency fake upstream (benches/load) on a free port; sets
# $fake_pid and $fake_addr (host:port).
start_fake() {
  "$bin/fake-upstream" 0 "$1" >"$work/fake.out" &
  fake_pid=$!
  pids+=("$fake_pid")
  for _ in $(seq 100); do grep -q listening "$work/fake.out" 2>/dev/null && break; sleep 0.05; done
  fake_addr=$(awk '/listening/ {print $2}' "$work/fake.out")
  [ -n "$fake_addr" ] || { echo "fake upstream did not start" >&2; exit 1; }
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# utime + stime of a process, in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
