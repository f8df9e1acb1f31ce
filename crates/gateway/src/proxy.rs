//! Forwarding a request, after the edge policy has let it through.
//!
//! In order: shed if the gateway is full; find who is asking (a verified token, else
//! the client address); refuse protected routes without the token or role; apply the
//! client's rate limit; find the route; read the body (bounded); ask the upstream's
//! circuit breaker and bulkhead; then send, to an instance chosen by track and load,
//! retrying a failed attempt on another instance when the request is idempotent and
//! the retry budget allows.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use contracts::identity::AccessClaims;
use http::StatusCode;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::{PathAndQuery, Scheme, Uri};
use http_body_util::{BodyExt as _, Full, Limited};
use platform::auth::{AuthError, bearer_token};
use platform::problem::Problem;
use tracing::Instrument as _;

use crate::Shared;
use crate::access::Client;
use crate::balance::Endpoint;
use crate::breaker::{Admission, State as BreakerState};
use crate::ratelimit::Decision;
use crate::retry::is_idempotent;
use crate::table::CompiledRoute;

/// The W3C trace context header.
pub const TRACEPARENT: &str = "traceparent";
/// The header naming the release a request wants (blue/green testing).
pub const TRACK_HEADER: &str = "x-bazaar-track";
/// The cookie naming the release a browser wants.
pub const TRACK_COOKIE: &str = "bazaar-track";

/// Whether `path` (a service's own path, after the route's prefix) is for other
/// services and operators only: the service's gRPC API (any `application/grpc`
/// request, or a `/package.Service/Method` path, which a service would answer even
/// without the content type) or its metrics. Clients reach services through their
/// REST APIs only; a service's gRPC methods trust that their caller is another
/// service acting for the customer it names.
pub fn is_internal(path: &str, headers: &HeaderMap) -> bool {
    let grpc_content = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| {
            value
                .trim_start()
                .to_ascii_lowercase()
                .starts_with("application/grpc")
        });
    let first = path
        .trim_start_matches('/')
        .split('/')
        .next()
        .unwrap_or_default();
    // `bazaar.cart.v1.Cart`, not `.well-known` or `openapi.json` (which has no method).
    let grpc_path = first.contains('.')
        && first.starts_with(|c: char| c.is_ascii_alphabetic())
        && first
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_')
        && path.trim_start_matches('/').len() > first.len();
    let metrics = first == "metrics";
    grpc_content || grpc_path || metrics
}

/// The route template of every request [`Api`] answers, as the RED metrics label it.
pub const API_ROUTE: &str = "/api/{*path}";

/// The service that answers `/api/…`, the gateway's hot path. It sits below the
/// router's layers and does itself what they do for a request: refuses oversized heads
/// (as [`heads_bounded`]), gives the request an id and returns it with the answer, runs
/// the request in its span, contains a panic, counts the request in the RED metrics
/// when they are on, and secures the answer (as [`own_answers_secured`]). Doing it in
/// one place instead of a stack of boxed middleware is what a proxy's per-request cost
/// is made of.
#[derive(Clone)]
pub struct Api {
    shared: Arc<Shared>,
}

impl Api {
    /// The service over the gateway's shared state.
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }
}

impl tower::Service<Request> for Api {
    type Response = Response;
    type Error = std::convert::Infallible;
    type Future = futures_util::future::BoxFuture<'static, Result<Response, Self::Error>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let shared = Arc::clone(&self.shared);
        Box::pin(async move { Ok(shared.answer(request).await) })
    }
}

impl Shared {
    /// [`Api`]'s answer to `request`.
    async fn answer(&self, mut request: Request) -> Response {
        use futures_util::FutureExt as _;

        if let Some(refused) = head_refusal(&request) {
            return secured(refused);
        }
        let id = match request.headers().get(platform::http::REQUEST_ID) {
            Some(id) => id.clone(),
            None => {
                let id = platform::http::new_request_id();
                request
                    .headers_mut()
                    .insert(platform::http::REQUEST_ID, id.clone());
                id
            }
        };
        let peer = request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(SocketAddr::from(([0, 0, 0, 0], 0)), |info| info.0);
        let span = platform::http::request_span(crate::NAME, &request);
        let method = self
            .config
            .metrics
            .then(|| request.method().as_str().to_owned());
        let started = Instant::now();
        let forwarded = std::panic::AssertUnwindSafe(self.forward(peer, request))
            .catch_unwind()
            .instrument(span.clone())
            .await;
        let mut response = match forwarded {
            Ok(Ok(response) | Err(response)) => response,
            Err(_) => {
                tracing::error!(service = crate::NAME, "a request handler panicked");
                Problem::internal().into_response()
            }
        };
        let status = response.status();
        span.record("status", status.as_u16());
        if status.is_server_error() {
            tracing::error!(parent: &span, status = status.as_u16(), latency = ?started.elapsed(), "response failed");
        }
        response
            .headers_mut()
            .entry(platform::http::REQUEST_ID)
            .or_insert(id);
        if let Some(method) = method {
            platform::http::record_request(
                crate::NAME,
                method,
                API_ROUTE.to_owned(),
                status,
                started,
            );
        }
        secured(response)
    }
}

