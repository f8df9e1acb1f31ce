//! What every adapter must do, as `bus.rs` promises it.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::harness::{
    Adapter, Harness, PATIENCE, QUIET, drain, envelope, n, next, on_both_buses, spec,
};

on_both_buses!(
    conformance_delivers_every_message_until_acknowledged,
    conformance_positions_survive_a_consumer_restart,
    conformance_a_nacked_message_is_delivered_again,
    conformance_an_unacknowledged_message_is_delivered_again_after_the_ack_wait,
    conformance_dead_letters_after_max_attempts_and_replays,
    conformance_a_poison_message_does_not_block_the_rest,
    conformance_a_republished_message_id_is_delivered_once,
    conformance_competing_consumers_share_one_subscription,
    conformance_messages_survive_a_bus_restart_mid_stream,
    conformance_filters_select_subjects_and_see_earlier_messages,
    conformance_a_batch_is_published_and_handed_out_whole,
);

async fn conformance_delivers_every_message_until_acknowledged(adapter: Adapter) {
    let harness = Harness::new(adapter).await;
    let mut subscription = harness.subscribe(&spec("test.all", "test.>", 5)).await;
    for number in 0..5 {
        harness.publish(&envelope("test.happened.v1", number)).await;
    }
    let lag = harness.bus.pending("test.all").await.expect("measured");
    assert_eq!(lag, 5, "the lag before consuming");
    assert_eq!(drain(&mut subscription).await, vec![0, 1, 2, 3, 4]);
    assert!(
        subscription.next(QUIET).await.expect("answers").is_none(),
        "acknowledged messages came back"
    );
    let lag = harness.bus.pending("test.all").await.expect("measured");
    assert_eq!(lag, 0, "the lag after consuming");
}

async fn conformance_positions_survive_a_consumer_restart(adapter: Adapter) {
    let harness = Harness::new(adapter).await;
    let durable = spec("test.durable", "test.>", 5);
    let mut first = harness.subscribe(&durable).await;
    for number in 0..6 {
        harness.publish(&envelope("test.happened.v1", number)).await;
    }
    let mut acked = Vec::new();
    for _ in 0..3 {
        let delivery = next(&mut first).await;
        acked.push(n(&delivery));
        delivery.ack().await.expect("acknowledged");
    }
    drop(first);
    let mut second = harness.subscribe(&durable).await;
    let rest = drain(&mut second).await;
    let mut all: Vec<u64> = acked.iter().chain(&rest).copied().collect();
    all.sort_unstable();
    assert_eq!(
        all,
        vec![0, 1, 2, 3, 4, 5],
        "acked {acked:?}, then {rest:?}"
    );
}

async fn conformance_a_nacked_message_is_delivered_again(adapter: Adapter) {
    let harness = Harness::new(adapter).await;
    let mut subscription = harness.subscribe(&spec("test.nack", "test.>", 5)).await;
    harness.publish(&envelope("test.happened.v1", 7)).await;
    let first = next(&mut subscription).await;
    assert_eq!(first.attempt, 1);
    first
        .nack(Duration::from_millis(50))
        .await
        .expect("refused");
    let second = next(&mut subscription).await;
    assert_eq!((n(&second), second.attempt), (7, 2));
    second.ack().await.expect("acknowledged");
    assert!(subscription.next(QUIET).await.expect("answers").is_none());
}

async fn conformance_an_unacknowledged_message_is_delivered_again_after_the_ack_wait(
    adapter: Adapter,
) {
    let harness = Harness::new(adapter).await;
    let mut subscription = harness.subscribe(&spec("test.timeout", "test.>", 5)).await;
    harness.publish(&envelope("test.happened.v1", 8)).await;
    let forgotten = next(&mut subscription).await;
    // Neither acked nor nacked: as if the consumer died holding it (and with it
    // whatever kept the delivery alive).
    drop(forgotten);
    let again = next(&mut subscription).await;
    assert_eq!((n(&again), again.attempt), (8, 2));
    again.ack().await.expect("acknowledged");
}

async fn conformance_dead_letters_after_max_attempts_and_replays(adapter: Adapter) {
    let harness = Harness::new(adapter).await;
    let name = "test.dead";
    let mut subscription = harness.subscribe(&spec(name, "test.>", 3)).await;
    let poison = envelope("test.happened.v1", 9);
    harness.publish(&poison).await;
    for attempt in 1..=3 {
        let delivery = next(&mut subscription).await;
        assert_eq!(delivery.attempt, attempt);
        delivery.nack(Duration::ZERO).await.expect("refused");
    }
    assert!(
        subscription.next(QUIET).await.expect("answers").is_none(),
        "delivered past its attempts"
    );
    let dead = harness.bus.dead_letters(name).await.expect("listed");
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].envelope, poison);
    assert_eq!(dead[0].attempts, 3);

    assert!(
        harness
            .bus
            .replay(name, &poison.id)
            .await
            .expect("replayed")
    );
    let replayed = next(&mut subscription).await;
    assert_eq!(replayed.envelope, poison);
    replayed.ack().await.expect("acknowledged");
    assert!(
        harness
            .bus
            .dead_letters(name)
            .await
            .expect("listed")
            .is_empty()
    );
    assert!(
        !harness
            .bus
            .replay(name, &poison.id)
            .await
            .expect("answered"),
        "replayed twice"
    );
}

