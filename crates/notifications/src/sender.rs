//! The sender: hands pending emails to the mailer when they are due, and reschedules
//! those the mail system could not take.
//!
//! [`Sender::send_due`] is one round, the step the worker repeats every `poll_ms` (and
//! what tests call instead of waiting). A round claims one due email at a time, so a
//! claim lasts only as long as its own hand-over and replicas on PostgreSQL share the
//! work without ever sending one email together. An email whose customer's address is
//! not known yet is not due: it waits, without an attempt counted, for the registration
//! event. A transient failure reschedules the email with exponential backoff and ends
//! the round, so a relay that is down is not hammered with the rest of the batch; a
//! permanent one marks the email failed.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use platform::clock::now_ms;
use platform::db::Database;
use platform::shutdown::Shutdown;

use crate::config::{Config, MailerConfig, RetryConfig};
use crate::domain::Status;
use crate::mailer::{self, MailError, Mailer};
use crate::store;

/// How long a claim keeps other senders off an email beyond the longest a hand-over
/// may take. A sender that died mid-send leaves its claim behind; another (or itself,
/// restarted) takes the email over once the claim ran out.
const CLAIM_MARGIN: Duration = Duration::from_secs(2);

/// How long writing one email into the mailbox folder may take, at most.
const MAILBOX_HAND_OVER: Duration = Duration::from_secs(3);

/// The longest error text kept with a notification, in characters.
const ERROR_MAX_CHARS: usize = 1000;

/// How the sender works.
#[derive(Clone, Debug)]
pub struct SenderSettings {
    /// The `From` of every email.
    pub from: lettre::message::Mailbox,
    /// How failed sends are retried.
    pub retry: RetryConfig,
    /// The most emails one round sends.
    pub batch: u32,
    /// The pause between rounds.
    pub poll: Duration,
    /// How long a claim on an email lasts: the mailer's longest hand-over plus a
    /// margin.
    pub claim_for: Duration,
}

impl SenderSettings {
    /// The settings `config` describes; refuses a `from` that is not a mailbox and
    /// settings that would never send.
    pub fn from_config(config: &Config) -> anyhow::Result<Self> {
        let from = config
            .from
            .parse()
            .with_context(|| format!("notifications.from {:?} is not a mailbox", config.from))?;
        anyhow::ensure!(
            config.send_batch >= 1,
            "notifications.send_batch must be at least 1"
        );
        anyhow::ensure!(
            config.poll_ms >= 1,
            "notifications.poll_ms must be at least 1"
        );
        anyhow::ensure!(
            config.retry.first_retry_ms >= 1
                && config.retry.max_retry_ms >= config.retry.first_retry_ms,
            "notifications.retry needs 1 <= first_retry_ms <= max_retry_ms"
        );
        Ok(Self {
            from,
            retry: config.retry,
            batch: config.send_batch,
            poll: Duration::from_millis(config.poll_ms),
            claim_for: CLAIM_MARGIN
                + match &config.mailer {
                    MailerConfig::Mailbox { .. } => MAILBOX_HAND_OVER,
                    MailerConfig::Smtp { timeout_ms, .. } => Duration::from_millis(*timeout_ms),
                },
        })
    }
}

/// Sends due emails through a mailer.
#[derive(Clone)]
pub struct Sender {
    db: Database,
    mailer: Arc<dyn Mailer>,
    settings: SenderSettings,
}

impl Sender {
    /// A sender of the emails in `db` through `mailer`.
    pub fn new(db: Database, mailer: Arc<dyn Mailer>, settings: SenderSettings) -> Self {
        Self {
            db,
            mailer,
            settings,
        }
    }

    /// One round at time `now` (Unix ms): sends up to a batch of emails due by then.
    /// Returns how many were sent.
    pub async fn send_due(&self, now: i64) -> anyhow::Result<usize> {
        let claim_ms = i64::try_from(self.settings.claim_for.as_millis()).unwrap_or(i64::MAX);
        let mut sent = 0;
        for _ in 0..self.settings.batch {
            let Some(claimed) =
                // The claim runs from when it is taken, not from when the round began:
                // a slow round must not hand out claims that have already run out.
                store::claim_next(&self.db, now, now.max(now_ms()).saturating_add(claim_ms)).await?
            else {
                break;
            };
            let attempts = claimed.attempts.saturating_add(1);
            let outcome = match mailer::compose(&self.settings.from, &claimed) {
                Ok(letter) => self.mailer.deliver(&letter).await,
                Err(error) => Err(error),
            };
            match outcome {
                Ok(()) => {
                    store::mark_sent(self.db.writer(), &claimed.id, &claimed.email, now_ms())
                        .await?;
                    metrics::counter!("notifications_sent_total", "kind" => claimed.kind.as_str())
                        .increment(1);
                    tracing::info!(notification = %claimed.id, kind = %claimed.kind, "sent an email");
                    sent += 1;
                }
                Err(MailError::Permanent(error)) => {
                    metrics::counter!("notifications_failed_total").increment(1);
                    let error = format!("{error:#}");
                    tracing::warn!(notification = %claimed.id, kind = %claimed.kind, "the email was refused for good: {error}");
                    store::mark_failed(
                        self.db.writer(),
                        &claimed.id,
                        attempts,
                        &claimed.email,
                        &truncate(&error),
                    )
                    .await?;
                }
                Err(MailError::Transient(error)) => {
                    metrics::counter!("notifications_failed_total").increment(1);
                    let error = format!("{error:#}");
                    let retry_at = now.saturating_add(self.settings.retry.delay_ms(attempts));
                    tracing::warn!(
                        notification = %claimed.id,
                        attempts,
                        retry_at,
                        "sending an email failed; it will be tried again: {error}"
                    );
                    store::reschedule(
                        self.db.writer(),
                        &claimed.id,
                        attempts,
                        retry_at,
                        &truncate(&error),
                    )
                    .await?;
                    break;
                }
            }
        }
        self.record_pending().await;
        Ok(sent)
    }

    /// Sends until `shutdown`, a round every `poll` (straight on while rounds are full).
    /// The first round comes after one pause, once the consumers have had their start.
    pub async fn run(self, shutdown: Shutdown) {
        let mut pause = self.settings.poll;
        loop {
            tokio::select! {
                () = shutdown.wait() => return,
                () = tokio::time::sleep(pause) => {}
            }
            pause = match self.send_due(now_ms()).await {
                Ok(sent) if sent >= self.settings.batch as usize => Duration::ZERO,
                Ok(_) => self.settings.poll,
                Err(error) => {
                    tracing::warn!("sending emails failed: {error:#}");
                    self.settings.poll.max(Duration::from_secs(1))
                }
            };
        }
    }

    async fn record_pending(&self) {
        match store::count_by_status(self.db.pool(), Status::Pending).await {
            Ok(pending) => metrics::gauge!("notifications_pending").set(pending as f64),
            Err(error) => tracing::debug!("counting pending emails failed: {error:#}"),
        }
    }
}

fn truncate(text: &str) -> String {
    text.chars().take(ERROR_MAX_CHARS).collect()
}
