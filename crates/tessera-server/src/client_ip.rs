//! The client address behind a request: the peer of the TCP connection, or, when that
//! peer is one of the configured trusted proxies, the nearest untrusted hop named in
//! `X-Forwarded-For`. Login throttling, sessions and audit events are keyed on it, so
//! it must never be an address a client can choose by writing a header.
//!
//! Each proxy appends the address of the peer it received from, so `X-Forwarded-For`
//! reads "client, proxy 1, proxy 2" and only the entries to the right are written by
//! machines we trust. Walking from the right and stopping at the first untrusted entry
//! believes exactly the hops vouched for by trusted proxies; everything further left
//! was written by the client itself (AUTH-37 (c)).
//!
//! Only `X-Forwarded-For` is read; the RFC 7239 `Forwarded` header is not.

use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;

/// The address that requests from `peer` are attributed to.
///
/// - An untrusted peer is the client: its `X-Forwarded-For` is ignored whatever it says.
/// - A trusted peer forwarded for someone: the entries are walked from the right,
///   trusted proxies are skipped, and the first untrusted entry is the client.
/// - A malformed entry (not an IP, an empty element, a value that is not UTF-8) stops
///   the walk, and the last trusted hop is returned, the proxy that handed the request
///   on. That address was seen by a machine we trust; the entry to its left could be
///   anything, and attributing it to the proxy throttles all such requests together
///   instead of giving each a fresh key.
/// - If every entry is a trusted proxy, the leftmost of them is returned.
///
/// `forwarded_for` takes every `X-Forwarded-For` line in order, e.g.
/// `headers.get_all("x-forwarded-for")`: a proxy may add its own line instead of
/// extending the client's, and reading only the first line would then believe the
/// client. An `Option<&str>` of a single joined value works too.
///
/// IPv4-mapped IPv6 addresses (`::ffff:192.0.2.1`) are treated, and returned, as the
/// IPv4 address they carry, so that one client has one key on dual-stack sockets.
pub(crate) fn client_ip<F>(peer: IpAddr, forwarded_for: F, trusted_proxies: &[IpNet]) -> IpAddr
where
    F: IntoIterator,
    F::Item: AsRef<[u8]>,
{
    let peer = peer.to_canonical();
    if !is_trusted(peer, trusted_proxies) {
        return peer;
    }

    // Lines are few (the server's header size limit bounds them); their entries are
    // parsed lazily from the right, so a long forged prefix costs nothing once an
    // untrusted entry is found.
    let lines: Vec<F::Item> = forwarded_for.into_iter().collect();
    let mut last_trusted_hop = peer;
    for line in lines.iter().rev() {
        let Ok(line) = std::str::from_utf8(line.as_ref()) else {
            return last_trusted_hop;
        };
        for entry in line.rsplit(',') {
            let Some(hop) = parse_hop(entry) else {
                return last_trusted_hop;
            };
            if !is_trusted(hop, trusted_proxies) {
                return hop;
            }
            last_trusted_hop = hop;
        }
    }
    last_trusted_hop
}

/// Parses the `trusted_proxies` setting: comma-separated IP addresses and CIDR blocks
/// (`10.0.0.0/8, 192.0.2.7, fd00::/8`). A bare address is a single host (/32 or /128).
/// An empty value trusts no proxy. The error says which entry is wrong and how to
/// write it.
pub(crate) fn parse_trusted_proxies(list: &str) -> Result<Vec<IpNet>, String> {
    if list.trim().is_empty() {
        return Ok(Vec::new());
    }
    list.split(',').map(parse_trusted_proxy).collect()
}

fn parse_trusted_proxy(entry: &str) -> Result<IpNet, String> {
    let entry = entry.trim();
    let net = match entry.parse::<IpNet>() {
        Ok(net) => net,
        Err(_) => entry.parse::<IpAddr>().map(IpNet::from).map_err(|_| {
            format!(
                "trusted proxy `{entry}` is neither an IP address nor a CIDR block; \
                 write e.g. 10.0.0.0/8, 192.0.2.7 or fd00::/8, separated by commas"
            )
        })?,
    };
    // A /0 would trust every address, so every X-Forwarded-For entry, including the
    // client's own, would be believed: the header would choose the client's address.
    if net.prefix_len() == 0 {
        return Err(format!(
            "trusted proxy `{entry}` trusts every address, which lets any client choose \
             its own IP; list your proxies' addresses or subnets instead"
        ));
    }
    Ok(canonical_net(net).trunc())
}

