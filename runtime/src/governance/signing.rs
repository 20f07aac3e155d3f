//! Ed25519 vendor keys and bundle signatures.
//!
//! A vendor signs the *digests* of a bundle's manifest and component, in the
//! canonical byte string of [`signing_payload`] (`docs/bundle-format.md`).
//! Key ids are the first 8 bytes of SHA-256 of the raw 32-byte public key,
//! in hex.

use std::path::Path;

use aws_lc_rs::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::bundle::{Bundle, FORMAT};

/// The one signature algorithm bundles use.
pub const ALGORITHM: &str = "ed25519";
/// First line of the signed payload: separates bundle signatures from any
/// other use of the same key.
pub const PAYLOAD_DOMAIN: &str = "vtelehealth-bundle-signature/1";
const PEM_BEGIN: &str = "-----BEGIN PRIVATE KEY-----";
const PEM_END: &str = "-----END PRIVATE KEY-----";

/// Why a key could not be made, read or used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot generate a key pair")]
    Generate,
    #[error("{0}")]
    Malformed(String),
    #[error("cannot read {path}: {source}")]
    Io {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

/// Why a bundle's signature was refused. Messages are shown to vendors and
/// reviewers as they are.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the bundle is not signed")]
    Unsigned,
    #[error("signature algorithm `{0}` is not supported (expected ed25519)")]
    Algorithm(String),
    #[error("signed by key {key_id}, which is not a registered key of vendor `{vendor}`{other}")]
    UnknownKey {
        key_id: String,
        vendor: String,
        /// Names the vendor the key is registered to, when it is another's.
        other: String,
    },
    #[error("the manifest was changed after signing (its SHA-256 is not the signed one)")]
    ManifestChanged,
    #[error("the component was changed after signing (its SHA-256 is not the signed one)")]
    ComponentChanged,
    #[error("the signature does not verify with key {key_id}")]
    Invalid { key_id: String },
}

/// A vendor's registered public key, as the ministry's registry holds it.
/// Callers pass only keys that are not revoked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VendorKey {
    pub vendor_id: String,
    pub key_id: String,
    /// The raw 32-byte Ed25519 public key.
    pub public_key: Vec<u8>,
}

impl VendorKey {
    /// A key of `vendor_id`, its id derived from the key.
    pub fn new(vendor_id: impl Into<String>, public_key: Vec<u8>) -> Self {
        Self {
            vendor_id: vendor_id.into(),
            key_id: key_id(&public_key),
            public_key,
        }
    }
}

/// The signature block of a bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleSignature {
    /// Always `ed25519`.
    pub algorithm: String,
    pub key_id: String,
    /// Base64 of the signer's raw public key. Informative only: it lets
    /// `plugin verify` check a bundle offline; submission checks use the
    /// vendor's registered keys.
    pub public_key: String,
    /// Hex SHA-256 of the manifest text, as signed.
    pub manifest_sha256: String,
    /// Hex SHA-256 of the component bytes, as signed.
    pub component_sha256: String,
    /// Base64 of the 64-byte signature over [`signing_payload`].
    pub value: String,
}

/// A vendor's private key, able to sign bundles.
pub struct SigningKey {
    pair: Ed25519KeyPair,
}

impl SigningKey {
    /// A fresh random key.
    pub fn generate() -> Result<Self, KeyError> {
        Ok(Self {
            pair: Ed25519KeyPair::generate().map_err(|_| KeyError::Generate)?,
        })
    }

    /// The raw 32-byte public key.
    pub fn public_key(&self) -> Vec<u8> {
        self.pair.public_key().as_ref().to_vec()
    }

    /// This key's id.
    pub fn key_id(&self) -> String {
        key_id(self.pair.public_key().as_ref())
    }

    /// The private key as a PEM PKCS#8 document (what `openssl genpkey
    /// -algorithm ED25519` writes).
    pub fn to_pem(&self) -> Result<String, KeyError> {
        let der = self.pair.to_pkcs8v1().map_err(|_| KeyError::Generate)?;
        let body = BASE64.encode(der.as_ref());
        let mut pem = format!("{PEM_BEGIN}\n");
        for line in body.as_bytes().chunks(64) {
            pem.push_str(&String::from_utf8_lossy(line));
            pem.push('\n');
        }
        pem.push_str(PEM_END);
        pem.push('\n');
        Ok(pem)
    }

