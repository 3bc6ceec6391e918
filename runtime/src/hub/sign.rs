//! Detached Ed25519 signatures over the exact bytes of an index.
//!
//! `hub-index.json.sig` is a JSON list of `{"key_id": …, "signature": <base64>}`, so several
//! signers can sign the same index; the agent counts valid signatures from distinct trusted keys
//! against `required_signatures`.

use std::collections::BTreeSet;
use std::path::Path;

use base64::Engine as _;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::{Signature, Signer};
pub use ed25519_dalek::{SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use super::{HubError, TrustedKey};

/// One signature in a signature file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignatureEntry {
    /// The signer's key id, as configured in the agents' `trusted_keys`.
    pub key_id: String,
    /// Base64 of the 64-byte Ed25519 signature.
    pub signature: String,
}

/// A fresh random signing key.
pub fn generate_key() -> SigningKey {
    SigningKey::generate(&mut rand::rngs::OsRng)
}

/// The private key as PKCS#8 PEM.
pub fn private_key_pem(key: &SigningKey) -> Result<String, HubError> {
    key.to_pkcs8_pem(LineEnding::LF)
        .map(|pem| pem.to_string())
        .map_err(|e| HubError::Config(format!("cannot encode the private key: {e}")))
}

/// The public key as SPKI PEM (`BEGIN PUBLIC KEY`).
pub fn public_key_pem(key: &VerifyingKey) -> Result<String, HubError> {
    key.to_public_key_pem(LineEnding::LF)
        .map_err(|e| HubError::Config(format!("cannot encode the public key: {e}")))
}

/// The public key as base64 of its 32 bytes, the short form for `trusted_keys`.
pub fn public_key_base64(key: &VerifyingKey) -> String {
    base64::engine::general_purpose::STANDARD.encode(key.as_bytes())
}

/// Reads a PKCS#8 PEM private key.
pub fn read_signing_key(path: &Path) -> Result<SigningKey, HubError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| HubError::io(format!("reading key {}", path.display()), e))?;
    SigningKey::from_pkcs8_pem(&text).map_err(|e| {
        HubError::Config(format!(
            "{} is not a PKCS#8 PEM Ed25519 private key: {e}",
            path.display()
        ))
    })
}

/// Signs the exact bytes of an index.
pub fn sign(index: &[u8], key: &SigningKey, key_id: &str) -> SignatureEntry {
    SignatureEntry {
        key_id: key_id.to_string(),
        signature: base64::engine::general_purpose::STANDARD.encode(key.sign(index).to_bytes()),
    }
}

/// Adds `entry` to a signature file's contents (`None`: no file yet), replacing an earlier
/// signature with the same key id; returns the new contents.
pub fn add_signature(existing: Option<&[u8]>, entry: SignatureEntry) -> Result<Vec<u8>, HubError> {
    let mut entries = match existing {
        Some(bytes) => parse_signatures(bytes, "existing signature file")?,
        None => Vec::new(),
    };
    entries.retain(|e| e.key_id != entry.key_id);
    entries.push(entry);
    let mut out = serde_json::to_vec_pretty(&entries)
        .map_err(|e| HubError::Config(format!("cannot serialise signatures: {e}")))?;
    out.push(b'\n');
    Ok(out)
}

/// Parses a signature file.
pub fn parse_signatures(bytes: &[u8], index: &str) -> Result<Vec<SignatureEntry>, HubError> {
    serde_json::from_slice(bytes).map_err(|e| HubError::MalformedSignature {
        index: index.to_string(),
        reason: format!("expected a JSON list of {{key_id, signature}}: {e}"),
    })
}

/// Checks the signatures over `index_bytes` (from `index`, for messages) against the trusted
/// keys; returns how many distinct trusted keys signed validly, or why that is fewer than
/// `required`. With `required` 0 nothing is demanded.
pub fn verify(
    index_bytes: &[u8],
    signatures: Option<&[u8]>,
    trusted: &[TrustedKey],
    required: usize,
    index: &str,
) -> Result<usize, HubError> {
    let entries = match signatures {
        Some(bytes) => parse_signatures(bytes, index)?,
        None => Vec::new(),
    };
    if entries.is_empty() {
        return if required == 0 {
            Ok(0)
        } else {
            Err(HubError::MissingSignature {
                index: index.to_string(),
                required,
            })
        };
    }
    let mut valid_keys = BTreeSet::new();
    let mut bad_key = None;
    let mut untrusted = Vec::new();
    for entry in &entries {
        let Some(trusted_key) = trusted.iter().find(|k| k.id == entry.key_id) else {
            untrusted.push(entry.key_id.clone());
            continue;
        };
        let key = trusted_key.verifying_key()?;
        let ok = base64::engine::general_purpose::STANDARD
            .decode(entry.signature.trim())
            .ok()
            .and_then(|raw| Signature::from_slice(&raw).ok())
            .is_some_and(|sig| key.verify_strict(index_bytes, &sig).is_ok());
        if ok {
            // Distinct keys: one key listed under two ids counts once.
            valid_keys.insert(key.to_bytes());
        } else if bad_key.is_none() {
            bad_key = Some(entry.key_id.clone());
        }
    }
    let valid = valid_keys.len();
    if valid >= required {
        return Ok(valid);
    }
    if let Some(key_id) = bad_key {
        return Err(HubError::BadSignature {
            index: index.to_string(),
            key_id,
        });
    }
    if valid == 0 {
        return Err(HubError::UntrustedSigner {
            index: index.to_string(),
            key_ids: untrusted.join(", "),
        });
    }
    Err(HubError::NotEnoughSignatures {
        index: index.to_string(),
        valid,
        required,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn trusted(id: &str, key: &SigningKey) -> TrustedKey {
        TrustedKey {
            id: id.into(),
            key: public_key_base64(&key.verifying_key()),
        }
    }

    #[test]
    fn pem_round_trip_and_threshold() {
        let a = generate_key();
        let b = generate_key();
        let pem = private_key_pem(&a).unwrap();
        let a2 = SigningKey::from_pkcs8_pem(&pem).unwrap();
        assert_eq!(a2.to_bytes(), a.to_bytes());
        let pem_key = TrustedKey {
            id: "a".into(),
            key: public_key_pem(&a.verifying_key()).unwrap(),
        };
        let keys = [pem_key, trusted("b", &b)];
        let body = b"{}";
        let one = add_signature(None, sign(body, &a, "a")).unwrap();
        assert_eq!(verify(body, Some(&one), &keys, 1, "t").unwrap(), 1);
        assert!(matches!(
            verify(body, Some(&one), &keys, 2, "t"),
            Err(HubError::NotEnoughSignatures { valid: 1, .. })
        ));
        let two = add_signature(Some(&one), sign(body, &b, "b")).unwrap();
        assert_eq!(verify(body, Some(&two), &keys, 2, "t").unwrap(), 2);
        // Re-signing with the same id replaces, it does not count twice.
        let again = add_signature(Some(&one), sign(body, &a, "a")).unwrap();
        assert_eq!(parse_signatures(&again, "t").unwrap().len(), 1);
    }

    #[test]
    fn same_key_under_two_ids_counts_once() {
        let a = generate_key();
        let keys = [trusted("a1", &a), trusted("a2", &a)];
        let body = b"x";
        let sig = add_signature(None, sign(body, &a, "a1")).unwrap();
        let sig = add_signature(Some(&sig), sign(body, &a, "a2")).unwrap();
        assert!(matches!(
            verify(body, Some(&sig), &keys, 2, "t"),
            Err(HubError::NotEnoughSignatures { valid: 1, .. })
        ));
    }
}
