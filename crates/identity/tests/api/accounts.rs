//! Registration, sign-in, the account, password changes, and who may see what.

use std::time::Duration;

use contracts::identity::Role;
use contracts::messaging::identity::{
    RegistrationOutcome, RegistrationRequestedV1, UserRegisteredV1,
};
use platform::bus::{Bus as _, SubscriptionSpec};
use serde_json::json;
use test_support::Engine;
use test_support::security::assert_hidden_from_others;

use crate::helpers::{PASSWORD, TestApp, access, assert_problem};

test_support::on_both_engines!(
    register_sign_in_and_read_me,
    registration_is_announced_on_the_bus,
    registering_tells_nobody_whether_the_address_had_an_account,
    a_confirmation_link_works_once,
    an_expired_confirmation_is_forgotten_and_the_address_is_free_again,
    registering_an_unconfirmed_address_again_replaces_its_password,
    a_link_confirms_only_with_the_password_it_was_registered_with,
    an_address_gets_one_registration_email_at_most_in_a_window,
    emails_are_normalised_and_unique,
    look_alike_emails_cannot_register_another_account,
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
    assert_eq!(
        me.headers()["cache-control"],
        "no-store",
        "an account is not cached"
    );
    let me: serde_json::Value = me.json().await.expect("JSON");
    assert_eq!(me["id"], account["id"]);
    assert!(
        me["created_at"]
            .as_str()
            .is_some_and(|at| at.ends_with('Z'))
    );
}

/// A registration asks for a confirmation email; the account is announced to the
/// shop once confirmed.
async fn registration_is_announced_on_the_bus(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let spec = SubscriptionSpec::new("test.identity-events", "identity.>");
    let mut events = app.bus.subscribe(&spec).await.expect("subscribed");
    let account = app.register("grace@example.com").await;
    let mut next = async || {
        let delivery = events
            .next(Duration::from_secs(10))
            .await
            .expect("the bus answers")
            .expect("an event is published");
        let envelope = delivery.envelope.clone();
        delivery.ack().await.expect("acknowledged");
        envelope
    };
    let requested: RegistrationRequestedV1 = next().await.decode().expect("a request");
    assert_eq!(requested.user_id.to_string(), account["id"]);
    assert_eq!(requested.email, "grace@example.com");
    assert!(matches!(
        requested.outcome,
        RegistrationOutcome::Confirm { ref token, expires_at_ms }
            if token.len() == 43 && expires_at_ms > 1_700_000_000_000
    ));
    let registered: UserRegisteredV1 = next().await.decode().expect("a registration");
    assert_eq!(registered.user_id.to_string(), account["id"]);
    assert_eq!(registered.email, "grace@example.com");
    assert!(registered.registered_at_ms > 1_700_000_000_000);
}

/// Registering an address that has an account answers exactly as for a new one; only
/// the address's mailbox learns the difference.
async fn registering_tells_nobody_whether_the_address_had_an_account(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let ada = app.register("ada@example.com").await;
    let register = |email: &'static str| {
        app.post(
            "/register",
            json!({"email": email, "password": "someone else's passphrase"}),
        )
    };
    let (taken, new) = (
        register("ada@example.com").await,
        register("bob@example.com").await,
    );
    assert_eq!((taken.status().as_u16(), new.status().as_u16()), (202, 202));
    let names = |response: &reqwest::Response| {
        let mut names: Vec<String> = response
            .headers()
            .keys()
            .map(|name| name.as_str().to_owned())
            .filter(|name| !["date", "x-request-id", "traceparent"].contains(&name.as_str()))
            .collect();
        names.sort();
        names
    };
    assert_eq!(names(&taken), names(&new));
    let taken: serde_json::Value = taken.json().await.expect("JSON");
    let new: serde_json::Value = new.json().await.expect("JSON");
    assert_eq!(taken, json!({"email": "ada@example.com"}));
    assert_eq!(new, json!({"email": "bob@example.com"}));

    let mailed = app.mailed().await;
    let outcomes: Vec<(&str, bool)> = mailed
        .iter()
        .map(|mail| {
            let confirm = matches!(mail.outcome, RegistrationOutcome::Confirm { .. });
            (mail.email.as_str(), confirm)
        })
        .collect();
    assert_eq!(
        outcomes,
        [("ada@example.com", false), ("bob@example.com", true)]
    );
    assert_eq!(mailed[0].user_id.to_string(), ada["id"]);
    // Ada's password still works; the other one never did.
    app.login("ada@example.com", PASSWORD).await;
    let wrong = app
        .sign_in("ada@example.com", "someone else's passphrase")
        .await;
    assert_problem(wrong, 400, "invalid-grant").await;
    // Bob cannot sign in before confirming; saying so needs his password.
    let early = app
        .sign_in("bob@example.com", "someone else's passphrase")
        .await;
    assert_problem(early, 403, "unconfirmed").await;
    let guess = app.sign_in("bob@example.com", PASSWORD).await;
    assert_problem(guess, 400, "invalid-grant").await;
}

