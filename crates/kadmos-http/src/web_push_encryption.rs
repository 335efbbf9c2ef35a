//! Message encryption for Web Push (RFC 8291, over RFC 8188's `aes128gcm` content coding): what
//! a UnifiedPush subscription whose topic carries the device's keys (`"<p256dh>|<auth>"`, both
//! base64url) gets instead of a plain payload. A fresh P-256 key and salt per message; the
//! device derives the same content key from its private key and the auth secret.

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes128Gcm, Nonce};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as BASE64URL;
use base64::Engine;
use hkdf::Hkdf;
use p256::elliptic_curve::sec1::ToEncodedPoint;
use p256::{PublicKey, SecretKey};
use sha2::Sha256;

/// The record size announced in the header (one record holds any push payload).
const RECORD_SIZE: u32 = 4096;

/// The device's keys, from a subscription's topic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceKeys {
    /// Uncompressed P-256 point, 65 bytes.
    pub p256dh: Vec<u8>,
    /// The 16-byte authentication secret.
    pub auth: Vec<u8>,
}

impl DeviceKeys {
    /// `"<p256dh>|<auth>"` (base64url, padding optional); `None` when the topic is not that.
    pub fn from_topic(topic: &str) -> Option<DeviceKeys> {
        let (p256dh, auth) = topic.split_once('|')?;
        let decode = |text: &str| BASE64URL.decode(text.trim().trim_end_matches('='));
        let keys = DeviceKeys { p256dh: decode(p256dh).ok()?, auth: decode(auth).ok()? };
        let valid = PublicKey::from_sec1_bytes(&keys.p256dh).is_ok() && keys.auth.len() == 16;
        valid.then_some(keys)
    }
}

/// Encrypts `plaintext` for the device with a fresh sender key and salt.
pub fn encrypt(plaintext: &[u8], device: &DeviceKeys) -> Result<Vec<u8>, String> {
    let sender = SecretKey::random(&mut rand::rngs::OsRng);
    let salt: [u8; 16] = rand::random();
    encrypt_with(plaintext, device, &sender, salt)
}

/// Encrypts with the given sender key and salt (fixed ones reproduce RFC 8291's example).
pub fn encrypt_with(
    plaintext: &[u8],
    device: &DeviceKeys,
    sender: &SecretKey,
    salt: [u8; 16],
) -> Result<Vec<u8>, String> {
    let device_key = PublicKey::from_sec1_bytes(&device.p256dh).map_err(|_| "bad p256dh key".to_string())?;
    let sender_public = sender.public_key().to_encoded_point(false);
    let shared = p256::ecdh::diffie_hellman(sender.to_nonzero_scalar(), device_key.as_affine());

    let (cek, nonce) =
        content_key(shared.raw_secret_bytes(), &device.auth, &device.p256dh, sender_public.as_bytes(), &salt)?;

    // One record, the last: the padding delimiter 2 follows the plaintext.
    let mut record = plaintext.to_vec();
    record.push(2);
    let cipher = Aes128Gcm::new_from_slice(&cek).map_err(|e| e.to_string())?;
    let sealed = cipher.encrypt(Nonce::from_slice(&nonce), record.as_slice()).map_err(|e| e.to_string())?;

    let key_id = sender_public.as_bytes();
    let mut body = Vec::with_capacity(21 + key_id.len() + sealed.len());
    body.extend_from_slice(&salt);
    body.extend_from_slice(&RECORD_SIZE.to_be_bytes());
    body.push(key_id.len() as u8);
    body.extend_from_slice(key_id);
    body.extend_from_slice(&sealed);
    Ok(body)
}

/// The content key and nonce of a message: RFC 8291 §3.4 mixes the auth secret and both
/// public keys into the input keying material, RFC 8188 §2.2-2.3 derives key and nonce from it
/// with the salt.
fn content_key(
    shared_secret: &[u8],
    auth: &[u8],
    device_public: &[u8],
    sender_public: &[u8],
    salt: &[u8],
) -> Result<([u8; 16], [u8; 12]), String> {
    let mut key_info = b"WebPush: info\0".to_vec();
    key_info.extend_from_slice(device_public);
    key_info.extend_from_slice(sender_public);
    let mut ikm = [0u8; 32];
    Hkdf::<Sha256>::new(Some(auth), shared_secret).expand(&key_info, &mut ikm).map_err(|e| e.to_string())?;
    let content = Hkdf::<Sha256>::new(Some(salt), &ikm);
    let (mut cek, mut nonce) = ([0u8; 16], [0u8; 12]);
    content.expand(b"Content-Encoding: aes128gcm\0", &mut cek).map_err(|e| e.to_string())?;
    content.expand(b"Content-Encoding: nonce\0", &mut nonce).map_err(|e| e.to_string())?;
    Ok((cek, nonce))
}

