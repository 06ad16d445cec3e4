//! The address of the person or app making a request, for the per-IP failure
//! limit and the audit log.
//!
//! Behind a reverse proxy (nginx, a cloud load balancer) every request arrives
//! from the proxy's address. Counted by that address, thirty wrong codes from
//! anyone would refuse everyone. So when the TCP peer is one of
//! `server.trusted_proxies`, the client is read from `X-Forwarded-For`: walking
//! from the right (the entry the nearest proxy added), past every address that
//! is itself a trusted proxy, the first one that is not. A peer that is not
//! trusted cannot choose its address: its `X-Forwarded-For` is ignored.

use std::net::IpAddr;

use actix_web::HttpRequest;

/// One `trusted_proxies` entry: an address, or a network in CIDR form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    addr: IpAddr,
    prefix: u8,
}

impl Network {
    /// `"10.0.0.0/8"`, `"192.168.1.10"`, `"fd00::/8"`, `"::1"`.
    pub fn parse(s: &str) -> Result<Network, String> {
        let s = s.trim();
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("{s:?} is not an IP address or a network like 10.0.0.0/8"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => match p.parse::<u8>() {
                Ok(n) if n <= max => n,
                _ => return Err(format!("{s:?}: the prefix length must be 0 to {max}")),
            },
        };
        Ok(Network { addr, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        // An IPv4 peer may show up as an IPv4-mapped IPv6 address.
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                prefix_matches(&net.octets(), &ip.octets(), self.prefix)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                prefix_matches(&net.octets(), &ip.octets(), self.prefix)
            }
            _ => false,
        }
    }
}

fn prefix_matches(net: &[u8], ip: &[u8], prefix: u8) -> bool {
    let mut bits = usize::from(prefix);
    for (n, i) in net.iter().zip(ip) {
        if bits == 0 {
            return true;
        }
        let take = bits.min(8);
        let mask = 0xffu8 << (8 - take);
        if n & mask != i & mask {
            return false;
        }
        bits -= take;
    }
    true
}

/// The proxies whose `X-Forwarded-For` the broker believes.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies {
    networks: Vec<Network>,
}

impl TrustedProxies {
    /// Parses `server.trusted_proxies`; the error names the bad entry.
    pub fn parse(entries: &[String]) -> Result<TrustedProxies, String> {
        let networks = entries
            .iter()
            .map(|e| Network::parse(e))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(TrustedProxies { networks })
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        self.networks.iter().any(|n| n.contains(ip))
    }

    /// The client's address, given the TCP peer and the `X-Forwarded-For`
    /// values (in the order the headers came).
    pub fn client(&self, peer: Option<IpAddr>, forwarded_for: &[&str]) -> Option<IpAddr> {
        let peer = peer?;
        if !self.trusts(peer) {
            return Some(peer);
        }
        let hops: Vec<&str> = forwarded_for
            .iter()
            .flat_map(|h| h.split(','))
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .collect();
        let mut client = peer;
        for hop in hops.iter().rev() {
            let Ok(ip) = hop.parse::<IpAddr>() else {
                // Garbage (or a port, or an obfuscated name) where an address
                // should be: stop at the last address a trusted proxy vouched for.
                break;
            };
            client = ip;
            if !self.trusts(ip) {
                break;
            }
        }
        Some(client)
    }

    /// The address of whoever sent `req`.
    pub fn of(&self, req: &HttpRequest) -> Option<IpAddr> {
        let peer = req.peer_addr().map(|a| a.ip());
        if self.networks.is_empty() {
            return peer;
        }
        let values: Vec<&str> = req
            .headers()
            .get_all("x-forwarded-for")
            .filter_map(|v| v.to_str().ok())
            .collect();
        self.client(peer, &values)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or(IpAddr::from([0, 0, 0, 0]))
    }

    fn proxies(list: &[&str]) -> TrustedProxies {
        let owned: Vec<String> = list.iter().map(|s| s.to_string()).collect();
        TrustedProxies::parse(&owned).unwrap_or_default()
    }

    #[test]
    fn networks_parse_and_match() {
        let n = Network::parse("10.0.0.0/8").ok();
        assert!(n.is_some_and(|n| n.contains(ip("10.200.1.1"))));
        assert!(n.is_some_and(|n| !n.contains(ip("11.0.0.1"))));
        let one = Network::parse("192.168.1.10").ok();
        assert!(one.is_some_and(|n| n.contains(ip("192.168.1.10"))));
        assert!(one.is_some_and(|n| !n.contains(ip("192.168.1.11"))));
        let v6 = Network::parse("fd00::/8").ok();
        assert!(v6.is_some_and(|n| n.contains(ip("fd12:3456::1"))));
        assert!(v6.is_some_and(|n| !n.contains(ip("10.0.0.1"))));
        let odd = Network::parse("172.16.0.0/12").ok();
        assert!(odd.is_some_and(|n| n.contains(ip("172.31.255.255"))));
        assert!(odd.is_some_and(|n| !n.contains(ip("172.32.0.0"))));
        // An IPv4 peer seen on an IPv6 socket.
        let lo = Network::parse("127.0.0.1").ok();
        assert!(lo.is_some_and(|n| n.contains(ip("::ffff:127.0.0.1"))));
        for bad in ["10.0.0.0/33", "::/129", "localhost", "10.0.0/8", ""] {
            assert!(Network::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn an_untrusted_peer_cannot_choose_its_address() {
        let t = proxies(&["10.0.0.1"]);
        assert_eq!(
            t.client(Some(ip("203.0.113.9")), &["198.51.100.1"]),
            Some(ip("203.0.113.9"))
        );
        // No proxies configured: the header means nothing.
        assert_eq!(
            TrustedProxies::default().client(Some(ip("10.0.0.1")), &["198.51.100.1"]),
            Some(ip("10.0.0.1"))
        );
    }

    #[test]
    fn the_first_untrusted_address_from_the_right_is_the_client() {
        let t = proxies(&["10.0.0.0/8"]);
        let peer = Some(ip("10.0.0.1"));
        assert_eq!(t.client(peer, &["198.51.100.7"]), Some(ip("198.51.100.7")));
        // The client put a fake entry in front; the proxies appended the truth.
        assert_eq!(
            t.client(peer, &["1.2.3.4, 198.51.100.7, 10.1.1.1"]),
            Some(ip("198.51.100.7"))
        );
        // Several header lines count as one list.
        assert_eq!(
            t.client(peer, &["1.2.3.4", "198.51.100.7"]),
            Some(ip("198.51.100.7"))
        );
        // Only proxies in the chain: the left-most of them.
        assert_eq!(
            t.client(peer, &["10.2.2.2, 10.3.3.3"]),
            Some(ip("10.2.2.2"))
        );
        // No header: the proxy itself.
        assert_eq!(t.client(peer, &[]), Some(ip("10.0.0.1")));
        // Garbage stops the walk at the last address a proxy vouched for.
        assert_eq!(
            t.client(peer, &["198.51.100.7, unknown, 10.1.1.1"]),
            Some(ip("10.1.1.1"))
        );
        assert_eq!(t.client(peer, &["2001:db8::5"]), Some(ip("2001:db8::5")));
    }
}
