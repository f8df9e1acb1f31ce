//! Identity's use cases, as plain functions over an [`Identity`] context; called by the
//! REST handlers and by the `bazaar admin` command.

use std::net::IpAddr;
use std::time::Duration;

use contracts::identity::{AUDIENCE, AccessClaims, Role, TokenResponse};
use jsonwebtoken::jwk::JwkSet;
use platform::auth::{AuthUser, SigningKey};

use platform::clock::now_secs as now;

use crate::config::Config;
use crate::domain::{Email, PasswordPolicy};
use crate::password;
use crate::store::{RefreshRecord, Store, UserRecord};
use crate::throttle::Throttle;
use crate::tokens::{new_refresh_token, refresh_token_hash};

/// Everything the use cases need, built once at start.
pub struct Identity {
    /// The tables.
    pub store: Store,
    /// Settings.
    pub config: Config,
    /// The `iss` of the tokens issued.
    pub issuer: String,
    /// Password rules.
    pub policy: PasswordPolicy,
    /// Sign-in throttling.
    pub throttle: Throttle,
}

/// A field of a request that failed to parse, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invalid {
    /// The JSON field.
    pub field: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

/// Why a use case refused.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Some fields are invalid.
    #[error("invalid request")]
    Invalid(Vec<Invalid>),
    /// Another account has this email.
    #[error("an account with this email already exists")]
    EmailTaken,
    /// The credentials or refresh token do not grant a token.
    #[error("{0}")]
    InvalidGrant(&'static str),
    /// Too many attempts; retry after the duration.
    #[error("too many attempts")]
    Throttled(Duration),
    /// No such resource, or not the caller's.
    #[error("not found")]
    NotFound,
    /// Something failed inside.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// What a failed sign-in says, whether the email is unknown or the password wrong.
const BAD_CREDENTIALS: &str = "the email or password is wrong";
/// What a refused refresh says, whatever the reason.
const BAD_REFRESH: &str = "the refresh token is invalid, expired or revoked";

impl Identity {
    /// The context over `store`.
    pub fn new(store: Store, config: Config, issuer: String) -> Self {
        Self {
            policy: PasswordPolicy {
                min_chars: config.password_min_chars,
                max_chars: config.password_max_chars,
            },
            throttle: Throttle::new(&config),
            store,
            config,
            issuer,
        }
    }
}

fn invalid(field: &'static str, reason: impl Into<String>) -> Error {
    Error::Invalid(vec![Invalid {
        field,
        reason: reason.into(),
    }])
}

/// Creates an account with `roles`, after the password policy: what registration and
/// the admin command share.
pub async fn create_user(
    identity: &Identity,
    email: &str,
    password: &str,
    roles: Vec<Role>,
) -> Result<UserRecord, Error> {
    let email = Email::parse(email).map_err(|reason| invalid("email", reason))?;
    identity
        .policy
        .check(password, &email)
        .map_err(|reason| invalid("password", reason))?;
    let user = UserRecord {
        id: uuid::Uuid::now_v7().to_string(),
        email: email.as_str().to_owned(),
        password_hash: password::hash(password.to_owned()).await?,
        roles,
        created_at: now(),
    };
    identity
        .store
        .insert_user(&user)
        .await?
        .map_err(|_| Error::EmailTaken)?;
    tracing::info!(user = user.id, "account created");
    Ok(user)
}

/// Self-service registration: a customer account.
pub async fn register(
    identity: &Identity,
    email: &str,
    password: &str,
    address: IpAddr,
) -> Result<UserRecord, Error> {
    identity
        .throttle
        .attempt(address)
        .map_err(Error::Throttled)?;
    create_user(identity, email, password, vec![Role::Customer]).await
}

/// Signs in with email and password: a new access token and a new refresh token family.
pub async fn login(
    identity: &Identity,
    email: &str,
    password: &str,
    address: IpAddr,
) -> Result<TokenResponse, Error> {
    let email = Email::parse(email).map_err(|reason| invalid("email", reason))?;
    identity
        .throttle
        .attempt(address)
        .map_err(Error::Throttled)?;
    identity
        .throttle
        .account_open(email.as_str(), address)
        .map_err(Error::Throttled)?;
    let user = identity.store.user_by_email(&email).await?;
    // An unknown email costs one hash verification too, so timing does not tell it apart.
    let hash = user.as_ref().map_or_else(
        || password::DUMMY_HASH.to_owned(),
        |user| user.password_hash.clone(),
    );
    let matches = password::verify(password.to_owned(), hash).await?;
    let Some(user) = user.filter(|_| matches) else {
        identity.throttle.failed(email.as_str(), address);
        return Err(Error::InvalidGrant(BAD_CREDENTIALS));
    };
    let family = uuid::Uuid::now_v7().to_string();
    let (refresh_token, record) = refresh_record(identity, &user.id, family)?;
    identity.store.insert_refresh(&record).await?;
    issue(identity, &user, refresh_token).await
}

/// Exchanges a refresh token for new tokens. A token that was already exchanged is
/// evidence of theft: its whole family is revoked, so neither the thief nor the owner
/// can continue, and the owner signs in again.
pub async fn refresh(
    identity: &Identity,
    token: &str,
    address: IpAddr,
) -> Result<TokenResponse, Error> {
    identity
        .throttle
        .attempt(address)
        .map_err(Error::Throttled)?;
    let now = now();
    let Some(record) = identity
        .store
        .refresh_by_hash(&refresh_token_hash(token))
        .await?
    else {
        return Err(Error::InvalidGrant(BAD_REFRESH));
    };
    if record.revoked_at.is_some() || record.expires_at <= now {
        return Err(Error::InvalidGrant(BAD_REFRESH));
    }
    if record.used_at.is_some() {
        tracing::warn!(
            family = record.family_id,
            user = record.user_id,
            "refresh token reused; revoking its family"
        );
        identity.store.revoke_family(&record.family_id, now).await?;
        return Err(Error::InvalidGrant(BAD_REFRESH));
    }
    let Some(user) = identity.store.user_by_id(&record.user_id).await? else {
        return Err(Error::InvalidGrant(BAD_REFRESH));
    };
    let (refresh_token, next) = refresh_record(identity, &user.id, record.family_id.clone())?;
    if !identity
        .store
        .rotate_refresh(&record.id, &next, now)
        .await?
    {
        // Exchanged concurrently: the same token was presented twice.
        identity.store.revoke_family(&record.family_id, now).await?;
        return Err(Error::InvalidGrant(BAD_REFRESH));
    }
    issue(identity, &user, refresh_token).await
}

/// Signs out: revokes the refresh token's family. Unknown tokens are ignored, so the
/// answer tells nothing.
pub async fn logout(identity: &Identity, token: &str) -> Result<(), Error> {
    if let Some(record) = identity
        .store
        .refresh_by_hash(&refresh_token_hash(token))
        .await?
    {
        identity
            .store
            .revoke_family(&record.family_id, now())
            .await?;
    }
    Ok(())
}

/// Changes the caller's password, which signs out every other session.
pub async fn change_password(
    identity: &Identity,
    user_id: &str,
    current: &str,
    new: &str,
    address: IpAddr,
) -> Result<(), Error> {
    let user = identity
        .store
        .user_by_id(user_id)
        .await?
        .ok_or(Error::NotFound)?;
    // A stolen access token must not become a password oracle.
    identity
        .throttle
        .attempt(address)
        .map_err(Error::Throttled)?;
    identity
        .throttle
        .account_open(&user.email, address)
        .map_err(Error::Throttled)?;
    if !password::verify(current.to_owned(), user.password_hash.clone()).await? {
        identity.throttle.failed(&user.email, address);
        return Err(invalid("current_password", "does not match your password"));
    }
    let email =
        Email::parse(&user.email).map_err(|reason| anyhow::anyhow!("stored email: {reason}"))?;
    identity
        .policy
        .check(new, &email)
        .map_err(|reason| invalid("new_password", reason))?;
    let hash = password::hash(new.to_owned()).await?;
    identity
        .store
        .change_password(&user.id, &hash, now())
        .await?;
    Ok(())
}

/// A user as `viewer` may see it: their own account, or any account for an admin.
/// Anyone else's is "not found", never "forbidden", so ids cannot be probed.
pub async fn user(identity: &Identity, viewer: &AuthUser, id: &str) -> Result<UserRecord, Error> {
    if viewer.id != id && !viewer.is_admin() {
        return Err(Error::NotFound);
    }
    identity.store.user_by_id(id).await?.ok_or(Error::NotFound)
}

/// The public keys whose tokens may still be valid.
pub async fn jwks(identity: &Identity) -> anyhow::Result<JwkSet> {
    // A key retired now may have signed a token a moment ago: keep it published for
    // a token's lifetime, plus a minute of clock skew.
    let lifetime = i64::try_from(identity.config.access_token_ttl_secs).unwrap_or(i64::MAX);
    let retired_after = now().saturating_sub(lifetime.saturating_add(60));
    let keys = identity.store.published_keys(retired_after).await?;
    let keys = keys
        .iter()
        .map(|stored| stored.key.public_jwk())
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(JwkSet { keys })
}

/// Replaces the signing key now; the old one stays published until its tokens expire.
pub async fn rotate_signing_key(identity: &Identity) -> anyhow::Result<SigningKey> {
    let key = SigningKey::generate(uuid::Uuid::now_v7().simple().to_string())?;
    identity.store.rotate_key(&key, now()).await?;
    tracing::info!(kid = key.kid(), "signing key rotated");
    Ok(key)
}

/// The key to sign with: the active one, or a new one if there is none or it is older
/// than `signing_key_max_age_secs`. Read per issuance, so replicas agree on the key;
/// called at start too, so the JWKS is never empty.
pub async fn signing_key(identity: &Identity) -> anyhow::Result<SigningKey> {
    let max_age = i64::try_from(identity.config.signing_key_max_age_secs).unwrap_or(i64::MAX);
    match identity.store.active_key().await? {
        Some(stored) if now().saturating_sub(stored.created_at) < max_age => Ok(stored.key),
        _ => rotate_signing_key(identity).await,
    }
}

fn refresh_record(
    identity: &Identity,
    user_id: &str,
    family_id: String,
) -> anyhow::Result<(String, RefreshRecord)> {
    let token = new_refresh_token()?;
    let now = now();
    let ttl = i64::try_from(identity.config.refresh_token_ttl_secs).unwrap_or(i64::MAX);
    let record = RefreshRecord {
        id: uuid::Uuid::now_v7().to_string(),
        token_hash: refresh_token_hash(&token),
        family_id,
        user_id: user_id.to_owned(),
        created_at: now,
        expires_at: now.saturating_add(ttl),
        used_at: None,
        revoked_at: None,
    };
    Ok((token, record))
}

async fn issue(
    identity: &Identity,
    user: &UserRecord,
    refresh_token: String,
) -> Result<TokenResponse, Error> {
    let key = signing_key(identity).await?;
    let now = u64::try_from(now()).unwrap_or_default();
    let ttl = identity.config.access_token_ttl_secs;
    let claims = AccessClaims {
        iss: identity.issuer.clone(),
        sub: user.id.clone(),
        aud: AUDIENCE.to_owned(),
        exp: now.saturating_add(ttl),
        nbf: now,
        iat: now,
        jti: uuid::Uuid::now_v7().to_string(),
        roles: user.roles.clone(),
    };
    Ok(TokenResponse {
        access_token: key.sign(&claims)?,
        token_type: "Bearer".to_owned(),
        expires_in: ttl,
        refresh_token,
    })
}
