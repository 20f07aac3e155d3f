//! `kv`: key-value storage private to each (hospital, plugin) pair, with a
//! byte quota, stored through sqlx in SQLite or PostgreSQL.

use std::sync::Arc;

use sqlx::AnyPool;
use tracing::instrument;

use crate::bindings::WitError;
use crate::bindings::vtelehealth::platform::kv::Host;
use crate::config::{KV_MAX_KEY_BYTES, KV_MAX_LIST, Limits};
use crate::sandbox::CallState;

/// Why a kv operation was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum KvError {
    #[error("key must be 1 to {KV_MAX_KEY_BYTES} bytes, got {0}")]
    InvalidKey(usize),
    #[error("value of {size} bytes exceeds the {limit} byte limit per value")]
    ValueTooLarge { size: usize, limit: usize },
    #[error("kv quota exceeded: {needed} bytes needed, quota is {quota} bytes for this hospital and plugin")]
    Quota { needed: u64, quota: u64 },
    #[error("storage unavailable: {0}")]
    Database(#[from] sqlx::Error),
}

impl From<KvError> for WitError {
    fn from(e: KvError) -> Self {
        match &e {
            KvError::InvalidKey(_) | KvError::ValueTooLarge { .. } => WitError::Invalid(e.to_string()),
            KvError::Quota { .. } => WitError::Quota(e.to_string()),
            KvError::Database(db) => {
                tracing::error!(error = %db, "kv storage error");
                WitError::Unavailable("storage unavailable".into())
            }
        }
    }
}

/// The kv tables of one database.
#[derive(Clone)]
pub struct KvStore {
    pool: AnyPool,
}

/// One (hospital, plugin) pair's view of the store, with its limits.
#[derive(Clone)]
pub struct KvScope {
    store: Arc<KvStore>,
    hospital: String,
    plugin: String,
    quota: u64,
    max_value: usize,
}

impl KvStore {
    /// A store over `pool` (already migrated).
    pub fn new(pool: AnyPool) -> Self {
        Self { pool }
    }

    /// The scope of `plugin` at `hospital`, under `limits`.
    pub fn scope(self: &Arc<Self>, hospital: &str, plugin: &str, limits: &Limits) -> KvScope {
        KvScope {
            store: self.clone(),
            hospital: hospital.to_owned(),
            plugin: plugin.to_owned(),
            quota: limits.kv_quota_bytes,
            max_value: limits.kv_max_value_bytes,
        }
    }
}

fn check_key(key: &str) -> Result<(), KvError> {
    if key.is_empty() || key.len() > KV_MAX_KEY_BYTES {
        return Err(KvError::InvalidKey(key.len()));
    }
    Ok(())
}

