//! The checkout saga's commands over the bus: every path, repeats and duplicates, the
//! processor's declines, transient failures, slowness and refusals for good.

use std::sync::Arc;
use std::time::Duration;

use contracts::Money;
use contracts::OrderId;
use contracts::messaging::payments::DeclineReason;
use contracts::messaging::payments::{
    CapturePaymentV1, PaymentAuthorizedV1, PaymentCapturedV1, PaymentDeclinedV1, PaymentFailedV1,
    PaymentRefundedV1, PaymentVoidedV1, RefundPaymentV1, VoidPaymentV1,
};
use futures_util::future::BoxFuture;
use payments::cards::{self, Card};
use payments::processor::{Authorization, Capture, CardProcessor, CardRef, ProcessorError, Refund};
use payments::{Simulator, commands, ops};
use platform::inbox::Outcome;
use platform::outbox::{self, Origin};
use test_support::Engine;
use test_support::security::assert_hidden_from_others;
use tokio::sync::Notify;

use crate::helpers::{self, TestApp, authorization, eur, order_id};

test_support::on_both_engines!(
    an_order_is_authorized_captured_and_refunded,
    the_card_and_the_method_decide_declines,
    a_transient_failure_is_retried_and_authorizes_once,
    the_slow_card_is_authorized,
    the_processor_is_asked_outside_any_transaction,
    a_void_before_the_authorization_leaves_a_tombstone_and_voids_what_it_overtook,
    voids_cancel_authorizations_but_never_captures,
    repeated_commands_get_the_first_answer_and_move_no_money,
    a_redelivered_message_has_no_second_effect,
    late_or_misplaced_commands_move_nothing,
    a_payment_is_shown_to_its_customer_and_admins_only,
    refusals_for_good_end_in_a_failure_not_a_retry,
);

fn capture(order: &OrderId) -> CapturePaymentV1 {
    CapturePaymentV1 { order_id: *order }
}

fn void(order: &OrderId) -> VoidPaymentV1 {
    VoidPaymentV1 { order_id: *order }
}

fn refund(order: &OrderId) -> RefundPaymentV1 {
    RefundPaymentV1 { order_id: *order }
}

fn kinds(ledger: &[(String, i64)]) -> Vec<&str> {
    ledger.iter().map(|(kind, _)| kind.as_str()).collect()
}

async fn an_order_is_authorized_captured_and_refunded(engine: Engine) {
    let mut app = TestApp::spawn(engine).await;
    let token = app.card("ann", cards::APPROVED).await;
    let order = order_id();
    app.authorize(&order, "ann", &token, 4_250).await;
    let authorized: PaymentAuthorizedV1 = app.answer_as().await;
    assert_eq!(
        authorized,
        PaymentAuthorizedV1 {
            order_id: order,
            amount: eur(4_250)
        }
    );
    let payment = app.payment(&order).await;
    assert_eq!(payment["state"], "authorized");
    assert_eq!(payment["payment_method"], token.as_str());
    assert_eq!(payment["authorized"]["amount_minor"], 4_250);

    app.send(&capture(&order)).await;
    let captured: PaymentCapturedV1 = app.answer_as().await;
    assert_eq!(captured.amount, eur(4_250));
    let payment = app.payment(&order).await;
    assert_eq!(payment["state"], "captured");
    assert_eq!(payment["captured"]["amount_minor"], 4_250);

    app.send(&refund(&order)).await;
    let refunded: PaymentRefundedV1 = app.answer_as().await;
    assert_eq!(refunded.amount, eur(4_250));
    let payment = app.payment(&order).await;
    assert_eq!(payment["state"], "refunded");
    assert_eq!(payment["refunded"]["amount_minor"], 4_250);
    assert_eq!(
        app.ledger(&order).await,
        [
            ("authorize".to_owned(), 4_250),
            ("capture".to_owned(), 4_250),
            ("refund".to_owned(), 4_250)
        ]
    );
    let metrics = app.metrics().await;
    for counter in [
        "payments_authorized_total",
        "payments_captured_minor_total{currency=\"EUR\"}",
        "payments_refunded_minor_total{currency=\"EUR\"}",
    ] {
        assert!(metrics.contains(counter), "{counter} is not measured");
    }
}

