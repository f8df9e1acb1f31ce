//! Cart: each customer's cart.
//!
//! It owns which products, and how many of each, a customer means to buy. It does not
//! own prices or names (the catalog) or stock (inventory): it asks them over gRPC each
//! time a cart is shown, so a cart is always priced as the catalog says now. Customers
//! change their own cart over REST; orders reads it over gRPC at checkout; when an
//! order is confirmed, its lines leave the cart.
//!
//! Carts live in SQL (SQLite in embedded mode, PostgreSQL in distributed mode) or in
//! Redis, chosen by `store.kind`; both adapters pass one conformance suite. A cart
//! untouched for `abandon_after_secs` expires: Redis drops it by its TTL, the SQL store
//! by a sweep.
//!
//! - [`domain`]: customer and product ids, lines, limits; pure.
//! - [`store`]: the [`store::CartStore`] interface, with its SQL and Redis adapters.
//! - [`pricing`]: the gRPC lookups that price a cart.
//! - [`http`]: the customer's REST API.
//! - [`grpc`]: `GetCart` for other services.
//! - [`events`]: removing confirmed orders' lines from carts.

pub mod config;
pub mod domain;
pub mod events;
pub mod grpc;
pub mod http;
pub mod pricing;
pub mod store;

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use platform::clock::now_ms;
use platform::http::Readiness;
use platform::outbox::Waker;
use platform::service::{Context, Service};

pub use config::{Config, StoreConfig};

use crate::domain::{CustomerId, Limits};
use crate::pricing::{PricedCart, Pricing, PricingError};
use crate::store::CartStore;
use crate::store::redis::RedisCartStore;
use crate::store::sql::SqlCartStore;

/// The service's name in logs, metrics and the topology.
pub const NAME: &str = "cart";

/// Opens the configured store, subscribes to confirmed orders, and returns the service:
/// REST and gRPC on one router, the consumer of confirmed orders, and (with the SQL
/// store) the sweep that drops abandoned carts.
pub async fn build(config: &Config, context: &Context) -> anyhow::Result<Service> {
    config.validate()?;
    let limits = Limits {
        max_lines: config.max_lines,
        max_quantity: config.max_quantity,
    };
    let abandon_after = Duration::from_secs(config.abandon_after_secs);
    let call_timeout = Duration::from_millis(config.call_timeout_ms);
    let mut workers: Vec<BoxFuture<'static, ()>> = Vec::new();
    let store: Arc<dyn CartStore> = match &config.store {
        StoreConfig::Sql {} => {
            let db = context
                .database(NAME, config.database_url.as_ref(), config.max_connections)
                .await?;
            SqlCartStore::migrate(&db).await?;
            let store = SqlCartStore::new(db, limits, abandon_after);
            // Dropping a cart publishes nothing, so there is no relay to wake.
            workers.push(Box::pin(platform::service::every(
                "dropping abandoned carts",
                Duration::from_secs(config.expiry_check_secs),
                context.shutdown.clone(),
                Waker::none(),
                {
                    let store = store.clone();
                    move || {
                        let store = store.clone();
                        async move { Ok(usize::try_from(store.expire_abandoned(now_ms()).await?)?) }
                    }
                },
            )));
            Arc::new(store)
        }
        StoreConfig::Redis { url, key_prefix } => Arc::new(
            RedisCartStore::connect(
                url.expose(),
                key_prefix.clone(),
                limits,
                abandon_after,
                call_timeout,
            )
            .await?,
        ),
    };
    let store: Arc<dyn CartStore> = Arc::new(store::faulty::FaultyCartStore::new(
        store,
        context.flags.clone(),
    ));
    let carts = Carts {
        store: store.clone(),
        pricing: Pricing::new(&config.catalog_url, &config.inventory_url, call_timeout)?,
        limits,
    };
    let orders = events::OrderEvents::subscribe(context.bus.clone(), store.clone()).await?;
    workers.push(Box::pin(orders.run(context.shutdown.clone())));
    let readiness = Readiness::new().with("store", move || {
        let store = store.clone();
        async move { store.ping().await }
    });
    let routes = platform::grpc::mount(http::router(carts.clone()), grpc::service(carts))
        .layer(axum::Extension(context.verifier.clone()));
    Ok(Service {
        router: context.app(NAME, routes, readiness),
        workers,
    })
}

/// What the REST and gRPC APIs share: the store, the pricing clients and the limits.
#[derive(Clone)]
pub struct Carts {
    /// Where carts are kept.
    pub store: Arc<dyn CartStore>,
    /// Prices and availability.
    pub pricing: Pricing,
    /// How much one cart may hold.
    pub limits: Limits,
}

impl Carts {
    /// The customer's cart, priced now.
    pub async fn priced(&self, customer: &CustomerId) -> Result<PricedCart, PricingError> {
        Ok(self.priced_at_revision(customer).await?.1)
    }

    /// The customer's cart, priced now, with the revision it was read at.
    pub async fn priced_at_revision(
        &self,
        customer: &CustomerId,
    ) -> Result<(i64, PricedCart), PricingError> {
        let contents = self.store.contents(customer).await?;
        let priced = self.pricing.price(customer, contents.lines).await?;
        Ok((contents.revision, priced))
    }
}
