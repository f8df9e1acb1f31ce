//! Payments' SQL (the ledger's is in [`crate::ledger`]), portable between SQLite and
//! PostgreSQL. Every function runs on the caller's connection, so a command's state
//! change, its ledger entries, its answer and its inbox record commit together.

use anyhow::Context as _;
use contracts::messaging::payments::{DeclineReason, HoldReason};
use contracts::{Currency, Money, OrderId};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row as _};

use crate::domain::{Charge, Columns, Method, Payment, Stage, State};

/// Remembers when a customer registered; the first word is kept.
pub async fn record_registration(
    connection: &mut AnyConnection,
    customer_id: &str,
    registered_at_ms: i64,
) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO customers (customer_id, registered_at) VALUES ($1, $2) \
         ON CONFLICT (customer_id) DO NOTHING",
    )
    .bind(customer_id.to_owned())
    .bind(registered_at_ms)
    .execute(connection)
    .await
    .context("recording a registration")?;
    Ok(())
}

/// When a customer registered, if payments heard of it.
pub async fn registered_at(
    connection: &mut AnyConnection,
    customer_id: &str,
) -> anyhow::Result<Option<i64>> {
    let row = sqlx::query("SELECT registered_at FROM customers WHERE customer_id = $1")
        .bind(customer_id.to_owned())
        .fetch_optional(connection)
        .await
        .context("reading a registration")?;
    row.map(|row| Ok(row.try_get("registered_at")?)).transpose()
}

/// Saves a payment method.
pub async fn insert_method(connection: &mut AnyConnection, method: &Method) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO payment_methods \
         (token, customer_id, processor_ref, brand, last4, exp_month, exp_year, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(method.token.clone())
    .bind(method.customer_id.clone())
    .bind(method.processor_ref.clone())
    .bind(method.brand.clone())
    .bind(method.last4.clone())
    .bind(method.exp_month)
    .bind(method.exp_year)
    .bind(method.created_at_ms)
    .execute(connection)
    .await
    .context("saving a payment method")?;
    Ok(())
}

/// A customer's payment methods, oldest first; deleted ones are gone.
pub async fn methods_of(
    connection: &mut AnyConnection,
    customer_id: &str,
) -> anyhow::Result<Vec<Method>> {
    let rows = sqlx::query(concat!(
        select_method!(),
        " WHERE customer_id = $1 AND deleted_at IS NULL ORDER BY created_at, token"
    ))
    .bind(customer_id.to_owned())
    .fetch_all(connection)
    .await
    .context("listing payment methods")?;
    rows.iter().map(method_from_row).collect()
}

/// A payment method that was not deleted, whoever's it is: callers check the owner.
pub async fn method(connection: &mut AnyConnection, token: &str) -> anyhow::Result<Option<Method>> {
    let row = sqlx::query(concat!(
        select_method!(),
        " WHERE token = $1 AND deleted_at IS NULL"
    ))
    .bind(token.to_owned())
    .fetch_optional(connection)
    .await
    .context("reading a payment method")?;
    row.as_ref().map(method_from_row).transpose()
}

/// Deletes a customer's payment method; `false` if it was not theirs or not there.
pub async fn delete_method(
    connection: &mut AnyConnection,
    customer_id: &str,
    token: &str,
    now: i64,
) -> anyhow::Result<bool> {
    let deleted = sqlx::query(
        "UPDATE payment_methods SET deleted_at = $3 \
         WHERE token = $1 AND customer_id = $2 AND deleted_at IS NULL",
    )
    .bind(token.to_owned())
    .bind(customer_id.to_owned())
    .bind(now)
    .execute(connection)
    .await
    .context("deleting a payment method")?
    .rows_affected();
    Ok(deleted == 1)
}

/// An order's payment.
pub async fn payment(
    connection: &mut AnyConnection,
    order_id: OrderId,
) -> anyhow::Result<Option<Payment>> {
    let row = sqlx::query(
        "SELECT order_id, state, customer_id, payment_method, amount_minor, currency, \
         hold_reasons, decline_reason, authorization_id, capture_id, refund_id, created_at, \
         updated_at FROM payments WHERE order_id = $1",
    )
    .bind(order_id.to_string())
    .fetch_optional(connection)
    .await
    .context("reading a payment")?;
    row.as_ref().map(payment_from_row).transpose()
}

/// How many payments a customer started since `since_ms`.
pub async fn payments_since(
    connection: &mut AnyConnection,
    customer_id: &str,
    since_ms: i64,
) -> anyhow::Result<u64> {
    let row = sqlx::query(
        "SELECT COUNT(*) AS recent FROM payments WHERE customer_id = $1 AND created_at >= $2",
    )
    .bind(customer_id.to_owned())
    .bind(since_ms)
    .fetch_one(connection)
    .await
    .context("counting recent payments")?;
    Ok(u64::try_from(row.try_get::<i64, _>("recent")?).unwrap_or_default())
}

/// Takes the customer's row in `customer_locks` until the transaction ends, so that the
/// customer's payments are recorded one at a time.
pub async fn lock_customer(
    connection: &mut AnyConnection,
    customer_id: &str,
    now: i64,
) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO customer_locks (customer_id, locked_at) VALUES ($1, $2) \
         ON CONFLICT (customer_id) DO UPDATE SET locked_at = excluded.locked_at",
    )
    .bind(customer_id.to_owned())
    .bind(now)
    .execute(connection)
    .await
    .context("locking a customer's payments")?;
    Ok(())
}

