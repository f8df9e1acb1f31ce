//! Identity's use cases, as plain functions over an [`Identity`] context; called by the
//! REST handlers and by the `bazaar admin` command.

use std::net::IpAddr;
use std::time::Duration;

use contracts::UserId;
use contracts::identity::{AUDIENCE, AccessClaims, Role, TokenResponse};
use jsonwebtoken::jwk::JwkSet;
use platform::auth::{AuthUser, SigningKey};
use platform::problem::FieldError;

use platform::clock::now_secs as now;

use crate::config::Config;
use crate::domain::{Email, PasswordPolicy};
use crate::password::{self, Busy, HashError, Hasher};
use crate::store::{Pending, RefreshRecord, Renewal, Store, UserRecord};
use crate::throttle::Throttle;
use crate::tokens::{new_token, token_hash};

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
    /// Argon2id on a bounded set of threads.
    pub hasher: Hasher,
}

/// Why a use case refused.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Some fields are invalid.
    #[error("invalid request")]
    Invalid(Vec<FieldError>),
    /// Another account has this email.
    #[error("an account with this email already exists")]
    EmailTaken,
    /// The password is right, but the account's address is not confirmed yet.
    #[error(
        "this account's email address is not confirmed yet: follow the link in the email \
         we sent to it, or register again for a new link"
    )]
    Unconfirmed,
    /// The credentials or refresh token do not grant a token.
    #[error("{0}")]
    InvalidGrant(&'static str),
    /// Too many attempts; retry after the duration.
    #[error("too many attempts")]
    Throttled(Duration),
    /// No such resource, or not the caller's.
    #[error("not found")]
    NotFound,
    /// Password hashing is at capacity: nothing was done; retry in a moment.
    #[error(transparent)]
    Busy(#[from] Busy),
    /// Something failed inside.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// What a failed sign-in says, whether the email is unknown or the password wrong.
const BAD_CREDENTIALS: &str = "the email or password is wrong";
/// What a refused refresh says, whatever the reason.
const BAD_REFRESH: &str = "the refresh token is invalid, expired or revoked";
/// What a refused confirmation says, whatever the reason.
const BAD_CONFIRMATION: &str = "the confirmation link is invalid, used or expired, or the \
     password is not the one registered; register again for a new link";

impl Identity {
    /// The context over `store`; starts the password hashing threads.
    pub fn new(store: Store, config: Config, issuer: String) -> anyhow::Result<Self> {
        Ok(Self {
            policy: PasswordPolicy {
                min_chars: config.password_min_chars,
                max_chars: config.password_max_chars,
            },
            throttle: Throttle::new(&config),
            hasher: Hasher::new(config.hashing_limits())?,
            store,
            config,
            issuer,
        })
    }
}

impl From<HashError> for Error {
    fn from(error: HashError) -> Self {
        match error {
            HashError::Busy(busy) => Self::Busy(busy),
            HashError::Failed(error) => Self::Internal(error),
        }
    }
}

/// Counts an attempt from `address`, refusing it when the address is over its limit.
fn attempt(identity: &Identity, address: IpAddr) -> Result<(), Error> {
    identity.throttle.attempt(address).map_err(Error::Throttled)
}

fn invalid(field: &'static str, reason: impl Into<String>) -> Error {
    Error::Invalid(vec![FieldError::new(field, reason)])
}

/// The email parsed and the password checked against the policy, then hashed.
async fn credentials(
    identity: &Identity,
    email: &str,
    password: &str,
) -> Result<(Email, String), Error> {
    let email = Email::parse(email).map_err(|reason| invalid("email", reason))?;
    identity
        .policy
        .check(password, &email)
        .map_err(|reason| invalid("password", reason))?;
    let hash = identity.hasher.hash(password.to_owned()).await?;
    Ok((email, hash))
}

fn new_user(email: &Email, password_hash: String, roles: Vec<Role>) -> UserRecord {
    UserRecord {
        id: UserId::generate(),
        email: email.as_str().to_owned(),
        password_hash,
        roles,
        created_at: now(),
        confirmed_at: None,
    }
}

/// Creates a confirmed account with `roles`, after the password policy: what the admin
/// command does, for an address whose owner it knows.
pub async fn create_user(
    identity: &Identity,
    email: &str,
    password: &str,
    roles: Vec<Role>,
) -> Result<UserRecord, Error> {
    let (email, hash) = credentials(identity, email, password).await?;
    let mut user = new_user(&email, hash, roles);
    user.confirmed_at = Some(user.created_at);
    identity
        .store
        .insert_user(&user, None)
        .await?
        .map_err(|_| Error::EmailTaken)?;
    tracing::info!(user = %user.id, "account created");
    Ok(user)
}

/// Self-service registration of a customer account, answered alike whether the address
/// had an account or not: it writes to the address instead. A new address gets an
/// unconfirmed account and a link that confirms it; an unconfirmed account gets the new
/// password and a new link (whoever can read the address's mail owns it); a confirmed
/// one gets word that someone tried. The password is hashed in every case, so the time
/// taken tells nothing either. Returns the normalised address.
pub async fn register(
    identity: &Identity,
    email: &str,
    password: &str,
    address: IpAddr,
) -> Result<Email, Error> {
    attempt(identity, address)?;
    let (email, hash) = credentials(identity, email, password).await?;
    let pending = Pending {
        token: new_token()?,
        expires_at: now().saturating_add(
            i64::try_from(identity.config.confirmation_ttl_secs).unwrap_or(i64::MAX),
        ),
    };
    let now = now();
    let mailed_before = now
        .saturating_sub(i64::try_from(identity.config.registration_email_secs).unwrap_or(i64::MAX));
    // Two registrations of one new address may race: the loser finds the winner's
    // account the second time round.
    for _ in 0..3 {
        match identity.store.user_by_email(&email).await? {
            None => {
                let user = new_user(&email, hash.clone(), vec![Role::Customer]);
                if identity
                    .store
                    .insert_user(&user, Some(&pending))
                    .await?
                    .is_ok()
                {
                    tracing::info!(user = %user.id, "account created; waiting for confirmation");
                    return Ok(email);
                }
            }
            Some(user) if user.confirmed_at.is_none() => {
                let store = &identity.store;
                match store
                    .renew_pending(&user, &hash, &pending, now, mailed_before)
                    .await?
                {
                    Renewal::Renewed => {
                        tracing::info!(user = %user.id, "unconfirmed account registered again");
                        return Ok(email);
                    }
                    Renewal::TooSoon => {
                        tracing::info!(
                            user = %user.id,
                            "unconfirmed account registered again too soon; nothing sent"
                        );
                        return Ok(email);
                    }
                    Renewal::Moved => {}
                }
            }
            Some(user) => {
                let mailed = identity
                    .store
                    .tell_registered(&user, now, mailed_before)
                    .await?;
                tracing::info!(user = %user.id, mailed, "registration of a taken address");
                return Ok(email);
            }
        }
    }
    Err(anyhow::anyhow!("registering {} kept racing", email.as_str()).into())
}

/// Confirms a new account's address with the token mailed to it and the password it
/// was registered with, and signs in.
///
/// The password is asked for as well because the link alone would hand the account to
/// whoever registered the address: someone who registered another's address first, and
/// whose link its owner then follows, would know the password of the owner's account.
/// A wrong password counts against the account as at sign-in.
pub async fn confirm(
    identity: &Identity,
    token: &str,
    password: &str,
    address: IpAddr,
) -> Result<TokenResponse, Error> {
    attempt(identity, address)?;
    let hash = token_hash(token);
    let Some(user) = identity.store.pending(&hash, now()).await? else {
        return Err(Error::InvalidGrant(BAD_CONFIRMATION));
    };
    identity
        .throttle
        .account_open(&user.email, address)
        .map_err(Error::Throttled)?;
    let matches = identity
        .hasher
        .verify(password.to_owned(), user.password_hash.clone())
        .await?;
    if !matches {
        identity.throttle.failed(&user.email, address);
        return Err(Error::InvalidGrant(BAD_CONFIRMATION));
    }
    let Some(user) = identity.store.confirm(&user, &hash, now()).await? else {
        return Err(Error::InvalidGrant(BAD_CONFIRMATION));
    };
    tracing::info!(user = %user.id, "account confirmed");
    sign_in(identity, &user).await
}

/// Deletes the unconfirmed accounts whose link expired; returns how many. The identity
/// service's periodic step.
pub async fn forget_unconfirmed(identity: &Identity) -> anyhow::Result<usize> {
    identity.store.forget_unconfirmed(now()).await
}

/// Signs in with email and password: a new access token and a new refresh token family.
pub async fn login(
    identity: &Identity,
    email: &str,
    password: &str,
    address: IpAddr,
) -> Result<TokenResponse, Error> {
    let email = Email::parse(email).map_err(|reason| invalid("email", reason))?;
    attempt(identity, address)?;
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
    let matches = identity.hasher.verify(password.to_owned(), hash).await?;
    let Some(user) = user.filter(|_| matches) else {
        identity.throttle.failed(email.as_str(), address);
        return Err(Error::InvalidGrant(BAD_CREDENTIALS));
    };
    identity.throttle.succeeded(email.as_str(), address);
    if user.confirmed_at.is_none() {
        // Said only to whoever knows the password: it tells them nothing new.
        return Err(Error::Unconfirmed);
    }
    sign_in(identity, &user).await
}

/// A new session for `user`: a new refresh token family and an access token.
async fn sign_in(identity: &Identity, user: &UserRecord) -> Result<TokenResponse, Error> {
    let family = uuid::Uuid::now_v7().to_string();
    let (refresh_token, record) = refresh_record(identity, &user.id.to_string(), family)?;
    identity.store.insert_refresh(&record).await?;
    issue(identity, user, refresh_token).await
}

/// Exchanges a refresh token for new tokens. A token that was already exchanged is
/// evidence of theft: its whole family is revoked, so neither the thief nor the owner
/// can continue, and the owner signs in again.
pub async fn refresh(
    identity: &Identity,
    token: &str,
    address: IpAddr,
) -> Result<TokenResponse, Error> {
    attempt(identity, address)?;
    let now = now();
    let Some(record) = identity.store.refresh_by_hash(&token_hash(token)).await? else {
        return Err(Error::InvalidGrant(BAD_REFRESH));
    };
    if record.revoked_at.is_some() || record.expires_at <= now {
        return Err(Error::InvalidGrant(BAD_REFRESH));
    }
    if session_age(&record.family_id, now)
        .is_none_or(|age| age >= identity.config.session_max_age_secs)
    {
        // A session ends, however often it was refreshed: sign in again.
        identity.store.revoke_family(&record.family_id, now).await?;
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
    let (refresh_token, next) =
        refresh_record(identity, &user.id.to_string(), record.family_id.clone())?;
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
    if let Some(record) = identity.store.refresh_by_hash(&token_hash(token)).await? {
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
    attempt(identity, address)?;
    identity
        .throttle
        .account_open(&user.email, address)
        .map_err(Error::Throttled)?;
    if !identity
        .hasher
        .verify(current.to_owned(), user.password_hash.clone())
        .await?
    {
        identity.throttle.failed_in_session(&user.email, address);
        return Err(invalid("current_password", "does not match your password"));
    }
    let email =
        Email::parse(&user.email).map_err(|reason| anyhow::anyhow!("stored email: {reason}"))?;
    identity
        .policy
        .check(new, &email)
        .map_err(|reason| invalid("new_password", reason))?;
    let hash = identity.hasher.hash(new.to_owned()).await?;
    identity
        .store
        .change_password(&user.id.to_string(), &hash, now())
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

/// How long ago, in seconds, the session of `family_id` began: a family's id is a
/// UUID v7 made at sign-in, so it carries its own start. None for an id of another
/// kind (which no sign-in made).
fn session_age(family_id: &str, now: i64) -> Option<u64> {
    let started = uuid::Uuid::parse_str(family_id).ok()?.get_timestamp()?;
    let (seconds, _) = started.to_unix();
    u64::try_from(now).ok()?.checked_sub(seconds).or(Some(0))
}

fn refresh_record(
    identity: &Identity,
    user_id: &str,
    family_id: String,
) -> anyhow::Result<(String, RefreshRecord)> {
    let token = new_token()?;
    let now = now();
    let ttl = i64::try_from(identity.config.refresh_token_ttl_secs).unwrap_or(i64::MAX);
    let record = RefreshRecord {
        id: uuid::Uuid::now_v7().to_string(),
        token_hash: token_hash(&token),
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
        sub: user.id.to_string(),
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
