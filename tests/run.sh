#!/usr/bin/env bash
# The project's test command: `bash tests/run.sh` (extra arguments go to `cargo test`).
# Needs cargo, python3 (>= 3.10, with venv), Node.js/npm and /usr/bin/chromium (.ci/run installs
# the last two). Installs the pinned Python SDK clients into target/sdk-venv, playwright-core into
# tests/ui/node_modules and Claude Code into tests/claude-code/node_modules, then runs every Rust
# test, including tests/sdk_clients.rs and tests/anthropic_clients.rs (the official openai, ollama
# and anthropic Python SDKs and Claude Code against the built binary) and tests/admin_ui.rs (the
# admin web UI in headless Chromium).
set -euo pipefail
cd "$(dirname "$0")/.."

venv=target/sdk-venv
# (Re)create the venv if it is missing or broken (e.g. an interrupted earlier run).
if ! "$venv/bin/python" -m pip --version >/dev/null 2>&1; then
  python3 -m venv --clear "$venv"
fi
# No network needed once the pinned versions are installed.
"$venv/bin/python" -m pip install -q --disable-pip-version-check -r tests/clients/requirements.txt

# The admin UI browser test (tests/admin_ui.rs) needs playwright-core, pinned in
# tests/ui/package-lock.json (it drives the system's /usr/bin/chromium; no browser download).
# Installed once: skipped when the pinned version is already there.
if ! command -v npm >/dev/null 2>&1; then
  echo "tests/run.sh: Node.js and npm are needed for the admin UI test (apt-get install nodejs npm; .ci/run does it)" >&2
  exit 1
fi
pw_want=$(node -p "require('./tests/ui/package.json').dependencies['playwright-core']")
pw_have=$(node -p "try { require('./tests/ui/node_modules/playwright-core/package.json').version } catch { '' }")
if [ "$pw_want" != "$pw_have" ]; then
  (cd tests/ui && npm ci --no-audit --no-fund --loglevel=error)
fi

export LLM_RELAY_PYTHON="$PWD/$venv/bin/python"

# Claude Code (pinned in tests/claude-code/package-lock.json) for tests/anthropic_clients.rs; needs
# npm. Installed once into the git-ignored tests/claude-code/node_modules; its native binary runs
# offline. The platform package's binary is used directly (no install script needed).
cc=tests/claude-code
if ! ls "$cc"/node_modules/@anthropic-ai/claude-code-*/claude >/dev/null 2>&1; then
  if ! command -v npm >/dev/null && command -v apt-get >/dev/null; then
    apt-get update -qq && apt-get install -y -qq npm >/dev/null
  fi
  (cd "$cc" && npm ci --no-audit --no-fund --loglevel=error)
fi
for bin in "$cc"/node_modules/@anthropic-ai/claude-code-*/claude "$cc"/node_modules/.bin/claude; do
  if [ -x "$bin" ] && "$bin" --version >/dev/null 2>&1; then
    export LLM_RELAY_CLAUDE="$PWD/$bin"
    break
  fi
done
cargo test --workspace --all-targets "$@"
