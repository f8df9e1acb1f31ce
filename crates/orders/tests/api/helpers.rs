//! What the scenarios share: an orders database driven through the use cases
//! ([`Orders`]), and a small shop on port 0 for the REST API ([`TestShop`]): the real
//! catalog, inventory, cart, payments and orders, each over a fresh database, sharing
//! one embedded bus and one token issuer.

use std::net::SocketAddr;
use std::time::Duration;

use contracts::messaging::Envelope;
use contracts::messaging::orders::OrderLine;
use contracts::{Currency, Money};
use orders::ops::{self, Basket, NewOrder, PlaceOrder, Placement, Settings};
use orders::projection::{self, Filter, OrderView, TimelineEntry};
use orders::saga::Input;
use platform::db::{Database, PoolSettings};
use platform::outbox::{self, Origin};
use platform::shutdown::Shutdown;
use reqwest::Method;
use serde_json::{Value, json};
use sqlx::Row as _;
use test_support::{Engine, TestDatabase, TestIssuer, bind, serve_on};

/// A fixed moment the use-case scenarios start at, ms since the epoch, so that every
/// time they record is one they chose.
pub(crate) const T0: i64 = 1_800_000_000_000;

/// An hour, in milliseconds: later than any step's deadline.
pub(crate) const HOUR_MS: i64 = 3_600_000;

/// Euros, in cents.
pub(crate) fn eur(amount_minor: i64) -> Money {
    Money {
        amount_minor,
        currency: Currency::EUR,
    }
}

/// The id of the customer the tests call `name`, as tokens and orders carry it.
pub(crate) fn customer_id(name: &str) -> String {
    test_support::user_id(name).to_string()
}

/// A basket of two lines: two mugs at 14.50 and a notebook at 9.90.
pub(crate) fn basket() -> Basket {
    let line = |product_id: &str, name: &str, quantity: i64, price: i64| OrderLine {
        product_id: test_support::product_id(product_id),
        name: name.to_owned(),
        quantity,
        unit_price: eur(price),
    };
    Basket {
        lines: vec![
            line("product-mug", "Enamel Camp Mug", 2, 1450),
            line("product-notebook", "Dot Grid Notebook", 1, 990),
        ],
        total: eur(3890),
        cart_revision: Some(7),
    }
}

/// The origin every use-case scenario's messages carry.
pub(crate) fn origin() -> Origin {
    Origin {
        correlation_id: "test-checkout".to_owned(),
        ..Origin::default()
    }
}

/// The orders service's database, migrated as the service migrates it, driven through
/// its use cases the way the REST API, the inbox and the deadline worker drive it.
pub(crate) struct Orders {
    pub(crate) db: Database,
    pub(crate) settings: Settings,
    _database: TestDatabase,
}

impl Orders {
    /// A fresh database on `engine` with the default settings.
    pub(crate) async fn new(engine: Engine) -> Self {
        let database = TestDatabase::new(engine).await;
        let db = Database::connect(database.url(), PoolSettings::default())
            .await
            .expect("connects");
        db.migrate(sqlx::migrate!("./migrations"))
            .await
            .expect("migrated");
        outbox::migrate(&db).await.expect("the outbox migrated");
        Self {
            db,
            settings: orders::Config::default().settings(),
            _database: database,
        }
    }

    /// Places an order of [`basket`] for `customer` with `key`, paid with `card`, at
    /// `now`.
    pub(crate) async fn place_with(
        &self,
        customer: &str,
        key: &str,
        card: &str,
        now: i64,
    ) -> Placement {
        let request = PlaceOrder {
            payment_method: card.to_owned(),
        };
        let customer = customer_id(customer);
        let new = NewOrder {
            customer_id: &customer,
            key,
            request: &request,
            basket: basket(),
        };
        ops::place(&self.db, new, &origin(), &self.settings, now)
            .await
            .expect("placed")
    }

    /// Places a new order for `customer` at `now`; its id.
    pub(crate) async fn place(&self, customer: &str, now: i64) -> String {
        let key = uuid::Uuid::now_v7().to_string();
        match self.place_with(customer, &key, "pm_card", now).await {
            Placement::Placed(id) => id,
            other => panic!("a fresh key placed {other:?}"),
        }
    }

