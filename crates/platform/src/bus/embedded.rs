//! The embedded bus: a SQLite file in the shop's data folder, for `bazaar up`.
//!
//! Publishing stores the message and, in the same transaction, one delivery row for
//! every subscription whose filter matches, so an acknowledged publish survives a crash
//! of the process. A consumer leases the oldest ready deliveries of its subscription
//! with one `UPDATE … RETURNING`, which makes competing consumers safe; the lease lasts
//! the ack wait, after which the delivery is ready again. Deliveries past their attempts
//! become dead letters instead of being delivered.
//!
//! **One writer.** SQLite has one writer at a time, and connections that wait for the
//! write lock poll for it, sleeping milliseconds between tries. So nothing here writes
//! through the pool: every write (publish, lease, ack, nack, replay, prune) is a request
//! to one writer task, which takes whatever requests are waiting and commits them in one
//! transaction (group commit), answering each once the commit returned. Under load a
//! commit carries hundreds of writes; idle, a write waits for nothing. Should a group
//! fail, its requests are run again one per transaction, so one bad request fails alone.
//! Reads (a subscription's next due time, its lag, its dead letters) use the pool, and
//! WAL lets them run beside the writer.
//!
//! **Wake-ups.** Each subscription has its own signal, raised when a commit queued a
//! delivery for it (a publish it matches, a nack, a replay); its waiting consumers look
//! again, and no other subscription's do.
//!
//! It serves one process: opening holds an exclusive lock on `<file>.lock` until the bus
//! is closed or the process ends, and a second process is refused with a message that
//! says so (a shop of several processes shares JetStream instead).

use std::collections::{BTreeSet, HashMap};
use std::fs::{File, TryLockError};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, anyhow};
use contracts::messaging::Envelope;
use futures_util::future::BoxFuture;
use sqlx::Row as _;
use tokio::sync::{Notify, mpsc, oneshot};

use super::{
    Bus, DeadLetter, Delivery, PublishFailure, Settle, Subscription, SubscriptionSpec,
    subject_matches,
};
use crate::clock::now_ms;
use crate::config::DatabaseUrl;
use crate::db::{Database, PoolSettings};

/// How long a message every subscription has acknowledged is kept: its id deduplicates
/// republishes until then. An outbox relay republishes within seconds of a failure or a
/// restart, and JetStream forgets ids after two minutes; a message republished later
/// still than this is delivered again and dropped by its consumers' inboxes.
pub const RETENTION: Duration = Duration::from_secs(15 * 60);

/// How often the writer deletes what [`RETENTION`] lets go, while it writes.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// The most writes one commit carries.
const GROUP: usize = 512;

/// The most writes waiting for the writer; a writer further behind makes producers and
/// consumers wait to queue theirs (back-pressure, not growth).
const QUEUE: usize = 4096;

/// The embedded bus over one SQLite file.
#[derive(Clone)]
pub struct EmbeddedBus {
    inner: Arc<Inner>,
}

struct Inner {
    /// For reads; writes go to the writer.
    db: Database,
    /// The open lock file whose exclusive lock marks the bus as this process's; taken
    /// out (and so unlocked) by [`EmbeddedBus::close`].
    lock: Mutex<Option<File>>,
    /// Where writes are queued for the writer task.
    writes: mpsc::Sender<Request>,
    /// The subscriptions, shared with the writer.
    routes: Arc<Routes>,
}

/// The subscriptions in memory: what the writer fans a publish out to, and each one's
/// wake-up signal. Loaded at open, changed by the writer after a commit that created a
/// subscription, so it always agrees with the file.
#[derive(Default)]
struct Routes(Mutex<HashMap<String, Route>>);

struct Route {
    filter: String,
    ready: Arc<Notify>,
}

impl Routes {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Route>> {
        // A poisoned lock only means a panic elsewhere; the map is still whole.
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn add(&self, name: String, filter: String) {
        self.lock().entry(name).or_insert_with(|| Route {
            filter,
            ready: Arc::new(Notify::new()),
        });
    }

