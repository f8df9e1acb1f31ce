//! What a service is started with, and what it hands back to be run.
//!
//! A service's `build` takes its own `Config` and a [`Context`] (what the shop shares:
//! the bus, the token verifier, the shutdown signal) and returns a [`Service`]: the
//! router to serve and the workers (outbox relay, consumers) to run beside it until
//! shutdown. Building does the fallible work (connect, migrate); nothing runs until the
//! caller spawns the workers and serves the router. [`every`] is the worker that does a
//! step at a fixed period (an expiry sweep, a deadline check).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use futures_util::future::BoxFuture;

use crate::auth::Verifier;
use crate::bus::Bus;
use crate::config::DatabaseUrl;
use crate::db::{Database, PoolSettings};
use crate::flags::Flags;
use crate::http::{AppOptions, Readiness};
use crate::outbox::Waker;
use crate::shutdown::Shutdown;

/// What every service shares with the others in its process.
#[derive(Clone)]
pub struct Context {
    /// The message bus.
    pub bus: Arc<dyn Bus>,
    /// Checks access tokens against identity's keys.
    pub verifier: Verifier,
    /// The feature flags in use, the same for every service of the process.
    pub flags: Flags,
    /// Fires when the process stops; workers return on it.
    pub shutdown: Shutdown,
}

impl Context {
    /// [`crate::http::app`] for `service`, its routes behind the door of the fault flags
    /// ([`crate::faults`]): what every service serves.
    pub fn app(&self, service: &'static str, routes: Router, readiness: Readiness) -> Router {
        crate::http::app_with(service, routes, readiness, self.options(service))
    }

    /// `service`'s own database ([`Database::open`]), which the fault flag
    /// `<service>-db-delay-ms` can slow ([`crate::faults::SlowDatabase`]).
    pub async fn database(
        &self,
        service: &'static str,
        url: Option<&DatabaseUrl>,
        max_connections: u32,
    ) -> anyhow::Result<Database> {
        let settings = PoolSettings {
            max_connections,
            slowdown: Some(crate::faults::SlowDatabase::new(
                service,
                self.flags.clone(),
            )),
            ..PoolSettings::default()
        };
        Database::open_with(service, url, settings).await
    }

    /// The default [`AppOptions`] of `service`, with its fault door: for a service that
    /// changes other options.
    pub fn options(&self, service: &'static str) -> AppOptions {
        AppOptions {
            door: Some(crate::faults::Door::new(service, self.flags.clone())),
            ..AppOptions::default()
        }
    }
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

/// Runs `step` now and then every `period` until `shutdown` fires: a periodic worker.
///
/// `step` returns how many things it did. A step that did something is logged and wakes
/// the outbox relay through `waker` (its writes may have enqueued messages; pass
/// [`Waker::none`] when it enqueues none); a failed step is logged and tried again at the
/// next period, so a passing outage never stops the worker. `name` says what the step
/// does, e.g. `"releasing expired reservations"`, and names the worker in logs.
pub async fn every<Step, Fut>(
    name: &'static str,
    period: Duration,
    shutdown: Shutdown,
    waker: Waker,
    mut step: Step,
) where
    Step: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<usize>>,
{
    while !shutdown.is_triggered() {
        match step().await {
            Ok(0) => {}
            Ok(count) => {
                tracing::info!(worker = name, count, "{name}: {count} done");
                waker.wake();
            }
            Err(error) => tracing::warn!(worker = name, "{name} failed: {error:#}"),
        }
        tokio::select! {
            () = shutdown.wait() => return,
            () = tokio::time::sleep(period) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_periodic_worker_steps_through_failures_until_shutdown() {
        let shutdown = Shutdown::new();
        let mut steps = 0;
        every(
            "counting",
            Duration::ZERO,
            shutdown.clone(),
            Waker::none(),
            || {
                steps += 1;
                let steps = steps;
                let shutdown = shutdown.clone();
                async move {
                    if steps == 3 {
                        shutdown.trigger();
                    }
                    if steps == 1 {
                        anyhow::bail!("a passing outage");
                    }
                    Ok(steps)
                }
            },
        )
        .await;
        assert_eq!(
            steps, 3,
            "the worker steps past a failure and stops on shutdown"
        );
    }

    #[tokio::test]
    async fn a_worker_told_to_stop_before_it_starts_does_nothing() {
        let shutdown = Shutdown::new();
        shutdown.trigger();
        let mut steps = 0;
        every("idle", Duration::ZERO, shutdown, Waker::none(), || {
            steps += 1;
            async { Ok(0) }
        })
        .await;
        assert_eq!(steps, 0);
    }
}
