#!/usr/bin/env bash
# Reproducible-build check: build the release binary twice, from copies of this tree in two
# different directories, with the flags the Dockerfile uses, and compare the SHA-256 of the two
# binaries. Exit 0 when they are identical.
#
#   bash scripts/repro.sh              # profile `dist` (what the image ships), ~2 x 4-5 min on 2 cores (measured 276 s and 219 s)
#   PARALLEL=1 bash scripts/repro.sh   # both builds at once
#   PROFILE=release bash scripts/repro.sh
#   KEEP=/tmp/llm-relay.dist bash scripts/repro.sh   # also keep the first build's binary there
#
# What makes the build reproducible: `--locked` (the lock file is obeyed), `--remap-path-prefix`
# for the source/target directory and the cargo home (no build path in panic locations or debug
# info), `CARGO_INCREMENTAL=0` and the profile's codegen settings, `SOURCE_DATE_EPOCH` (the last
# commit's time) for any build step that stamps a time. The same toolchain is assumed (rustc
# version is printed); the Docker image pins it through the base image digest.
set -euo pipefail
cd "$(dirname "$0")/.."
src=$PWD
profile=${PROFILE:-dist}
work=$(mktemp -d "${TMPDIR:-/tmp}/llm-relay-repro.XXXXXX")
trap 'rm -rf "$work"' EXIT
cargo_home=${CARGO_HOME:-$HOME/.cargo}
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}
export CARGO_INCREMENTAL=0
unset CARGO_TARGET_DIR CARGO_BUILD_TARGET_DIR
echo "toolchain: $(rustc --version); profile $profile; SOURCE_DATE_EPOCH=$SOURCE_DATE_EPOCH"
dirs=("$work/a" "$work/second/build-tree") # different names and depths
# Snapshot the tree into both directories first, so an edit during the builds cannot make them
# differ: the tracked and untracked-but-not-ignored files (a clean clone plus local edits).
for dir in "${dirs[@]}"; do
  mkdir -p "$dir"
  (cd "$src" && git ls-files -z --cached --others --exclude-standard) |
    (cd "$src" && xargs -0 cp --parents -t "$dir" 2>/dev/null || true)
done
build() {
  local dir=$1 start
  start=$(date +%s)
  (
    cd "$dir"
    RUSTFLAGS="--remap-path-prefix=$dir=/llm-relay --remap-path-prefix=$cargo_home=/cargo" \
      cargo build --quiet --locked --profile "$profile" --bin llm-relay
  )
  echo "built $dir in $(($(date +%s) - start)) s"
}
# PARALLEL=1 runs both builds at once (fat LTO's last phase is single-threaded).
if [ "${PARALLEL:-0}" = 1 ]; then
  build "${dirs[0]}" & pid=$!
  build "${dirs[1]}"
  wait "$pid"
else
  for dir in "${dirs[@]}"; do build "$dir"; done
fi
sums=()
for dir in "${dirs[@]}"; do
  sum=$(sha256sum "$dir/target/$profile/llm-relay" | cut -d' ' -f1)
  echo "$sum  $dir/target/$profile/llm-relay"
  sums+=("$sum")
done
# The temporary trees are removed on exit: KEEP=path copies the first binary out before that.
if [ -n "${KEEP:-}" ]; then
  cp "${dirs[0]}/target/$profile/llm-relay" "$KEEP"
  echo "kept ${dirs[0]}/target/$profile/llm-relay as $KEEP"
fi
if [ "${sums[0]}" = "${sums[1]}" ]; then
  echo "reproducible: both builds are ${sums[0]}"
else
  echo "NOT reproducible: ${sums[0]} != ${sums[1]}" >&2
  exit 1
fi
