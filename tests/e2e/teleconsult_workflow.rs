//! The teleconsultation workflow of issue 14 through the real `teleconsult` component: the
//! on-call rota and paging with re-sends and escalation on a clock the test drives, triage,
//! decline, tiers, rosters, network sessions with observers, the signed conclusion and its
//! acknowledgement, and each hospital's history.

use serde_json::{Value, json};
use vtelehealth_runtime::audit::AuditFilter;
use vtelehealth_runtime::capabilities::identity::{Hospital, Tier};
use vtelehealth_runtime::config::Limits;
use vtelehealth_runtime::identity::Role;
use vtelehealth_tests::common::{CITIZEN_ID, HEALTH_ID, patient_with_lab, send};
use vtelehealth_tests::{TestServer, plugin_dir, plugin_set};

use crate::teleconsult::{at, message, person, request_body};

const MINUTE: i64 = 60_000;

/// bv-a (central, the host), bv-b (district, requests), plus a provincial and a commune
/// hospital.
async fn network() -> (TestServer, tempfile::TempDir) {
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
    (server, dir)
}

/// The teleconsult notifications of one person so far, oldest first.
async fn pages_of(server: &TestServer, token: &str) -> Vec<Value> {
    let (s, l) = send(
        server,
        "GET",
        "/api/v1/me/notifications?limit=200",
        token,
        None,
        &[],
    )
    .await;
    assert_eq!(s, 200, "{l}");
    l["notifications"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|n| n["topic"] == "teleconsult.page")
        .collect()
}

/// The people of a host with a cardiology rota: (subject, token) each.
struct Host {
    on_call: (String, String),
    group: (String, String),
    admin: (String, String),
    requester: (String, String),
}

async fn host_with_rota(server: &TestServer) -> Host {
    let on_call = person(server, "bs-truc", Role::Practitioner, Some("bv-a")).await;
    let group = person(server, "bs-nhom", Role::Practitioner, Some("bv-a")).await;
    let admin = person(server, "qt-a", Role::HospitalAdmin, Some("bv-a")).await;
    let requester = person(server, "bs-huyen", Role::Practitioner, Some("bv-b")).await;
    let rota = json!({
        "name": "Tim mạch", "on_call": [on_call.0], "group": [group.0],
        "resend_minutes": 5, "escalate_after_minutes": 15,
    });
    let (s, r) = send(
        server,
        "PUT",
        &at("/oncall/tim-mach"),
        &admin.1,
        Some(rota),
        &[],
    )
    .await;
    assert_eq!(s, 200, "{r}");
    // Read back by names.
    assert_eq!(r["on_call"][0]["name"], "BS. bs-truc", "{r}");
    assert_eq!(r["group"][0]["name"], "BS. bs-nhom", "{r}");
    assert_eq!(r["admin"]["name"], "BS. qt-a", "{r}");
    Host {
        on_call,
        group,
        admin,
        requester,
    }
}

async fn urgent_request(server: &TestServer, requester: &str) -> String {
    let (s, c) = send(
        server,
        "POST",
        &at("/consultations"),
        requester,
        Some(request_body()),
        &[],
    )
    .await;
    assert_eq!(s, 201, "{c}");
    assert_eq!(c["paging"]["status"], "paging", "{c}");
    c["id"].as_str().expect("id").to_owned()
}

