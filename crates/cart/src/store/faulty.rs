//! A cart store that is unreachable on a flag: `cart-store-down` (boolean) makes every
//! call fail as a Redis or database connection that was refused would. The cart API
//! answers 503 with `Retry-After`, its readiness fails, and carts come back as they
//! were once the flag is off: nothing was changed while the store was away.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use platform::flags::{EvaluationContext, Flags};

use super::{CartError, CartStore, Contents};
use crate::domain::{CustomerId, Line, ProductId};

/// Whether the cart store is unreachable.
pub const STORE_DOWN: &str = "cart-store-down";

/// A store with the fault its flag switches on.
pub struct FaultyCartStore {
    inner: Arc<dyn CartStore>,
    flags: Flags,
}

impl FaultyCartStore {
    /// `inner`, unreachable when `flags` say so.
    pub fn new(inner: Arc<dyn CartStore>, flags: Flags) -> Self {
        Self { inner, flags }
    }

    /// The refusal a call meets while the flag is on: a refused connection, which the
    /// service answers with 503.
    fn refusal(&self) -> Option<anyhow::Error> {
        if !self
            .flags
            .boolean(STORE_DOWN, &EvaluationContext::new(), false)
        {
            return None;
        }
        metrics::counter!("injected_faults_total", "service" => crate::NAME, "fault" => STORE_DOWN)
            .increment(1);
        Some(anyhow::Error::new(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            format!("injected: the flag {STORE_DOWN} makes the cart store unreachable"),
        )))
    }
}

impl CartStore for FaultyCartStore {
    fn contents<'a>(&'a self, customer: &'a CustomerId) -> BoxFuture<'a, anyhow::Result<Contents>> {
        match self.refusal() {
            Some(error) => Box::pin(async { Err(error) }),
            None => self.inner.contents(customer),
        }
    }

    fn add<'a>(
        &'a self,
        customer: &'a CustomerId,
        product: &'a ProductId,
        quantity: i64,
    ) -> BoxFuture<'a, Result<i64, CartError>> {
        match self.refusal() {
            Some(error) => Box::pin(async { Err(error.into()) }),
            None => self.inner.add(customer, product, quantity),
        }
    }

    fn set_quantity<'a>(
        &'a self,
        customer: &'a CustomerId,
        product: &'a ProductId,
        quantity: i64,
    ) -> BoxFuture<'a, Result<(), CartError>> {
        match self.refusal() {
            Some(error) => Box::pin(async { Err(error.into()) }),
            None => self.inner.set_quantity(customer, product, quantity),
        }
    }

    fn remove<'a>(
        &'a self,
        customer: &'a CustomerId,
        product: &'a ProductId,
    ) -> BoxFuture<'a, anyhow::Result<bool>> {
        match self.refusal() {
            Some(error) => Box::pin(async { Err(error) }),
            None => self.inner.remove(customer, product),
        }
    }

    fn clear<'a>(&'a self, customer: &'a CustomerId) -> BoxFuture<'a, anyhow::Result<()>> {
        match self.refusal() {
            Some(error) => Box::pin(async { Err(error) }),
            None => self.inner.clear(customer),
        }
    }

    fn remove_ordered<'a>(
        &'a self,
        customer: &'a CustomerId,
        order_id: &'a str,
        ordered: &'a [Line],
        revision: Option<i64>,
    ) -> BoxFuture<'a, anyhow::Result<bool>> {
        match self.refusal() {
            Some(error) => Box::pin(async { Err(error) }),
            None => self
                .inner
                .remove_ordered(customer, order_id, ordered, revision),
        }
    }

    fn ping(&self) -> BoxFuture<'_, Result<(), String>> {
        match self.refusal() {
            Some(error) => Box::pin(async move { Err(format!("{error:#}")) }),
            None => self.inner.ping(),
        }
    }
}
