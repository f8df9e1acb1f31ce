//! The event store and its read model, driven through the use cases: the happy path
//! to confirmed with exactly the expected messages, the timeline, a rebuilt read model
//! equal to the inline one, duplicate answers, and two writers of one order.

use contracts::ProductId;
use contracts::messaging::inventory::ReleaseReason;
use contracts::messaging::inventory::{CommitStockV1, ReserveStockV1, StockReservedV1};
use contracts::messaging::orders::OrderConfirmedV1;
use contracts::messaging::payments::DeclineReason;
use contracts::messaging::payments::{AuthorizePaymentV1, CapturePaymentV1};
use contracts::messaging::{Envelope, Message as _};
use orders::domain::{OrderEvent, Status};
use orders::events::{self, Answers};
use orders::ops::{self, RequestError};
use orders::projection;
use orders::saga::{Input, Refusal};
use orders::store;
use platform::inbox::{self, Outcome};
use platform::outbox;
use test_support::Engine;

use crate::helpers::{HOUR_MS, Orders, T0, basket, customer_id, eur, origin};

test_support::on_both_engines!(
    answers_drive_an_order_to_confirmed_with_exactly_the_expected_messages,
    the_rebuilt_read_model_equals_the_inline_one,
    duplicate_answers_append_nothing,
    of_two_writers_of_one_version_exactly_one_commits,
    racing_duplicate_answers_are_recorded_once,
);

/// The answers of a checkout that goes through, in order.
fn happy_answers() -> Vec<Input> {
    vec![
        Input::StockReserved {
            expires_at_ms: T0 + 15 * 60_000,
        },
        Input::PaymentAuthorized,
        Input::StockCommitted,
        Input::PaymentCaptured { amount: eur(3890) },
    ]
}

async fn answers_drive_an_order_to_confirmed_with_exactly_the_expected_messages(engine: Engine) {
    let orders = Orders::new(engine).await;
    let id = orders.place("customer-1", T0).await;
    for (at, answer) in (T0 + 1..).zip(happy_answers()) {
        orders.feed(&id, answer, at).await;
    }

    let order = orders.load(&id).await;
    assert_eq!(order.status, Status::Confirmed);
    assert_eq!(order.version, 5);
    assert_eq!(
        orders.settings.deadlines.due(&order),
        None,
        "nothing is awaited"
    );

    let sent: Vec<Envelope> = orders.outbox().await;
    let kinds: Vec<&str> = sent.iter().map(|envelope| envelope.kind.as_str()).collect();
    assert_eq!(
        kinds,
        [
            ReserveStockV1::TYPE,
            AuthorizePaymentV1::TYPE,
            CommitStockV1::TYPE,
            CapturePaymentV1::TYPE,
            OrderConfirmedV1::TYPE,
        ]
    );
    for envelope in &sent {
        assert_eq!(envelope.source, "orders");
        assert_eq!(envelope.correlation_id, origin().correlation_id);
    }
    let reserve: ReserveStockV1 = sent[0].decode().expect("a reservation");
    assert_eq!(reserve.order_id.to_string(), id);
    let reserved: Vec<(ProductId, i64)> = reserve
        .lines
        .iter()
        .map(|line| (line.product_id, line.quantity))
        .collect();
    assert_eq!(
        reserved,
        [
            (test_support::product_id("product-mug"), 2),
            (test_support::product_id("product-notebook"), 1)
        ]
    );
    assert_eq!(reserve.hold_secs, orders.settings.reservation_hold_secs);
    let authorize: AuthorizePaymentV1 = sent[1].decode().expect("an authorization");
    assert_eq!(
        (
            authorize.customer_id,
            authorize.payment_method.as_str(),
            authorize.amount
        ),
        (test_support::user_id("customer-1"), "pm_card", eur(3890))
    );
    let confirmed: OrderConfirmedV1 = sent[4].decode().expect("a confirmation");
    assert_eq!(confirmed.order_id.to_string(), id);
    assert_eq!(confirmed.customer_id, test_support::user_id("customer-1"));
    assert_eq!(confirmed.total, eur(3890));
    assert_eq!(confirmed.lines, basket().lines);

    let (view, timeline) = orders.view(&id).await;
    assert_eq!(view.status, Status::Confirmed);
    assert_eq!(view.customer_id, customer_id("customer-1"));
    assert_eq!(view.total, eur(3890));
    assert_eq!(view.lines, basket().lines);
    assert_eq!(view.reason, None);
    assert_eq!((view.placed_at_ms, view.updated_at_ms), (T0, T0 + 4));
    assert_eq!(
        Orders::timeline_events(&timeline),
        [
            "placed",
            "stock_reserved",
            "payment_authorized",
            "stock_committed",
            "payment_captured"
        ]
    );
    let statuses: Vec<Status> = timeline.iter().map(|entry| entry.status).collect();
    assert_eq!(
        statuses,
        [
            Status::Placed,
            Status::StockReserved,
            Status::Paid,
            Status::Paid,
            Status::Confirmed
        ]
    );
    let times: Vec<i64> = timeline.iter().map(|entry| entry.at_ms).collect();
    assert_eq!(times, [T0, T0 + 1, T0 + 2, T0 + 3, T0 + 4]);
    assert_eq!(timeline[0].detail, "Order placed: 2 line(s), 38.90 EUR");
    assert!(
        timeline[4].detail.contains("captured"),
        "{}",
        timeline[4].detail
    );
}

