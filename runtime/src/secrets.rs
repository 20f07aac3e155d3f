//! The node's master key: seals activation secrets at rest (AES-256-GCM)
//! and derives the platform's Ed25519 key that signs review decisions and
//! each hospital's Ed25519 key that signs its documents.

use std::path::Path;

use aws_lc_rs::aead::{AES_256_GCM, Aad, NONCE_LEN, Nonce, RandomizedNonceKey};
use aws_lc_rs::hkdf::{HKDF_SHA256, Prk, Salt};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use sha2::{Digest, Sha256};

/// Why the master key could not be loaded or a secret opened.
#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error("master key file {path}: {message}")]
    KeyFile { path: String, message: String },
    #[error("sealed secret is corrupt or was sealed with another master key")]
    Open,
    #[error("cryptography failure: {0}")]
    Crypto(&'static str),
}

/// The master key of a deployment. Every node of one deployment must use the
/// same key (from the same file or `VTH_MASTER_KEY`).
pub struct MasterKey {
    key: [u8; 32],
}

impl MasterKey {
    /// A random key, for tests and throw-away runs.
    pub fn ephemeral() -> Result<Self, SecretsError> {
        let mut key = [0u8; 32];
        SystemRandom::new()
            .fill(&mut key)
            .map_err(|_| SecretsError::Crypto("random"))?;
        Ok(Self { key })
    }

