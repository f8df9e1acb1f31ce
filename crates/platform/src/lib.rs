//! The chassis every Bazaar service stands on.
//!
//! It holds only what every service needs in the same way, and no domain types:
//!
//! - [`config`]: typed, layered configuration (defaults → TOML file → `BAZAAR__` environment),
//!   read once in `main`, and the [`config::DatabaseUrl`] that redacts its password.
//! - [`telemetry`]: logs (pretty or JSON) and the process-wide Prometheus recorder.
//! - [`problem`]: errors as `application/problem+json` (RFC 9457); the only error body a
//!   client ever sees.
//! - [`http`]: one function that turns a service's routes into a served app with request ids,
//!   a tracing span and RED metrics per request, health endpoints, `/metrics`, and
//!   extractors whose rejections are problems, plus [`http::serve`] with graceful shutdown.
//! - [`grpc`]: mounting tonic services on the same port as the REST API, with deadlines.
//! - [`db`]: one connection pool type for SQLite (embedded mode) and PostgreSQL (distributed
//!   mode), chosen by URL, with embedded migrations.
//! - [`shutdown`]: the signal every server and worker waits on.
//! - [`auth`]: access token verification against identity's JWKS, and the
//!   [`auth::AuthUser`] and [`auth::Admin`] extractors.

pub mod auth;
pub mod config;
pub mod db;
pub mod grpc;
pub mod http;
pub mod problem;
pub mod shutdown;
pub mod telemetry;
