//! Identity's SQL, portable between SQLite and PostgreSQL.

use anyhow::Context as _;
use contracts::UserId;
use contracts::identity::Role;
use contracts::messaging::Message;
use contracts::messaging::identity::{
    RegistrationOutcome, RegistrationRequestedV1, UserRegisteredV1,
};
use platform::auth::SigningKey;
use platform::db::Database;
use platform::outbox::{self, Origin, Waker};
use sqlx::Row as _;
use sqlx::any::AnyRow;

use crate::domain::{Email, roles_from_text, roles_to_text};
use crate::tokens::token_hash;

/// Identity's tables.
#[derive(Clone, Debug)]
pub struct Store {
    db: Database,
    relay: Waker,
    seal: crate::sealing::KeySeal,
}

/// A user as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserRecord {
    /// Stable id.
    pub id: UserId,
    /// Normalised email.
    pub email: String,
    /// Argon2id PHC string.
    pub password_hash: String,
    /// Roles.
    pub roles: Vec<Role>,
    /// Creation time, Unix seconds.
    pub created_at: i64,
    /// When its address was confirmed, Unix seconds; until then it cannot sign in.
    pub confirmed_at: Option<i64>,
}

/// The confirmation a new account waits for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pending {
    /// The one-time token, mailed to the address; only its hash is stored.
    pub token: String,
    /// When it expires, Unix seconds.
    pub expires_at: i64,
}

/// A refresh token as stored (its hash, never the token).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefreshRecord {
    /// Row id.
    pub id: String,
    /// SHA-256 of the token, hex.
    pub token_hash: String,
    /// The chain of tokens this one belongs to.
    pub family_id: String,
    /// Whose it is.
    pub user_id: String,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub expires_at: i64,
    /// When it was exchanged, if it was.
    pub used_at: Option<i64>,
    /// When its family was revoked, if it was.
    pub revoked_at: Option<i64>,
}

/// A signing key and when it was made.
#[derive(Clone, Debug)]
pub struct StoredKey {
    /// The key.
    pub key: SigningKey,
    /// Unix seconds.
    pub created_at: i64,
}

/// What registering an unconfirmed address again did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Renewal {
    /// A new password and link; the link is mailed.
    Renewed,
    /// Nothing: a registration of the address was mailed too recently.
    TooSoon,
    /// Nothing: the account was confirmed, or deleted, meanwhile.
    Moved,
}

/// The email is taken by another account.
#[derive(Debug, thiserror::Error)]
#[error("the email is taken")]
pub struct EmailTaken;

impl Store {
    /// The store over a migrated `db`; `relay` is woken when an event was written.
    pub fn new(db: Database, relay: Waker) -> Self {
        Self {
            db,
            relay,
            seal: crate::sealing::KeySeal::new(None),
        }
    }

    /// With signing keys sealed (or opened) by `seal`.
    pub fn with_seal(mut self, seal: crate::sealing::KeySeal) -> Self {
        self.seal = seal;
        self
    }

    /// Seals every signing key stored plain, when sealing is configured: what a shop
    /// that started without the secret has stored becomes unreadable without it too.
    /// How many were sealed.
    pub async fn seal_plain_keys(&self) -> anyhow::Result<usize> {
        if !self.seal.seals() {
            return Ok(0);
        }
        let rows = sqlx::query("SELECT kid, seed FROM signing_keys")
            .fetch_all(self.db.pool())
            .await
            .context("reading the signing keys")?;
        let mut sealed = 0;
        for row in rows {
            let kid: String = row.try_get("kid")?;
            let stored: String = row.try_get("seed")?;
            if crate::sealing::KeySeal::is_sealed(&stored) {
                continue;
            }
            let seed = self.seal.open(&kid, &stored)?;
            sqlx::query("UPDATE signing_keys SET seed = $1 WHERE kid = $2 AND seed = $3")
                .bind(self.seal.seal(&kid, &seed)?)
                .bind(kid.clone())
                .bind(stored)
                .execute(self.db.writer())
                .await
                .with_context(|| format!("sealing signing key {kid}"))?;
            sealed += 1;
        }
        Ok(sealed)
    }

    /// The database underneath, for health checks.
    pub fn database(&self) -> &Database {
        &self.db
    }

