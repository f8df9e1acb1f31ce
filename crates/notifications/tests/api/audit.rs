//! The audit's view: exactly one confirmation email per confirmed order, and what waits
//! or failed; and the metrics that watch the same.

use platform::clock::now_ms;
use test_support::Engine;

use crate::helpers::{TestApp, Transport, confirmed, new_id, registered};

test_support::on_both_engines!(the_snapshot_counts_confirmations_per_order);

async fn the_snapshot_counts_confirmations_per_order(engine: Engine) {
    let mut app = TestApp::spawn(engine, Transport::Mailbox).await;
    let (ada, stranger, broken) = (new_id(), new_id(), new_id());
    let (paid, also_paid, unknown_customer) = (new_id(), new_id(), new_id());
    app.deliver(&registered(&ada, "ada@example.com")).await;
    app.deliver(&registered(&broken, "broken")).await;
    app.deliver(&confirmed(&ada, &paid)).await;
    app.deliver(&confirmed(&ada, &paid)).await;
    app.deliver(&confirmed(&ada, &also_paid)).await;
    app.deliver(&confirmed(&stranger, &unknown_customer)).await;

    let before = notifications::audit::snapshot(&app.db)
        .await
        .expect("a snapshot");
    assert!(before.confirmations_sent.is_empty());
    assert_eq!((before.sent, before.pending, before.failed), (0, 5, 0));

    assert_eq!(app.send_due(now_ms()).await, 3);
    let after = notifications::audit::snapshot(&app.db)
        .await
        .expect("a snapshot");
    assert_eq!(after.confirmations_of(&paid), 1);
    assert_eq!(after.confirmations_of(&also_paid), 1);
    assert_eq!(
        after.confirmations_of(&unknown_customer),
        0,
        "still waiting"
    );
    assert_eq!(after.confirmations_sent.len(), 2);
    assert!(after.duplicate_confirmations().is_empty());
    assert_eq!((after.sent, after.pending, after.failed), (3, 1, 1));

    let metrics = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("answers")
        .text()
        .await
        .expect("text");
    for expected in [
        "notifications_sent_total{kind=\"order_confirmed\"}",
        "notifications_sent_total{kind=\"welcome\"}",
        "notifications_failed_total",
        "notifications_pending",
    ] {
        assert!(
            metrics.contains(expected),
            "{expected} is missing:\n{metrics}"
        );
    }
}
