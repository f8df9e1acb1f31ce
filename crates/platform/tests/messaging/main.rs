//! The outbox relay and the inbox, against SQLite and PostgreSQL, publishing to and
//! consuming from the embedded bus.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use contracts::messaging::Envelope;
use futures_util::future::BoxFuture;
use platform::bus::embedded::EmbeddedBus;
use platform::bus::{Bus, DeadLetter, Subscription, SubscriptionSpec};
use platform::db::{Database, PoolSettings};
use platform::inbox::{self, Consumer, Handler, Outcome};
use platform::outbox::{self, Relay, RelaySettings};
use sqlx::Row as _;
use test_support::{Engine, TestDatabase};

/// A real bus with a switch that makes it fail, and a count of publish calls.
struct Switchable {
    inner: EmbeddedBus,
    down: AtomicBool,
    publishes: AtomicUsize,
}

impl Bus for Switchable {
    fn publish<'a>(&'a self, envelope: &'a Envelope) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            anyhow::ensure!(!self.down.load(Ordering::SeqCst), "the bus is down");
            self.publishes.fetch_add(1, Ordering::SeqCst);
            self.inner.publish(envelope).await
        })
    }

    fn subscribe<'a>(
        &'a self,
        spec: &'a SubscriptionSpec,
    ) -> BoxFuture<'a, anyhow::Result<Box<dyn Subscription>>> {
        self.inner.subscribe(spec)
    }

    fn pending<'a>(&'a self, name: &'a str) -> BoxFuture<'a, anyhow::Result<u64>> {
        self.inner.pending(name)
    }

    fn dead_letters<'a>(&'a self, name: &'a str) -> BoxFuture<'a, anyhow::Result<Vec<DeadLetter>>> {
        self.inner.dead_letters(name)
    }

    fn replay<'a>(
        &'a self,
        name: &'a str,
        message_id: &'a str,
    ) -> BoxFuture<'a, anyhow::Result<bool>> {
        self.inner.replay(name, message_id)
    }
}

struct Fixture {
    db: Database,
    bus: Arc<Switchable>,
    _database: TestDatabase,
    _folder: tempfile::TempDir,
}

impl Fixture {
    async fn new(engine: Engine) -> Self {
        let database = TestDatabase::new(engine).await;
        let db = Database::connect(database.url(), PoolSettings::default())
            .await
            .expect("connects");
        outbox::migrate(&db).await.expect("migrates");
        sqlx::query("CREATE TABLE effects (message_id TEXT NOT NULL, n BIGINT NOT NULL)")
            .execute(db.pool())
            .await
            .expect("a table for effects");
        let folder = tempfile::tempdir().expect("a folder");
        let inner = EmbeddedBus::open(&folder.path().join("bus.db"))
            .await
            .expect("a bus");
        let bus = Arc::new(Switchable {
            inner,
            down: AtomicBool::new(false),
            publishes: AtomicUsize::new(0),
        });
        Self {
            db,
            bus,
            _database: database,
            _folder: folder,
        }
    }

    fn relay(&self) -> Relay {
        let settings = RelaySettings {
            batch: 7,
            ..RelaySettings::default()
        };
        Relay::new("test", self.db.clone(), self.bus.clone(), settings)
    }

    /// Writes `count` messages to the outbox, with a state change, in one transaction
    /// that commits if `commit`.
    async fn write(&self, count: u64, commit: bool) {
        let mut tx = self.db.pool().begin().await.expect("a transaction");
        for n in 0..count {
            let envelope = message(n);
            sqlx::query("INSERT INTO effects (message_id, n) VALUES ($1, $2)")
                .bind(format!("state-{}", envelope.id))
                .bind(i64::try_from(n).expect("small"))
                .execute(&mut *tx)
                .await
                .expect("a state change");
            outbox::enqueue(&mut tx, &envelope).await.expect("enqueued");
        }
        if commit {
            tx.commit().await.expect("committed");
        } else {
            tx.rollback().await.expect("rolled back");
        }
    }

