//! A bus whose publishing fails or slows down as the shop's fault flags say: a broker
//! outage, or a slow broker, on demand, to watch the outboxes fill and drain.
//!
//! | flag | type | effect |
//! |---|---|---|
//! | `bus-outage` | boolean | every publish fails as if the broker were unreachable: messages wait in their service's outbox, and the relays retry with backoff |
//! | `bus-publish-delay-ms` | number | every publish (or batch) waits that long first, at most 5 s |
//!
//! Both are evaluated with the message's id as the targeting key, its `source` (the
//! publishing service) and its `kind`, so a rule can take one service's broker away.
//! Deliveries to consumers are not affected: what was published before the outage is
//! still consumed.

use std::sync::Arc;
use std::time::Duration;

use contracts::messaging::Envelope;
use futures_util::future::BoxFuture;

use super::{Bus, DeadLetter, PublishFailure, Subscription, SubscriptionSpec};
use crate::flags::{EvaluationContext, Flags};

/// Whether the broker is unreachable for publishing.
pub const OUTAGE: &str = "bus-outage";
/// How long each publish waits first, in milliseconds.
pub const DELAY_MS: &str = "bus-publish-delay-ms";

/// The longest delay the flag can impose: half of the 10 s the relay gives a publish,
/// so that a slow broker stays slow and does not become an outage.
const MAX_DELAY: Duration = Duration::from_secs(5);

/// A bus with the faults its flags switch on.
pub struct FaultyBus {
    inner: Arc<dyn Bus>,
    flags: Flags,
}

impl FaultyBus {
    /// `inner`, failing as `flags` say.
    pub fn new(inner: Arc<dyn Bus>, flags: Flags) -> Self {
        Self { inner, flags }
    }

    /// The delay and the failure publishing `envelope` may meet.
    async fn interfere(&self, envelope: &Envelope) -> anyhow::Result<()> {
        let context = EvaluationContext::new()
            .targeting_key(envelope.id.as_str())
            .with("source", envelope.source.as_str())
            .with("kind", envelope.kind.as_str());
        let delay = self.flags.delay(DELAY_MS, &context, MAX_DELAY);
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        if self.flags.boolean(OUTAGE, &context, false) {
            metrics::counter!("bus_injected_faults_total", "fault" => OUTAGE, "source" => envelope.source.clone())
                .increment(1);
            anyhow::bail!("injected: the flag {OUTAGE} makes the broker unreachable");
        }
        Ok(())
    }
}

impl Bus for FaultyBus {
    fn publish<'a>(&'a self, envelope: &'a Envelope) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            self.interfere(envelope).await?;
            self.inner.publish(envelope).await
        })
    }

    fn publish_all<'a>(
        &'a self,
        envelopes: &'a [Envelope],
    ) -> BoxFuture<'a, Result<(), PublishFailure>> {
        Box::pin(async move {
            if let Some(first) = envelopes.first() {
                self.interfere(first)
                    .await
                    .map_err(|error| PublishFailure {
                        published: 0,
                        error,
                    })?;
            }
            self.inner.publish_all(envelopes).await
        })
    }

    fn subscribe<'a>(
        &'a self,
        spec: &'a SubscriptionSpec,
    ) -> BoxFuture<'a, anyhow::Result<Box<dyn Subscription>>> {
        self.inner.subscribe(spec)
    }

    fn pending<'a>(&'a self, name: &'a str) -> BoxFuture<'a, anyhow::Result<u64>> {
        self.inner.pending(name)
    }

    fn dead_letters<'a>(&'a self, name: &'a str) -> BoxFuture<'a, anyhow::Result<Vec<DeadLetter>>> {
        self.inner.dead_letters(name)
    }

    fn replay<'a>(
        &'a self,
        name: &'a str,
        message_id: &'a str,
    ) -> BoxFuture<'a, anyhow::Result<bool>> {
        self.inner.replay(name, message_id)
    }
}
