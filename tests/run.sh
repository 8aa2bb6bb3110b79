#!/usr/bin/env bash
# The project's test command: `bash tests/run.sh` (extra arguments go to `cargo test`).
# Needs cargo and python3 (>= 3.10, with venv). Installs the pinned Python SDK clients into
# target/sdk-venv, then runs every Rust test, including tests/sdk_clients.rs, which drives the
# official openai and ollama Python SDKs against the built binary.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=target/sdk-venv
# (Re)create the venv if it is missing or broken (e.g. an interrupted earlier run).
if ! "$venv/bin/python" -m pip --version >/dev/null 2>&1; then
  python3 -m venv --clear "$venv"
fi
# No network needed once the pinned versions are installed.
"$venv/bin/python" -m pip install -q --disable-pip-version-check -r tests/clients/requirements.txt

export LLM_RELAY_PYTHON="$PWD/$venv/bin/python"
cargo test --workspace --all-targets "$@"
