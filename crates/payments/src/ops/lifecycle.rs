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
//! A command that does not move the payment (a repeat, or one that came too late) is
//! answered with the event describing where the payment stands, which for a repeat is
//! the answer the first one got:
//!
//! | command | acts when | repeated or late |
//! |---|---|---|
//! | authorize | no payment yet | its authorization's outcome: held, authorized (also once captured or refunded), declined, or declined `voided` (after a void's tombstone, whatever the processor authorized under the order's key is voided first) |
//! | review | held | as authorize |
//! | capture | authorized | captured (also once refunded); otherwise the state's event, with a warning |
//! | void | held, authorized, or no payment (a tombstone) | voided when declined or voided; captured or refunded are not voided (the saga refunds), with a warning |
//! | refund | captured | refunded; otherwise the state's event, with a warning |

use anyhow::Context as _;
use contracts::Money;
use contracts::messaging::payments::{
    AuthorizePaymentV1, CapturePaymentV1, PaymentAuthorizedV1, PaymentCapturedV1,
    PaymentDeclinedV1, PaymentHeldV1, PaymentRefundedV1, PaymentVoidedV1, RefundPaymentV1,
    ReviewPaymentV1, VoidPaymentV1,
};
use contracts::messaging::{Envelope, Message};
use platform::outbox::{self, Origin};
use sqlx::AnyConnection;

use super::{Payments, ask, processor_key};
use crate::domain::{Charge, Payment, State};
use crate::fraud::{self, Facts, Verdict};
use crate::ledger::{self, Kind, Transaction};
use crate::processor::{CardRef, ProcessorError};
use crate::store::{self, Change};

/// `PaymentDeclined` reason: the fraud rules declined it.
pub const FRAUD: &str = "fraud";
/// `PaymentDeclined` reason: a reviewer declined it.
pub const REVIEW_DECLINED: &str = "review_declined";
/// `PaymentDeclined` reason: the order named no payment method of the customer's.
pub const UNKNOWN_PAYMENT_METHOD: &str = "unknown_payment_method";
/// `PaymentDeclined` reason: the order was cancelled (voided) first.
pub const VOIDED: &str = "voided";
/// `PaymentDeclined` reason: the amount was not positive.
pub const INVALID_AMOUNT: &str = "invalid_amount";

/// A command of the saga, decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Check for fraud and authorize.
    Authorize(AuthorizePaymentV1),
    /// An admin's decision on a held payment.
    Review(ReviewPaymentV1),
    /// Take the authorized amount.
    Capture(CapturePaymentV1),
    /// Cancel the authorization, or the payment before it starts.
    Void(VoidPaymentV1),
    /// Give the captured amount back.
    Refund(RefundPaymentV1),
}

impl Command {
    /// The command in `envelope`; `None` for a type this version does not know.
    pub fn decode(envelope: &Envelope) -> anyhow::Result<Option<Self>> {
        let kind = envelope.kind.as_str();
        let command = match kind {
            AuthorizePaymentV1::TYPE => Self::Authorize(envelope.decode()?),
            ReviewPaymentV1::TYPE => Self::Review(envelope.decode()?),
            CapturePaymentV1::TYPE => Self::Capture(envelope.decode()?),
            VoidPaymentV1::TYPE => Self::Void(envelope.decode()?),
            RefundPaymentV1::TYPE => Self::Refund(envelope.decode()?),
            _ => return Ok(None),
        };
        Ok(Some(command))
    }

    /// The order it is about.
    pub fn order_id(&self) -> &str {
        match self {
            Self::Authorize(command) => &command.order_id,
            Self::Review(command) => &command.order_id,
            Self::Capture(command) => &command.order_id,
            Self::Void(command) => &command.order_id,
            Self::Refund(command) => &command.order_id,
        }
    }
}

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
    /// Nothing to do: answer from the payment's state.
    Answer,
    /// A new payment, decided (and authorized at the processor, unless declined).
    Open {
        payment_method: Option<String>,
        outcome: Outcome,
    },
    /// A held payment approved by its reviewer.
    Approve,
    /// A held payment declined by its reviewer, its authorization voided.
    ReviewDecline,
    /// Captured at the processor.
    Capture { capture_id: String },
    /// Voided at the processor.
    Void,
    /// A void before any authorization.
    Tombstone,
    /// Refunded at the processor.
    Refund { refund_id: String },
}

