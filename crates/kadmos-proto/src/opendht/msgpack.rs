//! msgpack, bounded: a reader that refuses hostile input and a writer that packs exactly like
//! OpenDHT's msgpack-c does.
//!
//! Why rmpv for reading: `rmpv::decode::read_value_ref_with_max_depth` borrows from the datagram
//! (no copies), never preallocates from a length prefix (an array header claiming 2^32 entries
//! costs nothing until entries actually arrive, and each entry takes at least one input byte),
//! and stops at a recursion budget instead of overflowing the stack. Its default budget is 1024,
//! which is far more than a DHT message needs and deep enough to make hostile input expensive,
//! so we pass our own, derived from [`MAX_NESTING`]. We also cap the input length, which bounds
//! every allocation the reader makes by a small multiple of the datagram size.
//!
//! Why rmp for writing: its `write_*` functions choose the smallest encoding for every integer,
//! string, binary, array and map header, which is what msgpack-c's packer does. That matters:
//! a signature covers a re-packed value body, so our packing must be byte-identical to OpenDHT's.
//!
//! The accessors below read objects the way OpenDHT's `msgpack::object::as<T>()` calls do, so
//! that what kadmos accepts is what OpenDHT accepts.

use rmpv::ValueRef;

use crate::kad::{Id, ID_LEN};

/// Longest input accepted: a UDP datagram cannot be longer, and a reassembled value is capped
/// far below this (see [`Reassembly`](super::Reassembly)).
pub const MAX_INPUT_LEN: usize = 65_536;

/// Deepest nesting of arrays and maps accepted. OpenDHT's deepest message (a value inside a
/// `put`: message → `a` → `values` → value → `dat` → `body`) nests 6 containers.
pub const MAX_NESTING: usize = 16;

/// rmpv spends one unit of its budget entering any object and one more entering a container's
/// contents or a binary's payload (a string spends two there). A budget of `2k + 3` lets any
/// leaf sit inside `k` containers; an integer (the cheapest leaf) fits inside `k + 1`; nothing
/// sits inside `k + 2`.
const RMPV_DEPTH_BUDGET: usize = 2 * MAX_NESTING + 3;

/// Why input is not acceptable msgpack.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MsgpackError {
    /// Input longer than [`MAX_INPUT_LEN`] bytes: how long it is.
    #[error("input of {0} bytes is longer than {MAX_INPUT_LEN}")]
    TooLong(usize),
    /// Containers nested deeper than [`MAX_NESTING`].
    #[error("nesting deeper than {MAX_NESTING}")]
    TooDeep,
    /// Not msgpack: why.
    #[error("malformed msgpack: {0}")]
    Malformed(String),
}

/// Reads the msgpack object at the start of `input`.
///
/// Bytes after the first object are ignored, as msgpack-c's `unpack` (which OpenDHT calls on
/// every datagram) ignores them.
pub fn read(input: &[u8]) -> Result<ValueRef<'_>, MsgpackError> {
    if input.len() > MAX_INPUT_LEN {
        return Err(MsgpackError::TooLong(input.len()));
    }
    let mut reader = input;
    rmpv::decode::read_value_ref_with_max_depth(&mut reader, RMPV_DEPTH_BUDGET).map_err(|e| match e {
        rmpv::decode::Error::DepthLimitExceeded => MsgpackError::TooDeep,
        other => MsgpackError::Malformed(other.to_string()),
    })
}

/// The entries of a map object.
pub(crate) type Map<'a> = [(ValueRef<'a>, ValueRef<'a>)];

pub(crate) fn as_map<'b, 'a>(v: &'b ValueRef<'a>) -> Option<&'b Map<'a>> {
    match v {
        ValueRef::Map(entries) => Some(entries),
        _ => None,
    }
}

pub(crate) fn as_array<'b, 'a>(v: &'b ValueRef<'a>) -> Option<&'b [ValueRef<'a>]> {
    match v {
        ValueRef::Array(items) => Some(items),
        _ => None,
    }
}

fn key_is(k: &ValueRef<'_>, key: &str) -> bool {
    matches!(k, ValueRef::String(s) if s.as_bytes() == key.as_bytes())
}

/// The value of the first entry whose key is the string `key` (OpenDHT's `findMapValue`, used
/// for values and queries). Entries with non-string keys are skipped.
pub(crate) fn get<'b, 'a>(map: &'b Map<'a>, key: &str) -> Option<&'b ValueRef<'a>> {
    map.iter().find(|(k, _)| key_is(k, key)).map(|(_, v)| v)
}

