//! What the shop's audit (`bazaar verify`) reads from inventory: each product's
//! counters beside what its reservations say they should be.

use platform::db::Database;
use sqlx::Row as _;

/// One product's stock as the audit sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StockFact {
    /// The product.
    pub product_id: String,
    /// Units received, net of write-offs.
    pub received: i64,
    /// Units the counter says are held.
    pub reserved: i64,
    /// Units the counter says are sold.
    pub sold: i64,
    /// Units held by reservations in state `held`, summed from their lines.
    pub held_by_reservations: i64,
    /// Units sold by reservations in state `committed` and not returned, summed from
    /// their lines.
    pub sold_by_reservations: i64,
}

impl StockFact {
    /// Units on the shelf, neither held nor sold.
    pub fn on_hand(&self) -> i64 {
        self.received - self.reserved - self.sold
    }
}

/// One order's reservation state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReservationFact {
    /// The order.
    pub order_id: String,
    /// `held`, `committed`, `released`, `expired` or `rejected`; or `returned` for a
    /// committed one whose stock went back on sale.
    pub state: String,
}

/// Every product's stock and every reservation's state. (PostgreSQL sums BIGINT to
/// NUMERIC, hence the casts.)
pub async fn snapshot(db: &Database) -> anyhow::Result<(Vec<StockFact>, Vec<ReservationFact>)> {
    let rows = sqlx::query(
        "SELECT s.product_id, s.received, s.reserved, s.sold, \
         CAST(COALESCE(SUM(CASE WHEN r.state = 'held' THEN l.quantity ELSE 0 END), 0) AS BIGINT) AS held, \
         CAST(COALESCE(SUM(CASE WHEN r.state = 'committed' AND x.order_id IS NULL \
         THEN l.quantity ELSE 0 END), 0) AS BIGINT) AS committed \
         FROM stock s \
         LEFT JOIN reservation_lines l ON l.product_id = s.product_id \
         LEFT JOIN reservations r ON r.order_id = l.order_id \
         LEFT JOIN stock_returns x ON x.order_id = l.order_id \
         GROUP BY s.product_id, s.received, s.reserved, s.sold \
         ORDER BY s.product_id",
    )
    .fetch_all(db.pool())
    .await?;
    let stock = rows
        .iter()
        .map(|row| {
            Ok(StockFact {
                product_id: row.try_get("product_id")?,
                received: row.try_get("received")?,
                reserved: row.try_get("reserved")?,
                sold: row.try_get("sold")?,
                held_by_reservations: row.try_get("held")?,
                sold_by_reservations: row.try_get("committed")?,
            })
        })
        .collect::<anyhow::Result<_>>()?;
    let rows = sqlx::query(
        "SELECT r.order_id, CASE WHEN x.order_id IS NULL THEN r.state ELSE 'returned' END AS state \
         FROM reservations r LEFT JOIN stock_returns x ON x.order_id = r.order_id \
         ORDER BY r.order_id",
    )
    .fetch_all(db.pool())
    .await?;
    let reservations = rows
        .iter()
        .map(|row| {
            Ok(ReservationFact {
                order_id: row.try_get("order_id")?,
                state: row.try_get("state")?,
            })
        })
        .collect::<anyhow::Result<_>>()?;
    Ok((stock, reservations))
}