/// `response` with the security headers of an API answer it does not have yet.
fn secured(mut response: Response) -> Response {
    secure(response.headers_mut());
    response
}

/// Answers any request under `/api/`.
pub async fn forward(
    State(gateway): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    match gateway.forward(peer, request).await {
        Ok(response) | Err(response) => response,
    }
}

impl Shared {
    async fn forward(&self, peer: SocketAddr, request: Request) -> Result<Response, Response> {
        let Ok(_slot) = Arc::clone(&self.in_flight).try_acquire_owned() else {
            self.count("gateway_shed_total", "reason", "gateway");
            return Err(shed("the gateway is at capacity; try again shortly"));
        };
        let (mut parts, body) = request.into_parts();
        let table = self.table.load_full();
        let path = parts.uri.path();
        let route = table.route(path);

        let rule = self
            .config
            .protected
            .iter()
            .find(|rule| rule.matches(&parts.method, path));
        let token = match (rule, bearer_token(&parts.headers)) {
            (_, Ok(token)) => Some(token),
            (Some(_), Err(error)) => return Err(Problem::from(error).into_response()),
            (None, Err(_)) => None,
        };
        let wants_identity = rule.is_some()
            || self.limiter.is_some()
            || route.is_some_and(|(route, _)| route.pool.is_split());
        let claims = match token {
            Some(token) if wants_identity => Some(self.tokens.verify(token).await),
            _ => None,
        };
        if let Some(rule) = rule {
            match &claims {
                Some(Ok(claims)) => match rule.role {
                    Some(role) if !claims.roles.contains(&role) => {
                        return Err(
                            Problem::from(AuthError::Forbidden(role.as_str())).into_response()
                        );
                    }
                    _ => {}
                },
                Some(Err(error)) => return Err(Problem::from(error.clone()).into_response()),
                None => return Err(Problem::from(AuthError::Missing).into_response()),
            }
        }
        let claims: Option<Arc<AccessClaims>> = claims.and_then(Result::ok);
        if let Some(limiter) = &self.limiter {
            let address =
                platform::net::client_address(peer, &parts.headers, &self.config.trusted_proxies);
            let client = Client::of(claims.as_deref(), address, &self.config.rate_limit);
            if let Decision::Deny(wait) = limiter.check(&client.key, client.quota).await {
                self.count("gateway_rate_limited_total", "tier", client.tier);
                return Err(Problem::too_many_requests(
                    format!(
                        "too many requests: the {} allowance is {} a minute",
                        client.tier, client.quota.limit
                    ),
                    seconds_up(wait),
                )
                .into_response());
            }
        }

        let Some((route, rest)) = route else {
            return Err(Problem::not_found("no route for this path").into_response());
        };
        if is_internal(rest, &parts.headers) {
            self.count(
                "gateway_internal_refused_total",
                "upstream",
                &route.pool.name,
            );
            return Err(Problem::not_found("no route for this path").into_response());
        }
        let target = match parts.uri.query() {
            Some(query) => format!("{rest}?{query}"),
            None => rest.to_owned(),
        };
        let target: PathAndQuery = target.parse().map_err(|_| {
            Problem::bad_request("the request target cannot be forwarded").into_response()
        })?;
        let body = self.read_body(&parts.headers, body).await?;

        let pool = &route.pool;
        let admission = pool.breaker.admit(Instant::now());
        if let Admission::Refused(wait) = admission {
            self.count("gateway_shed_total", "reason", "breaker");
            return Err(Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "upstream-circuit-open",
                format!(
                    "the {} service is failing; the gateway is giving it a rest",
                    pool.name
                ),
            )
            .with_header(header::RETRY_AFTER, HeaderValue::from(seconds_up(wait)))
            .into_response());
        }
        let _bulkhead = match &pool.bulkhead {
            Some(bulkhead) => match Arc::clone(bulkhead).try_acquire_owned() {
                Ok(permit) => Some(permit),
                Err(_) => {
                    pool.breaker.release(&admission);
                    self.count("gateway_shed_total", "reason", "bulkhead");
                    return Err(shed(format!(
                        "the {} service has too many requests in flight; try again shortly",
                        pool.name
                    )));
                }
            },
            None => None,
        };

