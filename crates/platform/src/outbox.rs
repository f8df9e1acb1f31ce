//! The transactional outbox: a service writes the messages a state change causes in the
//! same transaction as the change, and a relay publishes them afterwards.
//!
//! Nothing is lost if the process dies between commit and publish: the rows wait in the
//! outbox. A row is deleted only after the bus acknowledged it; if the process dies
//! between the two, the row is published again and the bus drops the duplicate by
//! message id. Every row in the outbox is therefore one still to publish (the schema's
//! `published_at` stays empty, and the queries still name it for the index over it).
//! While the bus is down the relay backs off, rows wait with their next attempt time,
//! and the backlog drains when the bus returns. Several relays (one per replica) share a
//! PostgreSQL outbox: each claims a batch with `FOR UPDATE SKIP LOCKED`, so they never
//! publish the same row at the same time.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use contracts::messaging::{Envelope, Message};
use sqlx::Row as _;
use tokio::sync::Notify;

use crate::bus::{Bus, backoff};
use crate::clock::now_ms;
use crate::config::Engine;
use crate::db::Database;
use crate::shutdown::Shutdown;

/// Creates the outbox and inbox tables in a service's database.
pub async fn migrate(db: &Database) -> anyhow::Result<()> {
    db.migrate(sqlx::migrate!("./migrations/messaging")).await
}

/// What caused a message: a request, or another message. It carries the correlation id
/// and trace context forward, so every message of one checkout shares a correlation id
/// and a trace.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Origin {
    /// The request id at the edge, kept by every message that follows from it.
    pub correlation_id: String,
    /// The id of the message being handled, if a message caused this.
    pub causation_id: Option<String>,
    /// The W3C `traceparent` of the work that caused this.
    pub traceparent: Option<String>,
}

impl Origin {
    /// The id of the trace this work belongs to (32 hexadecimal digits), if its
    /// `traceparent` is valid.
    pub fn trace_id(&self) -> Option<String> {
        let parent = crate::telemetry::parse_traceparent(self.traceparent.as_deref()?)?;
        Some(parent.trace_id().to_string())
    }

    /// The origin of messages caused by handling `envelope`: their trace parent is the
    /// span handling it, when spans are exported.
    pub fn caused_by(envelope: &Envelope) -> Self {
        Self {
            correlation_id: envelope.correlation_id.clone(),
            causation_id: Some(envelope.id.clone()),
            traceparent: crate::telemetry::current_traceparent()
                .or_else(|| envelope.traceparent.clone()),
        }
    }
}

/// A new envelope for `message`, produced by `source` because of `origin`.
pub fn envelope<M: Message>(
    source: &str,
    message: &M,
    origin: &Origin,
) -> anyhow::Result<Envelope> {
    Ok(Envelope {
        id: uuid::Uuid::now_v7().to_string(),
        kind: M::TYPE.to_owned(),
        source: source.to_owned(),
        occurred_at_ms: now_ms(),
        correlation_id: origin.correlation_id.clone(),
        causation_id: origin.causation_id.clone(),
        traceparent: origin.traceparent.clone(),
        payload: serde_json::to_value(message).context("encoding a message")?,
    })
}

/// Writes `message`, produced by `source` because of `origin`, to the outbox inside the
/// caller's transaction: [`envelope`] and [`enqueue`] in one, what every use case does.
pub async fn send<M: Message>(
    connection: &mut sqlx::AnyConnection,
    source: &str,
    message: &M,
    origin: &Origin,
) -> anyhow::Result<()> {
    enqueue(connection, &envelope(source, message, origin)?).await
}

/// Adds `envelope` to the outbox inside the caller's transaction.
pub async fn enqueue(
    connection: &mut sqlx::AnyConnection,
    envelope: &Envelope,
) -> anyhow::Result<()> {
    let now = now_ms();
    sqlx::query(
        "INSERT INTO outbox (id, envelope, created_at, attempts, next_attempt_at) \
         VALUES ($1, $2, $3, 0, $3)",
    )
    .bind(envelope.id.clone())
    .bind(serde_json::to_string(envelope).context("encoding an envelope")?)
    .bind(now)
    .execute(connection)
    .await
    .context("writing to the outbox")?;
    Ok(())
}

