//! Bencode, bounded: a borrowing decoder that refuses hostile input, and an encoder.
//!
//! Why by hand: KRPC messages are tiny and shallow, and the decoder sits on the hot path of
//! every datagram. bt_bencode is fast but recurses without a bound (a datagram of `l` bytes
//! overflows the stack), and bendy rejects dictionaries with unsorted keys, which real peers
//! sometimes send. This decoder borrows from the datagram (no copies), limits nesting depth and
//! the number of values, keeps dictionary keys in wire order (lookups are linear; KRPC dicts
//! hold a handful of keys) and remembers each dict entry's raw bytes, which BEP 44 needs to
//! hash and sign `v` exactly as it was sent.

use std::fmt;

/// Deepest nesting accepted. KRPC itself needs 3 levels; BEP 44 values may nest a little.
pub const MAX_DEPTH: usize = 32;
/// Most values (of any kind) in one input: a 1500-byte datagram holds far fewer real ones.
pub const MAX_VALUES: usize = 4096;

/// A decoded bencode value borrowing from its input.
#[derive(Clone, PartialEq, Eq)]
pub enum Value<'a> {
    /// An integer (`i…e`).
    Int(i64),
    /// A byte string (`<len>:<bytes>`).
    Bytes(&'a [u8]),
    /// A list (`l…e`).
    List(Vec<Value<'a>>),
    /// A dictionary (`d…e`), entries in wire order.
    Dict(Vec<DictEntry<'a>>),
}

/// One dictionary entry, with the raw encoding of its value.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct DictEntry<'a> {
    /// The key.
    pub key: &'a [u8],
    /// The value, decoded.
    pub value: Value<'a>,
    /// The value's bytes as they were in the input.
    pub raw: &'a [u8],
}

impl<'a> Value<'a> {
    /// The byte string, if this is one.
    pub fn as_bytes(&self) -> Option<&'a [u8]> {
        match self {
            Value::Bytes(b) => Some(b),
            _ => None,
        }
    }
    /// The integer, if this is one.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }
    /// The items, if this is a list.
    pub fn as_list(&self) -> Option<&[Value<'a>]> {
        match self {
            Value::List(l) => Some(l),
            _ => None,
        }
    }
    /// The entries in wire order, if this is a dictionary.
    pub fn as_dict(&self) -> Option<&[DictEntry<'a>]> {
        match self {
            Value::Dict(d) => Some(d),
            _ => None,
        }
    }
    /// The first entry with this key, if `self` is a dict.
    pub fn get(&self, key: &str) -> Option<&Value<'a>> {
        self.get_entry(key).map(|e| &e.value)
    }
    /// The first entry with this key, raw bytes included, if `self` is a dict.
    pub fn get_entry(&self, key: &str) -> Option<&DictEntry<'a>> {
        self.as_dict()?.iter().find(|e| e.key == key.as_bytes())
    }
}

impl fmt::Debug for Value<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Int(i) => write!(f, "{i}"),
            Value::Bytes(b) => match std::str::from_utf8(b) {
                Ok(s) if s.chars().all(|c| !c.is_control()) => write!(f, "{s:?}"),
                _ => write!(f, "0x{}", hex::encode(b)),
            },
            Value::List(l) => f.debug_list().entries(l).finish(),
            Value::Dict(d) => f
                .debug_map()
                .entries(d.iter().map(|e| (String::from_utf8_lossy(e.key).into_owned(), &e.value)))
                .finish(),
        }
    }
}

/// Why input is not acceptable bencode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BencodeError {
    /// The input ends inside a value.
    #[error("input ends in the middle of a value")]
    Truncated,
    /// A byte that cannot start a value here, and its offset.
    #[error("unexpected byte {0:#04x} at offset {1}")]
    Unexpected(u8, usize),
    /// An integer that is empty, not decimal, has a leading zero, is `-0` or overflows an
    /// `i64`; the offset of its digits.
    #[error("malformed integer at offset {0}")]
    BadInteger(usize),
    /// A byte string length that is not a plain decimal or is too long, at this offset.
    #[error("malformed string length at offset {0}")]
    BadLength(usize),
    /// Lists and dictionaries nested deeper than [`MAX_DEPTH`].
    #[error("nesting deeper than {MAX_DEPTH}")]
    TooDeep,
    /// More than [`MAX_VALUES`] values.
    #[error("more than {MAX_VALUES} values")]
    TooManyValues,
    /// A dictionary key that is not a byte string, at this offset.
    #[error("dictionary key is not a string at offset {0}")]
    NonStringKey(usize),
    /// Bytes left after the value ends; how many.
    #[error("{0} bytes of trailing data")]
    TrailingData(usize),
}

struct Decoder<'a> {
    input: &'a [u8],
    pos: usize,
    values: usize,
}

/// Decodes exactly one value spanning the whole input.
pub fn decode(input: &[u8]) -> Result<Value<'_>, BencodeError> {
    let (value, used) = decode_prefix(input)?;
    if used != input.len() {
        return Err(BencodeError::TrailingData(input.len() - used));
    }
    Ok(value)
}