async fn the_card_and_the_method_decide_declines(engine: Engine) {
    let mut app = TestApp::spawn(engine).await;
    let declined = app.card("ann", cards::DECLINED).await;
    let broke = app.card("ann", cards::INSUFFICIENT_FUNDS).await;
    let bobs = app.card("bob", cards::APPROVED).await;
    let deleted = app.card("ann", cards::APPROVED).await;
    let removed = app
        .client
        .delete(app.url(&format!("/methods/{deleted}")))
        .bearer_auth(app.token("ann"))
        .send()
        .await
        .expect("answers");
    assert_eq!(removed.status().as_u16(), 204);
    let cases = [
        (declined.as_str(), "card_declined"),
        (broke.as_str(), "insufficient_funds"),
        (bobs.as_str(), "unknown_payment_method"),
        (deleted.as_str(), "unknown_payment_method"),
        (
            "pm_00000000000000000000000000000000",
            "unknown_payment_method",
        ),
        (cards::APPROVED, "unknown_payment_method"),
    ];
    for (token, reason) in cases {
        let order = order_id();
        app.authorize(&order, "ann", token, 1_000).await;
        let answer: PaymentDeclinedV1 = app.answer_as().await;
        assert_eq!(
            answer,
            PaymentDeclinedV1 {
                order_id: order,
                reason: DeclineReason::parse(reason)
            }
        );
        assert!(app.ledger(&order).await.is_empty(), "no money moved");
        let payment = app.payment(&order).await;
        assert_eq!(payment["state"], "declined");
        assert_eq!(payment["decline_reason"], reason);
        if reason == "unknown_payment_method" {
            assert_eq!(
                payment["payment_method"],
                serde_json::Value::Null,
                "an unknown token is not kept"
            );
            assert_eq!(
                app.simulator.authorize_attempts(&order.to_string()),
                0,
                "the card was never asked"
            );
        }
    }
}

async fn a_transient_failure_is_retried_and_authorizes_once(engine: Engine) {
    let mut app = TestApp::spawn(engine).await;
    let token = app.card("ann", cards::TRANSIENT).await;
    let order = order_id();
    app.authorize(&order, "ann", &token, 999).await;
    // The first two attempts fail at the processor; the command is refused and
    // delivered again with backoff, and the third attempt is approved.
    let authorized: PaymentAuthorizedV1 = app.answer_as().await;
    assert_eq!(authorized.order_id, order);
    assert_eq!(app.simulator.authorize_attempts(&order.to_string()), 3);
    assert_eq!(app.ledger(&order).await, [("authorize".to_owned(), 999)]);
    app.settle().await;
    assert_eq!(app.answers_about(&order).await, 1, "answered once");
}

async fn the_slow_card_is_authorized(engine: Engine) {
    let mut app = TestApp::spawn(engine).await;
    let token = app.card("ann", cards::SLOW).await;
    let order = order_id();
    app.authorize(&order, "ann", &token, 1_500).await;
    let authorized: PaymentAuthorizedV1 = app.answer_as().await;
    assert_eq!(authorized.order_id, order);
    assert_eq!(app.ledger(&order).await, [("authorize".to_owned(), 1_500)]);
}

/// A processor that holds one order's authorization until the test lets it go.
struct Gated {
    simulator: Arc<Simulator>,
    order: String,
    entered: Notify,
    release: Notify,
}

impl CardProcessor for Gated {
    fn tokenize<'a>(&'a self, card: &'a Card) -> BoxFuture<'a, Result<CardRef, ProcessorError>> {
        self.simulator.tokenize(card)
    }

