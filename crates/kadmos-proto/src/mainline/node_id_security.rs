use std::net::IpAddr;

use rand::Rng;

use crate::kad::{Id, NodeId};

/// What a node does with BEP 42.
///
/// BEP 42: node IDs bound to the node's external IP address, so that an attacker cannot
/// place itself next to any target it likes.
///
/// The first 21 bits of a secure ID equal those of `crc32c(masked ip | r << 29)` (IPv4) or
/// `crc32c(masked high 64 bits | r << 61)` (IPv6), where `r` is the low 3 bits of the ID's
/// last byte. Local and loopback addresses are exempt.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum NodeIdSecurity {
    /// Keep contacts whose ID does not match their address out of the routing table, and
    /// give ourselves a secure ID whenever the vote on our external address changes it
    /// (the default).
    #[default]
    Enforce,
    /// Keep insecure contacts out, but never change our own ID (for a node started with a
    /// chosen ID).
    KeepOwnId,
    /// Neither: every contact is accepted and our ID never changes.
    Off,
}

impl NodeIdSecurity {
    /// Whether a contact with `id` at `ip` may enter the routing table under this policy.
    pub fn admits(self, id: &NodeId, ip: IpAddr) -> bool {
        self == NodeIdSecurity::Off || is_secure(id, ip)
    }
}

const V4_MASK: u32 = 0x030f_3fff;
const V6_MASK: u64 = 0x0103_070f_1f3f_7fff;

fn crc_for(ip: IpAddr, rand: u8) -> u32 {
    let r = u64::from(rand & 0x7);
    match ip {
        IpAddr::V4(v4) => {
            let masked = (u32::from(v4) & V4_MASK) | ((r as u32) << 29);
            crc32c::crc32c(&masked.to_be_bytes())
        }
        IpAddr::V6(v6) => {
            let high = u64::from_be_bytes(v6.octets()[..8].try_into().expect("8 bytes"));
            let masked = (high & V6_MASK) | (r << 61);
            crc32c::crc32c(&masked.to_be_bytes())
        }
    }
}

/// Addresses BEP 42 does not apply to: loopback, private, link-local and unspecified.
pub(crate) fn is_exempt(ip: IpAddr) -> bool {
    crate::kad::subnet::is_local(ip)
}

/// A node ID that satisfies BEP 42 for `ip`, using `rand` as its last byte.
pub fn secure_node_id<R: Rng + ?Sized>(ip: IpAddr, rand: u8, rng: &mut R) -> NodeId {
    let crc = crc_for(ip, rand);
    let mut id = Id::random(rng);
    id.0[0] = (crc >> 24) as u8;
    id.0[1] = (crc >> 16) as u8;
    id.0[2] = ((crc >> 8) as u8 & 0xf8) | (id.0[2] & 0x07);
    id.0[19] = rand;
    id
}

/// Whether `id` is a valid BEP 42 ID for `ip` (always true for exempt addresses).
pub fn is_secure(id: &NodeId, ip: IpAddr) -> bool {
    if is_exempt(ip) {
        return true;
    }
    let crc = crc_for(ip, id.0[19]);
    id.0[0] == (crc >> 24) as u8 && id.0[1] == (crc >> 16) as u8 && (id.0[2] & 0xf8) == ((crc >> 8) as u8 & 0xf8)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    /// The example table of BEP 42 is reproduced: the first 21 bits of each generated ID match
    /// the published prefix, and the IDs validate while an ID for another address does not.
    #[test]
    fn bep42_vectors() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        for (ip, rand, prefix) in [
            ("124.31.75.21", 1u8, [0x5f, 0xbf, 0xbf]),
            ("21.75.31.124", 86, [0x5a, 0x3c, 0xe9]),
            ("65.23.51.170", 22, [0xa5, 0xd4, 0x32]),
            ("84.124.73.14", 65, [0x1b, 0x03, 0x21]),
            ("43.213.53.83", 90, [0xe5, 0x6f, 0x6c]),
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            let id = secure_node_id(ip, rand, &mut rng);
            assert_eq!(&id.0[..2], &prefix[..2], "{ip}");
            assert_eq!(id.0[2] & 0xf8, prefix[2] & 0xf8, "{ip}");
            assert_eq!(id.0[19], rand);
            assert!(is_secure(&id, ip));
            assert!(!is_secure(&id, "8.8.8.8".parse().unwrap()));
        }
        assert!(is_secure(&Id::random(&mut rng), "127.0.0.1".parse().unwrap()));
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        assert!(is_secure(&secure_node_id(v6, 3, &mut rng), v6));
    }
}
