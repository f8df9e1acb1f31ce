//! The bus over NATS JetStream, for distributed mode.
//!
//! **Streams and subjects.** One stream, named by the caller (`BAZAAR`), holds every
//! message under `<prefix>.<type>`, where the prefix is the stream's name in lower case
//! (`bazaar.catalog.product_created.v1`); a second stream, `<stream>_DLQ`, holds the dead
//! letters of every subscription under `<prefix>-dlq.<consumer>`. Deriving the prefix from
//! the stream's name lets several buses (one per test) share one server. Both streams are
//! kept on disk with no limits: a message leaves the main stream only when an operator
//! purges it, so a subscription created later can still read the whole history.
//!
//! **Publishing and deduplication.** The body is the envelope as JSON and the
//! `Nats-Msg-Id` header is the envelope's id, so the stream drops a message id it stored
//! within its duplicate window (two minutes): an outbox relay that publishes again after a
//! crash or a timeout does not store the message twice. A publish returns once the stream
//! has acknowledged the write; a duplicate acknowledgement is a success too.
//!
//! **Subscriptions.** A subscription is a durable pull consumer named after it, with `_`
//! for the characters NATS refuses in names (`search.catalog-events` is consumer
//! `search_catalog-events`), filtered on `<prefix>.<filter>`,
//! acknowledged message by message. The server's ack wait is the subscription's
//! `ack_wait` but at most [`MAX_SERVER_ACK_WAIT`], and while a consumer holds a
//! delivery the adapter tells the server it is still working on it (`+WPI`) every
//! quarter of that: a slow handler keeps its message, and a consumer that died (its
//! process killed) lets it go within seconds, not after the subscription's ack wait.
//! Every
//! [`Subscription`] opened with one name pulls from the same consumer, so they compete.
//! The server counts deliveries; the adapter, not the server, stops them: a message
//! delivered for the `max_attempts + 1`-th time, whether its handlers refused it or let
//! it time out, is not handed out but moved to the dead letters and terminated. A body
//! that is not an envelope at all goes there on its first delivery. Opening a
//! subscription again with another filter or `ack_wait` updates the consumer.
//!
//! A [`Subscription::next`] dropped while it waits may leave its pull request on the
//! server, which can hand a message to the abandoned request: that message comes back
//! after `ack_wait`, one attempt later. Prefer letting `next` time out to cancelling it.
//!
//! **Dead letters.** A dead letter keeps the envelope as its body, its attempts (the
//! deliveries handed to consumers, so 0 for a body that was not an envelope, which is
//! kept wrapped in one) in the `Bazaar-Attempts` header, and gets the `Nats-Msg-Id` `<consumer>:<message id>:<stream
//! sequence>`, so that a crash between storing the dead letter and terminating the
//! original, which delivers the original once more, cannot store it twice. Replaying one
//! publishes its envelope again under its type with a fresh `Nats-Msg-Id` (the original
//! one would fall in the duplicate window) and deletes the dead letter.
//!
//! **Crashes.** A publish that timed out may still be stored once the connection comes
//! back (the client sends what it buffered), which the duplicate window absorbs when the
//! outbox publishes it again. A broker killed outright loses the last moments of its
//! consumers' state: acknowledged messages may come again, and a message's attempts may
//! count from 1 again; both are within at-least-once delivery.
//!
//! **Ordering: none.** Redeliveries, delayed refusals and competing consumers reorder
//! messages, as the bus's contract allows.

use std::future::{Future, IntoFuture as _};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, anyhow, bail};
use async_nats::HeaderMap;
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, PullConsumer, pull};
use async_nats::jetstream::publish::PublishAck;
use async_nats::jetstream::stream::{
    self, DiscardPolicy, RawMessageErrorKind, RetentionPolicy, StorageType,
};
use async_nats::jetstream::{self, AckKind};
use contracts::messaging::Envelope;
use futures_util::StreamExt as _;
use futures_util::future::BoxFuture;

use super::{Bus, DeadLetter, Delivery, PublishFailure, Settle, Subscription, SubscriptionSpec};

/// How long a stream keeps a message: a week, far beyond any redelivery (consumers
/// handle a message within seconds, and the outbox republishes within seconds), so that
/// a consumer deployed after its producer still finds a week of messages. The stream's
/// size bound ([`STREAM_MAX_BYTES`]) usually comes first.
pub const STREAM_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);

