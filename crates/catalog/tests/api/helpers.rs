//! Spawning the catalog on port 0 over a fresh database.

use std::net::SocketAddr;
use std::sync::Arc;

use platform::bus::embedded::EmbeddedBus;
use platform::shutdown::Shutdown;
use reqwest::Method;
use serde_json::Value;
use test_support::{Engine, TestDatabase, TestIssuer};

/// A running catalog and the database behind it; stopped when dropped.
pub(crate) struct TestApp {
    pub(crate) address: SocketAddr,
    pub(crate) client: reqwest::Client,
    /// Mints the tokens this catalog trusts.
    pub(crate) issuer: TestIssuer,
    /// The bus the catalog publishes its events to.
    pub(crate) bus: Arc<EmbeddedBus>,
    db: Option<TestDatabase>,
    shutdown: Shutdown,
    _bus_folder: Arc<tempfile::TempDir>,
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
        let issuer = TestIssuer::new();
        let bus_folder = Arc::new(tempfile::tempdir().expect("a folder"));
        let bus = test_support::embedded_bus(bus_folder.path()).await;
        let context = test_support::context(bus.clone(), issuer.verifier());
        let shutdown = context.shutdown.clone();
        let service = catalog::build(&config, &context)
            .await
            .expect("the catalog starts");
        let address = test_support::serve(service, &shutdown).await;
        Self {
            address,
            client: reqwest::Client::new(),
            issuer,
            bus,
            db: Some(db),
            shutdown,
            _bus_folder: bus_folder,
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

    /// A request to `path`, with `token` as its bearer token if there is one.
    pub(crate) fn request(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
    ) -> reqwest::RequestBuilder {
        let request = self.client.request(method, self.url(path));
        match token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// Sends `body` (if any) as JSON with an admin's token, asserts the status, and
    /// returns the JSON body (`Null` when there is none).
    pub(crate) async fn admin_send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        status: u16,
    ) -> Value {
        let mut request = self.request(method.clone(), path, Some(&self.issuer.admin()));
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.expect("the catalog answers");
        assert_eq!(response.status().as_u16(), status, "{method} {path}");
        let text = response.text().await.expect("a body");
        if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).expect("a JSON body")
        }
    }

    /// Sends `body` as an admin and asserts a 400 problem naming `field`.
    pub(crate) async fn assert_invalid_body(
        &self,
        method: Method,
        path: &str,
        body: &Value,
        field: &str,
    ) -> Value {
        let response = self
            .request(method.clone(), path, Some(&self.issuer.admin()))
            .json(body)
            .send()
            .await
            .expect("the catalog answers");
        let problem = expect_problem(response, 400, &format!("{method} {path} {body}")).await;
        assert_names(&problem, field);
        problem
    }
}

/// Asserts that `response` is a problem with `status`, and returns its body.
pub(crate) async fn expect_problem(response: reqwest::Response, status: u16, what: &str) -> Value {
    assert_eq!(response.status().as_u16(), status, "{what}");
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json",
        "{what}"
    );
    let problem: Value = response.json().await.expect("a JSON body");
    assert_eq!(problem["status"], status, "{what}: {problem}");
    problem
}

/// Asserts that `problem` names `field`, in its field errors or its detail.
pub(crate) fn assert_names(problem: &Value, field: &str) {
    let named = problem["errors"]
        .as_array()
        .is_some_and(|errors| errors.iter().any(|error| error["field"] == field))
        || problem["detail"]
            .as_str()
            .is_some_and(|detail| detail.contains(field));
    assert!(named, "the problem does not name {field}: {problem}");
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
