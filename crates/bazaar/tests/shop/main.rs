//! The whole shop, as `bazaar up` starts it, driven only through the gateway.

use std::net::SocketAddr;

use bazaar::shop::Shop;
use bazaar::{Config, ServiceName};
use contracts::identity::Role;
use platform::shutdown::Shutdown;
use serde_json::{Value, json};

mod checkout;
mod documents;
mod faults;
mod storefront;

const PASSWORD: &str = "correct horse battery staple";

/// The shop running in this process on port 0; stopped when dropped.
struct RunningShop {
    gateway: SocketAddr,
    config: Config,
    shutdown: Shutdown,
    shop: Option<Shop>,
    client: reqwest::Client,
}

impl RunningShop {
    async fn start(data_dir: &std::path::Path) -> Self {
        Self::start_with(Config::ephemeral(data_dir.to_owned())).await
    }

    /// Boxed: a whole configuration is too large to keep in each caller's future.
    fn start_with(config: Config) -> futures_util::future::BoxFuture<'static, Self> {
        Box::pin(async move {
            let shutdown = Shutdown::new();
            let shop = Shop::start(&config, &ServiceName::ALL, shutdown.clone())
                .await
                .expect("the shop starts");
            Self::running(shop, config, shutdown)
        })
    }

    /// Drives a shop that is already running.
    fn running(shop: Shop, config: Config, shutdown: Shutdown) -> Self {
        Self {
            gateway: shop.address(ServiceName::Gateway).expect("a gateway"),
            config,
            shutdown,
            shop: Some(shop),
            client: reqwest::Client::new(),
        }
    }

    /// Where `service` listens.
    fn address_of(&self, service: ServiceName) -> Option<SocketAddr> {
        self.shop.as_ref().and_then(|shop| shop.address(service))
    }

    /// The running shop's feature flags.
    fn flags(&self) -> &platform::flags::Flags {
        self.shop.as_ref().expect("the shop runs").flags()
    }

    async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("http://{}{path}", self.gateway))
            .send()
            .await
            .expect("the gateway answers")
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.gateway)
    }

    async fn post(&self, path: &str, body: Value) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .json(&body)
            .send()
            .await
            .expect("the gateway answers")
    }

    /// Registers `email` through the gateway, confirms it with the link the shop mailed,
    /// and returns the access token.
    async fn customer(&self, email: &str) -> String {
        let tokens = test_support::mail::sign_up(
            &self.client,
            &format!("http://{}", self.gateway),
            &self.mailbox(),
            email,
            PASSWORD,
        )
        .await;
        tokens["access_token"].as_str().expect("a token").to_owned()
    }

    /// The folder the shop mails into.
    fn mailbox(&self) -> std::path::PathBuf {
        match self.config.clone().resolved().notifications.mailer {
            notifications::MailerConfig::Mailbox { dir: Some(dir) } => dir,
            other => panic!("the shop mails through {other:?}, not a mailbox"),
        }
    }

    async fn login(&self, email: &str) -> String {
        let tokens = self
            .post(
                "/api/identity/token",
                json!({"email": email, "password": PASSWORD}),
            )
            .await;
        assert_eq!(tokens.status().as_u16(), 200);
        let tokens: Value = tokens.json().await.expect("JSON");
        tokens["access_token"].as_str().expect("a token").to_owned()
    }

    /// Makes `root@example.com` an admin through identity's own use case, as `bazaar
    /// admin create-user` does, and signs in; returns the access token.
    async fn admin(&self) -> String {
        identity::ops::create_user(
            &self.identity().await,
            "root@example.com",
            PASSWORD,
            vec![Role::Customer, Role::Admin],
        )
        .await
        .expect("an admin");
        self.login("root@example.com").await
    }

    /// Identity's use cases over the shop's own identity database.
    async fn identity(&self) -> identity::Identity {
        let config = self.config.clone().resolved();
        identity::context(&config.identity, &config.auth)
            .await
            .expect("identity's database")
    }

    async fn get_as(&self, path: &str, token: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("the gateway answers")
    }

    async fn get_json(&self, path: &str) -> Value {
        let response = self.get(path).await;
        assert_eq!(response.status().as_u16(), 200, "GET {path}");
        response.json().await.expect("JSON")
    }

    /// Shuts down and waits until every service has drained and stopped.
    async fn stop(mut self) {
        self.shutdown.trigger();
        if let Some(shop) = self.shop.take() {
            shop.wait().await.expect("a clean shutdown");
        }
    }
}

impl Drop for RunningShop {
    fn drop(&mut self) {
        self.shutdown.trigger();
    }
}

#[tokio::test]
async fn seeded_products_are_served_through_the_gateway() {
    let data = tempfile::tempdir().expect("a folder");
    let shop = RunningShop::start(data.path()).await;
    let page = shop.get_json("/api/catalog/products?limit=5").await;
    assert_eq!(page["items"].as_array().map(Vec::len), Some(5));
    let mug = shop.get_json("/api/catalog/products/enamel-camp-mug").await;
    assert_eq!(mug["price"]["currency"], "EUR");
    let categories = shop.get_json("/api/catalog/categories").await;
    assert!(
        categories["items"]
            .as_array()
            .is_some_and(|items| items.len() >= 5)
    );
}

