//! What every service exposes: health, metrics, request ids, and its OpenAPI document.

use test_support::Engine;

use crate::helpers::TestApp;

test_support::on_both_engines!(
    liveness_and_readiness_answer,
    metrics_count_requests_by_route,
    request_ids_are_echoed_or_made,
    the_openapi_document_describes_the_api,
);

async fn liveness_and_readiness_answer(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let live = app.get_json("/health/live", 200).await;
    assert_eq!(live["status"], "live");
    let ready = app.get_json("/health/ready", 200).await;
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["checks"]["database"], "ok");
}

async fn metrics_count_requests_by_route(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    app.get("/products?limit=1").await;
    let response = app.get("/metrics").await;
    assert_eq!(response.status().as_u16(), 200);
    let text = response.text().await.expect("text");
    assert!(
        text.lines()
            .any(|line| line.starts_with("http_server_requests_total")
                && line.contains(r#"service="catalog""#)
                && line.contains(r#"route="/products""#)),
        "no request counter for /products in:\n{text}"
    );
    assert!(text.contains("http_server_request_duration_seconds_bucket"));
}

async fn request_ids_are_echoed_or_made(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let made = app.get("/categories").await;
    assert!(!made.headers()["x-request-id"].is_empty());
    let echoed = app
        .client
        .get(app.url("/categories"))
        .header("x-request-id", "test-request-1")
        .send()
        .await
        .expect("answers");
    assert_eq!(echoed.headers()["x-request-id"], "test-request-1");
}

async fn the_openapi_document_describes_the_api(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let document = app.get_json("/openapi.json", 200).await;
    assert!(
        document["openapi"]
            .as_str()
            .is_some_and(|version| version.starts_with("3.1"))
    );
    for path in ["/products", "/products/{product}", "/categories"] {
        assert!(
            document["paths"][path].is_object(),
            "{path} is not documented"
        );
    }
    assert_eq!(document["servers"][0]["url"], "/api/catalog");
}