    /// The names of the subscriptions whose filter matches `subject`.
    fn matching(&self, subject: &str) -> Vec<String> {
        self.lock()
            .iter()
            .filter(|(_, route)| subject_matches(&route.filter, subject))
            .map(|(name, _)| name.clone())
            .collect()
    }

    fn filter(&self, name: &str) -> Option<String> {
        self.lock().get(name).map(|route| route.filter.clone())
    }

    fn signal(&self, name: &str) -> Option<Arc<Notify>> {
        self.lock().get(name).map(|route| route.ready.clone())
    }

    fn wake<'a>(&self, names: impl IntoIterator<Item = &'a String>) {
        let routes = self.lock();
        for name in names {
            if let Some(route) = routes.get(name) {
                route.ready.notify_waiters();
            }
        }
    }
}

/// A write, as the writer takes it.
enum Op {
    /// Store these messages, in order, each with its deliveries.
    Publish(Vec<Envelope>),
    /// Create a subscription (if new) and queue the stored messages it matches.
    Subscribe { name: String, filter: String },
    /// Lease up to `max` ready deliveries of a subscription.
    Lease {
        name: String,
        max: usize,
        ack_wait_ms: i64,
        max_attempts: u32,
    },
    /// End a delivery: acknowledged.
    Ack {
        subscription: String,
        seq: i64,
        lease: String,
    },
    /// End deliveries of one lease of a subscription: acknowledged. The writer merges
    /// the [`Op::Ack`]s of a group into these, one statement per lease.
    AckAll {
        subscription: String,
        lease: String,
        seqs: Vec<i64>,
    },
    /// Make a delivery ready again at `available_at` (Unix ms).
    Nack {
        subscription: String,
        seq: i64,
        lease: String,
        available_at: i64,
    },
    /// Put a dead letter back for delivery.
    Replay { name: String, message_id: String },
    /// Delete messages published before `before_ms` that nobody still owes.
    Prune { before_ms: i64 },
}

/// What a write gave back.
enum Done {
    Nothing,
    Leased { lease: String, rows: Vec<Leased> },
    Replayed(bool),
    Pruned(u64),
}

/// One leased delivery: its message's sequence, which attempt this is, and the stored
/// envelope.
struct Leased {
    seq: i64,
    attempts: i64,
    envelope: String,
}

struct Request {
    op: Op,
    answer: oneshot::Sender<anyhow::Result<Done>>,
}

/// What a group's writes change beyond the file, applied only once it committed.
#[derive(Default)]
struct Effects {
    /// Subscriptions created.
    created: Vec<(String, String)>,
    /// Subscriptions with a delivery newly ready.
    wake: BTreeSet<String>,
}

impl EmbeddedBus {
    /// Opens (creating if needed) the bus stored at `path`, refusing when another
    /// process has it open.
    pub async fn open(path: &Path) -> anyhow::Result<Self> {
        let lock = lock_for_this_process(path)?;
        let db =
            Database::connect(&DatabaseUrl::sqlite_file(path), PoolSettings::default()).await?;
        db.migrate(sqlx::migrate!("./migrations/bus")).await?;
        end_dead_leases(&db).await?;
        let routes = Arc::new(Routes::default());
        for row in sqlx::query("SELECT name, filter FROM subscriptions")
            .fetch_all(db.pool())
            .await
            .context("reading subscriptions")?
        {
            routes.add(row.try_get("name")?, row.try_get("filter")?);
        }
        let (writes, queue) = mpsc::channel(QUEUE);
        tokio::spawn(write_loop(db.clone(), routes.clone(), queue));
        let bus = Self {
            inner: Arc::new(Inner {
                db,
                lock: Mutex::new(Some(lock)),
                writes,
                routes,
            }),
        };
        // Pruned at each start, and by the writer every minute while it writes.
        bus.prune(retained_since()).await?;
        Ok(bus)
    }

    /// Deletes messages published before `before_ms` (Unix ms) that no subscription
    /// still has to handle, dead letters included. Their ids are forgotten too, so
    /// `before_ms` must lie beyond the last time a producer could republish them (the
    /// outbox relay republishes within seconds); [`RETENTION`] is fifteen minutes.
    pub async fn prune(&self, before_ms: i64) -> anyhow::Result<u64> {
        match self.write(Op::Prune { before_ms }).await? {
            Done::Pruned(deleted) => Ok(deleted),
            _ => Err(anyhow!(
                "the bus's writer answered a prune with something else"
            )),
        }
    }

