//! A customer fills a cart and sees it priced by the catalog, over REST and gRPC.

use reqwest::Method;
use serde_json::{Value, json};
use test_support::Engine;

use crate::helpers::{INITIAL_STOCK, Options, TestShop};

test_support::on_both_engines!(
    a_cart_is_priced_by_the_catalog,
    price_changes_in_the_catalog_show_in_the_cart,
    every_change_answers_the_priced_cart,
    get_cart_over_grpc_is_the_same_priced_cart,
    the_redis_store_serves_the_same_cart,
    the_api_is_documented,
);

async fn a_cart_is_priced_by_the_catalog(engine: Engine) {
    let shop = TestShop::spawn(engine).await;
    let alice = shop.issuer.customer("alice");
    assert_eq!(
        shop.cart(&alice).await,
        json!({"lines": [], "total": null, "unavailable_product_ids": []}),
        "a new customer's cart is empty"
    );
    let products = shop.products(2).await;
    let (mug, pen) = (&products[0], &products[1]);
    shop.add(&alice, &mug.id, 2).await;
    shop.add(&alice, &pen.id, 1).await;
    let cart = shop.add(&alice, &mug.id, 1).await;
    assert_eq!(cart, shop.cart(&alice).await, "a change answers the cart");

    let lines = cart["lines"].as_array().expect("lines");
    assert_eq!(lines.len(), 2, "{cart}");
    let mug_line = line_of(&cart, &mug.id);
    assert_eq!(mug_line["name"], mug.name.as_str());
    assert_eq!(mug_line["quantity"], 3);
    assert_eq!(
        mug_line["unit_price"]["amount_minor"],
        mug.price.amount_minor
    );
    assert_eq!(mug_line["unit_price"]["currency"], "EUR");
    assert_eq!(
        mug_line["line_total"]["amount_minor"],
        mug.price.amount_minor * 3
    );
    assert_eq!(mug_line["available"], INITIAL_STOCK);
    let pen_line = line_of(&cart, &pen.id);
    assert_eq!(pen_line["quantity"], 1);
    assert_eq!(
        cart["total"],
        json!({
            "amount_minor": mug.price.amount_minor * 3 + pen.price.amount_minor,
            "currency": "EUR"
        })
    );
    assert_eq!(cart["unavailable_product_ids"], json!([]));
}

async fn price_changes_in_the_catalog_show_in_the_cart(engine: Engine) {
    let shop = TestShop::spawn(engine).await;
    let alice = shop.issuer.customer("alice");
    let product = shop.products(1).await.remove(0);
    shop.add(&alice, &product.id, 2).await;
    let new_price = product.price.amount_minor + 250;
    shop.reprice(&product.slug, new_price).await;
    let cart = shop.cart(&alice).await;
    let line = line_of(&cart, &product.id);
    assert_eq!(line["unit_price"]["amount_minor"], new_price);
    assert_eq!(line["line_total"]["amount_minor"], new_price * 2);
    assert_eq!(cart["total"]["amount_minor"], new_price * 2);
}

async fn every_change_answers_the_priced_cart(engine: Engine) {
    let shop = TestShop::spawn(engine).await;
    let alice = shop.issuer.customer("alice");
    let products = shop.products(2).await;
    let (mug, pen) = (&products[0], &products[1]);
    shop.add(&alice, &mug.id, 1).await;
    shop.add(&alice, &pen.id, 1).await;

    let (status, cart) = shop
        .send(
            Method::PUT,
            &format!("/items/{}", mug.id),
            &alice,
            Some(json!({"quantity": 5})),
        )
        .await;
    assert_eq!(status, 200, "{cart}");
    assert_eq!(line_of(&cart, &mug.id)["quantity"], 5);
    assert_eq!(
        cart["total"]["amount_minor"],
        mug.price.amount_minor * 5 + pen.price.amount_minor
    );

    let (status, cart) = shop
        .send(Method::DELETE, &format!("/items/{}", pen.id), &alice, None)
        .await;
    assert_eq!(status, 200, "{cart}");
    assert_eq!(cart["lines"].as_array().expect("lines").len(), 1);
    assert_eq!(cart["total"]["amount_minor"], mug.price.amount_minor * 5);

    // A whole number written with a fraction is the same number, as JSON Schema has it;
    // a real fraction is refused.
    let (status, cart) = shop
        .send(
            Method::PUT,
            &format!("/items/{}", mug.id),
            &alice,
            Some(json!({"quantity": 4.0})),
        )
        .await;
    assert_eq!(status, 200, "{cart}");
    assert_eq!(line_of(&cart, &mug.id)["quantity"], 4);
    let (status, problem) = shop
        .send(
            Method::PUT,
            &format!("/items/{}", mug.id),
            &alice,
            Some(json!({"quantity": 4.5})),
        )
        .await;
    assert_eq!(status, 400, "{problem}");
    assert!(
        problem["detail"]
            .as_str()
            .is_some_and(|d| d.contains("quantity")),
        "{problem}"
    );

    // Adding past the most units a line may hold keeps the most.
    let cart = shop.add(&alice, &mug.id, 99).await;
    assert_eq!(line_of(&cart, &mug.id)["quantity"], 99);

    let (status, cart) = shop.send(Method::DELETE, "/", &alice, None).await;
    assert_eq!(status, 200, "{cart}");
    assert_eq!(cart["lines"], json!([]));
    assert_eq!(cart["total"], Value::Null);
    assert_eq!(shop.cart(&alice).await["lines"], json!([]));
}