    /// Adds a user, or reports that the email is taken (by the unique constraint, so two
    /// concurrent registrations cannot both succeed). A confirmed user is announced
    /// (`identity.user_registered.v1`); an unconfirmed one waits for `pending`, which is
    /// mailed to it (`identity.registration_requested.v1`).
    pub async fn insert_user(
        &self,
        user: &UserRecord,
        pending: Option<&Pending>,
    ) -> anyhow::Result<Result<(), EmailTaken>> {
        let mut tx = self.begin().await?;
        let result = sqlx::query(
            "INSERT INTO users (id, email, password_hash, roles, created_at, updated_at, \
             confirmed_at, confirmation_hash, confirmation_expires_at, registration_mailed_at) \
             VALUES ($1, $2, $3, $4, $5, $5, $6, $7, $8, $9)",
        )
        .bind(user.id.to_string())
        .bind(user.email.clone())
        .bind(user.password_hash.clone())
        .bind(roles_to_text(&user.roles))
        .bind(user.created_at)
        .bind(user.confirmed_at)
        .bind(pending.map(|pending| token_hash(&pending.token)))
        .bind(pending.map(|pending| pending.expires_at))
        .bind(pending.map(|_| user.created_at))
        .execute(&mut *tx)
        .await;
        match result {
            Ok(_) => {}
            Err(sqlx::Error::Database(error)) if error.is_unique_violation() => {
                return Ok(Err(EmailTaken));
            }
            Err(error) => return Err(error).context("inserting a user"),
        }
        // The rest of the shop learns of the account from these events, written in the
        // same transaction so that neither exists without the other.
        match pending {
            Some(pending) => {
                let outcome = confirm_outcome(pending);
                enqueue(&mut tx, user, &registration(user, outcome)).await?;
            }
            None => enqueue(&mut tx, user, &registered(user)).await?,
        }
        tx.commit().await.context("committing a new user")?;
        self.relay.wake();
        Ok(Ok(()))
    }

    /// Gives an unconfirmed user a new password and a new confirmation, mailed to it:
    /// whoever registered the address last, and can read its mail, gets the account.
    /// Not if a registration of the address was mailed after `mailed_before`: the
    /// earlier link and password stand.
    pub async fn renew_pending(
        &self,
        user: &UserRecord,
        password_hash: &str,
        pending: &Pending,
        now: i64,
        mailed_before: i64,
    ) -> anyhow::Result<Renewal> {
        let mut tx = self.begin().await?;
        let renewed = sqlx::query(
            "UPDATE users SET password_hash = $1, confirmation_hash = $2, \
             confirmation_expires_at = $3, updated_at = $4, registration_mailed_at = $4 \
             WHERE id = $5 AND confirmed_at IS NULL \
             AND (registration_mailed_at IS NULL OR registration_mailed_at <= $6)",
        )
        .bind(password_hash.to_owned())
        .bind(token_hash(&pending.token))
        .bind(pending.expires_at)
        .bind(now)
        .bind(user.id.to_string())
        .bind(mailed_before)
        .execute(&mut *tx)
        .await
        .context("renewing a confirmation")?
        .rows_affected()
            == 1;
        if !renewed {
            let still_pending =
                sqlx::query("SELECT 1 FROM users WHERE id = $1 AND confirmed_at IS NULL")
                    .bind(user.id.to_string())
                    .fetch_optional(&mut *tx)
                    .await
                    .context("reading an unconfirmed account")?
                    .is_some();
            return Ok(if still_pending {
                Renewal::TooSoon
            } else {
                Renewal::Moved
            });
        }
        let outcome = confirm_outcome(pending);
        enqueue(&mut tx, user, &registration(user, outcome)).await?;
        tx.commit().await.context("committing a confirmation")?;
        self.relay.wake();
        Ok(Renewal::Renewed)
    }

