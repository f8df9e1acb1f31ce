//! Bazaar's automation, in Rust so that it runs wherever cargo does.
//!
//! - `cargo xtask ci`: exactly what CI runs: format check, the Kubernetes manifests
//!   against the API's schemas, the Prometheus configuration, alerting rules and their
//!   unit tests (promtool), clippy with warnings denied, and the whole test suite
//!   (SQLite and PostgreSQL).
//! - `cargo xtask bench startup`: time to ready and idle memory of `bazaar up`.
//! - `cargo xtask bench bus`: the event backbone's throughput and latency on both
//!   adapters, beside the raw publish rate of the same NATS server.
//! - `cargo xtask bench checkout`: completed checkouts per second and the time from
//!   placing an order to its confirmation, in embedded and distributed mode, in a closed
//!   loop of shoppers or an open loop at a set rate.
//! - `cargo xtask bench gateway`: the gateway's throughput, latency, CPU and memory per
//!   request, pass-through and with its full policy chain, beside nginx and HAProxy
//!   proxying to the same upstream.
//! - `cargo xtask bench storefront`: rendered pages beside the JSON they are made of,
//!   and the product page's latency at a steady request rate.

#![allow(
    clippy::print_stdout,
    reason = "printing results is what these commands are for"
)]

mod bench;
mod ci;

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let outcome = match args.as_slice() {
        ["ci"] => ci::pipeline(),
        ["bench", "startup", rest @ ..] => bench::startup(rest),
        ["bench", "bus", rest @ ..] => bench::bus::run(rest),
        ["bench", "checkout", rest @ ..] => bench::checkout::run_bench(rest),
        ["bench", "gateway", rest @ ..] => bench::gateway::run(rest),
        ["bench", "storefront", rest @ ..] => bench::storefront::run(rest),
        _ => {
            eprintln!(
                "usage: cargo xtask <command>\n\n\
                 commands:\n  \
                 ci               format check, clippy, and every test\n  \
                 bench startup    time to ready and idle memory of `bazaar up` [--runs N]\n  \
                 bench bus        outbox → bus → inbox throughput and latency, both adapters\n  \
                 bench checkout   completed checkouts/s and placed→confirmed latency, both modes [--rate R]\n  \
                 bench gateway    the gateway beside nginx and HAProxy [--seconds N] [--connections C] [--rounds R]\n  \
                 bench storefront pages beside their JSON, and the product page at a steady rate [--rate N]"
            );
            return ExitCode::from(2);
        }
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("xtask: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs `program` with `args` in the workspace root, failing if it fails.
fn run(program: &str, args: &[&str]) -> anyhow::Result<()> {
    eprintln!("$ {program} {}", args.join(" "));
    let status = std::process::Command::new(program)
        .args(args)
        .current_dir(workspace_root())
        .status()?;
    anyhow::ensure!(
        status.success(),
        "`{program} {}` failed with {status}",
        args.join(" ")
    );
    Ok(())
}

fn workspace_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}
