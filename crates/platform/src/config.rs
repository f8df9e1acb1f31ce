//! Typed, layered configuration.
//!
//! Layers, later ones winning: the built-in defaults (`Default` of the root type), an
//! optional TOML file, then environment variables named `BAZAAR__SECTION__KEY` (double
//! underscores separate the levels, so `BAZAAR__GATEWAY__LISTEN=0.0.0.0:8080` sets
//! `gateway.listen`). It is read once, in `main`, and passed down; nothing below `main`
//! reads the environment. URLs that may carry a password print through
//! [`redact_password`].

use std::fmt;
use std::marker::PhantomData;
use std::path::Path;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// The environment variable prefix of every configuration key.
pub const ENV_PREFIX: &str = "BAZAAR__";

/// A configuration that could not be read; its message names the offending key and layer.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(#[from] Box<figment::Error>);

/// OpenTelemetry's standard environment variables and the settings they fill, in
/// increasing precedence.
const OTEL_VARIABLES: [(&str, &str); 3] = [
    ("OTEL_EXPORTER_OTLP_ENDPOINT", "log.otlp_endpoint"),
    ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "log.otlp_endpoint"),
    ("OTEL_SERVICE_NAME", "log.service_name"),
];

/// Reads the configuration: defaults, then `file` if given (it must exist), then the
/// standard `OTEL_*` variables (into the `log` section), then the `BAZAAR__`
/// environment.
pub fn load<T>(file: Option<&Path>) -> Result<T, ConfigError>
where
    T: Default + Serialize + DeserializeOwned,
{
    let mut figment = Figment::from(Serialized::defaults(T::default()));
    if let Some(file) = file {
        if !file.is_file() {
            return Err(ConfigError(Box::new(figment::Error::from(format!(
                "configuration file {} does not exist",
                file.display()
            )))));
        }
        figment = figment.merge(Toml::file_exact(file));
    }
    // The standard OpenTelemetry variables fill the `log` section; `BAZAAR__LOG__*`
    // still wins.
    for (variable, key) in OTEL_VARIABLES {
        figment = figment.merge(Env::raw().only(&[variable]).map(move |_| key.into()));
    }
    figment
        .merge(Env::prefixed(ENV_PREFIX).split("__"))
        .extract()
        .map_err(|error| ConfigError(Box::new(error)))
}

/// A secret in the configuration (a key, a password): its `Debug` and `Serialize`
/// forms are `***`, so a configuration can be printed or logged whole. Read from a
/// string; at least 16 characters, so an empty or placeholder value is refused at start.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct Secret(String);

impl Secret {
    /// The secret itself: only for the code that uses it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// A new secret of 256 random bits, for a process that needs one only for itself.
    pub fn random() -> anyhow::Result<Self> {
        let mut bytes = [0_u8; 32];
        getrandom::fill(&mut bytes).map_err(|error| anyhow::anyhow!("no randomness: {error}"))?;
        Ok(Self(
            bytes.iter().map(|byte| format!("{byte:02x}")).collect(),
        ))
    }

    /// Whether `offered` is this secret, compared in time that does not depend on
    /// where they differ.
    pub fn matches(&self, offered: &[u8]) -> bool {
        let expected = self.0.as_bytes();
        expected.len() == offered.len()
            && expected
                .iter()
                .zip(offered)
                .fold(0_u8, |difference, (a, b)| difference | (a ^ b))
                == 0
    }
}

impl TryFrom<String> for Secret {
    type Error = String;

