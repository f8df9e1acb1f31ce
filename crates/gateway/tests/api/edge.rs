//! Edge policy: rate limits (exact, unspoofable, per user, shared through Redis), body
//! limits, CORS and security headers.

use std::net::SocketAddr;

use gateway::config::{RateLimitConfig, RateLimitStore};
use gateway::{Config, Gateway, Upstream};

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
        url: redis.url().to_owned(),
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

#[tokio::test]
async fn an_unreachable_limit_store_fails_the_start_loudly() {
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
        listener.local_addr().expect("bound")
    };
    let mut limits = per_minute(30, 100, 100);
    limits.store = RateLimitStore::Redis {
        url: format!("redis://{closed}"),
        key_prefix: "x:".to_owned(),
    };
    let config = Config {
        rate_limit: limits,
        ..Config::default()
    };
    let error = Gateway::new(&config, test_support::TestIssuer::new().verifier())
        .await
        .err()
        .expect("refused");
    assert!(
        format!("{error:#}").contains("rate limit store"),
        "{error:#}"
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
}
