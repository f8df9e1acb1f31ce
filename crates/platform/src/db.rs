//! One database type for both engines: SQLite in embedded mode, PostgreSQL in distributed
//! mode, chosen by the URL.
//!
//! Services write portable SQL against [`sqlx::Any`]: `$1`-style parameters (both engines
//! accept them), `BIGINT` integers, `TEXT` for ids, timestamps and JSON. Every query runs
//! in each service's test suite against both engines.

use std::sync::Once;
use std::time::Duration;

use anyhow::Context as _;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::Migrator;
use sqlx::{AnyPool, Connection as _, Executor as _};

use crate::config::{DatabaseUrl, Engine};
use crate::faults::SlowDatabase;

/// A service's connection pool.
///
/// **Writers queue here, not in SQLite.** SQLite has one writer at a time, and a
/// connection that finds the write lock taken sleeps and tries again (1, 2, 5, 10 ms…),
/// so connections of one pool contending for it waste milliseconds per write. On SQLite,
/// writes therefore go through a second pool of one connection ([`Database::begin`],
/// [`Database::writer`]), whose callers queue in order and never meet the lock taken;
/// reads use the main pool ([`Database::pool`]) and, with WAL, run beside the writer. On
/// PostgreSQL, which has row locks and many writers, both are the same pool.
#[derive(Clone, Debug)]
pub struct Database {
    pool: AnyPool,
    writer: AnyPool,
    engine: Engine,
}

/// The most connections a service's pool opens unless configured: on SQLite the
/// readers (writes take the one writer connection beside them), on PostgreSQL all.
/// Four keep two cores busy; each SQLite connection is a thread with its own page cache,
/// so more only cost memory (docs/benchmarks.md, "Memory").
pub const DEFAULT_MAX_CONNECTIONS: u32 = 4;

/// How to size and time the pool.
#[derive(Clone, Debug)]
pub struct PoolSettings {
    /// The most connections open at once.
    pub max_connections: u32,
    /// How long a query waits for a free connection before failing.
    pub acquire_timeout: Duration,
    /// The fault flag that can make this database slow, if any.
    pub slowdown: Option<SlowDatabase>,
}

impl Default for PoolSettings {
    fn default() -> Self {
        Self {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            // Short: when the database is down a request should fail fast with 503,
            // not hang; a busy pool frees a connection well within it.
            acquire_timeout: Duration::from_secs(2),
            slowdown: None,
        }
    }
}

impl Database {
    /// Opens `service`'s own database: the URL its configuration resolved, with its pool
    /// size. A missing URL is a configuration error naming the key.
    pub async fn open(
        service: &str,
        url: Option<&DatabaseUrl>,
        max_connections: u32,
    ) -> anyhow::Result<Self> {
        let settings = PoolSettings {
            max_connections,
            ..PoolSettings::default()
        };
        Self::open_with(service, url, settings).await
    }

    /// [`Database::open`] with every setting given.
    pub async fn open_with(
        service: &str,
        url: Option<&DatabaseUrl>,
        settings: PoolSettings,
    ) -> anyhow::Result<Self> {
        let url = url.with_context(|| format!("{service}.database_url is not set"))?;
        Self::connect(url, settings).await
    }

    /// Connects to `url`, creating the SQLite file (and its folder) if needed.
    pub async fn connect(url: &DatabaseUrl, settings: PoolSettings) -> anyhow::Result<Self> {
        static DRIVERS: Once = Once::new();
        DRIVERS.call_once(sqlx::any::install_default_drivers);

        let engine = url.engine();
        let mut target = url.expose().to_owned();
        if let Some(path) = url.sqlite_path() {
            if let Some(folder) = path.parent()
                && !folder.as_os_str().is_empty()
            {
                std::fs::create_dir_all(folder)
                    .with_context(|| format!("creating the data folder {}", folder.display()))?;
            }
            if !target.contains('?') {
                target.push_str("?mode=rwc");
            }
        }
        let options: AnyConnectOptions = target
            .parse()
            .with_context(|| format!("parsing database URL {}", url.redacted()))?;
        // Boxed: a pool's connect is a large future, and every service's start awaits
        // this one.
        let pool = Box::pin(
            Self::pool_options(engine, settings.max_connections, &settings)
                .connect_with(options.clone()),
        )
        .await
        .with_context(|| format!("connecting to {}", url.redacted()))?;
        let writer = match engine {
            Engine::Sqlite => {
                Box::pin(Self::pool_options(engine, 1, &settings).connect_with(options))
                    .await
                    .with_context(|| format!("connecting to {}", url.redacted()))?
            }
            Engine::Postgres => pool.clone(),
        };
        Ok(Self {
            pool,
            writer,
            engine,
        })
    }

