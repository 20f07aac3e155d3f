//! The embedded demo: the reference plugins go through the same pipeline a
//! vendor's would (signed bundle, checks, review, national rollout), so the
//! demo exercises governance rather than bypassing it.

use std::path::Path;

use crate::Runtime;
use crate::governance::bundle::Bundle;
use crate::governance::registry::{Decision, GovernanceError, VersionState};
use crate::governance::service::{RolloutTarget, SubmitError};
use crate::governance::signing::SigningKey;

/// Vendor that publishes the reference plugins.
pub const REFERENCE_VENDOR: (&str, &str) = ("vtelehealth", "VTelehealth reference plugins");
const ACTOR: &str = "system:demo-seed";

/// Publish, approve and roll out to every hospital each `<id>.wasm` +
/// `<id>.toml` in `dir`. Versions already published are reused. Returns the
/// plugin ids now active.
pub async fn publish_reference_plugins(
    rt: &Runtime,
    dir: &Path,
) -> Result<Vec<String>, GovernanceError> {
    let gov = &rt.governance;
    rt.identity
        .create_vendor(REFERENCE_VENDOR.0, REFERENCE_VENDOR.1)
        .await
        .map_err(|e| GovernanceError::Invalid(e.to_string()))?;
    let key = SigningKey::generate().map_err(|e| GovernanceError::Invalid(e.to_string()))?;
    let mut key_registered = false;
    let mut published = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| GovernanceError::Invalid(format!("{}: {e}", dir.display())))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "wasm"))
        .collect();
    entries.sort();
    for wasm in entries {
        // Reference manifests name the vendor `vtelehealth` (REFERENCE_VENDOR).
        let (Ok(component), Ok(manifest)) = (
            std::fs::read(&wasm),
            std::fs::read_to_string(wasm.with_extension("toml")),
        ) else {
            tracing::warn!(path = %wasm.display(), "skipping a plugin without a readable manifest");
            continue;
        };
        let parsed = match crate::manifest::Manifest::parse_structure(&manifest) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(path = %wasm.display(), error = %e, "skipping a plugin with an invalid manifest");
                continue;
            }
        };
        let existing = gov
            .registry
            .list_versions(
                Some(REFERENCE_VENDOR.0),
                None,
                crate::governance::service::requested_strings,
            )
            .await?
            .into_iter()
            .find(|v| v.plugin_id == parsed.id && v.version == parsed.version);
        let version = match existing {
            Some(v) => v,
            None => {
                if !key_registered {
                    gov.registry
                        .add_vendor_key(ACTOR, REFERENCE_VENDOR.0, &key.key_id(), &key.public_key())
                        .await?;
                    key_registered = true;
                }
                let mut bundle = Bundle::new(manifest, component);
                key.sign(&mut bundle);
                match gov.submit(ACTOR, REFERENCE_VENDOR.0, bundle).await {
                    Ok((v, _)) => v,
                    Err(SubmitError::Refused(report)) => {
                        tracing::warn!(plugin = %parsed.id, report = %report, "reference plugin refused by the checks");
                        continue;
                    }
                    Err(SubmitError::Governance(e)) => return Err(e),
                }
            }
        };
        if version.state == VersionState::Submitted {
            let decision = Decision::Approve {
                granted: version.requested.clone(),
                note: "reference plugin, approved by the demo seed".into(),
            };
            gov.decide(ACTOR, &version.id, decision).await?;
        }
        let version = gov.version(&version.id).await?;
        if version.state != VersionState::Approved {
            continue;
        }
        let active = gov
            .registry
            .activations(None, Some(&version.plugin_id))
            .await?;
        if active.is_empty() {
            gov.rollout(
                ACTOR,
                &version.id,
                &RolloutTarget::default(),
                &rt.directory(),
                None,
            )
            .await?;
        }
        published.push(version.plugin_id);
    }
    Ok(published)
}
