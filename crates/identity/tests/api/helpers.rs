//! Spawning identity on port 0 over a fresh database.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use contracts::messaging::Message as _;
use contracts::messaging::identity::{RegistrationOutcome, RegistrationRequestedV1};
use platform::bus::{Bus as _, Subscription, SubscriptionSpec};
use tokio::sync::Mutex;

use platform::auth::AuthConfig;
use platform::bus::embedded::EmbeddedBus;
use platform::shutdown::Shutdown;
use serde_json::{Value, json};
use test_support::{Engine, TestDatabase};

pub(crate) const ISSUER: &str = "http://identity.test/api/identity";
pub(crate) const PASSWORD: &str = "correct horse battery staple";

/// A running identity service; stopped when dropped.
pub(crate) struct TestApp {
    pub(crate) address: SocketAddr,
    pub(crate) client: reqwest::Client,
    pub(crate) config: identity::Config,
    pub(crate) auth: AuthConfig,
    /// The bus identity publishes its events on.
    pub(crate) bus: Arc<EmbeddedBus>,
    /// What identity asked to be mailed on registration, and the newest confirmation
    /// token read from it for each address.
    mail: Mutex<(Box<dyn Subscription>, HashMap<String, String>)>,
    _db: TestDatabase,
    _folder: tempfile::TempDir,
    shutdown: Shutdown,
}

impl TestApp {
    /// Identity over a fresh database, with throttling loose enough for functional tests.
    pub(crate) async fn spawn(engine: Engine) -> Self {
        Self::spawn_with(engine, |config| {
            config.address_attempts_burst = 10_000;
            config.account_failures_per_network = 10_000;
        })
        .await
    }

