//! How an email leaves: the [`Mailer`] trait and its two adapters, [`Mailbox`] (files in
//! a folder, for one machine) and [`Smtp`] (a relay, for a real deployment), and
//! [`faulty::FaultyMailer`], which fails either on a flag.
//!
//! Every email is composed here, the same way for both: an RFC 5322 message with a
//! `Message-ID` derived from the notification's id and a `Date` from its creation. An
//! email sent again after a crash (sent, but not yet marked sent) is therefore the same
//! message, which a mailbox skips and a mail client recognises as a duplicate.

pub mod faulty;
pub mod mailbox;
pub mod smtp;

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use anyhow::Context as _;
use futures_util::future::BoxFuture;
use lettre::Message;
use lettre::message::header::ContentType;

pub use mailbox::Mailbox;
pub use smtp::Smtp;

use crate::config::MailerConfig;
use crate::domain::NotificationId;
use crate::store::Claimed;

/// The domain of every `Message-ID` Bazaar writes.
pub const MESSAGE_ID_DOMAIN: &str = "bazaar.localhost";

/// A composed email and the notification it carries.
#[derive(Clone, Debug)]
pub struct Letter {
    /// The notification; names the message and its mailbox file.
    pub notification_id: NotificationId,
    /// The RFC 5322 message, with its envelope (sender and recipients).
    pub message: Message,
}

/// Hands emails over to be delivered.
pub trait Mailer: Send + Sync + 'static {
    /// Delivers `letter`, or says whether trying again may help.
    fn deliver<'a>(&'a self, letter: &'a Letter) -> BoxFuture<'a, Result<(), MailError>>;
}

/// Why an email was not handed over.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    /// Worth trying again later: the relay is down or busy, the disk is full.
    #[error("{0:#}")]
    Transient(anyhow::Error),
    /// Will never work: the relay refused the address or the message for good.
    #[error("{0:#}")]
    Permanent(anyhow::Error),
}

/// The `Message-ID` of the email for notification `id`: `<id@bazaar.localhost>`.
pub fn message_id(id: &NotificationId) -> String {
    format!("<{id}@{MESSAGE_ID_DOMAIN}>")
}

/// Composes the email for a claimed notification, from `from`. An address that cannot
/// be parsed is a permanent failure.
pub fn compose(from: &lettre::message::Mailbox, claimed: &Claimed) -> Result<Letter, MailError> {
    let to: lettre::message::Mailbox = claimed.email.parse().map_err(|error| {
        MailError::Permanent(anyhow::anyhow!(
            "{:?} is not an email address: {error}",
            claimed.email
        ))
    })?;
    let created =
        UNIX_EPOCH + Duration::from_millis(u64::try_from(claimed.created_at_ms).unwrap_or(0));
    let message = Message::builder()
        .message_id(Some(message_id(&claimed.id)))
        .date(created)
        .from(from.clone())
        .to(to)
        .subject(claimed.subject.clone())
        .header(ContentType::TEXT_PLAIN)
        .body(claimed.body.clone())
        .map_err(|error| MailError::Permanent(anyhow::Error::new(error).context("composing")))?;
    Ok(Letter {
        notification_id: claimed.id.clone(),
        message,
    })
}

/// The mailer `config` describes. A mailbox must have its folder by now: the shop
/// fills in the default (see [`crate::Config::resolve_in`]).
pub fn from_config(config: &MailerConfig) -> anyhow::Result<Arc<dyn Mailer>> {
    match config {
        MailerConfig::Mailbox { dir } => {
            let dir = dir
                .as_deref()
                .context("notifications.mailer.dir is not set")?;
            Ok(Arc::new(Mailbox::open(dir)?))
        }
        MailerConfig::Smtp {
            host,
            port,
            tls,
            timeout_ms,
        } => {
            anyhow::ensure!(
                (1..=60_000).contains(timeout_ms),
                "notifications.mailer.timeout_ms must be from 1 to 60000"
            );
            Ok(Arc::new(Smtp::new(
                host,
                *port,
                *tls,
                Duration::from_millis(*timeout_ms),
            )?))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Kind;

    fn claimed(email: &str) -> Claimed {
        Claimed {
            id: NotificationId::parse("0192f0c4-aaaa-7bbb-8ccc-123456789abc").expect("an id"),
            kind: Kind::Welcome,
            email: email.to_owned(),
            subject: "Welcome to Bazaar".to_owned(),
            body: "Hello,\n\n.A line with a leading dot.\n".to_owned(),
            attempts: 0,
            created_at_ms: 1_700_000_000_000,
        }
    }

    fn from() -> lettre::message::Mailbox {
        "Bazaar <shop@bazaar.localhost>".parse().expect("a mailbox")
    }

    #[test]
    fn the_same_notification_composes_the_same_message() {
        let first = compose(&from(), &claimed("ada@example.com")).expect("composed");
        let again = compose(&from(), &claimed("ada@example.com")).expect("composed");
        assert_eq!(first.message.formatted(), again.message.formatted());
        let text = String::from_utf8(first.message.formatted()).expect("ASCII");
        assert!(
            text.contains(
                "Message-ID: <0192f0c4-aaaa-7bbb-8ccc-123456789abc@bazaar.localhost>\r\n"
            ),
            "{text}"
        );
        assert!(text.contains("To: ada@example.com\r\n"), "{text}");
        assert!(
            text.contains("From: Bazaar <shop@bazaar.localhost>\r\n"),
            "{text}"
        );
        assert!(
            text.contains("Date: Tue, 14 Nov 2023 22:13:20 +0000\r\n"),
            "{text}"
        );
        assert!(
            text.ends_with("Hello,\r\n\r\n.A line with a leading dot.\r\n"),
            "{text}"
        );
        let envelope = first.message.envelope();
        assert_eq!(envelope.to().len(), 1);
        assert_eq!(envelope.to()[0].to_string(), "ada@example.com");
    }

    #[test]
    fn a_mailbox_needs_its_folder_by_build_time() {
        let error = from_config(&MailerConfig::Mailbox { dir: None })
            .err()
            .expect("refused");
        assert!(
            error.to_string().contains("notifications.mailer.dir"),
            "{error}"
        );
        let too_slow = MailerConfig::Smtp {
            host: "localhost".to_owned(),
            port: 25,
            tls: false,
            timeout_ms: 600_000,
        };
        assert!(from_config(&too_slow).is_err());
    }

    #[test]
    fn an_unusable_address_is_a_permanent_failure() {
        for bad in ["nobody", "", "two@@example.com", "a@b\r\nBcc: x@y"] {
            match compose(&from(), &claimed(bad)) {
                Err(MailError::Permanent(_)) => {}
                other => panic!("{bad:?}: {other:?}"),
            }
        }
    }
}
