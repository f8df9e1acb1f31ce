//! The fraud rules at work, before the card is asked: amount, velocity, account age,
//! and an admin's review of what they held.

use contracts::OrderId;
use contracts::messaging::payments::{
    CapturePaymentV1, DeclineReason, HoldReason, PaymentAuthorizedV1, PaymentCapturedV1,
    PaymentDeclinedV1, PaymentHeldV1, PaymentVoidedV1, ReviewPaymentV1, VoidPaymentV1,
};
use payments::cards;
use test_support::Engine;

use crate::helpers::{DAY_MS, TestApp, order_id};

test_support::on_both_engines!(
    large_amounts_are_held_and_huge_ones_declined_without_asking_the_card,
    a_customer_paying_too_often_is_held,
    payments_arriving_at_once_are_counted_one_after_the_other,
    new_and_unknown_accounts_are_held_above_their_limit,
    a_reviewer_approves_a_held_payment,
    a_reviewer_declines_a_held_payment_and_its_authorization_is_voided,
    a_held_payment_can_be_voided,
);

fn review(order: &OrderId, approve: bool) -> ReviewPaymentV1 {
    ReviewPaymentV1 {
        order_id: *order,
        approve,
        reviewer: "admin-1".to_owned(),
    }
}

async fn large_amounts_are_held_and_huge_ones_declined_without_asking_the_card(engine: Engine) {
    let mut app = TestApp::spawn(engine).await;
    app.registered("ann", 30 * DAY_MS).await;
    let token = app.card("ann", cards::APPROVED).await;

    let ordinary = order_id();
    app.authorize(&ordinary, "ann", &token, 100_000).await;
    let _: PaymentAuthorizedV1 = app.answer_as().await;

    let large = order_id();
    app.authorize(&large, "ann", &token, 100_001).await;
    let held: PaymentHeldV1 = app.answer_as().await;
    assert_eq!(held.order_id, large);
    assert_eq!(held.reasons, [HoldReason::Amount]);
    let payment = app.payment(&large).await;
    assert_eq!(payment["state"], "held");
    assert_eq!(payment["hold_reasons"], serde_json::json!(["amount"]));
    assert_eq!(
        app.ledger(&large).await,
        [("authorize".to_owned(), 100_001)],
        "a held payment is authorized on the card"
    );

    let huge = order_id();
    app.authorize(&huge, "ann", &token, 1_000_001).await;
    let declined: PaymentDeclinedV1 = app.answer_as().await;
    assert_eq!(declined.reason, DeclineReason::Fraud);
    assert_eq!(
        app.simulator.authorize_attempts(&huge.to_string()),
        0,
        "the card was never asked"
    );
    assert!(app.ledger(&huge).await.is_empty());
}

async fn a_customer_paying_too_often_is_held(engine: Engine) {
    let mut app = TestApp::spawn(engine).await;
    app.registered("ann", 30 * DAY_MS).await;
    app.registered("bob", 30 * DAY_MS).await;
    let token = app.card("ann", cards::APPROVED).await;
    // The default rules allow five payments an hour.
    for _ in 0..5 {
        app.authorize(&order_id(), "ann", &token, 1_000).await;
        let _: PaymentAuthorizedV1 = app.answer_as().await;
    }
    let sixth = order_id();
    app.authorize(&sixth, "ann", &token, 1_000).await;
    let held: PaymentHeldV1 = app.answer_as().await;
    assert_eq!(
        (held.order_id, held.reasons.as_slice()),
        (sixth, [HoldReason::Velocity].as_slice())
    );
    // Other customers are not affected.
    let bobs = app.card("bob", cards::APPROVED).await;
    app.authorize(&order_id(), "bob", &bobs, 1_000).await;
    let _: PaymentAuthorizedV1 = app.answer_as().await;
}

async fn new_and_unknown_accounts_are_held_above_their_limit(engine: Engine) {
    let mut app = TestApp::spawn(engine).await;
    app.registered("old", 2 * DAY_MS).await;
    app.registered("new", 3_600_000).await;
    for (customer, amount, held) in [
        ("stranger", 50_000, None),
        ("stranger", 50_001, Some(vec![HoldReason::AccountAge])),
        ("new", 50_001, Some(vec![HoldReason::AccountAge])),
        ("old", 50_001, None),
        (
            "new",
            150_000,
            Some(vec![HoldReason::Amount, HoldReason::AccountAge]),
        ),
    ] {
        let token = app.card(customer, cards::APPROVED).await;
        let order = order_id();
        app.authorize(&order, customer, &token, amount).await;
        let answer = app.answer().await;
        match held {
            Some(reasons) => {
                let held: PaymentHeldV1 = answer.decode().expect("held");
                assert_eq!(held.reasons, reasons, "{customer} paying {amount}");
            }
            None => {
                let authorized: PaymentAuthorizedV1 = answer
                    .decode()
                    .unwrap_or_else(|_| panic!("{customer} paying {amount}: {}", answer.payload));
                assert_eq!(authorized.order_id, order);
            }
        }
    }
}

