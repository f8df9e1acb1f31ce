//! The ledger: balances by account, the audit's snapshot, and history that cannot be
//! rewritten.

use contracts::OrderId;
use contracts::messaging::payments::{
    CapturePaymentV1, PaymentAuthorizedV1, PaymentCapturedV1, PaymentDeclinedV1, PaymentRefundedV1,
    PaymentVoidedV1, RefundPaymentV1, VoidPaymentV1,
};
use payments::cards;
use serde_json::Value;
use test_support::Engine;

use crate::helpers::{TestApp, eur, order_id};

test_support::on_both_engines!(
    balances_and_the_audit_add_up,
    ledger_history_cannot_be_rewritten,
);

/// Runs four orders through: one refunded, one captured, one voided, one declined.
async fn some_business(app: &mut TestApp) -> [OrderId; 4] {
    let token = app.card("ann", cards::APPROVED).await;
    let declined_card = app.card("ann", cards::DECLINED).await;
    let [refunded, captured, voided, declined] = [order_id(), order_id(), order_id(), order_id()];
    for (order, amount) in [(&refunded, 1_000), (&captured, 2_500), (&voided, 400)] {
        app.authorize(order, "ann", &token, amount).await;
        let _: PaymentAuthorizedV1 = app.answer_as().await;
    }
    app.authorize(&declined, "ann", &declined_card, 9_999).await;
    let _: PaymentDeclinedV1 = app.answer_as().await;
    for order in [&refunded, &captured] {
        app.send(&CapturePaymentV1 { order_id: *order }).await;
        let _: PaymentCapturedV1 = app.answer_as().await;
    }
    app.send(&RefundPaymentV1 { order_id: refunded }).await;
    let _: PaymentRefundedV1 = app.answer_as().await;
    app.send(&VoidPaymentV1 { order_id: voided }).await;
    let _: PaymentVoidedV1 = app.answer_as().await;
    [refunded, captured, voided, declined]
}

async fn balances_and_the_audit_add_up(engine: Engine) {
    let mut app = TestApp::spawn(engine).await;
    let [refunded, captured, voided, declined] = some_business(&mut app).await;

    let balances = app
        .get_json("/ledger/balances", &app.issuer.admin(), 200)
        .await;
    let balance = |account: &str| -> (i64, i64, i64) {
        let row = balances
            .as_array()
            .expect("a list")
            .iter()
            .find(|row| row["account"] == account)
            .unwrap_or_else(|| panic!("{account} listed: {balances}"));
        assert_eq!(row["balance"]["currency"], "EUR");
        (
            row["debits"]["amount_minor"].as_i64().expect("debits"),
            row["credits"]["amount_minor"].as_i64().expect("credits"),
            row["balance"]["amount_minor"].as_i64().expect("balance"),
        )
    };
    // Authorized 3900; voided 400; captured 3500; refunded 1000.
    assert_eq!(balance("customer_funds"), (1_400, 3_900, -2_500));
    assert_eq!(balance("authorized_holds"), (3_900, 3_900, 0));
    assert_eq!(balance("merchant_revenue"), (3_500, 1_000, 2_500));
    let total: i64 = balances
        .as_array()
        .expect("a list")
        .iter()
        .map(|row| row["balance"]["amount_minor"].as_i64().expect("a balance"))
        .sum();
    assert_eq!(total, 0, "money is conserved");
    let customer = app
        .client
        .get(app.url("/ledger/balances"))
        .bearer_auth(app.token("ann"))
        .send()
        .await
        .expect("answers");
    assert_eq!(customer.status().as_u16(), 403);

    let snapshot = payments::audit::snapshot(&app.db)
        .await
        .expect("a snapshot");
    assert!(snapshot.balanced, "every transaction balances");
    assert!(snapshot.unbalanced.is_empty());
    let figures = |order: &OrderId| {
        snapshot
            .order(&order.to_string())
            .unwrap_or_else(|| panic!("{order} audited"))
    };
    assert_eq!(figures(&refunded).captured, eur(1_000));
    assert_eq!(figures(&refunded).refunded, eur(1_000));
    assert_eq!(figures(&refunded).charged(), eur(0));
    assert_eq!(figures(&captured).captured, eur(2_500));
    assert_eq!(figures(&captured).refunded, eur(0));
    assert_eq!(figures(&captured).charged(), eur(2_500));
    assert_eq!(figures(&voided).charged(), eur(0));
    assert_eq!(figures(&voided).held(), eur(0));
    assert_eq!(figures(&voided).voided, eur(400));
    assert!(
        snapshot.order(&declined.to_string()).is_none(),
        "nothing moved for a decline"
    );
    assert_eq!(snapshot.orders.len(), 3);
    let [totals] = snapshot.totals.as_slice() else {
        panic!("one currency: {:?}", snapshot.totals);
    };
    assert_eq!(totals.authorized, eur(3_900));
    assert_eq!(totals.voided, eur(400));
    assert_eq!(totals.captured, eur(3_500));
    assert_eq!(totals.refunded, eur(1_000));
    assert_eq!(totals.transactions, 7);
    assert_eq!(
        payments::audit::snapshot(&app.db)
            .await
            .expect("a snapshot"),
        snapshot,
        "the audit changes nothing"
    );
}

async fn ledger_history_cannot_be_rewritten(engine: Engine) {
    let mut app = TestApp::spawn(engine).await;
    let [refunded, ..] = some_business(&mut app).await;
    for statement in [
        "UPDATE ledger_entries SET amount_minor = amount_minor + 1",
        "DELETE FROM ledger_entries",
        "UPDATE ledger_transactions SET kind = 'void'",
        "DELETE FROM ledger_transactions",
    ] {
        let refused = sqlx::query(statement).execute(app.db.pool()).await;
        assert!(refused.is_err(), "{statement} was allowed");
    }
    // Every stored transaction still balances, and every entry is there.
    let snapshot = payments::audit::snapshot(&app.db)
        .await
        .expect("a snapshot");
    assert!(snapshot.balanced);
    assert_eq!(
        app.ledger(&refunded).await,
        [
            ("authorize".to_owned(), 1_000),
            ("capture".to_owned(), 1_000),
            ("refund".to_owned(), 1_000)
        ]
    );
    let entries: Value = {
        let row = sqlx::query("SELECT COUNT(*) AS entries FROM ledger_entries")
            .fetch_one(app.db.pool())
            .await
            .expect("counted");
        let count: i64 = sqlx::Row::try_get(&row, "entries").expect("a count");
        count.into()
    };
    assert_eq!(entries, 14, "two entries for each of seven transactions");
}
