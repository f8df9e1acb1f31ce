//! Carts in the cart's SQL database, portable between SQLite and PostgreSQL.
//!
//! Every change runs in one transaction that first writes the cart's row in `carts`
//! (its last-touched time), so changes to one cart queue behind each other: the counts
//! and quantities a change reads cannot be changed under it. Abandoned carts are
//! dropped by [`SqlCartStore::expire_abandoned`], the step of a periodic sweep.

use std::time::Duration;

use anyhow::Context as _;
use futures_util::future::BoxFuture;
use platform::clock::now_ms;
use platform::db::Database;
use sqlx::{AnyConnection, Row as _};

use super::{CartError, CartStore, Contents, check_quantity, left_after, next_revision};
use crate::domain::{CustomerId, Limits, Line, ProductId};

/// How many abandoned carts one statement of the sweep drops at most, so that a large
/// backlog never holds locks for long.
const EXPIRY_BATCH: i64 = 500;

/// Carts in SQL tables.
#[derive(Clone, Debug)]
pub struct SqlCartStore {
    db: Database,
    limits: Limits,
    abandon_after_ms: i64,
}

impl SqlCartStore {
    /// Creates or updates the cart's tables in `db`.
    pub async fn migrate(db: &Database) -> anyhow::Result<()> {
        db.migrate(sqlx::migrate!("./migrations")).await
    }

    /// A store over `db` (migrated) that holds carts to `limits` and treats a cart
    /// untouched for `abandon_after` as abandoned.
    pub fn new(db: Database, limits: Limits, abandon_after: Duration) -> Self {
        Self {
            db,
            limits,
            abandon_after_ms: i64::try_from(abandon_after.as_millis()).unwrap_or(i64::MAX),
        }
    }

    /// Drops every cart untouched since `abandon_after` before `now` (Unix ms), and
    /// forgets processed orders older than the inbox's retention. Returns how many carts
    /// went; the sweep's step.
    pub async fn expire_abandoned(&self, now: i64) -> anyhow::Result<u64> {
        let cutoff = now.saturating_sub(self.abandon_after_ms);
        let mut expired = 0;
        loop {
            let mut tx = self.db.begin().await?;
            // The outer condition is checked again on a row a customer touched while
            // this ran, so a cart in use is never dropped.
            let customers: Vec<String> = sqlx::query_scalar(
                "DELETE FROM carts WHERE updated_at < $1 AND customer_id IN \
                 (SELECT customer_id FROM carts WHERE updated_at < $1 ORDER BY updated_at LIMIT $2) \
                 RETURNING customer_id",
            )
            .bind(cutoff)
            .bind(EXPIRY_BATCH)
            .fetch_all(&mut *tx)
            .await
            .context("dropping abandoned carts")?;
            for customer in &customers {
                sqlx::query("DELETE FROM cart_lines WHERE customer_id = $1")
                    .bind(customer.clone())
                    .execute(&mut *tx)
                    .await
                    .context("dropping an abandoned cart's lines")?;
            }
            tx.commit().await?;
            expired += customers.len() as u64;
            if (customers.len() as i64) < EXPIRY_BATCH {
                break;
            }
        }
        let retention = i64::try_from(platform::inbox::RETENTION.as_millis()).unwrap_or(i64::MAX);
        sqlx::query("DELETE FROM processed_orders WHERE processed_at < $1")
            .bind(now.saturating_sub(retention))
            .execute(self.db.writer())
            .await
            .context("forgetting old processed orders")?;
        Ok(expired)
    }

    async fn contents_of(&self, customer: &CustomerId) -> anyhow::Result<Contents> {
        // One statement, so the revision and the lines are of one moment.
        let rows = sqlx::query(
            "SELECT c.revision, l.product_id, l.quantity FROM carts c \
             LEFT JOIN cart_lines l ON l.customer_id = c.customer_id \
             WHERE c.customer_id = $1 ORDER BY l.product_id",
        )
        .bind(customer.as_str().to_owned())
        .fetch_all(self.db.pool())
        .await
        .context("reading a cart")?;
        let mut contents = Contents::default();
        for row in &rows {
            contents.revision = row.try_get("revision")?;
            let Some(product) = row.try_get::<Option<String>, _>("product_id")? else {
                continue;
            };
            let product_id = ProductId::parse(&product)
                .with_context(|| format!("stored product id {product:?}"))?;
            contents
                .lines
                .push(Line::new(product_id, row.try_get("quantity")?));
        }
        Ok(contents)
    }

