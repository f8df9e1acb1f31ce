//! Admin writes: creating, changing and deleting products and categories, who may do it,
//! and what conflicts look like.

use reqwest::Method;
use serde_json::{Value, json};
use test_support::Engine;

use crate::helpers::{TestApp, assert_names, expect_problem};

test_support::on_both_engines!(
    a_product_goes_from_creation_to_deletion,
    a_price_change_moves_the_product_in_price_order,
    every_write_needs_an_admin,
    duplicate_slugs_are_conflicts,
    racing_creations_of_one_slug_make_exactly_one_product,
    racing_patches_of_different_fields_both_stick,
    a_category_goes_from_creation_to_deletion,
    a_category_with_products_cannot_be_deleted,
    unknown_products_and_categories_are_404s,
    the_openapi_document_describes_the_admin_api,
);

/// A valid new product in the seeded `kitchen` category.
fn kettle() -> Value {
    json!({
        "slug": "zephyr-kettle",
        "name": "Zephyr Kettle",
        "description": "Whistles like a zephyrine breeze.",
        "category": "kitchen",
        "price": {"amount_minor": 3450, "currency": "EUR"},
        "image": "/images/zephyr-kettle.jpg",
        "attributes": {"capacity": "1.5 l", "material": "steel"}
    })
}

