//! The compiled route table: which upstream serves a path, by the longest prefix; each
//! upstream a [`Pool`] that picks the instance ([`crate::balance`]).
//!
//! Instance and breaker state lives in a [`Registry`] that outlives each table, so a
//! reload keeps what the gateway learned about instances it still routes to.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Semaphore;

use crate::balance::{Endpoint, Pool, PoolMeter, Track};
use crate::breaker::Breaker;
use crate::config::{Config, Route, RouteTableConfig, Upstream, UpstreamUrl, under};

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
        // The site serves pages, never `/api`: an unknown API path is the gateway's 404.
        self.routes
            .iter()
            .find(|route| {
                under(path, &route.prefix) && !(route.prefix == "/" && under(path, "/api"))
            })
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
        // The site (the web shop) has no API of its own under `/api`.
        for name in upstreams
            .keys()
            .filter(|name| config.site.as_ref() != Some(*name))
        {
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
        if let Some(site) = &config.site {
            // Everything else: the longest prefix wins, so `/api/...` still goes to
            // the services.
            routes.insert(
                String::new(),
                Route {
                    prefix: "/".to_owned(),
                    upstream: site.clone(),
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
            let track = match tracks.iter().position(|track| track.name == instance.track) {
                Some(at) => &mut tracks[at],
                None => {
                    tracks.push(Track::new(instance.track.clone()));
                    tracks.last_mut().expect("just pushed")
                }
            };
            track.weight += u64::from(instance.weight);
            track.members.push((endpoint, instance.weight));
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
    use std::time::Instant;

    use crate::balance::InFlight;
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
