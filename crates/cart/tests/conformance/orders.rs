//! `remove_ordered`: what an order bought leaves the cart, once per order.

use std::sync::Arc;

use crate::harness::{Subject, customer, line, product, sorted};

pub(crate) async fn an_order_leaves_the_cart_exactly_once(subject: Subject) {
    let alice = customer("alice");
    let (mug, pen, cup, gone) = (product(), product(), product(), product());
    subject.store.add(&alice, &mug, 5).await.expect("added");
    subject.store.add(&alice, &pen, 2).await.expect("added");
    subject.store.add(&alice, &cup, 1).await.expect("added");
    // Two mugs of five, both pens, and a product no longer in the cart.
    let ordered = [line(&mug, 2), line(&pen, 2), line(&gone, 1)];
    assert!(
        subject
            .store
            .remove_ordered(&alice, "order-1", &ordered, None)
            .await
            .expect("applied")
    );
    let after = sorted(vec![(mug, 3), (cup, 1)]);
    assert_eq!(subject.lines(&alice).await, after);
    for _ in 0..2 {
        assert!(
            !subject
                .store
                .remove_ordered(&alice, "order-1", &ordered, None)
                .await
                .expect("answered"),
            "the same order again is a duplicate"
        );
    }
    assert_eq!(subject.lines(&alice).await, after, "nothing left twice");
    // A different order is applied, and takes no more than the line holds.
    assert!(
        subject
            .store
            .remove_ordered(&alice, "order-2", &[line(&mug, 10)], None)
            .await
            .expect("applied")
    );
    assert_eq!(subject.lines(&alice).await, vec![(cup, 1)]);
    // An order for an empty cart is recorded all the same.
    subject.store.clear(&alice).await.expect("cleared");
    assert!(
        subject
            .store
            .remove_ordered(&alice, "order-3", &[line(&pen, 1)], None)
            .await
            .expect("applied")
    );
    subject.store.add(&alice, &pen, 1).await.expect("added");
    assert!(
        !subject
            .store
            .remove_ordered(&alice, "order-3", &[line(&pen, 1)], None)
            .await
            .expect("answered")
    );
    assert_eq!(subject.lines(&alice).await, vec![(pen, 1)]);
}

pub(crate) async fn a_repeated_order_racing_itself_applies_once(subject: Subject) {
    let alice = customer("alice");
    let mug = product();
    subject.store.add(&alice, &mug, 20).await.expect("added");
    let store = subject.store.clone();
    let deliveries = (0..8).map(|_| {
        let (store, alice, mug) = (Arc::clone(&store), alice.clone(), mug);
        tokio::spawn(async move {
            store
                .remove_ordered(&alice, "order-race", &[line(&mug, 3)], None)
                .await
                .expect("answered")
        })
    });
    let applied = futures_util::future::join_all(deliveries)
        .await
        .into_iter()
        .filter(|applied| *applied.as_ref().expect("the task finished"))
        .count();
    assert_eq!(applied, 1);
    assert_eq!(subject.lines(&alice).await, vec![(mug, 17)]);
}

/// The customer placed an order for two mugs, then took the mugs out and put one back
/// (or emptied the cart and started again) before the order was confirmed: the new
/// line is not what the order bought, and stays. Units added to a line the order
/// bought from still count as added beyond the order.
pub(crate) async fn a_line_added_again_after_the_order_stays(subject: Subject) {
    let alice = customer("alice");
    let (mug, pen, cup) = (product(), product(), product());
    subject.store.add(&alice, &mug, 2).await.expect("added");
    subject.store.add(&alice, &pen, 1).await.expect("added");
    let placed = subject.store.contents(&alice).await.expect("read");
    assert_eq!(placed.lines.len(), 2);
    subject.store.remove(&alice, &mug).await.expect("removed");
    subject
        .store
        .add(&alice, &mug, 1)
        .await
        .expect("added again");
    subject.store.add(&alice, &pen, 2).await.expect("added to");
    let ordered = [line(&mug, 2), line(&pen, 1)];
    assert!(
        subject
            .store
            .remove_ordered(&alice, "order-again", &ordered, Some(placed.revision))
            .await
            .expect("applied")
    );
    assert_eq!(
        subject.lines(&alice).await,
        sorted(vec![(mug, 1), (pen, 2)])
    );

    // An emptied cart starts again at a later revision.
    let bob = customer("bob");
    subject.store.add(&bob, &cup, 1).await.expect("added");
    let placed = subject.store.contents(&bob).await.expect("read");
    subject.store.clear(&bob).await.expect("cleared");
    subject.store.add(&bob, &cup, 1).await.expect("added again");
    let again = subject.store.contents(&bob).await.expect("read");
    assert!(
        again.revision > placed.revision,
        "{again:?} after {placed:?}"
    );
    subject
        .store
        .remove_ordered(&bob, "order-bob", &[line(&cup, 1)], Some(placed.revision))
        .await
        .expect("applied");
    assert_eq!(subject.lines(&bob).await, vec![(cup, 1)]);
}

