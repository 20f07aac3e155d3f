//! Fuzz harnesses for the parsers that face the outside, on stable Rust.
//!
//! Each [`Target`] feeds an input to real code (a parser, or a route of a
//! real runtime over an in-memory request) and says whether an invariant
//! broke. The engine mutates a seed corpus taken from the repository's own
//! test files, keeps inputs that produce an outcome not seen before (a
//! cheap stand-in for coverage feedback), and records every panic or broken
//! invariant as a finding, saved to disk so it can become a regression
//! input under `fuzz/regressions/<target>/`.
//!
//! Run with `cargo xtask fuzz [TARGET] [--seconds N]` (see
//! `docs/security.md`).

pub mod mutate;
pub mod targets;

use std::collections::{BTreeMap, BTreeSet};
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::mutate::Mutator;

/// What one input did to the code under test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Handled; the string names the kind of answer (used for novelty).
    Handled(String),
    /// An invariant broke (e.g. a 5xx answer, a forged token accepted).
    Violation(String),
}

/// One parser or route under test.
pub trait Target {
    /// The name used on the command line and for the regression folder.
    fn name(&self) -> &'static str;
    /// Seed inputs: the repository's own test files and examples.
    fn seeds(&self) -> Vec<Vec<u8>>;
    /// Tokens worth inserting (field separators, keywords).
    fn dictionary(&self) -> Vec<Vec<u8>> {
        Vec::new()
    }
    /// Largest input to try.
    fn max_len(&self) -> usize {
        64 << 10
    }
    /// Feed one input.
    fn run(&mut self, input: &[u8]) -> Outcome;
}

/// A panic or broken invariant, with the input that caused it.
#[derive(Debug, Clone)]
pub struct Finding {
    pub what: String,
    pub input: Vec<u8>,
    pub saved: Option<PathBuf>,
}

/// The result of fuzzing one target.
#[derive(Debug, Clone)]
pub struct Report {
    pub target: &'static str,
    pub executions: u64,
    pub elapsed: Duration,
    pub corpus: usize,
    pub outcomes: usize,
    /// Distinct findings (deduplicated by their first line).
    pub findings: Vec<Finding>,
}

/// How long and how to fuzz.
#[derive(Debug, Clone)]
pub struct Options {
    pub duration: Duration,
    pub seed: u64,
    /// Where findings are written (`<dir>/<target>/<sha256>`), if anywhere.
    pub findings_dir: Option<PathBuf>,
    /// Called about every 10 s with (executions, corpus, findings).
    pub progress: Option<fn(&'static str, u64, usize, usize)>,
}

static PANIC_MESSAGE: Mutex<Option<String>> = Mutex::new(None);

/// Replace the panic hook with one that records the message quietly (a
/// fuzzer panics on purpose thousands of times).
pub fn quiet_panics() {
    std::panic::set_hook(Box::new(|info| {
        let location = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let payload = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "panic".into());
        if let Ok(mut slot) = PANIC_MESSAGE.lock() {
            *slot = Some(format!("panic: {payload}{location}"));
        }
    }));
}

/// Run `input` once, turning a panic into a violation.
pub fn execute(target: &mut dyn Target, input: &[u8]) -> Outcome {
    match std::panic::catch_unwind(AssertUnwindSafe(|| target.run(input))) {
        Ok(outcome) => outcome,
        Err(_) => {
            let message = PANIC_MESSAGE
                .lock()
                .ok()
                .and_then(|mut m| m.take())
                .unwrap_or_else(|| "panic".into());
            Outcome::Violation(message)
        }
    }
}

/// Fuzz `target` for `options.duration`.
pub fn fuzz(target: &mut dyn Target, options: &Options) -> Report {
    let started = Instant::now();
    let mut corpus: Vec<Vec<u8>> = target.seeds();
    // Inputs that once broke something are replayed by every run.
    corpus.extend(regressions(target.name()));
    if corpus.is_empty() {
        corpus.push(Vec::new());
    }
    let mut mutator = Mutator::new(options.seed, target.dictionary(), target.max_len());
    let mut seen: BTreeSet<String> = BTreeSet::new();
    let mut findings: BTreeMap<String, Finding> = BTreeMap::new();
    let mut executions = 0u64;
    let mut last_progress = Instant::now();

    // Deduplicated by the first line of what broke; saved at the end.
    let record = |what: String, input: &[u8], findings: &mut BTreeMap<String, Finding>| {
        let key = what.lines().next().unwrap_or_default().to_owned();
        findings.entry(key).or_insert_with(|| Finding {
            saved: None,
            what,
            input: input.to_vec(),
        });
    };

    // The seeds themselves first.
    for seed in corpus.clone() {
        executions += 1;
        match execute(target, &seed) {
            Outcome::Handled(kind) => {
                seen.insert(kind);
            }
            Outcome::Violation(what) => record(what, &seed, &mut findings),
        }
    }
    while started.elapsed() < options.duration {
        let base = &corpus[mutator.rng.below(corpus.len())];
        let other = &corpus[mutator.rng.below(corpus.len())];
        let input = mutator.mutate(base, other);
        executions += 1;
        match execute(target, &input) {
            Outcome::Handled(kind) => {
                if seen.insert(kind) && corpus.len() < 4096 {
                    corpus.push(input);
                }
            }
            Outcome::Violation(what) => record(what, &input, &mut findings),
        }
        if let Some(progress) = options.progress
            && last_progress.elapsed() >= Duration::from_secs(10)
        {
            progress(target.name(), executions, corpus.len(), findings.len());
            last_progress = Instant::now();
        }
    }
    let name = target.name();
    let findings = findings
        .into_values()
        .map(|mut f| {
            f.saved = options
                .findings_dir
                .as_deref()
                .and_then(|dir| save(dir, name, &f.input));
            f
        })
        .collect();
    Report {
        target: name,
        executions,
        elapsed: started.elapsed(),
        corpus: corpus.len(),
        outcomes: seen.len(),
        findings,
    }
}

fn save(dir: &Path, target: &str, input: &[u8]) -> Option<PathBuf> {
    let folder = dir.join(target);
    std::fs::create_dir_all(&folder).ok()?;
    let path = folder.join(hex::encode(Sha256::digest(input)));
    std::fs::write(&path, input).ok()?;
    Some(path)
}

/// The repository root (this crate lives one level below it).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Every regular file in `dir` (sorted), read; missing folders give none.
pub fn files_in(dir: &Path) -> Vec<Vec<u8>> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    paths.sort();
    paths.iter().filter_map(|p| std::fs::read(p).ok()).collect()
}

/// Inputs that once broke `target` and must keep passing.
pub fn regressions(target: &str) -> Vec<Vec<u8>> {
    files_in(&repo_root().join("fuzz/regressions").join(target))
}
