//! The gateway's console in a real browser: after a checkout, an admin opens
//! `/console` in headless Chromium (driven by Playwright), switches a fault flag on
//! with its button (and the next checkout is declined), follows the checkout's trace
//! and sees its waterfall with spans from at least five services. The screenshot is
//! written to `target/console.png`.
//!
//! Needs Node.js, Debian's Chromium (`/usr/bin/chromium`) and npm's registry for
//! `playwright-core`, which the test installs under `target/browser` the first time;
//! `cargo xtask ci` installs Chromium from Debian's packages when it can. Without them
//! the test fails, saying what is missing.

mod common;

use std::collections::BTreeSet;

use common::{PASSWORD, browse, checkout, create_admin, shop_in_process, sign_up, target_dir};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_shows_a_checkout_trace_across_services_in_a_browser() {
    // Spans are kept in memory for the console, as `bazaar up` does.
    let _tracing = platform::telemetry::init_logs(&platform::telemetry::LogConfig {
        filter: "info".to_owned(),
        ..platform::telemetry::LogConfig::default()
    })
    .expect("tracing starts");

    let folder = tempfile::tempdir().expect("a folder");
    let (shop, shutdown, gateway) = shop_in_process(folder.path()).await;
    let client = reqwest::Client::new();

    // A checkout to look at.
    let buyer = sign_up(&client, &gateway, folder.path(), 1).await;
    let order = checkout(
        &client,
        &gateway,
        &buyer,
        &[("idempotency-key", "console-checkout")],
    )
    .await;
    assert_eq!(order["status"], "confirmed", "{order:#}");

    // The console is for admins only.
    create_admin(folder.path()).await;
    let tokens: Value = client
        .post(format!("http://{gateway}/api/identity/token"))
        .json(&json!({"email": "root@example.com", "password": PASSWORD}))
        .send()
        .await
        .expect("answers")
        .json()
        .await
        .expect("JSON");
    let admin = tokens["access_token"].as_str().expect("a token").to_owned();
    let anonymous = client
        .get(format!("http://{gateway}/console"))
        .send()
        .await
        .expect("answers");
    assert_eq!(anonymous.status().as_u16(), 401);
    let customer = client
        .get(format!("http://{gateway}/console"))
        .bearer_auth(&buyer.token)
        .send()
        .await
        .expect("answers");
    assert_eq!(customer.status().as_u16(), 403);

    let screenshot = target_dir().join("console.png");
    let url = format!("http://{gateway}");
    let args = vec![
        url,
        admin.clone(),
        screenshot.to_string_lossy().into_owned(),
    ];
    let seen = browse("console.cjs", args).await;
    // The flag the browser switched on declines every card from now on.
    let declined = checkout(
        &client,
        &gateway,
        &buyer,
        &[("idempotency-key", "console-declined")],
    )
    .await;
    let trace_page = |trace: String| {
        let page = client
            .get(format!("http://{gateway}/console/traces/{trace}"))
            .bearer_auth(&admin)
            .send();
        async move {
            let page = page.await.expect("answers");
            assert_eq!(page.status().as_u16(), 200);
            page.text().await.expect("a page")
        }
    };
    // The declined order's trace shows the saga's compensation in its own colour.
    let trace = declined["trace_id"].as_str().expect("a trace").to_owned();
    let compensated = trace_page(trace).await;
    assert!(
        span_rows(&compensated)
            .any(|row| row.contains("release_stock") && row.contains("class=\"compensating\"")),
        "{compensated}"
    );

    // With the catalog down, its answer to the first attempt and the gateway's retry
    // both fail, each a red span.
    shop.flags()
        .set_default(platform::faults::UNAVAILABLE, "catalog", "test")
        .expect("switched");
    let browsing = client
        .get(format!("http://{gateway}/api/catalog/products"))
        .send()
        .await
        .expect("answers");
    assert_eq!(browsing.status().as_u16(), 503);
    shop.flags()
        .set_default(platform::faults::UNAVAILABLE, "none", "test")
        .expect("switched back");
    let failed = platform::telemetry::recent_spans()
        .expect("spans are kept")
        .snapshot()
        .into_iter()
        .find(|span| span.detail == "attempt 2 at catalog" && span.failed)
        .expect("a failed retry at the catalog");
    let retried = trace_page(failed.trace_id).await;
    for (service, detail) in [
        ("catalog", ">GET /products<"),
        ("gateway", ">attempt 2 at catalog<"),
    ] {
        assert!(
            span_rows(&retried).any(|row| row.contains(&format!("data-service=\"{service}\""))
                && row.contains(detail)
                && row.contains("class=\"failed\"")),
            "no failed {detail} in {retried}"
        );
    }

    shutdown.trigger();
    shop.wait().await.expect("a clean stop");
    let seen = seen.unwrap_or_else(|printed| panic!("the browser run failed:\n{printed}"));
    assert_eq!(
        seen["flag"],
        json!({"before": "off", "after": "on"}),
        "the flag's button switched it: {seen}"
    );
    assert_eq!(declined["status"], "cancelled", "{declined:#}");
    assert_eq!(declined["reason"], "payment_declined", "{declined:#}");
    let sections: Vec<&str> = seen["sections"]
        .as_array()
        .expect("sections")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for section in [
        "Services, last minute",
        "Service map",
        "Upstreams",
        "Releases",
        "Scenarios",
        "Feature flags",
        "Backlogs",
        "Checkouts",
        "Recent traces",
    ] {
        assert!(
            sections.contains(&section),
            "no {section:?} on the console: {sections:?}"
        );
    }
    let services: BTreeSet<&str> = seen["services"]
        .as_array()
        .expect("services")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        services.len() >= 5,
        "the waterfall shows spans of {services:?}, fewer than five services"
    );
    assert!(
        seen["bars"].as_u64().is_some_and(|bars| bars >= 5),
        "{seen}"
    );
    assert_eq!(
        seen["orders"]["confirmed"], 1,
        "the checkout counted by the orders service: {seen}"
    );
    assert!(
        seen["map"].as_u64().is_some_and(|services| services >= 5),
        "the service map draws the services the checkout crossed: {seen}"
    );
    assert!(
        screenshot.is_file(),
        "no screenshot at {}",
        screenshot.display()
    );
}

/// The rows of a trace page's waterfall, one per span.
fn span_rows(page: &str) -> impl Iterator<Item = &str> {
    page.split("<tr class=span").skip(1)
}