/// Wakes a relay after an outbox write was committed, so messages leave at once rather
/// than at the relay's next idle poll.
#[derive(Clone, Debug, Default)]
pub struct Waker(Option<Arc<Notify>>);

impl Waker {
    /// A waker that wakes nothing: for a writer whose relay runs elsewhere.
    pub fn none() -> Self {
        Self(None)
    }

    /// Wakes the relay.
    pub fn wake(&self) {
        if let Some(notify) = &self.0 {
            notify.notify_one();
        }
    }
}

/// How a relay works.
#[derive(Clone, Copy, Debug)]
pub struct RelaySettings {
    /// Rows claimed and published per round.
    pub batch: u32,
    /// How long a claim keeps other relays off a row; longer than a round takes. Rows
    /// claimed by a relay that died wait this long before another (or the same one,
    /// restarted) publishes them.
    pub claim_for: Duration,
    /// How often an idle relay looks, in case a wake-up was missed (another replica
    /// wrote the row).
    pub idle_poll: Duration,
}

impl Default for RelaySettings {
    fn default() -> Self {
        Self {
            batch: 100,
            claim_for: Duration::from_secs(10),
            idle_poll: Duration::from_millis(250),
        }
    }
}

/// Publishes a service's outbox.
#[derive(Clone)]
pub struct Relay {
    service: &'static str,
    db: Database,
    bus: Arc<dyn Bus>,
    settings: RelaySettings,
    wake: Arc<Notify>,
}

/// The outbox's backlog, for metrics and tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backlog {
    /// Rows not yet published.
    pub pending: i64,
    /// Age of the oldest of them, in milliseconds.
    pub oldest_ms: Option<i64>,
}

impl Relay {
    /// A relay for `service`'s outbox in `db`, publishing to `bus`.
    pub fn new(
        service: &'static str,
        db: Database,
        bus: Arc<dyn Bus>,
        settings: RelaySettings,
    ) -> Self {
        Self {
            service,
            db,
            bus,
            settings,
            wake: Arc::new(Notify::new()),
        }
    }

    /// A handle that tells this relay there is work; give it to whoever writes the
    /// outbox, to call after committing.
    pub fn waker(&self) -> Waker {
        Waker(Some(self.wake.clone()))
    }

