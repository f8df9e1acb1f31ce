//! Inventory's SQL, portable between SQLite and PostgreSQL. Functions that change state
//! take the caller's connection, so a message's effects, its outgoing messages and its
//! inbox record commit together.

use anyhow::Context as _;
use contracts::{OrderId, ProductId};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, AnyPool, Row as _};

use crate::domain::{Lines, State};

/// A product's stock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Levels {
    /// The product.
    pub product_id: String,
    /// Units ever put into stock, net of removals.
    pub received: i64,
    /// Units held for unpaid orders.
    pub reserved: i64,
    /// Units sold.
    pub sold: i64,
    /// Whether the catalog removed the product.
    pub discontinued: bool,
}

impl Levels {
    /// Units that can be reserved now.
    pub fn available(&self) -> i64 {
        self.received - self.reserved - self.sold
    }
}

/// Why an adjustment was refused.
#[derive(Debug, thiserror::Error)]
pub enum AdjustError {
    /// No such product.
    #[error("no stock for this product")]
    Unknown,
    /// It would take away units that are reserved or sold.
    #[error("the adjustment would leave less stock than is reserved and sold")]
    BelowCommitted,
    /// The database failed.
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// Starts tracking a product with `initial` units, unless it is tracked already.
pub async fn ensure_stock(
    connection: &mut AnyConnection,
    product_id: ProductId,
    initial: i64,
    now: i64,
) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO stock (product_id, received, reserved, sold, updated_at) VALUES ($1, $2, 0, 0, $3) \
         ON CONFLICT (product_id) DO NOTHING",
    )
    .bind(product_id.to_string())
    .bind(initial)
    .bind(now)
    .execute(connection)
    .await
    .context("creating a stock row")?;
    Ok(())
}

/// Stops new reservations of a product the catalog removed; held ones run their course.
pub async fn discontinue(
    connection: &mut AnyConnection,
    product_id: ProductId,
    now: i64,
) -> anyhow::Result<()> {
    sqlx::query("UPDATE stock SET discontinued = 1, updated_at = $2 WHERE product_id = $1")
        .bind(product_id.to_string())
        .bind(now)
        .execute(connection)
        .await
        .context("discontinuing a product")?;
    Ok(())
}

/// Adds `delta` units (negative removes), never below what is reserved and sold.
pub async fn adjust(
    connection: &mut AnyConnection,
    product_id: ProductId,
    delta: i64,
    now: i64,
) -> Result<Levels, AdjustError> {
    let row = sqlx::query(
        "UPDATE stock SET received = received + $2, updated_at = $3 \
         WHERE product_id = $1 AND received + $2 - reserved - sold >= 0 AND received + $2 >= 0 \
         RETURNING product_id, received, reserved, sold, discontinued",
    )
    .bind(product_id.to_string())
    .bind(delta)
    .bind(now)
    .fetch_optional(&mut *connection)
    .await
    .context("adjusting stock")?;
    match row {
        Some(row) => Ok(levels_from_row(&row)?),
        None if levels_of(&mut *connection, product_id).await?.is_some() => {
            Err(AdjustError::BelowCommitted)
        }
        None => Err(AdjustError::Unknown),
    }
}

/// The stock of one product.
pub async fn levels_of(
    connection: &mut AnyConnection,
    product_id: ProductId,
) -> anyhow::Result<Option<Levels>> {
    let row = sqlx::query(concat!(select_levels!(), " WHERE product_id = $1"))
        .bind(product_id.to_string())
        .fetch_optional(connection)
        .await
        .context("reading stock")?;
    row.as_ref().map(levels_from_row).transpose()
}

/// Every product's stock, by product id.
pub async fn all_levels(pool: &AnyPool) -> anyhow::Result<Vec<Levels>> {
    let rows = sqlx::query(concat!(select_levels!(), " ORDER BY product_id"))
        .fetch_all(pool)
        .await
        .context("listing stock")?;
    rows.iter().map(levels_from_row).collect()
}

