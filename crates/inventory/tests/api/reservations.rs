//! The saga's commands: reserve all or nothing, release, commit, expire, return;
//! idempotent, and never oversold under concurrency.

use contracts::ProductId;
use contracts::messaging::Message as _;
use contracts::messaging::inventory::{
    CommitRefusedV1, CommitStockV1, Line, ReleaseReason, ReleaseStockV1, ReservationEnd,
    ReserveStockV1, ReturnStockV1, StockCommittedV1, StockRejectedV1, StockReleasedV1,
    StockReservedV1, StockReturnedV1,
};
use platform::outbox::Origin;
use test_support::{Engine, order_id};

use crate::helpers::TestApp;

test_support::on_both_engines!(
    a_reservation_is_held_then_committed,
    a_short_line_rejects_the_whole_order,
    a_repeated_command_gets_the_same_answer_and_holds_once,
    release_gives_the_stock_back,
    an_expired_hold_releases_and_refuses_a_late_commit,
    concurrent_buyers_never_oversell,
    sold_stock_is_returned_once_and_only_when_sold,
);

fn reserve(order: &str, lines: &[(ProductId, i64)], hold_secs: u64) -> ReserveStockV1 {
    ReserveStockV1 {
        order_id: order_id(order),
        lines: lines
            .iter()
            .map(|(product_id, quantity)| Line {
                product_id: *product_id,
                quantity: *quantity,
            })
            .collect(),
        hold_secs,
    }
}

async fn a_reservation_is_held_then_committed(engine: Engine) {
    let mut app = TestApp::spawn(engine, 5).await;
    let product = app.product().await;
    app.send(&reserve("order-1", &[(product, 2)], 600)).await;
    let answer = app.answer().await;
    assert_eq!(answer.kind, StockReservedV1::TYPE);
    let reserved: StockReservedV1 = answer.decode().expect("decodes");
    assert_eq!(reserved.order_id, order_id("order-1"));
    assert_eq!(app.available(&product).await, Some(3));

    app.send(&CommitStockV1 {
        order_id: order_id("order-1"),
    })
    .await;
    assert_eq!(app.answer().await.kind, StockCommittedV1::TYPE);
    assert_eq!(
        app.available(&product).await,
        Some(3),
        "sold stock stays gone"
    );
    let levels = admin_levels(&app, &product).await;
    assert_eq!(
        (levels["reserved"].as_i64(), levels["sold"].as_i64()),
        (Some(0), Some(2))
    );
}

async fn a_short_line_rejects_the_whole_order(engine: Engine) {
    let mut app = TestApp::spawn(engine, 3).await;
    let plenty = app.product().await;
    let scarce = app.product().await;
    app.send(&reserve("order-2", &[(plenty, 1), (scarce, 4)], 600))
        .await;
    let rejected: StockRejectedV1 = app.answer().await.decode().expect("a rejection");
    assert_eq!(rejected.unavailable, vec![scarce]);
    assert_eq!(
        app.available(&plenty).await,
        Some(3),
        "nothing of the order was held"
    );
    assert_eq!(app.available(&scarce).await, Some(3));
}

async fn a_repeated_command_gets_the_same_answer_and_holds_once(engine: Engine) {
    let mut app = TestApp::spawn(engine, 5).await;
    let product = app.product().await;
    let command = reserve("order-3", &[(product, 2)], 600);
    app.send(&command).await;
    let first: StockReservedV1 = app.answer().await.decode().expect("reserved");
    // The saga re-sends when an answer is slow: a new message, the same command.
    app.send(&command).await;
    let second: StockReservedV1 = app.answer().await.decode().expect("reserved again");
    assert_eq!(first, second);
    assert_eq!(app.available(&product).await, Some(3), "held once");
}

async fn release_gives_the_stock_back(engine: Engine) {
    let mut app = TestApp::spawn(engine, 5).await;
    let product = app.product().await;
    app.send(&reserve("order-4", &[(product, 5)], 600)).await;
    assert_eq!(app.answer().await.kind, StockReservedV1::TYPE);
    assert_eq!(app.available(&product).await, Some(0));
    app.send(&ReleaseStockV1 {
        order_id: order_id("order-4"),
    })
    .await;
    let released: StockReleasedV1 = app.answer().await.decode().expect("released");
    assert_eq!(released.reason, ReleaseReason::Released);
    assert_eq!(app.available(&product).await, Some(5));
    app.send(&CommitStockV1 {
        order_id: order_id("order-4"),
    })
    .await;
    let refused: CommitRefusedV1 = app.answer().await.decode().expect("refused");
    assert_eq!(refused.state, ReservationEnd::Released);
}