/// The value of the last entry whose key is `key`: OpenDHT reads a message's top-level map and
/// its argument map in one loop that assigns each key it meets, so a repeated key's last
/// occurrence wins there.
pub(crate) fn get_last<'b, 'a>(map: &'b Map<'a>, key: &str) -> Option<&'b ValueRef<'a>> {
    map.iter().rev().find(|(k, _)| key_is(k, key)).map(|(_, v)| v)
}

/// A non-negative integer, whatever its encoding (msgpack-c calls every integer >= 0 positive).
pub(crate) fn as_uint(v: &ValueRef<'_>) -> Option<u64> {
    match v {
        ValueRef::Integer(i) => i.as_u64(),
        _ => None,
    }
}

pub(crate) fn as_u32(v: &ValueRef<'_>) -> Option<u32> {
    as_uint(v).and_then(|u| u32::try_from(u).ok())
}

pub(crate) fn as_u16(v: &ValueRef<'_>) -> Option<u16> {
    as_uint(v).and_then(|u| u16::try_from(u).ok())
}

pub(crate) fn as_int(v: &ValueRef<'_>) -> Option<i64> {
    match v {
        ValueRef::Integer(i) => i.as_i64(),
        _ => None,
    }
}

pub(crate) fn as_bool(v: &ValueRef<'_>) -> Option<bool> {
    match v {
        ValueRef::Boolean(b) => Some(*b),
        _ => None,
    }
}

/// Bytes as OpenDHT's `unpackBlob` reads them: a binary, a string's bytes, or an array of
/// integers 0..=255.
pub(crate) fn as_blob(v: &ValueRef<'_>) -> Option<Vec<u8>> {
    match v {
        ValueRef::Binary(b) => Some(b.to_vec()),
        ValueRef::String(s) => Some(s.as_bytes().to_vec()),
        ValueRef::Array(items) => items.iter().map(|i| as_uint(i).and_then(|u| u8::try_from(u).ok())).collect(),
        _ => None,
    }
}

/// A string or binary holding UTF-8 text (msgpack-c converts both to `std::string`).
pub(crate) fn as_text(v: &ValueRef<'_>) -> Option<String> {
    let bytes = match v {
        ValueRef::String(s) => s.as_bytes(),
        ValueRef::Binary(b) => b,
        _ => return None,
    };
    std::str::from_utf8(bytes).ok().map(str::to_owned)
}

/// Raw bytes of a string or binary, for free-form text shown to people (lossy later).
pub(crate) fn as_raw_text<'b>(v: &'b ValueRef<'_>) -> Option<&'b [u8]> {
    match v {
        ValueRef::String(s) => Some(s.as_bytes()),
        ValueRef::Binary(b) => Some(b),
        _ => None,
    }
}

/// A 160-bit hash: OpenDHT accepts exactly a 20-byte binary and nothing else.
pub(crate) fn as_hash(v: &ValueRef<'_>) -> Option<Id> {
    match v {
        ValueRef::Binary(b) if b.len() == ID_LEN => Id::from_bytes(b),
        _ => None,
    }
}

/// A transaction or socket id as OpenDHT's `unpackTid` reads it: an integer that fits in 32
/// bits, or (older peers) 4 raw bytes in network order.
pub(crate) fn as_tid(v: &ValueRef<'_>) -> Option<u32> {
    match v {
        ValueRef::Integer(_) => as_u32(v),
        ValueRef::Binary(b) => <[u8; 4]>::try_from(*b).ok().map(u32::from_be_bytes),
        ValueRef::String(s) => <[u8; 4]>::try_from(s.as_bytes()).ok().map(u32::from_be_bytes),
        _ => None,
    }
}

/// Appends msgpack to a buffer, always in the smallest encoding (as msgpack-c packs).
///
/// Writing into a `Vec` cannot fail, so the writer's `io::Result`s are dropped.
pub(crate) struct Writer<'o> {
    out: &'o mut Vec<u8>,
}

fn len32(len: usize) -> u32 {
    // Every length we write is bounded far below 4 GiB (values by MAX_VALUE_SIZE, messages by
    // the datagram size); saturate rather than wrap if that ever stopped being true.
    u32::try_from(len).unwrap_or(u32::MAX)
}

