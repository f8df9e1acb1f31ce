//! Edge policy: rate limits (exact, unspoofable, per user, shared through Redis), body
//! limits, CORS and security headers.

use std::net::SocketAddr;

use gateway::config::{RateLimitConfig, RateLimitStore};
use gateway::{Config, Upstream};

use crate::{TestGateway, echo, problem, serve};

fn limited(upstream: SocketAddr, rate_limit: RateLimitConfig) -> Config {
    Config {
        upstreams: [("shop".to_owned(), Upstream::at(upstream))].into(),
        rate_limit,
        ..Config::default()
    }
}

fn per_minute(anonymous: u32, customer: u32, admin: u32) -> RateLimitConfig {
    RateLimitConfig {
        enabled: true,
        anonymous_per_minute: anonymous,
        customer_per_minute: customer,
        admin_per_minute: admin,
        store: RateLimitStore::Local,
    }
}

#[tokio::test]
async fn the_rate_limit_is_exact_at_the_boundary_and_spoofed_forwarding_buys_nothing() {
    let (upstream, _stop) = serve(echo()).await;
    let gateway = TestGateway::with(limited(upstream, per_minute(5, 100, 100))).await;
    for n in 0..5 {
        assert_eq!(gateway.get("/api/shop/x", &[]).await.0, 201, "request {n}");
    }
    let refused = gateway
        .client
        .get(gateway.url("/api/shop/x"))
        .send()
        .await
        .expect("answers");
    let wait: u64 = refused.headers()["retry-after"]
        .to_str()
        .expect("text")
        .parse()
        .expect("seconds");
    assert!((1..=12).contains(&wait), "retry after {wait} s");
    let body = problem(refused, 429).await;
    assert!(
        body["detail"]
            .as_str()
            .is_some_and(|detail| detail.contains("5 a minute")),
        "{body}"
    );
    for spoof in ["203.0.113.1", "198.51.100.7, 203.0.113.2", "::1"] {
        let (status, _) = gateway
            .get(
                "/api/shop/x",
                &[("x-forwarded-for", spoof), ("x-real-ip", spoof)],
            )
            .await;
        assert_eq!(status, 429, "{spoof} bought a fresh allowance");
    }
}

#[tokio::test]
async fn behind_a_trusted_proxy_each_client_has_its_own_allowance() {
    let (upstream, _stop) = serve(echo()).await;
    let mut config = limited(upstream, per_minute(2, 100, 100));
    // The test client plays the load balancer in front of the gateway.
    config.trusted_proxies = vec!["127.0.0.0/8".parse().expect("a range")];
    let gateway = TestGateway::with(config).await;
    for _ in 0..2 {
        assert_eq!(
            gateway
                .get("/api/shop/x", &[("x-forwarded-for", "198.51.100.1")])
                .await
                .0,
            201
        );
    }
    assert_eq!(
        gateway
            .get("/api/shop/x", &[("x-forwarded-for", "198.51.100.1")])
            .await
            .0,
        429
    );
    // The client's own claims, left of what the proxy appended, change nothing.
    assert_eq!(
        gateway
            .get(
                "/api/shop/x",
                &[("x-forwarded-for", "6.6.6.6, 198.51.100.1")]
            )
            .await
            .0,
        429
    );
    assert_eq!(
        gateway
            .get("/api/shop/x", &[("x-forwarded-for", "198.51.100.2")])
            .await
            .0,
        201
    );
    // The upstream sees the chain extended by the gateway's peer.
    let seen: serde_json::Value = gateway
        .client
        .get(gateway.url("/api/shop/x"))
        .header("x-forwarded-for", "198.51.100.3")
        .send()
        .await
        .expect("answers")
        .json()
        .await
        .expect("JSON");
    assert_eq!(
        seen["headers"]["x-forwarded-for"],
        "198.51.100.3, 127.0.0.1"
    );
}