#[tokio::test]
async fn an_unanswered_urgent_page_is_resent_then_escalated_on_the_tests_clock() {
    let (server, _dir) = network().await;
    let h = host_with_rota(&server).await;
    // Only the host's admin sets the rota; a practitioner cannot, nor a doctor elsewhere.
    let (s, r) = send(
        &server,
        "PUT",
        &at("/oncall/tim-mach"),
        &h.on_call.1,
        Some(json!({ "name": "x", "on_call": [h.on_call.0] })),
        &[],
    )
    .await;
    assert_eq!(s, 403, "{r}");
    // A doctor of another hospital on the rota is refused, by name.
    let (s, r) = send(
        &server,
        "PUT",
        &at("/oncall/tim-mach"),
        &h.admin.1,
        Some(json!({ "name": "Tim mạch", "on_call": [h.requester.0] })),
        &[],
    )
    .await;
    assert_eq!(s, 400, "{r}");
    assert!(message(&r).contains("bv-b"), "{r}");

    let id = urgent_request(&server, &h.requester.1).await;
    let t0 = vtelehealth_runtime::time::now_millis();
    // The on-call doctor is paged at once; the group is not, yet.
    let paged = pages_of(&server, &h.on_call.1).await;
    assert_eq!(paged.len(), 1, "{paged:?}");
    assert_eq!(
        paged[0]["link"],
        format!("/hospitals/bv-a/plugins/teleconsult/consultations/{id}/page")
    );
    assert!(pages_of(&server, &h.group.1).await.is_empty());

    // The triage queue shows it under its specialty, with who is paged by name.
    let (s, q) = send(&server, "GET", &at("/queue"), &h.group.1, None, &[]).await;
    assert_eq!(s, 200, "{q}");
    assert_eq!(q["specialties"][0]["code"], "tim-mach", "{q}");
    assert_eq!(q["specialties"][0]["requests"][0]["id"], id.as_str(), "{q}");
    assert_eq!(
        q["specialties"][0]["requests"][0]["paging"]["stages"][0]["names"][0], "BS. bs-truc",
        "{q}"
    );

    // Nothing is due before five minutes.
    let n = server
        .runtime
        .notifications
        .sweep_pages(t0 + 4 * MINUTE)
        .await
        .expect("sweep");
    assert_eq!(n, 0);
    // Five minutes unanswered: re-sent to the on-call doctor only.
    let n = server
        .runtime
        .notifications
        .sweep_pages(t0 + 5 * MINUTE + 30_000)
        .await
        .expect("sweep");
    assert_eq!(n, 1);
    let paged = pages_of(&server, &h.on_call.1).await;
    assert_eq!(paged.len(), 2, "{paged:?}");
    assert!(
        paged[1]["title"]
            .as_str()
            .is_some_and(|t| t.starts_with("Nhắc lại")),
        "{paged:?}"
    );
    assert!(pages_of(&server, &h.group.1).await.is_empty());
    // Fifteen minutes unanswered: escalated to the specialty's group.
    server
        .runtime
        .notifications
        .sweep_pages(t0 + 15 * MINUTE + 30_000)
        .await
        .expect("sweep");
    let escalated = pages_of(&server, &h.group.1).await;
    assert_eq!(escalated.len(), 1, "{escalated:?}");
    assert!(
        escalated[0]["title"]
            .as_str()
            .is_some_and(|t| t.starts_with("Chuyển cấp")),
        "{escalated:?}"
    );
    assert_eq!(escalated[0]["data"]["page"]["escalated"], true);
    assert!(pages_of(&server, &h.admin.1).await.is_empty());

    // The requester cannot silence the page.
    let (s, r) = send(
        &server,
        "POST",
        &at(&format!("/consultations/{id}/page/ack")),
        &h.requester.1,
        None,
        &[],
    )
    .await;
    assert_eq!(s, 403, "{r}");
    // The group's doctor answers the page: no more re-sends, no escalation to the admin.
    let (s, a) = send(
        &server,
        "POST",
        &at(&format!("/consultations/{id}/page/ack")),
        &h.group.1,
        None,
        &[],
    )
    .await;
    assert_eq!(s, 200, "{a}");
    assert_eq!(a["acknowledged"], true, "{a}");
    assert_eq!(a["paging"]["status"], "answered", "{a}");
    let n = server
        .runtime
        .notifications
        .sweep_pages(t0 + 60 * MINUTE)
        .await
        .expect("sweep");
    assert_eq!(n, 0, "answered: nothing more");
    assert!(pages_of(&server, &h.admin.1).await.is_empty());

    // A second request nobody answers reaches the admin after twice the escalation time.
    let id2 = urgent_request(&server, &h.requester.1).await;
    let t1 = vtelehealth_runtime::time::now_millis();
    server
        .runtime
        .notifications
        .sweep_pages(t1 + 31 * MINUTE)
        .await
        .expect("sweep");
    let admin_pages = pages_of(&server, &h.admin.1).await;
    assert_eq!(admin_pages.len(), 1, "{admin_pages:?}");
    assert_eq!(admin_pages[0]["data"]["consultation"], id2.as_str());
}

