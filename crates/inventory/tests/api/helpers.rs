//! Spawning inventory on port 0 with its own database and embedded bus.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use contracts::messaging::{Envelope, Message};
use platform::bus::embedded::EmbeddedBus;
use platform::bus::{Bus, Subscription, SubscriptionSpec};
use platform::db::{Database, PoolSettings};
use platform::shutdown::Shutdown;
use test_support::{Engine, TestDatabase, TestIssuer};

/// A running inventory, a subscription to everything it says, and its database.
pub(crate) struct TestApp {
    pub(crate) address: SocketAddr,
    pub(crate) client: reqwest::Client,
    pub(crate) issuer: TestIssuer,
    pub(crate) bus: Arc<EmbeddedBus>,
    pub(crate) db: Database,
    answers: Box<dyn Subscription>,
    shutdown: Shutdown,
    _database: TestDatabase,
    _folder: tempfile::TempDir,
}

impl TestApp {
    /// Inventory with `initial_stock` units for each product the catalog announces.
    pub(crate) async fn spawn(engine: Engine, initial_stock: i64) -> Self {
        let database = TestDatabase::new(engine).await;
        let folder = tempfile::tempdir().expect("a folder");
        let bus = test_support::embedded_bus(folder.path()).await;
        let answers = bus
            .subscribe(&SubscriptionSpec::new(
                "test.inventory-answers",
                "inventory.*.v1",
            ))
            .await
            .expect("subscribed");
        let config = inventory::Config {
            listen: "127.0.0.1:0".parse().expect("valid"),
            database_url: Some(database.url().clone()),
            max_connections: 8,
            initial_stock,
            expiry_check_ms: 3_600_000,
        };
        let issuer = TestIssuer::new();
        let context = test_support::context(bus.clone(), issuer.verifier());
        let shutdown = context.shutdown.clone();
        let service = inventory::build(&config, &context)
            .await
            .expect("inventory starts");
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
            answers,
            shutdown,
            _database: database,
            _folder: folder,
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    /// Publishes `message` as another service would.
    pub(crate) async fn send<M: Message>(&self, message: &M) -> Envelope {
        test_support::publish(self.bus.as_ref(), message).await
    }

    /// The next event inventory publishes, which must come.
    pub(crate) async fn answer(&mut self) -> Envelope {
        test_support::next_message(self.answers.as_mut(), Duration::from_secs(10)).await
    }

    /// Announces a product, as the catalog does, and waits until inventory tracks it.
    pub(crate) async fn product(&self) -> contracts::ProductId {
        let id = contracts::ProductId::generate();
        let text = id.to_string();
        let created = contracts::messaging::catalog::ProductCreatedV1 {
            product_id: id,
            slug: format!("p-{}", &text[text.len() - 8..]),
            name: "Test product".to_owned(),
            category: "kitchen".to_owned(),
            price: contracts::Money::new(100, contracts::Currency::EUR),
        };
        self.send(&created).await;
        let tracked = format!("inventory tracking {id}");
        test_support::eventually(&tracked, Duration::from_secs(5), || async {
            self.available(&id).await.map(|_| ()).ok_or("not tracked")
        })
        .await;
        id
    }

    /// What `GET /stock/{id}` says is available, if inventory tracks the product.
    pub(crate) async fn available(&self, product_id: &contracts::ProductId) -> Option<i64> {
        let response = self
            .client
            .get(self.url(&format!("/stock/{product_id}")))
            .send()
            .await
            .expect("answers");
        if response.status().as_u16() == 404 {
            return None;
        }
        assert_eq!(response.status().as_u16(), 200);
        let body: serde_json::Value = response.json().await.expect("JSON");
        body["available"].as_i64()
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.trigger();
    }
}
