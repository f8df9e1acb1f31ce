//! Where carts are kept: the [`CartStore`] interface and its two adapters.
//!
//! [`sql::SqlCartStore`] keeps carts in the cart's database (SQLite in embedded mode,
//! PostgreSQL in distributed mode) and drops abandoned ones with a periodic sweep;
//! [`redis::RedisCartStore`] keeps one hash per customer that Redis expires by itself.
//! Both pass one conformance suite (`crates/cart/tests/conformance`).
//! [`faulty::FaultyCartStore`] stands in front of either and is unreachable on a flag.
//!
//! **Guarantees**, in both adapters: every operation on a cart is atomic, so concurrent
//! changes to one cart never lose an update; a cart never holds more than
//! [`Limits::max_lines`] products nor more than [`Limits::max_quantity`] units of one;
//! and [`CartStore::remove_ordered`] takes an order's lines out at most once per order,
//! however often it is called, and only out of lines the cart held when the order was
//! placed.
//!
//! **Revisions**: a cart's revision grows each time it gains a line, and is at least
//! the time of that change in ms, so it keeps growing when a dropped or expired cart
//! starts again. Each line remembers the revision that created it. An order records the
//! revision of the cart it was placed from; when it is confirmed, a line created after
//! that (the customer removed a product and added it again meanwhile) is left alone,
//! while units added to a line the order bought from are kept as before.

pub mod faulty;
pub mod redis;
pub mod sql;

use futures_util::future::BoxFuture;

use crate::domain::{CustomerId, Limits, Line, ProductId};

/// A cart as one read sees it: its revision and its lines.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Contents {
    /// The revision (0 for no cart); see the module's documentation.
    pub revision: i64,
    /// The lines, by product id.
    pub lines: Vec<Line>,
}

/// The revision of a cart that gains a line now, after `previous`.
pub fn next_revision(previous: i64, now_ms: i64) -> i64 {
    previous.saturating_add(1).max(now_ms)
}

/// Customers' carts.
pub trait CartStore: Send + Sync + 'static {
    /// The customer's cart, read at once; empty, revision 0, if there is none.
    fn contents<'a>(&'a self, customer: &'a CustomerId) -> BoxFuture<'a, anyhow::Result<Contents>>;

    /// The customer's lines, by product id; empty if there is no cart.
    fn lines<'a>(&'a self, customer: &'a CustomerId) -> BoxFuture<'a, anyhow::Result<Vec<Line>>> {
        Box::pin(async move { Ok(self.contents(customer).await?.lines) })
    }

    /// Adds `quantity` units of `product` (1 to the maximum), creating the line if
    /// needed; a line never grows past the maximum, the surplus is dropped. Returns the
    /// line's quantity now.
    fn add<'a>(
        &'a self,
        customer: &'a CustomerId,
        product: &'a ProductId,
        quantity: i64,
    ) -> BoxFuture<'a, Result<i64, CartError>>;

    /// Sets the line of `product` to `quantity` units (1 to the maximum).
    fn set_quantity<'a>(
        &'a self,
        customer: &'a CustomerId,
        product: &'a ProductId,
        quantity: i64,
    ) -> BoxFuture<'a, Result<(), CartError>>;

    /// Removes the line of `product`; `false` if there was none.
    fn remove<'a>(
        &'a self,
        customer: &'a CustomerId,
        product: &'a ProductId,
    ) -> BoxFuture<'a, anyhow::Result<bool>>;

    /// Empties the cart.
    fn clear<'a>(&'a self, customer: &'a CustomerId) -> BoxFuture<'a, anyhow::Result<()>>;

    /// Takes what order `order_id` bought out of the cart: each line loses the ordered
    /// units, and goes when none are left. Units added beyond what was ordered stay, and
    /// lines created after `revision` (the cart's when the order was placed; `None` for
    /// an order that did not record it) are not touched. The first call for an order
    /// does this and returns `true`; any later call for the same order changes nothing
    /// and returns `false`.
    fn remove_ordered<'a>(
        &'a self,
        customer: &'a CustomerId,
        order_id: &'a str,
        ordered: &'a [Line],
        revision: Option<i64>,
    ) -> BoxFuture<'a, anyhow::Result<bool>>;

    /// Checks that the store answers; for `/health/ready`. The error is safe to show
    /// operators.
    fn ping(&self) -> BoxFuture<'_, Result<(), String>>;
}

/// Why a change to a cart was refused.
#[derive(Debug, thiserror::Error)]
pub enum CartError {
    /// The quantity is not from 1 to the maximum.
    #[error("must be a whole number of units from 1 to {max}")]
    QuantityOutOfRange {
        /// The most units a line may hold.
        max: i64,
    },
    /// The cart already holds as many products as it may.
    #[error("the cart already holds {max} different products, the most it may")]
    TooManyLines {
        /// The most lines a cart may hold.
        max: usize,
    },
    /// The cart has no line for the product.
    #[error("the cart has no line for this product")]
    NoSuchLine,
    /// The store failed.
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// Refuses `quantity` unless `limits` allow it.
fn check_quantity(limits: Limits, quantity: i64) -> Result<(), CartError> {
    if limits.allows(quantity) {
        Ok(())
    } else {
        Err(CartError::QuantityOutOfRange {
            max: limits.max_quantity,
        })
    }
}

/// What `remove_ordered` leaves of a line holding `held` units after `ordered` went.
fn left_after(held: i64, ordered: i64) -> Option<i64> {
    let left = held.saturating_sub(ordered.max(0));
    (left > 0).then_some(left)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_order_takes_at_most_what_the_line_holds() {
        assert_eq!(left_after(5, 2), Some(3));
        assert_eq!(left_after(2, 2), None);
        assert_eq!(left_after(2, 7), None);
        assert_eq!(left_after(2, -3), Some(2), "a negative order takes nothing");
    }
}
