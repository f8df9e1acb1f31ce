//! Serving a service's HTTP API the same way everywhere.
//!
//! [`app`] wraps a service's routes with what every service needs: a request id, a
//! tracing span and RED metrics per request, panic containment, a body size limit,
//! `/health/live`, `/health/ready` and `/metrics`, and problem+json for unknown routes.
//! [`serve`] runs it on a listener the caller bound (port 0 in tests) until shutdown,
//! draining requests in flight, and closes a connection that takes longer than
//! [`IDLE_TIMEOUT`] to send a request's head, or stays that long without one.

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
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
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
#[derive(Clone, Debug)]
pub struct AppOptions {
    /// Whether each request's RED metrics are recorded (on for every service; the
    /// gateway may turn them off to proxy at the lowest cost).
    pub record_metrics: bool,
    /// Whether `/metrics` is served beside the routes (on for every service, whose
    /// port is private; off for the gateway, whose port is public).
    pub serve_metrics: bool,
    /// Whether a path no route matches is answered with a 404 problem (off for a
    /// service whose routes bring a fallback of their own, such as HTML pages).
    pub problem_fallback: bool,
    /// The fault flags' door the routes stand behind, inside the request's span and
    /// metrics, so that an injected failure is seen as the service's own
    /// ([`crate::faults`]); none by default.
    pub door: Option<crate::faults::Door>,
}

impl Default for AppOptions {
    fn default() -> Self {
        Self {
            record_metrics: true,
            serve_metrics: true,
            problem_fallback: true,
            door: None,
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
    let health = health(service, readiness);
    let health = if options.serve_metrics {
        health.merge(metrics_routes())
    } else {
        health
    };
    let app = routes.merge(health);
    let app = if options.problem_fallback {
        app.fallback(|| async { Problem::not_found("no such route") })
    } else {
        app
    };
    let app = app
        .method_not_allowed_fallback(|| async {
            Problem::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                "this route does not accept that method",
            )
        })
        .layer(axum::extract::DefaultBodyLimit::max(DEFAULT_BODY_LIMIT));
    let app = match options.door {
        Some(door) => crate::faults::wrap(app, door),
        None => app,
    };
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
            .make_span_with(move |request: &Request| request_span(service, request))
            .on_response(
                |response: &Response, _latency: std::time::Duration, span: &tracing::Span| {
                    span.record("status", response.status().as_u16());
                },
            ),
    )
    .layer(SetRequestIdLayer::x_request_id(NewRequestId))
}

/// The span every request of `service` runs in: method, path, request id, and the
/// status once answered, joined to the caller's trace when `traceparent` names one.
pub fn request_span<B>(service: &'static str, request: &http::Request<B>) -> tracing::Span {
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
    if span.is_disabled() {
        return span;
    }
    let traceparent = request
        .headers()
        .get("traceparent")
        .and_then(|value| value.to_str().ok());
    crate::telemetry::adopt(&span, traceparent);
    span
}

/// A new request id: a random UUID, as [`app`] gives every request that came without
/// one.
pub fn new_request_id() -> HeaderValue {
    HeaderValue::from_str(&uuid::Uuid::new_v4().to_string())
        .expect("a UUID is a valid header value")
}

/// [`new_request_id`] as the request id layer's maker, so that a request id is made
/// one way whichever path a request takes.
#[derive(Clone, Copy, Debug)]
struct NewRequestId;

impl MakeRequestId for NewRequestId {
    fn make_request_id<B>(&mut self, _: &http::Request<B>) -> Option<RequestId> {
        Some(RequestId::new(new_request_id()))
    }
}

/// How long an HTTP/1 connection may take to send a request's head (a slow sender is
/// cut off) and may stay open between requests. Clients that keep connections to a
/// service, the gateway and the storefront, let them go after [`CLIENT_IDLE_TIMEOUT`],
/// sooner, so that they never send on a connection the server is closing.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// How long the shop's own HTTP clients keep an idle connection to a service.
pub const CLIENT_IDLE_TIMEOUT: Duration = Duration::from_secs(20);

/// The largest request head (start line and headers) the server reads: past it the
/// connection is answered 431 and closed. The gateway refuses far smaller heads, with a
/// problem body, before any route sees them.
pub const MAX_HEAD: usize = 256 * 1024;

