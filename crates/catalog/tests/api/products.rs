//! Browsing: listing, paging, sorting, filtering, searching, and single products.

use std::collections::BTreeSet;

use serde_json::Value;
use test_support::{Engine, TestDatabase};

use crate::helpers::{TestApp, all_pages};

test_support::on_both_engines!(
    the_first_page_holds_seeded_products,
    every_sort_order_pages_through_all_products_exactly_once,
    a_category_filter_returns_only_that_category,
    search_matches_every_word_in_name_or_description,
    like_wildcards_in_a_search_match_literally,
    a_product_is_found_by_id_and_by_slug,
    an_unknown_product_is_a_404_problem,
    categories_are_listed_in_display_order,
    demo_data_is_loaded_on_first_start_only,
);

const DEMO_PRODUCTS: usize = 48;

async fn the_first_page_holds_seeded_products(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let page = app.get_json("/products?limit=5", 200).await;
    let items = page["items"].as_array().expect("items");
    assert_eq!(items.len(), 5);
    assert!(page["next_cursor"].is_string());
    let first = &items[0];
    for field in ["id", "slug", "name", "description", "category", "image"] {
        assert!(first[field].is_string(), "{field} missing in {first}");
    }
    assert!(first["price"]["amount_minor"].is_i64());
    assert_eq!(first["price"]["currency"], "EUR");
    let default_page = app.get_json("/products", 200).await;
    assert_eq!(default_page["items"].as_array().map(Vec::len), Some(20));
}

async fn every_sort_order_pages_through_all_products_exactly_once(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    for sort in ["name", "-name", "price", "-price"] {
        let items = all_pages(&app, &format!("/products?limit=7&sort={sort}")).await;
        let ids: BTreeSet<&str> = items
            .iter()
            .filter_map(|item| item["id"].as_str())
            .collect();
        assert_eq!(items.len(), DEMO_PRODUCTS, "sort={sort}");
        assert_eq!(ids.len(), DEMO_PRODUCTS, "sort={sort} repeated a product");
        let ordered = items.windows(2).all(|pair| {
            let (a, b) = (&pair[0], &pair[1]);
            match sort {
                "name" => a["name"].as_str() <= b["name"].as_str(),
                "-name" => a["name"].as_str() >= b["name"].as_str(),
                "price" => {
                    a["price"]["amount_minor"].as_i64() <= b["price"]["amount_minor"].as_i64()
                }
                _ => a["price"]["amount_minor"].as_i64() >= b["price"]["amount_minor"].as_i64(),
            }
        });
        assert!(ordered, "sort={sort} is out of order");
    }
}

async fn a_category_filter_returns_only_that_category(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let items = all_pages(&app, "/products?category=kitchen&limit=3").await;
    assert_eq!(items.len(), 8);
    assert!(items.iter().all(|item| item["category"] == "kitchen"));
    let none = app
        .get_json("/products?category=no-such-category", 200)
        .await;
    assert_eq!(none["items"].as_array().map(Vec::len), Some(0));
}

async fn search_matches_every_word_in_name_or_description(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let text = |item: &Value| {
        format!(
            "{} {}",
            item["name"].as_str().unwrap_or_default(),
            item["description"].as_str().unwrap_or_default()
        )
        .to_lowercase()
    };
    let cotton = all_pages(&app, "/products?q=Cotton&limit=100").await;
    assert!(!cotton.is_empty());
    assert!(cotton.iter().all(|item| text(item).contains("cotton")));
    let both = all_pages(&app, "/products?q=cotton%20recycled&limit=100").await;
    assert!(both.len() < cotton.len());
    assert!(
        both.iter()
            .all(|item| text(item).contains("cotton") && text(item).contains("recycled"))
    );
}

async fn like_wildcards_in_a_search_match_literally(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    for wildcard in ["%25", "_", "%5C"] {
        let page = app.get_json(&format!("/products?q={wildcard}"), 200).await;
        assert_eq!(
            page["items"].as_array().map(Vec::len),
            Some(0),
            "q={wildcard}"
        );
    }
}

async fn a_product_is_found_by_id_and_by_slug(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let by_slug = app.get_json("/products/enamel-camp-mug", 200).await;
    assert_eq!(by_slug["name"], "Enamel Camp Mug");
    let id = by_slug["id"].as_str().expect("an id");
    let by_id = app.get_json(&format!("/products/{id}"), 200).await;
    assert_eq!(by_id, by_slug);
}

async fn an_unknown_product_is_a_404_problem(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    for path in [
        "/products/no-such-thing",
        "/products/0190a5a0-0000-7000-8000-000000000000",
    ] {
        let response = app.get(path).await;
        assert_eq!(response.status().as_u16(), 404, "{path}");
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
        let problem: Value = response.json().await.expect("json");
        assert_eq!(problem["type"], "/problems/not-found");
    }
}

async fn categories_are_listed_in_display_order(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let categories = app.get_json("/categories", 200).await;
    let slugs: Vec<&str> = categories["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|category| category["slug"].as_str())
        .collect();
    assert_eq!(slugs.len(), 6);
    assert_eq!(slugs[0], "kitchen");
}

async fn demo_data_is_loaded_on_first_start_only(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let before = all_pages(&app, "/products?limit=100").await;
    let db: TestDatabase = app.stop();
    let restarted = TestApp::spawn_on(db).await;
    let after = all_pages(&restarted, "/products?limit=100").await;
    assert_eq!(before.len(), DEMO_PRODUCTS);
    assert_eq!(after, before, "a restart changed the catalog");
}
