//! The saga's commands, each handled in two phases.
//!
//! [`prepare`] reads the payment and asks the processor, outside any database
//! transaction: a slow card must not hold SQLite's write lock, nor a PostgreSQL
//! transaction, for seconds. [`record`] then runs inside the inbox's transaction and
//! writes the payment's new state, its ledger transaction and its answer together.
//!
//! A crash between the phases is safe: the command is delivered again, and the
//! processor, asked again under the same idempotency key ([`super::processor_key`]),
//! gives the same answer. Should the payment have moved between the phases (the same
//! command handled by two consumers at once), [`record`] refuses, the transaction rolls
//! back, and the command is handled again from the start on the fresh state.
//!
//! What each command does in each state is [`super::decide`]'s pure table. A command
//! that does not move the payment (a repeat, or one that came too late) is answered with
//! the event describing where the payment stands, which for a repeat is the answer the
//! first one got; an authorization after a void's tombstone first voids whatever the
//! processor authorized under the order's key.
//!
//! The processor may refuse an operation for good (a [`ProcessorError::Declined`]),
//! and asking again would change nothing, so it is not retried:
//!
//! - a refused **capture** took nothing, and the authorization it needed is gone: the
//!   payment is voided (its ledger transaction releases the authorized amount) and
//!   answered `PaymentFailed`, and the saga returns the stock and cancels the order;
//! - a refused **void** leaves nothing the shop can still take: the payment is voided
//!   all the same, and the hold on the card lapses at the issuer;
//! - a refused **refund** leaves the money captured: the payment stays captured and is
//!   answered `PaymentFailed`, and the order ends as `refund_failed` for an operator.
//!
//! Every refusal is logged as an error and counted in
//! `payments_processor_refusals_total{operation, reason}`, which an alert watches.

use anyhow::Context as _;
use contracts::messaging::payments::{
    AuthorizePaymentV1, DeclineReason, HoldReason, Operation, PaymentAuthorizedV1,
    PaymentCapturedV1, PaymentDeclinedV1, PaymentFailedV1, PaymentHeldV1, PaymentRefundedV1,
    PaymentVoidedV1,
};
use contracts::{Money, OrderId};
use platform::outbox::{self, Origin};
use sqlx::AnyConnection;

pub use super::decide::Command;
use super::decide::{self, Action, Live, Reply};
use super::{Payments, ask, processor_key};
use crate::domain::{Charge, Payment, Stage, State};
use crate::fraud::{self, Facts, Verdict};
use crate::ledger::{self, Kind, Transaction};
use crate::processor::{CardRef, DeclineCode, ProcessorError};
use crate::store;

/// A command with what phase one found out: the state it saw and the processor's answer.
#[derive(Clone, Debug)]
pub struct Prepared {
    command: Command,
    seen: Option<State>,
    step: Step,
}

/// What phase one established.
#[derive(Clone, Debug)]
enum Step {
    /// Nothing moves: answer from where the payment stands; with no payment, the
    /// command is ignored.
    Answer(Option<Payment>),
    /// A new payment, decided (and authorized at the processor, unless declined).
    Open {
        command: AuthorizePaymentV1,
        payment_method: Option<String>,
        outcome: Outcome,
        velocity: Velocity,
    },
    /// A void before any authorization.
    Tombstone,
    /// The payment moves on, as the processor (or a reviewer) decided.
    Move(Move),
    /// The processor refused the refund for good.
    RefundRefused { reason: DeclineReason },
}

/// A payment's move from the state phase one saw to the stage it decided, with the
/// ledger transaction and the answer that go with it.
#[derive(Clone, Debug)]
struct Move {
    from: State,
    to: Stage,
    movement: Option<(Kind, Money)>,
    answer: Answer,
    effect: Effect,
    /// What to log once it is recorded, if anything.
    note: Option<String>,
}

impl Move {
    /// A move of `live` (held or authorized) to `to`.
    fn of(
        live: Live<'_>,
        to: Stage,
        movement: Option<Kind>,
        answer: Answer,
        effect: Effect,
    ) -> Self {
        Self {
            from: live.payment.state(),
            to,
            movement: movement.map(|kind| (kind, live.charge.amount)),
            answer,
            effect,
            note: None,
        }
    }
}

