//! The client's address as the ingress saw it. A request from a trusted proxy (an address in
//! `auth.trusted_proxies`, single addresses or networks) carries the client in
//! `X-Forwarded-For`: each hop appends the address it was called from, so the right-most entry
//! that is not itself a trusted proxy is the client; everything left of it was written by the
//! client and proves nothing. A request from anywhere else is its own peer, whatever it says.

use std::net::IpAddr;

use axum::http::HeaderMap;
use ipnet::IpNet;

/// Whether `addr` (IPv4-mapped IPv6 read as IPv4) is in one of `nets`.
pub fn trusted(nets: &[IpNet], addr: IpAddr) -> bool {
    let addr = addr.to_canonical();
    nets.iter().any(|n| n.contains(&addr))
}

/// The client of a request from `peer` (None in in-process tests).
pub fn address(peer: Option<IpAddr>, headers: &HeaderMap, proxies: &[IpNet]) -> Option<IpAddr> {
    // A server listening on [::] sees IPv4 clients as ::ffff:a.b.c.d.
    let peer = peer?.to_canonical();
    if !trusted(proxies, peer) {
        return Some(peer);
    }
    // Every X-Forwarded-For line in order, as one list (a proxy may add a line of its own).
    let hops: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    for hop in hops.iter().rev() {
        match hop.parse::<IpAddr>() {
            Ok(a) if trusted(proxies, a) => continue,
            Ok(a) => return Some(a.to_canonical()),
            // A hop we cannot read: what lies left of it cannot be trusted either.
            Err(_) => return Some(peer),
        }
    }
    Some(peer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|n| n.parse().unwrap()).collect()
    }

    fn xff(lines: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for l in lines {
            h.append("x-forwarded-for", l.parse().unwrap());
        }
        h
    }

    #[test]
    fn the_right_most_untrusted_hop_is_the_client() {
        let proxies = nets(&["10.0.0.0/8", "192.168.7.1/32"]);
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        // Through the ingress: the client's address is the one the ingress appended.
        assert_eq!(address(ip("10.1.2.3"), &xff(&["203.0.113.7"]), &proxies), ip("203.0.113.7"));
        // A client that writes its own X-Forwarded-For gains nothing: the ingress appended the truth.
        assert_eq!(address(ip("10.1.2.3"), &xff(&["1.1.1.1, 203.0.113.7"]), &proxies), ip("203.0.113.7"));
        // Two trusted hops, across two header lines.
        assert_eq!(
            address(ip("192.168.7.1"), &xff(&["6.6.6.6, 198.51.100.4", "10.9.9.9"]), &proxies),
            ip("198.51.100.4")
        );
        // Straight from the internet: the header is the client's own words and is ignored.
        assert_eq!(address(ip("198.51.100.9"), &xff(&["10.0.0.1"]), &proxies), ip("198.51.100.9"));
        // Nothing readable, or only proxies: the peer.
        assert_eq!(address(ip("10.1.2.3"), &xff(&["garbage"]), &proxies), ip("10.1.2.3"));
        assert_eq!(address(ip("10.1.2.3"), &xff(&["10.0.0.5"]), &proxies), ip("10.1.2.3"));
        assert_eq!(address(ip("10.1.2.3"), &HeaderMap::new(), &proxies), ip("10.1.2.3"));
        assert_eq!(address(None, &xff(&["203.0.113.7"]), &proxies), None);
        // IPv6 clients and proxies alike.
        let v6 = nets(&["fd00::/8"]);
        assert_eq!(address(ip("fd00::1"), &xff(&["2001:db8::5"]), &v6), ip("2001:db8::5"));
        // A dual-stack listener sees IPv4 peers as IPv4-mapped IPv6: still the trusted ingress.
        assert_eq!(address(ip("::ffff:10.1.2.3"), &xff(&["203.0.113.7"]), &proxies), ip("203.0.113.7"));
    }
}