async fn an_expired_hold_releases_and_refuses_a_late_commit(engine: Engine) {
    let mut app = TestApp::spawn(engine, 5).await;
    let product = app.product().await;
    app.send(&reserve("order-5", &[(product, 3)], 60)).await;
    assert_eq!(app.answer().await.kind, StockReservedV1::TYPE);
    // Drive the sweep as if a minute and a bit had passed.
    let later = platform::clock::now_ms() + 61_000;
    assert_eq!(
        inventory::expire_due(&app.db, later).await.expect("swept"),
        1
    );
    assert_eq!(
        inventory::expire_due(&app.db, later).await.expect("swept"),
        0,
        "expired once"
    );
    let released: StockReleasedV1 = app.answer().await.decode().expect("released");
    assert_eq!(released.reason, ReleaseReason::Expired);
    assert_eq!(app.available(&product).await, Some(5));
    app.send(&CommitStockV1 {
        order_id: order_id("order-5"),
    })
    .await;
    let refused: CommitRefusedV1 = app.answer().await.decode().expect("refused");
    assert_eq!(refused.state, ReservationEnd::Expired);
}

async fn concurrent_buyers_never_oversell(engine: Engine) {
    let app = TestApp::spawn(engine, 5).await;
    let product = app.product().await;
    let buyers = (0..16).map(|buyer| {
        let db = app.db.clone();
        tokio::spawn(async move {
            let command = reserve(&format!("race-{buyer}"), &[(product, 1)], 600);
            // As the inbox would: each attempt in its own transaction, retried on failure.
            for _ in 0..100 {
                let mut tx = db.pool().begin().await.expect("a transaction");
                let origin = Origin::default();
                match inventory::ops::reserve(&mut tx, &command, &origin, 0).await {
                    Ok(()) => {
                        tx.commit().await.expect("committed");
                        return;
                    }
                    Err(_) => {
                        let _ = tx.rollback().await;
                        tokio::task::yield_now().await;
                    }
                }
            }
            panic!("buyer {buyer} never got an answer");
        })
    });
    for buyer in futures_util::future::join_all(buyers).await {
        buyer.expect("the buyer finished");
    }
    let levels = admin_levels(&app, &product).await;
    assert_eq!(
        levels["reserved"].as_i64(),
        Some(5),
        "exactly the stock was reserved: {levels}"
    );
    assert_eq!(levels["available"].as_i64(), Some(0));
}

async fn admin_levels(app: &TestApp, product: &ProductId) -> serde_json::Value {
    let all: serde_json::Value = app
        .client
        .get(app.url("/stock"))
        .bearer_auth(app.issuer.admin())
        .send()
        .await
        .expect("answers")
        .json()
        .await
        .expect("JSON");
    all.as_array()
        .expect("a list")
        .iter()
        .find(|levels| levels["product_id"] == product.to_string())
        .cloned()
        .expect("the product is listed")
}

/// A capture the card network refused leaves sold stock nobody paid for: returning it
/// puts it back on sale once, however often the command comes, and a return for an
/// order that sold nothing gives nothing.
async fn sold_stock_is_returned_once_and_only_when_sold(engine: Engine) {
    let mut app = TestApp::spawn(engine, 5).await;
    let product = app.product().await;
    app.send(&reserve("order-r", &[(product, 2)], 600)).await;
    assert_eq!(app.answer().await.kind, StockReservedV1::TYPE);
    app.send(&CommitStockV1 {
        order_id: order_id("order-r"),
    })
    .await;
    assert_eq!(app.answer().await.kind, StockCommittedV1::TYPE);
    assert_eq!(app.available(&product).await, Some(3));
    for _ in 0..2 {
        app.send(&ReturnStockV1 {
            order_id: order_id("order-r"),
        })
        .await;
        let returned: StockReturnedV1 = app.answer().await.decode().expect("returned");
        assert_eq!(returned.order_id, order_id("order-r"));
        assert_eq!(app.available(&product).await, Some(5), "returned once");
    }
    app.send(&reserve("order-h", &[(product, 1)], 600)).await;
    assert_eq!(app.answer().await.kind, StockReservedV1::TYPE);
    app.send(&ReturnStockV1 {
        order_id: order_id("order-h"),
    })
    .await;
    assert_eq!(app.answer().await.kind, StockReturnedV1::TYPE);
    assert_eq!(
        app.available(&product).await,
        Some(4),
        "a hold is not a sale"
    );
}
