//! The read model (the query side of CQRS): one row per order for listings, and each
//! order's timeline. It is a projection of the event store, written in the same
//! transaction as the events it reflects and rebuildable from them at any time
//! ([`rebuild`]); nothing reads it to decide anything.

use std::collections::BTreeMap;

use anyhow::Context as _;
use contracts::messaging::orders::{CancelReason, OrderLine};
use contracts::{Currency, Money};
use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row as _};
use utoipa::ToSchema;

use crate::domain::{Order, OrderEvent, Status};
use crate::store;

/// An order as customers and admins read it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct OrderView {
    /// The order's id.
    pub id: String,
    /// Who ordered.
    pub customer_id: String,
    /// Where it is.
    pub status: Status,
    /// What was ordered, at the prices of the moment.
    #[schema(value_type = Vec<Object>)]
    pub lines: Vec<OrderLine>,
    /// What it costs.
    pub total: Money,
    /// Why it was cancelled or rejected, as a code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When it was placed, ms since the Unix epoch.
    pub placed_at_ms: i64,
    /// When it last changed.
    pub updated_at_ms: i64,
    /// The trace it was placed in: an admin sees it at `/console/traces/{trace_id}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
}

/// One step of an order's history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct TimelineEntry {
    /// What happened, e.g. `stock_reserved`.
    pub event: String,
    /// The order's status after it.
    pub status: Status,
    /// A sentence for people.
    pub detail: String,
    /// When, ms since the Unix epoch.
    pub at_ms: i64,
}

/// Reflects `events` (numbered from `first_seq`), which took `before` to `after`.
pub async fn project(
    connection: &mut AnyConnection,
    before: Option<&Order>,
    after: &Order,
    events: &[OrderEvent],
    now: i64,
) -> anyhow::Result<()> {
    let first_seq = before.map_or(1, |order| order.version + 1);
    let mut state = before.cloned();
    for (seq, event) in (first_seq..).zip(events) {
        let status = match state.as_mut() {
            Some(order) => {
                order.apply(event, now);
                order.status
            }
            None => Status::Placed,
        };
        sqlx::query(
            "INSERT INTO order_timeline (order_id, seq, event, status, detail, at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (order_id, seq) DO NOTHING",
        )
        .bind(after.id.clone())
        .bind(seq)
        .bind(event.kind())
        .bind(status.as_str())
        .bind(describe(event))
        .bind(now)
        .execute(&mut *connection)
        .await
        .context("writing an order's timeline")?;
    }
    sqlx::query(
        "INSERT INTO order_views (order_id, customer_id, status, total_minor, currency, \
         lines, reason, placed_at_ms, updated_at_ms, version, trace_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
         ON CONFLICT (order_id) DO UPDATE SET status = excluded.status, \
         reason = excluded.reason, updated_at_ms = excluded.updated_at_ms, \
         version = excluded.version",
    )
    .bind(after.id.clone())
    .bind(after.customer_id.clone())
    .bind(after.status.as_str())
    .bind(after.total.amount_minor)
    .bind(after.total.currency.as_str().to_owned())
    .bind(serde_json::to_string(&after.lines)?)
    // A rejected order was never cancelled; its reason is the code its public event
    // gives (`ops::announce`), so that the view says why, as documented.
    .bind(match after.status {
        Status::Rejected => Some(CancelReason::OutOfStock.as_str()),
        _ => after.cancel_reason.map(CancelReason::as_str),
    })
    .bind(after.placed_at_ms)
    .bind(now)
    .bind(after.version)
    .bind(after.trace_id.clone())
    .execute(connection)
    .await
    .context("writing an order's view")?;
    Ok(())
}

/// A sentence about `event` for the order's timeline.
fn describe(event: &OrderEvent) -> String {
    match event {
        OrderEvent::Placed { lines, total, .. } => {
            format!("Order placed: {} line(s), {total}", lines.len())
        }
        OrderEvent::StockReserved { .. } => "Stock reserved".to_owned(),
        OrderEvent::StockRejected { unavailable } => {
            format!(
                "Not enough stock for {} product(s)",
                unavailable.len().max(1)
            )
        }
        OrderEvent::PaymentAuthorized => "Payment authorized".to_owned(),
        OrderEvent::PaymentHeld { reasons } => {
            let codes: Vec<&str> = reasons.iter().map(|reason| reason.as_str()).collect();
            format!("Payment held for review ({})", codes.join(", "))
        }
        OrderEvent::ReviewRequested { approve: true, .. } => "Payment approved".to_owned(),
        OrderEvent::ReviewRequested { approve: false, .. } => "Payment rejected".to_owned(),
        OrderEvent::PaymentDeclined { reason } => format!("Payment declined ({reason})"),
        OrderEvent::StockCommitted => "Stock committed".to_owned(),
        OrderEvent::PaymentCaptured { amount } => format!("Payment of {amount} captured"),
        OrderEvent::PaymentFailed { operation, reason } => {
            format!("The card network refused the {operation} for good ({reason})")
        }
        OrderEvent::CancellationStarted { reason, .. } => format!("Cancelling ({reason})"),
        OrderEvent::StockReleased { .. } => "Stock released".to_owned(),
        OrderEvent::PaymentVoided => "Payment voided".to_owned(),
        OrderEvent::StockReturned => "Stock returned to sale".to_owned(),
        OrderEvent::Cancelled { reason } => format!("Cancelled ({reason})"),
        OrderEvent::RefundRequested { .. } => "Refund requested".to_owned(),
        OrderEvent::PaymentRefunded { amount } => format!("{amount} refunded"),
        OrderEvent::CommandResent { command, attempt } => {
            format!("No answer in time: {command} sent again (attempt {attempt})")
        }
    }
}

