//! Which client a request comes from, for the issuer's rate limits.
//!
//! The peer's address is the client unless the operator named that peer
//! as a reverse proxy (`--trusted-proxy`). Only then is `X-Forwarded-For`
//! read, from the right: each address a trusted proxy appended is passed
//! over, and the first one that is not a trusted proxy is the client (the
//! left-most entries are whatever the client sent, and prove nothing).
//! IPv6 clients are keyed by their /64, since one host commonly holds a
//! whole /64. This module decides nothing about limits.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use axum::http::HeaderMap;

/// The reverse proxies whose `X-Forwarded-For` is believed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpAddr>);

/// Why a `--trusted-proxy` value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not an IP address; give the proxy's addresses separated by commas, e.g. 127.0.0.1,::1"
)]
pub struct TrustedProxyError(pub String);

impl TrustedProxies {
    /// Parses `ADDR[,ADDR…]` (spaces allowed, empty items ignored).
    pub fn parse(list: &str) -> Result<Self, TrustedProxyError> {
        list.split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(|a| {
                a.parse::<IpAddr>()
                    .map(canonical)
                    .map_err(|_| TrustedProxyError(a.to_owned()))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Self)
    }

    /// Whether no proxy is trusted (`X-Forwarded-For` is then ignored).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        self.0.contains(&canonical(ip))
    }

    /// The client's address: the peer, or — when the peer is a trusted
    /// proxy — the right-most `X-Forwarded-For` entry that is not one.
    /// `None` only when there is no peer address at all.
    pub fn client(&self, headers: &HeaderMap, peer: Option<SocketAddr>) -> Option<IpAddr> {
        let peer = canonical(peer?.ip());
        if !self.trusts(peer) {
            return Some(peer);
        }
        let mut client = peer;
        // Every X-Forwarded-For header, in order, as one list read from the right.
        let hops: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .collect();
        for hop in hops.iter().rev() {
            let Ok(ip) = hop.trim().parse::<IpAddr>().map(canonical) else {
                // Garbage a proxy would not have written: stop at the last good hop.
                break;
            };
            client = ip;
            if !self.trusts(ip) {
                break;
            }
        }
        Some(client)
    }
}

impl std::fmt::Display for TrustedProxies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let list: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        f.write_str(&list.join(","))
    }
}

/// An IPv4-mapped IPv6 address as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The rate-limit key of a client address: the address for IPv4, its /64
/// for IPv6; `unknown` without one.
pub fn rate_key(ip: Option<IpAddr>) -> String {
    match ip.map(canonical) {
        Some(IpAddr::V6(v6)) => {
            let s = v6.segments();
            let net = Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0);
            format!("{net}/64")
        }
        Some(v4) => v4.to_string(),
        None => "unknown".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn check(trusted: &str, xff: &[&str], peer: &str, expected: &str) {
        let proxies = TrustedProxies::parse(trusted).unwrap();
        let mut h = HeaderMap::new();
        for v in xff {
            h.append("x-forwarded-for", HeaderValue::from_str(v).unwrap());
        }
        let peer: SocketAddr = peer.parse().unwrap();
        assert_eq!(
            rate_key(proxies.client(&h, Some(peer))),
            expected,
            "trusted {trusted:?}, X-Forwarded-For {xff:?}, peer {peer}"
        );
    }

    #[test]
    fn forwarding_is_believed_only_from_a_trusted_proxy() {
        // No proxy named: a loopback peer's header is ignored (issue 12 item 6).
        check("", &["203.0.113.9"], "127.0.0.1:5000", "127.0.0.1");
        check("", &[], "192.0.2.1:5000", "192.0.2.1");
        // A named proxy: the right-most address it did not add itself.
        check(
            "127.0.0.1",
            &["203.0.113.9"],
            "127.0.0.1:5000",
            "203.0.113.9",
        );
        check(
            "127.0.0.1",
            &["6.6.6.6, 203.0.113.9"],
            "127.0.0.1:5000",
            "203.0.113.9",
        );
        check(
            "127.0.0.1, 10.0.0.2",
            &["6.6.6.6, 203.0.113.9", "10.0.0.2"],
            "127.0.0.1:5000",
            "203.0.113.9",
        );
        // A peer that is not the proxy is the client, whatever it sends.
        check("127.0.0.1", &["203.0.113.9"], "192.0.2.1:5000", "192.0.2.1");
        // No header, or garbage right of the client: the proxy itself.
        check("127.0.0.1", &[], "127.0.0.1:5000", "127.0.0.1");
        check("127.0.0.1", &["nonsense"], "127.0.0.1:5000", "127.0.0.1");
        // IPv6 clients count per /64; mapped IPv4 is IPv4.
        check(
            "::1",
            &["2001:db8:1:2:aaaa::1"],
            "[::1]:5000",
            "2001:db8:1:2::/64",
        );
        check("127.0.0.1", &[], "[::ffff:127.0.0.1]:5000", "127.0.0.1");
    }

    #[test]
    fn the_list_must_be_addresses() {
        assert!(TrustedProxies::parse("").unwrap().is_empty());
        assert_eq!(
            TrustedProxies::parse("127.0.0.1,proxy.lan")
                .unwrap_err()
                .to_string(),
            "\"proxy.lan\" is not an IP address; give the proxy's addresses separated by commas, e.g. 127.0.0.1,::1"
        );
    }
}
