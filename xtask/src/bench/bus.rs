//! `cargo xtask bench bus`: the backbone end to end, outbox → bus → inbox, on both
//! adapters, beside the raw publish rate of the same NATS server.
//!
//! Each adapter runs twice: saturated (eight producers commit as fast as they can), for
//! throughput; then paced at half that rate, for commit-to-handled latency that is not
//! just queueing. Latency is measured from the producer's commit to the consumer's
//! commit of the effect, in one process, on one clock.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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
use test_support::nats::NatsServer;

/// Messages per run.
const MESSAGES: usize = 3000;

/// Producers committing them side by side.
const PRODUCERS: usize = 8;

/// What one run measured.
struct Run {
    per_second: f64,
    /// How fast the producer alone committed: the ceiling of a saturated run.
    produced_per_second: f64,
    p50: Duration,
    p99: Duration,
}

pub(crate) fn run(args: &[&str]) -> anyhow::Result<()> {
    anyhow::ensure!(args.is_empty(), "usage: cargo xtask bench bus");
    // `cargo xtask` builds in debug; a benchmark of debug code measures nothing useful.
    if cfg!(debug_assertions) {
        return crate::run(
            "cargo",
            &[
                "run",
                "--release",
                "--locked",
                "--quiet",
                "--package",
                "xtask",
                "--",
                "bench",
                "bus",
            ],
        );
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let nats = NatsServer::start();
        let raw_core = raw_core_publish(&nats.url()).await?;
        let raw_js = raw_jetstream_publish(&nats.url()).await?;

        let mut rows = Vec::new();
        for adapter in ["embedded", "jetstream"] {
            let saturated = end_to_end(adapter, &nats.url(), None).await?;
            let rate = saturated.per_second / 2.0;
            let paced = end_to_end(adapter, &nats.url(), Some(rate)).await?;
            rows.push((adapter, saturated, rate, paced));
        }

        println!(
            "\nbus benchmark: {MESSAGES} messages per run from {PRODUCERS} producers, outbox → bus → inbox"
        );
        println!(
            "| path | messages/s (saturated) | producers' commits/s meanwhile | p50 / p99 commit→handled at half that rate |"
        );
        println!("|---|---|---|---|");
        for (adapter, saturated, rate, paced) in &rows {
            println!(
                "| {adapter} | {:.0} | {:.0} | {:.2} ms / {:.2} ms (at {rate:.0}/s) |",
                saturated.per_second,
                saturated.produced_per_second,
                paced.p50.as_secs_f64() * 1000.0,
                paced.p99.as_secs_f64() * 1000.0,
            );
        }
        println!("| raw NATS core publish, same server | {raw_core:.0} | | n/a |");
        println!("| raw JetStream publish awaiting each ack, same server | {raw_js:.0} | | n/a |");
        for (adapter, saturated, _, _) in &rows {
            println!(
                "{adapter}: {:.2}x the raw JetStream acknowledged publish rate",
                saturated.per_second / raw_js
            );
        }
        println!("machine: {}", super::machine());
        Ok(())
    })
}

/// Publishes `MESSAGES` plain NATS messages and flushes: the broker's ceiling.
async fn raw_core_publish(url: &str) -> anyhow::Result<f64> {
    let client = async_nats::connect(url).await?;
    let started = Instant::now();
    for n in 0..MESSAGES * 10 {
        client.publish("raw.core", n.to_string().into()).await?;
    }
    client.flush().await?;
    Ok((MESSAGES * 10) as f64 / started.elapsed().as_secs_f64())
}

/// Publishes to a stream, awaiting each acknowledgement as the relay does.
async fn raw_jetstream_publish(url: &str) -> anyhow::Result<f64> {
    let client = async_nats::connect(url).await?;
    let jetstream = async_nats::jetstream::new(client);
    jetstream
        .get_or_create_stream(async_nats::jetstream::stream::Config {
            name: "RAW".to_owned(),
            subjects: vec!["raw.js".to_owned()],
            ..Default::default()
        })
        .await?;
    let started = Instant::now();
    for n in 0..MESSAGES {
        jetstream
            .publish("raw.js", n.to_string().into())
            .await?
            .await?;
    }
    Ok(MESSAGES as f64 / started.elapsed().as_secs_f64())
}

