//! The JWT attack corpus, at identity itself.

use test_support::Engine;
use test_support::security::{assert_corpus_refused, attack_corpus};

use crate::helpers::{ISSUER, PASSWORD, TestApp};

test_support::on_both_engines!(
    every_forged_token_is_refused,
    a_flood_of_sign_ins_is_refused_beyond_the_hashing_bound,
    guessing_from_many_networks_slows_the_account_down_but_never_locks_the_owner_out,
    a_local_caller_without_the_forwarding_secret_cannot_claim_other_addresses
);

async fn every_forged_token_is_refused(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let valid = app.customer("ada@example.com").await;
    let trusted = app
        .context()
        .await
        .store
        .active_key()
        .await
        .expect("readable")
        .expect("a signing key")
        .key;
    let corpus = attack_corpus(&trusted, ISSUER, &valid);
    assert!(corpus.len() >= 12);
    assert_corpus_refused(|| app.client.get(app.url("/me")), &valid, &corpus).await;
}

/// 64 sign-ins at once against one hashing thread and a queue of two: the ones beyond
/// the bound are refused at once with 503, `Retry-After` and a problem; every other
/// one is answered as usual, and the account's owner signs in afterwards.
async fn a_flood_of_sign_ins_is_refused_beyond_the_hashing_bound(engine: Engine) {
    let app = TestApp::spawn_with(engine, |config| {
        config.address_attempts_burst = 10_000;
        config.account_failures_per_network = 10_000;
        config.account_failures_overall = 10_000;
        config.password_hashing_threads = 1;
        config.password_hashing_queue = 2;
    })
    .await;
    app.register("ada@example.com").await;
    let attempts = (0..64).map(|attempt| {
        let request = app.client.post(app.url("/token")).json(&serde_json::json!({
            "email": "ada@example.com",
            "password": format!("wrong guess number {attempt}"),
        }));
        tokio::spawn(async move { request.send().await.expect("identity answers") })
    });
    let (mut refused, mut answered) = (0, 0);
    for attempt in attempts.collect::<Vec<_>>() {
        let response = attempt.await.expect("joined");
        match response.status().as_u16() {
            503 => {
                assert_eq!(response.headers()["retry-after"], "1");
                assert_eq!(
                    response.headers()["content-type"],
                    "application/problem+json"
                );
                refused += 1;
            }
            400 => answered += 1,
            status => panic!("a sign-in answered {status}"),
        }
    }
    assert_eq!(refused + answered, 64);
    assert!(refused > 0, "64 concurrent hashes were all admitted");
    assert!(answered >= 1, "no sign-in was admitted");
    app.login("ada@example.com", PASSWORD).await;
}

/// Signs in as `email` with `password` from `address` (through the trusted proxy the
/// test client plays); the status and `Retry-After`, if any.
async fn sign_in_from(
    app: &TestApp,
    email: &str,
    password: &str,
    address: &str,
) -> (u16, Option<u64>) {
    let response = app
        .client
        .post(app.url("/token"))
        .header("x-forwarded-for", address)
        .json(&serde_json::json!({"email": email, "password": password}))
        .send()
        .await
        .expect("identity answers");
    let wait = response
        .headers()
        .get("retry-after")
        .and_then(|value| value.to_str().ok()?.parse().ok());
    (response.status().as_u16(), wait)
}

/// Guessing spread over many networks cannot lock the owner out: from a network they
/// signed in from they still sign in, and elsewhere the account is slowed down to one
/// attempt per interval, never locked for the window.
async fn guessing_from_many_networks_slows_the_account_down_but_never_locks_the_owner_out(
    engine: Engine,
) {
    let app = TestApp::spawn_with(engine, |config| {
        config.address_attempts_burst = 10_000;
        config.account_failures_per_network = 3;
        config.account_failures_overall = 10;
        config.account_slowdown_secs = 10;
    })
    .await;
    let owner = "ada@example.com";
    app.register(owner).await;
    let home = "198.51.100.7";
    assert_eq!(sign_in_from(&app, owner, PASSWORD, home).await.0, 200);
    for bot in 1..=10 {
        for _ in 0..3 {
            let address = format!("203.0.113.{bot}");
            sign_in_from(&app, owner, "a wrong guess", &address).await;
        }
    }
    assert_eq!(
        sign_in_from(&app, owner, PASSWORD, home).await.0,
        200,
        "the owner is locked out of their own network"
    );
    // Elsewhere the account is slowed down (one attempt per 10 s, which the bots just
    // had), not locked for the 15-minute window.
    let (status, wait) = sign_in_from(&app, owner, PASSWORD, "203.0.113.98").await;
    assert_eq!(status, 429);
    assert!(
        wait.is_some_and(|wait| (1..=10).contains(&wait)),
        "{wait:?}"
    );
}

/// Every local process is a trusted peer of the embedded shop's identity. With the
/// shop's forwarding secret set, a caller that does not present it is throttled by its
/// own address, whatever `X-Forwarded-For` it claims; the shop's proxies, which present
/// it, still pass on each client's address.
async fn a_local_caller_without_the_forwarding_secret_cannot_claim_other_addresses(engine: Engine) {
    let secret = platform::config::Secret::random().expect("a secret");
    let app = TestApp::spawn_with(engine, |config| {
        config.address_attempts_burst = 3;
        config.forwarding_secret = Some(secret.clone());
    })
    .await;
    let attempt = |address: String, vouched: bool| {
        let mut request = app
            .client
            .post(app.url("/token"))
            .header("x-forwarded-for", address)
            .json(&serde_json::json!({"email": "eve@example.com", "password": "guess"}));
        if vouched {
            request = request.header(platform::net::FORWARDED_BY, secret.expose());
        }
        async move { request.send().await.expect("answers").status().as_u16() }
    };
    let mut spoofed = Vec::new();
    for n in 0..6 {
        spoofed.push(attempt(format!("203.0.113.{n}"), false).await);
    }
    assert_eq!(spoofed[..3], [400, 400, 400], "{spoofed:?}");
    assert!(
        spoofed[3..].iter().all(|status| *status == 429),
        "{spoofed:?}"
    );
    for n in 10..16 {
        assert_eq!(
            attempt(format!("198.51.100.{n}"), true).await,
            400,
            "a client vouched for by the proxy has its own allowance"
        );
    }
    let forged = app
        .client
        .post(app.url("/token"))
        .header("x-forwarded-for", "198.51.100.99")
        .header(platform::net::FORWARDED_BY, "not-the-secret-at-all")
        .json(&serde_json::json!({"email": "eve@example.com", "password": "guess"}))
        .send()
        .await
        .expect("answers");
    assert_eq!(forged.status(), 429, "a wrong secret counts as none");
}
