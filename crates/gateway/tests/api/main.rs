//! The gateway against real upstream servers on port 0.

mod console;
mod edge;
mod resilience;
mod routing;

use std::collections::BTreeMap;
use std::net::SocketAddr;

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::routing::any;
use gateway::{Config, Gateway, Upstream};
use platform::shutdown::Shutdown;
use serde_json::{Value, json};
use test_support::TestIssuer;

/// Serves `router` on a fresh port until the returned signal fires.
async fn serve(router: Router) -> (SocketAddr, Shutdown) {
    let (listener, address) = test_support::bind().await;
    let shutdown = Shutdown::new();
    tokio::spawn(platform::http::serve(listener, router, shutdown.clone()));
    (address, shutdown)
}

/// An upstream that answers every request with what it received.
fn echo() -> Router {
    named_echo("echo")
}

/// [`echo`], saying `name` in an `x-upstream` header.
fn named_echo(name: &'static str) -> Router {
    Router::new().fallback(any(
        move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| async move {
            let headers: BTreeMap<String, String> = headers
                .iter()
                .map(|(name, value)| (name.to_string(), value.to_str().unwrap_or("?").to_owned()))
                .collect();
            (
                StatusCode::CREATED,
                [("x-upstream", name)],
                axum::Json(json!({
                    "method": method.as_str(),
                    "target": uri.to_string(),
                    "headers": headers,
                    "body_len": body.len(),
                })),
            )
        },
    ))
}

/// A gateway configuration routing `/api/shop` to `instances`, without rate limits
/// (these tests send many requests from one address) and with health checks driven
/// by the test.
fn shop_config(instances: Vec<gateway::Instance>) -> Config {
    let mut config = Config::default();
    config.rate_limit.enabled = false;
    config.health.interval_ms = 0;
    config.upstreams.insert(
        "shop".to_owned(),
        Upstream {
            instances,
            max_in_flight: None,
        },
    );
    config
}

/// A gateway under test, with a client and the issuer of the tokens it accepts.
struct TestGateway {
    address: SocketAddr,
    client: reqwest::Client,
    issuer: TestIssuer,
    handle: Gateway,
    _stop: Shutdown,
}

impl TestGateway {
    /// A gateway with the default policies over `upstreams`, one instance each.
    async fn spawn(upstreams: &[(&str, SocketAddr)], upstream_timeout_ms: u64) -> Self {
        Self::with(Config {
            upstream_timeout_ms,
            upstreams: upstreams
                .iter()
                .map(|(name, address)| ((*name).to_owned(), Upstream::at(*address)))
                .collect(),
            ..Config::default()
        })
        .await
    }

    /// A gateway over `config`, its workers running.
    async fn with(config: Config) -> Self {
        Self::with_flags(config, platform::flags::Flags::default()).await
    }

