//! Mounting tonic gRPC services on a service's HTTP port, with deadlines.
//!
//! Each service serves REST and gRPC on one port: a gRPC service is routed by its
//! `/package.Service/` path prefix. A client's `grpc-timeout` is honoured, and capped, so a
//! caller's deadline also bounds the work done for it here.
//!
//! [`channel`] is the client side: a lazily connecting channel to another service with
//! a connect timeout and a per-call deadline.

use std::convert::Infallible;
use std::time::Duration;

use tonic::service::interceptor::InterceptedService;

use axum::Router;
use axum::extract::Request;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use tonic::server::NamedService;
use tower::{Service, ServiceExt};

/// The longest a gRPC call may run, whatever deadline the client asked for.
pub const MAX_DEADLINE: Duration = Duration::from_secs(30);

/// Adds the gRPC service `svc` to `router`.
pub fn mount<S>(router: Router, svc: S) -> Router
where
    S: Service<http::Request<tonic::body::Body>, Error = Infallible>
        + NamedService
        + Clone
        + Send
        + Sync
        + 'static,
    S::Response: IntoResponse,
    S::Future: Send + 'static,
{
    let svc = svc.map_request(|request: Request| request.map(tonic::body::Body::new));
    let grpc = Router::new()
        .route_service(&format!("/{}/{{*method}}", S::NAME), svc)
        .layer(middleware::from_fn(enforce_deadline));
    router.merge(grpc)
}

async fn enforce_deadline(request: Request, next: Next) -> Response {
    let deadline = request
        .headers()
        .get("grpc-timeout")
        .and_then(|value| value.to_str().ok())
        .and_then(parse_grpc_timeout)
        .map_or(MAX_DEADLINE, |asked| asked.min(MAX_DEADLINE));
    match tokio::time::timeout(deadline, next.run(request)).await {
        Ok(response) => response,
        Err(_) => tonic::Status::deadline_exceeded(format!("deadline of {deadline:?} exceeded"))
            .into_http(),
    }
}

/// A channel to the service at `url` (`http://host:port`). It connects on first use and
/// reconnects after failures; every call on it fails after `deadline`, which is also
/// sent as `grpc-timeout` so the server stops working for a caller that gave up.
pub fn channel(url: &str, deadline: Duration) -> anyhow::Result<TracedChannel> {
    let endpoint = tonic::transport::Endpoint::from_shared(url.to_owned())
        .map_err(|error| anyhow::anyhow!("{url:?} is not a gRPC URL: {error}"))?
        .connect_timeout(deadline.min(Duration::from_secs(1)))
        .timeout(deadline)
        .tcp_nodelay(true);
    Ok(InterceptedService::new(
        endpoint.connect_lazy(),
        with_trace_context as TraceContext,
    ))
}

/// The interceptor of [`TracedChannel`].
pub type TraceContext = fn(tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status>;

/// A channel whose calls carry the calling span as `traceparent` metadata, so the
/// server's span joins the caller's trace.
pub type TracedChannel = InterceptedService<tonic::transport::Channel, TraceContext>;

fn with_trace_context(
    mut request: tonic::Request<()>,
) -> Result<tonic::Request<()>, tonic::Status> {
    if let Some(value) = crate::telemetry::current_traceparent()
        .and_then(|traceparent| tonic::metadata::MetadataValue::try_from(traceparent).ok())
    {
        request.metadata_mut().insert("traceparent", value);
    }
    Ok(request)
}

/// Parses the `grpc-timeout` header: up to 8 digits and a unit (H, M, S, m, u, n).
fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    if value.len() < 2 || value.len() > 9 {
        return None;
    }
    let (digits, unit) = value.split_at(value.len() - 1);
    let amount: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(amount.checked_mul(3600)?),
        "M" => Duration::from_secs(amount.checked_mul(60)?),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts_parse_in_every_unit() {
        assert_eq!(parse_grpc_timeout("5S"), Some(Duration::from_secs(5)));
        assert_eq!(parse_grpc_timeout("250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse_grpc_timeout("2M"), Some(Duration::from_secs(120)));
        assert_eq!(parse_grpc_timeout("10u"), Some(Duration::from_micros(10)));
        assert_eq!(parse_grpc_timeout("S"), None);
        assert_eq!(parse_grpc_timeout("123456789S"), None);
        assert_eq!(parse_grpc_timeout("5x"), None);
    }
}
