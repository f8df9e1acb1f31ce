//! What inventory consumes: the checkout saga's commands and the catalog's product
//! events, each through the inbox.

use contracts::messaging::Envelope;
use contracts::messaging::Message as _;
use contracts::messaging::catalog::{ProductCreatedV1, ProductDeletedV1};
use contracts::messaging::inventory::{
    CommitStockV1, ReleaseStockV1, ReserveStockV1, ReturnStockV1,
};
use futures_util::future::BoxFuture;
use platform::bus::SubscriptionSpec;
use platform::inbox::Handler;
use platform::outbox::Origin;
use sqlx::AnyConnection;

use platform::clock::now_ms;

use crate::{ops, store};

/// The subscription for commands addressed to inventory.
pub fn commands() -> SubscriptionSpec {
    SubscriptionSpec::new("inventory.commands", "inventory.cmd.>")
}

/// The subscription for the catalog's product events.
pub fn catalog_events() -> SubscriptionSpec {
    SubscriptionSpec::new("inventory.catalog-events", "catalog.>")
}

/// Applies reserve, release, commit and return commands.
pub struct Commands;

impl Handler for Commands {
    fn handle<'a>(
        &'a self,
        connection: &'a mut AnyConnection,
        envelope: &'a Envelope,
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            let origin = Origin::caused_by(envelope);
            let now = now_ms();
            match envelope.kind.as_str() {
                kind if kind == ReserveStockV1::TYPE => {
                    ops::reserve(connection, &envelope.decode()?, &origin, now).await
                }
                kind if kind == ReleaseStockV1::TYPE => {
                    ops::release(connection, &envelope.decode()?, &origin, now).await
                }
                kind if kind == CommitStockV1::TYPE => {
                    ops::commit(connection, &envelope.decode()?, &origin, now).await
                }
                kind if kind == ReturnStockV1::TYPE => {
                    ops::return_stock(connection, &envelope.decode()?, &origin, now).await
                }
                other => {
                    // A newer command this version does not know: acknowledge and move on
                    // rather than retry something that can never succeed here.
                    tracing::warn!(kind = other, "ignoring an unknown command");
                    Ok(())
                }
            }
        })
    }
}

/// Starts tracking products the catalog adds, and stops reserving those it deletes.
pub struct CatalogEvents {
    /// Units a new product starts with.
    pub initial_stock: i64,
}

impl Handler for CatalogEvents {
    fn handle<'a>(
        &'a self,
        connection: &'a mut AnyConnection,
        envelope: &'a Envelope,
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            let now = now_ms();
            match envelope.kind.as_str() {
                kind if kind == ProductCreatedV1::TYPE => {
                    let created: ProductCreatedV1 = envelope.decode()?;
                    store::ensure_stock(connection, created.product_id, self.initial_stock, now)
                        .await
                }
                kind if kind == ProductDeletedV1::TYPE => {
                    let deleted: ProductDeletedV1 = envelope.decode()?;
                    store::discontinue(connection, deleted.product_id, now).await
                }
                // Price changes and future catalog events do not concern stock.
                _ => Ok(()),
            }
        })
    }
}
