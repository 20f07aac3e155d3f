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
    if published.iter().any(|p| p == "teleconsult") {
        seed_teleconsult(rt).await;
    }
    Ok(published)
}

/// Doctors of Bạch Mai that the demo's teleconsultation rota and roster name, beside
/// `bs.bachmai` (password `demo-bacsi`, like every demo practitioner).
pub const DEMO_BACH_MAI_DOCTORS: [(&str, &str, &str, &str); 3] = [
    (
        "bs.lan.bachmai",
        "BS. Nguyễn Thị Lan",
        "cardiology",
        "Bác sĩ chuyên khoa II",
    ),
    (
        "bs.hung.bachmai",
        "PGS.TS. Trần Văn Hùng",
        "cardiology",
        "Phó giáo sư, Tiến sĩ",
    ),
    (
        "bs.minh.bachmai",
        "BS. Vũ Đức Minh",
        "cardiology",
        "Bác sĩ nội trú",
    ),
];

/// Give the demo's Bạch Mai an on-call rota for cardiology (`tim-mach`) and a 1-4-4-2
/// roster over the four demo hospitals, so an urgent request reaches someone there. Set
/// through the plugin's own routes, as Bạch Mai's hospital admin (`qt.bachmai`) would, so
/// the plugin checks them like any other. Only where the demo network exists; a failure is
/// logged, never fatal.
async fn seed_teleconsult(rt: &Runtime) {
    if rt.hospitals.get("bach-mai").is_none() {
        return;
    }
    if let Err(e) = try_seed_teleconsult(rt).await {
        tracing::warn!(error = %e, "the demo teleconsultation rota and roster were not set");
    }
}

async fn try_seed_teleconsult(rt: &Runtime) -> Result<(), String> {
    use crate::identity::{NewUser, Role};
    let id_of = |u: Option<crate::identity::User>, name: &str| {
        u.map(|u| u.id)
            .ok_or_else(|| format!("no demo account `{name}`"))
    };
    let mut doctors = Vec::new();
    for (username, name, specialty, title) in DEMO_BACH_MAI_DOCTORS {
        let existing = rt
            .identity
            .user_by_username(username)
            .await
            .map_err(|e| e.to_string())?;
        let user = match existing {
            Some(u) => u,
            None => {
                let mut u = NewUser::new(username, name, Role::Practitioner, "demo-bacsi");
                u.hospital_id = Some("bach-mai".into());
                u.specialty = Some(specialty.into());
                u.title = Some(title.into());
                rt.identity
                    .create_user(u)
                    .await
                    .map_err(|e| e.to_string())?
            }
        };
        doctors.push(user.id);
    }
    let mut named = std::collections::HashMap::new();
    for username in ["bs.bachmai", "bs.thaibinh", "bs.vuthu", "ys.tamquang"] {
        let user = rt
            .identity
            .user_by_username(username)
            .await
            .map_err(|e| e.to_string())?;
        named.insert(username, id_of(user, username)?);
    }
    let admin = rt
        .identity
        .user_by_username("qt.bachmai")
        .await
        .map_err(|e| e.to_string())?
        .ok_or("no demo account `qt.bachmai`")?;
    let rota = serde_json::json!({
        "name": "Tim mạch",
        "on_call": [named["bs.bachmai"], doctors[0]],
        "group": [doctors[1], doctors[2]],
        "resend_minutes": 5,
        "escalate_after_minutes": 15,
    });
    let roster = serde_json::json!({
        "name": "Kíp chỉ đạo tuyến Tim mạch Thái Bình",
        "central": named["bs.bachmai"],
        "provincial": [named["bs.thaibinh"]],
        "district": [named["bs.vuthu"]],
        "commune": [named["ys.tamquang"]],
    });
    for (path, body) in [
        ("/oncall/tim-mach", rota),
        ("/rosters/tim-mach-thai-binh", roster),
    ] {
        // Seeded once: what the admin changed since survives a restart.
        let (status, _) = call_as(rt, "bach-mai", "teleconsult", &admin, "GET", path, None).await?;
        if status == 404 {
            let (status, answer) = call_as(
                rt,
                "bach-mai",
                "teleconsult",
                &admin,
                "PUT",
                path,
                Some(&body),
            )
            .await?;
            if status >= 300 {
                return Err(format!("PUT {path}: {status} {answer}"));
            }
        }
    }
    Ok(())
}

/// One call of `plugin` at `hospital` as `user`, through the same sandbox as a request:
/// the status and the body.
async fn call_as(
    rt: &Runtime,
    hospital: &str,
    plugin: &str,
    user: &crate::identity::User,
    method: &str,
    path: &str,
    body: Option<&serde_json::Value>,
) -> Result<(u16, String), String> {
    use crate::governance::service::Resolution;
    let Ok(Resolution::Runnable(loaded)) = rt.governance.resolve(hospital, plugin).await else {
        return Err(format!("{plugin} is not runnable at {hospital}"));
    };
    let h = rt
        .hospitals
        .get(hospital)
        .ok_or_else(|| format!("no hospital {hospital}"))?;
    let response = crate::sandbox::CallBuilder::new(&loaded, h, rt.directory(), &rt.kv, &rt.limits)
        .principal(Some(user.principal(rt.identity.issuer())))
        .video(Some(rt.video.clone()))
        .http(crate::bindings::Request {
            method: method.into(),
            path: path.into(),
            query: String::new(),
            headers: vec![crate::bindings::Header {
                name: "content-type".into(),
                value: "application/json".into(),
            }],
            body: body.map(|b| b.to_string().into_bytes()).unwrap_or_default(),
        })
        .await
        .map_err(|e| e.to_string())?;
    Ok((
        response.status,
        String::from_utf8_lossy(&response.body).into_owned(),
    ))
}
