//! `cargo xtask bench gateway`: what a request through the gateway costs, beside nginx
//! and HAProxy doing the same job on the same machine, in the same run.
//!
//! One upstream serves every target: an nginx of its own answering `200 ok` to
//! anything, so the proxies differ only in themselves. wrk drives five targets with the
//! same concurrency: the upstream directly (the ceiling), the gateway in pass-through,
//! nginx and HAProxy each configured as a tuned reverse proxy (pooled keep-alive
//! connections upstream, no logging, two workers as on the 2-core machine the budget is
//! set for), and the gateway with its whole policy chain (a JWT checked on every
//! request, rate limiting, metrics). Every proxy strips `/api/echo` as the gateway does,
//! so all do the same work on the path.
//!
//! A shared machine drifts, so a fixed order would charge the drift to whoever runs
//! last: each round runs all five, starting one further along each time, and the
//! report takes the median over rounds. CPU time per request comes from `/proc` (the
//! proxy and its children, before and after each wrk run), which is what a proxy costs
//! where cores are shared with the services behind it; throughput alone would hide it.
//! Nothing is asserted: the budget of DESIGN §8 is printed beside the figures.

use std::fmt::Write as _;
use std::fs::File;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use reqwest::StatusCode;
use serde_json::{Value, json};

use super::{machine, release_binary, rss_kib};
use crate::ci::{find_installed, install_missing};

const USAGE: &str = "usage: cargo xtask bench gateway [--seconds N] [--connections C] [--rounds R]";

/// The programs the benchmark runs, each with its Debian package and where it may be.
const WRK: (&str, &[&str]) = ("wrk", &["/usr/bin/wrk", "/usr/local/bin/wrk"]);
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

/// How long a server may take to answer its first request.
const START_TIMEOUT: Duration = Duration::from_secs(30);

struct Settings {
    seconds: u64,
    connections: u32,
    rounds: usize,
}

impl Settings {
    fn parse(args: &[&str]) -> anyhow::Result<Self> {
        let mut settings = Self {
            seconds: 10,
            connections: 64,
            rounds: 3,
        };
        let mut rest = args;
        while let [flag, value, tail @ ..] = rest {
            match *flag {
                "--seconds" => {
                    settings.seconds = value.parse().context("--seconds takes a number")?
                }
                "--connections" => {
                    settings.connections = value.parse().context("--connections takes a number")?;
                }
                "--rounds" => settings.rounds = value.parse().context("--rounds takes a number")?,
                _ => anyhow::bail!(USAGE),
            }
            rest = tail;
        }
        anyhow::ensure!(rest.is_empty(), USAGE);
        anyhow::ensure!(
            settings.seconds > 0 && settings.connections > 0 && settings.rounds > 0,
            "--seconds, --connections and --rounds must be at least 1"
        );
        Ok(settings)
    }
}

pub(crate) fn run(args: &[&str]) -> anyhow::Result<()> {
    let settings = Settings::parse(args)?;
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
    let servers = runtime.block_on(Servers::start(&client, nginx, haproxy, &bazaar, &settings))?;
    let targets = servers.targets();
    runtime.block_on(preflight(&client, &targets))?;

    println!(
        "gateway benchmark: {} rounds of {} s per target, {} connections, wrk -t 1",
        settings.rounds, settings.seconds, settings.connections
    );
    let samples = measure_rounds(wrk, &targets, &settings)?;
    let summaries: Vec<Summary> = samples.iter().map(|runs| Summary::of(runs)).collect();
    let names: Vec<&str> = targets.iter().map(|target| target.name).collect();
    println!("\n{}", report(&names, &summaries));
    println!("machine: {}", machine());
    println!(
        "command: cargo xtask bench gateway{}",
        args.iter()
            .fold(String::new(), |line, arg| line + " " + arg)
    );
    Ok(())
}