/// One run: producers commit `MESSAGES` state changes with their messages (at `rate`
/// per second, or as fast as they can), a relay publishes, a consumer applies them.
async fn end_to_end(adapter: &str, nats_url: &str, rate: Option<f64>) -> anyhow::Result<Run> {
    COMMITTED
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .clear();
    let folder = tempfile::tempdir()?;
    let bus: Arc<dyn Bus> = match adapter {
        "embedded" => Arc::new(EmbeddedBus::open(&folder.path().join("bus.db")).await?),
        _ => {
            let stream = format!("BENCH{}", uuid::Uuid::now_v7().simple());
            Arc::new(JetStreamBus::connect(nats_url, &stream).await?)
        }
    };
    let url = DatabaseUrl::sqlite_file(&folder.path().join("service.db"));
    let db = Database::connect(&url, PoolSettings::default()).await?;
    outbox::migrate(&db).await?;
    let shutdown = Shutdown::new();
    let relay = Relay::new("bench", db.clone(), bus.clone(), RelaySettings::default());
    let waker = relay.waker();
    tokio::spawn(relay.run(shutdown.clone()));
    let clock = Instant::now();
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(MESSAGES)));
    let handler = Arc::new(Record {
        clock,
        latencies: latencies.clone(),
    });
    let spec = SubscriptionSpec::new("bench.consumer", "bench.>");
    let consumer = Consumer::new(db.clone(), bus.clone(), &spec, handler).await?;
    tokio::spawn(consumer.run(shutdown.clone()));

    // Several producers, as a service's concurrent requests are: one alone measures
    // its own round trips to SQLite, not the backbone.
    let started = Instant::now();
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|first| {
            let (db, waker) = (db.clone(), waker.clone());
            tokio::spawn(async move {
                produce(
                    &db,
                    &waker,
                    clock,
                    started,
                    rate,
                    (first..MESSAGES).step_by(PRODUCERS),
                )
                .await
            })
        })
        .collect();
    for producer in producers {
        producer.await??;
    }
    let produced = started.elapsed();
    let deadline = Instant::now() + Duration::from_secs(300);
    while latencies
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .len()
        < MESSAGES
    {
        anyhow::ensure!(
            Instant::now() < deadline,
            "{adapter}: messages did not all arrive"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = started.elapsed();
    shutdown.trigger();
    let mut latencies = latencies
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .clone();
    latencies.sort();
    let at = |quantile: f64| {
        latencies[((latencies.len() as f64 * quantile) as usize).min(latencies.len() - 1)]
    };
    Ok(Run {
        per_second: MESSAGES as f64 / elapsed.as_secs_f64(),
        produced_per_second: MESSAGES as f64 / produced.as_secs_f64(),
        p50: at(0.50),
        p99: at(0.99),
    })
}

/// Commits message `n` for each of `numbers`, each in a transaction of its own with its
/// message in the outbox, at `rate` per second overall (message `n` is due `n / rate`
/// seconds after `started`) or as fast as it can.
async fn produce(
    db: &Database,
    waker: &outbox::Waker,
    clock: Instant,
    started: Instant,
    rate: Option<f64>,
    numbers: impl Iterator<Item = usize>,
) -> anyhow::Result<()> {
    for n in numbers {
        if let Some(rate) = rate {
            let due = started + Duration::from_secs_f64(n as f64 / rate);
            tokio::time::sleep_until(due.into()).await;
        }
        let mut tx = db.begin().await?;
        let envelope = Envelope {
            id: uuid::Uuid::now_v7().to_string(),
            kind: "bench.happened.v1".to_owned(),
            source: "bench".to_owned(),
            occurred_at_ms: 0,
            correlation_id: "bench".to_owned(),
            causation_id: None,
            traceparent: None,
            payload: serde_json::json!({ "n": n }),
        };
        outbox::enqueue(&mut tx, &envelope).await?;
        // Stamped just before the commit, so the consumer always finds it; the latency
        // is then at most a commit's duration too long, never too short.
        let committed = u64::try_from(clock.elapsed().as_nanos()).unwrap_or(u64::MAX);
        COMMITTED
            .lock()
            .map_err(|_| anyhow::anyhow!("poisoned"))?
            .insert(envelope.id.clone(), committed);
        tx.commit().await?;
        waker.wake();
    }
    Ok(())
}

/// Commit times by message id, in nanoseconds on the run's clock.
static COMMITTED: std::sync::LazyLock<Mutex<std::collections::HashMap<String, u64>>> =
    std::sync::LazyLock::new(|| Mutex::new(std::collections::HashMap::new()));

/// Records how long after its commit each message was handled.
struct Record {
    clock: Instant,
    latencies: Arc<Mutex<Vec<Duration>>>,
}

impl Handler for Record {
    fn handle<'a>(
        &'a self,
        _connection: &'a mut sqlx::AnyConnection,
        envelope: &'a Envelope,
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            let now = u64::try_from(self.clock.elapsed().as_nanos()).unwrap_or(u64::MAX);
            let committed = COMMITTED
                .lock()
                .map_err(|_| anyhow::anyhow!("poisoned"))?
                .get(&envelope.id)
                .copied()
                .unwrap_or(now);
            self.latencies
                .lock()
                .map_err(|_| anyhow::anyhow!("poisoned"))?
                .push(Duration::from_nanos(now.saturating_sub(committed)));
            Ok(())
        })
    }
}