#[tokio::test]
async fn a_stale_page_after_the_conclusion_answers_with_the_state() {
    let (server, _dir) = network().await;
    let h = host_with_rota(&server).await;
    let id = urgent_request(&server, &h.requester.1).await;
    let (s, a) = send(
        &server,
        "POST",
        &at(&format!("/consultations/{id}/accept")),
        &h.on_call.1,
        Some(json!({ "scheduled_at": 1_795_000_000_000u64, "consultants": [] })),
        &[],
    )
    .await;
    assert_eq!(s, 200, "{a}");
    let (s, done) = send(
        &server,
        "POST",
        &at(&format!("/consultations/{id}/conclusion")),
        &h.on_call.1,
        Some(json!({ "assessment": "Nhồi máu cơ tim cấp", "recommendations": "Chuyển tuyến can thiệp" })),
        &[],
    )
    .await;
    assert_eq!(s, 200, "{done}");
    // Accepting stopped the page: a sweep much later pages nobody.
    let n = server
        .runtime
        .notifications
        .sweep_pages(vtelehealth_runtime::time::now_millis() + 120 * MINUTE)
        .await
        .expect("sweep");
    assert_eq!(n, 0);
    // The page's link, opened late, says what happened instead of failing.
    let (s, v) = send(
        &server,
        "GET",
        &at(&format!("/consultations/{id}/page")),
        &h.group.1,
        None,
        &[],
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["status"], "concluded", "{v}");
    assert_eq!(v["open"], false, "{v}");
    assert_eq!(v["actions"], json!([]), "{v}");
    assert!(
        v["vi"].as_str().is_some_and(|t| t.contains("kết luận")),
        "{v}"
    );
    let (s, v) = send(
        &server,
        "POST",
        &at(&format!("/consultations/{id}/page/ack")),
        &h.on_call.1,
        None,
        &[],
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (&v["acknowledged"], &v["status"]),
        (&json!(false), &json!("concluded"))
    );
    // Accepting it now is a conflict that names the state.
    let (s, r) = send(
        &server,
        "POST",
        &at(&format!("/consultations/{id}/accept")),
        &h.group.1,
        Some(json!({ "scheduled_at": 1_795_000_000_000u64 })),
        &[],
    )
    .await;
    assert_eq!(s, 409, "{r}");
    assert!(message(&r).contains("concluded"), "{r}");
}

#[tokio::test]
async fn decline_needs_a_reason_and_is_kept_in_the_history() {
    let (server, _dir) = network().await;
    let h = host_with_rota(&server).await;
    let id = urgent_request(&server, &h.requester.1).await;
    let path = at(&format!("/consultations/{id}/decline"));
    for bad in [json!({}), json!({ "reason": "   " })] {
        let (s, r) = send(&server, "POST", &path, &h.on_call.1, Some(bad), &[]).await;
        assert_eq!(s, 400, "{r}");
        assert!(message(&r).contains("reason"), "{r}");
    }
    let (s, r) = send(
        &server,
        "GET",
        &at(&format!("/consultations/{id}")),
        &h.on_call.1,
        None,
        &[],
    )
    .await;
    assert_eq!((s, &r["status"]), (200, &json!("requested")), "{r}");
    let reason = "Ngoài chuyên khoa: đề nghị gửi thần kinh";
    let (s, r) = send(
        &server,
        "POST",
        &path,
        &h.on_call.1,
        Some(json!({ "reason": reason })),
        &[],
    )
    .await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["status"], "declined", "{r}");
    assert_eq!(r["decline_reason"], reason, "{r}");
    assert_eq!(r["paging"]["status"], "answered", "{r}");
    // The requester's hospital sees it in its history, with the reason and who declined.
    let (s, hist) = send(&server, "GET", &at("/history"), &h.requester.1, None, &[]).await;
    assert_eq!(s, 200, "{hist}");
    let entry = &hist["consultations"][0];
    assert_eq!(entry["id"], id.as_str(), "{hist}");
    assert_eq!(entry["status"], "declined", "{hist}");
    assert_eq!(entry["decline_reason"], reason, "{hist}");
    assert!(entry["timings"]["declined_at"].is_u64(), "{hist}");
    assert_eq!(entry["requesting_hospital_name"], "Bệnh viện B", "{hist}");
    assert!(
        !hist.to_string().contains(CITIZEN_ID),
        "no patient in the history: {hist}"
    );
}

#[tokio::test]
async fn a_request_to_a_lower_or_same_tier_is_refused() {
    let (server, _dir) = network().await;
    let (_, district) = person(&server, "bs-huyen", Role::Practitioner, Some("bv-b")).await;
    let (_, provincial) = person(&server, "bs-tinh", Role::Practitioner, Some("bv-tinh")).await;
    let (_, xa) = person(&server, "ys-xa", Role::Practitioner, Some("tyt-xa")).await;
    server
        .runtime
        .hospitals
        .upsert(Hospital {
            id: "ttyt-khac".into(),
            name: "Trung tâm y tế huyện khác".into(),
            tier: Tier::District,
            province: "Nam Định".into(),
            ..Default::default()
        })
        .await
        .expect("hospital");
    // District → commune (lower), district → another district (same tier) and a hospital
    // to itself are refused, and nothing is stored at the host.
    for (host, token, doctor) in [
        ("tyt-xa", &district, "district to commune"),
        ("ttyt-khac", &district, "district to district"),
        ("bv-b", &district, "own hospital"),
    ] {
        let (s, r) = send(
            &server,
            "POST",
            &format!("/hospitals/{host}/plugins/teleconsult/consultations"),
            token,
            Some(request_body()),
            &[],
        )
        .await;
        assert_eq!(s, 400, "{doctor}: {r}");
    }
    let (s, r) = send(
        &server,
        "POST",
        "/hospitals/tyt-xa/plugins/teleconsult/consultations",
        &provincial,
        Some(request_body()),
        &[],
    )
    .await;
    assert_eq!(s, 400, "{r}");
    assert!(
        message(&r).contains("tuyến dưới") && message(&r).contains("lower-tier"),
        "{r}"
    );
    let (s, l) = send(
        &server,
        "GET",
        "/hospitals/tyt-xa/plugins/teleconsult/consultations",
        &xa,
        None,
        &[],
    )
    .await;
    assert_eq!(s, 200, "{l}");
    assert_eq!(l["consultations"], json!([]), "{l}");
    // Upwards is fine: the commune asks the district.
    let (s, r) = send(
        &server,
        "POST",
        "/hospitals/bv-b/plugins/teleconsult/consultations",
        &xa,
        Some(request_body()),
        &[],
    )
    .await;
    assert_eq!(s, 201, "{r}");
}

