//! The single list of Bazaar's services.
//!
//! Everything that enumerates services (the CLI, the in-process wiring, the architecture
//! test, and the deployment manifests' checks) derives from [`ServiceName`].

use std::fmt;

/// A Bazaar service: one business capability, its own data, its own port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, clap::ValueEnum)]
pub enum ServiceName {
    /// The public entry: routing and edge policy.
    Gateway,
    /// Accounts, credentials and tokens.
    Identity,
    /// Products, categories and prices.
    Catalog,
    /// Stock levels and reservations.
    Inventory,
    /// Payment methods, fraud rules, the card processor and the ledger.
    Payments,
    /// Each customer's cart.
    Cart,
    /// Orders and the checkout saga.
    Orders,
    /// Emails to customers.
    Notifications,
    /// The web shop and back-office, over the other services' APIs.
    Storefront,
}

impl ServiceName {
    /// Every service, in start order: backends before the gateway that routes to them.
    pub const ALL: [Self; 9] = [
        Self::Identity,
        Self::Catalog,
        Self::Inventory,
        Self::Payments,
        Self::Cart,
        Self::Orders,
        Self::Notifications,
        Self::Storefront,
        Self::Gateway,
    ];

    /// The name used in URLs (`/api/<name>`), logs, metrics and configuration sections;
    /// also the name of the service's crate.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Gateway => gateway::NAME,
            Self::Identity => identity::NAME,
            Self::Catalog => catalog::NAME,
            Self::Inventory => inventory::NAME,
            Self::Payments => payments::NAME,
            Self::Cart => cart::NAME,
            Self::Orders => orders::NAME,
            Self::Notifications => notifications::NAME,
            Self::Storefront => storefront::NAME,
        }
    }

    /// Whether the gateway routes `/api/<name>/…` to this service.
    pub fn is_routed(self) -> bool {
        !matches!(self, Self::Gateway | Self::Storefront)
    }

    /// Whether this service is the site: the gateway sends it `/` and every path
    /// outside `/api`.
    pub fn is_site(self) -> bool {
        self == Self::Storefront
    }
}

impl fmt::Display for ServiceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
