//! Per-client rate limits, exact at the boundary: a client with a quota of N per minute
//! gets N requests in a burst and then one every minute/N, never more.
//!
//! The algorithm is GCRA (the generic cell rate algorithm): one number per client, its
//! theoretical arrival time (TAT). A request at `now` is allowed when
//! `max(TAT, now) + interval - now <= period`, and then moves TAT on by one interval.
//! The same arithmetic runs in process ([`Local`]) or as one Lua script in Redis
//! ([`Shared`]), so every gateway replica draws on the same allowance.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};

/// How many requests a client may make per period.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quota {
    /// Requests per period, in a burst or spread out.
    pub limit: u32,
    /// The period.
    pub period: Duration,
}

impl Quota {
    /// `limit` requests a minute.
    pub fn per_minute(limit: u32) -> Self {
        Self {
            limit,
            period: Duration::from_secs(60),
        }
    }

    /// Microseconds between requests at the steady rate.
    fn interval_us(self) -> u64 {
        micros(self.period) / u64::from(self.limit.max(1))
    }
}

fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

/// What the limiter decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Go ahead.
    Allow,
    /// Refused; the client may try again after this long.
    Deny(Duration),
}

/// One GCRA step on a stored TAT (microseconds on the limiter's clock): the decision
/// and the TAT to store.
fn step(tat: Option<u64>, now: u64, quota: Quota) -> (Decision, u64) {
    let tat = tat.unwrap_or(now).max(now);
    let next = tat + quota.interval_us();
    let period = micros(quota.period);
    if next - now > period {
        (
            Decision::Deny(Duration::from_micros(next - now - period)),
            tat,
        )
    } else {
        (Decision::Allow, next)
    }
}

/// Limits in this process's memory, in shards so that two cores rarely wait on each
/// other. Entries whose TAT has passed carry no information and are swept.
#[derive(Debug)]
pub struct Local {
    epoch: Instant,
    shards: Vec<Mutex<Shard>>,
}

#[derive(Debug)]
struct Shard {
    entries: HashMap<String, u64>,
    /// The size at which stale entries are next swept: twice what survived the last
    /// sweep, so sweeping costs a constant per insert however many clients are live.
    sweep_at: usize,
}

const SHARDS: usize = 16;
/// The smallest size at which a shard is swept.
const SWEEP_AT: usize = 1024;

impl Default for Local {
    fn default() -> Self {
        Self {
            epoch: Instant::now(),
            shards: (0..SHARDS)
                .map(|_| {
                    Mutex::new(Shard {
                        entries: HashMap::new(),
                        sweep_at: SWEEP_AT,
                    })
                })
                .collect(),
        }
    }
}

impl Local {
    /// Counts a request by `key` at `now` against `quota`.
    pub fn check(&self, key: &str, quota: Quota, now: Instant) -> Decision {
        let now = micros(now.saturating_duration_since(self.epoch));
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        key.hash(&mut hasher);
        let shard = usize::try_from(hasher.finish() % SHARDS as u64).unwrap_or_default();
        let mut shard = self.shards[shard]
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (decision, tat) = step(shard.entries.get(key).copied(), now, quota);
        if let Some(stored) = shard.entries.get_mut(key) {
            *stored = tat;
        } else {
            if shard.entries.len() >= shard.sweep_at {
                shard.entries.retain(|_, tat| *tat > now);
                shard.sweep_at = (shard.entries.len() * 2).max(SWEEP_AT);
            }
            shard.entries.insert(key.to_owned(), tat);
        }
        decision
    }
}

/// The GCRA step in Redis, on Redis's clock so that every replica agrees on the time.
/// Keys expire once their TAT has passed.
const SCRIPT: &str = r"
local interval = tonumber(ARGV[1])
local period = tonumber(ARGV[2])
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local next = tat + interval
if next - now > period then
  return next - now - period
end
redis.call('SET', KEYS[1], next, 'PX', math.ceil((next - now) / 1000) + 1)
return -1
";

/// Limits shared through Redis by every gateway replica. When Redis cannot answer,
/// each replica limits on its own ([`Local`]) until it can again: a Redis outage
/// must not take the shop down, nor open it to unlimited traffic.
pub struct Shared {
    connection: ConnectionManager,
    script: redis::Script,
    prefix: String,
    fallback: Local,
    /// Until when Redis is not asked, after it failed: an outage costs one slow
    /// request a second, not every request a timeout.
    resting_until: std::sync::Mutex<Option<Instant>>,
}

/// How long Redis rests after a failure before it is asked again.
const STORE_REST: Duration = Duration::from_secs(1);
/// The longest a check waits for Redis before the local limits answer.
const STORE_WAIT: Duration = Duration::from_millis(300);