/// Serves `app` on `listener` until `shutdown` fires, then drains requests in flight:
/// idle connections close at once, the others after their response.
///
/// Each request carries its peer as [`axum::extract::ConnectInfo`]`<SocketAddr>`.
pub async fn serve(listener: TcpListener, app: Router, shutdown: Shutdown) -> std::io::Result<()> {
    serve_with(listener, app, shutdown, IDLE_TIMEOUT).await
}

/// [`serve`] with `idle_timeout` in place of [`IDLE_TIMEOUT`].
pub async fn serve_with(
    listener: TcpListener,
    app: Router,
    shutdown: Shutdown,
    idle_timeout: Duration,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use hyper_util::server::conn::auto;
    use hyper_util::service::TowerToHyperService;
    use tower::ServiceExt as _;

    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(idle_timeout)
        .max_buf_size(MAX_HEAD);
    builder.http2().timer(TokioTimer::new());
    let connections = hyper_util::server::graceful::GracefulShutdown::new();
    let stop = shutdown.wait();
    tokio::pin!(stop);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    wait_after_accept_error(&error).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        // Responses are written whole; waiting to batch small writes only adds latency.
        let _ = stream.set_nodelay(true);
        let service =
            app.clone()
                .map_request(move |mut request: http::Request<hyper::body::Incoming>| {
                    request
                        .extensions_mut()
                        .insert(axum::extract::ConnectInfo(peer));
                    request
                });
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), TowerToHyperService::new(service))
            .into_owned();
        let connection = connections.watch(connection);
        tokio::spawn(async move {
            // A connection's end (the client left, a timeout, a malformed request) is
            // the client's business: hyper has answered what could be answered.
            let _ = connection.await;
        });
    }
    drop(listener);
    connections.shutdown().await;
    Ok(())
}

/// After a failed accept: a connection reset before it was accepted is the client's
/// and is skipped; anything else (out of file descriptors) is waited out briefly, so
/// the loop does not spin while nothing can be accepted.
async fn wait_after_accept_error(error: &std::io::Error) {
    use std::io::ErrorKind;
    if matches!(
        error.kind(),
        ErrorKind::ConnectionRefused | ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset
    ) {
        return;
    }
    tracing::error!(%error, "accepting a connection failed");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// `/health/live` and `/health/ready` over `readiness`.
pub fn health(service: &'static str, readiness: Readiness) -> Router {
    Router::new()
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
}

/// `/metrics`: the process's Prometheus exposition. Installs the recorder, since what
/// is recorded before it exists is lost.
pub fn metrics_routes() -> Router {
    crate::telemetry::metrics();
    Router::new().route("/metrics", get(render_metrics))
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
    record_request(service, method, route, response.status(), started);
    response
}

/// Counts one answered request of `service` in the RED metrics
/// (`http_server_requests_total`, `http_server_request_duration_seconds`), labelled by
/// method, route template and status, timed from `started`.
pub fn record_request(
    service: &'static str,
    method: String,
    route: String,
    status: StatusCode,
    started: Instant,
) {
    let labels = [
        ("service", service.to_owned()),
        ("method", method),
        ("route", route),
        ("status", status.as_u16().to_string()),
    ];
    metrics::counter!("http_server_requests_total", &labels).increment(1);
    metrics::histogram!("http_server_request_duration_seconds", &labels)
        .record(started.elapsed().as_secs_f64());
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

/// A JSON body, both ways: every service's one `Json`. As an extractor it is
/// `axum::Json` whose rejection is a problem: 400 for bad JSON, a body that is not a
/// JSON object, or missing, unknown or mistyped fields (the detail names the field), 413
/// for a body over the limit, 415 without a JSON content type. As a response it is
/// `application/json`.
///
/// A number with no fraction is an integer, as in JSON Schema: `12.0` fills an integer
/// field like `12` does.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<T: serde::Serialize> axum::response::IntoResponse for Json<T> {
    fn into_response(self) -> axum::response::Response {
        axum::Json(self.0).into_response()
    }
}

impl<T, S> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let axum::Json(mut value) = axum::Json::<serde_json::Value>::from_request(request, state)
            .await
            .map_err(|rejection| {
                let (status, kind) = match rejection.status() {
                    StatusCode::PAYLOAD_TOO_LARGE => (StatusCode::PAYLOAD_TOO_LARGE, "too-large"),
                    StatusCode::UNSUPPORTED_MEDIA_TYPE => {
                        (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported-media-type")
                    }
                    // Bad JSON is a bad request like any other invalid input, not
                    // axum's default 422.
                    _ => (StatusCode::BAD_REQUEST, "validation"),
                };
                Problem::new(status, kind, rejection.body_text())
            })?;
        integers_where_integral(&mut value);
        serde_path_to_error::deserialize::<_, Object<T>>(value)
            .map(|Object(value)| Self(value))
            .map_err(|error| {
                // Wrong or missing fields too: the detail names the field.
                Problem::new(
                    StatusCode::BAD_REQUEST,
                    "validation",
                    format!("Failed to deserialize the JSON body into the target type: {error}"),
                )
            })
    }
}