    /// Writes to a confirmed user that someone tried to register their address again,
    /// unless a registration of the address was mailed after `mailed_before`; whether
    /// it wrote.
    pub async fn tell_registered(
        &self,
        user: &UserRecord,
        now: i64,
        mailed_before: i64,
    ) -> anyhow::Result<bool> {
        let mut tx = self.begin().await?;
        let due = sqlx::query(
            "UPDATE users SET registration_mailed_at = $1 WHERE id = $2 \
             AND (registration_mailed_at IS NULL OR registration_mailed_at <= $3)",
        )
        .bind(now)
        .bind(user.id.to_string())
        .bind(mailed_before)
        .execute(&mut *tx)
        .await
        .context("noting a registration email")?
        .rows_affected()
            == 1;
        if due {
            let outcome = RegistrationOutcome::AlreadyRegistered;
            enqueue(&mut tx, user, &registration(user, outcome)).await?;
            tx.commit().await.context("committing a registration")?;
            self.relay.wake();
        }
        Ok(due)
    }

    /// The unconfirmed account whose unexpired token hashes to `token_hash`.
    pub async fn pending(&self, token_hash: &str, now: i64) -> anyhow::Result<Option<UserRecord>> {
        let row = sqlx::query(concat!(
            select_user!(),
            " WHERE confirmation_hash = $1 AND confirmation_expires_at > $2 \
             AND confirmed_at IS NULL"
        ))
        .bind(token_hash.to_owned())
        .bind(now)
        .fetch_optional(self.db.pool())
        .await
        .context("reading a confirmation")?;
        row.as_ref().map(user_from_row).transpose()
    }

    /// Confirms `user` (found by [`Store::pending`]) if its token still hashes to
    /// `token_hash`, and announces it; `None` if it was confirmed, or registered again,
    /// meanwhile.
    pub async fn confirm(
        &self,
        user: &UserRecord,
        token_hash: &str,
        now: i64,
    ) -> anyhow::Result<Option<UserRecord>> {
        let mut tx = self.begin().await?;
        let mut user = user.clone();
        let confirmed = sqlx::query(
            "UPDATE users SET confirmed_at = $1, confirmation_hash = NULL, \
             confirmation_expires_at = NULL, updated_at = $1 \
             WHERE id = $2 AND confirmation_hash = $3 AND confirmed_at IS NULL",
        )
        .bind(now)
        .bind(user.id.to_string())
        .bind(token_hash.to_owned())
        .execute(&mut *tx)
        .await
        .context("confirming an account")?
        .rows_affected()
            == 1;
        if !confirmed {
            // Confirmed, or renewed, by a concurrent request.
            return Ok(None);
        }
        user.confirmed_at = Some(now);
        enqueue(&mut tx, &user, &registered(&user)).await?;
        tx.commit().await.context("committing a confirmation")?;
        self.relay.wake();
        Ok(Some(user))
    }

    /// Deletes the unconfirmed accounts whose confirmation expired by `now`; returns how
    /// many. Their addresses are free to register again.
    pub async fn forget_unconfirmed(&self, now: i64) -> anyhow::Result<usize> {
        let deleted = sqlx::query(
            "DELETE FROM users WHERE confirmed_at IS NULL AND confirmation_expires_at <= $1",
        )
        .bind(now)
        .execute(self.db.writer())
        .await
        .context("deleting expired unconfirmed accounts")?
        .rows_affected();
        Ok(usize::try_from(deleted).unwrap_or(usize::MAX))
    }

