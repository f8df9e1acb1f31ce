//! An order's history and the state folded from it; pure.
//!
//! The events are the source of truth: an [`Order`] is nothing but the fold of its
//! [`OrderEvent`]s, so it can always be rebuilt, and the read model is one more fold.

use contracts::messaging::inventory::ReleaseReason;
use contracts::messaging::orders::{CancelReason, OrderLine};
use contracts::messaging::payments::{DeclineReason, HoldReason, Operation};
use contracts::{Money, ProductId};
use serde::{Deserialize, Serialize};

/// Where an order is in its life. The first four are steps of the checkout; the rest
/// are ends, or compensations on the way to one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Accepted; its stock is being reserved.
    Placed,
    /// Its stock is held; the payment is being authorized.
    StockReserved,
    /// The payment is authorized but the fraud rules want an admin to look.
    PaymentHeld,
    /// The payment is authorized; the stock is being committed and the payment captured.
    Paid,
    /// Paid and sold. An end.
    Confirmed,
    /// There was not enough stock; nothing was held or charged. An end.
    Rejected,
    /// Being cancelled: held stock is being released and the authorization voided.
    Cancelling,
    /// Cancelled; nothing was charged. An end.
    Cancelled,
    /// A confirmed order's payment is being refunded.
    Refunding,
    /// A confirmed order whose payment was refunded in full. An end.
    Refunded,
    /// A confirmed order whose refund the card network refused for good: the money is
    /// still the shop's, for an operator to give back another way. An end.
    RefundFailed,
}

impl Status {
    /// Every status.
    pub const ALL: [Self; 11] = [
        Self::Placed,
        Self::StockReserved,
        Self::PaymentHeld,
        Self::Paid,
        Self::Confirmed,
        Self::Rejected,
        Self::Cancelling,
        Self::Cancelled,
        Self::Refunding,
        Self::Refunded,
        Self::RefundFailed,
    ];

    /// The name used in the API and the database, e.g. `stock_reserved`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Placed => "placed",
            Self::StockReserved => "stock_reserved",
            Self::PaymentHeld => "payment_held",
            Self::Paid => "paid",
            Self::Confirmed => "confirmed",
            Self::Rejected => "rejected",
            Self::Cancelling => "cancelling",
            Self::Cancelled => "cancelled",
            Self::Refunding => "refunding",
            Self::Refunded => "refunded",
            Self::RefundFailed => "refund_failed",
        }
    }

    /// The status named `name`, if there is one.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|status| status.as_str() == name)
    }

    /// Whether the checkout saga is over for an order in this status. (A confirmed
    /// order may still be refunded later, by an admin's request.)
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Self::Confirmed
                | Self::Rejected
                | Self::Cancelled
                | Self::Refunded
                | Self::RefundFailed
        )
    }
}

