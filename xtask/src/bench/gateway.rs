//! `cargo xtask bench gateway`: what a request through the gateway costs, beside nginx
//! and HAProxy doing the same job on the same machine, in the same run.
//!
//! One upstream serves every target: an nginx of its own answering `200 ok` to
//! anything, so the proxies differ only in themselves. wrk drives six targets with the
//! same concurrency: the upstream directly (the ceiling), the gateway in pass-through,
//! nginx and HAProxy each configured as a tuned reverse proxy (pooled keep-alive
//! connections upstream, no logging, two workers as on the 2-core machine the budget is
//! set for), and the gateway with its whole policy chain (a JWT checked on every
//! request, rate limiting, metrics), once without spans and once with each request's
//! spans recorded in memory as `bazaar up` keeps them for its console. Every proxy strips `/api/echo` as the gateway does,
//! so all do the same work on the path.
//!
//! A shared machine drifts, so a fixed order would charge the drift to whoever runs
//! last: each round runs all six, starting one further along each time, and the
//! report takes the median over rounds. CPU time per request comes from `/proc` (the
//! proxy and its children, before and after each wrk run), which is what a proxy costs
//! where cores are shared with the services behind it; throughput alone would hide it.
//!
//! Every target is measured in two layouts, one after the other. **Shared**: every
//! process may run on both cores, nginx and HAProxy with two workers, as on a small
//! host where the proxy shares the cores with the services behind it. **Pinned**: each
//! proxy alone on core 0 (one nginx worker, one HAProxy thread, the gateway's runtime
//! sizing itself to the one CPU it sees), wrk and the upstream on core 1, so a proxy's
//! figures are its own and not its neighbours' contention.
//!
//! Nothing is asserted: the budget (docs/benchmarks.md) is printed beside the figures.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::Context as _;
use reqwest::StatusCode;
use serde_json::{Value, json};

use super::harness::{Server, Settings, Summary, Target, WRK, get, latency, measure_rounds};
use super::{machine, release_binary};
use crate::ci::{find_installed, install_missing};

const USAGE: &str = "usage: cargo xtask bench gateway [--seconds N] [--connections C] [--rounds R]";

/// The proxies beside the gateway, each with its Debian package and where it may be.
const NGINX: (&str, &[&str]) = (
    "nginx",
    &[
        "/usr/sbin/nginx",
        "/usr/bin/nginx",
        "/usr/local/sbin/nginx",
        "/usr/local/bin/nginx",
    ],
);
const HAPROXY: (&str, &[&str]) = (
    "haproxy",
    &[
        "/usr/sbin/haproxy",
        "/usr/bin/haproxy",
        "/usr/local/sbin/haproxy",
    ],
);

/// The path every target is asked for: the gateway routes `/api/echo/…` to the
/// upstream named `echo`, and the other proxies are configured to do the same.
const PATH: &str = "/api/echo/hello";

/// What the upstream answers, to tell a proxied answer from an error page.
const BODY: &str = "ok\n";

/// The account whose token the full chain is measured with.
const EMAIL: &str = "bench@example.com";
const PASSWORD: &str = "correct horse battery staple";

/// Where the processes of one measurement run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Layout {
    /// Every process on both cores; the proxies with two workers.
    Shared,
    /// Each proxy on core 0 alone with one worker; wrk and the upstream on core 1.
    Pinned,
}

impl Layout {
    fn name(self) -> &'static str {
        match self {
            Self::Shared => "shared (every process on both cores, two proxy workers)",
            Self::Pinned => {
                "pinned (each proxy alone on core 0, one worker; wrk and the upstream on core 1)"
            }
        }
    }

    /// The CPUs a proxy runs on.
    fn proxy(self) -> Option<&'static str> {
        match self {
            Self::Shared => None,
            Self::Pinned => Some("0"),
        }
    }

    /// The CPUs the load (wrk) and the upstream run on.
    fn load(self) -> Option<&'static str> {
        match self {
            Self::Shared => None,
            Self::Pinned => Some("1"),
        }
    }

    /// nginx's workers and HAProxy's threads.
    fn workers(self) -> u32 {
        match self {
            Self::Shared => 2,
            Self::Pinned => 1,
        }
    }
}

