//! What the cart consumes: confirmed orders, whose lines leave the customer's cart.
//!
//! This consumer needs no inbox: [`CartStore::remove_ordered`] is idempotent by order
//! id inside the store itself (SQL or Redis), so a confirmation delivered twice has no
//! second effect, and the same code works whichever store is configured. A message is
//! acknowledged after the store call and refused with backoff when it fails.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use contracts::messaging::Envelope;
use contracts::messaging::Message as _;
use contracts::messaging::orders::OrderConfirmedV1;
use platform::bus::{Bus, Subscription, SubscriptionSpec};
use platform::inbox::{self, Outcome};
use platform::shutdown::Shutdown;
use tracing::Instrument as _;

use crate::domain::{CustomerId, Line};
use crate::store::CartStore;

/// The subscription for confirmed orders.
pub fn subscription() -> SubscriptionSpec {
    SubscriptionSpec::new("cart.orders-confirmed", OrderConfirmedV1::TYPE)
}

/// Takes a confirmed order's lines out of its customer's cart, once per order.
pub async fn apply(store: &dyn CartStore, envelope: &Envelope) -> anyhow::Result<Outcome> {
    if envelope.kind != OrderConfirmedV1::TYPE {
        // Not what this subscription asked for: acknowledged with no effect, like a
        // message handled before.
        tracing::warn!(kind = envelope.kind, "ignoring an unexpected message");
        return Ok(Outcome::Duplicate);
    }
    let confirmed: OrderConfirmedV1 = envelope.decode()?;
    let customer = CustomerId::parse(&confirmed.customer_id.to_string())
        .with_context(|| format!("customer id {}", confirmed.customer_id))?;
    let ordered: Vec<_> = confirmed
        .lines
        .iter()
        .map(|line| Line::new(line.product_id, line.quantity))
        .collect();
    let applied = store
        .remove_ordered(
            &customer,
            &confirmed.order_id.to_string(),
            &ordered,
            confirmed.cart_revision,
        )
        .await?;
    Ok(if applied {
        Outcome::Applied
    } else {
        Outcome::Duplicate
    })
}

/// One consumer of confirmed orders.
pub struct OrderEvents {
    bus: Arc<dyn Bus>,
    name: String,
    subscription: Box<dyn Subscription>,
    store: Arc<dyn CartStore>,
}

impl OrderEvents {
    /// Subscribes to confirmed orders on `bus`, applying them to `store`.
    pub async fn subscribe(bus: Arc<dyn Bus>, store: Arc<dyn CartStore>) -> anyhow::Result<Self> {
        let spec = subscription();
        let subscription = bus.subscribe(&spec).await?;
        Ok(Self {
            bus,
            name: spec.name,
            subscription,
            store,
        })
    }

    /// Handles the next message, waiting up to `wait` for one; `None` if none came.
    /// Acknowledges it once the store has applied it (or found it applied before), and
    /// refuses it with backoff if the store failed.
    pub async fn consume_once(&mut self, wait: Duration) -> anyhow::Result<Option<Outcome>> {
        let Some(delivery) = self.subscription.next(wait).await? else {
            return Ok(None);
        };
        let handled = apply(self.store.as_ref(), &delivery.envelope)
            .instrument(inbox::message_span(&self.name, &delivery))
            .await;
        inbox::settle(&self.name, delivery, handled).await.map(Some)
    }

    /// Consumes until `shutdown`, backing off while the bus fails.
    pub async fn run(mut self, shutdown: Shutdown) {
        let bus = self.bus.clone();
        inbox::consume_until(&mut self, bus.as_ref(), &shutdown).await;
    }
}

impl inbox::Consume for OrderEvents {
    fn subscription(&self) -> &str {
        &self.name
    }

    async fn consume_next(&mut self, wait: Duration) -> anyhow::Result<usize> {
        Ok(usize::from(self.consume_once(wait).await?.is_some()))
    }
}
