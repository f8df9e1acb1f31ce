//! Notifications' configuration.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use platform::config::DatabaseUrl;
use serde::{Deserialize, Serialize};

/// How notifications runs. Every field has a default suitable for `bazaar up`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The address for the REST API.
    pub listen: SocketAddr,
    /// Notifications' own database. Unset means the SQLite file `notifications.db` in
    /// the shop's data folder.
    pub database_url: Option<DatabaseUrl>,
    /// The most database connections notifications opens.
    pub max_connections: u32,
    /// How emails leave: files in a mailbox folder, or an SMTP relay.
    pub mailer: MailerConfig,
    /// The `From` of every email, an RFC 5322 mailbox.
    pub from: String,
    /// The shop's address as customers reach it (the gateway), for the links in emails,
    /// e.g. `https://shop.example.com`. Unset: the gateway's address when it runs in
    /// the same process, else `http://127.0.0.1:8080`.
    pub shop_url: Option<String>,
    /// How failed sends are retried.
    pub retry: RetryConfig,
    /// The most emails one round of the sender sends.
    pub send_batch: u32,
    /// How often the sender looks for emails that are due, in milliseconds.
    pub poll_ms: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 8106)),
            database_url: None,
            max_connections: platform::db::DEFAULT_MAX_CONNECTIONS,
            mailer: MailerConfig::default(),
            from: "Bazaar <shop@bazaar.localhost>".to_owned(),
            shop_url: None,
            retry: RetryConfig::default(),
            send_batch: 50,
            poll_ms: 500,
        }
    }
}

impl Config {
    /// Fills what defaults to a place in the shop's data folder and was left unset: the
    /// SQLite database and the mailbox folder.
    pub fn resolve_in(&mut self, data_dir: &Path) {
        if self.database_url.is_none() {
            self.database_url = Some(DatabaseUrl::sqlite_file(
                &data_dir.join(format!("{}.db", crate::NAME)),
            ));
        }
        if let MailerConfig::Mailbox { dir: dir @ None } = &mut self.mailer {
            *dir = Some(data_dir.join("mailbox"));
        }
    }
}

/// Where emails go.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum MailerConfig {
    /// Each email is written as an RFC 5322 `.eml` file into a folder: what the shop
    /// does on one machine, where there is no mail server to talk to.
    Mailbox {
        /// The folder. Unset means `mailbox` in the shop's data folder; the shop fills
        /// it in before building the service.
        #[serde(default)]
        dir: Option<PathBuf>,
    },
    /// Each email is handed to an SMTP relay.
    Smtp {
        /// The relay's host name or address.
        host: String,
        /// The relay's port.
        #[serde(default = "default_smtp_port")]
        port: u16,
        /// `true` upgrades the connection with STARTTLS and verifies the relay's
        /// certificate; `false` talks plain SMTP, for a relay on the local host or network.
        #[serde(default)]
        tls: bool,
        /// How long one email may take to hand over, in milliseconds (1 to 60 000).
        #[serde(default = "default_smtp_timeout_ms")]
        timeout_ms: u64,
    },
}

impl Default for MailerConfig {
    fn default() -> Self {
        Self::Mailbox { dir: None }
    }
}

fn default_smtp_port() -> u16 {
    25
}

fn default_smtp_timeout_ms() -> u64 {
    10_000
}

/// How a failed send is retried: after `first_retry_ms`, then twice as long each time,
/// never longer than `max_retry_ms`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// The wait after the first failure, in milliseconds.
    pub first_retry_ms: u64,
    /// The longest wait between two attempts, in milliseconds.
    pub max_retry_ms: u64,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            first_retry_ms: 1000,
            max_retry_ms: 300_000,
        }
    }
}

impl RetryConfig {
    /// The wait before the next attempt, after `attempts` failed ones (at least 1).
    pub fn delay_ms(&self, attempts: i64) -> i64 {
        let doublings = u32::try_from(attempts.saturating_sub(1).clamp(0, 62)).unwrap_or(62);
        let first = i64::try_from(self.first_retry_ms).unwrap_or(i64::MAX);
        let max = i64::try_from(self.max_retry_ms).unwrap_or(i64::MAX);
        first
            .saturating_mul(2_i64.saturating_pow(doublings))
            .min(max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_as_documented() {
        let config = Config::default();
        assert_eq!(config.listen.port(), 8106);
        assert_eq!(config.max_connections, 4);
        assert_eq!(config.mailer, MailerConfig::Mailbox { dir: None });
        assert_eq!(config.from, "Bazaar <shop@bazaar.localhost>");
        assert_eq!(config.retry.first_retry_ms, 1000);
        assert_eq!(config.retry.max_retry_ms, 300_000);
        assert_eq!(config.send_batch, 50);
        assert_eq!(config.poll_ms, 500);
    }

    #[test]
    fn the_mailer_is_chosen_by_kind() {
        let smtp: Config = toml::from_str(
            "[mailer]\nkind = \"smtp\"\nhost = \"relay.internal\"\nport = 2525\ntls = true\n",
        )
        .expect("valid");
        assert_eq!(
            smtp.mailer,
            MailerConfig::Smtp {
                host: "relay.internal".to_owned(),
                port: 2525,
                tls: true,
                timeout_ms: 10_000,
            }
        );
        let mailbox: Config =
            toml::from_str("[mailer]\nkind = \"mailbox\"\ndir = \"/var/mail/bazaar\"\n")
                .expect("valid");
        assert_eq!(
            mailbox.mailer,
            MailerConfig::Mailbox {
                dir: Some(PathBuf::from("/var/mail/bazaar"))
            }
        );
    }

    #[test]
    fn typos_are_refused() {
        for bad in [
            "[mailer]\nkind = \"smtp\"\nhots = \"relay\"\n",
            "[mailer]\nkind = \"mailbox\"\ndri = \"x\"\n",
            "[mailer]\nkind = \"pigeon\"\n",
            "[retry]\nfirst_retry = 5\n",
            "poll = 5\n",
        ] {
            assert!(
                toml::from_str::<Config>(bad).is_err(),
                "{bad:?} was accepted"
            );
        }
    }

    #[test]
    fn the_shop_fills_in_the_data_folder() {
        let mut config = Config::default();
        config.resolve_in(Path::new("/srv/shop"));
        assert_eq!(
            config.mailer,
            MailerConfig::Mailbox {
                dir: Some(PathBuf::from("/srv/shop/mailbox"))
            }
        );
        assert!(config.database_url.is_some());
        let mut chosen = Config {
            mailer: MailerConfig::Mailbox {
                dir: Some(PathBuf::from("/elsewhere")),
            },
            ..Config::default()
        };
        chosen.resolve_in(Path::new("/srv/shop"));
        assert_eq!(
            chosen.mailer,
            MailerConfig::Mailbox {
                dir: Some(PathBuf::from("/elsewhere"))
            }
        );
    }

    #[test]
    fn retries_double_up_to_the_cap() {
        let retry = RetryConfig {
            first_retry_ms: 1000,
            max_retry_ms: 5000,
        };
        let delays: Vec<i64> = (1..=6).map(|attempts| retry.delay_ms(attempts)).collect();
        assert_eq!(delays, [1000, 2000, 4000, 5000, 5000, 5000]);
        assert_eq!(RetryConfig::default().delay_ms(1_000_000), 300_000);
    }
}
