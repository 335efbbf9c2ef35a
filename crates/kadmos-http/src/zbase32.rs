//! z-base-32, the encoding pkarr uses for ed25519 public keys in URLs (52 characters for 32
//! bytes): an alphabet chosen to be easy to read aloud, 5 bits per character, no padding.

const ALPHABET: &[u8; 32] = b"ybndrfg8ejkmcpqxot1uwisza345h769";

/// Encodes `bytes`, most significant bits first.
pub fn encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity((bytes.len() * 8).div_ceil(5));
    let (mut buffer, mut bits) = (0u32, 0u32);
    for &byte in bytes {
        buffer = (buffer << 8) | u32::from(byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((buffer >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((buffer << (5 - bits)) & 31) as usize] as char);
    }
    out
}

/// Decodes text (case-insensitive) into whole bytes; leftover bits must be zero. `None` for a
/// character outside the alphabet.
pub fn decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 5 / 8);
    let (mut buffer, mut bits) = (0u32, 0u32);
    for c in text.bytes() {
        let value = ALPHABET.iter().position(|&a| a == c.to_ascii_lowercase())? as u32;
        buffer = (buffer << 5) | value;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
            buffer &= (1 << bits) - 1;
        }
    }
    (buffer == 0).then_some(out)
}

/// A pkarr public key: 52 z-base-32 characters for 32 bytes.
pub fn decode_key(text: &str) -> Option<[u8; 32]> {
    if text.len() != 52 {
        return None;
    }
    decode(text)?.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Round trips of every length, pkarr's published example key decodes to 32 bytes and
    /// encodes back, and bad characters or lengths are refused.
    #[test]
    fn round_trips_and_refusals() {
        for len in 0..40 {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            assert_eq!(decode(&encode(&bytes)), Some(bytes));
        }
        let key = "o4dksfbqk85ogzdb5osziw6befigbuxmuxkuxq8434q89uj56uyy";
        let bytes = decode_key(key).expect("a 32-byte key");
        assert_eq!(encode(&bytes), key);
        assert_eq!(decode_key(&key.to_uppercase()), Some(bytes));
        assert_eq!(decode_key("o4dksfbqk85ogzdb5osziw6befigbuxmuxkuxq8434q89uj56uy0"), None);
        assert_eq!(decode_key("short"), None);
    }
}
