//! Failing upstreams: the circuit breaker, retries and their limits, load shedding.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use axum::Router;
use axum::http::StatusCode;
use axum::routing::any;
use gateway::{Config, Instance, Upstream, UpstreamUrl};
use serde_json::Value;

use crate::{TestGateway, problem, serve, shop_config};

/// An upstream that counts requests and answers 503 while `failing` is set.
fn flaky(hits: Arc<AtomicUsize>, failing: Arc<AtomicBool>) -> Router {
    Router::new().fallback(any(move || {
        hits.fetch_add(1, Ordering::SeqCst);
        let failing = failing.load(Ordering::SeqCst);
        async move {
            if failing {
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                StatusCode::OK
            }
        }
    }))
}

/// An upstream that holds every request until `release` gets permits; `entered` counts
/// the requests that reached it.
fn held_upstream() -> (Router, Arc<tokio::sync::Semaphore>, Arc<AtomicUsize>) {
    let release = Arc::new(tokio::sync::Semaphore::new(0));
    let entered = Arc::new(AtomicUsize::new(0));
    let router = {
        let release = Arc::clone(&release);
        let entered = Arc::clone(&entered);
        Router::new().fallback(any(move || {
            let release = Arc::clone(&release);
            entered.fetch_add(1, Ordering::SeqCst);
            async move {
                let _ = release.acquire().await;
                "done"
            }
        }))
    };
    (router, release, entered)
}

fn config_over(instances: &[SocketAddr]) -> Config {
    shop_config(
        instances
            .iter()
            .map(|address| Instance::stable(UpstreamUrl::from_addr(*address)))
            .collect(),
    )
}

