#!/usr/bin/env bash
# Runs a local three-node cluster: nodes on 127.0.0.1:3001–3003 sharing one PostgreSQL database
# and one Redis, behind HAProxy on http://127.0.0.1:3000 (HTTP and WebSocket, health-checked on
# /ready). Starts PostgreSQL and Redis if they are down, installs HAProxy if missing, builds
# once. Ctrl-C stops everything.
#
#   scripts/cluster.sh             development build
#   scripts/cluster.sh --release   optimized build
#
# DATABASE_URL picks the database (default postgres://postgres@127.0.0.1:5432/dealnest_cluster,
# created if missing); REDIS_URL the Redis (default redis://127.0.0.1:6379). Node logs go to
# target/cluster/node-<port>.log.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\033[1;34m==>\033[0m %s\n' "$*"; }

profile=debug
if [[ "${1:-}" == "--release" ]]; then
  profile=release
  scripts/setup.sh --release
  export PATH="$PWD/target/tools/binaryen/node_modules/.bin:$PATH"
else
  scripts/setup.sh
fi

export REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379}"
source scripts/services.sh

export DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/dealnest_cluster}"
if [[ "$DATABASE_URL" != postgres* ]]; then
  echo "cluster.sh: DATABASE_URL must be a postgres:// URL: several nodes share PostgreSQL" >&2
  exit 2
fi
database="${DATABASE_URL##*/}"
database="${database%%\?*}"
server="${DATABASE_URL%/*}/postgres"
if ! psql "$server" -Atc "SELECT 1 FROM pg_database WHERE datname = '$database'" | grep -q 1; then
  step "creating database $database"
  psql "$server" -qc "CREATE DATABASE \"$database\""
fi

if ! command -v haproxy >/dev/null; then
  step "installing HAProxy"
  as_root apt-get update
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y haproxy
fi

step "building ($profile)"
if [[ $profile == release ]]; then
  cargo leptos build --release --precompress
else
  cargo leptos build
fi

mkdir -p target/cluster
cat > target/cluster/haproxy.cfg <<'CFG'
global
    # Each proxied connection holds two files, and a process may hold 20,000 here.
    maxconn 9000

defaults
    mode http
    option forwardfor
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    # An open WebSocket is a tunnel; the app pings every 30 s.
    timeout tunnel 1h

frontend chat
    bind 127.0.0.1:3000
    default_backend nodes

backend nodes
    balance leastconn
    option httpchk GET /ready
    http-check expect status 200
    server node1 127.0.0.1:3001 check inter 1s fall 2 rise 1
    server node2 127.0.0.1:3002 check inter 1s fall 2 rise 1
    server node3 127.0.0.1:3003 check inter 1s fall 2 rise 1
CFG

pids=()
stop() {
  trap - INT TERM EXIT
  step "stopping"
  kill "${pids[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
}
trap stop INT TERM EXIT

for port in 3001 3002 3003; do
  LEPTOS_SITE_ROOT=target/site PORT="$port" TRUST_FORWARDED_FOR=true DRAIN_SECS=2 \
    "target/$profile/dealnest-chat" >"target/cluster/node-$port.log" 2>&1 &
  pids+=($!)
done
for port in 3001 3002 3003; do
  for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$port/ready" >/dev/null && break
    sleep 0.2
  done
  curl -sf "http://127.0.0.1:$port/ready" >/dev/null ||
    { echo "node on :$port did not become ready; see target/cluster/node-$port.log" >&2; exit 1; }
done
haproxy -f target/cluster/haproxy.cfg -db &
pids+=($!)

step "cluster up: http://127.0.0.1:3000 → nodes :3001 :3002 :3003 on $DATABASE_URL and $REDIS_URL"
echo "Ctrl-C stops it. Node logs: target/cluster/node-*.log"
wait -n "${pids[@]}"
echo "a process of the cluster exited; stopping the rest" >&2