    async fn begin(&self) -> anyhow::Result<sqlx::Transaction<'static, sqlx::Any>> {
        self.db.begin().await.context("starting a transaction")
    }

    /// The user with this email.
    pub async fn user_by_email(&self, email: &Email) -> anyhow::Result<Option<UserRecord>> {
        let row = sqlx::query(concat!(select_user!(), " WHERE email = $1"))
            .bind(email.as_str().to_owned())
            .fetch_optional(self.db.pool())
            .await
            .context("reading a user by email")?;
        row.as_ref().map(user_from_row).transpose()
    }

    /// The user with this id.
    pub async fn user_by_id(&self, id: &str) -> anyhow::Result<Option<UserRecord>> {
        let row = sqlx::query(concat!(select_user!(), " WHERE id = $1"))
            .bind(id.to_owned())
            .fetch_optional(self.db.pool())
            .await
            .context("reading a user by id")?;
        row.as_ref().map(user_from_row).transpose()
    }

    /// Replaces a user's password and revokes every refresh token they hold, in one
    /// transaction: a changed password signs out every other session.
    pub async fn change_password(
        &self,
        user_id: &str,
        password_hash: &str,
        now: i64,
    ) -> anyhow::Result<()> {
        let mut tx = self.db.begin().await?;
        sqlx::query("UPDATE users SET password_hash = $1, updated_at = $2 WHERE id = $3")
            .bind(password_hash.to_owned())
            .bind(now)
            .bind(user_id.to_owned())
            .execute(&mut *tx)
            .await
            .context("changing a password")?;
        sqlx::query(
            "UPDATE refresh_tokens SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL",
        )
        .bind(now)
        .bind(user_id.to_owned())
        .execute(&mut *tx)
        .await
        .context("revoking a user's refresh tokens")?;
        tx.commit().await?;
        Ok(())
    }

    /// Stores a new refresh token.
    pub async fn insert_refresh(&self, record: &RefreshRecord) -> anyhow::Result<()> {
        insert_refresh(record)
            .execute(self.db.writer())
            .await
            .context("storing a refresh token")?;
        Ok(())
    }

    /// The refresh token with this hash.
    pub async fn refresh_by_hash(&self, token_hash: &str) -> anyhow::Result<Option<RefreshRecord>> {
        let row = sqlx::query(
            "SELECT id, token_hash, family_id, user_id, created_at, expires_at, used_at, revoked_at \
             FROM refresh_tokens WHERE token_hash = $1",
        )
        .bind(token_hash.to_owned())
        .fetch_optional(self.db.pool())
        .await
        .context("reading a refresh token")?;
        row.as_ref()
            .map(|row| {
                Ok(RefreshRecord {
                    id: row.try_get("id")?,
                    token_hash: row.try_get("token_hash")?,
                    family_id: row.try_get("family_id")?,
                    user_id: row.try_get("user_id")?,
                    created_at: row.try_get("created_at")?,
                    expires_at: row.try_get("expires_at")?,
                    used_at: row.try_get("used_at")?,
                    revoked_at: row.try_get("revoked_at")?,
                })
            })
            .transpose()
    }

    /// Marks `old` used and stores `next` in its place, atomically. Returns `false` if
    /// `old` was used or revoked meanwhile (a concurrent exchange won).
    pub async fn rotate_refresh(
        &self,
        old_id: &str,
        next: &RefreshRecord,
        now: i64,
    ) -> anyhow::Result<bool> {
        let mut tx = self.db.begin().await?;
        let claimed = sqlx::query(
            // The family check closes a race on PostgreSQL: a revocation that started
            // before this token was inserted cannot have revoked it, but it did revoke
            // its predecessor, which this finds.
            "UPDATE refresh_tokens SET used_at = $1 \
             WHERE id = $2 AND used_at IS NULL AND revoked_at IS NULL \
               AND NOT EXISTS (SELECT 1 FROM refresh_tokens family \
                               WHERE family.family_id = refresh_tokens.family_id \
                                 AND family.revoked_at IS NOT NULL)",
        )
        .bind(now)
        .bind(old_id.to_owned())
        .execute(&mut *tx)
        .await
        .context("using a refresh token")?
        .rows_affected();
        if claimed != 1 {
            tx.rollback().await?;
            return Ok(false);
        }
        insert_refresh(next)
            .execute(&mut *tx)
            .await
            .context("storing a refresh token")?;
        tx.commit().await?;
        Ok(true)
    }

    /// Revokes every token of a family.
    pub async fn revoke_family(&self, family_id: &str, now: i64) -> anyhow::Result<()> {
        sqlx::query(
            "UPDATE refresh_tokens SET revoked_at = $1 WHERE family_id = $2 AND revoked_at IS NULL",
        )
        .bind(now)
        .bind(family_id.to_owned())
        .execute(self.db.writer())
        .await
        .context("revoking a token family")?;
        Ok(())
    }

    /// The newest key that is not retired: the one that signs.
    pub async fn active_key(&self) -> anyhow::Result<Option<StoredKey>> {
        let row = sqlx::query(
            "SELECT kid, seed, created_at FROM signing_keys WHERE retired_at IS NULL \
             ORDER BY created_at DESC, kid DESC LIMIT 1",
        )
        .fetch_optional(self.db.pool())
        .await
        .context("reading the signing key")?;
        row.as_ref()
            .map(|row| key_from_row(row, &self.seal))
            .transpose()
    }

    /// Keys whose tokens may still be valid: unretired ones, and those retired after
    /// `retired_after` (Unix seconds).
    pub async fn published_keys(&self, retired_after: i64) -> anyhow::Result<Vec<StoredKey>> {
        let rows = sqlx::query(
            "SELECT kid, seed, created_at FROM signing_keys \
             WHERE retired_at IS NULL OR retired_at > $1 ORDER BY created_at DESC, kid DESC",
        )
        .bind(retired_after)
        .fetch_all(self.db.pool())
        .await
        .context("reading the published keys")?;
        rows.iter()
            .map(|row| key_from_row(row, &self.seal))
            .collect()
    }

    /// Makes `key` the signing key and retires every other, in one transaction.
    pub async fn rotate_key(&self, key: &SigningKey, now: i64) -> anyhow::Result<()> {
        let mut tx = self.db.begin().await?;
        sqlx::query("UPDATE signing_keys SET retired_at = $1 WHERE retired_at IS NULL")
            .bind(now)
            .execute(&mut *tx)
            .await
            .context("retiring signing keys")?;
        sqlx::query("INSERT INTO signing_keys (kid, seed, created_at) VALUES ($1, $2, $3)")
            .bind(key.kid().to_owned())
            .bind(self.seal.seal(key.kid(), key.seed())?)
            .bind(now)
            .execute(&mut *tx)
            .await
            .context("storing a signing key")?;
        tx.commit().await?;
        Ok(())
    }
}