async fn the_rebuilt_read_model_equals_the_inline_one(engine: Engine) {
    let orders = Orders::new(engine).await;
    // One order to each end the saga knows, and one still under way with a re-sent
    // command, so the rebuild replays every kind of history.
    let confirmed = orders.place("customer-1", T0).await;
    for (at, answer) in (T0 + 1..).zip(happy_answers()) {
        orders.feed(&confirmed, answer, at).await;
    }
    let rejected = orders.place("customer-2", T0 + 10).await;
    let unavailable = vec![test_support::product_id("product-mug")];
    orders
        .feed(&rejected, Input::StockRejected { unavailable }, T0 + 11)
        .await;
    let declined = orders.place("customer-1", T0 + 20).await;
    let expires_at_ms = T0 + HOUR_MS;
    orders
        .feed(&declined, Input::StockReserved { expires_at_ms }, T0 + 21)
        .await;
    let reason = DeclineReason::CardDeclined;
    orders
        .feed(&declined, Input::PaymentDeclined { reason }, T0 + 22)
        .await;
    let reason = ReleaseReason::Released;
    orders
        .feed(&declined, Input::StockReleased { reason }, T0 + 23)
        .await;
    let cancelled = orders.place("customer-3", T0 + 30).await;
    orders
        .feed(&cancelled, Input::StockReserved { expires_at_ms }, T0 + 31)
        .await;
    let after = ops::request(
        &orders.db,
        &cancelled,
        Some(customer_id("customer-3").as_str()),
        Input::CustomerCancel,
        &origin(),
        &orders.settings,
        T0 + 32,
    )
    .await
    .expect("cancellable before payment");
    assert_eq!(after.status, Status::Cancelling);
    orders.feed(&cancelled, Input::PaymentVoided, T0 + 33).await;
    let reason = ReleaseReason::Released;
    orders
        .feed(&cancelled, Input::StockReleased { reason }, T0 + 34)
        .await;
    let waiting = orders.place("customer-4", T0 + 40).await;
    assert_eq!(
        ops::run_due(&orders.db, &orders.settings, T0 + HOUR_MS)
            .await
            .expect("ran"),
        1,
        "only the waiting order has a deadline"
    );

    let inline = orders.read_model().await;
    let statuses: Vec<(&str, Status, Option<&str>)> = inline
        .iter()
        .map(|(view, _)| (view.id.as_str(), view.status, view.reason.as_deref()))
        .collect();
    assert_eq!(
        statuses,
        [
            (waiting.as_str(), Status::Placed, None),
            (
                cancelled.as_str(),
                Status::Cancelled,
                Some("customer_cancelled")
            ),
            (
                declined.as_str(),
                Status::Cancelled,
                Some("payment_declined")
            ),
            (rejected.as_str(), Status::Rejected, Some("out_of_stock")),
            (confirmed.as_str(), Status::Confirmed, None),
        ],
        "newest first"
    );
    let (_, timeline) = &inline[2];
    assert_eq!(
        Orders::timeline_events(timeline),
        [
            "placed",
            "stock_reserved",
            "payment_declined",
            "cancellation_started",
            "stock_released",
            "cancelled"
        ]
    );
    assert_eq!(
        timeline.last().map(|entry| entry.status),
        Some(Status::Cancelled)
    );

    let mut connection = orders.db.pool().acquire().await.expect("a connection");
    let rebuilt = projection::rebuild(&mut connection).await.expect("rebuilt");
    drop(connection);
    assert_eq!(rebuilt, 5);
    assert_eq!(orders.read_model().await, inline);

    // The customer's own listing pages by id, newest first.
    let mut connection = orders.db.pool().acquire().await.expect("a connection");
    let mine = projection::Filter {
        customer_id: Some(customer_id("customer-1")),
        ..projection::Filter::default()
    };
    let page = projection::list(&mut connection, &mine, 1)
        .await
        .expect("listed");
    assert_eq!(page.len(), 1);
    assert_eq!(page[0].id, declined);
    let next = projection::Filter {
        before: Some(declined.clone()),
        ..mine
    };
    let page = projection::list(&mut connection, &next, 10)
        .await
        .expect("listed");
    let ids: Vec<&str> = page.iter().map(|view| view.id.as_str()).collect();
    assert_eq!(ids, [confirmed.as_str()]);
    let cancelled_only = projection::Filter {
        status: Some(Status::Cancelled),
        ..projection::Filter::default()
    };
    let page = projection::list(&mut connection, &cancelled_only, 10)
        .await
        .expect("listed");
    let ids: Vec<&str> = page.iter().map(|view| view.id.as_str()).collect();
    assert_eq!(ids, [cancelled.as_str(), declined.as_str()]);
}