    fn pool_options(
        engine: Engine,
        max_connections: u32,
        settings: &PoolSettings,
    ) -> AnyPoolOptions {
        let options = AnyPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(settings.acquire_timeout)
            // A server's connection can go stale while it idles (the server restarted,
            // a proxy cut it): pinged before use, a dead one is replaced. A SQLite
            // connection is a file this process holds open and cannot go stale, and a
            // ping is a round trip to its worker thread for nothing.
            .test_before_acquire(engine == Engine::Postgres);
        // A connection handed out again passes `before_acquire`, a new one
        // `after_connect`: the slowdown waits in both, and counts against the acquire
        // timeout.
        let slowdown = settings.slowdown.clone();
        let options = match slowdown.clone() {
            Some(slowdown) => options.before_acquire(move |_, _| {
                let slowdown = slowdown.clone();
                Box::pin(async move {
                    slowdown.wait().await;
                    Ok(true)
                })
            }),
            None => options,
        };
        options.after_connect(move |connection, _| {
            let slowdown = slowdown.clone();
            Box::pin(async move {
                if let Some(slowdown) = slowdown {
                    slowdown.wait().await;
                }
                if engine == Engine::Sqlite {
                    // WAL lets readers proceed while one writer commits. Writers of
                    // this process queue for the writer pool; the busy timeout is for
                    // another process's (`bazaar` operator commands, a migration).
                    // A page cache of 512 KiB per connection, not SQLite's 2 MiB:
                    // a shop has some forty connections, whose caches otherwise
                    // fill as the files grow and hold on to it.
                    connection
                        .execute(
                            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                             PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000; \
                             PRAGMA cache_size = -512;",
                        )
                        .await?;
                }
                Ok(())
            })
        })
    }

    /// Applies the service's embedded migrations that have not run yet. On PostgreSQL a
    /// lock makes this safe when several replicas start at once.
    ///
    /// A database may hold migrations from more than one migrator (a service's own and
    /// the chassis' outbox and inbox), so versions another migrator applied are not an
    /// error here.
    pub async fn migrate(&self, mut migrator: Migrator) -> anyhow::Result<()> {
        migrator.set_ignore_missing(true);
        migrator
            .run(&self.writer)
            .await
            .context("applying database migrations")
    }

    /// The pool, for reads (and, on PostgreSQL, anything).
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// The pool for writes outside a transaction: on SQLite one connection, which
    /// writers queue for in order. Never acquire it while holding a transaction from
    /// [`Database::begin`]: on SQLite that waits for itself.
    pub fn writer(&self) -> &AnyPool {
        &self.writer
    }

    /// Starts a transaction that may write: on SQLite, on the writer connection, once
    /// the writers queued before it are done.
    pub async fn begin(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>, sqlx::Error> {
        self.writer.begin().await
    }

    /// The engine behind this pool.
    pub fn engine(&self) -> Engine {
        self.engine
    }

    /// Checks that a connection can be had and answers; for `/health/ready`.
    pub async fn ping(&self) -> Result<(), String> {
        let mut connection = self
            .pool
            .acquire()
            .await
            .map_err(|error| format!("no database connection: {error}"))?;
        connection
            .ping()
            .await
            .map_err(|error| format!("database did not answer: {error}"))
    }

    /// Closes every connection, waiting for those in use to be returned.
    pub async fn close(&self) {
        self.writer.close().await;
        self.pool.close().await;
    }
}
