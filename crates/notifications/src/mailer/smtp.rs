//! SMTP: each email handed to a relay with lettre's asynchronous transport, over a
//! small pool of connections.
//!
//! Replies in the 4xx range (the relay is busy, greylisting, shutting down), network
//! errors and timeouts are transient: the sender tries again later. Replies in the 5xx
//! range refuse the address or the message for good.

use std::time::Duration;

use anyhow::Context as _;
use futures_util::future::BoxFuture;
use lettre::{AsyncSmtpTransport, AsyncTransport as _, Tokio1Executor};

use super::{Letter, MailError, Mailer};

/// Sends emails through an SMTP relay.
#[derive(Clone)]
pub struct Smtp {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    timeout: Duration,
}

impl std::fmt::Debug for Smtp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Smtp")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Smtp {
    /// A relay at `host:port`. With `tls`, the connection is upgraded with STARTTLS and
    /// the relay's certificate checked against the system's roots; without, it stays
    /// plain, which is for a relay on the local host or network only. `timeout` bounds
    /// the whole hand-over of one email.
    pub fn new(host: &str, port: u16, tls: bool, timeout: Duration) -> anyhow::Result<Self> {
        let builder = if tls {
            AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(host)
                .with_context(|| format!("setting up STARTTLS to {host}"))?
        } else {
            AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
        };
        let transport = builder.port(port).timeout(Some(timeout)).build();
        Ok(Self { transport, timeout })
    }
}

impl Mailer for Smtp {
    fn deliver<'a>(&'a self, letter: &'a Letter) -> BoxFuture<'a, Result<(), MailError>> {
        Box::pin(async move {
            let sent =
                tokio::time::timeout(self.timeout, self.transport.send(letter.message.clone()))
                    .await
                    .map_err(|_| {
                        MailError::Transient(anyhow::anyhow!(
                            "the SMTP relay did not take the email within {} ms",
                            self.timeout.as_millis()
                        ))
                    })?;
            match sent {
                Ok(_) => Ok(()),
                // A permanent reply, or a message lettre itself cannot send: retrying
                // will not change the answer.
                Err(error) if error.is_permanent() || error.is_client() => {
                    Err(MailError::Permanent(
                        anyhow::Error::new(error).context("the SMTP relay refused the email"),
                    ))
                }
                Err(error) => Err(MailError::Transient(
                    anyhow::Error::new(error).context("sending through the SMTP relay"),
                )),
            }
        })
    }
}
