//! Invalid admin writes get a 400 problem naming the field (never a 500), and change
//! nothing.

use reqwest::Method;
use serde_json::{Value, json};
use test_support::Engine;

use crate::helpers::{TestApp, assert_names, expect_problem};

test_support::on_both_engines!(
    bodies_that_are_not_the_expected_json_are_named,
    each_product_rule_names_its_field_on_create_and_update,
    every_invalid_field_is_reported_at_once,
    each_category_rule_names_its_field,
);

fn kettle() -> Value {
    json!({
        "slug": "zephyr-kettle",
        "name": "Zephyr Kettle",
        "description": "Whistles.",
        "category": "kitchen",
        "price": {"amount_minor": 3450, "currency": "EUR"},
        "image": "/images/zephyr-kettle.jpg",
        "attributes": {"capacity": "1.5 l"}
    })
}

/// `kettle()` with the JSON pointer `pointer` set to `value`.
fn kettle_with(pointer: &str, value: Value) -> Value {
    let mut body = kettle();
    *body.pointer_mut(pointer).expect("a field of the kettle") = value;
    body
}

/// Sends a raw body with a content type as an admin.
async fn send_raw(
    app: &TestApp,
    method: Method,
    path: &str,
    content_type: &str,
    body: &str,
) -> reqwest::Response {
    app.request(method, path, Some(&app.issuer.admin()))
        .header("content-type", content_type)
        .body(body.to_owned())
        .send()
        .await
        .expect("answers")
}

async fn bodies_that_are_not_the_expected_json_are_named(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    for (method, path) in [
        (Method::POST, "/products"),
        (Method::PATCH, "/products/enamel-camp-mug"),
        (Method::POST, "/categories"),
        (Method::PATCH, "/categories/kitchen"),
    ] {
        for malformed in [r#"{"slug": "#, "", "not json", "[]", "42"] {
            let response =
                send_raw(&app, method.clone(), path, "application/json", malformed).await;
            expect_problem(response, 400, &format!("{method} {path} {malformed:?}")).await;
        }
        let response = send_raw(&app, method.clone(), path, "text/plain", "{}").await;
        let problem = expect_problem(response, 415, &format!("{method} {path} as text")).await;
        assert_eq!(problem["type"], "/problems/unsupported-media-type");
        let response = app
            .request(method.clone(), path, Some(&app.issuer.admin()))
            .json(&json!({"colour": "red"}))
            .send()
            .await
            .expect("answers");
        let problem = expect_problem(response, 400, &format!("{method} {path} colour")).await;
        assert_names(&problem, "colour");
    }

    // Every field of a new product is required.
    for field in [
        "slug",
        "name",
        "description",
        "category",
        "price",
        "image",
        "attributes",
    ] {
        let mut body = kettle();
        body.as_object_mut().expect("an object").remove(field);
        app.assert_invalid_body(Method::POST, "/products", &body, field)
            .await;
    }
    let mut body = kettle();
    body["price"]
        .as_object_mut()
        .expect("an object")
        .remove("currency");
    app.assert_invalid_body(Method::POST, "/products", &body, "currency")
        .await;
    let wrong_types = [
        ("/price/amount_minor", json!("3450"), "price.amount_minor"),
        ("/price/amount_minor", json!(34.5), "price.amount_minor"),
        ("/price/amount_minor", json!(u64::MAX), "price.amount_minor"),
        (
            "/price",
            json!({"amount_minor": 1, "currency": "EUR", "tax": 0}),
            "tax",
        ),
        ("/price", json!([1, "EUR"]), "price"),
        ("/name", json!(42), "name"),
        ("/attributes", json!({"size": 42}), "attributes.size"),
        ("/attributes", json!(["steel"]), "attributes"),
        ("/slug", Value::Null, "slug"),
    ];
    for (pointer, value, field) in wrong_types {
        let body = kettle_with(pointer, value);
        app.assert_invalid_body(Method::POST, "/products", &body, field)
            .await;
    }

    // In a patch a field may be left out, but not sent as null.
    for field in ["slug", "name", "description", "price", "attributes"] {
        let mut body = json!({});
        body[field] = Value::Null;
        app.assert_invalid_body(Method::PATCH, "/products/enamel-camp-mug", &body, field)
            .await;
    }
    app.assert_invalid_body(
        Method::PATCH,
        "/products/enamel-camp-mug",
        &json!({"price": {"amount_minor": 100}}),
        "currency",
    )
    .await;
    app.assert_invalid_body(
        Method::PATCH,
        "/products/enamel-camp-mug",
        &json!({"price": [100, "EUR"]}),
        "price",
    )
    .await;
    // Serde would take an array of field values in order for a struct; only objects are.
    let positional = json!([
        "zephyr-kettle",
        "Zephyr Kettle",
        "",
        "kitchen",
        {"amount_minor": 1, "currency": "EUR"},
        "",
        {}
    ]);
    let response = app
        .request(Method::POST, "/products", Some(&app.issuer.admin()))
        .json(&positional)
        .send()
        .await
        .expect("answers");
    expect_problem(response, 400, "POST a positional array").await;
    app.assert_invalid_body(
        Method::PATCH,
        "/products/enamel-camp-mug",
        &json!({"id": "0190a5a0-0000-7000-8000-000000000000"}),
        "id",
    )
    .await;

    app.get_json("/products/zephyr-kettle", 404).await;
    let mug = app.get_json("/products/enamel-camp-mug", 200).await;
    assert_eq!(mug["name"], "Enamel Camp Mug");
}