/// The most a stream holds on disk, 1 GiB (a checkout's messages take about 20 KB, so
/// some 50,000 checkouts). At the bound the oldest messages go first: long handled
/// unless the consumers are that far behind, which the backlog alerts catch first.
///
/// The server reserves the bound when the stream is created and refuses a stream its
/// store cannot hold, so the bound is modest: a shop that needs more raises it on the
/// server (`nats stream edit`), and the bus keeps an existing stream's limits.
pub const STREAM_MAX_BYTES: i64 = 1024 * 1024 * 1024;

/// The bus over a NATS JetStream server.
#[derive(Clone, Debug)]
pub struct JetStreamBus {
    js: jetstream::Context,
    /// The stream holding the messages, e.g. `BAZAAR`.
    stream: String,
    /// The stream holding the dead letters, `<stream>_DLQ`.
    dlq_stream: String,
    /// The first subject token of messages, the stream's name in lower case.
    prefix: String,
}

impl JetStreamBus {
    /// Connects to the NATS server at `url` and creates, unless they exist, the stream
    /// `stream` (letters, digits, `_` and `-`) and its dead-letter stream `<stream>_DLQ`.
    ///
    /// The connection is retried for ever once established: operations made while the
    /// server is away fail after a few seconds instead of waiting for it.
    pub async fn connect(url: &str, stream: &str) -> anyhow::Result<Self> {
        if stream.is_empty()
            || !stream
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            bail!("stream name {stream:?} must be letters, digits, '_' and '-'");
        }
        let client = async_nats::ConnectOptions::new()
            .name("bazaar")
            // Reconnect for ever: a broker restart must not leave a service without a bus.
            .max_reconnects(None)
            .connection_timeout(NATS_TIMEOUT)
            .request_timeout(Some(NATS_TIMEOUT))
            .connect(url)
            .await
            .with_context(|| format!("connecting to NATS at {url}"))?;
        // The context's timeout bounds API requests, publish acknowledgements and
        // confirmed acks, so nothing waits on a server that went away.
        let js = jetstream::ContextBuilder::new()
            .timeout(NATS_TIMEOUT)
            .build(client);
        let bus = Self {
            js,
            stream: stream.to_owned(),
            dlq_stream: format!("{stream}_DLQ"),
            prefix: stream.to_ascii_lowercase(),
        };
        // Boxed: creating a stream is a large future, and every service's start awaits
        // this one.
        Box::pin(bus.ensure_stream(&bus.stream, format!("{}.>", bus.prefix), DUPLICATE_WINDOW))
            .await?;
        Box::pin(bus.ensure_stream(
            &bus.dlq_stream,
            format!("{}.>", bus.dlq_prefix()),
            DLQ_DUPLICATE_WINDOW,
        ))
        .await?;
        Ok(bus)
    }
}

/// How long one exchange with the server may take before it counts as failed.
const NATS_TIMEOUT: Duration = Duration::from_secs(5);

/// The longest the server waits to hear from a consumer about a delivery before it
/// delivers it again: the time a crashed consumer's messages wait.
pub const MAX_SERVER_ACK_WAIT: Duration = Duration::from_secs(4);

/// The longest a single pull request waits for a message.
const MAX_PULL: Duration = Duration::from_secs(30);

/// How long after a pull request's expiry its end may arrive before the server counts as
/// gone.
const FETCH_SLACK: Duration = Duration::from_secs(2);

/// How long the message stream remembers message ids to drop duplicates: longer than an
/// outbox relay takes to publish again after a timeout.
const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

/// How long the dead-letter stream remembers ids: a message dead-lettered just before a
/// crash is delivered again after `ack_wait`, which may be longer than two minutes, and
/// must not be dead-lettered twice. Dead letters are few, so remembering them is cheap.
const DLQ_DUPLICATE_WINDOW: Duration = Duration::from_secs(3600);

/// The header of a dead letter holding its attempts.
const ATTEMPTS_HEADER: &str = "Bazaar-Attempts";

/// The header of a dead letter moved because its body was not an envelope, holding the
/// decoding error.
const MALFORMED_HEADER: &str = "Bazaar-Malformed";

/// The `source` of the envelope wrapped around a body that was not one.
const MALFORMED_SOURCE: &str = "bazaar-bus";

/// The durable consumer name of subscription `name`: `.`, `*`, `>`, `/`, `\`, whitespace
/// and control characters, which NATS refuses in names (or, for the path separators, in
/// its file store), become `_`, so `search.catalog-events` is `search_catalog-events`.
///
/// Two names that differ only in those characters share a consumer; subscription names
/// are `<service>.<purpose>`, so they don't.
pub(crate) fn consumer_name(name: &str) -> anyhow::Result<String> {
    if name.is_empty() {
        bail!("a subscription needs a name");
    }
    Ok(name
        .chars()
        .map(|c| match c {
            '.' | '*' | '>' | '/' | '\\' => '_',
            c if c.is_whitespace() || c.is_control() => '_',
            c => c,
        })
        .collect())
}

