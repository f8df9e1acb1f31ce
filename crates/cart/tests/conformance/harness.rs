//! The store under test, on each backend, with the limits every scenario assumes.

use std::sync::Arc;
use std::time::Duration;

use cart::domain::{CustomerId, Limits, Line, ProductId};
use cart::store::CartStore;
use cart::store::redis::RedisCartStore;
use cart::store::sql::SqlCartStore;
use platform::db::{Database, PoolSettings};
use test_support::redis::{RedisServer, unique_prefix};
use test_support::{Engine, TestDatabase};

/// Small limits, so the caps are quick to reach.
pub(crate) const LIMITS: Limits = Limits {
    max_lines: 5,
    max_quantity: 40,
};

/// How long a cart may go untouched.
pub(crate) const ABANDON_AFTER: Duration = Duration::from_secs(120);

/// Which store a scenario runs against.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Kind {
    Sqlite,
    Postgres,
    Redis,
}

/// The same store, as its own type, for what only one adapter has.
pub(crate) enum Adapter {
    Sql(SqlCartStore),
    Redis { store: RedisCartStore, url: String },
}

/// A fresh store: an empty database, or keys under a prefix of its own.
pub(crate) struct Subject {
    pub(crate) store: Arc<dyn CartStore>,
    pub(crate) adapter: Adapter,
    _database: Option<TestDatabase>,
    _redis: Option<RedisServer>,
}

impl Subject {
    pub(crate) async fn new(kind: Kind) -> Self {
        match kind {
            Kind::Sqlite | Kind::Postgres => {
                let engine = match kind {
                    Kind::Sqlite => Engine::Sqlite,
                    _ => Engine::Postgres,
                };
                let database = TestDatabase::new(engine).await;
                let db = Database::connect(database.url(), PoolSettings::default())
                    .await
                    .expect("connects");
                SqlCartStore::migrate(&db).await.expect("migrates");
                let store = SqlCartStore::new(db, LIMITS, ABANDON_AFTER);
                Self {
                    store: Arc::new(store.clone()),
                    adapter: Adapter::Sql(store),
                    _database: Some(database),
                    _redis: None,
                }
            }
            Kind::Redis => {
                let server = RedisServer::new();
                let store = RedisCartStore::connect(
                    server.url(),
                    unique_prefix(),
                    LIMITS,
                    ABANDON_AFTER,
                    Duration::from_secs(5),
                )
                .await
                .expect("connects to Redis");
                Self {
                    store: Arc::new(store.clone()),
                    adapter: Adapter::Redis {
                        store,
                        url: server.url().to_owned(),
                    },
                    _database: None,
                    _redis: Some(server),
                }
            }
        }
    }

    /// The customer's lines as (product, quantity) pairs.
    pub(crate) async fn lines(&self, customer: &CustomerId) -> Vec<(ProductId, i64)> {
        self.store
            .lines(customer)
            .await
            .expect("lines")
            .into_iter()
            .map(|line| (line.product_id, line.quantity))
            .collect()
    }
}

pub(crate) fn customer(name: &str) -> CustomerId {
    CustomerId::parse(name).expect("a customer id")
}

/// A product id no other product has.
pub(crate) fn product() -> ProductId {
    ProductId::parse(&uuid::Uuid::new_v4().to_string()).expect("a UUID")
}

/// `products` with their quantities, in the order a cart lists them (by product id).
pub(crate) fn sorted(mut lines: Vec<(ProductId, i64)>) -> Vec<(ProductId, i64)> {
    lines.sort();
    lines
}

pub(crate) fn line(product: &ProductId, quantity: i64) -> Line {
    Line::new(*product, quantity)
}
