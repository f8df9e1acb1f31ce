//! What the shop's audit (`bazaar verify`) reads from orders: every order's status,
//! total and saga deadline, straight from the event store (not the read model, which
//! the audit should not have to trust).

use std::collections::BTreeMap;

use anyhow::Context as _;
use contracts::Money;
use platform::db::Database;
use sqlx::Row as _;

use crate::domain::{OrderEvent, Status};
use crate::store;

/// One order as the audit sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrderFact {
    /// The order's id.
    pub order_id: String,
    /// Who ordered.
    pub customer_id: String,
    /// Where it is.
    pub status: Status,
    /// What it costs.
    pub total: Money,
    /// When its current saga step is due, if the saga is not over.
    pub due_at_ms: Option<i64>,
    /// How many events it has: the audit judges an order only if this did not change
    /// while it read the other services.
    pub version: i64,
    /// When it reached its status (for an order that is over, when it ended).
    pub since_ms: i64,
}

/// Every order, folded from its events.
pub async fn snapshot(
    db: &Database,
    deadlines: &crate::saga::Deadlines,
) -> anyhow::Result<Vec<OrderFact>> {
    let mut connection = db.pool().acquire().await?;
    let mut facts = Vec::new();
    for order_id in store::order_ids(&mut connection).await? {
        if let Some(order) = store::load(&mut connection, &order_id).await? {
            facts.push(OrderFact {
                due_at_ms: deadlines.due(&order),
                version: order.version,
                since_ms: order.step_started_at_ms,
                order_id,
                customer_id: order.customer_id,
                status: order.status,
                total: order.total,
            });
        }
    }
    Ok(facts)
}

/// What the orders' sagas did since a moment, from the event store: for a report of a
/// stretch of load, such as `bazaar chaos`'s.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Activity {
    /// Events appended, by kind (`placed`, `payment_captured`, `stock_released`…).
    pub events: BTreeMap<String, i64>,
    /// Orders cancelled, by reason (`payment_declined`, `deadline_missed`…).
    pub cancellations: BTreeMap<String, i64>,
}

impl Activity {
    /// How many events of `kind` were appended.
    pub fn count(&self, kind: &str) -> i64 {
        self.events.get(kind).copied().unwrap_or(0)
    }
}

/// What the sagas did from `since_ms` (Unix ms) on.
pub async fn activity_since(db: &Database, since_ms: i64) -> anyhow::Result<Activity> {
    let mut connection = db.pool().acquire().await?;
    let mut activity = Activity::default();
    let rows = sqlx::query(
        "SELECT kind, COUNT(*) AS events FROM order_events WHERE at_ms >= $1 GROUP BY kind",
    )
    .bind(since_ms)
    .fetch_all(&mut *connection)
    .await
    .context("counting the orders' events")?;
    for row in rows {
        activity
            .events
            .insert(row.try_get("kind")?, row.try_get("events")?);
    }
    // `OrderEvent::Cancelled`'s kind.
    let cancelled =
        sqlx::query("SELECT payload FROM order_events WHERE kind = 'cancelled' AND at_ms >= $1")
            .bind(since_ms)
            .fetch_all(&mut *connection)
            .await
            .context("reading the cancellations")?;
    for row in cancelled {
        let payload: String = row.try_get("payload")?;
        if let OrderEvent::Cancelled { reason } = serde_json::from_str(&payload)? {
            *activity
                .cancellations
                .entry(reason.as_str().to_owned())
                .or_default() += 1;
        }
    }
    Ok(activity)
}
