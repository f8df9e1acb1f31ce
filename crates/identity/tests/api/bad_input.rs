//! Bad input gets a 4xx problem naming what is wrong; nothing is half-done.

use serde_json::json;
use test_support::Engine;

use crate::helpers::{PASSWORD, TestApp, assert_problem};

test_support::on_both_engines!(
    malformed_requests_are_named,
    weak_passwords_are_refused_with_a_reason
);

async fn malformed_requests_are_named(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let raw = |path: &'static str, body: &'static str, content_type: &'static str| {
        app.client
            .post(app.url(path))
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    let malformed = raw("/register", "{\"email\": ", "application/json")
        .await
        .expect("answers");
    assert_eq!(malformed.status().as_u16(), 400);
    let missing = raw(
        "/register",
        r#"{"email": "ada@example.com"}"#,
        "application/json",
    )
    .await
    .expect("answers");
    let problem = assert_problem(missing, 400, "validation").await;
    assert!(
        problem["detail"]
            .as_str()
            .is_some_and(|detail| detail.contains("password")),
        "{problem}"
    );
    let unknown = raw(
        "/register",
        r#"{"email": "a@example.com", "password": "x", "admin": true}"#,
        "application/json",
    )
    .await
    .expect("answers");
    let problem = assert_problem(unknown, 400, "validation").await;
    assert!(
        problem["detail"]
            .as_str()
            .is_some_and(|detail| detail.contains("admin")),
        "{problem}"
    );
    let text = raw("/register", "email=a", "text/plain")
        .await
        .expect("answers");
    assert_eq!(text.status().as_u16(), 415);

    for (email, field) in [
        ("not-an-email", "email"),
        (&*format!("{}@example.com", "a".repeat(300)), "email"),
    ] {
        let response = app
            .post("/register", json!({"email": email, "password": PASSWORD}))
            .await;
        let problem = assert_problem(response, 400, "validation").await;
        assert_eq!(problem["errors"][0]["field"], field);
    }
    let long_password = app
        .post(
            "/token",
            json!({"email": "a@example.com", "password": "p".repeat(10_000)}),
        )
        .await;
    assert_problem(long_password, 400, "validation").await;
    let long_refresh = app
        .post("/refresh", json!({"refresh_token": "r".repeat(10_000)}))
        .await;
    assert_problem(long_refresh, 400, "validation").await;
    let huge = app
        .client
        .post(app.url("/register"))
        .header("content-type", "application/json")
        .body(format!(
            r#"{{"email": "a@example.com", "password": "{}"}}"#,
            "x".repeat(2 * 1024 * 1024)
        ))
        .send()
        .await
        .expect("answers");
    assert_eq!(huge.status().as_u16(), 413);
}

async fn weak_passwords_are_refused_with_a_reason(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    for weak in [
        "short",
        "passwordpassword",
        "aaaaaaaaaaaaaaaaaaaa",
        "my bazaar password is long",
    ] {
        let response = app
            .post(
                "/register",
                json!({"email": "ada@example.com", "password": weak}),
            )
            .await;
        let problem = assert_problem(response, 400, "validation").await;
        assert_eq!(problem["errors"][0]["field"], "password", "{weak}");
    }
    // Nothing was created by the refused attempts.
    app.register("ada@example.com").await;
}
