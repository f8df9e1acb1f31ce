//! The gateway's configuration: where it listens, the route table, and its policies.
//!
//! The route table (`upstreams` and `routes`) may also come from a separate TOML file,
//! `routes_file`, which the gateway re-reads when it changes or on SIGHUP: that is how
//! a canary's weight is raised or a blue/green switch is made without a restart.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use contracts::identity::Role;
use http::Uri;
use platform::net::IpRange;
use serde::{Deserialize, Serialize};

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
    /// A TOML file with more `upstreams` and `routes`, overriding those above by name
    /// and prefix; re-read when it changes and on SIGHUP.
    pub routes_file: Option<PathBuf>,
    /// Paths that need a valid access token (and maybe a role) before they are
    /// forwarded; the first rule that matches a request applies.
    pub protected: Vec<ProtectRule>,
    /// Peers whose `X-Forwarded-For` is believed (a load balancer in front), as
    /// addresses or ranges. Empty: the peer is the client.
    pub trusted_proxies: Vec<IpRange>,
    /// The largest request body accepted; larger ones are refused with 413.
    pub max_body_bytes: usize,
    /// Requests in flight across all routes before new ones are shed with 503.
    pub max_in_flight: usize,
    /// Whether the gateway records its own metrics (per upstream, breakers, limits)
    /// and the RED metrics of its routes.
    pub metrics: bool,
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
            routes_file: None,
            protected: default_protected(),
            trusted_proxies: Vec::new(),
            max_body_bytes: 1024 * 1024,
            max_in_flight: 4096,
            metrics: true,
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
        /// The server, e.g. `redis://redis:6379`.
        url: String,
        /// Prefix of every key, e.g. `bazaar:ratelimit:`.
        #[serde(default = "rate_limit_prefix")]
        key_prefix: String,
    },
}

fn rate_limit_prefix() -> String {
    "bazaar:ratelimit:".to_owned()
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

/// Which browser origins may call the API.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CorsConfig {
    /// Exact origins, e.g. `https://shop.example.com`; empty means same-origin only.
    pub allowed_origins: Vec<String>,
    /// How long a browser may cache a preflight answer.
    pub max_age_secs: u64,
}

/// A path prefix (and, optionally, methods) that needs a signed-in user.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProtectRule {
    /// The path prefix, matched at segment boundaries: `/api/identity/me` matches
    /// `/api/identity/me/password` but not `/api/identity/meadow`.
    pub prefix: String,
    /// The methods it applies to; empty means all.
    #[serde(default)]
    pub methods: Vec<String>,
    /// The role required, if any.
    #[serde(default)]
    pub role: Option<Role>,
    /// Path prefixes under `prefix` that stay public, e.g. a service's
    /// `/openapi.json` and `/health` under a fully protected prefix.
    #[serde(default)]
    pub except: Vec<String>,
}

impl ProtectRule {
    fn new(prefix: &str, methods: &[&str], role: Option<Role>) -> Self {
        Self {
            prefix: prefix.to_owned(),
            methods: methods.iter().map(|method| (*method).to_owned()).collect(),
            role,
            except: Vec::new(),
        }
    }

    /// The rule for a whole service's API under `prefix`, leaving its OpenAPI document,
    /// health and metrics public.
    fn whole_service(prefix: &str) -> Self {
        let public = ["/openapi.json", "/health", "/metrics"];
        Self {
            except: public
                .iter()
                .map(|path| format!("{prefix}{path}"))
                .collect(),
            ..Self::new(prefix, &[], None)
        }
    }

    /// Whether the rule applies to `method` on `path`.
    pub fn matches(&self, method: &http::Method, path: &str) -> bool {
        under(path, &self.prefix)
            && !self.except.iter().any(|public| under(path, public))
            && (self.methods.is_empty()
                || self
                    .methods
                    .iter()
                    .any(|allowed| allowed.eq_ignore_ascii_case(method.as_str())))
    }
}

/// Whether `path` is `prefix` or below it, at a segment boundary.
pub(crate) fn under(path: &str, prefix: &str) -> bool {
    let prefix = prefix.trim_end_matches('/');
    path == prefix
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// What the shop protects at the edge by default; each service checks again.
fn default_protected() -> Vec<ProtectRule> {
    let writes = ["POST", "PUT", "PATCH", "DELETE"];
    vec![
        ProtectRule::new("/api/identity/me", &[], None),
        ProtectRule::new("/api/identity/users", &[], None),
        ProtectRule::new("/api/identity/keys", &[], Some(Role::Admin)),
        ProtectRule::new("/api/catalog", &writes, Some(Role::Admin)),
        ProtectRule::new("/api/inventory/stock", &writes, Some(Role::Admin)),
        ProtectRule::whole_service("/api/cart"),
        ProtectRule::whole_service("/api/orders"),
        ProtectRule::new("/api/payments/methods", &[], None),
        ProtectRule::new("/api/payments/orders", &[], None),
        ProtectRule::new("/api/payments/ledger", &[], Some(Role::Admin)),
        ProtectRule::whole_service("/api/notifications"),
    ]
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
    fn rules_match_at_segment_boundaries_and_by_method() {
        let rule = ProtectRule::new("/api/identity/me", &[], None);
        assert!(rule.matches(&http::Method::GET, "/api/identity/me"));
        assert!(rule.matches(&http::Method::POST, "/api/identity/me/password"));
        assert!(!rule.matches(&http::Method::GET, "/api/identity/meadow"));
        let writes = ProtectRule::new("/api/catalog/", &["POST", "delete"], Some(Role::Admin));
        assert!(writes.matches(&http::Method::DELETE, "/api/catalog/products/x"));
        assert!(!writes.matches(&http::Method::GET, "/api/catalog/products"));
        let orders = ProtectRule::whole_service("/api/orders");
        assert!(orders.matches(&http::Method::POST, "/api/orders"));
        assert!(orders.matches(&http::Method::GET, "/api/orders/0190"));
        assert!(!orders.matches(&http::Method::GET, "/api/orders/openapi.json"));
        assert!(!orders.matches(&http::Method::GET, "/api/orders/health/ready"));
    }

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