/// An order's reservation: its state and when its hold ends (Unix ms).
pub async fn reservation(
    connection: &mut AnyConnection,
    order_id: OrderId,
) -> anyhow::Result<Option<(State, i64)>> {
    let row = sqlx::query("SELECT state, expires_at FROM reservations WHERE order_id = $1")
        .bind(order_id.to_string())
        .fetch_optional(connection)
        .await
        .context("reading a reservation")?;
    row.map(|row| {
        let state: String = row.try_get("state")?;
        let state = State::parse(&state).with_context(|| format!("stored state {state:?}"))?;
        Ok((state, row.try_get("expires_at")?))
    })
    .transpose()
}

/// Puts the stock an order bought back on sale, once: `true` if it was given back now,
/// `false` if it was before or the order's reservation was never committed (nothing
/// was sold).
pub async fn return_sold(
    connection: &mut AnyConnection,
    order_id: OrderId,
    now: i64,
) -> anyhow::Result<bool> {
    if !matches!(
        reservation(&mut *connection, order_id).await?,
        Some((State::Committed, _))
    ) {
        return Ok(false);
    }
    // Claimed by the insert: of two concurrent returns, only one gets the row.
    let claimed = sqlx::query(
        "INSERT INTO stock_returns (order_id, returned_at) VALUES ($1, $2) \
         ON CONFLICT (order_id) DO NOTHING",
    )
    .bind(order_id.to_string())
    .bind(now)
    .execute(&mut *connection)
    .await
    .context("recording a return")?
    .rows_affected();
    if claimed != 1 {
        return Ok(false);
    }
    sqlx::query(
        "UPDATE stock SET sold = sold - l.quantity, updated_at = $2 \
         FROM reservation_lines l WHERE l.order_id = $1 AND stock.product_id = l.product_id",
    )
    .bind(order_id.to_string())
    .bind(now)
    .execute(&mut *connection)
    .await
    .context("returning sold stock")?;
    Ok(true)
}

/// The products of `lines` that cannot be reserved now (short or discontinued).
pub async fn shortages(
    connection: &mut AnyConnection,
    lines: &Lines,
) -> anyhow::Result<Vec<ProductId>> {
    let mut short = Vec::new();
    for (product_id, quantity) in lines.iter() {
        let enough = levels_of(&mut *connection, product_id)
            .await?
            .is_some_and(|levels| !levels.discontinued && levels.available() >= quantity);
        if !enough {
            short.push(product_id);
        }
    }
    Ok(short)
}

/// Holds `lines` for `order_id` until `expires_at`. Each row is taken only if enough is
/// still available at that instant; if a concurrent reservation took it first, this
/// fails and the caller's transaction rolls back, to be retried on fresh numbers.
pub async fn hold(
    connection: &mut AnyConnection,
    order_id: OrderId,
    lines: &Lines,
    expires_at: i64,
    now: i64,
) -> anyhow::Result<()> {
    for (product_id, quantity) in lines.iter() {
        let taken = sqlx::query(
            "UPDATE stock SET reserved = reserved + $2, updated_at = $3 \
             WHERE product_id = $1 AND discontinued = 0 AND received - reserved - sold >= $2",
        )
        .bind(product_id.to_string())
        .bind(quantity)
        .bind(now)
        .execute(&mut *connection)
        .await
        .context("reserving stock")?
        .rows_affected();
        anyhow::ensure!(
            taken == 1,
            "stock of {product_id} was taken concurrently; retrying"
        );
    }
    record(&mut *connection, order_id, State::Held, expires_at, now).await?;
    for (product_id, quantity) in lines.iter() {
        sqlx::query(
            "INSERT INTO reservation_lines (order_id, product_id, quantity) VALUES ($1, $2, $3)",
        )
        .bind(order_id.to_string())
        .bind(product_id.to_string())
        .bind(quantity)
        .execute(&mut *connection)
        .await
        .context("recording a reservation line")?;
    }
    Ok(())
}

/// Records that `order_id` was rejected, so a repeated command gets the same answer.
pub async fn reject(
    connection: &mut AnyConnection,
    order_id: OrderId,
    now: i64,
) -> anyhow::Result<()> {
    record(connection, order_id, State::Rejected, now, now).await
}

