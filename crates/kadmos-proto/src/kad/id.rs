//! 160-bit identifiers shared by both networks: node IDs, infohashes, item targets and
//! OpenDHT keys are all points in the same XOR metric space.

use std::fmt;
use std::str::FromStr;

use rand::Rng;

/// Length of an identifier in bytes.
pub const ID_LEN: usize = 20;

/// A 160-bit identifier in the Kademlia keyspace.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Id(pub [u8; ID_LEN]);

impl Ord for Id {
    /// Byte order, compared as two integers (see [`Distance`]'s `Ord`): buckets keep their
    /// contacts in ID order and answers search them.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        as_ints(&self.0).cmp(&as_ints(&other.0))
    }
}

impl PartialOrd for Id {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// 20 bytes as a big-endian 160-bit integer, in two parts.
fn as_ints(bytes: &[u8; ID_LEN]) -> (u128, u32) {
    let (high, low) = bytes.split_at(16);
    (u128::from_be_bytes(high.try_into().expect("16 bytes")), u32::from_be_bytes(low.try_into().expect("4 bytes")))
}

/// The identifier of a node in the DHT.
pub type NodeId = Id;
/// The identifier of a torrent (the SHA-1 of its info dictionary), or any key looked up.
pub type InfoHash = Id;

/// XOR distance between two identifiers; ordered as a big-endian 160-bit integer.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, Debug)]
pub struct Distance(pub [u8; ID_LEN]);

impl Ord for Distance {
    /// Compares as two integers rather than with `memcmp`: distances are compared on every
    /// `find_node`/`get_peers` answer and in every lookup step, and a libc call per comparison
    /// of 20 bytes showed up as the top cost under load.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        as_ints(&self.0).cmp(&as_ints(&other.0))
    }
}

impl PartialOrd for Distance {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Distance {
    /// Number of leading zero bits: the length of the prefix two IDs share.
    pub fn leading_zeros(&self) -> u32 {
        match as_ints(&self.0) {
            (0, low) => 128 + low.leading_zeros(),
            (high, _) => high.leading_zeros(),
        }
    }
}

impl Id {
    /// The all-zero ID.
    pub const ZERO: Id = Id([0; ID_LEN]);
    /// The all-ones ID, the farthest from [`Id::ZERO`].
    pub const MAX: Id = Id([0xff; ID_LEN]);

    /// The ID as a big-endian 160-bit integer, in two parts: XOR and compare on these where a
    /// loop does it many times (see `routing_table`).
    pub(crate) fn to_ints(self) -> (u128, u32) {
        as_ints(&self.0)
    }

    /// The ID in `bytes`, if there are exactly 20 of them.
    pub fn from_bytes(bytes: &[u8]) -> Option<Id> {
        <[u8; ID_LEN]>::try_from(bytes).ok().map(Id)
    }

    /// The ID's 20 bytes, most significant first.
    pub fn as_bytes(&self) -> &[u8; ID_LEN] {
        &self.0
    }

    /// A uniformly random ID drawn from `rng`.
    pub fn random<R: Rng + ?Sized>(rng: &mut R) -> Id {
        let mut bytes = [0u8; ID_LEN];
        rng.fill(&mut bytes[..]);
        Id(bytes)
    }

    /// SHA-1 of `data`: how infohashes, BEP 44 targets and OpenDHT's `InfoHash::get` are made.
    pub fn sha1_of(data: &[u8]) -> Id {
        use sha1::{Digest, Sha1};
        Id(Sha1::digest(data).into())
    }

    /// An OpenDHT key from a name, as OpenDHT's `InfoHash::get(std::string)` makes it: the SHA-1
    /// of the string's UTF-8 bytes. (Mainline has no such convention: an infohash is the SHA-1
    /// of a torrent's info dictionary, a BEP 44 target that of an item.)
    pub fn of_str(name: &str) -> Id {
        Id::sha1_of(name.as_bytes())
    }

    /// The same as [`Id::of_str`], under the name OpenDHT users look for: `InfoHash::of("room")`.
    pub fn of(name: &str) -> Id {
        Id::of_str(name)
    }

