//! Network addresses as configuration: which peers are trusted proxies, and who the
//! client behind them is.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// An address range such as `10.0.0.0/8`, or a single address (`127.0.0.1`), as written
/// in configuration; Kubernetes pods come and go within a range, so a list of single
/// addresses cannot describe a gateway's replicas.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct IpRange(IpNet);

impl IpRange {
    /// The range holding exactly `address`.
    pub fn single(address: IpAddr) -> Self {
        Self(IpNet::from(address))
    }

    /// Whether `address` is in the range. An IPv4 address written as IPv6
    /// (`::ffff:10.0.0.1`, what a dual-stack listener reports) is looked up as IPv4.
    pub fn contains(&self, address: IpAddr) -> bool {
        self.0.contains(&canonical(address))
    }
}

fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
        IpAddr::V4(_) => address,
    }
}

impl FromStr for IpRange {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        if let Ok(range) = text.parse::<IpNet>() {
            return Ok(Self(range.trunc()));
        }
        text.parse::<IpAddr>().map(Self::single).map_err(|_| {
            format!("{text:?} is neither an address nor a range like 10.0.0.0/8 or fd00::/8")
        })
    }
}

impl TryFrom<String> for IpRange {
    type Error = String;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        text.parse()
    }
}

impl From<IpRange> for String {
    fn from(range: IpRange) -> Self {
        range.to_string()
    }
}

impl fmt::Display for IpRange {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.prefix_len() == self.0.max_prefix_len() {
            write!(formatter, "{}", self.0.addr())
        } else {
            write!(formatter, "{}", self.0)
        }
    }
}

/// The loopback addresses: where a gateway in the same process or on the same host
/// connects from.
pub fn loopback() -> Vec<IpRange> {
    vec![
        IpRange::single(IpAddr::from([127, 0, 0, 1])),
        IpRange::single(IpAddr::from(std::net::Ipv6Addr::LOCALHOST)),
    ]
}

/// Whether any of `ranges` holds `address`.
pub fn is_trusted(ranges: &[IpRange], address: IpAddr) -> bool {
    ranges.iter().any(|range| range.contains(address))
}

/// The header by which a proxy of the shop vouches for the `X-Forwarded-For` it sends:
/// its value is the shop's forwarding secret (`auth.forwarding_secret`). A proxy strips
/// it from what its clients send.
pub const FORWARDED_BY: &str = "bazaar-forwarded-by";

/// [`client_address`], believing the forwarded chain only from a request that carries
/// `secret` in [`FORWARDED_BY`], when there is a secret. Without one, a trusted peer's
/// word is enough, so on a host where any local process is a trusted peer (the
/// embedded shop) a secret is what tells the shop's own proxies from the rest.
pub fn vouched_client_address(
    peer: SocketAddr,
    headers: &http::HeaderMap,
    trusted_proxies: &[IpRange],
    secret: Option<&crate::config::Secret>,
) -> IpAddr {
    let vouched = secret.is_none_or(|secret| {
        headers
            .get(FORWARDED_BY)
            .is_some_and(|offered| secret.matches(offered.as_bytes()))
    });
    if vouched {
        client_address(peer, headers, trusted_proxies)
    } else {
        canonical(peer.ip())
    }
}

/// The client's address. A peer outside `trusted_proxies` is the client. A trusted peer
/// forwarded the request, so `X-Forwarded-For` is read from the right, the hops each
/// proxy appended, skipping trusted proxies: the first untrusted hop is the client.
/// Anything left of it is what the client claimed about itself and is never believed,
/// so a spoofed header cannot buy a fresh identity.
pub fn client_address(
    peer: SocketAddr,
    headers: &http::HeaderMap,
    trusted_proxies: &[IpRange],
) -> IpAddr {
    let peer = canonical(peer.ip());
    if !is_trusted(trusted_proxies, peer) {
        return peer;
    }
    let mut client = peer;
    let hops = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .collect::<Vec<_>>();
    for hop in hops.iter().rev() {
        let Ok(address) = hop.trim().parse::<IpAddr>() else {
            // An unparsable hop ends what can be believed.
            break;
        };
        client = canonical(address);
        if !is_trusted(trusted_proxies, client) {
            break;
        }
    }
    client
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forwarded(value: &str) -> http::HeaderMap {
        let mut headers = http::HeaderMap::new();
        headers.insert("x-forwarded-for", value.parse().expect("a header"));
        headers
    }

    #[test]
    fn ranges_parse_from_addresses_and_prefixes() {
        let single: IpRange = "127.0.0.1".parse().expect("valid");
        assert!(single.contains("127.0.0.1".parse().expect("an address")));
        assert!(!single.contains("127.0.0.2".parse().expect("an address")));
        let pods: IpRange = "10.244.0.0/16".parse().expect("valid");
        assert!(pods.contains("10.244.3.7".parse().expect("an address")));
        assert!(pods.contains("::ffff:10.244.3.7".parse().expect("an address")));
        assert_eq!(pods.to_string(), "10.244.0.0/16");
        assert_eq!(single.to_string(), "127.0.0.1");
        let host_bits: IpRange = "10.1.2.3/8".parse().expect("valid");
        assert_eq!(host_bits.to_string(), "10.0.0.0/8");
        for bad in ["", "10.0.0.0/33", "localhost", "10.0.0.0/8/8"] {
            assert!(bad.parse::<IpRange>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn forwarded_addresses_are_believed_only_from_trusted_proxies() {
        let trusted = vec![
            "10.0.0.0/8".parse().expect("valid"),
            "127.0.0.1".parse().expect("valid"),
        ];
        let gateway = SocketAddr::from(([10, 0, 0, 5], 4000));
        let stranger = SocketAddr::from(([203, 0, 113, 9], 4000));
        // The client claimed 6.6.6.6; the load balancer (10.0.0.9) appended the real
        // peer, then the gateway forwarded.
        let headers = forwarded("6.6.6.6, 198.51.100.7, 10.0.0.9");
        assert_eq!(
            client_address(gateway, &headers, &trusted).to_string(),
            "198.51.100.7"
        );
        assert_eq!(
            client_address(stranger, &headers, &trusted).to_string(),
            "203.0.113.9",
            "an untrusted peer's header is ignored"
        );
        assert_eq!(
            client_address(gateway, &http::HeaderMap::new(), &trusted).to_string(),
            "10.0.0.5"
        );
        assert_eq!(
            client_address(gateway, &forwarded("junk, 10.0.0.9"), &trusted).to_string(),
            "10.0.0.9",
            "nothing left of an unparsable hop is believed"
        );
    }
}
