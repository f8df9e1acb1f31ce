//! When a failed request may be sent again, and how many retries the gateway can afford.

use std::sync::Mutex;
use std::time::Instant;

use http::{HeaderMap, Method};
use serde::{Deserialize, Serialize};

/// Whether sending the request twice has the effect of sending it once: the methods
/// HTTP defines as idempotent, and a POST carrying an `Idempotency-Key` (which the
/// services deduplicate). A POST without one is never retried: it may have been
/// processed before the failure was seen.
pub fn is_idempotent(method: &Method, headers: &HeaderMap) -> bool {
    match *method {
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE => true,
        Method::POST => headers.contains_key("idempotency-key"),
        _ => false,
    }
}

/// A token bucket for retries: every request adds `percent / 100` of a token, every
/// retry takes one, and a floor of `min_per_second` tokens a second keeps a quiet
/// gateway able to retry. Under a wave of failures retries stay a bounded share of the
/// traffic instead of multiplying it. Tokens are counted in thousandths, exactly.
#[derive(Debug)]
pub struct Budget {
    per_request: u64,
    min_per_second: u64,
    /// At most this many (thousandths of) tokens are saved up.
    cap: u64,
    inner: Mutex<Tokens>,
}

#[derive(Debug)]
struct Tokens {
    balance: u64,
    refilled: Instant,
}

const TOKEN: u64 = 1000;

impl Budget {
    /// A budget of `percent` % of requests, and at least `min_per_second`.
    pub fn new(percent: u32, min_per_second: u32) -> Self {
        let min_per_second = u64::from(min_per_second) * TOKEN;
        Self {
            per_request: u64::from(percent) * TOKEN / 100,
            min_per_second,
            cap: min_per_second.max(10 * TOKEN),
            inner: Mutex::new(Tokens {
                balance: min_per_second,
                refilled: Instant::now(),
            }),
        }
    }

    /// Counts a request (not a retry) towards the budget.
    pub fn deposit(&self, now: Instant) {
        let mut tokens = self.refill(now);
        tokens.balance = (tokens.balance + self.per_request).min(self.cap);
    }

    /// Takes a token for one retry, if there is one.
    pub fn withdraw(&self, now: Instant) -> bool {
        let mut tokens = self.refill(now);
        if tokens.balance >= TOKEN {
            tokens.balance -= TOKEN;
            true
        } else {
            false
        }
    }

    fn refill(&self, now: Instant) -> std::sync::MutexGuard<'_, Tokens> {
        let mut tokens = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let elapsed = now.saturating_duration_since(tokens.refilled);
        let earned = u64::try_from(elapsed.as_micros())
            .unwrap_or(u64::MAX)
            .saturating_mul(self.min_per_second)
            / 1_000_000;
        if earned > 0 {
            tokens.balance = tokens.balance.saturating_add(earned).min(self.cap);
            tokens.refilled = now;
        }
        tokens
    }
}

/// Retries of failed requests that are safe to send again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// Further attempts after a failure, unless the route says otherwise.
    pub attempts: u32,
    /// Retries allowed as a percentage of recent requests, so that retries cannot
    /// multiply the load on a struggling upstream.
    pub budget_percent: u32,
    /// Retries per second allowed whatever the traffic, so a quiet gateway still
    /// retries.
    pub min_per_second: u32,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            attempts: 1,
            budget_percent: 20,
            min_per_second: 10,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn only_idempotent_requests_are_retried() {
        let none = HeaderMap::new();
        let mut keyed = HeaderMap::new();
        keyed.insert("idempotency-key", "k-1".parse().expect("a header"));
        assert!(is_idempotent(&Method::GET, &none));
        assert!(is_idempotent(&Method::DELETE, &none));
        assert!(!is_idempotent(&Method::POST, &none));
        assert!(is_idempotent(&Method::POST, &keyed));
        assert!(!is_idempotent(&Method::PATCH, &keyed));
    }

    #[test]
    fn retries_are_a_bounded_share_of_requests() {
        let budget = Budget::new(20, 0);
        let now = Instant::now();
        for _ in 0..100 {
            budget.deposit(now);
        }
        let retries = (0..100).filter(|_| budget.withdraw(now)).count();
        assert_eq!(retries, 10, "20 tokens earned, capped at 10 saved");

        let budget = Budget::new(20, 0);
        let mut retries = 0;
        for _ in 0..1000 {
            budget.deposit(now);
            if budget.withdraw(now) {
                retries += 1;
            }
        }
        assert_eq!(retries, 200, "one retry per five requests");
    }

    #[test]
    fn a_quiet_gateway_can_still_retry() {
        let budget = Budget::new(20, 10);
        let start = Instant::now();
        let spent = (0..20).filter(|_| budget.withdraw(start)).count();
        assert_eq!(spent, 10);
        assert!(!budget.withdraw(start));
        assert!(budget.withdraw(start + Duration::from_millis(100)));
    }
}
