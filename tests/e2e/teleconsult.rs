//! The `teleconsult` reference plugin (hội chẩn) through the real component: a district
//! hospital requests a consultation from the central hospital, which accepts, opens a room
//! with invitations across three hospitals, and records the conclusion as a FHIR resource;
//! every step is an event; rosters of the 1-4-4-2 model are checked by tier.

use serde_json::{Value, json};
use vtelehealth_runtime::capabilities::identity::{Hospital, Tier};
use vtelehealth_runtime::config::Limits;
use vtelehealth_runtime::identity::{NewUser, Role};
use vtelehealth_tests::{TestServer, plugin_dir, plugin_set};

use vtelehealth_runtime::records::CCCD_SYSTEM;
use vtelehealth_tests::common::{CITIZEN_ID, patient_with_lab, send};

/// The plugin at the host (upper-level) hospital, where the workflow lives.
pub(crate) fn at(path: &str) -> String {
    format!("/hospitals/bv-a/plugins/teleconsult{path}")
}

/// A user: (subject, platform token).
pub(crate) async fn person(
    server: &TestServer,
    name: &str,
    role: Role,
    hospital: Option<&str>,
) -> (String, String) {
    let mut u = NewUser::new(name, &format!("BS. {name}"), role, "password-1");
    u.hospital_id = hospital.map(Into::into);
    if role == Role::Citizen {
        u.national_id = Some("001099000007".into());
    }
    let user = server.runtime.identity.create_user(u).await.expect("user");
    let token = server.runtime.identity.token_for(&user).expect("token");
    (user.id, token)
}

pub(crate) fn message(v: &Value) -> String {
    v["error"]["message"].as_str().unwrap_or("").to_owned()
}

pub(crate) fn request_body() -> Value {
    json!({
        "patient": {
            "reference": "Patient/42",
            "identifiers": [{ "system": CCCD_SYSTEM, "value": CITIZEN_ID }]
        },
        "summary": "Nam 58 tuổi, đau ngực kéo dài, ST chênh lên; xin hội chẩn tim mạch",
        "urgency": "urgent",
        "specialty": "Tim mạch",
        "records": ["Observation/7", "DiagnosticReport/3"],
        "imaging": ["ImagingStudy/ct-1"]
    })
}

