//! Typed, layered configuration.
//!
//! Layers, later ones winning: the built-in defaults (`Default` of the root type), an
//! optional TOML file, then environment variables named `BAZAAR__SECTION__KEY` (double
//! underscores separate the levels, so `BAZAAR__GATEWAY__LISTEN=0.0.0.0:8080` sets
//! `gateway.listen`). It is read once, in `main`, and passed down; nothing below `main`
//! reads the environment. URLs that may carry a password print through
//! [`redact_password`].

use std::fmt;
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

/// A database connection URL: `sqlite://path/to/file.db` or `postgres://user:pass@host/db`.
///
/// Its `Debug` and `Serialize` forms hide the password, so a configuration can be printed
/// or logged whole.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct DatabaseUrl(String);

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
        Self(format!("sqlite://{}", path.display()))
    }

    /// The engine this URL selects.
    pub fn engine(&self) -> Engine {
        if self.0.starts_with("sqlite:") {
            Engine::Sqlite
        } else {
            Engine::Postgres
        }
    }

    /// The full URL, password included: only for handing to the driver.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL with any password replaced by `***`.
    pub fn redacted(&self) -> String {
        redact_password(&self.0)
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

impl TryFrom<String> for DatabaseUrl {
    type Error = String;

    fn try_from(url: String) -> Result<Self, Self::Error> {
        let supported = ["sqlite:", "postgres://", "postgresql://"];
        if supported.iter().any(|scheme| url.starts_with(scheme)) {
            Ok(Self(url))
        } else {
            Err(format!(
                "unsupported database URL {:?}: expected sqlite:… or postgres://…",
                Self(url).redacted()
            ))
        }
    }
}

impl Serialize for DatabaseUrl {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.redacted())
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("DatabaseUrl")
            .field(&self.redacted())
            .finish()
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
    fn unknown_schemes_are_rejected() {
        let error = DatabaseUrl::try_from("mysql://root@localhost/x".to_owned()).unwrap_err();
        assert!(error.contains("unsupported database URL"), "{error}");
    }
}
