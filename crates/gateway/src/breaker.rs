//! A circuit breaker per upstream: after a run of failures the gateway stops sending
//! requests to an upstream for a while, answering 503 at once instead of making every
//! client wait for a timeout and piling load onto a service that is already failing.
//!
//! Closed: requests flow; consecutive failures are counted. Open: requests are refused
//! until the cool-down ends. Half-open: one trial request goes through; its success
//! closes the circuit, its failure opens it again.

use serde::{Deserialize, Serialize};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The state, as a number for the `gateway_breaker_state` gauge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Requests flow.
    Closed = 0,
    /// Requests are refused.
    Open = 1,
    /// One trial request is in flight.
    HalfOpen = 2,
}

/// One upstream's breaker. Time is passed in, so the state machine is tested without
/// waiting.
#[derive(Debug)]
pub struct Breaker {
    threshold: u32,
    cool_down: Duration,
    inner: Mutex<Inner>,
}

#[derive(Debug)]
enum Inner {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen,
}

/// Whether a request may go to the upstream.
#[derive(Debug, PartialEq, Eq)]
pub enum Admission {
    /// Send it; report the outcome with [`Breaker::record`].
    Allowed,
    /// Send it as the half-open trial; report the outcome with [`Breaker::record`].
    Trial,
    /// Refuse it; the circuit may let a trial through after this long.
    Refused(Duration),
}

impl Breaker {
    /// A closed breaker that opens after `threshold` consecutive failures for
    /// `cool_down`.
    pub fn new(threshold: u32, cool_down: Duration) -> Self {
        Self {
            threshold: threshold.max(1),
            cool_down,
            inner: Mutex::new(Inner::Closed { failures: 0 }),
        }
    }

    /// Asks to send a request at `now`.
    pub fn admit(&self, now: Instant) -> Admission {
        let mut inner = self.lock();
        match *inner {
            Inner::Closed { .. } => Admission::Allowed,
            Inner::Open { until } if now >= until => {
                *inner = Inner::HalfOpen;
                Admission::Trial
            }
            Inner::Open { until } => Admission::Refused(until - now),
            // The trial's outcome decides; until then, callers wait a little.
            Inner::HalfOpen => Admission::Refused(Duration::from_secs(1)),
        }
    }

    /// Reports how an admitted request went, returning the state after it.
    pub fn record(&self, now: Instant, succeeded: bool) -> State {
        let mut inner = self.lock();
        *inner = match (&*inner, succeeded) {
            (_, true) => Inner::Closed { failures: 0 },
            (Inner::Closed { failures }, false) if failures + 1 < self.threshold => Inner::Closed {
                failures: failures + 1,
            },
            // A request admitted before the circuit opened may fail after: the circuit
            // is already open, and its cool-down is not pushed back.
            (Inner::Open { until }, false) => Inner::Open { until: *until },
            (_, false) => Inner::Open {
                until: now + self.cool_down,
            },
        };
        state_of(&inner)
    }

    /// Gives back an admission whose request was never sent (refused by a later
    /// check), so a trial slot is not lost.
    pub fn release(&self, admission: &Admission) {
        if *admission == Admission::Trial {
            let mut inner = self.lock();
            if matches!(*inner, Inner::HalfOpen) {
                *inner = Inner::Open {
                    until: Instant::now(),
                };
            }
        }
    }

    /// The current state.
    pub fn state(&self) -> State {
        state_of(&self.lock())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // The state is a plain value: a panic elsewhere cannot leave it half-written.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn state_of(inner: &Inner) -> State {
    match inner {
        Inner::Closed { .. } => State::Closed,
        Inner::Open { .. } => State::Open,
        Inner::HalfOpen => State::HalfOpen,
    }
}

/// When an upstream's circuit opens and for how long.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BreakerConfig {
    /// Consecutive failures (no connection, timeout, 500, 502, 503, 504) that open it.
    pub failures: u32,
    /// How long it stays open before one trial request is let through.
    pub open_ms: u64,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            failures: 5,
            open_ms: 5_000,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_consecutive_failures_half_opens_after_the_cool_down_and_closes() {
        let breaker = Breaker::new(3, Duration::from_secs(5));
        let start = Instant::now();
        for _ in 0..2 {
            assert_eq!(breaker.admit(start), Admission::Allowed);
            assert_eq!(breaker.record(start, false), State::Closed);
        }
        // A success resets the count.
        assert_eq!(breaker.record(start, true), State::Closed);
        for _ in 0..2 {
            breaker.record(start, false);
        }
        assert_eq!(breaker.record(start, false), State::Open);
        assert_eq!(
            breaker.admit(start + Duration::from_secs(2)),
            Admission::Refused(Duration::from_secs(3))
        );

        let later = start + Duration::from_secs(5);
        assert_eq!(breaker.admit(later), Admission::Trial);
        assert_eq!(breaker.state(), State::HalfOpen);
        assert!(
            matches!(breaker.admit(later), Admission::Refused(_)),
            "one trial at a time"
        );
        assert_eq!(
            breaker.record(later, false),
            State::Open,
            "the trial failed"
        );
        assert!(matches!(
            breaker.admit(later + Duration::from_secs(1)),
            Admission::Refused(_)
        ));

        let again = later + Duration::from_secs(5);
        assert_eq!(breaker.admit(again), Admission::Trial);
        assert_eq!(breaker.record(again, true), State::Closed);
        assert_eq!(breaker.admit(again), Admission::Allowed);
    }

    #[test]
    fn a_released_trial_lets_the_next_request_try() {
        let breaker = Breaker::new(1, Duration::from_secs(5));
        let start = Instant::now();
        breaker.record(start, false);
        let later = start + Duration::from_secs(6);
        let trial = breaker.admit(later);
        assert_eq!(trial, Admission::Trial);
        breaker.release(&trial);
        assert_eq!(breaker.admit(later), Admission::Trial);
    }

    #[test]
    fn late_failures_do_not_extend_the_cool_down() {
        let breaker = Breaker::new(1, Duration::from_secs(5));
        let start = Instant::now();
        breaker.record(start, false);
        breaker.record(start + Duration::from_secs(4), false);
        assert_eq!(
            breaker.admit(start + Duration::from_secs(5)),
            Admission::Trial
        );
    }
}
