//! The gateway: the shop's single public entry.
//!
//! Every external request enters here and is forwarded to the service that owns it:
//! `/api/<service>/<path>` goes to that service's `/<path>`, over a pooled HTTP/1.1
//! client, with the request id, a W3C `traceparent` and `X-Forwarded-*` headers. An
//! upstream that cannot be reached is a 502, one that does not answer in time a 504,
//! both as problem+json. Protected routes need a valid access token (and maybe a role)
//! before anything is forwarded: 401 with `WWW-Authenticate`, or 403; the services
//! verify the token again, trusting nothing on the network. `/api/docs` serves the services' OpenAPI documents in Swagger
//! UI, whose assets are compiled into the binary.
//!
//! It owns no data and no business rule.
//!
//! - [`config`]: listen address, timeouts, upstreams.
//! - [`proxy`]: the forwarding itself, after the access check of protected routes.

pub mod config;
pub mod proxy;

use axum::Router;
use axum::routing::any;
use platform::auth::Verifier;
use platform::http::Readiness;
use utoipa_swagger_ui::{SwaggerUi, Url};

pub use config::{Config, ProtectRule, UpstreamUrl};

/// The service's name in logs, metrics and the topology.
pub const NAME: &str = "gateway";

/// The app to serve: proxy routes, API docs, health and metrics. `verifier` checks the
/// access tokens of protected routes.
pub fn build(config: &Config, verifier: Verifier) -> Router {
    let docs: Vec<Url<'static>> = config
        .upstreams
        .keys()
        .map(|name| {
            let url = format!("/api/{name}/openapi.json");
            Url::new(leak(name.clone()), leak(url))
        })
        .collect();
    let swagger = SwaggerUi::new("/api/docs").config(utoipa_swagger_ui::Config::new(docs));
    let proxy = proxy::Proxy::new(config, verifier);
    let routes = Router::new()
        .route("/api/{*path}", any(proxy::forward))
        .with_state(proxy)
        .merge(swagger);
    platform::http::app(NAME, routes, Readiness::new())
}

/// Swagger UI's configuration borrows `'static` strings; the gateway builds it once per
/// process start, so the few bytes leaked are bounded.
fn leak(text: String) -> &'static str {
    Box::leak(text.into_boxed_str())
}