impl Bus for JetStreamBus {
    fn publish<'a>(&'a self, envelope: &'a Envelope) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            let (subject, headers, body) = self.message(envelope)?;
            // A duplicate is acknowledged like a new message: either way it is stored.
            self.publish_durably(subject, headers, body)
                .await
                .with_context(|| format!("publishing {} message {}", envelope.kind, envelope.id))?;
            Ok(())
        })
    }

    /// Sends every publish back to back, then awaits their acknowledgements in order:
    /// one round trip for the batch instead of one per message.
    fn publish_all<'a>(
        &'a self,
        envelopes: &'a [Envelope],
    ) -> BoxFuture<'a, Result<(), PublishFailure>> {
        Box::pin(async move {
            let mut acks = Vec::with_capacity(envelopes.len());
            let mut failure = None;
            for envelope in envelopes {
                let sent = async {
                    let (subject, headers, body) = self.message(envelope)?;
                    bounded(self.js.publish_with_headers(subject, headers, body.into()))
                        .await
                        .context("sending")
                };
                match sent.await {
                    Ok(ack) => acks.push((envelope, ack)),
                    Err(error) => {
                        failure = Some(error.context(format!(
                            "publishing {} message {}",
                            envelope.kind, envelope.id
                        )));
                        break;
                    }
                }
            }
            // Every one sent before a failure to send is acknowledged below, or the
            // failure is an earlier one's.
            let sent = acks.len();
            for (published, (envelope, ack)) in acks.into_iter().enumerate() {
                bounded(ack.into_future())
                    .await
                    .context("waiting for the stream's acknowledgement")
                    .with_context(|| {
                        format!("publishing {} message {}", envelope.kind, envelope.id)
                    })
                    .map_err(|error| PublishFailure { published, error })?;
            }
            match failure {
                None => Ok(()),
                Some(error) => Err(PublishFailure {
                    published: sent,
                    error,
                }),
            }
        })
    }

    fn subscribe<'a>(
        &'a self,
        spec: &'a SubscriptionSpec,
    ) -> BoxFuture<'a, anyhow::Result<Box<dyn Subscription>>> {
        Box::pin(async move {
            let durable = consumer_name(&spec.name)?;
            check_filter(&spec.filter)?;
            let config = pull::Config {
                durable_name: Some(durable.clone()),
                filter_subject: format!("{}.{}", self.prefix, spec.filter),
                deliver_policy: DeliverPolicy::All,
                ack_policy: AckPolicy::Explicit,
                ack_wait: server_ack_wait(spec),
                // Unlimited: the adapter dead-letters a message on its `max_attempts + 1`-th
                // delivery. A server-side limit would strand the message, neither
                // delivered nor dead-lettered, if that last delivery's move to the dead
                // letters failed; without one, the move is tried again after `ack_wait`.
                max_deliver: -1,
                // Unlimited too: refused messages waiting for their backoff count as
                // pending, and the default limit (1000) would then stop new deliveries,
                // letting failing messages hold back the ones behind them.
                max_ack_pending: -1,
                ..Default::default()
            };
            let stream = self.stream_handle(&self.stream).await?;
            // Creating a consumer with the configuration it already has changes nothing, so
            // this is get-or-create. With other settings it updates the consumer (nats-server
            // 2.9 and 2.15 both accept a new filter and `ack_wait`), so that a deployment
            // that changes its subscription gets it rather than keeping the old one silently;
            // during a rolling upgrade the last replica to start wins, as it would anyway.
            let consumer: PullConsumer = bounded(stream.create_consumer(config))
                .await
                .with_context(|| {
                    format!(
                        "opening subscription {} (consumer {durable} on {}) to {}",
                        spec.name, self.stream, spec.filter
                    )
                })?;
            Ok(Box::new(JetStreamSubscription {
                bus: self.clone(),
                consumer,
                spec: spec.clone(),
                durable,
            }) as Box<dyn Subscription>)
        })
    }

    fn pending<'a>(&'a self, name: &'a str) -> BoxFuture<'a, anyhow::Result<u64>> {
        Box::pin(async move {
            let durable = consumer_name(name)?;
            let stream = self.stream_handle(&self.stream).await?;
            let info = bounded(stream.consumer_info(&durable))
                .await
                .with_context(|| format!("reading consumer {durable}"))?;
            // Not yet delivered, plus delivered and not yet acknowledged.
            Ok(info.num_pending + u64::try_from(info.num_ack_pending).unwrap_or(u64::MAX))
        })
    }

    fn dead_letters<'a>(&'a self, name: &'a str) -> BoxFuture<'a, anyhow::Result<Vec<DeadLetter>>> {
        Box::pin(async move {
            let dead = self
                .read_dead_letters(name)
                .await
                .with_context(|| format!("listing the dead letters of {name}"))?;
            Ok(dead.into_iter().map(|(_, letter)| letter).collect())
        })
    }

    fn replay<'a>(
        &'a self,
        name: &'a str,
        message_id: &'a str,
    ) -> BoxFuture<'a, anyhow::Result<bool>> {
        Box::pin(async move {
            let dead = self
                .read_dead_letters(name)
                .await
                .with_context(|| format!("looking for dead letter {message_id} of {name}"))?;
            let Some((sequence, letter)) = dead
                .into_iter()
                .find(|(_, letter)| letter.envelope.id == message_id)
            else {
                return Ok(false);
            };
            let envelope = letter.envelope;
            // JetStream cannot deliver an acknowledged message to one consumer again, so
            // the envelope is published anew under its type and reaches every
            // subscription whose filter matches, not only `name`. That is harmless: it
            // keeps its id, and the other subscribers' inboxes drop a message they
            // handled. The new `Nats-Msg-Id` keeps the duplicate window from dropping it.
            let subject = self.subject(&envelope.kind)?;
            let body = serde_json::to_vec(&envelope).context("encoding the envelope")?;
            let mut headers = HeaderMap::new();
            headers.insert(
                async_nats::header::NATS_MESSAGE_ID,
                format!("{}:replay:{}", envelope.id, uuid::Uuid::now_v7()),
            );
            self.publish_durably(subject, headers, body)
                .await
                .with_context(|| format!("replaying dead letter {message_id} of {name}"))?;
            // Should this delete fail, the dead letter stays listed and a second replay
            // delivers it again, which idempotent consumers absorb.
            let dlq = self.stream_handle(&self.dlq_stream).await?;
            bounded(dlq.delete_message(sequence))
                .await
                .with_context(|| {
                    format!("deleting replayed dead letter {message_id} of {name} ({sequence})")
                })?;
            Ok(true)
        })
    }
}