    /// [`TestGateway::with`], its console showing and switching `flags`.
    async fn with_flags(config: Config, flags: platform::flags::Flags) -> Self {
        let issuer = TestIssuer::new();
        let handle = Gateway::new(&config, issuer.verifier(), flags)
            .await
            .expect("a gateway");
        let stop = Shutdown::new();
        for worker in handle.workers(&stop) {
            tokio::spawn(worker);
        }
        let (listener, address) = test_support::bind().await;
        tokio::spawn(platform::http::serve(
            listener,
            handle.router(),
            stop.clone(),
        ));
        Self {
            address,
            client: reqwest::Client::new(),
            issuer,
            handle,
            _stop: stop,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    /// GETs `path`; the status and the `x-upstream` that answered, if any.
    async fn get(&self, path: &str, headers: &[(&str, &str)]) -> (u16, Option<String>) {
        let mut request = self.client.get(self.url(path));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.expect("answers");
        let upstream = response
            .headers()
            .get("x-upstream")
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        (response.status().as_u16(), upstream)
    }
}

async fn problem(response: reqwest::Response, status: u16) -> Value {
    assert_eq!(response.status().as_u16(), status);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    response.json().await.expect("a problem body")
}

#[tokio::test]
async fn requests_are_forwarded_with_the_prefix_stripped_and_edge_headers_set() {
    let (upstream, _stop) = serve(echo()).await;
    let gateway = TestGateway::spawn(&[("echo", upstream)], 5_000).await;
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let response = gateway
        .client
        .post(gateway.url("/api/echo/things/1?colour=red&size=2"))
        .header("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01"))
        .header("x-request-id", "req-42")
        .header("x-forwarded-for", "6.6.6.6")
        .header("connection", "x-private")
        .header("x-private", "hop")
        .body("twelve bytes")
        .send()
        .await
        .expect("answers");
    assert_eq!(
        response.status().as_u16(),
        201,
        "the upstream's status is relayed"
    );
    assert_eq!(response.headers()["x-upstream"], "echo");
    assert_eq!(response.headers()["x-request-id"], "req-42");
    let seen: Value = response.json().await.expect("JSON");
    assert_eq!(seen["method"], "POST");
    assert_eq!(seen["target"], "/things/1?colour=red&size=2");
    assert_eq!(seen["body_len"], 12);
    let headers = &seen["headers"];
    assert_eq!(headers["x-request-id"], "req-42");
    assert_eq!(
        headers["x-forwarded-for"], "127.0.0.1",
        "a client's claim is not trusted"
    );
    assert_eq!(headers["x-forwarded-proto"], "http");
    assert_eq!(headers["x-forwarded-host"], gateway.address.to_string());
    assert_eq!(headers["host"], upstream.to_string());
    assert!(
        headers.get("x-private").is_none(),
        "hop-by-hop headers are dropped"
    );
    let traceparent = headers["traceparent"].as_str().expect("a traceparent");
    assert!(
        traceparent.starts_with(&format!("00-{trace_id}-")),
        "{traceparent}"
    );
    assert!(
        !traceparent.contains("00f067aa0ba902b7"),
        "a new span id: {traceparent}"
    );
}

#[tokio::test]
async fn a_trace_and_a_request_id_are_started_when_the_client_sends_none() {
    let (upstream, _stop) = serve(echo()).await;
    let gateway = TestGateway::spawn(&[("echo", upstream)], 5_000).await;
    let response = gateway
        .client
        .get(gateway.url("/api/echo"))
        .send()
        .await
        .expect("answers");
    let request_id = response.headers()["x-request-id"]
        .to_str()
        .expect("text")
        .to_owned();
    let seen: Value = response.json().await.expect("JSON");
    assert_eq!(seen["target"], "/");
    assert_eq!(seen["headers"]["x-request-id"], request_id.as_str());
    let traceparent = seen["headers"]["traceparent"]
        .as_str()
        .expect("a traceparent");
    assert_eq!(traceparent.len(), 55, "{traceparent}");
}

#[tokio::test]
async fn an_unreachable_upstream_is_a_502_problem() {
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
        listener.local_addr().expect("bound")
    };
    let gateway = TestGateway::spawn(&[("gone", closed)], 5_000).await;
    let response = gateway
        .client
        .get(gateway.url("/api/gone/x"))
        .send()
        .await
        .expect("answers");
    let problem = problem(response, 502).await;
    assert_eq!(problem["type"], "/problems/upstream-unavailable");
    assert!(
        problem["detail"]
            .as_str()
            .is_some_and(|detail| detail.contains("gone"))
    );
}

