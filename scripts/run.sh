#!/usr/bin/env bash
# Builds and serves DealNest Chat on http://127.0.0.1:3000 with the embedded default: a SQLite
# file at ./data/dealnest.db (override with DATABASE_URL), no other services.
#
#   scripts/run.sh             development build, rebuilt and reloaded on change
#   scripts/run.sh --release   optimized build (wasm-opt, hashed and precompressed bundles),
#                              served by the release binary; further arguments go to it
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ "${1:-}" == "--release" ]]; then
  shift
  scripts/setup.sh --release
  export PATH="$PWD/target/tools/binaryen/node_modules/.bin:$PATH"
  cargo leptos build --release --precompress
  exec env LEPTOS_SITE_ROOT=target/site ./target/release/dealnest-chat "$@"
fi
scripts/setup.sh
exec cargo leptos serve "$@"
