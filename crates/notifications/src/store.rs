//! Notifications' SQL, portable between SQLite and PostgreSQL. Writes caused by an event
//! take the caller's connection, so they commit with the event's inbox record.

use anyhow::Context as _;
use platform::config::Engine;
use platform::db::Database;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, AnyPool, Row as _};

use crate::domain::{Kind, NotificationId, PageQuery, Status};

/// A notification as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notification {
    /// Its id.
    pub id: NotificationId,
    /// What it is about.
    pub kind: Kind,
    /// Whom it is for.
    pub customer_id: String,
    /// The order it is about; `None` for a welcome.
    pub order_id: Option<String>,
    /// The subject line.
    pub subject: String,
    /// The plain-text body.
    pub body: String,
    /// Where it stands.
    pub status: Status,
    /// How many times sending it was attempted.
    pub attempts: i64,
    /// When it was created, Unix ms.
    pub created_at_ms: i64,
    /// When it was sent, Unix ms.
    pub sent_at_ms: Option<i64>,
    /// Why the last attempt failed, if it did.
    pub last_error: Option<String>,
}

/// A notification to record, caused by the event `source_message_id`.
#[derive(Clone, Debug)]
pub struct NewNotification<'a> {
    /// The new notification's id.
    pub id: &'a NotificationId,
    /// The id of the event that caused it.
    pub source_message_id: &'a str,
    /// What it is about.
    pub kind: Kind,
    /// Whom it is for.
    pub customer_id: &'a str,
    /// The order it is about; `None` for a welcome.
    pub order_id: Option<&'a str>,
    /// The subject line.
    pub subject: &'a str,
    /// The body.
    pub body: &'a str,
    /// Now, Unix ms; it is due at once.
    pub now_ms: i64,
}

/// A pending notification a sender has claimed, with its customer's address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claimed {
    /// Its id.
    pub id: NotificationId,
    /// What it is about.
    pub kind: Kind,
    /// The address to send it to.
    pub email: String,
    /// The subject line.
    pub subject: String,
    /// The body.
    pub body: String,
    /// Attempts made before this one.
    pub attempts: i64,
    /// When it was created, Unix ms; the email's `Date`.
    pub created_at_ms: i64,
}

/// Remembers where to write to `customer_id`. The first address learnt is kept: an
/// account is registered once.
pub async fn remember_customer(
    connection: &mut AnyConnection,
    customer_id: &str,
    email: &str,
    registered_at_ms: i64,
    now_ms: i64,
) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO customers (customer_id, email, registered_at_ms, created_at_ms) \
         VALUES ($1, $2, $3, $4) ON CONFLICT (customer_id) DO NOTHING",
    )
    .bind(customer_id.to_owned())
    .bind(email.to_owned())
    .bind(registered_at_ms)
    .bind(now_ms)
    .execute(connection)
    .await
    .context("remembering a customer's address")?;
    Ok(())
}

/// Records a pending notification, unless one exists for the same event, the same
/// order and kind, or (for a welcome) the same customer. Returns whether it was new.
pub async fn insert(
    connection: &mut AnyConnection,
    new: &NewNotification<'_>,
) -> anyhow::Result<bool> {
    // A bare ON CONFLICT covers every unique constraint of the table at once.
    let inserted = sqlx::query(
        "INSERT INTO notifications (id, source_message_id, kind, customer_id, order_id, subject, body, \
         status, attempts, next_attempt_at_ms, created_at_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', 0, $8, $8) ON CONFLICT DO NOTHING",
    )
    .bind(new.id.as_str().to_owned())
    .bind(new.source_message_id.to_owned())
    .bind(new.kind.as_str())
    .bind(new.customer_id.to_owned())
    .bind(new.order_id.map(str::to_owned))
    .bind(new.subject.to_owned())
    .bind(new.body.to_owned())
    .bind(new.now_ms)
    .execute(connection)
    .await
    .context("recording a notification")?
    .rows_affected();
    Ok(inserted == 1)
}

