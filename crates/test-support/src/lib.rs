//! Test-only helpers: fresh databases on both engines, a ready HTTP client, a
//! service's [`context`] over an [`embedded_bus`] of the test's own, [`serve`] to run
//! the built service on port 0, and [`publish`] and [`next_message`] to talk to it over
//! the bus as another service would; [`eventually`] waits for what a test cannot drive.
//!
//! PostgreSQL tests use the server on `127.0.0.1:5432` when one answers (override with
//! `BAZAAR_TEST_POSTGRES_URL`). Otherwise they start a throwaway server from the
//! installed `initdb`/`pg_ctl` under `target/`, shared by later test binaries, which
//! `cargo xtask ci` stops at the end. If neither works, the test fails and says what to
//! install: a PostgreSQL test never passes by skipping.
//!
//! [`ids`] turns the names tests give orders, products and users into real ids.
//!
//! [`security`] holds the checks every service reuses: the JWT attack corpus and the
//! object-level authorization check. [`nats::NatsServer`] is a JetStream server of the
//! test's own, which it can kill and restart.

pub mod duplicating;
pub mod ids;
pub mod mail;
pub mod nats;
pub mod proxy;
pub mod redis;
pub mod security;
pub mod smtp;

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use contracts::identity::{AUDIENCE, AccessClaims, Role};
use contracts::messaging::{Envelope, Message};
pub use ids::{order_id, product_id, user_id};
use platform::auth::Verifier;
use platform::bus::embedded::EmbeddedBus;
use platform::bus::{Bus, Subscription};
use platform::config::DatabaseUrl;
use platform::outbox::{self, Origin};
use platform::service::{Context, Service};
use platform::shutdown::Shutdown;
use sqlx::{Connection as _, Executor as _};
use tokio::net::TcpListener;

/// The port of the throwaway server, when the test suite has to start its own.
pub const THROWAWAY_POSTGRES_PORT: u16 = 55432;

/// The database engines every service is tested against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    /// A fresh SQLite file.
    Sqlite,
    /// A fresh PostgreSQL database.
    Postgres,
}

/// A database that exists for one test and is removed afterwards.
pub struct TestDatabase {
    url: DatabaseUrl,
    cleanup: Cleanup,
}

enum Cleanup {
    Sqlite(
        #[allow(dead_code, reason = "held so the folder lives as long as the test")]
        tempfile::TempDir,
    ),
    Postgres {
        admin_url: String,
        name: String,
    },
}

impl TestDatabase {
    /// A fresh, empty database on `engine`.
    pub async fn new(engine: Engine) -> Self {
        match engine {
            Engine::Sqlite => {
                let folder = tempfile::tempdir().expect("a temporary folder");
                let url = DatabaseUrl::sqlite_file(&folder.path().join("test.db"));
                Self {
                    url,
                    cleanup: Cleanup::Sqlite(folder),
                }
            }
            Engine::Postgres => {
                let admin_url = postgres_admin_url();
                let name = format!("bazaar_test_{}", uuid::Uuid::now_v7().simple());
                let mut admin = sqlx::postgres::PgConnection::connect(&admin_url)
                    .await
                    .unwrap_or_else(|error| panic!("connecting to {admin_url}: {error}"));
                admin
                    .execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .await
                    .expect("creating a test database");
                let _ = admin.close().await;
                let base = admin_url
                    .rsplit_once('/')
                    .map_or(admin_url.as_str(), |(base, _)| base);
                let url = DatabaseUrl::try_from(format!("{base}/{name}")).expect("a postgres URL");
                Self {
                    url,
                    cleanup: Cleanup::Postgres { admin_url, name },
                }
            }
        }
    }

