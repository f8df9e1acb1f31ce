//! The gateway's configuration: where it listens, the route table, and its policies.
//!
//! The route table (`upstreams` and `routes`) may also come from a separate TOML file,
//! `routes_file`, which the gateway re-reads when it changes or on SIGHUP: that is how
//! a canary's weight is raised or a blue/green switch is made without a restart.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use http::Uri;
use platform::net::IpRange;
use serde::{Deserialize, Serialize};

pub use crate::access::ProtectRule;
pub use crate::balance::HealthConfig;
pub use crate::breaker::BreakerConfig;
pub use crate::ratelimit::{RateLimitConfig, RateLimitStore};
pub use crate::retry::RetryConfig;

/// How the gateway runs. Every field has a default suitable for `bazaar up`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The public address: the one entry to the shop.
    pub listen: SocketAddr,
    /// How long an upstream may take to start answering before the client gets a 504,
    /// unless the route says otherwise.
    pub upstream_timeout_ms: u64,
    /// How long connecting to an upstream may take before the attempt fails.
    pub connect_timeout_ms: u64,
    /// Upstream services by name, each a set of instances. Written as a URL
    /// (`"http://orders:8107"`), a comma-separated list of URLs, or a table with
    /// weighted instances on tracks.
    pub upstreams: BTreeMap<String, Upstream>,
    /// Routes beyond the default `/api/<upstream>` one per upstream.
    pub routes: Vec<Route>,
    /// The upstream that serves `/` and every path outside `/api` and `/console`: the
    /// web shop (`storefront`). Unset: those paths are 404.
    pub site: Option<String>,
    /// A TOML file with more `upstreams` and `routes`, overriding those above by name
    /// and prefix; re-read when it changes and on SIGHUP.
    pub routes_file: Option<PathBuf>,
    /// Paths that need a valid access token (and maybe a role) before they are
    /// forwarded; the first rule that matches a request applies.
    pub protected: Vec<ProtectRule>,
    /// Peers whose `X-Forwarded-For` is believed (a load balancer in front), as
    /// addresses or ranges. Empty: the peer is the client.
    pub trusted_proxies: Vec<IpRange>,
    /// The shop's forwarding secret (`auth.forwarding_secret`, copied here), sent to
    /// every upstream in `Bazaar-Forwarded-By` so that it believes the client address
    /// the gateway forwards. What a client sends in that header is dropped.
    pub forwarding_secret: Option<platform::config::Secret>,
    /// The largest request body accepted; larger ones are refused with 413.
    pub max_body_bytes: usize,
    /// Requests in flight across all routes before new ones are shed with 503.
    pub max_in_flight: usize,
    /// Whether the gateway records its own metrics (per upstream, breakers, limits)
    /// and the RED metrics of its routes.
    pub metrics: bool,
    /// A private address serving `/metrics` (and the health checks) for Prometheus,
    /// e.g. `0.0.0.0:9080` in a container. The public address never serves metrics.
    /// Unset: no metrics endpoint of the gateway's own (in one process, every other
    /// service's `/metrics` shows the whole process, the gateway's series included).
    pub metrics_listen: Option<SocketAddr>,
    /// Per-client request rates.
    pub rate_limit: RateLimitConfig,
    /// Retries of failed idempotent requests.
    pub retry: RetryConfig,
    /// The circuit breaker of each upstream.
    pub breaker: BreakerConfig,
    /// Active and passive health checking of instances.
    pub health: HealthConfig,
    /// Cross-origin requests from browsers.
    pub cors: CorsConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 8080)),
            upstream_timeout_ms: 10_000,
            connect_timeout_ms: 1_000,
            upstreams: BTreeMap::new(),
            routes: Vec::new(),
            site: None,
            routes_file: None,
            protected: crate::access::default_protected(),
            trusted_proxies: Vec::new(),
            forwarding_secret: None,
            max_body_bytes: 1024 * 1024,
            max_in_flight: 4096,
            metrics: true,
            metrics_listen: None,
            rate_limit: RateLimitConfig::default(),
            retry: RetryConfig::default(),
            breaker: BreakerConfig::default(),
            health: HealthConfig::default(),
            cors: CorsConfig::default(),
        }
    }
}

