//! BEP 44 items: immutable values addressed by their hash, and mutable values signed with an
//! ed25519 key, optionally salted, versioned by a sequence number.

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};

use super::bencode::{self, Encoder};
use crate::kad::Id;

/// Largest bencoded `v` accepted (BEP 44: "less than 1000 bytes").
pub(crate) const MAX_VALUE_LEN: usize = 999;
/// Longest salt accepted.
pub(crate) const MAX_SALT_LEN: usize = 64;

/// Why an item is not acceptable; each maps to a KRPC error code.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ItemError {
    /// The bencoded value is longer than 1000 bytes: how long it is.
    #[error("value is {0} bytes bencoded; at most {MAX_VALUE_LEN} are allowed")]
    ValueTooBig(usize),
    /// The salt is longer than 64 bytes: how long it is.
    #[error("salt is {0} bytes; at most {MAX_SALT_LEN} are allowed")]
    SaltTooBig(usize),
    /// The signature does not verify with the item's public key.
    #[error("invalid signature")]
    InvalidSignature,
    /// The value is not valid bencode: why.
    #[error("value is not valid bencode: {0}")]
    InvalidValue(String),
    /// The item does not hash to the target it was asked or sent for.
    #[error("the value does not hash to the requested target")]
    TargetMismatch,
    /// The put's `cas` does not match the stored sequence number.
    #[error("CAS mismatch: the stored sequence number is {}, not {expected}", current.map_or("absent".to_string(), |c| c.to_string()))]
    CasMismatch {
        /// The `cas` of the put.
        expected: i64,
        /// The stored sequence number, if an item is stored.
        current: Option<i64>,
    },
    /// The sequence number is lower than the stored one.
    #[error("sequence number {offered} is less than the stored {current}")]
    SeqTooLow {
        /// The put's sequence number.
        offered: i64,
        /// The stored sequence number.
        current: i64,
    },
}

impl ItemError {
    /// The KRPC error code BEP 44 assigns.
    pub fn code(&self) -> i64 {
        use super::message::error_code::*;
        match self {
            ItemError::ValueTooBig(_) => VALUE_TOO_BIG,
            ItemError::SaltTooBig(_) => SALT_TOO_BIG,
            ItemError::InvalidSignature => INVALID_SIGNATURE,
            ItemError::InvalidValue(_) | ItemError::TargetMismatch => PROTOCOL,
            ItemError::CasMismatch { .. } => CAS_MISMATCH,
            ItemError::SeqTooLow { .. } => SEQ_TOO_LOW,
        }
    }
}

/// A stored or fetched item.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Item {
    /// An immutable item: a value stored under its own SHA-1.
    Immutable(ImmutableItem),
    /// A mutable item: a value signed by a key, stored under the key and salt.
    Mutable(MutableItem),
}

impl Item {
    /// Where the item is stored: SHA-1 of the value, or of the public key and salt.
    pub fn target(&self) -> Id {
        match self {
            Item::Immutable(i) => i.target(),
            Item::Mutable(m) => m.target(),
        }
    }

    /// The bencoded value.
    pub fn value(&self) -> &[u8] {
        match self {
            Item::Immutable(i) => &i.value,
            Item::Mutable(m) => &m.value,
        }
    }

    /// Bytes the item takes in a store: the value, plus key, signature, sequence number and
    /// salt for a mutable item.
    pub fn len(&self) -> usize {
        match self {
            Item::Immutable(i) => i.value.len(),
            Item::Mutable(m) => m.value.len() + m.salt.len() + 32 + 64 + 8,
        }
    }

    /// Whether the value is empty (never for a valid item: bencode is at least 2 bytes).
    pub fn is_empty(&self) -> bool {
        self.value().is_empty()
    }
}

/// An immutable item: its target is the SHA-1 of its bencoded value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImmutableItem {
    /// The bencoded value.
    pub value: Vec<u8>,
}

fn check_value(value: &[u8]) -> Result<(), ItemError> {
    if value.len() > MAX_VALUE_LEN {
        return Err(ItemError::ValueTooBig(value.len()));
    }
    bencode::decode(value).map_err(|e| ItemError::InvalidValue(e.to_string()))?;
    Ok(())
}

impl ImmutableItem {
    /// An item from an already bencoded value.
    pub fn new(value: Vec<u8>) -> Result<Self, ItemError> {
        check_value(&value)?;
        Ok(ImmutableItem { value })
    }

    /// An item holding a byte string (bencoded as `<len>:<bytes>`).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ItemError> {
        let mut value = Vec::with_capacity(bytes.len() + 6);
        Encoder::new(&mut value).bytes(bytes);
        Self::new(value)
    }

    /// SHA-1 of the value: where the item is stored.
    pub fn target(&self) -> Id {
        Id::sha1_of(&self.value)
    }
}

