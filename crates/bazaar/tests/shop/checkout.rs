//! The checkout, end to end through the gateway, in both modes: embedded (SQLite and
//! the embedded bus) and distributed (PostgreSQL, JetStream and Redis). Every scenario
//! ends with the shop's audit, `bazaar verify`, reporting clean.

use std::sync::Arc;
use std::time::Duration;

use bazaar::Config;
use bazaar::ServiceName;
use bazaar::shop::Shop;
use platform::bus::Bus;
use platform::shutdown::Shutdown;
use serde_json::{Value, json};
use test_support::{Engine, TestDatabase};

use crate::RunningShop;

/// Test cards of the card processor simulator.
pub(crate) const APPROVED: &str = "4242424242424242";
const DECLINED: &str = "4000000000000002";
const TRANSIENT: &str = "4000000000000119";
const LAPSING: &str = "4000000000000267";
const REFUND_REFUSED: &str = "4000000000000358";

/// Where a scenario runs.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Mode {
    /// SQLite files and the embedded bus.
    Embedded,
    /// PostgreSQL databases, JetStream and a Redis cart.
    Distributed,
}

/// Runs each scenario in both modes: `embedded::name` and `distributed::name`.
macro_rules! on_both_modes {
    ($($name:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Mode::Embedded).await;
                }
            )*
        }
        mod distributed {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Mode::Distributed).await;
                }
            )*
        }
    };
}
pub(crate) use on_both_modes;

on_both_modes!(
    a_checkout_is_confirmed_emailed_and_empties_the_cart,
    too_little_stock_rejects_the_order,
    a_declined_card_cancels_and_releases_the_stock,
    a_transient_processor_error_is_retried_to_confirmation,
    a_held_payment_waits_for_an_admin,
    an_idempotency_key_places_one_order,
    thirty_two_buyers_of_the_last_unit_make_one_sale,
    every_message_delivered_twice_has_one_effect,
    a_hold_that_outlives_the_reservation_voids_and_cancels,
    an_admin_refunds_a_confirmed_order,
    a_customer_cancels_before_payment,
    a_refused_capture_returns_the_stock_and_cancels,
    a_refused_refund_ends_the_order_for_an_operator,
    a_line_added_again_while_the_order_is_in_flight_stays,
);

/// A shop for one scenario, and what its mode runs on.
pub(crate) struct Scenario {
    pub(crate) shop: RunningShop,
    pub(crate) config: Config,
    _data: tempfile::TempDir,
    _databases: Vec<TestDatabase>,
    _nats: Option<test_support::nats::NatsServer>,
    _redis: Option<test_support::redis::RedisServer>,
}

impl Scenario {
    pub(crate) async fn start(mode: Mode) -> Self {
        Self::configured(mode, |_| {}).await
    }

    /// A shop whose configuration `adjust` changes.
    pub(crate) async fn configured(mode: Mode, adjust: impl FnOnce(&mut Config)) -> Self {
        Self::start_with(mode, adjust, |bus| bus).await
    }

