//! The checkout saga: what an order does next, given what just happened; pure.
//!
//! Orders orchestrates the checkout (ARCHITECTURE.md: `crates/orders`, and the checkout's invariant): reserve stock, authorize the
//! payment (fraud rules first), commit the stock and capture the payment. Every answer
//! from inventory or payments, every deadline and every customer or admin request is an
//! [`Input`]; [`react`] turns it into the events to record and the [`Command`]s to send.
//! An answer that does not fit the order's state (a duplicate, or one overtaken by a
//! cancellation) changes nothing.
//!
//! Deadlines: a step whose answer does not come in time has its command re-sent (every
//! participant is idempotent per order). The reservation and payment steps give up
//! after [`Deadlines::max_attempts`] and compensate; the steps after authorization and
//! the compensations themselves never give up, they only back off, because going
//! forward (or finishing the undo) is the only way to leave the customer uncharged for
//! an unconfirmed order.

use contracts::messaging::inventory::ReleaseReason;
use contracts::messaging::orders::CancelReason;
use contracts::messaging::payments::{DeclineReason, HoldReason, Operation};
use contracts::{Money, ProductId};
use serde::{Deserialize, Serialize};

use crate::domain::{Order, OrderEvent, Status};

/// A command to a participant, sent through the outbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Inventory: hold the order's stock.
    ReserveStock,
    /// Inventory: give the held stock back.
    ReleaseStock,
    /// Inventory: the held stock is sold.
    CommitStock,
    /// Inventory: the sold stock goes back on sale (its payment could not be taken).
    ReturnStock,
    /// Payments: fraud check and authorize.
    AuthorizePayment,
    /// Payments: an admin's decision on a held payment.
    ReviewPayment {
        /// Let it through or not.
        approve: bool,
        /// Who decided.
        reviewer: String,
    },
    /// Payments: take the authorized amount.
    CapturePayment,
    /// Payments: cancel the authorization.
    VoidPayment,
    /// Payments: give the captured amount back.
    RefundPayment,
}

impl Command {
    /// A short name for the timeline.
    pub fn name(&self) -> &'static str {
        match self {
            Self::ReserveStock => "reserve_stock",
            Self::ReleaseStock => "release_stock",
            Self::CommitStock => "commit_stock",
            Self::ReturnStock => "return_stock",
            Self::AuthorizePayment => "authorize_payment",
            Self::ReviewPayment { .. } => "review_payment",
            Self::CapturePayment => "capture_payment",
            Self::VoidPayment => "void_payment",
            Self::RefundPayment => "refund_payment",
        }
    }
}

/// Something that happened to an order from outside it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// Inventory holds the stock.
    StockReserved {
        /// Until when.
        expires_at_ms: i64,
    },
    /// Inventory had too little.
    StockRejected {
        /// What was short.
        unavailable: Vec<ProductId>,
    },
    /// Inventory released the stock (asked to, or the hold expired).
    StockReleased {
        /// Why.
        reason: ReleaseReason,
    },
    /// Inventory sold the stock.
    StockCommitted,
    /// Inventory refused to commit: the hold had ended.
    CommitRefused,
    /// Inventory put the sold stock back on sale.
    StockReturned,
    /// Payments authorized.
    PaymentAuthorized,
    /// Payments authorized, pending review.
    PaymentHeld {
        /// The fraud rules that asked for it.
        reasons: Vec<HoldReason>,
    },
    /// Payments declined.
    PaymentDeclined {
        /// Why.
        reason: DeclineReason,
    },
    /// Payments captured.
    PaymentCaptured {
        /// What was taken.
        amount: Money,
    },
    /// Payments voided.
    PaymentVoided,
    /// Payments refunded.
    PaymentRefunded {
        /// What was given back.
        amount: Money,
    },
    /// The card network refused a capture or a refund for good.
    PaymentFailed {
        /// What was refused.
        operation: Operation,
        /// The network's reason.
        reason: DeclineReason,
    },
    /// The customer asks to cancel.
    CustomerCancel,
    /// An admin decides on a held payment.
    Review {
        /// Let it through or not.
        approve: bool,
        /// Who decided.
        reviewer: String,
    },
    /// An admin asks for a confirmed order's payment back.
    Refund {
        /// Who asked.
        by: String,
    },
    /// The current step's deadline passed.
    DeadlinePassed,
}

