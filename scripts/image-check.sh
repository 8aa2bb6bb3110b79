#!/usr/bin/env bash
# Build the container image from the repository's Dockerfile with podman and check that it runs:
# health check, /health/ready through a published port, uid 10001, a chat request through a fake
# upstream, the usage record in /data, and a graceful exit 0 on SIGTERM. Prints a short report.
#
#   sudo bash scripts/image-check.sh   # root; podman, runc, debootstrap, curl, python3, cargo
#
# Not part of the test command: it needs root and podman and takes 5-10 minutes on 2 cores (one
# fat-LTO build inside the image build; the stand-in bases take ~2 minutes the first time).
#
# Why stand-in base images: the machine this was written on has no Docker Hub access (only the
# crates.io and Debian mirrors), so the Dockerfile's pinned `rust:1.95-slim-bookworm@sha256:...`
# and `debian:bookworm-slim@sha256:...` cannot be pulled. The script builds local stand-ins with
# the same OS and toolchain and passes them through the Dockerfile's `RUST_IMAGE`/`RUNTIME_IMAGE`
# build arguments; the Dockerfile itself is used unchanged:
#   localhost/debian:bookworm-slim      debootstrap --variant=minbase bookworm, slimmed like the
#                                       official image (no docs, man pages, locales, apt lists;
#                                       its apt.conf.d docker-clean: no apt caches in layers)
#   localhost/rust:1.95-slim-bookworm   the same plus gcc and libc6-dev, and this machine's rustc
#                                       (the `rustup which cargo` toolchain, without its docs) in
#                                       /usr/local/rustup, CARGO_HOME=/usr/local/cargo as in the
#                                       official image (cargo, rustc, rustdoc linked from
#                                       /usr/local/cargo/bin; no rustup inside)
# Crates: cargo inside the build could not reach crates.io from the network this was written on
# (a TLS-intercepting proxy whose CA the container's Debian CA store does not trust: "SSL
# certificate problem: self-signed certificate in certificate chain"). So by default the stand-in
# builder also carries this machine's cargo registry cache and index (`cargo fetch --locked` on
# the host first; ~70 MB; cargo checks every .crate against Cargo.lock's checksums) under
# /usr/local/cargo/registry and has CARGO_NET_OFFLINE=true. CARGO_OFFLINE=0 builds a builder
# that fetches from crates.io in the build, as `docker build .` with the real image does.
# They are built once and kept (REBUILD_BASES=1 rebuilds them). With Docker Hub access, plain
# `docker build .` (or `podman build .`) uses the pinned digests instead, and this script's checks
# apply the same way with BASES=pinned.
#
# Environment: IMAGE (default localhost/llm-relay:check; kept at the end, REMOVE_IMAGE=1 removes
# it), BASES=stand-in (default) or pinned (the Dockerfile's digests: needs Docker Hub; not tried
# here), REBUILD_BASES=1, CARGO_OFFLINE=1 (default) or 0, TOOLCHAIN (default: the directory of
# `rustup which cargo`'s toolchain), DEBIAN_MIRROR (default http://deb.debian.org/debian),
# STATE_DIR (debootstrap cache, logs; default /var/tmp/llm-relay-image-check), NETWORK=bridge
# (default: API published on 127.0.0.1:PORT) or host, PORT (default: a free port),
# SOURCE_DATE_EPOCH (default: the last commit's time, as scripts/repro.sh), OCI_RUNTIME (default
# runc) and ULIMITS (default "nofile=<hard limit, at most 20000>:... nproc=32768:32768"): see
# "Runtime" below. EXPECT_SHA256: fail unless the image's binary has this SHA-256 (e.g. the one
# `PROFILE=dist bash scripts/repro.sh` printed for the same commit and toolchain). The build runs with --network=host (apt in the runtime stage, and cargo when
# CARGO_OFFLINE=0).
set -euo pipefail
cd "$(dirname "$0")/.."
src=$PWD

image=${IMAGE:-localhost/llm-relay:check}
bases=${BASES:-stand-in}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
state=${STATE_DIR:-/var/tmp/llm-relay-image-check}
rust_image=localhost/rust:1.95-slim-bookworm
runtime_image=localhost/debian:bookworm-slim
name=llm-relay-check-$$
volume=llm-relay-check-data-$$
upstream_pid=

say() { printf '== %s\n' "$*" >&2; }
fail() {
  printf 'FAIL: %s\n' "$*" >&2
  exit 1
}