        // HTTP/2 carries the host in the URI (`:authority`), not in a `Host` header.
        let authority = parts.uri.authority().map(ToString::to_string);
        prepare_headers(
            &mut parts.headers,
            peer,
            authority.as_deref(),
            &self.config.trusted_proxies,
        );
        // Only the gateway vouches for the client address it forwards.
        parts.headers.remove(platform::net::FORWARDED_BY);
        if let Some(secret) = &self.forwarded_by {
            parts
                .headers
                .insert(platform::net::FORWARDED_BY, secret.clone());
        }
        let attempt = Attempt {
            method: parts.method,
            target,
            headers: parts.headers,
            body,
        };
        let asked = asked_track(&attempt.headers);
        let sticky = claims.as_ref().map(|claims| claims.sub.as_str());
        Ok(self.send(route, &attempt, asked.as_deref(), sticky).await)
    }

    /// Reads the whole body, up to the configured size, so that it can be sent again.
    async fn read_body(&self, headers: &HeaderMap, body: Body) -> Result<Bytes, Response> {
        let limit = self.config.max_body_bytes;
        let too_large = || {
            Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload-too-large",
                format!("request bodies are limited to {limit} bytes"),
            )
            .into_response()
        };
        let declared = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse::<usize>().ok());
        if declared.is_some_and(|length| length > limit) {
            return Err(too_large());
        }
        match Limited::new(body, limit).collect().await {
            Ok(collected) => Ok(collected.to_bytes()),
            Err(error) if error.is::<http_body_util::LengthLimitError>() => Err(too_large()),
            Err(_) => {
                Err(Problem::bad_request("the request body could not be read").into_response())
            }
        }
    }

    /// Sends the request, retrying when that is safe and affordable.
    async fn send(
        &self,
        route: &CompiledRoute,
        attempt: &Attempt,
        asked: Option<&str>,
        sticky: Option<&str>,
    ) -> Response {
        let pool = &route.pool;
        let retry_safe = is_idempotent(&attempt.method, &attempt.headers);
        self.budget.deposit(Instant::now());
        let mut tried: Vec<Arc<Endpoint>> = Vec::new();
        loop {
            let endpoint = pool.choose(asked, sticky, &tried, Instant::now());
            let started = Instant::now();
            // A retry is a span of its own when spans are recorded, so that a trace
            // shows it beside the failed attempt before it (the upstream's own span, or
            // nothing when it was unreachable). The first attempt is the request's span
            // itself: a span per request more would cost a third of what recording
            // spans costs (docs/benchmarks.md).
            let span = if tried.is_empty() {
                tracing::Span::none()
            } else {
                tracing::info_span!(
                    "attempt",
                    service = crate::NAME,
                    upstream = pool.name.as_str(),
                    attempt = tried.len() + 1,
                    status = tracing::field::Empty,
                )
            };
            let outcome = if span.is_disabled() {
                self.attempt(route, &endpoint, attempt, false).await
            } else {
                let outcome = self
                    .attempt(route, &endpoint, attempt, true)
                    .instrument(span.clone())
                    .await;
                span.record("status", outcome.status().as_u16());
                outcome
            };
            let now = Instant::now();
            let succeeded = !outcome.is_failure();
            let state = pool.breaker.record(now, succeeded);
            if let Some(meter) = &pool.meter {
                meter.observe(outcome.label(), state as u8, now - started);
            }
            if endpoint.record(
                succeeded,
                now,
                self.config.health.eject_after,
                Duration::from_millis(self.config.health.eject_ms),
            ) {
                tracing::warn!(upstream = pool.name, endpoint = %endpoint.url, "instance ejected after repeated failures");
            }
            // A connection that was never made carried nothing: any request may go
            // elsewhere. Otherwise only one that is safe to repeat.
            let may_retry = outcome.is_failure()
                && (retry_safe || outcome.never_sent())
                && (tried.len() as u32) < route.retries
                && state != BreakerState::Open
                && self.budget.withdraw(now);
            if !may_retry {
                return outcome.into_response(&pool.name, route.timeout);
            }
            if let Some(meter) = &pool.meter {
                meter.retries.increment(1);
            }
            tried.push(endpoint);
        }
    }

    /// One attempt at `endpoint`; `traced` when it runs in a recorded span, which the
    /// upstream's spans then hang from.
    async fn attempt(
        &self,
        route: &CompiledRoute,
        endpoint: &Arc<Endpoint>,
        attempt: &Attempt,
        traced: bool,
    ) -> Outcome {
        let uri = Uri::builder()
            .scheme(Scheme::HTTP)
            .authority(endpoint.url.authority().clone())
            .path_and_query(attempt.target.clone())
            .build();
        let Ok(uri) = uri else {
            return Outcome::Unreachable { never_sent: true };
        };
        let mut request = http::Request::new(Full::new(attempt.body.clone()));
        *request.method_mut() = attempt.method.clone();
        *request.uri_mut() = uri;
        *request.headers_mut() = attempt.headers.clone();
        // In a traced attempt's span, the upstream's spans are its children.
        if traced
            && let Some(traceparent) = platform::telemetry::current_traceparent()
                .and_then(|parent| HeaderValue::from_str(&parent).ok())
        {
            request.headers_mut().insert(TRACEPARENT, traceparent);
        }
        let _in_flight = endpoint.begin();
        match tokio::time::timeout(route.timeout, self.client.request(request)).await {
            Ok(Ok(response)) => {
                let (mut parts, body) = response.into_parts();
                remove_hop_by_hop(&mut parts.headers);
                secure(&mut parts.headers);
                let response = Response::from_parts(parts, Body::new(body));
                if is_failure_status(response.status()) {
                    Outcome::Failed(response)
                } else {
                    Outcome::Answered(response)
                }
            }
            Ok(Err(error)) => {
                tracing::warn!(upstream = route.pool.name, endpoint = %endpoint.url, %error, "upstream unreachable");
                Outcome::Unreachable {
                    never_sent: error.is_connect(),
                }
            }
            Err(_) => {
                tracing::warn!(upstream = route.pool.name, endpoint = %endpoint.url, timeout = ?route.timeout, "upstream timed out");
                Outcome::TimedOut
            }
        }
    }

    fn count(&self, name: &'static str, label: &'static str, value: &str) {
        if self.config.metrics {
            metrics::counter!(name, label => value.to_owned()).increment(1);
        }
    }
}

