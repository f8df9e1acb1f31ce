//! Payments: customers' payment methods, each order's payment, and the ledger.
//!
//! Customers save cards over REST; the card goes to the processor's vault and payments
//! keeps only a token of its own, the brand, the last four digits and the expiry. The
//! checkout saga sends commands over the bus (authorize, review, capture, void, refund),
//! one payment per order; payments runs the fraud rules before anything reaches the
//! card, asks the processor outside any transaction, and records each outcome with its
//! ledger entries and its answer in one transaction. Identity's registrations tell the
//! fraud rules how old an account is.
//!
//! It does not own orders or their totals (orders), nor customers' accounts (identity).
//!
//! - [`config`]: its configuration, with the fraud rules and the simulator's settings.
//! - [`cards`]: card details as typed, checked; the simulator's test card numbers.
//! - [`processor`]: the card processor trait and the simulator that implements it.
//! - [`fraud`]: the fraud rules; pure.
//! - [`domain`]: a payment and its states, a saved card.
//! - [`ledger`]: the append-only double-entry ledger.
//! - [`store`]: the SQL of payments, methods and customers.
//! - [`ops`]: the use cases; [`ops::decide`] is the saga commands' decision table, and
//!   [`ops::lifecycle`] carries it out in two phases.
//! - [`commands`]: the two-phase consumer of the saga's commands.
//! - [`events`]: the consumer of identity's registrations.
//! - [`http`]: payment methods, payments and balances over REST.
//! - [`grpc`]: whether a payment method may be used, for orders.
//! - [`audit`]: the ledger summed, for the shop's audit.

pub mod audit;
pub mod cards;
pub mod commands;
pub mod config;
pub mod domain;
pub mod events;
pub mod fraud;
pub mod grpc;
pub mod http;
pub mod ledger;
pub mod ops;
pub mod processor;
pub mod store;

use std::sync::Arc;

use platform::db::Database;
use platform::http::Readiness;
use platform::inbox::Consumer;
use platform::outbox::{self, Relay, RelaySettings};
use platform::service::{Context, Service};

pub use config::Config;
pub use processor::{CardProcessor, Simulator};

/// The service's name in logs, metrics and the topology.
pub const NAME: &str = "payments";

/// How many consumers compete for the saga's commands, so that a slow card holds up
/// one payment, not all of them.
pub const COMMAND_CONSUMERS: usize = 4;

/// Connects, migrates, subscribes, and returns the service with the simulated card
/// processor: its routes, and its workers (the command consumers, the registrations
/// consumer, the outbox relay).
pub async fn build(config: &Config, context: &Context) -> anyhow::Result<Service> {
    let processor = Arc::new(Simulator::new(config.processor.clone()));
    build_with(config, context, processor).await
}

/// [`build`] with another card processor: a real provider's adapter, or a test's.
pub async fn build_with(
    config: &Config,
    context: &Context,
    processor: Arc<dyn CardProcessor>,
) -> anyhow::Result<Service> {
    config.fraud.check().map_err(anyhow::Error::msg)?;
    let db = context
        .database(NAME, config.database_url.as_ref(), config.max_connections)
        .await?;
    let db = migrated(db).await?;
    let relay = Relay::new(
        NAME,
        db.clone(),
        context.bus.clone(),
        RelaySettings::default(),
    );
    let processor = Arc::new(processor::Faulty::new(processor, context.flags.clone()));
    let payments = ops::Payments {
        db: db.clone(),
        processor,
        rules: config.fraud.clone(),
    };
    let commands =
        commands::consumers(&payments, &context.bus, &relay.waker(), COMMAND_CONSUMERS).await?;
    let registrations = Consumer::new(
        db.clone(),
        context.bus.clone(),
        &events::registrations(),
        Arc::new(events::Registrations),
    )
    .await?;
    let routes = platform::grpc::mount(http::router(payments.clone()), grpc::service(payments))
        .layer(axum::Extension(context.verifier.clone()));
    let mut workers: Vec<futures_util::future::BoxFuture<'static, ()>> = vec![
        Box::pin(relay.run(context.shutdown.clone())),
        Box::pin(registrations.run(context.shutdown.clone())),
    ];
    for consumer in commands {
        workers.push(Box::pin(consumer.run(context.shutdown.clone())));
    }
    Ok(Service {
        router: context.app(NAME, routes, Readiness::new().with_database(db)),
        workers,
    })
}

/// Opens and migrates payments' database: what `build` uses, and what an operator's
/// command (such as the audit) opens to read it.
pub async fn open(config: &Config) -> anyhow::Result<Database> {
    let db = Database::open(NAME, config.database_url.as_ref(), config.max_connections).await?;
    migrated(db).await
}

/// `db` with payments' migrations and the outbox's applied.
async fn migrated(db: Database) -> anyhow::Result<Database> {
    let migrator = match db.engine() {
        platform::config::Engine::Sqlite => sqlx::migrate!("./migrations/sqlite"),
        platform::config::Engine::Postgres => sqlx::migrate!("./migrations/postgres"),
    };
    db.migrate(migrator).await?;
    outbox::migrate(&db).await?;
    Ok(db)
}
