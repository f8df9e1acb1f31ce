//! What the shop's audit (`bazaar verify`) reads from orders: every order's status,
//! total and saga deadline, straight from the event store (not the read model, which
//! the audit should not have to trust).

use contracts::Money;
use platform::db::Database;

use crate::domain::Status;
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