/// The velocity rule, checked again when a new payment is recorded.
#[derive(Clone, Copy, Debug)]
struct Velocity {
    window_ms: i64,
    hold_after: u64,
}

/// How a new payment ended its first phase.
#[derive(Clone, Debug)]
enum Outcome {
    Declined(DeclineReason),
    Authorized {
        authorization_id: String,
        hold_reasons: Vec<HoldReason>,
    },
}

/// What recording a command changed, for metrics once it committed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Nothing changed; at most a repeated answer was sent.
    Nothing,
    /// A payment was authorized (at once, or by a reviewer).
    Authorized,
    /// A payment was authorized and held for review.
    Held,
    /// A payment was declined, for this reason.
    Declined(DeclineReason),
    /// An amount was captured.
    Captured(Money),
    /// A payment was voided.
    Voided,
    /// An amount was refunded.
    Refunded(Money),
    /// The processor refused a capture for good: the payment was voided.
    CaptureFailed,
}

/// Phase one: reads the payment and, if the command moves money, asks the processor.
/// Holds no transaction. A transient processor failure is an error: the command is
/// handled again later, and the processor's idempotency makes that safe.
pub async fn prepare(payments: &Payments, command: Command, now: i64) -> anyhow::Result<Prepared> {
    let found = {
        let mut connection = payments.db.pool().acquire().await?;
        store::payment(&mut connection, command.order_id()).await?
    };
    let seen = found.as_ref().map(Payment::state);
    let step = match decide::decide(&command, found.as_ref()) {
        Action::Open(authorize) => open(payments, authorize, now).await?,
        Action::VoidOvertaken(authorize, tombstone) => {
            void_overtaken(payments, authorize).await?;
            Step::Answer(Some(tombstone.clone()))
        }
        Action::Approve(held, review) => {
            let to = Stage::Authorized {
                charge: held.charge.clone(),
                authorization: held.authorization.to_owned(),
            };
            let amount = held.charge.amount;
            let mut approved = Move::of(
                held,
                to,
                None,
                Answer::Authorized(amount),
                Effect::Authorized,
            );
            approved.note = Some(format!("payment approved by {}", review.reviewer));
            Step::Move(approved)
        }
        Action::DeclineOnReview(held, review) => {
            void_at_processor(payments, held).await?;
            let reason = DeclineReason::ReviewDeclined;
            let to = Stage::Declined {
                charge: held.charge.clone(),
                reason,
            };
            let (answer, effect) = (Answer::Declined(reason), Effect::Declined(reason));
            let mut declined = Move::of(held, to, Some(Kind::Void), answer, effect);
            declined.note = Some(format!("payment declined on review by {}", review.reviewer));
            Step::Move(declined)
        }
        Action::Capture(authorized) => {
            let amount = authorized.charge.amount;
            let key = processor_key(authorized.payment.order_id, Kind::Capture);
            let asked = payments
                .processor
                .capture(&key, authorized.authorization, amount);
            let charge = authorized.charge.clone();
            Step::Move(match ask(asked).await {
                Ok(capture) => {
                    let to = Stage::Captured {
                        charge,
                        authorization: authorized.authorization.to_owned(),
                        capture: capture.id,
                    };
                    let (answer, effect) = (Answer::Captured(amount), Effect::Captured(amount));
                    Move::of(authorized, to, Some(Kind::Capture), answer, effect)
                }
                Err(ProcessorError::Declined { code }) => {
                    // Nothing was taken, and the authorization is spent: voided.
                    let reason = refused("capture", authorized.payment.order_id, code);
                    let to = Stage::Voided {
                        charge,
                        capture_refused: Some(reason),
                    };
                    let answer = Answer::Failed(Operation::Capture, reason);
                    Move::of(
                        authorized,
                        to,
                        Some(Kind::Void),
                        answer,
                        Effect::CaptureFailed,
                    )
                }
                Err(error) => {
                    return Err(anyhow::Error::new(error).context("capturing at the processor"));
                }
            })
        }
        Action::Tombstone => Step::Tombstone,
        Action::Void(live) => {
            void_at_processor(payments, live).await?;
            let to = Stage::Voided {
                charge: live.charge.clone(),
                capture_refused: None,
            };
            Step::Move(Move::of(
                live,
                to,
                Some(Kind::Void),
                Answer::Voided,
                Effect::Voided,
            ))
        }
        Action::Refund(captured) => {
            let amount = captured.charge.amount;
            let key = processor_key(captured.payment.order_id, Kind::Refund);
            match ask(payments.processor.refund(&key, captured.capture, amount)).await {
                Ok(refund) => Step::Move(Move {
                    from: captured.payment.state(),
                    to: Stage::Refunded {
                        charge: captured.charge.clone(),
                        authorization: captured.authorization.to_owned(),
                        capture: captured.capture.to_owned(),
                        refund: refund.id,
                    },
                    movement: Some((Kind::Refund, amount)),
                    answer: Answer::Refunded(amount),
                    effect: Effect::Refunded(amount),
                    note: None,
                }),
                Err(ProcessorError::Declined { code }) => Step::RefundRefused {
                    reason: refused("refund", captured.payment.order_id, code),
                },
                Err(error) => {
                    return Err(anyhow::Error::new(error).context("refunding at the processor"));
                }
            }
        }
        Action::Answer(payment) => Step::Answer(payment.cloned()),
    };
    Ok(Prepared {
        command,
        seen,
        step,
    })
}