#[tokio::test]
async fn signed_in_users_draw_on_their_own_allowance_tiered_by_role() {
    let (upstream, _stop) = serve(echo()).await;
    let gateway = TestGateway::with(limited(upstream, per_minute(1, 3, 5))).await;
    let alice = format!("Bearer {}", gateway.issuer.customer("alice"));
    let bob = format!("Bearer {}", gateway.issuer.customer("bob"));
    let admin = format!("Bearer {}", gateway.issuer.admin());
    let count = |token: String| {
        let gateway = &gateway;
        async move {
            let mut allowed = 0;
            for _ in 0..10 {
                if gateway
                    .get("/api/shop/x", &[("authorization", &token)])
                    .await
                    .0
                    == 201
                {
                    allowed += 1;
                }
            }
            allowed
        }
    };
    assert_eq!(count(alice).await, 3);
    assert_eq!(count(bob).await, 3, "one user's use is not another's");
    assert_eq!(count(admin).await, 5);
    assert_eq!(
        count("Bearer forged.token.here".to_owned()).await,
        1,
        "a bad token is anonymous"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_share_one_allowance_through_redis() {
    let redis = test_support::redis::RedisServer::new();
    let (upstream, _stop) = serve(echo()).await;
    let mut limits = per_minute(30, 100, 100);
    limits.store = RateLimitStore::Redis {
        url: redis.url().to_owned().try_into().expect("a Redis URL"),
        key_prefix: test_support::redis::unique_prefix(),
    };
    let first = TestGateway::with(limited(upstream, limits.clone())).await;
    let second = TestGateway::with(limited(upstream, limits)).await;
    let mut allowed = 0;
    for n in 0..100 {
        let gateway = if n % 2 == 0 { &first } else { &second };
        if gateway.get("/api/shop/x", &[]).await.0 == 201 {
            allowed += 1;
        }
    }
    assert_eq!(allowed, 30, "the allowance is shared, not doubled");
}

/// Redis down when the gateway starts: it starts anyway, limiting on its own (never
/// unlimited), and shares the allowance once Redis answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_limit_store_down_at_start_is_waited_for_not_fatal() {
    let redis = test_support::redis::RedisServer::new();
    let link = test_support::proxy::Proxy::to_server_of(redis.url()).await;
    let (upstream, _stop) = serve(echo()).await;
    let mut limits = per_minute(4, 100, 100);
    limits.store = RateLimitStore::Redis {
        url: link
            .url_through(redis.url())
            .try_into()
            .expect("a Redis URL"),
        key_prefix: test_support::redis::unique_prefix(),
    };
    link.cut();
    let alone = TestGateway::with(limited(upstream, limits.clone())).await;
    let statuses: Vec<u16> = futures_util::future::join_all(
        (0..6).map(|_| async { alone.get("/api/shop/x", &[]).await.0 }),
    )
    .await;
    assert_eq!(
        statuses.iter().filter(|status| **status == 201).count(),
        4,
        "limited on its own while Redis is away: {statuses:?}"
    );

    link.restore();
    let other = TestGateway::with(limited(upstream, limits)).await;
    // After a failure the first gateway leaves Redis alone for a second (so an outage
    // costs a request a second, not every request); then it asks again by itself.
    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
    // (The same client as before: its count in Redis starts now.)
    let mut allowed = 0;
    for n in 0..40 {
        let gateway = if n % 2 == 0 { &alone } else { &other };
        if gateway.get("/api/shop/y", &[]).await.0 == 201 {
            allowed += 1;
        }
    }
    assert_eq!(
        allowed, 4,
        "once Redis is back the gateways share one allowance"
    );
}

#[tokio::test]
async fn bodies_over_the_limit_are_refused_with_413() {
    let (upstream, _stop) = serve(echo()).await;
    let mut config = limited(upstream, per_minute(100, 100, 100));
    config.max_body_bytes = 1024;
    let gateway = TestGateway::with(config).await;
    let fits = gateway
        .client
        .post(gateway.url("/api/shop/x"))
        .body(vec![b'a'; 1024])
        .send()
        .await
        .expect("answers");
    assert_eq!(fits.status().as_u16(), 201);
    let declared = gateway
        .client
        .post(gateway.url("/api/shop/x"))
        .body(vec![b'a'; 1025])
        .send()
        .await
        .expect("answers");
    problem(declared, 413).await;
    // Streamed without a length: counted as it arrives.
    let chunks = futures_util::stream::iter((0..8).map(|_| {
        Ok::<_, std::io::Error>(hyper::body::Frame::data(bytes::Bytes::from(vec![
            b'a';
            200
        ])))
    }));
    let streamed = gateway
        .client
        .post(gateway.url("/api/shop/x"))
        .body(reqwest::Body::wrap(http_body_util::StreamBody::new(chunks)))
        .send()
        .await
        .expect("answers");
    problem(streamed, 413).await;
}

#[tokio::test]
async fn cors_preflights_are_answered_for_allowed_origins_only() {
    let (upstream, _stop) = serve(echo()).await;
    let mut config = limited(upstream, per_minute(100, 100, 100));
    config.cors.allowed_origins = vec!["https://shop.example.com".to_owned()];
    config.cors.max_age_secs = 600;
    let gateway = TestGateway::with(config).await;
    let preflight = |origin: &'static str| {
        gateway
            .client
            .request(reqwest::Method::OPTIONS, gateway.url("/api/shop/x"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization, idempotency-key",
            )
            .send()
    };
    let allowed = preflight("https://shop.example.com")
        .await
        .expect("answers");
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "https://shop.example.com"
    );
    assert_eq!(allowed.headers()["access-control-max-age"], "600");
    let methods = allowed.headers()["access-control-allow-methods"]
        .to_str()
        .expect("text")
        .to_owned();
    assert!(methods.contains("POST"), "{methods}");
    let other = preflight("https://evil.example").await.expect("answers");
    assert!(other.headers().get("access-control-allow-origin").is_none());
    let simple = gateway
        .client
        .get(gateway.url("/api/shop/x"))
        .header("origin", "https://shop.example.com")
        .send()
        .await
        .expect("answers");
    assert_eq!(
        simple.headers()["access-control-allow-origin"],
        "https://shop.example.com"
    );
}