    /// The key in `path` (base64 of 32 bytes), created with mode 0600 when
    /// the file does not exist.
    pub fn load_or_create(path: &Path) -> Result<Self, SecretsError> {
        let err = |message: String| SecretsError::KeyFile {
            path: path.display().to_string(),
            message,
        };
        match std::fs::read_to_string(path) {
            Ok(text) => Self::from_base64(text.trim()).map_err(|e| err(e.to_string())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = Self::ephemeral()?;
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
                }
                write_private(path, B64.encode(key.key).as_bytes())
                    .map_err(|e| err(e.to_string()))?;
                tracing::warn!(path = %path.display(), "created a new master key: back it up, sealed secrets depend on it");
                Ok(key)
            }
            Err(e) => Err(err(e.to_string())),
        }
    }

    /// A key given as base64 of 32 bytes.
    pub fn from_base64(text: &str) -> Result<Self, SecretsError> {
        let bytes = B64
            .decode(text)
            .map_err(|_| SecretsError::Crypto("master key is not base64"))?;
        let key: [u8; 32] = bytes
            .try_into()
            .map_err(|_| SecretsError::Crypto("master key must be 32 bytes"))?;
        Ok(Self { key })
    }

    fn prk(&self) -> Prk {
        Salt::new(HKDF_SHA256, b"vtelehealth").extract(&self.key)
    }

    fn derive(&self, label: &'static [u8]) -> Result<[u8; 32], SecretsError> {
        expand(&self.prk(), label)
    }

    /// Encrypt `plaintext`; `context` (e.g. "hospital/plugin") is bound to it.
    pub fn seal(&self, context: &str, plaintext: &[u8]) -> Result<Vec<u8>, SecretsError> {
        let key = RandomizedNonceKey::new(&AES_256_GCM, &self.derive(b"secrets-aead")?)
            .map_err(|_| SecretsError::Crypto("aead key"))?;
        let mut buf = plaintext.to_vec();
        let nonce = key
            .seal_in_place_append_tag(Aad::from(context.as_bytes()), &mut buf)
            .map_err(|_| SecretsError::Crypto("seal"))?;
        let mut out = nonce.as_ref().to_vec();
        out.extend_from_slice(&buf);
        Ok(out)
    }

    /// Decrypt what `seal` produced for the same `context`.
    pub fn open(&self, context: &str, sealed: &[u8]) -> Result<Vec<u8>, SecretsError> {
        if sealed.len() < NONCE_LEN {
            return Err(SecretsError::Open);
        }
        let key = RandomizedNonceKey::new(&AES_256_GCM, &self.derive(b"secrets-aead")?)
            .map_err(|_| SecretsError::Crypto("aead key"))?;
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| SecretsError::Open)?;
        let mut buf = ciphertext.to_vec();
        let plain = key
            .open_in_place(nonce, Aad::from(context.as_bytes()), &mut buf)
            .map_err(|_| SecretsError::Open)?;
        Ok(plain.to_vec())
    }

    /// The platform's signing key, derived so every node has the same one.
    pub fn platform_signer(&self) -> Result<PlatformSigner, SecretsError> {
        let seed = self.derive(b"platform-ed25519")?;
        PlatformSigner::from_seed(&seed)
    }

    /// The Ed25519 seed of the key that signs video join tokens; derived,
    /// so every node of a deployment verifies the others' tokens.
    pub fn video_token_seed(&self) -> Result<[u8; 32], SecretsError> {
        self.derive(b"video-join-token-ed25519")
    }

    /// The key that signs checkpoints of the audit chain's head; derived,
    /// so every node signs with the same key and `audit verify` can check
    /// them with the master key (or the published public key) alone.
    pub fn audit_checkpoint_signer(&self) -> Result<PlatformSigner, SecretsError> {
        let seed = self.derive(b"audit-checkpoint-ed25519")?;
        PlatformSigner::from_seed(&seed)
    }

    /// The HMAC key of the sandbox gateway's payer tickets (development
    /// only); derived, so any node accepts another's tickets.
    pub fn payment_sandbox_key(&self) -> Result<[u8; 32], SecretsError> {
        self.derive(b"payment-sandbox-ticket-hmac")
    }

    /// The key in `path`, which must exist (tools that only read, such as
    /// `runtime audit verify`, must never create a new key).
    pub fn load(path: &Path) -> Result<Self, SecretsError> {
        let text = std::fs::read_to_string(path).map_err(|e| SecretsError::KeyFile {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        Self::from_base64(text.trim()).map_err(|e| SecretsError::KeyFile {
            path: path.display().to_string(),
            message: e.to_string(),
        })
    }

    /// What derives the hospitals' document signing keys. Its API expands
    /// only document-signing labels; it is as secret as the master key.
    pub fn document_keys(&self) -> DocumentKeys {
        DocumentKeys { prk: self.prk() }
    }
}

fn expand(prk: &Prk, info: &[u8]) -> Result<[u8; 32], SecretsError> {
    let info = [info];
    let okm = prk
        .expand(&info, HKDF_SHA256)
        .map_err(|_| SecretsError::Crypto("hkdf"))?;
    let mut out = [0u8; 32];
    okm.fill(&mut out)
        .map_err(|_| SecretsError::Crypto("hkdf"))?;
    Ok(out)
}

/// HKDF info of a hospital's document signing key, followed by its id. The
/// version lets a later rotation derive new keys and keep publishing old ones.
pub const HOSPITAL_DOCUMENT_KEY_INFO: &str = "vtelehealth hospital document signing v1 ";

/// Derives each hospital's document signing key from the master key; every
/// node of a deployment derives the same key, and none is ever stored.
#[derive(Clone)]
pub struct DocumentKeys {
    prk: Prk,
}

impl DocumentKeys {
    /// The Ed25519 key that signs `hospital`'s documents.
    pub fn hospital(&self, hospital: &str) -> Result<HospitalSigner, SecretsError> {
        let info = format!("{HOSPITAL_DOCUMENT_KEY_INFO}{hospital}");
        let seed = expand(&self.prk, info.as_bytes())?;
        let pair = Ed25519KeyPair::from_seed_unchecked(&seed)
            .map_err(|_| SecretsError::Crypto("ed25519"))?;
        let public: [u8; 32] = pair
            .public_key()
            .as_ref()
            .try_into()
            .map_err(|_| SecretsError::Crypto("ed25519 public key"))?;
        Ok(HospitalSigner {
            pair,
            kid: jwk_thumbprint(&public),
            public,
        })
    }
}

/// RFC 7638 thumbprint of an Ed25519 public key (the members of the OKP JWK
/// in lexicographic order, SHA-256, base64url).
pub fn jwk_thumbprint(public: &[u8; 32]) -> String {
    let members = format!(
        r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#,
        B64URL.encode(public)
    );
    B64URL.encode(Sha256::digest(members.as_bytes()))
}

/// A hospital's document signing key.
pub struct HospitalSigner {
    pair: Ed25519KeyPair,
    public: [u8; 32],
    /// The JWK thumbprint of the public key.
    pub kid: String,
}

impl HospitalSigner {
    /// The raw Ed25519 signature of `message`.
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        self.pair.sign(message).as_ref().to_vec()
    }

    /// The public key as a JWK (OKP, Ed25519), with `kid`, `alg` and `use`.
    pub fn jwk(&self) -> serde_json::Value {
        serde_json::json!({
            "kty": "OKP",
            "crv": "Ed25519",
            "x": B64URL.encode(self.public),
            "kid": self.kid,
            "alg": "EdDSA",
            "use": "sig",
        })
    }
}