async fn a_confirmation_link_works_once(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    app.register_unconfirmed("ada@example.com", PASSWORD).await;
    let token = app.confirmation_token("ada@example.com").await;
    let first = app
        .post("/confirm", json!({ "token": token, "password": PASSWORD }))
        .await;
    assert_eq!(first.status().as_u16(), 200);
    assert_eq!(first.headers()["cache-control"], "no-store");
    let tokens: serde_json::Value = first.json().await.expect("JSON");
    let me = app.get_as("/me", &access(&tokens)).await;
    assert_eq!(me.status().as_u16(), 200);
    let again = app
        .post("/confirm", json!({ "token": token, "password": PASSWORD }))
        .await;
    assert_problem(again, 400, "invalid-grant").await;
    let made_up = app
        .post(
            "/confirm",
            json!({ "token": "A".repeat(43), "password": PASSWORD }),
        )
        .await;
    assert_problem(made_up, 400, "invalid-grant").await;
    let oversized = app
        .post(
            "/confirm",
            json!({ "token": "A".repeat(300), "password": PASSWORD }),
        )
        .await;
    let problem = assert_problem(oversized, 400, "validation").await;
    assert_eq!(problem["errors"][0]["field"], "token");
    app.login("ada@example.com", PASSWORD).await;
}

async fn an_expired_confirmation_is_forgotten_and_the_address_is_free_again(engine: Engine) {
    let app = TestApp::spawn_with(engine, |config| {
        config.address_attempts_burst = 10_000;
        config.confirmation_ttl_secs = 0;
    })
    .await;
    let register = || {
        app.post(
            "/register",
            json!({"email": "ada@example.com", "password": PASSWORD}),
        )
    };
    assert_eq!(register().await.status().as_u16(), 202);
    let token = app.confirmation_token("ada@example.com").await;
    let late = app
        .post("/confirm", json!({ "token": token, "password": PASSWORD }))
        .await;
    assert_problem(late, 400, "invalid-grant").await;
    let context = app.context().await;
    assert_eq!(
        identity::ops::forget_unconfirmed(&context)
            .await
            .expect("swept"),
        1
    );
    let gone = context
        .store
        .user_by_email(&identity::domain::Email::parse("ada@example.com").expect("valid"))
        .await
        .expect("read");
    assert!(gone.is_none(), "{gone:?}");
    assert_eq!(register().await.status().as_u16(), 202);
    let mailed = app.mailed().await;
    assert!(
        matches!(
            mailed[..],
            [RegistrationRequestedV1 {
                outcome: RegistrationOutcome::Confirm { .. },
                ..
            }]
        ),
        "a new account waits for confirmation: {mailed:?}"
    );
}

/// Whoever registers an unconfirmed address last, and reads its mail, gets the account:
/// someone who registered another's address first cannot hold it.
async fn registering_an_unconfirmed_address_again_replaces_its_password(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    app.register_unconfirmed("ada@example.com", "the squatter's passphrase")
        .await;
    let squatters_link = app.confirmation_token("ada@example.com").await;
    app.register_unconfirmed("ada@example.com", PASSWORD).await;
    let owners_link = app.confirmation_token("ada@example.com").await;
    assert_ne!(squatters_link, owners_link);
    let stale = app
        .post(
            "/confirm",
            json!({ "token": squatters_link, "password": "the squatter's passphrase" }),
        )
        .await;
    assert_problem(stale, 400, "invalid-grant").await;
    let confirmed = app
        .post(
            "/confirm",
            json!({ "token": owners_link, "password": PASSWORD }),
        )
        .await;
    assert_eq!(confirmed.status().as_u16(), 200);
    app.login("ada@example.com", PASSWORD).await;
    let squatter = app
        .sign_in("ada@example.com", "the squatter's passphrase")
        .await;
    assert_problem(squatter, 400, "invalid-grant").await;
}

