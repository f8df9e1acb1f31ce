//! Notifications: the emails Bazaar writes to its customers.
//!
//! It writes to the address of every registration (a link that confirms a new account,
//! or word that the address has one already, so that registering tells only the
//! address's owner which), learns customers' addresses and greets them; it
//! hears from the orders service when an order is confirmed, cancelled or refunded and
//! writes to its customer. Each event becomes at most one notification (even when the
//! bus delivers it twice, or two events announce the same confirmation), rendered when
//! it arrives and kept with its status, so a customer can read in the API what was
//! mailed. A sender hands pending emails to the mailer, retrying with backoff while the
//! mail system fails, and leaves an order's email waiting until its customer's address
//! is known.
//!
//! It does not own customers' accounts (identity) or orders (the orders service), and
//! it publishes nothing.
//!
//! - [`config`]: its settings, with the mailer to use.
//! - [`domain`]: kinds, statuses, ids, page cursors; pure.
//! - [`templates`]: subjects and bodies; pure.
//! - [`store`]: the SQL.
//! - [`events`]: the inbox handlers that turn events into notifications.
//! - [`mailer`]: composing messages, and the mailbox and SMTP adapters.
//! - [`sender`]: the worker that sends due emails, and its step, `send_due`.
//! - [`http`]: a customer's own notifications.
//! - [`audit`]: confirmation emails per order, for the shop's audit.

pub mod audit;
pub mod config;
pub mod domain;
pub mod events;
pub mod http;
pub mod mailer;
pub mod sender;
pub mod store;
pub mod templates;

use std::sync::Arc;

use futures_util::future::BoxFuture;
use platform::db::Database;
use platform::http::Readiness;
use platform::outbox;
use platform::service::{Context, Service};

pub use config::{Config, MailerConfig, RetryConfig};
pub use sender::{Sender, SenderSettings};

/// The service's name in logs, metrics and the topology.
pub const NAME: &str = "notifications";

/// Connects, migrates, subscribes, and returns the service: its routes, and its
/// workers (two consumers and the sender).
///
/// A mailbox mailer needs its folder set (the shop sets it with
/// [`Config::resolve_in`]); a missing one is a configuration error naming the key.
pub async fn build(config: &Config, context: &Context) -> anyhow::Result<Service> {
    // Settings first, so a configuration mistake is reported before anything connects.
    let settings = SenderSettings::from_config(config)?;
    let mailer = mailer::from_config(&config.mailer)?;
    let mailer = Arc::new(mailer::faulty::FaultyMailer::new(
        mailer,
        context.flags.clone(),
    ));
    let db = context
        .database(NAME, config.database_url.as_ref(), config.max_connections)
        .await?;
    let db = migrated(db).await?;
    let sender = Sender::new(db.clone(), mailer, settings);
    let shop_url = config
        .shop_url
        .as_deref()
        .unwrap_or(events::DEFAULT_SHOP_URL);
    let consumers =
        events::consumers(&db, context.bus.clone(), events::Events::new(shop_url)).await?;
    let routes = http::router(db.clone()).layer(axum::Extension(context.verifier.clone()));
    let mut workers: Vec<BoxFuture<'static, ()>> =
        vec![Box::pin(sender.run(context.shutdown.clone()))];
    for consumer in consumers {
        workers.push(Box::pin(consumer.run(context.shutdown.clone())));
    }
    Ok(Service {
        router: context.app(NAME, routes, Readiness::new().with_database(db)),
        workers,
    })
}

/// Opens notifications' database and brings its schema (and the inbox's) up to date.
pub async fn open_database(config: &Config) -> anyhow::Result<Database> {
    let db = Database::open(NAME, config.database_url.as_ref(), config.max_connections).await?;
    migrated(db).await
}

/// `db` with notifications' migrations and the inbox's applied.
async fn migrated(db: Database) -> anyhow::Result<Database> {
    db.migrate(sqlx::migrate!("./migrations")).await?;
    // The chassis' messaging tables: the inbox is what makes consuming effectively once.
    outbox::migrate(&db).await?;
    Ok(db)
}

/// A sender over `db` with the mailer and settings of `config`: what the worker runs,
/// and what operators and tests drive one round at a time with
/// [`Sender::send_due`].
pub fn new_sender(config: &Config, db: Database) -> anyhow::Result<Sender> {
    let settings = SenderSettings::from_config(config)?;
    let mailer = mailer::from_config(&config.mailer)?;
    Ok(Sender::new(db, mailer, settings))
}