/// One consumer's handle on a durable pull consumer.
struct JetStreamSubscription {
    bus: JetStreamBus,
    consumer: PullConsumer,
    spec: SubscriptionSpec,
    /// The consumer's name, [`consumer_name`] of the subscription's.
    durable: String,
}

impl Subscription for JetStreamSubscription {
    fn next(&mut self, wait: Duration) -> BoxFuture<'_, anyhow::Result<Option<Delivery>>> {
        Box::pin(async move {
            // `None`: a wait too long to add to the clock, which is as good as for ever.
            let deadline = tokio::time::Instant::now().checked_add(wait);
            loop {
                let remaining = deadline.map_or(Duration::MAX, |deadline| {
                    deadline.saturating_duration_since(tokio::time::Instant::now())
                });
                // Long waits are a series of pull requests of at most `MAX_PULL`: the
                // server takes expiries in nanoseconds, and a request it lost (it
                // restarted) then surfaces as an error within `MAX_PULL` and a little.
                let pull = remaining.min(MAX_PULL);
                let Some(message) = self.fetch_one(pull).await? else {
                    if remaining > pull {
                        continue;
                    }
                    return Ok(None);
                };
                if let Some(delivery) = self.accept(message).await? {
                    return Ok(Some(delivery));
                }
                // A dead letter is not an answer: look again in the time left (once more,
                // without waiting, when none is left).
            }
        })
    }

    /// What is ready, up to `max`, in one pull request the server answers at once; when
    /// nothing is, waits for one as [`Subscription::next`] does.
    fn next_batch(
        &mut self,
        max: usize,
        wait: Duration,
    ) -> BoxFuture<'_, anyhow::Result<Vec<Delivery>>> {
        Box::pin(async move {
            let mut deliveries = Vec::new();
            if max > 1 {
                for message in self.fetch_ready(max).await? {
                    deliveries.extend(self.accept(message).await?);
                }
            }
            if deliveries.is_empty() {
                deliveries.extend(self.next(wait).await?);
            }
            Ok(deliveries)
        })
    }
}