    /// A shop whose configuration `adjust` changes and whose bus `wrap` may wrap.
    pub(crate) async fn start_with(
        mode: Mode,
        adjust: impl FnOnce(&mut Config),
        wrap: impl FnOnce(Arc<dyn Bus>) -> Arc<dyn Bus>,
    ) -> Self {
        let data = tempfile::tempdir().expect("a folder");
        let mut config = Config::ephemeral(data.path().to_owned());
        let mut databases = Vec::new();
        let (mut nats, mut redis) = (None, None);
        if let Mode::Distributed = mode {
            for service in ServiceName::ALL {
                let database = TestDatabase::new(Engine::Postgres).await;
                let url = Some(database.url().clone());
                match service {
                    ServiceName::Gateway | ServiceName::Storefront => continue,
                    ServiceName::Identity => config.identity.database_url = url,
                    ServiceName::Catalog => config.catalog.database_url = url,
                    ServiceName::Inventory => config.inventory.database_url = url,
                    ServiceName::Payments => config.payments.database_url = url,
                    ServiceName::Cart => config.cart.database_url = url,
                    ServiceName::Orders => config.orders.database_url = url,
                    ServiceName::Notifications => config.notifications.database_url = url,
                }
                databases.push(database);
            }
            let server = test_support::nats::NatsServer::start();
            config.bus = bazaar::config::BusConfig::Jetstream {
                url: server.url().try_into().expect("a NATS URL"),
                stream: "SHOP".to_owned(),
            };
            nats = Some(server);
            let server = test_support::redis::RedisServer::new();
            config.cart.store = cart::config::StoreConfig::Redis {
                url: server.url().to_owned().try_into().expect("a Redis URL"),
                key_prefix: test_support::redis::unique_prefix(),
            };
            redis = Some(server);
        }
        // Quick deadlines, so that a lost message costs the test little time.
        config.orders.deadlines.step_ms = 2_000;
        config.orders.deadline_check_ms = 100;
        config.notifications.poll_ms = 50;
        config.inventory.expiry_check_ms = 100;
        // Dozens of shoppers sign in from one address here.
        config.identity.address_attempts_burst = 10_000;
        adjust(&mut config);
        let resolved = config.clone().resolved();
        let bus = wrap(bazaar::shop::open_bus(&resolved).await.expect("a bus"));
        let shutdown = Shutdown::new();
        let shop = Shop::start_on(bus, &config, &ServiceName::ALL, shutdown.clone())
            .await
            .expect("the shop starts");
        Self {
            shop: RunningShop::running(shop, config.clone(), shutdown),
            config: resolved,
            _data: data,
            _databases: databases,
            _nats: nats,
            _redis: redis,
        }
    }

    /// Signs up a customer with a card and `quantity` of `product` in the cart;
    /// returns the access token and the payment method's token.
    pub(crate) async fn shopper(
        &self,
        email: &str,
        card: &str,
        product: &str,
        quantity: i64,
    ) -> (String, String) {
        let token = self.shop.customer(email).await;
        let method = self
            .send(
                &token,
                "POST",
                "/api/payments/methods",
                Some(json!({
                    "number": card, "exp_month": 12, "exp_year": 2040, "cvc": "123"
                })),
            )
            .await;
        assert_eq!(method.0, 201, "registering a card: {}", method.1);
        let added = self
            .send(
                &token,
                "POST",
                "/api/cart/items",
                Some(json!({"product_id": product, "quantity": quantity})),
            )
            .await;
        assert_eq!(added.0, 200, "adding to the cart: {}", added.1);
        let method = method.1["token"].as_str().expect("a token").to_owned();
        (token, method)
    }