/// Rebuilds the whole read model from the event store; returns how many orders.
pub async fn rebuild(connection: &mut AnyConnection) -> anyhow::Result<usize> {
    sqlx::query("DELETE FROM order_timeline")
        .execute(&mut *connection)
        .await?;
    sqlx::query("DELETE FROM order_views")
        .execute(&mut *connection)
        .await?;
    let ids = store::order_ids(&mut *connection).await?;
    for id in &ids {
        let rows =
            sqlx::query("SELECT payload, at_ms FROM order_events WHERE order_id = $1 ORDER BY seq")
                .bind(id.clone())
                .fetch_all(&mut *connection)
                .await?;
        let mut state: Option<Order> = None;
        for row in rows {
            let event: OrderEvent = serde_json::from_str(&row.try_get::<String, _>("payload")?)?;
            let at: i64 = row.try_get("at_ms")?;
            let before = state.clone();
            let after = match state.take() {
                Some(mut order) => {
                    order.apply(&event, at);
                    order
                }
                None => Order::fold(id, [(&event, at)])?,
            };
            project(&mut *connection, before.as_ref(), &after, &[event], at).await?;
            state = Some(after);
        }
    }
    Ok(ids.len())
}

fn view(row: &AnyRow) -> anyhow::Result<OrderView> {
    let status: String = row.try_get("status")?;
    let currency: String = row.try_get("currency")?;
    Ok(OrderView {
        id: row.try_get("order_id")?,
        customer_id: row.try_get("customer_id")?,
        status: Status::parse(&status).with_context(|| format!("unknown status {status}"))?,
        lines: serde_json::from_str(&row.try_get::<String, _>("lines")?)?,
        total: Money {
            amount_minor: row.try_get("total_minor")?,
            currency: Currency::parse(&currency)?,
        },
        reason: row.try_get("reason")?,
        placed_at_ms: row.try_get("placed_at_ms")?,
        updated_at_ms: row.try_get("updated_at_ms")?,
        trace_id: row.try_get("trace_id")?,
    })
}

const VIEW_COLUMNS: &str = "order_id, customer_id, status, total_minor, currency, lines, \
                            reason, placed_at_ms, updated_at_ms, trace_id";

/// How many orders are in each status, from the views.
pub async fn counts(connection: &mut AnyConnection) -> anyhow::Result<BTreeMap<String, i64>> {
    let rows = sqlx::query("SELECT status, COUNT(*) AS n FROM order_views GROUP BY status")
        .fetch_all(connection)
        .await
        .context("counting orders by status")?;
    rows.iter()
        .map(|row| Ok((row.try_get("status")?, row.try_get("n")?)))
        .collect()
}

/// One order's view and timeline.
pub async fn get(
    connection: &mut AnyConnection,
    order_id: &str,
) -> anyhow::Result<Option<(OrderView, Vec<TimelineEntry>)>> {
    let sql = format!("SELECT {VIEW_COLUMNS} FROM order_views WHERE order_id = $1");
    let Some(row) = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(order_id.to_owned())
        .fetch_optional(&mut *connection)
        .await?
    else {
        return Ok(None);
    };
    let rows = sqlx::query(
        "SELECT event, status, detail, at_ms FROM order_timeline WHERE order_id = $1 \
         ORDER BY seq",
    )
    .bind(order_id.to_owned())
    .fetch_all(connection)
    .await?;
    let timeline = rows
        .iter()
        .map(|row| {
            let status: String = row.try_get("status")?;
            Ok(TimelineEntry {
                event: row.try_get("event")?,
                status: Status::parse(&status).context("unknown status")?,
                detail: row.try_get("detail")?,
                at_ms: row.try_get("at_ms")?,
            })
        })
        .collect::<anyhow::Result<_>>()?;
    Ok(Some((view(&row)?, timeline)))
}

/// Which orders a listing shows.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    /// Only this customer's; `None` for every customer's (admins).
    pub customer_id: Option<String>,
    /// Only orders in this status.
    pub status: Option<Status>,
    /// Only orders older than this id (the previous page's last), newest first.
    pub before: Option<String>,
}

/// Up to `limit` orders matching `filter`, newest first.
pub async fn list(
    connection: &mut AnyConnection,
    filter: &Filter,
    limit: i64,
) -> anyhow::Result<Vec<OrderView>> {
    // Each condition holds when its parameter is NULL, so one statement serves every
    // combination of filters.
    let sql = format!(
        "SELECT {VIEW_COLUMNS} FROM order_views \
         WHERE ($1 IS NULL OR customer_id = $1) AND ($2 IS NULL OR status = $2) \
         AND ($3 IS NULL OR order_id < $3) ORDER BY order_id DESC LIMIT $4"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(filter.customer_id.clone())
        .bind(filter.status.map(|status| status.as_str().to_owned()))
        .bind(filter.before.clone())
        .bind(limit)
        .fetch_all(connection)
        .await
        .context("listing orders")?;
    rows.iter().map(view).collect()
}