    fn try_from(secret: String) -> Result<Self, Self::Error> {
        if secret.chars().count() >= 16 {
            Ok(Self(secret))
        } else {
            Err("a secret must be at least 16 characters".to_owned())
        }
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str("***")
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// What a [`SecretUrl`] connects to: the schemes it takes and how it is named in
/// messages.
pub trait UrlKind {
    /// The type's name in `Debug`, e.g. `DatabaseUrl`.
    const TYPE: &'static str;
    /// The kind in messages, e.g. `database`.
    const NAME: &'static str;
    /// The prefixes a URL of this kind starts with, e.g. `postgres://`.
    const SCHEMES: &'static [&'static str];
    /// What is expected, for the message about a URL that is not, e.g.
    /// `redis://…`.
    const EXPECTED: &'static str;
}

/// A URL that may carry a password (a database, a Redis or NATS server): the one
/// type every such setting has. Its `Debug` and `Serialize` forms hide the password
/// ([`redact_password`]), so a configuration can be printed or logged whole; reading
/// it refuses a scheme its kind does not take.
pub struct SecretUrl<K>(String, PhantomData<K>);

/// A database connection URL: `sqlite://path/to/file.db` or `postgres://user:pass@host/db`.
pub type DatabaseUrl = SecretUrl<Database>;

/// A Redis URL: `redis://[:password@]host[:port][/db]` (or `rediss://`).
pub type RedisUrl = SecretUrl<Redis>;

/// A NATS URL: `nats://[user:password@]host[:port]` (or `tls://`).
pub type NatsUrl = SecretUrl<Nats>;

/// The kind of [`DatabaseUrl`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Database;

impl UrlKind for Database {
    const TYPE: &'static str = "DatabaseUrl";
    const NAME: &'static str = "database";
    const SCHEMES: &'static [&'static str] = &["sqlite:", "postgres://", "postgresql://"];
    const EXPECTED: &'static str = "sqlite:… or postgres://…";
}

/// The kind of [`RedisUrl`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Redis;

impl UrlKind for Redis {
    const TYPE: &'static str = "RedisUrl";
    const NAME: &'static str = "Redis";
    const SCHEMES: &'static [&'static str] = &["redis://", "rediss://"];
    const EXPECTED: &'static str = "redis://…";
}

/// The kind of [`NatsUrl`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Nats;

impl UrlKind for Nats {
    const TYPE: &'static str = "NatsUrl";
    const NAME: &'static str = "NATS";
    const SCHEMES: &'static [&'static str] = &["nats://", "tls://"];
    const EXPECTED: &'static str = "nats://…";
}

impl<K> SecretUrl<K> {
    /// The full URL, password included: only for handing to the driver or client.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL with any password replaced by `***`.
    pub fn redacted(&self) -> String {
        redact_password(&self.0)
    }
}

impl<K> Clone for SecretUrl<K> {
    fn clone(&self) -> Self {
        Self(self.0.clone(), PhantomData)
    }
}

impl<K> PartialEq for SecretUrl<K> {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}

impl<K> Eq for SecretUrl<K> {}

/// The database engines Bazaar runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    /// SQLite, one file per service: embedded mode.
    Sqlite,
    /// PostgreSQL, one database per service: distributed mode.
    Postgres,
}

impl DatabaseUrl {
    /// The SQLite database at `path`, created on first use.
    pub fn sqlite_file(path: &Path) -> Self {
        Self(format!("sqlite://{}", path.display()), PhantomData)
    }

    /// The file of a SQLite URL (`sqlite://data/orders.db?mode=rwc` is
    /// `data/orders.db`); `None` for PostgreSQL.
    pub fn sqlite_path(&self) -> Option<std::path::PathBuf> {
        let rest = self.0.strip_prefix("sqlite:")?;
        let path = rest
            .trim_start_matches("//")
            .split('?')
            .next()
            .unwrap_or_default();
        Some(std::path::PathBuf::from(path))
    }

    /// The engine this URL selects.
    pub fn engine(&self) -> Engine {
        if self.0.starts_with("sqlite:") {
            Engine::Sqlite
        } else {
            Engine::Postgres
        }
    }
}