#[tokio::test]
async fn an_upstream_that_never_answers_is_a_504_problem_after_the_timeout() {
    let (upstream, _stop) =
        serve(Router::new().fallback(any(std::future::pending::<&'static str>))).await;
    let gateway = TestGateway::spawn(&[("stuck", upstream)], 100).await;
    let response = gateway
        .client
        .get(gateway.url("/api/stuck/x"))
        .send()
        .await
        .expect("answers");
    let problem = problem(response, 504).await;
    assert_eq!(problem["type"], "/problems/upstream-timeout");
}

#[tokio::test]
async fn unknown_services_and_routes_are_404_problems() {
    let gateway = TestGateway::spawn(&[], 5_000).await;
    for path in ["/api/nothing/here", "/api/", "/elsewhere"] {
        let response = gateway
            .client
            .get(gateway.url(path))
            .send()
            .await
            .expect("answers");
        problem(response, 404).await;
    }
}

#[tokio::test]
async fn the_docs_ui_lists_every_upstream_document() {
    let (upstream, _stop) = serve(echo()).await;
    let gateway = TestGateway::spawn(&[("alpha", upstream), ("beta", upstream)], 5_000).await;
    let page = gateway
        .client
        .get(gateway.url("/api/docs/"))
        .send()
        .await
        .expect("answers");
    assert_eq!(page.status().as_u16(), 200);
    let script = gateway
        .client
        .get(gateway.url("/api/docs/swagger-initializer.js"))
        .send()
        .await
        .expect("answers")
        .text()
        .await
        .expect("text");
    for url in ["/api/alpha/openapi.json", "/api/beta/openapi.json"] {
        assert!(script.contains(url), "{url} missing from {script}");
    }
}

#[tokio::test]
async fn protected_routes_need_a_valid_token_and_the_role() {
    let (upstream, _stop) = serve(echo()).await;
    let gateway = TestGateway::spawn(&[("catalog", upstream), ("identity", upstream)], 5_000).await;
    let post = |token: Option<String>| {
        let request = gateway.client.post(gateway.url("/api/catalog/products"));
        match token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    };

    let anonymous = post(None).send().await.expect("answers");
    assert!(
        anonymous.headers()["www-authenticate"]
            .to_str()
            .expect("text")
            .starts_with("Bearer")
    );
    problem(anonymous, 401).await;
    let forged = post(Some("not.a.token".to_owned()))
        .send()
        .await
        .expect("answers");
    let challenge = forged.headers()["www-authenticate"]
        .to_str()
        .expect("text")
        .to_owned();
    assert!(challenge.contains("invalid_token"), "{challenge}");
    problem(forged, 401).await;
    let customer = post(Some(gateway.issuer.customer("u-1")))
        .send()
        .await
        .expect("answers");
    problem(customer, 403).await;

    let admin = post(Some(gateway.issuer.admin()))
        .send()
        .await
        .expect("answers");
    assert_eq!(admin.status().as_u16(), 201, "forwarded");
    let seen: Value = admin.json().await.expect("JSON");
    assert!(
        seen["headers"]["authorization"]
            .as_str()
            .is_some_and(|value| value.starts_with("Bearer "))
    );

    let reading = gateway
        .client
        .get(gateway.url("/api/catalog/products"))
        .send()
        .await
        .expect("answers");
    assert_eq!(reading.status().as_u16(), 201, "reads are public");
    let me = gateway
        .client
        .get(gateway.url("/api/identity/me"))
        .send()
        .await
        .expect("answers");
    problem(me, 401).await;
}

#[tokio::test]
async fn the_jwt_attack_corpus_is_refused_at_the_edge() {
    let (upstream, _stop) = serve(echo()).await;
    let gateway = TestGateway::spawn(&[("identity", upstream)], 5_000).await;
    let valid = gateway.issuer.customer("u-1");
    let corpus =
        test_support::security::attack_corpus(gateway.issuer.key(), TestIssuer::ISSUER, &valid);
    let me = gateway.url("/api/identity/me");
    test_support::security::assert_corpus_refused(|| gateway.client.get(&me), &valid, &corpus)
        .await;
}

#[tokio::test]
async fn http2_clients_are_forwarded_over_http1() {
    let (upstream, _stop) = serve(echo()).await;
    let gateway = TestGateway::spawn(&[("echo", upstream)], 5_000).await;
    let client = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .expect("a client");
    let response = client
        .get(gateway.url("/api/echo/h2"))
        .header("x-forwarded-host", "evil.example")
        .send()
        .await
        .expect("answers");
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    assert_eq!(response.status().as_u16(), 201);
    let seen: Value = response.json().await.expect("JSON");
    assert_eq!(seen["target"], "/h2");
    assert_eq!(
        seen["headers"]["x-forwarded-host"],
        gateway.address.to_string()
    );
}
