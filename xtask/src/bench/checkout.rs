//! `cargo xtask bench checkout`: completed checkouts per second through the gateway of
//! a release `bazaar up`, and the time from `POST /api/orders` to confirmed.
//!
//! Closed loop: each of N shoppers adds a product to the cart, places an order and
//! polls it until it is over, then starts again, for a fixed time. Throughput counts
//! confirmed orders per second of wall time. Latency is the server's own: from the
//! order's `placed` event to its `payment_captured` event (the timeline's timestamps,
//! one clock), so the client's polling interval does not blur it.
//!
//! Embedded mode runs on SQLite and the embedded bus; distributed runs the same process
//! on PostgreSQL (one database per service), JetStream and a Redis cart.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde_json::{Value, json};
use test_support::{Engine, TestDatabase};

use super::{machine, read_ready_line};
use crate::{run, workspace_root};

/// The services whose listen addresses are set to port 0.
pub(crate) const SERVICES: [&str; 9] = [
    "gateway",
    "identity",
    "catalog",
    "inventory",
    "payments",
    "cart",
    "orders",
    "notifications",
    "storefront",
];

/// The services that own a database (the gateway and the storefront own no data).
const WITH_DATABASES: [&str; 7] = [
    "identity",
    "catalog",
    "inventory",
    "payments",
    "cart",
    "orders",
    "notifications",
];

/// What one mode measured.
struct Measured {
    confirmed: usize,
    other: usize,
    seconds: f64,
    p50_ms: i64,
    p99_ms: i64,
    /// Open loop: arrivals that found every shopper busy, and were not made.
    skipped: usize,
    /// The shop's resident memory: its peak, at the end of the load, and after idling.
    peak_mib: f64,
    end_mib: f64,
    idle_mib: f64,
    /// Bytes in the shop's data folder after idling (its SQLite files and mailbox; in
    /// distributed mode only the mailbox, the rest being on the servers).
    disk_bytes: u64,
}

/// Every confirmation seen, when and with its placed→confirmed ms: what a soak samples.
static CONFIRMATIONS: std::sync::Mutex<Vec<(Instant, i64)>> = std::sync::Mutex::new(Vec::new());

fn confirmations() -> anyhow::Result<std::sync::MutexGuard<'static, Vec<(Instant, i64)>>> {
    CONFIRMATIONS
        .lock()
        .map_err(|_| anyhow::anyhow!("the confirmations' lock is poisoned"))
}

/// Every shopper's password.
const PASSWORD: &str = "correct horse battery staple";

/// How often a soak samples the shop.
const SAMPLE_EVERY: Duration = Duration::from_secs(5);

/// How often a soak mixes in a burst of concurrent sign-ins, and how many.
const SIGN_INS_EVERY: Duration = Duration::from_secs(30);
const SIGN_INS: usize = 64;

/// One soak sample: seconds into the run, resident MiB, confirmed/s and p99 ms over the
/// interval since the last.
struct Sample {
    at: f64,
    rss_mib: f64,
    per_second: f64,
    p99_ms: i64,
}

/// How long the shop idles after the load before its memory is read again.
const IDLE: Duration = Duration::from_secs(10);