#[tokio::test]
async fn roster_limits_are_enforced_and_rosters_show_names() {
    let (server, _dir) = network().await;
    let (_, admin) = person(&server, "qt-a", Role::HospitalAdmin, Some("bv-a")).await;
    let (central, _) = person(&server, "gs-a", Role::Practitioner, Some("bv-a")).await;
    let mut provincial = Vec::new();
    for i in 0..5 {
        provincial.push(
            person(
                &server,
                &format!("bs-tinh-{i}"),
                Role::Practitioner,
                Some("bv-tinh"),
            )
            .await
            .0,
        );
    }
    let (district, _) = person(&server, "bs-huyen", Role::Practitioner, Some("bv-b")).await;
    let mut commune = Vec::new();
    for i in 0..3 {
        commune.push(
            person(
                &server,
                &format!("ys-xa-{i}"),
                Role::Practitioner,
                Some("tyt-xa"),
            )
            .await
            .0,
        );
    }
    let roster = |p: &[String], d: &[String], c: &[String]| json!({ "name": "Kíp tim mạch", "central": central, "provincial": p, "district": d, "commune": c });
    let path = at("/rosters/tim-mach");
    let d = std::slice::from_ref(&district);
    for (body, what) in [
        (roster(&provincial, d, &commune[..1]), "five provincial"),
        (roster(&provincial[..4], d, &commune), "three commune"),
        (roster(&provincial[..1], &[], &commune[..1]), "no district"),
        (
            roster(&provincial[..1], &vec![district.clone(); 5], &commune[..1]),
            "five district",
        ),
    ] {
        let (s, r) = send(&server, "PUT", &path, &admin, Some(body), &[]).await;
        assert_eq!(s, 400, "{what}: {r}");
        assert!(message(&r).contains("1-4-4-2"), "{what}: {r}");
    }
    let mut two_central = roster(&provincial[..1], d, &commune[..1]);
    two_central["central"] = json!([central, central]);
    let (s, r) = send(&server, "PUT", &path, &admin, Some(two_central), &[]).await;
    assert_eq!(s, 400, "one central doctor: {r}");
    let (s, r) = send(&server, "GET", &path, &admin, None, &[]).await;
    assert_eq!(s, 404, "nothing stored: {r}");
    // The full model: 1-4-4-2, shown with names, hospitals and tiers.
    let (s, r) = send(
        &server,
        "PUT",
        &path,
        &admin,
        Some(roster(&provincial[..4], d, &commune[..2])),
        &[],
    )
    .await;
    assert_eq!(s, 200, "{r}");
    let (s, r) = send(&server, "GET", &path, &admin, None, &[]).await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["members"]["central"]["name"], "BS. gs-a", "{r}");
    assert_eq!(
        r["members"]["provincial"][3]["name"], "BS. bs-tinh-3",
        "{r}"
    );
    assert_eq!(r["members"]["commune"][1]["tier"], "commune", "{r}");
    assert_eq!(
        r["members"]["district"][0]["hospital_name"], "Bệnh viện B",
        "{r}"
    );
    let (s, r) = send(&server, "DELETE", &path, &admin, None, &[]).await;
    assert_eq!(s, 200, "{r}");
    let (s, _) = send(&server, "GET", &path, &admin, None, &[]).await;
    assert_eq!(s, 404);
}

#[tokio::test]
async fn a_doctor_of_another_hospital_cannot_accept_or_decline() {
    let (server, _dir) = network().await;
    let h = host_with_rota(&server).await;
    let (_, elsewhere) = person(&server, "bs-tinh", Role::Practitioner, Some("bv-tinh")).await;
    let id = urgent_request(&server, &h.requester.1).await;
    for (step, body) in [
        ("accept", json!({ "scheduled_at": 1_795_000_000_000u64 })),
        ("decline", json!({ "reason": "không" })),
    ] {
        for (token, who) in [
            (&elsewhere, "provincial doctor"),
            (&h.requester.1, "requester"),
        ] {
            let (s, r) = send(
                &server,
                "POST",
                &at(&format!("/consultations/{id}/{step}")),
                token,
                Some(body.clone()),
                &[],
            )
            .await;
            assert_eq!(s, 403, "{who} {step}: {r}");
            assert!(message(&r).contains("host hospital"), "{r}");
        }
    }
    let (s, c) = send(
        &server,
        "GET",
        &at(&format!("/consultations/{id}")),
        &h.on_call.1,
        None,
        &[],
    )
    .await;
    assert_eq!((s, &c["status"]), (200, &json!("requested")), "{c}");
    assert_eq!(c["chair"], Value::Null, "{c}");
}