async fn get_cart_over_grpc_is_the_same_priced_cart(engine: Engine) {
    use contracts::proto::cart::v1::GetCartRequest;
    use contracts::proto::cart::v1::cart_client::CartClient;

    let shop = TestShop::spawn(engine).await;
    let customer_id = "0195f3b2-7c1e-7d00-8000-00000000a11c";
    let token = shop.issuer.customer(customer_id);
    let products = shop.products(2).await;
    shop.add(&token, &products[0].id, 4).await;
    let rest = shop.add(&token, &products[1].id, 1).await;

    let mut client = CartClient::connect(format!("http://{}", shop.cart))
        .await
        .expect("a gRPC connection");
    let ask = |customer: &str, bearer: &str| {
        let request = GetCartRequest {
            customer_id: customer.to_owned(),
        };
        platform::grpc::on_behalf_of(request, bearer).expect("a request")
    };
    let grpc = client
        .get_cart(ask(customer_id, &token))
        .await
        .expect("answered")
        .into_inner();
    assert_eq!(grpc.customer_id, customer_id);
    let money = |money: Option<contracts::proto::common::v1::Money>| {
        money.map_or(
            Value::Null,
            |money| json!({"amount_minor": money.amount_minor, "currency": money.currency}),
        )
    };
    let lines: Vec<Value> = grpc
        .lines
        .into_iter()
        .map(|line| {
            json!({
                "product_id": line.product_id,
                "name": line.name,
                "quantity": line.quantity,
                "unit_price": money(line.unit_price),
                "line_total": money(line.line_total),
                "available": line.available,
            })
        })
        .collect();
    assert_eq!(
        json!({
            "lines": lines,
            "total": money(grpc.total),
            "unavailable_product_ids": grpc.unavailable_product_ids,
        }),
        rest
    );

    // Another customer's token, no token or a forged one read nothing.
    let other = shop.issuer.customer("0195f3b2-7c1e-7d00-8000-0000000000b0");
    let foreign = client
        .get_cart(ask(customer_id, &other))
        .await
        .expect_err("refused");
    assert_eq!(foreign.code(), tonic::Code::PermissionDenied);
    let anonymous = client
        .get_cart(GetCartRequest {
            customer_id: customer_id.to_owned(),
        })
        .await
        .expect_err("refused");
    assert_eq!(anonymous.code(), tonic::Code::Unauthenticated);
    let forged = client
        .get_cart(ask(customer_id, &format!("{token}x")))
        .await
        .expect_err("refused");
    assert_eq!(forged.code(), tonic::Code::Unauthenticated);
    let admin = client
        .get_cart(ask(customer_id, &shop.issuer.admin()))
        .await
        .expect("an admin may read any cart")
        .into_inner();
    assert_eq!(admin.lines.len(), 2);
    let empty = client
        .get_cart(ask("someone-else", &shop.issuer.customer("someone-else")))
        .await
        .expect("answered")
        .into_inner();
    assert!(empty.lines.is_empty() && empty.total.is_none());
    let refused = client
        .get_cart(ask("", &shop.issuer.admin()))
        .await
        .expect_err("refused");
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
}

async fn the_redis_store_serves_the_same_cart(engine: Engine) {
    let options = Options {
        redis: true,
        ..Options::default()
    };
    let shop = TestShop::spawn_with(engine, options).await;
    let alice = shop.issuer.customer("alice");
    let bob = shop.issuer.customer("bob");
    let product = shop.products(1).await.remove(0);
    shop.add(&alice, &product.id, 2).await;
    let cart = shop.add(&alice, &product.id, 1).await;
    assert_eq!(line_of(&cart, &product.id)["quantity"], 3);
    assert_eq!(
        cart["total"]["amount_minor"],
        product.price.amount_minor * 3
    );
    assert_eq!(shop.cart(&bob).await["lines"], json!([]));
    let ready = shop
        .client
        .get(shop.url("/health/ready"))
        .send()
        .await
        .expect("answers");
    assert_eq!(ready.status().as_u16(), 200);

    // Redis goes away: reads and writes answer 503 with Retry-After, never 500, and
    // nothing is half-done; when it is back the cart is there as it was.
    let link = shop.redis_link.as_ref().expect("carts in Redis");
    link.cut();
    for (method, path, body) in [
        (Method::GET, "/", None),
        (
            Method::POST,
            "/items",
            Some(json!({"product_id": product.id, "quantity": 1})),
        ),
    ] {
        let (status, problem) = shop.send(method, path, &alice, body).await;
        assert_eq!(status, 503, "{path} with Redis away: {problem}");
        assert_eq!(problem["status"], 503);
    }
    link.restore();
    let back = "the cart answering again once Redis is back";
    let cart = test_support::eventually(back, std::time::Duration::from_secs(10), || async {
        let (status, cart) = shop.send(Method::GET, "/", &alice, None).await;
        assert!(status == 200 || status == 503, "{status}: {cart}");
        if status == 200 { Ok(cart) } else { Err(status) }
    })
    .await;
    assert_eq!(line_of(&cart, &product.id)["quantity"], 3);
}

async fn the_api_is_documented(engine: Engine) {
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
            .is_some_and(|v| v.starts_with("3.1"))
    );
    for (path, method) in [
        ("/", "get"),
        ("/", "delete"),
        ("/items", "post"),
        ("/items/{product_id}", "put"),
        ("/items/{product_id}", "delete"),
    ] {
        assert!(
            document["paths"][path][method].is_object(),
            "{method} {path} is not documented"
        );
    }
}

/// The line of `product_id` in `cart`, which must be there.
pub(crate) fn line_of<'a>(cart: &'a Value, product_id: &str) -> &'a Value {
    cart["lines"]
        .as_array()
        .expect("lines")
        .iter()
        .find(|line| line["product_id"] == product_id)
        .unwrap_or_else(|| panic!("no line for {product_id}: {cart}"))
}
