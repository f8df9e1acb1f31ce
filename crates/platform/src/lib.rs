//! The chassis every Bazaar service stands on.
//!
//! It holds only what every service needs in the same way, and no domain types:
//!
//! - [`clock`]: the wall clock in stored units (Unix milliseconds and seconds).
//! - [`config`]: typed, layered configuration (defaults → TOML file → `BAZAAR__` environment),
//!   read once in `main`, and the [`config::DatabaseUrl`] that redacts its password
//!   ([`config::redact_password`]).
//! - [`telemetry`]: logs (pretty or JSON) and the process-wide Prometheus recorder.
//! - [`problem`]: errors as `application/problem+json` (RFC 9457); the only error body a
//!   client ever sees.
//! - [`http`]: one function that turns a service's routes into a served app with request ids,
//!   a tracing span and RED metrics per request, health endpoints, `/metrics`, and
//!   extractors whose rejections are problems, plus [`http::serve`] with graceful shutdown.
//! - [`net`]: trusted proxy ranges and the client address behind them.
//! - [`page`]: the page size (`limit`) every listing endpoint parses the same way.
//! - [`grpc`]: mounting tonic services on the same port as the REST API, with deadlines.
//! - [`db`]: one connection pool type for SQLite (embedded mode) and PostgreSQL (distributed
//!   mode), chosen by URL, with embedded migrations.
//! - [`shutdown`]: the signal every server and worker waits on.
//! - [`service`]: the [`service::Context`] a service is built with, the
//!   [`service::Service`] (router and workers) it returns, and [`service::every`], the
//!   periodic worker.
//! - [`bus`]: the message bus interface and its embedded and JetStream adapters.
//! - [`outbox`] and [`inbox`]: publishing state changes' messages from the same
//!   transaction, and consuming messages with effectively-once effects.
//! - [`faults`]: a service down, failing or slow on a flag, at its own door.
//! - [`flags`]: feature flags in the OpenFeature flagd format, evaluated in process and
//!   reloaded when their file changes.
//! - [`auth`]: access token verification against identity's JWKS, and the
//!   [`auth::AuthUser`] and [`auth::Admin`] extractors.

pub mod auth;
pub mod bus;
pub mod clock;
pub mod config;
pub mod db;
pub mod faults;
pub mod flags;
pub mod grpc;
pub mod http;
pub mod inbox;
pub mod net;
pub mod outbox;
pub mod page;
pub mod problem;
pub mod service;
pub mod shutdown;
pub mod telemetry;
