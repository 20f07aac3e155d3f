//! `kv`: key-value storage private to each (hospital, plugin) pair, with a
//! byte quota, stored through sqlx in SQLite or PostgreSQL.

use std::sync::Arc;

use tracing::instrument;

use super::CallState;
use crate::bindings::WitError;
use crate::bindings::vtelehealth::platform::kv::Host;
use crate::config::{KV_MAX_KEY_BYTES, KV_MAX_LIST, Limits};
use crate::db::{Database, WriteTx};

/// Why a kv operation was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum KvError {
    #[error("key must be 1 to {KV_MAX_KEY_BYTES} bytes, got {0}")]
    InvalidKey(usize),
    #[error("value of {size} bytes exceeds the {limit} byte limit per value")]
    ValueTooLarge { size: usize, limit: usize },
    #[error(
        "kv quota exceeded: {needed} bytes needed, quota is {quota} bytes for this hospital and plugin"
    )]
    Quota { needed: u64, quota: u64 },
    #[error("the value under `{0}` is not a decimal integer")]
    NotAnInteger(String),
    #[error("incrementing `{0}` would overflow a 64-bit integer")]
    Overflow(String),
    #[error("storage unavailable: {0}")]
    Database(#[from] sqlx::Error),
}

impl From<KvError> for WitError {
    fn from(e: KvError) -> Self {
        match &e {
            KvError::InvalidKey(_)
            | KvError::ValueTooLarge { .. }
            | KvError::NotAnInteger(_)
            | KvError::Overflow(_) => WitError::Invalid(e.to_string()),
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
    db: Database,
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
    /// A store over `db` (already migrated).
    pub fn new(db: Database) -> Self {
        Self { db }
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
        .fetch_optional(&self.store.db.pool)
        .await?;
        Ok(value)
    }

    /// Store `value` under `key`; with `expected`, only if the current value
    /// matches it (`Some(None)`: only if absent). Returns whether it wrote.
    pub async fn put(
        &self,
        key: &str,
        value: &[u8],
        expected: Option<Option<&[u8]>>,
    ) -> Result<bool, KvError> {
        let written = self
            .write(key, |old| match expected {
                Some(expected) if old != expected => Ok(None),
                _ => Ok(Some(value.to_vec())),
            })
            .await?;
        Ok(written.is_some())
    }

    /// Add `delta` to the decimal integer under `key`; returns the new value.
    pub async fn increment(&self, key: &str, delta: i64) -> Result<i64, KvError> {
        let mut result = 0;
        self.write(key, |old| {
            let current = match old {
                None => 0,
                Some(bytes) => std::str::from_utf8(bytes)
                    .ok()
                    .and_then(|s| s.trim().parse::<i64>().ok())
                    .ok_or_else(|| KvError::NotAnInteger(key.to_owned()))?,
            };
            result = current
                .checked_add(delta)
                .ok_or_else(|| KvError::Overflow(key.to_owned()))?;
            Ok(Some(result.to_string().into_bytes()))
        })
        .await?;
        Ok(result)
    }

    /// Replace the value under `key` with what `update` makes of the current
    /// one (`None`: leave it), in one transaction that keeps the quota.
    /// Returns the new value when written.
    async fn write(
        &self,
        key: &str,
        update: impl FnOnce(Option<&[u8]>) -> Result<Option<Vec<u8>>, KvError>,
    ) -> Result<Option<Vec<u8>>, KvError> {
        check_key(key)?;
        let mut tx = self.store.db.begin_write().await?;
        let used = self.lock_usage(&mut tx).await?;
        let old = sqlx::query_scalar::<_, Vec<u8>>(
            "SELECT value FROM kv_entries WHERE hospital_id = $1 AND plugin_id = $2 AND key = $3",
        )
        .bind(&self.hospital)
        .bind(&self.plugin)
        .bind(key)
        .fetch_optional(&mut *tx.tx)
        .await?;
        let Some(value) = update(old.as_deref())? else {
            return Ok(None);
        };
        if value.len() > self.max_value {
            return Err(KvError::ValueTooLarge {
                size: value.len(),
                limit: self.max_value,
            });
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
        .bind(&value)
        .execute(&mut *tx.tx)
        .await?;
        self.set_usage(&mut tx, needed).await?;
        tx.commit().await?;
        Ok(Some(value))
    }

    /// Remove `key`; true when it existed.
    pub async fn delete(&self, key: &str) -> Result<bool, KvError> {
        check_key(key)?;
        let mut tx = self.store.db.begin_write().await?;
        let used = self.lock_usage(&mut tx).await?;
        let removed = sqlx::query_scalar::<_, i64>(
            "DELETE FROM kv_entries WHERE hospital_id = $1 AND plugin_id = $2 AND key = $3 \
             RETURNING CAST(LENGTH(value) AS BIGINT)",
        )
        .bind(&self.hospital)
        .bind(&self.plugin)
        .bind(key)
        .fetch_optional(&mut *tx.tx)
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
    pub async fn list_keys(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<String>, KvError> {
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
        .fetch_all(&self.store.db.pool)
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
        .fetch_optional(&self.store.db.pool)
        .await?;
        Ok(used.map_or(0, |u| u64::try_from(u).unwrap_or(0)))
    }

    /// Read this pair's usage, taking the write lock first: a write as the
    /// first statement makes SQLite take its write lock at once (no
    /// lock-upgrade deadlock) and locks the usage row in PostgreSQL.
    async fn lock_usage(&self, tx: &mut WriteTx) -> Result<u64, KvError> {
        let used = sqlx::query_scalar::<_, i64>(
            "INSERT INTO kv_usage (hospital_id, plugin_id, used_bytes) VALUES ($1, $2, 0) \
             ON CONFLICT (hospital_id, plugin_id) DO UPDATE SET used_bytes = kv_usage.used_bytes \
             RETURNING used_bytes",
        )
        .bind(&self.hospital)
        .bind(&self.plugin)
        .fetch_one(&mut *tx.tx)
        .await?;
        Ok(u64::try_from(used).unwrap_or(0))
    }

    async fn set_usage(&self, tx: &mut WriteTx, used: u64) -> Result<(), KvError> {
        sqlx::query(
            "UPDATE kv_usage SET used_bytes = $3 WHERE hospital_id = $1 AND plugin_id = $2",
        )
        .bind(&self.hospital)
        .bind(&self.plugin)
        .bind(i64::try_from(used).unwrap_or(i64::MAX))
        .execute(&mut *tx.tx)
        .await?;
        Ok(())
    }
}

/// Map a kv result to what the guest sees: refusals as WIT errors.
fn to_wit<T>(r: Result<T, KvError>) -> wasmtime::Result<Result<T, WitError>> {
    Ok(r.map_err(WitError::from))
}

impl CallState {
    /// `denied` unless the review granted kv.
    fn kv_granted(&self) -> Result<(), WitError> {
        self.require(crate::capabilities::Capability::Kv)
            .map_err(|e| WitError::Denied(e.to_string()))
    }
}

impl KvScope {
    /// The database behind this scope (the records capability shares it).
    pub fn database(&self) -> &Database {
        &self.store.db
    }
}

impl Host for CallState {
    #[instrument(level = "debug", skip_all, fields(plugin = %self.kv.plugin, hospital = %self.kv.hospital))]
    async fn get(&mut self, key: String) -> wasmtime::Result<Result<Option<Vec<u8>>, WitError>> {
        if let Err(denied) = self.kv_granted() {
            return Ok(Err(denied));
        }
        to_wit(self.kv.get(&key).await)
    }

    #[instrument(level = "debug", skip_all, fields(plugin = %self.kv.plugin, hospital = %self.kv.hospital, bytes = value.len()))]
    async fn set(&mut self, key: String, value: Vec<u8>) -> wasmtime::Result<Result<(), WitError>> {
        if let Err(denied) = self.kv_granted() {
            return Ok(Err(denied));
        }
        to_wit(self.kv.put(&key, &value, None).await.map(|_| ()))
    }

    #[instrument(level = "debug", skip_all, fields(plugin = %self.kv.plugin, hospital = %self.kv.hospital))]
    async fn delete(&mut self, key: String) -> wasmtime::Result<Result<bool, WitError>> {
        if let Err(denied) = self.kv_granted() {
            return Ok(Err(denied));
        }
        to_wit(self.kv.delete(&key).await)
    }

    #[instrument(level = "debug", skip_all, fields(plugin = %self.kv.plugin, hospital = %self.kv.hospital))]
    async fn list_keys(
        &mut self,
        prefix: String,
        start_after: Option<String>,
        limit: u32,
    ) -> wasmtime::Result<Result<Vec<String>, WitError>> {
        if let Err(denied) = self.kv_granted() {
            return Ok(Err(denied));
        }
        to_wit(
            self.kv
                .list_keys(&prefix, start_after.as_deref(), limit)
                .await,
        )
    }

    #[instrument(level = "debug", skip_all, fields(plugin = %self.kv.plugin, hospital = %self.kv.hospital))]
    async fn increment(
        &mut self,
        key: String,
        delta: i64,
    ) -> wasmtime::Result<Result<i64, WitError>> {
        if let Err(denied) = self.kv_granted() {
            return Ok(Err(denied));
        }
        to_wit(self.kv.increment(&key, delta).await)
    }

    #[instrument(level = "debug", skip_all, fields(plugin = %self.kv.plugin, hospital = %self.kv.hospital))]
    async fn compare_and_swap(
        &mut self,
        key: String,
        expected: Option<Vec<u8>>,
        new: Vec<u8>,
    ) -> wasmtime::Result<Result<bool, WitError>> {
        if let Err(denied) = self.kv_granted() {
            return Ok(Err(denied));
        }
        to_wit(self.kv.put(&key, &new, Some(expected.as_deref())).await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn scope(dir: &tempfile::TempDir, quota: u64) -> (Arc<KvStore>, KvScope) {
        let db = Database::connect(&format!("sqlite://{}", dir.path().join("kv.db").display()))
            .await
            .expect("database");
        let store = Arc::new(KvStore::new(db));
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
        assert!(
            matches!(
                err,
                KvError::Quota {
                    needed: 24,
                    quota: 20
                }
            ),
            "{err}"
        );
        assert_eq!(kv.get("k2").await.unwrap(), None);
        assert_eq!(kv.used_bytes().await.unwrap(), 12);
        // Overwriting with a smaller value fits.
        kv.put("k1", &[1; 5], None).await.unwrap();
    }

    #[tokio::test]
    async fn bad_keys_and_values_are_invalid() {
        let dir = tempfile::TempDir::new().unwrap();
        let (_, kv) = scope(&dir, 10_000).await;
        assert!(matches!(
            kv.put("", b"x", None).await,
            Err(KvError::InvalidKey(0))
        ));
        assert!(matches!(
            kv.get(&"k".repeat(513)).await,
            Err(KvError::InvalidKey(513))
        ));
        assert!(matches!(
            kv.put("k", &[0; 1001], None).await,
            Err(KvError::ValueTooLarge { .. })
        ));
    }

    #[tokio::test]
    async fn compare_and_swap_only_swaps_on_match() {
        let dir = tempfile::TempDir::new().unwrap();
        let (_, kv) = scope(&dir, 10_000).await;
        assert!(
            kv.put("c", b"1", Some(None)).await.unwrap(),
            "absent matches None"
        );
        assert!(
            !kv.put("c", b"2", Some(None)).await.unwrap(),
            "present does not match None"
        );
        assert!(!kv.put("c", b"2", Some(Some(b"0"))).await.unwrap());
        assert!(kv.put("c", b"2", Some(Some(b"1"))).await.unwrap());
        assert_eq!(kv.get("c").await.unwrap().as_deref(), Some(&b"2"[..]));
    }

    #[tokio::test]
    async fn increment_counts_and_refuses_non_integers() {
        let dir = tempfile::TempDir::new().unwrap();
        let (_, kv) = scope(&dir, 10_000).await;
        assert_eq!(kv.increment("n", 1).await.unwrap(), 1);
        assert_eq!(kv.increment("n", 41).await.unwrap(), 42);
        assert_eq!(kv.get("n").await.unwrap().as_deref(), Some(&b"42"[..]));
        kv.put("text", b"abc", None).await.unwrap();
        assert!(matches!(
            kv.increment("text", 1).await,
            Err(KvError::NotAnInteger(_))
        ));
        kv.put("big", i64::MAX.to_string().as_bytes(), None)
            .await
            .unwrap();
        assert!(matches!(
            kv.increment("big", 1).await,
            Err(KvError::Overflow(_))
        ));
        assert_eq!(
            kv.get("big").await.unwrap(),
            Some(i64::MAX.to_string().into_bytes())
        );
    }

    #[tokio::test]
    async fn concurrent_increments_lose_nothing() {
        let dir = tempfile::TempDir::new().unwrap();
        let (_, kv) = scope(&dir, 10_000).await;
        let tasks: Vec<_> = (0..50)
            .map(|_| {
                let kv = kv.clone();
                tokio::spawn(async move { kv.increment("c", 1).await })
            })
            .collect();
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        assert_eq!(kv.get("c").await.unwrap().as_deref(), Some(&b"50"[..]));
    }

    #[tokio::test]
    async fn list_keys_pages_by_prefix_and_scopes_are_separate() {
        let dir = tempfile::TempDir::new().unwrap();
        let (store, kv) = scope(&dir, 100_000).await;
        for k in ["visit/3", "visit/1", "visit/2", "other", "visiting"] {
            kv.put(k, b"x", None).await.unwrap();
        }
        assert_eq!(
            kv.list_keys("visit/", None, 2).await.unwrap(),
            ["visit/1", "visit/2"]
        );
        assert_eq!(
            kv.list_keys("visit/", Some("visit/2"), 10).await.unwrap(),
            ["visit/3"]
        );
        assert_eq!(kv.list_keys("", None, 100).await.unwrap().len(), 5);
        let other = store.scope("h2", "p1", &Limits::default());
        assert_eq!(
            other.list_keys("", None, 100).await.unwrap(),
            Vec::<String>::new()
        );
        assert_eq!(other.get("other").await.unwrap(), None);
    }
}
