//! Presence leases in Redis, shared by every node: per user a sorted set of connection leases
//! scored by expiry, a set of the leases that are away, and the last announced state. One Lua
//! script applies a change and reports a user-level transition atomically, so exactly one node
//! announces each transition. A crashed node's leases simply expire and are swept.

use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::{AsyncCommands, Client, RedisResult, Script};

use super::PresenceState;

/// What a lease change did to the user's presence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// The user-level state changed to this; the caller announces it.
    Changed(PresenceState),
    /// No lease is left but the user still shows as present: settle after the grace period.
    Emptied,
    Unchanged,
}

/// A change to one connection's lease.
#[derive(Debug, Clone, Copy)]
pub enum LeaseOp {
    /// Create or refresh the lease, active or away.
    Upsert {
        away: bool,
    },
    Remove,
    /// No change: prune expired leases and, when none is left, announce offline.
    Settle,
}

const APPLY: &str = r#"
local leases, away, states, expiring = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local user, now, op, conn, expiry, is_away = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4], tonumber(ARGV[5]), ARGV[6]
if op == 'upsert' then
  redis.call('ZADD', leases, expiry, conn)
  if is_away == '1' then redis.call('SADD', away, conn) else redis.call('SREM', away, conn) end
elseif op == 'remove' then
  redis.call('ZREM', leases, conn)
  redis.call('SREM', away, conn)
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

pub struct RedisLeases {
    client: Client,
    script: Script,
    /// `{prefix}:presence`, the start of every key.
    keys: String,
}

impl RedisLeases {
    pub fn new(url: &str, prefix: &str) -> RedisResult<Self> {
        Ok(Self {
            client: Client::open(url)?,
            script: Script::new(APPLY),
            keys: format!("{prefix}:presence"),
        })
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

    /// A connection that fails fast, so a Redis outage is noticed within a second.
    pub async fn connect(&self) -> RedisResult<ConnectionManager> {
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Duration::from_secs(1))
            .set_response_timeout(Duration::from_secs(1))
            .set_number_of_retries(1)
            .set_max_delay(200);
        let mut manager = self
            .client
            .get_connection_manager_with_config(config)
            .await?;
        let _: String = redis::cmd("PING").query_async(&mut manager).await?;
        Ok(manager)
    }

    /// Applies `op` to connection `conn_key` of `user_id` at `now` (ms); leases last `ttl`.
    pub async fn apply(
        &self,
        manager: &mut ConnectionManager,
        user_id: i64,
        conn_key: &str,
        op: LeaseOp,
        now: i64,
        ttl: Duration,
    ) -> RedisResult<Transition> {
        let (op_name, away) = match op {
            LeaseOp::Upsert { away } => ("upsert", away),
            LeaseOp::Remove => ("remove", false),
            LeaseOp::Settle => ("settle", false),
        };
        let expiry = now + i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX / 2);
        let outcome: String = self
            .script
            .key(self.leases_key(user_id))
            .key(self.away_key(user_id))
            .key(self.states_key())
            .key(self.expiring_key())
            .arg(user_id)
            .arg(now)
            .arg(op_name)
            .arg(conn_key)
            .arg(expiry)
            .arg(if away { "1" } else { "0" })
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

    /// Users with a lease that expired by `now` (at most `limit`), to settle.
    pub async fn expired_users(
        &self,
        manager: &mut ConnectionManager,
        now: i64,
        limit: isize,
    ) -> RedisResult<Vec<i64>> {
        manager
            .zrangebyscore_limit(self.expiring_key(), "-inf", now, 0, limit)
            .await
    }

    /// The announced state of each user (offline when absent).
    pub async fn states(
        &self,
        manager: &mut ConnectionManager,
        user_ids: &[i64],
    ) -> RedisResult<Vec<PresenceState>> {
        if user_ids.is_empty() {
            return Ok(Vec::new());
        }
        let states: Vec<Option<String>> = redis::cmd("HMGET")
            .arg(self.states_key())
            .arg(user_ids)
            .query_async(manager)
            .await?;
        Ok(states
            .into_iter()
            .map(|state| match state.as_deref() {
                Some("online") => PresenceState::Online,
                Some("away") => PresenceState::Away,
                _ => PresenceState::Offline,
            })
            .collect())
    }
}
