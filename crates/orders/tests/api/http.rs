//! The REST API over real HTTP, with the real catalog, inventory, cart and payments
//! answering it and the saga running in every service's workers.

use reqwest::Method;
use serde_json::{Value, json};
use test_support::Engine;
use test_support::security::{assert_corpus_refused, assert_hidden_from_others, attack_corpus};

use test_support::assert_problem;

use crate::helpers::{TestShop, customer_id};

test_support::on_both_engines!(
    placing_needs_a_key_a_cart_and_a_payment_method_of_ones_own,
    an_order_is_confirmed_then_refunded_by_an_admin,
    the_payment_method_is_recorded_as_it_was_checked,
    a_customer_lists_only_their_own_orders_page_by_page,
    another_customer_can_neither_see_nor_cancel_an_order,
    forged_and_broken_tokens_are_refused,
    the_openapi_document_lists_every_path,
    an_order_that_costs_nothing_is_refused_before_anything_is_reserved,
    an_admin_counts_the_orders_by_status,
);

/// A product priced 0 (the catalog allows it) makes an order no card can pay: it is
/// refused when placed, rather than reserving stock and then always being declined.
async fn an_order_that_costs_nothing_is_refused_before_anything_is_reserved(engine: Engine) {
    let shop = TestShop::spawn(engine).await;
    let alice = shop.shopper("alice").await;
    let product = shop.product().await;
    let repriced = shop
        .client
        .patch(format!("http://{}/products/{product}", shop.catalog))
        .bearer_auth(shop.issuer.admin())
        .json(&json!({"price": {"amount_minor": 0, "currency": "EUR"}}))
        .send()
        .await
        .expect("the catalog answers");
    assert_eq!(repriced.status().as_u16(), 200);
    shop.add_to_cart(&alice.token, &product).await;
    let (status, _, problem) = shop.place(&alice.token, "free", &alice.card).await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(problem["type"], "/problems/free-order");
    let (_, orders) = shop.get("/", &alice.token).await;
    assert_eq!(orders["items"], json!([]), "no order was placed");
}

async fn placing_needs_a_key_a_cart_and_a_payment_method_of_ones_own(engine: Engine) {
    let shop = TestShop::spawn(engine).await;
    let alice = shop.shopper("alice").await;
    let bob = shop.shopper("bob").await;
    let body = json!({ "payment_method": alice.card });

    let (status, _, problem) = shop
        .send(Method::POST, "/", &alice.token, None, Some(body.clone()))
        .await;
    assert_problem(status, &problem, 400, "Idempotency-Key", "no key");
    let (status, _, problem) = shop.place(&alice.token, "", &alice.card).await;
    assert_problem(status, &problem, 400, "Idempotency-Key", "an empty key");
    let long = "k".repeat(256);
    let (status, _, problem) = shop.place(&alice.token, &long, &alice.card).await;
    assert_problem(status, &problem, 400, "Idempotency-Key", "a long key");

    let (status, _, problem) = shop.place(&alice.token, "key-1", &alice.card).await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(problem["type"], "/problems/empty-cart");

    let product = shop.product().await;
    shop.add_to_cart(&alice.token, &product).await;
    for unknown in ["pm_no_such_card", bob.card.as_str()] {
        let (status, _, problem) = shop.place(&alice.token, "key-2", unknown).await;
        assert_eq!(status, 422, "paying with {unknown}: {problem}");
        assert_eq!(problem["type"], "/problems/unknown-payment-method");
    }
    let (status, _, problem) = shop.place(&alice.token, "key-3", "  ").await;
    assert_problem(status, &problem, 400, "payment_method", "a blank method");
    for bad in [
        json!({}),
        json!({ "payment_method": 42 }),
        json!({ "payment_method": alice.card, "total": 1 }),
    ] {
        let (status, _, problem) = shop
            .send(Method::POST, "/", &alice.token, Some("key-4"), Some(bad))
            .await;
        assert_eq!(status, 400, "{problem}");
        assert_eq!(problem["status"], 400);
    }
    let anonymous = shop
        .client
        .post(shop.url("/"))
        .header("Idempotency-Key", "key-5")
        .json(&body)
        .send()
        .await
        .expect("answers");
    assert_eq!(anonymous.status().as_u16(), 401);

    // Nothing was placed by any of it.
    let (status, page) = shop.get("/", &alice.token).await;
    assert_eq!(status, 200);
    assert_eq!(page["items"], json!([]), "{page}");
}