/// `url` with the password in its user information replaced by `***`, for printing a
/// configured URL: `postgres://shop:s3cret@db/orders` becomes
/// `postgres://shop:***@db/orders`, and `redis://:s3cret@cache` becomes
/// `redis://:***@cache`. A URL without a password is returned whole.
pub fn redact_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    match rest.split_once('@') {
        Some((user_info, host)) if user_info.contains(':') => {
            let user = user_info.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}:***@{host}")
        }
        _ => url.to_owned(),
    }
}

impl<K: UrlKind> TryFrom<String> for SecretUrl<K> {
    type Error = String;

    fn try_from(url: String) -> Result<Self, Self::Error> {
        if K::SCHEMES.iter().any(|scheme| url.starts_with(scheme)) {
            Ok(Self(url, PhantomData))
        } else {
            Err(format!(
                "unsupported {} URL {:?}: expected {}",
                K::NAME,
                redact_password(&url),
                K::EXPECTED
            ))
        }
    }
}

impl<'de, K: UrlKind> Deserialize<'de> for SecretUrl<K> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let url = String::deserialize(deserializer)?;
        Self::try_from(url).map_err(serde::de::Error::custom)
    }
}

impl<K> Serialize for SecretUrl<K> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.redacted())
    }
}

impl<K: UrlKind> fmt::Debug for SecretUrl<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple(K::TYPE).field(&self.redacted()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_show() {
        let url = DatabaseUrl::try_from("postgres://shop:s3cret@db:5432/orders".to_owned())
            .expect("valid url");
        assert_eq!(url.redacted(), "postgres://shop:***@db:5432/orders");
        assert!(!format!("{url:?}").contains("s3cret"));
        assert!(
            !serde_json::to_string(&url)
                .expect("serializes")
                .contains("s3cret")
        );
        assert_eq!(url.engine(), Engine::Postgres);
    }

    #[test]
    fn urls_without_password_are_shown_whole() {
        let url = DatabaseUrl::try_from("sqlite://data/catalog.db".to_owned()).expect("valid");
        assert_eq!(url.redacted(), "sqlite://data/catalog.db");
        assert_eq!(url.engine(), Engine::Sqlite);
        assert_eq!(url.sqlite_path(), Some("data/catalog.db".into()));
        let with_mode =
            DatabaseUrl::try_from("sqlite:/tmp/x.db?mode=rwc".to_owned()).expect("valid");
        assert_eq!(with_mode.sqlite_path(), Some("/tmp/x.db".into()));
    }

    #[test]
    fn any_url_can_be_redacted() {
        assert_eq!(
            redact_password("redis://:s3cret@cache:6379/0"),
            "redis://:***@cache:6379/0"
        );
        assert_eq!(
            redact_password("redis://cart:s3cret@cache"),
            "redis://cart:***@cache"
        );
        for whole in ["redis://cache:6379/0", "postgres://root@db/x", "not a url"] {
            assert_eq!(redact_password(whole), whole);
        }
    }

    #[test]
    fn redis_and_nats_passwords_never_show() {
        let redis = RedisUrl::try_from("redis://:s3cret@cache:6379/0".to_owned()).expect("valid");
        let nats = NatsUrl::try_from("nats://bus:s3cret@nats:4222".to_owned()).expect("valid");
        assert_eq!(redis.redacted(), "redis://:***@cache:6379/0");
        assert_eq!(nats.redacted(), "nats://bus:***@nats:4222");
        for shown in [
            format!("{redis:?}"),
            format!("{nats:?}"),
            serde_json::to_string(&redis).expect("serializes"),
            serde_json::to_string(&nats).expect("serializes"),
        ] {
            assert!(!shown.contains("s3cret"), "{shown}");
        }
        let wrong = RedisUrl::try_from("http://cache".to_owned()).unwrap_err();
        assert!(wrong.contains("unsupported Redis URL"), "{wrong}");
    }

    #[test]
    fn unknown_schemes_are_rejected() {
        let error = DatabaseUrl::try_from("mysql://root@localhost/x".to_owned()).unwrap_err();
        assert!(error.contains("unsupported database URL"), "{error}");
    }
}
