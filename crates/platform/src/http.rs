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
use std::marker::PhantomData;

use serde::de::value::MapAccessDeserializer;
use serde::de::{DeserializeOwned, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
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
    /// The service's database, whose pool is measured at each readiness check.
    database: Option<crate::db::Database>,
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

    /// Adds the `database` check: `db` answers a ping. Each check also records the
    /// pool's connections in use and idle (`db_pool_connections`), so the figures are as
    /// fresh as the probes that ask (every few seconds under Kubernetes or the gateway).
    pub fn with_database(mut self, db: crate::db::Database) -> Self {
        self.database = Some(db.clone());
        self.with("database", move || {
            let db = db.clone();
            async move { db.ping().await }
        })
    }

    fn record_pool(&self, service: &'static str) {
        if let Some(db) = &self.database {
            let size = db.pool().size();
            let idle = u32::try_from(db.pool().num_idle()).unwrap_or(u32::MAX);
            metrics::gauge!("db_pool_connections", "service" => service, "state" => "idle")
                .set(f64::from(idle));
            metrics::gauge!("db_pool_connections", "service" => service, "state" => "in_use")
                .set(f64::from(size.saturating_sub(idle)));
        }
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

/// Choices a service may make about the app around its routes.
#[derive(Clone, Copy, Debug)]
pub struct AppOptions {
    /// Whether each request's RED metrics are recorded (on for every service; the
    /// gateway may turn them off to proxy at the lowest cost).
    pub record_metrics: bool,
}

impl Default for AppOptions {
    fn default() -> Self {
        Self {
            record_metrics: true,
        }
    }
}

/// Wraps `routes` (the service's own API) into the app every service serves.
pub fn app(service: &'static str, routes: Router, readiness: Readiness) -> Router {
    app_with(service, routes, readiness, AppOptions::default())
}

/// [`app`] with `options`.
pub fn app_with(
    service: &'static str,
    routes: Router,
    readiness: Readiness,
    options: AppOptions,
) -> Router {
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
                    readiness.record_pool(service);
                    (code, axum::Json(body))
                }
            }),
        )
        .route("/metrics", get(render_metrics));

    let app = routes
        .merge(health)
        .fallback(|| async { Problem::not_found("no such route") })
        .method_not_allowed_fallback(|| async {
            Problem::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                "this route does not accept that method",
            )
        })
        .layer(axum::extract::DefaultBodyLimit::max(DEFAULT_BODY_LIMIT));
    let app = if options.record_metrics {
        app.layer(middleware::from_fn_with_state(service, record_metrics))
    } else {
        app
    };
    app.layer(CatchPanicLayer::custom(move |_| {
        tracing::error!(service, "a request handler panicked");
        Problem::internal().into_response()
    }))
    .layer(PropagateRequestIdLayer::x_request_id())
    .layer(
        TraceLayer::new_for_http()
            .make_span_with(move |request: &Request| {
                let request_id = request
                    .headers()
                    .get(REQUEST_ID)
                    .and_then(|value| value.to_str().ok())
                    .unwrap_or_default();
                let span = tracing::info_span!(
                    "request",
                    service,
                    method = %request.method(),
                    path = %request.uri().path(),
                    request_id,
                    status = tracing::field::Empty,
                    trace_id = tracing::field::Empty,
                );
                let traceparent = request
                    .headers()
                    .get("traceparent")
                    .and_then(|value| value.to_str().ok());
                crate::telemetry::adopt(&span, traceparent);
                span
            })
            .on_response(
                |response: &Response, _latency: std::time::Duration, span: &tracing::Span| {
                    span.record("status", response.status().as_u16());
                },
            ),
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
    // A gRPC service is one route (`/package.Service/{*method}`): its RED metrics are
    // per method, the path, unless the method does not exist (grpc-status 12), so that
    // a caller cannot grow the label set.
    let grpc_path = route
        .ends_with("/{*method}")
        .then(|| request.uri().path().to_owned());
    let method = request.method().as_str().to_owned();
    let started = Instant::now();
    let response = next.run(request).await;
    let route = match grpc_path {
        Some(path)
            if response
                .headers()
                .get("grpc-status")
                .is_none_or(|status| status != "12") =>
        {
            path
        }
        _ => route,
    };
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

/// A request as the origin of the messages it causes: its `x-request-id` (set at the
/// edge or by [`app`]) as correlation id, and its `traceparent`.
impl<S: Send + Sync> FromRequestParts<S> for crate::outbox::Origin {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let header = |name: &str| {
            parts
                .headers
                .get(name)
                .and_then(|value| value.to_str().ok())
                .filter(|value| !value.is_empty() && value.len() <= 200)
                .map(str::to_owned)
        };
        Ok(Self {
            correlation_id: header(REQUEST_ID).unwrap_or_else(|| uuid::Uuid::now_v7().to_string()),
            causation_id: None,
            traceparent: crate::telemetry::current_traceparent().or_else(|| header("traceparent")),
        })
    }
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

/// `axum::Json` whose rejection is a problem: 400 for bad JSON, a body that is not a
/// JSON object, or missing, unknown or mistyped fields (the detail names the field), 413
/// for a body over the limit, 415 without a JSON content type.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<T, S> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        axum::Json::<Object<T>>::from_request(request, state)
            .await
            .map(|axum::Json(Object(value))| Self(value))
            .map_err(|rejection| {
                let (status, kind) = match rejection.status() {
                    StatusCode::PAYLOAD_TOO_LARGE => (StatusCode::PAYLOAD_TOO_LARGE, "too-large"),
                    StatusCode::UNSUPPORTED_MEDIA_TYPE => {
                        (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported-media-type")
                    }
                    // Wrong or missing fields are a bad request like any other invalid
                    // input, not axum's default 422.
                    _ => (StatusCode::BAD_REQUEST, "validation"),
                };
                Problem::new(status, kind, rejection.body_text())
            })
    }
}

/// `T` read from a JSON object only.
struct Object<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Object<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        object(deserializer).map(Self)
    }
}

/// Deserializes `T` from a JSON object only; use it with `deserialize_with` on fields
/// that hold a struct.
///
/// Serde's derived structs also accept an array of field values in declaration order,
/// which would make `[]` an empty patch and a positional array a whole new resource.
/// Asking the deserializer for a map refuses anything but an object.
pub fn object<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct ObjectVisitor<T>(PhantomData<T>);

    impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjectVisitor<T> {
        type Value = T;

        fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            formatter.write_str("a JSON object")
        }

        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
            T::deserialize(MapAccessDeserializer::new(map))
        }
    }

    deserializer.deserialize_map(ObjectVisitor(PhantomData))
}

/// Declares the `bearer` security scheme (a JWT from identity) that protected paths of
/// an OpenAPI document refer to with `security(("bearer" = []))`.
pub struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some("An access token from identity's /token"))
                    .build(),
            ),
        );
    }
}