    /// Identity with its configuration adjusted by `adjust`.
    pub(crate) async fn spawn_with(
        engine: Engine,
        adjust: impl FnOnce(&mut identity::Config),
    ) -> Self {
        let db = TestDatabase::new(engine).await;
        let mut config = identity::Config {
            listen: "127.0.0.1:0".parse().expect("valid"),
            database_url: Some(db.url().clone()),
            max_connections: 4,
            // Tests register an address again at once; the limit has its own test.
            registration_email_secs: 0,
            ..identity::Config::default()
        };
        adjust(&mut config);
        let auth = AuthConfig {
            issuer: ISSUER.to_owned(),
            jwks_refresh_secs: 0,
            ..AuthConfig::default()
        };
        let folder = tempfile::tempdir().expect("a folder");
        let bus = test_support::embedded_bus(folder.path()).await;
        let registrations =
            SubscriptionSpec::new("test.registrations", RegistrationRequestedV1::TYPE);
        let mail = bus.subscribe(&registrations).await.expect("subscribed");
        let context = test_support::context(bus.clone(), auth.verifier());
        let shutdown = context.shutdown.clone();
        let service = identity::build(&config, &auth, &context)
            .await
            .expect("identity starts");
        let address = test_support::serve(service, &shutdown).await;
        Self {
            address,
            client: reqwest::Client::new(),
            config,
            auth,
            bus,
            mail: Mutex::new((mail, HashMap::new())),
            _db: db,
            _folder: folder,
            shutdown,
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    pub(crate) async fn post(&self, path: &str, body: Value) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .json(&body)
            .send()
            .await
            .expect("identity answers")
    }

    pub(crate) async fn get_as(&self, path: &str, token: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("identity answers")
    }

    /// The published JSON Web Key Set.
    pub(crate) async fn jwks(&self) -> Value {
        self.client
            .get(self.url("/.well-known/jwks.json"))
            .send()
            .await
            .expect("identity answers")
            .json()
            .await
            .expect("JSON")
    }

    /// Registers `email` with the standard password, and confirms it with the link
    /// identity had mailed; returns the account.
    pub(crate) async fn register(&self, email: &str) -> Value {
        let response = self
            .post("/register", json!({"email": email, "password": PASSWORD}))
            .await;
        assert_eq!(response.status().as_u16(), 202, "registering {email}");
        let accepted: Value = response.json().await.expect("JSON");
        let address = accepted["email"].as_str().expect("the address");
        let token = self.confirmation_token(address).await;
        let confirmed = self
            .post("/confirm", json!({ "token": token, "password": PASSWORD }))
            .await;
        assert_eq!(confirmed.status().as_u16(), 200, "confirming {email}");
        let tokens: Value = confirmed.json().await.expect("JSON");
        self.get_as("/me", &access(&tokens))
            .await
            .json()
            .await
            .expect("JSON")
    }

    /// Registers `email` with `password` and leaves it unconfirmed (the answer is 202
    /// whatever the address holds).
    pub(crate) async fn register_unconfirmed(&self, email: &str, password: &str) {
        let response = self
            .post("/register", json!({"email": email, "password": password}))
            .await;
        assert_eq!(response.status().as_u16(), 202, "registering {email}");
    }

    /// The newest confirmation token mailed to `address` and not yet handed out,
    /// waiting for it on the bus.
    pub(crate) async fn confirmation_token(&self, address: &str) -> String {
        let mut mail = self.mail.lock().await;
        let (subscription, tokens) = &mut *mail;
        for _ in 0..100 {
            let Some(delivery) = subscription
                .next(Duration::from_millis(100))
                .await
                .expect("the bus answers")
            else {
                // Everything mailed so far is read: the newest token is the one.
                if let Some(token) = tokens.remove(address) {
                    return token;
                }
                continue;
            };
            let requested: RegistrationRequestedV1 =
                delivery.envelope.decode().expect("a registration");
            delivery.ack().await.expect("acknowledged");
            if let RegistrationOutcome::Confirm { token, .. } = requested.outcome {
                tokens.insert(requested.email, token);
            }
        }
        panic!("no confirmation was mailed to {address}");
    }

    /// Every registration mailed so far that is not yet read, in order.
    pub(crate) async fn mailed(&self) -> Vec<RegistrationRequestedV1> {
        let mut mail = self.mail.lock().await;
        let (subscription, tokens) = &mut *mail;
        let mut mailed = Vec::new();
        while let Some(delivery) = subscription
            .next(Duration::from_millis(300))
            .await
            .expect("the bus answers")
        {
            let requested: RegistrationRequestedV1 =
                delivery.envelope.decode().expect("a registration");
            delivery.ack().await.expect("acknowledged");
            if let RegistrationOutcome::Confirm { token, .. } = &requested.outcome {
                tokens.insert(requested.email.clone(), token.clone());
            }
            mailed.push(requested);
        }
        mailed
    }

    /// Asks for tokens with `email` and `password`; the answer, whatever it is.
    pub(crate) async fn sign_in(&self, email: &str, password: &str) -> reqwest::Response {
        self.post("/token", json!({"email": email, "password": password}))
            .await
    }

    /// Signs in; returns the token response.
    pub(crate) async fn login(&self, email: &str, password: &str) -> Value {
        let response = self
            .post("/token", json!({"email": email, "password": password}))
            .await;
        assert_eq!(response.status().as_u16(), 200, "signing in as {email}");
        assert_eq!(response.headers()["cache-control"], "no-store");
        response.json().await.expect("JSON")
    }

    /// Registers and signs in; returns the access token.
    pub(crate) async fn customer(&self, email: &str) -> String {
        self.register(email).await;
        access(&self.login(email, PASSWORD).await)
    }

    /// The identity context over the same database, as the admin command uses it.
    pub(crate) async fn context(&self) -> identity::Identity {
        identity::context(&self.config, &self.auth)
            .await
            .expect("a context")
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.trigger();
    }
}

pub(crate) fn access(tokens: &Value) -> String {
    tokens["access_token"]
        .as_str()
        .expect("an access token")
        .to_owned()
}

pub(crate) fn refresh(tokens: &Value) -> String {
    tokens["refresh_token"]
        .as_str()
        .expect("a refresh token")
        .to_owned()
}

/// Asserts a problem with `status` and `type`.
pub(crate) async fn assert_problem(response: reqwest::Response, status: u16, kind: &str) -> Value {
    assert_eq!(response.status().as_u16(), status);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let problem: Value = response.json().await.expect("JSON");
    assert_eq!(problem["type"], format!("/problems/{kind}"), "{problem}");
    problem
}
