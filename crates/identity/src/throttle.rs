//! Brute-force throttling of sign-in, per client network and per account.
//!
//! Every attempt from a network counts against that network (a token bucket: a burst,
//! refilled over time); an IPv6 client is counted by its /64, which one subscriber
//! usually holds whole, so rotating addresses within it buys nothing. Only failed
//! passwords count against an account, in two windows: per account and network, which
//! stops a guesser quickly without locking the owner out from elsewhere; and per
//! account overall, with a higher limit, which slows guessing spread over many networks
//! down to one attempt every `account_slowdown_secs` rather than locking the account:
//! a lock would let anyone shut any owner out. Networks the owner signed in from are
//! spared the overall limit altogether (they still have their own), so the owner keeps
//! signing in from home while a botnet guesses.
//!
//! The counts live in the process: replicas count apart, and a restart forgets them
//! (and the owner's known networks, until the next successful sign-in).

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};

use crate::config::Config;

/// The limiters.
pub struct Throttle {
    networks: DefaultKeyedRateLimiter<IpAddr>,
    failures_here: FailureWindow<(String, IpAddr)>,
    failures_anywhere: FailureWindow<String>,
    /// One attempt per this long, account-wide, once the overall limit is reached.
    slowdown: Duration,
    /// When each slowed-down account was last let through.
    slowed: Mutex<HashMap<String, Instant>>,
    /// The networks each account signed in from lately.
    known: Mutex<HashMap<String, Vec<(IpAddr, Instant)>>>,
}

/// How long a network stays known after a successful sign-in from it.
const KNOWN_FOR: Duration = Duration::from_secs(30 * 24 * 3600);
/// The most networks remembered per account; the oldest goes first.
const KNOWN_PER_ACCOUNT: usize = 8;
/// The most accounts whose networks or slow-down are remembered.
const ACCOUNTS_REMEMBERED: usize = 100_000;

