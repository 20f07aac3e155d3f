//! Login protection: password and client-secret hashing off the async
//! workers with a bounded queue, and per-account and per-address throttling
//! of failed attempts with exponential back-off. State is per node, in
//! memory: each node of a deployment throttles on its own.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use super::IdentityError;

/// Limits of the login protection.
#[derive(Debug, Clone)]
pub struct LoginLimits {
    /// Failed attempts on one account (username or client id) before
    /// back-off starts.
    pub account_free_failures: u32,
    /// Failed attempts from one address (an IPv6 /64) before back-off
    /// starts; higher, as many people may share one address.
    pub address_free_failures: u32,
    /// The first back-off; each further failure doubles it.
    pub base_delay: Duration,
    /// The longest back-off.
    pub max_delay: Duration,
    /// Failures are forgotten this long after the last one.
    pub forget_after: Duration,
    /// Hashes computed at once (0: half the cores, at least one), so the
    /// async workers always keep a core.
    pub hash_workers: usize,
    /// Logins waiting for a hashing worker; beyond this they are refused
    /// as busy rather than queued.
    pub hash_queue: usize,
    /// Reverse proxies whose `X-Forwarded-For` names the client; without
    /// them every client behind a proxy shares the proxy's address.
    pub trusted_proxies: Vec<IpAddr>,
}

impl Default for LoginLimits {
    fn default() -> Self {
        Self {
            account_free_failures: 5,
            address_free_failures: 20,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(15 * 60),
            forget_after: Duration::from_secs(60 * 60),
            hash_workers: 0,
            hash_queue: 64,
            trusted_proxies: Vec::new(),
        }
    }
}

/// Runs hashing on blocking threads, at most `workers` at a time, with at
/// most `queue` callers waiting.
pub(super) struct HashPool {
    permits: Arc<Semaphore>,
    waiting: AtomicUsize,
    queue: usize,
}

/// Decrements the waiting count however the wait ends (also when the
/// request is dropped).
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl HashPool {
    pub fn new(limits: &LoginLimits) -> Self {
        let workers = if limits.hash_workers == 0 {
            std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1))
        } else {
            limits.hash_workers
        };
        Self {
            permits: Arc::new(Semaphore::new(workers)),
            waiting: AtomicUsize::new(0),
            queue: limits.hash_queue,
        }
    }

    /// Run `f` (a hash) on a blocking thread once a worker is free.
    pub async fn run<T, F>(&self, f: F) -> Result<T, IdentityError>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let permit = {
            let before = self.waiting.fetch_add(1, Ordering::SeqCst);
            let _waiting = Waiting(&self.waiting);
            if before >= self.queue {
                return Err(IdentityError::Busy);
            }
            self.permits
                .clone()
                .acquire_owned()
                .await
                .map_err(|e| IdentityError::Internal(format!("hash pool closed: {e}")))?
        };
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            f()
        })
        .await
        .map_err(|e| IdentityError::Internal(format!("hashing task failed: {e}")))
    }
}

/// What is throttled: an account or an address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) enum Key {
    /// `user:NAME` or `client:ID`.
    Account(String),
    Address(IpAddr),
    /// External sign-ins started from an address and not finished.
    Starts(IpAddr),
}

impl Key {
    /// The address key of `ip`: IPv6 by its /64, which one host can fill.
    pub fn address(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Self::Address(IpAddr::V4(v4)),
                None => {
                    let s = v6.segments();
                    Self::Address(IpAddr::V6(std::net::Ipv6Addr::new(
                        s[0], s[1], s[2], s[3], 0, 0, 0, 0,
                    )))
                }
            },
            v4 => Self::Address(v4),
        }
    }

    /// The key of external sign-ins started from `ip` (grouped like
    /// [`Self::address`]).
    pub fn starts(ip: IpAddr) -> Self {
        match Self::address(ip) {
            Self::Address(a) => Self::Starts(a),
            other => other,
        }
    }

    /// As shown in audit entries.
    pub fn target(&self) -> String {
        match self {
            Self::Account(a) => a.clone(),
            Self::Address(ip) => format!("address:{ip}"),
            Self::Starts(ip) => format!("sign-in-starts:{ip}"),
        }
    }
}

#[derive(Debug)]
struct Entry {
    failures: u32,
    last: Instant,
    until: Option<Instant>,
}