/// Claims the pending notification that has been due longest, whose customer's address
/// is known, keeping other senders off it until `claim_until_ms`. Notifications still
/// waiting for an address are not claimed and so not attempted.
pub async fn claim_next(
    db: &Database,
    now_ms: i64,
    claim_until_ms: i64,
) -> anyhow::Result<Option<Claimed>> {
    // SQLite has one writer at a time, which already makes the claim exclusive;
    // PostgreSQL needs the row locked and rows others hold skipped.
    let sql = match db.engine() {
        Engine::Sqlite => {
            "UPDATE notifications SET claimed_until_ms = $1 WHERE id = ( \
               SELECT n.id FROM notifications n \
               WHERE n.status = 'pending' AND n.next_attempt_at_ms <= $2 \
               AND (n.claimed_until_ms IS NULL OR n.claimed_until_ms <= $2) \
               AND EXISTS (SELECT 1 FROM customers c WHERE c.customer_id = n.customer_id) \
               ORDER BY n.next_attempt_at_ms, n.id LIMIT 1) \
             RETURNING id, kind, customer_id, subject, body, attempts, created_at_ms"
        }
        Engine::Postgres => {
            "UPDATE notifications SET claimed_until_ms = $1 WHERE id = ( \
               SELECT n.id FROM notifications n \
               WHERE n.status = 'pending' AND n.next_attempt_at_ms <= $2 \
               AND (n.claimed_until_ms IS NULL OR n.claimed_until_ms <= $2) \
               AND EXISTS (SELECT 1 FROM customers c WHERE c.customer_id = n.customer_id) \
               ORDER BY n.next_attempt_at_ms, n.id LIMIT 1 FOR UPDATE OF n SKIP LOCKED) \
             RETURNING id, kind, customer_id, subject, body, attempts, created_at_ms"
        }
    };
    let Some(row) = sqlx::query(sql)
        .bind(claim_until_ms)
        .bind(now_ms)
        .fetch_optional(db.writer())
        .await
        .context("claiming a notification")?
    else {
        return Ok(None);
    };
    let customer_id: String = row.try_get("customer_id")?;
    let email: String = sqlx::query("SELECT email FROM customers WHERE customer_id = $1")
        .bind(customer_id)
        .fetch_one(db.pool())
        .await
        .context("reading a customer's address")?
        .try_get("email")?;
    Ok(Some(Claimed {
        id: stored_id(&row)?,
        kind: stored_kind(&row)?,
        email,
        subject: row.try_get("subject")?,
        body: row.try_get("body")?,
        attempts: row.try_get("attempts")?,
        created_at_ms: row.try_get("created_at_ms")?,
    }))
}

/// Marks a claimed notification sent to `recipient`.
pub async fn mark_sent(
    pool: &AnyPool,
    id: &NotificationId,
    recipient: &str,
    now_ms: i64,
) -> anyhow::Result<()> {
    sqlx::query(
        "UPDATE notifications SET status = 'sent', sent_at_ms = $2, recipient = $3, \
         attempts = attempts + 1, last_error = NULL, claimed_until_ms = NULL \
         WHERE id = $1 AND status = 'pending'",
    )
    .bind(id.as_str().to_owned())
    .bind(now_ms)
    .bind(recipient.to_owned())
    .execute(pool)
    .await
    .context("marking a notification sent")?;
    Ok(())
}

/// Records a failed attempt and when to try again.
pub async fn reschedule(
    pool: &AnyPool,
    id: &NotificationId,
    attempts: i64,
    next_attempt_at_ms: i64,
    error: &str,
) -> anyhow::Result<()> {
    sqlx::query(
        "UPDATE notifications SET attempts = $2, next_attempt_at_ms = $3, last_error = $4, \
         claimed_until_ms = NULL WHERE id = $1 AND status = 'pending'",
    )
    .bind(id.as_str().to_owned())
    .bind(attempts)
    .bind(next_attempt_at_ms)
    .bind(error.to_owned())
    .execute(pool)
    .await
    .context("rescheduling a notification")?;
    Ok(())
}

/// Records that the mail system refused a notification for good.
pub async fn mark_failed(
    pool: &AnyPool,
    id: &NotificationId,
    attempts: i64,
    recipient: &str,
    error: &str,
) -> anyhow::Result<()> {
    sqlx::query(
        "UPDATE notifications SET status = 'failed', attempts = $2, recipient = $3, last_error = $4, \
         claimed_until_ms = NULL WHERE id = $1 AND status = 'pending'",
    )
    .bind(id.as_str().to_owned())
    .bind(attempts)
    .bind(recipient.to_owned())
    .bind(error.to_owned())
    .execute(pool)
    .await
    .context("marking a notification failed")?;
    Ok(())
}

/// How many notifications have each status.
pub async fn count_by_status(pool: &AnyPool, status: Status) -> anyhow::Result<i64> {
    let row = sqlx::query("SELECT COUNT(*) AS n FROM notifications WHERE status = $1")
        .bind(status.as_str())
        .fetch_one(pool)
        .await
        .context("counting notifications")?;
    Ok(row.try_get("n")?)
}

