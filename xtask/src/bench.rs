//! Benchmarks of the whole binary. Figures are printed with the machine they ran on;
//! none of them is asserted, since timings on a shared machine are not stable enough
//! to fail a build on.

pub(crate) mod bus;
pub(crate) mod checkout;
pub(crate) mod gateway;
pub(crate) mod harness;
pub(crate) mod storefront;

use std::io::{BufRead, BufReader, Read};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::{run, workspace_root};

/// One start of `bazaar up`: how long until it served, and its memory once idle.
struct Sample {
    ready: Duration,
    idle_rss_kib: u64,
    stopped: Duration,
}

/// `cargo xtask bench startup [--runs N]`: starts the release binary N times on a fresh
/// data folder (the first start creates and seeds the databases; later ones reopen them)
/// and reports time to ready, idle resident memory, and graceful shutdown time.
pub(crate) fn startup(args: &[&str]) -> anyhow::Result<()> {
    let runs = match args {
        [] => 5,
        ["--runs", n] => n.parse().context("--runs takes a number")?,
        _ => anyhow::bail!("usage: cargo xtask bench startup [--runs N]"),
    };
    let binary = release_binary()?;
    let data = std::env::temp_dir().join(format!("bazaar-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);

    let mut samples = Vec::new();
    for index in 0..runs {
        let sample = start_once(&binary, &data)?;
        println!(
            "run {}: ready in {:>6.1} ms, idle RSS {:>6.1} MiB, stopped in {:>6.1} ms{}",
            index + 1,
            sample.ready.as_secs_f64() * 1000.0,
            sample.idle_rss_kib as f64 / 1024.0,
            sample.stopped.as_secs_f64() * 1000.0,
            if index == 0 {
                " (first start: creates and seeds)"
            } else {
                ""
            },
        );
        samples.push(sample);
    }
    let _ = std::fs::remove_dir_all(&data);
    let warm: Vec<&Sample> = samples.iter().skip(1).collect();
    if !warm.is_empty() {
        let mut ready: Vec<Duration> = warm.iter().map(|sample| sample.ready).collect();
        let mut rss: Vec<u64> = warm.iter().map(|sample| sample.idle_rss_kib).collect();
        ready.sort();
        rss.sort();
        println!(
            "median of later starts: ready in {:.1} ms, idle RSS {:.1} MiB",
            ready[ready.len() / 2].as_secs_f64() * 1000.0,
            rss[rss.len() / 2] as f64 / 1024.0
        );
    }
    println!("machine: {}", machine());
    Ok(())
}

/// Builds the optimised `bazaar` and returns its path: a benchmark of a debug build
/// measures nothing anyone runs.
pub(crate) fn release_binary() -> anyhow::Result<std::path::PathBuf> {
    run(
        "cargo",
        &["build", "--release", "--locked", "--package", "bazaar"],
    )?;
    Ok(workspace_root().join("target/release/bazaar"))
}

fn start_once(binary: &std::path::Path, data: &std::path::Path) -> anyhow::Result<Sample> {
    let started = Instant::now();
    let mut child = Command::new(binary)
        .arg("up")
        .env("BAZAAR__DATA_DIR", data)
        .envs(checkout::SERVICES.iter().map(|service| {
            (
                format!("BAZAAR__{}__LISTEN", service.to_uppercase()),
                "127.0.0.1:0",
            )
        }))
        .env("BAZAAR__LOG__FILTER", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("starting bazaar")?;
    let address = read_ready_line(&mut child)?;
    let ready = started.elapsed();
    // A request through the gateway proves it serves; then let it settle before measuring.
    let body = http_get(&address, "/api/catalog/products?limit=5")?;
    anyhow::ensure!(body.contains("\"items\""), "unexpected answer: {body}");
    std::thread::sleep(Duration::from_secs(2));
    let idle_rss_kib = rss_kib(child.id())?;
    let stopping = Instant::now();
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()?;
    let status = child.wait()?;
    anyhow::ensure!(status.success(), "bazaar exited with {status} on SIGINT");
    Ok(Sample {
        ready,
        idle_rss_kib,
        stopped: stopping.elapsed(),
    })
}

/// Reads stdout until `Bazaar is ready in … ms: http://ADDRESS/`, returning ADDRESS.
pub(crate) fn read_ready_line(child: &mut Child) -> anyhow::Result<String> {
    let stdout = child.stdout.take().context("no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    while let Some(line) = lines.next().transpose()? {
        if let Some(url) = line.split("http://").nth(1) {
            // Keep draining stdout in the background so the child never blocks on it.
            std::thread::spawn(move || lines.for_each(drop));
            return Ok(url.trim_end_matches('/').to_owned());
        }
    }
    anyhow::bail!("bazaar exited before it was ready")
}

fn http_get(address: &str, path: &str) -> anyhow::Result<String> {
    use std::io::Write as _;
    let mut stream = TcpStream::connect(address)?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    Ok(response)
}

/// The resident memory of process `pid` now, in KiB.
pub(crate) fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    status_kib(pid, "VmRSS:")
}

/// The most resident memory process `pid` has had, in KiB.
pub(crate) fn peak_rss_kib(pid: u32) -> anyhow::Result<u64> {
    status_kib(pid, "VmHWM:")
}

fn status_kib(pid: u32, field: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no {field} in /proc/PID/status"))
}

/// The CPU model and core count, for the record next to the figures.
pub(crate) fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|line| line.strip_prefix("model name"))
                .map(|name| name.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    format!("{cpu}, {cores} cores")
}