#[tokio::test]
async fn an_observer_joins_an_open_session_without_invitation_and_never_sees_the_patient() {
    let (server, _dir) = network().await;
    let h = host_with_rota(&server).await;
    let (_, observer) = person(&server, "bs-tinh", Role::Practitioner, Some("bv-tinh")).await;
    let (_, lab) = patient_with_lab(&server, &h.requester.1).await;
    let mut body = request_body();
    body["summary"] = json!(format!(
        "Nam 58 tuổi, CCCD {CITIZEN_ID}, BHXH {HEALTH_ID}: đau ngực"
    ));
    body["patient"]["identifiers"] = json!([
        { "system": "https://vneid.gov.vn/cccd", "value": CITIZEN_ID },
        { "system": "https://baohiemxahoi.gov.vn/ma-so-bhxh", "value": HEALTH_ID }
    ]);
    let (s, c) = send(
        &server,
        "POST",
        &at("/consultations"),
        &h.requester.1,
        Some(body),
        &[],
    )
    .await;
    assert_eq!(s, 201, "{c}");
    let id = c["id"].as_str().expect("id").to_owned();
    let (s, a) = send(
        &server,
        "POST",
        &at(&format!("/consultations/{id}/accept")),
        &h.on_call.1,
        Some(json!({ "scheduled_at": 1_795_000_000_000u64, "consultants": [] })),
        &[],
    )
    .await;
    assert_eq!(s, 200, "{a}");
    // Not opened yet: nothing to list or join.
    let (s, l) = send(&server, "GET", &at("/sessions"), &observer, None, &[]).await;
    assert_eq!((s, &l["sessions"]), (200, &json!([])), "{l}");
    let join = at(&format!("/sessions/{id}/join"));
    let (s, r) = send(&server, "POST", &join, &observer, None, &[]).await;
    assert_eq!(s, 404, "{r}");
    // Only the chair opens it to the network.
    let session =
        json!({ "title": "Ca lâm sàng: nhồi máu cơ tim", "starts_at": 1_795_000_000_000u64 });
    let open = at(&format!("/consultations/{id}/session"));
    let (s, r) = send(
        &server,
        "POST",
        &open,
        &h.group.1,
        Some(session.clone()),
        &[],
    )
    .await;
    assert_eq!(s, 403, "{r}");
    let (s, r) = send(&server, "POST", &open, &h.on_call.1, Some(session), &[]).await;
    assert_eq!(s, 200, "{r}");
    // A doctor of a third hospital sees the schedule, by names, and joins in one call.
    let (s, l) = send(&server, "GET", &at("/sessions"), &observer, None, &[]).await;
    assert_eq!(s, 200, "{l}");
    assert_eq!(l["sessions"][0]["consultation"], id.as_str(), "{l}");
    assert_eq!(
        l["sessions"][0]["title"], "Ca lâm sàng: nhồi máu cơ tim",
        "{l}"
    );
    assert_eq!(l["sessions"][0]["chair_name"], "BS. bs-truc", "{l}");
    assert_eq!(l["sessions"][0]["host_hospital_name"], "Bệnh viện A", "{l}");
    let (s, j) = send(&server, "POST", &join, &observer, None, &[]).await;
    assert_eq!(s, 200, "{j}");
    assert_eq!(j["role"], "observer", "{j}");
    let participant = j["participant_id"]
        .as_str()
        .expect("participant")
        .to_owned();
    let (s, again) = send(&server, "POST", &join, &observer, None, &[]).await;
    assert_eq!(s, 200, "{again}");
    assert_eq!(
        again["participant_id"],
        participant.as_str(),
        "joining twice"
    );
    // Video: a receive-only join token from the platform.
    let room = a["room_id"].as_str().expect("room");
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
    // The patient: not in what the plugin returns to the observer, and not readable.
    let mut seen = Vec::new();
    for path in [
        format!("/consultations/{id}"),
        "/consultations".to_owned(),
        format!("/consultations/{id}/events"),
        "/sessions".to_owned(),
        "/history".to_owned(),
    ] {
        let (s, v) = send(&server, "GET", &at(&path), &observer, None, &[]).await;
        assert_eq!(s, 200, "{path}: {v}");
        let text = v.to_string();
        assert!(
            !text.contains(CITIZEN_ID) && !text.contains(HEALTH_ID),
            "{path}: {text}"
        );
        assert!(!text.contains("Patient/42"), "{path}: {text}");
        seen.push(v);
    }
    assert_eq!(seen[0]["patient_hidden"], true, "{}", seen[0]);
    assert_eq!(seen[0]["records"], Value::Null, "{}", seen[0]);
    let (s, _) = send(
        &server,
        "GET",
        &format!("/fhir/R4/Observation/{lab}"),
        &observer,
        None,
        &[],
    )
    .await;
    assert_eq!(s, 403, "the observer's hospital reads no record");
    // The requester and the host still see the patient.
    let (_, full) = send(
        &server,
        "GET",
        &at(&format!("/consultations/{id}")),
        &h.requester.1,
        None,
        &[],
    )
    .await;
    assert!(full.to_string().contains(CITIZEN_ID), "{full}");
}