async fn each_product_rule_names_its_field_on_create_and_update(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let cases = [
        ("/slug", json!(""), "slug"),
        ("/slug", json!("Zephyr Kettle"), "slug"),
        ("/slug", json!("-kettle"), "slug"),
        ("/slug", json!("k".repeat(81)), "slug"),
        ("/name", json!(""), "name"),
        ("/name", json!("   "), "name"),
        ("/name", json!("n".repeat(121)), "name"),
        ("/description", json!("d".repeat(4001)), "description"),
        ("/category", json!("Kitchen"), "category"),
        ("/price/amount_minor", json!(-1), "price.amount_minor"),
        (
            "/price/amount_minor",
            json!(100_000_001),
            "price.amount_minor",
        ),
        ("/price/currency", json!("eur"), "price.currency"),
        ("/price/currency", json!("EURO"), "price.currency"),
        ("/price/currency", json!("USD"), "price.currency"),
        ("/image", json!("i".repeat(501)), "image"),
        (
            "/attributes",
            Value::Object(
                (0..31)
                    .map(|index| (format!("k{index}"), json!("v")))
                    .collect(),
            ),
            "attributes",
        ),
        ("/attributes", json!({"": "v"}), "attributes"),
        ("/attributes", json!({"Colour": "red"}), "attributes"),
        ("/attributes", json!({"size-eu": "42"}), "attributes"),
        ("/attributes", json!({"k".repeat(41): "v"}), "attributes"),
        (
            "/attributes",
            json!({"colour": "r".repeat(201)}),
            "attributes",
        ),
    ];
    for (pointer, value, field) in cases {
        let body = kettle_with(pointer, value.clone());
        app.assert_invalid_body(Method::POST, "/products", &body, field)
            .await;
        // The same value in a patch: the field alone, with a whole price for price fields.
        let top = pointer.split('/').nth(1).expect("a top-level field");
        let patch = json!({ top: body[top].clone() });
        app.assert_invalid_body(Method::PATCH, "/products/enamel-camp-mug", &patch, field)
            .await;
    }
    // A well-formed category that does not exist is the catalog's state refusing, not
    // a malformed field: 422, still naming the field.
    let unknown = kettle_with("/category", json!("no-such-category"));
    for (method, path, body) in [
        (Method::POST, "/products", unknown.clone()),
        (
            Method::PATCH,
            "/products/enamel-camp-mug",
            json!({"category": "no-such-category"}),
        ),
    ] {
        let problem = app.admin_send(method, path, Some(&body), 422).await;
        crate::helpers::assert_names(&problem, "category");
    }
    // The currency rule says which currency the catalog uses.
    let problem = app
        .assert_invalid_body(
            Method::POST,
            "/products",
            &kettle_with("/price/currency", json!("USD")),
            "price.currency",
        )
        .await;
    assert!(
        problem["detail"]
            .as_str()
            .is_some_and(|detail| detail.contains("EUR")),
        "{problem}"
    );
    // The boundaries themselves are accepted.
    let edge = json!({
        "slug": "k".repeat(80),
        "name": "n".repeat(120),
        "description": "é".repeat(4000),
        "category": "kitchen",
        "price": {"amount_minor": 100_000_000, "currency": "EUR"},
        "image": "i".repeat(500),
        "attributes": (0..30)
            .map(|index| (format!("{index}_{}", "k".repeat(37)), json!("v".repeat(200))))
            .collect::<serde_json::Map<_, _>>(),
    });
    let created = app
        .admin_send(Method::POST, "/products", Some(&edge), 201)
        .await;
    assert_eq!(created["description"], edge["description"]);

    app.get_json("/products/zephyr-kettle", 404).await;
    let mug = app.get_json("/products/enamel-camp-mug", 200).await;
    assert_eq!(mug["name"], "Enamel Camp Mug");
    assert_eq!(mug["category"], "kitchen");
}