pub(crate) fn run_bench(args: &[&str]) -> anyhow::Result<()> {
    let (mut shoppers, mut seconds, mut modes) =
        (32_usize, 20_u64, vec!["embedded", "distributed"]);
    let mut rate: Option<f64> = None;
    let mut soak = false;
    let mut rest = args;
    while let [flag, value, tail @ ..] = rest {
        match *flag {
            "--shoppers" => shoppers = value.parse().context("--shoppers takes a number")?,
            "--seconds" => seconds = value.parse().context("--seconds takes a number")?,
            "--rate" => {
                let per_second: f64 = value.parse().context("--rate takes checkouts per second")?;
                anyhow::ensure!(per_second > 0.0, "--rate must be above 0");
                rate = Some(per_second);
            }
            "--soak" => {
                seconds = value.parse().context("--soak takes seconds")?;
                soak = true;
            }
            "--mode" => {
                modes = vec![if *value == "embedded" {
                    "embedded"
                } else {
                    "distributed"
                }]
            }
            _ => anyhow::bail!(
                "usage: cargo xtask bench checkout [--mode embedded|distributed] [--shoppers N] [--seconds N] [--rate R] [--soak S]\n\n\
                 Without --rate, N shoppers check out in a closed loop; with it, a checkout \
                 starts every 1/R s (an open loop) by whichever of the N shoppers is free. \
                 --soak runs S seconds, sampling memory and throughput every 5 s with 64 \
                 sign-ins at once every 30 s, into target/bench/soak-<mode>.csv and .png."
            ),
        }
        rest = tail;
    }
    run(
        "cargo",
        &["build", "--release", "--locked", "--package", "bazaar"],
    )?;
    let binary = workspace_root().join("target/release/bazaar");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    for mode in modes {
        let measured = runtime.block_on(one_mode(
            &binary,
            mode,
            shoppers,
            rate,
            Duration::from_secs(seconds),
            soak,
        ))?;
        let load = match rate {
            Some(rate) => format!(
                "open loop at {rate}/s, {} arrivals skipped with every shopper busy",
                measured.skipped
            ),
            None => "closed loop".to_owned(),
        };
        println!(
            "{mode:<12} {:>7.1} checkouts/s  placed→confirmed p50 {:>4} ms  p99 {:>5} ms  ({} confirmed, {} not, {shoppers} shoppers, {:.0} s, {load})",
            measured.confirmed as f64 / measured.seconds,
            measured.p50_ms,
            measured.p99_ms,
            measured.confirmed,
            measured.other,
            measured.seconds,
        );
        println!(
            "{:<12} resident memory: peak {:.1} MiB, {:.1} MiB at the end, {:.1} MiB after {} s idle",
            "",
            measured.peak_mib,
            measured.end_mib,
            measured.idle_mib,
            IDLE.as_secs(),
        );
        println!(
            "{:<12} data folder: {:.1} MiB, {:.1} KB per confirmed checkout",
            "",
            measured.disk_bytes as f64 / (1024.0 * 1024.0),
            measured.disk_bytes as f64 / 1000.0 / measured.confirmed.max(1) as f64,
        );
    }
    println!("machine: {}", machine());
    Ok(())
}

/// Starts the shop for `mode`; keeps what the distributed data plane needs alive.
struct Shop {
    child: Child,
    gateway: String,
    data: tempfile::TempDir,
    _databases: Vec<TestDatabase>,
    _nats: Option<test_support::nats::NatsServer>,
    _redis: Option<test_support::redis::RedisServer>,
}

