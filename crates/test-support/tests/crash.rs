//! Crash tests of the backbone: a producer/consumer process is killed with SIGKILL at
//! random points and started again, repeatedly; in the end every item has exactly one
//! effect, none lost, none doubled.

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use platform::config::DatabaseUrl;
use platform::db::{Database, PoolSettings};
use sqlx::Row as _;
use test_support::nats::NatsServer;

const TOTAL: i64 = 300;
const KILLS: usize = 8;

fn start(folder: &Path, bus: &[String]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_crash-worker"))
        .arg(folder)
        .arg(TOTAL.to_string())
        .args(bus)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the worker starts")
}

/// A pseudo-random delay from 30 to 330 ms, so each kill lands somewhere else.
fn random_delay() -> Duration {
    let noise = uuid::Uuid::new_v4().as_u128() % 300;
    Duration::from_millis(30 + u64::try_from(noise).unwrap_or(0))
}

/// Runs the worker to completion after `KILLS` random kills; `between` runs after each
/// kill (e.g. to restart the broker).
fn crash_repeatedly(folder: &Path, bus: &[String], mut between: impl FnMut(usize)) {
    for kill in 0..KILLS {
        let mut worker = start(folder, bus);
        std::thread::sleep(random_delay());
        let _ = worker.kill();
        let _ = worker.wait();
        between(kill);
    }
    let mut worker = start(folder, bus);
    let stdout = worker.stdout.take().expect("stdout");
    // A watchdog ends a worker that hangs, so the test fails instead of hanging CI.
    let pid = worker.id().to_string();
    let started = Instant::now();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(120));
        let _ = Command::new("kill").args(["-9", &pid]).status();
    });
    let finished = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .any(|line| line == "done");
    let _ = worker.kill();
    let _ = worker.wait();
    assert!(
        finished,
        "the worker never finished (ran {:?})",
        started.elapsed()
    );
}

/// Items and effects, by number: each must hold every number from 0 to TOTAL-1 once.
fn audit(folder: &Path) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let url = DatabaseUrl::sqlite_file(&folder.join("service.db"));
        let db = Database::connect(&url, PoolSettings::default()).await.expect("opens");
        for table in ["items", "effects"] {
            let sql = format!("SELECT COUNT(*) AS total, COUNT(DISTINCT n) AS distinct_n, MIN(n) AS low, MAX(n) AS high FROM {table}");
            let row = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_one(db.pool()).await.expect("counted");
            let summary: (i64, i64, i64, i64) = (
                row.try_get("total").expect("total"),
                row.try_get("distinct_n").expect("distinct"),
                row.try_get("low").expect("min"),
                row.try_get("high").expect("max"),
            );
            assert_eq!(summary, (TOTAL, TOTAL, 0, TOTAL - 1), "{table}: count, distinct, min, max");
        }
    });
}

#[test]
fn crash_embedded_bus_loses_nothing_and_doubles_nothing() {
    let folder = tempfile::tempdir().expect("a folder");
    crash_repeatedly(folder.path(), &["embedded".to_owned()], |_| {});
    audit(folder.path());
}

#[test]
fn crash_jetstream_with_broker_restarts_loses_nothing_and_doubles_nothing() {
    let folder = tempfile::tempdir().expect("a folder");
    let mut nats = NatsServer::start();
    let bus = ["jetstream".to_owned(), nats.url()];
    crash_repeatedly(folder.path(), &bus, |kill| {
        // Every other round the broker dies too, mid-stream.
        if kill % 2 == 1 {
            nats.restart();
        }
    });
    audit(folder.path());
}
