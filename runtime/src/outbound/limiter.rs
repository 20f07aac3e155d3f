//! Outbound connections open at once, per (hospital, plugin).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Pairs kept before idle ones (no permit out) are dropped from the map.
const PRUNE_ABOVE: usize = 1024;

/// The plugin already has its limit of outbound connections open at this
/// hospital. The request is refused at once rather than queued, so a slow
/// destination cannot hold the plugin's calls past their deadline.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "plugin `{plugin}` already has {limit} outbound connections open at hospital `{hospital}` (its limit); try again when one ends"
)]
pub struct ConnectionsExhausted {
    pub hospital: String,
    pub plugin: String,
    pub limit: usize,
}

/// One open outbound connection's slot; dropping it frees the slot.
#[derive(Debug)]
pub struct ConnectionPermit {
    _permit: OwnedSemaphorePermit,
}

/// A limit of outbound connections open at once for each (hospital,
/// plugin) pair on this node, so one plugin at one hospital cannot use up
/// the node's connections.
#[derive(Debug)]
pub struct ConnectionLimiter {
    per_pair: usize,
    pairs: Mutex<HashMap<(String, String), Arc<Semaphore>>>,
}

impl ConnectionLimiter {
    /// `per_pair` connections at once per (hospital, plugin); at least one.
    pub fn new(per_pair: usize) -> Self {
        Self {
            per_pair: per_pair.max(1),
            pairs: Mutex::new(HashMap::new()),
        }
    }

    /// The limit per pair.
    pub fn limit(&self) -> usize {
        self.per_pair
    }

    /// Take a slot for one connection of `plugin` at `hospital`, or refuse
    /// when all of the pair's slots are taken.
    pub fn try_acquire(
        &self,
        hospital: &str,
        plugin: &str,
    ) -> Result<ConnectionPermit, ConnectionsExhausted> {
        let semaphore = {
            let mut pairs = self.pairs.lock().unwrap_or_else(|e| e.into_inner());
            if pairs.len() > PRUNE_ABOVE {
                // A permit holds its semaphore: a count of one is the map's own.
                pairs.retain(|_, s| Arc::strong_count(s) > 1);
            }
            pairs
                .entry((hospital.to_owned(), plugin.to_owned()))
                .or_insert_with(|| Arc::new(Semaphore::new(self.per_pair)))
                .clone()
        };
        // The semaphore is never closed: the only refusal is "no permits".
        semaphore
            .try_acquire_owned()
            .map(|permit| ConnectionPermit { _permit: permit })
            .map_err(|_| ConnectionsExhausted {
                hospital: hospital.to_owned(),
                plugin: plugin.to_owned(),
                limit: self.per_pair,
            })
    }

    /// Connections open now for the pair.
    pub fn in_use(&self, hospital: &str, plugin: &str) -> usize {
        let pairs = self.pairs.lock().unwrap_or_else(|e| e.into_inner());
        pairs
            .get(&(hospital.to_owned(), plugin.to_owned()))
            .map_or(0, |s| self.per_pair - s.available_permits())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_pair_has_its_own_limit_and_a_dropped_permit_frees_a_slot() {
        let limiter = ConnectionLimiter::new(2);
        let a = limiter.try_acquire("bv-a", "eprescription").unwrap();
        let _b = limiter.try_acquire("bv-a", "eprescription").unwrap();
        let err = limiter.try_acquire("bv-a", "eprescription").unwrap_err();
        assert_eq!(err.limit, 2);
        assert!(err.to_string().contains("eprescription"), "{err}");
        assert!(err.to_string().contains("bv-a"), "{err}");
        // Other pairs are not affected.
        let _c = limiter.try_acquire("bv-b", "eprescription").unwrap();
        let _d = limiter.try_acquire("bv-a", "sms").unwrap();
        assert_eq!(limiter.in_use("bv-a", "eprescription"), 2);
        drop(a);
        assert_eq!(limiter.in_use("bv-a", "eprescription"), 1);
        assert!(limiter.try_acquire("bv-a", "eprescription").is_ok());
        assert_eq!(limiter.in_use("nowhere", "none"), 0);
    }

    #[test]
    fn idle_pairs_are_pruned_and_busy_ones_kept() {
        let limiter = ConnectionLimiter::new(1);
        let held = limiter.try_acquire("bv-held", "p").unwrap();
        for i in 0..=PRUNE_ABOVE + 1 {
            drop(limiter.try_acquire(&format!("bv-{i}"), "p").unwrap());
        }
        let size = limiter.pairs.lock().unwrap().len();
        assert!(size < PRUNE_ABOVE, "idle pairs were not pruned: {size}");
        // The held slot survived the pruning.
        assert!(limiter.try_acquire("bv-held", "p").is_err());
        drop(held);
        assert!(limiter.try_acquire("bv-held", "p").is_ok());
        assert_eq!(ConnectionLimiter::new(0).limit(), 1);
    }
}
