//! The bundle file (`.vtpkg`): a JSON envelope holding the manifest text, the
//! component in base64 and the vendor's signature. Documented in
//! `docs/bundle-format.md`.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};

use super::manifest::MAX_MANIFEST_BYTES;
use super::signing::BundleSignature;
use crate::engine::digest;
use crate::plugins::MAX_COMPONENT_BYTES;

/// The format tag of this version of the bundle format.
pub const FORMAT: &str = "vtelehealth-bundle/1";

/// Largest bundle file accepted: a component at its limit in base64, a
/// manifest at its limit with every byte JSON-escaped, and the envelope.
pub const MAX_BUNDLE_BYTES: usize =
    (MAX_COMPONENT_BYTES as usize).div_ceil(3) * 4 + MAX_MANIFEST_BYTES * 6 + (16 << 10);

/// Why a bundle file could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BundleError {
    #[error("the bundle is {size} bytes, over the {MAX_BUNDLE_BYTES} byte limit")]
    TooLarge { size: usize },
    #[error("not a bundle (expected a JSON object with format, manifest, component): {0}")]
    Json(String),
    #[error("bundle format `{0}` is not supported (expected {FORMAT})")]
    Format(String),
    #[error("the component is not valid base64: {0}")]
    Base64(String),
}

/// A plugin bundle: manifest text, component bytes, and the vendor's
/// signature over their digests once signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bundle {
    /// The manifest exactly as the vendor wrote it (its bytes are signed).
    pub manifest: String,
    /// The Wasm component.
    pub component: Vec<u8>,
    pub signature: Option<BundleSignature>,
}

/// The file's JSON shape.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Envelope {
    format: String,
    manifest: String,
    component: String,
    #[serde(default)]
    signature: Option<BundleSignature>,
}

impl Bundle {
    /// An unsigned bundle.
    pub fn new(manifest: String, component: Vec<u8>) -> Self {
        Self {
            manifest,
            component,
            signature: None,
        }
    }

    /// Read a bundle file's bytes. Only the envelope is checked here; the
    /// contents are checked by [`super::checks::check_submission`].
    pub fn from_json(bytes: &[u8]) -> Result<Self, BundleError> {
        if bytes.len() > MAX_BUNDLE_BYTES {
            return Err(BundleError::TooLarge { size: bytes.len() });
        }
        let envelope: Envelope =
            serde_json::from_slice(bytes).map_err(|e| BundleError::Json(e.to_string()))?;
        if envelope.format != FORMAT {
            return Err(BundleError::Format(envelope.format));
        }
        let component = BASE64
            .decode(envelope.component.as_bytes())
            .map_err(|e| BundleError::Base64(e.to_string()))?;
        Ok(Self {
            manifest: envelope.manifest,
            component,
            signature: envelope.signature,
        })
    }

    /// The bundle file's bytes: indented JSON, one field per line.
    pub fn to_json(&self) -> Vec<u8> {
        let envelope = Envelope {
            format: FORMAT.into(),
            manifest: self.manifest.clone(),
            component: BASE64.encode(&self.component),
            signature: self.signature.clone(),
        };
        // Serializing plain strings and options cannot fail.
        let mut out = serde_json::to_vec_pretty(&envelope).unwrap_or_default();
        out.push(b'\n');
        out
    }

    /// Hex SHA-256 of the manifest text.
    pub fn manifest_sha256(&self) -> String {
        digest(self.manifest.as_bytes())
    }

    /// Hex SHA-256 of the component: its identity in caches and logs too.
    pub fn component_sha256(&self) -> String {
        digest(&self.component)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::governance::signing::SigningKey;

    #[test]
    fn json_round_trip_signed_and_unsigned() {
        let mut bundle = Bundle::new("id = \"x\"\n".into(), vec![0, 97, 115, 109, 255]);
        let back = Bundle::from_json(&bundle.to_json()).expect("parse");
        assert_eq!(back, bundle);
        SigningKey::generate().expect("key").sign(&mut bundle);
        let text = bundle.to_json();
        assert!(String::from_utf8_lossy(&text).contains("\"format\": \"vtelehealth-bundle/1\""));
        assert_eq!(Bundle::from_json(&text).expect("parse"), bundle);
    }

    #[test]
    fn refuses_what_is_not_a_bundle() {
        assert!(matches!(
            Bundle::from_json(b"\0asm"),
            Err(BundleError::Json(_))
        ));
        assert!(matches!(
            Bundle::from_json(br#"{"format":"zip/2","manifest":"","component":""}"#),
            Err(BundleError::Format(f)) if f == "zip/2"
        ));
        assert!(matches!(
            Bundle::from_json(
                br#"{"format":"vtelehealth-bundle/1","manifest":"","component":"!!"}"#
            ),
            Err(BundleError::Base64(_))
        ));
        assert!(matches!(
            Bundle::from_json(
                br#"{"format":"vtelehealth-bundle/1","manifest":"","component":"","extra":1}"#
            ),
            Err(BundleError::Json(_))
        ));
        assert!(matches!(
            Bundle::from_json(&vec![b' '; MAX_BUNDLE_BYTES + 1]),
            Err(BundleError::TooLarge { .. })
        ));
    }
}
