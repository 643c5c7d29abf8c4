#!/usr/bin/env bash
# Installs what building (and, with --test, testing) DealNest Chat needs. Idempotent: each step
# is skipped when already present, so every README command can call it.
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_LEPTOS_VERSION=0.3.10 # 0.3.11 needs a newer rustc than this toolchain
# Debian's binaryen (v108) makes a WASM bundle that never hydrates; npm's is current.
BINARYEN_VERSION=132
with_test_tools=false
with_release_tools=false
for arg in "$@"; do
  case "$arg" in
    --test) with_test_tools=true ;;
    --release) with_release_tools=true ;;
    *) echo "setup.sh: unknown option $arg (use --test and/or --release)" >&2; exit 2 ;;
  esac
done

step() { printf '\033[1;34m==>\033[0m %s\n' "$*"; }

as_root() {
  if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi
}

if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  step "adding the wasm32-unknown-unknown target"
  rustup target add wasm32-unknown-unknown
fi

if ! cargo leptos --version 2>/dev/null | grep -q "$CARGO_LEPTOS_VERSION"; then
  step "installing cargo-leptos $CARGO_LEPTOS_VERSION (takes ~17 min once)"
  cargo install cargo-leptos --version "$CARGO_LEPTOS_VERSION" --locked
fi

# cargo-leptos runs the wasm-bindgen on PATH (it cannot download one here); it must match the
# wasm-bindgen library version in Cargo.lock exactly.
bindgen_version=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)
if ! wasm-bindgen --version 2>/dev/null | grep -q "$bindgen_version"; then
  step "installing wasm-bindgen-cli $bindgen_version"
  # No --locked: its own lockfile pins a crate version the registry no longer has.
  cargo install wasm-bindgen-cli --version "$bindgen_version"
fi

if $with_test_tools; then
  # chromium drives the browser tests; sqlite3 lets a spec back-date seeded messages;
  # python3 runs the import-cycle check.
  missing=()
  [[ -x /usr/bin/chromium ]] || missing+=(chromium)
  command -v sqlite3 >/dev/null || missing+=(sqlite3)
  command -v python3 >/dev/null || missing+=(python3)
  if ((${#missing[@]})); then
    step "installing Debian packages for browser tests: ${missing[*]}"
    as_root apt-get update
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"
  fi
  # Reinstalled when package-lock.json changed since the last install.
  if [[ ! -x end2end/node_modules/.bin/playwright ]] ||
    [[ end2end/package-lock.json -nt end2end/node_modules/.package-lock.json ]]; then
    step "installing Playwright (no browser download: tests use /usr/bin/chromium)"
    (cd end2end && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund)
  fi
fi

if $with_release_tools; then
  # Release builds run wasm-opt from PATH; scripts/run.sh --release puts this one first.
  tools=target/tools/binaryen
  if ! "$tools/node_modules/.bin/wasm-opt" --version 2>/dev/null | grep -q "version $BINARYEN_VERSION"; then
    step "installing wasm-opt (npm binaryen@$BINARYEN_VERSION) into $tools"
    mkdir -p "$tools"
    npm install --prefix "$tools" --no-audit --no-fund --no-save "binaryen@$BINARYEN_VERSION"
  fi
fi
