//! The network an address belongs to, for Sybil limits: one party usually holds a whole
//! IPv4 /24 or IPv6 /64, so "many nodes from one subnet" is how a cheap Sybil attack (many
//! IDs placed next to a target from one host or rack) looks from outside.
//!
//! Loopback, private, link-local and unique-local addresses have no subnet here: a test
//! network on 127.0.0.1 or a LAN is many honest nodes in one subnet, and BEP 42 exempts the
//! same addresses.

use std::net::IpAddr;

/// An IPv4 /24 or an IPv6 /64.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Subnet {
    V4([u8; 3]),
    V6([u8; 8]),
}

impl Subnet {
    /// The subnet of a global address; `None` for a local one (see the module notes).
    pub(crate) fn of(ip: IpAddr) -> Option<Subnet> {
        if is_local(ip) {
            return None;
        }
        Some(match ip {
            IpAddr::V4(v4) => {
                let o = v4.octets();
                Subnet::V4([o[0], o[1], o[2]])
            }
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => return Subnet::of(IpAddr::V4(v4)),
                None => Subnet::V6(v6.octets()[..8].try_into().expect("8 bytes")),
            },
        })
    }
}

/// Loopback, private (RFC 1918, unique-local fc00::/7), link-local or unspecified.
pub(crate) fn is_local(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback() || v4.is_private() || v4.is_link_local() || v4.is_unspecified(),
        IpAddr::V6(v6) => {
            v6.is_loopback()
                || v6.is_unspecified()
                || (v6.segments()[0] & 0xfe00) == 0xfc00
                || (v6.segments()[0] & 0xffc0) == 0xfe80
                || v6.to_ipv4_mapped().is_some_and(|v4| is_local(IpAddr::V4(v4)))
        }
    }
}

/// Counts how many of `addrs` share `subnet`.
pub(crate) fn count_in(subnet: Subnet, addrs: impl Iterator<Item = IpAddr>) -> usize {
    addrs.filter(|ip| Subnet::of(*ip) == Some(subnet)).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// /24 and /64 boundaries, and local addresses have no subnet.
    #[test]
    fn subnets() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(Subnet::of(ip("203.0.113.1")), Subnet::of(ip("203.0.113.254")));
        assert_ne!(Subnet::of(ip("203.0.113.1")), Subnet::of(ip("203.0.114.1")));
        assert_eq!(Subnet::of(ip("2001:db8:1:2::1")), Subnet::of(ip("2001:db8:1:2:ffff::9")));
        assert_ne!(Subnet::of(ip("2001:db8:1:2::1")), Subnet::of(ip("2001:db8:1:3::1")));
        assert_eq!(Subnet::of(ip("::ffff:203.0.113.1")), Subnet::of(ip("203.0.113.9")));
        for local in ["127.0.0.1", "10.1.2.3", "192.168.0.1", "172.16.0.1", "169.254.1.1", "::1", "fd00::1", "fe80::1"]
        {
            assert_eq!(Subnet::of(ip(local)), None, "{local}");
        }
    }
}
