//! What a service is started with, and what it hands back to be run.
//!
//! A service's `build` takes its own `Config` and a [`Context`] (what the shop shares:
//! the bus, the token verifier, the shutdown signal) and returns a [`Service`]: the
//! router to serve and the workers (outbox relay, consumers) to run beside it until
//! shutdown. Building does the fallible work (connect, migrate); nothing runs until the
//! caller spawns the workers and serves the router.

use std::sync::Arc;

use axum::Router;
use futures_util::future::BoxFuture;

use crate::auth::Verifier;
use crate::bus::Bus;
use crate::shutdown::Shutdown;

/// What every service shares with the others in its process.
#[derive(Clone)]
pub struct Context {
    /// The message bus.
    pub bus: Arc<dyn Bus>,
    /// Checks access tokens against identity's keys.
    pub verifier: Verifier,
    /// Fires when the process stops; workers return on it.
    pub shutdown: Shutdown,
}

/// A built service.
pub struct Service {
    /// Its HTTP and gRPC routes, health and metrics.
    pub router: Router,
    /// Background work, each future returning once shutdown fired.
    pub workers: Vec<BoxFuture<'static, ()>>,
}

impl Service {
    /// A service that only serves requests.
    pub fn serving(router: Router) -> Self {
        Self {
            router,
            workers: Vec::new(),
        }
    }
}
