//! Saga deadlines, driven by the deadline worker's step function with a chosen clock:
//! a missed answer re-sends its command, repeated misses compensate and cancel, and a
//! payment held past its stock's hold is cancelled.

use contracts::messaging::Message as _;
use contracts::messaging::inventory::ReleaseReason;
use contracts::messaging::inventory::{ReleaseStockV1, ReserveStockV1};
use contracts::messaging::orders::OrderCancelledV1;
use contracts::messaging::payments::HoldReason;
use contracts::messaging::payments::{AuthorizePaymentV1, VoidPaymentV1};
use orders::domain::Status;
use orders::ops;
use orders::saga::Input;
use test_support::Engine;

use crate::helpers::{HOUR_MS, Orders, T0};

test_support::on_both_engines!(
    a_missed_answer_resends_then_gives_up_and_compensates,
    a_payment_held_past_the_stock_hold_is_cancelled,
);

async fn a_missed_answer_resends_then_gives_up_and_compensates(engine: Engine) {
    let orders = Orders::new(engine).await;
    let id = orders.place("customer-1", T0).await;
    let deadlines = &orders.settings.deadlines;
    let run_due = |now| ops::run_due(&orders.db, &orders.settings, now);

    let first_due = T0 + deadlines.step_ms;
    assert_eq!(run_due(first_due - 1).await.expect("ran"), 0, "not yet due");

    // Inventory never answers: each deadline re-sends the reservation.
    let mut now = T0;
    for attempt in 1..=deadlines.max_attempts {
        now += HOUR_MS;
        assert_eq!(run_due(now).await.expect("ran"), 1, "attempt {attempt}");
        assert_eq!(
            run_due(now).await.expect("ran"),
            0,
            "one re-send per deadline"
        );
        let order = orders.load(&id).await;
        assert_eq!((order.status, order.attempts), (Status::Placed, attempt));
    }
    let reservations: Vec<ReserveStockV1> = orders
        .outbox()
        .await
        .iter()
        .filter(|envelope| envelope.kind == ReserveStockV1::TYPE)
        .map(|envelope| envelope.decode().expect("a reservation"))
        .collect();
    let expected = 1 + usize::try_from(deadlines.max_attempts).expect("small");
    assert_eq!(reservations.len(), expected, "the first and every re-send");
    assert!(
        reservations.iter().all(|sent| *sent == reservations[0]),
        "a re-send repeats the same command"
    );
    let (_, timeline) = orders.view(&id).await;
    assert_eq!(timeline.len(), expected);
    assert_eq!(timeline[1].event, "command_resent");
    assert_eq!(timeline[1].status, Status::Placed);
    assert_eq!(timeline[1].at_ms, T0 + HOUR_MS);
    assert!(
        timeline[1].detail.contains("reserve_stock"),
        "{}",
        timeline[1].detail
    );

    // One miss too many: the order gives up, releasing whatever inventory may hold.
    now += HOUR_MS;
    assert_eq!(run_due(now).await.expect("ran"), 1);
    let order = orders.load(&id).await;
    assert_eq!(order.status, Status::Cancelling);
    assert_eq!(
        order.cancel_reason,
        Some(contracts::messaging::orders::CancelReason::DeadlineMissed)
    );
    let sent = orders.sent_about(&id).await;
    assert_eq!(
        sent.last().map(String::as_str),
        Some(ReleaseStockV1::TYPE),
        "{sent:?}"
    );
    assert!(
        !sent.iter().any(|kind| kind == VoidPaymentV1::TYPE),
        "no payment was asked for, so none is voided"
    );

    let reason = ReleaseReason::Released;
    orders
        .feed(&id, Input::StockReleased { reason }, now + 1)
        .await;
    let order = orders.load(&id).await;
    assert_eq!(order.status, Status::Cancelled);
    let cancelled = orders.outbox().await.pop().expect("a message");
    assert_eq!(cancelled.kind, OrderCancelledV1::TYPE);
    let cancelled: OrderCancelledV1 = cancelled.decode().expect("a cancellation");
    assert_eq!(
        (cancelled.order_id.to_string(), cancelled.reason.as_str()),
        (id.clone(), "deadline_missed")
    );
    let (view, _) = orders.view(&id).await;
    assert_eq!(view.status, Status::Cancelled);
    assert_eq!(view.reason.as_deref(), Some("deadline_missed"));

    // A finished saga has no deadline left.
    assert_eq!(run_due(now + 100 * HOUR_MS).await.expect("ran"), 0);
}

async fn a_payment_held_past_the_stock_hold_is_cancelled(engine: Engine) {
    let orders = Orders::new(engine).await;
    let id = orders.place("customer-1", T0).await;
    let expires_at_ms = T0 + 15 * 60_000;
    orders
        .feed(&id, Input::StockReserved { expires_at_ms }, T0 + 1)
        .await;
    let reasons = vec![HoldReason::Amount];
    orders
        .feed(&id, Input::PaymentHeld { reasons }, T0 + 2)
        .await;
    assert_eq!(orders.load(&id).await.status, Status::PaymentHeld);

    // Waiting for an admin is not a missed answer: nothing is re-sent while the hold
    // lasts, however long past the step's deadline.
    let expired = expires_at_ms + orders.settings.deadlines.held_grace_ms;
    let run_due = |now| ops::run_due(&orders.db, &orders.settings, now);
    assert_eq!(run_due(expired - 1).await.expect("ran"), 0);
    let before = orders.sent_about(&id).await;
    assert_eq!(before, [ReserveStockV1::TYPE, AuthorizePaymentV1::TYPE]);

    assert_eq!(run_due(expired).await.expect("ran"), 1);
    let order = orders.load(&id).await;
    assert_eq!(order.status, Status::Cancelling);
    assert_eq!(
        order.cancel_reason,
        Some(contracts::messaging::orders::CancelReason::ReservationExpired)
    );
    let sent = orders.sent_about(&id).await;
    assert_eq!(
        sent[before.len()..],
        [ReleaseStockV1::TYPE, VoidPaymentV1::TYPE]
    );

    // Both compensations answered, in either order, end the order.
    orders.feed(&id, Input::PaymentVoided, expired + 1).await;
    assert_eq!(orders.load(&id).await.status, Status::Cancelling);
    let reason = ReleaseReason::Released;
    orders
        .feed(&id, Input::StockReleased { reason }, expired + 2)
        .await;
    let (view, timeline) = orders.view(&id).await;
    assert_eq!(view.status, Status::Cancelled);
    assert_eq!(view.reason.as_deref(), Some("reservation_expired"));
    assert_eq!(
        Orders::timeline_events(&timeline),
        [
            "placed",
            "stock_reserved",
            "payment_held",
            "cancellation_started",
            "payment_voided",
            "stock_released",
            "cancelled"
        ]
    );
    assert_eq!(
        orders.sent_about(&id).await.last().map(String::as_str),
        Some(OrderCancelledV1::TYPE)
    );
}