impl Drop for Shop {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start(binary: &Path, mode: &str) -> anyhow::Result<Shop> {
    let data = tempfile::tempdir()?;
    let mut command = Command::new(binary);
    command
        .arg("up")
        .env("BAZAAR__DATA_DIR", data.path())
        .env("BAZAAR__LOG__FILTER", "error")
        .env("BAZAAR__IDENTITY__ADDRESS_ATTEMPTS_BURST", "1000000")
        // Every shopper comes from one address; the benchmark measures the checkout,
        // not the gateway's rate limits.
        .env("BAZAAR__GATEWAY__RATE_LIMIT__ENABLED", "false")
        .env("BAZAAR__INVENTORY__INITIAL_STOCK", "100000000")
        .env("BAZAAR__PAYMENTS__FRAUD__VELOCITY_HOLD_AFTER", "1000000000");
    for service in SERVICES {
        command.env(
            format!("BAZAAR__{}__LISTEN", service.to_uppercase()),
            "127.0.0.1:0",
        );
    }
    let (mut databases, mut nats, mut redis) = (Vec::new(), None, None);
    if mode == "distributed" {
        for service in WITH_DATABASES {
            let database = TestDatabase::new(Engine::Postgres).await;
            command.env(
                format!("BAZAAR__{}__DATABASE_URL", service.to_uppercase()),
                database.url().expose(),
            );
            databases.push(database);
        }
        let server = test_support::nats::NatsServer::start();
        command
            .env("BAZAAR__BUS__KIND", "jetstream")
            .env("BAZAAR__BUS__URL", server.url())
            .env("BAZAAR__BUS__STREAM", "BENCH");
        nats = Some(server);
        let server = test_support::redis::RedisServer::new();
        command
            .env("BAZAAR__CART__STORE__KIND", "redis")
            .env("BAZAAR__CART__STORE__URL", server.url())
            .env(
                "BAZAAR__CART__STORE__KEY_PREFIX",
                test_support::redis::unique_prefix(),
            );
        redis = Some(server);
    }
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let gateway = read_ready_line(&mut child)?;
    Ok(Shop {
        child,
        gateway,
        data,
        _databases: databases,
        _nats: nats,
        _redis: redis,
    })
}

async fn one_mode(
    binary: &Path,
    mode: &str,
    shoppers: usize,
    rate: Option<f64>,
    length: Duration,
    soak: bool,
) -> anyhow::Result<Measured> {
    let shop = start(binary, mode).await?;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(shoppers * 2)
        .build()?;
    let base = format!("http://{}", shop.gateway);
    let products: Value = client
        .get(format!("{base}/api/catalog/products?limit=10"))
        .send()
        .await?
        .json()
        .await?;
    let products: Vec<String> = products["items"]
        .as_array()
        .context("a product page")?
        .iter()
        .filter_map(|product| product["id"].as_str().map(str::to_owned))
        .collect();
    // Inventory learns of the seeded products over the bus: wait until it has.
    for _ in 0..400 {
        let stock = client
            .get(format!("{base}/api/inventory/stock/{}", products[0]))
            .send()
            .await?;
        if stock.status().is_success() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let mut signed_up = Vec::new();
    for n in 0..shoppers {
        let (token, card) = sign_up(&client, &base, &shop.data.path().join("mailbox"), n).await?;
        signed_up.push(Shopper {
            n,
            token,
            card,
            orders: 0,
        });
    }
    let started = Instant::now();
    confirmations()?.clear();
    let soaking = soak.then(|| {
        let pid = shop.child.id();
        let (client, base) = (client.clone(), base.clone());
        tokio::spawn(async move { sample_until(pid, &client, &base, shoppers, length).await })
    });
    let (orders, skipped) = match rate {
        Some(rate) => open_loop(&client, &base, signed_up, &products, rate, length).await?,
        None => {
            let deadline = started + length;
            // Collected, so every shopper starts now (a lazy iterator would start each
            // only when the previous one is awaited).
            let tasks: Vec<_> = signed_up
                .into_iter()
                .map(|mut shopper| {
                    let (client, base, product) = (
                        client.clone(),
                        base.clone(),
                        products[shopper.n % products.len()].clone(),
                    );
                    tokio::spawn(async move {
                        shop_until(&client, &base, &mut shopper, &product, deadline).await
                    })
                })
                .collect();
            let mut orders = Vec::new();
            for task in tasks {
                orders.extend(task.await??);
            }
            (orders, 0)
        }
    };
    let seconds = started.elapsed().as_secs_f64();
    if let Some(soaking) = soaking {
        write_soak(mode, &soaking.await??)?;
    }
    let pid = shop.child.id();
    let mib = |kib: u64| kib as f64 / 1024.0;
    let (peak_mib, end_mib) = (mib(super::peak_rss_kib(pid)?), mib(super::rss_kib(pid)?));
    tokio::time::sleep(IDLE).await;
    let idle_mib = mib(super::rss_kib(pid)?);
    let disk_bytes = folder_bytes(shop.data.path())?;
    let mut latencies: Vec<i64> = orders.iter().filter_map(|order| order.1).collect();
    latencies.sort_unstable();
    let percentile = |p: f64| {
        latencies
            .get(((latencies.len() as f64 - 1.0) * p) as usize)
            .copied()
            .unwrap_or(0)
    };
    Ok(Measured {
        confirmed: latencies.len(),
        other: orders.len() - latencies.len(),
        seconds,
        p50_ms: percentile(0.50),
        p99_ms: percentile(0.99),
        skipped,
        peak_mib,
        end_mib,
        idle_mib,
        disk_bytes,
    })
}

/// The bytes of every file under `folder`.
fn folder_bytes(folder: &Path) -> anyhow::Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(folder)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        total += if kind.is_dir() {
            folder_bytes(&entry.path())?
        } else {
            entry.metadata()?.len()
        };
    }
    Ok(total)
}

