//! The whole shop as a process, killed with SIGKILL in the middle of checkouts again
//! and again, then restarted: every order still reaches an end, and the shop's audit
//! (`bazaar verify`, run as the operator would) reports clean. Once on SQLite and the
//! embedded bus, once on PostgreSQL, JetStream and Redis.

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

mod common;

use common::{call, mug, sign_up, until_ended, verify_until_clean};
use serde_json::json;

const ROUNDS: usize = 6;
const BUYERS: usize = 4;

/// `bazaar up` over `config`, with the gateway's address once it is ready.
struct Process {
    child: Child,
    gateway: String,
}

impl Process {
    fn start(config: &Path) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_bazaar"))
            .args(["--config", config.to_str().expect("UTF-8"), "up"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("bazaar starts");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let gateway = loop {
            let line = lines
                .next()
                .expect("bazaar says it is ready before exiting")
                .expect("readable");
            if let Some(url) = line.split("http://").nth(1) {
                break url.trim_end_matches('/').to_owned();
            }
        };
        std::thread::spawn(move || lines.for_each(drop));
        Self { child, gateway }
    }

    /// SIGKILL: no drain, no flush, no goodbye.
    fn kill(mut self) {
        self.child.kill().expect("killed");
        self.child.wait().expect("reaped");
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What a distributed shop's data plane runs on; kept alive for the test.
struct DataPlane {
    _databases: Vec<test_support::TestDatabase>,
    _nats: test_support::nats::NatsServer,
    _redis: test_support::redis::RedisServer,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_survive_sigkill_mid_checkout_embedded() {
    orders_survive_sigkill_mid_checkout(false).await;
}

/// The same on PostgreSQL, JetStream and Redis, which outlive each kill.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_survive_sigkill_mid_checkout_distributed() {
    orders_survive_sigkill_mid_checkout(true).await;
}

async fn orders_survive_sigkill_mid_checkout(distributed: bool) {
    let data = tempfile::tempdir().expect("a folder");
    let config = data.path().join("bazaar.toml");
    let mut toml = format!("data_dir = {:?}\n", data.path().join("data"));
    toml.push_str("[log]\nfilter = \"error\"\n");
    let mut databases = Vec::new();
    for service in [
        "gateway",
        "identity",
        "catalog",
        "inventory",
        "payments",
        "cart",
        "orders",
        "notifications",
        "storefront",
    ] {
        toml.push_str(&format!("[{service}]\nlisten = \"127.0.0.1:0\"\n"));
        if service == "inventory" {
            toml.push_str("initial_stock = 1000\n");
        }
        if distributed && !["gateway", "storefront"].contains(&service) {
            let database = test_support::TestDatabase::new(test_support::Engine::Postgres).await;
            toml.push_str(&format!("database_url = {:?}\n", database.url().expose()));
            databases.push(database);
        }
    }
    // Quick deadlines, stock for every round, and no velocity holds for buyers who buy
    // every round.
    toml.push_str("[orders.deadlines]\nstep_ms = 1000\n");
    toml.push_str("[payments.fraud]\nvelocity_hold_after = 1000\n");
    let _plane = distributed.then(|| {
        let nats = test_support::nats::NatsServer::start();
        let redis = test_support::redis::RedisServer::new();
        toml.push_str(&format!(
            "[bus]\nkind = \"jetstream\"\nurl = {:?}\nstream = \"CRASH\"\n",
            nats.url()
        ));
        toml.push_str(&format!(
            "[cart.store]\nkind = \"redis\"\nurl = {:?}\nkey_prefix = {:?}\n",
            redis.url(),
            test_support::redis::unique_prefix()
        ));
        DataPlane {
            _databases: std::mem::take(&mut databases),
            _nats: nats,
            _redis: redis,
        }
    });
    std::fs::write(&config, toml).expect("a config file");

    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("a client");
    let mut process = Process::start(&config);
    let mug = mug(&client, &process.gateway).await;
    let mut buyers = Vec::new();
    for n in 0..BUYERS {
        buyers.push(sign_up(&client, &process.gateway, &data.path().join("data"), n).await);
    }

    let mut placed = Vec::new();
    for round in 0..ROUNDS {
        let gateway = process.gateway.clone();
        let url = |path: &str| format!("http://{gateway}{path}");
        // Every buyer starts a checkout; the process dies somewhere in the middle.
        let checkouts = buyers.iter().enumerate().map(|(n, buyer)| {
            let client = &client;
            let url = &url;
            let mug = &mug;
            async move {
                let add = client
                    .post(url("/api/cart/items"))
                    .bearer_auth(&buyer.token)
                    .json(&json!({"product_id": mug, "quantity": 1}));
                call(add).await?;
                let order = client
                    .post(url("/api/orders"))
                    .bearer_auth(&buyer.token)
                    .header("idempotency-key", format!("round-{round}-buyer-{n}"))
                    .json(&json!({"payment_method": buyer.card}));
                let (status, order) = call(order).await?;
                (status == 202).then(|| (n, order["id"].as_str().unwrap_or_default().to_owned()))
            }
        });
        let killer = async {
            let pause = 20 + (round as u64 * 37) % 150;
            tokio::time::sleep(Duration::from_millis(pause)).await;
        };
        let (orders, ()) = tokio::join!(futures_util::future::join_all(checkouts), killer);
        placed.extend(orders.into_iter().flatten());
        process.kill();
        process = Process::start(&config);
    }

    // After the last restart, every order placed must reach an end.
    let mut ends: std::collections::BTreeMap<String, usize> = std::collections::BTreeMap::new();
    for (n, order_id) in &placed {
        let order = until_ended(&client, &process.gateway, &buyers[*n], order_id).await;
        *ends.entry(order["status"].to_string()).or_default() += 1;
    }
    assert!(!placed.is_empty(), "no order was placed between the kills");

    // The audit also wants each confirmation emailed once. A confirmation whose event the
    // killed process had claimed in its outbox waits for the claim to run out (10 s).
    verify_until_clean(&config, &format!("{ends:?}")).await;
}
