//! The hospital admin's pages (`ui/admin-*`): the on-call rotas ("Lịch trực hội chẩn"), the
//! 1-4-4-2 rosters ("Kíp chỉ đạo tuyến 1-4-4-2") and each roster's mentoring activity, with
//! the two JSON routes they need besides `/oncall` and `/rosters`:
//!
//! - `GET /admin/directory?q=&tier=&hospital=&specialty=`: practitioners by name (tone marks
//!   optional) from the platform's directory, with their hospital's name and tier; `tier`
//!   keeps one tier of the network, `hospital=here` the host's own staff. At most 50.
//! - `GET /rosters/{id}/activity`: the consultations of the host that involve the roster's
//!   members (as requester, chair, invitee or paged mentor), by names, with counts per
//!   member and the last activity.
//!
//! Host admins only. See `docs/teleconsult.md`, "The admin's pages".

use vtelehealth_plugin_sdk::identity::{self, Tier};
use vtelehealth_plugin_sdk::serde_json::Value;
use vtelehealth_plugin_sdk::web::Asset;
use vtelehealth_plugin_sdk::{Error, Request, Response, json, kv};

use crate::{CONSULTATION_PREFIX, Consultation, Roster, host_staff, roster_key};

const ASSETS: &[Asset] = &[
    Asset::css("/ui/admin.css", include_str!("../ui/admin.css")),
    Asset::js("/ui/admin-common.js", include_str!("../ui/admin-common.js")),
    Asset::html("/ui/admin-rota.html", include_str!("../ui/admin-rota.html")),
    Asset::js("/ui/admin-rota.js", include_str!("../ui/admin-rota.js")),
    Asset::html(
        "/ui/admin-rosters.html",
        include_str!("../ui/admin-rosters.html"),
    ),
    Asset::js(
        "/ui/admin-rosters.js",
        include_str!("../ui/admin-rosters.js"),
    ),
    Asset::html(
        "/ui/admin-activity.html",
        include_str!("../ui/admin-activity.html"),
    ),
    Asset::js(
        "/ui/admin-activity.js",
        include_str!("../ui/admin-activity.js"),
    ),
];

/// The admin pages' requests; `None` for everything else.
pub(crate) fn route(req: &Request, segments: &[&str]) -> Option<Result<Response, Error>> {
    match (req.method(), segments) {
        ("GET" | "HEAD", ["ui", _]) => {
            let path = req.path();
            ASSETS
                .iter()
                .find(|a| a.path == path)
                .map(|a| Ok(a.response()))
        }
        ("GET", ["admin", "directory"]) => Some(directory(req)),
        ("GET", ["rosters", id, "activity"]) => Some(activity(id)),
        (_, ["admin", "directory"]) | (_, ["rosters", _, "activity"]) => Some(Err(
            Error::method_not_allowed("Phương thức không được phép (method not allowed)"),
        )),
        _ => None,
    }
}

/// The host's hospital admin.
fn host_admin() -> Result<identity::Principal, Error> {
    let p = host_staff()?;
    if !p.has_role("hospital-admin") {
        return Err(Error::forbidden(
            "Chỉ quản trị bệnh viện (hospital-admin only)",
        ));
    }
    Ok(p)
}

fn tier_of(s: &str) -> Result<Tier, Error> {
    match s {
        "central" => Ok(Tier::Central),
        "provincial" => Ok(Tier::Provincial),
        "district" => Ok(Tier::District),
        "commune" => Ok(Tier::Commune),
        other => Err(Error::bad_request(format!(
            "`tier` `{other}`: central, provincial, district hoặc commune"
        ))),
    }
}

/// `GET /admin/directory?q=&tier=&hospital=&specialty=`.
fn directory(req: &Request) -> Result<Response, Error> {
    host_admin()?;
    let here = identity::current().hospital;
    let q = req.query_param("q").unwrap_or_default();
    let tier = req
        .query_param("tier")
        .filter(|t| !t.is_empty())
        .map(|t| tier_of(&t))
        .transpose()?;
    let hospital = match req.query_param("hospital").filter(|h| !h.is_empty()) {
        Some(h) if h == "here" => Some(here.id.clone()),
        other => other,
    };
    let specialty = req
        .query_param("specialty")
        .filter(|s| !s.trim().is_empty());
    let max = identity::MAX_SEARCH_RESULTS as usize;
    let search = |h: Option<&str>, limit: u32| {
        identity::search_practitioners(h, q.trim(), specialty.as_deref(), limit)
    };
    let mut found = search(hospital.as_deref(), identity::MAX_SEARCH_RESULTS)?;
    let of_tier = |p: &identity::Practitioner| {
        tier.is_none_or(|t| identity::hospital(&p.hospital_id).is_some_and(|h| h.tier == t))
    };
    // A network-wide page of 50 may hold few of the tier: then search its hospitals one by
    // one (the first `TIER_HOSPITALS` of them), until 50.
    if let (Some(t), None) = (tier, &hospital)
        && found.len() >= max
        && found.iter().filter(|p| of_tier(p)).count() < max
    {
        found.retain(|p| of_tier(p));
        for h in identity::hospitals(Some(t)).iter().take(TIER_HOSPITALS) {
            if found.len() >= max {
                break;
            }
            for p in search(Some(&h.id), (max - found.len()) as u32)? {
                if !found.iter().any(|f| f.id == p.id) {
                    found.push(p);
                }
            }
        }
    }
    let mut out = Vec::new();
    for p in found {
        let Some(h) = identity::hospital(&p.hospital_id) else {
            continue;
        };
        if tier.is_some_and(|t| t != h.tier) {
            continue;
        }
        out.push(json!({
            "id": p.id, "name": p.name, "title": p.title, "specialty": p.specialty,
            "hospital": h.id, "hospital_name": h.name, "tier": h.tier.as_str(),
        }));
    }
    out.truncate(max);
    Ok(Response::ok_json(&json!({ "practitioners": out })))
}