#[tokio::test]
async fn answers_carry_security_headers() {
    let (upstream, _stop) = serve(echo()).await;
    let gateway = TestGateway::with(limited(upstream, per_minute(100, 100, 100))).await;
    let response = gateway
        .client
        .get(gateway.url("/api/shop/x"))
        .send()
        .await
        .expect("answers");
    let headers = response.headers();
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["x-frame-options"], "DENY");
    assert_eq!(headers["referrer-policy"], "no-referrer");
    assert!(
        headers["content-security-policy"]
            .to_str()
            .expect("text")
            .contains("default-src 'none'")
    );
    // The gateway's own answers too: its console, API docs, health and 404s.
    for (path, policy) in [
        ("/console", "default-src 'none'"),
        ("/api/docs/", "default-src 'self'"),
        ("/health/live", "default-src 'none'"),
        ("/no/such/route", "default-src 'none'"),
        ("/api/nothing-here", "default-src 'none'"),
    ] {
        let response = gateway
            .client
            .get(gateway.url(path))
            .send()
            .await
            .expect("answers");
        let headers = response.headers();
        assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(headers["x-frame-options"], "DENY", "{path}");
        assert!(
            headers["content-security-policy"]
                .to_str()
                .expect("text")
                .contains(policy),
            "{path}: {:?}",
            headers["content-security-policy"]
        );
    }
}

/// A request target or headers past the gateway's bounds get 414 or 431 with a problem
/// saying which, and never reach an upstream; past the server's own bound on a head,
/// 431 all the same.
#[tokio::test]
async fn oversized_heads_are_refused_with_a_problem() {
    let (upstream, _stop) = serve(echo()).await;
    let gateway = TestGateway::with(limited(upstream, per_minute(100, 100, 100))).await;
    let long = format!("/api/shop/x?q={}", "a".repeat(gateway::proxy::MAX_URI));
    let refused = gateway
        .client
        .get(gateway.url(&long))
        .send()
        .await
        .expect("answers");
    assert_eq!(refused.headers()["x-content-type-options"], "nosniff");
    let body = problem(refused, 414).await;
    assert!(
        body["detail"]
            .as_str()
            .is_some_and(|d| d.contains("request target"))
    );
    for size in [40 * 1024, 100 * 1024] {
        let refused = gateway
            .client
            .get(gateway.url("/api/shop/x"))
            .header("x-padding", "p".repeat(size))
            .send()
            .await
            .expect("answers");
        let body = problem(refused, 431).await;
        assert!(
            body["detail"]
                .as_str()
                .is_some_and(|d| d.contains("headers")),
            "{body}"
        );
    }
    let huge = gateway
        .client
        .get(gateway.url("/api/shop/x"))
        .header("x-padding", "p".repeat(platform::http::MAX_HEAD))
        .send()
        .await
        .expect("answers");
    assert_eq!(huge.status(), 431);
    assert_eq!(gateway.get("/api/shop/x", &[]).await.0, 201, "served after");
}

/// A client that sends its request head too slowly, or keeps a connection open with no
/// request, is disconnected rather than holding the connection for ever.
#[tokio::test]
async fn slow_and_idle_connections_are_closed() {
    use std::time::Duration;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    let (upstream, _stop) = serve(echo()).await;
    let config = limited(upstream, per_minute(100, 100, 100));
    let handle = gateway::Gateway::new(
        &config,
        test_support::TestIssuer::new().verifier(),
        platform::flags::Flags::default(),
    )
    .await
    .expect("a gateway");
    let stop = platform::shutdown::Shutdown::new();
    let (listener, address) = test_support::bind().await;
    tokio::spawn(platform::http::serve_with(
        listener,
        handle.router(),
        stop.clone(),
        Duration::from_millis(300),
    ));
    // Half a head, then nothing.
    let mut slow = tokio::net::TcpStream::connect(address)
        .await
        .expect("connects");
    slow.write_all(b"GET /api/shop/x HTTP/1.1\r\nHost: shop\r\n")
        .await
        .expect("sent");
    // A whole request, then nothing.
    let mut idle = tokio::net::TcpStream::connect(address)
        .await
        .expect("connects");
    idle.write_all(b"GET /api/shop/x HTTP/1.1\r\nHost: shop\r\n\r\n")
        .await
        .expect("sent");
    // A bound far past the timeout, so a slow machine does not fail the test: what is
    // asserted is that the server ends both connections, not how fast.
    for (name, stream) in [("slow", &mut slow), ("idle", &mut idle)] {
        let mut received = Vec::new();
        let ended = tokio::time::timeout(Duration::from_secs(30), async {
            let mut chunk = [0_u8; 4096];
            loop {
                match stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => break,
                    Ok(read) => received.extend_from_slice(&chunk[..read]),
                }
            }
        })
        .await;
        assert!(ended.is_ok(), "the {name} connection was left open");
        if name == "idle" {
            assert!(
                received.starts_with(b"HTTP/1.1 201"),
                "{name}: {received:?}"
            );
        }
    }
    stop.trigger();
}