/// What a `routes_file` holds: the part of the configuration that may change while the
/// gateway runs.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RouteTableConfig {
    /// Upstreams, replacing those of the same name in the main configuration.
    pub upstreams: BTreeMap<String, Upstream>,
    /// Routes, replacing those with the same prefix.
    pub routes: Vec<Route>,
}

/// A service behind the gateway: the instances that serve it.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "UpstreamSpec")]
pub struct Upstream {
    /// Where it runs; at least one.
    pub instances: Vec<Instance>,
    /// Requests in flight to this upstream before new ones are shed with 503: a
    /// bulkhead, so one slow service cannot take every slot. Unset: only the global
    /// limit applies.
    pub max_in_flight: Option<usize>,
}

impl Upstream {
    /// One instance, on the stable track.
    pub fn single(url: UpstreamUrl) -> Self {
        Self {
            instances: vec![Instance::stable(url)],
            max_in_flight: None,
        }
    }

    /// The instance at `address`.
    pub fn at(address: SocketAddr) -> Self {
        Self::single(UpstreamUrl::from_addr(address))
    }
}

/// Written back the shortest way it can be read: plain instances as a list of URLs.
impl Serialize for Upstream {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct as _;
        let plain = self.max_in_flight.is_none()
            && self
                .instances
                .iter()
                .all(|instance| *instance == Instance::stable(instance.url.clone()));
        if plain {
            let urls: Vec<String> = self
                .instances
                .iter()
                .map(|instance| instance.url.to_string())
                .collect();
            return serializer.serialize_str(&urls.join(", "));
        }
        let mut table = serializer.serialize_struct("Upstream", 2)?;
        table.serialize_field("instances", &self.instances)?;
        if let Some(limit) = self.max_in_flight {
            table.serialize_field("max_in_flight", &limit)?;
        }
        table.end()
    }
}

/// The ways an upstream can be written.
#[derive(Deserialize)]
#[serde(untagged)]
enum UpstreamSpec {
    /// `"http://a:1"` or `"http://a:1, http://b:1"`.
    Urls(String),
    /// `{ instances = [...], max_in_flight = 64 }`.
    Table(UpstreamTable),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpstreamTable {
    instances: Vec<Instance>,
    #[serde(default)]
    max_in_flight: Option<usize>,
}

impl TryFrom<UpstreamSpec> for Upstream {
    type Error = String;

    fn try_from(spec: UpstreamSpec) -> Result<Self, Self::Error> {
        let (instances, max_in_flight) = match spec {
            UpstreamSpec::Urls(urls) => (
                urls.split(',')
                    .map(|url| UpstreamUrl::try_from(url.trim().to_owned()).map(Instance::stable))
                    .collect::<Result<Vec<_>, _>>()?,
                None,
            ),
            UpstreamSpec::Table(table) => (table.instances, table.max_in_flight),
        };
        if instances.is_empty() {
            return Err("an upstream needs at least one instance".to_owned());
        }
        if max_in_flight == Some(0) {
            return Err("max_in_flight must be at least 1".to_owned());
        }
        Ok(Self {
            instances,
            max_in_flight,
        })
    }
}

/// One instance of an upstream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Instance {
    /// Its base URL.
    pub url: UpstreamUrl,
    /// Its share of its track's traffic, and its track's share of the upstream's: a
    /// canary instance of weight 5 beside stable ones of total weight 95 gets 5 % of
    /// the requests. Weight 0 takes traffic only when asked for by track.
    #[serde(default = "one")]
    pub weight: u32,
    /// The release it runs, e.g. `stable`, `canary`, `blue`, `green`. A request that
    /// names a track (`x-bazaar-track: green`, or the `bazaar-track` cookie) goes to it.
    #[serde(default = "stable")]
    pub track: String,
}

impl Instance {
    /// An instance of weight 1 on the stable track.
    pub fn stable(url: UpstreamUrl) -> Self {
        Self {
            url,
            weight: 1,
            track: stable(),
        }
    }
}

fn one() -> u32 {
    1
}

fn stable() -> String {
    "stable".to_owned()
}

