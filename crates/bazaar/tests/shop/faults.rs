//! The fault flags, switched in a running shop: each shows its effect and the recovery
//! the shop is built to make, and ends with `bazaar verify` clean.

use std::path::Path;

use std::time::Duration;

use cart::store::faulty::STORE_DOWN;
use notifications::mailer::faulty::MAIL_DOWN;
use payments::processor::faults::{DECLINE_ALL, FAILURE_RATE};
use platform::bus::faulty::OUTAGE;
use platform::db::{Database, PoolSettings};
use platform::faults::UNAVAILABLE;
use serde_json::{Value, json};

use crate::checkout::{APPROVED, Mode, Scenario, on_both_modes};

on_both_modes!(
    declining_every_card_cancels_and_releases_the_stock,
    a_processor_outage_ends_orders_safely_and_lifting_it_heals,
    a_broker_outage_fills_the_outbox_and_it_drains_when_the_broker_returns,
    a_service_taken_down_opens_the_gateways_breaker_until_it_returns,
    slow_dependencies_slow_the_checkout_down_but_it_confirms,
    a_failing_share_of_the_catalog_is_retried_by_the_gateway,
    emails_wait_while_the_mail_relay_is_down_and_go_out_once,
    an_unreachable_cart_store_answers_503_and_the_cart_survives,
    a_slow_database_slows_checkouts_and_a_stalled_one_answers_503,
);

/// Writes the shop's flag file in `data_dir`: every flag the shop knows, with `set`'s
/// flags given a variant (by name) or a targeting rule (as JSON). Written whole and
/// renamed into place, as an editor or a ConfigMap update would, so the shop never
/// reads half a file.
pub(crate) fn write_flags(data_dir: &Path, set: &[(&str, Value)]) {
    let mut flags: Value =
        serde_json::from_str(bazaar::flags::DEFAULT_FLAGS).expect("the default flags are JSON");
    for (name, setting) in set {
        let flag = &mut flags["flags"][name];
        assert!(flag.is_object(), "the shop knows no flag {name}");
        match setting {
            Value::String(_) => flag["defaultVariant"] = setting.clone(),
            rule => flag["targeting"] = rule.clone(),
        }
    }
    std::fs::create_dir_all(data_dir).expect("a data folder");
    platform::flags::write_whole(&data_dir.join("flags.json"), flags.to_string().as_bytes())
        .expect("written");
}

async fn declining_every_card_cancels_and_releases_the_stock(mode: Mode) {
    let scenario = Scenario::configured(mode, |config| {
        write_flags(&config.data_dir, &[(DECLINE_ALL, json!("on"))])
    })
    .await;
    let (mug, stock) = scenario.product("enamel-camp-mug").await;
    // A card the processor would approve: only the flag declines it.
    let (token, card) = scenario.shopper("ada@example.com", APPROVED, &mug, 2).await;
    let (_, placed) = scenario.place(&token, "declined-by-flag", &card).await;
    let id = placed["id"].as_str().expect("an id");
    let order = scenario
        .wait_for(&token, id, &["cancelled", "confirmed"])
        .await;
    assert_eq!(order["status"], "cancelled", "{order:#}");
    assert_eq!(order["reason"], "payment_declined");
    assert_eq!(scenario.available(&mug).await, stock);
    scenario.wait_for_email(&token, "order_cancelled", id).await;
    scenario.assert_invariants().await;
}