    /// Closes the file; pending work stays in it for the next open.
    pub async fn close(&self) {
        self.inner.db.close().await;
        // Unlocked only now, so that no other process opens the file while this one
        // still writes to it. A poisoned lock only means a panic elsewhere: unlock.
        let mut lock = self.inner.lock.lock().unwrap_or_else(|e| e.into_inner());
        lock.take();
    }

    /// Queues `op` for the writer and waits for its answer, given once the commit that
    /// carried it returned.
    async fn write(&self, op: Op) -> anyhow::Result<Done> {
        let (answer, answered) = oneshot::channel();
        self.inner
            .writes
            .send(Request { op, answer })
            .await
            .map_err(|_| anyhow!("the embedded bus's writer has stopped"))?;
        answered
            .await
            .map_err(|_| anyhow!("the embedded bus's writer stopped before answering"))?
    }

    async fn open_subscription(
        &self,
        spec: &SubscriptionSpec,
    ) -> anyhow::Result<Box<dyn Subscription>> {
        match self.inner.routes.filter(&spec.name) {
            Some(filter) if filter == spec.filter => {}
            Some(filter) => anyhow::bail!(
                "subscription {} exists with filter {filter:?}, not {:?}",
                spec.name,
                spec.filter
            ),
            None => {
                self.write(Op::Subscribe {
                    name: spec.name.clone(),
                    filter: spec.filter.clone(),
                })
                .await?;
            }
        }
        let ready = self
            .inner
            .routes
            .signal(&spec.name)
            .with_context(|| format!("subscription {} was not created", spec.name))?;
        Ok(Box::new(EmbeddedSubscription {
            bus: self.clone(),
            spec: spec.clone(),
            ready,
        }))
    }

    /// Leases up to `max` of the oldest ready deliveries, dead-lettering those out of
    /// attempts.
    async fn lease(&self, spec: &SubscriptionSpec, max: usize) -> anyhow::Result<Vec<Delivery>> {
        let op = Op::Lease {
            name: spec.name.clone(),
            max,
            ack_wait_ms: i64::try_from(spec.ack_wait.as_millis()).unwrap_or(i64::MAX),
            max_attempts: spec.max_attempts,
        };
        let Done::Leased { lease, rows } = self.write(op).await? else {
            anyhow::bail!("the bus's writer answered a lease with something else");
        };
        rows.into_iter()
            .map(|row| {
                let envelope: Envelope =
                    serde_json::from_str(&row.envelope).context("decoding a stored envelope")?;
                let settle = EmbeddedSettle {
                    bus: self.clone(),
                    subscription: spec.name.clone(),
                    seq: row.seq,
                    lease: lease.clone(),
                };
                let attempt = u32::try_from(row.attempts).unwrap_or(u32::MAX);
                Ok(Delivery::new(envelope, attempt, Box::new(settle)))
            })
            .collect()
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
        let op = Op::Replay {
            name: name.to_owned(),
            message_id: message_id.to_owned(),
        };
        match self.write(op).await? {
            Done::Replayed(replayed) => Ok(replayed),
            _ => Err(anyhow!(
                "the bus's writer answered a replay with something else"
            )),
        }
    }
}