    fn authorize<'a>(
        &'a self,
        idempotency_key: &'a str,
        card: &'a CardRef,
        amount: Money,
    ) -> BoxFuture<'a, Result<Authorization, ProcessorError>> {
        Box::pin(async move {
            if idempotency_key == self.order {
                self.entered.notify_one();
                self.release.notified().await;
            }
            self.simulator
                .authorize(idempotency_key, card, amount)
                .await
        })
    }

    fn capture<'a>(
        &'a self,
        idempotency_key: &'a str,
        authorization: &'a str,
        amount: Money,
    ) -> BoxFuture<'a, Result<Capture, ProcessorError>> {
        self.simulator
            .capture(idempotency_key, authorization, amount)
    }

    fn void<'a>(
        &'a self,
        idempotency_key: &'a str,
        authorization: &'a str,
    ) -> BoxFuture<'a, Result<(), ProcessorError>> {
        self.simulator.void(idempotency_key, authorization)
    }

    fn refund<'a>(
        &'a self,
        idempotency_key: &'a str,
        capture: &'a str,
        amount: Money,
    ) -> BoxFuture<'a, Result<Refund, ProcessorError>> {
        self.simulator.refund(idempotency_key, capture, amount)
    }
}

async fn the_processor_is_asked_outside_any_transaction(engine: Engine) {
    let simulator = helpers::simulator();
    let stuck = order_id();
    let gate = Arc::new(Gated {
        simulator: simulator.clone(),
        order: stuck.to_string(),
        entered: Notify::new(),
        release: Notify::new(),
    });
    let mut app = TestApp::spawn_with(engine, simulator, gate.clone()).await;
    let token = app.card("ann", cards::APPROVED).await;
    app.authorize(&stuck, "ann", &token, 1_000).await;
    tokio::time::timeout(Duration::from_secs(15), gate.entered.notified())
        .await
        .expect("the processor was asked");
    // While that card is with the processor, payments' database takes writes (a
    // transaction held open would keep SQLite's write lock and time these out) and
    // other orders are paid.
    let other_card = app.card("bob", "5555555555554444").await;
    let other = order_id();
    app.authorize(&other, "bob", &other_card, 2_000).await;
    let first: PaymentAuthorizedV1 = app.answer_as().await;
    assert_eq!(first.order_id, other, "the other order went first");
    gate.release.notify_one();
    let second: PaymentAuthorizedV1 = app.answer_as().await;
    assert_eq!(second.order_id, stuck);
    assert_eq!(app.ledger(&stuck).await, [("authorize".to_owned(), 1_000)]);
}

async fn a_void_before_the_authorization_leaves_a_tombstone_and_voids_what_it_overtook(
    engine: Engine,
) {
    let mut app = TestApp::spawn(engine).await;
    let token = app.card("ann", cards::APPROVED).await;
    let order = order_id();
    // The saga gave up on the order before its authorization arrived (reordered, or
    // re-sent after the void).
    app.send(&void(&order)).await;
    let voided: PaymentVoidedV1 = app.answer_as().await;
    assert_eq!(voided.order_id, order);
    app.authorize(&order, "ann", &token, 1_000).await;
    let declined: PaymentDeclinedV1 = app.answer_as().await;
    assert_eq!(declined.reason, DeclineReason::Voided);
    // The void may have overtaken an authorization still at the processor: asked again
    // under the same key, whatever it authorized is voided, and nothing is recorded.
    assert_eq!(app.simulator.authorize_attempts(&order.to_string()), 1);
    assert!(app.simulator.was_voided(&format!("{order}:void")));
    assert!(app.ledger(&order).await.is_empty());
    let payment = app.payment(&order).await;
    assert_eq!(payment["state"], "voided");
    assert_eq!(payment["amount"], serde_json::Value::Null);
    app.get_json(&format!("/orders/{order}"), &app.token("ann"), 404)
        .await;
    app.send(&void(&order)).await;
    let again: PaymentVoidedV1 = app.answer_as().await;
    assert_eq!(again.order_id, order);
}

