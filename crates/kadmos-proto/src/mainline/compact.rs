//! Compact encodings of BEP 5 and BEP 32: peers as 6 (IPv4) or 18 (IPv6) bytes, nodes as a
//! 20-byte ID followed by a compact peer (26 or 38 bytes), all big-endian.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::kad::{Id, NodeId, ID_LEN};

pub(crate) const PEER_V4_LEN: usize = 6;
pub(crate) const PEER_V6_LEN: usize = 18;
pub(crate) const NODE_V4_LEN: usize = ID_LEN + PEER_V4_LEN;
pub(crate) const NODE_V6_LEN: usize = ID_LEN + PEER_V6_LEN;

/// Decodes a compact peer of either length; `None` for any other length.
pub(crate) fn decode_peer(bytes: &[u8]) -> Option<SocketAddr> {
    match bytes.len() {
        PEER_V4_LEN => {
            let ip = Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]);
            Some(SocketAddr::new(IpAddr::V4(ip), u16::from_be_bytes([bytes[4], bytes[5]])))
        }
        PEER_V6_LEN => {
            let ip: [u8; 16] = bytes[..16].try_into().ok()?;
            Some(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(ip)), u16::from_be_bytes([bytes[16], bytes[17]])))
        }
        _ => None,
    }
}

/// Appends the compact form of an address (6 or 18 bytes).
pub(crate) fn encode_peer(addr: &SocketAddr, out: &mut Vec<u8>) {
    match addr.ip() {
        IpAddr::V4(ip) => out.extend_from_slice(&ip.octets()),
        IpAddr::V6(ip) => out.extend_from_slice(&ip.octets()),
    }
    out.extend_from_slice(&addr.port().to_be_bytes());
}

pub(crate) fn peer_bytes(addr: &SocketAddr) -> Vec<u8> {
    let mut out = Vec::with_capacity(PEER_V6_LEN);
    encode_peer(addr, &mut out);
    out
}

/// Decodes a concatenation of compact nodes of one family (`node_len` 26 or 38). A trailing
/// partial entry is ignored, as real implementations do.
pub(crate) fn decode_nodes(bytes: &[u8], node_len: usize) -> Vec<(NodeId, SocketAddr)> {
    bytes
        .chunks_exact(node_len)
        .filter_map(|chunk| {
            let id = Id::from_bytes(&chunk[..ID_LEN])?;
            let addr = decode_peer(&chunk[ID_LEN..])?;
            Some((id, addr))
        })
        .collect()
}

/// Appends compact nodes of the given family; nodes of the other family are skipped.
pub(crate) fn encode_nodes<'a>(nodes: impl IntoIterator<Item = &'a (NodeId, SocketAddr)>, v6: bool, out: &mut Vec<u8>) {
    for (id, addr) in nodes {
        if addr.is_ipv6() == v6 {
            out.extend_from_slice(id.as_bytes());
            encode_peer(addr, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Compact peers and nodes of both families round-trip with the right lengths.
        #[test]
        fn compact_round_trip(ip4 in any::<[u8; 4]>(), ip6 in any::<[u8; 16]>(), port in any::<u16>(), id in any::<[u8; 20]>()) {
            let a4 = SocketAddr::from((ip4, port));
            let a6 = SocketAddr::from((Ipv6Addr::from(ip6), port));
            prop_assert_eq!(peer_bytes(&a4).len(), 6);
            prop_assert_eq!(peer_bytes(&a6).len(), 18);
            prop_assert_eq!(decode_peer(&peer_bytes(&a4)), Some(a4));
            prop_assert_eq!(decode_peer(&peer_bytes(&a6)), Some(a6));
            let nodes = vec![(Id(id), a4), (Id(id), a6)];
            let mut n4 = Vec::new();
            encode_nodes(&nodes, false, &mut n4);
            let mut n6 = Vec::new();
            encode_nodes(&nodes, true, &mut n6);
            prop_assert_eq!(n4.len(), 26);
            prop_assert_eq!(n6.len(), 38);
            prop_assert_eq!(decode_nodes(&n4, NODE_V4_LEN), vec![(Id(id), a4)]);
            prop_assert_eq!(decode_nodes(&n6, NODE_V6_LEN), vec![(Id(id), a6)]);
        }
    }
}
