//! The embedded bus: a SQLite file in the shop's data folder, for `bazaar up`.
//!
//! Publishing stores the message and, in the same transaction, one delivery row for
//! every subscription whose filter matches, so an acknowledged publish survives a crash
//! (SQLite's WAL is on disk before the commit returns). A consumer leases the oldest
//! ready delivery of its subscription with one `UPDATE … RETURNING`, which makes
//! competing consumers safe; the lease lasts the ack wait, after which the delivery is
//! ready again. Deliveries past their attempts become dead letters instead of being
//! delivered.
//!
//! It serves one process: opening holds an exclusive lock on `<file>.lock` until the bus
//! is closed or the process ends, and a second process is refused with a message that
//! says so (a shop of several processes shares JetStream instead).

use std::fs::{File, TryLockError};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use contracts::messaging::Envelope;
use futures_util::future::BoxFuture;
use sqlx::Row as _;
use tokio::sync::Notify;

use super::{Bus, DeadLetter, Delivery, Settle, Subscription, SubscriptionSpec, subject_matches};
use crate::clock::now_ms;
use crate::config::DatabaseUrl;
use crate::db::{Database, PoolSettings};

/// How long a delivered message is kept: its id deduplicates republishes until then.
pub const RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// The embedded bus over one SQLite file.
#[derive(Clone)]
pub struct EmbeddedBus {
    inner: Arc<Inner>,
}

struct Inner {
    db: Database,
    /// The open lock file whose exclusive lock marks the bus as this process's; taken
    /// out (and so unlocked) by [`EmbeddedBus::close`].
    lock: Mutex<Option<File>>,
    /// Woken on every publish, nack and replay, so waiting consumers look again.
    ready: Notify,
}

impl EmbeddedBus {
    /// Opens (creating if needed) the bus stored at `path`, refusing when another
    /// process has it open.
    pub async fn open(path: &Path) -> anyhow::Result<Self> {
        let lock = lock_for_this_process(path)?;
        let db =
            Database::connect(&DatabaseUrl::sqlite_file(path), PoolSettings::default()).await?;
        db.migrate(sqlx::migrate!("./migrations/bus")).await?;
        // Pruned at each start: a bus that runs for weeks without a restart is a
        // distributed deployment's job, on JetStream, whose streams have limits.
        let bus = Self {
            inner: Arc::new(Inner {
                db,
                lock: Mutex::new(Some(lock)),
                ready: Notify::new(),
            }),
        };
        let retention = i64::try_from(RETENTION.as_millis()).unwrap_or(i64::MAX);
        bus.prune(now_ms().saturating_sub(retention)).await?;
        bus.end_dead_leases().await?;
        Ok(bus)
    }

    /// Makes every leased delivery ready again. The bus is this process's (its lock
    /// says so), so a lease found at open was taken by a process that died: its
    /// deliveries go out again now, not when the lease would have run out. The attempt
    /// stays counted.
    async fn end_dead_leases(&self) -> anyhow::Result<()> {
        let ended = sqlx::query(
            "UPDATE deliveries SET available_at = $1, lease = NULL \
             WHERE state = 'pending' AND lease IS NOT NULL",
        )
        .bind(now_ms())
        .execute(self.inner.db.pool())
        .await
        .context("ending a dead process's leases")?
        .rows_affected();
        if ended > 0 {
            tracing::info!(
                ended,
                "deliveries a dead process had leased are ready again"
            );
        }
        Ok(())
    }

    /// Deletes messages published before `before_ms` (Unix ms) that no subscription
    /// still has to handle, dead letters included. Their ids are forgotten too, so
    /// `before_ms` must lie beyond the last time a producer could republish them (the
    /// outbox relay republishes within minutes); [`RETENTION`] is a week.
    pub async fn prune(&self, before_ms: i64) -> anyhow::Result<u64> {
        let deleted = sqlx::query(
            "DELETE FROM messages WHERE published_at < $1 \
             AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.seq = messages.seq)",
        )
        .bind(before_ms)
        .execute(self.inner.db.pool())
        .await
        .context("pruning delivered messages")?
        .rows_affected();
        Ok(deleted)
    }

    /// Closes the file; pending work stays in it for the next open.
    pub async fn close(&self) {
        self.inner.db.close().await;
        // Unlocked only now, so that no other process opens the file while this one
        // still writes to it. A poisoned lock only means a panic elsewhere: unlock.
        let mut lock = self.inner.lock.lock().unwrap_or_else(|e| e.into_inner());
        lock.take();
    }

