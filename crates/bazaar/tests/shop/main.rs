//! The whole shop, as `bazaar up` starts it, driven only through the gateway.

use std::net::SocketAddr;

use bazaar::shop::Shop;
use bazaar::{Config, ServiceName};
use platform::shutdown::Shutdown;
use serde_json::Value;

/// The shop running in this process on port 0; stopped when dropped.
struct RunningShop {
    gateway: SocketAddr,
    shutdown: Shutdown,
    shop: Option<Shop>,
    client: reqwest::Client,
}

impl RunningShop {
    async fn start(data_dir: &std::path::Path) -> Self {
        let shutdown = Shutdown::new();
        let config = Config::ephemeral(data_dir.to_owned());
        let shop = Shop::start(&config, &ServiceName::ALL, shutdown.clone())
            .await
            .expect("the shop starts");
        Self {
            gateway: shop.address(ServiceName::Gateway).expect("a gateway"),
            shutdown,
            shop: Some(shop),
            client: reqwest::Client::new(),
        }
    }

    async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("http://{}{path}", self.gateway))
            .send()
            .await
            .expect("the gateway answers")
    }

    async fn get_json(&self, path: &str) -> Value {
        let response = self.get(path).await;
        assert_eq!(response.status().as_u16(), 200, "GET {path}");
        response.json().await.expect("JSON")
    }

    /// Shuts down and waits until every service has drained and stopped.
    async fn stop(mut self) {
        self.shutdown.trigger();
        if let Some(shop) = self.shop.take() {
            shop.wait().await.expect("a clean shutdown");
        }
    }
}

impl Drop for RunningShop {
    fn drop(&mut self) {
        self.shutdown.trigger();
    }
}

#[tokio::test]
async fn seeded_products_are_served_through_the_gateway() {
    let data = tempfile::tempdir().expect("a folder");
    let shop = RunningShop::start(data.path()).await;
    let page = shop.get_json("/api/catalog/products?limit=5").await;
    assert_eq!(page["items"].as_array().map(Vec::len), Some(5));
    let mug = shop.get_json("/api/catalog/products/enamel-camp-mug").await;
    assert_eq!(mug["price"]["currency"], "EUR");
    let categories = shop.get_json("/api/catalog/categories").await;
    assert!(
        categories["items"]
            .as_array()
            .is_some_and(|items| items.len() >= 5)
    );
}

#[tokio::test]
async fn bad_input_through_the_gateway_is_the_services_problem() {
    let data = tempfile::tempdir().expect("a folder");
    let shop = RunningShop::start(data.path()).await;
    let response = shop.get("/api/catalog/products?sort=colour").await;
    assert_eq!(response.status().as_u16(), 400);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let problem: Value = response.json().await.expect("JSON");
    assert_eq!(problem["errors"][0]["field"], "sort");
}

#[tokio::test]
async fn health_metrics_and_docs_answer() {
    let data = tempfile::tempdir().expect("a folder");
    let shop = RunningShop::start(data.path()).await;
    assert_eq!(shop.get_json("/health/ready").await["status"], "ready");
    assert_eq!(
        shop.get_json("/api/catalog/health/ready").await["checks"]["database"],
        "ok"
    );
    shop.get("/api/catalog/products?limit=1").await;
    let metrics = shop.get("/metrics").await.text().await.expect("text");
    assert!(metrics.contains(r#"service="gateway""#), "{metrics}");
    let docs = shop.get("/api/docs/").await;
    assert_eq!(docs.status().as_u16(), 200);
    assert!(docs.text().await.expect("html").contains("swagger"));
    let initializer = shop.get("/api/docs/swagger-initializer.js").await;
    let initializer = initializer.text().await.expect("javascript");
    assert!(
        initializer.contains("/api/catalog/openapi.json"),
        "{initializer}"
    );
    let openapi = shop.get_json("/api/catalog/openapi.json").await;
    assert!(
        openapi["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1"))
    );
}

#[tokio::test]
async fn data_survives_a_restart() {
    let data = tempfile::tempdir().expect("a folder");
    let shop = RunningShop::start(data.path()).await;
    let before = shop.get_json("/api/catalog/products?limit=100").await;
    shop.stop().await;
    assert!(data.path().join("catalog.db").exists());
    let shop = RunningShop::start(data.path()).await;
    let after = shop.get_json("/api/catalog/products?limit=100").await;
    assert_eq!(before, after);
}