impl Shared {
    /// The store in Redis at `url`; keys start with `prefix`. It connects on first use
    /// and reconnects by itself, so a Redis that is down when the gateway starts is not
    /// fatal: the limits are this replica's alone until Redis answers. Fails only for a
    /// URL that is not one.
    pub fn connect(url: &str, prefix: &str) -> anyhow::Result<Self> {
        let client = redis::Client::open(url)?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(Duration::from_millis(250)))
            // A request never waits out reconnection backoff; the rest does the pacing.
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(100));
        let connection = ConnectionManager::new_lazy_with_config(client, config)?;
        Ok(Self {
            connection,
            script: redis::Script::new(SCRIPT),
            prefix: prefix.to_owned(),
            fallback: Local::default(),
            resting_until: std::sync::Mutex::new(None),
        })
    }

    /// Counts a request by `key` against `quota`.
    pub async fn check(&self, key: &str, quota: Quota) -> Decision {
        let resting = {
            let until = self
                .resting_until
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            until.is_some_and(|until| Instant::now() < until)
        };
        if resting {
            return self.fallback.check(key, quota, Instant::now());
        }
        let mut connection = self.connection.clone();
        let mut invocation = self.script.key(format!("{}{key}", self.prefix));
        invocation
            .arg(quota.interval_us())
            .arg(micros(quota.period));
        let answer =
            tokio::time::timeout(STORE_WAIT, invocation.invoke_async::<i64>(&mut connection)).await;
        match answer {
            Ok(Ok(wait)) if wait < 0 => Decision::Allow,
            Ok(Ok(wait)) => Decision::Deny(Duration::from_micros(wait.unsigned_abs())),
            Ok(Err(_)) | Err(_) => {
                let reason = match &answer {
                    Ok(Err(error)) => error.to_string(),
                    _ => format!("no answer within {STORE_WAIT:?}"),
                };
                tracing::warn!(reason, "rate limits fall back to this replica alone");
                metrics::counter!("gateway_rate_limit_store_errors_total").increment(1);
                *self
                    .resting_until
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) =
                    Some(Instant::now() + STORE_REST);
                self.fallback.check(key, quota, Instant::now())
            }
        }
    }
}

/// Where the limiter keeps its counts.
pub enum Limiter {
    /// In process.
    Local(Local),
    /// In Redis.
    Shared(Shared),
}

impl Limiter {
    /// Counts a request by `key` against `quota`.
    pub async fn check(&self, key: &str, quota: Quota) -> Decision {
        match self {
            Self::Local(local) => local.check(key, quota, Instant::now()),
            Self::Shared(shared) => shared.check(key, quota).await,
        }
    }
}

/// Requests per minute a client may make, by who it is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    /// Whether requests are limited at all.
    pub enabled: bool,
    /// Per client address, for requests without a valid access token.
    pub anonymous_per_minute: u32,
    /// Per signed-in customer.
    pub customer_per_minute: u32,
    /// Per signed-in admin.
    pub admin_per_minute: u32,
    /// Where the counts live.
    pub store: RateLimitStore,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            anonymous_per_minute: 600,
            customer_per_minute: 1200,
            admin_per_minute: 6000,
            store: RateLimitStore::Local,
        }
    }
}

/// Where rate limit counts live.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum RateLimitStore {
    /// In this process: each gateway replica limits on its own.
    #[default]
    Local,
    /// In Redis, shared by every gateway replica. If Redis cannot be reached, each
    /// replica falls back to limiting on its own rather than refusing everyone.
    Redis {
        /// The server, e.g. `redis://redis:6379` (its password never printed).
        url: platform::config::RedisUrl,
        /// Prefix of every key, e.g. `bazaar:ratelimit:`.
        #[serde(default = "rate_limit_prefix")]
        key_prefix: String,
    },
}

fn rate_limit_prefix() -> String {
    "bazaar:ratelimit:".to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exactly_the_limit_passes_in_a_burst_then_one_per_interval() {
        let limiter = Local::default();
        let quota = Quota::per_minute(5);
        let start = Instant::now();
        for n in 0..5 {
            assert_eq!(
                limiter.check("a", quota, start),
                Decision::Allow,
                "request {n}"
            );
        }
        assert_eq!(
            limiter.check("a", quota, start),
            Decision::Deny(Duration::from_secs(12))
        );
        assert_eq!(
            limiter.check("b", quota, start),
            Decision::Allow,
            "others are unaffected"
        );
        let almost = start + Duration::from_secs(12) - Duration::from_millis(1);
        assert!(matches!(
            limiter.check("a", quota, almost),
            Decision::Deny(_)
        ));
        let later = start + Duration::from_secs(12);
        assert_eq!(limiter.check("a", quota, later), Decision::Allow);
        assert!(matches!(
            limiter.check("a", quota, later),
            Decision::Deny(_)
        ));
    }

    #[test]
    fn a_refused_request_does_not_use_up_the_allowance() {
        let limiter = Local::default();
        let quota = Quota::per_minute(1);
        let start = Instant::now();
        assert_eq!(limiter.check("a", quota, start), Decision::Allow);
        for _ in 0..10 {
            assert!(matches!(
                limiter.check("a", quota, start),
                Decision::Deny(_)
            ));
        }
        assert_eq!(
            limiter.check("a", quota, start + Duration::from_secs(60)),
            Decision::Allow
        );
    }

    #[test]
    fn stale_entries_are_swept() {
        let limiter = Local::default();
        let quota = Quota::per_minute(1000);
        let start = Instant::now();
        let clients = SHARDS * SWEEP_AT * 4;
        for n in 0..clients {
            limiter.check(&format!("client-{n}"), quota, start);
        }
        // A minute later every one of those has expired; a new crowd replaces them.
        let later = start + Duration::from_secs(120);
        for n in 0..clients * 2 {
            limiter.check(&format!("other-{n}"), quota, later);
        }
        let stale: usize = limiter
            .shards
            .iter()
            .map(|shard| {
                let shard = shard.lock().expect("unpoisoned");
                shard
                    .entries
                    .keys()
                    .filter(|key| key.starts_with("client-"))
                    .count()
            })
            .sum();
        assert_eq!(stale, 0);
    }
}