pub(crate) fn run(args: &[&str]) -> anyhow::Result<()> {
    let settings = Settings::parse(args, USAGE)?;
    install_missing(&[WRK, NGINX, HAPROXY])?;
    let [wrk, nginx, haproxy] = [WRK, NGINX, HAPROXY].map(|(package, paths)| {
        find_installed(paths)
            .with_context(|| format!("{package} is missing even after installing it"))
    });
    let (wrk, nginx, haproxy) = (wrk?, nginx?, haproxy?);
    let bazaar = release_binary()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()?;
    println!(
        "gateway benchmark: {} rounds of {} s per target and layout, {} connections, wrk -t 1",
        settings.rounds, settings.seconds, settings.connections
    );
    let mut reports = Vec::new();
    for layout in [Layout::Shared, Layout::Pinned] {
        println!("\nlayout: {}", layout.name());
        let servers = runtime.block_on(Servers::start(
            &client, nginx, haproxy, &bazaar, &settings, layout,
        ))?;
        let targets = servers.targets();
        runtime.block_on(preflight(&client, &targets))?;
        let settings = Settings {
            wrk_cpus: layout.load(),
            ..settings
        };
        let samples = measure_rounds(wrk, &targets, &settings)?;
        let summaries: Vec<Summary> = samples.iter().map(|runs| Summary::of(runs)).collect();
        let names: Vec<&str> = targets.iter().map(|target| target.name).collect();
        reports.push((layout, report(&names, &summaries)));
    }
    for (layout, report) in reports {
        println!("\n### {}\n\n{report}", layout.name());
    }
    println!("machine: {}", machine());
    println!(
        "command: cargo xtask bench gateway{}",
        args.iter()
            .fold(String::new(), |line, arg| line + " " + arg)
    );
    Ok(())
}

/// Everything the benchmark runs; each server stops when this is dropped.
struct Servers {
    upstream: Server,
    gateway: Server,
    nginx: Server,
    haproxy: Server,
    /// Kept running: the full chain fetches its signing keys from it.
    _identity: Server,
    full: Server,
    /// The full chain with its spans recorded.
    traced: Server,
    token: String,
}

impl Servers {
    async fn start(
        client: &reqwest::Client,
        nginx: &str,
        haproxy: &str,
        bazaar: &Path,
        settings: &Settings,
        layout: Layout,
    ) -> anyhow::Result<Self> {
        let connections = settings.connections;
        let upstream = upstream(client, nginx, connections, layout).await?;
        let nginx = nginx_proxy(client, nginx, &upstream, connections, layout).await?;
        let haproxy = haproxy_proxy(client, haproxy, &upstream, connections, layout).await?;
        let gateway = gateway(client, bazaar, &upstream, layout).await?;
        // The token must outlive the run, or the full chain's last runs would be 401s.
        let run_secs = settings.seconds * (settings.rounds as u64 + 1) * 5;
        let identity = identity(client, bazaar, (run_secs + 600).max(3600)).await?;
        let token = access_token(client, bazaar, &identity).await?;
        let ends = (&upstream, &identity);
        let full = full_gateway(client, bazaar, ends, layout, Spans::Off).await?;
        let traced = full_gateway(client, bazaar, ends, layout, Spans::Recorded).await?;
        Ok(Self {
            upstream,
            gateway,
            nginx,
            haproxy,
            _identity: identity,
            full,
            traced,
            token,
        })
    }

    fn targets(&self) -> [Target<'_>; 6] {
        [
            Target::new("direct", &self.upstream, PATH, None),
            Target::new("bazaar", &self.gateway, PATH, None),
            Target::new("nginx", &self.nginx, PATH, None),
            Target::new("haproxy", &self.haproxy, PATH, None),
            Target::new("bazaar-full", &self.full, PATH, Some(&self.token)),
            Target::new("bazaar-traced", &self.traced, PATH, Some(&self.token)),
        ]
    }
}