    /// Sends a request as `token`; returns the status and the JSON body (or null).
    pub(crate) async fn send(
        &self,
        token: &str,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("a method");
        let mut request = self
            .shop
            .client
            .request(method, self.shop.url(path))
            .bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("the gateway answers");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Places an order with `key`; returns the status and body.
    pub(crate) async fn place(&self, token: &str, key: &str, method: &str) -> (u16, Value) {
        let response = self
            .shop
            .client
            .post(self.shop.url("/api/orders"))
            .bearer_auth(token)
            .header("idempotency-key", key)
            .json(&json!({"payment_method": method}))
            .send()
            .await
            .expect("the gateway answers");
        let status = response.status().as_u16();
        if status == 202 {
            let location = response.headers()["location"]
                .to_str()
                .expect("text")
                .to_owned();
            let body: Value = response.json().await.expect("JSON");
            assert_eq!(
                location,
                format!("/api/orders/{}", body["id"].as_str().expect("an id"))
            );
            return (status, body);
        }
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Polls the order until its status is one of `statuses`; returns it with its
    /// timeline.
    pub(crate) async fn wait_for(&self, token: &str, order_id: &str, statuses: &[&str]) -> Value {
        let path = format!("/api/orders/{order_id}");
        let reached = format!("order {order_id} reaching {statuses:?}");
        test_support::eventually(&reached, Duration::from_secs(30), || async {
            let (status, order) = self.send(token, "GET", &path, None).await;
            assert_eq!(status, 200, "{order}");
            if statuses.iter().any(|wanted| order["status"] == *wanted) {
                Ok(order)
            } else {
                Err(order)
            }
        })
        .await
    }

    /// Places an order from `token`'s cart with the payment method `card` under the
    /// idempotency `key`, and asserts that it is confirmed and its confirmation mailed.
    /// Returns the order's id.
    pub(crate) async fn checks_out(&self, token: &str, key: &str, card: &str) -> String {
        let (_, placed) = self.place(token, key, card).await;
        let id = placed["id"].as_str().expect("an id").to_owned();
        let order = self.wait_for(token, &id, &["confirmed", "cancelled"]).await;
        assert_eq!(order["status"], "confirmed", "{order:#}");
        self.wait_for_email(token, "order_confirmed", &id).await;
        id
    }

    /// Waits until the customer has an email of `kind` about `order_id` that was sent.
    pub(crate) async fn wait_for_email(&self, token: &str, kind: &str, order_id: &str) -> Value {
        let sent = format!("a {kind} email about {order_id} being sent");
        test_support::eventually(&sent, Duration::from_secs(30), || async {
            let (status, page) = self.send(token, "GET", "/api/notifications", None).await;
            assert_eq!(status, 200, "{page}");
            let found = page["items"].as_array().into_iter().flatten().find(|mail| {
                mail["kind"] == kind
                    && mail["status"] == "sent"
                    && mail["body"].as_str().is_some_and(|body| {
                        body.contains(&contracts::orders::order_number(order_id))
                    })
            });
            found.cloned().ok_or(page)
        })
        .await
    }

    /// The id of a seeded product and units available.
    pub(crate) async fn product(&self, slug: &str) -> (String, i64) {
        let product = self
            .shop
            .get_json(&format!("/api/catalog/products/{slug}"))
            .await;
        let id = product["id"].as_str().expect("an id").to_owned();
        let learnt = format!("inventory learning of {slug}");
        let available = test_support::eventually(&learnt, Duration::from_secs(15), || async {
            let response = self.shop.get(&format!("/api/inventory/stock/{id}")).await;
            let status = response.status();
            if status.as_u16() != 200 {
                return Err(status);
            }
            let stock: Value = response.json().await.expect("JSON");
            Ok(stock["available"].as_i64().expect("a count"))
        })
        .await;
        (id, available)
    }

    pub(crate) async fn available(&self, product: &str) -> i64 {
        self.shop
            .get_json(&format!("/api/inventory/stock/{product}"))
            .await["available"]
            .as_i64()
            .expect("a count")
    }

    /// An admin's access token.
    pub(crate) async fn admin(&self) -> String {
        self.shop.admin().await
    }

    /// Runs the shop's audit and asserts it is clean.
    pub(crate) async fn assert_invariants(&self) {
        let report = bazaar::verify::run(&self.config, Duration::ZERO)
            .await
            .expect("the audit runs");
        assert!(report.is_clean(), "{report}");
    }
}

async fn a_checkout_is_confirmed_emailed_and_empties_the_cart(mode: Mode) {
    let scenario = Scenario::start(mode).await;
    let (mug, stock) = scenario.product("enamel-camp-mug").await;
    let (token, card) = scenario.shopper("ada@example.com", APPROVED, &mug, 2).await;
    let (status, cart) = scenario.send(&token, "GET", "/api/cart", None).await;
    assert_eq!(status, 200);
    let unit = cart["lines"][0]["unit_price"]["amount_minor"]
        .as_i64()
        .expect("a price");
    let (status, placed) = scenario.place(&token, "first-order", &card).await;
    assert_eq!(status, 202, "{placed}");
    assert_eq!(placed["status"], "placed");
    assert_eq!(placed["total"]["amount_minor"], unit * 2);
    let id = placed["id"].as_str().expect("an id");
    let order = scenario
        .wait_for(&token, id, &["confirmed", "cancelled", "rejected"])
        .await;
    assert_eq!(order["status"], "confirmed", "{order:#}");
    // The trace it was placed in, for an admin to follow from the order.
    let trace = order["trace_id"].as_str().unwrap_or_default();
    assert!(
        trace.len() == 32 && trace.bytes().all(|byte| byte.is_ascii_hexdigit()),
        "{order:#}"
    );
    let steps: Vec<&str> = order["timeline"]
        .as_array()
        .expect("a timeline")
        .iter()
        .filter_map(|step| step["event"].as_str())
        .collect();
    for step in [
        "placed",
        "stock_reserved",
        "payment_authorized",
        "stock_committed",
        "payment_captured",
    ] {
        assert!(steps.contains(&step), "{step} missing from {steps:?}");
    }
    assert_eq!(scenario.available(&mug).await, stock - 2);
    let mail = scenario.wait_for_email(&token, "order_confirmed", id).await;
    assert!(
        mail["subject"]
            .as_str()
            .is_some_and(|subject| !subject.is_empty())
    );
    let (_, cart) = scenario.send(&token, "GET", "/api/cart", None).await;
    assert_eq!(cart["lines"], json!([]), "the cart is emptied: {cart}");
    let (status, mine) = scenario.send(&token, "GET", "/api/orders", None).await;
    assert_eq!(status, 200);
    assert_eq!(mine["items"][0]["id"], id);
    // Another customer cannot see it.
    let other = scenario.shop.customer("eve@example.com").await;
    let (status, _) = scenario
        .send(&other, "GET", &format!("/api/orders/{id}"), None)
        .await;
    assert_eq!(status, 404);
    scenario.assert_invariants().await;
}

async fn too_little_stock_rejects_the_order(mode: Mode) {
    let scenario = Scenario::start(mode).await;
    let (mug, stock) = scenario.product("enamel-camp-mug").await;
    let (token, card) = scenario
        .shopper("ada@example.com", APPROVED, &mug, stock + 1)
        .await;
    let (status, placed) = scenario.place(&token, "too-many", &card).await;
    assert_eq!(status, 202, "{placed}");
    let id = placed["id"].as_str().expect("an id");
    let order = scenario
        .wait_for(&token, id, &["rejected", "confirmed", "cancelled"])
        .await;
    assert_eq!(order["status"], "rejected");
    assert_eq!(scenario.available(&mug).await, stock);
    scenario.wait_for_email(&token, "order_cancelled", id).await;
    scenario.assert_invariants().await;
}

async fn a_declined_card_cancels_and_releases_the_stock(mode: Mode) {
    let scenario = Scenario::start(mode).await;
    let (mug, stock) = scenario.product("enamel-camp-mug").await;
    let (token, card) = scenario.shopper("ada@example.com", DECLINED, &mug, 3).await;
    let (_, placed) = scenario.place(&token, "declined", &card).await;
    let id = placed["id"].as_str().expect("an id");
    let order = scenario
        .wait_for(&token, id, &["cancelled", "confirmed"])
        .await;
    assert_eq!(order["status"], "cancelled");
    assert_eq!(order["reason"], "payment_declined");
    assert_eq!(scenario.available(&mug).await, stock);
    scenario.assert_invariants().await;
}

async fn a_transient_processor_error_is_retried_to_confirmation(mode: Mode) {
    let scenario = Scenario::start(mode).await;
    let (mug, _) = scenario.product("enamel-camp-mug").await;
    let (token, card) = scenario
        .shopper("ada@example.com", TRANSIENT, &mug, 1)
        .await;
    scenario.checks_out(&token, "flaky", &card).await;
    scenario.assert_invariants().await;
}

async fn a_held_payment_waits_for_an_admin(mode: Mode) {
    // Anything above 10.00 is held for review.
    let scenario = Scenario::configured(mode, |config| {
        config.payments.fraud.hold_above_minor = 1_000
    })
    .await;
    let admin = scenario.admin().await;
    let (mug, stock) = scenario.product("enamel-camp-mug").await;
    let (ada, ada_card) = scenario.shopper("ada@example.com", APPROVED, &mug, 2).await;
    let (bob, bob_card) = scenario.shopper("bob@example.com", APPROVED, &mug, 3).await;
    let (_, approved) = scenario.place(&ada, "held-1", &ada_card).await;
    let (_, declined) = scenario.place(&bob, "held-2", &bob_card).await;
    let approved = approved["id"].as_str().expect("an id");
    let declined = declined["id"].as_str().expect("an id");
    scenario.wait_for(&ada, approved, &["payment_held"]).await;
    scenario.wait_for(&bob, declined, &["payment_held"]).await;
    let (status, held) = scenario
        .send(&admin, "GET", "/api/orders?status=payment_held", None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(held["items"].as_array().map(Vec::len), Some(2), "{held}");
    // Only an admin decides.
    let path = format!("/api/orders/{approved}/review");
    let (status, _) = scenario
        .send(&ada, "POST", &path, Some(json!({"approve": true})))
        .await;
    assert_eq!(status, 403);
    let (status, _) = scenario
        .send(&admin, "POST", &path, Some(json!({"approve": true})))
        .await;
    assert_eq!(status, 202);
    let path = format!("/api/orders/{declined}/review");
    let (status, _) = scenario
        .send(&admin, "POST", &path, Some(json!({"approve": false})))
        .await;
    assert_eq!(status, 202);
    let (status, _) = scenario
        .send(&admin, "POST", &path, Some(json!({"approve": true})))
        .await;
    assert_eq!(status, 409, "a second decision is refused");
    assert_eq!(
        scenario
            .wait_for(&ada, approved, &["confirmed", "cancelled"])
            .await["status"],
        "confirmed"
    );
    let cancelled = scenario
        .wait_for(&bob, declined, &["confirmed", "cancelled"])
        .await;
    assert_eq!(cancelled["status"], "cancelled");
    assert_eq!(cancelled["reason"], "review_declined");
    assert_eq!(scenario.available(&mug).await, stock - 2);
    scenario
        .wait_for_email(&ada, "order_confirmed", approved)
        .await;
    scenario.assert_invariants().await;
}

async fn an_idempotency_key_places_one_order(mode: Mode) {
    let scenario = Scenario::start(mode).await;
    let (mug, _) = scenario.product("enamel-camp-mug").await;
    let (token, card) = scenario.shopper("ada@example.com", APPROVED, &mug, 1).await;
    let (first, second) = tokio::join!(
        scenario.place(&token, "same-key", &card),
        scenario.place(&token, "same-key", &card)
    );
    assert_eq!((first.0, second.0), (202, 202), "{first:?} {second:?}");
    assert_eq!(first.1["id"], second.1["id"]);
    let (status, problem) = scenario.place(&token, "same-key", "pm_another").await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(problem["type"], "/problems/idempotency-key-reused");
    let id = first.1["id"].as_str().expect("an id");
    scenario.wait_for(&token, id, &["confirmed"]).await;
    let (_, mine) = scenario.send(&token, "GET", "/api/orders", None).await;
    assert_eq!(mine["items"].as_array().map(Vec::len), Some(1));
    scenario.wait_for_email(&token, "order_confirmed", id).await;
    scenario.assert_invariants().await;
}

async fn thirty_two_buyers_of_the_last_unit_make_one_sale(mode: Mode) {
    let scenario = Scenario::start(mode).await;
    let admin = scenario.admin().await;
    let (mug, stock) = scenario.product("enamel-camp-mug").await;
    let path = format!("/api/inventory/stock/{mug}/adjustments");
    let (status, _) = scenario
        .send(&admin, "POST", &path, Some(json!({"delta": 1 - stock})))
        .await;
    assert_eq!(status, 200);
    let mut buyers = Vec::new();
    for n in 0..32 {
        buyers.push(
            scenario
                .shopper(&format!("buyer{n}@example.com"), APPROVED, &mug, 1)
                .await,
        );
    }
    let orders =
        futures_util::future::join_all(buyers.iter().enumerate().map(|(n, (token, card))| {
            let scenario = &scenario;
            async move {
                let (status, placed) = scenario.place(token, &format!("last-unit-{n}"), card).await;
                assert_eq!(status, 202, "{placed}");
                let id = placed["id"].as_str().expect("an id").to_owned();
                scenario
                    .wait_for(token, &id, &["confirmed", "rejected", "cancelled"])
                    .await
            }
        }));
    // The audit, run while the orders are in flight, reports no violation: it judges
    // only what is over.
    let audits = async {
        for _ in 0..10 {
            let report = bazaar::verify::run(&scenario.config, Duration::from_secs(60))
                .await
                .expect("the audit runs");
            assert!(report.is_clean(), "on a live shop: {report}");
        }
    };
    let (orders, ()) = tokio::join!(orders, audits);
    let confirmed = orders
        .iter()
        .filter(|order| order["status"] == "confirmed")
        .count();
    assert_eq!(confirmed, 1, "{orders:#?}");
    assert_eq!(scenario.available(&mug).await, 0);
    let winner = orders
        .iter()
        .position(|order| order["status"] == "confirmed")
        .expect("a winner");
    scenario
        .wait_for_email(
            &buyers[winner].0,
            "order_confirmed",
            orders[winner]["id"].as_str().expect("an id"),
        )
        .await;
    scenario.assert_invariants().await;
}

async fn every_message_delivered_twice_has_one_effect(mode: Mode) {
    let scenario = Scenario::start_with(
        mode,
        |_| {},
        |bus| Arc::new(test_support::duplicating::DuplicatingBus(bus)),
    )
    .await;
    let (mug, stock) = scenario.product("enamel-camp-mug").await;
    let (ada, ada_card) = scenario.shopper("ada@example.com", APPROVED, &mug, 2).await;
    let (bob, bob_card) = scenario.shopper("bob@example.com", DECLINED, &mug, 1).await;
    let (_, confirmed) = scenario.place(&ada, "twice-1", &ada_card).await;
    let (_, cancelled) = scenario.place(&bob, "twice-2", &bob_card).await;
    let confirmed = confirmed["id"].as_str().expect("an id");
    let cancelled = cancelled["id"].as_str().expect("an id");
    assert_eq!(
        scenario
            .wait_for(&ada, confirmed, &["confirmed", "cancelled"])
            .await["status"],
        "confirmed"
    );
    assert_eq!(
        scenario
            .wait_for(&bob, cancelled, &["confirmed", "cancelled"])
            .await["status"],
        "cancelled"
    );
    assert_eq!(scenario.available(&mug).await, stock - 2);
    scenario
        .wait_for_email(&ada, "order_confirmed", confirmed)
        .await;
    let (_, mail) = scenario.send(&ada, "GET", "/api/notifications", None).await;
    let confirmations = mail["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|mail| mail["kind"] == "order_confirmed")
        .count();
    assert_eq!(confirmations, 1);
    scenario.assert_invariants().await;
}

async fn a_hold_that_outlives_the_reservation_voids_and_cancels(mode: Mode) {
    // Every payment is held, and stock is held for two seconds only.
    let scenario = Scenario::configured(mode, |config| {
        config.payments.fraud.hold_above_minor = 0;
        config.orders.reservation_hold_secs = 2;
    })
    .await;
    let (mug, stock) = scenario.product("enamel-camp-mug").await;
    let (token, card) = scenario.shopper("ada@example.com", APPROVED, &mug, 2).await;
    let (_, placed) = scenario.place(&token, "too-slow", &card).await;
    let id = placed["id"].as_str().expect("an id");
    let order = scenario
        .wait_for(&token, id, &["cancelled", "confirmed"])
        .await;
    assert_eq!(order["status"], "cancelled", "{order:#}");
    assert_eq!(order["reason"], "reservation_expired");
    let steps: Vec<&str> = order["timeline"]
        .as_array()
        .expect("a timeline")
        .iter()
        .filter_map(|step| step["event"].as_str())
        .collect();
    assert!(steps.contains(&"payment_held"), "{steps:?}");
    assert!(steps.contains(&"payment_voided"), "{steps:?}");
    assert_eq!(scenario.available(&mug).await, stock);
    scenario.wait_for_email(&token, "order_cancelled", id).await;
    scenario.assert_invariants().await;
}

async fn an_admin_refunds_a_confirmed_order(mode: Mode) {
    let scenario = Scenario::start(mode).await;
    let admin = scenario.admin().await;
    let (mug, _) = scenario.product("enamel-camp-mug").await;
    let (token, card) = scenario.shopper("ada@example.com", APPROVED, &mug, 1).await;
    let (_, placed) = scenario.place(&token, "refund-me", &card).await;
    let id = placed["id"].as_str().expect("an id");
    scenario.wait_for(&token, id, &["confirmed"]).await;
    let path = format!("/api/orders/{id}/refund");
    let (status, _) = scenario.send(&token, "POST", &path, None).await;
    assert_eq!(status, 403, "customers do not refund themselves");
    let (status, _) = scenario.send(&admin, "POST", &path, None).await;
    assert_eq!(status, 202);
    let (status, _) = scenario.send(&admin, "POST", &path, None).await;
    assert_eq!(status, 409, "a second refund is refused");
    let order = scenario.wait_for(&token, id, &["refunded"]).await;
    assert_eq!(order["total"], placed["total"]);
    scenario.wait_for_email(&token, "order_refunded", id).await;
    let (status, payment) = scenario
        .send(&admin, "GET", &format!("/api/payments/orders/{id}"), None)
        .await;
    assert_eq!(status, 200, "{payment}");
    scenario.assert_invariants().await;
}

async fn a_customer_cancels_before_payment(mode: Mode) {
    // The payment waits for review, so the customer has time to change their mind.
    let scenario =
        Scenario::configured(mode, |config| config.payments.fraud.hold_above_minor = 0).await;
    let (mug, stock) = scenario.product("enamel-camp-mug").await;
    let (token, card) = scenario.shopper("ada@example.com", APPROVED, &mug, 1).await;
    let (_, placed) = scenario.place(&token, "changed-my-mind", &card).await;
    let id = placed["id"].as_str().expect("an id");
    scenario.wait_for(&token, id, &["payment_held"]).await;
    let other = scenario.shop.customer("eve@example.com").await;
    let path = format!("/api/orders/{id}/cancel");
    let (status, _) = scenario.send(&other, "POST", &path, None).await;
    assert_eq!(status, 404, "only the customer may cancel");
    let (status, _) = scenario.send(&token, "POST", &path, None).await;
    assert_eq!(status, 202);
    let order = scenario.wait_for(&token, id, &["cancelled"]).await;
    assert_eq!(order["reason"], "customer_cancelled");
    assert_eq!(scenario.available(&mug).await, stock);
    let (status, _) = scenario.send(&token, "POST", &path, None).await;
    assert_eq!(status, 409, "an order is cancelled once");
    scenario.assert_invariants().await;
}

/// The card network refuses the capture for good (the authorization lapsed): nothing is
/// charged, the stock sold to the order goes back on sale, the order is cancelled and
/// the customer told; the books agree.
async fn a_refused_capture_returns_the_stock_and_cancels(mode: Mode) {
    let scenario = Scenario::start(mode).await;
    let (mug, stock) = scenario.product("enamel-camp-mug").await;
    let (token, card) = scenario.shopper("ada@example.com", LAPSING, &mug, 2).await;
    let (_, placed) = scenario.place(&token, "lapsed", &card).await;
    let id = placed["id"].as_str().expect("an id");
    let order = scenario
        .wait_for(&token, id, &["cancelled", "confirmed"])
        .await;
    assert_eq!(order["status"], "cancelled", "{order:#}");
    assert_eq!(order["reason"], "payment_failed");
    assert_eq!(scenario.available(&mug).await, stock, "the stock is back");
    scenario.wait_for_email(&token, "order_cancelled", id).await;
    scenario.assert_invariants().await;
}

/// The card network refuses a refund for good: the order ends as `refund_failed`, the
/// money stays captured for an operator to give back, and nothing is retried for ever.
async fn a_refused_refund_ends_the_order_for_an_operator(mode: Mode) {
    let scenario = Scenario::start(mode).await;
    let admin = scenario.admin().await;
    let (mug, _) = scenario.product("enamel-camp-mug").await;
    let (token, card) = scenario
        .shopper("ada@example.com", REFUND_REFUSED, &mug, 1)
        .await;
    let (_, placed) = scenario.place(&token, "no-refund", &card).await;
    let id = placed["id"].as_str().expect("an id");
    scenario.wait_for(&token, id, &["confirmed"]).await;
    // The audit expects the confirmation mailed: wait for it, not for luck.
    scenario.wait_for_email(&token, "order_confirmed", id).await;
    let path = format!("/api/orders/{id}/refund");
    let (status, _) = scenario.send(&admin, "POST", &path, None).await;
    assert_eq!(status, 202);
    let order = scenario.wait_for(&token, id, &["refund_failed"]).await;
    assert_eq!(order["total"], placed["total"]);
    let (status, payment) = scenario
        .send(&admin, "GET", &format!("/api/payments/orders/{id}"), None)
        .await;
    assert_eq!((status, &payment["state"]), (200, &json!("captured")));
    scenario.assert_invariants().await;
}

/// The customer places an order for mugs and a towel set, then, while it waits for
/// review, takes the mugs out of the cart and puts one back: the confirmation takes out
/// what the order bought (the towels), and the mug added afterwards stays in the cart
/// for the next order.
async fn a_line_added_again_while_the_order_is_in_flight_stays(mode: Mode) {
    let scenario =
        Scenario::configured(mode, |config| config.payments.fraud.hold_above_minor = 0).await;
    let admin = scenario.admin().await;
    let (mug, _) = scenario.product("enamel-camp-mug").await;
    let (towels, _) = scenario.product("linen-tea-towel-set").await;
    let (token, card) = scenario.shopper("ada@example.com", APPROVED, &mug, 2).await;
    let towel_line = json!({"product_id": towels, "quantity": 1});
    let (status, _) = scenario
        .send(&token, "POST", "/api/cart/items", Some(towel_line))
        .await;
    assert_eq!(status, 200);
    let (_, placed) = scenario.place(&token, "in-flight", &card).await;
    let id = placed["id"].as_str().expect("an id");
    scenario.wait_for(&token, id, &["payment_held"]).await;
    let line = format!("/api/cart/items/{mug}");
    let (status, _) = scenario.send(&token, "DELETE", &line, None).await;
    assert_eq!(status, 200);
    let again = json!({"product_id": mug, "quantity": 1});
    let (status, _) = scenario
        .send(&token, "POST", "/api/cart/items", Some(again))
        .await;
    assert_eq!(status, 200);
    let review = format!("/api/orders/{id}/review");
    let (status, _) = scenario
        .send(&admin, "POST", &review, Some(json!({"approve": true})))
        .await;
    assert_eq!(status, 202);
    scenario.wait_for(&token, id, &["confirmed"]).await;
    // The towels leaving the cart show the confirmation has reached it.
    let left = "the towels leaving the cart";
    let cart = test_support::eventually(left, Duration::from_secs(10), || async {
        let cart = scenario.send(&token, "GET", "/api/cart", None).await.1;
        if cart["lines"].as_array().map(Vec::len) == Some(1) {
            Ok(cart)
        } else {
            Err(cart)
        }
    })
    .await;
    assert_eq!(cart["lines"][0]["product_id"], json!(mug), "{cart}");
    assert_eq!(cart["lines"][0]["quantity"], 1, "{cart}");
    scenario.wait_for_email(&token, "order_confirmed", id).await;
    scenario.assert_invariants().await;
}
