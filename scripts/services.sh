# Sourced by scripts/test.sh and scripts/cluster.sh: starts the machine's Redis and PostgreSQL
# when they are down. Expects REDIS_URL to be set.

as_root() { if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi; }

if ! redis-cli -u "$REDIS_URL" ping >/dev/null 2>&1; then
  printf '\033[1;34m==>\033[0m %s\n' "starting Redis"
  as_root mkdir -p /var/lib/redis /var/log/redis
  as_root redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" \
    --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log
  for _ in $(seq 50); do redis-cli -u "$REDIS_URL" ping >/dev/null 2>&1 && break; sleep 0.1; done
fi
if ! pg_isready -h 127.0.0.1 -p 5432 >/dev/null 2>&1; then
  printf '\033[1;34m==>\033[0m %s\n' "starting PostgreSQL"
  as_root pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql)" main start
  for _ in $(seq 50); do pg_isready -h 127.0.0.1 -p 5432 >/dev/null 2>&1 && break; sleep 0.2; done
fi