/// The upstream all targets end at: one nginx worker answering `200 ok` to anything.
async fn upstream(
    client: &reqwest::Client,
    nginx: &str,
    connections: u32,
    layout: Layout,
) -> anyhow::Result<Server> {
    let mut server = nginx_server(nginx, "upstream", layout.load(), |dir, port| {
        let server = format!(
            "server {{\n\
             \x20       listen 127.0.0.1:{port} backlog=4096;\n\
             \x20       default_type text/plain;\n\
             \x20       location / {{\n\
             \x20           return 200 \"ok\\n\";\n\
             \x20       }}\n\
             \x20   }}"
        );
        nginx_config(dir, 1, connections, &server)
    })?;
    server.wait_until_ok(client, PATH).await?;
    Ok(server)
}

/// nginx as it is tuned in front of an API: a pool of idle HTTP/1.1 connections to
/// the upstream as large as the client's concurrency, so no request pays a connect.
async fn nginx_proxy(
    client: &reqwest::Client,
    nginx: &str,
    upstream: &Server,
    connections: u32,
    layout: Layout,
) -> anyhow::Result<Server> {
    let mut server = nginx_server(nginx, "nginx", layout.proxy(), |dir, port| {
        let proxy = format!(
            "upstream echo {{\n\
             \x20       server 127.0.0.1:{upstream};\n\
             \x20       keepalive {connections};\n\
             \x20       keepalive_requests 1000000;\n\
             \x20   }}\n\
             \x20   server {{\n\
             \x20       listen 127.0.0.1:{port} backlog=4096;\n\
             \x20       location /api/echo/ {{\n\
             \x20           proxy_pass http://echo/;\n\
             \x20           proxy_http_version 1.1;\n\
             \x20           proxy_set_header Connection \"\";\n\
             \x20       }}\n\
             \x20   }}",
            upstream = upstream.port,
        );
        nginx_config(dir, layout.workers(), connections, &proxy)
    })?;
    server.wait_until_ok(client, PATH).await?;
    Ok(server)
}

/// HAProxy in front of the same upstream, configured by [`haproxy_config`].
async fn haproxy_proxy(
    client: &reqwest::Client,
    haproxy: &str,
    upstream: &Server,
    connections: u32,
    layout: Layout,
) -> anyhow::Result<Server> {
    let mut server = Server::start_on("haproxy", layout.proxy(), |dir, port| {
        let config = dir.join("haproxy.cfg");
        let config_text = haproxy_config(port, upstream.port, connections, layout.workers());
        std::fs::write(&config, config_text)?;
        let mut command = Command::new(haproxy);
        // -db: in the foreground, one process, so the child is the proxy.
        command.arg("-db").arg("-f").arg(config);
        Ok(command)
    })?;
    server.wait_until_ok(client, PATH).await?;
    Ok(server)
}

/// The gateway in pass-through: routing and forwarding only, every policy off.
async fn gateway(
    client: &reqwest::Client,
    bazaar: &Path,
    upstream: &Server,
    layout: Layout,
) -> anyhow::Result<Server> {
    let cpus = layout.proxy();
    let mut server = Server::bazaar_on(bazaar, "gateway", "gateway", cpus, |data, port| {
        format!(
            "{data}\n\
             [log]\n\
             filter = \"warn\"\n\
             [gateway]\n\
             listen = \"127.0.0.1:{port}\"\n\
             protected = []\n\
             metrics = false\n\
             [gateway.upstreams]\n\
             echo = \"{}\"\n\
             [gateway.rate_limit]\n\
             enabled = false\n",
            upstream.url("")
        )
    })?;
    server.wait_until_ok(client, "/health/live").await?;
    Ok(server)
}

