#!/usr/bin/env bash
# Runs every check and test: formatting, lints (server and WASM), unit and storage tests,
# HTTP API tests against the real server, and browser tests in Chromium. Installs what is
# missing first. Exits non-zero on the first failure.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test

step() { printf '\033[1;34m==>\033[0m %s\n' "$*"; }

# Redis (presence tests) and PostgreSQL run on the machine; start them when they are down.
export REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379}"
# The PostgreSQL server the suites' PostgreSQL passes create scratch databases on (and drop).
POSTGRES_URL="${TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}"
source scripts/services.sh

# The same flags cargo-leptos builds with, so tests reuse its build instead of redoing it.
export RUSTFLAGS="--cfg erase_components"
export LEPTOS_OUTPUT_NAME=dealnest-chat

step "formatting"
cargo fmt --all --check

step "no new import cycle between sibling modules (docs/ARCHITECTURE.md, Layering)"
python3 scripts/check-module-cycles.py --known scripts/module-cycles.known --max-lines 3

# Each suite that stores anything runs twice: on SQLite (a temporary file per test) and on
# PostgreSQL (a scratch database per test), selected by TEST_DATABASE_URL.
step "unit and storage tests (app, ssr) on SQLite"
cargo test -p app --features ssr
cargo test -p dealnest-test-support
step "storage tests on PostgreSQL"
TEST_DATABASE_URL="$POSTGRES_URL" cargo test -p app --features ssr --test store

step "API tests (real server over HTTP) on SQLite"
cargo test -p dealnest-chat
step "API tests on PostgreSQL"
TEST_DATABASE_URL="$POSTGRES_URL" cargo test -p dealnest-chat

step "building server and WASM"
# cargo-leptos sets its own flags (per target); ours would make it rebuild the WASM.
env -u RUSTFLAGS -u LEPTOS_OUTPUT_NAME cargo leptos build

step "browser tests (Playwright + Chromium)"
(cd end2end && npx playwright test)

step "benchmark smoke (every scenario, tiny and short; checks correctness, not speed)"
cargo build -p dealnest-bench
./target/debug/dealnest-bench smoke --server target/debug/dealnest-chat --port 3190
step "benchmark smoke on a 3-node cluster (PostgreSQL + Redis)"
./target/debug/dealnest-bench smoke --server target/debug/dealnest-chat --port 3290 \
  --postgres "$POSTGRES_URL" --nodes 3

step "lints: server side"
cargo clippy -p app -p dealnest-chat -p dealnest-bench --features app/ssr --all-targets -- -D warnings
step "lints: browser side"
cargo clippy -p frontend -p app --features app/hydrate --target wasm32-unknown-unknown -- -D warnings

step "all tests passed"
