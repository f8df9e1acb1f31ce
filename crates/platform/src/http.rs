//! Serving a service's HTTP API the same way everywhere.
//!
//! [`app`] wraps a service's routes with what every service needs: a request id, a
//! tracing span and RED metrics per request, panic containment, a body size limit,
//! `/health/live`, `/health/ready` and `/metrics`, and problem+json for unknown routes.
//! [`serve`] runs it on a listener the caller bound (port 0 in tests) until shutdown,
//! draining requests in flight.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{FromRequest, FromRequestParts, MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures_util::future::BoxFuture;
use http::request::Parts;
use http::{HeaderValue, StatusCode, header};
use serde::de::DeserializeOwned;
use tokio::net::TcpListener;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::problem::Problem;
use crate::shutdown::Shutdown;

/// The header carrying the request id, set at the edge and propagated inward.
pub const REQUEST_ID: &str = "x-request-id";

/// The largest request body a service reads unless it says otherwise.
pub const DEFAULT_BODY_LIMIT: usize = 1024 * 1024;

/// How long readiness checks may take before the service is reported not ready.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// A named check that `/health/ready` runs; `Err` carries a reason safe to show operators.
type Check = Arc<dyn Fn() -> BoxFuture<'static, Result<(), String>> + Send + Sync>;

/// The checks behind `/health/ready`: the service is ready when all of them pass.
#[derive(Clone, Default)]
pub struct Readiness {
    checks: Vec<(&'static str, Check)>,
}

impl Readiness {
    /// No checks: ready as soon as it serves.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a check called `name`.
    pub fn with<F, Fut>(mut self, name: &'static str, check: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        self.checks.push((
            name,
            Arc::new(move || Box::pin(check()) as BoxFuture<'static, _>),
        ));
        self
    }

    async fn report(&self) -> (StatusCode, serde_json::Value) {
        let mut ready = true;
        let mut checks = serde_json::Map::new();
        for (name, check) in &self.checks {
            let outcome = match tokio::time::timeout(READY_TIMEOUT, check()).await {
                Ok(Ok(())) => "ok".to_owned(),
                Ok(Err(reason)) => reason,
                Err(_) => format!("no answer within {READY_TIMEOUT:?}"),
            };
            ready &= outcome == "ok";
            checks.insert((*name).to_owned(), outcome.into());
        }
        let status = if ready { "ready" } else { "not ready" };
        let code = if ready {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        (
            code,
            serde_json::json!({ "status": status, "checks": checks }),
        )
    }
}

/// Wraps `routes` (the service's own API) into the app every service serves.
pub fn app(service: &'static str, routes: Router, readiness: Readiness) -> Router {
    // Install the recorder now: what is recorded before it exists is lost.
    crate::telemetry::metrics();
    let health = Router::new()
        .route(
            "/health/live",
            get(|| async { axum::Json(serde_json::json!({ "status": "live" })) }),
        )
        .route(
            "/health/ready",
            get(move || {
                let readiness = readiness.clone();
                async move {
                    let (code, body) = readiness.report().await;
                    (code, axum::Json(body))
                }
            }),
        )
        .route("/metrics", get(render_metrics));

    routes
        .merge(health)
        .fallback(|| async { Problem::not_found("no such route") })
        .method_not_allowed_fallback(|| async {
            Problem::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                "this route does not accept that method",
            )
        })
        .layer(axum::extract::DefaultBodyLimit::max(DEFAULT_BODY_LIMIT))
        .layer(middleware::from_fn_with_state(service, record_metrics))
        .layer(CatchPanicLayer::custom(move |_| {
            tracing::error!(service, "a request handler panicked");
            Problem::internal().into_response()
        }))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(
            TraceLayer::new_for_http().make_span_with(move |request: &Request| {
                let request_id = request
                    .headers()
                    .get(REQUEST_ID)
                    .and_then(|value| value.to_str().ok())
                    .unwrap_or_default();
                tracing::info_span!(
                    "request",
                    service,
                    method = %request.method(),
                    path = %request.uri().path(),
                    request_id,
                )
            }),
        )
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
}

/// Serves `app` on `listener` until `shutdown` fires, then drains requests in flight.
pub async fn serve(listener: TcpListener, app: Router, shutdown: Shutdown) -> std::io::Result<()> {
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move { shutdown.wait().await })
    .await
}

async fn render_metrics() -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        crate::telemetry::metrics().render(),
    )
}

/// Records the RED metrics of one request: rate and errors by status, duration by route.
async fn record_metrics(
    State(service): State<&'static str>,
    request: Request,
    next: Next,
) -> Response {
    // The matched route template, not the raw path, keeps the label set bounded.
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let method = request.method().as_str().to_owned();
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    let labels = [
        ("service", service.to_owned()),
        ("method", method),
        ("route", route),
        ("status", status),
    ];
    metrics::counter!("http_server_requests_total", &labels).increment(1);
    metrics::histogram!("http_server_request_duration_seconds", &labels)
        .record(started.elapsed().as_secs_f64());
    response
}

/// `axum::extract::Query` whose rejection is a 400 problem naming the parameter.
#[derive(Debug, Clone, Copy, Default)]
pub struct Query<T>(pub T);

impl<T, S> FromRequestParts<S> for Query<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(value)| Self(value))
            .map_err(|rejection| {
                let text = rejection.body_text();
                let detail = text
                    .strip_prefix("Failed to deserialize query string: ")
                    .unwrap_or(&text);
                Problem::new(
                    StatusCode::BAD_REQUEST,
                    "validation",
                    format!("query: {detail}"),
                )
            })
    }
}

/// `axum::Json` whose rejection is a problem: 400 for bad JSON or wrong fields (with the
/// path to the field), 413 for a body over the limit, 415 without a JSON content type.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<T, S> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        axum::Json::<T>::from_request(request, state)
            .await
            .map(|axum::Json(value)| Self(value))
            .map_err(|rejection| {
                let status = rejection.status();
                let kind = match status {
                    StatusCode::PAYLOAD_TOO_LARGE => "too-large",
                    StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported-media-type",
                    _ => "validation",
                };
                Problem::new(status, kind, rejection.body_text())
            })
    }
}
