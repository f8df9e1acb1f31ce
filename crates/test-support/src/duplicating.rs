//! A bus that delivers every message twice: what an at-least-once broker may do after
//! a lost acknowledgement, on demand. Consumers must show no second effect.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use platform::bus::{Bus, DeadLetter, Delivery, Settle, Subscription, SubscriptionSpec};

/// Wraps a bus so that each delivery is followed by a copy of itself (same message id,
/// same envelope); settling the copy does nothing, settling the original settles it.
pub struct DuplicatingBus(pub Arc<dyn Bus>);

impl Bus for DuplicatingBus {
    fn publish<'a>(
        &'a self,
        envelope: &'a contracts::messaging::Envelope,
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        self.0.publish(envelope)
    }

    fn subscribe<'a>(
        &'a self,
        spec: &'a SubscriptionSpec,
    ) -> BoxFuture<'a, anyhow::Result<Box<dyn Subscription>>> {
        Box::pin(async move {
            let inner = self.0.subscribe(spec).await?;
            let duplicating: Box<dyn Subscription> = Box::new(Twice { inner, copy: None });
            Ok(duplicating)
        })
    }

    fn pending<'a>(&'a self, name: &'a str) -> BoxFuture<'a, anyhow::Result<u64>> {
        self.0.pending(name)
    }

    fn dead_letters<'a>(&'a self, name: &'a str) -> BoxFuture<'a, anyhow::Result<Vec<DeadLetter>>> {
        self.0.dead_letters(name)
    }

    fn replay<'a>(
        &'a self,
        name: &'a str,
        message_id: &'a str,
    ) -> BoxFuture<'a, anyhow::Result<bool>> {
        self.0.replay(name, message_id)
    }
}

struct Twice {
    inner: Box<dyn Subscription>,
    copy: Option<Delivery>,
}

impl Subscription for Twice {
    fn next(&mut self, wait: Duration) -> BoxFuture<'_, anyhow::Result<Option<Delivery>>> {
        Box::pin(async move {
            if let Some(copy) = self.copy.take() {
                return Ok(Some(copy));
            }
            let delivery = self.inner.next(wait).await?;
            if let Some(delivery) = &delivery {
                let copy = Delivery::new(
                    delivery.envelope.clone(),
                    delivery.attempt + 1,
                    Box::new(Nothing),
                );
                self.copy = Some(copy);
            }
            Ok(delivery)
        })
    }
}

/// Settles nothing: the copy's fate is its original's.
struct Nothing;

impl Settle for Nothing {
    fn ack(self: Box<Self>) -> BoxFuture<'static, anyhow::Result<()>> {
        Box::pin(async { Ok(()) })
    }

    fn nack(self: Box<Self>, _delay: Duration) -> BoxFuture<'static, anyhow::Result<()>> {
        Box::pin(async { Ok(()) })
    }
}