#[tokio::test]
async fn the_conclusion_is_signed_notified_and_acknowledged_by_the_requesting_hospital() {
    let (server, _dir) = network().await;
    let h = host_with_rota(&server).await;
    let id = urgent_request(&server, &h.requester.1).await;
    let (s, a) = send(
        &server,
        "POST",
        &at(&format!("/consultations/{id}/accept")),
        &h.on_call.1,
        Some(json!({ "scheduled_at": 1_795_000_000_000u64, "consultants": [h.group.0] })),
        &[],
    )
    .await;
    assert_eq!(s, 200, "{a}");
    // Not concluded yet: nothing to acknowledge.
    let ack = at(&format!("/consultations/{id}/acknowledge"));
    let (s, r) = send(&server, "POST", &ack, &h.requester.1, None, &[]).await;
    assert_eq!(s, 409, "{r}");
    let (s, done) = send(
        &server,
        "POST",
        &at(&format!("/consultations/{id}/conclusion")),
        &h.on_call.1,
        Some(json!({
            "assessment": "Nhồi máu cơ tim cấp thành dưới",
            "recommendations": "Chuyển tuyến can thiệp mạch vành trong 2 giờ",
            "follow_up": "Tái khám tim mạch sau 1 tháng"
        })),
        &[],
    )
    .await;
    assert_eq!(s, 200, "{done}");
    let signed = &done["signed_conclusion"];
    assert_eq!(signed["signed_by_name"], "BS. bs-truc", "{done}");
    assert!(signed["signed_at"].is_u64(), "{done}");
    assert_eq!(
        signed["follow_up"], "Tái khám tim mạch sau 1 tháng",
        "{done}"
    );
    // Written as FHIR at the upper hospital, with the signature.
    let reference = done["conclusion_reference"].as_str().expect("reference");
    let (s, fhir) = send(
        &server,
        "GET",
        &format!("/fhir/R4/{reference}"),
        &h.on_call.1,
        None,
        &[],
    )
    .await;
    assert_eq!(s, 200, "{fhir}");
    let text = fhir.to_string();
    assert!(text.contains("Chuyển tuyến can thiệp"), "{fhir}");
    assert!(text.contains("BS. bs-truc"), "{fhir}");
    // The requester was told.
    let (_, mine) = send(
        &server,
        "GET",
        "/api/v1/me/notifications?limit=200",
        &h.requester.1,
        None,
        &[],
    )
    .await;
    assert!(
        mine["notifications"]
            .as_array()
            .is_some_and(|l| l.iter().any(|n| n["topic"] == "teleconsult.concluded")),
        "{mine}"
    );
    // Someone outside the requesting hospital cannot acknowledge; the requester does, once.
    let (_, elsewhere) = person(&server, "bs-tinh", Role::Practitioner, Some("bv-tinh")).await;
    let (s, r) = send(&server, "POST", &ack, &elsewhere, None, &[]).await;
    assert_eq!(s, 404, "{r}");
    let (s, r) = send(&server, "POST", &ack, &h.requester.1, None, &[]).await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["acknowledged_by_name"], "BS. bs-huyen", "{r}");
    let (s, r) = send(&server, "POST", &ack, &h.requester.1, None, &[]).await;
    assert_eq!(s, 409, "{r}");
    // The history: every step's time, and the participants by name.
    let (s, hist) = send(&server, "GET", &at("/history"), &h.on_call.1, None, &[]).await;
    assert_eq!(s, 200, "{hist}");
    let e = &hist["consultations"][0];
    for step in [
        "requested_at",
        "accepted_at",
        "scheduled_at",
        "concluded_at",
        "acknowledged_at",
    ] {
        assert!(e["timings"][step].is_u64(), "{step}: {hist}");
    }
    let names: Vec<&str> = e["participants"]
        .as_array()
        .expect("participants")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert_eq!(
        names,
        ["BS. bs-truc", "BS. bs-huyen", "BS. bs-nhom"],
        "{hist}"
    );
    assert_eq!(e["signed_by_name"], "BS. bs-truc", "{hist}");
}