async fn voids_cancel_authorizations_but_never_captures(engine: Engine) {
    let mut app = TestApp::spawn(engine).await;
    let token = app.card("ann", cards::APPROVED).await;
    let authorized = order_id();
    app.authorize(&authorized, "ann", &token, 700).await;
    let _: PaymentAuthorizedV1 = app.answer_as().await;
    app.send(&void(&authorized)).await;
    let _: PaymentVoidedV1 = app.answer_as().await;
    assert_eq!(app.payment(&authorized).await["state"], "voided");
    assert_eq!(
        app.ledger(&authorized).await,
        [("authorize".to_owned(), 700), ("void".to_owned(), 700)]
    );
    // A voided payment cannot be captured; a late authorization learns it is voided.
    app.send(&capture(&authorized)).await;
    let _: PaymentVoidedV1 = app.answer_as().await;
    app.authorize(&authorized, "ann", &token, 700).await;
    let declined: PaymentDeclinedV1 = app.answer_as().await;
    assert_eq!(declined.reason, DeclineReason::Voided);

    let declined_card = app.card("ann", cards::DECLINED).await;
    let declined = order_id();
    app.authorize(&declined, "ann", &declined_card, 700).await;
    let _: PaymentDeclinedV1 = app.answer_as().await;
    app.send(&void(&declined)).await;
    let _: PaymentVoidedV1 = app.answer_as().await;
    assert_eq!(
        app.payment(&declined).await["state"],
        "declined",
        "a declined payment stays declined"
    );
    assert!(app.ledger(&declined).await.is_empty());

    let captured = order_id();
    app.authorize(&captured, "ann", &token, 900).await;
    let _: PaymentAuthorizedV1 = app.answer_as().await;
    app.send(&capture(&captured)).await;
    let _: PaymentCapturedV1 = app.answer_as().await;
    app.send(&void(&captured)).await;
    // Not voided: the saga must refund a captured payment, and is told it is captured.
    let still: PaymentCapturedV1 = app.answer_as().await;
    assert_eq!(still.amount, eur(900));
    assert_eq!(app.payment(&captured).await["state"], "captured");
    assert_eq!(
        kinds(&app.ledger(&captured).await),
        ["authorize", "capture"]
    );
}

async fn repeated_commands_get_the_first_answer_and_move_no_money(engine: Engine) {
    let mut app = TestApp::spawn(engine).await;
    let token = app.card("ann", cards::APPROVED).await;
    let order = order_id();
    let authorize = authorization(&order, "ann", &token, 1_234);
    // The saga re-sends a command when an answer is slow: a new message, the same
    // command, and the same answer.
    for _ in 0..2 {
        app.send(&authorize).await;
        let answer: PaymentAuthorizedV1 = app.answer_as().await;
        assert_eq!(answer.amount, eur(1_234));
    }
    for _ in 0..2 {
        app.send(&capture(&order)).await;
        let answer: PaymentCapturedV1 = app.answer_as().await;
        assert_eq!(answer.amount, eur(1_234));
    }
    for _ in 0..2 {
        app.send(&refund(&order)).await;
        let answer: PaymentRefundedV1 = app.answer_as().await;
        assert_eq!(answer.amount, eur(1_234));
    }
    // Authorizing again after all that repeats the authorization's outcome.
    app.send(&authorize).await;
    let answer: PaymentAuthorizedV1 = app.answer_as().await;
    assert_eq!(answer.order_id, order);
    assert_eq!(
        kinds(&app.ledger(&order).await),
        ["authorize", "capture", "refund"],
        "each movement once"
    );
    assert_eq!(
        app.simulator.authorize_attempts(&order.to_string()),
        1,
        "the card was asked once"
    );

    let voided = order_id();
    app.authorize(&voided, "ann", &token, 500).await;
    let _: PaymentAuthorizedV1 = app.answer_as().await;
    for _ in 0..2 {
        app.send(&void(&voided)).await;
        let _: PaymentVoidedV1 = app.answer_as().await;
    }
    assert_eq!(kinds(&app.ledger(&voided).await), ["authorize", "void"]);

    // Concurrent copies of one authorization: one payment, one authorization.
    let raced = order_id();
    let command = authorization(&raced, "ann", &token, 800);
    for _ in 0..4 {
        app.send(&command).await;
    }
    for _ in 0..4 {
        let answer: PaymentAuthorizedV1 = app.answer_as().await;
        assert_eq!(answer.order_id, raced);
    }
    assert_eq!(app.ledger(&raced).await, [("authorize".to_owned(), 800)]);
}

