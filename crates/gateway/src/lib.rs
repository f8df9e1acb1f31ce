//! The gateway: the shop's single public entry.
//!
//! Every external request enters here and is forwarded to the service that owns it:
//! `/api/<service>/<path>` goes to one instance of that service as `/<path>`, over a
//! pooled HTTP/1.1 client, with the request id, a W3C `traceparent` and
//! `X-Forwarded-*` headers. What it does on the way, as nginx, HAProxy or Envoy would
//! for a microservice shop:
//!
//! - routing by path prefix to upstreams of weighted instances on tracks (canary by
//!   weight, sticky per user; blue/green by the `x-bazaar-track` header or cookie),
//!   from a route table that is re-read on change or SIGHUP without dropping a
//!   request ([`table`], [`config`]);
//! - load balancing by the power of two choices, active health checks and passive
//!   ejection of failing instances ([`table`], [`Gateway::check_health`]);
//! - per-route timeouts, retries of idempotent requests within a budget ([`retry`]), a
//!   circuit breaker per upstream ([`breaker`]), and load shedding with 503 and
//!   `Retry-After` instead of queueing ([`proxy`]);
//! - access tokens checked on protected routes (401 with `WWW-Authenticate`, or 403;
//!   the services verify again, trusting nothing on the network) and rate limits per
//!   user or client address, tiered by role, in process or shared through Redis
//!   ([`access`], [`ratelimit`]); forwarded headers believed only from configured
//!   proxies;
//! - CORS, security headers, a request body limit, request ids and trace context.
//!
//! `/api/docs` serves the services' OpenAPI documents in Swagger UI, whose assets are
//! compiled into the binary; `/console` shows admins what the shop is doing and lets
//! them switch its feature flags ([`console`]). The gateway owns no data and no business rule.

pub mod access;
pub mod balance;
pub mod breaker;
pub mod config;
pub mod console;
pub mod proxy;
pub mod ratelimit;
pub mod retry;
pub mod table;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use arc_swap::ArcSwap;
use axum::Router;
use axum::routing::{any, get, post};
use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::HeaderValue;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use platform::auth::Verifier;
use platform::flags::Flags;
use platform::http::Readiness;
use platform::service::Service;
use platform::shutdown::Shutdown;
use tokio::sync::Semaphore;
use tower_http::cors::{AllowOrigin, CorsLayer};
use utoipa_swagger_ui::{SwaggerUi, Url};

pub use config::{Config, Instance, ProtectRule, RouteTableConfig, Upstream, UpstreamUrl};

use crate::access::Tokens;
use crate::ratelimit::{Limiter, Local, Shared as SharedLimits};
use crate::retry::Budget;
use crate::table::{Registry, Table};

/// The service's name in logs, metrics and the topology.
pub const NAME: &str = "gateway";

/// A running gateway: its router, its workers, and a handle to reload its routes.
#[derive(Clone)]
pub struct Gateway {
    shared: Arc<Shared>,
}

/// What every request shares.
pub struct Shared {
    config: Config,
    table: ArcSwap<Table>,
    registry: Registry,
    client: Client<HttpConnector, Full<Bytes>>,
    tokens: Tokens,
    limiter: Option<Limiter>,
    in_flight: Arc<Semaphore>,
    budget: Budget,
    /// The forwarding secret as the header value sent upstream, if there is one.
    forwarded_by: Option<HeaderValue>,
    /// A digest of the routes file as it was last read.
    loaded: std::sync::Mutex<Option<u64>>,
    /// The process's feature flags, which the console shows and switches.
    flags: Flags,
    /// The chaos scenarios the console offers, once given ([`Gateway::offer_scenarios`]).
    scenarios: std::sync::OnceLock<Vec<console::Scenario>>,
}

/// A digest of a routes file's content. Modification times are too coarse to tell two
/// writes a few milliseconds apart, and a weight change keeps the size; the file is
/// small, so reading it every second costs nothing.
fn digest(content: &[u8]) -> u64 {
    use std::hash::{Hash as _, Hasher as _};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    content.hash(&mut hasher);
    hasher.finish()
}