async fn a_processor_outage_ends_orders_safely_and_lifting_it_heals(mode: Mode) {
    // Every authorization fails (cards can still be saved); the saga re-sends once
    // after two seconds, then gives up and compensates.
    let outage = json!({"if": [{"==": [{"var": "operation"}, "authorize"]}, "all", "off"]});
    let scenario = Scenario::configured(mode, |config| {
        write_flags(&config.data_dir, &[(FAILURE_RATE, outage)]);
        config.orders.deadlines.max_step_ms = 2_000;
        config.orders.deadlines.max_attempts = 1;
    })
    .await;
    let (mug, stock) = scenario.product("enamel-camp-mug").await;
    let (token, card) = scenario.shopper("ada@example.com", APPROVED, &mug, 1).await;
    let (_, placed) = scenario.place(&token, "during-the-outage", &card).await;
    let id = placed["id"].as_str().expect("an id");
    let order = scenario
        .wait_for(&token, id, &["cancelled", "confirmed"])
        .await;
    assert_eq!(order["status"], "cancelled", "{order:#}");
    assert_eq!(order["reason"], "deadline_missed");
    assert_eq!(scenario.available(&mug).await, stock);

    // The outage ends, and a new order confirms.
    switch(&scenario, &[]);
    let (token, card) = scenario.shopper("bo@example.com", APPROVED, &mug, 1).await;
    scenario.checks_out(&token, "after-the-outage", &card).await;
    assert_eq!(scenario.available(&mug).await, stock - 1);
    scenario.assert_invariants().await;
}

/// Writes the flag file and has the shop read it now, as its watcher would within a
/// second.
fn switch(scenario: &Scenario, set: &[(&str, Value)]) {
    write_flags(&scenario.config.data_dir, set);
    // The shop's own watcher may have read it already: either way it is in use now.
    scenario
        .shop
        .flags()
        .reload("test")
        .expect("the flag file loads");
}

/// The databases of the services whose outboxes a checkout fills, by name.
async fn outboxes(scenario: &Scenario) -> Vec<(&'static str, Database)> {
    let config = scenario.config.clone().resolved();
    let mut databases = Vec::new();
    for (service, url) in [
        ("orders", config.orders.database_url),
        ("inventory", config.inventory.database_url),
        ("payments", config.payments.database_url),
    ] {
        let url = url.expect("a database");
        let database = Database::connect(&url, PoolSettings::default())
            .await
            .expect("the database opens");
        databases.push((service, database));
    }
    databases
}