    async fn received(&self, name: &str) -> Vec<u64> {
        let mut subscription = self
            .bus
            .subscribe(&SubscriptionSpec::new(name, "test.>"))
            .await
            .expect("subscribes");
        let mut seen = Vec::new();
        while let Some(delivery) = subscription
            .next(Duration::from_millis(300))
            .await
            .expect("answers")
        {
            seen.push(delivery.envelope.payload["n"].as_u64().expect("n"));
            delivery.ack().await.expect("acked");
        }
        seen
    }
}

fn message(n: u64) -> Envelope {
    Envelope {
        id: uuid::Uuid::now_v7().to_string(),
        kind: "test.happened.v1".to_owned(),
        source: "test".to_owned(),
        occurred_at_ms: 0,
        correlation_id: "c".to_owned(),
        causation_id: None,
        traceparent: None,
        payload: serde_json::json!({ "n": n }),
    }
}

/// Records each message as an effect; fails the first `fail_first` calls.
struct Recorder {
    fail_first: AtomicUsize,
}

impl Handler for Recorder {
    fn handle<'a>(
        &'a self,
        connection: &'a mut sqlx::AnyConnection,
        envelope: &'a Envelope,
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            record_effect(connection, envelope).await?;
            let remaining = self.fail_first.load(Ordering::SeqCst);
            if remaining > 0 {
                self.fail_first.store(remaining - 1, Ordering::SeqCst);
                anyhow::bail!("failing on purpose after writing, to prove the rollback");
            }
            Ok(())
        })
    }
}

/// Writes `envelope`'s effect, a row with its number; returns the number.
async fn record_effect(
    connection: &mut sqlx::AnyConnection,
    envelope: &Envelope,
) -> anyhow::Result<i64> {
    let n = envelope.payload["n"].as_i64().unwrap_or(-1);
    sqlx::query("INSERT INTO effects (message_id, n) VALUES ($1, $2)")
        .bind(envelope.id.clone())
        .bind(n)
        .execute(connection)
        .await?;
    Ok(n)
}

async fn effects_of(db: &Database, message_id: &str) -> i64 {
    sqlx::query("SELECT COUNT(*) AS n FROM effects WHERE message_id = $1")
        .bind(message_id.to_owned())
        .fetch_one(db.pool())
        .await
        .expect("counted")
        .try_get("n")
        .expect("a count")
}

test_support::on_both_engines!(
    a_rolled_back_change_publishes_nothing,
    the_relay_publishes_in_order_and_only_once,
    the_relay_backs_off_while_the_bus_is_down_and_drains_the_backlog_after,
    relays_sharing_an_outbox_never_publish_a_row_twice,
    a_redelivered_message_has_no_second_effect,
    a_failed_handler_leaves_no_effect_and_the_message_comes_again,
    in_a_batch_a_failed_handler_undoes_only_its_own_message,
    old_inbox_records_are_pruned,
);

async fn a_rolled_back_change_publishes_nothing(engine: Engine) {
    let fixture = Fixture::new(engine).await;
    fixture.write(3, false).await;
    assert_eq!(fixture.relay().relay_once().await.expect("relayed"), 0);
    assert_eq!(
        fixture.relay().backlog().await.expect("measured").pending,
        0
    );
    assert!(fixture.received("test.rollback").await.is_empty());
}

