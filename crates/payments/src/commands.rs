//! The consumer of the saga's commands: a two-phase inbox.
//!
//! `platform::inbox::Consumer` runs a handler inside the transaction that records the
//! message, which is right for effects that are only database writes. A payment
//! command also calls the card processor, which must not happen inside a transaction
//! (a slow card would hold SQLite's write lock for seconds). So each delivery is
//! handled in two phases:
//!
//! 1. [`crate::ops::lifecycle::prepare`] reads the payment and asks the processor, holding no
//!    transaction. A command already handled has moved the payment, so it asks nothing
//!    again: the state deduplicates before the processor.
//! 2. [`platform::inbox::apply`] records the message id and, in the same transaction,
//!    [`crate::ops::lifecycle::record`] writes the state, the ledger and the answer. A message
//!    id seen before is only acknowledged: the inbox deduplicates after.
//!
//! A failure in either phase refuses the delivery with backoff; the bus delivers it
//! again and both phases run anew. Several consumers share the subscription, so one
//! slow card does not hold up every other order's payment.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use contracts::messaging::Envelope;
use futures_util::future::BoxFuture;
use platform::bus::{Bus, Subscription, SubscriptionSpec};
use platform::clock::now_ms;
use platform::inbox::{self, Handler, Outcome};
use platform::outbox::{Origin, Waker};
use platform::shutdown::Shutdown;
use sqlx::AnyConnection;
use tracing::Instrument as _;

use crate::ops::Payments;
use crate::ops::lifecycle::{self, Command, Effect, Prepared};

/// How many deliveries a command gets before it becomes a dead letter. Higher than the
/// bus's default: backoff doubles to 30 s, so this rides out a processor outage of
/// several minutes before an operator has to replay anything.
pub const MAX_ATTEMPTS: u32 = 20;

/// The subscription for commands addressed to payments.
pub fn subscription() -> SubscriptionSpec {
    SubscriptionSpec {
        max_attempts: MAX_ATTEMPTS,
        ..SubscriptionSpec::new("payments.commands", "payments.cmd.>")
    }
}

/// One consumer of the command subscription.
pub struct CommandConsumer {
    payments: Payments,
    bus: Arc<dyn Bus>,
    waker: Waker,
    name: String,
    subscription: Box<dyn Subscription>,
}

impl CommandConsumer {
    /// Subscribes to [`subscription`] on `bus`; `waker` wakes the outbox relay after each
    /// answer is committed, so answers leave at once.
    pub async fn new(payments: Payments, bus: Arc<dyn Bus>, waker: Waker) -> anyhow::Result<Self> {
        let spec = subscription();
        let subscription = bus.subscribe(&spec).await?;
        Ok(Self {
            payments,
            bus,
            waker,
            name: spec.name,
            subscription,
        })
    }

    /// Handles the next command, waiting up to `wait` for one; `None` if none came.
    pub async fn consume_once(&mut self, wait: Duration) -> anyhow::Result<Option<Outcome>> {
        let Some(delivery) = self.subscription.next(wait).await? else {
            return Ok(None);
        };
        let handled = handle(&self.payments, &self.name, &delivery.envelope)
            .instrument(inbox::message_span(&self.name, &delivery))
            .await;
        let outcome = inbox::settle(&self.name, delivery, handled).await?;
        if outcome == Outcome::Applied {
            self.waker.wake();
        }
        Ok(Some(outcome))
    }

    /// Consumes until `shutdown`, backing off while the bus fails. (The inbox's records
    /// are pruned by the service's other consumer, whose platform loop prunes the whole
    /// table.)
    pub async fn run(mut self, shutdown: Shutdown) {
        let bus = self.bus.clone();
        inbox::consume_until(&mut self, bus.as_ref(), &shutdown).await;
    }
}

impl inbox::Consume for CommandConsumer {
    fn subscription(&self) -> &str {
        &self.name
    }

    async fn consume_next(&mut self, wait: Duration) -> anyhow::Result<usize> {
        Ok(usize::from(self.consume_once(wait).await?.is_some()))
    }
}

/// Handles one command envelope in its two phases, recording it under `subscription`
/// in the inbox. An error means it should be delivered again.
pub async fn handle(
    payments: &Payments,
    subscription: &str,
    envelope: &Envelope,
) -> anyhow::Result<Outcome> {
    let Some(command) = Command::decode(envelope)? else {
        // A newer command this version does not know: record it as handled rather than
        // retry something that can never succeed here.
        tracing::warn!(kind = envelope.kind, "ignoring an unknown command");
        return inbox::apply(&payments.db, subscription, envelope, &Ignore).await;
    };
    let prepared = lifecycle::prepare(payments, command, now_ms()).await?;
    let record = Record {
        prepared,
        effect: Mutex::new(None),
    };
    let outcome = inbox::apply(&payments.db, subscription, envelope, &record).await?;
    if outcome == Outcome::Applied
        && let Some(effect) = record
            .effect
            .lock()
            .ok()
            .and_then(|mut effect| effect.take())
    {
        count(&effect);
    }
    Ok(outcome)
}

/// Phase two as an inbox handler: the prepared command, and what recording it changed.
struct Record {
    prepared: Prepared,
    effect: Mutex<Option<Effect>>,
}

impl Handler for Record {
    fn handle<'a>(
        &'a self,
        connection: &'a mut AnyConnection,
        envelope: &'a Envelope,
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            let origin = Origin::caused_by(envelope);
            let effect = lifecycle::record(connection, &self.prepared, &origin, now_ms()).await?;
            if let Ok(mut slot) = self.effect.lock() {
                *slot = Some(effect);
            }
            Ok(())
        })
    }
}

/// A handler that does nothing, for messages that are only to be marked handled.
struct Ignore;

impl Handler for Ignore {
    fn handle<'a>(
        &'a self,
        _connection: &'a mut AnyConnection,
        _envelope: &'a Envelope,
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async { Ok(()) })
    }
}

/// Counts a committed effect.
fn count(effect: &Effect) {
    match effect {
        Effect::Nothing => {}
        Effect::Authorized => metrics::counter!("payments_authorized_total").increment(1),
        Effect::Held => metrics::counter!("payments_held_total").increment(1),
        Effect::Declined(reason) => {
            metrics::counter!("payments_declined_total", "reason" => reason.as_str()).increment(1);
        }
        Effect::Captured(amount) => {
            metrics::counter!("payments_captured_minor_total", "currency" => amount.currency.as_str().to_owned())
                .increment(amount.amount_minor.unsigned_abs());
        }
        Effect::Voided => metrics::counter!("payments_voided_total").increment(1),
        // Counted with its reason where the processor refused it.
        Effect::CaptureFailed => {}
        Effect::Refunded(amount) => {
            metrics::counter!("payments_refunded_minor_total", "currency" => amount.currency.as_str().to_owned())
                .increment(amount.amount_minor.unsigned_abs());
        }
    }
}

/// Starts `consumers` competing consumers of the command subscription.
pub(crate) async fn consumers(
    payments: &Payments,
    bus: &Arc<dyn Bus>,
    waker: &Waker,
    consumers: usize,
) -> anyhow::Result<Vec<CommandConsumer>> {
    let mut started = Vec::with_capacity(consumers);
    for _ in 0..consumers {
        started.push(CommandConsumer::new(payments.clone(), bus.clone(), waker.clone()).await?);
    }
    Ok(started)
}
