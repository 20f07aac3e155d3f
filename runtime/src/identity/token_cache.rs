//! A bounded cache of verified access tokens.
//!
//! Verifying an ES256 signature costs more than most routes' own work. A
//! token's signature, header and claims never change, so a verified token's
//! principal can be reused; what can change is time and the set of
//! published keys. A hit is therefore only taken while the token is within
//! its `exp`/`nbf` window (one second stricter than the full check, so the
//! two never disagree at a boundary) and the caller re-checks that its key
//! is still published, exactly as the uncached path looks it up. Anything
//! else falls through to the full check, which gives the precise refusal.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use aws_lc_rs::digest;

use super::{LEEWAY_SECS, Principal};

/// Default number of tokens kept per node.
pub const DEFAULT_CAPACITY: usize = 16_384;

/// Which key verified a cached token: it must still be published on a hit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerifiedBy {
    /// The platform's own signing key `kid`.
    Own(String),
    /// Key `kid` of the trusted external issuer `issuer`.
    External { issuer: String, kid: String },
}

#[derive(Debug, Clone)]
struct Entry {
    principal: Principal,
    exp: i64,
    nbf: Option<i64>,
    key: VerifiedBy,
}

impl Entry {
    /// Whether the full check would still accept the token's times at `now`.
    fn in_window(&self, now: i64) -> bool {
        now < self.exp + LEEWAY_SECS && self.nbf.is_none_or(|nbf| nbf < now + LEEWAY_SECS)
    }
}

/// Verified tokens keyed by their SHA-256, never more than a set number.
#[derive(Debug)]
pub struct TokenCache {
    entries: Mutex<HashMap<[u8; 32], Entry>>,
    capacity: AtomicUsize,
    hits: AtomicU64,
}

impl Default for TokenCache {
    fn default() -> Self {
        Self::new(DEFAULT_CAPACITY)
    }
}

/// The cache key of a token.
pub fn token_hash(token: &str) -> [u8; 32] {
    let mut out = [0; 32];
    out.copy_from_slice(digest::digest(&digest::SHA256, token.as_bytes()).as_ref());
    out
}

impl TokenCache {
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: Mutex::default(),
            capacity: AtomicUsize::new(capacity),
            hits: AtomicU64::new(0),
        }
    }

    /// Change how many tokens are kept; 0 turns the cache off.
    pub fn set_capacity(&self, capacity: usize) {
        self.capacity.store(capacity, Ordering::Relaxed);
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() > capacity {
            entries.clear();
        }
    }

    /// The principal of a token verified earlier and the key that verified
    /// it, if its time window still holds at `now`. Out of the window, the
    /// entry is dropped.
    pub fn get(&self, hash: &[u8; 32], now: i64) -> Option<(Principal, VerifiedBy)> {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let entry = entries.get(hash)?;
        if !entry.in_window(now) {
            entries.remove(hash);
            return None;
        }
        Some((entry.principal.clone(), entry.key.clone()))
    }

    /// Count a request answered from the cache.
    pub fn count_hit(&self) {
        self.hits.fetch_add(1, Ordering::Relaxed);
    }

    /// Forget a token (its key is no longer published).
    pub fn remove(&self, hash: &[u8; 32]) {
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(hash);
    }

    /// Keep a verified token. When full, expired entries go first; if none
    /// has expired the whole cache is cleared, so an insert stays cheap on
    /// average and the size never passes the capacity.
    pub fn insert(
        &self,
        hash: [u8; 32],
        principal: Principal,
        exp: i64,
        nbf: Option<i64>,
        key: VerifiedBy,
        now: i64,
    ) {
        let capacity = self.capacity.load(Ordering::Relaxed);
        if capacity == 0 {
            return;
        }
        let entry = Entry {
            principal,
            exp,
            nbf,
            key,
        };
        if !entry.in_window(now) {
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= capacity && !entries.contains_key(&hash) {
            entries.retain(|_, e| e.in_window(now));
            if entries.len() >= capacity {
                entries.clear();
            }
        }
        entries.insert(hash, entry);
    }

    /// Tokens held now.
    pub fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Requests answered from the cache since start.
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Role;

    fn principal() -> Principal {
        Principal {
            subject: "u-1".into(),
            name: "BS An".into(),
            roles: vec![Role::Practitioner],
            hospital_id: Some("bv-a".into()),
            vendor_id: None,
            national_id: None,
            health_id: None,
            issuer: "http://issuer.test".into(),
            client_id: None,
        }
    }

    #[test]
    fn a_hit_never_outlives_the_full_checks_time_window() {
        let cache = TokenCache::new(8);
        let h = token_hash("t");
        let own = VerifiedBy::Own("k1".into());
        cache.insert(h, principal(), 1000, Some(900), own.clone(), 950);
        assert!(cache.get(&h, 950).is_some());
        // The full check accepts up to exp + leeway inclusive; the cache
        // stops one second earlier and then forgets the token.
        assert!(cache.get(&h, 1000 + LEEWAY_SECS - 1).is_some());
        assert!(cache.get(&h, 1000 + LEEWAY_SECS).is_none());
        assert!(cache.is_empty());
        // Not yet valid: never served before nbf - leeway.
        cache.insert(h, principal(), 5000, Some(2000), own.clone(), 1980);
        assert!(cache.get(&h, 2000 - LEEWAY_SECS).is_none());
        // An already expired token is not kept at all.
        cache.insert(h, principal(), 10, None, own, 100);
        assert!(cache.is_empty());
    }

    #[test]
    fn the_cache_stays_within_its_capacity() {
        let cache = TokenCache::new(4);
        for i in 0..10 {
            cache.insert(
                token_hash(&i.to_string()),
                principal(),
                i64::MAX / 2,
                None,
                VerifiedBy::Own("k".into()),
                0,
            );
            assert!(cache.len() <= 4);
        }
        // Expired entries make room before anything else is dropped.
        let cache = TokenCache::new(2);
        let own = VerifiedBy::Own("k".into());
        cache.insert(token_hash("old"), principal(), 100, None, own.clone(), 50);
        cache.insert(token_hash("new"), principal(), 9999, None, own.clone(), 50);
        cache.insert(token_hash("third"), principal(), 9999, None, own, 500);
        assert_eq!(cache.len(), 2);
        assert!(cache.get(&token_hash("new"), 500).is_some());
        // Capacity 0 turns it off.
        cache.set_capacity(0);
        assert!(cache.is_empty());
        cache.insert(
            token_hash("x"),
            principal(),
            9999,
            None,
            VerifiedBy::Own("k".into()),
            0,
        );
        assert!(cache.is_empty());
    }
}