[ "$(id -u)" = 0 ] || fail "run as root (podman build/run, debootstrap)"
for tool in podman curl python3 git sha256sum; do
  command -v "$tool" >/dev/null || fail "$tool not found"
done
mkdir -p "$state"
log=$state/logs
mkdir -p "$log"

cleanup() {
  local rc=$?
  podman rm -f -t 0 "$name" "$name-usage" >/dev/null 2>&1 || true
  podman volume rm -f "$volume" >/dev/null 2>&1 || true
  if [ -n "$upstream_pid" ]; then kill "$upstream_pid" 2>/dev/null || true; fi
  rm -rf "$state/rootfs-tmp.$$"
  if [ "${REMOVE_IMAGE:-0}" = 1 ]; then podman rmi -f "$image" >/dev/null 2>&1 || true; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- Runtime ---------------------------------------------------------------------------------
# In the VM this was written in (cgroup v1 with a cgroup2 hierarchy also mounted, root without
# CAP_SYS_RESOURCE), crun fails ("cgroups in hybrid mode not supported"), and podman's default
# rlimits for root (nofile and nproc 1048576) cannot be set ("setrlimit RLIMIT_NOFILE: Operation
# not permitted"). runc handles the hybrid layout; explicit, lower ulimits are allowed.
oci_runtime=${OCI_RUNTIME:-runc}
command -v "$oci_runtime" >/dev/null || fail "$oci_runtime not found (apt-get install $oci_runtime)"
nofile=$(ulimit -Hn)
if [ "$nofile" = unlimited ] || [ "$nofile" -gt 20000 ]; then nofile=20000; fi
read -r -a ulimits <<<"${ULIMITS:-nofile=$nofile:$nofile nproc=32768:32768}"
limit_args=()
for u in "${ulimits[@]}"; do limit_args+=(--ulimit "$u"); done
# Without systemd, podman logs an error for the HEALTHCHECK's timer on every run/stop; the check
# itself is run here with `podman healthcheck run`.
pm() { podman --runtime "$oci_runtime" "$@" 2> >(grep -v 'unable to get systemd connection' >&2); }

# --- Stand-in base images ------------------------------------------------------------------

# debootstrap a minbase bookworm into $1 (extra packages: $2, comma-separated), then slim it the
# way the official debian:*-slim images are (dpkg excludes docs, man pages and locales).
bootstrap() {
  local dir=$1 include=${2:-}
  rm -rf "$dir"
  mkdir -p "$state/debs"
  # The slim rules first, so the packages debootstrap installs already obey them.
  mkdir -p "$dir/etc/dpkg/dpkg.cfg.d"
  cat >"$dir/etc/dpkg/dpkg.cfg.d/docker-slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/info/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/man/*
EOF
  debootstrap --variant=minbase ${include:+--include="$include"} --cache-dir="$state/debs" \
    bookworm "$dir" "$mirror" >"$log/debootstrap-$(basename "$dir").log" 2>&1 ||
    fail "debootstrap failed, see $log/debootstrap-$(basename "$dir").log"
  # What dpkg installed before the excludes took effect (debootstrap's first stage) and caches.
  find "$dir/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete 2>/dev/null || true
  find "$dir/usr/share/locale" -mindepth 1 -maxdepth 1 -not -name locale.alias \
    -exec rm -rf {} + 2>/dev/null || true
  rm -rf "$dir"/usr/share/{man,info,groff,lintian,linda}/* "$dir"/var/lib/apt/lists/* \
    "$dir"/var/cache/apt/*.bin "$dir"/var/cache/apt/archives/*.deb "$dir"/var/log/*.log \
    "$dir"/var/cache/ldconfig/aux-cache
  # The official image's apt settings (debuerreotype): no package caches left behind by apt-get
  # (without docker-clean, the runtime stage's `apt-get update` leaves 80 MB of
  # /var/cache/apt/*.bin in the image), no translations, no suggests kept.
  cat >"$dir/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
  echo 'Acquire::Languages "none";' >"$dir/etc/apt/apt.conf.d/docker-no-languages"
  echo 'Apt::AutoRemove::SuggestsImportant "false";' >"$dir/etc/apt/apt.conf.d/docker-autoremove-suggests"
  # The official image's apt source (deb.debian.org, bookworm and its updates).
  cat >"$dir/etc/apt/sources.list" <<'EOF'
deb http://deb.debian.org/debian bookworm main
deb http://deb.debian.org/debian bookworm-updates main
deb http://deb.debian.org/debian-security bookworm-security main
EOF
}

build_runtime_base() {
  local dir=$state/rootfs-tmp.$$/runtime
  say "building $runtime_image (debootstrap --variant=minbase bookworm)"
  bootstrap "$dir"
  tar --numeric-owner -C "$dir" -c . |
    podman import --change 'CMD ["bash"]' - "$runtime_image" >/dev/null
  rm -rf "$dir"
}

build_rust_base() {
  local dir=$state/rootfs-tmp.$$/rust toolchain version tc
  toolchain=${TOOLCHAIN:-$(dirname "$(dirname "$(rustup which cargo)")")}
  version=$("$toolchain/bin/rustc" --version | cut -d' ' -f2)
  case $version in 1.95.*) ;; *) fail "host toolchain is rustc $version, not 1.95" ;; esac
  say "building $rust_image (bookworm + gcc + libc6-dev + rustc $version from $toolchain)"
  bootstrap "$dir" ca-certificates,gcc,libc6-dev
  tc=/usr/local/rustup/toolchains/$version-x86_64-unknown-linux-gnu
  mkdir -p "$dir$tc" "$dir/usr/local/cargo/bin"
  # The toolchain without its documentation (share/doc is rust-docs, ~800 MB).
  tar -C "$toolchain" --exclude=./share/doc -c . | tar -C "$dir$tc" -x
  for b in cargo rustc rustdoc; do ln -s "$tc/bin/$b" "$dir/usr/local/cargo/bin/$b"; done
  if [ "$offline" = 1 ]; then
    # The crates this machine already downloaded (cargo checks each against Cargo.lock's
    # checksum), at the path the official image's cargo would put them.
    mkdir -p "$dir/usr/local/cargo/registry"
    cp -a "$host_cargo_home/registry/cache" "$host_cargo_home/registry/index" \
      "$dir/usr/local/cargo/registry/"
  fi
  tar --numeric-owner -C "$dir" -c . |
    podman import \
      --change 'ENV RUSTUP_HOME=/usr/local/rustup' \
      --change 'ENV CARGO_HOME=/usr/local/cargo' \
      --change 'ENV PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
      --change "ENV RUST_VERSION=$version" \
      --change "ENV CARGO_NET_OFFLINE=$([ "$offline" = 1 ] && echo true || echo false)" \
      --change 'CMD ["bash"]' \
      - "$rust_image" >/dev/null
  rm -rf "$dir"
}

build_args=()
if [ "$bases" = stand-in ]; then
  offline=${CARGO_OFFLINE:-1}
  host_cargo_home=${CARGO_HOME:-$HOME/.cargo}
  if [ "$offline" = 1 ]; then
    # Every crate of Cargo.lock in this machine's cargo cache, to be copied into the stand-in.
    say "cargo fetch --locked (host; the stand-in builder builds offline from these crates)"
    cargo fetch --locked --quiet || fail "cargo fetch --locked failed on the host"
  fi
  if [ "${REBUILD_BASES:-0}" = 1 ] || ! podman image exists "$runtime_image"; then
    build_runtime_base
  else
    say "using the existing $runtime_image"
  fi
  if [ "${REBUILD_BASES:-0}" = 1 ] || ! podman image exists "$rust_image"; then
    build_rust_base
  else
    say "using the existing $rust_image"
  fi
  build_args=(--build-arg "RUST_IMAGE=$rust_image" --build-arg "RUNTIME_IMAGE=$runtime_image")
fi

# --- Build ---------------------------------------------------------------------------------

epoch=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct)}
say "podman build ($bases bases, SOURCE_DATE_EPOCH=$epoch); log: $log/build.log"
start=$(date +%s)
# --format docker: the OCI image format has no HEALTHCHECK (podman would drop it).
pm build --format docker --network=host "${limit_args[@]}" "${build_args[@]}" \
  --build-arg "SOURCE_DATE_EPOCH=$epoch" -t "$image" "$src" >"$log/build.log" 2>&1 ||
  fail "podman build failed, see $log/build.log"
build_secs=$(($(date +%s) - start))
# The build stage prints `sha256sum /usr/local/bin/llm-relay` (a cached layer prints nothing; the
# line may be glued to cargo's last stderr line).
build_sum=$(grep -oE '[0-9a-f]{64}  /usr/local/bin/llm-relay' "$log/build.log" | tail -n 1 | cut -c1-64 || true)
image_sum=$(pm run --rm "${limit_args[@]}" --entrypoint sha256sum "$image" /usr/local/bin/llm-relay | cut -c1-64)
image_size=$(podman image inspect --format '{{.Size}}' "$image")
if [ -n "${EXPECT_SHA256:-}" ]; then
  [ "$image_sum" = "$EXPECT_SHA256" ] ||
    fail "the image's binary is $image_sum, not EXPECT_SHA256=$EXPECT_SHA256"
  sum_note="= EXPECT_SHA256"
else
  sum_note="(EXPECT_SHA256=<scripts/repro.sh's sum> compares)"
fi
healthcheck=$(podman image inspect --format '{{json .HealthCheck}}' "$image")
[ "$healthcheck" != null ] || fail "the image has no HEALTHCHECK"

# --- Run -----------------------------------------------------------------------------------

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port=${PORT:-$(free_port)}
upstream_port=$(free_port)

# A fake OpenAI upstream on the host: one chat.completion (or its stream) for any request.
cat >"$state/fake-upstream.py" <<'EOF'
import json, sys, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class H(BaseHTTPRequestHandler):
    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
        print("POST", self.path, "model", body.get("model"), "stream", body.get("stream"), flush=True)
        usage = {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}
        msg = {"role": "assistant", "content": "pong from the fake upstream"}
        if body.get("stream"):
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.end_headers()
            base = {"id": "chatcmpl-check", "object": "chat.completion.chunk",
                    "created": int(time.time()), "model": body.get("model")}
            for choices, extra in (
                ([{"index": 0, "delta": msg, "finish_reason": None}], {}),
                ([{"index": 0, "delta": {}, "finish_reason": "stop"}], {}),
                ([], {"usage": usage}),
            ):
                self.wfile.write(b"data: " + json.dumps({**base, "choices": choices, **extra}).encode() + b"\n\n")
            self.wfile.write(b"data: [DONE]\n\n")
            return
        out = json.dumps({"id": "chatcmpl-check", "object": "chat.completion",
                          "created": int(time.time()), "model": body.get("model"),
                          "choices": [{"index": 0, "message": msg, "finish_reason": "stop"}],
                          "usage": usage}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

ThreadingHTTPServer((sys.argv[1], int(sys.argv[2])), H).serve_forever()
EOF
start_upstream() { # address port
  python3 "$state/fake-upstream.py" "$1" "$2" >"$log/upstream.log" 2>&1 &
  upstream_pid=$!
  for _ in $(seq 1 50); do
    if python3 -c 'import socket,sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), 1)' "$1" "$2" 2>/dev/null; then
      return 0
    fi
    sleep 0.1
  done
  fail "the fake upstream did not start on $1:$2: $(cat "$log/upstream.log")"
}

# The settings of docker-compose.yml: read-only root (and, as with Docker, no tmpfs on /tmp and
# /run), no capabilities, no-new-privileges, a named volume on /data. NETWORK=bridge (default): the API published on 127.0.0.1:$port -> 11434 with
# the image's HOST/PORT, the fake upstream on the bridge's gateway (host.containers.internal).
# NETWORK=host: no port publishing, API and upstream on the host's 127.0.0.1.
network=${NETWORK:-bridge}
podman volume create "$volume" >/dev/null
run_args=(-d --name "$name" "${limit_args[@]}" --read-only --read-only-tmpfs=false --cap-drop=ALL
  --security-opt=no-new-privileges -v "$volume:/data" -e ADMIN_ENABLED=false
  -e OPENAI_API_KEY=sk-fake-key-for-the-check)
case $network in
  bridge)
    say "podman run (bridge network, -p 127.0.0.1:$port:11434)"
    pm run "${run_args[@]}" -p "127.0.0.1:$port:11434" \
      -e OPENAI_BASE_URL="http://host.containers.internal:$upstream_port/v1" "$image" >/dev/null
    gateway=$(podman inspect --format '{{.NetworkSettings.Gateway}}' "$name")
    [ -n "$gateway" ] || fail "no bridge gateway address for $name"
    start_upstream "$gateway" "$upstream_port"
    ;;
  host)
    say "podman run (host network, API on 127.0.0.1:$port)"
    start_upstream 127.0.0.1 "$upstream_port"
    pm run "${run_args[@]}" --network=host -e HOST=127.0.0.1 -e PORT="$port" \
      -e OPENAI_BASE_URL="http://127.0.0.1:$upstream_port/v1" "$image" >/dev/null
    ;;
  *) fail "NETWORK=$network: bridge or host" ;;
esac

ready=
for _ in $(seq 1 50); do
  if curl -fsS "http://127.0.0.1:$port/health/ready" >"$log/ready.json" 2>/dev/null; then
    ready=$(cat "$log/ready.json")
    break
  fi
  sleep 0.2
done
[ -n "$ready" ] || { podman logs "$name" >&2 || true; fail "GET /health/ready never answered"; }

# HEALTHCHECK: `podman healthcheck run` runs the image's CMD (llm-relay health) in the container.
pm healthcheck run "$name" >"$log/healthcheck.log" 2>&1 ||
  fail "podman healthcheck run: $(cat "$log/healthcheck.log")"
health_status=$(podman inspect --format '{{.State.Health.Status}}' "$name")
[ "$health_status" = healthy ] || fail "health status $health_status after podman healthcheck run"
health_cmd=$(pm exec "$name" llm-relay health 2>&1 && echo "exit 0") ||
  fail "llm-relay health in the container: $health_cmd"
health_cmd=$(printf '%s' "$health_cmd" | paste -sd' ' -)
uid=$(pm exec "$name" id -u)
[ "$uid" = 10001 ] || fail "the server runs as uid $uid, not 10001"
ps_user=$(podman top "$name" user,comm | tail -n +2 | tr -s ' ' | paste -sd';' -)

chat=$(curl -fsS "http://127.0.0.1:$port/v1/chat/completions" -H 'content-type: application/json' \
  -d '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"ping"}]}') ||
  fail "chat request failed"
printf '%s\n' "$chat" >"$log/chat.json"
reply=$(printf '%s' "$chat" | python3 -c 'import json,sys; print(json.load(sys.stdin)["choices"][0]["message"]["content"])')
[ "$reply" = "pong from the fake upstream" ] || fail "unexpected chat answer: $chat"
stream_lines=$(curl -fsSN "http://127.0.0.1:$port/v1/chat/completions" -H 'content-type: application/json' \
  -d '{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"ping"}]}' |
  grep -c '^data: ') || fail "streamed chat request failed"

# SIGTERM (the image's STOPSIGNAL), 20 s before SIGKILL like the compose files.
say "podman stop"
stop_start=$(date +%s%N)
pm stop -t 20 "$name" >/dev/null
stop_ms=$((($(date +%s%N) - stop_start) / 1000000))
exit_code=$(podman inspect --format '{{.State.ExitCode}}' "$name")
podman logs "$name" >"$log/server.log" 2>&1
[ "$exit_code" = 0 ] || { tail -20 "$log/server.log" >&2; fail "exit code $exit_code after SIGTERM"; }
last_log=$(tail -n 1 "$log/server.log")

# The usage database is opened exclusively: read it once the server has stopped.
data_ls=$(pm run --rm "${limit_args[@]}" --name "$name-usage" -v "$volume:/data" --entrypoint ls "$image" -ln /data |
  tail -n +2 | tr -s ' ' | paste -sd';' -)
pm run --rm "${limit_args[@]}" --name "$name-usage" -v "$volume:/data" "$image" usage --by model >"$log/usage.txt" 2>&1 ||
  fail "llm-relay usage: $(cat "$log/usage.txt")"
grep -q 'gpt-4o-mini' "$log/usage.txt" || fail "no usage record for gpt-4o-mini: $(cat "$log/usage.txt")"

# --- Report --------------------------------------------------------------------------------

cat <<EOF

llm-relay image check ($(date -u +%Y-%m-%dT%H:%MZ), $bases bases, $network network, runtime $oci_runtime)
  image            $image, $((image_size / 1000000)) MB ($image_size bytes)
  build            ${build_secs} s (podman build, log $log/build.log)
  binary sha256    build stage: ${build_sum:-"(cached layer, not printed)"}
                   in the image: $image_sum $sum_note
  healthcheck      podman healthcheck run: $health_status; llm-relay health (exec): $health_cmd
  /health/ready    $ready
  user             uid $uid; processes: $ps_user
  chat             "$reply"; streamed: $stream_lines data lines
  stop (SIGTERM)   exit $exit_code after $stop_ms ms; last log line: $last_log
  /data            $data_ls
  usage --by model
$(sed 's/^/    /' "$log/usage.txt")
EOF
