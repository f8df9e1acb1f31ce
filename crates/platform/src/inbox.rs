//! The inbox: consuming messages with effectively-once effects.
//!
//! A handler's effects and the record that the message was handled commit in one
//! transaction. A message delivered again (the ack was lost, the consumer crashed after
//! commit, the producer's relay published it twice) finds its record and is only
//! acknowledged.
//!
//! How a delivery is traced ([`message_span`]), settled and counted ([`settle`]), and
//! how a consumer is run ([`consume_until`]) is the same for every consumer, also for
//! those that deduplicate otherwise than through [`apply`].

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use contracts::messaging::Envelope;
use futures_util::future::BoxFuture;
use tracing::Instrument as _;

use crate::bus::{Bus, Delivery, Subscription, SubscriptionSpec, backoff};
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
    let mut tx = db.begin().await.context("starting an inbox transaction")?;
    let outcome = record_and_handle(&mut tx, subscription, envelope, handler).await?;
    if outcome == Outcome::Applied {
        tx.commit().await.context("committing a handled message")?;
    } else {
        tx.rollback().await?;
    }
    Ok(outcome)
}

/// Applies each of `deliveries` as [`apply`] would, with one commit for all, and returns
/// each message's outcome, in order.
///
/// One commit per batch is what makes a busy consumer cheap: on SQLite a commit, and
/// each statement, is most of a small message's cost, and the database has one writer
/// at a time. The batch first runs in one transaction as it is; should a handler fail
/// there, it is all undone and run again with each message in a savepoint of its own,
/// so that a failing handler undoes only its message's effects and only it fails.
/// Should the commit fail, every message fails with it and none of their effects stays.
pub async fn apply_all(
    db: &Database,
    subscription: &str,
    deliveries: &[Delivery],
    handler: &dyn Handler,
) -> Vec<anyhow::Result<Outcome>> {
    if let [delivery] = deliveries {
        let outcome = apply(db, subscription, &delivery.envelope, handler)
            .instrument(message_span(subscription, delivery))
            .await;
        return vec![outcome];
    }
    match apply_together(db, subscription, deliveries, handler).await {
        Ok(outcomes) => outcomes.into_iter().map(Ok).collect(),
        Err(_) => apply_apart(db, subscription, deliveries, handler).await,
    }
}

/// Every delivery in one transaction, failing as a whole if any one fails.
async fn apply_together(
    db: &Database,
    subscription: &str,
    deliveries: &[Delivery],
    handler: &dyn Handler,
) -> anyhow::Result<Vec<Outcome>> {
    let mut tx = db.begin().await.context("starting an inbox transaction")?;
    let mut outcomes = Vec::with_capacity(deliveries.len());
    for delivery in deliveries {
        outcomes.push(
            record_and_handle(&mut tx, subscription, &delivery.envelope, handler)
                .instrument(message_span(subscription, delivery))
                .await?,
        );
    }
    tx.commit().await.context("committing handled messages")?;
    Ok(outcomes)
}

/// Every delivery in one transaction, each in a savepoint of its own.
async fn apply_apart(
    db: &Database,
    subscription: &str,
    deliveries: &[Delivery],
    handler: &dyn Handler,
) -> Vec<anyhow::Result<Outcome>> {
    let mut outcomes = Vec::with_capacity(deliveries.len());
    let committed = async {
        let mut tx = db.begin().await.context("starting an inbox transaction")?;
        for delivery in deliveries {
            let outcome = async {
                let mut savepoint = sqlx::Connection::begin(&mut *tx)
                    .await
                    .context("starting a message's savepoint")?;
                let outcome =
                    record_and_handle(&mut savepoint, subscription, &delivery.envelope, handler)
                        .await;
                match outcome {
                    Ok(outcome) => {
                        savepoint
                            .commit()
                            .await
                            .context("keeping a message's effects")?;
                        Ok(outcome)
                    }
                    Err(error) => {
                        savepoint.rollback().await?;
                        Err(error)
                    }
                }
            }
            .instrument(message_span(subscription, delivery))
            .await;
            outcomes.push(outcome);
        }
        tx.commit().await.context("committing handled messages")
    }
    .await;
    match committed {
        Ok(()) => outcomes,
        Err(error) => deliveries
            .iter()
            .map(|_| Err(anyhow::anyhow!("{error:#}")))
            .collect(),
    }
}

/// Records `envelope` in the inbox and applies it, on a connection inside a
/// transaction; [`Outcome::Duplicate`] if it was handled before, and then nothing was
/// done.
async fn record_and_handle(
    connection: &mut sqlx::AnyConnection,
    subscription: &str,
    envelope: &Envelope,
    handler: &dyn Handler,
) -> anyhow::Result<Outcome> {
    let first = sqlx::query(
        "INSERT INTO inbox (subscription, message_id, handled_at) VALUES ($1, $2, $3) \
         ON CONFLICT (subscription, message_id) DO NOTHING",
    )
    .bind(subscription.to_owned())
    .bind(envelope.id.clone())
    .bind(now_ms())
    .execute(&mut *connection)
    .await
    .context("recording a message in the inbox")?
    .rows_affected()
        == 1;
    if !first {
        return Ok(Outcome::Duplicate);
    }
    handler.handle(connection, envelope).await?;
    Ok(Outcome::Applied)
}