    async fn publish_envelope(&self, envelope: &Envelope) -> anyhow::Result<()> {
        let subject = envelope.kind.clone();
        let json = serde_json::to_string(envelope).context("encoding an envelope")?;
        let now = now_ms();
        let mut tx = self.inner.db.pool().begin().await?;
        let stored = sqlx::query(
            "INSERT INTO messages (id, subject, envelope, published_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (id) DO NOTHING RETURNING seq",
        )
        .bind(envelope.id.clone())
        .bind(subject.clone())
        .bind(json)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await
        .context("storing a message")?;
        // A message id seen before is a duplicate: nothing more to do.
        if let Some(row) = stored {
            let seq: i64 = row.try_get("seq")?;
            // Read inside the transaction, which holds the write lock since the insert:
            // a subscription created concurrently either committed before (and is seen
            // here) or copies this message into its backlog after.
            let subscriptions = sqlx::query("SELECT name, filter FROM subscriptions")
                .fetch_all(&mut *tx)
                .await
                .context("reading subscriptions")?;
            let mut subscribers = Vec::new();
            for subscription in &subscriptions {
                let filter: String = subscription.try_get("filter")?;
                if subject_matches(&filter, &subject) {
                    subscribers.push(subscription.try_get::<String, _>("name")?);
                }
            }
            for name in subscribers {
                sqlx::query(
                    "INSERT INTO deliveries (subscription, seq, attempts, available_at, state) \
                     VALUES ($1, $2, 0, $3, 'pending')",
                )
                .bind(name)
                .bind(seq)
                .bind(now)
                .execute(&mut *tx)
                .await
                .context("queueing a delivery")?;
            }
        }
        tx.commit().await.context("committing a publish")?;
        self.inner.ready.notify_waiters();
        Ok(())
    }

    async fn open_subscription(
        &self,
        spec: &SubscriptionSpec,
    ) -> anyhow::Result<Box<dyn Subscription>> {
        let known: Option<String> = sqlx::query("SELECT filter FROM subscriptions WHERE name = $1")
            .bind(spec.name.clone())
            .fetch_optional(self.inner.db.pool())
            .await
            .context("reading a subscription")?
            .map(|row| row.try_get("filter"))
            .transpose()?;
        match known {
            Some(filter) if filter == spec.filter => {}
            Some(filter) => anyhow::bail!(
                "subscription {} exists with filter {filter:?}, not {:?}",
                spec.name,
                spec.filter
            ),
            None => self.create_subscription(spec).await?,
        }
        Ok(Box::new(EmbeddedSubscription {
            bus: self.clone(),
            spec: spec.clone(),
        }))
    }

