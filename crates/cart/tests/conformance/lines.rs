//! Adding, setting, removing and clearing lines, the caps, isolation and concurrency.

use std::sync::Arc;

use cart::store::CartError;

use crate::harness::{LIMITS, Subject, customer, product, sorted};

pub(crate) async fn an_unknown_customer_has_an_empty_cart(subject: Subject) {
    assert!(subject.lines(&customer("nobody")).await.is_empty());
}

pub(crate) async fn adding_creates_a_line_then_grows_it(subject: Subject) {
    let alice = customer("alice");
    let (mug, pen) = (product(), product());
    assert_eq!(subject.store.add(&alice, &mug, 2).await.expect("added"), 2);
    assert_eq!(subject.store.add(&alice, &pen, 1).await.expect("added"), 1);
    assert_eq!(subject.store.add(&alice, &mug, 3).await.expect("added"), 5);
    assert_eq!(
        subject.lines(&alice).await,
        sorted(vec![(mug, 5), (pen, 1)])
    );
}

pub(crate) async fn a_line_never_grows_past_the_most_units(subject: Subject) {
    let alice = customer("alice");
    let mug = product();
    assert_eq!(
        subject.store.add(&alice, &mug, 30).await.expect("added"),
        30
    );
    assert_eq!(
        subject.store.add(&alice, &mug, 30).await.expect("added"),
        LIMITS.max_quantity,
        "the surplus is dropped"
    );
    assert_eq!(
        subject
            .store
            .add(&alice, &mug, LIMITS.max_quantity)
            .await
            .expect("added"),
        LIMITS.max_quantity
    );
    assert_eq!(
        subject.lines(&alice).await,
        vec![(mug, LIMITS.max_quantity)]
    );
}

pub(crate) async fn quantities_out_of_range_are_refused(subject: Subject) {
    let alice = customer("alice");
    let mug = product();
    subject.store.add(&alice, &mug, 3).await.expect("added");
    for bad in [0, -1, i64::MIN, LIMITS.max_quantity + 1, i64::MAX] {
        let added = subject.store.add(&alice, &mug, bad).await;
        assert!(
            matches!(added, Err(CartError::QuantityOutOfRange { max }) if max == LIMITS.max_quantity),
            "add {bad}: {added:?}"
        );
        let set = subject.store.set_quantity(&alice, &mug, bad).await;
        assert!(
            matches!(set, Err(CartError::QuantityOutOfRange { .. })),
            "set {bad}: {set:?}"
        );
    }
    assert_eq!(
        subject.lines(&alice).await,
        vec![(mug, 3)],
        "refusals changed nothing"
    );
}

pub(crate) async fn a_cart_holds_at_most_the_most_lines(subject: Subject) {
    let alice = customer("alice");
    let products: Vec<_> = (0..LIMITS.max_lines).map(|_| product()).collect();
    for product in &products {
        subject.store.add(&alice, product, 1).await.expect("room");
    }
    let one_too_many = subject.store.add(&alice, &product(), 1).await;
    assert!(
        matches!(one_too_many, Err(CartError::TooManyLines { max }) if max == LIMITS.max_lines),
        "{one_too_many:?}"
    );
    assert_eq!(
        subject
            .store
            .add(&alice, &products[0], 1)
            .await
            .expect("a line that exists may grow"),
        2
    );
    assert_eq!(subject.lines(&alice).await.len(), LIMITS.max_lines);
    assert!(
        subject
            .store
            .remove(&alice, &products[1])
            .await
            .expect("removed")
    );
    subject
        .store
        .add(&alice, &product(), 1)
        .await
        .expect("room again");
}

pub(crate) async fn setting_a_quantity_needs_the_line(subject: Subject) {
    let alice = customer("alice");
    let (mug, pen) = (product(), product());
    let missing = subject.store.set_quantity(&alice, &mug, 2).await;
    assert!(matches!(missing, Err(CartError::NoSuchLine)), "{missing:?}");
    assert!(
        subject.lines(&alice).await.is_empty(),
        "nothing was created"
    );
    subject.store.add(&alice, &mug, 1).await.expect("added");
    subject
        .store
        .set_quantity(&alice, &mug, 7)
        .await
        .expect("set");
    subject
        .store
        .set_quantity(&alice, &mug, 4)
        .await
        .expect("set lower");
    let other = subject.store.set_quantity(&alice, &pen, 2).await;
    assert!(matches!(other, Err(CartError::NoSuchLine)), "{other:?}");
    assert_eq!(subject.lines(&alice).await, vec![(mug, 4)]);
}

