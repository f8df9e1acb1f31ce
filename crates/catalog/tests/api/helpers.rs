//! Spawning the catalog on port 0 over a fresh database.

use std::net::SocketAddr;

use platform::shutdown::Shutdown;
use serde_json::Value;
use test_support::{Engine, TestDatabase};

/// A running catalog and the database behind it; stopped when dropped.
pub(crate) struct TestApp {
    pub(crate) address: SocketAddr,
    pub(crate) client: reqwest::Client,
    db: Option<TestDatabase>,
    shutdown: Shutdown,
}

impl TestApp {
    /// The catalog over a fresh database on `engine`, with the demo data.
    pub(crate) async fn spawn(engine: Engine) -> Self {
        Self::spawn_on(TestDatabase::new(engine).await).await
    }

    /// The catalog over an existing database, as if the process restarted.
    pub(crate) async fn spawn_on(db: TestDatabase) -> Self {
        let config = catalog::Config {
            listen: "127.0.0.1:0".parse().expect("valid"),
            database_url: Some(db.url().clone()),
            max_connections: 4,
            seed_demo_data: true,
        };
        let app = catalog::build(&config).await.expect("the catalog starts");
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .expect("a free port");
        let address = listener.local_addr().expect("bound");
        let shutdown = Shutdown::new();
        tokio::spawn(platform::http::serve(listener, app, shutdown.clone()));
        Self {
            address,
            client: reqwest::Client::new(),
            db: Some(db),
            shutdown,
        }
    }

    /// Stops serving and hands back the database, for a restart.
    pub(crate) fn stop(mut self) -> TestDatabase {
        self.shutdown.trigger();
        self.db.take().expect("the database is held until stop")
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    pub(crate) async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("the catalog answers")
    }

    /// GETs `path`, asserts the status, and returns the JSON body.
    pub(crate) async fn get_json(&self, path: &str, status: u16) -> Value {
        let response = self.get(path).await;
        assert_eq!(response.status().as_u16(), status, "GET {path}");
        response.json().await.expect("a JSON body")
    }

    /// GETs `path` and asserts a 400 problem naming `field`.
    pub(crate) async fn assert_invalid(&self, path: &str, field: &str) {
        let response = self.get(path).await;
        assert_eq!(response.status().as_u16(), 400, "GET {path}");
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json",
            "GET {path}"
        );
        let problem: Value = response.json().await.expect("a JSON body");
        let named = problem["errors"]
            .as_array()
            .is_some_and(|errors| errors.iter().any(|error| error["field"] == field))
            || problem["detail"]
                .as_str()
                .is_some_and(|detail| detail.contains(field));
        assert!(
            named,
            "GET {path}: the problem does not name {field}: {problem}"
        );
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.trigger();
    }
}

/// Follows `next_cursor` from `first` (a path with a query) to the end, returning every item.
pub(crate) async fn all_pages(app: &TestApp, first: &str) -> Vec<Value> {
    let mut items = Vec::new();
    let mut path = first.to_owned();
    for _ in 0..100 {
        let page = app.get_json(&path, 200).await;
        items.extend(page["items"].as_array().expect("items").iter().cloned());
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("{first}&cursor={cursor}"),
            None => return items,
        }
    }
    panic!("pagination from {first} did not end");
}
