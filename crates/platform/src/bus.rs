//! The message bus: what services publish events and commands to, and subscribe with.
//!
//! One interface, two adapters: [`embedded::EmbeddedBus`] (a SQLite file, for
//! `bazaar up`: no server to install, durable across a crash) and
//! [`jetstream::JetStreamBus`] (NATS JetStream, for distributed mode). Both pass the same
//! conformance suite (`crates/platform/tests/bus`). [`faulty::FaultyBus`] stands in front
//! of either and fails or slows publishing as the shop's fault flags say.
//!
//! **Guarantees.** A publish returns once the bus has stored the message durably;
//! publishing a message id again is a no-op. Each durable subscription receives every
//! message matching its filter at least once, until the message is acknowledged;
//! consumers sharing a subscription compete, each message going to one of them at a
//! time. A message not acknowledged within `ack_wait`, or refused with [`Delivery::nack`],
//! is delivered again after a backoff; after `max_attempts` deliveries it is moved to the
//! subscription's dead letters, where an operator can list and replay it. A message
//! that keeps failing never holds back the ones behind it.
//!
//! **Ordering: none.** Redelivery and competing consumers reorder messages, so handlers
//! must not rely on order: they are idempotent (the inbox drops a message already
//! handled) and compare versions or states where an older message could undo a newer
//! one.
//!
//! Subjects are message types (`catalog.product_created.v1`); filters use NATS syntax:
//! `*` matches one dot-separated token, `>` the rest (`catalog.>`).

pub mod embedded;
pub mod faulty;
pub mod jetstream;

use std::time::Duration;

use contracts::messaging::Envelope;
use futures_util::future::BoxFuture;

/// A message bus.
pub trait Bus: Send + Sync + 'static {
    /// Stores `envelope` under its type as subject; returns once it is durable. A message
    /// id published before (within the bus's deduplication window) is not stored twice.
    fn publish<'a>(&'a self, envelope: &'a Envelope) -> BoxFuture<'a, anyhow::Result<()>>;

    /// Stores `envelopes` as [`Bus::publish`] would each, in order; returns once all are
    /// durable. An adapter may store them together (one transaction, or publishes sent
    /// back to back with their acknowledgements awaited together); on failure it says
    /// how many of the first were stored for certain. This one publishes them one at a
    /// time.
    fn publish_all<'a>(
        &'a self,
        envelopes: &'a [Envelope],
    ) -> BoxFuture<'a, Result<(), PublishFailure>> {
        Box::pin(async move {
            for (published, envelope) in envelopes.iter().enumerate() {
                self.publish(envelope)
                    .await
                    .map_err(|error| PublishFailure { published, error })?;
            }
            Ok(())
        })
    }

    /// Opens the durable subscription `spec.name`, creating it on first use. A new
    /// subscription receives every message the bus still holds that matches its filter,
    /// including those published before it existed, so a consumer deployed after its
    /// producer misses nothing.
    fn subscribe<'a>(
        &'a self,
        spec: &'a SubscriptionSpec,
    ) -> BoxFuture<'a, anyhow::Result<Box<dyn Subscription>>>;

    /// How many messages subscription `name` has yet to acknowledge (ready, in flight or
    /// waiting to be retried; dead letters not included): its lag.
    fn pending<'a>(&'a self, name: &'a str) -> BoxFuture<'a, anyhow::Result<u64>>;

    /// The dead letters of subscription `name`, oldest first.
    fn dead_letters<'a>(&'a self, name: &'a str) -> BoxFuture<'a, anyhow::Result<Vec<DeadLetter>>>;

    /// Puts dead letter `message_id` of subscription `name` back for delivery, with a
    /// fresh count of attempts. Returns `false` if there is no such dead letter.
    fn replay<'a>(
        &'a self,
        name: &'a str,
        message_id: &'a str,
    ) -> BoxFuture<'a, anyhow::Result<bool>>;
}

/// Why [`Bus::publish_all`] stopped, and how far it got.
#[derive(Debug)]
pub struct PublishFailure {
    /// How many of the first envelopes are stored for certain. Later ones may be stored
    /// too; publishing them again is harmless, since ids are deduplicated.
    pub published: usize,
    /// What went wrong.
    pub error: anyhow::Error,
}

/// A durable subscription's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubscriptionSpec {
    /// Durable name, unique per bus: `<service>.<purpose>`, e.g. `search.catalog-events`.
    pub name: String,
    /// Subject filter, NATS syntax.
    pub filter: String,
    /// How long a delivery may go unacknowledged before it is delivered again, if its
    /// consumer says nothing. (On JetStream a consumer that holds a delivery keeps it
    /// alive, and one that died lets it go after at most
    /// [`jetstream::MAX_SERVER_ACK_WAIT`].)
    pub ack_wait: Duration,
    /// Deliveries before a message is dead-lettered.
    pub max_attempts: u32,
}