    /// Its URL.
    pub fn url(&self) -> &DatabaseUrl {
        &self.url
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let Cleanup::Postgres { admin_url, name } = &self.cleanup else {
            return;
        };
        let (admin_url, name) = (admin_url.clone(), name.clone());
        // Drop runs inside the test's runtime, which cannot be blocked on; a thread with
        // its own small runtime removes the database.
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            runtime.block_on(async {
                if let Ok(mut admin) = sqlx::postgres::PgConnection::connect(&admin_url).await {
                    let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                    let _ = admin.execute(sqlx::AssertSqlSafe(sql)).await;
                    let _ = admin.close().await;
                }
            });
        });
        let _ = cleanup.join();
    }
}

/// The URL of a PostgreSQL server's maintenance database, starting a throwaway server
/// if none answers. Panics, saying what is missing, if neither is possible.
pub fn postgres_admin_url() -> String {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        #[allow(
            clippy::disallowed_methods,
            reason = "tests choose their server from the environment"
        )]
        if let Ok(url) = std::env::var("BAZAAR_TEST_POSTGRES_URL") {
            return url;
        }
        let local = "postgres://postgres@127.0.0.1:5432/postgres".to_owned();
        if answers(5432) {
            return local;
        }
        start_throwaway_postgres().unwrap_or_else(|reason| {
            panic!(
                "PostgreSQL tests need a server: none answers on 127.0.0.1:5432 and a \
                 throwaway one could not be started ({reason}). Install PostgreSQL \
                 (Debian: apt-get install postgresql) or set BAZAAR_TEST_POSTGRES_URL."
            )
        })
    })
    .clone()
}

fn answers(port: u16) -> bool {
    let address = SocketAddr::from(([127, 0, 0, 1], port));
    TcpStream::connect_timeout(&address, Duration::from_millis(500)).is_ok()
}

/// Where the throwaway server keeps its data: under the workspace's `target/`.
pub fn throwaway_postgres_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/test-postgres")
}

/// A PostgreSQL program, run as the `postgres` user when we are root (PostgreSQL refuses
/// to run as root).
fn postgres_command(program: &Path) -> Command {
    if is_root() {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

fn start_throwaway_postgres() -> Result<String, String> {
    let url = format!("postgres://postgres@127.0.0.1:{THROWAWAY_POSTGRES_PORT}/postgres");
    if answers(THROWAWAY_POSTGRES_PORT) {
        return Ok(url);
    }
    let bin = postgres_bin_dir().ok_or("initdb and pg_ctl were not found")?;
    let data = throwaway_postgres_dir();
    if !data.join("PG_VERSION").exists() {
        std::fs::create_dir_all(&data)
            .map_err(|error| format!("creating {}: {error}", data.display()))?;
        // When we are root the server runs as `postgres`, which must own its folder.
        let _ = Command::new("chown").arg("postgres:").arg(&data).status();
        let status = postgres_command(&bin.join("initdb"))
            .args([
                "--username=postgres",
                "--auth=trust",
                "--no-sync",
                "--pgdata",
            ])
            .arg(&data)
            .stdout(std::process::Stdio::null())
            .status()
            .map_err(|error| format!("running initdb: {error}"))?;
        if !status.success() && !data.join("PG_VERSION").exists() {
            return Err(format!("initdb failed with {status}"));
        }
    }
    // Another test binary may be starting the same server; a failed start is judged by
    // whether the server answers afterwards.
    let _ = postgres_command(&bin.join("pg_ctl"))
        .arg("start")
        .arg("--pgdata")
        .arg(&data)
        .arg("--log")
        .arg(data.join("server.log"))
        .arg("-o")
        .arg(format!(
            "-p {THROWAWAY_POSTGRES_PORT} -c listen_addresses=127.0.0.1 -k {} -c fsync=off",
            data.display()
        ))
        .stdout(std::process::Stdio::null())
        .status();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if answers(THROWAWAY_POSTGRES_PORT) {
            return Ok(url);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(format!(
        "the server in {} did not start; see its server.log",
        data.display()
    ))
}

/// Whether this process runs as root (real user id 0).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|status| {
        status
            .lines()
            .any(|line| line.starts_with("Uid:") && line.split_whitespace().nth(1) == Some("0"))
    })
}