/// Signs the platform's decisions.
pub struct PlatformSigner {
    pair: Ed25519KeyPair,
    public: Vec<u8>,
    /// Hex prefix of the public key's SHA-256.
    pub key_id: String,
}

impl PlatformSigner {
    fn from_seed(seed: &[u8; 32]) -> Result<Self, SecretsError> {
        let pair = Ed25519KeyPair::from_seed_unchecked(seed)
            .map_err(|_| SecretsError::Crypto("ed25519"))?;
        let public = pair.public_key().as_ref().to_vec();
        let key_id = hex::encode(&Sha256::digest(&public)[..8]);
        Ok(Self {
            pair,
            public,
            key_id,
        })
    }

    /// Base64 Ed25519 signature of `message`.
    pub fn sign(&self, message: &[u8]) -> String {
        B64.encode(self.pair.sign(message).as_ref())
    }

    /// The raw public key.
    pub fn public_key(&self) -> &[u8] {
        &self.public
    }

    /// The raw public key, base64.
    pub fn public_key_base64(&self) -> String {
        B64.encode(&self.public)
    }

    /// Whether `signature` (base64) is this key's signature of `message`.
    pub fn verify(&self, message: &[u8], signature: &str) -> bool {
        verify_ed25519(&self.public, message, signature)
    }
}

/// Whether `signature` (base64) is the Ed25519 signature of `message` under
/// the raw public key `public`.
pub fn verify_ed25519(public: &[u8], message: &[u8], signature: &str) -> bool {
    let Ok(sig) = B64.decode(signature) else {
        return false;
    };
    aws_lc_rs::signature::UnparsedPublicKey::new(&aws_lc_rs::signature::ED25519, public)
        .verify(message, &sig)
        .is_ok()
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)?.write_all(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trip_bound_to_context() {
        let key = MasterKey::ephemeral().unwrap();
        let sealed = key.seal("bv-a/hello", b"his-password").unwrap();
        assert_eq!(key.open("bv-a/hello", &sealed).unwrap(), b"his-password");
        assert!(key.open("bv-b/hello", &sealed).is_err(), "context is bound");
        let other = MasterKey::ephemeral().unwrap();
        assert!(other.open("bv-a/hello", &sealed).is_err());
        assert!(!String::from_utf8_lossy(&sealed).contains("his-password"));
    }

    #[test]
    fn platform_key_is_stable_and_verifies() {
        let key = MasterKey::from_base64(&B64.encode([7u8; 32])).unwrap();
        let a = key.platform_signer().unwrap();
        let b = key.platform_signer().unwrap();
        assert_eq!(a.key_id, b.key_id);
        let sig = a.sign(b"decision");
        assert!(b.verify(b"decision", &sig));
        assert!(!b.verify(b"decisioN", &sig));
    }

    #[test]
    fn hospital_keys_are_stable_and_distinct() {
        let key = MasterKey::from_base64(&B64.encode([7u8; 32])).unwrap();
        let a = key.document_keys().hospital("bv-a").unwrap();
        let a2 = key.document_keys().hospital("bv-a").unwrap();
        let b = key.document_keys().hospital("bv-b").unwrap();
        assert_eq!(a.jwk(), a2.jwk());
        assert_ne!(a.kid, b.kid);
        assert_ne!(a.public.to_vec(), key.platform_signer().unwrap().public);
        let sig = a.sign(b"document");
        let public =
            aws_lc_rs::signature::UnparsedPublicKey::new(&aws_lc_rs::signature::ED25519, a.public);
        assert!(public.verify(b"document", &sig).is_ok());
    }

    #[test]
    fn key_file_is_created_private_and_reloaded() {
        let dir = tempfile::TempDir::new().unwrap();
        let path = dir.path().join("keys/master.key");
        let a = MasterKey::load_or_create(&path).unwrap();
        let b = MasterKey::load_or_create(&path).unwrap();
        assert_eq!(a.key, b.key);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
    }
}
