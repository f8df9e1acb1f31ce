//! Faults injected in front of the card processor, each switched by a feature flag, so
//! that a running shop can be made to suffer a processor outage, a slow processor or an
//! issuer that declines everything, and be watched while it copes.
//!
//! | flag | type | effect |
//! |---|---|---|
//! | `payments-processor-failure-rate` | number, 0 to 1 | that share of processor calls fails transiently (no answer): payments retries them with the same idempotency key |
//! | `payments-processor-delay-ms` | number | every processor call waits that long first |
//! | `payments-decline-all` | boolean | every authorization is declined: orders are cancelled and their stock released |
//!
//! Flags are evaluated with the order's id as the targeting key, so a percentage rollout
//! of a fault hits the same orders on every retry.

use std::sync::Arc;
use std::time::Duration;

use contracts::Money;
use futures_util::future::BoxFuture;
use platform::flags::{EvaluationContext, Flags};

use super::{Authorization, Capture, CardProcessor, CardRef, DeclineCode, ProcessorError, Refund};
use crate::cards::Card;

/// The share of processor calls that fail transiently.
pub const FAILURE_RATE: &str = "payments-processor-failure-rate";
/// How long every processor call waits first, in milliseconds.
pub const DELAY_MS: &str = "payments-processor-delay-ms";
/// Whether every authorization is declined.
pub const DECLINE_ALL: &str = "payments-decline-all";

/// The longest delay the flag can impose, so a typo cannot park a consumer for hours.
const MAX_DELAY: Duration = Duration::from_secs(60);

/// A processor with the faults its flags switch on.
pub struct Faulty {
    inner: Arc<dyn CardProcessor>,
    flags: Flags,
}

impl Faulty {
    /// `inner`, failing as `flags` say.
    pub fn new(inner: Arc<dyn CardProcessor>, flags: Flags) -> Self {
        Self { inner, flags }
    }

    /// The delay and the transient failure every call may meet, for the call keyed by
    /// `key` (its idempotency key; every tokenization shares the key `tokenize`).
    async fn interfere(&self, operation: &'static str, key: &str) -> Result<(), ProcessorError> {
        let context = EvaluationContext::new()
            .targeting_key(key)
            .with("operation", operation);
        let delay = self.flags.delay(DELAY_MS, &context, MAX_DELAY);
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let rate = self.flags.number(FAILURE_RATE, &context, 0.0);
        if rate > 0.0 && fastrand::f64() < rate {
            metrics::counter!("payments_injected_faults_total", "fault" => FAILURE_RATE, "operation" => operation)
                .increment(1);
            return Err(ProcessorError::Transient(format!(
                "injected: the flag {FAILURE_RATE} fails {:.0}% of processor calls",
                rate * 100.0
            )));
        }
        Ok(())
    }
}

impl CardProcessor for Faulty {
    fn tokenize<'a>(&'a self, card: &'a Card) -> BoxFuture<'a, Result<CardRef, ProcessorError>> {
        Box::pin(async move {
            self.interfere("tokenize", "tokenize").await?;
            self.inner.tokenize(card).await
        })
    }

    fn authorize<'a>(
        &'a self,
        idempotency_key: &'a str,
        card: &'a CardRef,
        amount: Money,
    ) -> BoxFuture<'a, Result<Authorization, ProcessorError>> {
        Box::pin(async move {
            self.interfere("authorize", idempotency_key).await?;
            let context = EvaluationContext::new().targeting_key(idempotency_key);
            if self.flags.boolean(DECLINE_ALL, &context, false) {
                metrics::counter!("payments_injected_faults_total", "fault" => DECLINE_ALL, "operation" => "authorize")
                    .increment(1);
                return Err(ProcessorError::Declined {
                    code: DeclineCode::CardDeclined,
                });
            }
            self.inner.authorize(idempotency_key, card, amount).await
        })
    }

    fn capture<'a>(
        &'a self,
        idempotency_key: &'a str,
        authorization: &'a str,
        amount: Money,
    ) -> BoxFuture<'a, Result<Capture, ProcessorError>> {
        Box::pin(async move {
            self.interfere("capture", idempotency_key).await?;
            self.inner
                .capture(idempotency_key, authorization, amount)
                .await
        })
    }

    fn void<'a>(
        &'a self,
        idempotency_key: &'a str,
        authorization: &'a str,
    ) -> BoxFuture<'a, Result<(), ProcessorError>> {
        Box::pin(async move {
            self.interfere("void", idempotency_key).await?;
            self.inner.void(idempotency_key, authorization).await
        })
    }

    fn refund<'a>(
        &'a self,
        idempotency_key: &'a str,
        capture: &'a str,
        amount: Money,
    ) -> BoxFuture<'a, Result<Refund, ProcessorError>> {
        Box::pin(async move {
            self.interfere("refund", idempotency_key).await?;
            self.inner.refund(idempotency_key, capture, amount).await
        })
    }
}