/// The most messages a [`Consumer`] handles in one transaction.
pub const BATCH: usize = 64;

/// How long a handled message is remembered. A redelivery comes within an ack wait, or
/// after a broker outage within its deduplication window; a week is far beyond both.
pub const RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// Forgets messages handled before `before_ms` (Unix ms); returns how many.
pub async fn prune(db: &Database, before_ms: i64) -> anyhow::Result<u64> {
    let deleted = sqlx::query("DELETE FROM inbox WHERE handled_at < $1")
        .bind(before_ms)
        .execute(db.writer())
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
    relay: crate::outbox::Waker,
    /// When it last pruned the inbox; `None` until it first does.
    last_prune: Option<tokio::time::Instant>,
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
            relay: crate::outbox::Waker::none(),
            last_prune: None,
        })
    }

    /// Wakes `relay` after each message whose effects were committed, so the messages
    /// a handler enqueued leave at once rather than at the relay's next idle poll.
    pub fn waking(mut self, relay: crate::outbox::Waker) -> Self {
        self.relay = relay;
        self
    }

    /// Records the subscription's lag (messages not yet acknowledged) as a gauge.
    pub fn record_lag(&self) -> BoxFuture<'static, anyhow::Result<u64>> {
        // Owned copies, so the future does not borrow the consumer across the await.
        let (bus, name) = (self.bus.clone(), self.name.clone());
        Box::pin(async move { record_lag(bus.as_ref(), &name).await })
    }

    /// Handles the next message, waiting up to `wait` for one; `None` if none came.
    /// Acknowledges it once its effects are committed (or it was a duplicate), refuses
    /// it with backoff if the handler failed.
    pub async fn consume_once(&mut self, wait: Duration) -> anyhow::Result<Option<Outcome>> {
        let Some(delivery) = self.subscription.next(wait).await? else {
            return Ok(None);
        };
        let handled = apply(
            &self.db,
            &self.name,
            &delivery.envelope,
            self.handler.as_ref(),
        )
        .instrument(message_span(&self.name, &delivery))
        .await;
        let outcome = settle(&self.name, delivery, handled).await?;
        if outcome == Outcome::Applied {
            self.relay.wake();
        }
        Ok(Some(outcome))
    }

    /// Handles the messages waiting, up to [`BATCH`], in one transaction
    /// ([`apply_all`]), waiting up to `wait` for the first; how many there were, 0 if
    /// none came. Each is acknowledged once the transaction committed (or it was a
    /// duplicate), or refused with backoff if its handler failed.
    pub async fn consume_batch(&mut self, wait: Duration) -> anyhow::Result<usize> {
        let deliveries = self.subscription.next_batch(BATCH, wait).await?;
        if deliveries.is_empty() {
            return Ok(0);
        }
        let handled = apply_all(&self.db, &self.name, &deliveries, self.handler.as_ref()).await;
        let count = deliveries.len();
        let applied = handled
            .iter()
            .any(|outcome| matches!(outcome, Ok(Outcome::Applied)));
        settle_all(&self.name, deliveries, handled).await?;
        if applied {
            self.relay.wake();
        }
        Ok(count)
    }

    /// Consumes until `shutdown`, backing off while the bus fails, and forgets handled
    /// messages older than [`RETENTION`] once an hour.
    pub async fn run(mut self, shutdown: Shutdown) {
        let bus = self.bus.clone();
        consume_until(&mut self, bus.as_ref(), &shutdown).await;
    }

    /// Forgets handled messages older than [`RETENTION`], if it has not done so within
    /// the hour.
    async fn prune_when_due(&mut self) {
        if self
            .last_prune
            .is_some_and(|at| at.elapsed() <= Duration::from_secs(3600))
        {
            return;
        }
        self.last_prune = Some(tokio::time::Instant::now());
        let retention = i64::try_from(RETENTION.as_millis()).unwrap_or(i64::MAX);
        if let Err(error) = prune(&self.db, now_ms().saturating_sub(retention)).await {
            tracing::warn!(
                subscription = self.name,
                "pruning the inbox failed: {error:#}"
            );
        }
    }
}

/// A consumer of one subscription, as [`consume_until`] drives it.
pub trait Consume: Send {
    /// The subscription's name.
    fn subscription(&self) -> &str;

    /// Handles what came next, waiting up to `wait` for a message: how many messages
    /// it handled, 0 if none came. An error means the bus failed, not a message's
    /// handling.
    fn consume_next(
        &mut self,
        wait: Duration,
    ) -> impl Future<Output = anyhow::Result<usize>> + Send;
}

