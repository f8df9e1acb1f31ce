//! Buses under test, and helpers shared by the scenarios.

use std::sync::Arc;
use std::time::Duration;

use contracts::messaging::Envelope;
use platform::bus::embedded::EmbeddedBus;
use platform::bus::jetstream::JetStreamBus;
use platform::bus::{Bus, Delivery, Subscription, SubscriptionSpec};
use test_support::nats::NatsServer;

/// Long enough for any delivery on a loaded machine; scenarios wait this long only
/// when they expect nothing more to come.
pub(crate) const PATIENCE: Duration = Duration::from_secs(5);
/// How long a bus may take to come back after a restart (JetStream recovers its streams
/// before it acknowledges publishes again).
pub(crate) const RECOVERY: Duration = Duration::from_secs(30);
/// How long to wait to be fairly sure nothing more comes.
pub(crate) const QUIET: Duration = Duration::from_millis(700);

/// The adapters.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Adapter {
    Embedded,
    JetStream,
}

/// A bus and what it runs on.
pub(crate) struct Harness {
    pub(crate) bus: Arc<dyn Bus>,
    backing: Backing,
}

enum Backing {
    /// The folder and the bus open on it, closed (as a dead process's would be) before
    /// a restart opens the file again.
    Embedded(tempfile::TempDir, EmbeddedBus),
    JetStream(NatsServer),
}

impl Harness {
    pub(crate) async fn new(adapter: Adapter) -> Self {
        match adapter {
            Adapter::Embedded => {
                let folder = tempfile::tempdir().expect("a folder");
                let bus = EmbeddedBus::open(&folder.path().join("bus.db"))
                    .await
                    .expect("opens");
                Self {
                    bus: Arc::new(bus.clone()),
                    backing: Backing::Embedded(folder, bus),
                }
            }
            Adapter::JetStream => {
                let server = NatsServer::start();
                let bus = JetStreamBus::connect(&server.url(), "CONFORMANCE")
                    .await
                    .expect("connects");
                Self {
                    bus: Arc::new(bus),
                    backing: Backing::JetStream(server),
                }
            }
        }
    }

    /// Stops the bus as a crash would and brings it back: the embedded file is closed
    /// (which a crash does too, releasing its lock) and opened by a new bus; the NATS server is killed and restarted, and the same
    /// client must reconnect by itself.
    pub(crate) async fn restart(&mut self) {
        match &mut self.backing {
            Backing::Embedded(folder, bus) => {
                bus.close().await;
                *bus = EmbeddedBus::open(&folder.path().join("bus.db"))
                    .await
                    .expect("reopens");
                self.bus = Arc::new(bus.clone());
            }
            Backing::JetStream(server) => server.restart(),
        }
    }

    pub(crate) async fn subscribe(&self, spec: &SubscriptionSpec) -> Box<dyn Subscription> {
        self.bus.subscribe(spec).await.expect("subscribes")
    }

    pub(crate) async fn publish(&self, envelope: &Envelope) {
        // Right after a broker restart the client may still be reconnecting.
        let deadline = tokio::time::Instant::now() + RECOVERY;
        loop {
            match self.bus.publish(envelope).await {
                Ok(()) => return,
                Err(error) if tokio::time::Instant::now() < deadline => {
                    tracing::debug!("publish failed, retrying: {error:#}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(error) => panic!("publish failed: {error:#}"),
            }
        }
    }
}

/// A message of type `kind` carrying `n`.
pub(crate) fn envelope(kind: &str, n: u64) -> Envelope {
    Envelope {
        id: uuid::Uuid::now_v7().to_string(),
        kind: kind.to_owned(),
        source: "conformance".to_owned(),
        occurred_at_ms: 0,
        correlation_id: "test".to_owned(),
        causation_id: None,
        traceparent: None,
        payload: serde_json::json!({ "n": n }),
    }
}

/// The number a message carries.
pub(crate) fn n(delivery: &Delivery) -> u64 {
    delivery.envelope.payload["n"].as_u64().expect("a number")
}

/// A subscription spec with a short ack wait.
pub(crate) fn spec(name: &str, filter: &str, max_attempts: u32) -> SubscriptionSpec {
    SubscriptionSpec {
        name: name.to_owned(),
        filter: filter.to_owned(),
        ack_wait: Duration::from_secs(2),
        max_attempts,
    }
}

/// The next delivery, which must come.
pub(crate) async fn next(subscription: &mut Box<dyn Subscription>) -> Delivery {
    subscription
        .next(PATIENCE)
        .await
        .expect("the bus answers")
        .expect("a delivery within the patience")
}

/// Receives and acknowledges until nothing comes for a while; returns the numbers.
pub(crate) async fn drain(subscription: &mut Box<dyn Subscription>) -> Vec<u64> {
    let mut seen = Vec::new();
    while let Some(delivery) = subscription.next(QUIET).await.expect("the bus answers") {
        seen.push(n(&delivery));
        delivery.ack().await.expect("acknowledged");
    }
    seen.sort_unstable();
    seen
}

/// Runs each scenario, an `async fn(Adapter)`, once per adapter.
macro_rules! on_both_buses {
    ($($scenario:ident),+ $(,)?) => {
        mod embedded {
            $(
                #[tokio::test]
                async fn $scenario() {
                    super::$scenario($crate::harness::Adapter::Embedded).await;
                }
            )+
        }
        mod jetstream {
            $(
                #[tokio::test]
                async fn $scenario() {
                    super::$scenario($crate::harness::Adapter::JetStream).await;
                }
            )+
        }
    };
}
pub(crate) use on_both_buses;
