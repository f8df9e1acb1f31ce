//! A producer and a consumer in one process, for crash tests: it is killed with SIGKILL
//! at random points and started again until it reports `done`.
//!
//! Usage: `crash-worker <data dir> <total> embedded | jetstream <nats url>`
//!
//! The producer commits `items` rows one at a time, each with a message in the outbox;
//! the relay publishes them; the consumer applies each message as an `effects` row
//! through the inbox. Everything lives in `<data dir>/service.db` (and, embedded,
//! `<data dir>/bus.db`). It prints `done` and exits once `total` effects exist.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use contracts::messaging::Envelope;
use futures_util::future::BoxFuture;
use platform::bus::embedded::EmbeddedBus;
use platform::bus::jetstream::JetStreamBus;
use platform::bus::{Bus, SubscriptionSpec};
use platform::config::DatabaseUrl;
use platform::db::{Database, PoolSettings};
use platform::inbox::{Consumer, Handler};
use platform::outbox::{self, Relay, RelaySettings};
use platform::shutdown::Shutdown;
use sqlx::Row as _;

#[tokio::main]
#[allow(
    clippy::print_stdout,
    reason = "`done` on stdout is how the test learns the worker finished"
)]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (folder, total, bus) = match args.as_slice() {
        [folder, total, kind, rest @ ..] => (
            PathBuf::from(folder),
            total.parse::<i64>()?,
            (kind.clone(), rest.to_vec()),
        ),
        _ => {
            anyhow::bail!("usage: crash-worker <data dir> <total> embedded | jetstream <nats url>")
        }
    };
    let bus: Arc<dyn Bus> = match (bus.0.as_str(), bus.1.as_slice()) {
        ("embedded", []) => Arc::new(EmbeddedBus::open(&folder.join("bus.db")).await?),
        ("jetstream", [url]) => Arc::new(connect_until_up(url).await?),
        _ => anyhow::bail!("unknown bus"),
    };
    let db = Database::connect(
        &DatabaseUrl::sqlite_file(&folder.join("service.db")),
        PoolSettings::default(),
    )
    .await?;
    outbox::migrate(&db).await?;
    for table in ["items", "effects"] {
        let sql = format!("CREATE TABLE IF NOT EXISTS {table} (n BIGINT NOT NULL)");
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(db.writer())
            .await?;
    }

    let shutdown = Shutdown::new();
    let relay = Relay::new("crash", db.clone(), bus.clone(), RelaySettings::default());
    let waker = relay.waker();
    tokio::spawn(relay.run(shutdown.clone()));
    let spec = SubscriptionSpec {
        ack_wait: Duration::from_secs(2),
        max_attempts: 1000,
        ..SubscriptionSpec::new("crash.effects", "crash.>")
    };
    let consumer = Consumer::new(db.clone(), bus.clone(), &spec, Arc::new(Apply)).await?;
    tokio::spawn(consumer.run(shutdown.clone()));

    loop {
        let produced = count(&db, "items").await?;
        if produced < total {
            produce(&db, produced).await?;
            waker.wake();
        } else {
            let effects = count(&db, "effects").await?;
            if effects >= total {
                println!("done");
                shutdown.trigger();
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// After a broker restart the server may take a moment to listen again.
async fn connect_until_up(url: &str) -> anyhow::Result<JetStreamBus> {
    let mut last = None;
    for _ in 0..100 {
        match JetStreamBus::connect(url, "CRASH").await {
            Ok(bus) => return Ok(bus),
            Err(error) => last = Some(error),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(last
        .unwrap_or_else(|| anyhow::anyhow!("no attempt"))
        .context("connecting to JetStream"))
}

/// Commits item `n` and its message in one transaction.
async fn produce(db: &Database, n: i64) -> anyhow::Result<()> {
    let mut tx = db.begin().await?;
    sqlx::query("INSERT INTO items (n) VALUES ($1)")
        .bind(n)
        .execute(&mut *tx)
        .await?;
    let envelope = Envelope {
        id: uuid::Uuid::now_v7().to_string(),
        kind: "crash.item_made.v1".to_owned(),
        source: "crash".to_owned(),
        occurred_at_ms: 0,
        correlation_id: format!("item-{n}"),
        causation_id: None,
        traceparent: None,
        payload: serde_json::json!({ "n": n }),
    };
    outbox::enqueue(&mut tx, &envelope).await?;
    tx.commit().await.context("committing an item")
}

async fn count(db: &Database, table: &str) -> anyhow::Result<i64> {
    let sql = format!("SELECT COUNT(*) AS n FROM {table}");
    Ok(sqlx::query(sqlx::AssertSqlSafe(sql))
        .fetch_one(db.pool())
        .await?
        .try_get("n")?)
}

/// Records the message's number as an effect.
struct Apply;

impl Handler for Apply {
    fn handle<'a>(
        &'a self,
        connection: &'a mut sqlx::AnyConnection,
        envelope: &'a Envelope,
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            let n = envelope.payload["n"].as_i64().context("a number")?;
            sqlx::query("INSERT INTO effects (n) VALUES ($1)")
                .bind(n)
                .execute(connection)
                .await?;
            Ok(())
        })
    }
}