/// Registers shopper `n`, confirms the address with the link mailed into `mailbox`,
/// and saves a card: the access token and the card's token.
async fn sign_up(
    client: &reqwest::Client,
    base: &str,
    mailbox: &Path,
    n: usize,
) -> anyhow::Result<(String, String)> {
    let email = format!("shopper{n}@example.com");
    let tokens = test_support::mail::sign_up(client, base, mailbox, &email, PASSWORD).await;
    let token = tokens["access_token"]
        .as_str()
        .context("a token")?
        .to_owned();
    let card =
        json!({"number": "4242424242424242", "exp_month": 12, "exp_year": 2040, "cvc": "123"});
    let card: Value = client
        .post(format!("{base}/api/payments/methods"))
        .bearer_auth(&token)
        .json(&card)
        .send()
        .await?
        .json()
        .await?;
    Ok((
        token,
        card["token"].as_str().context("a card token")?.to_owned(),
    ))
}

/// Checks out again and again until `deadline`; each order with its placed→confirmed
/// time in ms, `None` if it did not end confirmed.
async fn shop_until(
    client: &reqwest::Client,
    base: &str,
    shopper: &mut Shopper,
    product: &str,
    deadline: Instant,
) -> anyhow::Result<Vec<(String, Option<i64>)>> {
    let mut orders = Vec::new();
    while Instant::now() < deadline {
        orders.push(checkout(client, base, shopper, product).await?);
    }
    Ok(orders)
}

/// Starts a checkout every `1 / rate` seconds for `length`, whatever became of the ones
/// before (an open loop: arrivals do not wait for answers, so queueing shows in the
/// latency), each by a shopper not checking out already. Returns the orders, and how
/// many arrivals found every shopper busy and were not made.
async fn open_loop(
    client: &reqwest::Client,
    base: &str,
    shoppers: Vec<Shopper>,
    products: &[String],
    rate: f64,
    length: Duration,
) -> anyhow::Result<(Vec<(String, Option<i64>)>, usize)> {
    let (free, mut waiting) = tokio::sync::mpsc::channel(shoppers.len().max(1));
    for shopper in shoppers {
        free.send(shopper).await?;
    }
    let started = tokio::time::Instant::now();
    let mut arrivals = tokio::time::interval_at(started, Duration::from_secs_f64(1.0 / rate));
    let mut running = tokio::task::JoinSet::new();
    let (mut skipped, mut n) = (0, 0);
    while started.elapsed() < length {
        arrivals.tick().await;
        let Ok(shopper) = waiting.try_recv() else {
            skipped += 1;
            continue;
        };
        let (client, base, free) = (client.clone(), base.to_owned(), free.clone());
        let product = products[n % products.len()].clone();
        n += 1;
        running.spawn(async move {
            let mut shopper = shopper;
            let order = checkout(&client, &base, &mut shopper, &product).await;
            // The channel holds every shopper, so there is always room to return one.
            let _ = free.send(shopper).await;
            order
        });
    }
    let mut orders = Vec::new();
    while let Some(order) = running.join_next().await {
        orders.push(order??);
    }
    Ok((orders, skipped))
}

