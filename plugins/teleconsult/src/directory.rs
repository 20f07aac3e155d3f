//! What a requesting doctor's page picks from: the upper hospital's teleconsultation doctors
//! (by name and specialty) and the requesting hospital's own patients.
//!
//! The `identity` capability looks practitioners up by id only (it has no search), so the
//! directory is the doctors this hospital put on its on-call rotas and 1-4-4-2 rosters: the
//! people who answer teleconsultations here.
use vtelehealth_plugin_sdk::identity;
use vtelehealth_plugin_sdk::serde_json::Value;
use vtelehealth_plugin_sdk::{Error, Request, Response, json, kv, records};

use crate::{BHYT_SYSTEM, CCCD_SYSTEM, ROSTER_PREFIX, Roster, practitioner};

/// Letters without Vietnamese tone marks and case, so `nguyen` finds `Nguyễn`.
pub(crate) fn fold(s: &str) -> String {
    s.chars()
        .flat_map(char::to_lowercase)
        .map(|c| match c {
            'à' | 'á' | 'ả' | 'ã' | 'ạ' | 'ă' | 'ằ' | 'ắ' | 'ẳ' | 'ẵ' | 'ặ' | 'â' | 'ầ' | 'ấ'
            | 'ẩ' | 'ẫ' | 'ậ' => 'a',
            'è' | 'é' | 'ẻ' | 'ẽ' | 'ẹ' | 'ê' | 'ề' | 'ế' | 'ể' | 'ễ' | 'ệ' => {
                'e'
            }
            'ì' | 'í' | 'ỉ' | 'ĩ' | 'ị' => 'i',
            'ò' | 'ó' | 'ỏ' | 'õ' | 'ọ' | 'ô' | 'ồ' | 'ố' | 'ổ' | 'ỗ' | 'ộ' | 'ơ' | 'ờ' | 'ớ'
            | 'ở' | 'ỡ' | 'ợ' => 'o',
            'ù' | 'ú' | 'ủ' | 'ũ' | 'ụ' | 'ư' | 'ừ' | 'ứ' | 'ử' | 'ữ' | 'ự' => {
                'u'
            }
            'ỳ' | 'ý' | 'ỷ' | 'ỹ' | 'ỵ' => 'y',
            'đ' => 'd',
            c => c,
        })
        .collect()
}

/// `GET /practitioners[?q=&specialty=]`: the host's teleconsultation doctors, any
/// practitioner of the network.
pub(crate) fn practitioners(req: &Request) -> Result<Response, Error> {
    practitioner()?;
    let host = identity::current().hospital;
    let q = req.query_param("q").map(|s| fold(s.trim()));
    let specialty = req.query_param("specialty").map(|s| fold(s.trim()));
    // Who the rotas and rosters name, with the specialties they are on call for.
    let mut ids: Vec<(String, Vec<String>)> = Vec::new();
    let mut note = |id: &str, rota: Option<&str>| match ids.iter_mut().find(|(i, _)| i == id) {
        Some((_, r)) => r.extend(rota.map(str::to_owned)),
        None => ids.push((id.to_owned(), rota.map(str::to_owned).into_iter().collect())),
    };
    for r in crate::paging::rotas()? {
        for p in r.on_call.iter().chain(&r.group) {
            note(&p.id, Some(&r.name));
        }
    }
    for key in kv::list_keys(ROSTER_PREFIX)? {
        if let Some(r) = kv::get_json::<Roster>(&key)? {
            for m in r.members() {
                note(m, None);
            }
        }
    }
    let mut out: Vec<Value> = Vec::new();
    for (id, rotas) in ids {
        let Some(p) = identity::practitioner(&id) else {
            continue;
        };
        if p.hospital_id != host.id {
            continue;
        }
        let specialties: Vec<String> = p.specialty.iter().cloned().chain(rotas.clone()).collect();
        if q.as_deref().is_some_and(|q| !fold(&p.name).contains(q)) {
            continue;
        }
        if specialty
            .as_deref()
            .is_some_and(|s| !specialties.iter().any(|x| fold(x).contains(s)))
        {
            continue;
        }
        out.push(json!({
            "id": p.id, "name": p.name, "title": p.title, "specialty": p.specialty,
            "on_call_for": rotas, "hospital": host.id, "hospital_name": host.name,
        }));
    }
    out.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    Ok(Response::ok_json(&json!({ "practitioners": out })))
}

