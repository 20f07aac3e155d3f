//! The built-in provider's ES256 signing keys: generated with aws-lc-rs,
//! kept in the database (so restarts and other nodes see the same keys) and
//! rotated with an overlap during which the previous key stays published.

use std::sync::RwLock;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{DecodingKey, EncodingKey};
use serde_json::{Value, json};
use sqlx::Row;

use super::IdentityError;
use crate::db::Database;

/// One P-256 key of the provider.
#[derive(Clone)]
pub struct SigningKey {
    pub kid: String,
    pub created_at: i64,
    pub retired_at: Option<i64>,
    encoding: EncodingKey,
    decoding: DecodingKey,
    x: String,
    y: String,
}

impl SigningKey {
    fn from_pkcs8(
        kid: String,
        pkcs8: &[u8],
        created_at: i64,
        retired_at: Option<i64>,
    ) -> Result<Self, IdentityError> {
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8)
            .map_err(|_| IdentityError::Internal(format!("signing key {kid} is unreadable")))?;
        // Uncompressed point: 0x04 || x (32 bytes) || y (32 bytes).
        let point = pair.public_key().as_ref();
        if point.len() != 65 || point[0] != 4 {
            return Err(IdentityError::Internal(format!(
                "signing key {kid} has an unexpected public key"
            )));
        }
        Ok(Self {
            encoding: EncodingKey::from_ec_der(pkcs8),
            decoding: DecodingKey::from_ec_der(point),
            x: URL_SAFE_NO_PAD.encode(&point[1..33]),
            y: URL_SAFE_NO_PAD.encode(&point[33..65]),
            kid,
            created_at,
            retired_at,
        })
    }

    pub fn encoding(&self) -> &EncodingKey {
        &self.encoding
    }

    pub fn decoding(&self) -> &DecodingKey {
        &self.decoding
    }

    /// The public key as a JWK.
    pub fn jwk(&self) -> Value {
        json!({
            "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256",
            "kid": self.kid, "x": self.x, "y": self.y,
        })
    }
}

/// The provider's keys, newest first, cached from the database.
pub struct KeyStore {
    db: Database,
    keys: RwLock<Vec<SigningKey>>,
}

impl KeyStore {
    /// Load the keys, generating the first one on a fresh database.
    pub async fn load(db: Database, now: i64) -> Result<Self, IdentityError> {
        let store = Self {
            db,
            keys: RwLock::new(Vec::new()),
        };
        store.reload().await?;
        if store.active().is_none() {
            store.rotate(now).await?;
        }
        Ok(store)
    }

    /// Re-read every key from the database (another node may have rotated).
    pub async fn reload(&self) -> Result<(), IdentityError> {
        let rows = sqlx::query(
            "SELECT kid, private_pkcs8, created_at, retired_at FROM identity_keys \
             ORDER BY created_at DESC, kid DESC",
        )
        .fetch_all(&self.db.pool)
        .await?;
        let mut keys = Vec::with_capacity(rows.len());
        for row in rows {
            let kid: String = row.try_get("kid")?;
            let pkcs8: String = row.try_get("private_pkcs8")?;
            let pkcs8 = STANDARD
                .decode(pkcs8)
                .map_err(|_| IdentityError::Internal(format!("signing key {kid} is not base64")))?;
            keys.push(SigningKey::from_pkcs8(
                kid,
                &pkcs8,
                row.try_get("created_at")?,
                row.try_get("retired_at")?,
            )?);
        }
        *self.keys.write().unwrap_or_else(|e| e.into_inner()) = keys;
        Ok(())
    }

    /// The key that signs new tokens.
    pub fn active(&self) -> Option<SigningKey> {
        self.keys
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .find(|k| k.retired_at.is_none())
            .cloned()
    }

    /// Whether key `kid` is among [`Self::published`] at `now`.
    pub fn is_published(&self, kid: &str, now: i64, overlap: i64) -> bool {
        self.keys
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .any(|k| k.kid == kid && k.retired_at.is_none_or(|r| now - r <= overlap))
    }

    /// Keys that still verify tokens at `now`: the active one and those
    /// retired less than `overlap` seconds ago.
    pub fn published(&self, now: i64, overlap: i64) -> Vec<SigningKey> {
        self.keys
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|k| k.retired_at.is_none_or(|r| now - r <= overlap))
            .cloned()
            .collect()
    }

    /// Generate a new active key and retire the previous one (it stays
    /// published for the overlap). Returns the new key id.
    pub async fn rotate(&self, now: i64) -> Result<String, IdentityError> {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|_| IdentityError::Internal("cannot generate a P-256 key".into()))?;
        let kid = format!("es256-{}", uuid::Uuid::now_v7().simple());
        let mut tx = self.db.begin_write().await?;
        sqlx::query("UPDATE identity_keys SET retired_at = $1 WHERE retired_at IS NULL")
            .bind(now)
            .execute(&mut *tx.tx)
            .await?;
        sqlx::query(
            "INSERT INTO identity_keys (kid, private_pkcs8, created_at, retired_at) VALUES ($1, $2, $3, NULL)",
        )
        .bind(&kid)
        .bind(STANDARD.encode(pkcs8.as_ref()))
        .bind(now)
        .execute(&mut *tx.tx)
        .await?;
        tx.commit().await?;
        self.reload().await?;
        tracing::info!(%kid, "identity signing key rotated");
        Ok(kid)
    }
}
