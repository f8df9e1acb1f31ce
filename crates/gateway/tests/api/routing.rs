//! Choosing the instance: canary weights, sticky users, blue/green by header, health,
//! and reloading the route table under load.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use gateway::{Config, Instance, UpstreamUrl};
use platform::shutdown::Shutdown;

use crate::{TestGateway, named_echo, serve, shop_config};

fn instance(address: SocketAddr, weight: u32, track: &str) -> Instance {
    Instance {
        url: UpstreamUrl::from_addr(address),
        weight,
        track: track.to_owned(),
    }
}

/// A gateway routing `/api/shop` to `instances`.
async fn gateway_over(instances: Vec<Instance>) -> TestGateway {
    TestGateway::with(shop_config(instances)).await
}

/// Sends `count` GETs, 32 at a time; how many each upstream answered.
async fn tally(
    gateway: &TestGateway,
    count: usize,
    headers: &[(&str, &str)],
) -> BTreeMap<String, usize> {
    use futures_util::StreamExt as _;
    let answers: Vec<(u16, Option<String>)> = futures_util::stream::iter(0..count)
        .map(|_| gateway.get("/api/shop/thing", headers))
        .buffer_unordered(32)
        .collect()
        .await;
    let mut tally = BTreeMap::new();
    for (status, upstream) in answers {
        assert_eq!(status, 201, "every request is answered");
        *tally
            .entry(upstream.expect("an upstream answered"))
            .or_default() += 1;
    }
    tally
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_gets_its_weight_within_two_percent_over_ten_thousand_requests() {
    let (stable_a, _a) = serve(named_echo("stable")).await;
    let (stable_b, _b) = serve(named_echo("stable")).await;
    let (canary, _c) = serve(named_echo("canary")).await;
    let gateway = gateway_over(vec![
        instance(stable_a, 40, "stable"),
        instance(stable_b, 40, "stable"),
        instance(canary, 20, "canary"),
    ])
    .await;
    let tally = tally(&gateway, 10_000, &[]).await;
    let canaries = tally.get("canary").copied().unwrap_or_default();
    let share = canaries as f64 / 10_000.0;
    assert!(
        (0.18..=0.22).contains(&share),
        "the canary got {share}: {tally:?}"
    );

    // The console shows each release's weight beside the share it got.
    let console = reqwest::Client::new()
        .get(gateway.url("/console"))
        .bearer_auth(gateway.issuer.admin())
        .send()
        .await
        .expect("answers")
        .text()
        .await
        .expect("a page");
    let row = |track: &str, instances: usize, weight: &str, got: usize| {
        format!(
            "<tr data-track=\"{track}\"><td>shop<td>{track}<td class=n>{instances}<td class=n>{weight}<td class=n>{:.1}%<td class=n>{got}</tr>",
            // As the console computes it, so that it rounds the same way.
            got as f64 / 10_000.0 * 100.0
        )
    };
    for expected in [
        row("stable", 2, "80.0%", 10_000 - canaries),
        row("canary", 1, "20.0%", canaries),
    ] {
        assert!(console.contains(&expected), "no {expected} in {console}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_in_user_stays_on_one_release() {
    let (stable, _a) = serve(named_echo("stable")).await;
    let (canary, _c) = serve(named_echo("canary")).await;
    let gateway = gateway_over(vec![
        instance(stable, 50, "stable"),
        instance(canary, 50, "canary"),
    ])
    .await;
    let mut releases = BTreeMap::new();
    for user in 0..16 {
        let token = format!(
            "Bearer {}",
            gateway.issuer.customer(&format!("user-{user}"))
        );
        let seen = tally(&gateway, 20, &[("authorization", &token)]).await;
        assert_eq!(
            seen.len(),
            1,
            "user {user} flapped between releases: {seen:?}"
        );
        *releases
            .entry(seen.into_keys().next().expect("one"))
            .or_insert(0) += 1;
    }
    assert_eq!(
        releases.len(),
        2,
        "users are spread over both releases: {releases:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blue_green_by_header_or_cookie() {
    let (blue, _b) = serve(named_echo("blue")).await;
    let (green, _g) = serve(named_echo("green")).await;
    let gateway = gateway_over(vec![instance(blue, 1, "blue"), instance(green, 0, "green")]).await;
    assert_eq!(
        tally(&gateway, 50, &[])
            .await
            .into_keys()
            .collect::<Vec<_>>(),
        ["blue"]
    );
    let asked = tally(&gateway, 50, &[("x-bazaar-track", "green")]).await;
    assert_eq!(asked.into_keys().collect::<Vec<_>>(), ["green"]);
    let cookie = tally(
        &gateway,
        50,
        &[("cookie", "theme=dark; bazaar-track=green")],
    )
    .await;
    assert_eq!(cookie.into_keys().collect::<Vec<_>>(), ["green"]);
    let unknown = tally(&gateway, 20, &[("x-bazaar-track", "purple")]).await;
    assert_eq!(
        unknown.into_keys().collect::<Vec<_>>(),
        ["blue"],
        "an unknown track gets the default"
    );
}

/// An upstream whose readiness can be switched off.
fn switchable(name: &'static str, ready: Arc<AtomicBool>) -> Router {
    named_echo(name).route(
        "/health/ready",
        get(move || {
            let ready = ready.load(Ordering::SeqCst);
            async move {
                if ready {
                    StatusCode::OK
                } else {
                    StatusCode::SERVICE_UNAVAILABLE
                }
            }
        }),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_failing_its_health_check_gets_no_traffic_until_it_recovers() {
    let a_ready = Arc::new(AtomicBool::new(true));
    let (a, _a) = serve(switchable("a", Arc::clone(&a_ready))).await;
    let (b, _b) = serve(switchable("b", Arc::new(AtomicBool::new(true)))).await;
    let gateway = TestGateway::with(shop_config(vec![
        instance(a, 1, "stable"),
        instance(b, 1, "stable"),
    ]))
    .await;
    assert_eq!(tally(&gateway, 100, &[]).await.len(), 2);
    a_ready.store(false, Ordering::SeqCst);
    gateway.handle.check_health().await;
    assert_eq!(
        tally(&gateway, 100, &[])
            .await
            .into_keys()
            .collect::<Vec<_>>(),
        ["b"]
    );
    a_ready.store(true, Ordering::SeqCst);
    gateway.handle.check_health().await;
    assert_eq!(tally(&gateway, 100, &[]).await.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_instance_is_routed_around_without_failing_a_request() {
    let (alive, _a) = serve(named_echo("alive")).await;
    let (dead, stop) = serve(named_echo("dead")).await;
    stop.trigger();
    // Wait until the stopped server's port refuses connections.
    while tokio::net::TcpStream::connect(dead).await.is_ok() {
        tokio::task::yield_now().await;
    }
    let gateway = TestGateway::with(shop_config(vec![
        instance(alive, 1, "stable"),
        instance(dead, 1, "stable"),
    ]))
    .await;
    // POSTs without an idempotency key too: a refused connection carried nothing.
    for _ in 0..50 {
        let response = gateway
            .client
            .post(gateway.url("/api/shop/x"))
            .send()
            .await
            .expect("answers");
        assert_eq!(response.status().as_u16(), 201);
        assert_eq!(response.headers()["x-upstream"], "alive");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_route_table_reloads_under_load_without_a_failed_request() {
    let (blue, _b) = serve(named_echo("blue")).await;
    let (green, _g) = serve(named_echo("green")).await;
    let folder = tempfile::tempdir().expect("a folder");
    let file = folder.path().join("routes.toml");
    let routes = |track: &str| {
        format!(
            "[upstreams.shop]\ninstances = [\n  {{ url = \"http://{blue}\", track = \"blue\", weight = {} }},\n  {{ url = \"http://{green}\", track = \"green\", weight = {} }},\n]\n",
            u32::from(track == "blue"),
            u32::from(track == "green"),
        )
    };
    std::fs::write(&file, routes("blue")).expect("written");
    let mut config = Config::default();
    config.rate_limit.enabled = false;
    config.routes_file = Some(file.clone());
    let gateway = Arc::new(TestGateway::with(config).await);

    let stop = Shutdown::new();
    let load = (0..8).map(|_| {
        let gateway = Arc::clone(&gateway);
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut seen = BTreeMap::<String, usize>::new();
            while !stop.is_triggered() {
                let (status, upstream) = gateway.get("/api/shop/x", &[]).await;
                let key = if status == 201 {
                    upstream.unwrap_or_default()
                } else {
                    format!("status {status}")
                };
                *seen.entry(key).or_default() += 1;
            }
            seen
        })
    });
    let load: Vec<_> = load.collect();
    tokio::task::yield_now().await;

    // Switch to green by rewriting the file, as an operator would (write, then rename,
    // so the gateway never reads half a file); the watcher picks it up.
    let staged = folder.path().join("routes.toml.new");
    std::fs::write(&staged, routes("green")).expect("written");
    std::fs::rename(&staged, &file).expect("renamed");
    let switched = "the watcher loading the new routes file";
    test_support::eventually(switched, std::time::Duration::from_secs(30), || async {
        let (_, upstream) = gateway.get("/api/shop/x", &[]).await;
        let upstream = upstream.unwrap_or_default();
        if upstream == "green" {
            Ok(())
        } else {
            Err(upstream)
        }
    })
    .await;
    // A broken file is refused; green stays.
    std::fs::write(&file, "[upstreams.shop]\ninstances = []\n").expect("written");
    assert!(gateway.handle.reload().is_err());
    stop.trigger();

    let mut total = BTreeMap::<String, usize>::new();
    for task in load {
        for (key, count) in task.await.expect("no panic") {
            *total.entry(key).or_default() += count;
        }
    }
    assert!(
        total.keys().all(|key| key == "blue" || key == "green"),
        "failed requests: {total:?}"
    );
    assert_eq!(
        gateway.get("/api/shop/x", &[]).await.1.as_deref(),
        Some("green")
    );
}

#[tokio::test]
async fn the_site_gets_every_path_outside_the_api_whole() {
    let (shop, _stop_shop) = serve(named_echo("shop")).await;
    let (web, _stop_web) = serve(named_echo("web")).await;
    let mut config = shop_config(vec![Instance::stable(UpstreamUrl::from_addr(shop))]);
    config
        .upstreams
        .insert("web".to_owned(), gateway::Upstream::at(web));
    config.site = Some("web".to_owned());
    let gateway = TestGateway::with(config).await;
    for (path, upstream, target) in [
        ("/", Some("web"), "/"),
        (
            "/products/enamel-camp-mug?q=1",
            Some("web"),
            "/products/enamel-camp-mug?q=1",
        ),
        ("/static/shop.css", Some("web"), "/static/shop.css"),
        ("/api/shop/items", Some("shop"), "/items"),
    ] {
        let response = gateway
            .client
            .get(gateway.url(path))
            .send()
            .await
            .expect("answers");
        let answered = response
            .headers()
            .get("x-upstream")
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        assert_eq!(answered.as_deref(), upstream, "{path}");
        let echo: serde_json::Value = response.json().await.expect("JSON");
        assert_eq!(echo["target"], target, "{path}");
    }
    // The site has no API of its own, and its metrics are as private as anyone's.
    assert_eq!(gateway.get("/api/web/x", &[]).await, (404, None));
    assert_eq!(gateway.get("/metrics", &[]).await, (404, None));
}
