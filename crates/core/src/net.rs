//! Whether a host is this machine: the one place every crate asks before it
//! lets plain `http://` or an unencrypted hop through (a hub URL, an
//! issuer, a discovered endpoint, an SMTP relay).
//!
//! An IP literal is judged by itself. `localhost` and `*.localhost` count
//! only when every address they resolve to is a loopback address: RFC 6761
//! asks resolvers to keep those names on this machine, but a resolver that
//! does not (plain glibc with no hosts entry sends `foo.localhost` to DNS)
//! would let whoever answers DNS pick the address. Any other name is never
//! loopback, whatever it resolves to. This is the only code in `heph-core`
//! that reaches outside the process (a name lookup through the system
//! resolver); [`is_loopback_host_with`] takes the resolver as a parameter so
//! the rule is tested without one.

use std::io;
use std::net::{IpAddr, ToSocketAddrs};

/// Whether `host` (a name, an IP literal, or a bracketed IPv6 literal) is
/// this machine, resolving `localhost` names through the system resolver.
pub fn is_loopback_host(host: &str) -> bool {
    is_loopback_host_with(host, system_resolve)
}

/// [`is_loopback_host`] with the resolver given: `resolve` is asked only for
/// `localhost` and `*.localhost` names, and an error or an empty answer
/// means "not loopback".
pub fn is_loopback_host_with(
    host: &str,
    resolve: impl FnOnce(&str) -> io::Result<Vec<IpAddr>>,
) -> bool {
    let literal = host.strip_prefix('[').and_then(|h| h.strip_suffix(']'));
    if let Ok(ip) = literal.unwrap_or(host).parse::<IpAddr>() {
        return ip.is_loopback();
    }
    if literal.is_some() {
        return false;
    }
    let name = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
    let local_name = name == "localhost"
        || name
            .strip_suffix(".localhost")
            .is_some_and(|label| !label.is_empty() && !label.ends_with('.'));
    if !local_name {
        return false;
    }
    match resolve(&name) {
        Ok(addrs) => !addrs.is_empty() && addrs.iter().all(IpAddr::is_loopback),
        Err(_) => false,
    }
}

/// Every address the system resolver gives for `name`.
fn system_resolve(name: &str) -> io::Result<Vec<IpAddr>> {
    Ok((name, 0).to_socket_addrs()?.map(|a| a.ip()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(host: &str, answer: Option<&[&str]>, expected: bool) {
        let asked = std::cell::Cell::new(false);
        let got = is_loopback_host_with(host, |_| {
            asked.set(true);
            match answer {
                Some(a) => Ok(a.iter().map(|s| s.parse().unwrap()).collect()),
                None => Err(io::Error::new(io::ErrorKind::NotFound, "no such name")),
            }
        });
        assert_eq!(got, expected, "{host} with {answer:?}");
    }

    #[test]
    fn literals_are_judged_by_themselves() {
        check("127.0.0.1", None, true);
        check("127.9.9.9", None, true);
        check("[::1]", None, true);
        check("::1", None, true);
        check("10.0.0.1", None, false);
        check("[::ffff:10.0.0.1]", None, false);
        check("[not-an-ip]", Some(&["127.0.0.1"]), false);
    }

    #[test]
    fn localhost_names_count_only_when_they_resolve_to_loopback() {
        check("localhost", Some(&["127.0.0.1", "::1"]), true);
        check("foo.localhost", Some(&["127.0.0.1"]), true);
        check("Foo.LocalHost.", Some(&["::1"]), true);
        // A resolver that sends the name to DNS, where anyone may answer.
        check("foo.localhost", Some(&["203.0.113.7"]), false);
        check("foo.localhost", Some(&["127.0.0.1", "203.0.113.7"]), false);
        check("foo.localhost", Some(&[]), false);
        check("foo.localhost", None, false);
        check(".localhost", Some(&["127.0.0.1"]), false);
        // Other names never count, whatever they resolve to.
        check("localhost.example", Some(&["127.0.0.1"]), false);
        check("evil-localhost", Some(&["127.0.0.1"]), false);
        check("hub.example", Some(&["127.0.0.1"]), false);
    }

    #[test]
    fn the_system_resolver_is_asked_for_localhost() {
        // `localhost` resolves to loopback on every machine these tests run on.
        assert!(is_loopback_host("localhost"));
        assert!(!is_loopback_host("hub.example"));
    }
}
