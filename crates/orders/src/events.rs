//! What orders consumes: inventory's and payments' answers to the saga's commands,
//! each through the inbox and turned into a saga [`Input`].

use contracts::OrderId;
use contracts::messaging::inventory::{
    CommitRefusedV1, StockCommittedV1, StockRejectedV1, StockReleasedV1, StockReservedV1,
    StockReturnedV1,
};
use contracts::messaging::payments::{
    PaymentAuthorizedV1, PaymentCapturedV1, PaymentDeclinedV1, PaymentFailedV1, PaymentHeldV1,
    PaymentRefundedV1, PaymentVoidedV1,
};
use contracts::messaging::{Envelope, Message};
use futures_util::future::BoxFuture;
use platform::bus::SubscriptionSpec;
use platform::clock::now_ms;
use platform::inbox::Handler;
use platform::outbox::Origin;
use sqlx::AnyConnection;

use crate::ops::{self, Settings};
use crate::saga::Input;

/// The subscription for inventory's events (not its commands).
pub fn inventory_events() -> SubscriptionSpec {
    SubscriptionSpec::new("orders.inventory-events", "inventory.*.v1")
}

/// The subscription for payments' events (not its commands).
pub fn payment_events() -> SubscriptionSpec {
    SubscriptionSpec::new("orders.payment-events", "payments.*.v1")
}

/// Reads an answer as the order it is about and the saga input it means; `None` for
/// messages the saga does not wait for.
pub fn input(envelope: &Envelope) -> anyhow::Result<Option<(OrderId, Input)>> {
    fn decoded<M: Message>(envelope: &Envelope) -> anyhow::Result<M> {
        Ok(envelope.decode::<M>()?)
    }
    let kind = envelope.kind.as_str();
    Ok(Some(match kind {
        StockReservedV1::TYPE => {
            let m: StockReservedV1 = decoded(envelope)?;
            let expires_at_ms = m.expires_at_ms;
            (m.order_id, Input::StockReserved { expires_at_ms })
        }
        StockRejectedV1::TYPE => {
            let m: StockRejectedV1 = decoded(envelope)?;
            let unavailable = m.unavailable;
            (m.order_id, Input::StockRejected { unavailable })
        }
        StockReleasedV1::TYPE => {
            let m: StockReleasedV1 = decoded(envelope)?;
            (m.order_id, Input::StockReleased { reason: m.reason })
        }
        StockCommittedV1::TYPE => (
            decoded::<StockCommittedV1>(envelope)?.order_id,
            Input::StockCommitted,
        ),
        StockReturnedV1::TYPE => (
            decoded::<StockReturnedV1>(envelope)?.order_id,
            Input::StockReturned,
        ),
        CommitRefusedV1::TYPE => (
            decoded::<CommitRefusedV1>(envelope)?.order_id,
            Input::CommitRefused,
        ),
        PaymentAuthorizedV1::TYPE => (
            decoded::<PaymentAuthorizedV1>(envelope)?.order_id,
            Input::PaymentAuthorized,
        ),
        PaymentHeldV1::TYPE => {
            let m: PaymentHeldV1 = decoded(envelope)?;
            (m.order_id, Input::PaymentHeld { reasons: m.reasons })
        }
        PaymentDeclinedV1::TYPE => {
            let m: PaymentDeclinedV1 = decoded(envelope)?;
            (m.order_id, Input::PaymentDeclined { reason: m.reason })
        }
        PaymentCapturedV1::TYPE => {
            let m: PaymentCapturedV1 = decoded(envelope)?;
            (m.order_id, Input::PaymentCaptured { amount: m.amount })
        }
        PaymentVoidedV1::TYPE => (
            decoded::<PaymentVoidedV1>(envelope)?.order_id,
            Input::PaymentVoided,
        ),
        PaymentRefundedV1::TYPE => {
            let m: PaymentRefundedV1 = decoded(envelope)?;
            (m.order_id, Input::PaymentRefunded { amount: m.amount })
        }
        PaymentFailedV1::TYPE => {
            let m: PaymentFailedV1 = decoded(envelope)?;
            let (operation, reason) = (m.operation, m.reason);
            (m.order_id, Input::PaymentFailed { operation, reason })
        }
        _ => return Ok(None),
    }))
}

/// Feeds the participants' answers to the saga.
pub struct Answers {
    /// The saga's settings.
    pub settings: Settings,
}

impl Handler for Answers {
    fn handle<'a>(
        &'a self,
        connection: &'a mut AnyConnection,
        envelope: &'a Envelope,
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            let Some((order_id, input)) = input(envelope)? else {
                return Ok(());
            };
            let origin = Origin::caused_by(envelope);
            ops::handle(
                connection,
                &order_id.to_string(),
                input,
                &origin,
                &self.settings,
                now_ms(),
            )
            .await
        })
    }
}