#[tokio::test]
async fn request_accept_room_conclusion_and_events() {
    let dir = plugin_set(&plugin_dir(), &["teleconsult"]);
    let server = TestServer::start(dir.path(), Limits::default()).await;
    for (id, name, tier) in [
        ("bv-tinh", "Bệnh viện tỉnh", Tier::Provincial),
        ("tyt-xa", "Trạm y tế xã", Tier::Commune),
    ] {
        server
            .runtime
            .hospitals
            .upsert(Hospital {
                id: id.into(),
                name: name.into(),
                tier,
                province: "Thái Bình".into(),
                ..Default::default()
            })
            .await
            .expect("hospital");
    }
    let (chair_id, chair) = person(&server, "gs-chair", Role::Practitioner, Some("bv-a")).await;
    let (cons_id, cons) = person(&server, "bs-tim", Role::Practitioner, Some("bv-a")).await;
    let (_, admin) = person(&server, "qt-a", Role::HospitalAdmin, Some("bv-a")).await;
    let (req_id, requester) = person(&server, "bs-huyen", Role::Practitioner, Some("bv-b")).await;
    let (obs_id, observer) = person(&server, "bs-tinh", Role::Practitioner, Some("bv-tinh")).await;
    let (xa_id, xa) = person(&server, "ys-xa", Role::Practitioner, Some("tyt-xa")).await;
    let (_, citizen) = person(&server, "cd-9", Role::Citizen, None).await;

    // A roster with a district doctor in a provincial seat is refused, naming the tiers.
    let bad = json!({ "name": "Kíp tim mạch", "central": cons_id, "provincial": [req_id], "district": [obs_id], "commune": [xa_id] });
    let (s, r) = send(
        &server,
        "PUT",
        &at("/rosters/tim-mach"),
        &admin,
        Some(bad),
        &[],
    )
    .await;
    assert_eq!(s, 400, "{r}");
    assert!(message(&r).contains("district"), "{r}");
    assert!(message(&r).contains("provincial"), "{r}");
    let roster = json!({ "name": "Kíp tim mạch", "central": cons_id, "provincial": [obs_id], "district": [req_id], "commune": [xa_id] });
    // Only the host's hospital-admin sets rosters.
    let (s, r) = send(
        &server,
        "PUT",
        &at("/rosters/tim-mach"),
        &chair,
        Some(roster.clone()),
        &[],
    )
    .await;
    assert_eq!(s, 403, "{r}");
    let (s, r) = send(
        &server,
        "PUT",
        &at("/rosters/tim-mach"),
        &admin,
        Some(roster),
        &[],
    )
    .await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["central"], cons_id.as_str(), "{r}");

    // Only practitioners request; bad input is named.
    let (s, r) = send(
        &server,
        "POST",
        &at("/consultations"),
        &citizen,
        Some(request_body()),
        &[],
    )
    .await;
    assert_eq!(s, 403, "{r}");
    let mut wrong = request_body();
    wrong["urgency"] = json!("soon");
    let (s, r) = send(
        &server,
        "POST",
        &at("/consultations"),
        &requester,
        Some(wrong),
        &[],
    )
    .await;
    assert_eq!(s, 400, "{r}");
    assert!(message(&r).contains("urgency"), "{r}");
    let mut wrong = request_body();
    wrong["records"] = json!(["not a reference"]);
    let (s, r) = send(
        &server,
        "POST",
        &at("/consultations"),
        &requester,
        Some(wrong),
        &[],
    )
    .await;
    assert_eq!(s, 400, "{r}");
    // The host does not request from itself.
    let (s, r) = send(
        &server,
        "POST",
        &at("/consultations"),
        &chair,
        Some(request_body()),
        &[],
    )
    .await;
    assert_eq!(s, 400, "{r}");

    // The district hospital holds the patient's record; the upper hospital cannot read it yet.
    let (_, lab) = patient_with_lab(&server, &requester).await;
    let lab_path = format!("/fhir/R4/Observation/{lab}");
    let (s, _) = send(&server, "GET", &lab_path, &chair, None, &[]).await;
    assert_eq!(s, 403, "no consultation yet");

    // The district doctor requests; the roster proposes the consultants above the district.
    let (s, c) = send(
        &server,
        "POST",
        &at("/consultations"),
        &requester,
        Some(request_body()),
        &[],
    )
    .await;
    assert_eq!(s, 201, "{c}");
    assert_eq!(c["status"], "requested", "{c}");
    assert_eq!(c["requesting_hospital"], "bv-b", "{c}");
    let id = c["id"].as_str().expect("id").to_owned();
    // The platform's consultation record is requested with it, not yet active.
    let records_consultation = c["records_consultation"]
        .as_str()
        .expect("a records consultation for a patient named by CCCD")
        .to_owned();
    let (s, l) = send(&server, "GET", "/api/v1/consultations", &chair, None, &[]).await;
    assert_eq!(s, 200, "{l}");
    assert_eq!(
        l["consultations"][0]["id"],
        records_consultation.as_str(),
        "{l}"
    );
    assert_eq!(l["consultations"][0]["status"], "requested", "{l}");
    assert_eq!(l["consultations"][0]["requesting_hospital"], "bv-b", "{l}");
    let (s, _) = send(&server, "GET", &lab_path, &chair, None, &[]).await;
    assert_eq!(s, 403, "requested is not enough");
    let proposed: Vec<&str> = c["proposed_consultants"]
        .as_array()
        .expect("proposed")
        .iter()
        .filter_map(|p| p["practitioner"].as_str())
        .collect();
    assert!(proposed.contains(&cons_id.as_str()), "{c}");
    assert!(
        !proposed.contains(&xa_id.as_str()),
        "a commune doctor is not proposed: {c}"
    );

    // The upper hospital lists incoming requests.
    let (s, l) = send(
        &server,
        "GET",
        &at("/consultations?status=requested"),
        &chair,
        None,
        &[],
    )
    .await;
    assert_eq!(s, 200, "{l}");
    assert_eq!(l["consultations"][0]["id"], id.as_str(), "{l}");

    // Unknown consultation, a non-practitioner and another hospital's doctor cannot accept.
    // The requester and the observer follow their notifications as they happen; the
    // streams' database re-read is set to an hour, so only a push can deliver.
    server
        .runtime
        .notifications
        .set_recheck_interval(std::time::Duration::from_secs(3600));
    let mut requester_feed = Feed::open(&server, &requester, None).await;
    let mut observer_feed = Feed::open(&server, &observer, None).await;
    let accept = json!({ "scheduled_at": 1_795_000_000_000u64, "consultants": [cons_id], "observers": [obs_id] });
    let (s, r) = send(
        &server,
        "POST",
        &at("/consultations/hc-999999/accept"),
        &chair,
        Some(accept.clone()),
        &[],
    )
    .await;
    assert_eq!(s, 404, "{r}");
    let (s, r) = send(
        &server,
        "POST",
        &at(&format!("/consultations/{id}/accept")),
        &admin,
        Some(accept.clone()),
        &[],
    )
    .await;
    assert_eq!(s, 403, "{r}");
    let (s, r) = send(
        &server,
        "POST",
        &at(&format!("/consultations/{id}/accept")),
        &requester,
        Some(accept.clone()),
        &[],
    )
    .await;
    assert_eq!(s, 403, "{r}");

    // Accept: a room hosted by A for B, the requester, the consultant and an observer of a
    // third hospital invited with their roles.
    let (s, a) = send(
        &server,
        "POST",
        &at(&format!("/consultations/{id}/accept")),
        &chair,
        Some(accept.clone()),
        &[],
    )
    .await;
    assert_eq!(s, 200, "{a}");
    assert_eq!(a["status"], "accepted", "{a}");
    // Pushed at once to the requester and to the observer just invited; links open the
    // consultation in the plugin.
    let pushed = requester_feed.until("teleconsult.accepted").await;
    assert_eq!(pushed["data"]["consultation"], id.as_str(), "{pushed}");
    assert_eq!(
        pushed["link"],
        format!("/hospitals/bv-a/plugins/teleconsult/consultations/{id}"),
        "{pushed}"
    );
    assert_eq!(pushed["sender"], chair_id.as_str(), "{pushed}");
    let opened = observer_feed.until("teleconsult.room-opened").await;
    assert_eq!(opened["data"]["consultation"], id.as_str(), "{opened}");
    assert!(
        opened["title"]
            .as_str()
            .is_some_and(|t| t.starts_with(&format!("Hội chẩn {id}: Mở phòng"))),
        "{opened}"
    );
    // A reconnect with Last-Event-ID resumes after what was seen.
    let mut again = Feed::open(&server, &requester, pushed["seq"].as_i64()).await;
    assert_eq!(
        again.next().await["topic"],
        "teleconsult.room-opened",
        "the next one after `accepted`"
    );
    // The list: the chair took the step, so the chair was not notified of it; the citizen
    // outside the consultation has nothing.
    let (s, mine) = send(
        &server,
        "GET",
        "/api/v1/me/notifications",
        &chair,
        None,
        &[],
    )
    .await;
    assert_eq!(s, 200, "{mine}");
    assert!(
        mine["notifications"]
            .as_array()
            .is_some_and(|l| l.iter().all(|n| n["topic"] != "teleconsult.accepted")),
        "{mine}"
    );
    let (_, none) = send(
        &server,
        "GET",
        "/api/v1/me/notifications",
        &citizen,
        None,
        &[],
    )
    .await;
    assert_eq!(none["notifications"], json!([]), "{none}");
    let (_, obs_list) = send(
        &server,
        "GET",
        "/api/v1/me/notifications",
        &observer,
        None,
        &[],
    )
    .await;
    let unread = obs_list["unread"].as_i64().expect("unread");
    assert!(unread >= 2, "{obs_list}");
    let (s, r) = send(
        &server,
        "POST",
        "/api/v1/me/notifications/read",
        &observer,
        Some(json!({ "upto": obs_list["last_seq"] })),
        &[],
    )
    .await;
    assert_eq!((s, &r["unread"]), (200, &json!(0)), "{r}");
    // Accepting opened the patient's records to the upper hospital, for treatment.
    let (s, obs) = send(&server, "GET", &lab_path, &chair, None, &[]).await;
    assert_eq!(
        s, 200,
        "accepted: the chair reads the district's record: {obs}"
    );
    let (s, _) = send(&server, "GET", &lab_path, &observer, None, &[]).await;
    assert_eq!(
        s, 403,
        "an observer's hospital is not part of the records consultation"
    );
    let room = a["room_id"].as_str().expect("room").to_owned();
    let roles: Vec<(String, String, String)> = a["invitees"]
        .as_array()
        .expect("invitees")
        .iter()
        .map(|i| {
            (
                i["practitioner"].as_str().unwrap_or("").to_owned(),
                i["role"].as_str().unwrap_or("").to_owned(),
                i["hospital"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    assert_eq!(
        roles,
        vec![
            (chair_id.clone(), "chair".into(), "bv-a".into()),
            (req_id.clone(), "presenter".into(), "bv-b".into()),
            (cons_id.clone(), "participant".into(), "bv-a".into()),
            (obs_id.clone(), "observer".into(), "bv-tinh".into()),
        ],
        "{a}"
    );
    assert_eq!(
        a["join"]["token_url"],
        format!("/api/v1/video/rooms/{room}/token"),
        "{a}"
    );
    let (s, r) = send(
        &server,
        "POST",
        &at(&format!("/consultations/{id}/accept")),
        &chair,
        Some(accept),
        &[],
    )
    .await;
    assert_eq!(s, 409, "accept twice: {r}");
    assert!(message(&r).contains("accepted"), "{r}");

    // The invitees fetch their join tokens from the platform; the observer never publishes.
    let (s, t) = send(
        &server,
        "POST",
        &format!("/api/v1/video/rooms/{room}/token"),
        &observer,
        Some(json!({})),
        &[],
    )
    .await;
    assert_eq!(s, 200, "{t}");
    assert_eq!(t["can_publish"], false, "{t}");
    let (s, t) = send(
        &server,
        "POST",
        &format!("/api/v1/video/rooms/{room}/token"),
        &requester,
        Some(json!({})),
        &[],
    )
    .await;
    assert_eq!(s, 200, "{t}");
    assert_eq!(t["can_publish"], true, "{t}");
    let (s, t) = send(
        &server,
        "POST",
        &format!("/api/v1/video/rooms/{room}/token"),
        &xa,
        Some(json!({})),
        &[],
    )
    .await;
    assert_eq!(s, 403, "uninvited: {t}");

    // Only the chair concludes; the conclusion is a FHIR Communication at the host.
    let conclusion = json!({ "conclusion": "Nhồi máu cơ tim cấp; chuyển tuyến can thiệp mạch vành trong 2 giờ." });
    let (s, r) = send(
        &server,
        "POST",
        &at(&format!("/consultations/{id}/conclusion")),
        &cons,
        Some(conclusion.clone()),
        &[],
    )
    .await;
    assert_eq!(s, 403, "{r}");
    let (s, r) = send(
        &server,
        "POST",
        &at(&format!("/consultations/{id}/conclusion")),
        &chair,
        Some(json!({})),
        &[],
    )
    .await;
    assert_eq!(s, 400, "{r}");
    let (s, done) = send(
        &server,
        "POST",
        &at(&format!("/consultations/{id}/conclusion")),
        &chair,
        Some(conclusion.clone()),
        &[],
    )
    .await;
    assert_eq!(s, 200, "{done}");
    assert_eq!(done["status"], "concluded", "{done}");
    let reference = done["conclusion_reference"]
        .as_str()
        .expect("reference")
        .to_owned();
    assert!(reference.starts_with("Communication/"), "{done}");
    let (s, fhir) = send(
        &server,
        "GET",
        &format!("/fhir/R4/{reference}"),
        &chair,
        None,
        &[],
    )
    .await;
    assert_eq!(s, 200, "{fhir}");
    assert_eq!(fhir["resourceType"], "Communication", "{fhir}");
    assert!(
        fhir["payload"][0]["contentString"]
            .as_str()
            .unwrap_or("")
            .contains("Nhồi máu cơ tim"),
        "{fhir}"
    );
    assert_eq!(fhir["identifier"][0]["value"], id.as_str(), "{fhir}");
    let (s, r) = send(
        &server,
        "POST",
        &at(&format!("/consultations/{id}/conclusion")),
        &chair,
        Some(conclusion),
        &[],
    )
    .await;
    assert_eq!(s, 409, "conclude twice: {r}");
    // Concluded: the records consultation is ended and the records closed again.
    let (s, _) = send(&server, "GET", &lab_path, &chair, None, &[]).await;
    assert_eq!(s, 403, "concluded: closed again");
    let (_, l) = send(&server, "GET", "/api/v1/consultations", &chair, None, &[]).await;
    assert_eq!(l["consultations"][0]["status"], "ended", "{l}");
    // The room is over: no more tokens.
    let (s, t) = send(
        &server,
        "POST",
        &format!("/api/v1/video/rooms/{room}/token"),
        &observer,
        Some(json!({})),
        &[],
    )
    .await;
    assert_ne!(s, 200, "{t}");

    // Every participant polls the same events; someone outside the consultation sees nothing.
    let (s, ev) = send(
        &server,
        "GET",
        &at(&format!("/consultations/{id}/events")),
        &observer,
        None,
        &[],
    )
    .await;
    assert_eq!(s, 200, "{ev}");
    let types: Vec<&str> = ev["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["type"].as_str())
        .collect();
    assert_eq!(
        types,
        ["requested", "accepted", "room-opened", "concluded"],
        "{ev}"
    );
    assert!(
        ev["events"][0]["vi"]
            .as_str()
            .unwrap_or("")
            .contains("yêu cầu hội chẩn"),
        "{ev}"
    );
    let (s, ev) = send(
        &server,
        "GET",
        &at(&format!("/consultations/{id}/events?after=2")),
        &requester,
        None,
        &[],
    )
    .await;
    assert_eq!(s, 200, "{ev}");
    assert_eq!(ev["events"].as_array().map(Vec::len), Some(2), "{ev}");
    let (s, r) = send(
        &server,
        "GET",
        &at(&format!("/consultations/{id}/events")),
        &xa,
        None,
        &[],
    )
    .await;
    assert_eq!(s, 404, "{r}");
    let (s, r) = send(
        &server,
        "GET",
        &at("/consultations/hc-999999/events"),
        &chair,
        None,
        &[],
    )
    .await;
    assert_eq!(s, 404, "{r}");

    // A second request is declined, once.
    let (s, c2) = send(
        &server,
        "POST",
        &at("/consultations"),
        &requester,
        Some(request_body()),
        &[],
    )
    .await;
    assert_eq!(s, 201, "{c2}");
    let id2 = c2["id"].as_str().expect("id").to_owned();
    let (s, r) = send(
        &server,
        "POST",
        &at(&format!("/consultations/{id2}/decline")),
        &chair,
        Some(json!({})),
        &[],
    )
    .await;
    assert_eq!(s, 400, "a reason is required: {r}");
    let reason = json!({ "reason": "Đề nghị chuyển chuyên khoa thần kinh" });
    let (s, r) = send(
        &server,
        "POST",
        &at(&format!("/consultations/{id2}/decline")),
        &chair,
        Some(reason.clone()),
        &[],
    )
    .await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["status"], "declined", "{r}");
    let (s, r) = send(
        &server,
        "POST",
        &at(&format!("/consultations/{id2}/decline")),
        &chair,
        Some(reason),
        &[],
    )
    .await;
    assert_eq!(s, 409, "{r}");
    // The requester sees both of theirs; the commune doctor sees none.
    let (s, l) = send(&server, "GET", &at("/consultations"), &requester, None, &[]).await;
    assert_eq!(s, 200, "{l}");
    assert_eq!(l["consultations"].as_array().map(Vec::len), Some(2), "{l}");
    let (s, l) = send(&server, "GET", &at("/consultations"), &xa, None, &[]).await;
    assert_eq!(s, 200, "{l}");
    assert_eq!(l["consultations"].as_array().map(Vec::len), Some(0), "{l}");
}

#[tokio::test]
async fn a_diagnostic_report_conclusion_and_roster_sizes() {
    let dir = plugin_set(&plugin_dir(), &["teleconsult"]);
    let server = TestServer::start(dir.path(), Limits::default()).await;
    let (_, chair) = person(&server, "gs-a", Role::Practitioner, Some("bv-a")).await;
    let (cons_id, _) = person(&server, "bs-a2", Role::Practitioner, Some("bv-a")).await;
    let (_, admin) = person(&server, "qt-a", Role::HospitalAdmin, Some("bv-a")).await;
    let (req_id, requester) = person(&server, "bs-b", Role::Practitioner, Some("bv-b")).await;

    // Unauthenticated callers are refused by the host: the route declares its
    // roles (dev plugins serve anyone, within their manifest's routes).
    let resp = server
        .client
        .post(server.plugin_url("bv-a", "teleconsult", "/consultations"))
        .body(request_body().to_string())
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status().as_u16(), 401);

    // More than the model's seats, or a seat left empty, is refused.
    let five = vec![req_id.clone(); 5];
    let (s, r) = send(
        &server,
        "PUT",
        &at("/rosters/r1"),
        &admin,
        Some(json!({ "central": cons_id, "provincial": five, "district": [req_id], "commune": [req_id] })),
        &[],
    )
    .await;
    assert_eq!(s, 400, "{r}");
    assert!(message(&r).contains("1-4-4-2"), "{r}");
    let (s, r) = send(
        &server,
        "PUT",
        &at("/rosters/r1"),
        &admin,
        Some(json!({ "central": "no-such-doctor", "provincial": [req_id], "district": [req_id], "commune": [req_id] })),
        &[],
    )
    .await;
    assert_eq!(s, 400, "{r}");
    assert!(message(&r).contains("no-such-doctor"), "{r}");
    assert!(message(&r).contains("twice"), "{r}");
    let (s, r) = send(&server, "GET", &at("/rosters/r1"), &admin, None, &[]).await;
    assert_eq!(s, 404, "{r}");

    let mut body = request_body();
    body["urgency"] = json!("emergency");
    let (s, c) = send(
        &server,
        "POST",
        &at("/consultations"),
        &requester,
        Some(body),
        &[],
    )
    .await;
    assert_eq!(s, 201, "{c}");
    let id = c["id"].as_str().expect("id").to_owned();
    // Without a roster nobody is proposed; the chair names the consultant.
    assert_eq!(c["proposed_consultants"], json!([]), "{c}");
    // The host's admin already opened the records through the API: accepting the
    // consultation in the plugin still goes through (the step is already taken).
    let rc = c["records_consultation"]
        .as_str()
        .expect("records consultation");
    let (s, r) = send(
        &server,
        "POST",
        &format!("/api/v1/consultations/{rc}/accept"),
        &admin,
        None,
        &[],
    )
    .await;
    assert_eq!((s, &r["status"]), (200, &json!("active")), "{r}");
    let (s, a) = send(
        &server,
        "POST",
        &at(&format!("/consultations/{id}/accept")),
        &chair,
        Some(json!({ "scheduled_at": 1_795_000_000_000u64, "consultants": [{ "practitioner": cons_id, "role": "presenter" }] })),
        &[],
    )
    .await;
    assert_eq!(s, 200, "{a}");
    assert_eq!(a["invitees"][2]["role"], "presenter", "{a}");
    let (s, r) = send(
        &server,
        "POST",
        &at(&format!("/consultations/{id}/conclusion")),
        &chair,
        Some(json!({ "conclusion": "x", "resource_type": "Observation" })),
        &[],
    )
    .await;
    assert_eq!(s, 400, "{r}");
    let (s, done) = send(
        &server,
        "POST",
        &at(&format!("/consultations/{id}/conclusion")),
        &chair,
        Some(json!({ "conclusion": "Viêm ruột thừa cấp: mổ cấp cứu tại tuyến huyện.", "resource_type": "DiagnosticReport" })),
        &[],
    )
    .await;
    assert_eq!(s, 200, "{done}");
    let reference = done["conclusion_reference"]
        .as_str()
        .expect("reference")
        .to_owned();
    assert!(reference.starts_with("DiagnosticReport/"), "{done}");
    let (s, fhir) = send(
        &server,
        "GET",
        &format!("/fhir/R4/{reference}"),
        &chair,
        None,
        &[],
    )
    .await;
    assert_eq!(s, 200, "{fhir}");
    assert_eq!(fhir["status"], "final", "{fhir}");
    assert!(
        fhir["conclusion"]
            .as_str()
            .unwrap_or("")
            .contains("Viêm ruột thừa"),
        "{fhir}"
    );
}

/// Reviewed and rolled out (not a development plugin), teleconsult still
/// serves the practitioners of other hospitals, because its manifest says
/// `network = true` and the review showed it; a plugin without the flag
/// (hello) refuses them, and neither serves other roles of other hospitals.
#[tokio::test]
async fn a_reviewed_network_plugin_serves_other_hospitals_practitioners() {
    let no_plugins = tempfile::TempDir::new().expect("dir");
    let server = TestServer::start(no_plugins.path(), Limits::default()).await;
    let published =
        vtelehealth_runtime::demo::publish_reference_plugins(&server.runtime, &plugin_dir())
            .await
            .expect("published");
    assert!(
        published.iter().any(|p| p == "teleconsult"),
        "{published:?}"
    );
    let (_, doctor_b) = person(&server, "bs-b-net", Role::Practitioner, Some("bv-b")).await;
    let (_, admin_b) = person(&server, "qt-b-net", Role::HospitalAdmin, Some("bv-b")).await;
    let (status, body) = send(&server, "GET", &at("/consultations"), &doctor_b, None, &[]).await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = send(
        &server,
        "GET",
        "/hospitals/bv-a/plugins/hello/",
        &doctor_b,
        None,
        &[],
    )
    .await;
    assert_eq!(status, 403);
    let (status, _) = send(&server, "GET", &at("/consultations"), &admin_b, None, &[]).await;
    assert_eq!(status, 403);
}

/// A client of `/api/v1/me/notifications/stream` (Server-Sent Events).
pub(crate) struct Feed {
    body: std::pin::Pin<Box<dyn futures::Stream<Item = reqwest::Result<Vec<u8>>> + Send>>,
    buffer: String,
}

impl Feed {
    pub(crate) async fn open(server: &TestServer, token: &str, last_event_id: Option<i64>) -> Self {
        let mut req = server
            .client
            .get(format!("{}/api/v1/me/notifications/stream", server.base))
            .bearer_auth(token);
        if let Some(id) = last_event_id {
            req = req.header("last-event-id", id.to_string());
        }
        let resp = req.send().await.expect("stream opens");
        assert_eq!(resp.status(), 200);
        assert!(
            resp.headers()["content-type"]
                .to_str()
                .unwrap_or("")
                .starts_with("text/event-stream")
        );
        use futures::StreamExt as _;
        Self {
            body: Box::pin(resp.bytes_stream().map(|r| r.map(|b| b.to_vec()))),
            buffer: String::new(),
        }
    }

    /// The next notification; a bounded wait, so a missing push fails the test.
    async fn next(&mut self) -> Value {
        use futures::StreamExt as _;
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let data: String = block
                    .lines()
                    .filter_map(|l| l.strip_prefix("data:"))
                    .map(str::trim_start)
                    .collect();
                if block.lines().any(|l| l == "event: notification") && !data.is_empty() {
                    return serde_json::from_str(&data).expect("a notification as JSON");
                }
                continue;
            }
            let chunk = tokio::time::timeout(std::time::Duration::from_secs(20), self.body.next())
                .await
                .expect("a notification within 20 s")
                .expect("the stream stays open")
                .expect("bytes");
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    }

    /// Notifications until one of `topic`.
    pub(crate) async fn until(&mut self, topic: &str) -> Value {
        loop {
            let n = self.next().await;
            if n["topic"] == topic {
                return n;
            }
        }
    }
}
