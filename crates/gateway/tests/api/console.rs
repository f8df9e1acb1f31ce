//! The console's feature flags and chaos scenarios: listed with their buttons, switched
//! by admins only, from the console's own page only.

use contracts::identity::Role;
use gateway::Config;
use platform::flags::{EvaluationContext, Flags};
use serde_json::json;

use crate::TestGateway;

/// A flag file with one flag, `demo`, off.
fn flag_file(folder: &std::path::Path) -> std::path::PathBuf {
    let file = folder.join("flags.json");
    let definition = json!({"flags": {"demo": {
        "state": "ENABLED",
        "variants": {"on": true, "off": false},
        "defaultVariant": "off",
        "metadata": {"description": "A <demo> flag"}
    }}});
    std::fs::write(&file, definition.to_string()).expect("written");
    file
}

#[tokio::test]
async fn an_admin_switches_a_flag_from_the_console() {
    let folder = tempfile::tempdir().expect("a folder");
    let file = flag_file(folder.path());
    let flags = Flags::open(&file).expect("the flags");
    let gateway = TestGateway::with_flags(Config::default(), flags.clone()).await;
    let admin = gateway.issuer.admin();
    let customer = gateway.issuer.token("01HCUSTOMER", &[Role::Customer]);
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("a client");
    let switch = |token: &str, flag: &str, variant: &str, browser: &[(&str, &str)]| {
        let mut request = client
            .post(gateway.url(&format!("/console/flags/{flag}")))
            .bearer_auth(token)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("variant={variant}"));
        for (name, value) in browser {
            request = request.header(*name, *value);
        }
        request.send()
    };

    let page = client
        .get(gateway.url("/console"))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("answers");
    assert_eq!(page.status(), 200);
    let page = page.text().await.expect("a page");
    assert!(page.contains("<code>demo</code>"), "{page}");
    assert!(page.contains("A &lt;demo&gt; flag"), "escaped: {page}");
    assert!(
        page.contains(
            r#"<button name=variant value="off" title="false" class=on aria-pressed=true>"#
        ),
        "the default is marked: {page}"
    );

    let anyone = EvaluationContext::new();
    // From the console's own page: the browser says so, and its referrer policy
    // (`no-referrer`) makes its `Origin` null.
    let own_page = [("sec-fetch-site", "same-origin"), ("origin", "null")];
    let switched = switch(&admin, "demo", "on", &own_page)
        .await
        .expect("answers");
    assert_eq!(switched.status(), 303);
    assert_eq!(switched.headers()["location"], "/console#flags");
    assert!(
        flags.boolean("demo", &anyone, false),
        "switched in this process"
    );
    let written: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).expect("read")).expect("JSON");
    assert_eq!(
        written["flags"]["demo"]["defaultVariant"], "on",
        "and in the file"
    );

    // Refused: a customer, a page of another site, a variant or flag that is not there.
    let refused = switch(&customer, "demo", "off", &[])
        .await
        .expect("answers");
    assert_eq!(refused.status(), 403);
    for elsewhere in [
        [
            ("sec-fetch-site", "cross-site"),
            ("origin", "http://elsewhere.example"),
        ],
        [
            ("sec-fetch-site", "same-site"),
            ("origin", "http://shop.elsewhere.example"),
        ],
    ] {
        let refused = switch(&admin, "demo", "off", &elsewhere)
            .await
            .expect("answers");
        assert_eq!(refused.status(), 403, "{elsewhere:?}");
    }
    let older = [("origin", "http://elsewhere.example")];
    let refused = switch(&admin, "demo", "off", &older)
        .await
        .expect("answers");
    assert_eq!(refused.status(), 403, "an older browser's Origin");
    let refused = switch(&admin, "demo", "maybe", &[]).await.expect("answers");
    assert_eq!(refused.status(), 400);
    assert!(refused.text().await.expect("a problem").contains("maybe"));
    let refused = switch(&admin, "nowhere", "on", &[]).await.expect("answers");
    assert_eq!(refused.status(), 404);
    let anonymous = client
        .post(gateway.url("/console/flags/demo"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("variant=off")
        .send()
        .await
        .expect("answers");
    assert_eq!(anonymous.status(), 401);
    assert!(
        flags.boolean("demo", &anyone, false),
        "nothing refused changed it"
    );

    // A flag file that cannot be changed (in Kubernetes, a ConfigMap mounted read-only)
    // is a conflict to resolve where the flags come from, not a bad request.
    drop(folder);
    let conflict = switch(&admin, "demo", "off", &own_page)
        .await
        .expect("answers");
    assert_eq!(conflict.status(), 409);
    let problem: serde_json::Value = conflict.json().await.expect("a problem");
    assert_eq!(problem["type"], "/problems/flags-read-only", "{problem}");
    assert!(
        flags.boolean("demo", &anyone, false),
        "the flags in use stay"
    );
}

#[tokio::test]
async fn an_admin_starts_and_stops_a_scenario_from_the_console() {
    let folder = tempfile::tempdir().expect("a folder");
    let file = flag_file(folder.path());
    let flags = Flags::open(&file).expect("the flags");
    let gateway = TestGateway::with_flags(Config::default(), flags.clone()).await;
    gateway
        .handle
        .offer_scenarios(vec![gateway::console::Scenario {
            name: "demo-on".to_owned(),
            what: "switches the <demo> on".to_owned(),
            flag: "demo".to_owned(),
            breaks: "on".to_owned(),
            heals: "off".to_owned(),
        }]);
    let admin = gateway.issuer.admin();
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("a client");
    let console = || async {
        client
            .get(gateway.url("/console"))
            .bearer_auth(&admin)
            .send()
            .await
            .expect("answers")
            .text()
            .await
            .expect("a page")
    };
    let act = |token: &str, name: &str, action: &str| {
        client
            .post(gateway.url(&format!("/console/scenarios/{name}")))
            .bearer_auth(token)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("sec-fetch-site", "same-origin")
            .body(format!("action={action}"))
            .send()
    };
    let anyone = EvaluationContext::new();

    let page = console().await;
    assert!(page.contains("switches the &lt;demo&gt; on"), "{page}");
    assert!(
        page.contains("<span class=ok>off</span> <button name=action value=start>Start</button>"),
        "{page}"
    );
    let started = act(&admin, "demo-on", "start").await.expect("answers");
    assert_eq!(started.status(), 303);
    assert_eq!(started.headers()["location"], "/console#scenarios");
    assert!(flags.boolean("demo", &anyone, false), "the fault is on");
    let page = console().await;
    assert!(
        page.contains(
            "<span class=bad>running</span> <button name=action value=stop class=on>Stop</button>"
        ),
        "{page}"
    );

    // Refused: a customer, an unknown scenario or action; none changes anything.
    let customer = gateway.issuer.token("01HCUSTOMER", &[Role::Customer]);
    let refused = act(&customer, "demo-on", "stop").await.expect("answers");
    assert_eq!(refused.status(), 403);
    let refused = act(&admin, "meteor", "start").await.expect("answers");
    assert_eq!(refused.status(), 404);
    let refused = act(&admin, "demo-on", "pause").await.expect("answers");
    assert_eq!(refused.status(), 400);
    assert!(flags.boolean("demo", &anyone, false), "still on");

    let stopped = act(&admin, "demo-on", "stop").await.expect("answers");
    assert_eq!(stopped.status(), 303);
    assert!(!flags.boolean("demo", &anyone, true), "healed");
}