/// Every target's runs, in the targets' order. Each round starts one target further
/// along, so that no target always runs first (cold) or last (after the machine has
/// been loaded longest).
fn measure_rounds(
    wrk: &str,
    targets: &[Target<'_>],
    settings: &Settings,
) -> anyhow::Result<Vec<Vec<Sample>>> {
    let ticks_per_second = clock_ticks_per_second();
    // Unrecorded: fills the proxies' connection pools and the full chain's key cache.
    for target in targets {
        target.measure(
            wrk,
            settings.connections,
            settings.seconds.min(2),
            ticks_per_second,
        )?;
    }
    let mut samples: Vec<Vec<Sample>> = targets.iter().map(|_| Vec::new()).collect();
    for round in 0..settings.rounds {
        for offset in 0..targets.len() {
            let index = (round + offset) % targets.len();
            let target = &targets[index];
            let sample = target.measure(
                wrk,
                settings.connections,
                settings.seconds,
                ticks_per_second,
            )?;
            println!(
                "round {}: {:<12} {:>9.0} requests/s  p50 {:>9}  p99 {:>9}  CPU {:>7} µs/request  RSS {:>6.1} MiB{}",
                round + 1,
                target.name,
                sample.requests_per_second,
                latency(sample.p50),
                latency(sample.p99),
                sample
                    .cpu_us_per_request
                    .map_or_else(|| "-".to_owned(), |cpu| format!("{cpu:.2}")),
                sample.rss_mib,
                sample.errors_note(),
            );
            samples[index].push(sample);
        }
    }
    Ok(samples)
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
    token: String,
}

impl Servers {
    async fn start(
        client: &reqwest::Client,
        nginx: &str,
        haproxy: &str,
        bazaar: &Path,
        settings: &Settings,
    ) -> anyhow::Result<Self> {
        let connections = settings.connections;
        let upstream = upstream(client, nginx, connections).await?;
        let nginx = nginx_proxy(client, nginx, &upstream, connections).await?;
        let haproxy = haproxy_proxy(client, haproxy, &upstream, connections).await?;
        let gateway = gateway(client, bazaar, &upstream).await?;
        // The token must outlive the run, or the full chain's last runs would be 401s.
        let run_secs = settings.seconds * (settings.rounds as u64 + 1) * 5;
        let identity = identity(client, bazaar, (run_secs + 600).max(3600)).await?;
        let token = access_token(client, &identity.url("")).await?;
        let full = full_gateway(client, bazaar, &upstream, &identity).await?;
        Ok(Self {
            upstream,
            gateway,
            nginx,
            haproxy,
            _identity: identity,
            full,
            token,
        })
    }

    fn targets(&self) -> [Target<'_>; 5] {
        [
            Target::new("direct", &self.upstream, None),
            Target::new("bazaar", &self.gateway, None),
            Target::new("nginx", &self.nginx, None),
            Target::new("haproxy", &self.haproxy, None),
            Target::new("bazaar-full", &self.full, Some(&self.token)),
        ]
    }
}

/// The upstream all targets end at: one nginx worker answering `200 ok` to anything.
async fn upstream(
    client: &reqwest::Client,
    nginx: &str,
    connections: u32,
) -> anyhow::Result<Server> {
    let mut server = Server::nginx(nginx, "upstream", |dir, port| {
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
) -> anyhow::Result<Server> {
    let mut server = Server::nginx(nginx, "nginx", |dir, port| {
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
        nginx_config(dir, 2, connections, &proxy)
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
) -> anyhow::Result<Server> {
    let mut server = Server::start("haproxy", |dir, port| {
        let config = dir.join("haproxy.cfg");
        std::fs::write(&config, haproxy_config(port, upstream.port, connections))?;
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
) -> anyhow::Result<Server> {
    let mut server = Server::bazaar(bazaar, "gateway", "gateway", |data, port| {
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

/// The gateway with every policy a shop request meets: the route protected (a JWT
/// verified on each request), rate limiting at a limit the benchmark never reaches (so
/// every request is counted, none refused), and metrics recorded.
async fn full_gateway(
    client: &reqwest::Client,
    bazaar: &Path,
    upstream: &Server,
    identity: &Server,
) -> anyhow::Result<Server> {
    let mut server = Server::bazaar(bazaar, "gateway-full", "gateway", |data, port| {
        format!(
            "{data}\n\
             [log]\n\
             filter = \"warn\"\n\
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

/// A loopback port nothing listens on now. Something else may take it before the
/// server binds it; the server then fails to start, and says so in its log.
fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
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
/// connections reused by any request, two threads, no logging (no `log` line).
fn haproxy_config(port: u16, upstream_port: u16, connections: u32) -> String {
    let maxconn = (connections * 2 + 64).max(1024);
    format!(
        "global\n\
         \x20   nbthread 2\n\
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

/// Signs up the benchmark's user at identity and signs in: its access token.
async fn access_token(client: &reqwest::Client, identity: &str) -> anyhow::Result<String> {
    let credentials = json!({"email": EMAIL, "password": PASSWORD});
    let registered = client
        .post(format!("{identity}/register"))
        .json(&credentials)
        .send()
        .await?;
    let status = registered.status();
    anyhow::ensure!(
        status == StatusCode::CREATED,
        "POST {identity}/register answered {status}: {}",
        registered.text().await.unwrap_or_default()
    );
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

async fn get(
    client: &reqwest::Client,
    url: &str,
    token: Option<&str>,
) -> anyhow::Result<(StatusCode, String)> {
    let mut request = client.get(url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await?;
    let status = response.status();
    Ok((status, response.text().await?))
}

/// A process the benchmark started, with the folder holding its configuration, logs
/// and data. Dropping it stops the process and whatever it forked, then removes the
/// folder, so that an error anywhere leaves nothing running.
struct Server {
    name: &'static str,
    /// The loopback port it serves HTTP on.
    port: u16,
    child: Child,
    dir: tempfile::TempDir,
}

impl Server {
    /// Starts the command `build` makes, given a fresh folder and a free port, with its
    /// output to `output.log` in the folder.
    fn start(
        name: &'static str,
        build: impl FnOnce(&Path, u16) -> anyhow::Result<Command>,
    ) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("bazaar-bench-{name}-"))
            .tempdir()?;
        let port = free_port()?;
        let mut command = build(dir.path(), port)?;
        let output = File::create(dir.path().join("output.log"))?;
        let child = command
            .stdin(Stdio::null())
            .stdout(output.try_clone()?)
            .stderr(output)
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        Ok(Self {
            name,
            port,
            child,
            dir,
        })
    }

    /// `path` on this server.
    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// An nginx instance of its own: `-p` and `-c` in its folder, startup errors too
    /// (`-e`), so it never reads or writes the system's nginx files.
    fn nginx(
        program: &str,
        name: &'static str,
        config: impl FnOnce(&Path, u16) -> String,
    ) -> anyhow::Result<Self> {
        Self::start(name, |dir, port| {
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

    /// `bazaar serve SERVICE` with the configuration `config` writes, given the
    /// `data_dir = …` line pointing into the server's folder and the port.
    fn bazaar(
        binary: &Path,
        name: &'static str,
        service: &str,
        config: impl FnOnce(&str, u16) -> String,
    ) -> anyhow::Result<Self> {
        Self::start(name, |dir, port| {
            let data = dir.join("data").to_string_lossy().into_owned();
            // A JSON string is a valid TOML basic string, escapes included.
            let data = format!("data_dir = {}", Value::from(data));
            let file = dir.join("bazaar.toml");
            std::fs::write(&file, config(&data, port))?;
            let mut command = Command::new(binary);
            command.arg("--config").arg(file).args(["serve", service]);
            Ok(command)
        })
    }

    /// Polls `path` until it answers 200; fails with the server's logs if the server
    /// exits first or takes too long.
    async fn wait_until_ok(&mut self, client: &reqwest::Client, path: &str) -> anyhow::Result<()> {
        let url = self.url(path);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait()? {
                anyhow::bail!("{} exited with {status}\n{}", self.name, self.logs());
            }
            if let Ok((StatusCode::OK, _)) = get(client, &url, None).await {
                return Ok(());
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "{} did not answer 200 at {url} within {} s\n{}",
                self.name,
                START_TIMEOUT.as_secs(),
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The last lines of each log in the server's folder, for an error message.
    fn logs(&self) -> String {
        let mut logs = String::new();
        for log in ["output.log", "error.log"] {
            let Ok(text) = std::fs::read_to_string(self.dir.path().join(log)) else {
                continue;
            };
            let lines: Vec<&str> = text.lines().collect();
            let _ = writeln!(logs, "--- {} {log}:", self.name);
            for line in &lines[lines.len().saturating_sub(20)..] {
                let _ = writeln!(logs, "{line}");
            }
        }
        logs
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if !matches!(self.child.try_wait(), Ok(None)) {
            // It has exited, and is reaped now: its pid may be another process's already.
            return;
        }
        let family = family(self.child.id());
        // SIGTERM first: nginx's master then stops its workers, and bazaar drains; a
        // SIGKILL would leave nginx's workers running without their master.
        signal("-TERM", self.child.id());
        let deadline = Instant::now() + Duration::from_secs(5);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        for (pid, started) in family.into_iter().skip(1) {
            // Only the very process seen before, not another that reuses its pid.
            if stat(pid).is_some_and(|stat| stat.started == started) {
                signal("-KILL", pid);
            }
        }
    }
}

/// Sends `signal` to `pid` with kill(1): the crate forbids the unsafe a direct
/// system call would need.
fn signal(signal: &str, pid: u32) {
    let _ = Command::new("kill")
        .args([signal, &pid.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// What wrk is pointed at, and whose CPU and memory are charged to it.
struct Target<'a> {
    name: &'static str,
    url: String,
    token: Option<&'a str>,
    /// The proxy (the upstream, for `direct`), counted with its child processes.
    charged: &'a Server,
}

/// One wrk run against one target.
struct Sample {
    requests_per_second: f64,
    p50: Duration,
    p99: Duration,
    /// The charged processes' user and system CPU time over the run, per request.
    cpu_us_per_request: Option<f64>,
    /// Their resident memory, summed, after the run.
    rss_mib: f64,
    non_2xx: u64,
    socket_errors: u64,
}

impl Sample {
    fn errors_note(&self) -> String {
        if self.non_2xx + self.socket_errors == 0 {
            String::new()
        } else {
            format!(
                "  ERRORS: {} non-2xx/3xx, {} socket",
                self.non_2xx, self.socket_errors
            )
        }
    }
}

impl<'a> Target<'a> {
    fn new(name: &'static str, server: &'a Server, token: Option<&'a str>) -> Self {
        Self {
            name,
            url: server.url(PATH),
            token,
            charged: server,
        }
    }

    fn measure(
        &self,
        wrk: &str,
        connections: u32,
        seconds: u64,
        ticks_per_second: f64,
    ) -> anyhow::Result<Sample> {
        let family = family(self.charged.child.id());
        let mut command = Command::new(wrk);
        command.args([
            "-t",
            "1",
            "-c",
            &connections.to_string(),
            "-d",
            &format!("{seconds}s"),
            "--latency",
        ]);
        if let Some(token) = self.token {
            command.args(["-H", &format!("Authorization: Bearer {token}")]);
        }
        command.arg(&self.url);
        let before = cpu_ticks(&family);
        let output = command.output().context("running wrk")?;
        let after = cpu_ticks(&family);
        let stdout = String::from_utf8_lossy(&output.stdout);
        anyhow::ensure!(
            output.status.success(),
            "wrk against {} failed with {}: {stdout}{}",
            self.name,
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        let report = WrkReport::parse(&stdout)
            .with_context(|| format!("reading wrk's report on {}:\n{stdout}", self.name))?;
        let rss_kib: u64 = family
            .iter()
            .filter_map(|(pid, _)| rss_kib(*pid).ok())
            .sum();
        Ok(Sample {
            requests_per_second: report.requests_per_second,
            p50: report.p50,
            p99: report.p99,
            cpu_us_per_request: (report.requests > 0).then(|| {
                after.saturating_sub(before) as f64 / ticks_per_second * 1e6
                    / report.requests as f64
            }),
            rss_mib: rss_kib as f64 / 1024.0,
            non_2xx: report.non_2xx,
            socket_errors: report.socket_errors,
        })
    }
}

/// What `wrk --latency` prints that the benchmark uses.
#[derive(Debug, PartialEq)]
struct WrkReport {
    requests_per_second: f64,
    p50: Duration,
    p99: Duration,
    requests: u64,
    /// Answers outside 2xx and 3xx (wrk counts them together).
    non_2xx: u64,
    /// Failed connects, reads and writes, and timeouts.
    socket_errors: u64,
}

impl WrkReport {
    fn parse(output: &str) -> anyhow::Result<Self> {
        let (mut requests_per_second, mut p50, mut p99, mut requests) = (None, None, None, None);
        let (mut non_2xx, mut socket_errors) = (0, 0);
        for line in output.lines().map(str::trim) {
            if let Some(value) = line.strip_prefix("Requests/sec:") {
                requests_per_second = value.trim().parse().ok();
            } else if let Some(value) = line.strip_prefix("50%") {
                p50 = parse_latency(value.trim());
            } else if let Some(value) = line.strip_prefix("99%") {
                p99 = parse_latency(value.trim());
            } else if let Some((count, _)) = line.split_once(" requests in ") {
                requests = count.trim().parse().ok();
            } else if let Some(value) = line.strip_prefix("Non-2xx or 3xx responses:") {
                non_2xx = value.trim().parse()?;
            } else if let Some(counts) = line.strip_prefix("Socket errors:") {
                // `connect 0, read 0, write 0, timeout 0`
                for count in counts.split(',') {
                    socket_errors += count
                        .split_whitespace()
                        .last()
                        .context("an empty socket error count")?
                        .parse::<u64>()?;
                }
            }
        }
        Ok(Self {
            requests_per_second: requests_per_second.context("no Requests/sec line")?,
            p50: p50.context("no 50% line (was --latency given?)")?,
            p99: p99.context("no 99% line (was --latency given?)")?,
            requests: requests.context("no `N requests in` line")?,
            non_2xx,
            socket_errors,
        })
    }
}

/// A wrk duration: `812.00us`, `1.25ms`, `2.00s` or `1.00m`.
fn parse_latency(value: &str) -> Option<Duration> {
    let split = value.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = value.split_at(split);
    let number: f64 = number.parse().ok()?;
    let seconds = match unit {
        "us" => number / 1e6,
        "ms" => number / 1e3,
        "s" => number,
        "m" => number * 60.0,
        "h" => number * 3600.0,
        _ => return None,
    };
    Some(Duration::from_secs_f64(seconds))
}

/// The fields of `/proc/PID/stat` the benchmark needs (proc(5) numbers them from 1).
struct Stat {
    /// Field 4.
    parent: u32,
    /// Fields 14 and 15: user and system time, in clock ticks.
    cpu_ticks: u64,
    /// Field 22, in clock ticks since boot: with the pid, names one process for good.
    started: u64,
}

fn stat(pid: u32) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces and ')'; field
    // 3 starts after the last ')'.
    let fields: Vec<&str> = text
        .get(text.rfind(')')? + 1..)?
        .split_whitespace()
        .collect();
    let field = |number: usize| fields.get(number - 3)?.parse::<u64>().ok();
    Some(Stat {
        parent: u32::try_from(field(4)?).ok()?,
        cpu_ticks: field(14)? + field(15)?,
        started: field(22)?,
    })
}

/// `pid` and all its descendants (nginx's workers), each with its start time.
fn family(pid: u32) -> Vec<(u32, u64)> {
    let processes: Vec<(u32, Stat)> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| Some((pid, stat(pid)?)))
        .collect();
    let mut family: Vec<(u32, u64)> = processes
        .iter()
        .filter(|(candidate, _)| *candidate == pid)
        .map(|(pid, stat)| (*pid, stat.started))
        .collect();
    let mut index = 0;
    while let Some(&(parent, _)) = family.get(index) {
        family.extend(
            processes
                .iter()
                .filter(|(_, stat)| stat.parent == parent)
                .map(|(pid, stat)| (*pid, stat.started)),
        );
        index += 1;
    }
    family
}

/// User and system CPU time so far of the processes of `family`, in clock ticks.
fn cpu_ticks(family: &[(u32, u64)]) -> u64 {
    family
        .iter()
        .filter_map(|(pid, _)| stat(*pid).map(|stat| stat.cpu_ticks))
        .sum()
}

/// The unit of `/proc/PID/stat`'s times; 100 on every common Linux, asked all the same.
fn clock_ticks_per_second() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|output| String::from_utf8(output.stdout).ok()?.trim().parse().ok())
        .filter(|ticks: &f64| *ticks > 0.0)
        .unwrap_or(100.0)
}

/// The medians over rounds of one target's runs: a slow round on a shared machine
/// moves a median less than a mean.
struct Summary {
    requests_per_second: f64,
    p50: Duration,
    p99: Duration,
    cpu_us_per_request: Option<f64>,
    rss_mib: f64,
    runs_with_errors: usize,
}

impl Summary {
    fn of(runs: &[Sample]) -> Self {
        let of = |value: fn(&Sample) -> f64| median(runs.iter().map(value).collect());
        let cpu: Vec<f64> = runs
            .iter()
            .filter_map(|run| run.cpu_us_per_request)
            .collect();
        Self {
            requests_per_second: of(|run| run.requests_per_second),
            p50: Duration::from_secs_f64(of(|run| run.p50.as_secs_f64())),
            p99: Duration::from_secs_f64(of(|run| run.p99.as_secs_f64())),
            cpu_us_per_request: (!cpu.is_empty()).then(|| median(cpu)),
            rss_mib: of(|run| run.rss_mib),
            runs_with_errors: runs
                .iter()
                .filter(|run| run.non_2xx + run.socket_errors > 0)
                .count(),
        }
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    match values.len() {
        0 => f64::NAN,
        length if length % 2 == 1 => values[middle],
        _ => f64::midpoint(values[middle - 1], values[middle]),
    }
}

fn latency(duration: Duration) -> String {
    let micros = duration.as_secs_f64() * 1e6;
    if micros < 1000.0 {
        format!("{micros:.0} µs")
    } else {
        format!("{:.2} ms", micros / 1000.0)
    }
}

/// The results as Markdown, ready for docs/benchmarks.md: the medians, the ratios to
/// nginx, and the budget of DESIGN §8 with whether each part holds.
fn report(names: &[&str], summaries: &[Summary]) -> String {
    let find = |name: &str| {
        names
            .iter()
            .position(|candidate| *candidate == name)
            .map(|index| &summaries[index])
    };
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
    for name in ["bazaar", "bazaar-full", "haproxy"] {
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
    let _ = writeln!(
        out,
        "\n| DESIGN §8 target | measured | holds |\n|---|---|---|"
    );
    for (target, ratio, holds) in budget {
        let _ = writeln!(
            out,
            "| {target} | {ratio:.2}× | {} |",
            if holds { "yes" } else { "**no**" }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// wrk 4.1 (Debian 12) through nginx, as the benchmark runs it.
    const CLEAN: &str = "Running 3s test @ http://127.0.0.1:18232/api/echo/hello
  1 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     2.22ms    1.36ms  18.40ms   89.79%
    Req/Sec    27.80k     2.81k   37.79k    83.87%
  Latency Distribution
     50%  802.00us
     75%    2.46ms
     90%    3.23ms
     99%    8.01ms
  85679 requests in 3.13s, 12.26MB read
Requests/sec:  27369.78
Transfer/sec:      3.92MB
";

    #[test]
    fn reads_a_clean_run() {
        assert_eq!(
            WrkReport::parse(CLEAN).unwrap(),
            WrkReport {
                requests_per_second: 27369.78,
                p50: Duration::from_micros(802),
                p99: Duration::from_micros(8010),
                requests: 85679,
                non_2xx: 0,
                socket_errors: 0,
            }
        );
    }

    #[test]
    fn counts_error_answers_and_socket_errors() {
        let errors = CLEAN.replace(
            "Requests/sec",
            "  Socket errors: connect 1, read 19734, write 2, timeout 3\n  \
             Non-2xx or 3xx responses: 64637\nRequests/sec",
        );
        let report = WrkReport::parse(&errors).unwrap();
        assert_eq!((report.non_2xx, report.socket_errors), (64637, 19740));
    }

    #[test]
    fn refuses_a_report_without_the_latency_distribution() {
        let short: String = CLEAN
            .lines()
            .filter(|line| !line.trim().starts_with("99%"))
            .map(|line| format!("{line}\n"))
            .collect();
        assert!(WrkReport::parse(&short).is_err());
    }

    #[test]
    fn reads_every_unit_wrk_prints() {
        assert_eq!(parse_latency("0.00us"), Some(Duration::ZERO));
        assert_eq!(parse_latency("1.50s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_latency("2.00m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_latency("3.0x"), None);
    }

    #[test]
    fn reads_its_own_process_statistics() {
        let own = stat(std::process::id()).unwrap();
        assert!(own.started > 0);
        let family = family(std::process::id());
        assert_eq!(family[0], (std::process::id(), own.started));
        assert!(cpu_ticks(&family) >= own.cpu_ticks);
    }

    #[test]
    fn takes_the_middle_of_the_rounds() {
        assert!((median(vec![3.0, 1.0, 2.0]) - 2.0).abs() < f64::EPSILON);
        assert!((median(vec![4.0, 1.0, 2.0, 3.0]) - 2.5).abs() < f64::EPSILON);
    }
}
