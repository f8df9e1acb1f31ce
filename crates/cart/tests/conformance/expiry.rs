//! Abandoned carts expire. Redis does it by itself, through a TTL that every change
//! resets; the SQL store does it in a sweep step, driven here with a chosen "now".

use std::time::Duration;

use platform::clock::now_ms;

use crate::harness::{ABANDON_AFTER, Adapter, Subject, customer, line, product};

pub(crate) async fn abandoned_carts_expire(subject: Subject) {
    match &subject.adapter {
        Adapter::Sql(_) => sql_carts_expire(&subject).await,
        Adapter::Redis { .. } => redis_carts_expire(&subject).await,
    }
}

async fn sql_carts_expire(subject: &Subject) {
    let Adapter::Sql(store) = &subject.adapter else {
        unreachable!("an SQL subject");
    };
    let abandon_ms = i64::try_from(ABANDON_AFTER.as_millis()).expect("fits");
    let (old, fresh) = (customer("old"), customer("fresh"));
    let (mug, pen) = (product(), product());
    subject.store.add(&old, &mug, 2).await.expect("added");
    let old_touched = now_ms();
    // Let the clock move on, so the fresh cart is strictly younger.
    while now_ms() < old_touched + 2 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let fresh_touched = now_ms();
    subject.store.add(&fresh, &pen, 1).await.expect("added");

    assert_eq!(
        store.expire_abandoned(now_ms()).await.expect("swept"),
        0,
        "nothing is abandoned yet"
    );
    // A moment at which the old cart, and only it, has gone untouched too long.
    let later = fresh_touched - 1 + abandon_ms;
    assert_eq!(store.expire_abandoned(later).await.expect("swept"), 1);
    assert!(subject.lines(&old).await.is_empty(), "the old cart expired");
    assert_eq!(subject.lines(&fresh).await, vec![(pen, 1)]);
    assert_eq!(
        store.expire_abandoned(later).await.expect("swept"),
        0,
        "expired once"
    );
    // An expired cart starts afresh; a long time later, everything has expired.
    subject.store.add(&old, &mug, 1).await.expect("added");
    assert_eq!(subject.lines(&old).await, vec![(mug, 1)]);
    let much_later = now_ms() + abandon_ms + 1;
    assert_eq!(store.expire_abandoned(much_later).await.expect("swept"), 2);
    assert!(subject.lines(&fresh).await.is_empty());
}

async fn redis_carts_expire(subject: &Subject) {
    let Adapter::Redis { store, url } = &subject.adapter else {
        unreachable!("a Redis subject");
    };
    let mut redis = redis::Client::open(url.as_str())
        .expect("a Redis URL")
        .get_multiplexed_async_connection()
        .await
        .expect("connects");
    let alice = customer("alice");
    let key = store.cart_key(&alice);
    let abandon_secs = i64::try_from(ABANDON_AFTER.as_secs()).expect("fits");
    assert_eq!(ttl(&mut redis, &key).await, -2, "no cart, no key");

    let (mug, pen) = (product(), product());
    subject.store.add(&alice, &mug, 3).await.expect("added");
    let first = ttl(&mut redis, &key).await;
    assert!(
        (1..=abandon_secs).contains(&first),
        "a new cart expires after abandon_after: {first}"
    );
    let left = store
        .time_to_live(&alice)
        .await
        .expect("PTTL")
        .expect("a cart");
    assert!(left <= ABANDON_AFTER && !left.is_zero(), "{left:?}");

    // Each kind of change resets the clock: age the key, change the cart, look again.
    age(&mut redis, &key).await;
    subject.store.add(&alice, &pen, 1).await.expect("added");
    assert!(
        ttl(&mut redis, &key).await > 10,
        "adding a line did not reset the TTL"
    );
    age(&mut redis, &key).await;
    subject.store.add(&alice, &mug, 1).await.expect("added");
    assert!(
        ttl(&mut redis, &key).await > 10,
        "growing a line did not reset the TTL"
    );
    age(&mut redis, &key).await;
    subject
        .store
        .set_quantity(&alice, &pen, 2)
        .await
        .expect("set");
    assert!(
        ttl(&mut redis, &key).await > 10,
        "setting a quantity did not reset the TTL"
    );
    age(&mut redis, &key).await;
    assert!(subject.store.remove(&alice, &pen).await.expect("removed"));
    assert!(
        ttl(&mut redis, &key).await > 10,
        "removing a line did not reset the TTL"
    );
    age(&mut redis, &key).await;
    assert!(
        subject
            .store
            .remove_ordered(&alice, "order-1", &[line(&mug, 4)], None)
            .await
            .expect("applied")
    );
    // The order took the last line, so the cart's key is gone with it; the record of
    // the order outlives it, so a late duplicate still finds it.
    assert_eq!(ttl(&mut redis, &key).await, -2);
    assert!(ttl(&mut redis, &store.orders_key(&alice)).await > abandon_secs);
    // Reading is not touching.
    subject.store.add(&alice, &mug, 1).await.expect("added");
    age(&mut redis, &key).await;
    subject.store.lines(&alice).await.expect("read");
    assert!(ttl(&mut redis, &key).await <= 10, "a read reset the TTL");
}

/// What the TTL command says of `key`: seconds left, or -2 when there is no such key.
async fn ttl(redis: &mut redis::aio::MultiplexedConnection, key: &str) -> i64 {
    redis::cmd("TTL")
        .arg(key)
        .query_async(redis)
        .await
        .expect("TTL answers")
}

/// Shortens the key's TTL to 10 s, as if the cart had long been untouched.
async fn age(redis: &mut redis::aio::MultiplexedConnection, key: &str) {
    let shortened: bool = redis::cmd("EXPIRE")
        .arg(key)
        .arg(10)
        .query_async(redis)
        .await
        .expect("EXPIRE answers");
    assert!(shortened, "{key} exists");
}
