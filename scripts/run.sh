#!/usr/bin/env bash
# Builds and serves DealNest Chat on http://127.0.0.1:3000 with the embedded default: a SQLite
# file at ./data/dealnest.db (override with DATABASE_URL), no other services.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec cargo leptos serve "$@"
