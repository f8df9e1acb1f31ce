//! Inventory: stock levels and reservations.
//!
//! It owns how many units of each product were received, are held for unpaid orders,
//! and were sold; what can be reserved is the difference, which database checks keep
//! from ever going negative. The checkout saga sends it commands over the bus (reserve,
//! release, commit); it answers with events, holding all of an order's lines or none,
//! and releases holds that run out. It learns of products from the catalog's events.
//!
//! It does not own prices or product data (the catalog) or orders.
//!
//! - [`domain`]: reservation lines and states; pure.
//! - [`store`]: the SQL; state changes run on the caller's transaction.
//! - [`ops`]: the use cases: reserve, release, commit, expire.
//! - [`events`]: the inbox handlers for commands and catalog events.
//! - [`http`]: availability and admin stock management.
//! - [`grpc`]: availability for other services, in one call.
//! - [`audit`]: what the shop's audit reads.

pub mod audit;
pub mod config;
pub mod domain;
pub mod events;
pub mod grpc;
pub mod http;
pub mod ops;
pub mod store;

use std::sync::Arc;
use std::time::Duration;

use platform::clock::now_ms;
use platform::db::Database;
use platform::http::Readiness;
use platform::inbox::Consumer;
use platform::outbox::{self, Relay, RelaySettings};
use platform::service::{Context, Service};

pub use config::Config;

/// The service's name in logs, metrics and the topology.
pub const NAME: &str = "inventory";

/// Connects, migrates, subscribes, and returns the service: its routes, and its
/// workers (two consumers, the outbox relay, the expiry sweep).
pub async fn build(config: &Config, context: &Context) -> anyhow::Result<Service> {
    let db = context
        .database(NAME, config.database_url.as_ref(), config.max_connections)
        .await?;
    db.migrate(sqlx::migrate!("./migrations")).await?;
    outbox::migrate(&db).await?;
    let relay = Relay::new(
        NAME,
        db.clone(),
        context.bus.clone(),
        RelaySettings::default(),
    );
    let commands = Consumer::new(
        db.clone(),
        context.bus.clone(),
        &events::commands(),
        Arc::new(events::Commands),
    )
    .await?
    .waking(relay.waker());
    let catalog = events::CatalogEvents {
        initial_stock: config.initial_stock,
    };
    let catalog = Consumer::new(
        db.clone(),
        context.bus.clone(),
        &events::catalog_events(),
        Arc::new(catalog),
    )
    .await?;
    let sweep = platform::service::every(
        "releasing expired reservations",
        Duration::from_millis(config.expiry_check_ms),
        context.shutdown.clone(),
        relay.waker(),
        {
            let db = db.clone();
            move || {
                let db = db.clone();
                async move { expire_due(&db, now_ms()).await }
            }
        },
    );
    let routes = platform::grpc::mount(http::router(db.clone()), grpc::service(db.clone()))
        .layer(axum::Extension(context.verifier.clone()));
    Ok(Service {
        router: context.app(NAME, routes, Readiness::new().with_database(db)),
        workers: vec![
            Box::pin(relay.run(context.shutdown.clone())),
            Box::pin(commands.run(context.shutdown.clone())),
            Box::pin(catalog.run(context.shutdown.clone())),
            Box::pin(sweep),
        ],
    })
}

/// Releases every held reservation whose hold ran out by `now`, each in its own
/// transaction with its `StockReleased` event. Returns how many; the sweep's step.
pub async fn expire_due(db: &Database, now: i64) -> anyhow::Result<usize> {
    let mut expired = 0;
    for order_id in store::due(db.pool(), now, 100).await? {
        let mut tx = db.begin().await?;
        if ops::expire(&mut tx, order_id, now).await? {
            expired += 1;
        }
        tx.commit().await?;
    }
    Ok(expired)
}