impl JetStreamSubscription {
    /// A fetched message as a delivery, kept alive until settled; or, when it is out of
    /// attempts or does not decode, moved to the dead letters and `None`.
    async fn accept(&self, message: jetstream::Message) -> anyhow::Result<Option<Delivery>> {
        let info = message
            .info()
            .map_err(anyhow::Error::from_boxed)
            .context("reading a delivery's metadata")?;
        let delivered = u32::try_from(info.delivered.max(1)).unwrap_or(u32::MAX);
        let sequence = info.stream_sequence;
        match serde_json::from_slice::<Envelope>(&message.payload) {
            Ok(envelope) if delivered <= self.spec.max_attempts => {
                let settle = Box::new(JetStreamSettle::held(message, &self.spec));
                Ok(Some(Delivery::new(envelope, delivered, settle)))
            }
            Ok(envelope) => {
                self.dead_letter(&message, envelope, delivered - 1, sequence, None)
                    .await?;
                Ok(None)
            }
            Err(error) => {
                let envelope = self.malformed_envelope(&message, sequence, &error);
                self.dead_letter(&message, envelope, delivered - 1, sequence, Some(&error))
                    .await?;
                Ok(None)
            }
        }
    }

    /// Up to `max` messages that are ready now, in one pull request the server answers
    /// at once (with none, when none is).
    async fn fetch_ready(&self, max: usize) -> anyhow::Result<Vec<jetstream::Message>> {
        let fetch = async {
            let mut batch = self
                .consumer
                .fetch()
                .max_messages(max)
                .messages()
                .await
                .context("sending a pull request")?;
            let mut messages = Vec::new();
            while let Some(message) = batch.next().await {
                messages.push(message.map_err(anyhow::Error::from_boxed)?);
            }
            Ok(messages)
        };
        tokio::time::timeout(FETCH_SLACK, fetch)
            .await
            .map_err(|_| anyhow!("no answer from NATS within {FETCH_SLACK:.1?}"))
            .and_then(|result| result)
            .with_context(|| format!("fetching messages for {}", self.spec.name))
    }

    /// One message, waiting up to `wait` for it.
    async fn fetch_one(&self, wait: Duration) -> anyhow::Result<Option<jetstream::Message>> {
        let fetch = async {
            // A pull request the server holds for `wait`; below a millisecond, one it
            // answers at once ("no messages" when there are none).
            let batch = if wait < Duration::from_millis(1) {
                self.consumer.fetch().max_messages(1).messages().await
            } else {
                self.consumer
                    .batch()
                    .max_messages(1)
                    .expires(wait)
                    .messages()
                    .await
            };
            let mut batch = batch.context("sending a pull request")?;
            // The server ends the batch with a timeout status when `wait` is over, which
            // the batch reports as its end.
            match batch.next().await {
                None => Ok(None),
                Some(Ok(message)) => Ok(Some(message)),
                Some(Err(error)) => Err(anyhow::Error::from_boxed(error)),
            }
        };
        // Should the server go away mid-request, its answer never comes: give up a little
        // after it was due, with an error, so that an outage is not mistaken for an idle
        // subscription (the batch itself would end quietly, five seconds later still).
        let limit = wait.saturating_add(FETCH_SLACK);
        tokio::time::timeout(limit, fetch)
            .await
            .map_err(|_| anyhow!("no answer from NATS within {limit:.1?}"))
            .and_then(|result| result)
            .with_context(|| format!("fetching a message for {}", self.spec.name))
    }

    /// Moves `message` to the dead letters of this subscription, then terminates it.
    async fn dead_letter(
        &self,
        message: &jetstream::Message,
        envelope: Envelope,
        attempts: u32,
        sequence: u64,
        malformed: Option<&serde_json::Error>,
    ) -> anyhow::Result<()> {
        tracing::warn!(
            subscription = %self.spec.name,
            message_id = %envelope.id,
            kind = %envelope.kind,
            attempts,
            malformed = malformed.map(tracing::field::display),
            "moving a message to the dead letters"
        );
        metrics::counter!("bus_dead_lettered_total", "subscription" => self.spec.name.clone())
            .increment(1);
        let subject = format!("{}.{}", self.bus.dlq_prefix(), self.durable);
        let body = serde_json::to_vec(&envelope).context("encoding the dead letter")?;
        let mut headers = HeaderMap::new();
        // Unique per delivery of this stream message to this subscription's dead letters:
        // a redelivery after a crash between this publish and the ack below is dropped.
        headers.insert(
            async_nats::header::NATS_MESSAGE_ID,
            format!("{}:{}:{sequence}", self.durable, envelope.id),
        );
        headers.insert(ATTEMPTS_HEADER, attempts.to_string());
        if let Some(error) = malformed {
            headers.insert(
                MALFORMED_HEADER,
                error.to_string().replace(['\r', '\n'], " "),
            );
        }
        self.bus
            .publish_durably(subject, headers, body)
            .await
            .with_context(|| {
                format!("storing dead letter {} of {}", envelope.id, self.spec.name)
            })?;
        // Term rather than Ack: the server then reports the message as terminated
        // (an advisory monitoring can count), not as handled.
        bounded(async {
            message
                .double_ack_with(AckKind::Term)
                .await
                .map_err(anyhow::Error::from_boxed)
        })
        .await
        .with_context(|| {
            format!(
                "terminating dead letter {} of {}",
                envelope.id, self.spec.name
            )
        })
    }