impl KvScope {
    /// The value under `key`.
    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        check_key(key)?;
        let value = sqlx::query_scalar::<_, Vec<u8>>(
            "SELECT value FROM kv_entries WHERE hospital_id = $1 AND plugin_id = $2 AND key = $3",
        )
        .bind(&self.hospital)
        .bind(&self.plugin)
        .bind(key)
        .fetch_optional(&self.store.pool)
        .await?;
        Ok(value)
    }

    /// Store `value` under `key`; with `expected`, only if the current value
    /// matches it (`Some(None)`: only if absent). Returns whether it wrote.
    pub async fn put(&self, key: &str, value: &[u8], expected: Option<Option<&[u8]>>) -> Result<bool, KvError> {
        check_key(key)?;
        if value.len() > self.max_value {
            return Err(KvError::ValueTooLarge {
                size: value.len(),
                limit: self.max_value,
            });
        }
        let mut tx = self.store.pool.begin().await?;
        let used = self.lock_usage(&mut tx).await?;
        let old = sqlx::query_scalar::<_, Vec<u8>>(
            "SELECT value FROM kv_entries WHERE hospital_id = $1 AND plugin_id = $2 AND key = $3",
        )
        .bind(&self.hospital)
        .bind(&self.plugin)
        .bind(key)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(expected) = expected
            && old.as_deref() != expected
        {
            return Ok(false);
        }
        let old_size = old.as_ref().map_or(0, |v| (key.len() + v.len()) as u64);
        let needed = used.saturating_sub(old_size) + (key.len() + value.len()) as u64;
        if needed > self.quota {
            return Err(KvError::Quota {
                needed,
                quota: self.quota,
            });
        }
        sqlx::query(
            "INSERT INTO kv_entries (hospital_id, plugin_id, key, value) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (hospital_id, plugin_id, key) DO UPDATE SET value = excluded.value",
        )
        .bind(&self.hospital)
        .bind(&self.plugin)
        .bind(key)
        .bind(value)
        .execute(&mut *tx)
        .await?;
        self.set_usage(&mut tx, needed).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Remove `key`; true when it existed.
    pub async fn delete(&self, key: &str) -> Result<bool, KvError> {
        check_key(key)?;
        let mut tx = self.store.pool.begin().await?;
        let used = self.lock_usage(&mut tx).await?;
        let removed = sqlx::query_scalar::<_, i64>(
            "DELETE FROM kv_entries WHERE hospital_id = $1 AND plugin_id = $2 AND key = $3 \
             RETURNING CAST(LENGTH(value) AS BIGINT)",
        )
        .bind(&self.hospital)
        .bind(&self.plugin)
        .bind(key)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(value_len) = removed else {
            return Ok(false);
        };
        let freed = key.len() as u64 + u64::try_from(value_len).unwrap_or(0);
        self.set_usage(&mut tx, used.saturating_sub(freed)).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Keys with `prefix`, after `start_after`, at most `limit`.
    pub async fn list_keys(&self, prefix: &str, start_after: Option<&str>, limit: u32) -> Result<Vec<String>, KvError> {
        let limit = i64::from(limit.clamp(1, KV_MAX_LIST));
        let keys = sqlx::query_scalar::<_, String>(
            "SELECT key FROM kv_entries WHERE hospital_id = $1 AND plugin_id = $2 \
             AND key >= $3 AND substr(key, 1, CAST($4 AS INTEGER)) = $3 AND key > $5 ORDER BY key LIMIT $6",
        )
        .bind(&self.hospital)
        .bind(&self.plugin)
        .bind(prefix)
        .bind(prefix.chars().count() as i64)
        .bind(start_after.unwrap_or(""))
        .bind(limit)
        .fetch_all(&self.store.pool)
        .await?;
        Ok(keys)
    }

    /// Bytes used by this pair.
    pub async fn used_bytes(&self) -> Result<u64, KvError> {
        let used = sqlx::query_scalar::<_, i64>(
            "SELECT used_bytes FROM kv_usage WHERE hospital_id = $1 AND plugin_id = $2",
        )
        .bind(&self.hospital)
        .bind(&self.plugin)
        .fetch_optional(&self.store.pool)
        .await?;
        Ok(used.map_or(0, |u| u64::try_from(u).unwrap_or(0)))
    }

    /// Read this pair's usage, taking the write lock first: a write as the
    /// first statement makes SQLite take its write lock at once (no
    /// lock-upgrade deadlock) and locks the usage row in PostgreSQL.
    async fn lock_usage(&self, tx: &mut sqlx::Transaction<'_, sqlx::Any>) -> Result<u64, KvError> {
        let used = sqlx::query_scalar::<_, i64>(
            "INSERT INTO kv_usage (hospital_id, plugin_id, used_bytes) VALUES ($1, $2, 0) \
             ON CONFLICT (hospital_id, plugin_id) DO UPDATE SET used_bytes = kv_usage.used_bytes \
             RETURNING used_bytes",
        )
        .bind(&self.hospital)
        .bind(&self.plugin)
        .fetch_one(&mut **tx)
        .await?;
        Ok(u64::try_from(used).unwrap_or(0))
    }

    async fn set_usage(&self, tx: &mut sqlx::Transaction<'_, sqlx::Any>, used: u64) -> Result<(), KvError> {
        sqlx::query("UPDATE kv_usage SET used_bytes = $3 WHERE hospital_id = $1 AND plugin_id = $2")
            .bind(&self.hospital)
            .bind(&self.plugin)
            .bind(i64::try_from(used).unwrap_or(i64::MAX))
            .execute(&mut **tx)
            .await?;
        Ok(())
    }
}

/// Map a kv result to what the guest sees: refusals as WIT errors.
fn to_wit<T>(r: Result<T, KvError>) -> wasmtime::Result<Result<T, WitError>> {
    Ok(r.map_err(WitError::from))
}

impl Host for CallState {
    #[instrument(level = "debug", skip_all, fields(plugin = %self.kv.plugin, hospital = %self.kv.hospital))]
    async fn get(&mut self, key: String) -> wasmtime::Result<Result<Option<Vec<u8>>, WitError>> {
        to_wit(self.kv.get(&key).await)
    }

    #[instrument(level = "debug", skip_all, fields(plugin = %self.kv.plugin, hospital = %self.kv.hospital, bytes = value.len()))]
    async fn set(&mut self, key: String, value: Vec<u8>) -> wasmtime::Result<Result<(), WitError>> {
        to_wit(self.kv.put(&key, &value, None).await.map(|_| ()))
    }

    #[instrument(level = "debug", skip_all, fields(plugin = %self.kv.plugin, hospital = %self.kv.hospital))]
    async fn delete(&mut self, key: String) -> wasmtime::Result<Result<bool, WitError>> {
        to_wit(self.kv.delete(&key).await)
    }

    #[instrument(level = "debug", skip_all, fields(plugin = %self.kv.plugin, hospital = %self.kv.hospital))]
    async fn list_keys(
        &mut self,
        prefix: String,
        start_after: Option<String>,
        limit: u32,
    ) -> wasmtime::Result<Result<Vec<String>, WitError>> {
        to_wit(self.kv.list_keys(&prefix, start_after.as_deref(), limit).await)
    }

    #[instrument(level = "debug", skip_all, fields(plugin = %self.kv.plugin, hospital = %self.kv.hospital))]
    async fn compare_and_swap(
        &mut self,
        key: String,
        expected: Option<Vec<u8>>,
        new: Vec<u8>,
    ) -> wasmtime::Result<Result<bool, WitError>> {
        to_wit(self.kv.put(&key, &new, Some(expected.as_deref())).await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::Database;

    async fn scope(dir: &tempfile::TempDir, quota: u64) -> (Arc<KvStore>, KvScope) {
        let db = Database::connect(&format!("sqlite://{}", dir.path().join("kv.db").display()))
            .await
            .expect("database");
        let store = Arc::new(KvStore::new(db.pool));
        let limits = Limits {
            kv_quota_bytes: quota,
            kv_max_value_bytes: 1000,
            ..Limits::default()
        };
        let scope = store.scope("h1", "p1", &limits);
        (store, scope)
    }

    #[tokio::test]
    async fn usage_tracks_sets_overwrites_and_deletes() {
        let dir = tempfile::TempDir::new().unwrap();
        let (_, kv) = scope(&dir, 10_000).await;
        kv.put("a", b"12345", None).await.unwrap();
        assert_eq!(kv.used_bytes().await.unwrap(), 6);
        kv.put("a", b"1", None).await.unwrap();
        assert_eq!(kv.used_bytes().await.unwrap(), 2);
        assert!(kv.delete("a").await.unwrap());
        assert!(!kv.delete("a").await.unwrap());
        assert_eq!(kv.used_bytes().await.unwrap(), 0);
        assert_eq!(kv.get("a").await.unwrap(), None);
    }

    #[tokio::test]
    async fn quota_refuses_and_writes_nothing() {
        let dir = tempfile::TempDir::new().unwrap();
        let (_, kv) = scope(&dir, 20).await;
        kv.put("k1", &[0; 10], None).await.unwrap();
        let err = kv.put("k2", &[0; 10], None).await.unwrap_err();
        assert!(matches!(err, KvError::Quota { needed: 24, quota: 20 }), "{err}");
        assert_eq!(kv.get("k2").await.unwrap(), None);
        assert_eq!(kv.used_bytes().await.unwrap(), 12);
        // Overwriting with a smaller value fits.
        kv.put("k1", &[1; 5], None).await.unwrap();
    }

    #[tokio::test]
    async fn bad_keys_and_values_are_invalid() {
        let dir = tempfile::TempDir::new().unwrap();
        let (_, kv) = scope(&dir, 10_000).await;
        assert!(matches!(kv.put("", b"x", None).await, Err(KvError::InvalidKey(0))));
        assert!(matches!(kv.get(&"k".repeat(513)).await, Err(KvError::InvalidKey(513))));
        assert!(matches!(kv.put("k", &[0; 1001], None).await, Err(KvError::ValueTooLarge { .. })));
    }

    #[tokio::test]
    async fn compare_and_swap_only_swaps_on_match() {
        let dir = tempfile::TempDir::new().unwrap();
        let (_, kv) = scope(&dir, 10_000).await;
        assert!(kv.put("c", b"1", Some(None)).await.unwrap(), "absent matches None");
        assert!(!kv.put("c", b"2", Some(None)).await.unwrap(), "present does not match None");
        assert!(!kv.put("c", b"2", Some(Some(b"0"))).await.unwrap());
        assert!(kv.put("c", b"2", Some(Some(b"1"))).await.unwrap());
        assert_eq!(kv.get("c").await.unwrap().as_deref(), Some(&b"2"[..]));
    }

    #[tokio::test]
    async fn list_keys_pages_by_prefix_and_scopes_are_separate() {
        let dir = tempfile::TempDir::new().unwrap();
        let (store, kv) = scope(&dir, 100_000).await;
        for k in ["visit/3", "visit/1", "visit/2", "other", "visiting"] {
            kv.put(k, b"x", None).await.unwrap();
        }
        assert_eq!(kv.list_keys("visit/", None, 2).await.unwrap(), ["visit/1", "visit/2"]);
        assert_eq!(kv.list_keys("visit/", Some("visit/2"), 10).await.unwrap(), ["visit/3"]);
        assert_eq!(kv.list_keys("", None, 100).await.unwrap().len(), 5);
        let other = store.scope("h2", "p1", &Limits::default());
        assert_eq!(other.list_keys("", None, 100).await.unwrap(), Vec::<String>::new());
        assert_eq!(other.get("other").await.unwrap(), None);
    }
}
