//! OpenDHT's value cryptography: owner keys, signed values and values encrypted to a recipient.
//!
//! # Formats (all learned from savoirfairelinux/opendht, checked against OpenDHT 4.4.2)
//!
//! - **Keys** are RSA. An owner key travels inside a value (`owner`) as its DER
//!   SubjectPublicKeyInfo (`rsaEncryption`, NULL parameters), which is what GnuTLS exports
//!   (src/crypto.cpp, `PublicKey::pack`). OpenDHT generates 4096-bit keys by default with public
//!   exponent 65537 (`PrivateKey::generate`); private keys are saved as unencrypted PKCS#8 PEM
//!   (`PrivateKey::serialize`) and loaded from PEM or DER, PKCS#8 or PKCS#1.
//! - **Key ids**: [`PublicKey::id`] is GnuTLS's key id, the SHA-1 of that DER
//!   SubjectPublicKeyInfo (`PublicKey::getId`); [`PublicKey::long_id`] is its SHA-256
//!   (`getLongId`, `GNUTLS_KEYID_USE_SHA256`).
//! - **Signatures** are RSA PKCS#1 v1.5 with SHA-512 (`PrivateKey::sign`,
//!   `PublicKey::checkSignature`) over the packed value body, [`Value::to_sign`]. Signing sets
//!   the value's `owner` to the signer's public key and leaves `seq` and `to` as they are
//!   (src/value.cpp, `Value::sign`).
//! - **Encryption to a recipient** (src/value.cpp `Value::encrypt`, src/securedht.cpp): the
//!   sender sets `to` to the recipient's key id, signs the value with its own key, and packs
//!   `{body, sig}` ([`Value::to_encrypt`]). That plaintext is encrypted to the recipient's key
//!   (src/crypto.cpp `PublicKey::encrypt`) and the encrypted value keeps only the id, the push
//!   priority and the push type besides the cypher:
//!   - if the plaintext fits in one RSA block (at most `k - 11` bytes for a `k`-byte modulus),
//!     the cypher is that single block;
//!   - otherwise the cypher is `RSA(aes_key) || iv (12 bytes) || AES-GCM ciphertext || tag
//!     (16 bytes)`, with the largest AES key (16, 24 or 32 bytes) that fits in one block (32 for
//!     any usual key), and no associated data.
//!
//!   The RSA block uses GnuTLS's default encryption for an `rsaEncryption` key, **PKCS#1 v1.5
//!   (EME-PKCS1-v1_5), not OAEP**: `gnutls_pubkey_encrypt_data` only uses OAEP for keys whose
//!   SubjectPublicKeyInfo says RSAES-OAEP, which OpenDHT creates only when asked to (and which
//!   this module refuses as unsupported). The live interop tests prove it both ways.
//! - **Decryption** (src/value.cpp `Value::decrypt`): a cypher shorter than one block is refused,
//!   one exactly a block long is plain RSA, anything longer is the hybrid form. The plaintext is
//!   read as `{body, sig}`; the value is refused unless its `to` is the decrypting key's id and it
//!   carries an owner whose signature verifies.
//! - **Stores**: OpenDHT's secure layer stores a signed value only if its signature verifies and
//!   lets only the same owner replace it, signed, with a higher `seq` (src/securedht.cpp,
//!   `secureType`). [`RsaSignatures`] is the [`SignatureVerifier`] that gives a node the first
//!   half; storage enforces the second. A refused put is still answered like a stored one, as
//!   OpenDHT does: there is no error code for a bad signature.
//!
//! # Randomness and side channels
//!
//! The core has no OS randomness: key generation and encryption take the caller's RNG. Signing
//! and decryption need none; their RSA blinding factor is drawn from a ChaCha20 stream seeded
//! with a hash of the private exponent and the input, so it is unpredictable to anyone without
//! the key. The `rsa` crate's PKCS#1 v1.5 decryption is not constant-time (RUSTSEC-2023-0071,
//! "Marvin"); a node that decrypts values for an attacker who can time it many times leaks
//! information about its key.

use std::fmt;

use aes_gcm::aead::consts::U12;
use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::aes::{Aes128, Aes192, Aes256};
use aes_gcm::{AesGcm, Nonce};
use rand::{CryptoRng, RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use rsa::pkcs1::{DecodeRsaPrivateKey, DecodeRsaPublicKey};
use rsa::pkcs8::der::zeroize::Zeroizing;
use rsa::pkcs8::der::{Decode, Document};
use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey, LineEnding, SubjectPublicKeyInfoRef};
use rsa::traits::{PrivateKeyParts, PublicKeyParts};
use rsa::{BigUint, Pkcs1v15Encrypt, Pkcs1v15Sign, RsaPrivateKey, RsaPublicKey};
use sha2::{Digest, Sha256, Sha512};

use super::value::{Value, ValueError};
use super::verifier::SignatureVerifier;
use crate::kad::Id;

/// Size of the AES-GCM nonce at the start of the symmetric part of a cypher (nettle's
/// `GCM_IV_SIZE`).
pub const GCM_IV_SIZE: usize = 12;

/// Size of the AES-GCM tag at the end of a cypher.
pub const GCM_TAG_SIZE: usize = 16;

