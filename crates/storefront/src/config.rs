//! The storefront's configuration.

use std::net::{Ipv4Addr, SocketAddr};

use platform::net::IpRange;
use serde::{Deserialize, Serialize};

/// How the storefront runs. Every field has a default suitable for `bazaar up`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The address the pages are served on (behind the gateway, which routes every path
    /// outside `/api` here).
    pub listen: SocketAddr,
    /// Identity's REST API (accounts, tokens).
    pub identity_url: String,
    /// The catalog's REST API.
    pub catalog_url: String,
    /// Inventory's REST API (availability, stock levels).
    pub inventory_url: String,
    /// The cart's REST API.
    pub cart_url: String,
    /// Payments' REST API (payment methods).
    pub payments_url: String,
    /// Orders' REST API.
    pub orders_url: String,
    /// Notifications' REST API (the inbox).
    pub notifications_url: String,
    /// How long one call to a service may take, in milliseconds, before the page says
    /// the shop is busy.
    pub call_timeout_ms: u64,
    /// Whether cookies carry `Secure` (browsers then send them over HTTPS only). On
    /// wherever the shop is served over HTTPS; off for `http://127.0.0.1`.
    pub secure_cookies: bool,
    /// Whether the checkout lists the card simulator's test cards (the demo shop).
    pub show_test_cards: bool,
    /// Where the operations console is, for the back-office's link.
    pub console_path: String,
    /// Peers whose `X-Forwarded-For` is believed: the gateway's addresses or ranges.
    /// The shopper's address found through them is passed on to identity, which
    /// throttles sign-in per client network (it must trust the storefront in turn).
    pub trusted_proxies: Vec<IpRange>,
    /// The shop's forwarding secret (`auth.forwarding_secret`, copied here): the
    /// gateway's forwarded client address is believed only with it, and the storefront
    /// presents it to identity in turn.
    pub forwarding_secret: Option<platform::config::Secret>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 8108)),
            identity_url: "http://127.0.0.1:8102".to_owned(),
            catalog_url: "http://127.0.0.1:8101".to_owned(),
            inventory_url: "http://127.0.0.1:8103".to_owned(),
            cart_url: "http://127.0.0.1:8104".to_owned(),
            payments_url: "http://127.0.0.1:8105".to_owned(),
            orders_url: "http://127.0.0.1:8107".to_owned(),
            notifications_url: "http://127.0.0.1:8106".to_owned(),
            call_timeout_ms: 5_000,
            secure_cookies: false,
            show_test_cards: true,
            console_path: "/console".to_owned(),
            trusted_proxies: platform::net::loopback(),
            forwarding_secret: None,
        }
    }
}
