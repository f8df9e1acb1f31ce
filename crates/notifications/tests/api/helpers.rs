//! Spawning notifications on port 0 with its own database, embedded bus and mail
//! transport (a mailbox folder or an SMTP sink), and driving its consumers and sender
//! one step at a time.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use contracts::messaging::identity::{RegistrationRequestedV1, UserRegisteredV1};
use contracts::messaging::orders::{
    OrderCancelledV1, OrderConfirmedV1, OrderLine, OrderRefundedV1,
};
use contracts::messaging::{Envelope, Message};
use contracts::{Currency, Money};
use notifications::domain::NotificationId;
use notifications::store::{self, Notification};
use notifications::{Config, MailerConfig, RetryConfig, Sender};
use platform::bus::Bus as _;
use platform::bus::embedded::EmbeddedBus;
use platform::db::{Database, PoolSettings};
use platform::inbox::{Consumer, Outcome};
use platform::outbox::{self, Origin};
use platform::shutdown::Shutdown;
use test_support::mail::Mail;
use test_support::smtp::SmtpSink;
use test_support::{Engine, TestDatabase, TestIssuer};

/// How the app under test sends its emails.
pub(crate) enum Transport {
    /// Files in a mailbox folder.
    Mailbox,
    /// An SMTP sink of the test's own.
    Smtp,
}

/// A running notifications service whose consumers and sender the test drives.
pub(crate) struct TestApp {
    pub(crate) address: SocketAddr,
    pub(crate) client: reqwest::Client,
    pub(crate) issuer: TestIssuer,
    pub(crate) db: Database,
    pub(crate) config: Config,
    pub(crate) sender: Sender,
    /// The SMTP sink, when the transport is SMTP.
    pub(crate) sink: Option<SmtpSink>,
    /// The mailbox folder, when the transport is the mailbox.
    pub(crate) mailbox: Option<PathBuf>,
    bus: Arc<EmbeddedBus>,
    identity_events: Consumer,
    order_events: Consumer,
    registration_requests: Consumer,
    shutdown: Shutdown,
    _database: TestDatabase,
    _folder: tempfile::TempDir,
}

/// The retry policy of the tests: one second, doubling, capped at eight.
pub(crate) const RETRY: RetryConfig = RetryConfig {
    first_retry_ms: 1000,
    max_retry_ms: 8000,
};

impl TestApp {
    /// Notifications over a fresh database, sending through `transport`. Its own
    /// workers are not run: the test drives the same consumers and sender step by step.
    pub(crate) async fn spawn(engine: Engine, transport: Transport) -> Self {
        Self::start(engine, transport, false).await
    }

    /// Notifications with its workers running on their own, as in the shop.
    pub(crate) async fn spawn_running(engine: Engine) -> Self {
        Self::start(engine, Transport::Mailbox, true).await
    }