    async fn add_line(
        &self,
        customer: &CustomerId,
        product: &ProductId,
        quantity: i64,
    ) -> Result<i64, CartError> {
        check_quantity(self.limits, quantity)?;
        let mut tx = self.db.begin().await.map_err(anyhow::Error::from)?;
        touch(&mut tx, customer).await?;
        let quantity = match held(&mut tx, customer, product).await? {
            Some(held) => {
                let grown = held.saturating_add(quantity).min(self.limits.max_quantity);
                set_line(&mut tx, customer, product, grown).await?;
                grown
            }
            None => {
                let lines: i64 =
                    sqlx::query_scalar("SELECT COUNT(*) FROM cart_lines WHERE customer_id = $1")
                        .bind(customer.as_str().to_owned())
                        .fetch_one(&mut *tx)
                        .await
                        .context("counting a cart's lines")?;
                if usize::try_from(lines).unwrap_or(usize::MAX) >= self.limits.max_lines {
                    return Err(CartError::TooManyLines {
                        max: self.limits.max_lines,
                    });
                }
                let previous: i64 =
                    sqlx::query_scalar("SELECT revision FROM carts WHERE customer_id = $1")
                        .bind(customer.as_str().to_owned())
                        .fetch_one(&mut *tx)
                        .await
                        .context("reading a cart's revision")?;
                let revision = next_revision(previous, now_ms());
                sqlx::query("UPDATE carts SET revision = $2 WHERE customer_id = $1")
                    .bind(customer.as_str().to_owned())
                    .bind(revision)
                    .execute(&mut *tx)
                    .await
                    .context("moving a cart's revision")?;
                sqlx::query(
                    "INSERT INTO cart_lines (customer_id, product_id, quantity, since) \
                     VALUES ($1, $2, $3, $4)",
                )
                .bind(customer.as_str().to_owned())
                .bind(product.to_string())
                .bind(quantity)
                .bind(revision)
                .execute(&mut *tx)
                .await
                .context("adding a line")?;
                quantity
            }
        };
        tx.commit().await.map_err(anyhow::Error::from)?;
        Ok(quantity)
    }

    async fn set_line_quantity(
        &self,
        customer: &CustomerId,
        product: &ProductId,
        quantity: i64,
    ) -> Result<(), CartError> {
        check_quantity(self.limits, quantity)?;
        let mut tx = self.db.begin().await.map_err(anyhow::Error::from)?;
        touch(&mut tx, customer).await?;
        if held(&mut tx, customer, product).await?.is_none() {
            return Err(CartError::NoSuchLine);
        }
        set_line(&mut tx, customer, product, quantity).await?;
        tx.commit().await.map_err(anyhow::Error::from)?;
        Ok(())
    }

    async fn remove_line(
        &self,
        customer: &CustomerId,
        product: &ProductId,
    ) -> anyhow::Result<bool> {
        let mut tx = self.db.begin().await?;
        refresh(&mut tx, customer).await?;
        let removed = delete_line(&mut tx, customer, product).await?;
        tx.commit().await?;
        Ok(removed)
    }

    async fn clear_cart(&self, customer: &CustomerId) -> anyhow::Result<()> {
        let mut tx = self.db.begin().await?;
        // The cart's row stays, with its revision: a line added next is newer than
        // any order placed before.
        refresh(&mut tx, customer).await?;
        sqlx::query("DELETE FROM cart_lines WHERE customer_id = $1")
            .bind(customer.as_str().to_owned())
            .execute(&mut *tx)
            .await
            .context("dropping a cart's lines")?;
        tx.commit().await?;
        Ok(())
    }

    async fn remove_order(
        &self,
        customer: &CustomerId,
        order_id: &str,
        ordered: &[Line],
        revision: Option<i64>,
    ) -> anyhow::Result<bool> {
        let mut tx = self.db.begin().await?;
        // Recording the order first makes a second call for it wait for the first to
        // commit, then find the record and leave.
        let first = sqlx::query(
            "INSERT INTO processed_orders (order_id, customer_id, processed_at) VALUES ($1, $2, $3) \
             ON CONFLICT (order_id) DO NOTHING",
        )
        .bind(order_id.to_owned())
        .bind(customer.as_str().to_owned())
        .bind(now_ms())
        .execute(&mut *tx)
        .await
        .context("recording a processed order")?
        .rows_affected()
            == 1;
        if !first {
            tx.rollback().await?;
            return Ok(false);
        }
        refresh(&mut tx, customer).await?;
        for line in ordered {
            let Some((held, since)) = held_since(&mut tx, customer, &line.product_id).await? else {
                continue;
            };
            if revision.is_some_and(|revision| since > revision) {
                // Added again after the order was placed: not what the order bought.
                continue;
            }
            match left_after(held, line.quantity) {
                Some(left) => set_line(&mut tx, customer, &line.product_id, left).await?,
                None => {
                    delete_line(&mut tx, customer, &line.product_id).await?;
                }
            }
        }
        tx.commit().await?;
        Ok(true)
    }
}

