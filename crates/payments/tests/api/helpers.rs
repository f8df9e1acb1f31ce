//! Spawning payments on port 0 with its own database and embedded bus, and talking to
//! it as a customer, an admin and the checkout saga would.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use contracts::messaging::identity::UserRegisteredV1;
use contracts::messaging::payments::AuthorizePaymentV1;
use contracts::messaging::{Envelope, Message};
use contracts::{Currency, Money, OrderId};
use payments::processor::{CardProcessor, SimulatorConfig};
use payments::{Config, Simulator};
use platform::bus::embedded::EmbeddedBus;
use platform::bus::{Bus, Subscription, SubscriptionSpec};
use platform::clock::now_ms;
use platform::db::{Database, PoolSettings};
use platform::shutdown::Shutdown;
use serde_json::{Value, json};
use sqlx::Row as _;
use test_support::{Engine, TestDatabase, TestIssuer};

/// A day, in milliseconds.
pub(crate) const DAY_MS: i64 = 86_400_000;

/// A running payments service, a subscription to everything it answers, its database
/// and the simulator behind it.
pub(crate) struct TestApp {
    pub(crate) address: SocketAddr,
    pub(crate) client: reqwest::Client,
    pub(crate) issuer: TestIssuer,
    pub(crate) bus: Arc<EmbeddedBus>,
    pub(crate) db: Database,
    pub(crate) simulator: Arc<Simulator>,
    answers: Box<dyn Subscription>,
    shutdown: Shutdown,
    _database: TestDatabase,
    folder: tempfile::TempDir,
}

/// The simulator the tests run with: the slow card takes a quarter second.
pub(crate) fn simulator() -> Arc<Simulator> {
    Arc::new(Simulator::new(SimulatorConfig {
        slow_ms: 250,
        transient_failures: 2,
    }))
}

impl TestApp {
    /// Payments with the default fraud rules and [`simulator`].
    pub(crate) async fn spawn(engine: Engine) -> Self {
        let simulator = simulator();
        Self::spawn_with(engine, simulator.clone(), simulator).await
    }

    /// Payments over `processor`; `simulator` is the one it wraps, for inspection.
    pub(crate) async fn spawn_with(
        engine: Engine,
        simulator: Arc<Simulator>,
        processor: Arc<dyn CardProcessor>,
    ) -> Self {
        let database = TestDatabase::new(engine).await;
        let folder = tempfile::tempdir().expect("a folder");
        let bus = test_support::embedded_bus(folder.path()).await;
        let answers = bus
            .subscribe(&SubscriptionSpec::new(
                "test.payments-answers",
                "payments.*.v1",
            ))
            .await
            .expect("subscribed");
        let config = Config {
            listen: "127.0.0.1:0".parse().expect("valid"),
            database_url: Some(database.url().clone()),
            max_connections: 8,
            ..Config::default()
        };
        let issuer = TestIssuer::new();
        let context = test_support::context(bus.clone(), issuer.verifier());
        let shutdown = context.shutdown.clone();
        let service = payments::build_with(&config, &context, processor)
            .await
            .expect("payments starts");
        let address = test_support::serve(service, &shutdown).await;
        let db = Database::connect(database.url(), PoolSettings::default())
            .await
            .expect("connects");
        Self {
            address,
            client: reqwest::Client::new(),
            issuer,
            bus,
            db,
            simulator,
            answers,
            shutdown,
            _database: database,
            folder,
        }
    }