/// Ends a held reservation as `to` (committed, released or expired): its units leave
/// `reserved`, and go to `sold` on commit. Returns the state it was in, so callers can
/// answer a repeated or late command; nothing changes unless it was held.
pub async fn finish(
    connection: &mut AnyConnection,
    order_id: OrderId,
    to: State,
    now: i64,
) -> anyhow::Result<Option<State>> {
    let Some((state, _)) = reservation(&mut *connection, order_id).await? else {
        return Ok(None);
    };
    // Claim the transition first: of two concurrent finishes only one sees `held`.
    let claimed = sqlx::query("UPDATE reservations SET state = $2, updated_at = $3 WHERE order_id = $1 AND state = 'held'")
        .bind(order_id.to_string())
        .bind(to.as_str())
        .bind(now)
        .execute(&mut *connection)
        .await
        .context("ending a reservation")?
        .rows_affected();
    if state != State::Held {
        return Ok(Some(state));
    }
    if claimed != 1 {
        // Another finish claimed it between our read and our update (on PostgreSQL the
        // update waited for that transaction and then matched nothing): answer with the
        // state it left, not the stale `held`.
        let now_state = reservation(&mut *connection, order_id).await?;
        return Ok(now_state.map(|(state, _)| state));
    }
    let lines =
        sqlx::query("SELECT product_id, quantity FROM reservation_lines WHERE order_id = $1")
            .bind(order_id.to_string())
            .fetch_all(&mut *connection)
            .await
            .context("reading reservation lines")?;
    let sold = i64::from(to == State::Committed);
    for line in lines {
        let quantity: i64 = line.try_get("quantity")?;
        sqlx::query(
            "UPDATE stock SET reserved = reserved - $2, sold = sold + $3, updated_at = $4 WHERE product_id = $1",
        )
        .bind(line.try_get::<String, _>("product_id")?)
        .bind(quantity)
        .bind(quantity * sold)
        .bind(now)
        .execute(&mut *connection)
        .await
        .context("moving reserved stock")?;
    }
    Ok(Some(State::Held))
}

/// Held reservations whose hold ended by `now`, oldest first, at most `limit`.
pub async fn due(pool: &AnyPool, now: i64, limit: i64) -> anyhow::Result<Vec<OrderId>> {
    let rows = sqlx::query(
        "SELECT order_id FROM reservations WHERE state = 'held' AND expires_at <= $1 \
         ORDER BY expires_at LIMIT $2",
    )
    .bind(now)
    .bind(limit)
    .fetch_all(pool)
    .await
    .context("finding expired reservations")?;
    rows.iter()
        .map(|row| {
            let order_id: String = row.try_get("order_id")?;
            OrderId::parse(&order_id).with_context(|| format!("stored order id {order_id:?}"))
        })
        .collect()
}

/// Records a reservation of `order_id` in `state`, with no lines.
pub(crate) async fn record(
    connection: &mut AnyConnection,
    order_id: OrderId,
    state: State,
    expires_at: i64,
    now: i64,
) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO reservations (order_id, state, expires_at, created_at, updated_at) VALUES ($1, $2, $3, $4, $4)",
    )
    .bind(order_id.to_string())
    .bind(state.as_str())
    .bind(expires_at)
    .bind(now)
    .execute(connection)
    .await
    .context("recording a reservation")?;
    Ok(())
}

/// The columns `levels_from_row` reads.
macro_rules! select_levels {
    () => {
        "SELECT product_id, received, reserved, sold, discontinued FROM stock"
    };
}
use select_levels;

fn levels_from_row(row: &AnyRow) -> anyhow::Result<Levels> {
    Ok(Levels {
        product_id: row.try_get("product_id")?,
        received: row.try_get("received")?,
        reserved: row.try_get("reserved")?,
        sold: row.try_get("sold")?,
        discontinued: row.try_get::<i64, _>("discontinued")? != 0,
    })
}