async fn the_relay_publishes_in_order_and_only_once(engine: Engine) {
    let fixture = Fixture::new(engine).await;
    fixture.write(10, true).await;
    let relay = fixture.relay();
    assert_eq!(relay.backlog().await.expect("measured").pending, 10);
    assert_eq!(relay.relay_once().await.expect("relayed"), 7, "one batch");
    assert_eq!(relay.relay_once().await.expect("relayed"), 3);
    assert_eq!(
        relay.relay_once().await.expect("relayed"),
        0,
        "published rows are not published again"
    );
    assert_eq!(relay.backlog().await.expect("measured").pending, 0);
    let (rows,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM outbox")
        .fetch_one(fixture.db.pool())
        .await
        .expect("counted");
    assert_eq!(rows, 0, "a published row leaves the outbox");
    assert_eq!(
        fixture.received("test.order").await,
        (0..10).collect::<Vec<_>>()
    );
}

async fn the_relay_backs_off_while_the_bus_is_down_and_drains_the_backlog_after(engine: Engine) {
    let fixture = Fixture::new(engine).await;
    fixture.write(5, true).await;
    fixture.bus.down.store(true, Ordering::SeqCst);
    let relay = fixture.relay();
    assert!(relay.relay_once().await.is_err());
    let backlog = relay.backlog().await.expect("measured");
    assert_eq!(
        backlog.pending, 5,
        "nothing leaves the outbox while the bus is down"
    );
    // The failed row waits out its backoff; the rest are released for the next round.
    fixture.bus.down.store(false, Ordering::SeqCst);
    let mut published = 0;
    for _ in 0..50 {
        published += relay.relay_once().await.expect("relayed");
        if published == 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(published, 5);
    let mut received = fixture.received("test.backoff").await;
    received.sort_unstable();
    assert_eq!(received, (0..5).collect::<Vec<_>>());
}

async fn relays_sharing_an_outbox_never_publish_a_row_twice(engine: Engine) {
    let fixture = Fixture::new(engine).await;
    fixture.write(60, true).await;
    let (one, two) = (fixture.relay(), fixture.relay());
    let drain = |relay: Relay| async move {
        let mut total = 0;
        loop {
            match relay.relay_once().await.expect("relayed") {
                0 => return total,
                n => total += n,
            }
        }
    };
    let (a, b) = tokio::join!(drain(one), drain(two));
    assert_eq!(a + b, 60);
    assert_eq!(
        fixture.bus.publishes.load(Ordering::SeqCst),
        60,
        "a row was published by both relays"
    );
}

async fn a_redelivered_message_has_no_second_effect(engine: Engine) {
    let fixture = Fixture::new(engine).await;
    let handler = Recorder {
        fail_first: AtomicUsize::new(0),
    };
    let envelope = message(1);
    let first = inbox::apply(&fixture.db, "test.inbox", &envelope, &handler)
        .await
        .expect("applied");
    let again = inbox::apply(&fixture.db, "test.inbox", &envelope, &handler)
        .await
        .expect("answered");
    assert_eq!((first, again), (Outcome::Applied, Outcome::Duplicate));
    assert_eq!(effects_of(&fixture.db, &envelope.id).await, 1);
    // Another subscription handles the same message on its own account.
    let other = inbox::apply(&fixture.db, "test.other", &envelope, &handler)
        .await
        .expect("applied");
    assert_eq!(other, Outcome::Applied);
}

async fn a_failed_handler_leaves_no_effect_and_the_message_comes_again(engine: Engine) {
    let fixture = Fixture::new(engine).await;
    let handler = Arc::new(Recorder {
        fail_first: AtomicUsize::new(1),
    });
    let spec = SubscriptionSpec {
        max_attempts: 5,
        ..SubscriptionSpec::new("test.retry", "test.>")
    };
    let mut consumer = Consumer::new(fixture.db.clone(), fixture.bus.clone(), &spec, handler)
        .await
        .expect("subscribed");
    let envelope = message(2);
    fixture.bus.publish(&envelope).await.expect("published");
    let wait = Duration::from_secs(5);
    assert_eq!(
        consumer.consume_once(wait).await.expect("consumed"),
        Some(Outcome::Failed)
    );
    assert_eq!(
        effects_of(&fixture.db, &envelope.id).await,
        0,
        "the failed attempt's effect was rolled back"
    );
    assert_eq!(
        consumer.consume_once(wait).await.expect("consumed"),
        Some(Outcome::Applied)
    );
    assert_eq!(effects_of(&fixture.db, &envelope.id).await, 1);
    assert_eq!(
        consumer
            .consume_once(Duration::from_millis(300))
            .await
            .expect("consumed"),
        None
    );
    assert_eq!(
        consumer.record_lag().await.expect("measured"),
        0,
        "nothing left to handle"
    );
}

/// Records each message as an effect, and fails, after writing, on the one numbered
/// `poison`.
struct FailsOn {
    poison: i64,
}

impl Handler for FailsOn {
    fn handle<'a>(
        &'a self,
        connection: &'a mut sqlx::AnyConnection,
        envelope: &'a Envelope,
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            let n = record_effect(connection, envelope).await?;
            anyhow::ensure!(n != self.poison, "failing on purpose after writing");
            Ok(())
        })
    }
}