/// Stops the throwaway server if the tests started one; what `cargo xtask ci` calls last.
pub fn stop_throwaway_postgres() {
    let data = throwaway_postgres_dir();
    if !data.join("postmaster.pid").exists() {
        return;
    }
    if let Some(bin) = postgres_bin_dir() {
        let _ = postgres_command(&bin.join("pg_ctl"))
            .args(["stop", "--mode=fast", "--pgdata"])
            .arg(&data)
            .stdout(std::process::Stdio::null())
            .status();
    }
}

fn postgres_bin_dir() -> Option<PathBuf> {
    let on_path = ["/usr/local/bin", "/usr/bin"]
        .into_iter()
        .map(PathBuf::from)
        .find(|dir| dir.join("initdb").exists() && dir.join("pg_ctl").exists());
    on_path.or_else(|| {
        let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(|entry| entry.ok().map(|entry| entry.path().join("bin")))
            .filter(|bin| bin.join("initdb").exists())
            .collect();
        versions.sort();
        versions.pop()
    })
}

/// Mints access tokens as identity would, with a key of its own, for testing a service
/// without running identity.
pub struct TestIssuer {
    key: platform::auth::SigningKey,
    issuer: String,
}

impl TestIssuer {
    /// The issuer every test token names.
    pub const ISSUER: &str = "http://identity.test/api/identity";

    /// An issuer with a fresh key.
    pub fn new() -> Self {
        Self {
            key: platform::auth::SigningKey::generate(format!(
                "test-{}",
                uuid::Uuid::now_v7().simple()
            ))
            .expect("a signing key"),
            issuer: Self::ISSUER.to_owned(),
        }
    }

    /// A verifier that trusts exactly this issuer's key.
    pub fn verifier(&self) -> platform::auth::Verifier {
        let set = jsonwebtoken::jwk::JwkSet {
            keys: vec![self.key.public_jwk().expect("a JWK")],
        };
        let settings = platform::auth::VerifierSettings {
            issuer: self.issuer.clone(),
            leeway: std::time::Duration::from_secs(30),
            refresh_interval: std::time::Duration::ZERO,
        };
        platform::auth::Verifier::new(settings, platform::auth::StaticJwks(set))
    }

    /// A valid token for user `sub` with `roles`, expiring in 15 minutes.
    pub fn token(&self, sub: &str, roles: &[Role]) -> String {
        let now = jsonwebtoken::get_current_timestamp();
        self.key
            .sign(&AccessClaims {
                iss: self.issuer.clone(),
                sub: sub.to_owned(),
                aud: AUDIENCE.to_owned(),
                exp: now + 900,
                nbf: now,
                iat: now,
                jti: uuid::Uuid::now_v7().to_string(),
                roles: roles.to_vec(),
            })
            .expect("signed")
    }

    /// The key this issuer signs with, for forging tokens in attack tests.
    pub fn key(&self) -> &platform::auth::SigningKey {
        &self.key
    }

    /// A token for an admin.
    pub fn admin(&self) -> String {
        self.token("admin-1", &[Role::Customer, Role::Admin])
    }

    /// A token for a customer with id `sub`.
    pub fn customer(&self, sub: &str) -> String {
        self.token(sub, &[Role::Customer])
    }
}

impl Default for TestIssuer {
    fn default() -> Self {
        Self::new()
    }
}

/// An embedded bus of the test's own, kept in `folder` (as `bus.db`).
pub async fn embedded_bus(folder: &Path) -> Arc<EmbeddedBus> {
    Arc::new(
        EmbeddedBus::open(&folder.join("bus.db"))
            .await
            .expect("a bus"),
    )
}

/// What a service under test is built with: `bus`, `verifier`, no feature flags (set
/// `context.flags` for a test that needs some), and a shutdown signal of its own
/// (`context.shutdown`), which stops the service and its workers.
pub fn context(bus: Arc<dyn Bus>, verifier: Verifier) -> Context {
    Context {
        bus,
        verifier,
        flags: platform::flags::Flags::default(),
        shutdown: Shutdown::new(),
    }
}

