//! A real Prometheus server (Debian's `prometheus`, which `cargo xtask ci` installs)
//! scrapes a running shop with the shop's own rules loaded: every target is up, the key
//! series exist, and every recording and alerting rule evaluates without error.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bazaar::shop::Shop;
use bazaar::{Config, ServiceName};
use platform::shutdown::Shutdown;
use serde_json::{Value, json};

const PROMETHEUS: &str = "/usr/bin/prometheus";

/// The Prometheus process, killed when dropped.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Queries Prometheus at `base` until `done` accepts the answer's `data`, for up to 60 s.
async fn until(
    client: &reqwest::Client,
    url: &str,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    test_support::eventually(what, Duration::from_secs(60), || async {
        let response = client
            .get(url)
            .send()
            .await
            .map_err(|error| error.to_string())?;
        let body = response
            .json::<Value>()
            .await
            .map_err(|error| error.to_string())?;
        if done(&body["data"]) {
            Ok(body["data"].clone())
        } else {
            Err(format!("{body:#}"))
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_every_service_and_the_rules_evaluate() {
    assert!(
        std::path::Path::new(PROMETHEUS).exists(),
        "no Prometheus at {PROMETHEUS}: apt-get install prometheus (cargo xtask ci does)"
    );
    let folder = tempfile::tempdir().expect("a folder");
    let shutdown = Shutdown::new();
    let free_port = || {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
        listener.local_addr().expect("bound")
    };
    // The gateway serves its metrics on a private address of their own, as in compose.
    let gateway_metrics = free_port();
    let mut config = Config::ephemeral(folder.path().join("data"));
    config.gateway.metrics_listen = Some(gateway_metrics);
    let shop = Shop::start(&config, &ServiceName::ALL, shutdown.clone())
        .await
        .expect("the shop starts");
    let gateway = shop.address(ServiceName::Gateway).expect("a gateway");
    let client = reqwest::Client::new();
    // Some traffic, and an event through the outbox (a new account).
    for path in ["/api/catalog/products?limit=3", "/api/nothing-here"] {
        client
            .get(format!("http://{gateway}{path}"))
            .send()
            .await
            .expect("answers");
    }
    let registered = client
        .post(format!("http://{gateway}/api/identity/register"))
        .json(&json!({"email": "scraped@example.com", "password": "correct horse battery staple"}))
        .send()
        .await
        .expect("answers");
    assert_eq!(registered.status().as_u16(), 202);

    let rules = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy/observability/rules");
    let mut config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}/*.yaml\nscrape_configs:\n",
        rules.display()
    );
    for service in ServiceName::ALL {
        let address = match service {
            ServiceName::Gateway => gateway_metrics,
            _ => shop.address(service).expect("running"),
        };
        config.push_str(&format!(
            "  - job_name: {service}\n    static_configs:\n      - targets: [\"{address}\"]\n"
        ));
    }
    let config_file = folder.path().join("prometheus.yaml");
    std::fs::write(&config_file, config).expect("written");
    let port = free_port().port();
    let _prometheus = Server(
        Command::new(PROMETHEUS)
            .arg(format!("--config.file={}", config_file.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                folder.path().join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus starts"),
    );
    let api = format!("http://127.0.0.1:{port}/api/v1");

    let targets = until(
        &client,
        &format!("{api}/targets"),
        "every target up",
        |data| {
            data["activeTargets"].as_array().is_some_and(|targets| {
                targets.len() == ServiceName::ALL.len()
                    && targets.iter().all(|target| target["health"] == "up")
            })
        },
    )
    .await;
    assert_eq!(
        targets["activeTargets"].as_array().map(Vec::len),
        Some(ServiceName::ALL.len())
    );

    for series in [
        "http_server_requests_total{service=\"gateway\"}",
        "http_server_request_duration_seconds_bucket{service=\"catalog\"}",
        "gateway_breaker_state{upstream=\"orders\"}",
        "outbox_published_total{service=\"identity\"}",
        // Measured at each readiness check, which the gateway's health checks make.
        "db_pool_connections{service=\"orders\",state=\"idle\"}",
    ] {
        let query = format!("{api}/query?query={}", urlencode(series));
        until(&client, &query, series, |data| {
            data["result"]
                .as_array()
                .is_some_and(|result| !result.is_empty())
        })
        .await;
    }

    // Every rule of deploy/observability evaluates on the real series.
    let groups = until(
        &client,
        &format!("{api}/rules"),
        "the rules evaluated",
        |data| {
            data["groups"].as_array().is_some_and(|groups| {
                !groups.is_empty()
                    && groups.iter().all(|group| {
                        group["rules"].as_array().is_some_and(|rules| {
                            rules
                                .iter()
                                .all(|rule| rule["lastEvaluation"] != "0001-01-01T00:00:00Z")
                        })
                    })
            })
        },
    )
    .await;
    for group in groups["groups"].as_array().expect("groups") {
        for rule in group["rules"].as_array().expect("rules") {
            assert_eq!(rule["health"], "ok", "{rule:#}");
        }
    }
    shutdown.trigger();
    shop.wait().await.expect("a clean stop");
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'-' | b'.' => {
                (byte as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}