    /// Feeds `input` to order `order_id`'s saga in a transaction of its own, as the
    /// inbox does with an answer.
    pub(crate) async fn feed(&self, order_id: &str, input: Input, now: i64) {
        let mut tx = self.db.pool().begin().await.expect("a transaction");
        ops::handle(&mut tx, order_id, input, &origin(), &self.settings, now)
            .await
            .expect("handled");
        tx.commit().await.expect("committed");
    }

    /// Every message in the outbox, oldest first.
    pub(crate) async fn outbox(&self) -> Vec<Envelope> {
        sqlx::query("SELECT envelope FROM outbox ORDER BY created_at, id")
            .fetch_all(self.db.pool())
            .await
            .expect("the outbox is readable")
            .iter()
            .map(|row| {
                let text: String = row.try_get("envelope").expect("an envelope");
                serde_json::from_str(&text).expect("a readable envelope")
            })
            .collect()
    }

    /// The types of the outbox's messages about `order_id`, oldest first.
    pub(crate) async fn sent_about(&self, order_id: &str) -> Vec<String> {
        self.outbox()
            .await
            .into_iter()
            .filter(|envelope| envelope.payload["order_id"] == order_id)
            .map(|envelope| envelope.kind)
            .collect()
    }

    /// The order's stored events as `(seq, kind)`, in order.
    pub(crate) async fn history(&self, order_id: &str) -> Vec<(i64, String)> {
        sqlx::query("SELECT seq, kind FROM order_events WHERE order_id = $1 ORDER BY seq")
            .bind(order_id.to_owned())
            .fetch_all(self.db.pool())
            .await
            .expect("the event store is readable")
            .iter()
            .map(|row| {
                (
                    row.try_get("seq").expect("seq"),
                    row.try_get("kind").expect("kind"),
                )
            })
            .collect()
    }

    /// The order folded from its events, which must exist.
    pub(crate) async fn load(&self, order_id: &str) -> orders::domain::Order {
        let mut connection = self.db.pool().acquire().await.expect("a connection");
        orders::store::load(&mut connection, order_id)
            .await
            .expect("a readable history")
            .expect("the order exists")
    }

    /// The order's view and timeline in the read model, which must exist.
    pub(crate) async fn view(&self, order_id: &str) -> (OrderView, Vec<TimelineEntry>) {
        let mut connection = self.db.pool().acquire().await.expect("a connection");
        projection::get(&mut connection, order_id)
            .await
            .expect("the read model is readable")
            .expect("the order is in the read model")
    }

    /// The whole read model: every order's view and timeline, newest first.
    pub(crate) async fn read_model(&self) -> Vec<(OrderView, Vec<TimelineEntry>)> {
        let mut connection = self.db.pool().acquire().await.expect("a connection");
        let views = projection::list(&mut connection, &Filter::default(), 100)
            .await
            .expect("listed");
        let mut model = Vec::with_capacity(views.len());
        for view in views {
            let entry = projection::get(&mut connection, &view.id)
                .await
                .expect("readable")
                .expect("listed, so present");
            assert_eq!(entry.0, view, "the listing and the detail agree");
            model.push(entry);
        }
        model
    }

    /// The events in order of the timeline's entries.
    pub(crate) fn timeline_events(timeline: &[TimelineEntry]) -> Vec<&str> {
        timeline.iter().map(|entry| entry.event.as_str()).collect()
    }
}

/// A running catalog, inventory, cart, payments and orders; stopped when dropped.
pub(crate) struct TestShop {
    pub(crate) orders: SocketAddr,
    pub(crate) cart: SocketAddr,
    pub(crate) catalog: SocketAddr,
    pub(crate) inventory: SocketAddr,
    pub(crate) payments: SocketAddr,
    pub(crate) client: reqwest::Client,
    pub(crate) issuer: TestIssuer,
    shutdown: Shutdown,
    _databases: Vec<TestDatabase>,
    _folder: tempfile::TempDir,
}

/// A customer ready to check out: signed in, with a saved card.
pub(crate) struct Shopper {
    pub(crate) token: String,
    pub(crate) card: String,
}