/// A signed-up shopper: an access token, a saved card, and how many orders it placed.
struct Shopper {
    n: usize,
    token: String,
    card: String,
    orders: usize,
}

/// One checkout: adds `product` to the cart, places the order, and polls it until it is
/// over; its id and its placed→confirmed time in ms, `None` if it did not end
/// confirmed. After a confirmation it waits for the cart to be emptied, as a shopper
/// would see it before shopping again.
async fn checkout(
    client: &reqwest::Client,
    base: &str,
    shopper: &mut Shopper,
    product: &str,
) -> anyhow::Result<(String, Option<i64>)> {
    shopper.orders += 1;
    let token = &shopper.token;
    let item = json!({"product_id": product, "quantity": 1});
    client
        .post(format!("{base}/api/cart/items"))
        .bearer_auth(token)
        .json(&item)
        .send()
        .await?
        .error_for_status()?;
    let placed = client
        .post(format!("{base}/api/orders"))
        .bearer_auth(token)
        .header(
            "idempotency-key",
            format!("bench-{}-{}", shopper.n, shopper.orders),
        )
        .json(&json!({"payment_method": shopper.card}))
        .send()
        .await?;
    let status = placed.status();
    let placed: Value = placed.json().await?;
    anyhow::ensure!(status.is_success(), "placing an order: {status} {placed}");
    let id = placed["id"].as_str().context("an order id")?.to_owned();
    let order = loop {
        // The latency comes from the server's timeline; polling faster would only
        // load the machine being measured.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let order: Value = client
            .get(format!("{base}/api/orders/{id}"))
            .bearer_auth(token)
            .send()
            .await?
            .json()
            .await?;
        if ["confirmed", "rejected", "cancelled"]
            .iter()
            .any(|end| order["status"] == *end)
        {
            break order;
        }
    };
    let at = |event: &str| {
        order["timeline"].as_array().and_then(|steps| {
            steps
                .iter()
                .find(|step| step["event"] == event)
                .and_then(|step| step["at_ms"].as_i64())
        })
    };
    let latency = (order["status"] == "confirmed")
        .then(|| Some(at("payment_captured")? - at("placed")?))
        .flatten();
    if let Some(latency) = latency {
        confirmations()?.push((Instant::now(), latency));
    }
    // The cart forgets the ordered lines when it hears of the confirmation; a shopper
    // sees the empty cart before shopping again.
    if order["status"] == "confirmed" {
        loop {
            let cart: Value = client
                .get(format!("{base}/api/cart"))
                .bearer_auth(token)
                .send()
                .await?
                .json()
                .await?;
            if cart["lines"].as_array().is_some_and(Vec::is_empty) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    Ok((id, latency))
}

/// Samples the shop every [`SAMPLE_EVERY`] for `length`, and every [`SIGN_INS_EVERY`]
/// signs [`SIGN_INS`] shoppers in at once (each an Argon2 hash), as a soak mixes them in.
async fn sample_until(
    pid: u32,
    client: &reqwest::Client,
    base: &str,
    shoppers: usize,
    length: Duration,
) -> anyhow::Result<Vec<Sample>> {
    let started = Instant::now();
    let mut samples = Vec::new();
    let mut seen = 0;
    let mut last_sign_ins = started;
    while started.elapsed() < length {
        tokio::time::sleep(SAMPLE_EVERY).await;
        if last_sign_ins.elapsed() >= SIGN_INS_EVERY {
            last_sign_ins = Instant::now();
            let burst: Vec<_> = (0..SIGN_INS)
                .map(|n| {
                    let (client, url) = (client.clone(), format!("{base}/api/identity/token"));
                    let email = format!("shopper{}@example.com", n % shoppers.max(1));
                    tokio::spawn(async move {
                        client
                            .post(url)
                            .json(&json!({"email": email, "password": PASSWORD}))
                            .send()
                            .await
                    })
                })
                .collect();
            // Answers are not judged: a 503 at the hashing limit is the shop protecting
            // itself, which is part of what a soak shows.
            for sign_in in burst {
                let _ = sign_in.await;
            }
        }
        let mut latencies: Vec<i64> = {
            let confirmations = confirmations()?;
            let fresh = confirmations[seen..].iter().map(|(_, ms)| *ms).collect();
            seen = confirmations.len();
            fresh
        };
        latencies.sort_unstable();
        samples.push(Sample {
            at: started.elapsed().as_secs_f64(),
            rss_mib: super::rss_kib(pid)? as f64 / 1024.0,
            per_second: latencies.len() as f64 / SAMPLE_EVERY.as_secs_f64(),
            p99_ms: latencies
                .get(((latencies.len() as f64 - 1.0) * 0.99) as usize)
                .copied()
                .unwrap_or(0),
        });
    }
    Ok(samples)
}

/// Writes a soak's samples to `target/bench/soak-<mode>.csv` and plots them to
/// `soak-<mode>.png` beside it (matplotlib, in a virtual environment under `target/`).
fn write_soak(mode: &str, samples: &[Sample]) -> anyhow::Result<()> {
    let folder = workspace_root().join("target/bench");
    std::fs::create_dir_all(&folder)?;
    let csv = folder.join(format!("soak-{mode}.csv"));
    let mut text = String::from("seconds,rss_mib,confirmed_per_second,p99_ms\n");
    for sample in samples {
        text.push_str(&format!(
            "{:.1},{:.1},{:.1},{}\n",
            sample.at, sample.rss_mib, sample.per_second, sample.p99_ms
        ));
    }
    std::fs::write(&csv, text)?;
    let peak = samples.iter().map(|s| s.rss_mib).fold(0.0, f64::max);
    println!(
        "soak samples: {} (peak resident {peak:.1} MiB)",
        csv.display()
    );
    let venv = workspace_root().join("target/bench-plot");
    if !venv.join("bin/python").exists() {
        run("python3", &["-m", "venv", &venv.to_string_lossy()])?;
        run(
            &venv.join("bin/pip").to_string_lossy(),
            &["install", "--quiet", "matplotlib"],
        )?;
    }
    let png = folder.join(format!("soak-{mode}.png"));
    let script = folder.join("plot_soak.py");
    std::fs::write(&script, PLOT)?;
    run(
        &venv.join("bin/python").to_string_lossy(),
        &[
            &script.to_string_lossy(),
            &csv.to_string_lossy(),
            &png.to_string_lossy(),
            mode,
        ],
    )?;
    println!("soak plot: {}", png.display());
    Ok(())
}

/// Plots a soak's CSV (argv 1) to a PNG (argv 2): resident memory and throughput over
/// time.
const PLOT: &str = r#"
import csv, sys
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
rows = list(csv.DictReader(open(sys.argv[1])))
t = [float(r["seconds"]) for r in rows]
fig, rss = plt.subplots(figsize=(8, 4))
rss.plot(t, [float(r["rss_mib"]) for r in rows], color="tab:blue")
rss.set_xlabel("seconds")
rss.set_ylabel("resident MiB", color="tab:blue")
rss.set_ylim(bottom=0)
rate = rss.twinx()
rate.plot(t, [float(r["confirmed_per_second"]) for r in rows], color="tab:green")
rate.set_ylabel("confirmed checkouts/s", color="tab:green")
rate.set_ylim(bottom=0)
plt.title("bazaar up, checkout soak (" + sys.argv[3] + ")")
fig.tight_layout()
fig.savefig(sys.argv[2], dpi=100)
"#;