    /// Records the subscription and queues every stored message it matches, so it sees
    /// what was published before it existed, as a JetStream consumer would.
    async fn create_subscription(&self, spec: &SubscriptionSpec) -> anyhow::Result<()> {
        let mut tx = self.inner.db.pool().begin().await?;
        sqlx::query("INSERT INTO subscriptions (name, filter) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING")
            .bind(spec.name.clone())
            .bind(spec.filter.clone())
            .execute(&mut *tx)
            .await
            .context("creating a subscription")?;
        let stored = sqlx::query("SELECT seq, subject FROM messages ORDER BY seq")
            .fetch_all(&mut *tx)
            .await
            .context("reading stored messages")?;
        let now = now_ms();
        for row in stored {
            let subject: String = row.try_get("subject")?;
            if subject_matches(&spec.filter, &subject) {
                sqlx::query(
                    "INSERT INTO deliveries (subscription, seq, attempts, available_at, state) \
                     VALUES ($1, $2, 0, $3, 'pending') ON CONFLICT DO NOTHING",
                )
                .bind(spec.name.clone())
                .bind(row.try_get::<i64, _>("seq")?)
                .bind(now)
                .execute(&mut *tx)
                .await
                .context("queueing a stored message")?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// Leases the oldest ready delivery, dead-lettering those out of attempts.
    async fn lease(&self, spec: &SubscriptionSpec) -> anyhow::Result<Option<Delivery>> {
        loop {
            let now = now_ms();
            let lease = uuid::Uuid::now_v7().to_string();
            let ack_wait = i64::try_from(spec.ack_wait.as_millis()).unwrap_or(i64::MAX);
            let leased = sqlx::query(
                "UPDATE deliveries SET attempts = attempts + 1, available_at = $1, lease = $2 \
                 WHERE subscription = $3 AND seq = ( \
                     SELECT seq FROM deliveries \
                     WHERE subscription = $3 AND state = 'pending' AND available_at <= $4 \
                     ORDER BY seq LIMIT 1) \
                 RETURNING seq, attempts",
            )
            .bind(now.saturating_add(ack_wait))
            .bind(lease.clone())
            .bind(spec.name.clone())
            .bind(now)
            .fetch_optional(self.inner.db.pool())
            .await
            .context("leasing a delivery")?;
            let Some(row) = leased else {
                return Ok(None);
            };
            let seq: i64 = row.try_get("seq")?;
            let attempts: i64 = row.try_get("attempts")?;
            if attempts > i64::from(spec.max_attempts) {
                // Out of attempts, by nacks or by ack timeouts alike: a dead letter.
                sqlx::query(
                    "UPDATE deliveries SET state = 'dead', attempts = attempts - 1, lease = NULL \
                     WHERE subscription = $1 AND seq = $2",
                )
                .bind(spec.name.clone())
                .bind(seq)
                .execute(self.inner.db.pool())
                .await
                .context("dead-lettering a delivery")?;
                tracing::warn!(
                    subscription = spec.name,
                    seq,
                    "message dead-lettered after its last attempt"
                );
                metrics::counter!("bus_dead_lettered_total", "subscription" => spec.name.clone())
                    .increment(1);
                continue;
            }
            let json: String = sqlx::query("SELECT envelope FROM messages WHERE seq = $1")
                .bind(seq)
                .fetch_one(self.inner.db.pool())
                .await
                .context("reading a message")?
                .try_get("envelope")?;
            let envelope: Envelope =
                serde_json::from_str(&json).context("decoding a stored envelope")?;
            let settle = EmbeddedSettle {
                bus: self.clone(),
                subscription: spec.name.clone(),
                seq,
                lease,
            };
            let attempt = u32::try_from(attempts).unwrap_or(u32::MAX);
            return Ok(Some(Delivery::new(envelope, attempt, Box::new(settle))));
        }
    }

    /// When the earliest pending delivery of `name` becomes ready, in Unix ms.
    async fn next_ready_at(&self, name: &str) -> anyhow::Result<Option<i64>> {
        let row = sqlx::query(
            "SELECT MIN(available_at) AS next FROM deliveries WHERE subscription = $1 AND state = 'pending'",
        )
        .bind(name.to_owned())
        .fetch_one(self.inner.db.pool())
        .await
        .context("reading the next delivery time")?;
        Ok(row.try_get::<Option<i64>, _>("next")?)
    }

    async fn list_dead(&self, name: &str) -> anyhow::Result<Vec<DeadLetter>> {
        let rows = sqlx::query(
            "SELECT m.envelope, d.attempts FROM deliveries d JOIN messages m ON m.seq = d.seq \
             WHERE d.subscription = $1 AND d.state = 'dead' ORDER BY d.seq",
        )
        .bind(name.to_owned())
        .fetch_all(self.inner.db.pool())
        .await
        .context("listing dead letters")?;
        rows.iter()
            .map(|row| {
                let json: String = row.try_get("envelope")?;
                let attempts: i64 = row.try_get("attempts")?;
                Ok(DeadLetter {
                    envelope: serde_json::from_str(&json).context("decoding a dead letter")?,
                    attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
                })
            })
            .collect()
    }

    async fn replay_dead(&self, name: &str, message_id: &str) -> anyhow::Result<bool> {
        let replayed = sqlx::query(
            "UPDATE deliveries SET state = 'pending', attempts = 0, available_at = $1, lease = NULL \
             WHERE subscription = $2 AND state = 'dead' \
               AND seq = (SELECT seq FROM messages WHERE id = $3)",
        )
        .bind(now_ms())
        .bind(name.to_owned())
        .bind(message_id.to_owned())
        .execute(self.inner.db.pool())
        .await
        .context("replaying a dead letter")?
        .rows_affected();
        self.inner.ready.notify_waiters();
        Ok(replayed == 1)
    }
}

impl Bus for EmbeddedBus {
    fn pending<'a>(&'a self, name: &'a str) -> BoxFuture<'a, anyhow::Result<u64>> {
        Box::pin(async move {
            let row = sqlx::query(
                "SELECT COUNT(*) AS pending FROM deliveries WHERE subscription = $1 AND state = 'pending'",
            )
            .bind(name.to_owned())
            .fetch_one(self.inner.db.pool())
            .await
            .context("counting pending deliveries")?;
            Ok(u64::try_from(row.try_get::<i64, _>("pending")?).unwrap_or(0))
        })
    }

    fn publish<'a>(&'a self, envelope: &'a Envelope) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(self.publish_envelope(envelope))
    }

    fn subscribe<'a>(
        &'a self,
        spec: &'a SubscriptionSpec,
    ) -> BoxFuture<'a, anyhow::Result<Box<dyn Subscription>>> {
        Box::pin(self.open_subscription(spec))
    }