impl CartStore for SqlCartStore {
    fn contents<'a>(&'a self, customer: &'a CustomerId) -> BoxFuture<'a, anyhow::Result<Contents>> {
        Box::pin(self.contents_of(customer))
    }

    fn add<'a>(
        &'a self,
        customer: &'a CustomerId,
        product: &'a ProductId,
        quantity: i64,
    ) -> BoxFuture<'a, Result<i64, CartError>> {
        Box::pin(self.add_line(customer, product, quantity))
    }

    fn set_quantity<'a>(
        &'a self,
        customer: &'a CustomerId,
        product: &'a ProductId,
        quantity: i64,
    ) -> BoxFuture<'a, Result<(), CartError>> {
        Box::pin(self.set_line_quantity(customer, product, quantity))
    }

    fn remove<'a>(
        &'a self,
        customer: &'a CustomerId,
        product: &'a ProductId,
    ) -> BoxFuture<'a, anyhow::Result<bool>> {
        Box::pin(self.remove_line(customer, product))
    }

    fn clear<'a>(&'a self, customer: &'a CustomerId) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(self.clear_cart(customer))
    }

    fn remove_ordered<'a>(
        &'a self,
        customer: &'a CustomerId,
        order_id: &'a str,
        ordered: &'a [Line],
        revision: Option<i64>,
    ) -> BoxFuture<'a, anyhow::Result<bool>> {
        Box::pin(self.remove_order(customer, order_id, ordered, revision))
    }

    fn ping(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(self.db.ping())
    }
}

/// Creates the cart's row or moves its last-touched time to now; taking its lock first
/// is what serialises changes to one cart.
async fn touch(connection: &mut AnyConnection, customer: &CustomerId) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO carts (customer_id, updated_at) VALUES ($1, $2) \
         ON CONFLICT (customer_id) DO UPDATE SET updated_at = excluded.updated_at",
    )
    .bind(customer.as_str().to_owned())
    .bind(now_ms())
    .execute(connection)
    .await
    .context("touching a cart")?;
    Ok(())
}

/// Moves the last-touched time of the cart to now, if there is a cart, taking its lock.
async fn refresh(connection: &mut AnyConnection, customer: &CustomerId) -> anyhow::Result<()> {
    sqlx::query("UPDATE carts SET updated_at = $2 WHERE customer_id = $1")
        .bind(customer.as_str().to_owned())
        .bind(now_ms())
        .execute(connection)
        .await
        .context("touching a cart")?;
    Ok(())
}

/// How many units of `product` the cart holds, if it has a line for it.
async fn held(
    connection: &mut AnyConnection,
    customer: &CustomerId,
    product: &ProductId,
) -> anyhow::Result<Option<i64>> {
    sqlx::query_scalar("SELECT quantity FROM cart_lines WHERE customer_id = $1 AND product_id = $2")
        .bind(customer.as_str().to_owned())
        .bind(product.to_string())
        .fetch_optional(connection)
        .await
        .context("reading a line")
}

/// How many units of `product` the cart holds, and the revision that created the line,
/// if it has a line for it.
async fn held_since(
    connection: &mut AnyConnection,
    customer: &CustomerId,
    product: &ProductId,
) -> anyhow::Result<Option<(i64, i64)>> {
    let row = sqlx::query(
        "SELECT quantity, since FROM cart_lines WHERE customer_id = $1 AND product_id = $2",
    )
    .bind(customer.as_str().to_owned())
    .bind(product.to_string())
    .fetch_optional(connection)
    .await
    .context("reading a line")?;
    row.map(|row| Ok((row.try_get("quantity")?, row.try_get("since")?)))
        .transpose()
}

async fn set_line(
    connection: &mut AnyConnection,
    customer: &CustomerId,
    product: &ProductId,
    quantity: i64,
) -> anyhow::Result<()> {
    sqlx::query("UPDATE cart_lines SET quantity = $3 WHERE customer_id = $1 AND product_id = $2")
        .bind(customer.as_str().to_owned())
        .bind(product.to_string())
        .bind(quantity)
        .execute(connection)
        .await
        .context("changing a line")?;
    Ok(())
}

async fn delete_line(
    connection: &mut AnyConnection,
    customer: &CustomerId,
    product: &ProductId,
) -> anyhow::Result<bool> {
    let deleted = sqlx::query("DELETE FROM cart_lines WHERE customer_id = $1 AND product_id = $2")
        .bind(customer.as_str().to_owned())
        .bind(product.to_string())
        .execute(connection)
        .await
        .context("removing a line")?
        .rows_affected();
    Ok(deleted == 1)
}
