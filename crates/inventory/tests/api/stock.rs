//! Availability and admin adjustments, with their refusals.

use serde_json::json;
use test_support::Engine;

use crate::helpers::TestApp;

test_support::on_both_engines!(
    admins_adjust_stock_within_bounds,
    availability_refuses_bad_ids
);

async fn admins_adjust_stock_within_bounds(engine: Engine) {
    let app = TestApp::spawn(engine, 5).await;
    let product = app.product().await;
    let adjust = |token: String, body: serde_json::Value| {
        app.client
            .post(app.url(&format!("/stock/{product}/adjustments")))
            .bearer_auth(token)
            .json(&body)
            .send()
    };
    let received = adjust(app.issuer.admin(), json!({"delta": 10}))
        .await
        .expect("answers");
    assert_eq!(received.status().as_u16(), 200);
    assert_eq!(app.available(&product).await, Some(15));
    let customer = adjust(app.issuer.customer("u-1"), json!({"delta": 10}))
        .await
        .expect("answers");
    assert_eq!(customer.status().as_u16(), 403);
    let too_much = adjust(app.issuer.admin(), json!({"delta": -16}))
        .await
        .expect("answers");
    assert_eq!(too_much.status().as_u16(), 409, "stock never goes negative");
    for bad in [
        json!({"delta": 0}),
        json!({"delta": "ten"}),
        json!({}),
        json!({"delta": 2_000_000}),
    ] {
        let response = adjust(app.issuer.admin(), bad.clone())
            .await
            .expect("answers");
        assert_eq!(response.status().as_u16(), 400, "{bad}");
    }
    let unknown = app
        .client
        .post(app.url(&format!("/stock/{}/adjustments", uuid::Uuid::now_v7())))
        .bearer_auth(app.issuer.admin())
        .json(&json!({"delta": 1}))
        .send()
        .await
        .expect("answers");
    assert_eq!(unknown.status().as_u16(), 404);
    assert_eq!(
        app.available(&product).await,
        Some(15),
        "refused adjustments changed nothing"
    );
}

async fn availability_refuses_bad_ids(engine: Engine) {
    let app = TestApp::spawn(engine, 5).await;
    let response = app
        .client
        .get(app.url("/stock/not-an-id"))
        .send()
        .await
        .expect("answers");
    assert_eq!(response.status().as_u16(), 400);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let listing = app
        .client
        .get(app.url("/stock"))
        .send()
        .await
        .expect("answers");
    assert_eq!(
        listing.status().as_u16(),
        401,
        "the stock list is for admins"
    );
}
