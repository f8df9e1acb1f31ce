//! `cargo xtask bench storefront`: what a rendered page costs beside the JSON it is
//! made of, and the product page's latency at a steady 1,000 requests a second.
//!
//! One release `bazaar up` serves everything; every request goes through its gateway,
//! pages and API calls alike, and the whole process's CPU time is charged to each run
//! (from `/proc`, before and after). Three pages are measured with wrk: the home page,
//! a category listing and a product page; then, in the same rounds, each API call the
//! storefront makes to build them, asked of the gateway directly. A page's cost is
//! compared with the sum of its calls' costs: what a client would spend fetching the
//! same data as JSON. Rounds rotate the starting target, and the medians are reported.
//!
//! The latency target is open-loop: requests for the product page are sent on a fixed
//! schedule (not when the previous one answers, which would hide queueing), and each
//! one's latency counts from when it was due. Nothing is asserted; the budget is
//! printed beside the figures.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use reqwest::StatusCode;
use serde_json::Value;

use super::harness::{
    Server, Settings, Summary, Target, WRK, clock_ticks_per_second, cpu_ticks, family, get,
    latency, measure_rounds,
};
use super::{machine, release_binary};
use crate::ci::{find_installed, install_missing};

const USAGE: &str = "usage: cargo xtask bench storefront [--seconds N] [--connections C] \
                     [--rounds R] [--rate REQUESTS_PER_SECOND]";

/// The product every product-page figure is of.
const PRODUCT: &str = "enamel-camp-mug";

/// A page and the API calls the storefront makes to build it.
struct Page {
    name: &'static str,
    path: String,
    calls: Vec<String>,
}

pub(crate) fn run(args: &[&str]) -> anyhow::Result<()> {
    let (rate, rest) = rate_of(args)?;
    let settings = Settings::parse(&rest, USAGE)?;
    install_missing(&[WRK])?;
    let wrk = find_installed(WRK.1).context("wrk is missing even after installing it")?;
    let bazaar = release_binary()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()?;
    let shop = runtime.block_on(start(&client, &bazaar))?;
    let pages = runtime.block_on(pages(&client, &shop))?;

    let mut targets = Vec::new();
    for page in &pages {
        targets.push(Target::new(page.name, &shop, &page.path, None));
        for call in &page.calls {
            if !targets
                .iter()
                .any(|target: &Target<'_>| target.url == shop.url(call))
            {
                targets.push(Target::new(leak(call), &shop, call, None));
            }
        }
    }
    runtime.block_on(preflight(&client, &targets))?;
    println!(
        "storefront benchmark: {} rounds of {} s per target, {} connections, wrk -t 1",
        settings.rounds, settings.seconds, settings.connections
    );
    let samples = measure_rounds(wrk, &targets, &settings)?;
    let summaries: Vec<Summary> = samples.iter().map(|runs| Summary::of(runs)).collect();
    let names: Vec<&str> = targets.iter().map(|target| target.name).collect();

    let product_url = shop.url(&format!("/products/{PRODUCT}"));
    println!(
        "\nproduct page at a steady {rate} requests/s for {} s",
        settings.seconds
    );
    let steady = runtime.block_on(steady_load(
        &product_url,
        rate,
        Duration::from_secs(settings.seconds.max(5)),
        shop.child.id(),
    ))?;
    println!("\n{}", report(&pages, &names, &summaries, &steady, rate));
    println!("machine: {}", machine());
    println!(
        "command: cargo xtask bench storefront{}",
        args.iter()
            .fold(String::new(), |line, arg| line + " " + arg)
    );
    Ok(())
}

/// `--rate N` out of `args`, and the rest.
fn rate_of<'a>(args: &[&'a str]) -> anyhow::Result<(u32, Vec<&'a str>)> {
    let mut rate = 1000;
    let mut rest = Vec::new();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        if *arg == "--rate" {
            rate = args
                .next()
                .context(USAGE)?
                .parse()
                .context("--rate takes a number")?;
        } else {
            rest.push(*arg);
        }
    }
    anyhow::ensure!(rate > 0, "--rate must be at least 1");
    Ok((rate, rest))
}