/// Records a new payment; `false` if the order has one already (a concurrent command
/// recorded it first).
pub async fn insert_payment(
    connection: &mut AnyConnection,
    payment: &Payment,
) -> anyhow::Result<bool> {
    let charge = payment.charge();
    let stage = &payment.stage;
    let inserted = sqlx::query(
        "INSERT INTO payments (order_id, state, customer_id, payment_method, amount_minor, \
         currency, hold_reasons, decline_reason, authorization_id, capture_id, refund_id, \
         created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
         ON CONFLICT (order_id) DO NOTHING",
    )
    .bind(payment.order_id.to_string())
    .bind(payment.state().as_str())
    .bind(charge.map(|charge| charge.customer_id.clone()))
    .bind(charge.and_then(|charge| charge.payment_method.clone()))
    .bind(charge.map(|charge| charge.amount.amount_minor))
    .bind(charge.map(|charge| charge.amount.currency.as_str().to_owned()))
    .bind(codes(&payment.hold_reasons))
    .bind(stage.decline_reason().map(|reason| reason.as_str()))
    .bind(stage.authorization().map(str::to_owned))
    .bind(stage.capture().map(str::to_owned))
    .bind(stage.refund().map(str::to_owned))
    .bind(payment.created_at_ms)
    .bind(payment.updated_at_ms)
    .execute(connection)
    .await
    .context("recording a payment")?
    .rows_affected();
    Ok(inserted == 1)
}

/// Moves an order's payment from `from` to `to`, recording what `to` adds (a decline
/// reason, a capture, a refund); `false` if it was not in `from` (a concurrent command
/// moved it first), in which case nothing changed.
pub async fn transition(
    connection: &mut AnyConnection,
    order_id: OrderId,
    from: State,
    to: &Stage,
    now: i64,
) -> anyhow::Result<bool> {
    let moved = sqlx::query(
        "UPDATE payments SET state = $3, decline_reason = COALESCE($4, decline_reason), \
         capture_id = COALESCE($5, capture_id), refund_id = COALESCE($6, refund_id), \
         updated_at = $7 WHERE order_id = $1 AND state = $2",
    )
    .bind(order_id.to_string())
    .bind(from.as_str())
    .bind(to.state().as_str())
    .bind(to.decline_reason().map(|reason| reason.as_str()))
    .bind(to.capture().map(str::to_owned))
    .bind(to.refund().map(str::to_owned))
    .bind(now)
    .execute(connection)
    .await
    .context("changing a payment's state")?
    .rows_affected();
    Ok(moved == 1)
}

/// The columns `method_from_row` reads.
macro_rules! select_method {
    () => {
        "SELECT token, customer_id, processor_ref, brand, last4, exp_month, exp_year, \
         created_at FROM payment_methods"
    };
}
use select_method;

fn method_from_row(row: &AnyRow) -> anyhow::Result<Method> {
    Ok(Method {
        token: row.try_get("token")?,
        customer_id: row.try_get("customer_id")?,
        processor_ref: row.try_get("processor_ref")?,
        brand: row.try_get("brand")?,
        last4: row.try_get("last4")?,
        exp_month: row.try_get("exp_month")?,
        exp_year: row.try_get("exp_year")?,
        created_at_ms: row.try_get("created_at")?,
    })
}

fn payment_from_row(row: &AnyRow) -> anyhow::Result<Payment> {
    let state: String = row.try_get("state")?;
    let state = State::parse(&state).with_context(|| format!("stored state {state:?}"))?;
    let customer_id: Option<String> = row.try_get("customer_id")?;
    let amount_minor: Option<i64> = row.try_get("amount_minor")?;
    let currency: Option<String> = row.try_get("currency")?;
    let charge = match (customer_id, amount_minor, currency) {
        (Some(customer_id), Some(amount_minor), Some(currency)) => Some(Charge {
            customer_id,
            amount: Money::new(amount_minor, Currency::parse(&currency)?),
            payment_method: row.try_get("payment_method")?,
        }),
        _ => None,
    };
    let hold_reasons: String = row.try_get("hold_reasons")?;
    let order_id: String = row.try_get("order_id")?;
    let decline_reason: Option<String> = row.try_get("decline_reason")?;
    let order_id =
        OrderId::parse(&order_id).with_context(|| format!("stored order id {order_id:?}"))?;
    let stage = Stage::from_columns(Columns {
        state,
        charge,
        decline_reason: decline_reason.as_deref().map(DeclineReason::parse),
        authorization: row.try_get("authorization_id")?,
        capture: row.try_get("capture_id")?,
        refund: row.try_get("refund_id")?,
    })
    .map_err(|problem| anyhow::anyhow!("order {order_id} has a stored {problem}"))?;
    Ok(Payment {
        order_id,
        stage,
        hold_reasons: hold_reasons
            .split(',')
            .filter(|reason| !reason.is_empty())
            .map(HoldReason::parse)
            .collect(),
        created_at_ms: row.try_get("created_at")?,
        updated_at_ms: row.try_get("updated_at")?,
    })
}

/// Hold reasons as stored: their codes, comma-separated.
fn codes(reasons: &[HoldReason]) -> String {
    let codes: Vec<&str> = reasons.iter().map(|reason| reason.as_str()).collect();
    codes.join(",")
}