#[tokio::test]
async fn internal_grpc_methods_and_metrics_are_not_forwarded() {
    let (upstream, _stop) = serve(echo()).await;
    let gateway = TestGateway::with(crate::shop_config(vec![gateway::Instance::stable(
        gateway::UpstreamUrl::from_addr(upstream),
    )]))
    .await;
    for path in [
        "/api/shop/bazaar.cart.v1.Cart/GetCart",
        "/api/shop//bazaar.payments.v1.Payments/GetPaymentMethod",
        "/api/shop/grpc.health.v1.Health/Check",
        "/api/shop/metrics",
        "/metrics",
    ] {
        let (status, upstream) = gateway.get(path, &[]).await;
        assert_eq!((status, upstream), (404, None), "{path}");
    }
    let grpc = gateway
        .client
        .post(gateway.url("/api/shop/anything"))
        .header("content-type", "application/grpc+proto")
        .body(vec![0_u8; 5])
        .send()
        .await
        .expect("answers");
    assert!(grpc.headers().get("x-upstream").is_none());
    problem(grpc, 404).await;
    for public in [
        "/api/shop/.well-known/jwks.json",
        "/api/shop/openapi.json",
        "/api/shop/products/enamel-camp-mug",
    ] {
        assert_eq!(gateway.get(public, &[]).await.0, 201, "{public}");
    }
}

#[tokio::test]
async fn the_gateways_own_metrics_are_served_on_the_private_address_only() {
    let (upstream, _stop) = serve(echo()).await;
    let metrics_address = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
        probe.local_addr().expect("an address")
    };
    let mut config = crate::shop_config(vec![gateway::Instance::stable(
        gateway::UpstreamUrl::from_addr(upstream),
    )]);
    config.metrics_listen = Some(metrics_address);
    let stop = platform::shutdown::Shutdown::new();
    let service = gateway::build(
        &config,
        test_support::TestIssuer::new().verifier(),
        platform::flags::Flags::default(),
        Vec::new(),
        &stop,
    )
    .await
    .expect("a gateway");
    let public = test_support::serve(service, &stop).await;
    let client = reqwest::Client::new();
    let public_metrics = client
        .get(format!("http://{public}/metrics"))
        .send()
        .await
        .expect("answers");
    assert_eq!(public_metrics.status().as_u16(), 404);
    client
        .get(format!("http://{public}/api/shop/x"))
        .send()
        .await
        .expect("answers");
    let private = client
        .get(format!("http://{metrics_address}/metrics"))
        .send()
        .await
        .expect("the metrics address answers");
    assert_eq!(private.status().as_u16(), 200);
    let text = private.text().await.expect("text");
    assert!(text.contains(r#"service="gateway""#), "{text}");
    stop.trigger();
}

/// The gateway vouches for the client address it forwards with the shop's forwarding
/// secret, and never passes on what a client claims in that header.
#[tokio::test]
async fn the_gateway_alone_vouches_for_the_client_address() {
    let (upstream, _stop) = serve(echo()).await;
    let secret = platform::config::Secret::random().expect("a secret");
    for configured in [Some(secret.clone()), None] {
        let gateway = TestGateway::with(Config {
            forwarding_secret: configured.clone(),
            ..limited(upstream, per_minute(100, 100, 100))
        })
        .await;
        let echoed: serde_json::Value = gateway
            .client
            .get(gateway.url("/api/shop/x"))
            .header(platform::net::FORWARDED_BY, "a-client-claims-this")
            .send()
            .await
            .expect("answers")
            .json()
            .await
            .expect("the echo");
        let forwarded = echoed["headers"][platform::net::FORWARDED_BY].as_str();
        assert_eq!(
            forwarded,
            configured.as_ref().map(platform::config::Secret::expose)
        );
    }
}
