//! Spawning a small shop on port 0: the catalog (with its demo data), inventory and the
//! cart, each over a fresh database, sharing one embedded bus and one token issuer.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use contracts::catalog::{Product, ProductPage};
use platform::bus::Bus as _;
use platform::bus::embedded::EmbeddedBus;
use platform::shutdown::Shutdown;
use reqwest::Method;
use serde_json::Value;
use test_support::proxy::Proxy;
use test_support::redis::{RedisServer, unique_prefix};
use test_support::{Engine, TestDatabase, TestIssuer, bind, serve_on};

/// Units inventory starts each product with.
pub(crate) const INITIAL_STOCK: i64 = 25;

/// How the cart under test is configured.
pub(crate) struct Options {
    /// Keep carts in Redis instead of SQL.
    pub(crate) redis: bool,
    /// Point the cart at a catalog that does not answer.
    pub(crate) catalog_down: bool,
    /// The most lines a cart may hold.
    pub(crate) max_lines: usize,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            redis: false,
            catalog_down: false,
            max_lines: 50,
        }
    }
}

/// A running catalog, inventory and cart; stopped when dropped.
pub(crate) struct TestShop {
    pub(crate) cart: SocketAddr,
    pub(crate) catalog: SocketAddr,
    pub(crate) inventory: SocketAddr,
    pub(crate) client: reqwest::Client,
    pub(crate) issuer: TestIssuer,
    pub(crate) bus: Arc<EmbeddedBus>,
    shutdown: Shutdown,
    _databases: Vec<TestDatabase>,
    /// The connection to Redis, when carts are kept there: cut it to take Redis away.
    pub(crate) redis_link: Option<Proxy>,
    _redis: Option<RedisServer>,
    _folder: tempfile::TempDir,
}

impl TestShop {
    /// The shop on `engine`, with the cart on its SQL store.
    pub(crate) async fn spawn(engine: Engine) -> Self {
        Self::spawn_with(engine, Options::default()).await
    }

    pub(crate) async fn spawn_with(engine: Engine, options: Options) -> Self {
        let folder = tempfile::tempdir().expect("a folder");
        let bus = test_support::embedded_bus(folder.path()).await;
        let issuer = TestIssuer::new();
        let context = test_support::context(bus.clone(), issuer.verifier());
        let shutdown = context.shutdown.clone();
        let databases = [
            TestDatabase::new(engine).await,
            TestDatabase::new(engine).await,
            TestDatabase::new(engine).await,
        ];
        let (catalog_listener, catalog) = bind().await;
        let (inventory_listener, inventory) = bind().await;
        let (cart_listener, cart) = bind().await;

        let catalog_config = catalog::Config {
            listen: catalog,
            database_url: Some(databases[0].url().clone()),
            seed_demo_data: true,
            ..catalog::Config::default()
        };
        let service = catalog::build(&catalog_config, &context)
            .await
            .expect("the catalog starts");
        serve_on(catalog_listener, service, &shutdown);

        let inventory_config = inventory::Config {
            listen: inventory,
            database_url: Some(databases[1].url().clone()),
            initial_stock: INITIAL_STOCK,
            expiry_check_ms: 3_600_000,
            ..inventory::Config::default()
        };
        let service = inventory::build(&inventory_config, &context)
            .await
            .expect("inventory starts");
        serve_on(inventory_listener, service, &shutdown);

        let redis = options.redis.then(RedisServer::new);
        // Redis is reached through a proxy, so a test can take it away.
        let redis_link = match &redis {
            Some(server) => Some(Proxy::to_server_of(server.url()).await),
            None => None,
        };
        let store = match (&redis, &redis_link) {
            (Some(server), Some(link)) => cart::StoreConfig::Redis {
                url: link
                    .url_through(server.url())
                    .try_into()
                    .expect("a Redis URL"),
                key_prefix: unique_prefix(),
            },
            _ => cart::StoreConfig::Sql {},
        };
        let catalog_url = if options.catalog_down {
            format!("http://{}", closed_address().await)
        } else {
            format!("http://{catalog}")
        };
        let cart_config = cart::Config {
            listen: cart,
            database_url: Some(databases[2].url().clone()),
            max_connections: 4,
            store,
            catalog_url,
            inventory_url: format!("http://{inventory}"),
            max_lines: options.max_lines,
            ..cart::Config::default()
        };
        let service = cart::build(&cart_config, &context)
            .await
            .expect("the cart starts");
        serve_on(cart_listener, service, &shutdown);

        Self {
            cart,
            catalog,
            inventory,
            client: reqwest::Client::new(),
            issuer,
            bus,
            shutdown,
            _databases: databases.into(),
            redis_link,
            _redis: redis,
            _folder: folder,
        }
    }