async fn a_redelivered_message_has_no_second_effect(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let token = app.card("ann", cards::APPROVED).await;
    let payments = ops::Payments {
        db: app.db.clone(),
        processor: app.simulator.clone(),
        rules: payments::fraud::FraudRules::default(),
    };
    let subscription = commands::subscription().name;
    let order = order_id();
    let origin = Origin::default();
    // The bus delivers a message again when its acknowledgement was lost: the same
    // message id, handled twice by the consumer.
    let messages = [
        outbox::envelope("test", &authorization(&order, "ann", &token, 300), &origin),
        outbox::envelope("test", &capture(&order), &origin),
        outbox::envelope("test", &refund(&order), &origin),
    ];
    for envelope in messages {
        let envelope = envelope.expect("an envelope");
        let first = commands::handle(&payments, &subscription, &envelope)
            .await
            .expect("handled");
        assert_eq!(first, Outcome::Applied, "{}", envelope.kind);
        let again = commands::handle(&payments, &subscription, &envelope)
            .await
            .expect("handled");
        assert_eq!(again, Outcome::Duplicate, "{}", envelope.kind);
    }
    assert_eq!(
        kinds(&app.ledger(&order).await),
        ["authorize", "capture", "refund"]
    );
    assert_eq!(app.answers_about(&order).await, 3, "one answer each");
    assert_eq!(app.simulator.authorize_attempts(&order.to_string()), 1);
}

async fn late_or_misplaced_commands_move_nothing(engine: Engine) {
    let mut app = TestApp::spawn(engine).await;
    let token = app.card("ann", cards::APPROVED).await;
    // Commands about an order payments never saw: nothing to capture or refund.
    let unknown = order_id();
    app.send(&capture(&unknown)).await;
    app.send(&refund(&unknown)).await;
    app.send(&payments_review(&unknown, true)).await;
    app.settle().await;
    assert_eq!(app.answers_about(&unknown).await, 0);
    assert!(app.ledger(&unknown).await.is_empty());

    // A refund before the capture moves nothing and says where the payment stands.
    let order = order_id();
    app.authorize(&order, "ann", &token, 640).await;
    let _: PaymentAuthorizedV1 = app.answer_as().await;
    app.send(&refund(&order)).await;
    let standing: PaymentAuthorizedV1 = app.answer_as().await;
    assert_eq!(standing.order_id, order);
    assert_eq!(kinds(&app.ledger(&order).await), ["authorize"]);

    // A capture of a declined payment takes nothing.
    let declined_card = app.card("ann", cards::INSUFFICIENT_FUNDS).await;
    let declined = order_id();
    app.authorize(&declined, "ann", &declined_card, 640).await;
    let _: PaymentDeclinedV1 = app.answer_as().await;
    app.send(&capture(&declined)).await;
    let still: PaymentDeclinedV1 = app.answer_as().await;
    assert_eq!(still.reason, DeclineReason::InsufficientFunds);
    assert!(app.ledger(&declined).await.is_empty());

    // A command of a type this version does not know is acknowledged and ignored.
    let future = contracts::messaging::Envelope {
        kind: "payments.cmd.split_payment.v1".to_owned(),
        ..outbox::envelope("test", &capture(&order), &Origin::default()).expect("an envelope")
    };
    platform::bus::Bus::publish(app.bus.as_ref(), &future)
        .await
        .expect("published");
    app.settle().await;
    assert_eq!(kinds(&app.ledger(&order).await), ["authorize"]);
}

fn payments_review(
    order: &OrderId,
    approve: bool,
) -> contracts::messaging::payments::ReviewPaymentV1 {
    contracts::messaging::payments::ReviewPaymentV1 {
        order_id: *order,
        approve,
        reviewer: "admin-1".to_owned(),
    }
}