async fn an_order_is_confirmed_then_refunded_by_an_admin(engine: Engine) {
    let shop = TestShop::spawn(engine).await;
    let alice = shop.shopper("alice").await;
    let product = shop.product().await;
    shop.add_to_cart(&alice.token, &product).await;

    let (status, headers, placed) = shop.place(&alice.token, "key-1", &alice.card).await;
    assert_eq!(status, 202, "{placed}");
    let id = placed["id"].as_str().expect("an id").to_owned();
    assert_eq!(headers["location"], format!("/api/orders/{id}").as_str());
    assert_eq!(placed["status"], "placed");
    assert_eq!(placed["customer_id"], customer_id("alice").as_str());
    assert_eq!(placed["lines"][0]["product_id"], product.as_str());
    assert_eq!(placed["lines"][0]["quantity"], 1);

    // A retry with the same key and body is the same order, whatever it became.
    let (status, headers, again) = shop.place(&alice.token, "key-1", &alice.card).await;
    assert_eq!(status, 202, "{again}");
    assert_eq!(again["id"], id.as_str());
    assert_eq!(headers["location"], format!("/api/orders/{id}").as_str());
    let (status, _, reused) = shop.place(&alice.token, "key-1", "pm_another").await;
    assert_eq!(status, 422, "{reused}");
    assert_eq!(reused["type"], "/problems/idempotency-key-reused");

    let order = shop.wait_for_status(&alice.token, &id, "confirmed").await;
    let events: Vec<&str> = order["timeline"]
        .as_array()
        .expect("a timeline")
        .iter()
        .map(|entry| entry["event"].as_str().expect("an event"))
        .collect();
    assert_eq!(events.first(), Some(&"placed"));
    assert_eq!(events.last(), Some(&"payment_captured"));
    for step in ["stock_reserved", "payment_authorized", "stock_committed"] {
        assert!(events.contains(&step), "{step} missing from {events:?}");
    }
    // The cart hears of the confirmation and lets go of what was bought.
    shop.wait_for_empty_cart(&alice.token).await;

    let path = format!("/{id}/cancel");
    let (status, _, problem) = shop
        .send(Method::POST, &path, &alice.token, None, None)
        .await;
    assert_eq!(status, 409, "cancelling a confirmed order: {problem}");
    assert!(
        problem["detail"]
            .as_str()
            .is_some_and(|detail| detail.contains("confirmed")),
        "{problem}"
    );

    for (path, body) in [
        (format!("/{id}/refund"), None),
        (format!("/{id}/review"), Some(json!({ "approve": true }))),
    ] {
        let (status, _, problem) = shop
            .send(Method::POST, &path, &alice.token, None, body)
            .await;
        assert_eq!(status, 403, "a customer at {path}: {problem}");
    }
    let admin = shop.issuer.admin();
    let review = Some(json!({ "approve": true }));
    let (status, _, problem) = shop
        .send(Method::POST, &format!("/{id}/review"), &admin, None, review)
        .await;
    assert_eq!(
        status, 409,
        "reviewing a payment that is not held: {problem}"
    );

    let (status, _, refunding) = shop
        .send(Method::POST, &format!("/{id}/refund"), &admin, None, None)
        .await;
    assert_eq!(status, 202, "{refunding}");
    assert_eq!(refunding["status"], "refunding");
    let refunded = shop.wait_for_status(&alice.token, &id, "refunded").await;
    let last = refunded["timeline"]
        .as_array()
        .and_then(|timeline| timeline.last())
        .expect("a timeline");
    assert_eq!(last["event"], "payment_refunded");
    let (status, _, problem) = shop
        .send(Method::POST, &format!("/{id}/refund"), &admin, None, None)
        .await;
    assert_eq!(status, 409, "refunding twice: {problem}");

    // Payments agrees: the money went back.
    let payment: Value = shop
        .client
        .get(format!("http://{}/orders/{id}", shop.payments))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("payments answers")
        .json()
        .await
        .expect("a payment");
    assert_eq!(payment["state"], "refunded", "{payment}");
    assert_eq!(payment["refunded"], payment["captured"], "{payment}");
    assert_eq!(payment["captured"], refunded["total"], "{payment}");
}

