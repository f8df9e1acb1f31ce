//! Forwarding a request to the upstream service that owns its path.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::{PathAndQuery, Scheme, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use platform::problem::Problem;

use platform::auth::{AuthError, Verifier, bearer_token};

use crate::config::{Config, ProtectRule, UpstreamUrl};

/// The W3C trace context header.
pub const TRACEPARENT: &str = "traceparent";

/// The forwarding state shared by every request: upstreams and one connection pool.
#[derive(Clone)]
pub struct Proxy {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client<HttpConnector, Body>,
    upstreams: HashMap<String, UpstreamUrl>,
    timeout: Duration,
    protected: Vec<ProtectRule>,
    verifier: Verifier,
}

impl Proxy {
    /// A proxy over the configured upstreams.
    pub fn new(config: &Config, verifier: Verifier) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_millis(config.connect_timeout_ms)));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(256)
            .build(connector);
        let upstreams = config
            .upstreams
            .iter()
            .map(|(name, url)| (name.clone(), url.clone()))
            .collect();
        Self {
            inner: Arc::new(Inner {
                client,
                upstreams,
                timeout: Duration::from_millis(config.upstream_timeout_ms),
                protected: config.protected.clone(),
                verifier,
            }),
        }
    }
}

/// Forwards `/api/<service>/<rest>` to `<service>/<rest>`.
pub async fn forward(
    State(proxy): State<Proxy>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    let (mut parts, body) = request.into_parts();
    // HTTP/2 carries the host in the URI (`:authority`), not in a `Host` header.
    let authority = parts.uri.authority().map(ToString::to_string);
    if let Err(problem) = proxy.check_access(&parts).await {
        return problem.into_response();
    }
    let Some((service, path_and_query)) = split_service(&parts.uri) else {
        return Problem::not_found("no such route").into_response();
    };
    let Some(upstream) = proxy.inner.upstreams.get(service) else {
        return Problem::not_found(format!("no service {service:?} behind /api")).into_response();
    };
    let service = service.to_owned();
    let mut uri = Uri::builder()
        .scheme(Scheme::HTTP)
        .authority(upstream.authority().clone());
    if let Some(path_and_query) = path_and_query {
        uri = uri.path_and_query(path_and_query);
    }
    parts.uri = match uri.build() {
        Ok(uri) => uri,
        Err(_) => {
            return Problem::bad_request("the request target cannot be forwarded").into_response();
        }
    };
    // Clients may speak HTTP/2 to the gateway; upstreams are reached over pooled
    // HTTP/1.1 connections, whatever the client spoke.
    parts.version = http::Version::HTTP_11;
    prepare_headers(&mut parts.headers, peer, authority.as_deref());
    let request = Request::from_parts(parts, body);

    match tokio::time::timeout(proxy.inner.timeout, proxy.inner.client.request(request)).await {
        Ok(Ok(response)) => {
            let (mut parts, body) = response.into_parts();
            remove_hop_by_hop(&mut parts.headers);
            Response::from_parts(parts, Body::new(body))
        }
        Ok(Err(error)) => {
            tracing::warn!(upstream = service, error = %error, "upstream unreachable");
            Problem::new(
                StatusCode::BAD_GATEWAY,
                "upstream-unavailable",
                format!("the {service} service is unavailable"),
            )
            .into_response()
        }
        Err(_) => {
            tracing::warn!(upstream = service, timeout = ?proxy.inner.timeout, "upstream timed out");
            Problem::new(
                StatusCode::GATEWAY_TIMEOUT,
                "upstream-timeout",
                format!(
                    "the {service} service did not answer within {} ms",
                    proxy.inner.timeout.as_millis()
                ),
            )
            .into_response()
        }
    }
}

impl Proxy {
    /// Refuses a request to a protected route without a valid token or the role.
    async fn check_access(&self, parts: &http::request::Parts) -> Result<(), Problem> {
        let path = parts.uri.path();
        let Some(rule) = self
            .inner
            .protected
            .iter()
            .find(|rule| rule.matches(&parts.method, path))
        else {
            return Ok(());
        };
        let token = bearer_token(&parts.headers)?;
        let claims = self.inner.verifier.verify(token).await?;
        match rule.role {
            Some(role) if !claims.roles.contains(&role) => {
                Err(AuthError::Forbidden(role.as_str()).into())
            }
            _ => Ok(()),
        }
    }
}