    fn dead_letters<'a>(&'a self, name: &'a str) -> BoxFuture<'a, anyhow::Result<Vec<DeadLetter>>> {
        Box::pin(self.list_dead(name))
    }

    fn replay<'a>(
        &'a self,
        name: &'a str,
        message_id: &'a str,
    ) -> BoxFuture<'a, anyhow::Result<bool>> {
        Box::pin(self.replay_dead(name, message_id))
    }
}

struct EmbeddedSubscription {
    bus: EmbeddedBus,
    spec: SubscriptionSpec,
}

impl Subscription for EmbeddedSubscription {
    fn next(&mut self, wait: Duration) -> BoxFuture<'_, anyhow::Result<Option<Delivery>>> {
        Box::pin(async move {
            let deadline = tokio::time::Instant::now() + wait;
            loop {
                // Register for wake-ups before looking, so a publish between the look
                // and the wait is not missed.
                let notified = self.bus.inner.ready.notified();
                if let Some(delivery) = self.bus.lease(&self.spec).await? {
                    return Ok(Some(delivery));
                }
                let now = tokio::time::Instant::now();
                if now >= deadline {
                    return Ok(None);
                }
                // Sleep until the next delivery is due (a backoff or a lease ending), a
                // wake-up, or the deadline, whichever comes first.
                let until = match self.bus.next_ready_at(&self.spec.name).await? {
                    Some(at) => {
                        let due = u64::try_from(at.saturating_sub(now_ms())).unwrap_or(0);
                        deadline.min(now + Duration::from_millis(due))
                    }
                    None => deadline,
                };
                tokio::select! {
                    () = notified => {}
                    () = tokio::time::sleep_until(until) => {}
                }
            }
        })
    }
}

struct EmbeddedSettle {
    bus: EmbeddedBus,
    subscription: String,
    seq: i64,
    lease: String,
}

impl Settle for EmbeddedSettle {
    fn ack(self: Box<Self>) -> BoxFuture<'static, anyhow::Result<()>> {
        Box::pin(async move {
            // Only the current lease may settle: after an ack timeout the message may be
            // with another consumer, whose delivery this must not end.
            sqlx::query(
                "DELETE FROM deliveries WHERE subscription = $1 AND seq = $2 AND lease = $3",
            )
            .bind(self.subscription)
            .bind(self.seq)
            .bind(self.lease)
            .execute(self.bus.inner.db.pool())
            .await
            .context("acknowledging a delivery")?;
            Ok(())
        })
    }

    fn nack(self: Box<Self>, delay: Duration) -> BoxFuture<'static, anyhow::Result<()>> {
        Box::pin(async move {
            let delay = i64::try_from(delay.as_millis()).unwrap_or(i64::MAX);
            sqlx::query(
                "UPDATE deliveries SET available_at = $1, lease = NULL \
                 WHERE subscription = $2 AND seq = $3 AND lease = $4",
            )
            .bind(now_ms().saturating_add(delay))
            .bind(self.subscription)
            .bind(self.seq)
            .bind(self.lease)
            .execute(self.bus.inner.db.pool())
            .await
            .context("refusing a delivery")?;
            self.bus.inner.ready.notify_waiters();
            Ok(())
        })
    }
}

/// Takes the exclusive lock that makes the bus at `path` this process's, or says which
/// process mode the file belongs to.
fn lock_for_this_process(path: &Path) -> anyhow::Result<File> {
    let mut lock_path = path.as_os_str().to_owned();
    lock_path.push(".lock");
    let lock_path = std::path::PathBuf::from(lock_path);
    if let Some(folder) = lock_path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(folder)
            .with_context(|| format!("creating the folder {}", folder.display()))?;
    }
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .with_context(|| format!("opening {}", lock_path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(TryLockError::WouldBlock) => anyhow::bail!(
            "the embedded bus at {} is in use by another process: it belongs to one \
             process (`bazaar up` runs every service in one); stop that process first, \
             or give this one another data folder, or run a distributed shop on JetStream",
            path.display()
        ),
        Err(TryLockError::Error(error)) => {
            Err(error).with_context(|| format!("locking {}", lock_path.display()))
        }
    }
}
