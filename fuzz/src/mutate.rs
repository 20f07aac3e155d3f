//! Byte-level mutations of a corpus entry, in the manner of libFuzzer's
//! mutators: flips, inserts, deletions, copies, splices and dictionary
//! tokens. Deterministic for a seed, so a run can be repeated.

/// A small, fast, seedable generator (xorshift64*); no cryptography needed.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed` (0 is mapped to a fixed non-zero state).
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }

    /// True once in `n` draws.
    pub fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }
}

/// Values that break parsers more often than random bytes do.
const INTERESTING: &[&[u8]] = &[
    b"0",
    b"-1",
    b"-0",
    b"1e999",
    b"18446744073709551616",
    b"9223372036854775807",
    b"-9223372036854775808",
    b"NaN",
    b"\0",
    b"\xff\xfe",
    b"\xc3\x28",
    b"\xe1\xbb\x85",
    b"%",
    b"%zz",
    b"%00",
    b"%C3%A1",
    b"+",
    b"&",
    b"=",
    b"\"",
    b"\\",
    b"\\u0000",
    b"\\ud800",
    b"{}",
    b"[]",
    b"null",
    b"true",
    b"\r",
    b"\n",
    b"\r\n",
    b"|",
    b"^",
    b"~",
    b"..",
    b"/",
    b" ",
];

/// Mutates inputs with a per-target dictionary.
#[derive(Debug, Clone)]
pub struct Mutator {
    pub rng: Rng,
    dictionary: Vec<Vec<u8>>,
    max_len: usize,
}

impl Mutator {
    /// A mutator whose outputs stay under `max_len` bytes.
    pub fn new(seed: u64, dictionary: Vec<Vec<u8>>, max_len: usize) -> Self {
        Self {
            rng: Rng::new(seed),
            dictionary,
            max_len,
        }
    }

    /// A mutant of `input`: one to eight stacked mutations; `other` is
    /// another corpus entry for splicing.
    pub fn mutate(&mut self, input: &[u8], other: &[u8]) -> Vec<u8> {
        let mut data = input.to_vec();
        let rounds = 1 + self.rng.below(8);
        for _ in 0..rounds {
            self.once(&mut data, other);
        }
        data.truncate(self.max_len);
        data
    }

    fn once(&mut self, data: &mut Vec<u8>, other: &[u8]) {
        let len = data.len();
        match self.rng.below(11) {
            // Flip one bit.
            0 if len > 0 => {
                let i = self.rng.below(len);
                data[i] ^= 1 << self.rng.below(8);
            }
            // Replace one byte.
            1 if len > 0 => {
                let i = self.rng.below(len);
                data[i] = self.rng.next_u64() as u8;
            }
            // Insert random bytes.
            2 => {
                let at = self.rng.below(len + 1);
                let n = 1 + self.rng.below(8);
                let bytes: Vec<u8> = (0..n).map(|_| self.rng.next_u64() as u8).collect();
                data.splice(at..at, bytes);
            }
            // Delete a range.
            3 if len > 0 => {
                let at = self.rng.below(len);
                let n = 1 + self.rng.below((len - at).min(64));
                data.drain(at..at + n);
            }
            // Duplicate a range (grows repeated structures).
            4 if len > 0 => {
                let at = self.rng.below(len);
                let n = 1 + self.rng.below((len - at).min(256));
                let copy = data[at..at + n].to_vec();
                let to = self.rng.below(len + 1);
                data.splice(to..to, copy);
            }
            // Insert an interesting value.
            5 | 6 => {
                let value = INTERESTING[self.rng.below(INTERESTING.len())];
                let at = self.rng.below(len + 1);
                data.splice(at..at, value.iter().copied());
            }
            // Insert or overwrite with a dictionary token.
            7 | 8 if !self.dictionary.is_empty() => {
                let token = self.dictionary[self.rng.below(self.dictionary.len())].clone();
                let at = self.rng.below(len + 1);
                if self.rng.one_in(2) && at + token.len() <= len {
                    data[at..at + token.len()].copy_from_slice(&token);
                } else {
                    data.splice(at..at, token);
                }
            }
            // Splice with another corpus entry.
            9 if !other.is_empty() => {
                let cut = self.rng.below(len + 1);
                let from = self.rng.below(other.len());
                data.truncate(cut);
                data.extend_from_slice(&other[from..]);
            }
            // Truncate.
            10 if len > 0 => data.truncate(self.rng.below(len)),
            _ => data.push(self.rng.next_u64() as u8),
        }
    }
}
