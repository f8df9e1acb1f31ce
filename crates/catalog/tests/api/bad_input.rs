//! Bad input gets a 400 problem naming the field, never a 500.

use serde_json::Value;
use test_support::Engine;

use crate::helpers::TestApp;

test_support::on_both_engines!(
    invalid_listing_parameters_are_named,
    an_invalid_product_reference_is_named,
    unknown_routes_and_methods_are_problems,
    control_characters_are_refused_by_name,
);

async fn invalid_listing_parameters_are_named(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let long_query = format!("/products?q={}", "a".repeat(101));
    let huge_query = format!("/products?category={}", "a".repeat(3000));
    let cases = [
        ("/products?sort=colour", "sort"),
        ("/products?sort=", "sort"),
        ("/products?limit=0", "limit"),
        ("/products?limit=101", "limit"),
        ("/products?limit=ten", "limit"),
        ("/products?limit=-5", "limit"),
        ("/products?cursor=not-a-cursor", "cursor"),
        ("/products?category=Not%20A%20Slug", "category"),
        ("/products?q=a%20b%20c%20d%20e%20f", "q"),
        (long_query.as_str(), "q"),
        (huge_query.as_str(), "query"),
        ("/products?colour=red", "colour"),
        ("/products?limit=1&limit=2", "limit"),
    ];
    for (path, field) in cases {
        app.assert_invalid(path, field).await;
    }
}

async fn an_invalid_product_reference_is_named(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    app.assert_invalid("/products/NOT%20A%20SLUG", "product")
        .await;
    app.assert_invalid(&format!("/products/{}", "a".repeat(81)), "product")
        .await;
}

async fn unknown_routes_and_methods_are_problems(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let response = app.get("/no/such/route").await;
    assert_eq!(response.status().as_u16(), 404);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let response = app
        .client
        .delete(app.url("/products"))
        .send()
        .await
        .expect("answers");
    assert_eq!(response.status().as_u16(), 405);
    let problem: Value = response.json().await.expect("a problem body");
    assert_eq!(problem["status"], 405);
}

/// PostgreSQL refuses NUL in text; it must be a 400 naming the field, not a 500.
async fn control_characters_are_refused_by_name(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    app.assert_invalid("/products?q=%00", "q").await;
    app.assert_invalid("/products?q=mug%07", "q").await;
    // A forged cursor whose name value holds a NUL.
    let cursor = base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        "name|a\0b|0190a5a0-0000-7000-8000-000000000000",
    );
    app.assert_invalid(&format!("/products?cursor={cursor}"), "cursor")
        .await;
}
