//! The gateway's configuration.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};

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
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 8080)),
            upstream_timeout_ms: 10_000,
            connect_timeout_ms: 1_000,
            upstreams: BTreeMap::new(),
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