/// What is sent to the upstream, once per attempt.
struct Attempt {
    method: http::Method,
    target: PathAndQuery,
    headers: HeaderMap,
    body: Bytes,
}

/// How one attempt went.
enum Outcome {
    /// The upstream answered.
    Answered(Response),
    /// The upstream answered with a status that says it is failing.
    Failed(Response),
    /// No answer: no connection, or the connection broke.
    Unreachable {
        /// True when no connection was made, so nothing was sent.
        never_sent: bool,
    },
    /// No answer in time.
    TimedOut,
}

impl Outcome {
    /// Its name in metrics.
    fn label(&self) -> &'static str {
        match self {
            Self::Answered(_) => "answered",
            Self::Failed(_) => "failed",
            Self::Unreachable { .. } => "unreachable",
            Self::TimedOut => "timeout",
        }
    }

    fn is_failure(&self) -> bool {
        !matches!(self, Self::Answered(_))
    }

    /// The status it stands for: the upstream's, or the one the gateway answers with.
    fn status(&self) -> StatusCode {
        match self {
            Self::Answered(response) | Self::Failed(response) => response.status(),
            Self::Unreachable { .. } => StatusCode::BAD_GATEWAY,
            Self::TimedOut => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    fn never_sent(&self) -> bool {
        matches!(self, Self::Unreachable { never_sent: true })
    }

    fn into_response(self, upstream: &str, timeout: Duration) -> Response {
        match self {
            Self::Answered(response) | Self::Failed(response) => response,
            Self::Unreachable { .. } => Problem::new(
                StatusCode::BAD_GATEWAY,
                "upstream-unavailable",
                format!("the {upstream} service is unavailable"),
            )
            .into_response(),
            Self::TimedOut => Problem::new(
                StatusCode::GATEWAY_TIMEOUT,
                "upstream-timeout",
                format!(
                    "the {upstream} service did not answer within {} ms",
                    timeout.as_millis()
                ),
            )
            .into_response(),
        }
    }
}

/// Statuses that mean the upstream, not the request, is at fault.
fn is_failure_status(status: StatusCode) -> bool {
    matches!(
        status,
        StatusCode::INTERNAL_SERVER_ERROR
            | StatusCode::BAD_GATEWAY
            | StatusCode::SERVICE_UNAVAILABLE
            | StatusCode::GATEWAY_TIMEOUT
    )
}

/// 503 with `Retry-After: 1`: the request was not attempted.
fn shed(detail: impl Into<String>) -> Response {
    Problem::new(StatusCode::SERVICE_UNAVAILABLE, "overloaded", detail)
        .with_header(header::RETRY_AFTER, HeaderValue::from_static("1"))
        .into_response()
}

fn seconds_up(wait: Duration) -> u64 {
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
}

/// The release the request asks for, by header or cookie.
fn asked_track(headers: &HeaderMap) -> Option<String> {
    if let Some(track) = headers
        .get(TRACK_HEADER)
        .and_then(|value| value.to_str().ok())
    {
        return Some(track.trim().to_owned());
    }
    cookie(headers, TRACK_COOKIE)
}

/// The value of cookie `name`, unquoted, if the request carries it.
pub(crate) fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .find_map(|pair| {
            let (key, value) = pair.trim().split_once('=')?;
            (key == name).then(|| value.trim_matches('"').to_owned())
        })
}

const FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// Headers that describe one connection, not the message: never forwarded (RFC 9110 §7.6.1).
const HOP_BY_HOP: [HeaderName; 7] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::UPGRADE,
];

fn remove_hop_by_hop(headers: &mut HeaderMap) {
    // Headers named in `Connection` are hop-by-hop too.
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|name| HeaderName::try_from(name.trim()).ok())
        .collect();
    for name in HOP_BY_HOP.iter().chain(&named) {
        headers.remove(name);
    }
    headers.remove(header::TRANSFER_ENCODING);
}

/// What an API answer should tell a browser, unless the service said otherwise: don't
/// sniff types, don't frame, don't leak the URL, run nothing.
fn secure(headers: &mut HeaderMap) {
    secure_with(headers, "default-src 'none'; frame-ancestors 'none'");
}

/// [`secure`] with `policy` as the default content security policy.
pub(crate) fn secure_with(headers: &mut HeaderMap, policy: &'static str) {
    let defaults = [
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::CONTENT_SECURITY_POLICY, policy),
    ];
    for (name, value) in defaults {
        headers
            .entry(name)
            .or_insert(HeaderValue::from_static(value));
    }
}

/// The security headers of the gateway's own answers (its console, API docs, health
/// checks, 404s), which do not pass through [`secure`]: the API docs run Swagger UI's
/// own scripts and styles, the console its inline styles, anything else nothing.
pub async fn own_answers_secured(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let path = request.uri().path();
    let policy = if path.starts_with("/api/docs") {
        "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; \
         script-src 'self' 'unsafe-inline'; frame-ancestors 'none'"
    } else if path.starts_with("/console") {
        "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; \
         frame-ancestors 'none'"
    } else {
        "default-src 'none'; frame-ancestors 'none'"
    };
    let mut response = next.run(request).await;
    secure_with(response.headers_mut(), policy);
    response
}

/// The longest request target the gateway takes, about what browsers and CDNs take.
pub const MAX_URI: usize = 8 * 1024;

/// The most header bytes (names and values) the gateway takes in one request.
pub const MAX_HEADERS: usize = 32 * 1024;

/// Refuses a request whose target or headers are larger than any client of the shop
/// sends, with 414 or 431 and a problem saying which bound it broke, before it costs
/// a route, a token check or an upstream anything.
pub async fn heads_bounded(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    match head_refusal(&request) {
        Some(refused) => refused,
        None => next.run(request).await,
    }
}

