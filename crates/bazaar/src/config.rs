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
    /// Feature flags.
    pub flags: FlagsConfig,
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
    /// The storefront.
    pub storefront: storefront::Config,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("data"),
            log: LogConfig::default(),
            auth: AuthConfig::default(),
            bus: BusConfig::default(),
            flags: FlagsConfig::default(),
            gateway: gateway::Config::default(),
            identity: identity::Config::default(),
            catalog: catalog::Config::default(),
            inventory: inventory::Config::default(),
            payments: payments::Config::default(),
            cart: cart::Config::default(),
            orders: orders::Config::default(),
            notifications: notifications::Config::default(),
            storefront: storefront::Config::default(),
        }
    }
}

/// Where the shop's feature flags are defined.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FlagsConfig {
    /// The flag file, in the flagd format; re-read when it changes. Defaults to
    /// `flags.json` in `data_dir`, written with every flag the shop knows (all off)
    /// when it is missing. In Kubernetes, a ConfigMap mounted as a file.
    pub file: Option<PathBuf>,
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
        /// The server, e.g. `nats://nats:4222` (its password never printed).
        url: platform::config::NatsUrl,
        /// The stream holding the shop's messages, e.g. `BAZAAR`.
        stream: String,
    },
}

impl Config {
    /// Fills what defaults to other settings: each service's database defaults to a
    /// SQLite file in `data_dir`, and the gateway's upstreams to the services' listen
    /// addresses.
    pub fn resolved(mut self) -> Self {
        if let Some(secret) = &self.auth.forwarding_secret {
            for copy in [
                &mut self.gateway.forwarding_secret,
                &mut self.storefront.forwarding_secret,
                &mut self.identity.forwarding_secret,
            ] {
                copy.get_or_insert_with(|| secret.clone());
            }
        }
        if self.auth.jwks_url.is_none() {
            let identity = self.identity.listen;
            self.auth.jwks_url = Some(format!("http://{identity}/.well-known/jwks.json"));
        }
        let data_dir = self.data_dir.clone();
        self.flags
            .file
            .get_or_insert_with(|| data_dir.join("flags.json"));
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
        let site = ServiceName::Storefront;
        let listen = self.listen(site);
        self.gateway
            .upstreams
            .entry(site.as_str().to_owned())
            .or_insert_with(|| Upstream::at(listen));
        self.gateway
            .site
            .get_or_insert_with(|| site.as_str().to_owned());
        self
    }

    /// Fails, naming the data folder, unless every service of `services` that keeps a
    /// SQLite file already has one: an operator command run in a folder with no shop
    /// would otherwise create empty databases there and report success about a shop
    /// nobody runs. (A PostgreSQL database that does not exist fails to connect anyway.)
    pub fn ensure_shop_exists(&mut self, services: &[ServiceName]) -> anyhow::Result<()> {
        let data_dir = self.data_dir.clone();
        for &service in services {
            let Some(Some(url)) = self.database_url_mut(service).map(|url| url.clone()) else {
                continue;
            };
            let Some(path) = url.sqlite_path() else {
                continue;
            };
            anyhow::ensure!(
                path.is_file(),
                "no shop in {}: {} does not exist. Run this where the shop keeps its \
                 data (start it there once with `bazaar up`), or point data_dir \
                 (BAZAAR__DATA_DIR) or {service}.database_url at it",
                data_dir.display(),
                path.display()
            );
        }
        Ok(())
    }

    /// The database setting of `service`, if it has a database.
    fn database_url_mut(&mut self, service: ServiceName) -> Option<&mut Option<DatabaseUrl>> {
        match service {
            ServiceName::Gateway | ServiceName::Storefront => None,
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
        if service.is_routed() || service.is_site() {
            self.gateway
                .upstreams
                .insert(service.as_str().to_owned(), Upstream::at(address));
        }
        let storefront = &mut self.storefront;
        match service {
            ServiceName::Identity => {
                self.auth.jwks_url = Some(format!("{url}/.well-known/jwks.json"));
                storefront.identity_url = url;
            }
            ServiceName::Catalog => {
                self.cart.catalog_url.clone_from(&url);
                storefront.catalog_url = url;
            }
            ServiceName::Inventory => {
                self.cart.inventory_url.clone_from(&url);
                storefront.inventory_url = url;
            }
            ServiceName::Cart => {
                self.orders.cart_url.clone_from(&url);
                storefront.cart_url = url;
            }
            ServiceName::Payments => {
                self.orders.payments_url.clone_from(&url);
                storefront.payments_url = url;
            }
            ServiceName::Orders => storefront.orders_url = url,
            ServiceName::Notifications => storefront.notifications_url = url,
            ServiceName::Gateway => {
                // Links in emails point at the gateway that runs alongside, unless the
                // shop's public address is configured.
                self.notifications.shop_url.get_or_insert(url);
            }
            ServiceName::Storefront => {}
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
            ServiceName::Storefront => self.storefront.listen,
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
        config.storefront.listen = any_port;
        config
    }
}