async fn in_a_batch_a_failed_handler_undoes_only_its_own_message(engine: Engine) {
    let fixture = Fixture::new(engine).await;
    let handler = Arc::new(FailsOn { poison: 2 });
    let spec = SubscriptionSpec::new("test.batch", "test.>");
    let mut consumer = Consumer::new(fixture.db.clone(), fixture.bus.clone(), &spec, handler)
        .await
        .expect("subscribed");
    let envelopes: Vec<Envelope> = (1..=4).map(message).collect();
    // The fourth was handled before: in the batch it is a duplicate.
    inbox::apply(
        &fixture.db,
        "test.batch",
        &envelopes[3],
        &FailsOn { poison: 0 },
    )
    .await
    .expect("applied");
    fixture
        .bus
        .inner
        .publish_all(&envelopes)
        .await
        .map_err(|failure| failure.error)
        .expect("published");
    let handled = consumer
        .consume_batch(Duration::from_secs(5))
        .await
        .expect("consumed");
    assert_eq!(handled, 4, "the four came as one batch");
    let effects = [
        effects_of(&fixture.db, &envelopes[0].id).await,
        effects_of(&fixture.db, &envelopes[1].id).await,
        effects_of(&fixture.db, &envelopes[2].id).await,
        effects_of(&fixture.db, &envelopes[3].id).await,
    ];
    assert_eq!(
        effects,
        [1, 0, 1, 1],
        "the failed message's effect was undone, the others' kept, the duplicate's not doubled"
    );
    assert_eq!(
        consumer.record_lag().await.expect("measured"),
        1,
        "only the failed message is left, to come again"
    );
}

async fn old_inbox_records_are_pruned(engine: Engine) {
    let fixture = Fixture::new(engine).await;
    let handler = Recorder {
        fail_first: AtomicUsize::new(0),
    };
    let envelope = message(3);
    inbox::apply(&fixture.db, "test.prune", &envelope, &handler)
        .await
        .expect("applied");
    let now = platform::clock::now_ms();
    assert_eq!(
        inbox::prune(&fixture.db, now - 60_000)
            .await
            .expect("pruned"),
        0,
        "recent records stay"
    );
    assert_eq!(
        inbox::prune(&fixture.db, now + 60_000)
            .await
            .expect("pruned"),
        1
    );
}

/// A relay that dies holds its claimed rows for `claim_for`. A SQLite outbox is one
/// process's, so the relay that starts next frees those claims and publishes the rows
/// at once.
#[tokio::test]
async fn a_relay_starting_on_sqlite_publishes_what_a_dead_one_had_claimed() {
    let fixture = Fixture::new(Engine::Sqlite).await;
    fixture.write(3, true).await;
    let far = platform::clock::now_ms() + 3_600_000;
    sqlx::query("UPDATE outbox SET claimed_until = $1")
        .bind(far)
        .execute(fixture.db.pool())
        .await
        .expect("claimed by a relay that then died");
    let relay = fixture.relay();
    assert_eq!(relay.relay_once().await.expect("relayed"), 0, "claimed");
    let shutdown = platform::shutdown::Shutdown::new();
    let running = tokio::spawn(relay.clone().run(shutdown.clone()));
    let published = "the running relay publishing the dead relay's claims";
    test_support::eventually(published, Duration::from_secs(5), || async {
        let pending = relay.backlog().await.expect("measured").pending;
        if pending == 0 { Ok(()) } else { Err(pending) }
    })
    .await;
    shutdown.trigger();
    running.await.expect("the relay stopped");
    assert_eq!(fixture.received("test.claims").await, vec![0, 1, 2]);
}
