//! Faults any service can be made to suffer at its own door, each switched by a feature
//! flag ([`crate::flags`]) while the shop runs: a service that is down, one that fails
//! a share of its requests, one that is slow. Every service but the gateway serves its
//! routes behind one ([`crate::service::Context::app`]), so each of them, REST and
//! gRPC alike, answers as a failing service would and its callers' defences (the
//! gateway's breaker and retries, the saga's deadlines, gRPC deadlines) can be watched
//! at work. The door stands inside the request's span
//! and metrics, so an injected failure counts as the service's own in traces and in
//! the console. The gateway has no door: its `/api/` path stays below every layer.
//!
//! | flag | type | effect on service `S` |
//! |---|---|---|
//! | `service-unavailable` | string | when it names `S` (any service but the gateway), every request to `S` is answered 503, readiness included (liveness and metrics are not, so the process is neither restarted nor blind) |
//! | `S-error-rate` | number, 0 to 1 | that share of `S`'s requests is answered 500 |
//! | `S-delay-ms` | number | every request to `S` waits that long first, at most 60 s |
//! | `S-db-delay-ms` | number | every connection `S`'s database pools hand out waits that long first, holding it ([`SlowDatabase`]) |
//!
//! Flags are evaluated with `service`, `method` and `path` in the context, and the
//! request id as the targeting key. Injected answers say so in their problem detail and
//! are counted in `injected_faults_total{service, fault}`.

use std::time::Duration;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use http::header::{HeaderValue, RETRY_AFTER};

use crate::flags::{EvaluationContext, Flags};
use crate::problem::Problem;

/// The flag naming the service that is down.
pub const UNAVAILABLE: &str = "service-unavailable";

/// The longest delay a flag can impose on a request.
const MAX_DELAY: Duration = Duration::from_secs(60);

/// A service's door: whose it is, and the flags that can break it. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Door(std::sync::Arc<Keys>);

#[derive(Debug)]
struct Keys {
    service: &'static str,
    error_rate: String,
    delay_ms: String,
    flags: Flags,
}

impl Door {
    /// The door of `service`, consulting `flags`.
    pub fn new(service: &'static str, flags: Flags) -> Self {
        Self(std::sync::Arc::new(Keys {
            service,
            error_rate: format!("{service}-error-rate"),
            delay_ms: format!("{service}-delay-ms"),
            flags,
        }))
    }
}

/// `router` behind `door`.
pub fn wrap(router: axum::Router, door: Door) -> axum::Router {
    router.layer(axum::middleware::from_fn_with_state(door, guard))
}

/// The fault the flags put at the door, if any, else the service's own answer.
async fn guard(State(door): State<Door>, request: Request, next: Next) -> Response {
    let door = &*door.0;
    let path = request.uri().path();
    let set = door.flags.current();
    // The usual case, every fault off, costs three map lookups.
    let quiet = [
        UNAVAILABLE,
        door.error_rate.as_str(),
        door.delay_ms.as_str(),
    ]
    .iter()
    .all(|key| set.is_off(key));
    if quiet || path == "/metrics" || path == "/health/live" {
        return next.run(request).await;
    }
    let mut context = EvaluationContext::new()
        .with("service", door.service)
        .with("method", request.method().as_str())
        .with("path", path);
    if let Some(id) = request
        .headers()
        .get(crate::http::REQUEST_ID)
        .and_then(|id| id.to_str().ok())
    {
        context = context.targeting_key(id);
    }
    let flags = &door.flags;
    let delay = flags.delay(&door.delay_ms, &context, MAX_DELAY);
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    if flags.string(UNAVAILABLE, &context, "") == door.service {
        count(door.service, UNAVAILABLE);
        return Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "service-unavailable",
            format!(
                "injected: the flag {UNAVAILABLE} takes the {} service down",
                door.service
            ),
        )
        .with_header(RETRY_AFTER, HeaderValue::from_static("1"))
        .into_response();
    }
    let rate = flags.number(&door.error_rate, &context, 0.0);
    if rate > 0.0 && fastrand::f64() < rate {
        count(door.service, "error-rate");
        return Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!(
                "injected: the flag {} fails {:.0}% of the {} service's requests",
                door.error_rate,
                rate * 100.0,
                door.service
            ),
        )
        .into_response();
    }
    next.run(request).await
}

/// A slow database: the flag `S-db-delay-ms` makes every connection service `S`'s pools
/// hand out wait that long before it is used, holding the connection meanwhile, as a
/// database that answers slowly would. Requests slow down, the pool runs out of
/// connections under load, and a wait longer than the pool's acquire timeout fails the
/// acquisition: the service answers 503 and its callers' defences (retries, breakers, the
/// saga's deadlines, the outbox) take over. Installed by [`crate::db::PoolSettings`]'s
/// `slowdown`; [`crate::service::Context::database`] sets it for every service.
#[derive(Clone, Debug)]
pub struct SlowDatabase(std::sync::Arc<SlowKeys>);

