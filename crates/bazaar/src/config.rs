//! The whole shop's configuration: one section per service, plus what they share.

use std::net::SocketAddr;
use std::path::PathBuf;

use gateway::UpstreamUrl;
use platform::auth::AuthConfig;
use platform::config::DatabaseUrl;
use platform::telemetry::LogConfig;
use serde::{Deserialize, Serialize};

use crate::topology::ServiceName;

/// Every setting of a Bazaar process. Sections are named after services.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where embedded mode keeps each service's SQLite file.
    pub data_dir: PathBuf,
    /// Logging.
    pub log: LogConfig,
    /// How every service finds and checks access tokens.
    pub auth: AuthConfig,
    /// The message bus.
    pub bus: BusConfig,
    /// The gateway.
    pub gateway: gateway::Config,
    /// Identity.
    pub identity: identity::Config,
    /// The catalog.
    pub catalog: catalog::Config,
    /// Inventory.
    pub inventory: inventory::Config,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("data"),
            log: LogConfig::default(),
            auth: AuthConfig::default(),
            bus: BusConfig::default(),
            gateway: gateway::Config::default(),
            identity: identity::Config::default(),
            catalog: catalog::Config::default(),
            inventory: inventory::Config::default(),
        }
    }
}

/// Which message bus the shop's services share.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum BusConfig {
    /// The embedded bus: `bus.db` in the data folder; for one process (`bazaar up`).
    #[default]
    Embedded,
    /// NATS JetStream, shared by every process of a distributed shop.
    Jetstream {
        /// The server, e.g. `nats://nats:4222`.
        url: String,
        /// The stream holding the shop's messages, e.g. `BAZAAR`.
        stream: String,
    },
}

impl Config {
    /// Fills what defaults to other settings: each service's database defaults to a
    /// SQLite file in `data_dir`, and the gateway's upstreams to the services' listen
    /// addresses.
    pub fn resolved(mut self) -> Self {
        let sqlite = |service: ServiceName| {
            DatabaseUrl::sqlite_file(&self.data_dir.join(format!("{service}.db")))
        };
        if self.auth.jwks_url.is_none() {
            let identity = self.identity.listen;
            self.auth.jwks_url = Some(format!("http://{identity}/.well-known/jwks.json"));
        }
        if self.identity.database_url.is_none() {
            self.identity.database_url = Some(sqlite(ServiceName::Identity));
        }
        if self.catalog.database_url.is_none() {
            self.catalog.database_url = Some(sqlite(ServiceName::Catalog));
        }
        if self.inventory.database_url.is_none() {
            self.inventory.database_url = Some(sqlite(ServiceName::Inventory));
        }
        for service in ServiceName::ALL
            .into_iter()
            .filter(|service| service.is_routed())
        {
            let listen = self.listen(service);
            self.gateway
                .upstreams
                .entry(service.as_str().to_owned())
                .or_insert_with(|| UpstreamUrl::from_addr(listen));
        }
        self
    }

    /// The configured listen address of `service`.
    pub fn listen(&self, service: ServiceName) -> SocketAddr {
        match service {
            ServiceName::Gateway => self.gateway.listen,
            ServiceName::Identity => self.identity.listen,
            ServiceName::Catalog => self.catalog.listen,
            ServiceName::Inventory => self.inventory.listen,
        }
    }

    /// Every service listening on port 0 of the loopback address, with data under
    /// `data_dir`: what tests and benchmarks run.
    pub fn ephemeral(data_dir: PathBuf) -> Self {
        let any_port = SocketAddr::from(([127, 0, 0, 1], 0));
        let mut config = Self {
            data_dir,
            ..Self::default()
        };
        config.gateway.listen = any_port;
        config.identity.listen = any_port;
        config.catalog.listen = any_port;
        config.inventory.listen = any_port;
        config
    }
}