/// What to do about an input.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Decision {
    /// Events to record, in order.
    pub events: Vec<OrderEvent>,
    /// Commands to send once they are recorded.
    pub commands: Vec<Command>,
}

impl Decision {
    fn new(events: Vec<OrderEvent>, commands: Vec<Command>) -> Self {
        Self { events, commands }
    }

    /// Nothing to do: the input does not fit the order's state.
    pub fn nothing() -> Self {
        Self::default()
    }

    /// Whether there is nothing to record or send.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty() && self.commands.is_empty()
    }
}

/// A customer or admin request that the order's state does not allow.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Only an order not yet paid can be cancelled.
    #[error("an order can be cancelled only before it is paid; this one is {0}")]
    NotCancellable(&'static str),
    /// Only a held payment can be reviewed, once.
    #[error(
        "only an order whose payment is held and not yet reviewed can be reviewed; this one is {0}"
    )]
    NotHeld(&'static str),
    /// Only a confirmed order can be refunded.
    #[error("only a confirmed order can be refunded; this one is {0}")]
    NotRefundable(&'static str),
}

/// When steps time out, in milliseconds, and how often the first steps are retried.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Deadlines {
    /// How long a step waits for its answer before its command is re-sent.
    pub step_ms: i64,
    /// The longest wait between re-sends, however many there were.
    pub max_step_ms: i64,
    /// How many re-sends the reservation and payment steps get before the order is
    /// cancelled.
    pub max_attempts: u32,
    /// How long after the stock's hold ends a held payment may still wait for review.
    pub held_grace_ms: i64,
}

impl Default for Deadlines {
    fn default() -> Self {
        Self {
            step_ms: 5_000,
            max_step_ms: 60_000,
            max_attempts: 3,
            held_grace_ms: 5_000,
        }
    }
}

impl Deadlines {
    /// When the order's current step is due, or `None` if nothing is awaited.
    pub fn due(&self, order: &Order) -> Option<i64> {
        if order.status.is_terminal() {
            return None;
        }
        if order.status == Status::PaymentHeld && order.review.is_none() {
            // Waiting for a person: until the stock's hold runs out.
            let expires = order
                .reservation_expires_at_ms
                .unwrap_or(order.step_started_at_ms);
            return Some(expires.saturating_add(self.held_grace_ms));
        }
        let wait = self
            .step_ms
            .saturating_mul(1_i64 << order.attempts.min(16))
            .min(self.max_step_ms);
        Some(order.step_started_at_ms.saturating_add(wait))
    }
}

/// The commands the order's current step waits on; what a deadline re-sends.
pub fn awaited(order: &Order) -> Vec<Command> {
    match order.status {
        Status::Placed => vec![Command::ReserveStock],
        Status::StockReserved => vec![Command::AuthorizePayment],
        Status::PaymentHeld => match &order.review {
            Some((approve, reviewer)) => vec![Command::ReviewPayment {
                approve: *approve,
                reviewer: reviewer.clone(),
            }],
            None => Vec::new(),
        },
        Status::Paid if order.stock_committed => vec![Command::CapturePayment],
        Status::Paid => vec![Command::CommitStock],
        Status::Cancelling => {
            let mut commands = Vec::new();
            if order.awaiting_release {
                commands.push(Command::ReleaseStock);
            }
            if order.awaiting_void {
                commands.push(Command::VoidPayment);
            }
            if order.awaiting_return {
                commands.push(Command::ReturnStock);
            }
            commands
        }
        Status::Refunding => vec![Command::RefundPayment],
        Status::Confirmed
        | Status::Rejected
        | Status::Cancelled
        | Status::Refunded
        | Status::RefundFailed => Vec::new(),
    }
}

/// Starts cancelling `order` for `reason`, releasing its stock and voiding its payment
/// as asked; cancelled at once if there is nothing to undo.
fn cancel(reason: CancelReason, release_stock: bool, void_payment: bool) -> Decision {
    let mut events = vec![OrderEvent::CancellationStarted {
        reason,
        release_stock,
        void_payment,
        return_stock: false,
    }];
    let mut commands = Vec::new();
    if release_stock {
        commands.push(Command::ReleaseStock);
    }
    if void_payment {
        commands.push(Command::VoidPayment);
    }
    if commands.is_empty() {
        events.push(OrderEvent::Cancelled { reason });
    }
    Decision::new(events, commands)
}