/// An answer as inventory would publish it.
fn stock_reserved(order_id: &str) -> Envelope {
    let message = StockReservedV1 {
        order_id: order_id.parse().expect("an id"),
        expires_at_ms: T0 + HOUR_MS,
    };
    outbox::envelope("inventory", &message, &origin()).expect("an envelope")
}

async fn duplicate_answers_append_nothing(engine: Engine) {
    let orders = Orders::new(engine).await;
    let id = orders.place("customer-1", T0).await;
    let answers = Answers {
        settings: orders.settings.clone(),
    };
    let subscription = events::inventory_events().name;

    // Through the inbox: the same message twice is recognised; the same answer in a
    // second message (inventory answering a re-sent command) reaches the saga, which
    // records nothing for it.
    let first = stock_reserved(&id);
    let applied = inbox::apply(&orders.db, &subscription, &first, &answers)
        .await
        .expect("handled");
    assert_eq!(applied, Outcome::Applied);
    let history = orders.history(&id).await;
    let sent = orders.outbox().await.len();
    assert_eq!(history.len(), 2);
    let again = inbox::apply(&orders.db, &subscription, &first, &answers)
        .await
        .expect("handled");
    assert_eq!(again, Outcome::Duplicate);
    let repeated = inbox::apply(&orders.db, &subscription, &stock_reserved(&id), &answers)
        .await
        .expect("handled");
    assert_eq!(repeated, Outcome::Applied);
    assert_eq!(orders.history(&id).await, history);
    assert_eq!(orders.outbox().await.len(), sent);

    // Straight to the saga: every answer of the checkout, fed twice.
    for (at, answer) in (T0 + 1..).zip(happy_answers().into_iter().skip(1)) {
        orders.feed(&id, answer.clone(), at).await;
        let history = orders.history(&id).await;
        let sent = orders.outbox().await.len();
        orders.feed(&id, answer, at + 100).await;
        assert_eq!(orders.history(&id).await, history);
        assert_eq!(orders.outbox().await.len(), sent);
    }
    for answer in happy_answers() {
        orders.feed(&id, answer, T0 + HOUR_MS).await;
    }
    let history = orders.history(&id).await;
    let kinds: Vec<&str> = history.iter().map(|(_, kind)| kind.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "placed",
            "stock_reserved",
            "payment_authorized",
            "stock_committed",
            "payment_captured"
        ]
    );
    assert_eq!(orders.sent_about(&id).await.len(), 5);
    let (view, timeline) = orders.view(&id).await;
    assert_eq!(view.status, Status::Confirmed);
    assert_eq!(timeline.len(), 5);

    // An answer about an order this service never placed is dropped.
    let stranger = uuid::Uuid::now_v7().to_string();
    orders.feed(&stranger, Input::PaymentAuthorized, T0).await;
    let mut connection = orders.db.pool().acquire().await.expect("a connection");
    assert_eq!(
        store::order_ids(&mut connection).await.expect("listed"),
        [id.as_str()]
    );
    drop(connection);

    // A request the order's state does not allow is refused and records nothing.
    let refused = ops::request(
        &orders.db,
        &id,
        Some(customer_id("customer-1").as_str()),
        Input::CustomerCancel,
        &origin(),
        &orders.settings,
        T0 + HOUR_MS,
    )
    .await;
    assert!(
        matches!(
            refused,
            Err(RequestError::Refused(Refusal::NotCancellable("confirmed")))
        ),
        "{refused:?}"
    );
    let foreign = ops::request(
        &orders.db,
        &id,
        Some(customer_id("customer-2").as_str()),
        Input::CustomerCancel,
        &origin(),
        &orders.settings,
        T0 + HOUR_MS,
    )
    .await;
    assert!(
        matches!(foreign, Err(RequestError::NotFound)),
        "{foreign:?}"
    );
    assert_eq!(orders.history(&id).await.len(), 5);
}

