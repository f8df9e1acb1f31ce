//! Availability and admin adjustments, with their refusals.

use serde_json::json;
use test_support::Engine;

use crate::helpers::TestApp;

test_support::on_both_engines!(
    admins_adjust_stock_within_bounds,
    availability_refuses_bad_ids,
    availability_is_answered_over_grpc_in_one_call,
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

async fn availability_is_answered_over_grpc_in_one_call(engine: Engine) {
    use contracts::proto::inventory::v1::GetAvailabilityRequest;
    use contracts::proto::inventory::v1::inventory_client::InventoryClient;

    let app = TestApp::spawn(engine, 7).await;
    let product = app.product().await;
    let untracked = uuid::Uuid::now_v7().to_string();
    let mut client = InventoryClient::connect(format!("http://{}", app.address))
        .await
        .expect("a gRPC connection");
    let answer = client
        .get_availability(GetAvailabilityRequest {
            product_ids: vec![product.to_string(), untracked.clone()],
        })
        .await
        .expect("answered")
        .into_inner();
    assert_eq!(answer.items.len(), 2);
    assert_eq!(
        (answer.items[0].available, answer.items[0].tracked),
        (7, true)
    );
    assert_eq!(
        (answer.items[1].available, answer.items[1].tracked),
        (0, false)
    );
    let refused = client
        .get_availability(GetAvailabilityRequest {
            product_ids: vec!["nope".to_owned()],
        })
        .await
        .expect_err("refused");
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
}
