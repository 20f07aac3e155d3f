//! Cryptographically secure randomness from the host (WIT interface `random`; list
//! `"random"` in the manifest).

use crate::bindings::vtelehealth::platform::random as raw;

/// The most bytes the host returns from one [`bytes`] call.
pub const MAX_BYTES_PER_CALL: u32 = 4096;

/// `len` random bytes. The host returns at most [`MAX_BYTES_PER_CALL`] per call; this asks
/// as often as needed.
pub fn bytes(len: usize) -> Vec<u8> {
    let mut out = vec![0; len];
    fill(&mut out);
    out
}

/// Fill `buf` with random bytes.
pub fn fill(buf: &mut [u8]) {
    let mut filled = 0;
    while filled < buf.len() {
        let want = (buf.len() - filled).min(MAX_BYTES_PER_CALL as usize);
        let got = raw::bytes(want as u32);
        let n = got.len().min(want);
        assert!(n > 0, "the host returned no random bytes");
        buf[filled..filled + n].copy_from_slice(&got[..n]);
        filled += n;
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