/// Most Patient resources a name search reads (10 pages of 100).
const NAME_SEARCH_PAGES: u32 = 10;

/// `GET /patients?q=`: a practitioner finds a patient of **their own hospital** (call the
/// plugin mounted at it) by name, citizen ID (12 digits) or social-insurance number (10
/// digits), through `records` in the practitioner's name (the platform checks and logs the
/// reads). Results carry the `identifiers` a request names the patient with.
pub(crate) fn patients(req: &Request) -> Result<Response, Error> {
    let (_, hospital) = practitioner()?;
    let here = identity::current().hospital;
    if hospital != here.id {
        return Err(Error::forbidden(format!(
            "Tìm bệnh nhân tại bệnh viện của mình: /hospitals/{hospital}/plugins/teleconsult/patients (search your own hospital's patients)"
        )));
    }
    let q = req.query_param("q").unwrap_or_default();
    let q = q.trim();
    if q.chars().count() < 2 || q.len() > 100 {
        return Err(Error::bad_request(
            "`q`: 2 đến 100 ký tự: tên, số CCCD (12 số) hoặc mã BHXH (10 số) (a name, citizen ID or insurance number)",
        ));
    }
    let digits = q.chars().all(|c| c.is_ascii_digit());
    let mut found: Vec<Value> = Vec::new();
    if digits && (q.len() == 12 || q.len() == 10) {
        let system = if q.len() == 12 {
            CCCD_SYSTEM
        } else {
            BHYT_SYSTEM
        };
        let page = records::search(
            "Patient",
            &format!("identifier={system}|{q}&_count=20"),
            records::Purpose::Treatment,
        )?;
        found.extend(page.resources);
    } else if digits {
        return Err(Error::bad_request(
            "Số CCCD có 12 chữ số, mã BHXH có 10 chữ số (a citizen ID has 12 digits, an insurance number 10)",
        ));
    } else {
        let want = fold(q);
        let mut offset = 0;
        for _ in 0..NAME_SEARCH_PAGES {
            let page = records::search(
                "Patient",
                &format!("_count=100&_offset={offset}"),
                records::Purpose::Treatment,
            )?;
            found.extend(
                page.resources
                    .into_iter()
                    .filter(|p| fold(&patient_name(p)).contains(&want)),
            );
            match page.next_offset {
                Some(n) if found.len() < 20 => offset = n,
                _ => break,
            }
        }
    }
    let out: Vec<Value> = found
        .iter()
        .take(20)
        .map(|p| {
            let ids: Vec<Value> = p["identifier"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|i| matches!(i["system"].as_str(), Some(CCCD_SYSTEM) | Some(BHYT_SYSTEM)))
                .map(|i| json!({ "system": i["system"], "value": i["value"] }))
                .collect();
            json!({
                "reference": format!("Patient/{}", p["id"].as_str().unwrap_or("")),
                "name": patient_name(p),
                "birth_date": p["birthDate"],
                "gender": p["gender"],
                "identifiers": ids,
            })
        })
        .collect();
    Ok(Response::ok_json(&json!({ "patients": out })))
}

/// `family given...` of the first name, or its `text`.
fn patient_name(p: &Value) -> String {
    let n = &p["name"][0];
    if let Some(t) = n["text"].as_str() {
        return t.to_owned();
    }
    let mut parts: Vec<&str> = Vec::new();
    parts.extend(n["family"].as_str());
    parts.extend(
        n["given"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str),
    );
    parts.join(" ")
}
