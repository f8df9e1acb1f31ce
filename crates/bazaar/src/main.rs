//! `bazaar`: runs the whole shop in one process (`bazaar up`, the default) or any subset
//! of its services (`bazaar serve catalog`), prints the effective configuration
//! (`bazaar config`), audits the shop's invariants (`bazaar verify`), and does operator
//! tasks (`bazaar admin create-user`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use bazaar::{Config, ServiceName, admin, shop::Shop};
use clap::{Parser, Subcommand};
use contracts::identity::Role;
use platform::shutdown::Shutdown;

/// mimalloc, not the system's allocator: glibc keeps what a burst of work freed (a
/// password hash's 19 MiB, a load peak's buffers) for the life of the process, while
/// mimalloc returns freed pages to the system soon after. docs/benchmarks.md has the
/// figures.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Turns transparent huge pages off for this process, first thing in `main`. mimalloc
/// asks for them on its arenas, and the kernel then backs a mostly empty 2 MiB region
/// with a whole huge page and keeps it there: under load that was two fifths of the
/// shop's resident memory, and bought no throughput (docs/benchmarks.md, "Memory").
fn small_pages() {
    #[cfg(target_os = "linux")]
    if let Err(error) = rustix::thread::disable_transparent_huge_pages(true) {
        eprintln!("bazaar: transparent huge pages stay on: {error}");
    }
}

#[derive(Parser)]
#[command(
    name = "bazaar",
    version,
    about = "An e-commerce shop built as Rust microservices"
)]
struct Cli {
    /// A TOML configuration file; `BAZAAR__SECTION__KEY` environment variables override it.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run every service in this process (the default).
    Up,
    /// Run only the named services, e.g. one per container.
    Serve {
        /// The services to run.
        #[arg(required = true, value_enum)]
        services: Vec<ServiceName>,
    },
    /// Print the effective configuration as TOML, secrets redacted.
    Config,
    /// Audit the shop's invariants across services (read-only); exits non-zero on any
    /// violation. It may run on a live shop: orders in flight are skipped.
    Verify {
        /// How long a confirmed order's confirmation email may still be on its way
        /// before its absence is a violation.
        #[arg(long, default_value_t = 60)]
        email_grace_secs: u64,
    },
    /// Exit 0 if `url` answers 200 within two seconds: a health check for containers
    /// that have no shell or curl, e.g. `bazaar probe http://127.0.0.1:8107/health/ready`.
    Probe {
        /// A plain `http://host:port/path` URL.
        url: String,
    },
    /// List the feature flags (the default variant marked `*`), or switch one, e.g.
    /// `bazaar flags set payments-decline-all on`; a running shop reads the change
    /// within a second.
    Flags {
        #[command(subcommand)]
        command: Option<FlagsCommand>,
    },
    /// Shoppers walking weighted journeys through the shop's public URL (the API and
    /// the storefront's pages), in a closed loop of `--users` or an open loop at
    /// `--rate` journeys a second; a table of what was measured, and `--json` for a
    /// machine. Customers' journeys need accounts: `--customers N` makes them in this
    /// shop's identity database, `--accounts FILE` reads `email password` lines.
    Load {
        /// The shop's URL; by default this configuration's gateway.
        #[arg(long)]
        url: Option<String>,
        /// Shoppers in a closed loop (without `--rate`).
        #[arg(long, default_value_t = 8)]
        users: usize,
        /// Journeys started per second, whatever became of the earlier ones.
        #[arg(long)]
        rate: Option<f64>,
        /// The most journeys running at once in an open loop.
        #[arg(long, default_value_t = 1000)]
        max_in_flight: usize,
        /// How long journeys are started for.
        #[arg(long, default_value_t = 30)]
        seconds: u64,
        /// Over how many seconds the closed loop's shoppers start.
        #[arg(long, default_value_t = 0)]
        ramp_up: u64,
        /// Journey weights, e.g. `browse=40,product=25,search=15,cart=10,checkout=10`.
        #[arg(long, value_parser = load::Mix::parse)]
        mix: Option<load::Mix>,
        /// Customers to make (or reuse) in this shop's identity database.
        #[arg(long, default_value_t = 0)]
        customers: usize,
        /// A file of `email password` lines, one customer each.
        #[arg(long)]
        accounts: Option<PathBuf>,
        /// Where to write the report as JSON.
        #[arg(long)]
        json: Option<PathBuf>,
        /// No progress line each second.
        #[arg(long)]
        quiet: bool,
    },
    /// Break the shop on purpose under load and check it heals: `bazaar chaos list`,
    /// `bazaar chaos run broker-outage`.
    Chaos {
        #[command(subcommand)]
        command: ChaosCommand,
    },
    /// Operator tasks that work on the services' databases directly.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
}

