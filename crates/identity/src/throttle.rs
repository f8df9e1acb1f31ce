//! Brute-force throttling of sign-in, per account and per client address.
//!
//! In-process token buckets (GCRA): each account and each address has a burst of
//! attempts that refills over time. Keys that have refilled completely are forgotten
//! now and then, so memory follows the active attackers, not every address ever seen.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};

use crate::config::Config;

/// The limiters.
pub struct Throttle {
    accounts: DefaultKeyedRateLimiter<String>,
    addresses: DefaultKeyedRateLimiter<IpAddr>,
    checks: AtomicU64,
}

impl Throttle {
    /// Limiters sized by `config`.
    pub fn new(config: &Config) -> Self {
        let quota = |burst: u32, refill: Duration| {
            Quota::with_period(refill.max(Duration::from_millis(1)))
                .expect("a positive period")
                .allow_burst(NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN))
        };
        Self {
            accounts: DefaultKeyedRateLimiter::keyed(quota(
                config.account_attempts_burst,
                Duration::from_secs(config.account_attempt_refill_secs),
            )),
            addresses: DefaultKeyedRateLimiter::keyed(quota(
                config.address_attempts_burst,
                Duration::from_millis(config.address_attempt_refill_ms),
            )),
            checks: AtomicU64::new(0),
        }
    }

    /// Takes one attempt for `address` and, if given, `account`; on refusal, how long
    /// until the next attempt is allowed.
    pub fn attempt(&self, address: IpAddr, account: Option<&str>) -> Result<(), Duration> {
        if self.checks.fetch_add(1, Ordering::Relaxed) % 1024 == 1023 {
            self.accounts.retain_recent();
            self.addresses.retain_recent();
        }
        let now = DefaultClock::default().now();
        self.addresses
            .check_key(&address)
            .map_err(|not_until| not_until.wait_time_from(now))?;
        if let Some(account) = account {
            self.accounts
                .check_key(&account.to_owned())
                .map_err(|not_until| not_until.wait_time_from(now))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_account_is_throttled_after_its_burst_whatever_the_address() {
        let config = Config {
            account_attempts_burst: 3,
            account_attempt_refill_secs: 60,
            ..Config::default()
        };
        let throttle = Throttle::new(&config);
        let addresses: Vec<IpAddr> = (1..=4).map(|n| IpAddr::from([10, 0, 0, n])).collect();
        for address in &addresses[..3] {
            assert!(throttle.attempt(*address, Some("ada@example.com")).is_ok());
        }
        let wait = throttle
            .attempt(addresses[3], Some("ada@example.com"))
            .unwrap_err();
        assert!(wait > Duration::from_secs(50), "{wait:?}");
        assert!(
            throttle
                .attempt(addresses[3], Some("bob@example.com"))
                .is_ok()
        );
    }

    #[test]
    fn an_address_is_throttled_after_its_burst_whatever_the_account() {
        let config = Config {
            address_attempts_burst: 2,
            address_attempt_refill_ms: 60_000,
            ..Config::default()
        };
        let throttle = Throttle::new(&config);
        let address = IpAddr::from([10, 0, 0, 1]);
        assert!(throttle.attempt(address, Some("a@example.com")).is_ok());
        assert!(throttle.attempt(address, Some("b@example.com")).is_ok());
        assert!(throttle.attempt(address, Some("c@example.com")).is_err());
    }
}