/// The AES key sizes OpenDHT uses, smallest first; it takes the largest that fits in one RSA
/// block.
pub const AES_KEY_SIZES: [usize; 3] = [16, 24, 32];

/// Bytes PKCS#1 v1.5 encryption padding takes from an RSA block.
const PKCS1_OVERHEAD: usize = 11;

/// Largest RSA modulus accepted, in bits (OpenDHT's default is 4096).
pub const MAX_KEY_BITS: usize = 8192;

/// Smallest RSA modulus [`OwnerKey::generate`] makes, in bits.
pub const MIN_KEY_BITS: usize = 1024;

/// The size of key OpenDHT generates by default, in bits.
pub const DEFAULT_KEY_BITS: usize = 4096;

/// OID of `rsaEncryption` keys (1.2.840.113549.1.1.1).
const RSA_ENCRYPTION: rsa::pkcs8::ObjectIdentifier = rsa::pkcs1::ALGORITHM_OID;

/// OID of `id-RSAES-OAEP` keys (1.2.840.113549.1.1.7), which GnuTLS encrypts to with OAEP.
const RSAES_OAEP: rsa::pkcs8::ObjectIdentifier = rsa::pkcs8::ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.7");

/// Why a key, a signature or a cypher was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// A key that does not parse or is not RSA: why.
    #[error("invalid key: {0}")]
    InvalidKey(String),
    /// Making a new key failed: why.
    #[error("key generation failed: {0}")]
    KeyGeneration(String),
    /// The value has no owner or no signature.
    #[error("the value is not signed")]
    NotSigned,
    /// The signature does not verify with the owner's key.
    #[error("the signature does not verify")]
    BadSignature,
    /// The value is encrypted: decrypt it first.
    #[error("the value is encrypted")]
    Encrypted,
    /// The value is not encrypted, so there is nothing to decrypt.
    #[error("the value is not encrypted")]
    NotEncrypted,
    /// The value is encrypted to another key.
    #[error("the value is addressed to another key")]
    RecipientMismatch,
    /// Encryption failed: at which step.
    #[error("cannot encrypt: {0}")]
    Encrypt(&'static str),
    /// Decryption failed: at which step.
    #[error("cannot decrypt: {0}")]
    Decrypt(&'static str),
    /// Signing failed: at which step.
    #[error("cannot sign: {0}")]
    Sign(&'static str),
    /// The decrypted bytes do not parse as a value.
    #[error("decrypted data is not a value: {0}")]
    Plaintext(ValueError),
}

fn invalid_key(e: impl fmt::Display) -> CryptoError {
    CryptoError::InvalidKey(e.to_string())
}

/// An RSA public key as OpenDHT handles it: a value's owner or an encryption recipient.
///
/// It keeps the DER SubjectPublicKeyInfo it was read from (or made), which is what goes in a
/// value's `owner` and what its ids hash.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    der: Vec<u8>,
    key: RsaPublicKey,
}

impl PublicKey {
    /// Reads a DER SubjectPublicKeyInfo of an RSA key (what a value's `owner` holds). The
    /// encoding must be strict DER, so the ids of the bytes are the ids OpenDHT computes.
    pub fn from_der(der: &[u8]) -> Result<PublicKey, CryptoError> {
        let spki = SubjectPublicKeyInfoRef::from_der(der).map_err(invalid_key)?;
        if spki.algorithm.oid == RSAES_OAEP {
            return Err(CryptoError::InvalidKey("RSAES-OAEP keys are not supported".into()));
        }
        if spki.algorithm.oid != RSA_ENCRYPTION {
            return Err(CryptoError::InvalidKey(format!("not an RSA key (algorithm {})", spki.algorithm.oid)));
        }
        let bits = spki.subject_public_key.as_bytes().ok_or_else(|| invalid_key("key bits not whole bytes"))?;
        let pkcs1 = rsa::pkcs1::RsaPublicKey::from_der(bits).map_err(invalid_key)?;
        let n = BigUint::from_bytes_be(pkcs1.modulus.as_bytes());
        let e = BigUint::from_bytes_be(pkcs1.public_exponent.as_bytes());
        let key = RsaPublicKey::new_with_max_size(n, e, MAX_KEY_BITS).map_err(invalid_key)?;
        Ok(PublicKey { der: der.to_vec(), key })
    }

    /// Reads a PEM public key: `PUBLIC KEY` (SubjectPublicKeyInfo, what OpenDHT prints) or
    /// `RSA PUBLIC KEY` (PKCS#1).
    pub fn from_pem(pem: &str) -> Result<PublicKey, CryptoError> {
        let (label, doc) = Document::from_pem(pem).map_err(invalid_key)?;
        match label {
            "PUBLIC KEY" => PublicKey::from_der(doc.as_bytes()),
            "RSA PUBLIC KEY" => {
                let key = RsaPublicKey::from_pkcs1_der(doc.as_bytes()).map_err(invalid_key)?;
                PublicKey::from_rsa(key)
            }
            other => Err(CryptoError::InvalidKey(format!("unexpected PEM label {other:?}"))),
        }
    }

    fn from_rsa(key: RsaPublicKey) -> Result<PublicKey, CryptoError> {
        let der = key.to_public_key_der().map_err(invalid_key)?.into_vec();
        Ok(PublicKey { der, key })
    }

    /// The DER SubjectPublicKeyInfo: a value's `owner`.
    pub fn to_der(&self) -> &[u8] {
        &self.der
    }

    /// The key as PEM (`PUBLIC KEY`).
    pub fn to_pem(&self) -> String {
        Document::try_from(self.der.as_slice())
            .and_then(|d| d.to_pem("PUBLIC KEY", LineEnding::LF))
            .expect("a parsed key encodes")
    }

    /// OpenDHT's key id (`PublicKey::getId`): SHA-1 of the DER SubjectPublicKeyInfo. It is what
    /// `to` names and what `WHERE owner_pk=` compares.
    pub fn id(&self) -> Id {
        Id::sha1_of(&self.der)
    }

    /// OpenDHT's long key id (`getLongId`): SHA-256 of the DER SubjectPublicKeyInfo.
    pub fn long_id(&self) -> [u8; 32] {
        Sha256::digest(&self.der).into()
    }

    /// The modulus size in bits.
    pub fn bits(&self) -> usize {
        self.key.n().bits()
    }

    /// Size of one RSA block in bytes.
    fn block_size(&self) -> usize {
        self.key.size()
    }

    /// Whether `signature` is this key's RSA PKCS#1 v1.5 SHA-512 signature of `data`.
    pub fn verify(&self, data: &[u8], signature: &[u8]) -> bool {
        self.key.verify(Pkcs1v15Sign::new::<Sha512>(), &Sha512::digest(data), signature).is_ok()
    }

    /// Encrypts `data` to this key the way OpenDHT does (see the module documentation): one
    /// PKCS#1 v1.5 block when it fits, else an RSA-wrapped AES-GCM key followed by the nonce,
    /// the ciphertext and the tag.
    pub fn encrypt(&self, data: &[u8], rng: &mut (impl CryptoRng + RngCore)) -> Result<Vec<u8>, CryptoError> {
        let block = self.block_size();
        let max_plain = block.checked_sub(PKCS1_OVERHEAD).ok_or(CryptoError::Encrypt("key too small"))?;
        if data.len() <= max_plain {
            return self.key.encrypt(rng, Pkcs1v15Encrypt, data).map_err(|_| CryptoError::Encrypt("RSA failed"));
        }
        let key_size = AES_KEY_SIZES
            .into_iter()
            .rev()
            .find(|s| *s <= max_plain)
            .ok_or(CryptoError::Encrypt("key too small to wrap an AES-128 key"))?;
        let mut aes_key = Zeroizing::new(vec![0u8; key_size]);
        rng.fill_bytes(&mut aes_key);
        let mut iv = [0u8; GCM_IV_SIZE];
        rng.fill_bytes(&mut iv);
        let sealed = aes_gcm_seal(&aes_key, &iv, data)?;
        let wrapped =
            self.key.encrypt(rng, Pkcs1v15Encrypt, &aes_key).map_err(|_| CryptoError::Encrypt("RSA failed"))?;
        let mut out = Vec::with_capacity(wrapped.len() + GCM_IV_SIZE + sealed.len());
        out.extend_from_slice(&wrapped);
        out.extend_from_slice(&iv);
        out.extend_from_slice(&sealed);
        Ok(out)
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublicKey").field("id", &self.id()).field("bits", &self.bits()).finish()
    }
}

/// AES-GCM with a 12-byte nonce and no associated data; returns ciphertext then tag.
fn aes_gcm_seal(key: &[u8], iv: &[u8; GCM_IV_SIZE], data: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let nonce = Nonce::<U12>::from_slice(iv);
    let bad_key = |_| CryptoError::Encrypt("AES key");
    match key.len() {
        16 => AesGcm::<Aes128, U12>::new_from_slice(key).map_err(bad_key)?.encrypt(nonce, data),
        24 => AesGcm::<Aes192, U12>::new_from_slice(key).map_err(bad_key)?.encrypt(nonce, data),
        32 => AesGcm::<Aes256, U12>::new_from_slice(key).map_err(bad_key)?.encrypt(nonce, data),
        _ => return Err(CryptoError::Encrypt("AES key size")),
    }
    .map_err(|_| CryptoError::Encrypt("AES-GCM failed"))
}

/// Opens `iv || ciphertext || tag` with an AES key of 16, 24 or 32 bytes.
fn aes_gcm_open(key: &[u8], sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
    if sealed.len() <= GCM_IV_SIZE + GCM_TAG_SIZE {
        return Err(CryptoError::Decrypt("symmetric part too short"));
    }
    let (iv, body) = sealed.split_at(GCM_IV_SIZE);
    let nonce = Nonce::<U12>::from_slice(iv);
    let bad_key = |_| CryptoError::Decrypt("AES key");
    match key.len() {
        16 => AesGcm::<Aes128, U12>::new_from_slice(key).map_err(bad_key)?.decrypt(nonce, body),
        24 => AesGcm::<Aes192, U12>::new_from_slice(key).map_err(bad_key)?.decrypt(nonce, body),
        32 => AesGcm::<Aes256, U12>::new_from_slice(key).map_err(bad_key)?.decrypt(nonce, body),
        _ => return Err(CryptoError::Decrypt("wrapped AES key has a wrong size")),
    }
    .map_err(|_| CryptoError::Decrypt("AES-GCM tag mismatch"))
}

/// An owner's RSA private key: it signs values and decrypts values encrypted to it.
#[derive(Clone)]
pub struct OwnerKey {
    key: RsaPrivateKey,
    public: PublicKey,
}

impl OwnerKey {
    /// Generates a key of `bits` bits (OpenDHT's default is [`DEFAULT_KEY_BITS`]; tests use
    /// 2048) with public exponent 65537, from the caller's RNG.
    pub fn generate(rng: &mut (impl CryptoRng + RngCore), bits: usize) -> Result<OwnerKey, CryptoError> {
        if !(MIN_KEY_BITS..=MAX_KEY_BITS).contains(&bits) {
            return Err(CryptoError::KeyGeneration(format!("{bits} bits is outside {MIN_KEY_BITS}..={MAX_KEY_BITS}")));
        }
        let key = RsaPrivateKey::new(rng, bits).map_err(|e| CryptoError::KeyGeneration(e.to_string()))?;
        OwnerKey::from_rsa(key)
    }

    fn from_rsa(key: RsaPrivateKey) -> Result<OwnerKey, CryptoError> {
        if key.n().bits() > MAX_KEY_BITS {
            return Err(CryptoError::InvalidKey(format!("more than {MAX_KEY_BITS} bits")));
        }
        key.validate().map_err(invalid_key)?;
        let public = PublicKey::from_rsa(key.to_public_key())?;
        Ok(OwnerKey { key, public })
    }

    /// Reads an unencrypted private key in DER, PKCS#8 or PKCS#1 (what OpenDHT reads too).
    pub fn from_der(der: &[u8]) -> Result<OwnerKey, CryptoError> {
        let key = RsaPrivateKey::from_pkcs8_der(der)
            .or_else(|_| RsaPrivateKey::from_pkcs1_der(der))
            .map_err(|_| CryptoError::InvalidKey("neither a PKCS#8 nor a PKCS#1 RSA private key".into()))?;
        OwnerKey::from_rsa(key)
    }

    /// Reads an unencrypted PEM private key: `PRIVATE KEY` (PKCS#8, what OpenDHT writes) or
    /// `RSA PRIVATE KEY` (PKCS#1). Password-protected keys are not supported.
    pub fn from_pem(pem: &str) -> Result<OwnerKey, CryptoError> {
        let key = RsaPrivateKey::from_pkcs8_pem(pem)
            .or_else(|_| RsaPrivateKey::from_pkcs1_pem(pem))
            .map_err(|_| CryptoError::InvalidKey("neither a PKCS#8 nor a PKCS#1 PEM RSA private key".into()))?;
        OwnerKey::from_rsa(key)
    }

    /// The key as unencrypted PKCS#8 DER.
    pub fn to_der(&self) -> Zeroizing<Vec<u8>> {
        self.key.to_pkcs8_der().expect("an RSA key encodes").to_bytes()
    }

    /// The key as unencrypted PKCS#8 PEM (`PRIVATE KEY`), as OpenDHT's `serialize()` writes it.
    pub fn to_pem(&self) -> Zeroizing<String> {
        self.key.to_pkcs8_pem(LineEnding::LF).expect("an RSA key encodes")
    }

    /// The public half of the key.
    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }

    /// The public key's id ([`PublicKey::id`]).
    pub fn id(&self) -> Id {
        self.public.id()
    }

    /// A blinding RNG for one private-key operation on `input`, unpredictable without the key.
    fn blinding(&self, purpose: &[u8], input: &[u8]) -> ChaCha20Rng {
        let mut h = Sha256::new();
        h.update(purpose);
        h.update(Zeroizing::new(self.key.d().to_bytes_be()).as_slice());
        h.update(input);
        ChaCha20Rng::from_seed(h.finalize().into())
    }

    /// RSA PKCS#1 v1.5 SHA-512 signature of `data` (deterministic, like every PKCS#1 v1.5
    /// signature).
    pub fn sign(&self, data: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let digest = Sha512::digest(data);
        let mut rng = self.blinding(b"kadmos opendht sign", &digest);
        self.key
            .sign_with_rng(&mut rng, Pkcs1v15Sign::new::<Sha512>(), &digest)
            .map_err(|_| CryptoError::Sign("key too small for a SHA-512 signature"))
    }

    /// Decrypts a cypher made by [`PublicKey::encrypt`] or OpenDHT's `PublicKey::encrypt`.
    pub fn decrypt(&self, cypher: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let block = self.public.block_size();
        if cypher.len() < block {
            return Err(CryptoError::Decrypt("shorter than one RSA block"));
        }
        let (wrapped, sealed) = cypher.split_at(block);
        let mut rng = self.blinding(b"kadmos opendht decrypt", wrapped);
        let opened = Zeroizing::new(
            self.key
                .decrypt_blinded(&mut rng, Pkcs1v15Encrypt, wrapped)
                .map_err(|_| CryptoError::Decrypt("RSA block does not decrypt"))?,
        );
        if sealed.is_empty() {
            return Ok(opened.to_vec());
        }
        aes_gcm_open(&opened, sealed)
    }
}