/// The device's side: opens a message encrypted to `device_secret` with `auth` (one record).
pub fn decrypt(body: &[u8], device_secret: &SecretKey, auth: &[u8]) -> Result<Vec<u8>, String> {
    let header = |n: usize| body.get(..n).ok_or_else(|| "message too short".to_string());
    let key_len = usize::from(*header(21)?.last().unwrap_or(&0));
    let header = header(21 + key_len)?;
    let (salt, sender_public) = (&header[..16], &header[21..]);
    let sender = PublicKey::from_sec1_bytes(sender_public).map_err(|_| "bad sender key".to_string())?;
    let shared = p256::ecdh::diffie_hellman(device_secret.to_nonzero_scalar(), sender.as_affine());
    let device_public = device_secret.public_key().to_encoded_point(false);
    let (cek, nonce) = content_key(shared.raw_secret_bytes(), auth, device_public.as_bytes(), sender_public, salt)?;
    let cipher = Aes128Gcm::new_from_slice(&cek).map_err(|e| e.to_string())?;
    let mut record =
        cipher.decrypt(Nonce::from_slice(&nonce), &body[header.len()..]).map_err(|_| "does not decrypt".to_string())?;
    // Strip the padding: zeros, then the delimiter 2 of the last record.
    while record.last() == Some(&0) {
        record.pop();
    }
    match record.pop() {
        Some(2) => Ok(record),
        _ => Err("no last-record delimiter".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(text: &str) -> Vec<u8> {
        BASE64URL.decode(text).unwrap()
    }

    /// RFC 8291's example (Appendix A): the same keys, salt and plaintext give the RFC's body,
    /// byte for byte; the device's side opens it, and not once a byte is changed.
    #[test]
    fn reproduces_the_rfc_8291_example() {
        let device = DeviceKeys::from_topic(
            "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4|BTBZMqHH6r4Tts7J_aSIgg",
        )
        .expect("the RFC's keys");
        let sender = SecretKey::from_slice(&b64("yfWPiYE-n46HLnH0KqZOF1fJJU3MYrct3AELtAQ-oRw")).unwrap();
        let salt: [u8; 16] = b64("DGv6ra1nlYgDCS1FRnbzlw").try_into().unwrap();
        let body = encrypt_with(b"When I grow up, I want to be a watermelon", &device, &sender, salt).unwrap();
        let expected = "DGv6ra1nlYgDCS1FRnbzlwAAEABBBP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A_yl95bQpu6cVPTpK4Mqgkf1CXztLVBSt2Ks3oZwbuwXPXLWyouBWLVWGNWQexSgSxsj_Qulcy4a-fN";
        assert_eq!(BASE64URL.encode(&body), expected);

        let device_secret = SecretKey::from_slice(&b64("q1dXpw3UpT5VOmu_cf_v6ih07Aems3njxI-JWgLcM94")).unwrap();
        let opened = decrypt(&body, &device_secret, &device.auth).unwrap();
        assert_eq!(opened, b"When I grow up, I want to be a watermelon");
        let mut tampered = body.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert!(decrypt(&tampered, &device_secret, &device.auth).is_err());
    }

    /// Topics that are not `<p256dh>|<auth>` with a valid point and a 16-byte secret are not
    /// keys (the payload then goes unencrypted, as before RFC 8291 support).
    #[test]
    fn bad_topics_are_not_keys() {
        assert_eq!(DeviceKeys::from_topic(""), None);
        assert_eq!(DeviceKeys::from_topic("com.example.app"), None);
        assert_eq!(DeviceKeys::from_topic("AAAA|BTBZMqHH6r4Tts7J_aSIgg"), None);
    }
}