async fn search(app: &TestApp, words: &str) -> Vec<String> {
    let page = app
        .get_json(&format!("/products?limit=100&q={words}"), 200)
        .await;
    page["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|item| item["slug"].as_str().map(str::to_owned))
        .collect()
}

async fn a_product_goes_from_creation_to_deletion(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let created = app
        .admin_send(Method::POST, "/products", Some(&kettle()), 201)
        .await;
    let id = created["id"].as_str().expect("an id").to_owned();
    assert!(uuid::Uuid::try_parse(&id).is_ok(), "{id} is not a UUID");
    let mut expected = kettle();
    expected["id"] = json!(id);
    assert_eq!(created, expected);
    assert_eq!(app.get_json("/products/zephyr-kettle", 200).await, created);
    assert_eq!(app.get_json(&format!("/products/{id}"), 200).await, created);
    assert_eq!(search(&app, "zephyrine").await, ["zephyr-kettle"]);

    // Changing the description keeps search in step with what is stored.
    let changed = app
        .admin_send(
            Method::PATCH,
            &format!("/products/{id}"),
            Some(&json!({"description": "Quiet as a quokka.", "name": "  Quokka Kettle "})),
            200,
        )
        .await;
    assert_eq!(changed["name"], "Quokka Kettle");
    assert_eq!(changed["description"], "Quiet as a quokka.");
    assert_eq!(changed["price"], created["price"]);
    assert_eq!(changed["attributes"], created["attributes"]);
    assert_eq!(app.get_json(&format!("/products/{id}"), 200).await, changed);
    assert!(search(&app, "zephyrine").await.is_empty());
    assert_eq!(search(&app, "quokka").await, ["zephyr-kettle"]);

    // A new slug and category; the id stays.
    let moved = app
        .admin_send(
            Method::PATCH,
            "/products/zephyr-kettle",
            Some(&json!({"slug": "quokka-kettle", "category": "home", "attributes": {}})),
            200,
        )
        .await;
    assert_eq!(moved["id"], json!(id));
    assert_eq!(moved["attributes"], json!({}));
    app.get_json("/products/zephyr-kettle", 404).await;
    assert_eq!(app.get_json("/products/quokka-kettle", 200).await, moved);
    let home = app.get_json("/products?category=home&q=quokka", 200).await;
    assert_eq!(home["items"][0]["id"], json!(id));

    // An empty patch changes nothing.
    let same = app
        .admin_send(
            Method::PATCH,
            "/products/quokka-kettle",
            Some(&json!({})),
            200,
        )
        .await;
    assert_eq!(same, moved);

    let deleted = app
        .admin_send(Method::DELETE, "/products/quokka-kettle", None, 204)
        .await;
    assert_eq!(deleted, Value::Null);
    app.get_json(&format!("/products/{id}"), 404).await;
    assert!(search(&app, "quokka").await.is_empty());
    app.admin_send(Method::DELETE, &format!("/products/{id}"), None, 404)
        .await;
}

async fn a_price_change_moves_the_product_in_price_order(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let created = app
        .admin_send(Method::POST, "/products", Some(&kettle()), 201)
        .await;
    let id = created["id"].as_str().expect("an id");
    let first = |page: &Value| page["items"][0].clone();

    let cheapest = app
        .admin_send(
            Method::PATCH,
            &format!("/products/{id}"),
            Some(&json!({"price": {"amount_minor": 0, "currency": "EUR"}})),
            200,
        )
        .await;
    assert_eq!(
        cheapest["price"],
        json!({"amount_minor": 0, "currency": "EUR"})
    );
    assert_eq!(
        app.get_json("/products/zephyr-kettle", 200).await["price"]["amount_minor"],
        0
    );
    let page = app.get_json("/products?sort=price&limit=1", 200).await;
    assert_eq!(first(&page), cheapest);

    let dearest = app
        .admin_send(
            Method::PATCH,
            "/products/zephyr-kettle",
            Some(&json!({"price": {"amount_minor": 100_000_000, "currency": "EUR"}})),
            200,
        )
        .await;
    let page = app.get_json("/products?sort=-price&limit=1", 200).await;
    assert_eq!(first(&page), dearest);
    let page = app.get_json("/products?sort=price&limit=1", 200).await;
    assert_ne!(first(&page)["id"], json!(id));
}

async fn every_write_needs_an_admin(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let category = json!({"slug": "garden", "name": "Garden", "description": ""});
    let writes = [
        (Method::POST, "/products", Some(kettle())),
        (
            Method::PATCH,
            "/products/enamel-camp-mug",
            Some(json!({"name": "Mine"})),
        ),
        (Method::DELETE, "/products/enamel-camp-mug", None),
        (Method::POST, "/categories", Some(category)),
        (
            Method::PATCH,
            "/categories/kitchen",
            Some(json!({"name": "Mine"})),
        ),
        (Method::DELETE, "/categories/stationery", None),
    ];
    let customer = app.issuer.customer("user-1");
    for (method, path, body) in &writes {
        let what = format!("{method} {path}");
        let callers = [
            (None, 401, "/problems/unauthorized"),
            (Some("not.a.token"), 401, "/problems/invalid-token"),
            (Some(customer.as_str()), 403, "/problems/forbidden"),
        ];
        for (token, status, kind) in callers {
            let mut request = app.request(method.clone(), path, token);
            if let Some(body) = body {
                request = request.json(body);
            }
            let response = request.send().await.expect("answers");
            let challenge = response
                .headers()
                .get("www-authenticate")
                .map(|value| value.to_str().expect("text").to_owned());
            let problem = expect_problem(response, status, &what).await;
            assert_eq!(problem["type"], kind, "{what}");
            if status == 401 {
                let challenge = challenge.unwrap_or_else(|| panic!("{what}: no challenge"));
                assert!(challenge.starts_with("Bearer"), "{what}: {challenge}");
            }
        }
    }
    // None of it changed anything.
    let mug = app.get_json("/products/enamel-camp-mug", 200).await;
    assert_eq!(mug["name"], "Enamel Camp Mug");
    app.get_json("/products/zephyr-kettle", 404).await;
    let categories = app.get_json("/categories", 200).await;
    assert_eq!(categories["items"].as_array().map(Vec::len), Some(6));
    assert_eq!(categories["items"][0]["name"], "Kitchen");
}

async fn duplicate_slugs_are_conflicts(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let mut taken = kettle();
    taken["slug"] = json!("enamel-camp-mug");
    let response = app
        .request(Method::POST, "/products", Some(&app.issuer.admin()))
        .json(&taken)
        .send()
        .await
        .expect("answers");
    let problem = expect_problem(response, 409, "POST a taken product slug").await;
    assert_eq!(problem["type"], "/problems/conflict");
    assert_names(&problem, "slug");

    app.admin_send(Method::POST, "/products", Some(&kettle()), 201)
        .await;
    let response = app
        .request(
            Method::PATCH,
            "/products/zephyr-kettle",
            Some(&app.issuer.admin()),
        )
        .json(&json!({"slug": "enamel-camp-mug", "name": "Renamed"}))
        .send()
        .await
        .expect("answers");
    expect_problem(response, 409, "PATCH to a taken slug").await;
    // The refused patch left the product as it was, name included.
    let kettle_now = app.get_json("/products/zephyr-kettle", 200).await;
    assert_eq!(kettle_now["name"], "Zephyr Kettle");
    // Keeping one's own slug is no conflict.
    app.admin_send(
        Method::PATCH,
        "/products/zephyr-kettle",
        Some(&json!({"slug": "zephyr-kettle"})),
        200,
    )
    .await;

    let response = app
        .request(Method::POST, "/categories", Some(&app.issuer.admin()))
        .json(&json!({"slug": "kitchen", "name": "Another kitchen", "description": ""}))
        .send()
        .await
        .expect("answers");
    let problem = expect_problem(response, 409, "POST a taken category slug").await;
    assert_names(&problem, "slug");
}

async fn racing_creations_of_one_slug_make_exactly_one_product(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let token = app.issuer.admin();
    let attempts = (0..8).map(|index| {
        let mut body = kettle();
        body["name"] = json!(format!("Kettle {index}"));
        app.request(Method::POST, "/products", Some(&token))
            .json(&body)
            .send()
    });
    let mut statuses: Vec<u16> = futures_statuses(attempts).await;
    statuses.sort_unstable();
    assert_eq!(statuses, [201, 409, 409, 409, 409, 409, 409, 409]);

    let attempts = (0..8).map(|_| {
        app.request(Method::POST, "/categories", Some(&token))
            .json(&json!({"slug": "garden", "name": "Garden", "description": ""}))
            .send()
    });
    let mut statuses: Vec<u16> = futures_statuses(attempts).await;
    statuses.sort_unstable();
    assert_eq!(statuses, [201, 409, 409, 409, 409, 409, 409, 409]);
}

async fn racing_patches_of_different_fields_both_stick(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let token = app.issuer.admin();
    app.admin_send(Method::POST, "/products", Some(&kettle()), 201)
        .await;
    for round in 0..10 {
        let name = format!("Kettle quokka{round}");
        let description = format!("A wombat{round} of a kettle.");
        let patches = [
            json!({ "name": name }),
            json!({ "description": description }),
        ]
        .into_iter()
        .map(|patch| {
            app.request(Method::PATCH, "/products/zephyr-kettle", Some(&token))
                .json(&patch)
                .send()
        });
        assert_eq!(futures_statuses(patches).await, [200, 200], "round {round}");
        // Each patch read the product after the other's write, or before it began:
        // neither change is lost, and search sees both.
        let product = app.get_json("/products/zephyr-kettle", 200).await;
        assert_eq!(product["name"], json!(name), "round {round}");
        assert_eq!(product["description"], json!(description), "round {round}");
        assert_eq!(
            search(&app, &format!("quokka{round}%20wombat{round}")).await,
            ["zephyr-kettle"],
            "round {round}"
        );
    }
}

/// Runs the requests at once and collects their statuses.
async fn futures_statuses<F>(requests: impl Iterator<Item = F>) -> Vec<u16>
where
    F: Future<Output = reqwest::Result<reqwest::Response>> + Send + 'static,
{
    let tasks: Vec<_> = requests.map(tokio::spawn).collect();
    let mut statuses = Vec::new();
    for task in tasks {
        let response = task.await.expect("joined").expect("answers");
        statuses.push(response.status().as_u16());
    }
    statuses
}

async fn a_category_goes_from_creation_to_deletion(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let created = app
        .admin_send(
            Method::POST,
            "/categories",
            Some(&json!({"slug": "garden", "name": " Garden ", "description": "Outside."})),
            201,
        )
        .await;
    assert_eq!(
        created,
        json!({"slug": "garden", "name": "Garden", "description": "Outside."})
    );
    let listed = app.get_json("/categories", 200).await;
    let items = listed["items"].as_array().expect("items");
    assert_eq!(items.len(), 7);
    assert_eq!(items.last(), Some(&created), "a new category comes last");

    let renamed = app
        .admin_send(
            Method::PATCH,
            "/categories/garden",
            Some(&json!({"name": "Garden & Patio"})),
            200,
        )
        .await;
    assert_eq!(
        renamed,
        json!({"slug": "garden", "name": "Garden & Patio", "description": "Outside."})
    );
    let described = app
        .admin_send(
            Method::PATCH,
            "/categories/garden",
            Some(&json!({"description": ""})),
            200,
        )
        .await;
    assert_eq!(described["name"], "Garden & Patio");
    assert_eq!(described["description"], "");
    let listed = app.get_json("/categories", 200).await;
    assert_eq!(listed["items"][6], described);

    // A product can go into the new category, which then cannot be deleted.
    let mut shovel = kettle();
    shovel["slug"] = json!("zephyr-shovel");
    shovel["category"] = json!("garden");
    app.admin_send(Method::POST, "/products", Some(&shovel), 201)
        .await;
    let response = app
        .request(
            Method::DELETE,
            "/categories/garden",
            Some(&app.issuer.admin()),
        )
        .send()
        .await
        .expect("answers");
    let problem = expect_problem(response, 409, "DELETE a category in use").await;
    assert_eq!(problem["type"], "/problems/conflict");

    app.admin_send(Method::DELETE, "/products/zephyr-shovel", None, 204)
        .await;
    app.admin_send(Method::DELETE, "/categories/garden", None, 204)
        .await;
    let listed = app.get_json("/categories", 200).await;
    assert_eq!(listed["items"].as_array().map(Vec::len), Some(6));
    app.admin_send(Method::DELETE, "/categories/garden", None, 404)
        .await;
}

async fn a_category_with_products_cannot_be_deleted(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let response = app
        .request(
            Method::DELETE,
            "/categories/kitchen",
            Some(&app.issuer.admin()),
        )
        .send()
        .await
        .expect("answers");
    let problem = expect_problem(response, 409, "DELETE kitchen").await;
    assert!(
        problem["detail"]
            .as_str()
            .is_some_and(|detail| detail.contains("kitchen")),
        "{problem}"
    );
    let kitchen = app
        .get_json("/products?category=kitchen&limit=100", 200)
        .await;
    assert_eq!(kitchen["items"].as_array().map(Vec::len), Some(8));
    let listed = app.get_json("/categories", 200).await;
    assert_eq!(listed["items"][0]["slug"], "kitchen");
}

async fn unknown_products_and_categories_are_404s(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let patch = json!({"name": "Anything"});
    for path in [
        "/products/no-such-thing",
        "/products/0190a5a0-0000-7000-8000-000000000000",
    ] {
        for method in [Method::PATCH, Method::DELETE] {
            let response = app
                .request(method.clone(), path, Some(&app.issuer.admin()))
                .json(&patch)
                .send()
                .await
                .expect("answers");
            let problem = expect_problem(response, 404, &format!("{method} {path}")).await;
            assert_eq!(problem["type"], "/problems/not-found");
        }
    }
    for method in [Method::PATCH, Method::DELETE] {
        let response = app
            .request(
                method.clone(),
                "/categories/no-such",
                Some(&app.issuer.admin()),
            )
            .json(&patch)
            .send()
            .await
            .expect("answers");
        expect_problem(response, 404, &format!("{method} /categories/no-such")).await;
    }
    // A malformed reference is a 400 naming it, not a 404.
    for (method, path, field) in [
        (Method::PATCH, "/products/NOT%20A%20SLUG", "product"),
        (Method::DELETE, "/products/NOT%20A%20SLUG", "product"),
        (Method::PATCH, "/categories/Not_A_Slug", "slug"),
        (Method::DELETE, "/categories/Not_A_Slug", "slug"),
    ] {
        let response = app
            .request(method.clone(), path, Some(&app.issuer.admin()))
            .json(&patch)
            .send()
            .await
            .expect("answers");
        let problem = expect_problem(response, 400, &format!("{method} {path}")).await;
        assert_names(&problem, field);
    }
}

async fn the_openapi_document_describes_the_admin_api(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let document = app.get_json("/openapi.json", 200).await;
    assert_eq!(
        document["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    let operations = [
        (
            "/products",
            "post",
            &["201", "400", "401", "403", "409"][..],
        ),
        (
            "/products/{product}",
            "patch",
            &["200", "400", "401", "403", "404", "409"],
        ),
        (
            "/products/{product}",
            "delete",
            &["204", "400", "401", "403", "404"],
        ),
        ("/categories", "post", &["201", "400", "401", "403", "409"]),
        (
            "/categories/{slug}",
            "patch",
            &["200", "400", "401", "403", "404"],
        ),
        (
            "/categories/{slug}",
            "delete",
            &["204", "400", "401", "403", "404", "409"],
        ),
    ];
    for (path, method, statuses) in operations {
        let operation = &document["paths"][path][method];
        assert!(operation.is_object(), "{method} {path} is not documented");
        assert!(
            operation["security"][0]["bearer"].is_array(),
            "{method} {path} names no security"
        );
        for status in statuses {
            assert!(
                operation["responses"][status].is_object(),
                "{method} {path} does not document {status}"
            );
        }
    }
    for schema in [
        "CreateProduct",
        "UpdateProduct",
        "PriceInput",
        "CreateCategory",
        "UpdateCategory",
    ] {
        assert!(
            document["components"]["schemas"][schema].is_object(),
            "{schema} is not documented"
        );
    }
    // Reading stays open: no security on the browse paths.
    assert!(document["paths"]["/products"]["get"]["security"].is_null());
}