impl<'o> Writer<'o> {
    pub(crate) fn new(out: &'o mut Vec<u8>) -> Writer<'o> {
        Writer { out }
    }

    pub(crate) fn map(&mut self, len: usize) -> &mut Self {
        let _ = rmp::encode::write_map_len(self.out, len32(len));
        self
    }

    pub(crate) fn array(&mut self, len: usize) -> &mut Self {
        let _ = rmp::encode::write_array_len(self.out, len32(len));
        self
    }

    pub(crate) fn str(&mut self, s: &str) -> &mut Self {
        let _ = rmp::encode::write_str(self.out, s);
        self
    }

    pub(crate) fn bin(&mut self, b: &[u8]) -> &mut Self {
        let _ = rmp::encode::write_bin(self.out, b);
        self
    }

    pub(crate) fn uint(&mut self, u: u64) -> &mut Self {
        let _ = rmp::encode::write_uint(self.out, u);
        self
    }

    pub(crate) fn int(&mut self, i: i64) -> &mut Self {
        let _ = rmp::encode::write_sint(self.out, i);
        self
    }

    pub(crate) fn bool(&mut self, b: bool) -> &mut Self {
        let _ = rmp::encode::write_bool(self.out, b);
        self
    }

    pub(crate) fn nil(&mut self) -> &mut Self {
        let _ = rmp::encode::write_nil(self.out);
        self
    }

    /// Writes a string key followed by nothing: the caller writes the value next.
    pub(crate) fn key(&mut self, k: &str) -> &mut Self {
        self.str(k)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested_arrays(depth: usize, leaf: &[u8]) -> Vec<u8> {
        let mut bytes = vec![0x91; depth];
        bytes.extend_from_slice(leaf);
        bytes
    }

    /// Any object nested inside MAX_NESTING containers is read; nothing nested inside
    /// MAX_NESTING + 2 is; far deeper hostile input (which an unbounded reader would follow until
    /// the stack overflows) is refused.
    #[test]
    fn nesting_limit() {
        for leaf in [&[0x01][..], &[0xc4, 0x01, 0xaa], &[0xa1, b'x'], &[0x90], &[0x80]] {
            assert!(read(&nested_arrays(MAX_NESTING, leaf)).is_ok(), "leaf {leaf:x?}");
            assert_eq!(read(&nested_arrays(MAX_NESTING + 2, leaf)), Err(MsgpackError::TooDeep), "leaf {leaf:x?}");
        }
        assert_eq!(read(&nested_arrays(60_000, &[0x01])), Err(MsgpackError::TooDeep));
        let mut maps = vec![];
        for _ in 0..20_000 {
            maps.extend_from_slice(&[0x81, 0xa1, b'k']);
        }
        maps.push(0x01);
        assert_eq!(read(&maps), Err(MsgpackError::TooDeep));
    }

    /// Length prefixes far beyond the input fail as truncated without allocating for them.
    #[test]
    fn huge_lengths_are_truncation_not_allocation() {
        for bytes in [
            &[0xdd, 0xff, 0xff, 0xff, 0xff][..],      // array32 of 4 G entries
            &[0xdf, 0xff, 0xff, 0xff, 0xff, 0x01],    // map32
            &[0xc6, 0xff, 0xff, 0xff, 0xff, 0x00],    // bin32
            &[0xdb, 0xff, 0xff, 0xff, 0xff, b'a'],    // str32
            &[0xc9, 0xff, 0xff, 0xff, 0xff, 0x01, 0], // ext32
        ] {
            assert!(matches!(read(bytes), Err(MsgpackError::Malformed(_))), "{bytes:x?}");
        }
        assert_eq!(read(&vec![0xc0; MAX_INPUT_LEN + 1]), Err(MsgpackError::TooLong(MAX_INPUT_LEN + 1)));
    }

    /// The writer picks the smallest encodings, like msgpack-c.
    #[test]
    fn writer_is_minimal() {
        let mut out = Vec::new();
        Writer::new(&mut out).uint(5).uint(200).uint(70_000).int(-1).int(300).str("ab").bin(b"x").map(1).array(0);
        assert_eq!(
            out,
            [
                0x05, 0xcc, 200, 0xce, 0x00, 0x01, 0x11, 0x70, 0xff, 0xcd, 0x01, 0x2c, 0xa2, b'a', b'b', 0xc4, 1, b'x',
                0x81, 0x90
            ]
        );
    }

    /// Transaction ids are integers, or 4 bytes in network order from old peers.
    #[test]
    fn tids() {
        assert_eq!(as_tid(&read(&[0xce, 1, 2, 3, 4]).unwrap()), Some(0x0102_0304));
        assert_eq!(as_tid(&read(&[0xc4, 4, 1, 2, 3, 4]).unwrap()), Some(0x0102_0304));
        assert_eq!(as_tid(&read(&[0xcf, 0, 0, 0, 1, 0, 0, 0, 0]).unwrap()), None);
        assert_eq!(as_tid(&read(&[0xc4, 3, 1, 2, 3]).unwrap()), None);
        assert_eq!(as_tid(&read(&[0xff]).unwrap()), None);
    }
}