/// A name that lives as long as the benchmark, for a target named by its path.
fn leak(text: &str) -> &'static str {
    Box::leak(text.to_owned().into_boxed_str())
}

/// The whole shop in one process, its gateway on the server's port, without rate
/// limits (every request comes from one address) and with warnings only in its log.
async fn start(client: &reqwest::Client, bazaar: &Path) -> anyhow::Result<Server> {
    let mut shop = Server::start("bazaar", |dir, port| {
        let mut command = Command::new(bazaar);
        command
            .arg("up")
            .env("BAZAAR__DATA_DIR", dir.join("data"))
            .env("BAZAAR__LOG__FILTER", "warn")
            .env("BAZAAR__GATEWAY__RATE_LIMIT__ENABLED", "false");
        for service in super::checkout::SERVICES {
            let listen = if service == "gateway" {
                format!("127.0.0.1:{port}")
            } else {
                "127.0.0.1:0".to_owned()
            };
            command.env(
                format!("BAZAAR__{}__LISTEN", service.to_uppercase()),
                listen,
            );
        }
        Ok(command)
    })?;
    shop.wait_until_ok(client, &format!("/products/{PRODUCT}"))
        .await?;
    Ok(shop)
}

/// The three pages and, for each, the API calls its handler makes.
async fn pages(client: &reqwest::Client, shop: &Server) -> anyhow::Result<Vec<Page>> {
    let (status, body) = get(
        client,
        &shop.url(&format!("/api/catalog/products/{PRODUCT}")),
        None,
    )
    .await?;
    anyhow::ensure!(status == StatusCode::OK, "the product answered {status}");
    let product: Value = serde_json::from_str(&body)?;
    let id = product["id"].as_str().context("the product has no id")?;
    let categories = "/api/catalog/categories".to_owned();
    Ok(vec![
        Page {
            name: "home page",
            path: "/".to_owned(),
            calls: vec![
                categories.clone(),
                "/api/catalog/products?limit=8&sort=-price".to_owned(),
            ],
        },
        Page {
            name: "listing page",
            path: "/products?category=kitchen".to_owned(),
            calls: vec![
                categories.clone(),
                "/api/catalog/products?category=kitchen&limit=12".to_owned(),
            ],
        },
        Page {
            name: "product page",
            path: format!("/products/{PRODUCT}"),
            calls: vec![
                format!("/api/catalog/products/{PRODUCT}"),
                format!("/api/inventory/stock/{id}"),
                categories,
            ],
        },
    ])
}