/// A signed mutable item.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MutableItem {
    /// The ed25519 public key that signs it.
    pub public_key: [u8; 32],
    /// The salt (up to 64 bytes, often empty): one key can sign several items.
    pub salt: Vec<u8>,
    /// The sequence number: a newer version has a higher one.
    pub seq: i64,
    /// The bencoded value.
    pub value: Vec<u8>,
    /// The ed25519 signature of the salt, `seq` and value.
    pub signature: [u8; 64],
}

/// The target of a mutable item: SHA-1(public key ‖ salt).
pub fn mutable_target(public_key: &[u8; 32], salt: &[u8]) -> Id {
    let mut buf = Vec::with_capacity(32 + salt.len());
    buf.extend_from_slice(public_key);
    buf.extend_from_slice(salt);
    Id::sha1_of(&buf)
}

/// The bytes a mutable item's signature covers: `4:salt<len>:<salt>` (only with a salt),
/// then `3:seqi<seq>e1:v<value>`.
pub(crate) fn signed_buffer(salt: &[u8], seq: i64, value: &[u8]) -> Vec<u8> {
    let mut buf = Vec::with_capacity(salt.len() + value.len() + 32);
    let mut enc = Encoder::new(&mut buf);
    if !salt.is_empty() {
        enc.bytes(b"salt");
        enc.bytes(salt);
    }
    enc.bytes(b"seq");
    enc.int(seq);
    enc.bytes(b"v");
    enc.raw(value);
    buf
}

/// The secret half of a mutable item's key: an ordinary 32-byte ed25519 seed, or the
/// 64-byte expanded form (clamped scalar ‖ prefix) that libtorrent and the BEP use.
#[derive(Clone)]
pub enum ItemSigner {
    /// A 32-byte ed25519 seed.
    Seed(SigningKey),
    /// A 64-byte expanded secret key, with its public key.
    Expanded {
        /// The clamped scalar and the prefix.
        bytes: [u8; 64],
        /// The public key.
        public: VerifyingKey,
    },
}

impl std::fmt::Debug for ItemSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ItemSigner({})", hex::encode(self.public_key()))
    }
}

impl ItemSigner {
    /// A key from its 32-byte seed.
    pub fn from_seed(seed: [u8; 32]) -> Self {
        ItemSigner::Seed(SigningKey::from_bytes(&seed))
    }

    /// A key from its 64-byte expanded form.
    pub fn from_expanded(bytes: &[u8; 64]) -> Self {
        let expanded = ed25519_dalek::hazmat::ExpandedSecretKey::from_bytes(bytes);
        let public = VerifyingKey::from(&expanded);
        ItemSigner::Expanded { bytes: *bytes, public }
    }

    /// A key from 32 (seed) or 64 (expanded) bytes.
    pub fn from_secret(bytes: &[u8]) -> Option<Self> {
        match bytes.len() {
            32 => Some(Self::from_seed(bytes.try_into().ok()?)),
            64 => Some(Self::from_expanded(bytes.try_into().ok()?)),
            _ => None,
        }
    }

    /// The secret as stored in a key file: the 32-byte seed, or the 64-byte expanded key.
    pub fn secret_bytes(&self) -> Vec<u8> {
        match self {
            ItemSigner::Seed(k) => k.to_bytes().to_vec(),
            ItemSigner::Expanded { bytes, .. } => bytes.to_vec(),
        }
    }

    /// The ed25519 public key: a mutable item's `k`.
    pub fn public_key(&self) -> [u8; 32] {
        match self {
            ItemSigner::Seed(k) => k.verifying_key().to_bytes(),
            ItemSigner::Expanded { public, .. } => public.to_bytes(),
        }
    }

    fn sign(&self, message: &[u8]) -> [u8; 64] {
        match self {
            ItemSigner::Seed(k) => k.sign(message).to_bytes(),
            ItemSigner::Expanded { bytes, public } => {
                let expanded = ed25519_dalek::hazmat::ExpandedSecretKey::from_bytes(bytes);
                ed25519_dalek::hazmat::raw_sign::<sha2::Sha512>(&expanded, message, public).to_bytes()
            }
        }
    }
}

impl MutableItem {
    /// Signs a new version of an item.
    pub fn sign(signer: &ItemSigner, salt: &[u8], seq: i64, value: Vec<u8>) -> Result<Self, ItemError> {
        check_value(&value)?;
        if salt.len() > MAX_SALT_LEN {
            return Err(ItemError::SaltTooBig(salt.len()));
        }
        let signature = signer.sign(&signed_buffer(salt, seq, &value));
        Ok(MutableItem { public_key: signer.public_key(), salt: salt.to_vec(), seq, value, signature })
    }