async fn of_two_writers_of_one_version_exactly_one_commits(engine: Engine) {
    let orders = Orders::new(engine).await;
    let id = orders.place("customer-1", T0).await;

    // Both fold the same history, then both append what they decided.
    let mut first = orders.db.pool().begin().await.expect("a transaction");
    let mut second = orders.db.pool().begin().await.expect("a transaction");
    let seen_by_first = store::load(&mut first, &id)
        .await
        .expect("readable")
        .expect("placed");
    let seen_by_second = store::load(&mut second, &id)
        .await
        .expect("readable")
        .expect("placed");
    assert_eq!(seen_by_first.version, 1);
    assert_eq!(seen_by_second.version, 1);

    let reserved = [OrderEvent::StockReserved {
        expires_at_ms: T0 + HOUR_MS,
    }];
    store::append(&mut first, &id, 1, &reserved, T0 + 1)
        .await
        .expect("the first writer appends");
    // The second writer's append meets the first's uncommitted event: PostgreSQL
    // makes it wait on the key, SQLite on the write lock. Either way it must fail
    // once the first commits.
    let losing = tokio::spawn({
        let id = id.clone();
        async move {
            let rejected = [OrderEvent::StockRejected {
                unavailable: vec![test_support::product_id("product-mug")],
            }];
            let outcome = store::append(&mut second, &id, 1, &rejected, T0 + 2).await;
            (second, outcome)
        }
    });
    first.commit().await.expect("the first writer commits");
    let (second, outcome) = losing.await.expect("the second writer finished");
    assert!(
        outcome.is_err(),
        "two writers appended after the same version"
    );
    drop(second);

    let history = orders.history(&id).await;
    assert_eq!(
        history,
        [(1, "placed".to_owned()), (2, "stock_reserved".to_owned())]
    );
    let order = orders.load(&id).await;
    assert_eq!((order.status, order.version), (Status::StockReserved, 2));

    // The loser's answer, handled again on the new history, no longer fits.
    let unavailable = vec![test_support::product_id("product-mug")];
    orders
        .feed(&id, Input::StockRejected { unavailable }, T0 + 3)
        .await;
    assert_eq!(orders.history(&id).await, history);
}

async fn racing_duplicate_answers_are_recorded_once(engine: Engine) {
    let orders = Orders::new(engine).await;
    let id = orders.place("customer-1", T0).await;
    let answers = Answers {
        settings: orders.settings.clone(),
    };
    let subscription = events::inventory_events().name;
    // Four copies of inventory's answer, each its own message, handled at once by
    // competing consumers; a handler that loses the race fails and its message comes
    // again, as the inbox's consumer would redeliver it.
    let copies: Vec<Envelope> = (0..4).map(|_| stock_reserved(&id)).collect();
    let handlers = copies.iter().map(|envelope| {
        let (orders, answers, subscription) = (&orders, &answers, &subscription);
        async move {
            for _ in 0..20 {
                if inbox::apply(&orders.db, subscription, envelope, answers)
                    .await
                    .is_ok()
                {
                    return;
                }
            }
            panic!("a redelivered answer never went through");
        }
    });
    futures_util::future::join_all(handlers).await;

    let history = orders.history(&id).await;
    assert_eq!(
        history,
        [(1, "placed".to_owned()), (2, "stock_reserved".to_owned())]
    );
    assert_eq!(
        orders.sent_about(&id).await,
        [ReserveStockV1::TYPE, AuthorizePaymentV1::TYPE],
        "one authorization"
    );
    assert_eq!(orders.load(&id).await.status, Status::StockReserved);
    let (view, timeline) = orders.view(&id).await;
    assert_eq!(view.status, Status::StockReserved);
    assert_eq!(timeline.len(), 2);
}