impl fmt::Debug for OwnerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OwnerKey").field("public", &self.public).finish_non_exhaustive()
    }
}

/// Signs `value` with `key`: sets `owner` to the key's public key and `signature` to the
/// signature of [`Value::to_sign`]. `seq` and the recipient are signed as they are. An
/// encrypted value cannot be signed.
pub fn sign_value(key: &OwnerKey, value: &mut Value) -> Result<(), CryptoError> {
    if value.is_encrypted() {
        return Err(CryptoError::Encrypted);
    }
    value.owner = Some(key.public.to_der().to_vec());
    value.signature = key.sign(&value.to_sign())?;
    Ok(())
}

/// Checks that `value` is signed and that its signature is its owner's over
/// [`Value::to_sign`].
pub fn verify_value(value: &Value) -> Result<(), CryptoError> {
    if value.is_encrypted() {
        return Err(CryptoError::Encrypted);
    }
    let Some(owner) = value.owner.as_deref().filter(|_| value.is_signed()) else {
        return Err(CryptoError::NotSigned);
    };
    let owner = PublicKey::from_der(owner)?;
    if owner.verify(&value.to_sign(), &value.signature) {
        Ok(())
    } else {
        Err(CryptoError::BadSignature)
    }
}

/// Encrypts `value` to `recipient` as OpenDHT's `putEncrypted` does: the value is addressed to
/// the recipient's key id, signed by `sender`, and its packed `{body, sig}` encrypted. The
/// result has the same id, push priority and push type, and only the cypher besides.
pub fn encrypt_value(
    sender: &OwnerKey,
    value: &Value,
    recipient: &PublicKey,
    rng: &mut (impl CryptoRng + RngCore),
) -> Result<Value, CryptoError> {
    if value.is_encrypted() {
        return Err(CryptoError::Encrypted);
    }
    let mut inner = value.clone();
    inner.recipient = Some(recipient.id());
    sign_value(sender, &mut inner)?;
    let cypher = recipient.encrypt(&inner.to_encrypt(), rng)?;
    Ok(Value { id: value.id, priority: value.priority, push_type: value.push_type.clone(), cypher, ..Value::default() })
}