    /// The cart's URL for `path`.
    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.cart)
    }

    /// A request to the cart as the holder of `token`.
    pub(crate) fn request(
        &self,
        method: Method,
        path: &str,
        token: &str,
    ) -> reqwest::RequestBuilder {
        self.client
            .request(method, self.url(path))
            .bearer_auth(token)
    }

    /// Sends `body` (if any) to the cart as `token`'s holder; returns the status and
    /// the JSON body (`Null` when there is none).
    pub(crate) async fn send(
        &self,
        method: Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = self.request(method, path, token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("the cart answers");
        let status = response.status().as_u16();
        let text = response.text().await.expect("a body");
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).expect("a JSON body")
        };
        (status, body)
    }

    /// `GET /cart` as `token`'s holder, which must succeed.
    pub(crate) async fn cart(&self, token: &str) -> Value {
        let (status, body) = self.send(Method::GET, "/", token, None).await;
        assert_eq!(status, 200, "GET /cart: {body}");
        body
    }

    /// `POST /cart/items`, which must succeed; returns the cart.
    pub(crate) async fn add(&self, token: &str, product_id: &str, quantity: i64) -> Value {
        let body = serde_json::json!({"product_id": product_id, "quantity": quantity});
        let (status, cart) = self.send(Method::POST, "/items", token, Some(body)).await;
        assert_eq!(status, 200, "adding {quantity} of {product_id}: {cart}");
        cart
    }

    /// The first `count` products of the demo catalog, each already tracked by
    /// inventory.
    pub(crate) async fn products(&self, count: usize) -> Vec<Product> {
        let page: ProductPage = self
            .client
            .get(format!("http://{}/products?limit={count}", self.catalog))
            .send()
            .await
            .expect("the catalog answers")
            .json()
            .await
            .expect("a page of products");
        assert_eq!(page.items.len(), count, "the demo catalog has enough");
        for product in &page.items {
            self.wait_until_tracked(&product.id).await;
        }
        page.items
    }

    /// Waits until inventory learnt of `product_id` from the catalog's events: the
    /// catalog's relay and inventory's consumer run as workers, so this polls, bounded.
    async fn wait_until_tracked(&self, product_id: &str) {
        let url = format!("http://{}/stock/{product_id}", self.inventory);
        let learnt = format!("inventory learning of {product_id}");
        test_support::eventually(&learnt, Duration::from_secs(10), || async {
            let response = self
                .client
                .get(&url)
                .send()
                .await
                .expect("inventory answers");
            let status = response.status();
            status.is_success().then_some(()).ok_or(status)
        })
        .await;
    }

    /// Sets a product's price in the catalog, as an admin does.
    pub(crate) async fn reprice(&self, slug: &str, amount_minor: i64) {
        let response = self
            .client
            .patch(format!("http://{}/products/{slug}", self.catalog))
            .bearer_auth(self.issuer.admin())
            .json(&serde_json::json!({"price": {"amount_minor": amount_minor, "currency": "EUR"}}))
            .send()
            .await
            .expect("the catalog answers");
        assert_eq!(response.status().as_u16(), 200, "repricing {slug}");
    }

    /// Waits until the cart has acknowledged every confirmed order on the bus.
    pub(crate) async fn wait_for_cart_to_consume(&self) {
        let subscription = cart::events::subscription().name;
        for _ in 0..400 {
            if self
                .bus
                .pending(&subscription)
                .await
                .expect("the bus answers")
                == 0
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("the cart never consumed its messages");
    }
}

impl Drop for TestShop {
    fn drop(&mut self) {
        self.shutdown.trigger();
    }
}

/// An address where nothing listens.
async fn closed_address() -> SocketAddr {
    let (listener, address) = bind().await;
    drop(listener);
    address
}