/// The digest of the file at `path` now, if it can be read.
fn stamp(path: &std::path::Path) -> Option<u64> {
    std::fs::read(path).ok().map(|content| digest(&content))
}

impl Gateway {
    /// A gateway over `config`, checking tokens with `verifier`, its console showing and
    /// switching `flags`. Fails if the routes file cannot be read or names an upstream it
    /// does not define; a rate limit store that cannot be reached yet is connected to
    /// later (the limits are local till then).
    pub async fn new(config: &Config, verifier: Verifier, flags: Flags) -> anyhow::Result<Self> {
        if config.metrics {
            // Metric handles are registered with the table: the recorder must exist first.
            platform::telemetry::metrics();
        }
        let registry = Registry::default();
        let routes = read_routes_file(config);
        let loaded = routes.digest;
        let file = routes.table?;
        let table = registry.compile(config, file.as_ref())?;
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_millis(config.connect_timeout_ms)));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(platform::http::CLIENT_IDLE_TIMEOUT)
            .pool_max_idle_per_host(1024)
            .build(connector);
        let limiter = if config.rate_limit.enabled {
            Some(match &config.rate_limit.store {
                config::RateLimitStore::Local => Limiter::Local(Local::default()),
                config::RateLimitStore::Redis { url, key_prefix } => Limiter::Shared(
                    SharedLimits::connect(url.expose(), key_prefix).with_context(|| {
                        format!("the rate limit store's URL {}", url.redacted())
                    })?,
                ),
            })
        } else {
            None
        };
        Ok(Self {
            shared: Arc::new(Shared {
                config: config.clone(),
                table: ArcSwap::from_pointee(table),
                registry,
                client,
                tokens: Tokens::new(verifier),
                limiter,
                in_flight: Arc::new(Semaphore::new(config.max_in_flight.max(1))),
                budget: Budget::new(config.retry.budget_percent, config.retry.min_per_second),
                forwarded_by: config
                    .forwarding_secret
                    .as_ref()
                    .map(|secret| HeaderValue::from_str(secret.expose()))
                    .transpose()
                    .context("the forwarding secret must be printable ASCII")?,
                loaded: std::sync::Mutex::new(loaded),
                flags,
                scenarios: std::sync::OnceLock::new(),
            }),
        })
    }

    /// Has the console offer `scenarios`, each started and stopped with its flag. Only
    /// the first offer counts.
    pub fn offer_scenarios(&self, scenarios: Vec<console::Scenario>) {
        let _ = self.shared.scenarios.set(scenarios);
    }

    /// The app to serve: proxy routes, API docs, health and metrics.
    pub fn router(&self) -> Router {
        let config = &self.shared.config;
        let docs: Vec<Url<'static>> = self
            .shared
            .table
            .load()
            .pools()
            .filter(|pool| config.site.as_ref() != Some(&pool.name))
            .map(|pool| {
                let url = format!("/api/{}/openapi.json", pool.name);
                Url::new(leak(pool.name.clone()), leak(url))
            })
            .collect();
        let swagger = SwaggerUi::new("/api/docs").config(utoipa_swagger_ui::Config::new(docs));
        let mut routes = Router::new()
            .route("/", any(proxy::forward))
            .route("/{*path}", any(proxy::forward))
            .route("/console", get(console::overview))
            .route("/console/traces/{id}", get(console::trace))
            .route("/console/flags/{key}", post(console::switch_flag))
            .route("/console/scenarios/{name}", post(console::run_scenario))
            .with_state(Arc::clone(&self.shared))
            .merge(swagger);
        if !config.cors.allowed_origins.is_empty() {
            routes = routes.layer(cors(&config.cors));
        }
        let options = platform::http::AppOptions {
            record_metrics: config.metrics,
            serve_metrics: false,
            ..platform::http::AppOptions::default()
        };
        let app = platform::http::app_with(NAME, routes, Readiness::new(), options)
            .layer(axum::middleware::from_fn(proxy::heads_bounded))
            .layer(axum::middleware::from_fn(proxy::own_answers_secured));
        // `/api/…` below the layers, which `proxy::Api` does the work of itself; the API
        // docs under `/api/docs` are static routes, which take precedence.
        let api = proxy::Api::new(Arc::clone(&self.shared));
        let api = if config.cors.allowed_origins.is_empty() {
            Router::new().route_service(proxy::API_ROUTE, api)
        } else {
            Router::new().route_service(
                proxy::API_ROUTE,
                tower::Layer::layer(&cors(&config.cors), api),
            )
        };
        api.merge(app)
    }

    /// Re-reads the routes file and swaps the new table in; requests in flight finish
    /// on the old one. A file that does not parse or names an undefined upstream is
    /// refused and the table in use stays.
    pub fn reload(&self) -> anyhow::Result<()> {
        let routes = read_routes_file(&self.shared.config);
        // Recorded even when the file is refused, so the watcher waits for a change.
        *self
            .shared
            .loaded
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = routes.digest;
        let file = routes.table?;
        let table = self
            .shared
            .registry
            .compile(&self.shared.config, file.as_ref())?;
        self.shared.table.store(Arc::new(table));
        if self.shared.config.metrics {
            metrics::counter!("gateway_route_reloads_total").increment(1);
        }
        tracing::info!("routes reloaded");
        Ok(())
    }

    /// One round of active health checks: every instance's health path is asked, and
    /// those that do not answer 200 in time get no traffic until they do.
    pub async fn check_health(&self) {
        let table = self.shared.table.load_full();
        let health = &self.shared.config.health;
        let timeout = Duration::from_millis(health.interval_ms.clamp(100, 2_000));
        let checks = table.pools().flat_map(|pool| {
            pool.endpoints().map(move |endpoint| {
                let endpoint = Arc::clone(endpoint);
                let pool = pool.name.clone();
                async move {
                    let uri = format!("http://{}{}", endpoint.url.authority(), health.path);
                    let request = http::Request::get(uri).body(Full::new(Bytes::new()));
                    let healthy = match request {
                        Ok(request) => matches!(
                            tokio::time::timeout(timeout, self.shared.client.request(request)).await,
                            Ok(Ok(response)) if response.status() == http::StatusCode::OK
                        ),
                        Err(_) => false,
                    };
                    if endpoint.set_healthy(healthy) {
                        tracing::warn!(upstream = pool, endpoint = %endpoint.url, healthy, "instance health changed");
                    }
                    if self.shared.config.metrics {
                        metrics::gauge!("gateway_instance_healthy", "upstream" => pool, "instance" => endpoint.url.to_string())
                            .set(if healthy { 1.0 } else { 0.0 });
                    }
                }
            })
        });
        futures_util::future::join_all(checks).await;
    }

    /// The background work: health checks, and watching the routes file and SIGHUP.
    pub fn workers(&self, shutdown: &Shutdown) -> Vec<BoxFuture<'static, ()>> {
        let mut workers: Vec<BoxFuture<'static, ()>> = Vec::new();
        let interval = self.shared.config.health.interval_ms;
        if interval > 0 {
            let gateway = self.clone();
            let shutdown = shutdown.clone();
            workers.push(Box::pin(async move {
                while !shutdown.is_triggered() {
                    gateway.check_health().await;
                    tokio::select! {
                        () = shutdown.wait() => return,
                        () = tokio::time::sleep(Duration::from_millis(interval)) => {}
                    }
                }
            }));
        }
        if let Some(path) = self.shared.config.routes_file.clone() {
            let gateway = self.clone();
            let shutdown = shutdown.clone();
            workers.push(Box::pin(async move { gateway.watch(path, shutdown).await }));
        }
        workers
    }

    /// Reloads when the routes file changes (checked every second) or on SIGHUP.
    async fn watch(&self, path: std::path::PathBuf, shutdown: Shutdown) {
        #[cfg(unix)]
        let mut hangup =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        loop {
            #[cfg(unix)]
            let signalled = async {
                match hangup.as_mut() {
                    Some(hangup) => {
                        hangup.recv().await;
                    }
                    None => std::future::pending().await,
                }
            };
            #[cfg(not(unix))]
            let signalled = std::future::pending::<()>();
            let forced = tokio::select! {
                () = shutdown.wait() => return,
                () = signalled => true,
                () = tokio::time::sleep(Duration::from_secs(1)) => false,
            };
            let loaded = *self
                .shared
                .loaded
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if (forced || stamp(&path) != loaded)
                && let Err(error) = self.reload()
            {
                tracing::error!(
                    "the routes file was not loaded, the routes in use stay: {error:#}"
                );
            }
        }
    }
}

