//! The network register (docs/operations.md, "The network register"):
//! importing facilities from CSV (dry run, idempotent re-import, bad rows
//! with their lines and nothing applied, parents later in the file),
//! suspension of facilities and vendors, the summary, the CLI, and on
//! PostgreSQL a suspension reaching a second node within a second.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use vtelehealth_runtime::audit::AuditFilter;
use vtelehealth_runtime::config::Limits;
use vtelehealth_runtime::demo::publish_reference_plugins;
use vtelehealth_runtime::identity::{IdentityOptions, NewUser, Role};
use vtelehealth_runtime::network::NewVendor;
use vtelehealth_runtime::{Runtime, RuntimeOptions};
use vtelehealth_tests::common::{send, server, user};
use vtelehealth_tests::{TestServer, plugin_dir, postgres_database, repo_root};

const HEADER: &str = "facility_code,name,tier,level,province,commune,ownership,parent_code,status";

/// A commune station before its health centre (its parent), a name with a
/// comma, a BOM and CRLF line ends, as spreadsheets write them.
fn network_csv() -> String {
    [
        format!("\u{feff}{HEADER}"),
        "34113,Trạm Y tế xã Tam Quang,commune,primary,Hưng Yên,Xã Tam Quang,public,34011,".into(),
        "34011,\"Trung tâm Y tế Vũ Thư, Hưng Yên\",district,basic,33,Xã Vũ Thư,public,34001,active".into(),
        "34001,Bệnh viện Đa khoa tỉnh Thái Bình,provincial,specialised,Hưng Yên,Phường Trần Hưng Đạo,public,,".into(),
        "79555,Phòng khám Đa khoa An Khang,district,basic,TP. Hồ Chí Minh,Phường Sài Gòn,private,,".into(),
    ]
    .join("\r\n")
}