/// A path prefix and the upstream that serves it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// The prefix, matched at segment boundaries; the longest matching prefix wins. It
    /// is removed before forwarding: `/api/orders/7` reaches orders as `/7`.
    pub prefix: String,
    /// The upstream's name.
    pub upstream: String,
    /// How long the upstream may take to start answering, per attempt.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// Further attempts after a failed one, for idempotent requests only.
    #[serde(default)]
    pub retries: Option<u32>,
}

/// Which browser origins may call the API.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CorsConfig {
    /// Exact origins, e.g. `https://shop.example.com`; empty means same-origin only.
    pub allowed_origins: Vec<String>,
    /// How long a browser may cache a preflight answer.
    pub max_age_secs: u64,
}

/// Whether `path` is `prefix` or below it, at a segment boundary.
pub(crate) fn under(path: &str, prefix: &str) -> bool {
    let prefix = prefix.trim_end_matches('/');
    path == prefix
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// The base URL of an upstream instance: `http://host:port`, no path.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct UpstreamUrl {
    authority: http::uri::Authority,
}

impl UpstreamUrl {
    /// The upstream at `address`.
    pub fn from_addr(address: SocketAddr) -> Self {
        let authority = address
            .to_string()
            .parse()
            .expect("a socket address is a valid authority");
        Self { authority }
    }

    /// `host:port`.
    pub fn authority(&self) -> &http::uri::Authority {
        &self.authority
    }
}

impl TryFrom<String> for UpstreamUrl {
    type Error = String;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        let uri: Uri = text
            .parse()
            .map_err(|error| format!("{text:?} is not a URL: {error}"))?;
        let plain_base = uri.scheme_str() == Some("http")
            && matches!(uri.path(), "" | "/")
            && uri.query().is_none();
        match uri.authority() {
            Some(authority) if plain_base => Ok(Self {
                authority: authority.clone(),
            }),
            _ => Err(format!(
                "{text:?} must be a base URL like http://127.0.0.1:8101 (http, host, port, no path)"
            )),
        }
    }
}

impl From<UpstreamUrl> for String {
    fn from(url: UpstreamUrl) -> Self {
        format!("http://{}", url.authority)
    }
}

impl std::fmt::Display for UpstreamUrl {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "http://{}", self.authority)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstreams_are_plain_http_base_urls() {
        let url = UpstreamUrl::try_from("http://127.0.0.1:8101".to_owned()).expect("valid");
        assert_eq!(String::from(url), "http://127.0.0.1:8101");
        for bad in [
            "127.0.0.1:8101",
            "https://x:1",
            "http://x:1/api",
            "ftp://x",
            "http://",
        ] {
            assert!(
                UpstreamUrl::try_from(bad.to_owned()).is_err(),
                "{bad} accepted"
            );
        }
    }

    #[test]
    fn upstreams_are_written_as_urls_or_as_weighted_instances() {
        let table: RouteTableConfig = toml::from_str(
            r#"
            [upstreams]
            catalog = "http://catalog:8101"
            orders = "http://orders-a:8107, http://orders-b:8107"

            [upstreams.payments]
            max_in_flight = 64
            instances = [
                { url = "http://payments:8105", weight = 95 },
                { url = "http://payments-canary:8105", weight = 5, track = "canary" },
            ]
            "#,
        )
        .expect("valid");
        assert_eq!(table.upstreams["catalog"].instances.len(), 1);
        let orders = &table.upstreams["orders"].instances;
        assert_eq!(orders.len(), 2);
        assert_eq!(orders[1].url.to_string(), "http://orders-b:8107");
        assert_eq!(orders[1].track, "stable");
        let payments = &table.upstreams["payments"];
        assert_eq!(payments.max_in_flight, Some(64));
        assert_eq!(payments.instances[1].track, "canary");
        assert_eq!(payments.instances[1].weight, 5);
        for bad in [
            "upstreams.x = \"\"",
            "upstreams.x = \"http://a:1, https://b:1\"",
            "upstreams.x = { instances = [] }",
            "upstreams.x = { instances = [{ url = \"http://a:1\" }], max_inflight = 2 }",
            "upstreams.x = { instances = [{ url = \"http://a:1\", weigth = 2 }] }",
        ] {
            assert!(
                toml::from_str::<RouteTableConfig>(bad).is_err(),
                "{bad} accepted"
            );
        }
    }
}