/// `::ffff:a.b.c.d/n` (n >= 96) as the IPv4 block it denotes, so that it matches the
/// canonical addresses that [`client_ip`] compares.
fn canonical_net(net: IpNet) -> IpNet {
    let IpNet::V6(v6) = net else {
        return net;
    };
    match (v6.addr().to_ipv4_mapped(), v6.prefix_len().checked_sub(96)) {
        (Some(v4), Some(len)) => ipnet::Ipv4Net::new(v4, len).map_or(net, IpNet::V4),
        _ => net,
    }
}

fn is_trusted(ip: IpAddr, trusted_proxies: &[IpNet]) -> bool {
    trusted_proxies.iter().any(|net| net.contains(&ip))
}

/// One `X-Forwarded-For` element: an address, or an address with a port as some
/// proxies write it (`192.0.2.1:4711`, `[2001:db8::1]:4711`).
fn parse_hop(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    let ip = entry
        .parse::<IpAddr>()
        .or_else(|_| entry.parse::<SocketAddr>().map(|socket| socket.ip()))
        .ok()?;
    Some(ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use axum::http::HeaderValue;

    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn proxies(list: &str) -> Vec<IpNet> {
        parse_trusted_proxies(list).unwrap()
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_its_header_says() {
        let trusted = proxies("10.0.0.0/8");

        let client = client_ip(ip("198.51.100.7"), Some("203.0.113.9"), &trusted);

        assert_eq!(client, ip("198.51.100.7"));
    }

    #[test]
    fn random_spoofed_headers_from_an_untrusted_peer_change_nothing() {
        let trusted = proxies("10.0.0.0/8");
        let peer = ip("198.51.100.7");

        let seen: Vec<IpAddr> = (0..=255u8)
            .map(|i| {
                let spoof = format!("203.0.113.{i}, 10.0.0.{i}");
                client_ip(peer, Some(spoof.as_str()), &trusted)
            })
            .collect();

        assert!(seen.iter().all(|client| *client == peer));
    }

    #[test]
    fn with_no_trusted_proxies_the_header_is_never_read() {
        let client = client_ip(ip("10.0.0.1"), Some("203.0.113.9"), &[]);

        assert_eq!(client, ip("10.0.0.1"));
    }

    #[test]
    fn a_trusted_peer_forwards_for_the_rightmost_untrusted_entry() {
        let trusted = proxies("10.0.0.1");

        let client = client_ip(
            ip("10.0.0.1"),
            Some("1.1.1.1, 203.0.113.9, 198.51.100.7"),
            &trusted,
        );

        assert_eq!(client, ip("198.51.100.7"));
    }

    #[test]
    fn a_chain_of_trusted_proxies_is_skipped() {
        let trusted = proxies("10.0.0.0/8, fd00::/8");

        let client = client_ip(
            ip("10.0.0.3"),
            Some("6.6.6.6, 198.51.100.7, fd00::2, 10.0.0.2"),
            &trusted,
        );

        assert_eq!(client, ip("198.51.100.7"));
    }

    #[test]
    fn a_proxy_that_adds_its_own_line_is_read_after_the_clients_line() {
        let trusted = proxies("10.0.0.0/8");
        let forged = HeaderValue::from_static("203.0.113.9");
        let appended = HeaderValue::from_static("198.51.100.7, 10.0.0.2");

        let client = client_ip(ip("10.0.0.3"), [&forged, &appended], &trusted);

        assert_eq!(client, ip("198.51.100.7"));
    }

    #[test]
    fn a_trusted_peer_without_the_header_is_the_client() {
        let trusted = proxies("10.0.0.0/8");

        let client = client_ip(ip("10.0.0.3"), None::<&str>, &trusted);

        assert_eq!(client, ip("10.0.0.3"));
    }

    #[test]
    fn a_header_of_only_trusted_hops_gives_the_leftmost_of_them() {
        let trusted = proxies("10.0.0.0/8");

        let client = client_ip(ip("10.0.0.3"), Some("10.0.0.1, 10.0.0.2"), &trusted);

        assert_eq!(client, ip("10.0.0.1"));
    }

    #[test]
    fn a_garbage_entry_stops_the_walk_at_the_last_trusted_hop() {
        let trusted = proxies("10.0.0.0/8");
        let cases = [
            "203.0.113.9, not-an-ip",
            "203.0.113.9, unknown, 10.0.0.2",
            "203.0.113.9,,10.0.0.2",
            "",
            "203.0.113.9, 300.1.1.1, 10.0.0.2",
        ];

        let seen: Vec<IpAddr> = cases
            .iter()
            .map(|header| client_ip(ip("10.0.0.3"), Some(*header), &trusted))
            .collect();

        assert_eq!(
            seen,
            [
                ip("10.0.0.3"),
                ip("10.0.0.2"),
                ip("10.0.0.2"),
                ip("10.0.0.3"),
                ip("10.0.0.2"),
            ]
        );
    }

    #[test]
    fn a_header_that_is_not_utf8_is_treated_as_garbage() {
        let trusted = proxies("10.0.0.0/8");
        let opaque = HeaderValue::from_bytes(b"203.0.113.\xff").unwrap();

        let client = client_ip(ip("10.0.0.3"), Some(&opaque), &trusted);

        assert_eq!(client, ip("10.0.0.3"));
    }

    #[test]
    fn entries_with_ports_name_their_address() {
        let trusted = proxies("10.0.0.0/8");

        let v4 = client_ip(ip("10.0.0.3"), Some("198.51.100.7:4711"), &trusted);
        let v6 = client_ip(ip("10.0.0.3"), Some("[2001:db8::7]:4711"), &trusted);

        assert_eq!(v4, ip("198.51.100.7"));
        assert_eq!(v6, ip("2001:db8::7"));
    }

    #[test]
    fn ipv4_mapped_addresses_are_their_ipv4_address() {
        let trusted = proxies("10.0.0.0/8");
        let mapped_peer = IpAddr::V6(Ipv4Addr::new(10, 0, 0, 3).to_ipv6_mapped());

        let forwarded = client_ip(mapped_peer, Some("::ffff:198.51.100.7"), &trusted);
        let direct = client_ip(ip("::ffff:198.51.100.9"), None::<&str>, &trusted);

        assert_eq!(forwarded, ip("198.51.100.7"));
        assert_eq!(direct, ip("198.51.100.9"));
    }

    #[test]
    fn trusted_proxies_parse_addresses_and_blocks() {
        let parsed = proxies(" 10.0.0.0/8, 192.0.2.7 ,fd00::/8, 2001:db8::1");

        assert_eq!(
            parsed,
            [
                "10.0.0.0/8".parse::<IpNet>().unwrap(),
                "192.0.2.7/32".parse().unwrap(),
                "fd00::/8".parse().unwrap(),
                "2001:db8::1/128".parse().unwrap(),
            ]
        );
    }

    #[test]
    fn trusted_proxies_are_normalised() {
        let parsed = proxies("::ffff:10.1.2.3, ::ffff:10.0.0.0/104, 192.0.2.77/24");

        assert_eq!(
            parsed,
            [
                "10.1.2.3/32".parse::<IpNet>().unwrap(),
                "10.0.0.0/8".parse().unwrap(),
                "192.0.2.0/24".parse().unwrap(),
            ]
        );
    }

    #[test]
    fn an_empty_setting_trusts_no_proxy() {
        assert_eq!(proxies(""), []);
        assert_eq!(proxies("  "), []);
    }

    #[test]
    fn a_bad_trusted_proxy_entry_is_named_in_the_error() {
        let errors = [
            parse_trusted_proxies("10.0.0.0/8, proxy.internal"),
            parse_trusted_proxies("10.0.0.0/33"),
            parse_trusted_proxies("10.0.0.1,,10.0.0.2"),
        ];

        assert!(errors[0].as_ref().unwrap_err().contains("`proxy.internal`"));
        assert!(errors[1].as_ref().unwrap_err().contains("`10.0.0.0/33`"));
        assert!(errors[2].as_ref().unwrap_err().contains("``"));
    }

    #[test]
    fn trusting_every_address_is_refused() {
        let v4 = parse_trusted_proxies("0.0.0.0/0");
        let v6 = parse_trusted_proxies("::/0");

        assert!(v4.unwrap_err().contains("every address"));
        assert!(v6.unwrap_err().contains("every address"));
    }
}
