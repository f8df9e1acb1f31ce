//! A customer reads their own emails over REST, a page at a time; nobody else's.

use platform::clock::now_ms;
use serde_json::Value;
use test_support::security::{assert_corpus_refused, assert_hidden_from_others, attack_corpus};
use test_support::{Engine, TestIssuer};

use crate::helpers::{TestApp, Transport, cancelled, confirmed, new_id, registered};

test_support::on_both_engines!(
    customers_page_through_their_own_emails_newest_first,
    another_customers_email_is_not_found,
    forged_tokens_are_refused,
    bad_parameters_are_named,
    the_api_is_described,
);

async fn customers_page_through_their_own_emails_newest_first(engine: Engine) {
    let mut app = TestApp::spawn(engine, Transport::Mailbox).await;
    let (ada, bob) = (new_id(), new_id());
    let (first_order, second_order) = (new_id(), new_id());
    app.deliver(&registered(&ada, "ada@example.com")).await;
    app.deliver(&confirmed(&ada, &first_order)).await;
    app.deliver(&cancelled(&ada, &second_order, "out_of_stock"))
        .await;
    app.deliver(&registered(&bob, "bob@example.com")).await;
    assert_eq!(app.send_due(now_ms()).await, 4);
    let token = app.issuer.customer(&ada);

    let first = app.get_json("/?limit=2", &token, 200).await;
    let kinds = |page: &Value| -> Vec<String> {
        page["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|item| item["kind"].as_str().expect("a kind").to_owned())
            .collect()
    };
    assert_eq!(kinds(&first), ["order_cancelled", "order_confirmed"]);
    let item = &first["items"][1];
    assert_eq!(item["order_id"], first_order.as_str());
    assert_eq!(item["status"], "sent");
    assert!(
        item["subject"]
            .as_str()
            .is_some_and(|s| s.contains("is confirmed"))
    );
    assert!(
        item["body"]
            .as_str()
            .is_some_and(|b| b.contains("Total charged: 59.00 EUR"))
    );
    assert!(
        item["created_at"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z'))
    );
    assert!(item["sent_at"].as_str().is_some_and(|t| t.ends_with('Z')));
    let cursor = first["next_cursor"].as_str().expect("more to come");

    let second = app
        .get_json(&format!("/?limit=2&cursor={cursor}"), &token, 200)
        .await;
    assert_eq!(kinds(&second), ["welcome"]);
    assert!(second["next_cursor"].is_null(), "the last page");
    let everything = app.get_json("/", &token, 200).await;
    assert_eq!(everything["items"].as_array().map(Vec::len), Some(3));

    let bobs = app.get_json("/", &app.issuer.customer(&bob), 200).await;
    assert_eq!(kinds(&bobs), ["welcome"], "only Bob's own");
    let nobody = app
        .get_json("/", &app.issuer.customer(&new_id()), 200)
        .await;
    assert_eq!(nobody["items"], serde_json::json!([]));

    // A pending email is listed as such, before it is sent.
    app.deliver(&confirmed(&ada, &new_id())).await;
    let newest = app.get_json("/?limit=1", &token, 200).await;
    assert_eq!(newest["items"][0]["status"], "pending");
    assert!(newest["items"][0]["sent_at"].is_null());
}

async fn another_customers_email_is_not_found(engine: Engine) {
    let mut app = TestApp::spawn(engine, Transport::Mailbox).await;
    let (ada, bob) = (new_id(), new_id());
    app.deliver(&registered(&ada, "ada@example.com")).await;
    app.deliver(&registered(&bob, "bob@example.com")).await;
    let ada_token = app.issuer.customer(&ada);
    let page = app.get_json("/", &ada_token, 200).await;
    let id = page["items"][0]["id"].as_str().expect("an id").to_owned();
    let url = app.url(&format!("/{id}"));
    assert_hidden_from_others(&app.client, &url, &ada_token, &app.issuer.customer(&bob)).await;
    let own = app.get_json(&format!("/{id}"), &ada_token, 200).await;
    assert_eq!(own["kind"], "welcome");
    assert_eq!(own["id"], id.as_str());
    let unknown = app
        .get_json(&format!("/{}", new_id()), &ada_token, 404)
        .await;
    assert_eq!(unknown["status"], 404);
    let unauthenticated = app.client.get(&url).send().await.expect("answers");
    assert_eq!(unauthenticated.status().as_u16(), 401);
}

async fn forged_tokens_are_refused(engine: Engine) {
    let mut app = TestApp::spawn(engine, Transport::Mailbox).await;
    let ada = new_id();
    app.deliver(&registered(&ada, "ada@example.com")).await;
    let valid = app.issuer.customer(&ada);
    let corpus = attack_corpus(app.issuer.key(), TestIssuer::ISSUER, &valid);
    let list = app.url("/");
    assert_corpus_refused(|| app.client.get(&list), &valid, &corpus).await;
    let page = app.get_json("/", &valid, 200).await;
    let one = app.url(&format!(
        "/{}",
        page["items"][0]["id"].as_str().expect("an id")
    ));
    assert_corpus_refused(|| app.client.get(&one), &valid, &corpus).await;
}

async fn bad_parameters_are_named(engine: Engine) {
    let app = TestApp::spawn(engine, Transport::Mailbox).await;
    let token = app.issuer.customer(&new_id());
    let garbage_cursor = "bm90IGEgY3Vyc29y";
    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=ten", "limit"),
        ("limit=-1", "limit"),
        ("cursor=%25%25%25", "cursor"),
        (&format!("cursor={garbage_cursor}") as &str, "cursor"),
        (&format!("cursor={}", "A".repeat(300)) as &str, "cursor"),
    ] {
        let problem = problem(&app, &format!("/?{query}"), &token).await;
        assert_eq!(problem["errors"][0]["field"], field, "{query}: {problem}");
    }
    let both = problem(&app, "/?limit=0&cursor=x", &token).await;
    let fields: Vec<&str> = both["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|error| error["field"].as_str().expect("a field"))
        .collect();
    assert_eq!(fields, ["limit", "cursor"]);
    let unknown = problem(&app, "/?sort=newest", &token).await;
    assert!(
        unknown["detail"]
            .as_str()
            .is_some_and(|d| d.contains("sort")),
        "{unknown}"
    );
    let long = problem(
        &app,
        &format!("/?limit=1&cursor={}", "x".repeat(2000)),
        &token,
    )
    .await;
    assert_eq!(long["errors"][0]["field"], "query");
    let not_an_id = problem(&app, "/not-an-id", &token).await;
    assert_eq!(not_an_id["errors"][0]["field"], "id");
}

async fn the_api_is_described(engine: Engine) {
    let app = TestApp::spawn(engine, Transport::Mailbox).await;
    let response = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .expect("answers");
    assert_eq!(response.status().as_u16(), 200);
    let document: Value = response.json().await.expect("JSON");
    assert!(document["paths"]["/"]["get"].is_object());
    assert!(document["paths"]["/{id}"]["get"].is_object());
    assert!(document["components"]["securitySchemes"]["bearer"].is_object());
}

/// `GET path` as `token`, which must be a 400 problem; its body.
async fn problem(app: &TestApp, path: &str, token: &str) -> Value {
    let response = app
        .client
        .get(app.url(path))
        .bearer_auth(token)
        .send()
        .await
        .expect("answers");
    assert_eq!(response.status().as_u16(), 400, "GET {path}");
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json",
        "GET {path}"
    );
    response.json().await.expect("JSON")
}