/// One compensation of a cancellation is done; the order is cancelled if it was the last.
fn compensated(order: &Order, event: OrderEvent) -> Decision {
    let mut after = order.clone();
    after.apply(&event, 0);
    let mut events = vec![event];
    if !after.awaiting_release && !after.awaiting_void && !after.awaiting_return {
        let reason = order.cancel_reason.unwrap_or(CancelReason::Other);
        events.push(OrderEvent::Cancelled { reason });
    }
    Decision::new(events, Vec::new())
}

/// What `order` does about `input`, or why a request is refused.
pub fn react(order: &Order, input: Input, deadlines: &Deadlines) -> Result<Decision, Refusal> {
    use Status as S;
    let status = order.status;
    Ok(match input {
        Input::StockReserved { expires_at_ms } if status == S::Placed => Decision::new(
            vec![OrderEvent::StockReserved { expires_at_ms }],
            vec![Command::AuthorizePayment],
        ),
        Input::StockRejected { unavailable } => match status {
            S::Placed => Decision::new(vec![OrderEvent::StockRejected { unavailable }], vec![]),
            // A reservation re-sent after the cancellation's release was refused:
            // nothing is held, which is what the release wanted.
            S::Cancelling if order.awaiting_release => compensated(
                order,
                OrderEvent::StockReleased {
                    reason: ReleaseReason::Rejected,
                },
            ),
            _ => Decision::nothing(),
        },
        Input::StockReleased { reason } => match status {
            S::Cancelling if order.awaiting_release => {
                compensated(order, OrderEvent::StockReleased { reason })
            }
            // The hold ran out before the order was paid for and sold.
            S::StockReserved | S::PaymentHeld if reason == ReleaseReason::Expired => {
                cancel(CancelReason::ReservationExpired, false, true)
            }
            S::Paid if reason == ReleaseReason::Expired && !order.stock_committed => {
                cancel(CancelReason::ReservationExpired, false, true)
            }
            _ => Decision::nothing(),
        },
        Input::StockCommitted if status == S::Paid && !order.stock_committed => Decision::new(
            vec![OrderEvent::StockCommitted],
            vec![Command::CapturePayment],
        ),
        Input::CommitRefused if status == S::Paid && !order.stock_committed => {
            cancel(CancelReason::ReservationExpired, false, true)
        }
        Input::PaymentAuthorized if matches!(status, S::StockReserved | S::PaymentHeld) => {
            Decision::new(
                vec![OrderEvent::PaymentAuthorized],
                vec![Command::CommitStock],
            )
        }
        Input::PaymentHeld { reasons } if status == S::StockReserved => {
            Decision::new(vec![OrderEvent::PaymentHeld { reasons }], vec![])
        }
        Input::PaymentDeclined { reason } => match status {
            S::StockReserved | S::PaymentHeld => {
                let code = if reason == DeclineReason::ReviewDeclined {
                    CancelReason::ReviewDeclined
                } else {
                    CancelReason::PaymentDeclined
                };
                let mut decision = cancel(code, true, false);
                decision
                    .events
                    .insert(0, OrderEvent::PaymentDeclined { reason });
                decision
            }
            // Payments refused a payment it had already voided: nothing is authorized.
            S::Cancelling if order.awaiting_void => compensated(order, OrderEvent::PaymentVoided),
            _ => Decision::nothing(),
        },
        Input::PaymentCaptured { amount } if status == S::Paid && order.stock_committed => {
            Decision::new(vec![OrderEvent::PaymentCaptured { amount }], vec![])
        }
        // Nothing was taken and the authorization is spent (payments voided it): the
        // stock sold to this order goes back on sale and the order is cancelled.
        Input::PaymentFailed { operation, reason }
            if operation == Operation::Capture && status == S::Paid && order.stock_committed =>
        {
            Decision::new(
                vec![
                    OrderEvent::PaymentFailed { operation, reason },
                    OrderEvent::CancellationStarted {
                        reason: CancelReason::PaymentFailed,
                        release_stock: false,
                        void_payment: false,
                        return_stock: true,
                    },
                ],
                vec![Command::ReturnStock],
            )
        }
        // The money stays captured: an end, for an operator to settle.
        Input::PaymentFailed { operation, reason }
            if operation == Operation::Refund && status == S::Refunding =>
        {
            Decision::new(
                vec![OrderEvent::PaymentFailed { operation, reason }],
                vec![],
            )
        }
        Input::StockReturned if status == S::Cancelling && order.awaiting_return => {
            compensated(order, OrderEvent::StockReturned)
        }
        Input::PaymentVoided if status == S::Cancelling && order.awaiting_void => {
            compensated(order, OrderEvent::PaymentVoided)
        }
        Input::PaymentRefunded { amount } if status == S::Refunding => {
            Decision::new(vec![OrderEvent::PaymentRefunded { amount }], vec![])
        }
        Input::CustomerCancel => match status {
            S::Placed => cancel(CancelReason::CustomerCancelled, true, false),
            S::StockReserved | S::PaymentHeld => {
                cancel(CancelReason::CustomerCancelled, true, true)
            }
            other => return Err(Refusal::NotCancellable(other.as_str())),
        },
        Input::Review { approve, reviewer } => match status {
            S::PaymentHeld if order.review.is_none() => Decision::new(
                vec![OrderEvent::ReviewRequested {
                    approve,
                    reviewer: reviewer.clone(),
                }],
                vec![Command::ReviewPayment { approve, reviewer }],
            ),
            other => return Err(Refusal::NotHeld(other.as_str())),
        },
        Input::Refund { by } => match status {
            S::Confirmed => Decision::new(
                vec![OrderEvent::RefundRequested { by }],
                vec![Command::RefundPayment],
            ),
            other => return Err(Refusal::NotRefundable(other.as_str())),
        },
        Input::DeadlinePassed => deadline_passed(order, deadlines),
        // Duplicates, and answers overtaken by a cancellation.
        _ => Decision::nothing(),
    })
}

