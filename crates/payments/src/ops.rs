//! Payments' use cases, called by the REST and gRPC handlers and by the command
//! consumer.
//!
//! - payment methods: register (the card goes to the processor's vault and only a
//!   token, the brand, last four digits and expiry stay here), list, read, delete;
//! - reading a payment and the ledger's balances;
//! - [`decide`]: the saga commands' decision table; pure.
//! - [`lifecycle`]: the saga's commands, each in two phases: the processor is asked
//!   outside any database transaction, then one transaction records the outcome.

pub mod decide;
pub mod lifecycle;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use contracts::{Money, OrderId};
use platform::db::Database;

use crate::cards::Card;
use crate::domain::{Method, Payment};
use crate::fraud::FraudRules;
use crate::ledger::{self, Balance, Kind};
use crate::processor::{CardProcessor, ProcessorError};
use crate::store;

/// The most payment methods one customer may keep.
pub const MAX_METHODS: usize = 20;

/// How long a call to the processor may take before it counts as a transient failure.
pub const PROCESSOR_DEADLINE: Duration = Duration::from_secs(10);

/// What the use cases work with.
#[derive(Clone)]
pub struct Payments {
    /// Payments' database.
    pub db: Database,
    /// The card processor.
    pub processor: Arc<dyn CardProcessor>,
    /// The fraud rules.
    pub rules: FraudRules,
}

/// The processor's idempotency key for an operation on an order's payment: the order id
/// for the authorization (the saga's own key for the payment), the order id and the
/// operation's name for the others (`capture`, `void`, `refund`).
pub fn processor_key(order_id: OrderId, operation: Kind) -> String {
    match operation {
        Kind::Authorize => order_id.to_string(),
        other => format!("{order_id}:{}", other.as_str()),
    }
}

/// Asks the processor, within [`PROCESSOR_DEADLINE`]; no answer is a transient failure.
pub(crate) async fn ask<T>(
    call: impl Future<Output = Result<T, ProcessorError>>,
) -> Result<T, ProcessorError> {
    tokio::time::timeout(PROCESSOR_DEADLINE, call)
        .await
        .unwrap_or_else(|_| {
            Err(ProcessorError::Transient(format!(
                "no answer within {PROCESSOR_DEADLINE:?}"
            )))
        })
}

/// Why a payment method was not registered.
#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    /// The customer keeps [`MAX_METHODS`] already.
    #[error("at most {MAX_METHODS} payment methods may be kept; delete one first")]
    TooMany,
    /// The processor refused the card.
    #[error("the card was refused")]
    Refused,
    /// The processor did not answer; the customer may try again.
    #[error("the card processor is unavailable")]
    Unavailable,
    /// Something failed inside.
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// Registers `card` for `customer_id`: the processor's vault keeps the card, payments
/// keeps a token of its own for it with what may be shown.
pub async fn register_method(
    payments: &Payments,
    customer_id: &str,
    card: &Card,
    now: i64,
) -> Result<Method, RegisterError> {
    {
        let mut connection = payments
            .db
            .pool()
            .acquire()
            .await
            .map_err(anyhow::Error::from)?;
        if store::methods_of(&mut connection, customer_id).await?.len() >= MAX_METHODS {
            return Err(RegisterError::TooMany);
        }
    }
    // Outside any transaction and without a connection held: the vault may be slow.
    let reference = match ask(payments.processor.tokenize(card)).await {
        Ok(reference) => reference,
        Err(ProcessorError::Declined { .. }) => return Err(RegisterError::Refused),
        Err(ProcessorError::Transient(reason)) => {
            tracing::warn!("the vault did not take a card: {reason}");
            return Err(RegisterError::Unavailable);
        }
    };
    let method = Method {
        token: format!("pm_{}", uuid::Uuid::new_v4().simple()),
        customer_id: customer_id.to_owned(),
        processor_ref: reference.as_str().to_owned(),
        brand: card.brand().as_str().to_owned(),
        last4: card.last4().to_owned(),
        exp_month: i64::from(card.exp_month()),
        exp_year: i64::from(card.exp_year()),
        created_at_ms: now,
    };
    let mut connection = payments
        .db
        .writer()
        .acquire()
        .await
        .map_err(anyhow::Error::from)?;
    store::insert_method(&mut connection, &method).await?;
    tracing::info!(
        customer = customer_id,
        token = method.token,
        brand = method.brand,
        "registered a payment method"
    );
    Ok(method)
}

/// A customer's payment methods, oldest first.
pub async fn methods(payments: &Payments, customer_id: &str) -> anyhow::Result<Vec<Method>> {
    let mut connection = payments.db.pool().acquire().await?;
    store::methods_of(&mut connection, customer_id).await
}

/// A payment method, if it exists and is `customer_id`'s.
pub async fn method(
    payments: &Payments,
    customer_id: &str,
    token: &str,
) -> anyhow::Result<Option<Method>> {
    let mut connection = payments.db.pool().acquire().await?;
    let method = store::method(&mut connection, token).await?;
    Ok(method.filter(|method| method.customer_id == customer_id))
}

/// Deletes a customer's payment method; `false` if there was none of theirs.
pub async fn delete_method(
    payments: &Payments,
    customer_id: &str,
    token: &str,
    now: i64,
) -> anyhow::Result<bool> {
    let mut connection = payments.db.writer().acquire().await?;
    store::delete_method(&mut connection, customer_id, token, now).await
}

/// Who asks to see a payment.
#[derive(Clone, Copy, Debug)]
pub enum Viewer<'a> {
    /// A customer, who sees only their own.
    Customer(&'a str),
    /// An admin, who sees every payment.
    Admin,
}

/// An order's payment and what moved for it in the ledger, if `viewer` may see it.
pub async fn payment(
    payments: &Payments,
    viewer: Viewer<'_>,
    order_id: OrderId,
) -> anyhow::Result<Option<(Payment, BTreeMap<Kind, Money>)>> {
    let mut connection = payments.db.pool().acquire().await?;
    let Some(payment) = store::payment(&mut connection, order_id).await? else {
        return Ok(None);
    };
    let visible = match viewer {
        Viewer::Admin => true,
        Viewer::Customer(customer_id) => payment.customer_id() == Some(customer_id),
    };
    if !visible {
        return Ok(None);
    }
    let moved = ledger::order_movements(&mut connection, &order_id.to_string()).await?;
    Ok(Some((payment, moved)))
}

/// Every ledger account's balance, per currency.
pub async fn balances(payments: &Payments) -> anyhow::Result<Vec<Balance>> {
    ledger::balances(payments.db.pool()).await
}