/// Decrypts a value encrypted to `key` and checks it as OpenDHT does: it must be addressed to
/// `key`'s id and signed by its owner. The result keeps the encrypted value's id, push
/// priority and push type.
pub fn decrypt_value(key: &OwnerKey, value: &Value) -> Result<Value, CryptoError> {
    if !value.is_encrypted() {
        return Err(CryptoError::NotEncrypted);
    }
    let plaintext = Zeroizing::new(key.decrypt(&value.cypher)?);
    let mut inner = Value::from_decrypted(value.id, &plaintext).map_err(CryptoError::Plaintext)?;
    if inner.recipient != Some(key.id()) {
        return Err(CryptoError::RecipientMismatch);
    }
    verify_value(&inner)?;
    inner.priority = value.priority;
    inner.push_type = value.push_type.clone();
    Ok(inner)
}

/// The [`SignatureVerifier`] OpenDHT's secure layer amounts to: a signed value is accepted only
/// if [`verify_value`] passes. Install it with `Node::set_signature_verifier`.
#[derive(Clone, Copy, Debug, Default)]
pub struct RsaSignatures;

impl SignatureVerifier for RsaSignatures {
    fn verify(&self, value: &Value) -> bool {
        verify_value(value).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two throwaway 2048-bit test keys (made with `openssl genpkey`, so loading them also checks
    /// that a standard PKCS#8 PEM loads): generating keys in unoptimised builds takes seconds.
    const ALICE_PEM: &str = "\
-----BEGIN PRIVATE KEY-----
MIIEvAIBADANBgkqhkiG9w0BAQEFAASCBKYwggSiAgEAAoIBAQCdsu73ZjW+vLOR
gaajYM9TTgqt2XrVD+8domDB4uiSg8Q77Ogue6vFtRJqR5YRFbrGzQgz8LHpuUcD
8lln97C0mMwDaximxFMMweGF8PgDJi25XZ+VbRnrJ82HeZ4Zmqlt3TLk7soCMXVf
VwNUx4mktPQkrLoWnQpuWxK+vcW3ML8T2peF9MZGlQYe+Fct1uosDWbY/CiVNDEh
foQBBVoV4V34EnFZ56VNL1JwuQIiYZvUZTGTrOzBWFAy8bSpveRrKshgjUM2SHJd
lZMGn3i6zUrEBBbrFeOhPRyjyppnbDoPEb1qRgYCGFr0dVHJcS7dOOW6J/w68exf
kRw+HOhhAgMBAAECggEABypM6NFMUlsNFqirK2O379tNKWqHBfzIGtLYrh6S/is+
BJIGV6xXWO+aA1m21BZmaueAfqmqT8oTE7cUgGCU9xO1O1eHonYrptn9VwJkpnH6
5GAAYv/2zEQ99rCcMiIgniUNjbDa3WAlatxPgq/hTWpKaIsvllzyzyJUtvV08RaT
6MjKF0fwW5V7u8lurTztLC9Q2G3digT/cvhZbbJqGD1DZFQTRWUYI/NoBwZGW5hU
UHlu1dXJTi+WZaZiPxWDYEGRp+G46KjFxES0iyTXDRzoLz8DN3Yd0KF8ydAUYfJG
l5Bmzkz/kROasg5LCxVEEWVrFDw30eyLYemcyE6WUQKBgQDNC4szk9Q765KWsRyf
gdAsxymJgxdL6oGLtH6adME9L1k1aQx8gDMxmFP+zxavnTUTqjazoT6yK+F7eQYO
pD54RtgtZVci5U1Ypos+TszcWM0/4VtTjHzKCKDlHZWa4r/1R8xJOyX7BOgdih59
TNGBbzgXxdUJcEjP5LCb4GhCmQKBgQDE41jWIXOZE3lOSRzod6PAgEBYYcLn+1td
7BUBYR9FUKzbU9BH0KACZJPM/D4yotxfLGrGI7l2fIq0YXmo8n9Rgr64sEFXipZZ
TvmVMBAmOEPOFzwp3uGMu6ONiKsl/O7DjmxubZmTApcEKp07UZcWwG3RW8k322pC
+ihKuiK5CQKBgD0jRQVC/dREAHhoJOW2mjDPzaXP7aFYMfpK/jjluTyaIppXUT7K
JvmRtvHSI6yHTm0nopna6UvM47WiN1kkRfAtB4Y5okqoXnChcAFLE7Bb1g9HDakS
yZ6gBgFq2dHN7HihSNtJBKEdLGyqYz7vKcTTOcF03nmq/jrmsHY56jx5AoGAYwKl
QQGPfVJCtXCk/e50RbD5Krj25+wKVWAMbCYoMJZSZvVuDz9FyA5GGVZb/ODTi3Tt
uPhsIr6cjftaz/AqwJXMTVotcdV6qCzD7BdAd8fhqTkcAz5XFIujwuAQmUjp1SPB
OYMaMMijou+/I/5yyXk5gIf014cal9Xu/y09mukCgYA7eQpMtljwXCZG3D7YXIHh
60SC/itsADIbvItyY/hgM/qmEoKLd4vlrmasdSsmg8F9PCcbBIBUQ4LPg4cb5ThQ
bvc29RHNe2OPKiWO9vhp+j5WWPlfHJ/lrr6GpSMlWP6FKrKFezcfbAat/eTnP5xG
CDeuf3hwLfuCiGiNJVw8fQ==
-----END PRIVATE KEY-----
";
    const BOB_PEM: &str = "\
-----BEGIN PRIVATE KEY-----
MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQDa6ifxDnII63jP
SqcIYERsgsRgki3paPZp+G+mYzHWmv/rKkBOJ+j+TxAA8H90h1RJHmcD5DVa81or
vqLszAPHricgJsKa908JdQ5fUXnAIbmBsfPd/xqnsJuvx9dxllB1ezpgZ67NV7nC
zEm5uP5v6V5IWw8gwWNzYlwtLCd76H2Q5uyrlkyjOH7vui2vd/D1RFr2tZO3s5p0
SQYT5KyIIz0Xpi8IKtisjk0IB3o28jRmXyk7Jv1F296ydCTg13w05+5csxlDl1zm
4FV9podfux1blViVVF+ziEjy7iUidK9tv8P3V3YIO6e1EBppTmBj9vtzTcwxT+yR
5imGVaYRAgMBAAECggEAIPQ1vgZgKTKVNZM10L95HWKUADuRGL1ZtrsUx5XQF0+u
7a4nDvzYCIxLSvDpJtgGWpluhXnxhDb04Hfqm73cZc80CZV8HwrShYhu+O9RZhhN
jhYFMWppD0w5K31oU6t+gijiMUf6WuP1TTsmcARGnP8i176JaPNjrqdkW9J1QSQH
c2WQE09QvQpevWJvFog49YizCC4pIU4S/4ANQt6d1L2qGIBNcckVAtw+H6M9T4Np
1bmkmHizXG33RY3hYagaTT8ktQ1ZNpaB+zbl1rYCaA3kolMysEnscyZoCb/qng9j
Mb3pGerASM52jLmUPTM+sOUHF6XZjGh2rc6Fpajd9wKBgQD8a4IpS0+D+7PoIAPs
N3655hkx7WXAsfCS0MGEPaQtjRcGDycsByV118ZRqtuKLqf2QtFCdOcMqKB6FcPR
H3QmQL98ih/1X9Y/LJyPZFRrrukTKPZbUdZXzCEZX/nVYGv5YvFE7/KtPyxYJj03
7L2/KzJc+/qAQsRMYVcRJ9mbdwKBgQDeBP7z9Lh9uvbB60c7zLcE9UEf2oH9GYeZ
RpQjN0P3zY8obrzmy41qg3nwzkl0uqUOJICENEC/qHJLwJx6U+IzmeVQ0sSXlcJE
4P8tHRmqf9whDZvwoHb3b/anLpWxIdnDQoeHnAiRu6nn3610RhyCwQVIxyVjQNen
csniRg2ctwKBgB19zhpXAzZPbSicvPiXT0YW/TCZJP9LiukMXN+/d/QefOcnVBNP
zm+jQzd9d+MAKn2aNurFz8zp0r4Q1u0S+LYTcIvzc2JuzRBafPw/46ElMXQcoBPx
TtK5NdDKJt1oQ5VCmx/LzRWywNKXvSVQkqbIPD0i75SWuGqYIN0PQ9xnAoGASOBK
77j8dgjQxoZ8M1zXFoGKhvIqiPHAWMeaCJUzcju/Kf5vczKNkNDnTevooLBDTYkd
xkeAmWipW8Q1mNHABkAVzZnhfgBibEmOeTh8HEMr9o2JCkshwca2p9nauPHrkPRd
mF3XUj7PXpVFUk1RPnotSd5Un2fBYe2D5wonnbECgYEAqUxzVJL0b6Tz68ab/EIm
28rVvnDDL9oqgLQ3K/VRrQ1v4LjojU9+B5ArYpfofhc+rlybpLHvEStlTwhA92+d
bbtydLJb+CQRdbCJU2+yFm1vKx/uSWJi/CXMJbwrQ1U7s8BKsQKm3ckwUW19OZX9
XM7Wy9mv9QBBG+qxFtPV76Y=
-----END PRIVATE KEY-----
";

    fn keys() -> &'static (OwnerKey, OwnerKey) {
        static KEYS: std::sync::OnceLock<(OwnerKey, OwnerKey)> = std::sync::OnceLock::new();
        KEYS.get_or_init(|| (OwnerKey::from_pem(ALICE_PEM).unwrap(), OwnerKey::from_pem(BOB_PEM).unwrap()))
    }

    fn sample() -> Value {
        Value { seq: 3, user_type: "text/plain".into(), ..Value::new(42, 3, b"hello".to_vec()) }
    }

    /// A value signed with an owner key verifies; its owner is the key's DER
    /// SubjectPublicKeyInfo and its signature one RSA block; seq and the body are untouched.
    #[test]
    fn sign_then_verify_round_trips() {
        let (alice, _) = keys();
        let mut v = sample();
        sign_value(alice, &mut v).unwrap();
        assert!(v.is_signed());
        assert_eq!(v.owner.as_deref(), Some(alice.public_key().to_der()));
        assert_eq!(v.owner_id(), Some(alice.id()));
        assert_eq!((v.seq, v.signature.len()), (3, 256));
        verify_value(&v).unwrap();
        assert!(RsaSignatures.verify(&v));
        // Through the wire form too.
        verify_value(&Value::decode(&v.to_bytes()).unwrap()).unwrap();
        // PKCS#1 v1.5 signatures are deterministic.
        let mut again = sample();
        sign_value(alice, &mut again).unwrap();
        assert_eq!(again.signature, v.signature);
    }

    /// Changing anything the signature covers (data, seq, type, user type, recipient, owner)
    /// or the signature itself makes verification fail; unsigned and encrypted values are not
    /// "verified" either.
    #[test]
    fn tampering_breaks_the_signature() {
        let (alice, bob) = keys();
        let mut v = sample();
        sign_value(alice, &mut v).unwrap();
        for i in 0..8 {
            let mut t = v.clone();
            match i {
                0 => t.data.push(b'!'),
                1 => t.seq += 1,
                2 => t.value_type += 1,
                3 => t.user_type.push('x'),
                4 => t.recipient = Some(Id([1; 20])),
                5 => t.signature[100] ^= 1,
                6 => t.signature.truncate(255),
                _ => t.owner = Some(bob.public_key().to_der().to_vec()),
            }
            assert_eq!(verify_value(&t), Err(CryptoError::BadSignature), "tampering #{i}");
            assert!(!RsaSignatures.verify(&t));
        }
        let mut garbage_owner = v.clone();
        garbage_owner.owner = Some(vec![0x30, 0x03, 0x02, 0x01, 0x01]);
        assert!(matches!(verify_value(&garbage_owner), Err(CryptoError::InvalidKey(_))));
        assert_eq!(verify_value(&sample()), Err(CryptoError::NotSigned));
        let encrypted = Value { id: 1, cypher: vec![1; 300], ..Value::default() };
        assert_eq!(verify_value(&encrypted), Err(CryptoError::Encrypted));
    }

    /// A value encrypted to Bob by Alice decrypts with Bob's key to the same value, addressed
    /// to Bob and signed by Alice; the cypher has OpenDHT's hybrid layout (one RSA block, a
    /// 12-byte nonce, the ciphertext, a 16-byte tag); Alice's key cannot open it, a corrupted
    /// cypher does not open, and a value addressed to someone else is refused.
    #[test]
    fn encrypt_then_decrypt_round_trips() {
        let (alice, bob) = keys();
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let v = Value { priority: 1, push_type: "call".into(), ..sample() };
        let e = encrypt_value(alice, &v, bob.public_key(), &mut rng).unwrap();
        assert!(e.is_encrypted() && e.owner.is_none() && e.data.is_empty());
        assert_eq!((e.id, e.priority, e.push_type.as_str()), (42, 1, "call"));

        let d = decrypt_value(bob, &e).unwrap();
        assert_eq!(d.recipient, Some(bob.id()));
        assert_eq!(d.owner.as_deref(), Some(alice.public_key().to_der()));
        assert_eq!(Value { recipient: None, owner: None, signature: Vec::new(), ..d.clone() }, v);
        verify_value(&d).unwrap();
        assert_eq!(e.cypher.len(), 256 + GCM_IV_SIZE + d.to_encrypt().len() + GCM_TAG_SIZE);
        // Through the wire form too.
        assert_eq!(decrypt_value(bob, &Value::decode(&e.to_bytes()).unwrap()).unwrap(), d);

        assert!(matches!(decrypt_value(alice, &e), Err(CryptoError::Decrypt(_))));
        for at in [0, 256, 270, e.cypher.len() - 1] {
            let mut bad = e.clone();
            bad.cypher[at] ^= 0x40;
            assert!(matches!(decrypt_value(bob, &bad), Err(CryptoError::Decrypt(_))), "flip at {at}");
        }
        let mut short = e.clone();
        short.cypher.truncate(255);
        assert!(matches!(decrypt_value(bob, &short), Err(CryptoError::Decrypt(_))));
        assert_eq!(decrypt_value(bob, &sample()), Err(CryptoError::NotEncrypted));

        // Encrypted to Bob's key but addressed (inside) to Alice: refused.
        let mut misaddressed = sample();
        misaddressed.recipient = Some(alice.id());
        sign_value(alice, &mut misaddressed).unwrap();
        let cypher = bob.public_key().encrypt(&misaddressed.to_encrypt(), &mut rng).unwrap();
        let e = Value { id: 42, cypher, ..Value::default() };
        assert_eq!(decrypt_value(bob, &e), Err(CryptoError::RecipientMismatch));
        // Addressed to Bob but with a broken signature: refused.
        let mut forged = sample();
        forged.recipient = Some(bob.id());
        sign_value(alice, &mut forged).unwrap();
        forged.data.push(b'!');
        let cypher = bob.public_key().encrypt(&forged.to_encrypt(), &mut rng).unwrap();
        let e = Value { id: 42, cypher, ..Value::default() };
        assert_eq!(decrypt_value(bob, &e), Err(CryptoError::BadSignature));
    }

    /// Data that fits in one RSA block (at most 245 bytes for 2048 bits) is encrypted as that
    /// single block, longer data in the hybrid form; both decrypt.
    #[test]
    fn raw_encryption_picks_single_block_or_hybrid() {
        let (_, bob) = keys();
        let mut rng = ChaCha20Rng::seed_from_u64(2);
        for len in [0, 1, 245, 246, 1000] {
            let data = vec![0x5a; len];
            let c = bob.public_key().encrypt(&data, &mut rng).unwrap();
            let expected = if len <= 245 { 256 } else { 256 + GCM_IV_SIZE + len + GCM_TAG_SIZE };
            assert_eq!(c.len(), expected, "length {len}");
            assert_eq!(bob.decrypt(&c).unwrap(), data);
        }
    }

    /// Keys survive PEM and DER (PKCS#8 and PKCS#1), public keys too, and ids are SHA-1 and
    /// SHA-256 of the DER SubjectPublicKeyInfo.
    #[test]
    fn keys_load_and_save() {
        let (alice, _) = keys();
        let pem = alice.to_pem();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        assert_eq!(OwnerKey::from_pem(&pem).unwrap().id(), alice.id());
        assert_eq!(OwnerKey::from_der(&alice.to_der()).unwrap().id(), alice.id());
        let pkcs1 = rsa::pkcs1::EncodeRsaPrivateKey::to_pkcs1_der(&alice.key).unwrap();
        assert_eq!(OwnerKey::from_der(pkcs1.as_bytes()).unwrap().id(), alice.id());
        assert!(OwnerKey::from_der(b"nope").is_err());

        let public = alice.public_key();
        assert_eq!(PublicKey::from_der(public.to_der()).unwrap(), *public);
        assert_eq!(PublicKey::from_pem(&public.to_pem()).unwrap(), *public);
        assert_eq!(public.id(), Id::sha1_of(public.to_der()));
        assert_eq!(public.long_id(), <[u8; 32]>::from(Sha256::digest(public.to_der())));
        assert_eq!(public.bits(), 2048);
        // A 2048-bit rsaEncryption SubjectPublicKeyInfo is 294 bytes.
        assert_eq!(public.to_der().len(), 294);
        let mut trailing = public.to_der().to_vec();
        trailing.push(0);
        assert!(PublicKey::from_der(&trailing).is_err());
        assert!(OwnerKey::generate(&mut ChaCha20Rng::seed_from_u64(0), 512).is_err());
    }

    /// A generated key (1024 bits here, for speed) is a working owner key: it signs, verifies,
    /// and decrypts what is encrypted to it; the same seed gives the same key.
    #[test]
    fn generated_keys_work() {
        let mut rng = ChaCha20Rng::seed_from_u64(9);
        let key = OwnerKey::generate(&mut rng, 1024).unwrap();
        assert_eq!(key.public_key().bits(), 1024);
        let mut v = sample();
        sign_value(&key, &mut v).unwrap();
        verify_value(&v).unwrap();
        let e = encrypt_value(&key, &sample(), key.public_key(), &mut rng).unwrap();
        assert_eq!(decrypt_value(&key, &e).unwrap().data, b"hello");
        let again = OwnerKey::generate(&mut ChaCha20Rng::seed_from_u64(9), 1024).unwrap();
        assert_eq!(again.id(), key.id());
    }
}
