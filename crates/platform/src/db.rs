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

/// A service's connection pool.
#[derive(Clone, Debug)]
pub struct Database {
    pool: AnyPool,
    engine: Engine,
}

/// How to size and time the pool.
#[derive(Clone, Copy, Debug)]
pub struct PoolSettings {
    /// The most connections open at once.
    pub max_connections: u32,
    /// How long a query waits for a free connection before failing.
    pub acquire_timeout: Duration,
}

impl Default for PoolSettings {
    fn default() -> Self {
        Self {
            max_connections: 8,
            // Short: when the database is down a request should fail fast with 503,
            // not hang; a busy pool frees a connection well within it.
            acquire_timeout: Duration::from_secs(2),
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
        let url = url.with_context(|| format!("{service}.database_url is not set"))?;
        let settings = PoolSettings {
            max_connections,
            ..PoolSettings::default()
        };
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
        let pool = AnyPoolOptions::new()
            .max_connections(settings.max_connections)
            .acquire_timeout(settings.acquire_timeout)
            .after_connect(move |connection, _| {
                Box::pin(async move {
                    if engine == Engine::Sqlite {
                        // WAL lets readers proceed while one writer commits; the busy
                        // timeout makes concurrent writers queue instead of failing.
                        connection
                            .execute(
                                "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                                 PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000;",
                            )
                            .await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await
            .with_context(|| format!("connecting to {}", url.redacted()))?;
        Ok(Self { pool, engine })
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
            .run(&self.pool)
            .await
            .context("applying database migrations")
    }

    /// The pool, for queries.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
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
        self.pool.close().await;
    }
}