async fn a_payment_is_shown_to_its_customer_and_admins_only(engine: Engine) {
    let mut app = TestApp::spawn(engine).await;
    let token = app.card("ann", cards::APPROVED).await;
    let order = order_id();
    app.authorize(&order, "ann", &token, 2_500).await;
    let _: PaymentAuthorizedV1 = app.answer_as().await;
    let url = app.url(&format!("/orders/{order}"));
    let (ann, bob) = (app.token("ann"), app.token("bob"));
    assert_hidden_from_others(&app.client, &url, &ann, &bob).await;
    let seen = app.get_json(&format!("/orders/{order}"), &ann, 200).await;
    assert_eq!(seen["amount"]["amount_minor"], 2_500);
    assert_eq!(seen["captured"]["amount_minor"], 0);
    assert_eq!(seen["state"], "authorized");
    let admin = app.payment(&order).await;
    assert_eq!(admin, seen, "admins see every payment");
    app.get_json(&format!("/orders/{}", order_id()), &ann, 404)
        .await;
    let bad = app.get_json("/orders/not%20an%20id", &ann, 400).await;
    assert_eq!(bad["errors"][0]["field"], "order_id");
    let anonymous = app.client.get(&url).send().await.expect("answers");
    assert_eq!(anonymous.status().as_u16(), 401);
}

/// A capture, void or refund the processor refuses for good is answered at once, not
/// retried: the refused capture voids the payment and releases the authorized amount
/// in the ledger, the refused void counts as done, the refused refund leaves the money
/// captured; each is counted for the operators' alert.
async fn refusals_for_good_end_in_a_failure_not_a_retry(engine: Engine) {
    let mut app = TestApp::spawn(engine).await;
    let lapsing = app.card("ann", cards::LAPSING).await;
    let order = order_id();
    app.authorize(&order, "ann", &lapsing, 1_200).await;
    let _: PaymentAuthorizedV1 = app.answer_as().await;
    for _ in 0..2 {
        app.send(&capture(&order)).await;
        let failed: PaymentFailedV1 = app.answer_as().await;
        assert_eq!(
            (failed.operation.as_str(), failed.reason.as_str()),
            ("capture", "authorization_lapsed")
        );
    }
    assert_eq!(app.payment(&order).await["state"], "voided");
    assert_eq!(
        app.ledger(&order).await,
        [("authorize".to_owned(), 1_200), ("void".to_owned(), 1_200)]
    );

    let cancelled = order_id();
    app.authorize(&cancelled, "ann", &lapsing, 800).await;
    let _: PaymentAuthorizedV1 = app.answer_as().await;
    app.send(&void(&cancelled)).await;
    let _: PaymentVoidedV1 = app.answer_as().await;
    assert_eq!(app.payment(&cancelled).await["state"], "voided");

    let closing = app.card("ann", cards::REFUND_REFUSED).await;
    let refused = order_id();
    app.authorize(&refused, "ann", &closing, 900).await;
    let _: PaymentAuthorizedV1 = app.answer_as().await;
    app.send(&capture(&refused)).await;
    let _: PaymentCapturedV1 = app.answer_as().await;
    app.send(&refund(&refused)).await;
    let failed: PaymentFailedV1 = app.answer_as().await;
    assert_eq!(
        (failed.operation.as_str(), failed.reason.as_str()),
        ("refund", "card_closed")
    );
    assert_eq!(app.payment(&refused).await["state"], "captured");
    assert_eq!(kinds(&app.ledger(&refused).await), ["authorize", "capture"]);

    let metrics = app.metrics().await;
    for refusal in [
        "operation=\"capture\",reason=\"authorization_lapsed\"",
        "operation=\"void\",reason=\"authorization_lapsed\"",
        "operation=\"refund\",reason=\"card_closed\"",
    ] {
        assert!(
            metrics
                .lines()
                .any(|line| line.starts_with("payments_processor_refusals_total")
                    && line.contains(refusal)),
            "{refusal} is not counted"
        );
    }
}
