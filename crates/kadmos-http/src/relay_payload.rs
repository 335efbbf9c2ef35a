//! The body pkarr relays exchange for a BEP 44 mutable item: `sig` (64 bytes) ‖ `seq` (8 bytes,
//! big-endian) ‖ `v` (the value's bytes, at most 1000), where the signed message is BEP 44's
//! `3:seqi<seq>e1:v<len>:<v>`: `v` is stored on the DHT as a bencoded byte string.

use kadmos::MutableItem;
use kadmos_proto::mainline::bencode;

/// Bytes of `sig` and `seq` before the value.
const HEADER: usize = 64 + 8;
/// BEP 44's largest bencoded value.
pub const MAX_VALUE: usize = 1000;
/// The largest body: header, and a value whose bencoded form fits in [`MAX_VALUE`].
pub const MAX_BODY: usize = HEADER + MAX_VALUE;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PayloadError {
    #[error("the body is {0} bytes; a relay payload is at least 72 (signature and seq)")]
    TooShort(usize),
    #[error("seq {0} does not fit BEP 44's signed 64-bit integer")]
    SeqOutOfRange(u64),
}

/// The item a relay payload describes for `public_key` and `salt` (signature not yet checked).
pub fn to_item(public_key: [u8; 32], salt: &[u8], body: &[u8]) -> Result<MutableItem, PayloadError> {
    if body.len() < HEADER {
        return Err(PayloadError::TooShort(body.len()));
    }
    let mut signature = [0u8; 64];
    signature.copy_from_slice(&body[..64]);
    let seq = u64::from_be_bytes(body[64..HEADER].try_into().expect("8 bytes"));
    let seq = i64::try_from(seq).map_err(|_| PayloadError::SeqOutOfRange(seq))?;
    let raw = &body[HEADER..];
    let mut value = Vec::with_capacity(raw.len() + 6);
    value.extend_from_slice(format!("{}:", raw.len()).as_bytes());
    value.extend_from_slice(raw);
    Ok(MutableItem { public_key, salt: salt.to_vec(), seq, value, signature })
}

/// The payload of an item, or `None` when its value is not a byte string (an item put by
/// something other than a pkarr client: it has no relay form).
pub fn from_item(item: &MutableItem) -> Option<Vec<u8>> {
    let raw = bencode::decode(&item.value).ok()?.as_bytes()?.to_vec();
    let seq = u64::try_from(item.seq).ok()?;
    let mut body = Vec::with_capacity(HEADER + raw.len());
    body.extend_from_slice(&item.signature);
    body.extend_from_slice(&seq.to_be_bytes());
    body.extend_from_slice(&raw);
    Some(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kadmos::ItemSigner;

    /// A payload made from an item signed with BEP 44's rules reads back as the same item, whose
    /// signature verifies; short bodies and negative seqs are refused.
    #[test]
    fn payload_round_trip() {
        let signer = ItemSigner::from_seed([7; 32]);
        let item = MutableItem::sign(&signer, b"", 42, b"5:hello".to_vec()).unwrap();
        let body = from_item(&item).unwrap();
        assert_eq!(&body[72..], b"hello");
        let back = to_item(signer.public_key(), b"", &body).unwrap();
        assert_eq!(back, item);
        back.verify().unwrap();
        assert_eq!(to_item([0; 32], b"", &[0; 10]), Err(PayloadError::TooShort(10)));
        let mut negative = body.clone();
        negative[64] = 0x80;
        assert!(matches!(to_item([0; 32], b"", &negative), Err(PayloadError::SeqOutOfRange(_))));
    }
}
