use super::value::Value;

/// Checks the signature of a signed value (one with an owner and a signature).
///
/// The hook where a storing node checks value signatures.
///
/// OpenDHT's secure layer (savoirfairelinux/opendht src/securedht.cpp, `secureType`) wraps every
/// value type's policies: a signed value is stored only if its RSA signature over
/// [`Value::to_sign`] verifies, and a stored signed value may be replaced only by a value of the
/// same owner, signed, that verifies and has a higher `seq` (or the same `seq` and the very same
/// signed body). The *replacement* rule needs no cryptography and [`super::storage::Storage`]
/// always enforces it. Checking the signature itself needs RSA (PKCS#1 v1.5 with SHA-512 over the
/// packed body, owner keys as DER SubjectPublicKeyInfo), which kadmos does not have yet: this trait
/// is where it plugs in.
pub trait SignatureVerifier: Send {
    /// Whether `value.signature` is the owner's signature over `value.to_sign()`.
    fn verify(&self, value: &Value) -> bool;
}

/// Accepts every signature without checking it (for tests that use made-up signatures; nodes
/// check RSA signatures by default, see `crypto::RsaSignatures`).
///
/// With it, the owner/seq replacement rule still holds, but anyone can forge a *new* signed value
/// under a key that holds no value with that id yet, or claim an owner it does not hold the key of.
#[derive(Clone, Copy, Debug, Default)]
pub struct UnverifiedSignatures;

impl SignatureVerifier for UnverifiedSignatures {
    fn verify(&self, _value: &Value) -> bool {
        true
    }
}
