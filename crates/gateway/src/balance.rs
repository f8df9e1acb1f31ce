//! Picking the instance of an upstream that gets a request.
//!
//! An upstream's instances are grouped in tracks (releases). A request that names a
//! track gets it (blue/green); otherwise tracks are chosen by weight (canary), by a
//! hash of the signed-in user when there is one, so that a customer stays on one
//! release. Within a track the instance is picked by the power of two choices: two at
//! random (by weight), the one with fewer requests outstanding wins. Instances that
//! fail their health checks ([`HealthConfig`]) or were ejected for failing requests are
//! passed over while others can serve.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

use crate::breaker::Breaker;
use crate::config::UpstreamUrl;

/// One instance of an upstream, and what the gateway knows of it.
#[derive(Debug)]
pub struct Endpoint {
    /// Where it is.
    pub url: UpstreamUrl,
    outstanding: AtomicUsize,
    /// The last active health check's verdict (true until one fails).
    healthy: AtomicBool,
    consecutive_failures: AtomicU32,
    /// Milliseconds since [`EPOCH`] until which it gets no traffic.
    ejected_until: AtomicU64,
}

/// The reference point of ejection times.
static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);

fn millis_since_epoch(at: Instant) -> u64 {
    u64::try_from(at.saturating_duration_since(*EPOCH).as_millis()).unwrap_or(u64::MAX)
}

impl Endpoint {
    pub(crate) fn new(url: UpstreamUrl) -> Self {
        Self {
            url,
            outstanding: AtomicUsize::new(0),
            healthy: AtomicBool::new(true),
            consecutive_failures: AtomicU32::new(0),
            ejected_until: AtomicU64::new(0),
        }
    }

    /// Whether it should get traffic at `now`.
    pub fn is_available(&self, now: Instant) -> bool {
        self.healthy.load(Ordering::Relaxed)
            && self.ejected_until.load(Ordering::Relaxed) <= millis_since_epoch(now)
    }

    /// Requests sent to it and not yet answered.
    pub fn outstanding(&self) -> usize {
        self.outstanding.load(Ordering::Relaxed)
    }

    /// Counts a request in flight until the guard is dropped.
    pub fn begin(self: &Arc<Self>) -> InFlight {
        self.outstanding.fetch_add(1, Ordering::Relaxed);
        InFlight(Arc::clone(self))
    }

    /// Records an active health check's verdict; returns whether it changed.
    pub fn set_healthy(&self, healthy: bool) -> bool {
        self.healthy.swap(healthy, Ordering::Relaxed) != healthy
    }

    /// Records how a request went: `eject_after` failures in a row eject the instance
    /// for `eject_for`. Returns true when this failure ejected it.
    pub fn record(
        &self,
        succeeded: bool,
        now: Instant,
        eject_after: u32,
        eject_for: Duration,
    ) -> bool {
        if succeeded {
            self.consecutive_failures.store(0, Ordering::Relaxed);
            return false;
        }
        let failures = self.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
        if failures >= eject_after.max(1) {
            self.consecutive_failures.store(0, Ordering::Relaxed);
            let until = millis_since_epoch(now + eject_for);
            self.ejected_until.store(until, Ordering::Relaxed);
            return true;
        }
        false
    }
}

