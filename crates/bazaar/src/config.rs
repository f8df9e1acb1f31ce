//! The whole shop's configuration: one section per service, plus what they share.

use std::net::SocketAddr;
use std::path::PathBuf;

use gateway::Upstream;
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
    /// Payments.
    pub payments: payments::Config,
    /// The cart.
    pub cart: cart::Config,
    /// Orders.
    pub orders: orders::Config,
    /// Notifications.
    pub notifications: notifications::Config,
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
            payments: payments::Config::default(),
            cart: cart::Config::default(),
            orders: orders::Config::default(),
            notifications: notifications::Config::default(),
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
        if self.auth.jwks_url.is_none() {
            let identity = self.identity.listen;
            self.auth.jwks_url = Some(format!("http://{identity}/.well-known/jwks.json"));
        }
        let data_dir = self.data_dir.clone();
        for service in ServiceName::ALL {
            if let Some(url @ None) = self.database_url_mut(service) {
                *url = Some(DatabaseUrl::sqlite_file(
                    &data_dir.join(format!("{service}.db")),
                ));
            }
        }
        self.notifications.resolve_in(&data_dir);
        for service in ServiceName::ALL
            .into_iter()
            .filter(|service| service.is_routed())
        {
            let listen = self.listen(service);
            self.gateway
                .upstreams
                .entry(service.as_str().to_owned())
                .or_insert_with(|| Upstream::at(listen));
        }
        self
    }

    /// The database setting of `service`, if it has a database.
    fn database_url_mut(&mut self, service: ServiceName) -> Option<&mut Option<DatabaseUrl>> {
        match service {
            ServiceName::Gateway => None,
            ServiceName::Identity => Some(&mut self.identity.database_url),
            ServiceName::Catalog => Some(&mut self.catalog.database_url),
            ServiceName::Inventory => Some(&mut self.inventory.database_url),
            ServiceName::Payments => Some(&mut self.payments.database_url),
            ServiceName::Cart => Some(&mut self.cart.database_url),
            ServiceName::Orders => Some(&mut self.orders.database_url),
            ServiceName::Notifications => Some(&mut self.notifications.database_url),
        }
    }

    /// Points every service that calls `service` at `address`: the gateway's upstream,
    /// the token verifier's key set, and the gRPC clients of the cart and orders.
    pub fn locate(&mut self, service: ServiceName, address: SocketAddr) {
        let url = format!("http://{address}");
        if service.is_routed() {
            self.gateway
                .upstreams
                .insert(service.as_str().to_owned(), Upstream::at(address));
        }
        match service {
            ServiceName::Identity => {
                self.auth.jwks_url = Some(format!("{url}/.well-known/jwks.json"));
            }
            ServiceName::Catalog => self.cart.catalog_url = url,
            ServiceName::Inventory => self.cart.inventory_url = url,
            ServiceName::Cart => self.orders.cart_url = url,
            ServiceName::Payments => self.orders.payments_url = url,
            ServiceName::Gateway | ServiceName::Orders | ServiceName::Notifications => {}
        }
    }

    /// The configured listen address of `service`.
    pub fn listen(&self, service: ServiceName) -> SocketAddr {
        match service {
            ServiceName::Gateway => self.gateway.listen,
            ServiceName::Identity => self.identity.listen,
            ServiceName::Catalog => self.catalog.listen,
            ServiceName::Inventory => self.inventory.listen,
            ServiceName::Payments => self.payments.listen,
            ServiceName::Cart => self.cart.listen,
            ServiceName::Orders => self.orders.listen,
            ServiceName::Notifications => self.notifications.listen,
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
        config.payments.listen = any_port;
        config.cart.listen = any_port;
        config.orders.listen = any_port;
        config.notifications.listen = any_port;
        config
    }
}