/// Identity on its own, to issue the full chain's token and serve its keys; tokens
/// live `token_ttl_secs`.
async fn identity(
    client: &reqwest::Client,
    bazaar: &Path,
    token_ttl_secs: u64,
) -> anyhow::Result<Server> {
    let mut server = Server::bazaar(bazaar, "identity", "identity", |data, port| {
        format!(
            "{data}\n\
             [log]\n\
             filter = \"warn\"\n\
             [identity]\n\
             listen = \"127.0.0.1:{port}\"\n\
             access_token_ttl_secs = {token_ttl_secs}\n"
        )
    })?;
    server.wait_until_ok(client, "/health/live").await?;
    Ok(server)
}

/// How much of each request the gateway records as spans.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Spans {
    /// None (`log.filter = "warn"`); trace context is still propagated.
    Off,
    /// Each request's spans kept in memory for the console (`log.filter = "info"`, as
    /// `bazaar up` runs).
    Recorded,
}

/// The gateway with every policy a shop request meets: the route protected (a JWT
/// verified on each request), rate limiting at a limit the benchmark never reaches (so
/// every request is counted, none refused), and metrics recorded; with `spans`.
async fn full_gateway(
    client: &reqwest::Client,
    bazaar: &Path,
    (upstream, identity): (&Server, &Server),
    layout: Layout,
    spans: Spans,
) -> anyhow::Result<Server> {
    let cpus = layout.proxy();
    let (name, filter) = match spans {
        Spans::Off => ("gateway-full", "warn"),
        Spans::Recorded => ("gateway-traced", "info"),
    };
    let mut server = Server::bazaar_on(bazaar, name, "gateway", cpus, |data, port| {
        format!(
            "{data}\n\
             [log]\n\
             filter = \"{filter}\"\n\
             [auth]\n\
             jwks_url = \"{}\"\n\
             [gateway]\n\
             listen = \"127.0.0.1:{port}\"\n\
             protected = [{{ prefix = \"/api/echo\" }}]\n\
             metrics = true\n\
             [gateway.upstreams]\n\
             echo = \"{}\"\n\
             [gateway.rate_limit]\n\
             enabled = true\n\
             anonymous_per_minute = 100000000\n\
             customer_per_minute = 100000000\n\
             admin_per_minute = 100000000\n",
            identity.url("/.well-known/jwks.json"),
            upstream.url(""),
        )
    })?;
    server.wait_until_ok(client, "/health/live").await?;
    Ok(server)
}

/// An nginx instance of its own: `-p` and `-c` in its folder, startup errors too
/// (`-e`), so it never reads or writes the system's nginx files.
fn nginx_server(
    program: &str,
    name: &'static str,
    cpus: Option<&str>,
    config: impl FnOnce(&Path, u16) -> String,
) -> anyhow::Result<Server> {
    Server::start_on(name, cpus, |dir, port| {
        let file = dir.join("nginx.conf");
        std::fs::write(&file, config(dir, port))?;
        let mut command = Command::new(program);
        command
            .arg("-p")
            .arg(dir)
            .arg("-c")
            .arg(file)
            .arg("-e")
            .arg(dir.join("error.log"));
        Ok(command)
    })
}

/// An nginx configuration that depends on nothing outside `dir`: no system paths, no
/// access log, its own pid file, and all the temporary folders nginx would otherwise
/// create under `/var/lib/nginx`.
fn nginx_config(dir: &Path, workers: u32, connections: u32, http: &str) -> String {
    let dir = dir.display();
    // nginx drops its workers' privileges to an unprivileged user when started as
    // root; that user cannot read the root-owned temporary folder.
    let user = if test_support::is_root() {
        "user root root;\n"
    } else {
        ""
    };
    let worker_connections = (connections * 2 + 64).max(1024);
    format!(
        "{user}daemon off;\n\
         worker_processes {workers};\n\
         pid {dir}/nginx.pid;\n\
         error_log {dir}/error.log warn;\n\
         events {{\n\
         \x20   worker_connections {worker_connections};\n\
         }}\n\
         http {{\n\
         \x20   access_log off;\n\
         \x20   client_body_temp_path {dir}/client_body;\n\
         \x20   proxy_temp_path {dir}/proxy;\n\
         \x20   fastcgi_temp_path {dir}/fastcgi;\n\
         \x20   uwsgi_temp_path {dir}/uwsgi;\n\
         \x20   scgi_temp_path {dir}/scgi;\n\
         \x20   keepalive_requests 1000000;\n\
         \x20   {http}\n\
         }}\n"
    )
}