/// How a new payment ended its first phase.
#[derive(Clone, Debug)]
enum Outcome {
    Declined(String),
    Authorized {
        authorization_id: String,
        hold_reasons: Vec<String>,
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
    Declined(String),
    /// An amount was captured.
    Captured(Money),
    /// A payment was voided.
    Voided,
    /// An amount was refunded.
    Refunded(Money),
}

/// Phase one: reads the payment and, if the command moves money, asks the processor.
/// Holds no transaction. A transient processor failure is an error: the command is
/// handled again later, and the processor's idempotency makes that safe.
pub async fn prepare(payments: &Payments, command: Command, now: i64) -> anyhow::Result<Prepared> {
    let found = {
        let mut connection = payments.db.pool().acquire().await?;
        store::payment(&mut connection, command.order_id()).await?
    };
    let seen = found.as_ref().map(|payment| payment.state);
    let step = match (&command, found) {
        (Command::Authorize(authorize), None) => open(payments, authorize, now).await?,
        (Command::Authorize(authorize), Some(payment))
            if payment.state == State::Voided && payment.charge.is_none() =>
        {
            void_overtaken(payments, authorize).await?;
            Step::Answer
        }
        (Command::Review(review), Some(payment)) if payment.state == State::Held => {
            if review.approve {
                Step::Approve
            } else {
                void_at_processor(payments, &payment).await?;
                Step::ReviewDecline
            }
        }
        (Command::Capture(_), Some(payment)) if payment.state == State::Authorized => {
            let authorization = authorization_of(&payment)?;
            let amount = amount_of(&payment)?;
            let key = processor_key(&payment.order_id, Kind::Capture);
            let capture = ask(payments.processor.capture(&key, authorization, amount))
                .await
                .context("capturing at the processor")?;
            Step::Capture {
                capture_id: capture.id,
            }
        }
        (Command::Void(_), None) => Step::Tombstone,
        (Command::Void(_), Some(payment))
            if matches!(payment.state, State::Held | State::Authorized) =>
        {
            void_at_processor(payments, &payment).await?;
            Step::Void
        }
        (Command::Refund(_), Some(payment)) if payment.state == State::Captured => {
            let capture = payment
                .capture_id
                .as_deref()
                .context("a captured payment without its capture")?;
            let amount = amount_of(&payment)?;
            let key = processor_key(&payment.order_id, Kind::Refund);
            let refund = ask(payments.processor.refund(&key, capture, amount))
                .await
                .context("refunding at the processor")?;
            Step::Refund {
                refund_id: refund.id,
            }
        }
        _ => Step::Answer,
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
    let state = current.as_ref().map(|payment| payment.state);
    anyhow::ensure!(
        state == prepared.seen,
        "the payment of order {order_id} moved from {} to {} while the processor was asked; \
         handling the command again",
        describe(prepared.seen),
        describe(state),
    );
    let Some(payment) = current else {
        return match (&prepared.command, &prepared.step) {
            (
                Command::Authorize(authorize),
                Step::Open {
                    payment_method,
                    outcome,
                },
            ) => {
                open_payment(
                    connection,
                    authorize,
                    payment_method.clone(),
                    outcome,
                    origin,
                    now,
                )
                .await
            }
            (Command::Void(_), Step::Tombstone) => {
                let tombstone = Payment {
                    order_id: order_id.to_owned(),
                    state: State::Voided,
                    charge: None,
                    hold_reasons: Vec::new(),
                    decline_reason: None,
                    authorization_id: None,
                    capture_id: None,
                    refund_id: None,
                    created_at_ms: now,
                    updated_at_ms: now,
                };
                insert(connection, &tombstone).await?;
                answer(connection, order_id, Answer::Voided, origin).await?;
                Ok(Effect::Voided)
            }
            (command, _) => {
                tracing::warn!(
                    order = order_id,
                    "{} for an order without a payment ignored",
                    name(command)
                );
                Ok(Effect::Nothing)
            }
        };
    };
    match (&prepared.command, &prepared.step) {
        (Command::Review(review), Step::Approve) => {
            move_payment(
                connection,
                &payment,
                Change::to(State::Authorized),
                None,
                now,
            )
            .await?;
            tracing::info!(
                order = order_id,
                reviewer = review.reviewer,
                "payment approved"
            );
            answer(
                connection,
                order_id,
                Answer::Authorized(amount_of(&payment)?),
                origin,
            )
            .await?;
            Ok(Effect::Authorized)
        }
        (Command::Review(review), Step::ReviewDecline) => {
            let change = Change {
                decline_reason: Some(REVIEW_DECLINED.to_owned()),
                ..Change::to(State::Declined)
            };
            move_payment(connection, &payment, change, Some(Kind::Void), now).await?;
            tracing::info!(
                order = order_id,
                reviewer = review.reviewer,
                "payment declined on review"
            );
            let declined = Answer::Declined(REVIEW_DECLINED.to_owned());
            answer(connection, order_id, declined, origin).await?;
            Ok(Effect::Declined(REVIEW_DECLINED.to_owned()))
        }
        (Command::Capture(_), Step::Capture { capture_id }) => {
            let change = Change {
                capture_id: Some(capture_id.clone()),
                ..Change::to(State::Captured)
            };
            move_payment(connection, &payment, change, Some(Kind::Capture), now).await?;
            let amount = amount_of(&payment)?;
            answer(connection, order_id, Answer::Captured(amount), origin).await?;
            Ok(Effect::Captured(amount))
        }
        (Command::Void(_), Step::Void) => {
            move_payment(
                connection,
                &payment,
                Change::to(State::Voided),
                Some(Kind::Void),
                now,
            )
            .await?;
            answer(connection, order_id, Answer::Voided, origin).await?;
            Ok(Effect::Voided)
        }
        (Command::Refund(_), Step::Refund { refund_id }) => {
            let change = Change {
                refund_id: Some(refund_id.clone()),
                ..Change::to(State::Refunded)
            };
            move_payment(connection, &payment, change, Some(Kind::Refund), now).await?;
            let amount = amount_of(&payment)?;
            answer(connection, order_id, Answer::Refunded(amount), origin).await?;
            Ok(Effect::Refunded(amount))
        }
        (command, Step::Answer) => {
            let repeated = repeat_answer(command, &payment)?;
            answer(connection, order_id, repeated, origin).await?;
            Ok(Effect::Nothing)
        }
        (command, step) => anyhow::bail!(
            "{} prepared as {step:?} does not apply to a {} payment",
            name(command),
            payment.state.as_str()
        ),
    }
}

/// Decides a new payment: the method, the fraud rules, then the processor.
///
/// The facts for the fraud rules are read before the authorization and outside any
/// transaction, so two payments of one customer handled at the same instant may each
/// miss the other in the velocity count; a rule about a handful an hour can afford that.
async fn open(payments: &Payments, command: &AuthorizePaymentV1, now: i64) -> anyhow::Result<Step> {
    let declined = |payment_method: Option<String>, reason: &str| Step::Open {
        payment_method,
        outcome: Outcome::Declined(reason.to_owned()),
    };
    let (method, verdict) = {
        let mut connection = payments.db.pool().acquire().await?;
        let method = store::method(&mut connection, &command.payment_method)
            .await?
            .filter(|method| method.customer_id == command.customer_id);
        let Some(method) = method else {
            // What the order named is not kept: it is no token of this customer's.
            return Ok(declined(None, UNKNOWN_PAYMENT_METHOD));
        };
        if command.amount.amount_minor <= 0 {
            tracing::warn!(
                order = command.order_id,
                "refusing to authorize a non-positive amount"
            );
            return Ok(declined(Some(method.token), INVALID_AMOUNT));
        }
        let registered = store::registered_at(&mut connection, &command.customer_id).await?;
        let window_ms = i64::try_from(payments.rules.velocity_window_secs.saturating_mul(1000))
            .unwrap_or(i64::MAX);
        let recent = store::payments_since(
            &mut connection,
            &command.customer_id,
            now.saturating_sub(window_ms),
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
        Verdict::Decline => return Ok(declined(Some(method.token), FRAUD)),
        Verdict::Approve => Vec::new(),
        Verdict::Hold(reasons) => reasons
            .iter()
            .map(|reason| reason.as_str().to_owned())
            .collect(),
    };
    let card = CardRef::new(method.processor_ref);
    let key = processor_key(&command.order_id, Kind::Authorize);
    let outcome = match ask(payments.processor.authorize(&key, &card, command.amount)).await {
        Ok(authorization) => Outcome::Authorized {
            authorization_id: authorization.id,
            hold_reasons,
        },
        Err(ProcessorError::Declined { code }) => Outcome::Declined(code.as_str().to_owned()),
        Err(error @ ProcessorError::Transient(_)) => {
            return Err(anyhow::Error::new(error).context("authorizing at the processor"));
        }
    };
    Ok(Step::Open {
        payment_method: Some(method.token),
        outcome,
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
            .filter(|method| method.customer_id == command.customer_id)
    };
    let Some(method) = method.filter(|_| command.amount.amount_minor > 0) else {
        return Ok(());
    };
    let card = CardRef::new(method.processor_ref);
    let key = processor_key(&command.order_id, Kind::Authorize);
    match ask(payments.processor.authorize(&key, &card, command.amount)).await {
        Ok(authorization) => {
            let key = processor_key(&command.order_id, Kind::Void);
            ask(payments.processor.void(&key, &authorization.id))
                .await
                .context("voiding an authorization a void overtook")
        }
        Err(ProcessorError::Declined { .. }) => Ok(()),
        Err(error @ ProcessorError::Transient(_)) => Err(anyhow::Error::new(error)
            .context("asking the processor for an overtaken authorization")),
    }
}

async fn void_at_processor(payments: &Payments, payment: &Payment) -> anyhow::Result<()> {
    let authorization = authorization_of(payment)?;
    let key = processor_key(&payment.order_id, Kind::Void);
    ask(payments.processor.void(&key, authorization))
        .await
        .context("voiding at the processor")
}

/// Records a new payment as phase one decided it.
async fn open_payment(
    connection: &mut AnyConnection,
    command: &AuthorizePaymentV1,
    payment_method: Option<String>,
    outcome: &Outcome,
    origin: &Origin,
    now: i64,
) -> anyhow::Result<Effect> {
    let mut payment = Payment {
        order_id: command.order_id.clone(),
        state: State::Declined,
        charge: Some(Charge {
            customer_id: command.customer_id.clone(),
            amount: command.amount,
            payment_method,
        }),
        hold_reasons: Vec::new(),
        decline_reason: None,
        authorization_id: None,
        capture_id: None,
        refund_id: None,
        created_at_ms: now,
        updated_at_ms: now,
    };
    let (reply, effect) = match outcome {
        Outcome::Declined(reason) => {
            payment.decline_reason = Some(reason.clone());
            (
                Answer::Declined(reason.clone()),
                Effect::Declined(reason.clone()),
            )
        }
        Outcome::Authorized {
            authorization_id,
            hold_reasons,
        } => {
            payment.authorization_id = Some(authorization_id.clone());
            payment.hold_reasons = hold_reasons.clone();
            if hold_reasons.is_empty() {
                payment.state = State::Authorized;
                (Answer::Authorized(command.amount), Effect::Authorized)
            } else {
                payment.state = State::Held;
                (Answer::Held(hold_reasons.clone()), Effect::Held)
            }
        }
    };
    insert(connection, &payment).await?;
    if payment.authorization_id.is_some() {
        let transaction =
            Transaction::transfer(&command.order_id, Kind::Authorize, command.amount)?;
        ledger::append(connection, &transaction, now).await?;
    }
    answer(connection, &command.order_id, reply, origin).await?;
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

/// Moves `payment` to `change.to`, with the ledger transaction of `movement` if any.
async fn move_payment(
    connection: &mut AnyConnection,
    payment: &Payment,
    change: Change,
    movement: Option<Kind>,
    now: i64,
) -> anyhow::Result<()> {
    let moved = store::transition(
        &mut *connection,
        &payment.order_id,
        payment.state,
        &change,
        now,
    )
    .await?;
    anyhow::ensure!(
        moved,
        "the payment of order {} moved concurrently; handling the command again",
        payment.order_id
    );
    if let Some(kind) = movement {
        let transaction = Transaction::transfer(&payment.order_id, kind, amount_of(payment)?)?;
        ledger::append(connection, &transaction, now).await?;
    }
    Ok(())
}

/// An event payments answers with.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Answer {
    Authorized(Money),
    Held(Vec<String>),
    Declined(String),
    Captured(Money),
    Voided,
    Refunded(Money),
}

/// The answer to a command that did not move the payment.
fn repeat_answer(command: &Command, payment: &Payment) -> anyhow::Result<Answer> {
    Ok(match (command, payment.state) {
        (Command::Authorize(authorize), _) => {
            if let Some(charge) = &payment.charge
                && (charge.customer_id != authorize.customer_id
                    || charge.amount != authorize.amount)
            {
                tracing::warn!(
                    order = payment.order_id,
                    "an authorization differing from the order's payment was answered with it"
                );
            }
            authorization_answer(payment)?
        }
        (Command::Review(_), _) => authorization_answer(payment)?,
        (Command::Capture(_), State::Captured | State::Refunded) => {
            Answer::Captured(amount_of(payment)?)
        }
        (Command::Void(_), State::Declined | State::Voided) => Answer::Voided,
        (Command::Refund(_), State::Refunded) => Answer::Refunded(amount_of(payment)?),
        (command, state) => {
            // Captured payments are refunded, not voided; captures and refunds of
            // payments not in their state move nothing. The saga learns where it stands.
            tracing::warn!(
                order = payment.order_id,
                state = state.as_str(),
                "{} does not apply; answering with the payment's state",
                name(command)
            );
            state_answer(payment)?
        }
    })
}

/// The outcome of the payment's authorization, as an authorize or review is answered.
fn authorization_answer(payment: &Payment) -> anyhow::Result<Answer> {
    Ok(match payment.state {
        State::Held => Answer::Held(payment.hold_reasons.clone()),
        State::Authorized | State::Captured | State::Refunded => {
            Answer::Authorized(amount_of(payment)?)
        }
        State::Declined => Answer::Declined(declined_reason(payment)),
        State::Voided => Answer::Declined(VOIDED.to_owned()),
    })
}

/// The event that describes where the payment stands.
fn state_answer(payment: &Payment) -> anyhow::Result<Answer> {
    Ok(match payment.state {
        State::Held => Answer::Held(payment.hold_reasons.clone()),
        State::Authorized => Answer::Authorized(amount_of(payment)?),
        State::Declined => Answer::Declined(declined_reason(payment)),
        State::Captured => Answer::Captured(amount_of(payment)?),
        State::Voided => Answer::Voided,
        State::Refunded => Answer::Refunded(amount_of(payment)?),
    })
}

fn declined_reason(payment: &Payment) -> String {
    payment
        .decline_reason
        .clone()
        .unwrap_or_else(|| "declined".to_owned())
}

/// Sends `reply` through the outbox, inside the current transaction.
async fn answer(
    connection: &mut AnyConnection,
    order_id: &str,
    reply: Answer,
    origin: &Origin,
) -> anyhow::Result<()> {
    let order_id = order_id.to_owned();
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
    }?;
    outbox::enqueue(connection, &envelope).await
}

fn amount_of(payment: &Payment) -> anyhow::Result<Money> {
    payment.amount().with_context(|| {
        format!(
            "the {} payment of order {} has no amount",
            payment.state.as_str(),
            payment.order_id
        )
    })
}

fn authorization_of(payment: &Payment) -> anyhow::Result<&str> {
    payment.authorization_id.as_deref().with_context(|| {
        format!(
            "the {} payment of order {} has no authorization",
            payment.state.as_str(),
            payment.order_id
        )
    })
}

fn describe(state: Option<State>) -> &'static str {
    state.map_or("none", State::as_str)
}

fn name(command: &Command) -> &'static str {
    match command {
        Command::Authorize(_) => "an authorization",
        Command::Review(_) => "a review",
        Command::Capture(_) => "a capture",
        Command::Void(_) => "a void",
        Command::Refund(_) => "a refund",
    }
}