    /// SHA-1 of the public key and salt: where the item is stored.
    pub fn target(&self) -> Id {
        mutable_target(&self.public_key, &self.salt)
    }

    /// Checks sizes and the signature.
    pub fn verify(&self) -> Result<(), ItemError> {
        check_value(&self.value)?;
        if self.salt.len() > MAX_SALT_LEN {
            return Err(ItemError::SaltTooBig(self.salt.len()));
        }
        let key = VerifyingKey::from_bytes(&self.public_key).map_err(|_| ItemError::InvalidSignature)?;
        key.verify(&signed_buffer(&self.salt, self.seq, &self.value), &Signature::from_bytes(&self.signature))
            .map_err(|_| ItemError::InvalidSignature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vector_signer() -> ItemSigner {
        let secret = hex::decode("e06d3183d14159228433ed599221b80bd0a5ce8352e4bdf0262f76786ef1c74db7e7a9fea2c0eb269d61e3b38e450a22e754941ac78479d6c54e1faf6037881d").unwrap();
        ItemSigner::from_secret(&secret).unwrap()
    }

    /// BEP 44 test vector 1: signing "Hello World!" at seq 1 with the 64-byte expanded key gives
    /// the published signature, target and signed buffer.
    #[test]
    fn bep44_vector_1_mutable() {
        let signer = vector_signer();
        assert_eq!(
            hex::encode(signer.public_key()),
            "77ff84905a91936367c01360803104f92432fcd904a43511876df5cdf3e7e548"
        );
        assert_eq!(signed_buffer(b"", 1, b"12:Hello World!"), b"3:seqi1e1:v12:Hello World!");
        let item = MutableItem::sign(&signer, b"", 1, b"12:Hello World!".to_vec()).unwrap();
        assert_eq!(hex::encode(item.signature), "305ac8aeb6c9c151fa120f120ea2cfb923564e11552d06a5d856091e5e853cff1260d3f39e4999684aa92eb73ffd136e6f4f3ecbfda0ce53a1608ecd7ae21f01");
        assert_eq!(item.target().to_string(), "4a533d47ec9c7d95b1ad75f576cffc641853b750");
        item.verify().unwrap();
    }

    /// BEP 44 test vector 2: the same with salt "foobar".
    #[test]
    fn bep44_vector_2_salted() {
        let item = MutableItem::sign(&vector_signer(), b"foobar", 1, b"12:Hello World!".to_vec()).unwrap();
        assert_eq!(signed_buffer(b"foobar", 1, b"12:Hello World!"), b"4:salt6:foobar3:seqi1e1:v12:Hello World!");
        assert_eq!(hex::encode(item.signature), "6834284b6b24c3204eb2fea824d82f88883a3d95e8b4a21b8c0ded553d17d17ddf9a8a7104b1258f30bed3787e6cb896fca78c58f8e03b5f18f14951a87d9a08");
        assert_eq!(item.target().to_string(), "411eba73b6f087ca51a3795d9c8c938d365e32c1");
        item.verify().unwrap();
    }

    /// BEP 44 test vector 3: the immutable item's target.
    #[test]
    fn bep44_vector_3_immutable() {
        let item = ImmutableItem::from_bytes(b"Hello World!").unwrap();
        assert_eq!(item.value, b"12:Hello World!");
        assert_eq!(item.target().to_string(), "e5f96f6f38320f0f33959cb4d3d656452117aadb");
    }

    /// Tampering with any signed field breaks verification; limits give the BEP's codes.
    #[test]
    fn verification_and_limits() {
        let signer = ItemSigner::from_seed([7; 32]);
        let item = MutableItem::sign(&signer, b"s", 5, b"i42e".to_vec()).unwrap();
        item.verify().unwrap();
        let mut forged = item.clone();
        forged.seq = 6;
        assert_eq!(forged.verify(), Err(ItemError::InvalidSignature));
        let mut forged = item.clone();
        forged.value = b"i43e".to_vec();
        assert_eq!(forged.verify().unwrap_err().code(), 206);
        let big = format!("1000:{}", "x".repeat(1000));
        assert_eq!(ImmutableItem::new(big.into_bytes()).unwrap_err().code(), 205);
        assert_eq!(MutableItem::sign(&signer, &[0; 65], 1, b"i1e".to_vec()).unwrap_err().code(), 207);
        assert!(matches!(ImmutableItem::new(b"not bencode".to_vec()), Err(ItemError::InvalidValue(_))));
    }
}