/// Something that happened to an order. Stored as JSON with a `type` tag; variants and
/// fields may be added, never changed (old events are read forever).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum OrderEvent {
    /// The customer placed the order.
    Placed {
        /// Who ordered.
        customer_id: String,
        /// What, at the prices of the moment.
        lines: Vec<OrderLine>,
        /// The sum of the lines.
        total: Money,
        /// The payment method's token.
        payment_method: String,
        /// The revision of the cart the order was placed from (absent in older events).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cart_revision: Option<i64>,
        /// The trace the order was placed in (absent in older events).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        trace_id: Option<String>,
    },
    /// Inventory holds the stock until `expires_at_ms`.
    StockReserved {
        /// When the hold ends.
        expires_at_ms: i64,
    },
    /// Inventory could not hold the stock.
    StockRejected {
        /// The products that were short.
        unavailable: Vec<ProductId>,
    },
    /// Payments authorized the amount.
    PaymentAuthorized,
    /// Payments authorized the amount but holds it for review.
    PaymentHeld {
        /// The fraud rules that asked for it.
        reasons: Vec<HoldReason>,
    },
    /// An admin decided on a held payment.
    ReviewRequested {
        /// Let it through or not.
        approve: bool,
        /// Who decided.
        reviewer: String,
    },
    /// Payments declined.
    PaymentDeclined {
        /// Payments' reason.
        reason: DeclineReason,
    },
    /// Inventory sold the held stock.
    StockCommitted,
    /// Payments captured the amount: the order is confirmed.
    PaymentCaptured {
        /// What was taken.
        amount: Money,
    },
    /// The card network refused a capture or a refund for good.
    PaymentFailed {
        /// What was refused.
        operation: Operation,
        /// The network's reason.
        reason: DeclineReason,
    },
    /// The order is being cancelled; the compensations named are under way.
    CancellationStarted {
        /// Why.
        reason: CancelReason,
        /// Whether held stock must be released.
        release_stock: bool,
        /// Whether the payment must be voided.
        void_payment: bool,
        /// Whether sold stock must be returned to sale (absent in older events: no).
        #[serde(default)]
        return_stock: bool,
    },
    /// Inventory released the held stock (or never held any).
    StockReleased {
        /// Why.
        reason: ReleaseReason,
    },
    /// Payments voided the authorization (or there was none).
    PaymentVoided,
    /// Inventory put the sold stock back on sale.
    StockReturned,
    /// Every compensation is done: the order is cancelled.
    Cancelled {
        /// The cancellation's reason.
        reason: CancelReason,
    },
    /// An admin asked for a confirmed order's payment back.
    RefundRequested {
        /// Who asked.
        by: String,
    },
    /// Payments refunded the captured amount.
    PaymentRefunded {
        /// What was given back.
        amount: Money,
    },
    /// A step's deadline passed and its command was sent again.
    CommandResent {
        /// The command's type.
        command: String,
        /// How many times this step's command has been re-sent.
        attempt: u32,
    },
}

impl OrderEvent {
    /// The event's type, as stored and shown in the timeline.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Placed { .. } => "placed",
            Self::StockReserved { .. } => "stock_reserved",
            Self::StockRejected { .. } => "stock_rejected",
            Self::PaymentAuthorized => "payment_authorized",
            Self::PaymentHeld { .. } => "payment_held",
            Self::ReviewRequested { .. } => "review_requested",
            Self::PaymentDeclined { .. } => "payment_declined",
            Self::StockCommitted => "stock_committed",
            Self::PaymentCaptured { .. } => "payment_captured",
            Self::PaymentFailed { .. } => "payment_failed",
            Self::CancellationStarted { .. } => "cancellation_started",
            Self::StockReleased { .. } => "stock_released",
            Self::PaymentVoided => "payment_voided",
            Self::StockReturned => "stock_returned",
            Self::Cancelled { .. } => "cancelled",
            Self::RefundRequested { .. } => "refund_requested",
            Self::PaymentRefunded { .. } => "payment_refunded",
            Self::CommandResent { .. } => "command_resent",
        }
    }
}

/// An order as its events leave it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Order {
    /// The order's id (UUID v7).
    pub id: String,
    /// Who ordered.
    pub customer_id: String,
    /// What was ordered.
    pub lines: Vec<OrderLine>,
    /// What it costs.
    pub total: Money,
    /// The payment method's token.
    pub payment_method: String,
    /// The revision of the cart it was placed from, if recorded.
    pub cart_revision: Option<i64>,
    /// The trace it was placed in, if recorded.
    pub trace_id: Option<String>,
    /// Where it is.
    pub status: Status,
    /// How many events it has; the next one is number `version + 1`.
    pub version: i64,
    /// When inventory's hold on its stock ends, once it holds some.
    pub reservation_expires_at_ms: Option<i64>,
    /// Whether the payment was asked for (so a cancellation must void it).
    pub payment_requested: bool,
    /// Whether inventory sold the stock.
    pub stock_committed: bool,
    /// An admin's decision on a held payment, once made.
    pub review: Option<(bool, String)>,
    /// Why it is being or was cancelled.
    pub cancel_reason: Option<CancelReason>,
    /// A cancellation still waits for inventory to release the stock.
    pub awaiting_release: bool,
    /// A cancellation still waits for payments to void the authorization.
    pub awaiting_void: bool,
    /// A cancellation still waits for inventory to put sold stock back on sale.
    pub awaiting_return: bool,
    /// How many times the current step's command was re-sent.
    pub attempts: u32,
    /// When the current step began or was last re-sent, ms since the epoch.
    pub step_started_at_ms: i64,
    /// When the order was placed.
    pub placed_at_ms: i64,
}