#[derive(Subcommand)]
enum ChaosCommand {
    /// The scenarios: each a fault flag and the variant that breaks.
    List,
    /// Shoppers on; the fault on for `--fault` seconds after `--before`; off for
    /// `--after`; then the audit until clean (at most `--settle`). Exits non-zero if an
    /// invariant is violated in the end.
    Run {
        /// The scenario, e.g. `broker-outage`.
        scenario: String,
        /// Seconds of load before the fault.
        #[arg(long, default_value_t = 10)]
        before: u64,
        /// Seconds with the fault on.
        #[arg(long, default_value_t = 20)]
        fault: u64,
        /// Seconds of load after the fault is lifted.
        #[arg(long, default_value_t = 20)]
        after: u64,
        /// The longest wait for a clean audit once the load has ended.
        #[arg(long, default_value_t = 60)]
        settle: u64,
        /// Shoppers in a closed loop.
        #[arg(long, default_value_t = 8)]
        users: usize,
        /// Customers made (or reused) in this shop's identity database.
        #[arg(long, default_value_t = 8)]
        customers: usize,
        /// The shop's URL; by default this configuration's gateway.
        #[arg(long)]
        url: Option<String>,
    },
}

#[derive(Subcommand)]
enum FlagsCommand {
    /// Give everyone `variant` of `flag` (a targeting rule still chooses for those it
    /// matches).
    Set {
        /// The flag, e.g. `payments-decline-all`.
        flag: String,
        /// One of its variants, e.g. `on`.
        variant: String,
    },
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Create an account, e.g. the first admin. The password is read from the terminal
    /// (without echo) or, when piped, from the first line of standard input; never from
    /// the command line, where other users could see it.
    CreateUser {
        /// The account's email address.
        #[arg(long)]
        email: String,
        /// A role beyond `customer`, which every account has; repeatable.
        #[arg(long = "role", value_parser = parse_role)]
        roles: Vec<Role>,
    },
}

fn parse_role(text: &str) -> Result<Role, String> {
    Role::parse(text).ok_or_else(|| format!("{text:?} is not a role: use customer or admin"))
}

fn main() -> ExitCode {
    small_pages();
    let cli = Cli::parse();
    let config: Config = match platform::config::load(cli.config.as_deref()) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("bazaar: {error}");
            return ExitCode::from(2);
        }
    };
    let command = cli.command.unwrap_or(Command::Up);
    let mut config = config;
    if matches!(command, Command::Up) && config.auth.forwarding_secret.is_none() {
        // Every proxy and service of this shop is in this process: a secret of its own
        // tells them from any other local process that claims to forward a client.
        match platform::config::Secret::random() {
            Ok(secret) => config.auth.forwarding_secret = Some(secret),
            Err(error) => {
                eprintln!("bazaar: {error:#}");
                return ExitCode::FAILURE;
            }
        }
    }
    let config = config.resolved();
    let outcome = match command {
        Command::Config => print_config(&config),
        Command::Up => run(&config, &ServiceName::ALL),
        Command::Serve { services } => run(&config, &services),
        Command::Verify { email_grace_secs } => {
            return verify(&config, Duration::from_secs(email_grace_secs));
        }
        Command::Probe { url } => probe(&url),
        Command::Load {
            url,
            users,
            rate,
            max_in_flight,
            seconds,
            ramp_up,
            mix,
            customers,
            accounts,
            json,
            quiet,
        } => bazaar::load::accounts(&config, accounts.as_deref(), customers).and_then(|accounts| {
            let settings = load::Settings {
                url: url.unwrap_or_else(|| bazaar::load::default_url(&config)),
                duration: Duration::from_secs(seconds),
                ramp_up: Duration::from_secs(ramp_up),
                pace: match rate {
                    Some(per_second) => load::Pace::Open {
                        per_second,
                        max_in_flight,
                    },
                    None => load::Pace::Closed { users },
                },
                mix: mix.unwrap_or_default(),
                accounts,
                progress: !quiet,
            };
            bazaar::load::run(settings, json.as_deref()).map(|table| say(&table))
        }),
        Command::Chaos {
            command: ChaosCommand::List,
        } => {
            say(&bazaar::chaos::list());
            Ok(())
        }
        Command::Chaos {
            command:
                ChaosCommand::Run {
                    scenario,
                    before,
                    fault,
                    after,
                    settle,
                    users,
                    customers,
                    url,
                },
        } => bazaar::chaos::scenario(&scenario).and_then(|scenario| {
            let accounts = bazaar::load::accounts(&config, None, customers)?;
            let phases = bazaar::chaos::Phases {
                before: Duration::from_secs(before),
                fault: Duration::from_secs(fault),
                after: Duration::from_secs(after),
                settle: Duration::from_secs(settle),
                email_grace: Duration::from_secs(60),
            };
            let shoppers = load::Settings {
                url: url.unwrap_or_else(|| bazaar::load::default_url(&config)),
                duration: Duration::ZERO,
                ramp_up: Duration::ZERO,
                pace: load::Pace::Closed { users },
                mix: load::Mix::default(),
                accounts,
                progress: false,
            };
            let outcome = bazaar::chaos::run(&config, scenario, &phases, shoppers)?;
            say(&outcome.report);
            anyhow::ensure!(outcome.clean, "the shop's invariants were violated");
            Ok(())
        }),
        Command::Flags { command: None } => {
            bazaar::flags::list(&config).map(|listing| say(&listing))
        }
        Command::Flags {
            command: Some(FlagsCommand::Set { flag, variant }),
        } => bazaar::flags::set(&config, &flag, &variant).map(|done| say(&done)),
        Command::Admin {
            command: AdminCommand::CreateUser { email, roles },
        } => admin::create_user(&config, &email, roles),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("bazaar: {error:#}");
            ExitCode::FAILURE
        }
    }
}