/// HAProxy as a reverse proxy tuned like the nginx one: HTTP mode, idle upstream
/// connections reused by any request, `threads` threads, no logging (no `log` line).
fn haproxy_config(port: u16, upstream_port: u16, connections: u32, threads: u32) -> String {
    let maxconn = (connections * 2 + 64).max(1024);
    format!(
        "global\n\
         \x20   nbthread {threads}\n\
         \x20   maxconn {maxconn}\n\
         defaults\n\
         \x20   mode http\n\
         \x20   timeout connect 5s\n\
         \x20   timeout client 60s\n\
         \x20   timeout server 60s\n\
         \x20   http-reuse always\n\
         frontend bench\n\
         \x20   bind 127.0.0.1:{port}\n\
         \x20   use_backend echo if {{ path_beg /api/echo/ }}\n\
         backend echo\n\
         \x20   http-request replace-path /api/echo(/.*) \\1\n\
         \x20   server upstream 127.0.0.1:{upstream_port}\n"
    )
}

/// Creates the benchmark's account as an operator does (`bazaar admin create-user`,
/// confirmed at once: there is no mail service to confirm an address through) and signs
/// in at identity: its access token.
async fn access_token(
    client: &reqwest::Client,
    bazaar: &Path,
    identity: &Server,
) -> anyhow::Result<String> {
    use std::io::Write as _;

    let mut create = Command::new(bazaar)
        .arg("--config")
        .arg(identity.config_file())
        .args(["admin", "create-user", "--email", EMAIL])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .context("starting bazaar admin create-user")?;
    create
        .stdin
        .take()
        .context("the password pipe")?
        .write_all(format!("{PASSWORD}\n").as_bytes())?;
    let created = create.wait_with_output()?;
    anyhow::ensure!(
        created.status.success(),
        "bazaar admin create-user failed: {}",
        String::from_utf8_lossy(&created.stderr)
    );
    let identity = identity.url("");
    let credentials = json!({"email": EMAIL, "password": PASSWORD});
    let signed_in = client
        .post(format!("{identity}/token"))
        .json(&credentials)
        .send()
        .await?;
    let status = signed_in.status();
    let tokens: Value = signed_in.json().await.unwrap_or_default();
    anyhow::ensure!(
        status == StatusCode::OK,
        "POST {identity}/token answered {status}: {tokens}"
    );
    tokens["access_token"]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("no access_token in the answer of POST {identity}/token"))
}