/// The user columns `user_from_row` reads.
macro_rules! select_user {
    () => {
        "SELECT id, email, password_hash, roles, created_at, confirmed_at FROM users"
    };
}
use select_user;

fn insert_refresh(
    record: &RefreshRecord,
) -> sqlx::query::Query<'static, sqlx::Any, sqlx::any::AnyArguments> {
    sqlx::query(
        "INSERT INTO refresh_tokens (id, token_hash, family_id, user_id, created_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(record.id.clone())
    .bind(record.token_hash.clone())
    .bind(record.family_id.clone())
    .bind(record.user_id.clone())
    .bind(record.created_at)
    .bind(record.expires_at)
}

fn user_from_row(row: &AnyRow) -> anyhow::Result<UserRecord> {
    let roles: String = row.try_get("roles")?;
    let id: String = row.try_get("id")?;
    Ok(UserRecord {
        id: UserId::parse(&id).with_context(|| format!("stored user id {id:?}"))?,
        email: row.try_get("email")?,
        password_hash: row.try_get("password_hash")?,
        roles: roles_from_text(&roles),
        created_at: row.try_get("created_at")?,
        confirmed_at: row.try_get("confirmed_at")?,
    })
}

/// The event that announces a confirmed account to the shop.
fn registered(user: &UserRecord) -> UserRegisteredV1 {
    UserRegisteredV1 {
        user_id: user.id,
        email: user.email.clone(),
        registered_at_ms: user.created_at.saturating_mul(1000),
    }
}

/// The event that has notifications write to the address of a registration.
fn registration(user: &UserRecord, outcome: RegistrationOutcome) -> RegistrationRequestedV1 {
    RegistrationRequestedV1 {
        user_id: user.id,
        email: user.email.clone(),
        outcome,
    }
}

fn confirm_outcome(pending: &Pending) -> RegistrationOutcome {
    RegistrationOutcome::Confirm {
        token: pending.token.clone(),
        expires_at_ms: pending.expires_at.saturating_mul(1000),
    }
}

/// Writes `message` about `user` to the outbox, in `tx`.
async fn enqueue(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    user: &UserRecord,
    message: &impl Message,
) -> anyhow::Result<()> {
    let origin = Origin {
        correlation_id: user.id.to_string(),
        ..Origin::default()
    };
    outbox::send(tx, crate::NAME, message, &origin).await
}

fn key_from_row(row: &AnyRow, seal: &crate::sealing::KeySeal) -> anyhow::Result<StoredKey> {
    let kid: String = row.try_get("kid")?;
    let stored: String = row.try_get("seed")?;
    let seed = seal.open(&kid, &stored)?;
    Ok(StoredKey {
        key: SigningKey::from_seed(kid, seed),
        created_at: row.try_get("created_at")?,
    })
}