impl SubscriptionSpec {
    /// A subscription with a 30 s ack wait and 5 attempts.
    pub fn new(name: impl Into<String>, filter: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            filter: filter.into(),
            ack_wait: Duration::from_secs(30),
            max_attempts: 5,
        }
    }
}

/// One consumer's handle on a durable subscription.
pub trait Subscription: Send {
    /// The next message, waiting up to `wait` for one; `None` if none came.
    fn next(&mut self, wait: Duration) -> BoxFuture<'_, anyhow::Result<Option<Delivery>>>;

    /// Up to `max` messages, waiting up to `wait` for the first; empty if none came. Each
    /// is settled on its own. An adapter may hand out several at once; this one hands
    /// out one.
    fn next_batch(
        &mut self,
        max: usize,
        wait: Duration,
    ) -> BoxFuture<'_, anyhow::Result<Vec<Delivery>>> {
        let _ = max;
        Box::pin(async move { Ok(self.next(wait).await?.into_iter().collect()) })
    }
}

/// A message handed to a consumer, to be acknowledged or refused.
pub struct Delivery {
    /// The message.
    pub envelope: Envelope,
    /// Which delivery of this message to this subscription this is, from 1.
    pub attempt: u32,
    settle: Box<dyn Settle>,
}

/// How an adapter acknowledges or refuses one delivery.
pub trait Settle: Send + Sync {
    /// Done with: never deliver it to this subscription again.
    fn ack(self: Box<Self>) -> BoxFuture<'static, anyhow::Result<()>>;
    /// Failed: deliver it again after `delay`.
    fn nack(self: Box<Self>, delay: Duration) -> BoxFuture<'static, anyhow::Result<()>>;
}

impl Delivery {
    /// A delivery settled through `settle`; for adapters.
    pub fn new(envelope: Envelope, attempt: u32, settle: Box<dyn Settle>) -> Self {
        Self {
            envelope,
            attempt,
            settle,
        }
    }

    /// Acknowledges the message: it will not be delivered to this subscription again.
    pub async fn ack(self) -> anyhow::Result<()> {
        self.settle.ack().await
    }

    /// Refuses the message: it is delivered again after `delay`, until its attempts run
    /// out and it becomes a dead letter.
    pub async fn nack(self, delay: Duration) -> anyhow::Result<()> {
        self.settle.nack(delay).await
    }
}

/// A message that exhausted its attempts.
#[derive(Clone, Debug, PartialEq)]
pub struct DeadLetter {
    /// The message.
    pub envelope: Envelope,
    /// How many times it was delivered.
    pub attempts: u32,
}

/// Whether `subject` matches the NATS-style `filter`.
pub fn subject_matches(filter: &str, subject: &str) -> bool {
    let mut subject = subject.split('.');
    for token in filter.split('.') {
        match (token, subject.next()) {
            (">", Some(_)) => return true,
            ("*", Some(_)) => {}
            (literal, Some(actual)) if literal == actual => {}
            _ => return false,
        }
    }
    subject.next().is_none()
}

/// The delay before the `attempt`-th redelivery: doubling from 100 ms, at most 30 s.
pub fn backoff(attempt: u32) -> Duration {
    let factor = 2_u32.saturating_pow(attempt.saturating_sub(1).min(16));
    Duration::from_millis(100)
        .saturating_mul(factor)
        .min(Duration::from_secs(30))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_match_like_nats() {
        assert!(subject_matches("catalog.>", "catalog.product_created.v1"));
        assert!(!subject_matches("catalog.>", "catalog"));
        assert!(subject_matches(
            "*.product_created.v1",
            "catalog.product_created.v1"
        ));
        assert!(!subject_matches(
            "*.product_created.v1",
            "catalog.product_deleted.v1"
        ));
        assert!(subject_matches(
            "catalog.product_created.v1",
            "catalog.product_created.v1"
        ));
        assert!(!subject_matches(
            "catalog.product_created",
            "catalog.product_created.v1"
        ));
        assert!(!subject_matches("orders.>", "catalog.product_created.v1"));
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        assert_eq!(backoff(1), Duration::from_millis(100));
        assert_eq!(backoff(2), Duration::from_millis(200));
        assert_eq!(backoff(40), Duration::from_secs(30));
    }
}
