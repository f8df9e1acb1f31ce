//! What the tests that run `bazaar` as processes share: shoppers, checkouts that may
//! hit a dying process, and the operator's audit.

#![allow(dead_code, reason = "each test binary uses its own subset")]

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};

/// Every shopper's password.
pub(crate) const PASSWORD: &str = "correct horse battery staple";
/// The statuses an order ends in.
pub(crate) const ENDS: [&str; 3] = ["confirmed", "rejected", "cancelled"];

/// A signed-up shopper with a saved card.
pub(crate) struct Buyer {
    /// The access token.
    pub(crate) token: String,
    /// The saved card's token.
    pub(crate) card: String,
}

/// A request that may fail because a process was just killed: the status and body, or
/// nothing if no answer came.
pub(crate) async fn call(request: reqwest::RequestBuilder) -> Option<(u16, Value)> {
    let response = request.send().await.ok()?;
    let status = response.status().as_u16();
    Some((status, response.json().await.unwrap_or(Value::Null)))
}

/// Signs up buyer `n` through the gateway at `gateway` and saves a card that pays.
pub(crate) async fn sign_up(client: &reqwest::Client, gateway: &str, n: usize) -> Buyer {
    let email = format!("buyer{n}@example.com");
    let url = |path: &str| format!("http://{gateway}{path}");
    let body = json!({"email": email, "password": PASSWORD});
    let registered = client
        .post(url("/api/identity/register"))
        .json(&body)
        .send()
        .await
        .expect("answers");
    assert_eq!(registered.status().as_u16(), 201);
    let tokens: Value = client
        .post(url("/api/identity/token"))
        .json(&body)
        .send()
        .await
        .expect("answers")
        .json()
        .await
        .expect("JSON");
    let token = tokens["access_token"].as_str().expect("a token").to_owned();
    let card =
        json!({"number": "4242424242424242", "exp_month": 12, "exp_year": 2040, "cvc": "123"});
    let card: Value = client
        .post(url("/api/payments/methods"))
        .bearer_auth(&token)
        .json(&card)
        .send()
        .await
        .expect("answers")
        .json()
        .await
        .expect("JSON");
    Buyer {
        token,
        card: card["token"].as_str().expect("a card").to_owned(),
    }
}

/// The id of the enamel camp mug, the product every test buys.
pub(crate) async fn mug(client: &reqwest::Client, gateway: &str) -> String {
    let mug: Value = client
        .get(format!(
            "http://{gateway}/api/catalog/products/enamel-camp-mug"
        ))
        .send()
        .await
        .expect("answers")
        .json()
        .await
        .expect("JSON");
    mug["id"].as_str().expect("an id").to_owned()
}

/// Polls order `id` until it reaches an end (for up to 30 s); its last state.
pub(crate) async fn until_ended(
    client: &reqwest::Client,
    gateway: &str,
    buyer: &Buyer,
    id: &str,
) -> Value {
    let path = format!("http://{gateway}/api/orders/{id}");
    let mut last = Value::Null;
    for _ in 0..600 {
        if let Some((200, order)) = call(client.get(&path).bearer_auth(&buyer.token)).await {
            if ENDS.iter().any(|end| order["status"] == *end) {
                return order;
            }
            last = order;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("order {id} is stuck: {last:#}");
}

/// Runs `bazaar verify` over `config` until it reports clean. Work the shop still has
/// in flight (a confirmation email whose outbox claim a killed process held, say) may
/// take a claim's lease to settle, so a dirty report is retried for up to 40 s; an
/// audit that cannot run at all fails at once.
pub(crate) async fn verify_until_clean(config: &Path, context: &str) {
    let mut report = String::new();
    for _ in 0..400 {
        let verify = Command::new(env!("CARGO_BIN_EXE_bazaar"))
            .args(["--config", config.to_str().expect("UTF-8"), "verify"])
            .output()
            .expect("bazaar verify runs");
        report = String::from_utf8_lossy(&verify.stdout).into_owned();
        if verify.status.success() {
            return;
        }
        assert_eq!(
            verify.status.code(),
            Some(1),
            "{report}{}",
            String::from_utf8_lossy(&verify.stderr)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the audit never came back clean ({context}):\n{report}");
}