    /// Read a PEM PKCS#8 Ed25519 private key.
    pub fn from_pem(pem: &str) -> Result<Self, KeyError> {
        let body: String = pem
            .trim()
            .strip_prefix(PEM_BEGIN)
            .and_then(|rest| rest.strip_suffix(PEM_END))
            .ok_or_else(|| {
                KeyError::Malformed(format!(
                    "not a PEM private key (expected {PEM_BEGIN} ... {PEM_END})"
                ))
            })?
            .split_whitespace()
            .collect();
        let der = BASE64
            .decode(body)
            .map_err(|e| KeyError::Malformed(format!("private key is not base64: {e}")))?;
        let pair = Ed25519KeyPair::from_pkcs8(&der)
            .map_err(|e| KeyError::Malformed(format!("not an Ed25519 private key: {e}")))?;
        Ok(Self { pair })
    }

    /// Read a private key file.
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let text = std::fs::read_to_string(path).map_err(|source| KeyError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_pem(&text)
    }

    /// Sign `bundle`, replacing any earlier signature.
    pub fn sign(&self, bundle: &mut Bundle) {
        let manifest_sha256 = bundle.manifest_sha256();
        let component_sha256 = bundle.component_sha256();
        let payload = signing_payload(FORMAT, &manifest_sha256, &component_sha256);
        bundle.signature = Some(BundleSignature {
            algorithm: ALGORITHM.into(),
            key_id: self.key_id(),
            public_key: encode_public_key(&self.public_key()),
            manifest_sha256,
            component_sha256,
            value: BASE64.encode(self.pair.sign(&payload).as_ref()),
        });
    }
}

/// The key id of a raw public key: hex of the first 8 bytes of its SHA-256.
pub fn key_id(public_key: &[u8]) -> String {
    hex::encode(&Sha256::digest(public_key)[..8])
}

/// The canonical bytes a vendor signs: four LF-terminated ASCII lines.
///
/// ```text
/// vtelehealth-bundle-signature/1
/// format: vtelehealth-bundle/1
/// manifest-sha256: <64 lowercase hex>
/// component-sha256: <64 lowercase hex>
/// ```
pub fn signing_payload(format: &str, manifest_sha256: &str, component_sha256: &str) -> Vec<u8> {
    format!(
        "{PAYLOAD_DOMAIN}\nformat: {format}\nmanifest-sha256: {manifest_sha256}\ncomponent-sha256: {component_sha256}\n"
    )
    .into_bytes()
}

/// Parse a public key given as base64 (or hex) of the raw 32 bytes.
pub fn parse_public_key(text: &str) -> Result<Vec<u8>, KeyError> {
    let text = text.trim();
    let bytes = if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        hex::decode(text).map_err(|e| KeyError::Malformed(e.to_string()))?
    } else {
        BASE64
            .decode(text)
            .map_err(|e| KeyError::Malformed(format!("public key is not base64: {e}")))?
    };
    if bytes.len() != 32 {
        return Err(KeyError::Malformed(format!(
            "an Ed25519 public key is 32 bytes, this one is {}",
            bytes.len()
        )));
    }
    Ok(bytes)
}

/// Base64 of a raw public key, as `keys new` prints it.
pub fn encode_public_key(public_key: &[u8]) -> String {
    BASE64.encode(public_key)
}

