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

use axum::Router;
use futures_util::future::BoxFuture;
use jsonwebtoken::jwk::JwkSet;
use platform::auth::{AuthConfig, KeySource, Verifier};
use platform::db::Database;
use platform::http::Readiness;

pub use config::Config;
pub use ops::Identity;

/// The service's name in logs, metrics and the topology.
pub const NAME: &str = "identity";

/// Connects to the database, migrates it, and returns the app to serve.
pub async fn build(config: &Config, auth: &AuthConfig) -> anyhow::Result<Router> {
    let identity = Arc::new(context(config, auth).await?);
    ops::signing_key(&identity).await?;
    // Identity verifies its own tokens from its own tables, not over the network.
    let verifier = Verifier::new(auth.settings(), OwnKeys(identity.clone()));
    let readiness = Readiness::new().with_database(identity.store.database().clone());
    let routes = http::router(identity).layer(axum::Extension(verifier));
    Ok(platform::http::app(NAME, routes, readiness))
}

/// The use-case context over a migrated database: what `build` serves and what the
/// `bazaar admin` command calls.
pub async fn context(config: &Config, auth: &AuthConfig) -> anyhow::Result<Identity> {
    let db = Database::open(NAME, config.database_url.as_ref(), config.max_connections).await?;
    db.migrate(sqlx::migrate!("./migrations")).await?;
    Ok(Identity::new(
        store::Store::new(db),
        config.clone(),
        auth.issuer.clone(),
    ))
}

/// The published keys, read from identity's own store.
struct OwnKeys(Arc<Identity>);

impl KeySource for OwnKeys {
    fn fetch(&self) -> BoxFuture<'_, anyhow::Result<JwkSet>> {
        Box::pin(ops::jwks(&self.0))
    }
}