/// A back-off that just started: whom it holds and for how long.
#[derive(Debug, Clone)]
pub(super) struct BackOff {
    pub key: Key,
    pub failures: u32,
    pub delay: Duration,
}

/// Entries kept before forgotten ones are pruned.
const PRUNE_AT: usize = 100_000;

/// Failed attempts per account and per address.
pub(super) struct Throttle {
    limits: LoginLimits,
    entries: std::sync::Mutex<HashMap<Key, Entry>>,
}

impl Throttle {
    pub fn new(limits: LoginLimits) -> Self {
        Self {
            limits,
            entries: std::sync::Mutex::default(),
        }
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How long the caller must still wait, when any of `keys` is held.
    pub fn wait(&self, keys: &[Key]) -> Option<Duration> {
        let now = Instant::now();
        let entries = self.entries();
        keys.iter()
            .filter_map(|k| entries.get(k)?.until)
            .filter(|until| *until > now)
            .map(|until| until - now)
            .max()
    }

    /// Count a failed attempt against every key; the back-offs it starts.
    pub fn failed(&self, keys: &[Key]) -> Vec<BackOff> {
        let now = Instant::now();
        let mut entries = self.entries();
        if entries.len() >= PRUNE_AT {
            let forget = self.limits.forget_after;
            entries.retain(|_, e| {
                e.until.is_some_and(|u| u > now) || now.duration_since(e.last) < forget
            });
        }
        let mut started = Vec::new();
        for key in keys {
            let entry = entries.entry(key.clone()).or_insert(Entry {
                failures: 0,
                last: now,
                until: None,
            });
            if now.duration_since(entry.last) >= self.limits.forget_after {
                entry.failures = 0;
            }
            entry.failures = entry.failures.saturating_add(1);
            entry.last = now;
            let free = match key {
                Key::Account(_) => self.limits.account_free_failures,
                Key::Address(_) | Key::Starts(_) => self.limits.address_free_failures,
            };
            if entry.failures > free {
                let doublings = (entry.failures - free - 1).min(30);
                let delay = self
                    .limits
                    .base_delay
                    .saturating_mul(1 << doublings)
                    .min(self.limits.max_delay);
                entry.until = Some(now + delay);
                started.push(BackOff {
                    key: key.clone(),
                    failures: entry.failures,
                    delay,
                });
            }
        }
        started
    }

    /// A successful login clears its account (not its address: one good
    /// password must not reset a spraying address).
    pub fn succeeded(&self, account: &Key) {
        self.entries().remove(account);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> LoginLimits {
        LoginLimits {
            account_free_failures: 2,
            address_free_failures: 3,
            base_delay: Duration::from_secs(10),
            max_delay: Duration::from_secs(35),
            ..LoginLimits::default()
        }
    }

    #[test]
    fn back_off_doubles_per_failure_beyond_the_free_ones_and_is_capped() {
        let t = Throttle::new(limits());
        let account = Key::Account("user:an".into());
        let address = Key::address("10.0.0.1".parse().expect("ip"));
        let keys = [account.clone(), address.clone()];
        assert!(t.failed(&keys).is_empty());
        assert!(t.failed(&keys).is_empty());
        assert_eq!(t.wait(&keys), None);
        let third = t.failed(&keys);
        assert_eq!(third.len(), 1);
        assert_eq!(
            (third[0].key.clone(), third[0].delay),
            (account.clone(), Duration::from_secs(10))
        );
        assert!(t.wait(&keys).is_some_and(|w| w > Duration::from_secs(9)));
        let delays: Vec<_> = (0..3)
            .map(|_| t.failed(std::slice::from_ref(&account))[0].delay.as_secs())
            .collect();
        assert_eq!(delays, [20, 35, 35]);
        // Another account from another address is not held.
        let other = [
            Key::Account("user:binh".into()),
            Key::address("10.0.0.2".parse().expect("ip")),
        ];
        assert_eq!(t.wait(&other), None);
        // Success clears the account only.
        t.succeeded(&account);
        assert_eq!(t.wait(&[account]), None);
    }

    #[test]
    fn one_ipv6_host_is_one_address() {
        let a = Key::address("2001:db8:1:2::1".parse().expect("ip"));
        let b = Key::address("2001:db8:1:2:ffff::9".parse().expect("ip"));
        assert_eq!(a, b);
        assert_eq!(
            Key::address("::ffff:10.0.0.1".parse().expect("ip")),
            Key::address("10.0.0.1".parse().expect("ip"))
        );
    }
}