#[tokio::test]
async fn a_requesting_doctor_finds_patients_specialties_and_doctors_by_name() {
    let (server, _dir) = network().await;
    let h = host_with_rota(&server).await;
    let (_, other) = person(&server, "bs-tinh", Role::Practitioner, Some("bv-tinh")).await;
    patient_with_lab(&server, &h.requester.1).await;
    // At the requester's own hospital: by name (without tone marks), CCCD or BHXH number.
    let own = |q: &str| format!("/hospitals/bv-b/plugins/teleconsult/patients?q={q}");
    for q in ["tran%20van", "B%C3%ACnh", CITIZEN_ID, HEALTH_ID] {
        let (s, r) = send(&server, "GET", &own(q), &h.requester.1, None, &[]).await;
        assert_eq!(s, 200, "{q}: {r}");
        assert_eq!(r["patients"][0]["name"], "Trần Văn Bình", "{q}: {r}");
        assert!(
            r["patients"][0]["reference"]
                .as_str()
                .is_some_and(|p| p.starts_with("Patient/")),
            "{r}"
        );
    }
    let (s, r) = send(&server, "GET", &own("12345"), &h.requester.1, None, &[]).await;
    assert_eq!(s, 400, "{r}");
    // Another hospital's doctor finds nothing there: not their hospital.
    let (s, r) = send(&server, "GET", &own("tran"), &other, None, &[]).await;
    assert_eq!(s, 403, "{r}");
    // At the upper hospital: its specialties and its teleconsultation doctors, by name.
    let (s, r) = send(
        &server,
        "GET",
        &at("/specialties"),
        &h.requester.1,
        None,
        &[],
    )
    .await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["specialties"][0]["name"], "Tim mạch", "{r}");
    assert_eq!(
        r["specialties"][0]["on_call"][0]["name"], "BS. bs-truc",
        "{r}"
    );
    let (s, r) = send(
        &server,
        "GET",
        &at("/practitioners?q=nhom&specialty=tim"),
        &h.requester.1,
        None,
        &[],
    )
    .await;
    assert_eq!(s, 200, "{r}");
    let names: Vec<&str> = r["practitioners"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert_eq!(names, ["BS. bs-nhom"], "{r}");
    // Records attached after the request.
    let id = urgent_request(&server, &h.requester.1).await;
    let (s, r) = send(
        &server,
        "POST",
        &at(&format!("/consultations/{id}/attachments")),
        &h.requester.1,
        Some(json!({ "records": ["DiagnosticReport/9"], "documents": ["https://pacs.bv-b.vn/fhir/ImagingStudy/ct-2"] })),
        &[],
    )
    .await;
    assert_eq!(s, 200, "{r}");
    assert!(
        r["records"]
            .as_array()
            .is_some_and(|l| l.iter().any(|x| x == "DiagnosticReport/9")),
        "{r}"
    );
    let (s, r) = send(
        &server,
        "POST",
        &at(&format!("/consultations/{id}/attachments")),
        &h.on_call.1,
        Some(json!({ "records": ["Observation/1"] })),
        &[],
    )
    .await;
    assert_eq!(s, 403, "only the requester attaches: {r}");
}