/// The 414 or 431 answer to `request`, if its target or headers are too large.
fn head_refusal(request: &Request) -> Option<Response> {
    let target = request.uri();
    let uri = target
        .path_and_query()
        .map_or(0, |target| target.as_str().len())
        + target
            .authority()
            .map_or(0, |authority| authority.as_str().len());
    if uri > MAX_URI {
        return Some(
            Problem::new(
                StatusCode::URI_TOO_LONG,
                "uri-too-long",
                format!("the request target is {uri} bytes; the gateway takes at most {MAX_URI}"),
            )
            .into_response(),
        );
    }
    let headers: usize = request
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    if headers > MAX_HEADERS {
        return Some(
            Problem::new(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "headers-too-large",
                format!(
                    "the request's headers are {headers} bytes; the gateway takes at most \
                     {MAX_HEADERS}"
                ),
            )
            .into_response(),
        );
    }
    None
}

/// Rewrites the request headers for the upstream: hop-by-hop headers out, `Host` to the
/// upstream, `X-Forwarded-*` describing the client, and a `traceparent` continuing the
/// caller's trace or starting one.
fn prepare_headers(
    headers: &mut HeaderMap,
    peer: SocketAddr,
    authority: Option<&str>,
    trusted_proxies: &[platform::net::IpRange],
) {
    remove_hop_by_hop(headers);
    // The host the client asked for: `Host` in HTTP/1.1, the `:authority` in HTTP/2.
    // Whatever the client claims as `X-Forwarded-Host` is dropped.
    headers.remove(&FORWARDED_HOST);
    let host = headers
        .remove(header::HOST)
        .or_else(|| authority.and_then(|authority| HeaderValue::from_str(authority).ok()));
    if let Some(host) = host {
        headers.insert(FORWARDED_HOST, host);
    }
    // A trusted proxy's forwarded chain is extended; anyone else's claims are dropped,
    // so the services see the client the gateway saw.
    let peer_ip = peer.ip().to_string();
    let chain = headers
        .get_all(&FORWARDED_FOR)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .collect::<Vec<_>>()
        .join(", ");
    let forwarded = if platform::net::is_trusted(trusted_proxies, peer.ip()) && !chain.is_empty() {
        format!("{chain}, {peer_ip}")
    } else {
        peer_ip
    };
    headers.remove(&FORWARDED_FOR);
    if let Ok(value) = HeaderValue::from_str(&forwarded) {
        headers.insert(FORWARDED_FOR, value);
    }
    headers.insert(
        HeaderName::from_static("x-forwarded-proto"),
        HeaderValue::from_static("http"),
    );
    // The gateway's own span when spans are exported; otherwise a new span id under
    // the caller's trace, or a new trace.
    let traceparent = platform::telemetry::current_traceparent().unwrap_or_else(|| {
        headers
            .get(TRACEPARENT)
            .and_then(|value| value.to_str().ok())
            .and_then(continue_trace)
            .unwrap_or_else(start_trace)
    });
    headers.insert(
        TRACEPARENT,
        HeaderValue::from_str(&traceparent).expect("hex digits are a valid header"),
    );
}

/// A `traceparent` for a child of the caller's span, if the caller sent a valid one.
fn continue_trace(traceparent: &str) -> Option<String> {
    let parent = platform::telemetry::parse_traceparent(traceparent)?;
    Some(format!(
        "00-{}-{}-{:02x}",
        parent.trace_id(),
        new_span_id(),
        parent.trace_flags().to_u8()
    ))
}

/// A `traceparent` starting a new, sampled trace.
fn start_trace() -> String {
    format!("00-{:032x}-{}-01", fastrand::u128(1..), new_span_id())
}

fn new_span_id() -> String {
    format!("{:016x}", fastrand::u64(1..))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_valid_traceparent_is_continued_with_a_new_span() {
        let incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let next = continue_trace(incoming).expect("valid");
        assert!(next.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
        assert!(next.ends_with("-01"));
        assert_ne!(next, incoming);
    }

    #[test]
    fn a_started_trace_is_valid_and_an_invalid_one_is_not_continued() {
        assert_eq!(
            continue_trace("00-00000000000000000000000000000000-00f067aa0ba902b7-01"),
            None
        );
        let fresh = start_trace();
        assert!(continue_trace(&fresh).is_some(), "{fresh} is not valid");
    }

    #[test]
    fn the_track_is_asked_for_by_header_or_cookie() {
        let mut headers = HeaderMap::new();
        assert_eq!(asked_track(&headers), None);
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; bazaar-track=green"),
        );
        assert_eq!(asked_track(&headers).as_deref(), Some("green"));
        headers.insert(TRACK_HEADER, HeaderValue::from_static("blue"));
        assert_eq!(asked_track(&headers).as_deref(), Some("blue"));
    }
}