/// Most hospitals of one tier `GET /admin/directory` searches one by one.
const TIER_HOSPITALS: usize = 200;

/// The latest time anything happened to `c`.
fn last_activity(c: &Consultation) -> u64 {
    [
        Some(c.created_at),
        c.accepted_at,
        c.declined_at,
        c.concluded_at,
        c.acknowledged_at,
        c.session.as_ref().map(|s| s.starts_at),
    ]
    .into_iter()
    .flatten()
    .max()
    .unwrap_or(c.created_at)
}

/// How a member took part in `c`, if at all: `requester`, `chair`, the invitee's role, or
/// `paged` (a mentor the request paged).
fn part_in(c: &Consultation, id: &str) -> Option<&'static str> {
    if c.chair.as_deref() == Some(id) {
        Some("chair")
    } else if c.requester == id {
        Some("requester")
    } else if let Some(i) = c.invitees.iter().find(|i| i.practitioner == id) {
        Some(if i.role == "observer" {
            "observer"
        } else {
            "consultant"
        })
    } else if c.paging.as_ref().is_some_and(|p| p.paged(id))
        || c.proposed_consultants
            .iter()
            .any(|p| p["practitioner"].as_str() == Some(id))
    {
        Some("paged")
    } else {
        None
    }
}

/// `GET /rosters/{id}/activity`: the roster's mentoring activity at the host.
fn activity(id: &str) -> Result<Response, Error> {
    host_admin()?;
    let r: Roster = kv::get_json(&roster_key(id)?)?.ok_or_else(|| {
        Error::not_found(format!("Không có kíp 1-4-4-2 `{id}` (no roster `{id}`)"))
    })?;
    let slots: Vec<(&str, &String)> = std::iter::once(("central", &r.central))
        .chain(r.provincial.iter().map(|m| ("provincial", m)))
        .chain(r.district.iter().map(|m| ("district", m)))
        .chain(r.commune.iter().map(|m| ("commune", m)))
        .collect();
    let mut consultations: Vec<Consultation> = Vec::new();
    for key in kv::list_keys(CONSULTATION_PREFIX)? {
        if let Some(c) = kv::get_json::<Consultation>(&key)?
            && slots.iter().any(|(_, m)| part_in(&c, m).is_some())
        {
            consultations.push(c);
        }
    }
    consultations.sort_by_key(|c| std::cmp::Reverse(last_activity(c)));
    let members: Vec<Value> = slots
        .iter()
        .map(|(tier, m)| {
            let p = identity::practitioner(m);
            let h = p.as_ref().and_then(|p| identity::hospital(&p.hospital_id));
            let mine: Vec<&Consultation> = consultations
                .iter()
                .filter(|c| part_in(c, m).is_some())
                .collect();
            let count = |part: &[&str]| {
                mine.iter()
                    .filter(|c| part_in(c, m).is_some_and(|x| part.contains(&x)))
                    .count()
            };
            json!({
                "slot": tier,
                "name": p.as_ref().map(|p| p.name.clone()),
                "title": p.as_ref().and_then(|p| p.title.clone()),
                "hospital_name": h.as_ref().map(|h| h.name.clone()),
                "involved": mine.len(),
                "requested": count(&["requester"]),
                "chaired": count(&["chair"]),
                "consulted": count(&["consultant", "observer"]),
                "paged": count(&["paged"]),
                "concluded": mine.iter().filter(|c| c.status == "concluded").count(),
                "last_activity_at": mine.iter().map(|c| last_activity(c)).max(),
            })
        })
        .collect();
    let by_status = |s: &str| consultations.iter().filter(|c| c.status == s).count();
    let list: Vec<Value> = consultations
        .iter()
        .take(100)
        .map(|c| {
            let involved: Vec<Value> = slots
                .iter()
                .filter_map(|(_, m)| {
                    let part = part_in(c, m)?;
                    let name = identity::practitioner(m).map(|p| p.name)?;
                    Some(json!({ "name": name, "part": part }))
                })
                .collect();
            json!({
                "status": c.status,
                "urgency": c.urgency,
                "specialty": c.specialty,
                "requesting_hospital_name": c.requesting_hospital_name,
                "requester_name": c.requester_name,
                "chair_name": c.chair_name,
                "requested_at": c.created_at,
                "last_activity_at": last_activity(c),
                "members": involved,
            })
        })
        .collect();
    Ok(Response::ok_json(&json!({
        "roster": { "id": r.id, "name": r.name, "updated_at": r.updated_at },
        "totals": {
            "consultations": consultations.len(),
            "requested": by_status("requested"),
            "accepted": by_status("accepted"),
            "concluded": by_status("concluded"),
            "declined": by_status("declined"),
        },
        "last_activity_at": consultations.first().map(last_activity),
        "members": members,
        "consultations": list,
    })))
}