    /// An envelope around a body that is not one, so the dead letters can hold it: it
    /// keeps the body as text under `payload.malformed` (lossily, should it not be UTF-8),
    /// the decoding error under `payload.error`, its subject as type, and the
    /// `Nats-Msg-Id` it was published with as id, or `<stream>:<sequence>` without one.
    /// Replayed, it is delivered as a well-formed envelope whose payload no handler
    /// decodes, so it comes back to the dead letters through the usual refusals.
    fn malformed_envelope(
        &self,
        message: &jetstream::Message,
        sequence: u64,
        error: &serde_json::Error,
    ) -> Envelope {
        let id = message
            .headers
            .as_ref()
            .and_then(|headers| headers.get(async_nats::header::NATS_MESSAGE_ID))
            .map(|id| id.as_str().to_owned())
            .filter(|id| !id.is_empty())
            .unwrap_or_else(|| format!("{}:{sequence}", self.bus.stream));
        let subject = message.subject.as_str();
        let kind = subject
            .strip_prefix(&self.bus.prefix)
            .and_then(|rest| rest.strip_prefix('.'))
            .unwrap_or(subject)
            .to_owned();
        let occurred_at_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |now| i64::try_from(now.as_millis()).unwrap_or(i64::MAX));
        Envelope {
            correlation_id: id.clone(),
            id,
            kind,
            source: MALFORMED_SOURCE.to_owned(),
            occurred_at_ms,
            causation_id: None,
            traceparent: None,
            payload: serde_json::json!({
                "malformed": String::from_utf8_lossy(&message.payload),
                "error": error.to_string(),
            }),
        }
    }
}

/// The ack wait the server is given for `spec`.
fn server_ack_wait(spec: &SubscriptionSpec) -> Duration {
    spec.ack_wait.min(MAX_SERVER_ACK_WAIT)
}

/// Settles one delivery with confirmed acks, and keeps it alive on the server until then.
struct JetStreamSettle {
    message: jetstream::Message,
    /// Tells the server every quarter ack wait that the delivery is still being worked
    /// on; stopped when it is settled or dropped (a dead consumer says nothing more).
    keep_alive: tokio::task::AbortHandle,
}

impl JetStreamSettle {
    /// A delivery of `spec`'s, kept alive from now on.
    fn held(message: jetstream::Message, spec: &SubscriptionSpec) -> Self {
        let every = (server_ack_wait(spec) / 4).max(Duration::from_millis(100));
        let heartbeat = message.clone();
        let keep_alive = tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                // A lost one costs nothing: the next comes a quarter ack wait later.
                let _ = heartbeat.ack_with(AckKind::Progress).await;
            }
        })
        .abort_handle();
        Self {
            message,
            keep_alive,
        }
    }
}

impl Drop for JetStreamSettle {
    fn drop(&mut self) {
        self.keep_alive.abort();
    }
}

impl Settle for JetStreamSettle {
    fn ack(self: Box<Self>) -> BoxFuture<'static, anyhow::Result<()>> {
        // A confirmed ack: `Ok` means the server recorded it, so the caller may treat the
        // message as done; a plain ack could be lost with the connection.
        self.keep_alive.abort();
        Box::pin(async move {
            bounded(async {
                self.message
                    .double_ack()
                    .await
                    .map_err(anyhow::Error::from_boxed)
            })
            .await
            .context("acknowledging a message")
        })
    }

    fn nack(self: Box<Self>, delay: Duration) -> BoxFuture<'static, anyhow::Result<()>> {
        self.keep_alive.abort();
        Box::pin(async move {
            bounded(async {
                self.message
                    .double_ack_with(AckKind::Nak(Some(delay)))
                    .await
                    .map_err(anyhow::Error::from_boxed)
            })
            .await
            .context("refusing a message")
        })
    }
}

