//! Identity: accounts, credentials, tokens and the keys that sign them.
//!
//! It owns users (email and an Argon2id password hash; an account is usable once the
//! link mailed to its address confirmed it, and registering answers alike whether an
//! address had an account or not), refresh tokens (stored only as
//! hashes, rotated on every use, a reused one revoking its whole family) and Ed25519
//! signing keys (made on first start, rotated by age or on demand, and published in
//! the JWKS until every token they signed has expired). Access tokens are short-lived
//! EdDSA JWTs that every service verifies itself against the JWKS.
//!
//! It does not own what users may do beyond their roles: each service decides that
//! for its own resources.
//!
//! - [`domain`]: emails, the password policy, roles; pure.
//! - [`password`]: Argon2id hashing on a bounded set of threads.
//! - [`tokens`]: refresh token making and hashing.
//! - [`throttle`]: brute-force limits per account and per address.
//! - [`sealing`]: signing keys encrypted at rest with a configured secret.
//! - [`store`]: the SQL.
//! - [`ops`]: the use cases.
//! - [`http`]: the REST handlers, JWKS and OpenID discovery.

pub mod config;
pub mod domain;
pub mod http;
pub mod ops;
pub mod password;
pub mod sealing;
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

/// Connects to the database, migrates it, and returns the service: its routes, the
/// outbox relay that publishes `identity.registration_requested.v1` and
/// `identity.user_registered.v1`, and the sweep that deletes unconfirmed accounts whose
/// link expired.
pub async fn build(
    config: &Config,
    auth: &AuthConfig,
    context: &Context,
) -> anyhow::Result<Service> {
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
    let seal = sealing::KeySeal::new(config.signing_key_secret.as_ref());
    let identity = Arc::new(Identity::new(
        store::Store::new(db.clone(), relay.waker()).with_seal(seal),
        config.clone(),
        auth.issuer.clone(),
    )?);
    let sealed = identity.store.seal_plain_keys().await?;
    if sealed > 0 {
        tracing::info!(sealed, "signing keys stored plain are sealed now");
    }
    ops::signing_key(&identity).await?;
    // Identity verifies its own tokens from its own tables, not over the network.
    let verifier = Verifier::new(auth.settings(), OwnKeys(identity.clone()));
    let readiness = Readiness::new().with_database(db);
    let sweep = platform::service::every(
        "deleting unconfirmed accounts whose link expired",
        std::time::Duration::from_secs(config.unconfirmed_sweep_secs.max(1)),
        context.shutdown.clone(),
        Waker::none(),
        {
            let identity = identity.clone();
            move || {
                let identity = identity.clone();
                async move { ops::forget_unconfirmed(&identity).await }
            }
        },
    );
    let routes = http::router(identity).layer(axum::Extension(verifier));
    Ok(Service {
        router: context.app(NAME, routes, readiness),
        workers: vec![
            Box::pin(relay.run(context.shutdown.clone())),
            Box::pin(sweep),
        ],
    })
}

/// The use-case context over a migrated database, for the `bazaar admin` command. Its
/// events wait in the outbox until the service's relay publishes them.
pub async fn context(config: &Config, auth: &AuthConfig) -> anyhow::Result<Identity> {
    let db = open(config).await?;
    Identity::new(
        store::Store::new(db, Waker::none())
            .with_seal(sealing::KeySeal::new(config.signing_key_secret.as_ref())),
        config.clone(),
        auth.issuer.clone(),
    )
}

async fn open(config: &Config) -> anyhow::Result<Database> {
    let db = Database::open(NAME, config.database_url.as_ref(), config.max_connections).await?;
    migrated(db).await
}

/// `db` with identity's migrations and the outbox's applied.
async fn migrated(db: Database) -> anyhow::Result<Database> {
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