pub(crate) async fn an_order_leaves_other_customers_alone(subject: Subject) {
    let (alice, bob) = (customer("alice"), customer("bob"));
    let mug = product();
    subject.store.add(&alice, &mug, 4).await.expect("added");
    subject.store.add(&bob, &mug, 4).await.expect("added");
    assert!(
        subject
            .store
            .remove_ordered(&bob, "order-bob", &[line(&mug, 1)], None)
            .await
            .expect("applied")
    );
    assert_eq!(subject.lines(&alice).await, vec![(mug, 4)]);
    assert_eq!(subject.lines(&bob).await, vec![(mug, 3)]);
}

pub(crate) async fn the_consumer_applies_each_confirmed_order_once(subject: Subject) {
    use contracts::messaging::orders::{OrderConfirmedV1, OrderLine};
    use platform::bus::Bus as _;
    use platform::inbox::Outcome;

    let folder = tempfile::tempdir().expect("a folder");
    let bus = platform::bus::embedded::EmbeddedBus::open(&folder.path().join("bus.db"))
        .await
        .expect("a bus");
    let bus = std::sync::Arc::new(bus);
    let mut consumer = cart::events::OrderEvents::subscribe(bus.clone(), subject.store.clone())
        .await
        .expect("subscribed");
    let alice_id = test_support::user_id("alice");
    let alice = customer(&alice_id.to_string());
    let mug = product();
    subject.store.add(&alice, &mug, 3).await.expect("added");
    let confirmed = OrderConfirmedV1 {
        order_id: test_support::order_id("order-7"),
        customer_id: alice_id,
        lines: vec![OrderLine {
            product_id: mug,
            name: "Mug".to_owned(),
            quantity: 1,
            unit_price: contracts::Money::new(1450, contracts::Currency::EUR),
        }],
        total: contracts::Money::new(1450, contracts::Currency::EUR),
        cart_revision: None,
    };
    let origin = platform::outbox::Origin::default();
    for expected in [Outcome::Applied, Outcome::Duplicate] {
        let envelope =
            platform::outbox::envelope("orders", &confirmed, &origin).expect("an envelope");
        bus.publish(&envelope).await.expect("published");
        let outcome = consumer
            .consume_once(std::time::Duration::from_secs(5))
            .await
            .expect("the bus answers");
        assert_eq!(outcome, Some(expected));
        assert_eq!(subject.lines(&alice).await, vec![(mug, 2)]);
    }
    // A confirmation that cannot be read is refused, to be retried and then kept as a
    // dead letter, and changes nothing.
    let mut unreadable =
        platform::outbox::envelope("orders", &confirmed, &origin).expect("an envelope");
    unreadable.payload = serde_json::json!({"order_id": 7});
    bus.publish(&unreadable).await.expect("published");
    let outcome = consumer
        .consume_once(std::time::Duration::from_secs(5))
        .await
        .expect("the bus answers");
    assert_eq!(outcome, Some(Outcome::Failed));
    assert_eq!(subject.lines(&alice).await, vec![(mug, 2)]);
    assert_eq!(
        bus.pending(&cart::events::subscription().name)
            .await
            .expect("pending"),
        1
    );
}