/// For each order, how many of its notifications of `kind` have `status`.
pub async fn per_order(
    pool: &AnyPool,
    kind: Kind,
    status: Status,
) -> anyhow::Result<Vec<(String, i64)>> {
    let rows = sqlx::query(
        "SELECT order_id, COUNT(*) AS n FROM notifications \
         WHERE kind = $1 AND status = $2 AND order_id IS NOT NULL \
         GROUP BY order_id ORDER BY order_id",
    )
    .bind(kind.as_str())
    .bind(status.as_str())
    .fetch_all(pool)
    .await
    .context("counting notifications per order")?;
    rows.iter()
        .map(|row| Ok((row.try_get("order_id")?, row.try_get("n")?)))
        .collect()
}

/// A page of `customer_id`'s notifications, newest first, with one more than asked
/// for when there are more (the caller trims it and issues a cursor).
pub async fn page(
    pool: &AnyPool,
    customer_id: &str,
    query: &PageQuery,
) -> anyhow::Result<Vec<Notification>> {
    let fetch = i64::from(query.limit.get()) + 1;
    let rows = match &query.after {
        None => {
            sqlx::query(concat!(
                select_notification!(),
                " WHERE customer_id = $1 ORDER BY created_at_ms DESC, id DESC LIMIT $2"
            ))
            .bind(customer_id.to_owned())
            .bind(fetch)
            .fetch_all(pool)
            .await
        }
        Some(cursor) => sqlx::query(concat!(
            select_notification!(),
            " WHERE customer_id = $1 AND (created_at_ms < $2 OR (created_at_ms = $2 AND id < $3)) \
                 ORDER BY created_at_ms DESC, id DESC LIMIT $4"
        ))
        .bind(customer_id.to_owned())
        .bind(cursor.created_at_ms)
        .bind(cursor.id.as_str().to_owned())
        .bind(fetch)
        .fetch_all(pool)
        .await,
    }
    .context("listing notifications")?;
    rows.iter().map(notification_from_row).collect()
}

/// One of `customer_id`'s notifications; `None` if it does not exist or is someone
/// else's, which the caller must not tell apart.
pub async fn find(
    pool: &AnyPool,
    customer_id: &str,
    id: &NotificationId,
) -> anyhow::Result<Option<Notification>> {
    let row = sqlx::query(concat!(
        select_notification!(),
        " WHERE id = $1 AND customer_id = $2"
    ))
    .bind(id.as_str().to_owned())
    .bind(customer_id.to_owned())
    .fetch_optional(pool)
    .await
    .context("reading a notification")?;
    row.as_ref().map(notification_from_row).transpose()
}

/// The notification `id`, whoever it is for; for operators and tests.
pub async fn by_id(pool: &AnyPool, id: &NotificationId) -> anyhow::Result<Option<Notification>> {
    let row = sqlx::query(concat!(select_notification!(), " WHERE id = $1"))
        .bind(id.as_str().to_owned())
        .fetch_optional(pool)
        .await
        .context("reading a notification")?;
    row.as_ref().map(notification_from_row).transpose()
}

/// Every notification, oldest first; for operators and tests.
pub async fn all(pool: &AnyPool) -> anyhow::Result<Vec<Notification>> {
    let rows = sqlx::query(concat!(
        select_notification!(),
        " ORDER BY created_at_ms, id"
    ))
    .fetch_all(pool)
    .await
    .context("listing notifications")?;
    rows.iter().map(notification_from_row).collect()
}

/// The columns `notification_from_row` reads.
macro_rules! select_notification {
    () => {
        "SELECT id, kind, customer_id, order_id, subject, body, status, attempts, \
         created_at_ms, sent_at_ms, last_error FROM notifications"
    };
}
use select_notification;

fn notification_from_row(row: &AnyRow) -> anyhow::Result<Notification> {
    let status: String = row.try_get("status")?;
    Ok(Notification {
        id: stored_id(row)?,
        kind: stored_kind(row)?,
        customer_id: row.try_get("customer_id")?,
        order_id: row.try_get("order_id")?,
        subject: row.try_get("subject")?,
        body: row.try_get("body")?,
        status: Status::parse(&status).with_context(|| format!("stored status {status:?}"))?,
        attempts: row.try_get("attempts")?,
        created_at_ms: row.try_get("created_at_ms")?,
        sent_at_ms: row.try_get("sent_at_ms")?,
        last_error: row.try_get("last_error")?,
    })
}

fn stored_id(row: &AnyRow) -> anyhow::Result<NotificationId> {
    let id: String = row.try_get("id")?;
    NotificationId::parse(&id).with_context(|| format!("stored id {id:?}"))
}

fn stored_kind(row: &AnyRow) -> anyhow::Result<Kind> {
    let kind: String = row.try_get("kind")?;
    Kind::parse(&kind).with_context(|| format!("stored kind {kind:?}"))
}