/// A request in flight to an endpoint.
#[derive(Debug)]
pub struct InFlight(Arc<Endpoint>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.outstanding.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One release of an upstream and its instances.
#[derive(Debug)]
pub(crate) struct Track {
    pub(crate) name: String,
    /// The sum of its instances' weights: its share of untargeted traffic.
    pub(crate) weight: u64,
    pub(crate) members: Vec<(Arc<Endpoint>, u32)>,
    /// Requests sent to it since the route table that holds it was loaded: what the
    /// console compares with its weight.
    pub(crate) chosen: AtomicU64,
}

impl Track {
    pub(crate) fn new(name: String) -> Self {
        Self {
            name,
            weight: 0,
            members: Vec::new(),
            chosen: AtomicU64::new(0),
        }
    }
}

/// An upstream service as routed to.
#[derive(Debug)]
pub struct Pool {
    /// Its name.
    pub name: String,
    pub(crate) tracks: Vec<Track>,
    /// Its circuit breaker.
    pub breaker: Arc<Breaker>,
    /// Its own limit on requests in flight, if it has one.
    pub bulkhead: Option<Arc<Semaphore>>,
    /// Its metrics, when the gateway records them.
    pub meter: Option<PoolMeter>,
}

/// An upstream's metrics, registered once per table rather than looked up by name on
/// every request.
#[derive(Debug)]
pub struct PoolMeter {
    outcomes: [(&'static str, metrics::Counter); 4],
    duration: metrics::Histogram,
    breaker: metrics::Gauge,
    /// Retries sent.
    pub retries: metrics::Counter,
}

impl PoolMeter {
    pub(crate) fn new(upstream: &str) -> Self {
        let counter = |outcome: &'static str| {
            (
                outcome,
                metrics::counter!("gateway_upstream_requests_total", "upstream" => upstream.to_owned(), "outcome" => outcome),
            )
        };
        Self {
            outcomes: [
                counter("answered"),
                counter("failed"),
                counter("unreachable"),
                counter("timeout"),
            ],
            duration: metrics::histogram!("gateway_upstream_duration_seconds", "upstream" => upstream.to_owned()),
            breaker: metrics::gauge!("gateway_breaker_state", "upstream" => upstream.to_owned()),
            retries: metrics::counter!("gateway_retries_total", "upstream" => upstream.to_owned()),
        }
    }

    /// Records one attempt: how it ended, how long it took, and the breaker after it.
    pub fn observe(&self, outcome: &str, breaker: u8, took: Duration) {
        if let Some((_, counter)) = self.outcomes.iter().find(|(name, _)| *name == outcome) {
            counter.increment(1);
        }
        self.duration.record(took.as_secs_f64());
        self.breaker.set(f64::from(breaker));
    }
}

impl Pool {
    /// Whether untargeted traffic is split between tracks, so that the choice depends
    /// on who is asking.
    pub fn is_split(&self) -> bool {
        self.tracks.iter().filter(|track| track.weight > 0).count() > 1
    }

    /// Every instance.
    pub fn endpoints(&self) -> impl Iterator<Item = &Arc<Endpoint>> {
        self.tracks
            .iter()
            .flat_map(|track| track.members.iter().map(|(endpoint, _)| endpoint))
    }

    /// The instance for a request: on the track it asked for, or on one chosen by
    /// weight (by `sticky`'s hash, or at random without one); never one in `tried`
    /// while another exists.
    pub fn choose(
        &self,
        asked: Option<&str>,
        sticky: Option<&str>,
        tried: &[Arc<Endpoint>],
        now: Instant,
    ) -> Arc<Endpoint> {
        let track = asked
            .and_then(|name| self.tracks.iter().find(|track| track.name == name))
            .unwrap_or_else(|| self.weighted_track(sticky));
        track.chosen.fetch_add(1, Ordering::Relaxed);
        let fresh =
            |endpoint: &Arc<Endpoint>| !tried.iter().any(|seen| Arc::ptr_eq(seen, endpoint));
        let on_track = |ready: bool| -> Vec<(Arc<Endpoint>, u32)> {
            track
                .members
                .iter()
                .filter(|(endpoint, _)| fresh(endpoint) && (!ready || endpoint.is_available(now)))
                .cloned()
                .collect()
        };
        let mut candidates = on_track(true);
        if candidates.is_empty() {
            // The track has no instance fit to serve: another release serves rather
            // than nobody.
            candidates = self
                .tracks
                .iter()
                .flat_map(|track| track.members.iter())
                .filter(|(endpoint, _)| fresh(endpoint) && endpoint.is_available(now))
                .cloned()
                .collect();
        }
        if candidates.is_empty() {
            // Nothing looks healthy: trying beats refusing outright.
            candidates = on_track(false);
        }
        if candidates.is_empty() {
            candidates.clone_from(&track.members);
        }
        two_choices(&candidates)
    }

    fn weighted_track(&self, sticky: Option<&str>) -> &Track {
        let total: u64 = self.tracks.iter().map(|track| track.weight).sum();
        if total == 0 {
            return &self.tracks[0];
        }
        let mut point = match sticky {
            Some(key) => fnv1a(key.as_bytes()) % total,
            None => fastrand::u64(0..total),
        };
        for track in &self.tracks {
            if point < track.weight {
                return track;
            }
            point -= track.weight;
        }
        &self.tracks[0]
    }
}

/// A stable hash, the same in every gateway replica and every release.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The power of two choices: two distinct candidates drawn by weight, the less loaded
/// one wins. Weights of 0 count as 1 here: the candidates are already what may serve.
fn two_choices(candidates: &[(Arc<Endpoint>, u32)]) -> Arc<Endpoint> {
    let draw = |skip: Option<usize>| -> usize {
        let weight = |index: usize| -> u64 {
            if Some(index) == skip {
                0
            } else {
                u64::from(candidates[index].1.max(1))
            }
        };
        let total: u64 = (0..candidates.len()).map(weight).sum();
        let mut point = fastrand::u64(0..total.max(1));
        for index in 0..candidates.len() {
            if point < weight(index) {
                return index;
            }
            point -= weight(index);
        }
        0
    };
    let first = draw(None);
    if candidates.len() == 1 {
        return Arc::clone(&candidates[0].0);
    }
    let second = draw(Some(first));
    let (a, b) = (&candidates[first].0, &candidates[second].0);
    Arc::clone(if b.outstanding() < a.outstanding() {
        b
    } else {
        a
    })
}

/// How instances are checked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthConfig {
    /// How often each instance's `path` is asked; 0 turns active checks off.
    pub interval_ms: u64,
    /// The path that answers 200 when an instance can serve.
    pub path: String,
    /// Consecutive failed requests after which an instance is ejected.
    pub eject_after: u32,
    /// How long an ejected instance gets no traffic.
    pub eject_ms: u64,
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            interval_ms: 2_000,
            path: "/health/ready".to_owned(),
            eject_after: 3,
            eject_ms: 10_000,
        }
    }
}
