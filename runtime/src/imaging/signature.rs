//! The hospital's signature on a FHIR document Bundle, and its check.
//!
//! `Bundle.signature.data` is the base64 of a JWS in compact serialization
//! with a detached payload (RFC 7515, appendix F): `header..signature`. The
//! header is `{"alg":"EdDSA","kid":<the hospital key's kid>}`; the payload
//! is the canonical JSON of the Bundle without its `signature` element:
//! object members sorted by key (byte order of their UTF-8), no whitespace,
//! strings and numbers as `serde_json` writes them.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD as B64, URL_SAFE_NO_PAD as B64URL};
use serde_json::{Value, json};

use crate::secrets::{HospitalSigner, jwk_thumbprint};

/// `Signature.type` of an author's signature (ASTM E1762-95).
pub const AUTHOR_SIGNATURE: &str = "1.2.840.10065.1.12.1.1";
/// The code system of [`AUTHOR_SIGNATURE`].
pub const SIGNATURE_TYPE_SYSTEM: &str = "urn:iso-astm:E1762-95:2013";
/// `Signature.sigFormat` of a JWS.
pub const JOSE: &str = "application/jose";

/// Why a document's signature does not verify.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("the document is malformed: {0}")]
    Malformed(String),
    #[error("the key is not an Ed25519 JWK: {0}")]
    BadKey(String),
    #[error("the document was signed with key `{signed}`, not `{given}`")]
    WrongKey { signed: String, given: String },
    #[error("the signature does not match the document: it was altered or signed by another key")]
    BadSignature,
}

/// The canonical JSON of `v` (see the module documentation).
pub fn canonical_json(v: &Value) -> String {
    let mut out = String::new();
    write_canonical(v, &mut out);
    out
}

