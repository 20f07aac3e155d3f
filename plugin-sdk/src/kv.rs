//! The plugin's private key-value store (WIT interface `kv`; list `"kv"` in the manifest).
//!
//! Every (hospital, plugin) pair has its own store: keys never cross hospitals. Keys are
//! UTF-8, 1 to 512 bytes; values at most 1 MiB; the sum of key and value sizes is bounded by
//! a quota (100 MiB by default). Host refusals come back as [`Error`] (`quota` → 507,
//! `invalid` → 400, ...), so `?` works in [`Plugin::handle`](crate::Plugin::handle).
//!
//! The `*_json` helpers store values as JSON documents. For counters use [`increment`]
//! (atomic in the host); for other read-modify-write updates, [`update_json`]
//! (compare-and-swap with retries).

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::Error;
use crate::bindings::vtelehealth::platform::kv as raw;

/// How many times [`update`] and [`update_json`] retry when another call changed the value
/// between their read and their compare-and-swap.
pub const UPDATE_ATTEMPTS: usize = 100;

/// The most keys the host returns from one [`list_keys_page`] call.
pub const MAX_LIST_LIMIT: u32 = 1000;

/// The raw value stored under `key`, if any.
pub fn get(key: &str) -> Result<Option<Vec<u8>>, Error> {
    Ok(raw::get(key)?)
}

/// Store `value` under `key`, replacing any previous value.
pub fn set(key: &str, value: &[u8]) -> Result<(), Error> {
    Ok(raw::set(key, value)?)
}

/// Remove `key`; `true` when it existed.
pub fn delete(key: &str) -> Result<bool, Error> {
    Ok(raw::delete(key)?)
}

/// Atomically add `delta` to the integer under `key` (absent counts as 0) and return the new
/// value. Prefer it to [`update`] for counters: racing calls never retry or lose an update.
/// The value is stored as decimal text, so [`get_json`] reads it as a number.
pub fn increment(key: &str, delta: i64) -> Result<i64, Error> {
    Ok(raw::increment(key, delta)?)
}

/// Set `key` to `new` only if its current value equals `expected` (`None`: the key must be
/// absent). `true` when the swap happened.
pub fn compare_and_swap(key: &str, expected: Option<&[u8]>, new: &[u8]) -> Result<bool, Error> {
    Ok(raw::compare_and_swap(key, expected, new)?)
}

/// One page of the keys starting with `prefix`, in byte order, after `start_after` when
/// given, at most `limit` (the host caps it at [`MAX_LIST_LIMIT`]).
pub fn list_keys_page(
    prefix: &str,
    start_after: Option<&str>,
    limit: u32,
) -> Result<Vec<String>, Error> {
    Ok(raw::list_keys(prefix, start_after, limit)?)
}

/// All keys starting with `prefix`, in byte order (pages through [`list_keys_page`]).
pub fn list_keys(prefix: &str) -> Result<Vec<String>, Error> {
    let mut keys: Vec<String> = Vec::new();
    loop {
        let page = list_keys_page(prefix, keys.last().map(String::as_str), MAX_LIST_LIMIT)?;
        let full = page.len() >= MAX_LIST_LIMIT as usize;
        keys.extend(page);
        if !full {
            return Ok(keys);
        }
    }
}

/// The JSON value stored under `key`, if any. A stored value that does not decode as `T` is
/// a 500 [`Error::Internal`].
pub fn get_json<T: DeserializeOwned>(key: &str) -> Result<Option<T>, Error> {
    get(key)?.map(|bytes| decode(key, &bytes)).transpose()
}

/// Store `value` as JSON under `key`.
pub fn set_json<T: Serialize + ?Sized>(key: &str, value: &T) -> Result<(), Error> {
    set(key, &encode(key, value)?)
}

/// Read-modify-write `key` without lost updates: reads the raw value, computes the new one
/// with `f`, and stores it with [`compare_and_swap`]; when another call changed the value in
/// between, it reads again and retries (up to [`UPDATE_ATTEMPTS`] times, then a 409
/// [`Error::Conflict`]). `f` may run several times, so keep it free of side effects. Returns
/// the value stored.
pub fn update<F>(key: &str, mut f: F) -> Result<Vec<u8>, Error>
where
    F: FnMut(Option<&[u8]>) -> Result<Vec<u8>, Error>,
{
    for _ in 0..UPDATE_ATTEMPTS {
        let current = get(key)?;
        let new = f(current.as_deref())?;
        if compare_and_swap(key, current.as_deref(), &new)? {
            return Ok(new);
        }
    }
    Err(Error::conflict(format!(
        "key {key:?} kept changing: gave up after {UPDATE_ATTEMPTS} attempts"
    )))
}

/// [`update`] for JSON values: `f` gets the current value (`None` when absent) and returns
/// the new one, which is returned once stored.
///
/// ```no_run
/// # fn main() -> Result<(), vtelehealth_plugin_sdk::Error> {
/// use vtelehealth_plugin_sdk::kv;
/// let visits: u64 = kv::update_json("visits", |n: Option<u64>| Ok(n.unwrap_or(0) + 1))?;
/// # Ok(()) }
/// ```
pub fn update_json<T, F>(key: &str, mut f: F) -> Result<T, Error>
where
    T: Serialize + DeserializeOwned,
    F: FnMut(Option<T>) -> Result<T, Error>,
{
    let mut result = None;
    update(key, |current| {
        let current = current.map(|bytes| decode(key, bytes)).transpose()?;
        let new = f(current)?;
        let bytes = encode(key, &new)?;
        result = Some(new);
        Ok(bytes)
    })?;
    result.ok_or_else(|| Error::internal("update_json: no value computed"))
}

fn decode<T: DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<T, Error> {
    serde_json::from_slice(bytes).map_err(|e| {
        Error::internal(format!(
            "kv value under {key:?} is not the expected JSON: {e}"
        ))
    })
}

fn encode<T: Serialize + ?Sized>(key: &str, value: &T) -> Result<Vec<u8>, Error> {
    serde_json::to_vec(value)
        .map_err(|e| Error::internal(format!("cannot serialize the value for {key:?}: {e}")))
}
