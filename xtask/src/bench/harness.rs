//! What every wrk benchmark shares: starting the servers under test (and stopping
//! them and everything they forked), running wrk against a target while charging the
//! CPU time of the target's processes from `/proc`, reading wrk's report, and taking
//! medians over rounds.

use std::fmt::Write as _;
use std::fs::File;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use reqwest::StatusCode;
use serde_json::Value;

use super::rss_kib;

/// wrk: its Debian package and where it may be.
pub(crate) const WRK: (&str, &[&str]) = ("wrk", &["/usr/bin/wrk", "/usr/local/bin/wrk"]);

/// How long a server may take to answer its first request.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// How long, how hard and how often each target is measured.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Settings {
    /// Seconds per run.
    pub(crate) seconds: u64,
    /// wrk's connections.
    pub(crate) connections: u32,
    /// Runs of every target.
    pub(crate) rounds: usize,
    /// The CPUs wrk runs on (a `taskset` list), if not all.
    pub(crate) wrk_cpus: Option<&'static str>,
}

impl Settings {
    /// `--seconds N --connections C --rounds R`, each optional; `usage` is the error.
    pub(crate) fn parse(args: &[&str], usage: &str) -> anyhow::Result<Self> {
        let mut settings = Self {
            seconds: 10,
            connections: 64,
            rounds: 3,
            wrk_cpus: None,
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
                _ => anyhow::bail!(usage.to_owned()),
            }
            rest = tail;
        }
        anyhow::ensure!(rest.is_empty(), usage.to_owned());
        anyhow::ensure!(
            settings.seconds > 0 && settings.connections > 0 && settings.rounds > 0,
            "--seconds, --connections and --rounds must be at least 1"
        );
        Ok(settings)
    }
}