/// The first line of the process's metrics (the gateway's among them, as its private
/// metrics address would serve them) that starts with `line_start`.
fn metric(line_start: &str) -> Option<String> {
    platform::telemetry::metrics()
        .render()
        .lines()
        .find(|line| line.starts_with(line_start))
        .map(str::to_owned)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_breaker_opens_on_failures_half_opens_and_closes() {
    let hits = Arc::new(AtomicUsize::new(0));
    let failing = Arc::new(AtomicBool::new(true));
    let (upstream, _stop) = serve(flaky(Arc::clone(&hits), Arc::clone(&failing))).await;
    // An upstream of its own: the breaker's gauge is the process's, and other tests
    // of this binary drive the `shop` upstream's at the same time.
    let mut config = config_over(&[upstream]);
    let own = config.upstreams.remove("shop").expect("the shop upstream");
    config.upstreams.insert("breaker".to_owned(), own);
    config.breaker.failures = 3;
    config.breaker.open_ms = 200;
    config.retry.attempts = 0;
    // No ejection: this test is about the breaker.
    config.health.eject_after = 1000;
    let gateway = TestGateway::with(config).await;

    for _ in 0..3 {
        let (status, _) = gateway.get("/api/breaker/x", &[]).await;
        assert_eq!(status, 503, "the upstream's own answer");
    }
    let open = gateway
        .client
        .get(gateway.url("/api/breaker/x"))
        .send()
        .await
        .expect("answers");
    assert!(open.headers().contains_key("retry-after"));
    let body: Value = problem(open, 503).await;
    assert_eq!(body["type"], "/problems/upstream-circuit-open");
    assert_eq!(
        hits.load(Ordering::SeqCst),
        3,
        "an open circuit sends nothing"
    );
    assert_eq!(
        metric("gateway_breaker_state{upstream=\"breaker\"}").as_deref(),
        Some("gateway_breaker_state{upstream=\"breaker\"} 1")
    );

    // Still failing when the cool-down ends: the one trial fails and it opens again.
    let trial = loop {
        let (status, _) = gateway.get("/api/breaker/x", &[]).await;
        if hits.load(Ordering::SeqCst) > 3 {
            break status;
        }
        assert_eq!(status, 503);
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(trial, 503);
    assert_eq!(hits.load(Ordering::SeqCst), 4, "exactly one trial");

    // Recovered: the next trial succeeds and closes the circuit.
    failing.store(false, Ordering::SeqCst);
    loop {
        let (status, _) = gateway.get("/api/breaker/x", &[]).await;
        if status == 200 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    for _ in 0..5 {
        assert_eq!(gateway.get("/api/breaker/x", &[]).await.0, 200);
    }
    assert_eq!(
        metric("gateway_breaker_state{upstream=\"breaker\"}").as_deref(),
        Some("gateway_breaker_state{upstream=\"breaker\"} 0")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_without_an_idempotency_key_is_never_retried() {
    let hits = Arc::new(AtomicUsize::new(0));
    let failing = Arc::new(AtomicBool::new(true));
    let (a, _a) = serve(flaky(Arc::clone(&hits), Arc::clone(&failing))).await;
    let (b, _b) = serve(flaky(Arc::clone(&hits), Arc::clone(&failing))).await;
    let mut config = config_over(&[a, b]);
    config.retry.attempts = 1;
    config.breaker.failures = 1000;
    config.health.eject_after = 1000;
    let gateway = TestGateway::with(config).await;

    let sent = |request: reqwest::RequestBuilder| {
        let hits = Arc::clone(&hits);
        async move {
            let before = hits.load(Ordering::SeqCst);
            let response = request.send().await.expect("answers");
            assert_eq!(response.status().as_u16(), 503);
            hits.load(Ordering::SeqCst) - before
        }
    };
    let url = gateway.url("/api/shop/orders");
    assert_eq!(
        sent(gateway.client.post(&url)).await,
        1,
        "a plain POST goes once"
    );
    assert_eq!(sent(gateway.client.patch(&url)).await, 1, "so does a PATCH");
    assert_eq!(
        sent(gateway.client.post(&url).header("idempotency-key", "k-1")).await,
        2,
        "a keyed POST is retried"
    );
    assert_eq!(sent(gateway.client.get(&url)).await, 2, "a GET is retried");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_stay_within_the_budget() {
    let hits = Arc::new(AtomicUsize::new(0));
    let (upstream, _stop) = serve(flaky(Arc::clone(&hits), Arc::new(AtomicBool::new(true)))).await;
    let mut config = config_over(&[upstream]);
    config.retry.attempts = 3;
    config.retry.budget_percent = 10;
    config.retry.min_per_second = 0;
    config.breaker.failures = 100_000;
    config.health.eject_after = 100_000;
    let gateway = TestGateway::with(config).await;
    for _ in 0..200 {
        assert_eq!(gateway.get("/api/shop/x", &[]).await.0, 503);
    }
    let sent = hits.load(Ordering::SeqCst);
    // 200 requests earn 20 retries; without the budget there would be 600.
    assert!(
        (200..=220).contains(&sent),
        "{sent} attempts for 200 requests"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overload_is_shed_with_503_and_retry_after_instead_of_queueing() {
    let (slow, release, entered) = held_upstream();
    let (upstream, _stop) = serve(slow).await;
    let mut config = config_over(&[upstream]);
    config.max_in_flight = 4;
    let gateway = Arc::new(TestGateway::with(config).await);

    let held: Vec<_> = (0..4)
        .map(|_| {
            let gateway = Arc::clone(&gateway);
            tokio::spawn(async move { gateway.get("/api/shop/slow", &[]).await.0 })
        })
        .collect();
    while entered.load(Ordering::SeqCst) < 4 {
        tokio::task::yield_now().await;
    }
    for _ in 0..10 {
        let response = gateway
            .client
            .get(gateway.url("/api/shop/slow"))
            .send()
            .await
            .expect("answers");
        assert_eq!(response.headers()["retry-after"], "1");
        let body = problem(response, 503).await;
        assert_eq!(body["type"], "/problems/overloaded");
    }
    assert_eq!(
        entered.load(Ordering::SeqCst),
        4,
        "shed requests never reach the upstream"
    );
    // Health and metrics are not behind the limit.
    let health = gateway
        .client
        .get(gateway.url("/health/live"))
        .send()
        .await
        .expect("answers");
    assert_eq!(health.status().as_u16(), 200);
    release.add_permits(100);
    for request in held {
        assert_eq!(request.await.expect("no panic"), 200);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_bulkhead_sheds_only_that_upstream() {
    let (slow, release, entered) = held_upstream();
    let (slow, _s) = serve(slow).await;
    let (fast, _f) = serve(crate::echo()).await;
    let mut config = config_over(&[slow]);
    config
        .upstreams
        .get_mut("shop")
        .expect("defined")
        .max_in_flight = Some(2);
    config
        .upstreams
        .insert("fast".to_owned(), Upstream::at(fast));
    let gateway = Arc::new(TestGateway::with(config).await);
    let held: Vec<_> = (0..2)
        .map(|_| {
            let gateway = Arc::clone(&gateway);
            tokio::spawn(async move { gateway.get("/api/shop/slow", &[]).await.0 })
        })
        .collect();
    while entered.load(Ordering::SeqCst) < 2 {
        tokio::task::yield_now().await;
    }
    assert_eq!(gateway.get("/api/shop/slow", &[]).await.0, 503);
    assert_eq!(
        gateway.get("/api/fast/x", &[]).await.0,
        201,
        "other upstreams are unaffected"
    );
    release.add_permits(100);
    for request in held {
        assert_eq!(request.await.expect("no panic"), 200);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_timeout_overrides_the_default() {
    let (stuck, _s) =
        serve(Router::new().fallback(any(std::future::pending::<&'static str>))).await;
    let mut config = config_over(&[stuck]);
    config.upstream_timeout_ms = 60_000;
    config.routes.push(gateway::config::Route {
        prefix: "/api/quick".to_owned(),
        upstream: "shop".to_owned(),
        timeout_ms: Some(50),
        retries: Some(0),
    });
    let gateway = TestGateway::with(config).await;
    let response = gateway
        .client
        .get(gateway.url("/api/quick/x"))
        .send()
        .await
        .expect("answers");
    let body = problem(response, 504).await;
    assert!(
        body["detail"]
            .as_str()
            .is_some_and(|detail| detail.contains("50 ms")),
        "{body}"
    );
}
