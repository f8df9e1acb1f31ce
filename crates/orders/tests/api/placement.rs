//! Placing orders under an Idempotency-Key: concurrent retries of one request make one
//! order, and the key cannot be reused for another request.

use contracts::messaging::Message as _;
use contracts::messaging::inventory::ReserveStockV1;
use orders::ops::{self, PlaceOrder, Placement};
use test_support::Engine;

use crate::helpers::{Orders, T0, customer_id};

test_support::on_both_engines!(
    concurrent_retries_of_one_request_place_one_order,
    a_key_is_per_customer_and_per_request,
);

async fn concurrent_retries_of_one_request_place_one_order(engine: Engine) {
    let orders = Orders::new(engine).await;
    let attempts = (0..2).map(|_| orders.place_with("customer-1", "key-1", "pm_card", T0));
    let placements = futures_util::future::join_all(attempts).await;

    let placed: Vec<&String> = placements
        .iter()
        .filter_map(|placement| match placement {
            Placement::Placed(id) => Some(id),
            _ => None,
        })
        .collect();
    let repeated: Vec<&String> = placements
        .iter()
        .filter_map(|placement| match placement {
            Placement::Repeated(id) => Some(id),
            _ => None,
        })
        .collect();
    assert_eq!(placed.len(), 1, "{placements:?}");
    assert_eq!(repeated, placed, "the retry gets the same order");
    let id = placed[0].clone();

    let mut connection = orders.db.pool().acquire().await.expect("a connection");
    let stored = orders::store::order_ids(&mut connection)
        .await
        .expect("listed");
    drop(connection);
    assert_eq!(stored, [id.as_str()], "one order in the event store");
    assert_eq!(orders.sent_about(&id).await, [ReserveStockV1::TYPE]);
    assert_eq!(orders.outbox().await.len(), 1, "one reservation in all");

    // A later retry, as the REST API checks before it asks the cart, finds it too.
    let request = PlaceOrder {
        payment_method: "pm_card".to_owned(),
    };
    let previous = ops::previous(&orders.db, &customer_id("customer-1"), "key-1", &request)
        .await
        .expect("read");
    assert_eq!(previous, Some(Placement::Repeated(id)));
}

async fn a_key_is_per_customer_and_per_request(engine: Engine) {
    let orders = Orders::new(engine).await;
    let Placement::Placed(first) = orders
        .place_with("customer-1", "key-1", "pm_card", T0)
        .await
    else {
        panic!("a fresh key places an order");
    };

    let other_request = orders
        .place_with("customer-1", "key-1", "pm_other_card", T0 + 1)
        .await;
    assert_eq!(other_request, Placement::KeyReused);
    let request = PlaceOrder {
        payment_method: "pm_other_card".to_owned(),
    };
    let previous = ops::previous(&orders.db, &customer_id("customer-1"), "key-1", &request)
        .await
        .expect("read");
    assert_eq!(previous, Some(Placement::KeyReused));

    let other_customer = orders
        .place_with("customer-2", "key-1", "pm_card", T0 + 2)
        .await;
    let Placement::Placed(second) = other_customer else {
        panic!("another customer's key is their own: {other_customer:?}");
    };
    assert_ne!(first, second);
    assert_eq!(orders.outbox().await.len(), 2, "two reservations");
    assert_eq!(orders.load(&first).await.payment_method, "pm_card");
}