/// Runs a built service as the shop does, on a free port of `127.0.0.1`: spawns its
/// workers and serves its router until `shutdown` (the one in the service's context)
/// fires. Returns the address it listens on.
pub async fn serve(service: Service, shutdown: &Shutdown) -> SocketAddr {
    let (listener, address) = bind().await;
    serve_on(listener, service, shutdown);
    address
}

/// A listener on a free port of `127.0.0.1`, and its address.
pub async fn bind() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("a free port");
    let address = listener.local_addr().expect("bound");
    (listener, address)
}

/// [`serve`] on a listener the test bound itself, for a service whose address others
/// must know before it is built.
pub fn serve_on(listener: TcpListener, service: Service, shutdown: &Shutdown) {
    for worker in service.workers {
        tokio::spawn(worker);
    }
    tokio::spawn(platform::http::serve(
        listener,
        service.router,
        shutdown.clone(),
    ));
}

/// Asserts that `body`, answered with `status`, is a problem with status `expected`
/// that names `field` (in its `errors` or its `detail`); `what` says what was sent.
pub fn assert_problem(
    status: u16,
    body: &serde_json::Value,
    expected: u16,
    field: &str,
    what: &str,
) {
    assert_eq!(status, expected, "{what}: {body}");
    assert_eq!(body["status"], expected, "{what}: {body}");
    let named = body["errors"]
        .as_array()
        .is_some_and(|errors| errors.iter().any(|error| error["field"] == field))
        || body["detail"]
            .as_str()
            .is_some_and(|detail| detail.contains(field));
    assert!(named, "{what}: the problem does not name {field}: {body}");
}

/// Publishes `message` on `bus` as another service would (source and correlation id
/// `test`); its envelope.
pub async fn publish<M: Message>(bus: &dyn Bus, message: &M) -> Envelope {
    let origin = Origin {
        correlation_id: "test".to_owned(),
        ..Origin::default()
    };
    let envelope = outbox::envelope("test", message, &origin).expect("an envelope");
    bus.publish(&envelope).await.expect("published");
    envelope
}

/// The next message on `subscription`, which must come within `wait`; acknowledged.
pub async fn next_message(subscription: &mut dyn Subscription, wait: Duration) -> Envelope {
    let delivery = subscription
        .next(wait)
        .await
        .expect("the bus answers")
        .expect("a message came");
    let envelope = delivery.envelope.clone();
    delivery.ack().await.expect("acknowledged");
    envelope
}

/// Runs each named scenario, an `async fn(Engine)`, once per engine: as
/// `sqlite::<scenario>` and `postgres::<scenario>` tests.
#[macro_export]
macro_rules! on_both_engines {
    ($($scenario:ident),+ $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $scenario() {
                    super::$scenario($crate::Engine::Sqlite).await;
                }
            )+
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $scenario() {
                    super::$scenario($crate::Engine::Postgres).await;
                }
            )+
        }
    };
}

/// How often [`eventually`] asks again.
const POLL: Duration = Duration::from_millis(25);

/// Asks `probe` until it answers `Ok`, and returns that; panics saying that `what` did
/// not happen within `within`, with the last thing `probe` saw instead (its `Err`). For
/// what a test cannot drive step by step: a service's own workers, another process, a
/// dependency coming back.
pub async fn eventually<T, Seen, Probe, Fut>(what: &str, within: Duration, mut probe: Probe) -> T
where
    Seen: std::fmt::Display,
    Probe: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, Seen>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match probe().await {
            Ok(found) => return found,
            Err(seen) => assert!(
                tokio::time::Instant::now() < deadline,
                "{what} did not happen within {within:?}; last seen: {seen}"
            ),
        }
        tokio::time::sleep(POLL).await;
    }
}
