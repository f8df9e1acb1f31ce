//! Saving cards: what is checked, what is kept (never the number), who sees what.

use contracts::proto::payments::v1::GetPaymentMethodRequest;
use contracts::proto::payments::v1::payments_client::PaymentsClient;
use payments::cards;
use serde_json::{Value, json};
use test_support::Engine;
use test_support::security::{assert_corpus_refused, assert_hidden_from_others, attack_corpus};

use crate::helpers::{TestApp, card_body, customer_id, every_text};

test_support::on_both_engines!(
    a_saved_card_keeps_only_a_token_brand_last_four_and_expiry,
    invalid_cards_are_refused_naming_the_field,
    malformed_bodies_are_refused_without_echoing_the_number,
    cards_are_hidden_from_other_customers,
    deleted_cards_are_gone,
    a_customer_keeps_a_bounded_number_of_cards,
    forged_tokens_are_refused,
    grpc_finds_only_the_customers_own_live_cards,
    the_api_is_described,
);

async fn a_saved_card_keeps_only_a_token_brand_last_four_and_expiry(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let year = cards::YearMonth::now().year + 3;
    let response = app
        .client
        .post(app.url("/methods"))
        .bearer_auth(app.token("ann"))
        .json(&json!({"number": "4242 4242 4242 4242", "exp_month": 7, "exp_year": year, "cvc": "987"}))
        .send()
        .await
        .expect("answers");
    assert_eq!(response.status().as_u16(), 201);
    let location = response.headers()["location"]
        .to_str()
        .expect("text")
        .to_owned();
    let text = response.text().await.expect("a body");
    assert!(
        !text.contains(cards::APPROVED),
        "the number came back: {text}"
    );
    let body: Value = serde_json::from_str(&text).expect("JSON");
    let token = body["token"].as_str().expect("a token");
    assert!(token.starts_with("pm_") && token.len() == 35, "{token}");
    assert_eq!(location, format!("/methods/{token}"));
    assert_eq!(body["brand"], "visa");
    assert_eq!(body["last4"], "4242");
    assert_eq!(
        (body["exp_month"].as_i64(), body["exp_year"].as_i64()),
        (Some(7), Some(i64::from(year)))
    );
    assert!(body.get("cvc").is_none() && body.get("number").is_none());

    let mastercard = app.card("ann", "5555555555554444").await;
    let listed = app.get_json("/methods", &app.token("ann"), 200).await;
    let tokens: Vec<&str> = listed["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|item| item["token"].as_str().expect("a token"))
        .collect();
    assert_eq!(tokens, [token, mastercard.as_str()], "oldest first");
    let read = app.get_json(&location, &app.token("ann"), 200).await;
    assert_eq!(read["last4"], "4242");

    // Neither the number nor the code is anywhere in payments' database, nor on the bus.
    for number in [cards::APPROVED, "5555555555554444"] {
        for (place, text) in every_text(&app.db).await {
            assert!(
                !text.contains(number),
                "{place} holds the card number: {text}"
            );
        }
        let bus = app.bus_db().await;
        for (place, text) in every_text(&bus).await {
            assert!(
                !text.contains(number),
                "the bus's {place} holds the card number"
            );
        }
    }
    let stored = every_text(&app.db).await;
    assert!(
        stored.iter().any(|(_, text)| text == "4242"),
        "the last four digits are kept"
    );
}

async fn invalid_cards_are_refused_naming_the_field(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let now = cards::YearMonth::now();
    let year = i64::from(now.year);
    let last_month = if now.month == 1 {
        (12, year - 1)
    } else {
        (i64::from(now.month) - 1, year)
    };
    let cases = [
        (
            json!({"number": "4242-4242-4242-4242", "exp_month": 12, "exp_year": year + 1, "cvc": "123"}),
            "number",
        ),
        (
            json!({"number": "4242 42x2 4242 4242", "exp_month": 12, "exp_year": year + 1, "cvc": "123"}),
            "number",
        ),
        (
            json!({"number": "42424242424", "exp_month": 12, "exp_year": year + 1, "cvc": "123"}),
            "number",
        ),
        (
            json!({"number": "42424242424242424242", "exp_month": 12, "exp_year": year + 1, "cvc": "123"}),
            "number",
        ),
        (
            json!({"number": "4242424242424241", "exp_month": 12, "exp_year": year + 1, "cvc": "123"}),
            "number",
        ),
        (
            json!({"number": "", "exp_month": 12, "exp_year": year + 1, "cvc": "123"}),
            "number",
        ),
        (
            json!({"number": cards::APPROVED, "exp_month": 0, "exp_year": year + 1, "cvc": "123"}),
            "exp_month",
        ),
        (
            json!({"number": cards::APPROVED, "exp_month": 13, "exp_year": year + 1, "cvc": "123"}),
            "exp_month",
        ),
        (
            json!({"number": cards::APPROVED, "exp_month": last_month.0, "exp_year": last_month.1, "cvc": "123"}),
            if last_month.1 < year {
                "exp_year"
            } else {
                "exp_month"
            },
        ),
        (
            json!({"number": cards::APPROVED, "exp_month": 12, "exp_year": year - 1, "cvc": "123"}),
            "exp_year",
        ),
        (
            json!({"number": cards::APPROVED, "exp_month": 12, "exp_year": 30, "cvc": "123"}),
            "exp_year",
        ),
        (
            json!({"number": cards::APPROVED, "exp_month": 12, "exp_year": year + 1, "cvc": "12"}),
            "cvc",
        ),
        (
            json!({"number": cards::APPROVED, "exp_month": 12, "exp_year": year + 1, "cvc": "12345"}),
            "cvc",
        ),
        (
            json!({"number": cards::APPROVED, "exp_month": 12, "exp_year": year + 1, "cvc": "1 3"}),
            "cvc",
        ),
    ];
    for (body, field) in cases {
        let response = app
            .client
            .post(app.url("/methods"))
            .bearer_auth(app.token("ann"))
            .json(&body)
            .send()
            .await
            .expect("answers");
        assert_eq!(response.status().as_u16(), 422, "{body}");
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
        let text = response.text().await.expect("a body");
        assert!(!text.contains(cards::APPROVED), "echoed the number: {text}");
        let problem: Value = serde_json::from_str(&text).expect("JSON");
        assert_eq!(problem["status"], 422);
        assert_eq!(problem["errors"][0]["field"], field, "{body}: {problem}");
    }
    let everything_wrong = app
        .client
        .post(app.url("/methods"))
        .bearer_auth(app.token("ann"))
        .json(&json!({"number": "x", "exp_month": 99, "exp_year": 1, "cvc": ""}))
        .send()
        .await
        .expect("answers");
    let problem: Value = everything_wrong.json().await.expect("JSON");
    let fields: Vec<&str> = problem["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|error| error["field"].as_str().expect("a field"))
        .collect();
    assert_eq!(fields, ["number", "exp_month", "exp_year", "cvc"]);
    let listed = app.get_json("/methods", &app.token("ann"), 200).await;
    assert_eq!(listed["items"], json!([]), "nothing was saved");
}

async fn malformed_bodies_are_refused_without_echoing_the_number(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let year = cards::YearMonth::now().year + 1;
    let post = |body: String| {
        app.client
            .post(app.url("/methods"))
            .bearer_auth(app.token("ann"))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let cases = [
        format!(
            r#"{{"number": 4242424242424242, "exp_month": 12, "exp_year": {year}, "cvc": "123"}}"#
        ),
        format!(
            r#"{{"number": 42424242424242424242424242, "exp_month": 12, "exp_year": {year}, "cvc": "123"}}"#
        ),
        format!(
            r#"{{"number": 4.242424242424242e15, "exp_month": 12, "exp_year": {year}, "cvc": "123"}}"#
        ),
        format!(
            r#"{{"number": "{}", "exp_month": 12, "exp_year": {year}, "cvc": 4242424242424242}}"#,
            cards::APPROVED
        ),
        format!(
            r#"{{"number": "{}", "exp_month": "12", "exp_year": {year}, "cvc": "123"}}"#,
            cards::APPROVED
        ),
        format!(
            r#"{{"number": "{}", "exp_year": {year}, "cvc": "123"}}"#,
            cards::APPROVED
        ),
        format!(
            r#"{{"number": "{}", "exp_month": 12, "exp_year": {year}, "cvc": "123", "pin": "1234"}}"#,
            cards::APPROVED
        ),
        format!(r#"["{}", 12, {year}, "123"]"#, cards::APPROVED),
        format!(r#"{{"number": "{}", "#, cards::APPROVED),
    ];
    for body in cases {
        let response = post(body.clone()).await.expect("answers");
        assert_eq!(response.status().as_u16(), 400, "{body}");
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
        let text = response.text().await.expect("a body");
        assert!(!text.contains("4242424242"), "echoed the number: {text}");
        assert!(!text.contains("4.242"), "echoed the number: {text}");
    }
    let anonymous = app
        .client
        .post(app.url("/methods"))
        .json(&card_body(cards::APPROVED))
        .send()
        .await
        .expect("answers");
    assert_eq!(anonymous.status().as_u16(), 401);
}

async fn cards_are_hidden_from_other_customers(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let token = app.card("ann", cards::APPROVED).await;
    let (ann, bob) = (app.token("ann"), app.token("bob"));
    assert_hidden_from_others(
        &app.client,
        &app.url(&format!("/methods/{token}")),
        &ann,
        &bob,
    )
    .await;
    let bobs = app.get_json("/methods", &bob, 200).await;
    assert_eq!(bobs["items"], json!([]));
    let admins = app
        .get_json(&format!("/methods/{token}"), &app.issuer.admin(), 404)
        .await;
    assert_eq!(admins["status"], 404, "a card is its owner's alone");
    let deleted_by_bob = app
        .client
        .delete(app.url(&format!("/methods/{token}")))
        .bearer_auth(&bob)
        .send()
        .await
        .expect("answers");
    assert_eq!(deleted_by_bob.status().as_u16(), 404);
    app.get_json(&format!("/methods/{token}"), &ann, 200).await;
    for bad in [
        "nope",
        "pm_XYZ",
        "pm_0123456789abcdef0123456789abcdeg",
        "pm_0123456789abcdef0123456789abcdef0",
    ] {
        let problem = app.get_json(&format!("/methods/{bad}"), &ann, 400).await;
        assert_eq!(problem["errors"][0]["field"], "token", "{bad}");
    }
    let unknown = format!("pm_{}", uuid::Uuid::new_v4().simple());
    app.get_json(&format!("/methods/{unknown}"), &ann, 404)
        .await;
}

async fn deleted_cards_are_gone(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let token = app.card("ann", cards::APPROVED).await;
    let ann = app.token("ann");
    let delete = || {
        app.client
            .delete(app.url(&format!("/methods/{token}")))
            .bearer_auth(&ann)
            .send()
    };
    assert_eq!(delete().await.expect("answers").status().as_u16(), 204);
    assert_eq!(delete().await.expect("answers").status().as_u16(), 404);
    app.get_json(&format!("/methods/{token}"), &ann, 404).await;
    let listed = app.get_json("/methods", &ann, 200).await;
    assert_eq!(listed["items"], json!([]));
}

async fn a_customer_keeps_a_bounded_number_of_cards(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    for _ in 0..payments::ops::MAX_METHODS {
        app.card("ann", cards::APPROVED).await;
    }
    let response = app
        .client
        .post(app.url("/methods"))
        .bearer_auth(app.token("ann"))
        .json(&card_body(cards::APPROVED))
        .send()
        .await
        .expect("answers");
    assert_eq!(response.status().as_u16(), 409);
    app.card("bob", cards::APPROVED).await;
}

async fn forged_tokens_are_refused(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let valid = app.token("ann");
    let corpus = attack_corpus(app.issuer.key(), test_support::TestIssuer::ISSUER, &valid);
    let url = app.url("/methods");
    let body = card_body(cards::APPROVED);
    assert_corpus_refused(|| app.client.post(&url).json(&body), &valid, &corpus).await;
    assert_corpus_refused(|| app.client.get(&url), &valid, &corpus).await;
    let listed = app.get_json("/methods", &valid, 200).await;
    assert_eq!(
        listed["items"].as_array().map(Vec::len),
        Some(1),
        "only the valid token's card was saved"
    );
    let admin = app.issuer.admin();
    let balances = app.url("/ledger/balances");
    assert_corpus_refused(|| app.client.get(&balances), &admin, &corpus).await;
}

async fn grpc_finds_only_the_customers_own_live_cards(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let token = app.card("ann", "378282246310005").await;
    let mut client = PaymentsClient::connect(format!("http://{}", app.address))
        .await
        .expect("a gRPC connection");
    // Each call carries the asking customer's own token, as orders sends it.
    let ask = |customer: &str, token: &str| {
        let request = GetPaymentMethodRequest {
            customer_id: customer_id(customer),
            token: token.to_owned(),
        };
        platform::grpc::on_behalf_of(request, &app.token(customer)).expect("a request")
    };
    let found = client
        .get_payment_method(ask("ann", &token))
        .await
        .expect("answered")
        .into_inner();
    assert!(found.found);
    assert_eq!(
        (found.brand.as_str(), found.last4.as_str()),
        ("amex", "0005")
    );
    let foreign = client
        .get_payment_method(ask("bob", &token))
        .await
        .expect("answered")
        .into_inner();
    assert!(
        !foreign.found && foreign.last4.is_empty(),
        "another customer's card is not found"
    );
    let unknown = client
        .get_payment_method(ask("ann", "pm_nothing"))
        .await
        .expect("answered")
        .into_inner();
    assert!(!unknown.found);
    let refused = client
        .get_payment_method(
            platform::grpc::on_behalf_of(
                GetPaymentMethodRequest {
                    customer_id: String::new(),
                    token: token.clone(),
                },
                &app.token("ann"),
            )
            .expect("a request"),
        )
        .await
        .expect_err("refused");
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    // Without the customer's token, or with another's, nothing is said about the card.
    let anonymous = client
        .get_payment_method(GetPaymentMethodRequest {
            customer_id: customer_id("ann"),
            token: token.clone(),
        })
        .await
        .expect_err("refused");
    assert_eq!(anonymous.code(), tonic::Code::Unauthenticated);
    let as_bob = platform::grpc::on_behalf_of(
        GetPaymentMethodRequest {
            customer_id: customer_id("ann"),
            token: token.clone(),
        },
        &app.token("bob"),
    )
    .expect("a request");
    let foreign = client
        .get_payment_method(as_bob)
        .await
        .expect_err("refused");
    assert_eq!(foreign.code(), tonic::Code::PermissionDenied);
    let deleted = app
        .client
        .delete(app.url(&format!("/methods/{token}")))
        .bearer_auth(app.token("ann"))
        .send()
        .await
        .expect("answers");
    assert_eq!(deleted.status().as_u16(), 204);
    let gone = client
        .get_payment_method(ask("ann", &token))
        .await
        .expect("answered")
        .into_inner();
    assert!(!gone.found, "a deleted card is not found");
}

async fn the_api_is_described(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let document = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .expect("answers");
    assert_eq!(document.status().as_u16(), 200);
    let document: Value = document.json().await.expect("JSON");
    for path in [
        "/methods",
        "/methods/{token}",
        "/orders/{order_id}",
        "/ledger/balances",
    ] {
        assert!(
            document["paths"][path].is_object(),
            "{path} is not described"
        );
    }
    assert!(document["paths"]["/methods"]["post"]["responses"]["422"].is_object());
}