/// One request per target before measuring: each must reach the upstream, and the full
/// chain must refuse a request without a token, or its figures would be pass-through's.
async fn preflight(client: &reqwest::Client, targets: &[Target<'_>]) -> anyhow::Result<()> {
    for target in targets {
        let (status, body) = get(client, &target.url, target.token).await?;
        anyhow::ensure!(
            status == StatusCode::OK && body == BODY,
            "{}: GET {} answered {status} {body:?}, not the upstream's 200 {BODY:?}",
            target.name,
            target.url
        );
        if target.token.is_some() {
            let (status, _) = get(client, &target.url, None).await?;
            anyhow::ensure!(
                status == StatusCode::UNAUTHORIZED,
                "{}: GET {} without a token answered {status}, not 401: the policy is off",
                target.name,
                target.url
            );
        }
    }
    Ok(())
}

/// The results as Markdown, ready for docs/benchmarks.md: the medians, the ratios to
/// nginx, and the budget (docs/benchmarks.md) with whether each part holds.
fn report(names: &[&str], summaries: &[Summary]) -> String {
    let find = |name: &str| Summary::named(names, summaries, name);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| target | requests/s | p50 | p99 | CPU µs/request | RSS MiB | runs with errors |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|");
    for (name, summary) in names.iter().zip(summaries) {
        let _ = writeln!(
            out,
            "| {}{} | {:.0} | {} | {} | {} | {:.1} | {} |",
            name,
            if *name == "direct" { " ¹" } else { "" },
            summary.requests_per_second,
            latency(summary.p50),
            latency(summary.p99),
            summary
                .cpu_us_per_request
                .map_or_else(|| "-".to_owned(), |cpu| format!("{cpu:.2}")),
            summary.rss_mib,
            summary.runs_with_errors,
        );
    }
    let _ = writeln!(
        out,
        "\n¹ `direct` is wrk straight to the upstream; its CPU and RSS are the upstream's \
         own (one nginx worker). For the proxies they are the proxy's processes only.\n\
         Medians over rounds; CPU is user + system time from /proc per completed request."
    );
    let (Some(nginx), Some(bazaar), Some(full)) =
        (find("nginx"), find("bazaar"), find("bazaar-full"))
    else {
        return out;
    };
    let cpu_ratio = |summary: &Summary| {
        summary
            .cpu_us_per_request
            .zip(nginx.cpu_us_per_request)
            .map_or(f64::NAN, |(cpu, nginx)| cpu / nginx)
    };
    let _ = writeln!(
        out,
        "\n| against nginx | throughput | CPU/request | p99 |\n|---|---|---|---|"
    );
    for name in ["bazaar", "bazaar-full", "bazaar-traced", "haproxy"] {
        let Some(summary) = find(name) else { continue };
        let _ = writeln!(
            out,
            "| {name} | {:.2}× | {:.2}× | {:.2}× |",
            summary.requests_per_second / nginx.requests_per_second,
            cpu_ratio(summary),
            summary.p99.as_secs_f64() / nginx.p99.as_secs_f64(),
        );
    }
    let budget = [
        (
            "bazaar CPU/request ≤ 0.9× nginx",
            cpu_ratio(bazaar),
            cpu_ratio(bazaar) <= 0.9,
        ),
        (
            "bazaar throughput ≥ nginx",
            bazaar.requests_per_second / nginx.requests_per_second,
            bazaar.requests_per_second >= nginx.requests_per_second,
        ),
        (
            "bazaar p99 ≤ nginx",
            bazaar.p99.as_secs_f64() / nginx.p99.as_secs_f64(),
            bazaar.p99 <= nginx.p99,
        ),
        (
            "bazaar-full throughput ≥ 0.85× bazaar",
            full.requests_per_second / bazaar.requests_per_second,
            full.requests_per_second >= 0.85 * bazaar.requests_per_second,
        ),
    ];
    let _ = writeln!(out, "\n| budget | measured | holds |\n|---|---|---|");
    for (target, ratio, holds) in budget {
        let _ = writeln!(
            out,
            "| {target} | {ratio:.2}× | {} |",
            if holds { "yes" } else { "**no**" }
        );
    }
    if let Some(traced) = find("bazaar-traced") {
        let _ = writeln!(
            out,
            "\nSpans recorded: the full chain at {:.2}× its throughput without them, {} µs more CPU per request.",
            traced.requests_per_second / full.requests_per_second,
            traced
                .cpu_us_per_request
                .zip(full.cpu_us_per_request)
                .map_or_else(|| "-".to_owned(), |(on, off)| format!("{:.2}", on - off)),
        );
    }
    if summaries.iter().any(|summary| summary.runs_with_errors > 0) {
        let _ = writeln!(
            out,
            "\nSome runs had non-2xx answers or socket errors (flagged above): their \
             figures count failures as requests."
        );
    }
    out
}