/// Every target answers 200 with content before anything is measured.
async fn preflight(client: &reqwest::Client, targets: &[Target<'_>]) -> anyhow::Result<()> {
    for target in targets {
        let (status, body) = get(client, &target.url, None).await?;
        anyhow::ensure!(
            status == StatusCode::OK && !body.is_empty(),
            "{}: GET {} answered {status}",
            target.name,
            target.url
        );
    }
    Ok(())
}

/// What the open-loop run measured.
struct Steady {
    sent: usize,
    failed: usize,
    p50: Duration,
    p99: Duration,
    max: Duration,
    achieved: f64,
    cpu_us_per_request: f64,
}

/// Sends `GET url` `rate` times a second for `duration`, each on its own schedule, and
/// measures each latency from when the request was due.
async fn steady_load(url: &str, rate: u32, duration: Duration, pid: u32) -> anyhow::Result<Steady> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .pool_max_idle_per_host(1024)
        .build()?;
    // Warm the pool and the shop's caches.
    for _ in 0..200 {
        let _ = client.get(url).send().await?.bytes().await;
    }
    let ticks = clock_ticks_per_second();
    let family = family(pid);
    let cpu_before = cpu_ticks(&family);
    let total = (f64::from(rate) * duration.as_secs_f64()) as usize;
    let interval = Duration::from_secs_f64(1.0 / f64::from(rate));
    let latencies = Arc::new(std::sync::Mutex::new(Vec::with_capacity(total)));
    let failures = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let start = tokio::time::Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for index in 0..total {
        let due = start + interval.mul_f64(index as f64);
        tokio::time::sleep_until(due).await;
        let (client, url) = (client.clone(), url.to_owned());
        let (latencies, failures) = (Arc::clone(&latencies), Arc::clone(&failures));
        tasks.spawn(async move {
            let ok = match client.get(&url).send().await {
                Ok(response) => {
                    response.status() == StatusCode::OK && response.bytes().await.is_ok()
                }
                Err(_) => false,
            };
            let took = due.elapsed();
            if ok {
                latencies
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .push(took);
            } else {
                failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let elapsed = start.elapsed();
    let cpu = cpu_ticks(&family).saturating_sub(cpu_before) as f64 / ticks * 1e6;
    let mut latencies = std::mem::take(
        &mut *latencies
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    );
    latencies.sort();
    let at = |quantile: f64| {
        latencies
            .get(
                ((latencies.len() as f64 * quantile) as usize)
                    .min(latencies.len().saturating_sub(1)),
            )
            .copied()
            .unwrap_or_default()
    };
    Ok(Steady {
        sent: total,
        failed: failures.load(std::sync::atomic::Ordering::Relaxed),
        p50: at(0.50),
        p99: at(0.99),
        max: latencies.last().copied().unwrap_or_default(),
        achieved: total as f64 / elapsed.as_secs_f64(),
        cpu_us_per_request: cpu / total.max(1) as f64,
    })
}

/// The figures as Markdown for docs/benchmarks.md, with the budget and its verdicts.
fn report(
    pages: &[Page],
    names: &[&str],
    summaries: &[Summary],
    steady: &Steady,
    rate: u32,
) -> String {
    let find = |name: &str| Summary::named(names, summaries, name);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| target | requests/s | p50 | p99 | CPU µs/request | runs with errors |\n|---|---|---|---|---|---|"
    );
    for (name, summary) in names.iter().zip(summaries) {
        let _ = writeln!(
            out,
            "| `{name}` | {:.0} | {} | {} | {} | {} |",
            summary.requests_per_second,
            latency(summary.p50),
            latency(summary.p99),
            summary
                .cpu_us_per_request
                .map_or_else(|| "-".to_owned(), |cpu| format!("{cpu:.1}")),
            summary.runs_with_errors,
        );
    }
    let _ = writeln!(
        out,
        "\n| page | CPU µs/page | CPU µs of its JSON calls | ratio | target ≤ 2× |\n|---|---|---|---|---|"
    );
    for page in pages {
        let Some(rendered) = find(page.name).and_then(|summary| summary.cpu_us_per_request) else {
            continue;
        };
        let json: f64 = page
            .calls
            .iter()
            .filter_map(|call| find(call).and_then(|summary| summary.cpu_us_per_request))
            .sum();
        let ratio = rendered / json;
        let _ = writeln!(
            out,
            "| {} | {rendered:.1} | {json:.1} ({} calls) | {ratio:.2}× | {} |",
            page.name,
            page.calls.len(),
            if ratio <= 2.0 { "holds" } else { "**missed**" }
        );
    }
    let holds = steady.p99 < Duration::from_millis(20) && steady.failed == 0;
    let _ = writeln!(
        out,
        "\n| product page, open loop | sent | achieved/s | failed | p50 | p99 | max | CPU µs/request | target p99 < 20 ms at {rate}/s |\n|---|---|---|---|---|---|---|---|---|\n| `/products/{PRODUCT}` | {} | {:.0} | {} | {} | {} | {} | {:.1} | {} |",
        steady.sent,
        steady.achieved,
        steady.failed,
        latency(steady.p50),
        latency(steady.p99),
        latency(steady.max),
        steady.cpu_us_per_request,
        if holds { "holds" } else { "**missed**" }
    );
    let _ = writeln!(
        out,
        "\nEvery request goes through the gateway; CPU is the whole `bazaar up` process's \
         user + system time from /proc per completed request, medians over rounds. A \
         page's JSON calls are what its handler asks of the services; here each is asked \
         of the gateway, as a client fetching the same data would."
    );
    out
}