fn deadline_passed(order: &Order, deadlines: &Deadlines) -> Decision {
    use Status as S;
    if order.status == S::PaymentHeld && order.review.is_none() {
        // Nobody reviewed the payment while the stock was held.
        return cancel(CancelReason::ReservationExpired, true, true);
    }
    let gives_up = matches!(order.status, S::Placed | S::StockReserved | S::PaymentHeld);
    if gives_up && order.attempts >= deadlines.max_attempts {
        return cancel(CancelReason::DeadlineMissed, true, order.payment_requested);
    }
    let commands = awaited(order);
    let attempt = order.attempts.saturating_add(1);
    let events = commands
        .iter()
        .map(|command| OrderEvent::CommandResent {
            command: command.name().to_owned(),
            attempt,
        })
        .collect();
    Decision::new(events, commands)
}

#[cfg(test)]
mod tests {
    use contracts::Currency;
    use contracts::messaging::orders::OrderLine;

    use super::*;

    const EUR: fn(i64) -> Money = |amount_minor| Money {
        amount_minor,
        currency: Currency::EUR,
    };

    fn placed() -> Order {
        let placed = OrderEvent::Placed {
            customer_id: "c".to_owned(),
            lines: vec![OrderLine {
                product_id: test_support::product_id("p"),
                name: "P".to_owned(),
                quantity: 2,
                unit_price: EUR(500),
            }],
            total: EUR(1000),
            payment_method: "pm".to_owned(),
            cart_revision: None,
            trace_id: None,
        };
        Order::fold("o", [(&placed, 0)]).expect("a history")
    }

    /// Feeds `inputs` in turn, applying each decision; returns the order and every
    /// command sent.
    fn run(inputs: Vec<Input>) -> (Order, Vec<Command>) {
        let deadlines = Deadlines::default();
        let mut order = placed();
        let mut sent = Vec::new();
        for (at, input) in (1..).zip(inputs) {
            let decision = react(&order, input, &deadlines).expect("allowed");
            for event in &decision.events {
                order.apply(event, at);
            }
            sent.extend(decision.commands);
        }
        (order, sent)
    }

    #[test]
    fn the_happy_path_reserves_authorizes_commits_and_captures() {
        let (order, sent) = run(vec![
            Input::StockReserved { expires_at_ms: 900 },
            Input::PaymentAuthorized,
            Input::StockCommitted,
            Input::PaymentCaptured { amount: EUR(1000) },
        ]);
        assert_eq!(order.status, Status::Confirmed);
        assert_eq!(
            sent,
            [
                Command::AuthorizePayment,
                Command::CommitStock,
                Command::CapturePayment
            ]
        );
        assert_eq!(Deadlines::default().due(&order), None);
    }