async fn a_reviewer_approves_a_held_payment(engine: Engine) {
    let mut app = TestApp::spawn(engine).await;
    let token = app.card("ann", cards::APPROVED).await;
    let order = order_id();
    app.authorize(&order, "ann", &token, 60_000).await;
    let _: PaymentHeldV1 = app.answer_as().await;
    for _ in 0..2 {
        app.send(&review(&order, true)).await;
        let approved: PaymentAuthorizedV1 = app.answer_as().await;
        assert_eq!(approved.order_id, order);
    }
    assert_eq!(app.payment(&order).await["state"], "authorized");
    // A later contrary decision changes nothing.
    app.send(&review(&order, false)).await;
    let _: PaymentAuthorizedV1 = app.answer_as().await;
    app.send(&CapturePaymentV1 { order_id: order }).await;
    let captured: PaymentCapturedV1 = app.answer_as().await;
    assert_eq!(captured.amount.amount_minor, 60_000);
    assert_eq!(
        app.ledger(&order).await,
        [
            ("authorize".to_owned(), 60_000),
            ("capture".to_owned(), 60_000)
        ]
    );
}

async fn a_reviewer_declines_a_held_payment_and_its_authorization_is_voided(engine: Engine) {
    let mut app = TestApp::spawn(engine).await;
    let token = app.card("ann", cards::APPROVED).await;
    let order = order_id();
    app.authorize(&order, "ann", &token, 60_000).await;
    let _: PaymentHeldV1 = app.answer_as().await;
    for _ in 0..2 {
        app.send(&review(&order, false)).await;
        let declined: PaymentDeclinedV1 = app.answer_as().await;
        assert_eq!(declined.reason, DeclineReason::ReviewDeclined);
    }
    let payment = app.payment(&order).await;
    assert_eq!(payment["state"], "declined");
    assert_eq!(payment["voided"]["amount_minor"], 60_000);
    assert_eq!(
        app.ledger(&order).await,
        [
            ("authorize".to_owned(), 60_000),
            ("void".to_owned(), 60_000)
        ]
    );
    app.send(&review(&order, true)).await;
    let still: PaymentDeclinedV1 = app.answer_as().await;
    assert_eq!(
        still.reason,
        DeclineReason::ReviewDeclined,
        "a decision is final"
    );
    app.send(&CapturePaymentV1 { order_id: order }).await;
    let _: PaymentDeclinedV1 = app.answer_as().await;
    assert_eq!(app.ledger(&order).await.len(), 2, "nothing captured");
}

async fn a_held_payment_can_be_voided(engine: Engine) {
    let mut app = TestApp::spawn(engine).await;
    let token = app.card("ann", cards::APPROVED).await;
    let order = order_id();
    app.authorize(&order, "ann", &token, 60_000).await;
    let _: PaymentHeldV1 = app.answer_as().await;
    // The saga's review deadline passed: it cancels the order.
    app.send(&VoidPaymentV1 { order_id: order }).await;
    let _: PaymentVoidedV1 = app.answer_as().await;
    app.send(&review(&order, true)).await;
    let declined: PaymentDeclinedV1 = app.answer_as().await;
    assert_eq!(
        declined.reason,
        DeclineReason::Voided,
        "a late approval finds it voided"
    );
    assert_eq!(
        app.ledger(&order).await,
        [
            ("authorize".to_owned(), 60_000),
            ("void".to_owned(), 60_000)
        ]
    );
}

/// Ten payments of one customer arrive together, and several consumers handle them at
/// once: each may miss the others when it decides, but recording them one at a time
/// catches it, so no more than the rule's five go through without review.
async fn payments_arriving_at_once_are_counted_one_after_the_other(engine: Engine) {
    use contracts::messaging::Message as _;

    let mut app = TestApp::spawn(engine).await;
    app.registered("ann", 30 * DAY_MS).await;
    let token = app.card("ann", cards::APPROVED).await;
    for _ in 0..10 {
        app.authorize(&order_id(), "ann", &token, 1_000).await;
    }
    let (mut authorized, mut held) = (0, 0);
    for _ in 0..10 {
        let answer = app.answer().await;
        match answer.kind.as_str() {
            PaymentAuthorizedV1::TYPE => authorized += 1,
            PaymentHeldV1::TYPE => held += 1,
            other => panic!("unexpected answer {other}"),
        }
    }
    assert_eq!(authorized + held, 10);
    assert!(authorized <= 5, "{authorized} went through unreviewed");
}
