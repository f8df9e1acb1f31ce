//! The compiled route table: which upstream serves a path, and which of its instances
//! gets a request.
//!
//! An upstream's instances are grouped in tracks (releases). A request that names a
//! track gets it (blue/green); otherwise tracks are chosen by weight (canary), by a
//! hash of the signed-in user when there is one, so that a customer stays on one
//! release. Within a track the instance is picked by the power of two choices: two at
//! random (by weight), the one with fewer requests outstanding wins. Instances that
//! fail their health checks or were ejected for failing requests are passed over while
//! others can serve.
//!
//! Instance and breaker state lives in a [`Registry`] that outlives each table, so a
//! reload keeps what the gateway learned about instances it still routes to.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use crate::breaker::Breaker;
use crate::config::{Config, Route, RouteTableConfig, Upstream, UpstreamUrl, under};

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
    fn new(url: UpstreamUrl) -> Self {
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
struct Track {
    name: String,
    /// The sum of its instances' weights: its share of untargeted traffic.
    weight: u64,
    members: Vec<(Arc<Endpoint>, u32)>,
}

/// An upstream service as routed to.
#[derive(Debug)]
pub struct Pool {
    /// Its name.
    pub name: String,
    tracks: Vec<Track>,
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
    fn new(upstream: &str) -> Self {
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

/// A route as compiled.
#[derive(Debug)]
pub struct CompiledRoute {
    /// The prefix it serves.
    pub prefix: String,
    /// The upstream.
    pub pool: Arc<Pool>,
    /// How long each attempt may wait for the upstream's answer.
    pub timeout: Duration,
    /// Further attempts for idempotent requests.
    pub retries: u32,
}

/// Routes and upstreams at one moment; replaced whole on reload.
#[derive(Debug)]
pub struct Table {
    /// Longest prefix first.
    routes: Vec<CompiledRoute>,
    pools: BTreeMap<String, Arc<Pool>>,
}

impl Table {
    /// The route for `path`, and what is left of the path once its prefix is removed.
    pub fn route<'a>(&self, path: &'a str) -> Option<(&CompiledRoute, &'a str)> {
        self.routes
            .iter()
            .find(|route| under(path, &route.prefix))
            .map(|route| {
                let rest = &path[route.prefix.trim_end_matches('/').len()..];
                (route, if rest.is_empty() { "/" } else { rest })
            })
    }

    /// The upstreams, by name.
    pub fn pools(&self) -> impl Iterator<Item = &Arc<Pool>> {
        self.pools.values()
    }
}

/// What the gateway has learned about instances and upstreams, kept across reloads.
#[derive(Debug, Default)]
pub struct Registry {
    endpoints: Mutex<HashMap<UpstreamUrl, Arc<Endpoint>>>,
    breakers: Mutex<HashMap<String, Arc<Breaker>>>,
    bulkheads: Mutex<HashMap<String, (usize, Arc<Semaphore>)>>,
}

impl Registry {
    /// Compiles the routes of `config`, overridden by `file` (a routes file's content).
    /// Refuses a table that routes to an upstream it does not define.
    pub fn compile(
        &self,
        config: &Config,
        file: Option<&RouteTableConfig>,
    ) -> anyhow::Result<Table> {
        let mut upstreams: BTreeMap<String, Upstream> = config.upstreams.clone();
        let mut routes: BTreeMap<String, Route> = BTreeMap::new();
        if let Some(file) = file {
            upstreams.extend(file.upstreams.clone());
        }
        for name in upstreams.keys() {
            let prefix = format!("/api/{name}");
            routes.insert(
                prefix.clone(),
                Route {
                    prefix,
                    upstream: name.clone(),
                    timeout_ms: None,
                    retries: None,
                },
            );
        }
        let explicit = config
            .routes
            .iter()
            .chain(file.into_iter().flat_map(|file| file.routes.iter()));
        for route in explicit {
            anyhow::ensure!(
                route.prefix.starts_with('/'),
                "route prefix {:?} must start with /",
                route.prefix
            );
            routes.insert(route.prefix.trim_end_matches('/').to_owned(), route.clone());
        }

        let pools: BTreeMap<String, Arc<Pool>> = upstreams
            .iter()
            .map(|(name, upstream)| (name.clone(), Arc::new(self.pool(config, name, upstream))))
            .collect();
        let mut compiled = routes
            .into_values()
            .map(|route| {
                let pool = pools.get(&route.upstream).ok_or_else(|| {
                    anyhow::anyhow!(
                        "route {:?} names upstream {:?}, which is not defined",
                        route.prefix,
                        route.upstream
                    )
                })?;
                Ok(CompiledRoute {
                    prefix: route.prefix,
                    pool: Arc::clone(pool),
                    timeout: Duration::from_millis(
                        route.timeout_ms.unwrap_or(config.upstream_timeout_ms),
                    ),
                    retries: route.retries.unwrap_or(config.retry.attempts),
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        compiled.sort_by_key(|route| std::cmp::Reverse(route.prefix.len()));
        Ok(Table {
            routes: compiled,
            pools,
        })
    }

    fn pool(&self, config: &Config, name: &str, upstream: &Upstream) -> Pool {
        let mut tracks: Vec<Track> = Vec::new();
        for instance in &upstream.instances {
            let endpoint = self.endpoint(&instance.url);
            match tracks.iter_mut().find(|track| track.name == instance.track) {
                Some(track) => {
                    track.weight += u64::from(instance.weight);
                    track.members.push((endpoint, instance.weight));
                }
                None => tracks.push(Track {
                    name: instance.track.clone(),
                    weight: u64::from(instance.weight),
                    members: vec![(endpoint, instance.weight)],
                }),
            }
        }
        let breaker = Arc::clone(lock(&self.breakers).entry(name.to_owned()).or_insert_with(
            || {
                Arc::new(Breaker::new(
                    config.breaker.failures,
                    Duration::from_millis(config.breaker.open_ms),
                ))
            },
        ));
        let bulkhead = upstream.max_in_flight.map(|limit| {
            let mut bulkheads = lock(&self.bulkheads);
            match bulkheads.get(name) {
                Some((kept, semaphore)) if *kept == limit => Arc::clone(semaphore),
                _ => {
                    let semaphore = Arc::new(Semaphore::new(limit));
                    bulkheads.insert(name.to_owned(), (limit, Arc::clone(&semaphore)));
                    semaphore
                }
            }
        });
        Pool {
            name: name.to_owned(),
            tracks,
            breaker,
            bulkhead,
            meter: config.metrics.then(|| PoolMeter::new(name)),
        }
    }

    fn endpoint(&self, url: &UpstreamUrl) -> Arc<Endpoint> {
        Arc::clone(
            lock(&self.endpoints)
                .entry(url.clone())
                .or_insert_with(|| Arc::new(Endpoint::new(url.clone()))),
        )
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Instance;

    fn url(port: u16) -> UpstreamUrl {
        UpstreamUrl::from_addr(([127, 0, 0, 1], port).into())
    }

    fn instance(port: u16, weight: u32, track: &str) -> Instance {
        Instance {
            url: url(port),
            weight,
            track: track.to_owned(),
        }
    }

    fn table(upstreams: &[(&str, Vec<Instance>)], routes: Vec<Route>) -> (Registry, Table) {
        let config = Config {
            upstreams: upstreams
                .iter()
                .map(|(name, instances)| {
                    (
                        (*name).to_owned(),
                        Upstream {
                            instances: instances.clone(),
                            max_in_flight: None,
                        },
                    )
                })
                .collect(),
            routes,
            ..Config::default()
        };
        let registry = Registry::default();
        let table = registry.compile(&config, None).expect("valid");
        (registry, table)
    }

    #[test]
    fn the_longest_prefix_wins_and_is_removed() {
        let (_, table) = table(
            &[
                ("orders", vec![instance(1, 1, "stable")]),
                ("reports", vec![instance(2, 1, "stable")]),
            ],
            vec![Route {
                prefix: "/api/orders/reports/".to_owned(),
                upstream: "reports".to_owned(),
                timeout_ms: Some(50),
                retries: Some(0),
            }],
        );
        let (route, rest) = table.route("/api/orders/7").expect("routed");
        assert_eq!((route.pool.name.as_str(), rest), ("orders", "/7"));
        let (route, rest) = table.route("/api/orders/reports/daily").expect("routed");
        assert_eq!((route.pool.name.as_str(), rest), ("reports", "/daily"));
        assert_eq!(route.timeout, Duration::from_millis(50));
        let (route, rest) = table.route("/api/orders").expect("routed");
        assert_eq!((route.pool.name.as_str(), rest), ("orders", "/"));
        assert!(table.route("/api/ordersx").is_none());
        assert!(table.route("/elsewhere").is_none());
    }

    #[test]
    fn a_route_to_an_undefined_upstream_is_refused() {
        let config = Config {
            routes: vec![Route {
                prefix: "/x".to_owned(),
                upstream: "nowhere".to_owned(),
                timeout_ms: None,
                retries: None,
            }],
            ..Config::default()
        };
        let error = Registry::default()
            .compile(&config, None)
            .expect_err("refused");
        assert!(error.to_string().contains("nowhere"), "{error}");
    }

    #[test]
    fn tracks_split_by_weight_and_a_user_stays_on_one() {
        let (_, table) = table(
            &[(
                "orders",
                vec![
                    instance(1, 45, "stable"),
                    instance(2, 45, "stable"),
                    instance(3, 10, "canary"),
                ],
            )],
            Vec::new(),
        );
        let pool = &table.route("/api/orders").expect("routed").0.pool;
        assert!(pool.is_split());
        let now = Instant::now();
        let canary = (0..10_000)
            .filter(|_| pool.choose(None, None, &[], now).url == url(3))
            .count();
        assert!(
            (800..=1200).contains(&canary),
            "{canary} of 10000 to the canary"
        );
        for user in ["u-1", "u-2", "u-3", "u-4"] {
            let first = pool.choose(None, Some(user), &[], now).url == url(3);
            for _ in 0..50 {
                assert_eq!(pool.choose(None, Some(user), &[], now).url == url(3), first);
            }
        }
        assert_eq!(pool.choose(Some("canary"), None, &[], now).url, url(3));
    }

    #[test]
    fn unavailable_and_tried_instances_are_passed_over() {
        let (_, table) = table(
            &[(
                "orders",
                vec![
                    instance(1, 1, "blue"),
                    instance(2, 1, "blue"),
                    instance(3, 0, "green"),
                ],
            )],
            Vec::new(),
        );
        let pool = &table.route("/api/orders").expect("routed").0.pool;
        assert!(!pool.is_split(), "green takes traffic only when asked for");
        let now = Instant::now();
        let first = pool.choose(None, None, &[], now);
        first.record(false, now, 1, Duration::from_secs(10));
        for _ in 0..20 {
            assert_ne!(pool.choose(None, None, &[], now).url, first.url, "ejected");
        }
        let second = pool.choose(None, None, &[], now);
        assert_eq!(
            pool.choose(None, None, &[Arc::clone(&second)], now).url,
            url(3),
            "another release rather than none"
        );
        assert!(
            first.is_available(now + Duration::from_secs(10)),
            "back after the ejection"
        );
    }

    #[test]
    fn the_less_loaded_of_two_wins() {
        let (_, table) = table(
            &[(
                "orders",
                vec![instance(1, 1, "stable"), instance(2, 1, "stable")],
            )],
            Vec::new(),
        );
        let pool = &table.route("/api/orders").expect("routed").0.pool;
        let now = Instant::now();
        let busy = pool.choose(None, None, &[], now);
        let _guards: Vec<InFlight> = (0..3).map(|_| busy.begin()).collect();
        for _ in 0..20 {
            assert_ne!(pool.choose(None, None, &[], now).url, busy.url);
        }
    }

    #[test]
    fn state_survives_a_reload() {
        let (registry, table) = table(&[("orders", vec![instance(1, 1, "stable")])], Vec::new());
        let endpoint = table.route("/api/orders").expect("routed").0.pool.choose(
            None,
            None,
            &[],
            Instant::now(),
        );
        endpoint.set_healthy(false);
        let config = Config {
            upstreams: [("orders".to_owned(), Upstream::single(url(1)))].into(),
            ..Config::default()
        };
        let reloaded = registry.compile(&config, None).expect("valid");
        let again = reloaded
            .route("/api/orders")
            .expect("routed")
            .0
            .pool
            .endpoints()
            .next()
            .cloned()
            .expect("one");
        assert!(Arc::ptr_eq(&endpoint, &again));
    }
}
