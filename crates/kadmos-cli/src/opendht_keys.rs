//! OpenDHT owner keys on disk: `kadmos keygen --network opendht` writes an RSA private key
//! (PKCS#8 PEM, mode 0600, the format OpenDHT's `PrivateKey::serialize` writes) and its public
//! key next to it (`FILE.pub`, SubjectPublicKeyInfo PEM); `put --sign`, `put --encrypt-to` and
//! `get`/`listen --decrypt-with` read them back, PEM or DER.

use std::path::{Path, PathBuf};

use kadmos::opendht::{OwnerKey, PublicKey};
use serde_json::json;

use crate::output::emit;
use crate::storage::write_private;

/// Default key file: `opendht.key` in the data directory (next to the Mainline `ed25519.key`).
fn default_key_path() -> PathBuf {
    crate::node::data_dir().join("opendht.key")
}

/// Where the public half of the key at `path` goes: `path` with `.pub` appended.
fn public_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".pub");
    PathBuf::from(name)
}

/// `kadmos keygen --network opendht [--out FILE] [--bits N]`.
pub fn keygen(out: Option<PathBuf>, force: bool, bits: usize, json: bool) -> Result<(), String> {
    let path = out.unwrap_or_else(default_key_path);
    let public = public_path(&path);
    for file in [&path, &public] {
        if file.exists() && !force {
            return Err(format!("{} exists; use --force to replace it", file.display()));
        }
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let key = OwnerKey::generate(&mut rand::rngs::OsRng, bits).map_err(|e| e.to_string())?;
    write_private(&path, &key.to_pem()).map_err(|e| format!("{}: {e}", path.display()))?;
    std::fs::write(&public, key.public_key().to_pem()).map_err(|e| format!("{}: {e}", public.display()))?;
    let id = key.id().to_string();
    emit(json, "key", &json!({ "key_id": id, "bits": bits, "file": path, "public_file": public }), || {
        format!("{id}\n(RSA-{bits} private key written to {}, public key to {})", path.display(), public.display())
    });
    Ok(())
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))
}

/// The owner key in `path` (PEM or DER, PKCS#8 or PKCS#1, unencrypted).
pub fn load_owner_key(path: &Path) -> Result<OwnerKey, String> {
    let bytes = read(path)?;
    let key = match std::str::from_utf8(&bytes) {
        Ok(pem) if pem.contains("-----BEGIN") => OwnerKey::from_pem(pem),
        _ => OwnerKey::from_der(&bytes),
    };
    key.map_err(|e| format!("{}: {e}", path.display()))
}

/// The public key in `path`: a public key (PEM or DER SubjectPublicKeyInfo), or the public
/// half of a private key file.
pub fn load_public_key(path: &Path) -> Result<PublicKey, String> {
    let bytes = read(path)?;
    let public = match std::str::from_utf8(&bytes) {
        Ok(pem) if pem.contains("-----BEGIN") => PublicKey::from_pem(pem),
        _ => PublicKey::from_der(&bytes),
    };
    match public {
        Ok(key) => Ok(key),
        Err(public_error) => match load_owner_key(path) {
            Ok(private) => Ok(private.public_key().clone()),
            Err(_) => Err(format!("{}: {public_error}", path.display())),
        },
    }
}