    #[test]
    fn duplicate_answers_change_nothing() {
        let deadlines = Deadlines::default();
        let (order, _) = run(vec![Input::StockReserved { expires_at_ms: 900 }]);
        let again = react(
            &order,
            Input::StockReserved { expires_at_ms: 900 },
            &deadlines,
        );
        assert_eq!(again, Ok(Decision::nothing()));
        let early_capture = react(
            &order,
            Input::PaymentCaptured { amount: EUR(1) },
            &deadlines,
        );
        assert_eq!(early_capture, Ok(Decision::nothing()));
    }

    #[test]
    fn a_decline_releases_the_stock_then_cancels() {
        let (order, sent) = run(vec![
            Input::StockReserved { expires_at_ms: 900 },
            Input::PaymentDeclined {
                reason: DeclineReason::CardDeclined,
            },
        ]);
        assert_eq!(order.status, Status::Cancelling);
        assert_eq!(sent.last(), Some(&Command::ReleaseStock));
        let (order, _) = run(vec![
            Input::StockReserved { expires_at_ms: 900 },
            Input::PaymentDeclined {
                reason: DeclineReason::CardDeclined,
            },
            Input::StockReleased {
                reason: ReleaseReason::Released,
            },
        ]);
        assert_eq!(order.status, Status::Cancelled);
        assert_eq!(order.cancel_reason, Some(CancelReason::PaymentDeclined));
    }

    #[test]
    fn rejection_ends_the_order_without_compensation() {
        let (order, sent) = run(vec![Input::StockRejected {
            unavailable: vec![test_support::product_id("p")],
        }]);
        assert_eq!(order.status, Status::Rejected);
        assert!(sent.is_empty());
    }

    #[test]
    fn a_held_payment_waits_for_review_until_the_hold_ends() {
        let deadlines = Deadlines::default();
        let (order, _) = run(vec![
            Input::StockReserved {
                expires_at_ms: 10_000,
            },
            Input::PaymentHeld {
                reasons: vec![HoldReason::Amount],
            },
        ]);
        assert_eq!(order.status, Status::PaymentHeld);
        assert_eq!(
            deadlines.due(&order),
            Some(10_000 + deadlines.held_grace_ms)
        );
        let expired = react(&order, Input::DeadlinePassed, &deadlines).expect("allowed");
        assert_eq!(
            expired.commands,
            [Command::ReleaseStock, Command::VoidPayment]
        );
        let (approved, sent) = run(vec![
            Input::StockReserved {
                expires_at_ms: 10_000,
            },
            Input::PaymentHeld { reasons: vec![] },
            Input::Review {
                approve: true,
                reviewer: "admin".to_owned(),
            },
            Input::PaymentAuthorized,
        ]);
        assert_eq!(approved.status, Status::Paid);
        assert!(sent.contains(&Command::ReviewPayment {
            approve: true,
            reviewer: "admin".to_owned()
        }));
    }

    #[test]
    fn an_expired_hold_voids_the_payment_and_cancels() {
        let (order, sent) = run(vec![
            Input::StockReserved { expires_at_ms: 900 },
            Input::PaymentAuthorized,
            Input::CommitRefused,
            Input::PaymentVoided,
        ]);
        assert_eq!(order.status, Status::Cancelled);
        assert_eq!(order.cancel_reason, Some(CancelReason::ReservationExpired));
        assert_eq!(sent.last(), Some(&Command::VoidPayment));
    }

    #[test]
    fn deadlines_resend_then_give_up_and_compensate() {
        let deadlines = Deadlines::default();
        let mut order = placed();
        for attempt in 1..=deadlines.max_attempts {
            let decision = react(&order, Input::DeadlinePassed, &deadlines).expect("allowed");
            assert_eq!(decision.commands, [Command::ReserveStock]);
            for event in &decision.events {
                order.apply(event, i64::from(attempt));
            }
            assert_eq!(order.attempts, attempt);
        }
        let decision = react(&order, Input::DeadlinePassed, &deadlines).expect("allowed");
        assert_eq!(decision.commands, [Command::ReleaseStock]);
        assert!(matches!(
            &decision.events[0],
            OrderEvent::CancellationStarted { reason, .. } if *reason == CancelReason::DeadlineMissed
        ));
    }

