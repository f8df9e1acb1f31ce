//! Mounting tonic gRPC services on a service's HTTP port, with deadlines.
//!
//! Each service serves REST and gRPC on one port: a gRPC service is routed by its
//! `/package.Service/` path prefix. A client's `grpc-timeout` is honoured, and capped, so a
//! caller's deadline also bounds the work done for it here.
//!
//! [`channel`] is the client side: a lazily connecting channel to another service with
//! a connect timeout and a per-call deadline.
//!
//! No call is trusted for where it comes from. A method that reads a customer's data
//! is made on the customer's behalf: the caller forwards the access token of the
//! request it is serving ([`on_behalf_of`]), and the method verifies it like any
//! client request and answers only for that customer ([`authorize_for`]). So a caller
//! reaches only the data of customers who are asking it for something now, and a
//! client that reaches a service's port directly gains nothing over its REST API. The
//! gateway forwards no gRPC at all.

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

/// `message` as a call made for the customer whose access token is `bearer` (the
/// token of the request being served, as it arrived).
pub fn on_behalf_of<T>(message: T, bearer: &str) -> Result<tonic::Request<T>, tonic::Status> {
    let mut request = tonic::Request::new(message);
    let value = tonic::metadata::MetadataValue::try_from(format!("Bearer {bearer}"))
        .map_err(|_| tonic::Status::unauthenticated("the access token is not text"))?;
    request.metadata_mut().insert("authorization", value);
    Ok(request)
}

/// The user a call is made for, verified from its `authorization` metadata with the
/// service's [`Verifier`](crate::auth::Verifier) (the same extension its REST routes
/// use); refused unless that user is `customer_id` or an admin. A missing or bad
/// token is `UNAUTHENTICATED`, another customer's `PERMISSION_DENIED`.
pub async fn authorize_for<T>(
    request: &tonic::Request<T>,
    customer_id: &str,
) -> Result<crate::auth::AuthUser, tonic::Status> {
    let Some(verifier) = request.extensions().get::<crate::auth::Verifier>() else {
        tracing::error!("no Verifier in a gRPC request's extensions; add the layer");
        return Err(tonic::Status::internal("the service cannot verify callers"));
    };
    let token = request
        .metadata()
        .get("authorization")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| {
            let (scheme, token) = value.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        })
        .filter(|token| !token.is_empty())
        .ok_or_else(|| {
            tonic::Status::unauthenticated(
                "this method is called on a customer's behalf: send their bearer token",
            )
        })?;
    let claims = verifier
        .verify(token)
        .await
        .map_err(|error| tonic::Status::unauthenticated(error.to_string()))?;
    let user = crate::auth::AuthUser {
        id: claims.sub,
        roles: claims.roles,
    };
    if user.id != customer_id && !user.is_admin() {
        return Err(tonic::Status::permission_denied(
            "the token is not the customer's whose data is asked for",
        ));
    }
    Ok(user)
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
