//! What a requesting doctor's page picks from: the upper hospital's practitioners (by name
//! and specialty, from the platform's practitioner directory) and the requesting hospital's
//! own patients.
use vtelehealth_plugin_sdk::identity;
use vtelehealth_plugin_sdk::serde_json::Value;
use vtelehealth_plugin_sdk::{Error, Request, Response, json, records};

use crate::{BHYT_SYSTEM, CCCD_SYSTEM, practitioner};

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

/// `GET /practitioners[?q=&specialty=]`: the host's practitioners by name and specialty
/// (tone marks optional), any practitioner of the network. The platform's directory
/// (`identity::search_practitioners`) finds them by their own name and specialty; a
/// `specialty` that names one of the host's on-call rotas (by code or name) also brings the
/// doctors of that rota, whatever specialty the directory gives them. At most 50.
pub(crate) fn practitioners(req: &Request) -> Result<Response, Error> {
    practitioner()?;
    let host = identity::current().hospital;
    let q_raw = req.query_param("q").unwrap_or_default();
    let specialty_raw = req
        .query_param("specialty")
        .filter(|s| !s.trim().is_empty());
    if q_raw.chars().count() > 200
        || specialty_raw
            .as_ref()
            .is_some_and(|s| s.chars().count() > 200)
    {
        return Err(Error::bad_request(
            "`q` và `specialty`: tối đa 200 ký tự (at most 200 characters)",
        ));
    }
    let q = fold(q_raw.trim());
    let specialty = specialty_raw.as_deref().map(|s| fold(s.trim()));
    let rotas = crate::paging::rotas()?;
    let on_call_for = |id: &str| -> Vec<String> {
        rotas
            .iter()
            .filter(|r| r.on_call.iter().chain(&r.group).any(|p| p.id == id))
            .map(|r| r.name.clone())
            .collect()
    };
    let mut found: Vec<identity::Practitioner> = identity::search_practitioners(
        Some(&host.id),
        q_raw.trim(),
        specialty_raw.as_deref().map(str::trim),
        identity::MAX_SEARCH_RESULTS,
    )?;
    // The doctors of the rotas the specialty names.
    if let Some(s) = &specialty {
        let words: Vec<&str> = q.split(' ').filter(|w| !w.is_empty()).collect();
        for r in rotas
            .iter()
            .filter(|r| fold(&r.name).contains(s.as_str()) || r.code.contains(s.as_str()))
        {
            for p in r.on_call.iter().chain(&r.group) {
                let name = fold(&p.name);
                if found.iter().any(|f| f.id == p.id) || !words.iter().all(|w| name.contains(w)) {
                    continue;
                }
                if let Some(pr) =
                    identity::practitioner(&p.id).filter(|pr| pr.hospital_id == host.id)
                {
                    found.push(pr);
                }
            }
        }
    }
    found.sort_by(|a, b| fold(&a.name).cmp(&fold(&b.name)).then(a.id.cmp(&b.id)));
    found.truncate(identity::MAX_SEARCH_RESULTS as usize);
    let out: Vec<Value> = found
        .into_iter()
        .map(|p| {
            json!({
                "id": p.id, "name": p.name, "title": p.title, "specialty": p.specialty,
                "on_call_for": on_call_for(&p.id), "hospital": host.id, "hospital_name": host.name,
            })
        })
        .collect();
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
