//! The plugin manifest, `plugin.toml`, as far as the build needs to check it.
//!
//! ```toml
//! id = "hello"
//! version = "0.1.0"
//! vendor = "vtelehealth"             # the vendor's registered id
//! kind = "workflow"                  # workflow | commerce | his-adapter
//! capabilities = ["log", "kv:visits"] # WIT interfaces, optionally `name:scope`
//!
//! [description]
//! vi = "..."
//! en = "..."
//! ```
//!
//! Fields not listed here (events, routes, config) are left to the runtime, which owns the
//! full schema (`docs/bundle-format.md`).

use std::path::Path;

use anyhow::{Context, Result, bail};
use serde::Deserialize;

/// The interfaces of `vtelehealth:platform` a plugin may be granted. `types` holds only
/// shared types and is always available.
pub const CAPABILITIES: &[&str] = &[
    "log", "clock", "random", "kv", "identity", "records", "video", "payment", "notify",
];
pub const KINDS: &[&str] = &["workflow", "commerce", "his-adapter"];

#[derive(Debug, Deserialize)]
pub struct Manifest {
    pub id: String,
    pub version: String,
    pub vendor: String,
    pub kind: String,
    pub description: Description,
    /// Entries as written: `kv` or `kv:scope`.
    #[serde(default)]
    pub capabilities: Vec<String>,
}

#[derive(Debug, Deserialize)]
pub struct Description {
    pub vi: String,
    pub en: String,
}

impl Manifest {
    /// Read and check a manifest; errors name the file and the field.
    pub fn load(path: &Path) -> Result<(Self, String)> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let manifest: Manifest =
            toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        manifest
            .check()
            .with_context(|| format!("invalid manifest {}", path.display()))?;
        Ok((manifest, text))
    }

    fn check(&self) -> Result<()> {
        let id_ok = (1..=64).contains(&self.id.len())
            && self.id.starts_with(|c: char| c.is_ascii_lowercase())
            && self
                .id
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !id_ok {
            bail!(
                "id {:?}: use 1-64 characters a-z, 0-9 and '-', starting with a letter",
                self.id
            );
        }
        if !is_semver(&self.version) {
            bail!(
                "version {:?} is not a semantic version (MAJOR.MINOR.PATCH)",
                self.version
            );
        }
        if !is_id(&self.vendor) {
            bail!(
                "vendor {:?}: use the vendor's registered id (a-z, 0-9 and '-')",
                self.vendor
            );
        }
        if !KINDS.contains(&self.kind.as_str()) {
            bail!("kind {:?}: expected one of {}", self.kind, KINDS.join(", "));
        }
        if self.description.vi.trim().is_empty() || self.description.en.trim().is_empty() {
            bail!("description.vi and description.en are both required");
        }
        for (i, entry) in self.capabilities.iter().enumerate() {
            let name = capability_name(entry);
            if !CAPABILITIES.contains(&name) {
                bail!(
                    "capability {entry:?} is unknown: expected some of {}",
                    CAPABILITIES.join(", ")
                );
            }
            if self.capabilities[..i].contains(entry) {
                bail!("capability {entry:?} is listed twice");
            }
        }
        Ok(())
    }

    /// The capability names requested, scopes dropped, each once.
    pub fn capability_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = Vec::new();
        for entry in &self.capabilities {
            let name = capability_name(entry);
            if !names.contains(&name) {
                names.push(name);
            }
        }
        names
    }
}

/// `kv` of `kv` or `kv:scope`.
fn capability_name(entry: &str) -> &str {
    entry.split_once(':').map_or(entry, |(name, _)| name)
}

/// A platform id: 1-64 characters a-z, 0-9 and '-', not starting with '-'.
fn is_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && !id.starts_with('-')
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// `MAJOR.MINOR.PATCH` with optional `-pre` and `+build` parts, numbers without leading zeros.
fn is_semver(version: &str) -> bool {
    let version = version
        .split_once('+')
        .map_or(version, |(v, build)| if build.is_empty() { "" } else { v });
    let core = match version.split_once('-') {
        Some((core, pre)) if !pre.is_empty() => core,
        Some(_) => return false,
        None => version,
    };
    let parts: Vec<&str> = core.split('.').collect();
    parts.len() == 3
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.chars().all(|c| c.is_ascii_digit())
                && (p.len() == 1 || !p.starts_with('0'))
        })
}

#[cfg(test)]
mod tests {
    use super::is_semver;

    #[test]
    fn semver() {
        for ok in ["0.1.0", "1.2.3-beta.1", "10.0.0+build.5", "1.0.0-rc.1+x"] {
            assert!(is_semver(ok), "{ok}");
        }
        for bad in ["1.0", "1.0.0.0", "01.0.0", "1.0.0-", "1.0.0+", "v1.0.0", ""] {
            assert!(!is_semver(bad), "{bad}");
        }
    }
}
