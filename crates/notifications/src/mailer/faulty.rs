//! A mail relay that is down on a flag: `notifications-mail-down` (boolean) makes every
//! delivery fail as if the SMTP relay did not answer. Emails wait as `pending`, the
//! sender retries them with backoff, and they go out once the flag is off, each once.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use platform::flags::{EvaluationContext, Flags};

use super::{Letter, MailError, Mailer};

/// Whether the mail relay is down.
pub const MAIL_DOWN: &str = "notifications-mail-down";

/// A mailer with the fault its flag switches on.
pub struct FaultyMailer {
    inner: Arc<dyn Mailer>,
    flags: Flags,
}

impl FaultyMailer {
    /// `inner`, down when `flags` say so.
    pub fn new(inner: Arc<dyn Mailer>, flags: Flags) -> Self {
        Self { inner, flags }
    }
}

impl Mailer for FaultyMailer {
    fn deliver<'a>(&'a self, letter: &'a Letter) -> BoxFuture<'a, Result<(), MailError>> {
        if self
            .flags
            .boolean(MAIL_DOWN, &EvaluationContext::new(), false)
        {
            metrics::counter!("injected_faults_total", "service" => crate::NAME, "fault" => MAIL_DOWN)
                .increment(1);
            return Box::pin(async {
                Err(MailError::Transient(anyhow::anyhow!(
                    "injected: the flag {MAIL_DOWN} takes the mail relay down"
                )))
            });
        }
        self.inner.deliver(letter)
    }
}