impl TestShop {
    /// The five services on `engine`, every worker running.
    pub(crate) async fn spawn(engine: Engine) -> Self {
        let folder = tempfile::tempdir().expect("a folder");
        let issuer = TestIssuer::new();
        let context = test_support::context(
            test_support::embedded_bus(folder.path()).await,
            issuer.verifier(),
        );
        let shutdown = context.shutdown.clone();
        let mut databases = Vec::new();
        for _ in 0..5 {
            databases.push(TestDatabase::new(engine).await);
        }
        let (catalog_listener, catalog) = bind().await;
        let (inventory_listener, inventory) = bind().await;
        let (cart_listener, cart) = bind().await;
        let (payments_listener, payments) = bind().await;
        let (orders_listener, orders) = bind().await;

        let config = catalog::Config {
            listen: catalog,
            database_url: Some(databases[0].url().clone()),
            seed_demo_data: true,
            ..catalog::Config::default()
        };
        let service = catalog::build(&config, &context)
            .await
            .expect("the catalog starts");
        serve_on(catalog_listener, service, &shutdown);

        let config = inventory::Config {
            listen: inventory,
            database_url: Some(databases[1].url().clone()),
            initial_stock: 25,
            expiry_check_ms: 3_600_000,
            ..inventory::Config::default()
        };
        let service = inventory::build(&config, &context)
            .await
            .expect("inventory starts");
        serve_on(inventory_listener, service, &shutdown);

        let config = cart::Config {
            listen: cart,
            database_url: Some(databases[2].url().clone()),
            max_connections: 4,
            store: cart::StoreConfig::Sql {},
            catalog_url: format!("http://{catalog}"),
            inventory_url: format!("http://{inventory}"),
            ..cart::Config::default()
        };
        let service = cart::build(&config, &context)
            .await
            .expect("the cart starts");
        serve_on(cart_listener, service, &shutdown);

        let config = payments::Config {
            listen: payments,
            database_url: Some(databases[3].url().clone()),
            max_connections: 4,
            ..payments::Config::default()
        };
        let service = payments::build(&config, &context)
            .await
            .expect("payments starts");
        serve_on(payments_listener, service, &shutdown);

        let config = orders::Config {
            listen: orders,
            database_url: Some(databases[4].url().clone()),
            max_connections: 4,
            cart_url: format!("http://{cart}"),
            payments_url: format!("http://{payments}"),
            ..orders::Config::default()
        };
        let service = orders::build(&config, &context)
            .await
            .expect("orders starts");
        serve_on(orders_listener, service, &shutdown);

        Self {
            orders,
            cart,
            catalog,
            inventory,
            payments,
            client: reqwest::Client::new(),
            issuer,
            shutdown,
            _databases: databases,
            _folder: folder,
        }
    }