impl Throttle {
    /// Limiters sized by `config`.
    pub fn new(config: &Config) -> Self {
        let refill =
            Duration::from_millis(config.address_attempt_refill_ms).max(Duration::from_millis(1));
        let quota = Quota::with_period(refill)
            .expect("a positive period")
            .allow_burst(NonZeroU32::new(config.address_attempts_burst).unwrap_or(NonZeroU32::MIN));
        let window = Duration::from_secs(config.account_failure_window_secs);
        Self {
            networks: DefaultKeyedRateLimiter::keyed(quota),
            failures_here: FailureWindow::new(config.account_failures_per_network, window),
            failures_anywhere: FailureWindow::new(config.account_failures_overall, window),
            slowdown: Duration::from_secs(config.account_slowdown_secs.max(1)),
            slowed: Mutex::new(HashMap::new()),
            known: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one attempt for `address`'s network; on refusal, how long to wait.
    pub fn attempt(&self, address: IpAddr) -> Result<(), Duration> {
        let network = network(address);
        let now = DefaultClock::default().now();
        let outcome = self
            .networks
            .check_key(&network)
            .map_err(|not_until| not_until.wait_time_from(now));
        if outcome.is_ok() && self.networks.len() > 10_000 {
            // Forget networks whose bucket has refilled, so memory follows the active ones.
            self.networks.retain_recent();
        }
        outcome
    }

    /// Whether `account` may try a password from `address` now; failures are counted
    /// with [`Throttle::failed`].
    pub fn account_open(&self, account: &str, address: IpAddr) -> Result<(), Duration> {
        let network = network(address);
        self.failures_here.check(&(account.to_owned(), network))?;
        if self.is_known(account, network)
            || self.failures_anywhere.check(&account.to_owned()).is_ok()
        {
            return Ok(());
        }
        // Over the overall limit, from a network the owner has not used: one attempt
        // per slow-down interval for the whole account.
        let mut slowed = lock(&self.slowed);
        if slowed.len() >= ACCOUNTS_REMEMBERED {
            let slowdown = self.slowdown;
            slowed.retain(|_, at| at.elapsed() < slowdown);
        }
        match slowed.get(account) {
            Some(at) if at.elapsed() < self.slowdown => {
                Err(self.slowdown.saturating_sub(at.elapsed()))
            }
            _ => {
                slowed.insert(account.to_owned(), Instant::now());
                Ok(())
            }
        }
    }

    /// Counts a wrong password for `account` from `address`.
    pub fn failed(&self, account: &str, address: IpAddr) {
        self.failures_here
            .record(&(account.to_owned(), network(address)));
        self.failures_anywhere.record(&account.to_owned());
    }

    /// Counts a wrong current password given by a signed-in caller (changing the
    /// password): against the caller's network only, so that a client misusing its
    /// own session cannot slow the account down for its owner.
    pub fn failed_in_session(&self, account: &str, address: IpAddr) {
        self.failures_here
            .record(&(account.to_owned(), network(address)));
    }

    /// Remembers that `account` signed in from `address`: its network is spared the
    /// overall limit from now on, and its own failures are forgiven.
    pub fn succeeded(&self, account: &str, address: IpAddr) {
        let network = network(address);
        self.failures_here.forget(&(account.to_owned(), network));
        let mut known = lock(&self.known);
        if known.len() >= ACCOUNTS_REMEMBERED && !known.contains_key(account) {
            known.retain(|_, networks| {
                networks.retain(|(_, at)| at.elapsed() < KNOWN_FOR);
                !networks.is_empty()
            });
            if known.len() >= ACCOUNTS_REMEMBERED {
                return;
            }
        }
        let networks = known.entry(account.to_owned()).or_default();
        networks.retain(|(seen, at)| *seen != network && at.elapsed() < KNOWN_FOR);
        if networks.len() >= KNOWN_PER_ACCOUNT {
            networks.remove(0);
        }
        networks.push((network, Instant::now()));
    }

    fn is_known(&self, account: &str, network: IpAddr) -> bool {
        lock(&self.known).get(account).is_some_and(|networks| {
            networks
                .iter()
                .any(|(seen, at)| *seen == network && at.elapsed() < KNOWN_FOR)
        })
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The network an address is counted by: itself for IPv4, its /64 for IPv6.
fn network(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V4(_) => address,
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1_u128 << 64) - 1);
            IpAddr::V6(bits.into())
        }
    }
}

/// At most `limit` failures per key within `window` (counted from the first).
struct FailureWindow<K> {
    limit: u32,
    window: Duration,
    counts: Mutex<HashMap<K, (u32, Instant)>>,
}

impl<K: Eq + Hash + Clone> FailureWindow<K> {
    fn new(limit: u32, window: Duration) -> Self {
        Self {
            limit: limit.max(1),
            window,
            counts: Mutex::new(HashMap::new()),
        }
    }

    fn check(&self, key: &K) -> Result<(), Duration> {
        let counts = self
            .counts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match counts.get(key) {
            Some((failures, since)) if *failures >= self.limit && since.elapsed() < self.window => {
                Err(self.window.saturating_sub(since.elapsed()))
            }
            _ => Ok(()),
        }
    }

    fn forget(&self, key: &K) {
        lock(&self.counts).remove(key);
    }