/// Phase two, inside the inbox's transaction: records the payment's new state, its
/// ledger transaction and its answer. Fails, to be handled again from phase one, if the
/// payment moved since phase one saw it.
pub async fn record(
    connection: &mut AnyConnection,
    prepared: &Prepared,
    origin: &Origin,
    now: i64,
) -> anyhow::Result<Effect> {
    let order_id = prepared.command.order_id();
    let current = store::payment(&mut *connection, order_id).await?;
    let state = current.as_ref().map(Payment::state);
    anyhow::ensure!(
        state == prepared.seen,
        "the payment of order {order_id} moved from {} to {} while the processor was asked; \
         handling the command again",
        describe(prepared.seen),
        describe(state),
    );
    match &prepared.step {
        Step::Open {
            command,
            payment_method,
            outcome,
            velocity,
        } => {
            let new = NewPayment {
                command,
                payment_method: payment_method.clone(),
                outcome,
                velocity: *velocity,
            };
            open_payment(connection, new, origin, now).await
        }
        Step::Tombstone => {
            let tombstone = Payment::new(order_id, Stage::Tombstone, now);
            insert(connection, &tombstone).await?;
            answer(connection, order_id, Answer::Voided, origin).await?;
            Ok(Effect::Voided)
        }
        Step::Move(step) => {
            move_payment(connection, order_id, step, now).await?;
            if let Some(note) = &step.note {
                tracing::info!(order = %order_id, "{note}");
            }
            answer(connection, order_id, step.answer.clone(), origin).await?;
            Ok(step.effect.clone())
        }
        Step::RefundRefused { reason } => {
            // The money stays captured, and the ledger with it.
            let failed = Answer::Failed(Operation::Refund, *reason);
            answer(connection, order_id, failed, origin).await?;
            Ok(Effect::Nothing)
        }
        Step::Answer(Some(payment)) => {
            let repeated = repeat_answer(&prepared.command, payment);
            answer(connection, order_id, repeated, origin).await?;
            Ok(Effect::Nothing)
        }
        Step::Answer(None) => {
            let command = prepared.command.name();
            tracing::warn!(
                order = %order_id,
                "{command} for an order without a payment ignored"
            );
            Ok(Effect::Nothing)
        }
    }
}