/// Builds the gateway as a service: its router and its workers, its console offering
/// `scenarios`.
pub async fn build(
    config: &Config,
    verifier: Verifier,
    flags: Flags,
    scenarios: Vec<console::Scenario>,
    shutdown: &Shutdown,
) -> anyhow::Result<Service> {
    let gateway = Gateway::new(config, verifier, flags).await?;
    gateway.offer_scenarios(scenarios);
    let mut workers = gateway.workers(shutdown);
    if let Some(address) = config.metrics_listen {
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .with_context(|| format!("the gateway's metrics cannot listen on {address}"))?;
        let app =
            platform::http::health(NAME, Readiness::new()).merge(platform::http::metrics_routes());
        let shutdown = shutdown.clone();
        workers.push(Box::pin(async move {
            if let Err(error) = platform::http::serve(listener, app, shutdown).await {
                tracing::error!(%error, "the gateway's metrics listener stopped");
            }
        }));
    }
    Ok(Service {
        router: gateway.router(),
        workers,
    })
}

/// A routes file as read once: its digest, and the table it holds.
struct RoutesFile {
    digest: Option<u64>,
    table: anyhow::Result<Option<RouteTableConfig>>,
}

fn read_routes_file(config: &Config) -> RoutesFile {
    let Some(path) = &config.routes_file else {
        return RoutesFile {
            digest: None,
            table: Ok(None),
        };
    };
    let content = match std::fs::read(path) {
        Ok(content) => content,
        Err(error) => {
            return RoutesFile {
                digest: None,
                table: Err(anyhow::Error::new(error)
                    .context(format!("reading the routes file {}", path.display()))),
            };
        }
    };
    let table = std::str::from_utf8(&content)
        .map_err(anyhow::Error::new)
        .and_then(|text| toml::from_str(text).map_err(anyhow::Error::new))
        .map(Some)
        .with_context(|| format!("parsing the routes file {}", path.display()));
    RoutesFile {
        digest: Some(digest(&content)),
        table,
    }
}

fn cors(config: &config::CorsConfig) -> CorsLayer {
    let origins: Vec<http::HeaderValue> = config
        .allowed_origins
        .iter()
        .filter_map(|origin| http::HeaderValue::from_str(origin).ok())
        .collect();
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_methods([
            http::Method::GET,
            http::Method::POST,
            http::Method::PUT,
            http::Method::PATCH,
            http::Method::DELETE,
        ])
        .allow_headers([
            http::header::AUTHORIZATION,
            http::header::CONTENT_TYPE,
            http::HeaderName::from_static("idempotency-key"),
            http::HeaderName::from_static("x-request-id"),
            http::HeaderName::from_static(proxy::TRACK_HEADER),
            http::HeaderName::from_static(proxy::TRACEPARENT),
        ])
        .expose_headers([
            http::header::RETRY_AFTER,
            http::HeaderName::from_static("x-request-id"),
        ])
        .max_age(Duration::from_secs(config.max_age_secs))
}

/// Swagger UI's configuration borrows `'static` strings; the gateway builds it once per
/// process start, so the few bytes leaked are bounded.
fn leak(text: String) -> &'static str {
    Box::leak(text.into_boxed_str())
}
