//! Presence leases in Redis, shared by every node: per user a sorted set of connection leases
//! scored by expiry, a set of the leases that are away, and the last announced state. One Lua
//! script applies a change and reports a user-level transition atomically, so exactly one node
//! announces each transition. Expiries come from Redis's own clock (`TIME` inside the script),
//! never from a node's, so nodes whose clocks disagree still agree on which lease expired.
//!
//! Each node also keeps a liveness key with a short TTL, refreshed by every change and every
//! sweep, and records which users hold a lease of its. When a node dies (SIGKILL), its liveness
//! key expires within seconds and the next sweep on any surviving node removes the dead node's
//! leases (the `REAP` script, run by every sweep), without waiting for the leases' own expiry.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use async_trait::async_trait;
use redis::aio::ConnectionManager;
use redis::{Client, RedisResult, Script};

use super::PresenceState;
use super::leases::{LeaseOp, LeaseStore, Transition};
use crate::realtime::server::fanout::ConnId;
use crate::realtime::server::redis_bus::connect_fail_fast;

const APPLY: &str = r#"
local leases, away, states, expiring, nodes, node_users, alive = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local user, op, conn, ttl, is_away, node, alive_ttl = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5], ARGV[6], tonumber(ARGV[7])
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
redis.call('SET', alive, '1', 'PX', alive_ttl)
if op == 'upsert' then
  redis.call('SADD', nodes, node)
  redis.call('SADD', node_users, user)
  redis.call('ZADD', leases, now + ttl, conn)
  if is_away == '1' then redis.call('SADD', away, conn) else redis.call('SREM', away, conn) end