    /// One round: claims a batch of due rows and publishes them together, in order
    /// ([`Bus::publish_all`]), deleting them once the bus acknowledged them. Returns
    /// how many were published. On a bus failure the rows stored for certain are
    /// deleted, the first of the others is rescheduled with backoff, the rest of the batch
    /// is released, and the error returned.
    pub async fn relay_once(&self) -> anyhow::Result<usize> {
        let claimed = self.claim(now_ms()).await?;
        // A row that does not decode stops the batch where it stands, as a failed
        // publish would.
        let mut envelopes = Vec::with_capacity(claimed.len());
        let mut undecodable = None;
        for (id, envelope, _) in &claimed {
            match serde_json::from_str::<Envelope>(envelope) {
                Ok(envelope) => envelopes.push(envelope),
                Err(error) => {
                    undecodable = Some(
                        anyhow::Error::new(error)
                            .context(format!("stored envelope {id} does not decode")),
                    );
                    break;
                }
            }
        }
        // A span per publication, in the trace of the work that enqueued it; each lasts
        // as long as the batch it went out with.
        let spans: Vec<tracing::Span> = envelopes
            .iter()
            .map(|envelope| {
                let span = tracing::info_span!(
                    "publish",
                    service = self.service,
                    kind = envelope.kind,
                    id = envelope.id,
                    trace_id = tracing::field::Empty,
                );
                crate::telemetry::adopt(&span, envelope.traceparent.as_deref());
                span
            })
            .collect();
        let started = std::time::Instant::now();
        let outcome = if envelopes.is_empty() {
            Ok(())
        } else {
            tokio::time::timeout(Duration::from_secs(10), self.bus.publish_all(&envelopes))
                .await
                .unwrap_or_else(|_| {
                    Err(crate::bus::PublishFailure {
                        published: 0,
                        error: anyhow::anyhow!("the bus did not acknowledge within 10 s"),
                    })
                })
        };
        drop(spans);
        let histogram =
            metrics::histogram!("outbox_publish_duration_seconds", "service" => self.service);
        for _ in &envelopes {
            histogram.record(started.elapsed().as_secs_f64());
        }
        let (published, error) = match (outcome, undecodable) {
            (Ok(()), None) => (envelopes.len(), None),
            (Ok(()), Some(error)) => (envelopes.len(), Some(error)),
            (Err(failure), _) => (failure.published, Some(failure.error)),
        };
        let ids: Vec<String> = claimed[..published]
            .iter()
            .map(|(id, _, _)| id.clone())
            .collect();
        self.delete_published(&ids).await?;
        let Some(error) = error else {
            return Ok(published);
        };
        let (id, _, attempts) = &claimed[published];
        let attempts = attempts.saturating_add(1);
        let delay = backoff(u32::try_from(attempts).unwrap_or(u32::MAX));
        let retry_at =
            now_ms().saturating_add(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX));
        sqlx::query(
            "UPDATE outbox SET attempts = $1, next_attempt_at = $2, claimed_until = NULL WHERE id = $3",
        )
        .bind(attempts)
        .bind(retry_at)
        .bind(id.clone())
        .execute(self.db.writer())
        .await
        .context("rescheduling a row")?;
        self.release(claimed[published + 1..].iter().map(|(id, _, _)| id.clone()))
            .await?;
        metrics::counter!("outbox_publish_failures_total", "service" => self.service).increment(1);
        Err(error.context(format!("publishing outbox row {id}")))
    }

    /// Deletes rows the bus has acknowledged, in one statement: once the bus holds a
    /// message nothing needs its row (the bus keeps it for replay, the consumers' inboxes
    /// drop a second delivery), and a row kept would only cost disk. Should the process
    /// die before this, the rows are published again and the bus drops the duplicates by
    /// message id.
    async fn delete_published(&self, ids: &[String]) -> anyhow::Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let placeholders: Vec<String> = (1..=ids.len()).map(|index| format!("${index}")).collect();
        // Only numbered placeholders are spliced in; the ids are bound.
        let sql = format!(
            "DELETE FROM outbox WHERE id IN ({})",
            placeholders.join(", ")
        );
        let mut statement = sqlx::query(sqlx::AssertSqlSafe(sql));
        for id in ids {
            statement = statement.bind(id.clone());
        }
        statement
            .execute(self.db.writer())
            .await
            .context("deleting published rows")?;
        metrics::counter!("outbox_published_total", "service" => self.service)
            .increment(ids.len() as u64);
        Ok(())
    }

    /// Rows waiting to be published.
    pub async fn backlog(&self) -> anyhow::Result<Backlog> {
        let row = sqlx::query("SELECT COUNT(*) AS pending, MIN(created_at) AS oldest FROM outbox WHERE published_at IS NULL")
            .fetch_one(self.db.pool())
            .await
            .context("measuring the outbox")?;
        let oldest: Option<i64> = row.try_get("oldest")?;
        Ok(Backlog {
            pending: row.try_get("pending")?,
            oldest_ms: oldest.map(|created| now_ms().saturating_sub(created)),
        })
    }

    /// Relays until `shutdown`: straight on while there is work, waiting for a wake-up
    /// (or the idle poll) when there is none, backing off while the bus fails.
    ///
    /// On SQLite it first frees every claim ([`Relay::free_claims`]): a SQLite outbox
    /// belongs to one process, so claims found at start were made by a process that
    /// died, and its rows go out now rather than after [`RelaySettings::claim_for`].
    /// PostgreSQL outboxes are shared by replicas, whose claims run out by themselves.
    pub async fn run(self, shutdown: Shutdown) {
        if self.db.engine() == Engine::Sqlite
            && let Err(error) = self.free_claims().await
        {
            tracing::warn!(
                service = self.service,
                "freeing old claims failed: {error:#}"
            );
        }
        let mut failures = 0_u32;
        loop {
            let pause = match self.relay_once().await {
                Ok(0) => {
                    failures = 0;
                    self.record_backlog().await;
                    self.settings.idle_poll
                }
                Ok(_) => {
                    failures = 0;
                    Duration::ZERO
                }
                Err(error) => {
                    failures = failures.saturating_add(1);
                    tracing::warn!(service = self.service, "outbox relay failed: {error:#}");
                    self.record_backlog().await;
                    backoff(failures).max(Duration::from_millis(200))
                }
            };
            if pause.is_zero() {
                if shutdown.is_triggered() {
                    return;
                }
                continue;
            }
            tokio::select! {
                () = shutdown.wait() => return,
                () = self.wake.notified(), if failures == 0 => {}
                () = tokio::time::sleep(pause) => {}
            }
        }
    }

    async fn record_backlog(&self) {
        if let Ok(backlog) = self.backlog().await {
            metrics::gauge!("outbox_pending", "service" => self.service)
                .set(backlog.pending as f64);
            let age = backlog.oldest_ms.unwrap_or(0) as f64 / 1000.0;
            metrics::gauge!("outbox_oldest_pending_age_seconds", "service" => self.service)
                .set(age);
        }
    }

    async fn claim(&self, now: i64) -> anyhow::Result<Vec<(String, String, i64)>> {
        // SQLite has one writer at a time, which already makes the claim exclusive;
        // PostgreSQL needs the rows locked and others' locked rows skipped.
        let sql = match self.db.engine() {
            Engine::Sqlite => {
                "UPDATE outbox SET claimed_until = $1 WHERE id IN ( \
                   SELECT id FROM outbox WHERE published_at IS NULL AND next_attempt_at <= $2 \
                   AND (claimed_until IS NULL OR claimed_until <= $2) \
                   ORDER BY created_at, id LIMIT $3) \
                 RETURNING id, envelope, attempts, created_at"
            }
            Engine::Postgres => {
                "UPDATE outbox SET claimed_until = $1 WHERE id IN ( \
                   SELECT id FROM outbox WHERE published_at IS NULL AND next_attempt_at <= $2 \
                   AND (claimed_until IS NULL OR claimed_until <= $2) \
                   ORDER BY created_at, id LIMIT $3 FOR UPDATE SKIP LOCKED) \
                 RETURNING id, envelope, attempts, created_at"
            }
        };
        let claim_ms = i64::try_from(self.settings.claim_for.as_millis()).unwrap_or(i64::MAX);
        let rows = sqlx::query(sql)
            .bind(now.saturating_add(claim_ms))
            .bind(now)
            .bind(i64::from(self.settings.batch))
            .fetch_all(self.db.writer())
            .await
            .context("claiming outbox rows")?;
        let mut claimed = rows
            .iter()
            .map(|row| {
                Ok((
                    row.try_get::<i64, _>("created_at")?,
                    row.try_get::<String, _>("id")?,
                    row.try_get::<String, _>("envelope")?,
                    row.try_get::<i64, _>("attempts")?,
                ))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        // RETURNING does not promise an order; publish oldest first.
        claimed.sort();
        Ok(claimed
            .into_iter()
            .map(|(_, id, envelope, attempts)| (id, envelope, attempts))
            .collect())
    }

    /// Frees every claim on unpublished rows, so the next round publishes them. Only
    /// for an outbox no other live relay uses; returns how many were freed.
    pub async fn free_claims(&self) -> anyhow::Result<u64> {
        let freed = sqlx::query(
            "UPDATE outbox SET claimed_until = NULL \
             WHERE published_at IS NULL AND claimed_until IS NOT NULL",
        )
        .execute(self.db.writer())
        .await
        .context("freeing claims")?
        .rows_affected();
        if freed > 0 {
            tracing::info!(service = self.service, freed, "freed a dead relay's claims");
        }
        Ok(freed)
    }

    async fn release(&self, ids: impl Iterator<Item = String>) -> anyhow::Result<()> {
        for id in ids {
            sqlx::query("UPDATE outbox SET claimed_until = NULL WHERE id = $1")
                .bind(id)
                .execute(self.db.writer())
                .await
                .context("releasing a claim")?;
        }
        Ok(())
    }
}
