//! Each customer reaches only their own cart, and only with a genuine token.

use reqwest::Method;
use serde_json::json;
use test_support::Engine;
use test_support::security::{assert_corpus_refused, attack_corpus};

use crate::helpers::TestShop;

test_support::on_both_engines!(
    another_customer_can_neither_see_nor_change_a_cart,
    forged_tokens_are_refused,
);

async fn another_customer_can_neither_see_nor_change_a_cart(engine: Engine) {
    let shop = TestShop::spawn(engine).await;
    let (alice, bob) = (shop.issuer.customer("alice"), shop.issuer.customer("bob"));
    let product = shop.products(1).await.remove(0);
    let alices = shop.add(&alice, &product.id, 3).await;

    assert_eq!(
        shop.cart(&bob).await["lines"],
        json!([]),
        "bob sees his own, empty cart"
    );
    let item = format!("/items/{}", product.id);
    let (status, _) = shop
        .send(Method::PUT, &item, &bob, Some(json!({"quantity": 9})))
        .await;
    assert_eq!(status, 404, "bob's cart has no such line");
    let (status, _) = shop.send(Method::DELETE, &item, &bob, None).await;
    assert_eq!(status, 404);
    let (status, _) = shop.send(Method::DELETE, "/", &bob, None).await;
    assert_eq!(status, 200, "bob empties his own cart");
    shop.add(&bob, &product.id, 1).await;
    assert_eq!(shop.cart(&alice).await, alices, "alice's cart is untouched");

    let anonymous = shop
        .client
        .get(shop.url("/"))
        .send()
        .await
        .expect("answers");
    assert_eq!(anonymous.status().as_u16(), 401);
}

async fn forged_tokens_are_refused(engine: Engine) {
    let shop = TestShop::spawn(engine).await;
    let valid = shop.issuer.customer("alice");
    let corpus = attack_corpus(shop.issuer.key(), test_support::TestIssuer::ISSUER, &valid);
    let url = shop.url("/");
    assert_corpus_refused(|| shop.client.get(&url), &valid, &corpus).await;
    let product = shop.products(1).await.remove(0);
    let items = shop.url("/items");
    let body = json!({"product_id": product.id, "quantity": 1});
    assert_corpus_refused(|| shop.client.post(&items).json(&body), &valid, &corpus).await;
    // Only the valid token's request took effect, and on its holder's cart.
    let cart = shop.cart(&valid).await;
    assert_eq!(cart["lines"][0]["quantity"], 1, "{cart}");
    assert_eq!(
        shop.cart(&shop.issuer.customer("attacker")).await["lines"],
        json!([])
    );
}