/// Makes every leased delivery ready again. The bus is this process's (its lock says
/// so), so a lease found at open was taken by a process that died: its deliveries go out
/// again now, not when the lease would have run out. The attempt stays counted.
async fn end_dead_leases(db: &Database) -> anyhow::Result<()> {
    let ended = sqlx::query(
        "UPDATE deliveries SET available_at = $1, lease = NULL \
         WHERE state = 'pending' AND lease IS NOT NULL",
    )
    .bind(now_ms())
    .execute(db.writer())
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

/// The writer: takes every request waiting (up to [`GROUP`]) and commits them together,
/// until every handle on the bus is gone.
async fn write_loop(db: Database, routes: Arc<Routes>, mut queue: mpsc::Receiver<Request>) {
    let mut group = Vec::with_capacity(GROUP);
    let mut pruned = tokio::time::Instant::now();
    while queue.recv_many(&mut group, GROUP).await > 0 {
        // The file grows only while it is written to, so pruning between groups keeps
        // it bounded: about [`RETENTION`]'s worth of messages.
        if pruned.elapsed() >= PRUNE_EVERY {
            pruned = tokio::time::Instant::now();
            let prune = Op::Prune {
                before_ms: retained_since(),
            };
            if let Err(error) = commit(&db, &routes, &[&prune]).await {
                tracing::warn!("pruning the embedded bus failed: {error:#}");
            }
        }
        metrics::histogram!("bus_writes_per_commit").record(group.len() as f64);
        let ops: Vec<&Op> = group.iter().map(|request| &request.op).collect();
        match commit(&db, &routes, &ops).await {
            Ok((done, effects)) => {
                apply(&routes, effects);
                for (request, done) in group.drain(..).zip(done) {
                    // A requester that stopped waiting no longer needs the answer.
                    let _ = request.answer.send(Ok(done));
                }
            }
            // One failed, or the commit did: each on its own, so only a bad one fails.
            Err(_) if group.len() > 1 => {
                for request in group.drain(..) {
                    let answer = match commit(&db, &routes, &[&request.op]).await {
                        Ok((mut done, effects)) => {
                            apply(&routes, effects);
                            done.pop().context("the writer lost an answer")
                        }
                        Err(error) => Err(error),
                    };
                    let _ = request.answer.send(answer);
                }
            }
            Err(error) => {
                for request in group.drain(..) {
                    let _ = request.answer.send(Err(anyhow!("{error:#}")));
                }
            }
        }
    }
}

/// The publication time (Unix ms) before which acknowledged messages may go.
fn retained_since() -> i64 {
    let retention = i64::try_from(RETENTION.as_millis()).unwrap_or(i64::MAX);
    now_ms().saturating_sub(retention)
}

/// What a committed group changes in memory: new routes first, then wake-ups.
fn apply(routes: &Routes, effects: Effects) {
    for (name, filter) in effects.created {
        routes.add(name, filter);
    }
    routes.wake(&effects.wake);
}

/// Runs `ops` in one transaction; their answers, in order, once it committed.
async fn commit(
    db: &Database,
    routes: &Routes,
    ops: &[&Op],
) -> anyhow::Result<(Vec<Done>, Effects)> {
    let mut tx = db.begin().await.context("starting a bus write")?;
    let mut effects = Effects::default();
    let mut done = Vec::with_capacity(ops.len());
    // Acknowledgements are many and alike: gathered per lease, they take a statement
    // per consumer's batch instead of one each, run before the rest.
    let mut acks: Vec<Op> = Vec::new();
    for op in ops {
        if let Op::Ack {
            subscription,
            seq,
            lease,
        } = op
        {
            match acks.iter_mut().find(|ack| {
                matches!(ack, Op::AckAll { subscription: s, lease: l, .. } if s == subscription && l == lease)
            }) {
                Some(Op::AckAll { seqs, .. }) => seqs.push(*seq),
                _ => acks.push(Op::AckAll {
                    subscription: subscription.clone(),
                    lease: lease.clone(),
                    seqs: vec![*seq],
                }),
            }
        }
    }
    for ack in &acks {
        run(&mut tx, routes, &mut effects, ack).await?;
    }
    for op in ops {
        if matches!(op, Op::Ack { .. }) {
            done.push(Done::Nothing);
        } else {
            done.push(run(&mut tx, routes, &mut effects, op).await?);
        }
    }
    tx.commit().await.context("committing bus writes")?;
    Ok((done, effects))
}

/// `$first, $first+1, …`: `count` numbered placeholders, for an `IN (…)` list.
fn placeholders(first: usize, count: usize) -> String {
    (first..first + count)
        .map(|index| format!("${index}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// One write, inside the group's transaction.
async fn run(
    tx: &mut sqlx::AnyConnection,
    routes: &Routes,
    effects: &mut Effects,
    op: &Op,
) -> anyhow::Result<Done> {
    match op {
        Op::Publish(envelopes) => {
            for envelope in envelopes {
                store(tx, routes, effects, envelope).await?;
            }
            Ok(Done::Nothing)
        }
        Op::Subscribe { name, filter } => {
            subscribe(tx, name, filter).await?;
            effects.created.push((name.clone(), filter.clone()));
            effects.wake.insert(name.clone());
            Ok(Done::Nothing)
        }
        Op::Lease {
            name,
            max,
            ack_wait_ms,
            max_attempts,
        } => lease(tx, name, *max, *ack_wait_ms, *max_attempts).await,
        Op::Ack {
            subscription,
            seq,
            lease,
        } => {
            acknowledge(tx, subscription, lease, &[*seq]).await?;
            Ok(Done::Nothing)
        }
        Op::AckAll {
            subscription,
            lease,
            seqs,
        } => {
            acknowledge(tx, subscription, lease, seqs).await?;
            Ok(Done::Nothing)
        }
        Op::Nack {
            subscription,
            seq,
            lease,
            available_at,
        } => {
            sqlx::query(
                "UPDATE deliveries SET available_at = $1, lease = NULL \
                 WHERE subscription = $2 AND seq = $3 AND lease = $4",
            )
            .bind(*available_at)
            .bind(subscription.clone())
            .bind(*seq)
            .bind(lease.clone())
            .execute(&mut *tx)
            .await
            .context("refusing a delivery")?;
            effects.wake.insert(subscription.clone());
            Ok(Done::Nothing)
        }
        Op::Replay { name, message_id } => {
            let replayed = sqlx::query(
                "UPDATE deliveries SET state = 'pending', attempts = 0, available_at = $1, lease = NULL \
                 WHERE subscription = $2 AND state = 'dead' \
                   AND seq = (SELECT seq FROM messages WHERE id = $3)",
            )
            .bind(now_ms())
            .bind(name.clone())
            .bind(message_id.clone())
            .execute(&mut *tx)
            .await
            .context("replaying a dead letter")?
            .rows_affected();
            effects.wake.insert(name.clone());
            Ok(Done::Replayed(replayed == 1))
        }
        Op::Prune { before_ms } => {
            let deleted = sqlx::query(
                "DELETE FROM messages WHERE published_at < $1 \
                 AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.seq = messages.seq)",
            )
            .bind(*before_ms)
            .execute(&mut *tx)
            .await
            .context("pruning delivered messages")?
            .rows_affected();
            Ok(Done::Pruned(deleted))
        }
    }
}

/// Ends deliveries `seqs` of `subscription`, if `lease` is still theirs: only the
/// current lease may settle, since after an ack timeout the message may be with another
/// consumer, whose delivery this must not end.
async fn acknowledge(
    tx: &mut sqlx::AnyConnection,
    subscription: &str,
    lease: &str,
    seqs: &[i64],
) -> anyhow::Result<()> {
    // Only numbered placeholders are spliced in; the sequences are bound.
    let sql = format!(
        "DELETE FROM deliveries WHERE subscription = $1 AND lease = $2 AND seq IN ({})",
        placeholders(3, seqs.len())
    );
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(subscription.to_owned())
        .bind(lease.to_owned());
    for seq in seqs {
        query = query.bind(*seq);
    }
    query
        .execute(&mut *tx)
        .await
        .context("acknowledging deliveries")?;
    Ok(())
}

/// Stores one message with a delivery for each subscription it matches; a message id
/// seen before is a duplicate, and nothing more is done.
async fn store(
    tx: &mut sqlx::AnyConnection,
    routes: &Routes,
    effects: &mut Effects,
    envelope: &Envelope,
) -> anyhow::Result<()> {
    let json = serde_json::to_string(envelope).context("encoding an envelope")?;
    let now = now_ms();
    let stored = sqlx::query(
        "INSERT INTO messages (id, subject, envelope, published_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (id) DO NOTHING RETURNING seq",
    )
    .bind(envelope.id.clone())
    .bind(envelope.kind.clone())
    .bind(json)
    .bind(now)
    .fetch_optional(&mut *tx)
    .await
    .context("storing a message")?;
    let Some(row) = stored else {
        return Ok(());
    };
    let seq: i64 = row.try_get("seq")?;
    // The subscriptions in memory, and those this group created before this write: the
    // writer is the only one to change either, so none is missed.
    let mut subscribers = routes.matching(&envelope.kind);
    subscribers.extend(
        effects
            .created
            .iter()
            .filter(|(name, filter)| {
                subject_matches(filter, &envelope.kind) && !subscribers.contains(name)
            })
            .map(|(name, _)| name.clone())
            .collect::<Vec<_>>(),
    );
    if subscribers.is_empty() {
        return Ok(());
    }
    // One row per subscriber, in one statement; only numbered placeholders are spliced
    // in, and the names are bound.
    let rows: Vec<String> = (0..subscribers.len())
        .map(|index| format!("(${}, $1, 0, $2, 'pending')", index + 3))
        .collect();
    let sql = format!(
        "INSERT INTO deliveries (subscription, seq, attempts, available_at, state) VALUES {}",
        rows.join(", ")
    );
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(seq).bind(now);
    for name in &subscribers {
        query = query.bind(name.clone());
    }
    query
        .execute(&mut *tx)
        .await
        .context("queueing deliveries")?;
    effects.wake.extend(subscribers);
    Ok(())
}

/// Records a subscription and queues every stored message it matches, so it sees what
/// was published before it existed, as a JetStream consumer would.
async fn subscribe(tx: &mut sqlx::AnyConnection, name: &str, filter: &str) -> anyhow::Result<()> {
    let created = sqlx::query(
        "INSERT INTO subscriptions (name, filter) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
    )
    .bind(name.to_owned())
    .bind(filter.to_owned())
    .execute(&mut *tx)
    .await
    .context("creating a subscription")?
    .rows_affected();
    if created == 0 {
        return Ok(());
    }
    let stored = sqlx::query("SELECT seq, subject FROM messages ORDER BY seq")
        .fetch_all(&mut *tx)
        .await
        .context("reading stored messages")?;
    let now = now_ms();
    for row in stored {
        let subject: String = row.try_get("subject")?;
        if subject_matches(filter, &subject) {
            sqlx::query(
                "INSERT INTO deliveries (subscription, seq, attempts, available_at, state) \
                 VALUES ($1, $2, 0, $3, 'pending') ON CONFLICT DO NOTHING",
            )
            .bind(name.to_owned())
            .bind(row.try_get::<i64, _>("seq")?)
            .bind(now)
            .execute(&mut *tx)
            .await
            .context("queueing a stored message")?;
        }
    }
    Ok(())
}

/// Leases up to `max` ready deliveries of subscription `name`, oldest first; those past
/// `max_attempts` become dead letters instead.
async fn lease(
    tx: &mut sqlx::AnyConnection,
    name: &str,
    max: usize,
    ack_wait_ms: i64,
    max_attempts: u32,
) -> anyhow::Result<Done> {
    let now = now_ms();
    let lease = uuid::Uuid::now_v7().to_string();
    let leased = sqlx::query(
        "UPDATE deliveries SET attempts = attempts + 1, available_at = $1, lease = $2 \
         WHERE subscription = $3 AND seq IN ( \
             SELECT seq FROM deliveries \
             WHERE subscription = $3 AND state = 'pending' AND available_at <= $4 \
             ORDER BY seq LIMIT $5) \
         RETURNING seq, attempts",
    )
    .bind(now.saturating_add(ack_wait_ms))
    .bind(lease.clone())
    .bind(name.to_owned())
    .bind(now)
    .bind(i64::try_from(max).unwrap_or(i64::MAX))
    .fetch_all(&mut *tx)
    .await
    .context("leasing deliveries")?;
    let mut live = Vec::with_capacity(leased.len());
    for row in leased {
        let seq: i64 = row.try_get("seq")?;
        let attempts: i64 = row.try_get("attempts")?;
        if attempts <= i64::from(max_attempts) {
            live.push((seq, attempts));
            continue;
        }
        // Out of attempts, by nacks or by ack timeouts alike: a dead letter.
        sqlx::query(
            "UPDATE deliveries SET state = 'dead', attempts = attempts - 1, lease = NULL \
             WHERE subscription = $1 AND seq = $2",
        )
        .bind(name.to_owned())
        .bind(seq)
        .execute(&mut *tx)
        .await
        .context("dead-lettering a delivery")?;
        tracing::warn!(
            subscription = name,
            seq,
            "message dead-lettered after its last attempt"
        );
        metrics::counter!("bus_dead_lettered_total", "subscription" => name.to_owned())
            .increment(1);
    }
    // RETURNING promises no order: deliver oldest first.
    live.sort_unstable();
    let mut envelopes = HashMap::with_capacity(live.len());
    if !live.is_empty() {
        // Only numbered placeholders are spliced in; the sequences are bound.
        let sql = format!(
            "SELECT seq, envelope FROM messages WHERE seq IN ({})",
            placeholders(1, live.len())
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (seq, _) in &live {
            query = query.bind(*seq);
        }
        for row in query
            .fetch_all(&mut *tx)
            .await
            .context("reading leased messages")?
        {
            envelopes.insert(
                row.try_get::<i64, _>("seq")?,
                row.try_get::<String, _>("envelope")?,
            );
        }
    }
    let rows = live
        .into_iter()
        .map(|(seq, attempts)| {
            let envelope = envelopes
                .remove(&seq)
                .with_context(|| format!("leased delivery {seq} has no message"))?;
            Ok(Leased {
                seq,
                attempts,
                envelope,
            })
        })
        .collect::<anyhow::Result<_>>()?;
    Ok(Done::Leased { lease, rows })
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
        Box::pin(async move {
            self.write(Op::Publish(vec![envelope.clone()])).await?;
            Ok(())
        })
    }

    /// All in one transaction: every envelope is stored, or none is.
    fn publish_all<'a>(
        &'a self,
        envelopes: &'a [Envelope],
    ) -> BoxFuture<'a, Result<(), PublishFailure>> {
        Box::pin(async move {
            self.write(Op::Publish(envelopes.to_vec()))
                .await
                .map(|_| ())
                .map_err(|error| PublishFailure {
                    published: 0,
                    error,
                })
        })
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
    /// Raised when a delivery of this subscription became ready.
    ready: Arc<Notify>,
}

impl EmbeddedSubscription {
    /// Up to `max` deliveries, waiting up to `wait` for the first.
    async fn take(&self, max: usize, wait: Duration) -> anyhow::Result<Vec<Delivery>> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            // Registered before looking, so a publish between the look and the wait is
            // not missed (`notify_waiters` reaches a future from its creation on).
            let notified = self.ready.notified();
            let leased = self.bus.lease(&self.spec, max).await?;
            if !leased.is_empty() {
                return Ok(leased);
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Ok(leased);
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
    }
}

impl Subscription for EmbeddedSubscription {
    fn next(&mut self, wait: Duration) -> BoxFuture<'_, anyhow::Result<Option<Delivery>>> {
        Box::pin(async move { Ok(self.take(1, wait).await?.pop()) })
    }

    fn next_batch(
        &mut self,
        max: usize,
        wait: Duration,
    ) -> BoxFuture<'_, anyhow::Result<Vec<Delivery>>> {
        Box::pin(self.take(max.max(1), wait))
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
            let op = Op::Ack {
                subscription: self.subscription,
                seq: self.seq,
                lease: self.lease,
            };
            self.bus.write(op).await?;
            Ok(())
        })
    }

    fn nack(self: Box<Self>, delay: Duration) -> BoxFuture<'static, anyhow::Result<()>> {
        Box::pin(async move {
            let delay = i64::try_from(delay.as_millis()).unwrap_or(i64::MAX);
            let op = Op::Nack {
                subscription: self.subscription,
                seq: self.seq,
                lease: self.lease,
                available_at: now_ms().saturating_add(delay),
            };
            self.bus.write(op).await?;
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