/// Decides a new payment: the method, the fraud rules, then the processor.
///
/// The facts for the fraud rules are read before the authorization and outside any
/// transaction, so two payments of one customer handled at the same instant may each
/// miss the other in the velocity count. Recording the payment counts again, one
/// payment of the customer at a time ([`open_payment`]), and holds what it missed.
async fn open(payments: &Payments, command: &AuthorizePaymentV1, now: i64) -> anyhow::Result<Step> {
    let velocity = Velocity {
        window_ms: i64::try_from(payments.rules.velocity_window_secs.saturating_mul(1000))
            .unwrap_or(i64::MAX),
        hold_after: payments.rules.velocity_hold_after,
    };
    let declined = |payment_method: Option<String>, reason: DeclineReason| Step::Open {
        command: command.clone(),
        payment_method,
        outcome: Outcome::Declined(reason),
        velocity,
    };
    let (method, verdict) = {
        let mut connection = payments.db.pool().acquire().await?;
        let method = store::method(&mut connection, &command.payment_method)
            .await?
            .filter(|method| method.customer_id == command.customer_id.to_string());
        let Some(method) = method else {
            // What the order named is not kept: it is no token of this customer's.
            return Ok(declined(None, DeclineReason::UnknownPaymentMethod));
        };
        if command.amount.amount_minor <= 0 {
            tracing::warn!(
                order = %command.order_id,
                "refusing to authorize a non-positive amount"
            );
            return Ok(declined(Some(method.token), DeclineReason::InvalidAmount));
        }
        let registered =
            store::registered_at(&mut connection, &command.customer_id.to_string()).await?;
        let recent = store::payments_since(
            &mut connection,
            &command.customer_id.to_string(),
            now.saturating_sub(velocity.window_ms),
        )
        .await?;
        let facts = Facts {
            amount_minor: command.amount.amount_minor,
            recent_payments: recent,
            account_age_ms: registered.map(|at| now.saturating_sub(at)),
        };
        (method, fraud::assess(&payments.rules, &facts))
    };
    let hold_reasons = match verdict {
        Verdict::Decline => return Ok(declined(Some(method.token), DeclineReason::Fraud)),
        Verdict::Approve => Vec::new(),
        Verdict::Hold(reasons) => reasons,
    };
    let card = CardRef::new(method.processor_ref);
    let key = processor_key(command.order_id, Kind::Authorize);
    let outcome = match ask(payments.processor.authorize(&key, &card, command.amount)).await {
        Ok(authorization) => Outcome::Authorized {
            authorization_id: authorization.id,
            hold_reasons,
        },
        Err(ProcessorError::Declined { code }) => Outcome::Declined(code.into()),
        Err(error @ ProcessorError::Transient(_)) => {
            return Err(anyhow::Error::new(error).context("authorizing at the processor"));
        }
    };
    Ok(Step::Open {
        command: command.clone(),
        payment_method: Some(method.token),
        outcome,
        velocity,
    })
}

/// Voids an authorization that a void may have overtaken. The void found no payment and
/// left a tombstone while this command was at the processor, so its authorization was
/// never recorded. Asked again under the same key, the processor returns that
/// authorization if it made one (or makes one now); either way it is voided, so nothing
/// stays held on the card for a cancelled order.
async fn void_overtaken(payments: &Payments, command: &AuthorizePaymentV1) -> anyhow::Result<()> {
    let method = {
        let mut connection = payments.db.pool().acquire().await?;
        store::method(&mut connection, &command.payment_method)
            .await?
            .filter(|method| method.customer_id == command.customer_id.to_string())
    };
    let Some(method) = method.filter(|_| command.amount.amount_minor > 0) else {
        return Ok(());
    };
    let card = CardRef::new(method.processor_ref);
    let key = processor_key(command.order_id, Kind::Authorize);
    match ask(payments.processor.authorize(&key, &card, command.amount)).await {
        Ok(authorization) => {
            let key = processor_key(command.order_id, Kind::Void);
            ask(payments.processor.void(&key, &authorization.id))
                .await
                .context("voiding an authorization a void overtook")
        }
        Err(ProcessorError::Declined { .. }) => Ok(()),
        Err(error @ ProcessorError::Transient(_)) => Err(anyhow::Error::new(error)
            .context("asking the processor for an overtaken authorization")),
    }
}

/// Voids the authorization of `live`. A void refused for good leaves nothing the shop
/// could still take: it counts as done, and the hold lapses at the issuer.
async fn void_at_processor(payments: &Payments, live: Live<'_>) -> anyhow::Result<()> {
    let order_id = live.payment.order_id;
    let key = processor_key(order_id, Kind::Void);
    match ask(payments.processor.void(&key, live.authorization)).await {
        Ok(()) => Ok(()),
        Err(ProcessorError::Declined { code }) => {
            refused("void", order_id, code);
            Ok(())
        }
        Err(error) => Err(anyhow::Error::new(error).context("voiding at the processor")),
    }
}