    #[test]
    fn capture_is_resent_forever_with_capped_backoff() {
        let deadlines = Deadlines::default();
        let (mut order, _) = run(vec![
            Input::StockReserved { expires_at_ms: 900 },
            Input::PaymentAuthorized,
            Input::StockCommitted,
        ]);
        for _ in 0..10 {
            let decision = react(&order, Input::DeadlinePassed, &deadlines).expect("allowed");
            assert_eq!(decision.commands, [Command::CapturePayment]);
            for event in &decision.events {
                order.apply(event, 0);
            }
        }
        assert_eq!(deadlines.due(&order), Some(deadlines.max_step_ms));
    }

    #[test]
    fn customers_cancel_only_before_payment() {
        let deadlines = Deadlines::default();
        let (order, _) = run(vec![Input::StockReserved { expires_at_ms: 900 }]);
        let cancel = react(&order, Input::CustomerCancel, &deadlines).expect("allowed");
        assert_eq!(
            cancel.commands,
            [Command::ReleaseStock, Command::VoidPayment]
        );
        let (paid, _) = run(vec![
            Input::StockReserved { expires_at_ms: 900 },
            Input::PaymentAuthorized,
        ]);
        assert_eq!(
            react(&paid, Input::CustomerCancel, &deadlines),
            Err(Refusal::NotCancellable("paid"))
        );
    }

    #[test]
    fn a_void_answered_by_a_decline_still_completes_the_cancellation() {
        let (order, _) = run(vec![
            Input::StockReserved { expires_at_ms: 900 },
            Input::CustomerCancel,
            Input::PaymentDeclined {
                reason: DeclineReason::Voided,
            },
            Input::StockReleased {
                reason: ReleaseReason::Released,
            },
        ]);
        assert_eq!(order.status, Status::Cancelled);
    }

    #[test]
    fn a_refused_capture_returns_the_stock_and_cancels() {
        let refused = || Input::PaymentFailed {
            operation: Operation::Capture,
            reason: DeclineReason::AuthorizationLapsed,
        };
        let paid_and_sold = vec![
            Input::StockReserved { expires_at_ms: 900 },
            Input::PaymentAuthorized,
            Input::StockCommitted,
        ];
        let (order, sent) = run([paid_and_sold.clone(), vec![refused()]].concat());
        assert_eq!(order.status, Status::Cancelling);
        assert_eq!(sent.last(), Some(&Command::ReturnStock));
        // Until inventory answers, a deadline sends the return again, not the capture.
        assert_eq!(awaited(&order), [Command::ReturnStock]);
        let (order, _) = run([
            paid_and_sold,
            vec![
                refused(),
                refused(),
                Input::StockReturned,
                Input::StockReturned,
            ],
        ]
        .concat());
        assert_eq!(order.status, Status::Cancelled);
        assert_eq!(order.cancel_reason, Some(CancelReason::PaymentFailed));
        assert!(order.status.is_terminal());
    }

    #[test]
    fn a_refused_refund_ends_the_order_for_an_operator() {
        let deadlines = Deadlines::default();
        let (order, sent) = run(vec![
            Input::StockReserved { expires_at_ms: 900 },
            Input::PaymentAuthorized,
            Input::StockCommitted,
            Input::PaymentCaptured { amount: EUR(1000) },
            Input::Refund {
                by: "admin".to_owned(),
            },
            Input::PaymentFailed {
                operation: Operation::Refund,
                reason: DeclineReason::CardClosed,
            },
        ]);
        assert_eq!(order.status, Status::RefundFailed);
        assert!(order.status.is_terminal());
        assert_eq!(sent.last(), Some(&Command::RefundPayment));
        assert_eq!(deadlines.due(&order), None, "nothing is re-sent");
        // A refused capture cannot arrive for a refund, nor change a settled order.
        let late = Input::PaymentFailed {
            operation: Operation::Capture,
            reason: DeclineReason::AuthorizationLapsed,
        };
        assert!(react(&order, late, &deadlines).expect("allowed").is_empty());
    }
}