async fn import(server: &TestServer, token: &str, csv: &str, dry: bool) -> (u16, Value) {
    let resp = server
        .client
        .post(format!(
            "{}/api/v1/network/facilities/import?dry_run={dry}",
            server.base
        ))
        .bearer_auth(token)
        .header("content-type", "text/csv")
        .body(csv.to_owned())
        .send()
        .await
        .expect("sent");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn counts(report: &Value) -> (u64, u64, u64) {
    let n = |k: &str| report[k].as_u64().unwrap_or(u64::MAX);
    (n("created"), n("updated"), n("unchanged"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_dry_run_reimport_and_bad_rows() {
    let server = server().await;
    let op = user(&server, "op", Role::Operator, None).await;
    let csv = network_csv();

    // A dry run reports and changes nothing.
    let (status, dry) = import(&server, &op, &csv, true).await;
    assert_eq!(status, 200, "{dry}");
    assert_eq!(dry["dry_run"], json!(true));
    assert_eq!(counts(&dry), (4, 0, 0), "{dry}");
    assert_eq!(dry["changes"][0]["line"], json!(2));
    assert_eq!(dry["changes"][0]["action"], json!("created"));
    let (_, list) = send(
        &server,
        "GET",
        "/api/v1/network/facilities?province=33",
        &op,
        None,
        &[],
    )
    .await;
    assert_eq!(
        list["total"],
        json!(0),
        "the dry run applied nothing: {list}"
    );

    // Applied: parents resolve, even to rows later in the file.
    let (status, done) = import(&server, &op, &csv, false).await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(counts(&done), (4, 0, 0), "{done}");
    let (_, list) = send(
        &server,
        "GET",
        "/api/v1/network/facilities?province=H%C6%B0ng%20Y%C3%AAn",
        &op,
        None,
        &[],
    )
    .await;
    assert_eq!(list["total"], json!(3), "{list}");
    let (status, station) = send(
        &server,
        "GET",
        "/api/v1/network/facilities/34113",
        &op,
        None,
        &[],
    )
    .await;
    assert_eq!(status, 200, "{station}");
    let f = &station["facility"];
    assert_eq!(f["id"], json!("kcb-34113"));
    assert_eq!(f["parent_id"], json!("kcb-34011"));
    assert_eq!(f["parent_name"], json!("Trung tâm Y tế Vũ Thư, Hưng Yên"));
    assert_eq!(f["province"], json!("Hưng Yên"));
    assert_eq!(f["province_code"], json!("33"));
    assert_eq!(f["level"], json!("primary"));
    assert_eq!(f["status"], json!("active"));
    // The platform knows them as hospitals (URLs use the id).
    assert!(server.runtime.hospitals.get("kcb-34113").is_some());
    let (_, search) = send(
        &server,
        "GET",
        "/api/v1/network/facilities?q=an%20khang&tier=district",
        &op,
        None,
        &[],
    )
    .await;
    assert_eq!(search["total"], json!(1), "{search}");

    // Re-importing the same file changes nothing.
    let (_, again) = import(&server, &op, &csv, false).await;
    assert_eq!(counts(&again), (0, 0, 4), "{again}");
    assert_eq!(again["changes"], json!([]));

    // A renamed facility is updated, naming the field and its line.
    let renamed = csv.replace("Phòng khám Đa khoa An Khang", "Phòng khám An Khang");
    let (_, upd) = import(&server, &op, &renamed, false).await;
    assert_eq!(counts(&upd), (0, 1, 3), "{upd}");
    assert_eq!(upd["changes"][0]["line"], json!(5));
    assert_eq!(upd["changes"][0]["fields"], json!(["name"]));

    // One bad row (a merged province) among good changes: 422 naming its
    // line, and nothing is applied, not even the good rows.
    let bad = format!(
        "{}\r\n34200,Trạm Y tế mới,commune,primary,Thái Bình,,public,,",
        renamed.replace("Phòng khám An Khang", "Phòng khám An Khang 2")
    );
    let (status, err) = import(&server, &op, &bad, false).await;
    assert_eq!(status, 422, "{err}");
    assert_eq!(err["error"]["code"], json!("invalid"));
    let errors = err["error"]["details"]["errors"]
        .as_array()
        .expect("errors");
    assert_eq!(errors.len(), 1, "{err}");
    assert_eq!(errors[0]["line"], json!(6));
    assert!(
        errors[0]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("Thái Bình"),
        "{err}"
    );
    // The console shows the line's message in its language.
    assert!(
        errors[0]["message_vi"]
            .as_str()
            .unwrap_or_default()
            .starts_with("tỉnh `Thái Bình` không thuộc 34 tỉnh"),
        "{err}"
    );
    assert!(err["error"]["message_vi"].is_string());
    let (_, clinic) = send(
        &server,
        "GET",
        "/api/v1/network/facilities/79555",
        &op,
        None,
        &[],
    )
    .await;
    assert_eq!(
        clinic["facility"]["name"],
        json!("Phòng khám An Khang"),
        "nothing applied"
    );
    assert!(server.runtime.hospitals.get("kcb-34200").is_none());

    // A parent that is nowhere, a duplicate code, a bad header.
    let orphan = format!(
        "{HEADER}\n34300,Trạm,commune,primary,33,,public,34999,\n34300,Trạm,commune,primary,33,,public,,"
    );
    let (status, err) = import(&server, &op, &orphan, true).await;
    assert_eq!(status, 422);
    let lines: Vec<_> = err["error"]["details"]["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|e| e["line"].as_u64())
        .collect();
    assert_eq!(lines, [Some(2), Some(3)], "{err}");
    let (status, err) = import(&server, &op, "code,name\n1,2", true).await;
    assert_eq!(status, 422);
    assert_eq!(err["error"]["details"]["errors"][0]["line"], json!(1));

    // One facility by JSON, then changed with PUT; a known code is a conflict.
    let one = json!({
        "facility_code": "01999", "name": "Trạm Y tế phường Kim Liên", "tier": "commune",
        "level": "primary", "province": "Hà Nội", "commune": "Phường Kim Liên", "ownership": "public",
    });
    let (status, made) = send(
        &server,
        "POST",
        "/api/v1/network/facilities",
        &op,
        Some(one.clone()),
        &[],
    )
    .await;
    assert_eq!(status, 201, "{made}");
    let (status, _) = send(
        &server,
        "POST",
        "/api/v1/network/facilities",
        &op,
        Some(one.clone()),
        &[],
    )
    .await;
    assert_eq!(status, 409);
    let mut changed = one.clone();
    changed["parent_code"] = json!("01999");
    let (status, err) = send(
        &server,
        "PUT",
        "/api/v1/network/facilities/01999",
        &op,
        Some(changed),
        &[],
    )
    .await;
    assert_eq!(status, 422, "a facility is not its own parent: {err}");
    let mut changed = one;
    changed["name"] = json!("Trạm Y tế phường Kim Liên (mới)");
    let (status, put) = send(
        &server,
        "PUT",
        "/api/v1/network/facilities/01999",
        &op,
        Some(changed),
        &[],
    )
    .await;
    assert_eq!(status, 200, "{put}");
    assert_eq!(put["action"], json!("updated"));

    // Every applied import is in the audit trail.
    let entries = server
        .runtime
        .governance
        .audit
        .list(&AuditFilter {
            action_prefix: Some("facility.imported".into()),
            ..AuditFilter::default()
        })
        .await
        .expect("audit");
    assert!(entries.len() >= 2, "{entries:?}");
}

/// The lines of a 422's rows, and whether each message (in both languages)
/// has `en` and `vi`.
fn bad_lines(err: &Value, en: &str, vi: &str) -> Vec<u64> {
    let rows = err["error"]["details"]["errors"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for r in &rows {
        let text = |k: &str| r[k].as_str().unwrap_or_default().to_owned();
        assert!(text("message").contains(en), "{en}: {err}");
        assert!(text("message_vi").contains(vi), "{vi}: {err}");
    }
    rows.iter().filter_map(|r| r["line"].as_u64()).collect()
}

/// A re-import of the routine file (status empty) or a PUT without status
/// keeps a suspension; one that names another status is refused, pointing
/// to suspend/reactivate. Parent cycles, in a file, against the register or
/// by PUT, are refused with their lines.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imports_keep_suspensions_and_refuse_parent_cycles() {
    let server = server().await;
    let op = user(&server, "op", Role::Operator, None).await;
    let csv = network_csv();
    let (status, report) = import(&server, &op, &csv, false).await;
    assert_eq!(status, 200, "{report}");
    let (status, body) = send(
        &server,
        "POST",
        "/api/v1/network/facilities/34113/suspend",
        &op,
        Some(json!({ "reason": "giấy phép hoạt động bị thu hồi" })),
        &[],
    )
    .await;
    assert_eq!(status, 200, "{body}");

    // The same file again: nothing changes, the station stays suspended.
    let (status, again) = import(&server, &op, &csv, false).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(counts(&again), (0, 0, 4), "{again}");
    assert!(server.runtime.hospitals.is_suspended("kcb-34113"));
    // A PUT without status (a rename) keeps it too.
    let station = json!({
        "facility_code": "34113", "name": "Trạm Y tế xã Tam Quang (mới)", "tier": "commune",
        "level": "primary", "province": "33", "commune": "Xã Tam Quang", "ownership": "public",
        "parent_code": "34011",
    });
    let (status, put) = send(
        &server,
        "PUT",
        "/api/v1/network/facilities/34113",
        &op,
        Some(station.clone()),
        &[],
    )
    .await;
    assert_eq!(status, 200, "{put}");
    assert_eq!(put["facility"]["status"], json!("suspended"), "{put}");
    assert!(server.runtime.hospitals.is_suspended("kcb-34113"));

    // Naming another status is refused, the line pointing to reactivate.
    let lifting = csv.replace(
        "Xã Tam Quang,public,34011,",
        "Xã Tam Quang,public,34011,active",
    );
    let (status, err) = import(&server, &op, &lifting, true).await;
    assert_eq!(status, 422, "{err}");
    assert_eq!(bad_lines(&err, "reactivate", "Khôi phục"), [2]);
    let mut lift = station.clone();
    lift["status"] = json!("active");
    let (status, err) = send(
        &server,
        "PUT",
        "/api/v1/network/facilities/34113",
        &op,
        Some(lift),
        &[],
    )
    .await;
    assert_eq!(status, 422, "{err}");
    assert!(server.runtime.hospitals.is_suspended("kcb-34113"));
    let reactivated = server
        .runtime
        .governance
        .audit
        .list(&AuditFilter {
            action_prefix: Some("facility.reactivated".into()),
            ..AuditFilter::default()
        })
        .await
        .expect("audit");
    assert_eq!(reactivated.len(), 0, "{reactivated:?}");
    // Imposing a suspension by file is refused the same way.
    let suspending = csv.replace(
        "Phường Sài Gòn,private,,",
        "Phường Sài Gòn,private,,suspended",
    );
    let (status, err) = import(&server, &op, &suspending, false).await;
    assert_eq!(status, 422, "{err}");
    assert_eq!(bad_lines(&err, "suspend", "Đình chỉ"), [5]);
    assert!(!server.runtime.hospitals.is_suspended("kcb-79555"));

    // A cycle within the file: both lines.
    let ring = format!(
        "{HEADER}\n34600,Trạm A,commune,primary,33,,public,34601,\n34601,Trạm B,commune,primary,33,,public,34600,"
    );
    let (status, err) = import(&server, &op, &ring, true).await;
    assert_eq!(status, 422, "{err}");
    assert_eq!(bad_lines(&err, "cycle", "vòng lặp"), [2, 3]);
    // Against the register: the provincial hospital under the station
    // that is (through its health centre) under it.
    let ring = format!(
        "{HEADER}\n34001,Bệnh viện Đa khoa tỉnh Thái Bình,provincial,specialised,33,Phường Trần Hưng Đạo,public,34113,"
    );
    let (status, err) = import(&server, &op, &ring, false).await;
    assert_eq!(status, 422, "{err}");
    assert_eq!(
        bad_lines(&err, "34001 → 34113 → 34011 → 34001", "vòng lặp"),
        [2]
    );
    // And by PUT.
    let provincial = json!({
        "facility_code": "34001", "name": "Bệnh viện Đa khoa tỉnh Thái Bình", "tier": "provincial",
        "level": "specialised", "province": "33", "commune": "Phường Trần Hưng Đạo",
        "ownership": "public", "parent_code": "34011",
    });
    let (status, err) = send(
        &server,
        "PUT",
        "/api/v1/network/facilities/34001",
        &op,
        Some(provincial),
        &[],
    )
    .await;
    assert_eq!(status, 422, "{err}");
    assert_eq!(bad_lines(&err, "cycle", "vòng lặp"), [0]);
    let top = server
        .runtime
        .hospitals
        .get("kcb-34001")
        .expect("registered");
    assert_eq!(top.parent_id, None, "nothing applied");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspension_refuses_plugin_routes_staff_and_vendor_users() {
    let server = TestServer::start(&plugin_dir(), Limits::default()).await;
    let rt = server.runtime.clone();
    let op = user(&server, "op", Role::Operator, None).await;
    let doctor_a = user(&server, "bs-a", Role::Practitioner, Some("bv-a")).await;
    let doctor_b = user(&server, "bs-b", Role::Practitioner, Some("bv-b")).await;
    // bv-a predates the register: an import row with its id gives it a code.
    let csv = format!(
        "{HEADER},id\n01001,Bệnh viện A,central,specialised,Hà Nội,Phường Kim Liên,public,,,bv-a"
    );
    let (status, report) = import(&server, &op, &csv, false).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(counts(&report), (0, 1, 0), "{report}");

    let hello = server.plugin_url("bv-a", "hello", "/");
    assert_eq!(server.get_json(&hello).await.0, 200);
    let (status, _) = send(&server, "GET", "/api/v1/me", &doctor_a, None, &[]).await;
    assert_eq!(status, 200);

    // Suspending needs a reason.
    let (status, _) = send(
        &server,
        "POST",
        "/api/v1/network/facilities/01001/suspend",
        &op,
        Some(json!({})),
        &[],
    )
    .await;
    assert_eq!(status, 422);
    let (status, body) = send(
        &server,
        "POST",
        "/api/v1/network/facilities/01001/suspend",
        &op,
        Some(json!({ "reason": "giấy phép hoạt động bị thu hồi" })),
        &[],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["facility"]["status"], json!("suspended"));

    // Its plugin routes and its staff are refused, with a message in both
    // languages naming the facility; another hospital's staff are not.
    let (status, refusal) = server.get_json(&hello).await;
    assert_eq!(status, 403, "{refusal}");
    assert_eq!(refusal["error"]["code"], json!("organisation_suspended"));
    assert!(
        refusal["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("Bệnh viện A"),
        "{refusal}"
    );
    assert!(
        refusal["error"]["message_vi"]
            .as_str()
            .unwrap_or_default()
            .contains("đình chỉ"),
        "{refusal}"
    );
    let (status, refusal) = send(&server, "GET", "/api/v1/me", &doctor_a, None, &[]).await;
    assert_eq!(status, 403, "{refusal}");
    assert_eq!(refusal["error"]["code"], json!("organisation_suspended"));
    let (status, _) = send(&server, "GET", "/api/v1/me", &doctor_b, None, &[]).await;
    assert_eq!(status, 200);
    let suspended = rt
        .governance
        .audit
        .list(&AuditFilter {
            action_prefix: Some("facility.suspended".into()),
            ..AuditFilter::default()
        })
        .await
        .expect("audit");
    assert_eq!(suspended.len(), 1);
    assert_eq!(suspended[0].hospital_id.as_deref(), Some("bv-a"));

    let (status, _) = send(
        &server,
        "POST",
        "/api/v1/network/facilities/01001/reactivate",
        &op,
        None,
        &[],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(server.get_json(&hello).await.0, 200);
    let (status, _) = send(&server, "GET", "/api/v1/me", &doctor_a, None, &[]).await;
    assert_eq!(status, 200);

    // A vendor: registered with its tax code; its users are refused while
    // it is suspended, and cannot submit versions.
    let vendor = json!({
        "id": "cong-ty-an-tam", "name": "Công ty TNHH An Tâm", "tax_code": "0109876543",
        "contact_name": "Nguyễn Văn An", "contact_email": "an@antam.vn", "contact_phone": "0912 345 678",
    });
    let (status, made) = send(
        &server,
        "POST",
        "/api/v1/network/vendors",
        &op,
        Some(vendor),
        &[],
    )
    .await;
    assert_eq!(status, 201, "{made}");
    let taken = json!({ "id": "khac", "name": "Khác", "tax_code": "0109876543" });
    let (status, _) = send(
        &server,
        "POST",
        "/api/v1/network/vendors",
        &op,
        Some(taken),
        &[],
    )
    .await;
    assert_eq!(status, 409, "tax codes are unique");
    let bad = json!({ "id": "khac", "name": "Khác", "tax_code": "12345" });
    let (status, _) = send(
        &server,
        "POST",
        "/api/v1/network/vendors",
        &op,
        Some(bad),
        &[],
    )
    .await;
    assert_eq!(status, 422);
    let mut u = NewUser::new("dev-an", "Lập trình viên", Role::VendorUser, "password-1");
    u.vendor_id = Some("cong-ty-an-tam".into());
    let dev = rt.identity.create_user(u).await.expect("vendor user");
    let dev = rt.identity.token_for(&dev).expect("token");
    let (status, _) = send(&server, "GET", "/api/v1/me", &dev, None, &[]).await;
    assert_eq!(status, 200);
    let (status, _) = send(
        &server,
        "POST",
        "/api/v1/network/vendors/cong-ty-an-tam/suspend",
        &op,
        Some(json!({ "reason": "vi phạm hợp đồng" })),
        &[],
    )
    .await;
    assert_eq!(status, 200);
    let (status, refusal) = send(&server, "GET", "/api/v1/me", &dev, None, &[]).await;
    assert_eq!(status, 403, "{refusal}");
    assert_eq!(refusal["error"]["code"], json!("organisation_suspended"));
    let (status, _) = send(
        &server,
        "POST",
        "/api/v1/plugin-versions",
        &dev,
        Some(json!({})),
        &[],
    )
    .await;
    assert_eq!(status, 403, "a suspended vendor cannot submit");
    let (_, list) = send(&server, "GET", "/api/v1/network/vendors", &op, None, &[]).await;
    let listed = list["vendors"]
        .as_array()
        .expect("vendors")
        .iter()
        .find(|v| v["id"] == json!("cong-ty-an-tam"))
        .cloned()
        .expect("listed");
    assert_eq!(listed["status"], json!("suspended"));
    assert_eq!(listed["tax_code"], json!("0109876543"));
    let (status, _) = send(
        &server,
        "POST",
        "/api/v1/network/vendors/cong-ty-an-tam/reactivate",
        &op,
        None,
        &[],
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = send(&server, "GET", "/api/v1/me", &dev, None, &[]).await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn summary_counts_registered_active_and_connected() {
    let server = server().await;
    let rt = server.runtime.clone();
    let op = user(&server, "op", Role::Operator, None).await;
    // The reference plugins rolled out to the two test hospitals: both
    // connected. The facilities imported after have no module: registered
    // but not connected.
    publish_reference_plugins(&rt, &plugin_dir())
        .await
        .expect("reference plugins");
    let (status, report) = import(&server, &op, &network_csv(), false).await;
    assert_eq!(status, 200, "{report}");
    let (status, _) = send(
        &server,
        "POST",
        "/api/v1/network/facilities/79555/suspend",
        &op,
        Some(json!({ "reason": "test" })),
        &[],
    )
    .await;
    assert_eq!(status, 200);
    let (status, s) = send(&server, "GET", "/api/v1/network/summary", &op, None, &[]).await;
    assert_eq!(status, 200, "{s}");
    let total = &s["total"];
    assert_eq!(total["registered"], json!(6), "{s}");
    assert_eq!(total["active"], json!(5), "{s}");
    assert_eq!(total["connected"], json!(2), "{s}");
    assert_eq!(total["public_registered"], json!(3), "{s}");
    let tier = |t: &str| {
        s["tiers"]
            .as_array()
            .expect("tiers")
            .iter()
            .find(|x| x["tier"] == json!(t))
            .map(|x| x["counts"].clone())
            .unwrap_or(Value::Null)
    };
    assert_eq!(tier("commune")["registered"], json!(1));
    assert_eq!(tier("commune")["connected"], json!(0));
    assert_eq!(tier("central")["connected"], json!(1));
    let province = |name: &str| {
        s["provinces"]
            .as_array()
            .expect("provinces")
            .iter()
            .find(|x| x["name"] == json!(name))
            .cloned()
            .unwrap_or(Value::Null)
    };
    assert_eq!(province("Hưng Yên")["code"], json!("33"));
    assert_eq!(province("Hưng Yên")["counts"]["registered"], json!(3));
    assert_eq!(province("Hà Nội")["counts"]["connected"], json!(1));
    // A hospital from before the register keeps its old province name.
    assert_eq!(province("Thái Bình")["code"], Value::Null);
    // Connecting a facility: its first active module.
    let reviewer = user(&server, "rv", Role::Reviewer, None).await;
    let (status, s2) = send(
        &server,
        "GET",
        "/api/v1/network/summary",
        &reviewer,
        None,
        &[],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(s2["total"], s["total"]);
    let admin = user(&server, "qt-a", Role::HospitalAdmin, Some("bv-a")).await;
    let (status, _) = send(&server, "GET", "/api/v1/network/summary", &admin, None, &[]).await;
    assert_eq!(status, 403);
}

/// `runtime network import`: progress on stderr, a summary, exit 1 with the
/// bad rows' lines and nothing imported.
#[test]
fn cli_import_reports_progress_and_bad_lines() {
    let bin = repo_root().join("target/debug/runtime");
    assert!(
        bin.is_file(),
        "{} is missing: `cargo build --workspace`",
        bin.display()
    );
    let dir = tempfile::TempDir::new().expect("dir");
    let db = dir.path().join("cli.db");
    let file = dir.path().join("facilities.csv");
    let run = |args: &[&str]| {
        std::process::Command::new(&bin)
            .args(args)
            .env_remove("VTH_DATABASE")
            .output()
            .expect("runtime runs")
    };
    let db_arg = db.to_str().expect("utf-8 path");
    let file_arg = file.to_str().expect("utf-8 path");
    std::fs::write(&file, network_csv()).expect("write");

    let out = run(&["network", "import", file_arg, "--dry-run", "--db", db_arg]);
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("dry run") && stdout.contains("4 created"),
        "{stdout}"
    );

    let out = run(&["network", "import", file_arg, "--db", db_arg]);
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stdout.contains("imported: 4 created, 0 updated, 0 unchanged"),
        "{stdout}"
    );
    assert!(stderr.contains("Đang nhập… 4/4"), "{stderr}");

    let out = run(&["network", "import", file_arg, "--db", db_arg]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("0 created, 0 updated, 4 unchanged"));

    std::fs::write(&file, format!("{HEADER}\n34500,Trạm,commune,primary,33,,public,,\n34501,Trạm,commune,primary,33,,state,,")).expect("write");
    let out = run(&["network", "import", file_arg, "--db", db_arg]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "dòng 3: hình thức sở hữu `state` không hợp lệ (public hoặc private) (line 3: unknown ownership `state`"
        ),
        "{stderr}"
    );

    // A spreadsheet's Windows-1258 file: refused, naming the line of the
    // first byte that is not UTF-8.
    let mut legacy =
        format!("{HEADER}\n34500,Trạm,commune,primary,33,,public,,\n34501,Tr").into_bytes();
    legacy.extend([0xE1, b'm']);
    legacy.extend(b",commune,primary,33,,public,,");
    std::fs::write(&file, legacy).expect("write");
    let out = run(&["network", "import", file_arg, "--db", db_arg]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("dòng 3")
            && stderr.contains("not UTF-8 text: the first bad byte is on line 3"),
        "{stderr}"
    );

    let out = run(&["network", "facilities", "--province", "33", "--db", db_arg]);
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        stdout.lines().count(),
        3,
        "34500 was not imported: {stdout}"
    );
    assert!(
        stdout.contains("34113\tkcb-34113\tTrạm Y tế xã Tam Quang"),
        "{stdout}"
    );
}

/// Two nodes on one PostgreSQL database: a suspension on one refuses the
/// facility's staff on the other within a second (LISTEN/NOTIFY).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suspension_reaches_the_other_node_within_a_second_on_postgres() {
    let Some(url) = postgres_database().await else {
        return;
    };
    let options = || RuntimeOptions {
        database_url: url.clone(),
        identity: IdentityOptions {
            issuer: Some("http://vth.test".into()),
            password_iterations: 1000,
            ..IdentityOptions::default()
        },
        ..RuntimeOptions::default()
    };
    let node1: Arc<Runtime> = Runtime::start(options()).await.expect("node 1");
    let node2: Arc<Runtime> = Runtime::start(options()).await.expect("node 2");
    assert!(node1.bus.is_shared() && node2.bus.is_shared());
    let csv = format!(
        "{HEADER}\n34001,Bệnh viện Đa khoa tỉnh Thái Bình,provincial,specialised,33,,public,,"
    );
    node1
        .network
        .import_csv(&csv, false, "test", &mut |_, _| {})
        .await
        .expect("import");
    // Node 2 learns of the import too.
    let deadline = Instant::now() + Duration::from_secs(1);
    while node2.hospitals.get("kcb-34001").is_none() {
        assert!(
            Instant::now() < deadline,
            "node 2 sees the import within a second"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    node1
        .network
        .set_facility_status(
            "34001",
            vtelehealth_runtime::directory::Status::Suspended,
            "test",
            Some("test"),
        )
        .await
        .expect("suspended");
    let started = Instant::now();
    while !node2.hospitals.is_suspended("kcb-34001") {
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "node 2 refuses within a second"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // And a vendor.
    node1
        .network
        .register_vendor(
            &NewVendor {
                id: "v-pg".into(),
                name: "V".into(),
                tax_code: "0100000001".into(),
                ..NewVendor::default()
            },
            "test",
        )
        .await
        .expect("vendor");
    node1
        .network
        .set_vendor_status(
            "v-pg",
            vtelehealth_runtime::directory::Status::Suspended,
            "test",
            None,
        )
        .await
        .expect("suspended");
    let started = Instant::now();
    while !node2.network.vendor_suspended("v-pg") {
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "within a second"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The ministry console's register screens in Chromium: a bad file shows
/// its lines and imports nothing, a good one is checked then applied, a
/// facility is suspended after a confirmation naming it, a vendor is
/// registered, and the network screen counts registered and connected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ministry_console_imports_suspends_and_registers_in_chromium() {
    use crate::plugin_pages::Console;
    use vtelehealth_tests::browser::{Browser, chromium};
    let Some(chromium) = chromium() else { return };
    let server = server().await;
    let mut u = NewUser::new(
        "bo.vanhanh",
        "Vận hành Bộ Y tế",
        Role::Operator,
        "password-1",
    );
    u.hospital_id = None;
    server
        .runtime
        .identity
        .create_user(u)
        .await
        .expect("operator");
    let shots = repo_root().join("target").join("page-screenshots");
    std::fs::create_dir_all(&shots).expect("dir");
    let mut c = Console {
        browser: Browser::launch(&chromium, "about:blank")
            .await
            .expect("chromium"),
        shots_dir: shots,
        base: server.base.clone(),
    };
    c.set_width(1280, false).await;
    // Vietnamese, the console's default.
    c.login("bo.vanhanh").await;
    c.mouse_click("#tab-facilities").await;
    c.wait(
        "!!document.getElementById('fac-import-file')",
        "the import form",
    )
    .await;
    let unlabelled = c
        .eval("[...document.querySelectorAll('input, select, textarea')].filter(i => !(i.labels && i.labels.length)).map(i => i.id)")
        .await;
    assert_eq!(unlabelled, json!([]), "every control labelled");

    let choose = |text: &str| {
        format!(
            "(() => {{ const dt = new DataTransfer(); dt.items.add(new File([{}], 'co-so.csv', {{ type: 'text/csv' }})); \
             document.getElementById('fac-import-file').files = dt.files; return true; }})()",
            serde_json::to_string(text).expect("js string")
        )
    };
    // A bad row: its line, and nothing imported.
    let bad = format!(
        "{HEADER}\n34500,Trạm,commune,primary,33,,public,,\n34501,Trạm,commune,primary,Thái Bình,,public,,"
    );
    c.eval(&choose(&bad)).await;
    c.mouse_click("#fac-import-check").await;
    let errors = c
        .wait("(() => { const e = document.getElementById('fac-import-errors'); return e && e.innerText; })()", "the bad rows")
        .await;
    assert!(
        errors.as_str().unwrap_or_default().contains("Dòng 3:"),
        "{errors}"
    );
    // In Vietnamese, as the rest of the screen.
    assert!(
        errors
            .as_str()
            .unwrap_or_default()
            .contains("Dòng 3: tỉnh `Thái Bình` không thuộc 34 tỉnh"),
        "{errors}"
    );
    assert!(server.runtime.hospitals.get("kcb-34500").is_none());

    // A good file: a dry run in words, then applied on confirmation.
    c.eval(&choose(&network_csv())).await;
    c.mouse_click("#fac-import-check").await;
    let summary = c
        .wait("(() => { const e = document.getElementById('fac-import-summary'); return e && e.innerText; })()", "the dry run")
        .await;
    assert!(
        summary.as_str().unwrap_or_default().contains("sẽ thêm 4"),
        "{summary}"
    );
    assert!(
        server.runtime.hospitals.get("kcb-34113").is_none(),
        "a dry run changes nothing"
    );
    c.screenshot("ministry-facilities-dry-run", 1280, false)
        .await;
    c.mouse_click("#fac-import-apply").await;
    let table = c
        .wait("(() => { const t = document.getElementById('facility-table'); return t && t.innerText.includes('Tam Quang') && t.innerText; })()", "the imported facilities")
        .await;
    let table = table.as_str().unwrap_or_default().to_owned();
    for shown in [
        "Trạm Y tế xã Tam Quang",
        "Ban đầu",
        "Chuyên sâu",
        "Hưng Yên",
        "Công lập",
        "Tư nhân",
        "Đang hoạt động",
    ] {
        assert!(table.contains(shown), "{shown}: {table}");
    }
    assert!(!table.contains("kcb-"), "names, not ids: {table}");

    // Suspend, after a confirmation naming the facility.
    c.mouse_click("button[data-facility='34113']").await;
    let ask = c
        .wait("(() => { const e = document.getElementById('fac-confirm'); return e && e.innerText; })()", "the confirmation")
        .await;
    assert!(
        ask.as_str()
            .unwrap_or_default()
            .contains("Đình chỉ Trạm Y tế xã Tam Quang?"),
        "{ask}"
    );
    c.type_into("#fac-confirm textarea", "Giấy phép hoạt động bị thu hồi")
        .await;
    c.mouse_click("#fac-confirm button[data-confirm]").await;
    c.wait("(() => { const m = document.querySelector('#messages .msg.ok'); return m && m.innerText.includes('Đã đình chỉ Trạm Y tế xã Tam Quang'); })()", "the suspension confirmed")
        .await;
    assert!(server.runtime.hospitals.is_suspended("kcb-34113"));
    c.screenshot("ministry-facilities", 1280, false).await;

    // A vendor, registered from the form.
    c.mouse_click("#tab-vendors").await;
    c.type_into("#vendor-name", "Công ty TNHH An Tâm").await;
    c.type_into("#vendor-id", "cong-ty-an-tam").await;
    c.type_into("#vendor-tax", "0109876543").await;
    c.type_into("#vendor-contact", "Nguyễn Văn An").await;
    c.mouse_click("#vendor-register").await;
    let vendors = c
        .wait("(() => { const t = document.getElementById('vendor-table'); return t && t.innerText.includes('An Tâm') && t.innerText; })()", "the vendor listed")
        .await;
    assert!(
        vendors.as_str().unwrap_or_default().contains("0109876543"),
        "{vendors}"
    );

    // The network screen: registered and connected per tier and province.
    c.mouse_click("#tab-network").await;
    let tiers = c
        .wait("(() => { const t = document.getElementById('register-tiers'); return t && t.innerText; })()", "the register's counts")
        .await;
    let tiers = tiers.as_str().unwrap_or_default();
    assert!(
        tiers.contains("Đã kết nối") && tiers.contains("Xã"),
        "{tiers}"
    );
    let provinces = c
        .eval("document.getElementById('register-provinces').innerText")
        .await;
    assert!(
        provinces.as_str().unwrap_or_default().contains("Hưng Yên"),
        "{provinces}"
    );
    c.screenshot("ministry-network-register", 1280, false).await;
}