/// Reports a refusal for good of `operation` on `order_id`'s payment, for the operator
/// alert, and returns its reason code.
fn refused(operation: &'static str, order_id: OrderId, code: DeclineCode) -> DeclineReason {
    let reason = DeclineReason::from(code);
    tracing::error!(
        order = %order_id,
        operation,
        reason = reason.as_str(),
        "the card processor refused the operation for good"
    );
    metrics::counter!(
        "payments_processor_refusals_total",
        "operation" => operation,
        "reason" => reason.as_str()
    )
    .increment(1);
    reason
}

/// A new payment as phase one decided it.
struct NewPayment<'a> {
    command: &'a AuthorizePaymentV1,
    payment_method: Option<String>,
    outcome: &'a Outcome,
    velocity: Velocity,
}

/// Records a new payment as phase one decided it. An authorized payment is recorded
/// with its customer's other payments locked out, and the velocity rule counted again:
/// a payment that a concurrent one pushed over the limit is held, as it would have
/// been had they come one after the other. (Only ever held: the card was asked
/// already, and a held payment waits for a person.)
async fn open_payment(
    connection: &mut AnyConnection,
    new: NewPayment<'_>,
    origin: &Origin,
    now: i64,
) -> anyhow::Result<Effect> {
    let NewPayment {
        command,
        payment_method,
        outcome,
        velocity,
    } = new;
    let charge = Charge {
        customer_id: command.customer_id.to_string(),
        amount: command.amount,
        payment_method,
    };
    let (payment, reply, effect) = match outcome {
        Outcome::Declined(reason) => {
            let declined = Stage::Declined {
                charge,
                reason: *reason,
            };
            (
                Payment::new(command.order_id, declined, now),
                Answer::Declined(*reason),
                Effect::Declined(*reason),
            )
        }
        Outcome::Authorized {
            authorization_id,
            hold_reasons,
        } => {
            let mut hold_reasons = hold_reasons.clone();
            let customer_id = command.customer_id.to_string();
            store::lock_customer(&mut *connection, &customer_id, now).await?;
            let recent = store::payments_since(
                &mut *connection,
                &customer_id,
                now.saturating_sub(velocity.window_ms),
            )
            .await?;
            if recent >= velocity.hold_after && !hold_reasons.contains(&fraud::Reason::Velocity) {
                hold_reasons.push(fraud::Reason::Velocity);
            }
            let authorization = authorization_id.clone();
            let (stage, reply, effect) = if hold_reasons.is_empty() {
                let stage = Stage::Authorized {
                    charge,
                    authorization,
                };
                (
                    stage,
                    Answer::Authorized(command.amount),
                    Effect::Authorized,
                )
            } else {
                let stage = Stage::Held {
                    charge,
                    authorization,
                };
                (stage, Answer::Held(hold_reasons.clone()), Effect::Held)
            };
            let mut payment = Payment::new(command.order_id, stage, now);
            payment.hold_reasons = hold_reasons;
            (payment, reply, effect)
        }
    };
    insert(connection, &payment).await?;
    if payment.stage.authorization().is_some() {
        let transaction = Transaction::transfer(command.order_id, Kind::Authorize, command.amount)?;
        ledger::append(connection, &transaction, now).await?;
    }
    answer(connection, command.order_id, reply, origin).await?;
    Ok(effect)
}

async fn insert(connection: &mut AnyConnection, payment: &Payment) -> anyhow::Result<()> {
    // Phase two checked there was none; a concurrent insert since then means the
    // command must be handled again on the fresh state.
    anyhow::ensure!(
        store::insert_payment(connection, payment).await?,
        "order {} got a payment concurrently; handling the command again",
        payment.order_id
    );
    Ok(())
}

/// Records `step`: the payment of `order_id` moves to its stage, with the ledger
/// transaction of its movement if any.
async fn move_payment(
    connection: &mut AnyConnection,
    order_id: OrderId,
    step: &Move,
    now: i64,
) -> anyhow::Result<()> {
    let moved = store::transition(&mut *connection, order_id, step.from, &step.to, now).await?;
    anyhow::ensure!(
        moved,
        "the payment of order {order_id} moved concurrently; handling the command again"
    );
    if let Some((kind, amount)) = step.movement {
        let transaction = Transaction::transfer(order_id, kind, amount)?;
        ledger::append(connection, &transaction, now).await?;
    }
    Ok(())
}