#[allow(clippy::print_stdout, reason = "a command's answer")]
fn say(text: &str) {
    println!("{}", text.trim_end());
}

#[allow(
    clippy::print_stdout,
    reason = "printing the configuration is this command's job"
)]
fn print_config(config: &Config) -> anyhow::Result<()> {
    print!("{}", toml::to_string_pretty(config)?);
    Ok(())
}

#[allow(
    clippy::print_stdout,
    reason = "printing the report is this command's job"
)]
fn verify(config: &Config, email_grace: Duration) -> ExitCode {
    let report = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|runtime| runtime.block_on(bazaar::verify::run(config, email_grace)));
    match report {
        Ok(report) => {
            println!("{report}");
            if report.is_clean() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(error) => {
            eprintln!("bazaar: the audit could not read the shop: {error:#}");
            ExitCode::from(3)
        }
    }
}

fn probe(url: &str) -> anyhow::Result<()> {
    use std::io::{Read as _, Write as _};
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| anyhow::anyhow!("{url:?} is not an http:// URL"))?;
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let address = std::net::ToSocketAddrs::to_socket_addrs(authority)?
        .next()
        .ok_or_else(|| anyhow::anyhow!("{authority} resolves to nothing"))?;
    let timeout = Duration::from_secs(2);
    let mut stream = std::net::TcpStream::connect_timeout(&address, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    let request = format!("GET /{path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes())?;
    let mut head = [0_u8; 12];
    stream.read_exact(&mut head)?;
    anyhow::ensure!(
        head.starts_with(b"HTTP/1.1 200"),
        "{url} answered {}",
        String::from_utf8_lossy(&head)
    );
    Ok(())
}

fn run(config: &Config, services: &[ServiceName]) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(async {
            let started = Instant::now();
            // Inside the runtime: the trace exporter's client lives there. Dropped last,
            // it exports the spans still queued.
            let _tracing = platform::telemetry::init_logs(&config.log)?;
            let shutdown = Shutdown::new();
            shutdown.trigger_on_os_signal();
            let shop = Shop::start(config, services, shutdown).await?;
            announce(&shop, started);
            shop.wait().await
        })
}

#[allow(clippy::print_stdout, reason = "telling the user where the shop is")]
fn announce(shop: &Shop, started: Instant) {
    let ready_ms = started.elapsed().as_millis();
    for service in ServiceName::ALL {
        if let Some(address) = shop.address(service) {
            tracing::info!(%service, %address, "serving");
        }
    }
    match shop.address(ServiceName::Gateway) {
        Some(address) => println!("Bazaar is ready in {ready_ms} ms: http://{address}/"),
        None => println!("Bazaar services are ready in {ready_ms} ms"),
    }
}