async fn conformance_a_poison_message_does_not_block_the_rest(adapter: Adapter) {
    let harness = Harness::new(adapter).await;
    let mut subscription = harness.subscribe(&spec("test.poison", "test.>", 100)).await;
    harness.publish(&envelope("test.happened.v1", 0)).await;
    for number in 1..=4 {
        harness.publish(&envelope("test.happened.v1", number)).await;
    }
    let mut handled = BTreeSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while handled.len() < 4 && tokio::time::Instant::now() < deadline {
        let delivery = next(&mut subscription).await;
        if n(&delivery) == 0 {
            // The poison fails every time, and is retried soon.
            delivery
                .nack(Duration::from_millis(10))
                .await
                .expect("refused");
        } else {
            handled.insert(n(&delivery));
            delivery.ack().await.expect("acknowledged");
        }
    }
    assert_eq!(
        handled,
        BTreeSet::from([1, 2, 3, 4]),
        "the poison held the others back"
    );
}

async fn conformance_a_republished_message_id_is_delivered_once(adapter: Adapter) {
    let harness = Harness::new(adapter).await;
    let mut subscription = harness.subscribe(&spec("test.dedup", "test.>", 5)).await;
    let message = envelope("test.happened.v1", 11);
    harness.publish(&message).await;
    // A relay that crashed after publishing but before recording it publishes again.
    harness.publish(&message).await;
    harness.publish(&message).await;
    assert_eq!(drain(&mut subscription).await, vec![11]);
}

async fn conformance_competing_consumers_share_one_subscription(adapter: Adapter) {
    let harness = Harness::new(adapter).await;
    let shared = spec("test.shared", "test.>", 5);
    let mut one = harness.subscribe(&shared).await;
    let mut two = harness.subscribe(&shared).await;
    for number in 0..20 {
        harness.publish(&envelope("test.happened.v1", number)).await;
    }
    let (mut from_one, mut from_two) = (Vec::new(), Vec::new());
    loop {
        let (a, b) = tokio::join!(one.next(QUIET), two.next(QUIET));
        let (a, b) = (a.expect("answers"), b.expect("answers"));
        if a.is_none() && b.is_none() {
            break;
        }
        for (delivery, into) in [(a, &mut from_one), (b, &mut from_two)] {
            if let Some(delivery) = delivery {
                into.push(n(&delivery));
                delivery.ack().await.expect("acknowledged");
            }
        }
    }
    let mut all: Vec<u64> = from_one.iter().chain(&from_two).copied().collect();
    all.sort_unstable();
    assert_eq!(
        all,
        (0..20).collect::<Vec<_>>(),
        "one: {from_one:?}, two: {from_two:?}"
    );
    assert!(
        !from_one.is_empty() && !from_two.is_empty(),
        "one consumer got everything"
    );
}

async fn conformance_messages_survive_a_bus_restart_mid_stream(adapter: Adapter) {
    let mut harness = Harness::new(adapter).await;
    let durable = spec("test.restart", "test.>", 5);
    let mut subscription = harness.subscribe(&durable).await;
    for number in 0..5 {
        harness.publish(&envelope("test.happened.v1", number)).await;
    }
    let first = next(&mut subscription).await;
    first.ack().await.expect("acknowledged");
    drop(subscription);

    harness.restart().await;
    for number in 5..10 {
        harness.publish(&envelope("test.happened.v1", number)).await;
    }
    let mut subscription = harness.subscribe(&durable).await;
    let mut rest = drain(&mut subscription).await;
    rest.retain(|number| *number != 0);
    assert_eq!(rest, (1..10).collect::<Vec<_>>());
}

async fn conformance_filters_select_subjects_and_see_earlier_messages(adapter: Adapter) {
    let harness = Harness::new(adapter).await;
    harness
        .publish(&envelope("catalog.product_created.v1", 1))
        .await;
    harness
        .publish(&envelope("orders.order_placed.v1", 2))
        .await;
    harness
        .publish(&envelope("catalog.product_deleted.v1", 3))
        .await;
    // Created after the messages were published: it still receives them.
    let mut catalog = harness
        .subscribe(&spec("test.catalog", "catalog.>", 5))
        .await;
    let mut created = harness
        .subscribe(&spec("test.created", "*.product_created.v1", 5))
        .await;
    assert_eq!(drain(&mut catalog).await, vec![1, 3]);
    assert_eq!(drain(&mut created).await, vec![1]);
}