    fn record(&self, key: &K) {
        let mut counts = self
            .counts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if counts.len() > 100_000 {
            let window = self.window;
            counts.retain(|_, (_, since)| since.elapsed() < window);
        }
        let entry = counts.entry(key.clone()).or_insert((0, Instant::now()));
        if entry.1.elapsed() >= self.window {
            *entry = (0, Instant::now());
        }
        entry.0 = entry.0.saturating_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(per_network: u32, overall: u32) -> Config {
        Config {
            account_failures_per_network: per_network,
            account_failures_overall: overall,
            account_failure_window_secs: 600,
            ..Config::default()
        }
    }

    #[test]
    fn failures_lock_an_account_for_that_network_only() {
        let throttle = Throttle::new(&config(3, 100));
        let attacker = IpAddr::from([10, 0, 0, 1]);
        let owner = IpAddr::from([192, 0, 2, 7]);
        for _ in 0..3 {
            assert!(throttle.account_open("ada@example.com", attacker).is_ok());
            throttle.failed("ada@example.com", attacker);
        }
        let wait = throttle
            .account_open("ada@example.com", attacker)
            .unwrap_err();
        assert!(wait > Duration::from_secs(500), "{wait:?}");
        assert!(
            throttle.account_open("ada@example.com", owner).is_ok(),
            "the owner is not locked out"
        );
        assert!(throttle.account_open("bob@example.com", attacker).is_ok());
    }

    #[test]
    fn failures_spread_over_networks_slow_the_account_down_without_locking_it() {
        let throttle = Throttle::new(&config(3, 5));
        for n in 0..5 {
            throttle.failed("ada@example.com", IpAddr::from([10, 0, 0, n]));
        }
        let elsewhere = IpAddr::from([10, 0, 0, 99]);
        assert!(
            throttle.account_open("ada@example.com", elsewhere).is_ok(),
            "one attempt per slow-down interval still goes through"
        );
        let wait = throttle
            .account_open("ada@example.com", IpAddr::from([10, 0, 0, 98]))
            .expect_err("the next waits");
        assert!(wait <= Duration::from_secs(10), "{wait:?}");
    }

    #[test]
    fn the_owners_known_network_is_spared_the_overall_limit() {
        let throttle = Throttle::new(&config(3, 5));
        let home = IpAddr::from([192, 0, 2, 7]);
        throttle.succeeded("ada@example.com", home);
        for n in 0..50 {
            throttle.failed("ada@example.com", IpAddr::from([10, 0, 1, n]));
        }
        let _ = throttle.account_open("ada@example.com", IpAddr::from([10, 0, 2, 1]));
        for _ in 0..3 {
            assert!(throttle.account_open("ada@example.com", home).is_ok());
        }
        assert!(
            throttle
                .account_open("ada@example.com", IpAddr::from([10, 0, 2, 2]))
                .is_err(),
            "elsewhere it is slowed down"
        );
    }

    #[test]
    fn a_session_misused_as_a_password_oracle_counts_against_its_network_only() {
        let throttle = Throttle::new(&config(3, 5));
        let fuzzer = IpAddr::from([10, 0, 0, 1]);
        for _ in 0..20 {
            throttle.failed_in_session("root@example.com", fuzzer);
        }
        assert!(throttle.account_open("root@example.com", fuzzer).is_err());
        assert!(
            throttle
                .account_open("root@example.com", IpAddr::from([192, 0, 2, 1]))
                .is_ok(),
            "the admin signs in from elsewhere"
        );
    }

    #[test]
    fn a_network_is_throttled_after_its_burst() {
        let throttle = Throttle::new(&Config {
            address_attempts_burst: 2,
            address_attempt_refill_ms: 60_000,
            ..Config::default()
        });
        let address = IpAddr::from([10, 0, 0, 1]);
        assert!(throttle.attempt(address).is_ok());
        assert!(throttle.attempt(address).is_ok());
        assert!(throttle.attempt(address).is_err());
    }

    #[test]
    fn an_ipv6_subscriber_is_counted_by_its_slash_64() {
        let throttle = Throttle::new(&Config {
            address_attempts_burst: 2,
            address_attempt_refill_ms: 60_000,
            ..Config::default()
        });
        let first: IpAddr = "2001:db8:1:2::1".parse().expect("ip");
        let second: IpAddr = "2001:db8:1:2:ffff::9".parse().expect("ip");
        let elsewhere: IpAddr = "2001:db8:1:3::1".parse().expect("ip");
        assert!(throttle.attempt(first).is_ok());
        assert!(throttle.attempt(second).is_ok());
        assert!(throttle.attempt(first).is_err(), "the same /64");
        assert!(throttle.attempt(elsewhere).is_ok());
    }
}