    /// XOR distance to `other`: the Kademlia metric both networks route by.
    pub fn distance(&self, other: &Id) -> Distance {
        let mut out = [0u8; ID_LEN];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = self.0[i] ^ other.0[i];
        }
        Distance(out)
    }

    /// Bit `index` counted from the most significant bit (0..160).
    pub fn bit(&self, index: usize) -> bool {
        self.0[index / 8] & (0x80 >> (index % 8)) != 0
    }

    /// A random identifier sharing the first `prefix_len` bits with `self`, used to refresh a
    /// bucket with a lookup of an ID it covers.
    pub fn random_with_prefix<R: Rng + ?Sized>(&self, prefix_len: usize, rng: &mut R) -> Id {
        let mut out = Id::random(rng);
        for i in 0..prefix_len.min(ID_LEN * 8) {
            let mask = 0x80 >> (i % 8);
            if self.bit(i) {
                out.0[i / 8] |= mask;
            } else {
                out.0[i / 8] &= !mask;
            }
        }
        out
    }
}

/// Why a string is not an identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected 40 hexadecimal digits for a 160-bit id, got {0:?}")]
pub struct ParseIdError(pub String);

impl FromStr for Id {
    type Err = ParseIdError;
    fn from_str(s: &str) -> Result<Id, ParseIdError> {
        let mut bytes = [0u8; ID_LEN];
        hex::decode_to_slice(s.trim(), &mut bytes).map_err(|_| ParseIdError(s.to_string()))?;
        Ok(Id(bytes))
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in self.0 {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Id({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Hex display and parsing are inverse, and bad strings are rejected with an error.
    #[test]
    fn hex_round_trip_and_errors() {
        let id: Id = "4a533d47ec9c7d95b1ad75f576cffc641853b750".parse().unwrap();
        assert_eq!(id.to_string(), "4a533d47ec9c7d95b1ad75f576cffc641853b750");
        assert!("4a53".parse::<Id>().is_err());
        assert!("zz533d47ec9c7d95b1ad75f576cffc641853b750".parse::<Id>().is_err());
    }

    /// SHA-1 matches the BEP 44 immutable test vector's target.
    #[test]
    fn sha1_matches_bep44_vector() {
        assert_eq!(Id::sha1_of(b"12:Hello World!").to_string(), "e5f96f6f38320f0f33959cb4d3d656452117aadb");
    }

    /// `of_str` gives OpenDHT's `InfoHash::get("hello")`, the SHA-1 of the string.
    #[test]
    fn of_str_is_opendht_infohash_get() {
        assert_eq!(Id::of_str("hello").to_string(), "aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d");
        assert_eq!(Id::of_str(""), Id::sha1_of(b""));
        assert_eq!(crate::InfoHash::of("hello"), Id::of_str("hello"));
    }

    proptest! {
        /// XOR distance is a metric: zero to itself, symmetric, and the shared prefix length
        /// equals the distance's leading zeros.
        #[test]
        fn distance_is_xor_metric(a in any::<[u8; 20]>(), b in any::<[u8; 20]>()) {
            let (a, b) = (Id(a), Id(b));
            prop_assert_eq!(a.distance(&a), Distance::default());
            prop_assert_eq!(a.distance(&b), b.distance(&a));
            let lz = a.distance(&b).leading_zeros() as usize;
            for i in 0..lz.min(160) { prop_assert_eq!(a.bit(i), b.bit(i)); }
            if lz < 160 { prop_assert_ne!(a.bit(lz), b.bit(lz)); }
        }

        /// Distances order exactly like the byte arrays they are (big-endian integers).
        #[test]
        fn distance_order_is_bytewise(a in any::<[u8; 20]>(), b in any::<[u8; 20]>()) {
            prop_assert_eq!(Distance(a).cmp(&Distance(b)), a.cmp(&b));
        }

        /// `random_with_prefix` keeps exactly the requested prefix.
        #[test]
        fn random_with_prefix_keeps_prefix(a in any::<[u8; 20]>(), n in 0usize..=160, seed in any::<u64>()) {
            use rand::SeedableRng;
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            let id = Id(a).random_with_prefix(n, &mut rng);
            prop_assert!(Id(a).distance(&id).leading_zeros() as usize >= n);
        }
    }
}
