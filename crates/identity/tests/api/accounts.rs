//! Registration, sign-in, the account, password changes, and who may see what.

use std::time::Duration;

use contracts::identity::Role;
use contracts::messaging::identity::UserRegisteredV1;
use platform::bus::{Bus as _, SubscriptionSpec};
use serde_json::json;
use test_support::Engine;
use test_support::security::assert_hidden_from_others;

use crate::helpers::{PASSWORD, TestApp, access, assert_problem};

test_support::on_both_engines!(
    register_sign_in_and_read_me,
    registration_is_announced_on_the_bus,
    emails_are_normalised_and_unique,
    unknown_email_and_wrong_password_get_the_same_answer,
    another_users_account_is_not_found,
    changing_the_password_signs_out_other_sessions,
    an_admin_made_by_the_operator_can_read_any_account,
    sign_in_is_throttled_per_account_with_retry_after,
);

async fn register_sign_in_and_read_me(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let account = app.register("ada@example.com").await;
    assert_eq!(account["email"], "ada@example.com");
    assert_eq!(account["roles"], json!(["customer"]));
    assert!(account.get("password_hash").is_none() && !account.to_string().contains("argon2"));
    let tokens = app.login("ada@example.com", PASSWORD).await;
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(tokens["expires_in"], 900);
    let me = app.get_as("/me", &access(&tokens)).await;
    assert_eq!(me.status().as_u16(), 200);
    let me: serde_json::Value = me.json().await.expect("JSON");
    assert_eq!(me["id"], account["id"]);
    assert!(
        me["created_at"]
            .as_str()
            .is_some_and(|at| at.ends_with('Z'))
    );
}

async fn registration_is_announced_on_the_bus(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let spec = SubscriptionSpec::new("test.identity-events", "identity.>");
    let mut events = app.bus.subscribe(&spec).await.expect("subscribed");
    let account = app.register("grace@example.com").await;
    let delivery = events
        .next(Duration::from_secs(10))
        .await
        .expect("the bus answers")
        .expect("the registration is published");
    let registered: UserRegisteredV1 = delivery.envelope.decode().expect("a registration");
    assert_eq!(registered.user_id, account["id"]);
    assert_eq!(registered.email, "grace@example.com");
    assert!(registered.registered_at_ms > 1_700_000_000_000);
    delivery.ack().await.expect("acknowledged");
}

async fn emails_are_normalised_and_unique(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    app.register(" Ada@Example.com ").await;
    let again = app
        .post(
            "/register",
            json!({"email": "ada@example.COM", "password": PASSWORD}),
        )
        .await;
    assert_problem(again, 409, "conflict").await;
    app.login("ADA@example.com", PASSWORD).await;
}

async fn unknown_email_and_wrong_password_get_the_same_answer(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    app.register("ada@example.com").await;
    let wrong_password = app
        .post(
            "/token",
            json!({"email": "ada@example.com", "password": "not the right password"}),
        )
        .await;
    let unknown_email = app
        .post(
            "/token",
            json!({"email": "nobody@example.com", "password": PASSWORD}),
        )
        .await;
    let wrong_password = assert_problem(wrong_password, 400, "invalid-grant").await;
    let unknown_email = assert_problem(unknown_email, 400, "invalid-grant").await;
    assert_eq!(wrong_password, unknown_email);
}

async fn another_users_account_is_not_found(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let ada = app.register("ada@example.com").await;
    let ada_token = access(&app.login("ada@example.com", PASSWORD).await);
    let bob_token = app.customer("bob@example.com").await;
    let url = app.url(&format!("/users/{}", ada["id"].as_str().expect("an id")));
    assert_hidden_from_others(&app.client, &url, &ada_token, &bob_token).await;
    let missing = app
        .get_as("/users/0190a5a0-0000-7000-8000-000000000000", &bob_token)
        .await;
    assert_problem(missing, 404, "not-found").await;
}

async fn changing_the_password_signs_out_other_sessions(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    app.register("ada@example.com").await;
    let laptop = app.login("ada@example.com", PASSWORD).await;
    let phone = app.login("ada@example.com", PASSWORD).await;
    let new_password = "a different long passphrase";
    let change = |current: &'static str| {
        app.client
            .post(app.url("/me/password"))
            .bearer_auth(access(&laptop))
            .json(&json!({"current_password": current, "new_password": new_password}))
            .send()
    };
    let refused = change("not my password at all").await.expect("answers");
    let problem = assert_problem(refused, 400, "validation").await;
    assert_eq!(problem["errors"][0]["field"], "current_password");
    assert_eq!(
        change(PASSWORD).await.expect("answers").status().as_u16(),
        204
    );

    let stale = app
        .post("/refresh", json!({"refresh_token": phone["refresh_token"]}))
        .await;
    assert_problem(stale, 400, "invalid-grant").await;
    let old = app
        .post(
            "/token",
            json!({"email": "ada@example.com", "password": PASSWORD}),
        )
        .await;
    assert_problem(old, 400, "invalid-grant").await;
    app.login("ada@example.com", new_password).await;
}

async fn an_admin_made_by_the_operator_can_read_any_account(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let context = app.context().await;
    identity::ops::create_user(
        &context,
        "root@example.com",
        PASSWORD,
        vec![Role::Customer, Role::Admin],
    )
    .await
    .expect("created");
    let admin = access(&app.login("root@example.com", PASSWORD).await);
    let ada = app.register("ada@example.com").await;
    let seen = app
        .get_as(
            &format!("/users/{}", ada["id"].as_str().expect("id")),
            &admin,
        )
        .await;
    assert_eq!(seen.status().as_u16(), 200);
}

/// Wrong passwords lock the account for the guesser's network; the right password does
/// not count, and other accounts are unaffected.
async fn sign_in_is_throttled_per_account_with_retry_after(engine: Engine) {
    let app = TestApp::spawn_with(engine, |config| {
        config.account_failures_per_network = 3;
    })
    .await;
    app.register("ada@example.com").await;
    for _ in 0..3 {
        let attempt = app
            .post(
                "/token",
                json!({"email": "ada@example.com", "password": "guess guess guess"}),
            )
            .await;
        assert_eq!(attempt.status().as_u16(), 400);
    }
    let throttled = app
        .post(
            "/token",
            json!({"email": "ada@example.com", "password": PASSWORD}),
        )
        .await;
    let retry_after: u64 = throttled.headers()["retry-after"]
        .to_str()
        .expect("text")
        .parse()
        .expect("seconds");
    assert!(retry_after > 0);
    assert_problem(throttled, 429, "too-many-requests").await;
    // Other accounts are unaffected.
    app.register("bob@example.com").await;
    app.login("bob@example.com", PASSWORD).await;
}