/// Decodes one value at the start of `input`, returning it and the number of bytes it used.
pub fn decode_prefix(input: &[u8]) -> Result<(Value<'_>, usize), BencodeError> {
    let mut decoder = Decoder { input, pos: 0, values: 0 };
    let value = decoder.value(0)?;
    Ok((value, decoder.pos))
}

impl<'a> Decoder<'a> {
    fn peek(&self) -> Result<u8, BencodeError> {
        self.input.get(self.pos).copied().ok_or(BencodeError::Truncated)
    }

    fn value(&mut self, depth: usize) -> Result<Value<'a>, BencodeError> {
        if depth >= MAX_DEPTH {
            return Err(BencodeError::TooDeep);
        }
        self.values += 1;
        if self.values > MAX_VALUES {
            return Err(BencodeError::TooManyValues);
        }
        match self.peek()? {
            b'i' => {
                self.pos += 1;
                let start = self.pos;
                let end = start + self.input[start..].iter().position(|&b| b == b'e').ok_or(BencodeError::Truncated)?;
                let digits = &self.input[start..end];
                let valid = match digits {
                    [] | [b'-'] => false,
                    [b'-', b'0', ..] => false,
                    [b'0', _, ..] => false,
                    [b'-', rest @ ..] | rest => rest.iter().all(u8::is_ascii_digit),
                };
                if !valid {
                    return Err(BencodeError::BadInteger(start));
                }
                let n = std::str::from_utf8(digits)
                    .ok()
                    .and_then(|s| s.parse::<i64>().ok())
                    .ok_or(BencodeError::BadInteger(start))?;
                self.pos = end + 1;
                Ok(Value::Int(n))
            }
            b'0'..=b'9' => self.bytes().map(Value::Bytes),
            b'l' => {
                self.pos += 1;
                let mut list = Vec::new();
                while self.peek()? != b'e' {
                    list.push(self.value(depth + 1)?);
                }
                self.pos += 1;
                Ok(Value::List(list))
            }
            b'd' => {
                self.pos += 1;
                let mut dict = Vec::new();
                while self.peek()? != b'e' {
                    if !self.peek()?.is_ascii_digit() {
                        return Err(BencodeError::NonStringKey(self.pos));
                    }
                    let key = self.bytes()?;
                    let start = self.pos;
                    let value = self.value(depth + 1)?;
                    dict.push(DictEntry { key, value, raw: &self.input[start..self.pos] });
                }
                self.pos += 1;
                Ok(Value::Dict(dict))
            }
            other => Err(BencodeError::Unexpected(other, self.pos)),
        }
    }

    fn bytes(&mut self) -> Result<&'a [u8], BencodeError> {
        let start = self.pos;
        let colon = start
            + self.input[start..].iter().take(8).position(|&b| b == b':').ok_or_else(|| {
                if self.input.len() - start < 8 {
                    BencodeError::Truncated
                } else {
                    BencodeError::BadLength(start)
                }
            })?;
        let digits = &self.input[start..colon];
        if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) || (digits.len() > 1 && digits[0] == b'0') {
            return Err(BencodeError::BadLength(start));
        }
        let len: usize =
            std::str::from_utf8(digits).unwrap_or("x").parse().map_err(|_| BencodeError::BadLength(start))?;
        let begin = colon + 1;
        let end = begin.checked_add(len).ok_or(BencodeError::BadLength(start))?;
        if end > self.input.len() {
            return Err(BencodeError::Truncated);
        }
        self.pos = end;
        Ok(&self.input[begin..end])
    }
}

/// Appends bencode to a buffer. Callers write dictionary keys in sorted order, as the
/// format requires; [`Encoder::dict`] checks this in debug builds.
pub struct Encoder<'b> {
    out: &'b mut Vec<u8>,
}

impl<'b> Encoder<'b> {
    /// An encoder appending to `out`.
    pub fn new(out: &'b mut Vec<u8>) -> Self {
        Encoder { out }
    }

    /// Appends an integer.
    pub fn int(&mut self, n: i64) {
        self.out.push(b'i');
        if n < 0 {
            self.out.push(b'-');
        }
        write_decimal(self.out, n.unsigned_abs());
        self.out.push(b'e');
    }

    /// Appends a byte string.
    pub fn bytes(&mut self, b: &[u8]) {
        write_decimal(self.out, b.len() as u64);
        self.out.push(b':');
        self.out.extend_from_slice(b);
    }

    /// A byte string of `len` bytes written in place by `fill` (saves a temporary buffer
    /// for compact node lists).
    pub fn bytes_with(&mut self, len: usize, fill: impl FnOnce(&mut Vec<u8>)) {
        write_decimal(self.out, len as u64);
        self.out.push(b':');
        let start = self.out.len();
        fill(self.out);
        debug_assert_eq!(self.out.len() - start, len, "bytes_with wrote the wrong length");
    }

    /// Appends bytes that are already bencoded (a BEP 44 `v`, for instance).
    pub fn raw(&mut self, encoded: &[u8]) {
        self.out.extend_from_slice(encoded);
    }