/// Check `bundle`'s signature against the keys registered to the vendor its
/// manifest names (`vendor`); returns the key that signed it.
pub fn verify<'k>(
    bundle: &Bundle,
    vendor: &str,
    keys: &'k [VendorKey],
) -> Result<&'k VendorKey, SignatureError> {
    let sig = bundle.signature.as_ref().ok_or(SignatureError::Unsigned)?;
    if sig.algorithm != ALGORITHM {
        return Err(SignatureError::Algorithm(sig.algorithm.clone()));
    }
    let Some(key) = keys
        .iter()
        .find(|k| k.vendor_id == vendor && k.key_id == sig.key_id)
    else {
        let other = keys
            .iter()
            .find(|k| k.key_id == sig.key_id)
            .map(|k| format!(" (it is registered to vendor `{}`)", k.vendor_id))
            .unwrap_or_default();
        return Err(SignatureError::UnknownKey {
            key_id: sig.key_id.clone(),
            vendor: vendor.to_owned(),
            other,
        });
    };
    // Compare digests first only to say *what* changed; the signature check
    // below is over the recomputed digests, so it alone decides.
    let manifest_sha256 = bundle.manifest_sha256();
    let component_sha256 = bundle.component_sha256();
    if manifest_sha256 != sig.manifest_sha256 {
        return Err(SignatureError::ManifestChanged);
    }
    if component_sha256 != sig.component_sha256 {
        return Err(SignatureError::ComponentChanged);
    }
    let invalid = || SignatureError::Invalid {
        key_id: sig.key_id.clone(),
    };
    let value = BASE64.decode(&sig.value).map_err(|_| invalid())?;
    let payload = signing_payload(FORMAT, &manifest_sha256, &component_sha256);
    UnparsedPublicKey::new(&ED25519, &key.public_key)
        .verify(&payload, &value)
        .map_err(|_| invalid())?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bundle() -> Bundle {
        Bundle::new("id = \"x\"\n".into(), b"\0asm component".to_vec())
    }

    #[test]
    fn canonical_payload_is_stable() {
        let m = "a".repeat(64);
        let c = "b".repeat(64);
        assert_eq!(
            String::from_utf8(signing_payload("vtelehealth-bundle/1", &m, &c)).expect("ascii"),
            format!(
                "vtelehealth-bundle-signature/1\nformat: vtelehealth-bundle/1\nmanifest-sha256: {m}\ncomponent-sha256: {c}\n"
            )
        );
    }

    #[test]
    fn key_id_is_a_hex_prefix_of_the_key_digest() {
        let id = key_id(&[7u8; 32]);
        assert_eq!(id.len(), 16);
        assert_eq!(id, hex::encode(Sha256::digest([7u8; 32]))[..16]);
    }

    #[test]
    fn pem_round_trip() {
        let key = SigningKey::generate().expect("key");
        let pem = key.to_pem().expect("pem");
        assert!(pem.starts_with(PEM_BEGIN));
        let again = SigningKey::from_pem(&pem).expect("parse");
        assert_eq!(again.public_key(), key.public_key());
        assert!(SigningKey::from_pem("not a key").is_err());
        assert!(SigningKey::from_pem(&format!("{PEM_BEGIN}\nAAAA\n{PEM_END}")).is_err());
    }

    #[test]
    fn public_keys_parse_from_base64_or_hex() {
        let key = SigningKey::generate().expect("key");
        let raw = key.public_key();
        assert_eq!(
            parse_public_key(&encode_public_key(&raw)).expect("b64"),
            raw
        );
        assert_eq!(parse_public_key(&hex::encode(&raw)).expect("hex"), raw);
        assert!(parse_public_key("AAAA").is_err());
    }

    #[test]
    fn sign_verify_round_trip_and_tampering() {
        let key = SigningKey::generate().expect("key");
        let keys = [VendorKey::new("acme", key.public_key())];
        let mut b = bundle();
        assert_eq!(verify(&b, "acme", &keys), Err(SignatureError::Unsigned));
        key.sign(&mut b);
        assert_eq!(
            verify(&b, "acme", &keys).expect("valid").key_id,
            key.key_id()
        );

        let mut tampered = b.clone();
        tampered.manifest.push('#');
        assert_eq!(
            verify(&tampered, "acme", &keys),
            Err(SignatureError::ManifestChanged)
        );
        let mut tampered = b.clone();
        tampered.component.push(0);
        assert_eq!(
            verify(&tampered, "acme", &keys),
            Err(SignatureError::ComponentChanged)
        );
        // Digests edited to match the tampered content: the signature itself fails.
        let mut tampered = b.clone();
        tampered.component.push(0);
        let digest = tampered.component_sha256();
        tampered
            .signature
            .as_mut()
            .expect("signed")
            .component_sha256 = digest;
        assert!(matches!(
            verify(&tampered, "acme", &keys),
            Err(SignatureError::Invalid { .. })
        ));
    }

    #[test]
    fn another_vendors_key_is_refused() {
        let ours = SigningKey::generate().expect("key");
        let theirs = SigningKey::generate().expect("key");
        let keys = [
            VendorKey::new("acme", ours.public_key()),
            VendorKey::new("globex", theirs.public_key()),
        ];
        let mut b = bundle();
        theirs.sign(&mut b);
        let err = verify(&b, "acme", &keys).expect_err("other vendor");
        assert!(
            err.to_string().contains("registered to vendor `globex`"),
            "{err}"
        );
        assert!(verify(&b, "globex", &keys).is_ok());
    }
}
