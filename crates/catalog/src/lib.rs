//! The catalog: products, categories and prices.
//!
//! It owns its database (one SQLite file or PostgreSQL database, never read by another
//! service) and answers shoppers over REST (through the gateway, under `/api/catalog`) and
//! other services over gRPC (`bazaar.catalog.v1.Catalog`), both on one port.
//!
//! Admin changes to products publish versioned events (`catalog.product_created.v1`,
//! `catalog.product_price_changed.v1`, `catalog.product_deleted.v1`) through its outbox.
//!
//! It does not own stock (inventory) or what a customer pays (orders fix the price when an
//! order is placed).
//!
//! - [`domain`]: products and categories, listing queries, and what an admin may
//!   write; pure.
//! - [`store`]: the SQL, portable between SQLite and PostgreSQL.
//! - [`ops`]: the use cases: each write one transaction with the event it announces.
//! - [`seed`]: the demo catalog, loaded on first start.
//! - [`http`]: the REST handlers and their OpenAPI document.
//! - [`grpc`]: the internal gRPC service.

pub mod config;
pub mod domain;
pub mod grpc;
pub mod http;
pub mod ops;
pub mod seed;
pub mod store;

use platform::http::Readiness;
use platform::outbox::{self, Relay, RelaySettings};
use platform::service::{Context, Service};

pub use config::Config;

/// The service's name in logs, metrics and the topology.
pub const NAME: &str = "catalog";

/// Connects to the database, migrates it, loads the demo data if configured, and returns
/// the service: REST, gRPC and health on one router, and the outbox relay that
/// publishes its events.
pub async fn build(config: &Config, context: &Context) -> anyhow::Result<Service> {
    let db = context
        .database(NAME, config.database_url.as_ref(), config.max_connections)
        .await?;
    let migrator = match db.engine() {
        platform::config::Engine::Sqlite => sqlx::migrate!("./migrations/sqlite"),
        platform::config::Engine::Postgres => sqlx::migrate!("./migrations/postgres"),
    };
    db.migrate(migrator).await?;
    outbox::migrate(&db).await?;
    let relay = Relay::new(
        NAME,
        db.clone(),
        context.bus.clone(),
        RelaySettings::default(),
    );
    let catalog = ops::Catalog::new(db.clone(), relay.waker());
    if config.seed_demo_data {
        seed::apply_demo(&catalog).await?;
    }
    let grpc = grpc::service(catalog.store.clone());
    let routes = platform::grpc::mount(http::router(catalog), grpc)
        .layer(axum::Extension(context.verifier.clone()));
    let readiness = Readiness::new().with_database(db);
    Ok(Service {
        router: context.app(NAME, routes, readiness),
        workers: vec![Box::pin(relay.run(context.shutdown.clone()))],
    })
}