    /// Appends a list whose items `body` writes.
    pub fn list(&mut self, body: impl FnOnce(&mut Encoder<'_>)) {
        self.out.push(b'l');
        body(&mut Encoder { out: self.out });
        self.out.push(b'e');
    }

    /// Appends a dictionary whose entries `body` writes, keys in sorted order.
    pub fn dict(&mut self, body: impl FnOnce(&mut DictEncoder<'_>)) {
        self.out.push(b'd');
        let mut d = DictEncoder { enc: Encoder { out: self.out }, last_key: None };
        body(&mut d);
        self.out.push(b'e');
    }

    /// Encodes a decoded value back (dict keys in the order they were decoded).
    pub fn value(&mut self, value: &Value<'_>) {
        match value {
            Value::Int(i) => self.int(*i),
            Value::Bytes(b) => self.bytes(b),
            Value::List(l) => self.list(|e| l.iter().for_each(|v| e.value(v))),
            Value::Dict(d) => {
                self.out.push(b'd');
                for entry in d {
                    self.bytes(entry.key);
                    self.value(&entry.value);
                }
                self.out.push(b'e');
            }
        }
    }
}

/// Appends `n` in decimal without allocating (this runs several times per datagram sent).
fn write_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// Writes the entries of one dictionary.
pub struct DictEncoder<'b> {
    enc: Encoder<'b>,
    last_key: Option<Vec<u8>>,
}

impl<'b> DictEncoder<'b> {
    /// Writes a key; the value must follow through the returned encoder.
    pub fn key(&mut self, key: &str) -> &mut Encoder<'b> {
        debug_assert!(
            self.last_key.as_deref().is_none_or(|last| last < key.as_bytes()),
            "bencode dict keys out of order at {key:?}"
        );
        if cfg!(debug_assertions) {
            self.last_key = Some(key.as_bytes().to_vec());
        }
        self.enc.bytes(key.as_bytes());
        &mut self.enc
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Values decode to the expected structure and re-encode byte for byte.
    #[test]
    fn decode_and_reencode() {
        let input = b"d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t2:aa1:y1:qe";
        let v = decode(input).unwrap();
        assert_eq!(v.get("q").unwrap().as_bytes(), Some(&b"ping"[..]));
        assert_eq!(v.get("a").unwrap().get("id").unwrap().as_bytes().unwrap().len(), 20);
        assert_eq!(v.get_entry("a").unwrap().raw, b"d2:id20:abcdefghij0123456789e");
        let mut out = Vec::new();
        Encoder::new(&mut out).value(&v);
        assert_eq!(out, input);
    }

    /// Hostile shapes are refused with an error: deep nesting, too many values, bad integers,
    /// lengths beyond the input, non-string keys, trailing bytes.
    #[test]
    fn hostile_input_is_refused() {
        let deep = "l".repeat(100_000);
        assert_eq!(decode(deep.as_bytes()), Err(BencodeError::TooDeep));
        let many = format!("l{}e", "i1e".repeat(5000));
        assert_eq!(decode(many.as_bytes()), Err(BencodeError::TooManyValues));
        for bad in [
            &b"i-0e"[..],
            b"i03e",
            b"ie",
            b"i-e",
            b"i99999999999999999999e",
            b"i12",
            b"5:abc",
            b"99999999999:x",
            b"di1ei2ee",
            b"1:ab",
            b"x",
            b"",
            b"d1:a",
            b"01:a",
        ] {
            assert!(decode(bad).is_err(), "{bad:?} decoded");
        }
        assert_eq!(decode(b"i-12e").unwrap(), Value::Int(-12));
    }

    fn arb_value() -> impl Strategy<Value = Vec<u8>> {
        let leaf = prop_oneof![
            any::<i64>().prop_map(|i| format!("i{i}e").into_bytes()),
            proptest::collection::vec(any::<u8>(), 0..20).prop_map(|b| {
                let mut out = format!("{}:", b.len()).into_bytes();
                out.extend(b);
                out
            }),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(|items| {
                    let mut out = vec![b'l'];
                    items.into_iter().for_each(|i| out.extend(i));
                    out.push(b'e');
                    out
                }),
                proptest::collection::btree_map("[a-z]{1,4}", inner, 0..6).prop_map(|m| {
                    let mut out = vec![b'd'];
                    for (k, v) in m {
                        out.extend(format!("{}:{k}", k.len()).into_bytes());
                        out.extend(v);
                    }
                    out.push(b'e');
                    out
                }),
            ]
        })
    }

    proptest! {
        /// Any well-formed bencode decodes and re-encodes to the same bytes.
        #[test]
        fn round_trip(input in arb_value()) {
            let v = decode(&input).unwrap();
            let mut out = Vec::new();
            Encoder::new(&mut out).value(&v);
            prop_assert_eq!(out, input);
        }

        /// Arbitrary bytes never panic the decoder.
        #[test]
        fn arbitrary_bytes_never_panic(input in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode(&input);
        }
    }
}
