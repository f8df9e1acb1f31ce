//! The write side's SQL: the event store, idempotency keys and saga deadlines. Every
//! function runs on the caller's connection or transaction.

use anyhow::Context as _;
use sqlx::{AnyConnection, Row as _};

use crate::domain::{Order, OrderEvent};

/// Reads and folds an order's events; `None` if there is no such order.
pub async fn load(connection: &mut AnyConnection, order_id: &str) -> anyhow::Result<Option<Order>> {
    let rows =
        sqlx::query("SELECT payload, at_ms FROM order_events WHERE order_id = $1 ORDER BY seq")
            .bind(order_id.to_owned())
            .fetch_all(&mut *connection)
            .await
            .context("reading an order's events")?;
    if rows.is_empty() {
        return Ok(None);
    }
    let mut history = Vec::with_capacity(rows.len());
    for row in rows {
        let payload: String = row.try_get("payload")?;
        let event: OrderEvent = serde_json::from_str(&payload)
            .with_context(|| format!("order {order_id} has an unreadable event"))?;
        history.push((event, row.try_get::<i64, _>("at_ms")?));
    }
    let order = Order::fold(order_id, history.iter().map(|(event, at)| (event, *at)))?;
    Ok(Some(order))
}

/// Appends `events` after the order's version `expected`, at `now`. Two writers that
/// folded the same version cannot both append: the second hits the primary key and
/// its transaction fails, to be retried on the new history.
pub async fn append(
    connection: &mut AnyConnection,
    order_id: &str,
    expected: i64,
    events: &[OrderEvent],
    now: i64,
) -> anyhow::Result<()> {
    for (offset, event) in (1..).zip(events) {
        let appended = sqlx::query(
            "INSERT INTO order_events (order_id, seq, kind, payload, at_ms) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(order_id.to_owned())
        .bind(expected + offset)
        .bind(event.kind())
        .bind(serde_json::to_string(event)?)
        .bind(now)
        .execute(&mut *connection)
        .await;
        match appended {
            Ok(_) => {}
            Err(sqlx::Error::Database(error)) if is_conflict(error.as_ref()) => {
                return Err(Conflict(order_id.to_owned()).into());
            }
            Err(error) => {
                return Err(error).with_context(|| format!("appending to order {order_id}"));
            }
        }
    }
    Ok(())
}

/// Another writer extended the order since it was read: read it again and retry.
#[derive(Debug, thiserror::Error)]
#[error("order {0} changed while it was being updated")]
pub struct Conflict(pub String);

/// Whether a database error means a concurrent writer won: the event's key was taken
/// (PostgreSQL, or SQLite after waiting), SQLite's snapshot went stale
/// (`SQLITE_BUSY_SNAPSHOT`), or PostgreSQL could not serialize.
fn is_conflict(error: &dyn sqlx::error::DatabaseError) -> bool {
    error.is_unique_violation() || matches!(error.code().as_deref(), Some("517" | "5" | "40001"))
}

/// Every order id in the event store, in order; for rebuilding the read model.
pub async fn order_ids(connection: &mut AnyConnection) -> anyhow::Result<Vec<String>> {
    let rows = sqlx::query("SELECT DISTINCT order_id FROM order_events ORDER BY order_id")
        .fetch_all(connection)
        .await?;
    rows.iter()
        .map(|row| Ok(row.try_get("order_id")?))
        .collect()
}

/// The order placed with `key` by `customer`, and the hash of that request.
pub async fn idempotency_key(
    connection: &mut AnyConnection,
    customer_id: &str,
    key: &str,
) -> anyhow::Result<Option<(String, String)>> {
    let row = sqlx::query(
        "SELECT request_hash, order_id FROM idempotency_keys \
         WHERE customer_id = $1 AND idempotency_key = $2",
    )
    .bind(customer_id.to_owned())
    .bind(key.to_owned())
    .fetch_optional(connection)
    .await
    .context("reading an idempotency key")?;
    row.map(|row| Ok((row.try_get("request_hash")?, row.try_get("order_id")?)))
        .transpose()
}

/// Claims `key` for `order_id`; `false` if another request claimed it first.
pub async fn claim_idempotency_key(
    connection: &mut AnyConnection,
    customer_id: &str,
    key: &str,
    request_hash: &str,
    order_id: &str,
    now: i64,
) -> anyhow::Result<bool> {
    let claimed = sqlx::query(
        "INSERT INTO idempotency_keys \
         (customer_id, idempotency_key, request_hash, order_id, created_at_ms) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (customer_id, idempotency_key) DO NOTHING",
    )
    .bind(customer_id.to_owned())
    .bind(key.to_owned())
    .bind(request_hash.to_owned())
    .bind(order_id.to_owned())
    .bind(now)
    .execute(connection)
    .await
    .context("claiming an idempotency key")?
    .rows_affected();
    Ok(claimed == 1)
}

/// Sets when the order's saga step is due; `None` forgets it (the saga is over).
pub async fn set_deadline(
    connection: &mut AnyConnection,
    order_id: &str,
    due_at_ms: Option<i64>,
) -> anyhow::Result<()> {
    match due_at_ms {
        Some(due) => sqlx::query(
            "INSERT INTO saga_deadlines (order_id, due_at_ms) VALUES ($1, $2) \
             ON CONFLICT (order_id) DO UPDATE SET due_at_ms = excluded.due_at_ms",
        )
        .bind(order_id.to_owned())
        .bind(due)
        .execute(connection)
        .await
        .context("setting a saga deadline")?,
        None => sqlx::query("DELETE FROM saga_deadlines WHERE order_id = $1")
            .bind(order_id.to_owned())
            .execute(connection)
            .await
            .context("clearing a saga deadline")?,
    };
    Ok(())
}

/// Up to `limit` orders whose step was due by `now`, most overdue first.
pub async fn due(
    connection: &mut AnyConnection,
    now: i64,
    limit: i64,
) -> anyhow::Result<Vec<String>> {
    let rows = sqlx::query(
        "SELECT order_id FROM saga_deadlines WHERE due_at_ms <= $1 \
         ORDER BY due_at_ms LIMIT $2",
    )
    .bind(now)
    .bind(limit)
    .fetch_all(connection)
    .await
    .context("finding due saga steps")?;
    rows.iter()
        .map(|row| Ok(row.try_get("order_id")?))
        .collect()
}