async fn every_invalid_field_is_reported_at_once(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let body = json!({
        "slug": "Bad Slug",
        "name": "",
        "description": "",
        "category": "kitchen",
        "price": {"amount_minor": -5, "currency": "usd"},
        "image": "",
        "attributes": {"Bad": "key"}
    });
    let response = app
        .request(Method::POST, "/products", Some(&app.issuer.admin()))
        .json(&body)
        .send()
        .await
        .expect("answers");
    let problem = expect_problem(response, 400, "POST many bad fields").await;
    assert_eq!(problem["type"], "/problems/validation");
    let fields: Vec<&str> = problem["errors"]
        .as_array()
        .expect("field errors")
        .iter()
        .filter_map(|error| error["field"].as_str())
        .collect();
    assert_eq!(
        fields,
        [
            "slug",
            "name",
            "price.amount_minor",
            "price.currency",
            "attributes"
        ]
    );
}

async fn each_category_rule_names_its_field(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let garden = || json!({"slug": "garden", "name": "Garden", "description": "Outside."});
    let cases = [
        ("slug", json!("Garden"), "slug"),
        ("slug", json!(""), "slug"),
        ("name", json!(" "), "name"),
        ("name", json!("n".repeat(121)), "name"),
        ("description", json!("d".repeat(4001)), "description"),
        ("name", Value::Null, "name"),
    ];
    for (key, value, field) in cases {
        let mut body = garden();
        body[key] = value.clone();
        app.assert_invalid_body(Method::POST, "/categories", &body, field)
            .await;
        if key != "slug" {
            app.assert_invalid_body(
                Method::PATCH,
                "/categories/kitchen",
                &json!({ key: value }),
                field,
            )
            .await;
        }
    }
    for missing in ["slug", "name", "description"] {
        let mut body = garden();
        body.as_object_mut().expect("an object").remove(missing);
        app.assert_invalid_body(Method::POST, "/categories", &body, missing)
            .await;
    }
    // A category's slug is fixed: products refer to it.
    app.assert_invalid_body(
        Method::PATCH,
        "/categories/kitchen",
        &json!({"slug": "cooking"}),
        "slug",
    )
    .await;

    let listed = app.get_json("/categories", 200).await;
    assert_eq!(listed["items"].as_array().map(Vec::len), Some(6));
    assert_eq!(listed["items"][0]["name"], "Kitchen");
}
