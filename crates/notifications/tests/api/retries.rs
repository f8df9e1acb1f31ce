//! A relay that refuses mail: the email waits with exponential backoff and goes once,
//! when the relay takes mail again.

use notifications::domain::Status;
use platform::clock::now_ms;
use test_support::Engine;

use crate::helpers::{RETRY, TestApp, Transport, confirmed, new_id, registered};

test_support::on_both_engines!(
    a_refused_email_is_retried_with_backoff_and_sent_once,
    backoff_doubles_up_to_its_cap,
);

async fn a_refused_email_is_retried_with_backoff_and_sent_once(engine: Engine) {
    let mut app = TestApp::spawn(engine, Transport::Smtp).await;
    let (ada, order) = (new_id(), new_id());
    app.deliver(&registered(&ada, "ada@example.com")).await;
    app.deliver(&confirmed(&ada, &order)).await;
    app.sink().refuse();
    let start = now_ms();
    assert_eq!(app.send_due(start).await, 0);
    assert!(app.sink().refusals() >= 1, "the relay was asked");
    let stored = app.notifications().await;
    let failed: Vec<_> = stored.iter().filter(|n| n.attempts == 1).collect();
    assert_eq!(
        failed.len(),
        1,
        "a failure ends the round: the relay is not hammered"
    );
    assert_eq!(failed[0].status, Status::Pending);
    assert!(
        failed[0]
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("451") || e.contains("421")),
        "{:?}",
        failed[0].last_error
    );

    app.sink().accept();
    // The other email was never tried, so it is due; the refused one is not yet.
    assert_eq!(app.send_due(start + 999).await, 1);
    assert_eq!(app.sink().messages().len(), 1);
    assert_eq!(
        app.send_due(start + 999).await,
        0,
        "the refused email waits out its backoff"
    );
    assert_eq!(
        app.send_due(start + i64::try_from(RETRY.first_retry_ms).expect("small"))
            .await,
        1
    );
    let messages = app.sink().messages();
    assert_eq!(messages.len(), 2);
    let ids: std::collections::BTreeSet<_> = messages
        .iter()
        .map(|m| m.header("Message-ID").expect("an id"))
        .collect();
    assert_eq!(ids.len(), 2, "each email went exactly once");
    let stored = app.notifications().await;
    assert!(stored.iter().all(|n| n.status == Status::Sent));
    let retried = stored.iter().find(|n| n.id == failed[0].id).expect("there");
    assert_eq!(retried.attempts, 2);
    assert_eq!(retried.last_error, None);
    assert_eq!(app.send_due(start + 3_600_000).await, 0);
    assert_eq!(app.sink().messages().len(), 2);
}

async fn backoff_doubles_up_to_its_cap(engine: Engine) {
    let mut app = TestApp::spawn(engine, Transport::Smtp).await;
    app.deliver(&registered(&new_id(), "ada@example.com")).await;
    app.sink().refuse();
    let mut now = now_ms();
    let mut waits = Vec::new();
    for _ in 0..6 {
        assert_eq!(app.send_due(now).await, 0);
        let refusals = app.sink().refusals();
        assert_eq!(app.send_due(now).await, 0);
        assert_eq!(app.sink().refusals(), refusals, "not due again at once");
        let next: i64 = sqlx::query_scalar("SELECT next_attempt_at_ms FROM notifications")
            .fetch_one(app.db.pool())
            .await
            .expect("a row");
        waits.push(next - now);
        now = next;
    }
    assert_eq!(waits, [1000, 2000, 4000, 8000, 8000, 8000]);
    let stored = app.notifications().await.remove(0);
    assert_eq!((stored.status, stored.attempts), (Status::Pending, 6));
    app.sink().accept();
    assert_eq!(app.send_due(now).await, 1);
    assert_eq!(app.sink().messages().len(), 1);
}