    /// The embedded bus's own database, for inspection.
    pub(crate) async fn bus_db(&self) -> Database {
        Database::connect(
            &platform::config::DatabaseUrl::sqlite_file(&self.folder.path().join("bus.db")),
            PoolSettings::default(),
        )
        .await
        .expect("the bus file opens")
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    /// The service's metrics, as Prometheus scrapes them.
    pub(crate) async fn metrics(&self) -> String {
        self.client
            .get(self.url("/metrics"))
            .send()
            .await
            .expect("answers")
            .text()
            .await
            .expect("text")
    }

    /// Publishes `message` as another service would.
    pub(crate) async fn send<M: Message>(&self, message: &M) -> Envelope {
        test_support::publish(self.bus.as_ref(), message).await
    }

    /// The next event payments publishes, which must come.
    pub(crate) async fn answer(&mut self) -> Envelope {
        test_support::next_message(self.answers.as_mut(), Duration::from_secs(15)).await
    }

    /// The next answer, which must be of type `M`.
    pub(crate) async fn answer_as<M: Message>(&mut self) -> M {
        let envelope = self.answer().await;
        envelope
            .decode()
            .unwrap_or_else(|error| panic!("{error}: {}", envelope.payload))
    }

    /// Waits until payments has handled every command sent so far (its subscription
    /// has nothing left to acknowledge), so their effects are committed.
    pub(crate) async fn settle(&self) {
        let handled = "payments handling every command sent";
        test_support::eventually(handled, Duration::from_secs(10), || async {
            let lag = self.bus.pending("payments.commands").await.expect("lag");
            (lag == 0)
                .then_some(())
                .ok_or(format!("{lag} commands pending"))
        })
        .await;
    }

    /// Tells payments, as identity would, that `customer` registered `age_ms` ago, and
    /// waits until it knows.
    pub(crate) async fn registered(&self, customer: &str, age_ms: i64) {
        self.send(&UserRegisteredV1 {
            user_id: test_support::user_id(customer),
            email: format!("{customer}@example.test"),
            registered_at_ms: now_ms() - age_ms,
        })
        .await;
        for _ in 0..400 {
            let known = sqlx::query("SELECT 1 AS known FROM customers WHERE customer_id = $1")
                .bind(customer_id(customer))
                .fetch_optional(self.db.pool())
                .await
                .expect("readable");
            if known.is_some() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("payments never learnt of {customer}");
    }

    /// Saves `number` for `customer`; its token.
    pub(crate) async fn card(&self, customer: &str, number: &str) -> String {
        let response = self
            .client
            .post(self.url("/methods"))
            .bearer_auth(self.token(customer))
            .json(&card_body(number))
            .send()
            .await
            .expect("answers");
        assert_eq!(response.status().as_u16(), 201, "saving {number}");
        let body: Value = response.json().await.expect("JSON");
        body["token"].as_str().expect("a token").to_owned()
    }

    /// An access token of the customer named `customer`.
    pub(crate) fn token(&self, customer: &str) -> String {
        self.issuer.customer(&customer_id(customer))
    }

    /// Asks payments to authorize `amount_minor` EUR of `order` with `token`.
    pub(crate) async fn authorize(
        &self,
        order: &OrderId,
        customer: &str,
        token: &str,
        amount_minor: i64,
    ) -> Envelope {
        self.send(&authorization(order, customer, token, amount_minor))
            .await
    }

    /// `GET path` with `token`, which must answer `status`; the body.
    pub(crate) async fn get_json(&self, path: &str, token: &str, status: u16) -> Value {
        let response = self
            .client
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("answers");
        assert_eq!(response.status().as_u16(), status, "GET {path}");
        response.json().await.expect("JSON")
    }

    /// The payment of `order`, as an admin sees it.
    pub(crate) async fn payment(&self, order: &OrderId) -> Value {
        self.get_json(&format!("/orders/{order}"), &self.issuer.admin(), 200)
            .await
    }

    /// The ledger transactions of `order`, as `(kind, amount)` in order.
    pub(crate) async fn ledger(&self, order: &OrderId) -> Vec<(String, i64)> {
        let rows = sqlx::query(
            "SELECT t.kind, e.amount_minor FROM ledger_transactions t \
             JOIN ledger_entries e ON e.transaction_id = t.id \
             WHERE t.order_id = $1 AND e.direction = 'debit' ORDER BY t.id",
        )
        .bind(order.to_string())
        .fetch_all(self.db.pool())
        .await
        .expect("readable");
        rows.iter()
            .map(|row| {
                (
                    row.try_get("kind").expect("kind"),
                    row.try_get("amount_minor").expect("amount"),
                )
            })
            .collect()
    }

    /// How many answers about `order` payments has published: once its relay has
    /// published everything it wrote (its outbox is empty), the messages from payments
    /// about `order` that the bus holds.
    pub(crate) async fn answers_about(&self, order: &OrderId) -> usize {
        test_support::eventually(
            "payments' outbox published",
            Duration::from_secs(10),
            || async {
                let (rows,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM outbox")
                    .fetch_one(self.db.pool())
                    .await
                    .expect("counted");
                (rows == 0)
                    .then_some(())
                    .ok_or(format!("{rows} rows to publish"))
            },
        )
        .await;
        let bus = self.bus_db().await;
        let rows = sqlx::query("SELECT envelope FROM messages")
            .fetch_all(bus.pool())
            .await
            .expect("readable");
        rows.iter()
            .map(|row| {
                let envelope: String = row.try_get("envelope").expect("envelope");
                serde_json::from_str::<Envelope>(&envelope).expect("an envelope")
            })
            .filter(|envelope| {
                envelope.source == "payments" && envelope.payload["order_id"] == order.to_string()
            })
            .count()
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.trigger();
    }
}

/// A card registration body for `number`, valid otherwise.
pub(crate) fn card_body(number: &str) -> Value {
    json!({
        "number": number,
        "exp_month": 12,
        "exp_year": payments::cards::YearMonth::now().year + 2,
        "cvc": "987",
    })
}

/// Euros, in cents.
pub(crate) fn eur(amount_minor: i64) -> Money {
    Money::new(amount_minor, Currency::EUR)
}

/// An `AuthorizePayment` command.
pub(crate) fn authorization(
    order: &OrderId,
    customer: &str,
    token: &str,
    amount_minor: i64,
) -> AuthorizePaymentV1 {
    AuthorizePaymentV1 {
        order_id: *order,
        customer_id: test_support::user_id(customer),
        payment_method: token.to_owned(),
        amount: eur(amount_minor),
    }
}

/// A fresh order id.
pub(crate) fn order_id() -> OrderId {
    OrderId::generate()
}

/// The id of the customer the tests call `name`, as tokens and payments name them.
pub(crate) fn customer_id(name: &str) -> String {
    test_support::user_id(name).to_string()
}

/// Every text value stored in `db`'s tables, each with where it is.
pub(crate) async fn every_text(db: &Database) -> Vec<(String, String)> {
    let tables = match db.engine() {
        platform::config::Engine::Sqlite => {
            "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
        }
        platform::config::Engine::Postgres => {
            "SELECT CAST(table_name AS TEXT) AS name FROM information_schema.tables \
             WHERE table_schema = current_schema() ORDER BY name"
        }
    };
    let tables: Vec<String> = sqlx::query(tables)
        .fetch_all(db.pool())
        .await
        .expect("tables listed")
        .iter()
        .map(|row| row.try_get("name").expect("a name"))
        .collect();
    assert!(!tables.is_empty());
    let mut texts = Vec::new();
    // sqlx's own bookkeeping holds timestamps and checksums the Any driver cannot read,
    // and nothing a request could have put there.
    for table in tables.iter().filter(|table| !table.starts_with("_sqlx")) {
        let sql = format!("SELECT * FROM {table}");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_all(db.pool())
            .await
            .unwrap_or_else(|error| panic!("reading {table}: {error}"));
        for row in &rows {
            for column in 0..row.len() {
                if let Ok(Some(text)) = row.try_get::<Option<String>, _>(column) {
                    texts.push((format!("{table}.{column}"), text));
                }
            }
        }
    }
    texts
}