/// Splits `/api/catalog/products?limit=5` into `catalog` and `/products?limit=5`.
fn split_service(uri: &Uri) -> Option<(&str, Option<PathAndQuery>)> {
    let rest = uri.path().strip_prefix("/api/")?;
    let (service, path) = match rest.find('/') {
        Some(slash) => (&rest[..slash], &rest[slash..]),
        None => (rest, "/"),
    };
    if service.is_empty() {
        return None;
    }
    let target = match uri.query() {
        Some(query) => format!("{path}?{query}"),
        None => path.to_owned(),
    };
    Some((service, target.parse().ok()))
}

const FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

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

/// Rewrites the request headers for the upstream: hop-by-hop headers out, `Host` to the
/// upstream, `X-Forwarded-*` describing the client, and a `traceparent` continuing the
/// caller's trace or starting one.
fn prepare_headers(headers: &mut HeaderMap, peer: SocketAddr, authority: Option<&str>) {
    remove_hop_by_hop(headers);
    // The host the client asked for: `Host` in HTTP/1.1, the `:authority` in HTTP/2.
    // Whatever the client claims as `X-Forwarded-Host` is dropped, like every other
    // forwarded header it sends.
    let forwarded_host = FORWARDED_HOST.clone();
    headers.remove(&forwarded_host);
    let host = headers
        .remove(header::HOST)
        .or_else(|| authority.and_then(|authority| HeaderValue::from_str(authority).ok()));
    if let Some(host) = host {
        headers.insert(forwarded_host, host);
    }
    // The gateway is the edge: what a client claims about earlier hops is not trusted.
    headers.insert(
        HeaderName::from_static("x-forwarded-for"),
        HeaderValue::from_str(&peer.ip().to_string()).expect("an IP address is a valid header"),
    );
    headers.insert(
        HeaderName::from_static("x-forwarded-proto"),
        HeaderValue::from_static("http"),
    );
    let traceparent = headers
        .get(TRACEPARENT)
        .and_then(|value| value.to_str().ok())
        .and_then(continue_trace)
        .unwrap_or_else(start_trace);
    headers.insert(
        TRACEPARENT,
        HeaderValue::from_str(&traceparent).expect("hex digits are a valid header"),
    );
}

/// A `traceparent` for a child of the caller's span, if the caller sent a valid one.
fn continue_trace(traceparent: &str) -> Option<String> {
    let mut fields = traceparent.split('-');
    let (version, trace_id, parent_id, flags) = (
        fields.next()?,
        fields.next()?,
        fields.next()?,
        fields.next()?,
    );
    let hex = |text: &str, len| {
        text.len() == len && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    };
    let valid = version == "00"
        && fields.next().is_none()
        && hex(trace_id, 32)
        && trace_id.bytes().any(|b| b != b'0')
        && hex(parent_id, 16)
        && parent_id.bytes().any(|b| b != b'0')
        && hex(flags, 2);
    valid.then(|| format!("00-{trace_id}-{}-{flags}", new_span_id()))
}

/// A `traceparent` starting a new, sampled trace.
fn start_trace() -> String {
    format!("00-{}-{}-01", uuid::Uuid::new_v4().simple(), new_span_id())
}

fn new_span_id() -> String {
    let bytes = uuid::Uuid::new_v4();
    format!("{:016x}", bytes.as_u64_pair().0 | 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_service_is_the_first_segment_after_api() {
        let uri: Uri = "/api/catalog/products?limit=5".parse().expect("valid");
        let (service, target) = split_service(&uri).expect("routable");
        assert_eq!(service, "catalog");
        assert_eq!(target.expect("valid").as_str(), "/products?limit=5");
        let uri: Uri = "/api/catalog".parse().expect("valid");
        assert_eq!(
            split_service(&uri).map(|(s, t)| (s, t.map(|t| t.to_string()))),
            Some(("catalog", Some("/".to_owned())))
        );
        assert!(split_service(&"/api/".parse().expect("valid")).is_none());
        assert!(split_service(&"/other".parse().expect("valid")).is_none());
    }

    #[test]
    fn a_valid_traceparent_is_continued_with_a_new_span() {
        let incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let next = continue_trace(incoming).expect("valid");
        assert!(next.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
        assert!(next.ends_with("-01"));
        assert_ne!(next, incoming);
    }

    #[test]
    fn invalid_traceparents_start_a_new_trace() {
        for bad in [
            "",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        ] {
            assert_eq!(continue_trace(bad), None, "{bad:?} accepted");
        }
        let fresh = start_trace();
        assert!(continue_trace(&fresh).is_some(), "{fresh} is not valid");
    }
}
