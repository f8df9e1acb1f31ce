//! Bad input gets a problem naming the field, and changes nothing.

use reqwest::Method;
use serde_json::json;
use test_support::{Engine, assert_problem};

use crate::helpers::{Options, TestShop};

test_support::on_both_engines!(
    unknown_products_are_refused,
    bad_quantities_are_refused,
    missing_lines_are_not_found,
    a_full_cart_refuses_another_product,
    an_unreachable_catalog_is_a_503_with_retry_after,
);

async fn unknown_products_are_refused(engine: Engine) {
    let shop = TestShop::spawn(engine).await;
    let alice = shop.issuer.customer("alice");
    for product_id in [
        json!(uuid::Uuid::now_v7().to_string()),
        json!("enamel-camp-mug"),
        json!(""),
    ] {
        let body = json!({"product_id": product_id, "quantity": 1});
        let (status, problem) = shop.send(Method::POST, "/items", &alice, Some(body)).await;
        assert_problem(status, &problem, 422, "product_id", &product_id.to_string());
        assert_eq!(problem["type"], "/problems/unknown-product");
    }
    assert_eq!(shop.cart(&alice).await["lines"], json!([]));
}

async fn bad_quantities_are_refused(engine: Engine) {
    let shop = TestShop::spawn(engine).await;
    let alice = shop.issuer.customer("alice");
    let product = shop.products(1).await.remove(0);
    shop.add(&alice, &product.id, 2).await;
    let item = format!("/items/{}", product.id);
    for quantity in [0, -1, 100, i64::MIN] {
        let body = json!({"product_id": product.id, "quantity": quantity});
        let (status, problem) = shop.send(Method::POST, "/items", &alice, Some(body)).await;
        assert_problem(
            status,
            &problem,
            422,
            "quantity",
            &format!("add {quantity}"),
        );
        let (status, problem) = shop
            .send(
                Method::PUT,
                &item,
                &alice,
                Some(json!({"quantity": quantity})),
            )
            .await;
        assert_problem(
            status,
            &problem,
            422,
            "quantity",
            &format!("set {quantity}"),
        );
    }
    // What is not a whole number at all is a malformed request, named all the same.
    for quantity in [json!("ten"), json!(1.5), json!(null)] {
        let body = json!({"product_id": product.id, "quantity": quantity});
        let (status, problem) = shop.send(Method::POST, "/items", &alice, Some(body)).await;
        assert_problem(
            status,
            &problem,
            400,
            "quantity",
            &format!("add {quantity}"),
        );
    }
    for body in [json!({"quantity": 1}), json!({"product_id": product.id})] {
        let (status, problem) = shop
            .send(Method::POST, "/items", &alice, Some(body.clone()))
            .await;
        assert_eq!(status, 400, "{body}: {problem}");
    }
    let smuggled = json!({"product_id": product.id, "quantity": 1, "unit_price": 1});
    let (status, problem) = shop
        .send(Method::POST, "/items", &alice, Some(smuggled))
        .await;
    assert_problem(
        status,
        &problem,
        400,
        "unit_price",
        "a price from the client",
    );
    let cart = shop.cart(&alice).await;
    assert_eq!(cart["lines"][0]["quantity"], 2, "nothing changed: {cart}");
}

async fn missing_lines_are_not_found(engine: Engine) {
    let shop = TestShop::spawn(engine).await;
    let alice = shop.issuer.customer("alice");
    let products = shop.products(2).await;
    shop.add(&alice, &products[0].id, 1).await;
    let absent = format!("/items/{}", products[1].id);
    let (status, problem) = shop
        .send(Method::PUT, &absent, &alice, Some(json!({"quantity": 2})))
        .await;
    assert_eq!(status, 404, "{problem}");
    let (status, problem) = shop.send(Method::DELETE, &absent, &alice, None).await;
    assert_eq!(status, 404, "{problem}");
    let (status, problem) = shop
        .send(
            Method::PUT,
            "/items/not-a-uuid",
            &alice,
            Some(json!({"quantity": 2})),
        )
        .await;
    assert_problem(status, &problem, 400, "product_id", "a path that is no id");
    let (status, problem) = shop
        .send(Method::DELETE, "/items/not-a-uuid", &alice, None)
        .await;
    assert_problem(status, &problem, 400, "product_id", "a path that is no id");
    assert_eq!(
        shop.cart(&alice).await["lines"].as_array().map(Vec::len),
        Some(1)
    );
}

async fn a_full_cart_refuses_another_product(engine: Engine) {
    let options = Options {
        max_lines: 2,
        ..Options::default()
    };
    let shop = TestShop::spawn_with(engine, options).await;
    let alice = shop.issuer.customer("alice");
    let products = shop.products(3).await;
    shop.add(&alice, &products[0].id, 1).await;
    shop.add(&alice, &products[1].id, 1).await;
    let body = json!({"product_id": products[2].id, "quantity": 1});
    let (status, problem) = shop.send(Method::POST, "/items", &alice, Some(body)).await;
    assert_problem(status, &problem, 422, "product_id", "a third product");
    assert_eq!(problem["type"], "/problems/too-many-lines");
    shop.add(&alice, &products[0].id, 1).await;
}

async fn an_unreachable_catalog_is_a_503_with_retry_after(engine: Engine) {
    let options = Options {
        catalog_down: true,
        ..Options::default()
    };
    let shop = TestShop::spawn_with(engine, options).await;
    let alice = shop.issuer.customer("alice");
    assert_eq!(
        shop.cart(&alice).await["lines"],
        json!([]),
        "an empty cart needs no prices"
    );
    let body = json!({"product_id": uuid::Uuid::now_v7().to_string(), "quantity": 1});
    let response = shop
        .request(Method::POST, "/items", &alice)
        .json(&body)
        .send()
        .await
        .expect("answers");
    assert_eq!(response.status().as_u16(), 503);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .expect("text")
        .parse()
        .expect("seconds");
    assert!(retry_after >= 1);
}