async fn the_payment_method_is_recorded_as_it_was_checked(engine: Engine) {
    let shop = TestShop::spawn(engine).await;
    let alice = shop.shopper("alice").await;
    let product = shop.product().await;
    shop.add_to_cart(&alice.token, &product).await;

    // The token is checked with payments trimmed; the order must carry that same
    // token, or payments would not know the one the saga authorizes with.
    let padded = format!(" {} ", alice.card);
    let (status, _, placed) = shop.place(&alice.token, "key-1", &padded).await;
    assert_eq!(status, 202, "{placed}");
    let id = placed["id"].as_str().expect("an id").to_owned();
    let order = shop.wait_for_status(&alice.token, &id, "confirmed").await;
    assert!(order.get("reason").is_none(), "{order}");

    // The request is the token, so a retry that spells it without the spaces is
    // the same request.
    let (status, _, again) = shop.place(&alice.token, "key-1", &alice.card).await;
    assert_eq!(status, 202, "{again}");
    assert_eq!(again["id"], id.as_str());
}

async fn a_customer_lists_only_their_own_orders_page_by_page(engine: Engine) {
    let shop = TestShop::spawn(engine).await;
    let alice = shop.shopper("alice").await;
    let bob = shop.shopper("bob").await;
    let product = shop.product().await;
    let mut mine = Vec::new();
    for _ in 0..3 {
        mine.push(shop.confirmed_order(&alice, &product).await);
    }
    let theirs = shop.confirmed_order(&bob, &product).await;
    // Newest first: ids are time-ordered.
    mine.reverse();

    let (status, first) = shop.get("/?limit=2", &alice.token).await;
    assert_eq!(status, 200, "{first}");
    let cursor = first["next_cursor"].as_str().expect("a next page");
    let (status, second) = shop
        .get(&format!("/?limit=2&cursor={cursor}"), &alice.token)
        .await;
    assert_eq!(status, 200, "{second}");
    assert!(second.get("next_cursor").is_none(), "{second}");
    let listed: Vec<&str> = [&first, &second]
        .iter()
        .flat_map(|page| page["items"].as_array().expect("items"))
        .map(|order| order["id"].as_str().expect("an id"))
        .collect();
    assert_eq!(listed, mine, "alice's orders, newest first, once each");

    let (_, confirmed) = shop.get("/?status=confirmed", &alice.token).await;
    assert_eq!(confirmed["items"].as_array().map(Vec::len), Some(3));
    let (_, refunded) = shop.get("/?status=refunded", &alice.token).await;
    assert_eq!(refunded["items"], json!([]));
    let (_, bobs) = shop.get("/", &bob.token).await;
    let ids: Vec<&str> = bobs["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|order| order["id"].as_str().expect("an id"))
        .collect();
    assert_eq!(ids, [theirs.as_str()]);
    let (_, everyone) = shop.get("/", &shop.issuer.admin()).await;
    assert_eq!(
        everyone["items"].as_array().map(Vec::len),
        Some(4),
        "an admin lists every customer's orders"
    );
    let (_, admins_own) = shop.get("/?mine=true", &shop.issuer.admin()).await;
    assert_eq!(
        admins_own["items"],
        json!([]),
        "an admin asking for their own orders sees only theirs"
    );
    let (_, alices_own) = shop.get("/?mine=true", &alice.token).await;
    assert_eq!(alices_own["items"].as_array().map(Vec::len), Some(3));

    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=ten", "limit"),
        ("limit=-1", "limit"),
        ("status=shipped", "status"),
        ("status=", "status"),
        ("cursor=not-a-cursor", "cursor"),
        ("cursor=%27%20OR%201%3D1--", "cursor"),
    ] {
        let (status, problem) = shop.get(&format!("/?{query}"), &alice.token).await;
        assert_problem(status, &problem, 400, field, query);
    }
    let (status, problem) = shop.get("/?colour=red", &alice.token).await;
    assert_eq!(status, 400, "an unknown parameter: {problem}");
}