    async fn start(engine: Engine, transport: Transport, run_workers: bool) -> Self {
        let database = TestDatabase::new(engine).await;
        let folder = tempfile::tempdir().expect("a folder");
        let bus = test_support::embedded_bus(folder.path()).await;
        let (mailer, sink, mailbox) = match transport {
            Transport::Mailbox => {
                let dir = folder.path().join("mailbox");
                (MailerConfig::Mailbox { dir: None }, None, Some(dir))
            }
            Transport::Smtp => {
                let sink = SmtpSink::start().await;
                let mailer = MailerConfig::Smtp {
                    host: sink.host(),
                    port: sink.port(),
                    tls: false,
                    timeout_ms: 5000,
                };
                (mailer, Some(sink), None)
            }
        };
        let mut config = Config {
            listen: "127.0.0.1:0".parse().expect("valid"),
            database_url: Some(database.url().clone()),
            max_connections: 8,
            mailer,
            retry: RETRY,
            poll_ms: if run_workers { 20 } else { 3_600_000 },
            ..Config::default()
        };
        // As the shop does: the mailbox goes in the data folder.
        config.resolve_in(folder.path());
        let issuer = TestIssuer::new();
        let context = test_support::context(bus.clone(), issuer.verifier());
        let shutdown = context.shutdown.clone();
        let mut service = notifications::build(&config, &context)
            .await
            .expect("notifications starts");
        if !run_workers {
            // The test drives the same consumers and sender itself, step by step.
            service.workers.clear();
        }
        let address = test_support::serve(service, &shutdown).await;
        let db = Database::connect(database.url(), PoolSettings::default())
            .await
            .expect("connects");
        let sender = notifications::new_sender(&config, db.clone()).expect("a sender");
        let mut consumers = notifications::events::consumers(&db, bus.clone(), Default::default())
            .await
            .expect("subscribed")
            .into_iter();
        let (Some(identity_events), Some(order_events), Some(registration_requests)) =
            (consumers.next(), consumers.next(), consumers.next())
        else {
            panic!("three consumers");
        };
        Self {
            address,
            client: reqwest::Client::new(),
            issuer,
            db,
            config,
            sender,
            sink,
            mailbox,
            bus,
            identity_events,
            order_events,
            registration_requests,
            shutdown,
            _database: database,
            _folder: folder,
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    pub(crate) fn sink(&self) -> &SmtpSink {
        self.sink.as_ref().expect("an SMTP app")
    }

    /// Publishes `message` as its owner would, and lets notifications consume it.
    pub(crate) async fn deliver<M: Message>(&mut self, message: &M) -> Envelope {
        let envelope = outbox::envelope("test", message, &Origin::default()).expect("an envelope");
        self.deliver_envelope(&envelope).await;
        envelope
    }

    /// Publishes `envelope` without consuming it.
    pub(crate) async fn publish(&self, envelope: &Envelope) {
        self.bus.publish(envelope).await.expect("published");
    }

    /// Publishes `envelope` and lets notifications consume it.
    pub(crate) async fn deliver_envelope(&mut self, envelope: &Envelope) -> Outcome {
        self.publish(envelope).await;
        let consumer = if envelope.kind == RegistrationRequestedV1::TYPE {
            &mut self.registration_requests
        } else if envelope.kind.starts_with("identity.") {
            &mut self.identity_events
        } else {
            &mut self.order_events
        };
        consumer
            .consume_once(Duration::from_secs(10))
            .await
            .expect("the bus answers")
            .expect("the message arrived")
    }

    /// One round of the sender at `now`.
    pub(crate) async fn send_due(&self, now: i64) -> usize {
        self.sender.send_due(now).await.expect("a round")
    }

    /// Every notification, oldest first.
    pub(crate) async fn notifications(&self) -> Vec<Notification> {
        store::all(self.db.pool()).await.expect("listed")
    }

    /// The mailbox file of notification `id`, if it was written.
    pub(crate) fn mailbox_file(&self, id: &NotificationId) -> Option<Mail> {
        let dir = self.mailbox.as_ref().expect("a mailbox app");
        std::fs::read(dir.join(format!("{id}.eml"))).ok().map(Mail)
    }

    /// The names of the files in the mailbox folder, sorted.
    pub(crate) fn mailbox_files(&self) -> Vec<String> {
        let dir = self.mailbox.as_ref().expect("a mailbox app");
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Vec::new();
        };
        let mut names: Vec<String> = entries
            .map(|entry| {
                entry
                    .expect("an entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        names.sort();
        names
    }

    /// `GET path` as `token`, expecting `status`; the JSON body.
    pub(crate) async fn get_json(&self, path: &str, token: &str, status: u16) -> serde_json::Value {
        let response = self
            .client
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("answers");
        assert_eq!(response.status().as_u16(), status, "GET {path}");
        response.json().await.expect("JSON")
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.trigger();
    }
}

/// The body as the wire carries it: CRLF line endings.
pub(crate) fn crlf(body: &str) -> String {
    body.replace('\n', "\r\n")
}

pub(crate) fn eur(minor: i64) -> Money {
    Money::new(minor, Currency::EUR)
}

pub(crate) fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

pub(crate) fn registered(customer_id: &str, email: &str) -> UserRegisteredV1 {
    UserRegisteredV1 {
        user_id: customer_id.parse().expect("an id"),
        email: email.to_owned(),
        registered_at_ms: platform::clock::now_ms(),
    }
}

/// Two mugs at 14.50 and a teapot at 30.00: 59.00 EUR.
pub(crate) fn confirmed(customer_id: &str, order_id: &str) -> OrderConfirmedV1 {
    OrderConfirmedV1 {
        order_id: order_id.parse().expect("an id"),
        customer_id: customer_id.parse().expect("an id"),
        lines: vec![
            OrderLine {
                product_id: new_id().parse().expect("an id"),
                name: "Enamel mug".to_owned(),
                quantity: 2,
                unit_price: eur(1450),
            },
            OrderLine {
                product_id: new_id().parse().expect("an id"),
                name: "Teapot".to_owned(),
                quantity: 1,
                unit_price: eur(3000),
            },
        ],
        total: eur(5900),
        cart_revision: None,
    }
}

pub(crate) fn cancelled(customer_id: &str, order_id: &str, reason: &str) -> OrderCancelledV1 {
    OrderCancelledV1 {
        order_id: order_id.parse().expect("an id"),
        customer_id: customer_id.parse().expect("an id"),
        reason: contracts::messaging::orders::CancelReason::parse(reason),
    }
}

pub(crate) fn refunded(customer_id: &str, order_id: &str) -> OrderRefundedV1 {
    OrderRefundedV1 {
        order_id: order_id.parse().expect("an id"),
        customer_id: customer_id.parse().expect("an id"),
        amount: eur(5900),
    }
}