fn write_canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(map) => {
            let mut members: Vec<_> = map.iter().collect();
            members.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push('{');
            for (i, (k, child)) in members.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                write_canonical(child, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, child) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(child, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// The bytes the signature covers: the Bundle without `signature`.
fn payload(bundle: &Value) -> String {
    let mut unsigned = bundle.clone();
    if let Some(o) = unsigned.as_object_mut() {
        o.remove("signature");
    }
    canonical_json(&unsigned)
}

/// Sign `bundle` as its author: sets `Bundle.signature`. `who` is the
/// reference to the signing Organization, `when` a FHIR instant.
pub fn sign(bundle: &mut Value, signer: &HospitalSigner, who: Value, when: &str) {
    let header = B64URL.encode(json!({ "alg": "EdDSA", "kid": signer.kid }).to_string());
    let input = format!("{header}.{}", B64URL.encode(payload(bundle)));
    let jws = format!("{header}..{}", B64URL.encode(signer.sign(input.as_bytes())));
    bundle["signature"] = json!({
        "type": [{ "system": SIGNATURE_TYPE_SYSTEM, "code": AUTHOR_SIGNATURE, "display": "Author's Signature" }],
        "when": when,
        "who": who,
        "sigFormat": JOSE,
        "data": B64.encode(jws),
    });
}

/// Check a signed document against the signer's public key (an OKP/Ed25519
/// JWK as published at `/api/v1/hospitals/{hospital}/signing-key`). Returns
/// the key id the document names.
pub fn verify(bundle: &Value, jwk: &Value) -> Result<String, VerifyError> {
    let malformed = |m: &str| VerifyError::Malformed(m.to_owned());
    let bad_key = |m: &str| VerifyError::BadKey(m.to_owned());
    if jwk["kty"] != "OKP" || jwk["crv"] != "Ed25519" {
        return Err(bad_key("kty must be OKP and crv Ed25519"));
    }
    let x: [u8; 32] = jwk["x"]
        .as_str()
        .and_then(|x| B64URL.decode(x).ok())
        .and_then(|x| x.try_into().ok())
        .ok_or_else(|| bad_key("x must be the base64url of 32 bytes"))?;
    let key_id = jwk_thumbprint(&x);

    let signature = bundle
        .get("signature")
        .ok_or_else(|| malformed("the Bundle has no signature"))?;
    if signature["sigFormat"] != JOSE {
        return Err(malformed("signature.sigFormat is not application/jose"));
    }
    let author = signature["type"]
        .as_array()
        .is_some_and(|t| t.iter().any(|c| c["code"] == AUTHOR_SIGNATURE));
    if !author {
        return Err(malformed("signature.type is not an author's signature"));
    }
    let jws = signature["data"]
        .as_str()
        .and_then(|d| B64.decode(d).ok())
        .and_then(|d| String::from_utf8(d).ok())
        .ok_or_else(|| malformed("signature.data is not base64 of a JWS"))?;
    let [header, detached, sig] = jws.split('.').collect::<Vec<_>>()[..] else {
        return Err(malformed("signature.data is not a compact JWS"));
    };
    if !detached.is_empty() {
        return Err(malformed("the JWS payload must be detached"));
    }
    let header_json: Value = B64URL
        .decode(header)
        .ok()
        .and_then(|h| serde_json::from_slice(&h).ok())
        .ok_or_else(|| malformed("the JWS header is not base64url JSON"))?;
    if header_json["alg"] != "EdDSA" {
        return Err(malformed("the JWS algorithm must be EdDSA"));
    }
    let signed_kid = header_json["kid"].as_str().unwrap_or_default().to_owned();
    if signed_kid != key_id {
        return Err(VerifyError::WrongKey {
            signed: signed_kid,
            given: key_id,
        });
    }
    let sig = B64URL
        .decode(sig)
        .map_err(|_| malformed("the JWS signature is not base64url"))?;
    let input = format!("{header}.{}", B64URL.encode(payload(bundle)));
    aws_lc_rs::signature::UnparsedPublicKey::new(&aws_lc_rs::signature::ED25519, &x)
        .verify(input.as_bytes(), &sig)
        .map_err(|_| VerifyError::BadSignature)?;
    Ok(key_id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secrets::MasterKey;

    #[test]
    fn canonical_json_sorts_members_and_drops_whitespace() {
        let v: Value =
            serde_json::from_str(r#"{ "b": [1, {"z": 2, "a": "é\n"}], "a": null }"#).expect("json");
        assert_eq!(
            canonical_json(&v),
            r#"{"a":null,"b":[1,{"a":"é\n","z":2}]}"#
        );
    }

    #[test]
    fn signed_documents_verify_and_tampering_is_found() {
        let master = MasterKey::ephemeral().expect("key");
        let keys = master.document_keys();
        let a = keys.hospital("bv-a").expect("signer");
        let b = keys.hospital("bv-b").expect("signer");
        let mut doc = json!({ "resourceType": "Bundle", "type": "document", "entry": [] });
        sign(
            &mut doc,
            &a,
            json!({ "reference": "Organization/bv-a" }),
            "2026-01-01T00:00:00Z",
        );
        assert_eq!(verify(&doc, &a.jwk()).expect("verifies"), a.kid);
        // Reordering members changes nothing: the payload is canonical.
        let reparsed: Value = serde_json::from_str(&doc.to_string()).expect("json");
        assert!(verify(&reparsed, &a.jwk()).is_ok());
        assert!(matches!(
            verify(&doc, &b.jwk()),
            Err(VerifyError::WrongKey { .. })
        ));
        let mut tampered = doc.clone();
        tampered["type"] = json!("collection");
        assert!(matches!(
            verify(&tampered, &a.jwk()),
            Err(VerifyError::BadSignature)
        ));
        let mut unsigned = doc;
        unsigned["signature"]["data"] = json!("bm90IGEgandz");
        assert!(matches!(
            verify(&unsigned, &a.jwk()),
            Err(VerifyError::Malformed(_))
        ));
    }
}
