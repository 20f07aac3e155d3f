//! Cryptographically secure randomness from the host (WIT interface `random`; list
//! `"random"` in the manifest).

use crate::bindings::vtelehealth::platform::random as raw;

/// The most bytes the host returns from one [`bytes`] call.
pub const MAX_BYTES_PER_CALL: u32 = 4096;

/// `len` random bytes (at most [`MAX_BYTES_PER_CALL`] per host call; this asks as often as
/// needed).
pub fn bytes(len: usize) -> Vec<u8> {
    let mut out = vec![0; len];
    fill(&mut out);
    out
}

/// Fill `buf` with random bytes.
pub fn fill(buf: &mut [u8]) {
    for chunk in buf.chunks_mut(MAX_BYTES_PER_CALL as usize) {
        let got = raw::bytes(chunk.len() as u32);
        chunk.copy_from_slice(&got[..chunk.len()]);
    }
}

/// A random 64-bit integer.
pub fn next_u64() -> u64 {
    raw::next_u64()
}

/// 16 random bytes as 32 lower-case hex digits, e.g. for ids and nonces.
pub fn hex_id() -> String {
    bytes(16).iter().map(|b| format!("{b:02x}")).collect()
}
