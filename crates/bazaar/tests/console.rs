//! The gateway's console in a real browser: after a checkout, an admin opens
//! `/console` in headless Chromium (driven by Playwright), follows the checkout's trace
//! and sees its waterfall with spans from at least five services. The screenshot is
//! written to `target/console.png`.
//!
//! Needs Node.js, Debian's Chromium (`/usr/bin/chromium`) and npm's registry for
//! `playwright-core`, which the test installs under `target/browser` the first time;
//! `cargo xtask ci` installs Chromium from Debian's packages when it can. Without them
//! the test fails, saying what is missing.

mod common;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

use bazaar::Config;
use common::{PASSWORD, checkout, shop_in_process, sign_up};
use contracts::identity::Role;
use serde_json::{Value, json};

fn target_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target")
}

/// The folder holding `node_modules/playwright-core`, installed on first use.
fn playwright() -> PathBuf {
    let folder = target_dir().join("browser");
    let modules = folder.join("node_modules");
    if !modules.join("playwright-core").is_dir() {
        std::fs::create_dir_all(&folder).expect("a folder under target");
        let installed = Command::new("npm")
            .args([
                "install",
                "--no-save",
                "--no-audit",
                "--no-fund",
                "--prefix",
            ])
            .arg(&folder)
            .arg("playwright-core@1")
            .status()
            .expect("npm runs (install Node.js and npm)");
        assert!(installed.success(), "npm could not install playwright-core");
    }
    modules
}

/// Debian's Chromium.
const CHROMIUM: &str = "/usr/bin/chromium";

fn chromium() -> &'static str {
    assert!(
        std::path::Path::new(CHROMIUM).exists(),
        "no Chromium at {CHROMIUM}: apt-get install chromium (cargo xtask ci does)"
    );
    CHROMIUM
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_shows_a_checkout_trace_across_services_in_a_browser() {
    let modules = playwright();
    let chromium = chromium();
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
    let buyer = sign_up(&client, &gateway, 1).await;
    let order = checkout(
        &client,
        &gateway,
        &buyer,
        &[("idempotency-key", "console-checkout")],
    )
    .await;
    assert_eq!(order["status"], "confirmed", "{order:#}");

    // The console is for admins only.
    let resolved = Config::ephemeral(folder.path().to_owned()).resolved();
    let identity = identity::context(&resolved.identity, &resolved.auth)
        .await
        .expect("identity's database");
    identity::ops::create_user(
        &identity,
        "root@example.com",
        PASSWORD,
        vec![Role::Customer, Role::Admin],
    )
    .await
    .expect("an admin");
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
    let screenshot_path = screenshot.clone();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/browser/console.cjs");
    // The shop keeps serving on this runtime while the browser runs beside it.
    let url = format!("http://{gateway}");
    let browser = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg(&script)
            .arg(&url)
            .arg(&admin)
            .arg(&screenshot_path)
            .env("NODE_PATH", &modules)
            .env("CHROMIUM", chromium)
            .output()
            .expect("node runs (install Node.js)")
    })
    .await
    .expect("the browser run finished");
    shutdown.trigger();
    shop.wait().await.expect("a clean stop");
    assert!(
        browser.status.success(),
        "the browser run failed:\n{}{}",
        String::from_utf8_lossy(&browser.stdout),
        String::from_utf8_lossy(&browser.stderr)
    );
    let seen: Value = serde_json::from_slice(
        browser
            .stdout
            .split(|byte| *byte == b'\n')
            .rfind(|line| line.starts_with(b"{"))
            .expect("the script's report"),
    )
    .expect("JSON");
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
    assert!(
        screenshot.is_file(),
        "no screenshot at {}",
        screenshot.display()
    );
}
