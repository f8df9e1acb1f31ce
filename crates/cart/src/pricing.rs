//! Pricing a cart: names and prices from the catalog, availability from inventory, both
//! asked over gRPC at the moment the cart is shown. The cart stores only product ids
//! and quantities, so a price change in the catalog shows in every cart at once, and no
//! price ever comes from the client.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Context as _;
use contracts::Money;
use contracts::proto::catalog::v1::GetProductsRequest;
use contracts::proto::catalog::v1::catalog_client::CatalogClient;
use contracts::proto::inventory::v1::GetAvailabilityRequest;
use contracts::proto::inventory::v1::inventory_client::InventoryClient;
use platform::grpc::TracedChannel;

use crate::domain::{CustomerId, Line, ProductId};

/// The most ids the catalog and inventory take in one call.
const IDS_PER_CALL: usize = 100;

/// Asks the catalog and inventory about products.
#[derive(Clone, Debug)]
pub struct Pricing {
    catalog: CatalogClient<TracedChannel>,
    inventory: InventoryClient<TracedChannel>,
}

/// What the catalog says of a product now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Product {
    /// Its name.
    pub name: String,
    /// The price of one unit.
    pub price: Money,
}

/// A cart as the customer sees it: each line priced now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PricedCart {
    /// Whose cart.
    pub customer_id: CustomerId,
    /// The lines of products the catalog sells, by product id.
    pub lines: Vec<PricedLine>,
    /// The sum of the lines' totals; `None` when no line is priced.
    pub total: Option<Money>,
    /// Products in the cart that the catalog no longer sells; not in `lines`.
    pub unavailable: Vec<ProductId>,
}

/// One priced line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PricedLine {
    /// The product.
    pub product_id: ProductId,
    /// Its name in the catalog.
    pub name: String,
    /// Units in the cart.
    pub quantity: i64,
    /// The catalog's price of one unit.
    pub unit_price: Money,
    /// `unit_price` times `quantity`.
    pub line_total: Money,
    /// Units inventory could reserve now (a hint); `None` when inventory did not answer.
    pub available: Option<i64>,
}

/// Why a cart could not be priced.
#[derive(Debug, thiserror::Error)]
pub enum PricingError {
    /// The catalog did not answer in time, or failed: without it nothing has a price.
    #[error("the catalog did not answer: {0}")]
    CatalogUnavailable(String),
    /// Anything else, such as prices in two currencies.
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl Pricing {
    /// Clients of the catalog and inventory at their gRPC URLs; each call gives up after
    /// `deadline`. Nothing connects until the first call.
    pub fn new(catalog_url: &str, inventory_url: &str, deadline: Duration) -> anyhow::Result<Self> {
        let catalog = platform::grpc::channel(catalog_url, deadline).context("catalog_url")?;
        let inventory =
            platform::grpc::channel(inventory_url, deadline).context("inventory_url")?;
        Ok(Self {
            catalog: CatalogClient::new(catalog),
            inventory: InventoryClient::new(inventory),
        })
    }

    /// The products of `ids` the catalog sells; ids it does not know are left out.
    pub async fn products(
        &self,
        ids: &[ProductId],
    ) -> Result<HashMap<ProductId, Product>, PricingError> {
        let mut found = HashMap::with_capacity(ids.len());
        for chunk in ids.chunks(IDS_PER_CALL) {
            let request = GetProductsRequest {
                ids: chunk.iter().map(ToString::to_string).collect(),
            };
            let answer = self
                .catalog
                .clone()
                .get_products(request)
                .await
                .map_err(|status| {
                    tracing::warn!(code = ?status.code(), "the catalog failed: {}", status.message());
                    PricingError::CatalogUnavailable(status.message().to_owned())
                })?
                .into_inner();
            for product in answer.products {
                let id = ProductId::parse(&product.id)
                    .with_context(|| format!("the catalog sent product id {:?}", product.id))?;
                let price = product
                    .price
                    .with_context(|| format!("the catalog sent {id} without a price"))?;
                let price = Money::try_from(price)
                    .with_context(|| format!("the catalog sent {id} with a bad price"))?;
                found.insert(
                    id,
                    Product {
                        name: product.name,
                        price,
                    },
                );
            }
        }
        Ok(found)
    }

    /// Units inventory could reserve now of each of `ids`; `None`, logged, when
    /// inventory does not answer, since availability is only a hint.
    pub async fn availability(&self, ids: &[ProductId]) -> Option<HashMap<ProductId, i64>> {
        let mut available = HashMap::with_capacity(ids.len());
        for chunk in ids.chunks(IDS_PER_CALL) {
            let request = GetAvailabilityRequest {
                product_ids: chunk.iter().map(ToString::to_string).collect(),
            };
            let answer = match self.inventory.clone().get_availability(request).await {
                Ok(answer) => answer.into_inner(),
                Err(status) => {
                    tracing::warn!(code = ?status.code(), "inventory failed: {}", status.message());
                    return None;
                }
            };
            for item in answer.items {
                if let Ok(id) = ProductId::parse(&item.product_id) {
                    available.insert(id, item.available);
                }
            }
        }
        Some(available)
    }

    /// Prices `lines`, the customer's cart, as the catalog and inventory say now.
    pub async fn price(
        &self,
        customer: &CustomerId,
        lines: Vec<Line>,
    ) -> Result<PricedCart, PricingError> {
        if lines.is_empty() {
            return Ok(PricedCart {
                customer_id: customer.clone(),
                lines: Vec::new(),
                total: None,
                unavailable: Vec::new(),
            });
        }
        let ids: Vec<ProductId> = lines.iter().map(|line| line.product_id).collect();
        let (products, availability) = tokio::join!(self.products(&ids), self.availability(&ids));
        let products = products?;
        let mut priced = Vec::with_capacity(lines.len());
        let mut unavailable = Vec::new();
        let mut total: Option<Money> = None;
        for line in lines {
            let Some(product) = products.get(&line.product_id) else {
                unavailable.push(line.product_id);
                continue;
            };
            let line_total = product.price.checked_mul(line.quantity).with_context(|| {
                format!("pricing {} units of {}", line.quantity, line.product_id)
            })?;
            total = Some(match total {
                None => line_total,
                Some(sum) => sum
                    .checked_add(line_total)
                    .context("adding up the cart's total")?,
            });
            priced.push(PricedLine {
                available: availability
                    .as_ref()
                    .map(|available| available.get(&line.product_id).copied().unwrap_or(0)),
                product_id: line.product_id,
                name: product.name.clone(),
                quantity: line.quantity,
                unit_price: product.price,
                line_total,
            });
        }
        Ok(PricedCart {
            customer_id: customer.clone(),
            lines: priced,
            total,
            unavailable,
        })
    }
}