/// An event payments answers with.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Answer {
    Authorized(Money),
    Held(Vec<HoldReason>),
    Declined(DeclineReason),
    Captured(Money),
    Voided,
    Refunded(Money),
    /// The processor refused `operation` for good, for this reason.
    Failed(Operation, DeclineReason),
}

/// The answer to a command that did not move the payment, as [`decide::reply`] says.
fn repeat_answer(command: &Command, payment: &Payment) -> Answer {
    if let (Command::Authorize(authorize), Some(charge)) = (command, payment.charge())
        && (charge.customer_id != authorize.customer_id.to_string()
            || charge.amount != authorize.amount)
    {
        tracing::warn!(
            order = %payment.order_id,
            "an authorization differing from the order's payment was answered with it"
        );
    }
    match decide::reply(command, payment) {
        Reply::Authorization => authorization_answer(payment),
        Reply::Captured(amount) => Answer::Captured(amount),
        Reply::CaptureFailed(reason) => Answer::Failed(Operation::Capture, reason),
        Reply::Voided => Answer::Voided,
        Reply::Refunded(amount) => Answer::Refunded(amount),
        Reply::Standing => {
            tracing::warn!(
                order = %payment.order_id,
                state = payment.state().as_str(),
                "{} does not apply; answering with the payment's state",
                command.name()
            );
            state_answer(payment)
        }
    }
}

/// The outcome of the payment's authorization, as an authorize or review is answered.
fn authorization_answer(payment: &Payment) -> Answer {
    match &payment.stage {
        Stage::Held { .. } => Answer::Held(payment.hold_reasons.clone()),
        Stage::Authorized { charge, .. }
        | Stage::Captured { charge, .. }
        | Stage::Refunded { charge, .. } => Answer::Authorized(charge.amount),
        Stage::Declined { reason, .. } => Answer::Declined(*reason),
        Stage::Voided { .. } | Stage::Tombstone => Answer::Declined(DeclineReason::Voided),
    }
}

/// The event that describes where the payment stands.
fn state_answer(payment: &Payment) -> Answer {
    match &payment.stage {
        Stage::Held { .. } => Answer::Held(payment.hold_reasons.clone()),
        Stage::Authorized { charge, .. } => Answer::Authorized(charge.amount),
        Stage::Declined { reason, .. } => Answer::Declined(*reason),
        Stage::Captured { charge, .. } => Answer::Captured(charge.amount),
        Stage::Voided { .. } | Stage::Tombstone => Answer::Voided,
        Stage::Refunded { charge, .. } => Answer::Refunded(charge.amount),
    }
}

/// Sends `reply` through the outbox, inside the current transaction.
async fn answer(
    connection: &mut AnyConnection,
    order_id: OrderId,
    reply: Answer,
    origin: &Origin,
) -> anyhow::Result<()> {
    let envelope = match reply {
        Answer::Authorized(amount) => outbox::envelope(
            crate::NAME,
            &PaymentAuthorizedV1 { order_id, amount },
            origin,
        ),
        Answer::Held(reasons) => {
            outbox::envelope(crate::NAME, &PaymentHeldV1 { order_id, reasons }, origin)
        }
        Answer::Declined(reason) => {
            outbox::envelope(crate::NAME, &PaymentDeclinedV1 { order_id, reason }, origin)
        }
        Answer::Captured(amount) => {
            outbox::envelope(crate::NAME, &PaymentCapturedV1 { order_id, amount }, origin)
        }
        Answer::Voided => outbox::envelope(crate::NAME, &PaymentVoidedV1 { order_id }, origin),
        Answer::Refunded(amount) => {
            outbox::envelope(crate::NAME, &PaymentRefundedV1 { order_id, amount }, origin)
        }
        Answer::Failed(operation, reason) => {
            let failed = PaymentFailedV1 {
                order_id,
                operation,
                reason,
            };
            outbox::envelope(crate::NAME, &failed, origin)
        }
    }?;
    outbox::enqueue(connection, &envelope).await
}

fn describe(state: Option<State>) -> &'static str {
    state.map_or("none", State::as_str)
}
