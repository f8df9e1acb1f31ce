//! The inbox: consuming messages with effectively-once effects.
//!
//! A handler's effects and the record that the message was handled commit in one
//! transaction. A message delivered again (the ack was lost, the consumer crashed after
//! commit, the producer's relay published it twice) finds its record and is only
//! acknowledged.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use contracts::messaging::Envelope;
use futures_util::future::BoxFuture;
use tracing::Instrument as _;

use crate::bus::{Bus, Subscription, SubscriptionSpec, backoff};
use crate::clock::now_ms;
use crate::db::Database;
use crate::shutdown::Shutdown;

/// Applies one message's effects inside the transaction it is given.
pub trait Handler: Send + Sync + 'static {
    /// Applies `envelope`. An error rolls the transaction back and the message is
    /// delivered again later.
    fn handle<'a>(
        &'a self,
        connection: &'a mut sqlx::AnyConnection,
        envelope: &'a Envelope,
    ) -> BoxFuture<'a, anyhow::Result<()>>;
}

/// What became of one message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Its effects were applied now.
    Applied,
    /// It had been handled before; nothing was done.
    Duplicate,
    /// The handler failed; the message will come again.
    Failed,
}

/// Applies `envelope` through `handler` unless subscription `subscription` handled it
/// before, recording it in the same transaction as the effects.
pub async fn apply(
    db: &Database,
    subscription: &str,
    envelope: &Envelope,
    handler: &dyn Handler,
) -> anyhow::Result<Outcome> {
    let mut tx = db
        .pool()
        .begin()
        .await
        .context("starting an inbox transaction")?;
    let first = sqlx::query(
        "INSERT INTO inbox (subscription, message_id, handled_at) VALUES ($1, $2, $3) \
         ON CONFLICT (subscription, message_id) DO NOTHING",
    )
    .bind(subscription.to_owned())
    .bind(envelope.id.clone())
    .bind(now_ms())
    .execute(&mut *tx)
    .await
    .context("recording a message in the inbox")?
    .rows_affected()
        == 1;
    if !first {
        tx.rollback().await?;
        return Ok(Outcome::Duplicate);
    }
    handler.handle(&mut tx, envelope).await?;
    tx.commit().await.context("committing a handled message")?;
    Ok(Outcome::Applied)
}

/// How long a handled message is remembered. A redelivery comes within an ack wait, or
/// after a broker outage within its deduplication window; a week is far beyond both.
pub const RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// Forgets messages handled before `before_ms` (Unix ms); returns how many.
pub async fn prune(db: &Database, before_ms: i64) -> anyhow::Result<u64> {
    let deleted = sqlx::query("DELETE FROM inbox WHERE handled_at < $1")
        .bind(before_ms)
        .execute(db.pool())
        .await
        .context("pruning the inbox")?
        .rows_affected();
    Ok(deleted)
}

/// One consumer of a durable subscription, applying messages through the inbox.
pub struct Consumer {
    db: Database,
    bus: Arc<dyn Bus>,
    name: String,
    subscription: Box<dyn Subscription>,
    handler: Arc<dyn Handler>,
}

impl Consumer {
    /// Subscribes to `spec` on `bus`, applying messages with `handler` in `db`.
    pub async fn new(
        db: Database,
        bus: Arc<dyn Bus>,
        spec: &SubscriptionSpec,
        handler: Arc<dyn Handler>,
    ) -> anyhow::Result<Self> {
        let subscription = bus.subscribe(spec).await?;
        Ok(Self {
            db,
            bus,
            name: spec.name.clone(),
            subscription,
            handler,
        })
    }

    /// Records the subscription's lag (messages not yet acknowledged) as a gauge.
    pub fn record_lag(&self) -> BoxFuture<'static, anyhow::Result<u64>> {
        // Owned copies, so the future does not borrow the consumer across the await.
        let (bus, name) = (self.bus.clone(), self.name.clone());
        Box::pin(async move {
            let pending = bus.pending(&name).await?;
            metrics::gauge!("bus_consumer_pending", "subscription" => name).set(pending as f64);
            Ok(pending)
        })
    }

    /// Handles the next message, waiting up to `wait` for one; `None` if none came.
    /// Acknowledges it once its effects are committed (or it was a duplicate), refuses
    /// it with backoff if the handler failed.
    pub async fn consume_once(&mut self, wait: Duration) -> anyhow::Result<Option<Outcome>> {
        let Some(delivery) = self.subscription.next(wait).await? else {
            return Ok(None);
        };
        let attempt = delivery.attempt;
        // The span carries the producer's correlation id and trace context, so the
        // consumer's logs join the request that caused the message.
        let envelope = &delivery.envelope;
        let span = tracing::info_span!(
            "message",
            subscription = self.name,
            kind = envelope.kind,
            id = envelope.id,
            attempt = delivery.attempt,
            correlation_id = envelope.correlation_id,
            traceparent = envelope.traceparent.as_deref().unwrap_or_default(),
        );
        let outcome = apply(&self.db, &self.name, envelope, self.handler.as_ref())
            .instrument(span)
            .await;
        let outcome = match outcome {
            Ok(outcome) => {
                delivery.ack().await?;
                outcome
            }
            Err(error) => {
                tracing::warn!(
                    subscription = self.name,
                    message = delivery.envelope.id,
                    kind = delivery.envelope.kind,
                    attempt = delivery.attempt,
                    "handling a message failed: {error:#}"
                );
                let delay = backoff(delivery.attempt);
                delivery.nack(delay).await?;
                Outcome::Failed
            }
        };
        if attempt > 1 {
            metrics::counter!("messages_redelivered_total", "subscription" => self.name.clone())
                .increment(1);
        }
        let label = match outcome {
            Outcome::Applied => "applied",
            Outcome::Duplicate => "duplicate",
            Outcome::Failed => "failed",
        };
        metrics::counter!("messages_handled_total", "subscription" => self.name.clone(), "outcome" => label).increment(1);
        Ok(Some(outcome))
    }

    /// Consumes until `shutdown`, backing off while the bus fails, and forgets handled
    /// messages older than [`RETENTION`] once an hour.
    pub async fn run(mut self, shutdown: Shutdown) {
        let mut failures = 0_u32;
        let mut last_prune: Option<tokio::time::Instant> = None;
        while !shutdown.is_triggered() {
            if last_prune.is_none_or(|at| at.elapsed() > Duration::from_secs(3600)) {
                last_prune = Some(tokio::time::Instant::now());
                let retention = i64::try_from(RETENTION.as_millis()).unwrap_or(i64::MAX);
                if let Err(error) = prune(&self.db, now_ms().saturating_sub(retention)).await {
                    tracing::warn!(
                        subscription = self.name,
                        "pruning the inbox failed: {error:#}"
                    );
                }
            }
            tokio::select! {
                () = shutdown.wait() => return,
                outcome = self.consume_once(Duration::from_secs(1)) => match outcome {
                    Ok(handled) => {
                        failures = 0;
                        // Idle: a good moment to measure how far behind it is.
                        if handled.is_none() && let Err(error) = self.record_lag().await {
                            tracing::debug!(subscription = self.name, "measuring lag failed: {error:#}");
                        }
                    }
                    Err(error) => {
                        failures = failures.saturating_add(1);
                        tracing::warn!(subscription = self.name, "consuming failed: {error:#}");
                        tokio::select! {
                            () = shutdown.wait() => return,
                            () = tokio::time::sleep(backoff(failures)) => {}
                        }
                    }
                },
            }
        }
    }
}