/// How many messages wait in the outbox of `database`.
async fn backlog(database: &Database) -> i64 {
    let (rows,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM outbox")
        .fetch_one(database.pool())
        .await
        .expect("the outbox is read");
    rows
}

async fn a_broker_outage_fills_the_outbox_and_it_drains_when_the_broker_returns(mode: Mode) {
    let scenario = Scenario::start(mode).await;
    let (mug, stock) = scenario.product("enamel-camp-mug").await;
    let (token, card) = scenario.shopper("ada@example.com", APPROVED, &mug, 1).await;
    let outboxes = outboxes(&scenario).await;

    switch(&scenario, &[(OUTAGE, json!("on"))]);
    let (status, placed) = scenario.place(&token, "during-the-outage", &card).await;
    assert_eq!(
        status, 202,
        "the order is taken while the broker is away: {placed}"
    );
    let id = placed["id"].as_str().expect("an id");
    let orders = &outboxes[0].1;
    test_support::eventually(
        "the order's messages wait in the outbox",
        Duration::from_secs(10),
        || async {
            match backlog(orders).await {
                0 => Err("an empty outbox"),
                _ => Ok(()),
            }
        },
    )
    .await;
    let (_, order) = scenario
        .send(&token, "GET", &format!("/api/orders/{id}"), None)
        .await;
    assert_eq!(
        order["status"], "placed",
        "nothing moves without the broker: {order:#}"
    );

    switch(&scenario, &[]);
    let order = scenario
        .wait_for(&token, id, &["confirmed", "cancelled"])
        .await;
    assert_eq!(order["status"], "confirmed", "{order:#}");
    scenario.wait_for_email(&token, "order_confirmed", id).await;
    test_support::eventually("every outbox drains", Duration::from_secs(30), || async {
        for (service, database) in &outboxes {
            let waiting = backlog(database).await;
            if waiting > 0 {
                return Err(format!("{waiting} messages in {service}'s outbox"));
            }
        }
        Ok(())
    })
    .await;
    assert_eq!(scenario.available(&mug).await, stock - 1);
    scenario.assert_invariants().await;
}

async fn a_service_taken_down_opens_the_gateways_breaker_until_it_returns(mode: Mode) {
    let scenario = Scenario::configured(mode, |config| config.gateway.breaker.open_ms = 500).await;
    let products = "/api/catalog/products";
    assert_eq!(scenario.shop.get(products).await.status(), 200);

    switch(&scenario, &[(UNAVAILABLE, json!("catalog"))]);
    let answer = scenario.shop.get(products).await;
    assert_eq!(answer.status(), 503);
    let problem: Value = answer.json().await.expect("a problem");
    assert_eq!(
        problem["type"], "/problems/service-unavailable",
        "{problem}"
    );
    // Consecutive failures open the breaker: the gateway answers at once, without
    // asking the catalog.
    let mut opened = None;
    for _ in 0..20 {
        let problem: Value = scenario
            .shop
            .get(products)
            .await
            .json()
            .await
            .expect("a problem");
        if problem["type"] == "/problems/upstream-circuit-open" {
            opened = Some(problem);
            break;
        }
        assert_eq!(
            problem["type"], "/problems/service-unavailable",
            "{problem}"
        );
    }
    let opened = opened.expect("the breaker opens");
    assert!(
        opened["detail"]
            .as_str()
            .is_some_and(|detail| detail.contains("catalog")),
        "{opened}"
    );

    // Back up: a trial request after the cool-down closes the breaker.
    switch(&scenario, &[]);
    test_support::eventually(
        "the catalog answers through the gateway again",
        Duration::from_secs(10),
        || async {
            match scenario.shop.get(products).await.status().as_u16() {
                200 => Ok(()),
                status => Err(status),
            }
        },
    )
    .await;
    scenario.assert_invariants().await;
}

async fn emails_wait_while_the_mail_relay_is_down_and_go_out_once(mode: Mode) {
    let scenario = Scenario::start(mode).await;
    let (mug, _) = scenario.product("enamel-camp-mug").await;
    let (token, card) = scenario.shopper("ada@example.com", APPROVED, &mug, 1).await;

    switch(&scenario, &[(MAIL_DOWN, json!("on"))]);
    let (_, placed) = scenario.place(&token, "while-mail-is-down", &card).await;
    let id = placed["id"].as_str().expect("an id");
    let order = scenario
        .wait_for(&token, id, &["confirmed", "cancelled"])
        .await;
    assert_eq!(
        order["status"], "confirmed",
        "the checkout does not wait for mail: {order:#}"
    );
    let confirmations = || async {
        let (status, page) = scenario
            .send(&token, "GET", "/api/notifications", None)
            .await;
        assert_eq!(status, 200, "{page}");
        page["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|mail| mail["kind"] == "order_confirmed")
            .map(|mail| mail["status"].as_str().unwrap_or_default().to_owned())
            .collect::<Vec<_>>()
    };
    let waiting = test_support::eventually(
        "the confirmation is queued",
        Duration::from_secs(10),
        || async {
            match confirmations().await.as_slice() {
                [status] => Ok(status.clone()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
    assert_eq!(
        waiting, "pending",
        "nothing is sent while the relay is down"
    );

    switch(&scenario, &[]);
    scenario.wait_for_email(&token, "order_confirmed", id).await;
    assert_eq!(confirmations().await, ["sent"], "sent once");
    scenario.assert_invariants().await;
}

async fn an_unreachable_cart_store_answers_503_and_the_cart_survives(mode: Mode) {
    let scenario = Scenario::start(mode).await;
    let (mug, _) = scenario.product("enamel-camp-mug").await;
    let (token, card) = scenario.shopper("ada@example.com", APPROVED, &mug, 2).await;

    switch(&scenario, &[(STORE_DOWN, json!("on"))]);
    let (status, problem) = scenario.send(&token, "GET", "/api/cart", None).await;
    assert_eq!(status, 503, "{problem}");
    assert_eq!(problem["type"], "/problems/unavailable", "{problem}");
    let more = json!({"product_id": mug, "quantity": 1});
    let (status, _) = scenario
        .send(&token, "POST", "/api/cart/items", Some(more))
        .await;
    assert_eq!(status, 503);

    switch(&scenario, &[]);
    let (status, cart) = scenario.send(&token, "GET", "/api/cart", None).await;
    assert_eq!(status, 200, "{cart}");
    assert_eq!(
        cart["lines"][0]["quantity"], 2,
        "the cart as it was: {cart}"
    );
    scenario
        .checks_out(&token, "after-the-store-came-back", &card)
        .await;
    scenario.assert_invariants().await;
}

/// Inventory, the card processor and the broker slowed down at once: adding to the
/// cart waits for inventory's answer, and the checkout still confirms.
async fn slow_dependencies_slow_the_checkout_down_but_it_confirms(mode: Mode) {
    let scenario = Scenario::start(mode).await;
    let (mug, stock) = scenario.product("enamel-camp-mug").await;
    let (token, card) = scenario.shopper("ada@example.com", APPROVED, &mug, 1).await;
    switch(
        &scenario,
        &[
            ("inventory-delay-ms", json!("slow")),
            (payments::processor::faults::DELAY_MS, json!("slow")),
            (platform::bus::faulty::DELAY_MS, json!("slow")),
        ],
    );
    let started = std::time::Instant::now();
    let more = json!({"product_id": mug, "quantity": 1});
    let (status, cart) = scenario
        .send(&token, "POST", "/api/cart/items", Some(more))
        .await;
    assert_eq!(status, 200, "{cart}");
    // The cart asks inventory what is available; inventory waits 1.5 s first. A sleep
    // never ends early, so this lower bound cannot flake.
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
    scenario.checks_out(&token, "slowly", &card).await;
    assert_eq!(scenario.available(&mug).await, stock - 2);
    switch(&scenario, &[]);
    scenario.assert_invariants().await;
}

/// The orders database slowed: checkouts wait for it and confirm. Stalled past the
/// pool's acquire timeout: placing an order answers 503 and changes nothing, and once
/// it answers again the order goes through.
async fn a_slow_database_slows_checkouts_and_a_stalled_one_answers_503(mode: Mode) {
    let scenario = Scenario::start(mode).await;
    let (mug, stock) = scenario.product("enamel-camp-mug").await;
    let (token, card) = scenario.shopper("ada@example.com", APPROVED, &mug, 1).await;

    switch(&scenario, &[(ORDERS_DB_DELAY, json!("slow"))]);
    let started = std::time::Instant::now();
    let (status, placed) = scenario.place(&token, "slowly", &card).await;
    assert_eq!(status, 202, "{placed}");
    // Placing takes a connection from the slowed pool, which waits 200 ms first. A
    // sleep never ends early, so this lower bound cannot flake.
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "{:?}",
        started.elapsed()
    );
    let id = placed["id"].as_str().expect("an id");
    let order = scenario
        .wait_for(&token, id, &["cancelled", "confirmed"])
        .await;
    assert_eq!(order["status"], "confirmed", "{order:#}");
    scenario.wait_for_email(&token, "order_confirmed", id).await;

    let (token, card) = scenario.shopper("bo@example.com", APPROVED, &mug, 1).await;
    switch(&scenario, &[(ORDERS_DB_DELAY, json!("stalled"))]);
    let (status, problem) = scenario.place(&token, "stalled", &card).await;
    assert_eq!(status, 503, "{problem}");
    assert_eq!(problem["type"], "/problems/unavailable", "{problem}");
    assert_eq!(
        scenario.available(&mug).await,
        stock - 1,
        "nothing reserved"
    );

    switch(&scenario, &[]);
    let (status, placed) = scenario.place(&token, "stalled", &card).await;
    assert_eq!(status, 202, "the same key, now taken: {placed}");
    let id = placed["id"].as_str().expect("an id");
    let order = scenario
        .wait_for(&token, id, &["cancelled", "confirmed"])
        .await;
    assert_eq!(order["status"], "confirmed", "{order:#}");
    assert_eq!(scenario.available(&mug).await, stock - 2);
    scenario.wait_for_email(&token, "order_confirmed", id).await;
    scenario.assert_invariants().await;
}

/// The flag that slows the orders database.
const ORDERS_DB_DELAY: &str = "orders-db-delay-ms";

/// With a share of the catalog's requests failing, the gateway retries reads on
/// another attempt and browsing goes on; the failures are the catalog's own in its
/// metrics.
async fn a_failing_share_of_the_catalog_is_retried_by_the_gateway(mode: Mode) {
    // Five failed attempts in a row would open the breaker now and then, and the retry
    // budget is a share of recent requests; this test is about retries, so the breaker
    // waits for many more failures and every failed read may be tried twice more.
    let scenario = Scenario::configured(mode, |config| {
        config.gateway.breaker.failures = 1_000;
        config.gateway.retry.attempts = 2;
        config.gateway.retry.budget_percent = 200;
    })
    .await;
    switch(&scenario, &[("catalog-error-rate", json!("some"))]);
    let mut answered = 0;
    for _ in 0..40 {
        if scenario
            .shop
            .get("/api/catalog/products?limit=1")
            .await
            .status()
            == 200
        {
            answered += 1;
        }
    }
    // 30 % of attempts fail; a read fails only if three attempts do (2.7 %).
    assert!(answered >= 34, "{answered} of 40 reads answered");
    let catalog = scenario
        .shop
        .address_of(bazaar::ServiceName::Catalog)
        .expect("the catalog's address");
    let metrics = reqwest::get(format!("http://{catalog}/metrics"))
        .await
        .expect("the catalog answers")
        .text()
        .await
        .expect("metrics");
    assert!(
        metrics
            .lines()
            .any(|line| line.starts_with("injected_faults_total{")
                && line.contains("service=\"catalog\"")
                && line.contains("fault=\"error-rate\"")),
        "{metrics}"
    );
    switch(&scenario, &[]);
    scenario.assert_invariants().await;
}

#[test]
fn the_default_flag_file_defines_every_flag_off() {
    use payments::processor::faults::DELAY_MS;
    use platform::flags::{EvaluationContext, FlagSet, Flags};

    let set = FlagSet::parse(bazaar::flags::DEFAULT_FLAGS).expect("a valid definition");
    let mut known: Vec<&str> = set.keys().collect();
    known.sort_unstable();
    assert_eq!(
        known,
        [
            OUTAGE,
            platform::bus::faulty::DELAY_MS,
            STORE_DOWN,
            "catalog-error-rate",
            "inventory-delay-ms",
            MAIL_DOWN,
            ORDERS_DB_DELAY,
            DECLINE_ALL,
            DELAY_MS,
            FAILURE_RATE,
            UNAVAILABLE,
            storefront::pages::checkout::EXPRESS_CHECKOUT,
        ]
    );
    let flags = Flags::fixed(set);
    let anyone = EvaluationContext::new().targeting_key("order-1");
    assert!(!flags.boolean(DECLINE_ALL, &anyone, true));
    assert!(flags.number(DELAY_MS, &anyone, 1.0).abs() < f64::EPSILON);
    assert!(flags.number(FAILURE_RATE, &anyone, 1.0).abs() < f64::EPSILON);
    assert!(!flags.boolean(OUTAGE, &anyone, true));
    assert_eq!(flags.string(UNAVAILABLE, &anyone, "catalog"), "");
    let set = flags.current();
    assert!(set.keys().all(|key| set.is_off(key)), "every fault is off");
    assert!(
        flags
            .number(platform::bus::faulty::DELAY_MS, &anyone, 1.0)
            .abs()
            < f64::EPSILON
    );
}