impl Consume for Consumer {
    fn subscription(&self) -> &str {
        &self.name
    }

    async fn consume_next(&mut self, wait: Duration) -> anyhow::Result<usize> {
        self.prune_when_due().await;
        self.consume_batch(wait).await
    }
}

/// The span a consumer handles `delivery` of `subscription` in. It carries the
/// producer's correlation id and trace context, so the consumer's logs join the request
/// that caused the message.
pub fn message_span(subscription: &str, delivery: &Delivery) -> tracing::Span {
    let envelope = &delivery.envelope;
    let span = tracing::info_span!(
        "message",
        subscription,
        kind = envelope.kind,
        id = envelope.id,
        attempt = delivery.attempt,
        correlation_id = envelope.correlation_id,
        traceparent = envelope.traceparent.as_deref().unwrap_or_default(),
        trace_id = tracing::field::Empty,
    );
    crate::telemetry::adopt(&span, envelope.traceparent.as_deref());
    span
}

/// Settles `delivery` of `subscription` by what handling it gave, as every consumer
/// does: acknowledges it when `handled` is an outcome; logs the error and refuses it with
/// [`backoff`] when not (it comes again, until it becomes a dead letter). Counts it
/// either way. Returns the outcome, [`Outcome::Failed`] for a refused delivery; an error
/// only if the bus could not be told.
pub async fn settle(
    subscription: &str,
    delivery: Delivery,
    handled: anyhow::Result<Outcome>,
) -> anyhow::Result<Outcome> {
    let attempt = delivery.attempt;
    let outcome = match handled {
        Ok(outcome) => {
            delivery.ack().await?;
            outcome
        }
        Err(error) => {
            tracing::warn!(
                subscription,
                message = delivery.envelope.id,
                kind = delivery.envelope.kind,
                attempt,
                "handling a message failed: {error:#}"
            );
            delivery.nack(backoff(attempt)).await?;
            Outcome::Failed
        }
    };
    if attempt > 1 {
        metrics::counter!("messages_redelivered_total", "subscription" => subscription.to_owned())
            .increment(1);
    }
    let label = match outcome {
        Outcome::Applied => "applied",
        Outcome::Duplicate => "duplicate",
        Outcome::Failed => "failed",
    };
    metrics::counter!("messages_handled_total", "subscription" => subscription.to_owned(), "outcome" => label).increment(1);
    Ok(outcome)
}

/// Settles each of `deliveries` by its outcome in `handled`, as [`settle`] does, all at
/// once: a bus that commits settlements together ([`crate::bus::embedded`]) then
/// commits them in one go.
pub async fn settle_all(
    subscription: &str,
    deliveries: Vec<Delivery>,
    handled: Vec<anyhow::Result<Outcome>>,
) -> anyhow::Result<Vec<Outcome>> {
    futures_util::future::join_all(
        deliveries
            .into_iter()
            .zip(handled)
            .map(|(delivery, handled)| settle(subscription, delivery, handled)),
    )
    .await
    .into_iter()
    .collect()
}

/// Records subscription `subscription`'s lag on `bus` (messages not yet acknowledged)
/// as a gauge; returns it.
pub async fn record_lag(bus: &dyn Bus, subscription: &str) -> anyhow::Result<u64> {
    let pending = bus.pending(subscription).await?;
    metrics::gauge!("bus_consumer_pending", "subscription" => subscription.to_owned())
        .set(pending as f64);
    Ok(pending)
}

/// Drives `consumer` until `shutdown`: [`Consume::consume_next`] again and again, each
/// call waiting up to a second for a message, measuring its subscription's lag on `bus`
/// ([`record_lag`]) whenever a wait brought none, and backing off while consuming fails
/// (the bus is down). Every consumer's `run` is this loop.
pub async fn consume_until(consumer: &mut impl Consume, bus: &dyn Bus, shutdown: &Shutdown) {
    let mut failures = 0_u32;
    while !shutdown.is_triggered() {
        tokio::select! {
            () = shutdown.wait() => return,
            outcome = consumer.consume_next(Duration::from_secs(1)) => match outcome {
                Ok(handled) => {
                    failures = 0;
                    // Idle: a good moment to measure how far behind it is.
                    if handled == 0
                        && let Err(error) = record_lag(bus, consumer.subscription()).await
                    {
                        tracing::debug!(
                            subscription = consumer.subscription(),
                            "measuring lag failed: {error:#}"
                        );
                    }
                }
                Err(error) => {
                    failures = failures.saturating_add(1);
                    tracing::warn!(
                        subscription = consumer.subscription(),
                        "consuming failed: {error:#}"
                    );
                    tokio::select! {
                        () = shutdown.wait() => return,
                        () = tokio::time::sleep(backoff(failures)) => {}
                    }
                }
            },
        }
    }
}