    /// The orders API's URL for `path`.
    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.orders)
    }

    /// Sends `body` (if any) to orders at `path` as the holder of `token`, with an
    /// Idempotency-Key if one is given; the status, the headers and the JSON body
    /// (`Null` when there is none).
    pub(crate) async fn send(
        &self,
        method: Method,
        path: &str,
        token: &str,
        key: Option<&str>,
        body: Option<Value>,
    ) -> (u16, reqwest::header::HeaderMap, Value) {
        let mut request = self
            .client
            .request(method, self.url(path))
            .bearer_auth(token);
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("orders answers");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.expect("a body");
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("a JSON body: {text}"))
        };
        (status, headers, body)
    }

    /// `GET path` from orders as `token`'s holder; the status and the body.
    pub(crate) async fn get(&self, path: &str, token: &str) -> (u16, Value) {
        let (status, _, body) = self.send(Method::GET, path, token, None, None).await;
        (status, body)
    }

    /// `POST /` with `key`, paying with `card`; the status, headers and body.
    pub(crate) async fn place(
        &self,
        token: &str,
        key: &str,
        card: &str,
    ) -> (u16, reqwest::header::HeaderMap, Value) {
        let body = json!({ "payment_method": card });
        self.send(Method::POST, "/", token, Some(key), Some(body))
            .await
    }

    /// Places an order that must be accepted; its id.
    pub(crate) async fn place_accepted(&self, shopper: &Shopper) -> String {
        let key = uuid::Uuid::now_v7().to_string();
        let (status, _, body) = self.place(&shopper.token, &key, &shopper.card).await;
        assert_eq!(status, 202, "placing an order: {body}");
        body["id"].as_str().expect("an id").to_owned()
    }

    /// Polls the order (as `token`'s holder) until its status is `status`; its detail.
    /// The saga runs in the services' workers, so this waits, bounded, for real work,
    /// and fails at once if the order ends in another way.
    pub(crate) async fn wait_for_status(&self, token: &str, id: &str, status: &str) -> Value {
        let mut last = Value::Null;
        for _ in 0..1200 {
            let (code, body) = self.get(&format!("/{id}"), token).await;
            assert_eq!(code, 200, "reading order {id}: {body}");
            if body["status"] == status {
                return body;
            }
            let over = ["rejected", "cancelled", "refunded"];
            assert!(
                !over.iter().any(|end| body["status"] == *end),
                "order {id} ended otherwise than {status}: {body}"
            );
            last = body;
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("order {id} never became {status}: {last}");
    }

    /// A customer named `name` with an approved card saved at payments.
    pub(crate) async fn shopper(&self, name: &str) -> Shopper {
        let token = self.issuer.customer(&customer_id(name));
        let response = self
            .client
            .post(format!("http://{}/methods", self.payments))
            .bearer_auth(&token)
            .json(&json!({
                "number": payments::cards::APPROVED,
                "exp_month": 12,
                "exp_year": payments::cards::YearMonth::now().year + 2,
                "cvc": "123",
            }))
            .send()
            .await
            .expect("payments answers");
        assert_eq!(response.status().as_u16(), 201, "saving a card");
        let card: Value = response.json().await.expect("JSON");
        let card = card["token"].as_str().expect("a token").to_owned();
        Shopper { token, card }
    }

    /// The id of a demo product inventory already tracks.
    pub(crate) async fn product(&self) -> String {
        let page: Value = self
            .client
            .get(format!("http://{}/products?limit=1", self.catalog))
            .send()
            .await
            .expect("the catalog answers")
            .json()
            .await
            .expect("a page of products");
        let id = page["items"][0]["id"]
            .as_str()
            .expect("a demo product")
            .to_owned();
        // Inventory learns of products from the catalog's events, in its workers.
        let url = format!("http://{}/stock/{id}", self.inventory);
        let learnt = format!("inventory learning of {id}");
        test_support::eventually(&learnt, Duration::from_secs(10), || async {
            let response = self.client.get(&url).send().await.expect("answers");
            let status = response.status();
            status.is_success().then_some(()).ok_or(status)
        })
        .await;
        id
    }

    /// Puts one unit of `product` in the cart of `token`'s holder.
    pub(crate) async fn add_to_cart(&self, token: &str, product: &str) {
        let response = self
            .client
            .post(format!("http://{}/items", self.cart))
            .bearer_auth(token)
            .json(&json!({"product_id": product, "quantity": 1}))
            .send()
            .await
            .expect("the cart answers");
        assert_eq!(response.status().as_u16(), 200, "adding {product}");
    }

    /// Waits until the cart of `token`'s holder is empty: the cart takes a confirmed
    /// order's lines out when it consumes the confirmation.
    pub(crate) async fn wait_for_empty_cart(&self, token: &str) {
        for _ in 0..400 {
            let cart: Value = self
                .client
                .get(format!("http://{}/", self.cart))
                .bearer_auth(token)
                .send()
                .await
                .expect("the cart answers")
                .json()
                .await
                .expect("a cart");
            if cart["lines"].as_array().is_some_and(Vec::is_empty) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("the cart was never emptied");
    }

    /// One confirmed order of one unit of `product` for `shopper`, leaving the cart
    /// empty again; its id.
    pub(crate) async fn confirmed_order(&self, shopper: &Shopper, product: &str) -> String {
        self.add_to_cart(&shopper.token, product).await;
        let id = self.place_accepted(shopper).await;
        self.wait_for_status(&shopper.token, &id, "confirmed").await;
        self.wait_for_empty_cart(&shopper.token).await;
        id
    }
}

impl Drop for TestShop {
    fn drop(&mut self) {
        self.shutdown.trigger();
    }
}