/// The demo network (`runtime serve --demo`): an urgent cardiology request from Thái Bình
/// reaches Bạch Mai's on-call cardiologists at once, by the rota the demo seeds (through the
/// plugin, as Bạch Mai's admin), and the 1-4-4-2 roster proposes Bạch Mai's mentor.
#[tokio::test]
async fn the_demo_pages_bach_mais_on_call_cardiologists_for_an_urgent_request() {
    let data = tempfile::TempDir::new().expect("dir");
    let no_dev_plugins = tempfile::TempDir::new().expect("dir");
    let options = vtelehealth_runtime::RuntimeOptions {
        database_url: format!("sqlite://{}", data.path().join("demo.db").display()),
        plugin_dir: Some(no_dev_plugins.path().to_path_buf()),
        demo: true,
        ..Default::default()
    };
    let server = TestServer::start_with(options, data).await;
    let published =
        vtelehealth_runtime::demo::publish_reference_plugins(&server.runtime, &plugin_dir())
            .await
            .expect("published");
    assert!(
        published.iter().any(|p| p == "teleconsult"),
        "{published:?}"
    );
    let token = |username: &'static str| {
        let rt = server.runtime.clone();
        async move {
            let user = rt
                .identity
                .user_by_username(username)
                .await
                .expect("lookup")
                .unwrap_or_else(|| panic!("demo account {username}"));
            rt.identity.token_for(&user).expect("token")
        }
    };
    let bach_mai = |p: &str| format!("/hospitals/bach-mai/plugins/teleconsult{p}");
    let (s, rota) = send(
        &server,
        "GET",
        &bach_mai("/oncall/tim-mach"),
        &token("qt.bachmai").await,
        None,
        &[],
    )
    .await;
    assert_eq!(s, 200, "{rota}");
    let on_call: Vec<&str> = rota["on_call"]
        .as_array()
        .expect("on call")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert_eq!(
        on_call,
        ["BS. Lê Minh Châu", "BS. Nguyễn Thị Lan"],
        "{rota}"
    );
    let (s, c) = send(
        &server,
        "POST",
        &bach_mai("/consultations"),
        &token("bs.thaibinh").await,
        Some(json!({
            "patient": { "identifiers": [{ "system": "https://vneid.gov.vn/cccd", "value": "001090000001" }] },
            "summary": "Đau ngực cấp, ST chênh lên",
            "urgency": "urgent",
            "specialty": "Tim mạch"
        })),
        &[],
    )
    .await;
    assert_eq!(s, 201, "{c}");
    assert_eq!(c["paging"]["stages"][0]["label"], "on-call", "{c}");
    assert_eq!(
        c["proposed_consultants"][0]["name"], "BS. Lê Minh Châu",
        "the roster's central mentor: {c}"
    );
    for doctor in ["bs.bachmai", "bs.lan.bachmai"] {
        let paged = pages_of(&server, &token(doctor).await).await;
        assert_eq!(paged.len(), 1, "{doctor}: {paged:?}");
    }
    // The rest of the cardiology group is paged only when nobody answers.
    assert!(
        pages_of(&server, &token("bs.hung.bachmai").await)
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn the_conclusion_reaches_the_requesting_hospitals_record_of_the_patient() {
    let (server, _dir) = network().await;
    let h = host_with_rota(&server).await;
    // The district hospital keeps its own record of the patient (same citizen ID).
    let (patient, _) = patient_with_lab(&server, &h.requester.1).await;
    let id = urgent_request(&server, &h.requester.1).await;
    let (s, a) = send(
        &server,
        "POST",
        &at(&format!("/consultations/{id}/accept")),
        &h.on_call.1,
        Some(json!({ "scheduled_at": 1_795_000_000_000u64 })),
        &[],
    )
    .await;
    assert_eq!(s, 200, "{a}");
    let (s, done) = send(
        &server,
        "POST",
        &at(&format!("/consultations/{id}/conclusion")),
        &h.on_call.1,
        Some(json!({
            "assessment": "Nhồi máu cơ tim cấp thành dưới",
            "recommendations": "Chuyển tuyến can thiệp mạch vành trong 2 giờ",
            "follow_up": "Tái khám tim mạch sau 1 tháng"
        })),
        &[],
    )
    .await;
    assert_eq!(s, 200, "{done}");
    assert!(done["delivery_error"].is_null(), "{done}");
    let delivered = done["delivered_reference"]
        .as_str()
        .expect("delivered to the requesting hospital");
    assert!(delivered.starts_with("Communication/"), "{done}");
    // The requesting doctor reads it in their own hospital's record of the patient.
    let (s, copy) = send(
        &server,
        "GET",
        &format!("/fhir/R4/{delivered}"),
        &h.requester.1,
        None,
        &[],
    )
    .await;
    assert_eq!(s, 200, "{copy}");
    assert_eq!(
        copy["subject"]["reference"],
        format!("Patient/{patient}"),
        "{copy}"
    );
    let text = copy.to_string();
    assert!(text.contains("Chuyển tuyến can thiệp"), "{copy}");
    assert!(text.contains("BS. bs-truc"), "signed: {copy}");
    let (s, found) = send(
        &server,
        "GET",
        &format!("/fhir/R4/Communication?subject=Patient/{patient}"),
        &h.requester.1,
        None,
        &[],
    )
    .await;
    assert_eq!(s, 200, "{found}");
    assert_eq!(found["total"], 1, "{found}");
    // The consultation is over, so the upper hospital no longer reads the district's records.
    let (s, r) = send(
        &server,
        "GET",
        &format!("/fhir/R4/{delivered}"),
        &h.on_call.1,
        None,
        &[],
    )
    .await;
    assert!(s == 403 || s == 404, "{s}: {r}");
    // The delivery is in the district hospital's audit trail, naming the consultant.
    let entries = server
        .runtime
        .governance
        .audit
        .list(&AuditFilter {
            action_prefix: Some("consultation.conclusion_delivered".into()),
            hospital_id: Some("bv-b".into()),
            ..AuditFilter::default()
        })
        .await
        .expect("audit");
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0].details["resource"], delivered, "{entries:?}");
    assert_eq!(entries[0].details["host_hospital"], "bv-a", "{entries:?}");
}