pub(crate) async fn removing_a_line_and_clearing_the_cart(subject: Subject) {
    let alice = customer("alice");
    let (mug, pen, cup) = (product(), product(), product());
    for product in [&mug, &pen, &cup] {
        subject.store.add(&alice, product, 2).await.expect("added");
    }
    assert!(subject.store.remove(&alice, &pen).await.expect("removed"));
    assert!(
        !subject.store.remove(&alice, &pen).await.expect("answered"),
        "a second removal finds nothing"
    );
    assert_eq!(
        subject.lines(&alice).await,
        sorted(vec![(mug, 2), (cup, 2)])
    );
    subject.store.clear(&alice).await.expect("cleared");
    assert!(subject.lines(&alice).await.is_empty());
    subject
        .store
        .clear(&alice)
        .await
        .expect("clearing an empty cart is fine");
    subject
        .store
        .add(&alice, &cup, 1)
        .await
        .expect("a cleared cart takes lines again");
    assert_eq!(subject.lines(&alice).await, vec![(cup, 1)]);
}

pub(crate) async fn customers_never_see_each_others_lines(subject: Subject) {
    let (alice, bob) = (customer("alice"), customer("bob"));
    let (mug, pen) = (product(), product());
    subject.store.add(&alice, &mug, 2).await.expect("added");
    subject.store.add(&bob, &pen, 3).await.expect("added");
    assert_eq!(subject.lines(&alice).await, vec![(mug, 2)]);
    assert_eq!(subject.lines(&bob).await, vec![(pen, 3)]);
    let foreign = subject.store.set_quantity(&bob, &mug, 9).await;
    assert!(matches!(foreign, Err(CartError::NoSuchLine)), "{foreign:?}");
    assert!(!subject.store.remove(&bob, &mug).await.expect("answered"));
    subject.store.clear(&bob).await.expect("cleared");
    assert_eq!(
        subject.lines(&alice).await,
        vec![(mug, 2)],
        "untouched by bob"
    );
    // Ids that merely share a beginning are different customers.
    let alice_too = customer("alice:orders");
    assert!(subject.lines(&alice_too).await.is_empty());
}

pub(crate) async fn concurrent_adds_lose_no_update(subject: Subject) {
    let alice = customer("alice");
    let mug = product();
    let tasks = 32;
    let store = subject.store.clone();
    let adds = (0..tasks).map(|_| {
        let (store, alice, mug) = (Arc::clone(&store), alice.clone(), mug);
        tokio::spawn(async move { store.add(&alice, &mug, 1).await.expect("added") })
    });
    let mut seen: Vec<i64> = futures_util::future::join_all(adds)
        .await
        .into_iter()
        .map(|task| task.expect("the task finished"))
        .collect();
    seen.sort_unstable();
    assert_eq!(
        seen,
        (1..=tasks).collect::<Vec<_>>(),
        "each add saw the one before it"
    );
    assert_eq!(subject.lines(&alice).await, vec![(mug, tasks)]);
}

pub(crate) async fn concurrent_new_lines_respect_the_limit(subject: Subject) {
    let alice = customer("alice");
    let store = subject.store.clone();
    let adds = (0..LIMITS.max_lines * 3).map(|_| {
        let (store, alice) = (Arc::clone(&store), alice.clone());
        tokio::spawn(async move { store.add(&alice, &product(), 1).await })
    });
    let mut added = 0;
    for outcome in futures_util::future::join_all(adds).await {
        match outcome.expect("the task finished") {
            Ok(_) => added += 1,
            Err(CartError::TooManyLines { .. }) => {}
            Err(error) => panic!("an add failed: {error:#}"),
        }
    }
    assert_eq!(added, LIMITS.max_lines);
    assert_eq!(subject.lines(&alice).await.len(), LIMITS.max_lines);
}
