//! The storefront in a real browser: the whole shop runs in this process, and headless
//! Chromium (driven by Playwright, `tests/browser/storefront.cjs`) shops in it as
//! people do, with and without JavaScript, and as an admin in the back-office. Every
//! page it visits is audited with axe-core, and the screenshots of the main pages at
//! phone and laptop widths are written to `docs/storefront/`. The run ends with the
//! shop's audit, `bazaar verify`, clean.
//!
//! Needs Node.js, Debian's Chromium (`/usr/bin/chromium`) and npm's registry for
//! `playwright-core` and `axe-core`, which the test installs under `target/browser` the
//! first time; `cargo xtask ci` installs Chromium from Debian's packages when it can.
//! Without them the test fails, saying what is missing.

mod common;

use std::path::PathBuf;

use bazaar::Config;
use common::{PASSWORD, browse, create_admin, shop_in_process};
use serde_json::Value;

/// The product the declined-card journey tries to buy (nobody else does).
const DECLINED_PRODUCT: &str = "steel-bulldog-clips";

/// How many of `slug` can be bought now. Inventory learns of the catalog's products
/// from its events after the shop starts, so this waits (up to 30 s) until it knows.
async fn available(client: &reqwest::Client, gateway: &str, slug: &str) -> i64 {
    let product: Value = client
        .get(format!("http://{gateway}/api/catalog/products/{slug}"))
        .send()
        .await
        .expect("answers")
        .json()
        .await
        .expect("JSON");
    let id = product["id"].as_str().expect("an id");
    let tracked = format!("inventory tracking {slug}");
    test_support::eventually(&tracked, std::time::Duration::from_secs(30), || async {
        let stock: Value = client
            .get(format!("http://{gateway}/api/inventory/stock/{id}"))
            .send()
            .await
            .expect("answers")
            .json()
            .await
            .expect("JSON");
        stock["available"].as_i64().ok_or(stock)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_can_shop_in_a_browser_and_an_admin_can_run_the_shop() {
    let folder = tempfile::tempdir().expect("a folder");
    let (shop, shutdown, gateway) = shop_in_process(folder.path()).await;
    let client = reqwest::Client::new();

    create_admin(folder.path()).await;
    let stock_before = available(&client, &gateway, DECLINED_PRODUCT).await;

    let shots = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/storefront");
    let args = vec![
        format!("http://{gateway}"),
        "root@example.com".to_owned(),
        PASSWORD.to_owned(),
        shots.to_string_lossy().into_owned(),
        DECLINED_PRODUCT.to_owned(),
        folder.path().join("mailbox").to_string_lossy().into_owned(),
    ];
    let seen = browse("storefront.cjs", args)
        .await
        .unwrap_or_else(|printed| panic!("the browser run failed:\n{printed}"));
    let checked = seen["checked"].as_array().expect("checks").len();
    assert_eq!(checked, 8, "{seen:#}");
    assert!(
        seen["audited"]
            .as_array()
            .is_some_and(|pages| pages.len() >= 18),
        "{seen:#}"
    );

    // The declined order gave its stock back.
    assert_eq!(
        available(&client, &gateway, DECLINED_PRODUCT).await,
        stock_before
    );
    for page in [
        "home",
        "product",
        "cart",
        "checkout",
        "order",
        "back-office",
    ] {
        for width in [1366, 390] {
            let shot = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join(format!("../../docs/storefront/{page}-{width}.png"));
            assert!(shot.is_file(), "no screenshot at {}", shot.display());
        }
    }

    // Whatever the shoppers did, the shop's books agree.
    let resolved = Config::ephemeral(folder.path().to_owned()).resolved();
    let clean = "bazaar verify reporting a clean shop";
    test_support::eventually(clean, std::time::Duration::from_secs(20), || async {
        let audit = bazaar::verify::run(&resolved, std::time::Duration::ZERO)
            .await
            .expect("the audit runs");
        if audit.is_clean() { Ok(()) } else { Err(audit) }
    })
    .await;
    shutdown.trigger();
    shop.wait().await.expect("a clean stop");
}