async fn another_customer_can_neither_see_nor_cancel_an_order(engine: Engine) {
    let shop = TestShop::spawn(engine).await;
    let alice = shop.shopper("alice").await;
    let mallory = shop.issuer.customer("mallory");
    let product = shop.product().await;
    shop.add_to_cart(&alice.token, &product).await;
    let id = shop.place_accepted(&alice).await;

    assert_hidden_from_others(
        &shop.client,
        &shop.url(&format!("/{id}")),
        &alice.token,
        &mallory,
    )
    .await;
    let (status, _, problem) = shop
        .send(Method::POST, &format!("/{id}/cancel"), &mallory, None, None)
        .await;
    assert_eq!(status, 404, "another customer cancelling: {problem}");
    assert!(
        !problem.to_string().contains("alice"),
        "the refusal leaks the owner: {problem}"
    );
    // Mallory's attempt changed nothing: the order goes on to be confirmed.
    let order = shop.wait_for_status(&alice.token, &id, "confirmed").await;
    let events = order["timeline"].as_array().expect("a timeline");
    assert!(
        events
            .iter()
            .all(|entry| entry["event"] != "cancellation_started"),
        "{order}"
    );
    // An admin may read it, as support does.
    let (status, _) = shop.get(&format!("/{id}"), &shop.issuer.admin()).await;
    assert_eq!(status, 200);

    // An id that is no order answers alike, whoever asks; one that is no id is a 400.
    let unknown = uuid::Uuid::now_v7();
    let (status, _) = shop.get(&format!("/{unknown}"), &alice.token).await;
    assert_eq!(status, 404);
    let (status, _, _) = shop
        .send(
            Method::POST,
            &format!("/{unknown}/cancel"),
            &alice.token,
            None,
            None,
        )
        .await;
    assert_eq!(status, 404);
    for path in ["/not-an-id", "/not-an-id/cancel"] {
        let method = if path.ends_with("cancel") {
            Method::POST
        } else {
            Method::GET
        };
        let (status, _, problem) = shop.send(method, path, &alice.token, None, None).await;
        assert_problem(status, &problem, 400, "id", path);
    }
}

async fn forged_and_broken_tokens_are_refused(engine: Engine) {
    let shop = TestShop::spawn(engine).await;
    let valid = shop.issuer.customer("alice");
    let corpus = attack_corpus(shop.issuer.key(), test_support::TestIssuer::ISSUER, &valid);
    assert_corpus_refused(|| shop.client.get(shop.url("/")), &valid, &corpus).await;
    let order = format!("/{}", uuid::Uuid::now_v7());
    for (attack, token) in &corpus {
        let (status, _, _) = shop
            .send(Method::POST, &format!("{order}/cancel"), token, None, None)
            .await;
        assert_eq!(status, 401, "{attack} at POST {order}/cancel");
        let (status, _, _) = shop
            .send(
                Method::POST,
                "/",
                token,
                Some("key-1"),
                Some(json!({"payment_method": "pm"})),
            )
            .await;
        assert_eq!(status, 401, "{attack} at POST /");
    }
}

async fn the_openapi_document_lists_every_path(engine: Engine) {
    let shop = TestShop::spawn(engine).await;
    let document: Value = shop
        .client
        .get(shop.url("/openapi.json"))
        .send()
        .await
        .expect("answers")
        .json()
        .await
        .expect("JSON");
    assert!(
        document["openapi"]
            .as_str()
            .is_some_and(|version| version.starts_with("3.1")),
        "{document}"
    );
    let mut paths: Vec<&str> = document["paths"]
        .as_object()
        .expect("paths")
        .keys()
        .map(String::as_str)
        .collect();
    paths.sort_unstable();
    assert_eq!(
        paths,
        [
            "/",
            "/stats",
            "/{id}",
            "/{id}/cancel",
            "/{id}/refund",
            "/{id}/review"
        ]
    );
    for (path, method) in [
        ("/", "post"),
        ("/", "get"),
        ("/stats", "get"),
        ("/{id}", "get"),
        ("/{id}/cancel", "post"),
        ("/{id}/refund", "post"),
        ("/{id}/review", "post"),
    ] {
        assert!(
            document["paths"][path][method].is_object(),
            "{method} {path} is not documented"
        );
    }
    let schemas = &document["components"]["schemas"];
    for schema in ["OrderView", "OrderPage", "OrderDetail", "Problem"] {
        assert!(schemas[schema].is_object(), "{schema} is not documented");
    }
}

/// The counts come from the orders' own records, so they survive a restart; only an
/// admin reads them.
async fn an_admin_counts_the_orders_by_status(engine: Engine) {
    let shop = TestShop::spawn(engine).await;
    let alice = shop.shopper("alice").await;
    let product = shop.product().await;
    let confirmed = shop.confirmed_order(&alice, &product).await;
    assert!(!confirmed.is_empty());
    let (status, counts) = shop.get("/stats", &shop.issuer.admin()).await;
    assert_eq!(status, 200, "{counts}");
    assert_eq!(counts["by_status"]["confirmed"], 1, "{counts}");
    assert_eq!(counts["total"], 1, "{counts}");
    assert_eq!(counts["in_flight"], 0, "{counts}");
    let (status, _) = shop.get("/stats", &alice.token).await;
    assert_eq!(status, 403);
}
