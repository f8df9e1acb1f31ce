//! The gateway's configuration.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};

use contracts::identity::Role;
use http::Uri;
use serde::{Deserialize, Serialize};

/// How the gateway runs. Every field has a default suitable for `bazaar up`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The public address: the one entry to the shop.
    pub listen: SocketAddr,
    /// How long an upstream may take to start answering before the client gets a 504.
    pub upstream_timeout_ms: u64,
    /// How long connecting to an upstream may take before the client gets a 502.
    pub connect_timeout_ms: u64,
    /// Upstream services by name: `/api/<name>/<path>` goes to `<url>/<path>`.
    pub upstreams: BTreeMap<String, UpstreamUrl>,
    /// Paths that need a valid access token (and maybe a role) before they are
    /// forwarded; the first rule that matches a request applies.
    pub protected: Vec<ProtectRule>,
}

/// A path prefix (and, optionally, methods) that needs a signed-in user.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProtectRule {
    /// The path prefix, matched at segment boundaries: `/api/identity/me` matches
    /// `/api/identity/me/password` but not `/api/identity/meadow`.
    pub prefix: String,
    /// The methods it applies to; empty means all.
    #[serde(default)]
    pub methods: Vec<String>,
    /// The role required, if any.
    #[serde(default)]
    pub role: Option<Role>,
    /// Path prefixes under `prefix` that stay public, e.g. a service's
    /// `/openapi.json` and `/health` under a fully protected prefix.
    #[serde(default)]
    pub except: Vec<String>,
}

impl ProtectRule {
    fn new(prefix: &str, methods: &[&str], role: Option<Role>) -> Self {
        Self {
            prefix: prefix.to_owned(),
            methods: methods.iter().map(|method| (*method).to_owned()).collect(),
            role,
            except: Vec::new(),
        }
    }

    /// The rule for a whole service's API under `prefix`, leaving its OpenAPI document,
    /// health and metrics public.
    fn whole_service(prefix: &str) -> Self {
        let public = ["/openapi.json", "/health", "/metrics"];
        Self {
            except: public
                .iter()
                .map(|path| format!("{prefix}{path}"))
                .collect(),
            ..Self::new(prefix, &[], None)
        }
    }

    /// Whether the rule applies to `method` on `path`.
    pub fn matches(&self, method: &http::Method, path: &str) -> bool {
        let under = |prefix: &str| {
            let prefix = prefix.trim_end_matches('/');
            path == prefix
                || path
                    .strip_prefix(prefix)
                    .is_some_and(|rest| rest.starts_with('/'))
        };
        under(&self.prefix)
            && !self.except.iter().any(|public| under(public))
            && (self.methods.is_empty()
                || self
                    .methods
                    .iter()
                    .any(|allowed| allowed.eq_ignore_ascii_case(method.as_str())))
    }
}

/// What the shop protects at the edge by default; each service checks again.
fn default_protected() -> Vec<ProtectRule> {
    let writes = ["POST", "PUT", "PATCH", "DELETE"];
    vec![
        ProtectRule::new("/api/identity/me", &[], None),
        ProtectRule::new("/api/identity/users", &[], None),
        ProtectRule::new("/api/identity/keys", &[], Some(Role::Admin)),
        ProtectRule::new("/api/catalog", &writes, Some(Role::Admin)),
        ProtectRule::new("/api/inventory/stock", &writes, Some(Role::Admin)),
        ProtectRule::whole_service("/api/cart"),
        ProtectRule::whole_service("/api/orders"),
        ProtectRule::new("/api/payments/methods", &[], None),
        ProtectRule::new("/api/payments/orders", &[], None),
        ProtectRule::new("/api/payments/ledger", &[], Some(Role::Admin)),
        ProtectRule::whole_service("/api/notifications"),
    ]
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 8080)),
            upstream_timeout_ms: 10_000,
            connect_timeout_ms: 1_000,
            upstreams: BTreeMap::new(),
            protected: default_protected(),
        }
    }
}

/// The base URL of an upstream service: `http://host:port`, no path.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct UpstreamUrl {
    authority: http::uri::Authority,
}

impl UpstreamUrl {
    /// The upstream at `address`.
    pub fn from_addr(address: SocketAddr) -> Self {
        let authority = address
            .to_string()
            .parse()
            .expect("a socket address is a valid authority");
        Self { authority }
    }

    /// `host:port`.
    pub fn authority(&self) -> &http::uri::Authority {
        &self.authority
    }
}

impl TryFrom<String> for UpstreamUrl {
    type Error = String;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        let uri: Uri = text
            .parse()
            .map_err(|error| format!("{text:?} is not a URL: {error}"))?;
        let plain_base = uri.scheme_str() == Some("http")
            && matches!(uri.path(), "" | "/")
            && uri.query().is_none();
        match uri.authority() {
            Some(authority) if plain_base => Ok(Self {
                authority: authority.clone(),
            }),
            _ => Err(format!(
                "{text:?} must be a base URL like http://127.0.0.1:8101 (http, host, port, no path)"
            )),
        }
    }
}

impl From<UpstreamUrl> for String {
    fn from(url: UpstreamUrl) -> Self {
        format!("http://{}", url.authority)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_match_at_segment_boundaries_and_by_method() {
        let rule = ProtectRule::new("/api/identity/me", &[], None);
        assert!(rule.matches(&http::Method::GET, "/api/identity/me"));
        assert!(rule.matches(&http::Method::POST, "/api/identity/me/password"));
        assert!(!rule.matches(&http::Method::GET, "/api/identity/meadow"));
        let writes = ProtectRule::new("/api/catalog/", &["POST", "delete"], Some(Role::Admin));
        assert!(writes.matches(&http::Method::DELETE, "/api/catalog/products/x"));
        assert!(!writes.matches(&http::Method::GET, "/api/catalog/products"));
        let orders = ProtectRule::whole_service("/api/orders");
        assert!(orders.matches(&http::Method::POST, "/api/orders"));
        assert!(orders.matches(&http::Method::GET, "/api/orders/0190"));
        assert!(!orders.matches(&http::Method::GET, "/api/orders/openapi.json"));
        assert!(!orders.matches(&http::Method::GET, "/api/orders/health/ready"));
    }

    #[test]
    fn upstreams_are_plain_http_base_urls() {
        let url = UpstreamUrl::try_from("http://127.0.0.1:8101".to_owned()).expect("valid");
        assert_eq!(String::from(url), "http://127.0.0.1:8101");
        for bad in [
            "127.0.0.1:8101",
            "https://x:1",
            "http://x:1/api",
            "ftp://x",
            "http://",
        ] {
            assert!(
                UpstreamUrl::try_from(bad.to_owned()).is_err(),
                "{bad} accepted"
            );
        }
    }
}
