//! Orders: the checkout saga, event-sourced orders, and their read model.
//!
//! Placing an order reads the customer's priced cart (cart, gRPC) and checks the
//! payment method (payments, gRPC), then records `placed` and answers `202`. From there
//! the saga ([`saga`]) orchestrates inventory and payments over the bus: reserve stock,
//! authorize (fraud rules first, maybe held for an admin's review), commit the stock,
//! capture the payment; or release and void on the way to a cancellation. Every step
//! has a deadline that re-sends its command.
//!
//! An order's events are the source of truth ([`store`]): its state is their fold
//! ([`domain`]). A separate read model ([`projection`]) answers "my orders" and "order N
//! with its timeline" (CQRS).
//!
//! - [`domain`]: statuses, events, the fold; pure.
//! - [`saga`]: what an order does next; pure.
//! - [`store`]: the event store, idempotency keys, deadlines.
//! - [`projection`]: the read model.
//! - [`ops`]: the use cases, each one transaction.
//! - [`events`]: the participants' answers, through the inbox.
//! - [`lookups`]: the gRPC calls made when an order is placed.
//! - [`http`]: the REST API.
//! - [`audit`]: what the shop's audit reads.

pub mod audit;
pub mod config;
pub mod domain;
pub mod events;
pub mod http;
pub mod lookups;
pub mod ops;
pub mod projection;
pub mod saga;
pub mod store;

use std::sync::Arc;
use std::time::Duration;

use platform::clock::now_ms;
use platform::http::Readiness;
use platform::inbox::Consumer;
use platform::outbox::{self, Relay, RelaySettings};
use platform::service::{Context, Service};

pub use config::Config;

/// The service's name in logs, metrics and the topology.
pub const NAME: &str = "orders";

impl Config {
    /// The use cases' settings.
    pub fn settings(&self) -> ops::Settings {
        ops::Settings {
            deadlines: self.deadlines.clone(),
            reservation_hold_secs: self.reservation_hold_secs,
        }
    }
}

/// Connects, migrates, subscribes, and returns the service: its routes, and its
/// workers (the outbox relay, two consumers, the deadline sweep).
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
    let settings = config.settings();
    let mut workers: Vec<futures_util::future::BoxFuture<'static, ()>> = Vec::new();
    for spec in [events::inventory_events(), events::payment_events()] {
        let answers = Arc::new(events::Answers {
            settings: settings.clone(),
        });
        let consumer = Consumer::new(db.clone(), context.bus.clone(), &spec, answers)
            .await?
            .waking(relay.waker());
        workers.push(Box::pin(consumer.run(context.shutdown.clone())));
    }
    let deadline = Duration::from_millis(config.call_timeout_ms);
    let state = http::Orders {
        db: db.clone(),
        lookups: lookups::Lookups::new(&config.cart_url, &config.payments_url, deadline)?,
        settings: settings.clone(),
        relay: relay.waker(),
        max_lines: config.max_lines,
    };
    workers.push(Box::pin(platform::service::every(
        "running saga steps past their deadline",
        Duration::from_millis(config.deadline_check_ms),
        context.shutdown.clone(),
        relay.waker(),
        {
            let db = db.clone();
            move || {
                let (db, settings) = (db.clone(), settings.clone());
                async move { ops::run_due(&db, &settings, now_ms()).await }
            }
        },
    )));
    workers.push(Box::pin(relay.run(context.shutdown.clone())));
    let routes = http::router(state).layer(axum::Extension(context.verifier.clone()));
    Ok(Service {
        router: context.app(NAME, routes, Readiness::new().with_database(db)),
        workers,
    })
}