/// The embedded bus forgets messages every subscription has handled, once old enough,
/// and keeps those still owed to someone.
#[tokio::test]
async fn embedded_pruning_keeps_what_is_still_owed() {
    let folder = tempfile::tempdir().expect("a folder");
    let bus = platform::bus::embedded::EmbeddedBus::open(&folder.path().join("bus.db"))
        .await
        .expect("opens");
    let mut subscription = platform::bus::Bus::subscribe(&bus, &spec("test.prune", "test.>", 5))
        .await
        .expect("subscribed");
    for number in 0..2 {
        platform::bus::Bus::publish(&bus, &envelope("test.happened.v1", number))
            .await
            .expect("published");
    }
    let first = next(&mut subscription).await;
    first.ack().await.expect("acknowledged");
    let far_future = i64::MAX;
    assert_eq!(
        bus.prune(far_future).await.expect("pruned"),
        1,
        "only the handled one goes"
    );
    let second = next(&mut subscription).await;
    assert_eq!(n(&second), 1);
    second.ack().await.expect("acknowledged");
}

/// A process that dies while handling a message leaves it leased for the ack wait. The
/// embedded bus is one process's, so the next to open it knows the lease is dead: the
/// message comes again at once, not after the ack wait (two minutes here).
#[tokio::test]
async fn embedded_deliveries_leased_by_a_dead_process_come_again_at_once() {
    use platform::bus::Bus as _;
    use platform::bus::embedded::EmbeddedBus;

    let folder = tempfile::tempdir().expect("a folder");
    let path = folder.path().join("bus.db");
    let slow = platform::bus::SubscriptionSpec {
        ack_wait: Duration::from_secs(120),
        ..spec("test.crash", "test.>", 5)
    };
    let bus = EmbeddedBus::open(&path).await.expect("opens");
    let mut subscription = bus.subscribe(&slow).await.expect("subscribed");
    bus.publish(&envelope("test.happened.v1", 7))
        .await
        .expect("published");
    let leased = next(&mut subscription).await;
    assert_eq!(n(&leased), 7);
    // The process dies: nothing is settled, the file is closed (and its lock freed).
    std::mem::forget(leased);
    drop(subscription);
    bus.close().await;

    let bus = EmbeddedBus::open(&path).await.expect("opens again");
    let mut subscription = bus.subscribe(&slow).await.expect("subscribed");
    let again = next(&mut subscription).await;
    assert_eq!((n(&again), again.attempt), (7, 2));
    again.ack().await.expect("acknowledged");
}

/// On JetStream a consumer that holds a delivery keeps it, however long it works on it,
/// and one that dies lets it go within seconds, whatever the subscription's ack wait.
#[tokio::test]
async fn jetstream_keeps_a_held_delivery_and_frees_a_dead_consumers_at_once() {
    use platform::bus::jetstream::MAX_SERVER_ACK_WAIT;

    let harness = Harness::new(Adapter::JetStream).await;
    let long = platform::bus::SubscriptionSpec {
        ack_wait: Duration::from_secs(120),
        ..spec("test.held", "test.>", 5)
    };
    let mut working = harness.subscribe(&long).await;
    let mut other = harness.subscribe(&long).await;
    harness.publish(&envelope("test.happened.v1", 1)).await;
    let held = next(&mut working).await;
    // Held past the server's ack wait: nobody else gets it meanwhile.
    let quiet_for = MAX_SERVER_ACK_WAIT + Duration::from_secs(2);
    assert!(
        other.next(quiet_for).await.expect("answers").is_none(),
        "a delivery still being worked on was handed to another consumer"
    );
    held.ack().await.expect("acknowledged");

    harness.publish(&envelope("test.happened.v1", 2)).await;
    let dying = next(&mut working).await;
    assert_eq!(n(&dying), 2);
    drop(dying);
    drop(working);
    // The other consumer gets it after the server's ack wait, not the subscription's.
    let again = other
        .next(MAX_SERVER_ACK_WAIT + Duration::from_secs(5))
        .await
        .expect("answers")
        .expect("delivered again within seconds");
    assert_eq!((n(&again), again.attempt), (2, 2));
    again.ack().await.expect("acknowledged");
}

async fn conformance_a_batch_is_published_and_handed_out_whole(adapter: Adapter) {
    let harness = Harness::new(adapter).await;
    let mut subscription = harness.subscribe(&spec("test.batch", "test.>", 5)).await;
    let batch: Vec<_> = (0..20)
        .map(|number| envelope("test.happened.v1", number))
        .collect();
    harness
        .bus
        .publish_all(&batch)
        .await
        .map_err(|failure| failure.error)
        .expect("published");
    // A relay that crashed before recording the batch publishes it again.
    harness
        .bus
        .publish_all(&batch[5..])
        .await
        .map_err(|failure| failure.error)
        .expect("published again");
    let lag = harness.bus.pending("test.batch").await.expect("measured");
    assert_eq!(lag, 20, "each message once");
    let mut seen = Vec::new();
    while seen.len() < 20 {
        let deliveries = subscription
            .next_batch(8, PATIENCE)
            .await
            .expect("the bus answers");
        assert!(!deliveries.is_empty(), "the rest did not come");
        assert!(deliveries.len() <= 8, "more than asked for");
        for delivery in deliveries {
            seen.push(n(&delivery));
            delivery.ack().await.expect("acknowledged");
        }
    }
    seen.sort_unstable();
    assert_eq!(seen, (0..20).collect::<Vec<_>>());
    assert!(
        subscription
            .next_batch(8, QUIET)
            .await
            .expect("answers")
            .is_empty(),
        "acknowledged messages came back"
    );
}