/// Every target's runs, in the targets' order. Each round starts one target further
/// along, so that no target always runs first (cold) or last (after the machine has
/// been loaded longest).
pub(crate) fn measure_rounds(
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
            settings.wrk_cpus,
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
                settings.wrk_cpus,
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

/// `command` run by `taskset` on the CPUs `cpus` only. taskset executes the program in
/// its own process, so the process id is still the program's.
pub(crate) fn on_cpus(command: &Command, cpus: &str) -> Command {
    let mut pinned = Command::new("taskset");
    pinned
        .arg("-c")
        .arg(cpus)
        .arg(command.get_program())
        .args(command.get_args());
    pinned
}

/// A loopback port nothing listens on now. Something else may take it before the
/// server binds it; the server then fails to start, and says so in its log.
pub(crate) fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// `GET url` (with `token` as a bearer): its status and body.
pub(crate) async fn get(
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
pub(crate) struct Server {
    pub(crate) name: &'static str,
    /// The loopback port it serves HTTP on.
    pub(crate) port: u16,
    pub(crate) child: Child,
    dir: tempfile::TempDir,
}

impl Server {
    /// Starts the command `build` makes, given a fresh folder and a free port, with its
    /// output to `output.log` in the folder.
    pub(crate) fn start(
        name: &'static str,
        build: impl FnOnce(&Path, u16) -> anyhow::Result<Command>,
    ) -> anyhow::Result<Self> {
        Self::start_on(name, None, build)
    }

    /// [`Server::start`], the server running on the CPUs `cpus` only (a `taskset`
    /// list, e.g. `0`) when given.
    pub(crate) fn start_on(
        name: &'static str,
        cpus: Option<&str>,
        build: impl FnOnce(&Path, u16) -> anyhow::Result<Command>,
    ) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("bazaar-bench-{name}-"))
            .tempdir()?;
        let port = free_port()?;
        let mut command = build(dir.path(), port)?;
        if let Some(cpus) = cpus {
            command = on_cpus(&command, cpus);
        }
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
    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// `bazaar serve SERVICE` with the configuration `config` writes, given the
    /// `data_dir = …` line pointing into the server's folder and the port.
    pub(crate) fn bazaar(
        binary: &Path,
        name: &'static str,
        service: &str,
        config: impl FnOnce(&str, u16) -> String,
    ) -> anyhow::Result<Self> {
        Self::bazaar_on(binary, name, service, None, config)
    }

    /// [`Server::bazaar`] on the CPUs `cpus` only, when given: its runtime then sizes
    /// itself to them.
    pub(crate) fn bazaar_on(
        binary: &Path,
        name: &'static str,
        service: &str,
        cpus: Option<&str>,
        config: impl FnOnce(&str, u16) -> String,
    ) -> anyhow::Result<Self> {
        Self::start_on(name, cpus, |dir, port| {
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
    pub(crate) async fn wait_until_ok(
        &mut self,
        client: &reqwest::Client,
        path: &str,
    ) -> anyhow::Result<()> {
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

    /// The configuration file [`Server::bazaar`] wrote for it.
    pub(crate) fn config_file(&self) -> std::path::PathBuf {
        self.dir.path().join("bazaar.toml")
    }

    /// The last lines of each log in the server's folder, for an error message.
    pub(crate) fn logs(&self) -> String {
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
pub(crate) struct Target<'a> {
    pub(crate) name: &'static str,
    /// Where wrk sends its requests.
    pub(crate) url: String,
    /// A bearer token sent with every request.
    pub(crate) token: Option<&'a str>,
    /// The proxy (the upstream, for `direct`), counted with its child processes.
    pub(crate) charged: &'a Server,
}

/// One wrk run against one target.
pub(crate) struct Sample {
    pub(crate) requests_per_second: f64,
    pub(crate) p50: Duration,
    pub(crate) p99: Duration,
    /// The charged processes' user and system CPU time over the run, per request.
    pub(crate) cpu_us_per_request: Option<f64>,
    /// Their resident memory, summed, after the run.
    pub(crate) rss_mib: f64,
    pub(crate) non_2xx: u64,
    pub(crate) socket_errors: u64,
}

impl Sample {
    pub(crate) fn errors_note(&self) -> String {
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
    /// `path` on `server`, charged to `server`.
    pub(crate) fn new(
        name: &'static str,
        server: &'a Server,
        path: &str,
        token: Option<&'a str>,
    ) -> Self {
        Self {
            name,
            url: server.url(path),
            token,
            charged: server,
        }
    }

    pub(crate) fn measure(
        &self,
        wrk: &str,
        connections: u32,
        seconds: u64,
        ticks_per_second: f64,
        cpus: Option<&str>,
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
        if let Some(cpus) = cpus {
            command = on_cpus(&command, cpus);
        }
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
pub(crate) struct WrkReport {
    pub(crate) requests_per_second: f64,
    pub(crate) p50: Duration,
    pub(crate) p99: Duration,
    pub(crate) requests: u64,
    /// Answers outside 2xx and 3xx (wrk counts them together).
    pub(crate) non_2xx: u64,
    /// Failed connects, reads and writes, and timeouts.
    pub(crate) socket_errors: u64,
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
pub(crate) fn family(pid: u32) -> Vec<(u32, u64)> {
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
pub(crate) fn cpu_ticks(family: &[(u32, u64)]) -> u64 {
    family
        .iter()
        .filter_map(|(pid, _)| stat(*pid).map(|stat| stat.cpu_ticks))
        .sum()
}

/// The unit of `/proc/PID/stat`'s times; 100 on every common Linux, asked all the same.
pub(crate) fn clock_ticks_per_second() -> f64 {
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
pub(crate) struct Summary {
    pub(crate) requests_per_second: f64,
    pub(crate) p50: Duration,
    pub(crate) p99: Duration,
    pub(crate) cpu_us_per_request: Option<f64>,
    pub(crate) rss_mib: f64,
    pub(crate) runs_with_errors: usize,
}

impl Summary {
    /// The summary of the target called `name`, `names` and `summaries` being in the
    /// targets' order.
    pub(crate) fn named<'a>(
        names: &[&str],
        summaries: &'a [Summary],
        name: &str,
    ) -> Option<&'a Summary> {
        names
            .iter()
            .position(|candidate| *candidate == name)
            .and_then(|index| summaries.get(index))
    }

    pub(crate) fn of(runs: &[Sample]) -> Self {
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

pub(crate) fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    match values.len() {
        0 => f64::NAN,
        length if length % 2 == 1 => values[middle],
        _ => f64::midpoint(values[middle - 1], values[middle]),
    }
}

pub(crate) fn latency(duration: Duration) -> String {
    let micros = duration.as_secs_f64() * 1e6;
    if micros < 1000.0 {
        format!("{micros:.0} µs")
    } else {
        format!("{:.2} ms", micros / 1000.0)
    }
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
