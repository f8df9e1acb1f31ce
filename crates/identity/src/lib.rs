//! Identity: accounts, credentials, tokens and the keys that sign them.
//!
//! It owns users (email and an Argon2id password hash), refresh tokens (stored only as
//! hashes, rotated on every use, a reused one revoking its whole family) and Ed25519
//! signing keys (made on first start, rotated by age or on demand, and published in
//! the JWKS until every token they signed has expired). Access tokens are short-lived
//! EdDSA JWTs that every service verifies itself against the JWKS.
//!
//! It does not own what users may do beyond their roles: each service decides that
//! for its own resources.
//!
//! - [`domain`]: emails, the password policy, roles; pure.
//! - [`password`]: Argon2id hashing on the blocking pool.
//! - [`tokens`]: refresh token making and hashing.
//! - [`throttle`]: brute-force limits per account and per address.
//! - [`store`]: the SQL.
//! - [`ops`]: the use cases.
//! - [`http`]: the REST handlers, JWKS and OpenID discovery.

pub mod config;
pub mod domain;
pub mod http;
pub mod ops;
pub mod password;
pub mod store;
pub mod throttle;
pub mod tokens;

use std::sync::Arc;

use futures_util::future::BoxFuture;
use jsonwebtoken::jwk::JwkSet;
use platform::auth::{AuthConfig, KeySource, Verifier};
use platform::db::Database;
use platform::http::Readiness;
use platform::outbox::{self, Relay, RelaySettings, Waker};
use platform::service::{Context, Service};

pub use config::Config;
pub use ops::Identity;

/// The service's name in logs, metrics and the topology.
pub const NAME: &str = "identity";

/// Connects to the database, migrates it, and returns the service: its routes, and
/// the outbox relay that publishes `identity.user_registered.v1`.
pub async fn build(
    config: &Config,
    auth: &AuthConfig,
    context: &Context,
) -> anyhow::Result<Service> {
    let db = open(config).await?;
    let relay = Relay::new(
        NAME,
        db.clone(),
        context.bus.clone(),
        RelaySettings::default(),
    );
    let identity = Arc::new(Identity::new(
        store::Store::new(db.clone(), relay.waker()),
        config.clone(),
        auth.issuer.clone(),
    ));
    ops::signing_key(&identity).await?;
    // Identity verifies its own tokens from its own tables, not over the network.
    let verifier = Verifier::new(auth.settings(), OwnKeys(identity.clone()));
    let readiness = Readiness::new().with_database(db);
    let routes = http::router(identity).layer(axum::Extension(verifier));
    Ok(Service {
        router: platform::http::app(NAME, routes, readiness),
        workers: vec![Box::pin(relay.run(context.shutdown.clone()))],
    })
}

/// The use-case context over a migrated database, for the `bazaar admin` command. Its
/// events wait in the outbox until the service's relay publishes them.
pub async fn context(config: &Config, auth: &AuthConfig) -> anyhow::Result<Identity> {
    let db = open(config).await?;
    Ok(Identity::new(
        store::Store::new(db, Waker::none()),
        config.clone(),
        auth.issuer.clone(),
    ))
}

async fn open(config: &Config) -> anyhow::Result<Database> {
    let db = Database::open(NAME, config.database_url.as_ref(), config.max_connections).await?;
    db.migrate(sqlx::migrate!("./migrations")).await?;
    outbox::migrate(&db).await?;
    Ok(db)
}

/// The published keys, read from identity's own store.
struct OwnKeys(Arc<Identity>);

impl KeySource for OwnKeys {
    fn fetch(&self) -> BoxFuture<'_, anyhow::Result<JwkSet>> {
        Box::pin(ops::jwks(&self.0))
    }
}