async fn emails_are_normalised_and_unique(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let ada = app.register(" Ada@Example.com ").await;
    assert_eq!(ada["email"], "ada@example.com");
    app.register_unconfirmed("ada@example.COM", PASSWORD).await;
    let mailed = app.mailed().await;
    assert!(
        matches!(mailed[..], [RegistrationRequestedV1 { ref user_id, outcome: RegistrationOutcome::AlreadyRegistered, .. }] if user_id.to_string() == ada["id"]),
        "{mailed:?}"
    );
    app.login("ADA@example.com", PASSWORD).await;
}

/// The seven disguises outside probes registered as new accounts: each is now either
/// the same account (told so by email) or refused as an address, never a second
/// account.
async fn look_alike_emails_cannot_register_another_account(engine: Engine) {
    let app = TestApp::spawn_with(engine, |config| {
        config.address_attempts_burst = 10_000;
    })
    .await;
    app.register("ada@example.com").await;
    for look_alike in [
        "ad\u{200B}a@example.com",
        "ａｄａ@example.com",
        "ada@ｅｘａｍｐｌｅ.com",
        "\u{0430}da@example.com",
        "\"ada\"@example.com",
        "ad\u{00AD}a@example.com",
        "ada\u{202E}@example.com",
    ] {
        let response = app
            .post(
                "/register",
                json!({"email": look_alike, "password": PASSWORD}),
            )
            .await;
        let status = response.status().as_u16();
        assert!(status == 202 || status == 400, "{look_alike:?}: {status}");
    }
    for mail in app.mailed().await {
        assert_eq!(
            (mail.email.as_str(), mail.outcome),
            ("ada@example.com", RegistrationOutcome::AlreadyRegistered),
            "a look-alike registered as another account"
        );
    }
}

async fn unknown_email_and_wrong_password_get_the_same_answer(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    app.register("ada@example.com").await;
    let wrong_password = app
        .sign_in("ada@example.com", "not the right password")
        .await;
    let unknown_email = app.sign_in("nobody@example.com", PASSWORD).await;
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
    let old = app.sign_in("ada@example.com", PASSWORD).await;
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
    assert_eq!(ada["roles"], json!(["customer"]));
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
        let attempt = app.sign_in("ada@example.com", "guess guess guess").await;
        assert_eq!(attempt.status().as_u16(), 400);
    }
    let throttled = app.sign_in("ada@example.com", PASSWORD).await;
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

/// Someone registers another's address and waits for its owner to follow the link: the
/// link alone confirms nothing, since whoever registered would know the password of
/// the account it made. It takes the registered password too.
async fn a_link_confirms_only_with_the_password_it_was_registered_with(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    app.register_unconfirmed("ada@example.com", "the squatter's passphrase")
        .await;
    let link = app.confirmation_token("ada@example.com").await;
    let owner = app
        .post("/confirm", json!({ "token": link, "password": PASSWORD }))
        .await;
    assert_problem(owner, 400, "invalid-grant").await;
    let unconfirmed = app
        .sign_in("ada@example.com", "the squatter's passphrase")
        .await;
    assert_problem(unconfirmed, 403, "unconfirmed").await;
    // Registering for real replaces the squatter's password and link.
    app.register("ada@example.com").await;
    app.login("ada@example.com", PASSWORD).await;
}

/// Registering an address over and over cannot flood it: within the window, a second
/// registration mails nothing and changes nothing, whether the account is unconfirmed
/// (its first link and password stand) or confirmed.
async fn an_address_gets_one_registration_email_at_most_in_a_window(engine: Engine) {
    let app = TestApp::spawn_with(engine, |config| {
        config.address_attempts_burst = 10_000;
        config.registration_email_secs = 3_600;
    })
    .await;
    let register = |email: &'static str, password: &'static str| {
        app.post("/register", json!({"email": email, "password": password}))
    };
    for _ in 0..3 {
        let again = register("ada@example.com", "another long passphrase").await;
        assert_eq!(again.status().as_u16(), 202);
    }
    let mailed = app.mailed().await;
    assert_eq!(mailed.len(), 1, "{mailed:?}");
    let link = app.confirmation_token("ada@example.com").await;
    let confirmed = app
        .post(
            "/confirm",
            json!({ "token": link, "password": "another long passphrase" }),
        )
        .await;
    assert_eq!(confirmed.status().as_u16(), 200, "the first link stands");
    for _ in 0..3 {
        let taken = register("ada@example.com", PASSWORD).await;
        assert_eq!(taken.status().as_u16(), 202);
    }
    assert_eq!(app.mailed().await, [], "nothing more within the window");
}