impl JetStreamBus {
    /// The first subject token of dead letters.
    fn dlq_prefix(&self) -> String {
        format!("{}-dlq", self.prefix)
    }

    /// The subject of messages of type `kind`.
    fn subject(&self, kind: &str) -> anyhow::Result<String> {
        let valid = kind.split('.').all(|token| {
            !token.is_empty()
                && !token
                    .chars()
                    .any(|c| c == '*' || c == '>' || c.is_whitespace() || c.is_control())
        });
        if !valid {
            bail!(
                "message type {kind:?} is not a subject: dot-separated names without spaces or wildcards"
            );
        }
        Ok(format!("{}.{kind}", self.prefix))
    }

    /// A handle on stream `name`, without asking the server for its state.
    async fn stream_handle(&self, name: &str) -> anyhow::Result<stream::Stream<()>> {
        self.js
            .get_stream_no_info(name)
            .await
            .with_context(|| format!("opening stream {name}"))
    }

    /// Creates stream `name` over `subjects` unless it exists, bounded by
    /// [`STREAM_MAX_AGE`] and [`STREAM_MAX_BYTES`]. An existing stream is used
    /// as it is, so an operator's changes to it (limits, replicas) stay.
    async fn ensure_stream(
        &self,
        name: &str,
        subjects: String,
        duplicate_window: Duration,
    ) -> anyhow::Result<()> {
        let config = stream::Config {
            name: name.to_owned(),
            subjects: vec![subjects],
            storage: StorageType::File,
            retention: RetentionPolicy::Limits,
            discard: DiscardPolicy::Old,
            duplicate_window,
            max_age: STREAM_MAX_AGE,
            max_bytes: STREAM_MAX_BYTES,
            ..Default::default()
        };
        // Replicas starting together race to create the stream, and the server may
        // refuse the one that lost ("subjects overlap") while the winner's is still
        // being made: look again, briefly, before calling it a failure.
        let mut attempt = 0;
        loop {
            match bounded(self.js.get_or_create_stream(config.clone())).await {
                Ok(_) => return Ok(()),
                Err(error) if attempt < 5 => {
                    attempt += 1;
                    tracing::debug!(
                        stream = name,
                        "creating the stream failed, again: {error:#}"
                    );
                    tokio::time::sleep(Duration::from_millis(100) * attempt).await;
                }
                Err(error) => return Err(error.context(format!("creating stream {name}"))),
            }
        }
    }

    /// The subject, headers and body `envelope` is published with: its type as subject,
    /// its id as `Nats-Msg-Id`, which the stream deduplicates by.
    fn message(&self, envelope: &Envelope) -> anyhow::Result<(String, HeaderMap, Vec<u8>)> {
        let subject = self.subject(&envelope.kind)?;
        if envelope.id.is_empty() || envelope.id.chars().any(char::is_control) {
            // The id is a header value: a line break would corrupt the message.
            bail!(
                "message id {:?} is empty or has control characters",
                envelope.id
            );
        }
        let body = serde_json::to_vec(envelope).context("encoding the envelope")?;
        let mut headers = HeaderMap::new();
        headers.insert(async_nats::header::NATS_MESSAGE_ID, envelope.id.as_str());
        Ok((subject, headers, body))
    }

    /// Publishes and waits for the stream's acknowledgement.
    async fn publish_durably(
        &self,
        subject: String,
        headers: HeaderMap,
        body: Vec<u8>,
    ) -> anyhow::Result<PublishAck> {
        bounded(async {
            let ack = self
                .js
                .publish_with_headers(subject, headers, body.into())
                .await
                .context("sending")?;
            ack.await
                .context("waiting for the stream's acknowledgement")
        })
        .await
    }