elseif op == 'remove' then
  redis.call('ZREM', leases, conn)
  redis.call('SREM', away, conn)
  local mine = false
  for _, other in ipairs(redis.call('ZRANGE', leases, 0, -1)) do
    if string.sub(other, 1, #node + 1) == node .. ':' then mine = true end
  end
  if not mine then redis.call('SREM', node_users, user) end
end
for _, gone in ipairs(redis.call('ZRANGEBYSCORE', leases, '-inf', now)) do
  redis.call('SREM', away, gone)
end
redis.call('ZREMRANGEBYSCORE', leases, '-inf', now)
local live = redis.call('ZCARD', leases)
local announced = redis.call('HGET', states, user) or 'offline'
if live == 0 then
  redis.call('ZREM', expiring, user)
  if announced == 'offline' then return 'unchanged' end
  if op == 'settle' then
    redis.call('HDEL', states, user)
    return 'offline'
  end
  return 'emptied'
end
local first = redis.call('ZRANGE', leases, 0, 0, 'WITHSCORES')
redis.call('ZADD', expiring, first[2], user)
local state = 'online'
if redis.call('SCARD', away) >= live then state = 'away' end
if state ~= announced then
  redis.call('HSET', states, user, state)
  return state
end
return 'unchanged'
"#;

/// Removes the leases of every node whose liveness key is gone; the users who held one.
const REAP: &str = r#"
local nodes, prefix = KEYS[1], ARGV[1]
local reaped = {}
for _, node in ipairs(redis.call('SMEMBERS', nodes)) do
  if redis.call('EXISTS', prefix .. ':alive:' .. node) == 0 then
    local users = prefix .. ':node-users:' .. node
    for _, user in ipairs(redis.call('SMEMBERS', users)) do
      local leases = prefix .. ':leases:' .. user
      for _, conn in ipairs(redis.call('ZRANGE', leases, 0, -1)) do
        if string.sub(conn, 1, #node + 1) == node .. ':' then
          redis.call('ZREM', leases, conn)
          redis.call('SREM', prefix .. ':away:' .. user, conn)
        end
      end
      table.insert(reaped, user)
    end
    redis.call('DEL', users)
    redis.call('SREM', nodes, node)
  end
end
return reaped
"#;

/// This node's leases as Redis has them: user id, then connection id, repeated.
const OWN: &str = r#"
local node_users, prefix, node = KEYS[1], ARGV[1], ARGV[2]
local found = {}
for _, user in ipairs(redis.call('SMEMBERS', node_users)) do
  for _, conn in ipairs(redis.call('ZRANGE', prefix .. ':leases:' .. user, 0, -1)) do
    if string.sub(conn, 1, #node + 1) == node .. ':' then
      table.insert(found, user)
      table.insert(found, string.sub(conn, #node + 2))
    end
  end
end
return found
"#;

/// Users whose earliest lease expired by Redis's clock (at most `ARGV[1]`).
const EXPIRED: &str = r#"
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
"#;

/// Redis could not be reached; the caller decides from memory meanwhile.
#[derive(Debug, thiserror::Error)]
#[error("Redis unreachable: {0}")]
pub struct StoreUnreachable(#[from] pub redis::RedisError);

pub struct RedisLeases {
    client: Client,
    /// The connection while Redis is reachable; dropped on the first failure.
    manager: Option<ConnectionManager>,
    /// How long a lease lives without a heartbeat.
    lease_ttl: Duration,
    script: Script,
    reap: Script,
    expired: Script,
    own: Script,
    /// `{prefix}:presence`, the start of every key.
    keys: String,
    /// This node's id: the start of its lease names.
    node: String,
    /// How long the node's liveness key lasts without a refresh.
    alive_ttl: Duration,
}

impl RedisLeases {
    /// Leases of node `node` in the Redis at `url`, not yet connected: leases last `lease_ttl`
    /// without a heartbeat, the node's liveness key `alive_ttl`.
    pub fn new(
        url: &str,
        prefix: &str,
        node: &str,
        lease_ttl: Duration,
        alive_ttl: Duration,
    ) -> RedisResult<Self> {
        Ok(Self {
            client: Client::open(url)?,
            manager: None,
            lease_ttl,
            script: Script::new(APPLY),
            reap: Script::new(REAP),
            expired: Script::new(EXPIRED),
            own: Script::new(OWN),
            keys: format!("{prefix}:presence"),
            node: node.to_owned(),
            alive_ttl,
        })
    }

    fn nodes_key(&self) -> String {
        format!("{}:nodes", self.keys)
    }

    fn node_users_key(&self) -> String {
        format!("{}:node-users:{}", self.keys, self.node)
    }

    fn alive_key(&self) -> String {
        format!("{}:alive:{}", self.keys, self.node)
    }

    fn alive_ttl_ms(&self) -> u64 {
        u64::try_from(self.alive_ttl.as_millis()).unwrap_or(u64::MAX)
    }

    /// Whether Redis answered the last call (and a connection is held).
    pub fn is_up(&self) -> bool {
        self.manager.is_some()
    }

    /// Uses `manager` from now on (after [`connect`](Self::connect) succeeded).
    pub fn use_connection(&mut self, manager: ConnectionManager) {
        self.manager = Some(manager);
    }

    /// Connects without borrowing `self`, so a reconnect can run beside the presence task. The
    /// connection fails fast, so a Redis outage is noticed within a second.
    pub fn connect(&self) -> impl Future<Output = RedisResult<ConnectionManager>> + Send + 'static {
        let client = self.client.clone();
        async move {
            let mut manager = connect_fail_fast(&client).await?;
            let _: String = redis::cmd("PING").query_async(&mut manager).await?;
            Ok(manager)
        }
    }

    /// The connection (a cheap clone of a shared handle), or an error when Redis is down.
    fn manager(&self) -> Result<ConnectionManager, StoreUnreachable> {
        self.manager.clone().ok_or_else(|| {
            StoreUnreachable(redis::RedisError::from((
                redis::ErrorKind::IoError,
                "not connected to Redis",
            )))
        })
    }

    /// Drops the connection when `result` failed: Redis counts as down until reconnected.
    fn checked<T>(&mut self, result: RedisResult<T>) -> Result<T, StoreUnreachable> {
        result.map_err(|error| {
            self.manager = None;
            StoreUnreachable(error)
        })
    }

    /// This node's leases in Redis, as `(user_id, connection)`: after an outage, the ones whose
    /// connection closed meanwhile are still there.
    pub async fn own_leases(&mut self) -> Result<Vec<(i64, ConnId)>, StoreUnreachable> {
        let mut manager = self.manager()?;
        let result: RedisResult<Vec<String>> = self
            .own
            .key(self.node_users_key())
            .arg(&self.keys)
            .arg(&self.node)
            .invoke_async(&mut manager)
            .await;
        let flat = self.checked(result)?;
        Ok(flat
            .chunks(2)
            .filter_map(|pair| match pair {
                [user, conn] => Some((user.parse().ok()?, conn.parse().ok()?)),
                _ => None,
            })
            .collect())
    }

    fn leases_key(&self, user_id: i64) -> String {
        format!("{}:leases:{user_id}", self.keys)
    }

    fn away_key(&self, user_id: i64) -> String {
        format!("{}:away:{user_id}", self.keys)
    }

    fn states_key(&self) -> String {
        format!("{}:state", self.keys)
    }

    fn expiring_key(&self) -> String {
        format!("{}:expiring", self.keys)
    }

    /// Runs the `APPLY` script for one change.
    async fn run_apply(
        &self,
        manager: &mut ConnectionManager,
        user_id: i64,
        conn: ConnId,
        op: LeaseOp,
    ) -> RedisResult<Transition> {
        let (op_name, away) = match op {
            LeaseOp::Upsert { away } => ("upsert", away),
            LeaseOp::Remove => ("remove", false),
            LeaseOp::Settle => ("settle", false),
        };
        let outcome: String = self
            .script
            .key(self.leases_key(user_id))
            .key(self.away_key(user_id))
            .key(self.states_key())
            .key(self.expiring_key())
            .key(self.nodes_key())
            .key(self.node_users_key())
            .key(self.alive_key())
            .arg(user_id)
            .arg(op_name)
            .arg(format!("{}:{conn}", self.node))
            .arg(u64::try_from(self.lease_ttl.as_millis()).unwrap_or(u64::MAX / 2))
            .arg(if away { "1" } else { "0" })
            .arg(&self.node)
            .arg(self.alive_ttl_ms())
            .invoke_async(manager)
            .await?;
        Ok(match outcome.as_str() {
            "online" => Transition::Changed(PresenceState::Online),
            "away" => Transition::Changed(PresenceState::Away),
            "offline" => Transition::Changed(PresenceState::Offline),
            "emptied" => Transition::Emptied,
            _ => Transition::Unchanged,
        })
    }

    /// Renews this node's liveness, then removes the leases of nodes that stopped renewing
    /// theirs; the users who held one (each is reported to exactly one node), then users with
    /// a lease that expired by Redis's clock (at most `limit`).
    async fn sweep(&self, manager: &mut ConnectionManager, limit: isize) -> RedisResult<Vec<i64>> {
        let () = redis::cmd("SET")
            .arg(self.alive_key())
            .arg("1")
            .arg("PX")
            .arg(self.alive_ttl_ms())
            .query_async(manager)
            .await?;
        let mut users: Vec<i64> = self
            .reap
            .key(self.nodes_key())
            .arg(&self.keys)
            .invoke_async(manager)
            .await?;
        let expired: Vec<i64> = self
            .expired
            .key(self.expiring_key())
            .arg(limit)
            .invoke_async(manager)
            .await?;
        users.extend(expired);
        Ok(users)
    }
}

#[async_trait]
impl LeaseStore for RedisLeases {
    type Error = StoreUnreachable;

    /// Applies the change in one script; leases last the lease TTL from now by Redis's clock.
    async fn apply(
        &mut self,
        user_id: i64,
        conn: ConnId,
        op: LeaseOp,
    ) -> Result<Transition, StoreUnreachable> {
        let mut manager = self.manager()?;
        let result = self.run_apply(&mut manager, user_id, conn, op).await;
        self.checked(result)
    }

    /// One user's changes in order, different users' side by side on the one multiplexed
    /// connection: a burst of connections opening costs about one round trip, not one each.
    async fn apply_many(
        &mut self,
        changes: &[(i64, ConnId, LeaseOp)],
    ) -> Result<Vec<Transition>, StoreUnreachable> {
        let manager = self.manager()?;
        let mut by_user: HashMap<i64, Vec<usize>> = HashMap::new();
        for (index, (user_id, _, _)) in changes.iter().enumerate() {
            by_user.entry(*user_id).or_default().push(index);
        }
        let this = &*self;
        let per_user = by_user.into_values().map(|indices| {
            let mut manager = manager.clone();
            async move {
                let mut done = Vec::with_capacity(indices.len());
                for index in indices {
                    let (user_id, conn, op) = changes[index];
                    done.push((
                        index,
                        this.run_apply(&mut manager, user_id, conn, op).await?,
                    ));
                }
                Ok::<_, redis::RedisError>(done)
            }
        });
        let results = futures::future::join_all(per_user).await;
        let mut transitions = vec![Transition::Unchanged; changes.len()];
        for result in results {
            for (index, transition) in self.checked(result)? {
                transitions[index] = transition;
            }
        }
        Ok(transitions)
    }

    /// The announced state of each user (offline when absent).
    async fn states(&mut self, user_ids: &[i64]) -> Result<Vec<PresenceState>, StoreUnreachable> {
        if user_ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut manager = self.manager()?;
        let result: RedisResult<Vec<Option<String>>> = redis::cmd("HMGET")
            .arg(self.states_key())
            .arg(user_ids)
            .query_async(&mut manager)
            .await;
        Ok(self
            .checked(result)?
            .into_iter()
            .map(|state| match state.as_deref() {
                Some("online") => PresenceState::Online,
                Some("away") => PresenceState::Away,
                _ => PresenceState::Offline,
            })
            .collect())
    }

    async fn due(&mut self) -> Result<Vec<i64>, StoreUnreachable> {
        let mut manager = self.manager()?;
        let result = self.sweep(&mut manager, 200).await;
        self.checked(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Leases of one node under a key prefix no other run uses; needs the Redis at `REDIS_URL`
    /// (the machine's by default), as `scripts/test.sh` provides.
    async fn connected_leases(prefix: &str) -> RedisLeases {
        let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
        let ttl = Duration::from_secs(60);
        let mut leases = RedisLeases::new(&url, prefix, "node-a", ttl, ttl).expect("Redis URL");
        let manager = leases
            .connect()
            .await
            .expect("Redis must be running at REDIS_URL");
        leases.use_connection(manager);
        leases
    }

    async fn remove_keys(leases: &RedisLeases, prefix: &str) {
        let mut manager = leases.manager().expect("connected");
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{prefix}:*"))
            .query_async(&mut manager)
            .await
            .expect("KEYS");
        if !keys.is_empty() {
            let () = redis::cmd("DEL")
                .arg(keys)
                .query_async(&mut manager)
                .await
                .expect("DEL");
        }
    }

    #[tokio::test]
    async fn a_batch_applies_each_users_changes_in_order_and_reports_each() {
        use PresenceState::{Away, Offline, Online};
        let prefix = format!(
            "test-batch-{}-{}",
            std::process::id(),
            crate::clock::now_ms()
        );
        let mut leases = connected_leases(&prefix).await;
        let changes = [
            (1, 10, LeaseOp::Upsert { away: false }),
            (2, 20, LeaseOp::Upsert { away: true }),
            (1, 11, LeaseOp::Upsert { away: true }),
            (1, 10, LeaseOp::Remove),
            (2, 20, LeaseOp::Remove),
            (1, 11, LeaseOp::Remove),
            (2, 0, LeaseOp::Settle),
        ];
        let transitions = leases.apply_many(&changes).await;
        let states = leases.states(&[1, 2]).await;
        remove_keys(&leases, &prefix).await;
        assert_eq!(
            transitions.expect("Redis answered"),
            vec![
                Transition::Changed(Online),
                Transition::Changed(Away),
                Transition::Unchanged,
                // Only the away connection is left.
                Transition::Changed(Away),
                Transition::Emptied,
                Transition::Emptied,
                Transition::Changed(Offline),
            ]
        );
        assert_eq!(states.expect("Redis answered"), vec![Away, Offline]);
    }
}