/// Why a history cannot be folded into an order.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// The first event is not `Placed`, or there is none.
    #[error("an order's history must start with `placed`")]
    NotPlaced,
}

impl Order {
    /// Folds an order's history, each event with when it happened (ms).
    pub fn fold<'a>(
        id: &str,
        history: impl IntoIterator<Item = (&'a OrderEvent, i64)>,
    ) -> Result<Self, HistoryError> {
        let mut history = history.into_iter();
        let Some((
            OrderEvent::Placed {
                customer_id,
                lines,
                total,
                payment_method,
                cart_revision,
                trace_id,
            },
            at,
        )) = history.next()
        else {
            return Err(HistoryError::NotPlaced);
        };
        let mut order = Self {
            id: id.to_owned(),
            customer_id: customer_id.clone(),
            lines: lines.clone(),
            total: *total,
            payment_method: payment_method.clone(),
            cart_revision: *cart_revision,
            trace_id: trace_id.clone(),
            status: Status::Placed,
            version: 1,
            reservation_expires_at_ms: None,
            payment_requested: false,
            stock_committed: false,
            review: None,
            cancel_reason: None,
            awaiting_release: false,
            awaiting_void: false,
            awaiting_return: false,
            attempts: 0,
            step_started_at_ms: at,
            placed_at_ms: at,
        };
        for (event, at) in history {
            order.apply(event, at);
        }
        Ok(order)
    }

    /// The order after `event`, which happened at `at` (ms).
    pub fn apply(&mut self, event: &OrderEvent, at: i64) {
        self.version += 1;
        let before = self.status;
        match event {
            OrderEvent::Placed { .. } => {}
            OrderEvent::StockReserved { expires_at_ms } => {
                self.reservation_expires_at_ms = Some(*expires_at_ms);
                self.status = Status::StockReserved;
                self.payment_requested = true;
            }
            OrderEvent::StockRejected { .. } => self.status = Status::Rejected,
            OrderEvent::PaymentAuthorized => self.status = Status::Paid,
            OrderEvent::PaymentHeld { .. } => self.status = Status::PaymentHeld,
            OrderEvent::ReviewRequested { approve, reviewer } => {
                self.review = Some((*approve, reviewer.clone()));
                self.step_started_at_ms = at;
                self.attempts = 0;
            }
            OrderEvent::PaymentDeclined { .. } => {}
            OrderEvent::StockCommitted => {
                self.stock_committed = true;
                self.step_started_at_ms = at;
                self.attempts = 0;
            }
            OrderEvent::PaymentCaptured { .. } => self.status = Status::Confirmed,
            OrderEvent::PaymentFailed { operation, .. } => {
                // A refused capture is followed by the cancellation that undoes it.
                if *operation == Operation::Refund {
                    self.status = Status::RefundFailed;
                }
            }
            OrderEvent::CancellationStarted {
                reason,
                release_stock,
                void_payment,
                return_stock,
            } => {
                self.status = Status::Cancelling;
                self.cancel_reason = Some(*reason);
                self.awaiting_release = *release_stock;
                self.awaiting_void = *void_payment;
                self.awaiting_return = *return_stock;
            }
            OrderEvent::StockReleased { .. } => self.awaiting_release = false,
            OrderEvent::PaymentVoided => self.awaiting_void = false,
            OrderEvent::StockReturned => self.awaiting_return = false,
            OrderEvent::Cancelled { reason } => {
                self.status = Status::Cancelled;
                self.cancel_reason = Some(*reason);
            }
            OrderEvent::RefundRequested { .. } => self.status = Status::Refunding,
            OrderEvent::PaymentRefunded { .. } => self.status = Status::Refunded,
            OrderEvent::CommandResent { attempt, .. } => {
                self.attempts = *attempt;
                self.step_started_at_ms = at;
            }
        }
        if self.status != before {
            self.attempts = 0;
            self.step_started_at_ms = at;
        }
    }
}