#[derive(Debug)]
struct SlowKeys {
    service: &'static str,
    delay_ms: String,
    flags: Flags,
}

impl SlowDatabase {
    /// The slowdown of `service`'s database, consulting `flags`.
    pub fn new(service: &'static str, flags: Flags) -> Self {
        Self(std::sync::Arc::new(SlowKeys {
            service,
            delay_ms: format!("{service}-db-delay-ms"),
            flags,
        }))
    }

    /// Waits as long as the flag says, if at all: before a connection is handed out.
    pub async fn wait(&self) {
        let keys = &*self.0;
        if keys.flags.current().is_off(&keys.delay_ms) {
            return;
        }
        let context = EvaluationContext::new().with("service", keys.service);
        let delay = keys.flags.delay(&keys.delay_ms, &context, MAX_DELAY);
        if !delay.is_zero() {
            count(keys.service, "db-delay");
            tokio::time::sleep(delay).await;
        }
    }
}

fn count(service: &'static str, fault: &'static str) {
    metrics::counter!("injected_faults_total", "service" => service, "fault" => fault).increment(1);
}

#[cfg(test)]
mod tests {
    use axum::Router;
    use axum::body::Body;
    use axum::routing::get;
    use serde_json::json;
    use tower::ServiceExt as _;

    use super::*;
    use crate::flags::FlagSet;

    /// A service's router behind its door, with `flags` as the shop's definitions.
    fn service(name: &'static str, flags: serde_json::Value) -> Router {
        let set = FlagSet::parse(&flags.to_string()).expect("valid flags");
        let routes = Router::new()
            .route("/products", get(|| async { "listed" }))
            .route("/metrics", get(|| async { "metrics" }))
            .route("/health/live", get(|| async { "live" }))
            .route("/health/ready", get(|| async { "ready" }));
        wrap(routes, Door::new(name, Flags::fixed(set)))
    }

    fn number(value: f64) -> serde_json::Value {
        json!({"state": "ENABLED", "variants": {"on": value}, "defaultVariant": "on"})
    }

    async fn status(router: &Router, path: &str) -> (u16, String) {
        let request = Request::get(path).body(Body::empty()).expect("a request");
        let response = router.clone().oneshot(request).await.expect("an answer");
        let status = response.status().as_u16();
        let body = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .expect("a body");
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn a_service_named_down_answers_503_but_for_liveness_and_metrics() {
        let flags = json!({"flags": {UNAVAILABLE: {
            "state": "ENABLED",
            "variants": {"none": "", "catalog": "catalog"},
            "defaultVariant": "catalog"
        }}});
        let catalog = service("catalog", flags.clone());
        let (code, body) = status(&catalog, "/products").await;
        assert_eq!(code, 503);
        assert!(
            body.contains("service-unavailable") && body.contains("injected"),
            "{body}"
        );
        assert_eq!(status(&catalog, "/health/ready").await.0, 503);
        assert_eq!(
            status(&catalog, "/health/live").await,
            (200, "live".to_owned())
        );
        assert_eq!(
            status(&catalog, "/metrics").await,
            (200, "metrics".to_owned())
        );
        let inventory = service("inventory", flags);
        assert_eq!(
            status(&inventory, "/products").await,
            (200, "listed".to_owned())
        );
    }

    #[tokio::test]
    async fn an_error_rate_fails_that_share_of_the_services_requests() {
        let always = service(
            "catalog",
            json!({"flags": {"catalog-error-rate": number(1.0)}}),
        );
        let (code, body) = status(&always, "/products").await;
        assert_eq!(code, 500);
        assert!(body.contains("catalog-error-rate"), "{body}");
        let others = service(
            "cart",
            json!({"flags": {"catalog-error-rate": number(1.0)}}),
        );
        assert_eq!(status(&others, "/products").await.0, 200);
        let never = service(
            "catalog",
            json!({"flags": {"catalog-error-rate": number(0.0)}}),
        );
        assert_eq!(status(&never, "/products").await.0, 200);
    }

    #[tokio::test]
    async fn a_delay_holds_every_request_first() {
        let slow = service(
            "inventory",
            json!({"flags": {"inventory-delay-ms": number(80.0)}}),
        );
        let started = std::time::Instant::now();
        assert_eq!(status(&slow, "/products").await.0, 200);
        // A sleep never ends early: a lower bound does not flake.
        assert!(started.elapsed() >= Duration::from_millis(80));
    }
}