    /// Every dead letter of subscription `name` with its sequence in the dead-letter
    /// stream, oldest first.
    async fn read_dead_letters(&self, name: &str) -> anyhow::Result<Vec<(u64, DeadLetter)>> {
        let subject = format!("{}.{}", self.dlq_prefix(), consumer_name(name)?);
        let dlq = self.stream_handle(&self.dlq_stream).await?;
        // Reading stored messages by subject and sequence needs no consumer, so listing
        // leaves nothing behind on the server; a dead-letter list is short enough for a
        // request per message.
        let mut dead = Vec::new();
        let mut next = 1;
        loop {
            let message = match tokio::time::timeout(
                2 * NATS_TIMEOUT,
                dlq.get_first_raw_message_by_subject(&subject, next),
            )
            .await
            {
                Err(_) => bail!("no answer from NATS within {:?}", 2 * NATS_TIMEOUT),
                Ok(Err(error)) if matches!(error.kind(), RawMessageErrorKind::NoMessageFound) => {
                    break;
                }
                Ok(result) => result.with_context(|| format!("reading {subject} from {next}"))?,
            };
            next = message.sequence + 1;
            let letter = decode_dead_letter(message.sequence, &message.headers, &message.payload)?;
            dead.push((message.sequence, letter));
        }
        Ok(dead)
    }
}

/// The dead letter stored at `sequence` with `headers` and `body`.
fn decode_dead_letter(
    sequence: u64,
    headers: &HeaderMap,
    body: &[u8],
) -> anyhow::Result<DeadLetter> {
    let envelope =
        serde_json::from_slice(body).with_context(|| format!("decoding dead letter {sequence}"))?;
    let attempts = headers
        .get(ATTEMPTS_HEADER)
        .map(|value| value.as_str().parse::<u32>())
        .transpose()
        .with_context(|| format!("reading the attempts of dead letter {sequence}"))?
        .unwrap_or(0);
    Ok(DeadLetter { envelope, attempts })
}

/// Checks that `filter` is a NATS subject filter: dot-separated tokens, `*` for one whole
/// token, `>` for the rest.
fn check_filter(filter: &str) -> anyhow::Result<()> {
    let tokens: Vec<&str> = filter.split('.').collect();
    let valid = tokens
        .iter()
        .enumerate()
        .all(|(index, token)| match *token {
            "*" => true,
            ">" => index + 1 == tokens.len(),
            token => {
                !token.is_empty()
                    && !token
                        .chars()
                        .any(|c| c == '*' || c == '>' || c.is_whitespace() || c.is_control())
            }
        });
    if !valid {
        bail!("subscription filter {filter:?} is not a NATS subject filter");
    }
    Ok(())
}

/// Waits for `operation` at most twice [`NATS_TIMEOUT`]: the client's own limits should
/// answer first, with a more precise error; this one is the backstop.
async fn bounded<T, E>(operation: impl Future<Output = Result<T, E>>) -> anyhow::Result<T>
where
    E: Into<anyhow::Error>,
{
    match tokio::time::timeout(2 * NATS_TIMEOUT, operation).await {
        Ok(result) => result.map_err(Into::into),
        Err(_) => bail!("no answer from NATS within {:?}", 2 * NATS_TIMEOUT),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consumer_names_replace_what_nats_refuses() {
        assert_eq!(
            consumer_name("search.catalog-events").ok().as_deref(),
            Some("search_catalog-events")
        );
        assert_eq!(consumer_name("a.*.>").ok().as_deref(), Some("a____"));
        assert_eq!(consumer_name("a b\tc\nd").ok().as_deref(), Some("a_b_c_d"));
        assert_eq!(consumer_name("a/b\\c").ok().as_deref(), Some("a_b_c"));
        assert_eq!(
            consumer_name("orders_payments").ok().as_deref(),
            Some("orders_payments")
        );
        assert!(consumer_name("").is_err());
    }

    #[test]
    fn filters_follow_nats_syntax() {
        for good in [
            "catalog.>",
            ">",
            "*.product_created.v1",
            "catalog.product_created.v1",
            "a.*.c",
        ] {
            assert!(check_filter(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "catalog.",
            ".catalog",
            "catalog..x",
            "catalog.>.x",
            "cat*.x",
            "a b",
            "a.>x",
        ] {
            assert!(check_filter(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn dead_letters_decode_envelope_and_attempts() {
        let envelope = Envelope {
            id: "0190-a".into(),
            kind: "catalog.product_created.v1".into(),
            source: "catalog".into(),
            occurred_at_ms: 1,
            correlation_id: "r1".into(),
            causation_id: None,
            traceparent: None,
            payload: serde_json::json!({"product_id": "p1"}),
        };
        let mut headers = HeaderMap::new();
        headers.insert(ATTEMPTS_HEADER, "5");
        let body = serde_json::to_vec(&envelope).unwrap_or_default();
        let letter = decode_dead_letter(7, &headers, &body).ok();
        assert_eq!(
            letter,
            Some(DeadLetter {
                envelope,
                attempts: 5
            })
        );
        assert!(decode_dead_letter(7, &headers, b"not json").is_err());
    }
}