/// Turns every number of `value` that has no fraction (`12.0`) into an integer, so that
/// it fills an integer field, as JSON Schema counts it an integer.
fn integers_where_integral(value: &mut serde_json::Value) {
    use serde_json::Value;
    match value {
        Value::Number(number) => {
            if let Some(float) = number.as_f64().filter(|_| number.is_f64())
                && float.fract() == 0.0
                && float >= i64::MIN as f64
                && float < i64::MAX as f64
            {
                #[allow(
                    clippy::cast_possible_truncation,
                    reason = "a whole number inside the range of i64"
                )]
                let integer = float as i64;
                *number = integer.into();
            }
        }
        Value::Array(items) => items.iter_mut().for_each(integers_where_integral),
        Value::Object(fields) => fields.values_mut().for_each(integers_where_integral),
        Value::Null | Value::Bool(_) | Value::String(_) => {}
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

/// Documents on every operation the answers that do not depend on the operation, each
/// a problem: the gateway's in front of every service (429 over a client's rate limit,
/// 503 when it sheds load, an upstream's circuit is open or a dependency is down) and
/// the platform's (400 for a parameter or body that does not parse, 413 for a body over
/// the limit, 415 for one that is not JSON, 401 and 403 where a token is required, 404
/// where the path names something). An answer the operation documents itself stays.
pub struct EdgeResponses;

impl utoipa::Modify for EdgeResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let secured_by_default = openapi
            .security
            .as_ref()
            .is_some_and(|security| !security.is_empty());
        for (path, item) in &mut openapi.paths.paths {
            let names_something = path.contains('{');
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ];
            for operation in operations.into_iter().flatten() {
                let has_parameters = operation
                    .parameters
                    .as_ref()
                    .is_some_and(|parameters| !parameters.is_empty());
                let has_body = operation.request_body.is_some();
                let secured = operation
                    .security
                    .as_ref()
                    .map_or(secured_by_default, |security| !security.is_empty());
                let mut answers = vec![
                    (
                        "429",
                        "Over the client's rate limit; `Retry-After` says when to try again",
                    ),
                    (
                        "503",
                        "Overloaded, or a service this needs is down; `Retry-After` says when to try again",
                    ),
                ];
                if has_parameters || has_body || names_something {
                    answers.push((
                        "400",
                        "A parameter or the body is invalid; the problem names each field",
                    ));
                }
                if has_body {
                    answers.push(("413", "The body is larger than the service takes"));
                    answers.push(("415", "The body is not `application/json`"));
                }
                if secured {
                    answers.push(("401", "No valid access token"));
                    answers.push(("403", "The token's roles do not allow this"));
                }
                if names_something {
                    answers.push(("404", "Nothing by that name, or nothing the caller may see"));
                }
                for (status, description) in answers {
                    operation
                        .responses
                        .responses
                        .entry(status.to_owned())
                        .or_insert_with(|| problem_response(description));
                }
            }
        }
    }
}

/// A response whose body is a [`Problem`].
fn problem_response(description: &str) -> utoipa::openapi::RefOr<utoipa::openapi::Response> {
    use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
    ResponseBuilder::new()
        .description(description)
        .content(
            crate::problem::CONTENT_TYPE,
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Problem")))
                .build(),
        )
        .build()
        .into()
}
