//! A confirmed order's lines leave the customer's cart, once, however often the
//! confirmation is delivered.

use contracts::Money;
use contracts::messaging::orders::{OrderConfirmedV1, OrderLine};
use platform::bus::Bus as _;
use platform::outbox::{self, Origin};
use serde_json::json;
use test_support::Engine;

use crate::cart::line_of;
use crate::helpers::TestShop;

test_support::on_both_engines!(a_confirmed_order_leaves_the_cart_exactly_once);

async fn a_confirmed_order_leaves_the_cart_exactly_once(engine: Engine) {
    let shop = TestShop::spawn(engine).await;
    let customer_id = "0195f3b2-7c1e-7d00-8000-0000000000b0";
    let token = shop.issuer.customer(customer_id);
    let products = shop.products(3).await;
    let (mug, pen, cup) = (&products[0], &products[1], &products[2]);
    shop.add(&token, &mug.id, 5).await;
    shop.add(&token, &pen.id, 1).await;
    shop.add(&token, &cup.id, 2).await;
    let bystander = shop.issuer.customer("bystander");
    shop.add(&bystander, &mug.id, 5).await;

    let line = |product: &contracts::catalog::Product, quantity| OrderLine {
        product_id: product.id.parse().expect("an id"),
        name: product.name.clone(),
        quantity,
        unit_price: product.price,
    };
    let confirmed = OrderConfirmedV1 {
        order_id: test_support::order_id("order-1"),
        customer_id: customer_id.parse().expect("an id"),
        lines: vec![line(mug, 2), line(pen, 1)],
        total: Money::new(
            mug.price.amount_minor * 2 + pen.price.amount_minor,
            mug.price.currency,
        ),
        cart_revision: None,
    };
    // Two messages with one order, as when orders publishes a confirmation again.
    let mut ids = Vec::new();
    for _ in 0..2 {
        let envelope =
            outbox::envelope("orders", &confirmed, &Origin::default()).expect("an envelope");
        ids.push(envelope.id.clone());
        shop.bus.publish(&envelope).await.expect("published");
        shop.wait_for_cart_to_consume().await;
        let cart = shop.cart(&token).await;
        assert_eq!(line_of(&cart, &mug.id)["quantity"], 3, "{cart}");
        assert_eq!(line_of(&cart, &cup.id)["quantity"], 2, "{cart}");
        assert_eq!(cart["lines"].as_array().map(Vec::len), Some(2), "{cart}");
    }
    assert_ne!(
        ids[0], ids[1],
        "two deliveries, not one deduplicated by the bus"
    );
    assert_eq!(
        shop.cart(&bystander).await["lines"][0]["quantity"],
        json!(5),
        "other carts are untouched"
    );
}
