#!/usr/bin/env bash
# Reproducible-build check: build the release binary twice, from copies of this tree in two
# different directories, with the flags the Dockerfile uses, and compare the SHA-256 of the two
# binaries. Exit 0 when they are identical.
#
#   bash scripts/repro.sh              # profile `dist` (what the image ships), ~2 x 10 min on 2 cores
#   PROFILE=release bash scripts/repro.sh
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
sums=()
# Two directories of different names and depths.
for dir in "$work/a" "$work/second/build-tree"; do
  mkdir -p "$dir"
  # The tracked and untracked-but-not-ignored files: what a clean clone (plus local edits) holds.
  (cd "$src" && git ls-files -z --cached --others --exclude-standard) |
    (cd "$src" && xargs -0 cp --parents -t "$dir" 2>/dev/null || true)
  start=$(date +%s)
  (
    cd "$dir"
    RUSTFLAGS="--remap-path-prefix=$dir=/llm-relay --remap-path-prefix=$cargo_home=/cargo" \
      cargo build --quiet --locked --profile "$profile" --bin llm-relay
  )
  sum=$(sha256sum "$dir/target/$profile/llm-relay" | cut -d' ' -f1)
  echo "$sum  $dir/target/$profile/llm-relay ($(($(date +%s) - start)) s)"
  sums+=("$sum")
done
if [ "${sums[0]}" = "${sums[1]}" ]; then
  echo "reproducible: both builds are ${sums[0]}"
else
  echo "NOT reproducible: ${sums[0]} != ${sums[1]}" >&2
  exit 1
fi