#[tokio::test]
async fn bad_input_through_the_gateway_is_the_services_problem() {
    let data = tempfile::tempdir().expect("a folder");
    let shop = RunningShop::start(data.path()).await;
    let response = shop.get("/api/catalog/products?sort=colour").await;
    assert_eq!(response.status().as_u16(), 400);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let problem: Value = response.json().await.expect("JSON");
    assert_eq!(problem["errors"][0]["field"], "sort");
}

#[tokio::test]
async fn health_metrics_and_docs_answer() {
    let data = tempfile::tempdir().expect("a folder");
    let shop = RunningShop::start(data.path()).await;
    assert_eq!(shop.get_json("/health/ready").await["status"], "ready");
    assert_eq!(
        shop.get_json("/api/catalog/health/ready").await["checks"]["database"],
        "ok"
    );
    shop.get("/api/catalog/products?limit=1").await;
    // Metrics are for operators: not through the public address, but on each service's.
    assert_eq!(shop.get("/metrics").await.status().as_u16(), 404);
    assert_eq!(
        shop.get("/api/catalog/metrics").await.status().as_u16(),
        404
    );
    let catalog = shop
        .shop
        .as_ref()
        .and_then(|running| running.address(ServiceName::Catalog))
        .expect("catalog runs");
    let metrics = reqwest::get(format!("http://{catalog}/metrics"))
        .await
        .expect("catalog answers")
        .text()
        .await
        .expect("text");
    assert!(metrics.contains(r#"service="gateway""#), "{metrics}");
    let docs = shop.get("/api/docs/").await;
    assert_eq!(docs.status().as_u16(), 200);
    assert!(docs.text().await.expect("html").contains("swagger"));
    let initializer = shop.get("/api/docs/swagger-initializer.js").await;
    let initializer = initializer.text().await.expect("javascript");
    assert!(
        initializer.contains("/api/catalog/openapi.json"),
        "{initializer}"
    );
    let openapi = shop.get_json("/api/catalog/openapi.json").await;
    assert!(
        openapi["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1"))
    );
}

#[tokio::test]
async fn data_survives_a_restart() {
    let data = tempfile::tempdir().expect("a folder");
    let shop = RunningShop::start(data.path()).await;
    let before = shop.get_json("/api/catalog/products?limit=100").await;
    shop.stop().await;
    assert!(data.path().join("catalog.db").exists());
    let shop = RunningShop::start(data.path()).await;
    let after = shop.get_json("/api/catalog/products?limit=100").await;
    assert_eq!(before, after);
}

#[tokio::test]
async fn register_sign_in_and_read_me_through_the_gateway() {
    let data = tempfile::tempdir().expect("a folder");
    let shop = RunningShop::start(data.path()).await;
    let token = shop.customer("ada@example.com").await;
    let me = shop.get_as("/api/identity/me", &token).await;
    assert_eq!(me.status().as_u16(), 200);
    let me: Value = me.json().await.expect("JSON");
    assert_eq!(me["email"], "ada@example.com");
    let anonymous = shop.get("/api/identity/me").await;
    assert_eq!(anonymous.status().as_u16(), 401);
    assert!(anonymous.headers().contains_key("www-authenticate"));
    let jwks = shop.get_json("/api/identity/.well-known/jwks.json").await;
    assert_eq!(jwks["keys"].as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn forged_tokens_are_refused_at_the_gateway() {
    let data = tempfile::tempdir().expect("a folder");
    let shop = RunningShop::start(data.path()).await;
    let valid = shop.customer("ada@example.com").await;
    let trusted = shop
        .identity()
        .await
        .store
        .active_key()
        .await
        .expect("readable")
        .expect("a key")
        .key;
    let issuer = shop.config.auth.issuer.clone();
    let corpus = test_support::security::attack_corpus(&trusted, &issuer, &valid);
    let me = shop.url("/api/identity/me");
    test_support::security::assert_corpus_refused(|| shop.client.get(&me), &valid, &corpus).await;
}

#[tokio::test]
async fn an_admin_manages_the_catalog_and_a_customer_may_not() {
    let data = tempfile::tempdir().expect("a folder");
    let shop = RunningShop::start(data.path()).await;
    let admin = shop.admin().await;
    let customer = shop.customer("ada@example.com").await;
    let product = json!({
        "slug": "test-teapot",
        "name": "Test Teapot",
        "description": "A teapot made for this test.",
        "category": "kitchen",
        "price": {"amount_minor": 2500, "currency": "EUR"},
        "image": "/static/products/test-teapot.jpg",
        "attributes": {"material": "stoneware"}
    });
    let create = |token: String| {
        shop.client
            .post(shop.url("/api/catalog/products"))
            .bearer_auth(token)
            .json(&product)
            .send()
    };
    let refused = create(customer).await.expect("answers");
    assert_eq!(refused.status().as_u16(), 403);
    let created = create(admin).await.expect("answers");
    assert_eq!(created.status().as_u16(), 201);
    let teapot = shop.get_json("/api/catalog/products/test-teapot").await;
    assert_eq!(teapot["price"]["amount_minor"], 2500);
}

/// Distributed mode's data plane with embedded mode's process: every service on its own
/// PostgreSQL database, messages on JetStream, driven through the gateway.
#[tokio::test]
async fn the_shop_runs_on_postgresql_and_jetstream() {
    use test_support::{Engine, TestDatabase};
    let data = tempfile::tempdir().expect("a folder");
    let identity_db = TestDatabase::new(Engine::Postgres).await;
    let catalog_db = TestDatabase::new(Engine::Postgres).await;
    let nats = test_support::nats::NatsServer::start();
    let mut config = Config::ephemeral(data.path().to_owned());
    config.identity.database_url = Some(identity_db.url().clone());
    config.catalog.database_url = Some(catalog_db.url().clone());
    config.bus = bazaar::config::BusConfig::Jetstream {
        url: nats.url().try_into().expect("a NATS URL"),
        stream: "SHOP".to_owned(),
    };
    let shop = RunningShop::start_with(config).await;

    let token = shop.customer("ada@example.com").await;
    let me = shop.get_as("/api/identity/me", &token).await;
    assert_eq!(me.status().as_u16(), 200);
    let page = shop.get_json("/api/catalog/products?limit=5").await;
    assert_eq!(page["items"].as_array().map(Vec::len), Some(5));
    for file in ["identity.db", "catalog.db", "bus.db"] {
        assert!(!data.path().join(file).exists(), "{file} was made");
    }
}

/// The catalog's seed announces its products over the bus; inventory, another service
/// with its own database, starts tracking their stock, which the gateway then serves.
#[tokio::test]
async fn seeded_products_reach_inventory_through_the_bus() {
    let data = tempfile::tempdir().expect("a folder");
    let shop = RunningShop::start(data.path()).await;
    let mug = shop.get_json("/api/catalog/products/enamel-camp-mug").await;
    let id = mug["id"].as_str().expect("an id");
    let path = format!("/api/inventory/stock/{id}");
    let learnt = "inventory learning of the seeded products";
    let stock = test_support::eventually(learnt, std::time::Duration::from_secs(10), || async {
        let response = shop.get(&path).await;
        let status = response.status().as_u16();
        assert!(
            status == 200 || status == 404,
            "not yet tracked, or tracked: {status}"
        );
        if status == 200 {
            Ok(response.json::<Value>().await.expect("JSON"))
        } else {
            Err(status)
        }
    })
    .await;
    assert_eq!(stock["available"], 25);
}

/// A stop while shoppers keep calling: the gateway stops taking requests first and
/// drains, then the storefront, then the services, so every request the gateway
/// accepted is answered as if nothing happened (no 502 or 503 from a service that
/// stopped under it). Requests after the stop are refused at the door, which is fine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_stop_answers_every_request_it_accepted() {
    let data = tempfile::tempdir().expect("a folder");
    let shop = RunningShop::start(data.path()).await;
    let token = shop.customer("ada@example.com").await;
    let mug = shop.get_json("/api/catalog/products/enamel-camp-mug").await;
    let mug = mug["id"].as_str().expect("an id").to_owned();
    let added = shop
        .client
        .post(shop.url("/api/cart/items"))
        .bearer_auth(&token)
        .json(&json!({"product_id": mug, "quantity": 1}))
        .send()
        .await
        .expect("answers");
    assert_eq!(added.status().as_u16(), 200);

    let progress = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut shoppers = tokio::task::JoinSet::new();
    for n in 0..12 {
        // Half read the catalog (gateway → catalog); half set a cart line, which the
        // cart prices from the catalog and inventory over gRPC.
        let request = if n % 2 == 0 {
            shop.client.get(shop.url("/api/catalog/products?limit=3"))
        } else {
            shop.client
                .put(shop.url(&format!("/api/cart/items/{mug}")))
                .bearer_auth(&token)
                .json(&json!({"quantity": 1}))
        };
        let progress = std::sync::Arc::clone(&progress);
        shoppers.spawn(async move {
            let mut statuses = Vec::new();
            loop {
                let Some(attempt) = request.try_clone() else {
                    return statuses;
                };
                match attempt.send().await {
                    Ok(response) => {
                        statuses.push(response.status().as_u16());
                        progress.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    // Refused at the door (or the connection closed before the
                    // request was taken): the gateway has stopped accepting.
                    Err(_) => return statuses,
                }
            }
        });
    }
    // Once the shoppers are well under way, stop in the middle of their requests.
    while progress.load(std::sync::atomic::Ordering::Relaxed) < 120 {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    shop.stop().await;
    let mut answered = Vec::new();
    while let Some(statuses) = shoppers.join_next().await {
        answered.extend(statuses.expect("a shopper"));
    }
    assert!(
        answered.len() > 12,
        "the shoppers hardly shopped: {answered:?}"
    );
    let failed: Vec<u16> = answered
        .iter()
        .copied()
        .filter(|status| *status != 200)
        .collect();
    assert!(
        failed.is_empty(),
        "of {} requests answered during the stop, {} failed: {failed:?}",
        answered.len(),
        failed.len()
    );
}
