//! Staff, invitations, service clients and the practitioner directory
//! through the real HTTP server on SQLite (docs/identity.md): a hospital
//! admin invites a doctor who sets a password and signs in; who may grant
//! what; suspension; CSV import; client rotation and revocation; the
//! directory without national identifiers.

use aws_lc_rs::digest;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde_json::{Value, json};
use tempfile::TempDir;
use vtelehealth_runtime::RuntimeOptions;
use vtelehealth_runtime::identity::{IdentityOptions, NewUser, Role};
use vtelehealth_tests::TestServer;
use vtelehealth_tests::common::{send, send_as};

const REDIRECT: &str = "http://127.0.0.1:9/callback";
const DOCTOR_CCCD: &str = "001090000555";
const DOCTOR_LICENCE: &str = "001234/BYT-GPHN";

/// A server with cheap password hashing and a browser client for logins.
async fn server() -> TestServer {
    let data = TempDir::new().expect("temp dir");
    let options = RuntimeOptions {
        database_url: format!("sqlite://{}", data.path().join("staff.db").display()),
        plugin_dir: None,
        cache_dir: Some(data.path().join("cache")),
        identity: IdentityOptions {
            password_iterations: 1_000,
            ..IdentityOptions::default()
        },
        ..RuntimeOptions::default()
    };
    let server = TestServer::start_with(options, data).await;
    server
        .runtime
        .identity
        .register_public_client("test-web", "Test web", &[REDIRECT])
        .await
        .expect("client");
    server
}

/// A directory user's token.
async fn token(server: &TestServer, username: &str, role: Role, hospital: Option<&str>) -> String {
    let mut u = NewUser::new(username, &format!("Tên {username}"), role, "password-1");
    u.hospital_id = hospital.map(Into::into);
    if role == Role::Citizen {
        u.national_id = Some("001099000001".into());
    }
    let id = &server.runtime.identity;
    if role == Role::VendorUser {
        id.create_vendor("vtelehealth-demo", "VTelehealth Demo Vendor")
            .await
            .expect("vendor");
        u.vendor_id = Some("vtelehealth-demo".into());
    }
    let user = id.create_user(u).await.expect("user");
    id.token_for(&user).expect("token")
}

fn doctor() -> Value {
    json!({
        "username": "bs.lan",
        "display_name": "BS. Nguyễn Thị Lan",
        "national_id": DOCTOR_CCCD,
        "licence_number": DOCTOR_LICENCE,
        "specialties": ["cardiology", "internal-medicine"],
        "roles": ["practitioner"],
        "email": "lan@bv-a.example.vn"
    })
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

/// Sign in through the built-in provider's form and redeem the code: the
/// status of the form post and, on success, the token response.
async fn sign_in(server: &TestServer, username: &str, password: &str) -> (u16, Option<Value>) {
    let mut random = [0u8; 24];
    aws_lc_rs::rand::fill(&mut random).expect("random");
    let verifier = format!("{}-verifier-with-enough-entropy", B64.encode(random));
    let challenge = B64.encode(digest::digest(&digest::SHA256, verifier.as_bytes()).as_ref());
    let resp = no_redirects()
        .post(format!("{}/oidc/authorize", server.base))
        .form(&[
            ("response_type", "code"),
            ("client_id", "test-web"),
            ("redirect_uri", REDIRECT),
            ("scope", "openid"),
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
            ("username", username),
            ("password", password),
        ])
        .send()
        .await
        .expect("request");
    let status = resp.status().as_u16();
    let Some(location) = resp
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
    else {
        return (status, None);
    };
    let code = location
        .split("code=")
        .nth(1)
        .and_then(|r| r.split('&').next())
        .unwrap_or_default()
        .to_owned();
    let (s, tokens) = token_request(
        server,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("client_id", "test-web"),
            ("redirect_uri", REDIRECT),
            ("code_verifier", &verifier),
        ],
    )
    .await;
    assert_eq!(s, 200, "{tokens}");
    (status, Some(tokens))
}

async fn token_request(server: &TestServer, form: &[(&str, &str)]) -> (u16, Value) {
    let resp = server
        .client
        .post(format!("{}/oidc/token", server.base))
        .form(form)
        .send()
        .await
        .expect("request");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// The status and text of a page.
async fn page(server: &TestServer, url: &str, form: Option<&[(&str, &str)]>) -> (u16, String) {
    let req = match form {
        Some(f) => server.client.post(url).form(f),
        None => server.client.get(url),
    };
    let resp = req.send().await.expect("request");
    (
        resp.status().as_u16(),
        resp.text().await.unwrap_or_default(),
    )
}

fn in_error_shape(body: &Value) -> bool {
    ["code", "message", "message_vi"]
        .iter()
        .all(|k| body["error"][*k].as_str().is_some_and(|s| !s.is_empty()))
}

/// Invite `body` at bv-a as `admin` and set the password through the link.
async fn invited(server: &TestServer, admin: &str, body: Value, password: &str) -> Value {
    let (s, created) = send(
        server,
        "POST",
        "/api/v1/hospitals/bv-a/staff",
        admin,
        Some(body),
        &[],
    )
    .await;
    assert_eq!(s, 201, "{created}");
    let url = created["invitation"]["url"]
        .as_str()
        .expect("url")
        .to_owned();
    let (s, html) = page(
        server,
        &url,
        Some(&[("password", password), ("password_confirm", password)]),
    )
    .await;
    assert_eq!(s, 200, "{html}");
    created["user"].clone()
}

async fn audited(server: &TestServer, action: &str) -> Vec<Value> {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let operator = token(server, &format!("auditor.{n}"), Role::Operator, None).await;
    let (s, body) = send(
        server,
        "GET",
        &format!("/api/v1/audit?action={action}"),
        &operator,
        None,
        &[],
    )
    .await;
    assert_eq!(s, 200, "{body}");
    body["entries"].as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_invites_a_doctor_who_sets_a_password_and_signs_in() {
    let server = server().await;
    let admin = token(&server, "qt.a", Role::HospitalAdmin, Some("bv-a")).await;

    let (s, list) = send_as(&server, "GET", "/api/v1/specialties", None, None, &[]).await;
    assert_eq!(s, 200);
    assert!(
        list["specialties"].as_array().is_some_and(|l| l.len() >= 30
            && l.iter()
                .any(|x| x["code"] == "cardiology" && x["name_vi"] == "Tim mạch")),
        "{list}"
    );

    let (s, created) = send(
        &server,
        "POST",
        "/api/v1/hospitals/bv-a/staff",
        &admin,
        Some(doctor()),
        &[],
    )
    .await;
    assert_eq!(s, 201, "{created}");
    let url = created["invitation"]["url"]
        .as_str()
        .expect("url")
        .to_owned();
    assert!(
        url.starts_with(&format!("{}/invite/", server.base)),
        "{url}"
    );
    let expires = created["invitation"]["expires_at"]
        .as_i64()
        .expect("expires");
    let in_72h = (chrono_now_ms() + 72 * 3600 * 1000 - expires).abs();
    assert!(in_72h < 60_000, "valid 72 h: {created}");
    assert_eq!(created["user"]["roles"], json!(["practitioner"]));
    assert_eq!(created["user"]["specialties"][0]["name_vi"], "Tim mạch");
    assert_eq!(created["user"]["invitation_pending"], true);

    // The list names people; the CCCD is masked, never whole.
    let (s, staff) = send(
        &server,
        "GET",
        "/api/v1/hospitals/bv-a/staff",
        &admin,
        None,
        &[],
    )
    .await;
    assert_eq!(s, 200, "{staff}");
    let lan = staff["staff"]
        .as_array()
        .and_then(|l| l.iter().find(|m| m["username"] == "bs.lan").cloned())
        .expect("listed");
    assert_eq!(lan["national_id_masked"], "001******555");
    assert_eq!(lan["licence_number"], DOCTOR_LICENCE);
    assert!(!staff.to_string().contains(DOCTOR_CCCD), "{staff}");

    // No password yet: no sign-in.
    assert_eq!(sign_in(&server, "bs.lan", "mat-khau-moi-1").await.0, 401);

    // The page names the person and the hospital, Vietnamese first.
    let (s, html) = page(&server, &url, None).await;
    assert_eq!(s, 200);
    assert!(
        html.contains("BS. Nguyễn Thị Lan") && html.contains("Bệnh viện A"),
        "{html}"
    );
    assert!(html.find("Đặt mật khẩu") < html.find("Set your"), "{html}");
    // Two different passwords: the form again, nothing spent.
    let (s, html) = page(
        &server,
        &url,
        Some(&[
            ("password", "mat-khau-moi-1"),
            ("password_confirm", "khac-hẳn-123"),
        ]),
    )
    .await;
    assert_eq!(s, 422, "{html}");
    let (s, html) = page(
        &server,
        &url,
        Some(&[
            ("password", "mat-khau-moi-1"),
            ("password_confirm", "mat-khau-moi-1"),
        ]),
    )
    .await;
    assert_eq!(s, 200, "{html}");
    assert!(html.contains("/console/"), "{html}");
    // Once only; an unknown link is another page.
    let (s, html) = page(&server, &url, None).await;
    assert_eq!(s, 410, "{html}");
    assert!(
        html.contains("hết hạn") || html.contains("đã được dùng"),
        "{html}"
    );
    let (s, _) = page(
        &server,
        &format!("{}/invite/not-a-token", server.base),
        None,
    )
    .await;
    assert_eq!(s, 404);

    // The doctor signs in with the built-in provider.
    let (s, tokens) = sign_in(&server, "bs.lan", "mat-khau-moi-1").await;
    assert_eq!(s, 303);
    let access = tokens.expect("tokens")["access_token"]
        .as_str()
        .expect("token")
        .to_owned();
    let (s, me) = send(&server, "GET", "/api/v1/me", &access, None, &[]).await;
    assert_eq!(s, 200, "{me}");
    assert_eq!(me["principal"]["roles"], json!(["practitioner"]));
    assert_eq!(me["principal"]["hospital_id"], "bv-a");
    assert!(me["principal"]["national_id"].is_null(), "{me}");

    let (_, staff) = send(
        &server,
        "GET",
        "/api/v1/hospitals/bv-a/staff",
        &admin,
        None,
        &[],
    )
    .await;
    let lan = staff["staff"]
        .as_array()
        .and_then(|l| l.iter().find(|m| m["username"] == "bs.lan").cloned())
        .expect("listed");
    assert_eq!(lan["invitation_pending"], false);
    assert!(lan["last_login"].as_i64().is_some(), "{lan}");

    // A re-issued link replaces the first only while no password is set.
    let id = lan["id"].as_str().expect("id");
    let (s, body) = send(
        &server,
        "POST",
        &format!("/api/v1/hospitals/bv-a/staff/{id}/invitation"),
        &admin,
        None,
        &[],
    )
    .await;
    assert_eq!(s, 409, "{body}");
    assert!(!audited(&server, "identity.staff_created").await.is_empty());
    assert!(
        !audited(&server, "identity.invitation_accepted")
            .await
            .is_empty()
    );
}

fn chrono_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admins_grant_staff_roles_only_and_only_at_their_hospital() {
    let server = server().await;
    let admin_a = token(&server, "qt.a", Role::HospitalAdmin, Some("bv-a")).await;
    let practitioner = token(&server, "bs.a", Role::Practitioner, Some("bv-a")).await;
    let operator = token(&server, "vanhanh", Role::Operator, None).await;
    let path = "/api/v1/hospitals/bv-a/staff";
    let with = |changes: Value| {
        let mut body = doctor();
        for (k, v) in changes.as_object().cloned().unwrap_or_default() {
            body[k] = v;
        }
        body
    };

    // Roles outside the hospital's: refused, audited, nothing created.
    for roles in [
        json!(["operator"]),
        json!(["practitioner", "reviewer"]),
        json!(["vendor-user"]),
        json!(["citizen"]),
    ] {
        let (s, body) = send(
            &server,
            "POST",
            path,
            &admin_a,
            Some(with(json!({ "roles": roles }))),
            &[],
        )
        .await;
        assert_eq!(s, 403, "{roles}: {body}");
        assert!(
            in_error_shape(&body)
                && body["error"]["message"]
                    .as_str()
                    .unwrap_or("")
                    .contains("may grant only"),
            "{body}"
        );
    }
    assert!(
        server
            .runtime
            .identity
            .user_by_username("bs.lan")
            .await
            .expect("db")
            .is_none()
    );

    // Bad input: 422 in the error shape; taken values: 409.
    for (changes, why) in [
        (json!({ "national_id": "12345" }), "CCCD"),
        (json!({ "licence_number": "ABC" }), "licence"),
        (json!({ "licence_number": null }), "licence"),
        (json!({ "specialties": ["astrology"] }), "specialty"),
        (json!({ "username": "A B" }), "username"),
        (json!({ "roles": [] }), "roles"),
    ] {
        let (s, body) = send(
            &server,
            "POST",
            path,
            &admin_a,
            Some(with(changes.clone())),
            &[],
        )
        .await;
        assert_eq!(s, 422, "{why} {changes}: {body}");
        assert!(in_error_shape(&body), "{body}");
    }
    let (s, created) = send(&server, "POST", path, &admin_a, Some(doctor()), &[]).await;
    assert_eq!(s, 201, "{created}");
    for changes in [
        json!({ "national_id": "001090000556" }),
        json!({ "username": "bs.lan2", "licence_number": "009999/HNO-CCHN" }),
        json!({ "username": "bs.lan3", "national_id": "001090000557", "licence_number": DOCTOR_LICENCE.to_lowercase() }),
    ] {
        let (s, body) = send(
            &server,
            "POST",
            path,
            &admin_a,
            Some(with(changes.clone())),
            &[],
        )
        .await;
        assert_eq!(s, 409, "{changes}: {body}");
    }

    // Another hospital's admin, a practitioner: refused; the first audited.
    let admin_b = token(&server, "qt.b", Role::HospitalAdmin, Some("bv-b")).await;
    let (s, _) = send(&server, "GET", path, &admin_b, None, &[]).await;
    assert_eq!(s, 403);
    let (s, body) = send(
        &server,
        "POST",
        path,
        &admin_b,
        Some(with(json!({ "username": "x.y" }))),
        &[],
    )
    .await;
    assert_eq!(s, 403, "{body}");
    let (s, _) = send(
        &server,
        "POST",
        path,
        &practitioner,
        Some(with(json!({ "username": "x.z" }))),
        &[],
    )
    .await;
    assert_eq!(s, 403);
    let denied = audited(&server, "access.denied").await;
    assert!(
        denied.iter().any(|e| e["target"] == "hospital:bv-a"),
        "{denied:?}"
    );

    // Editing: specialties, a second role; never a role of the platform's.
    let id = created["user"]["id"].as_str().expect("id").to_owned();
    let (s, body) = send(
        &server,
        "PATCH",
        &format!("{path}/{id}"),
        &admin_a,
        Some(json!({ "specialties": ["pediatrics"], "roles": ["practitioner", "pharmacist"], "display_name": "BS. Nguyễn Thị Lan (Nhi)" })),
        &[],
    )
    .await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["user"]["roles"], json!(["practitioner", "pharmacist"]));
    assert_eq!(body["user"]["specialties"][0]["name_vi"], "Nhi khoa");
    let (s, _) = send(
        &server,
        "PATCH",
        &format!("{path}/{id}"),
        &admin_a,
        Some(json!({ "roles": ["operator"] })),
        &[],
    )
    .await;
    assert_eq!(s, 403);
    let (s, _) = send(
        &server,
        "PATCH",
        &format!("/api/v1/hospitals/bv-b/staff/{id}"),
        &admin_b,
        Some(json!({ "display_name": "X" })),
        &[],
    )
    .await;
    assert_eq!(s, 404, "not bv-b's");

    // An operator makes a hospital's first admin, and only that.
    let first = json!({ "username": "qt.b2", "display_name": "Quản trị B", "national_id": "034090000777", "roles": ["hospital-admin"] });
    let (s, body) = send(&server, "POST", path, &operator, Some(first.clone()), &[]).await;
    assert_eq!(s, 403, "bv-a has an admin: {body}");
    let (s, body) = send(&server, "POST", "/api/v1/hospitals/bv-b/staff", &operator, Some(with(json!({ "username": "bs.b9", "national_id": "034090000778", "licence_number": "000009/TBH-CCHN" }))), &[]).await;
    assert_eq!(s, 403, "{body}");
    // bv-b's only admin is suspended by nobody; make a third hospital-less case:
    // suspend qt.b's account so bv-b has no active admin.
    let qt_b = server
        .runtime
        .identity
        .user_by_username("qt.b")
        .await
        .expect("db")
        .expect("qt.b");
    server
        .runtime
        .identity
        .set_suspended(&qt_b.id, true)
        .await
        .expect("suspended");
    let (s, body) = send(
        &server,
        "POST",
        "/api/v1/hospitals/bv-b/staff",
        &operator,
        Some(first.clone()),
        &[],
    )
    .await;
    assert_eq!(s, 201, "{body}");
    assert_eq!(body["user"]["roles"], json!(["hospital-admin"]));
    let again = json!({ "username": "qt.b3", "display_name": "Quản trị B", "national_id": "034090000779", "roles": ["hospital-admin"] });
    let (s, _) = send(
        &server,
        "POST",
        "/api/v1/hospitals/bv-b/staff",
        &operator,
        Some(again),
        &[],
    )
    .await;
    assert_eq!(s, 403, "only the first");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspension_blocks_sign_in_refresh_and_tokens() {
    let server = server().await;
    let admin = token(&server, "qt.a", Role::HospitalAdmin, Some("bv-a")).await;
    let user = invited(&server, &admin, doctor(), "mat-khau-moi-1").await;
    let id = user["id"].as_str().expect("id").to_owned();
    let (s, tokens) = sign_in(&server, "bs.lan", "mat-khau-moi-1").await;
    assert_eq!(s, 303);
    let tokens = tokens.expect("tokens");
    let access = tokens["access_token"].as_str().expect("access").to_owned();
    let refresh = tokens["refresh_token"]
        .as_str()
        .expect("refresh")
        .to_owned();
    assert_eq!(
        send(&server, "GET", "/api/v1/me", &access, None, &[])
            .await
            .0,
        200
    );

    let base = "/api/v1/hospitals/bv-a/staff";
    let (s, body) = send(
        &server,
        "POST",
        &format!("{base}/{id}/suspend"),
        &admin,
        None,
        &[],
    )
    .await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["user"]["status"], "suspended");
    // The access token (cached since its first use) is refused at once.
    let (s, body) = send(&server, "GET", "/api/v1/me", &access, None, &[]).await;
    assert_eq!(s, 401, "{body}");
    let (s, body) = token_request(
        &server,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &refresh),
            ("client_id", "test-web"),
        ],
    )
    .await;
    assert_eq!(
        (s, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
    assert_eq!(sign_in(&server, "bs.lan", "mat-khau-moi-1").await.0, 401);

    // Reactivated: signs in again; the old session stays revoked.
    let (s, body) = send(
        &server,
        "POST",
        &format!("{base}/{id}/reactivate"),
        &admin,
        None,
        &[],
    )
    .await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(sign_in(&server, "bs.lan", "mat-khau-moi-1").await.0, 303);
    let (s, _) = token_request(
        &server,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &refresh),
            ("client_id", "test-web"),
        ],
    )
    .await;
    assert_eq!(s, 400);

    // Not oneself; not another hospital's member.
    let me = server
        .runtime
        .identity
        .user_by_username("qt.a")
        .await
        .expect("db")
        .expect("admin");
    let (s, _) = send(
        &server,
        "POST",
        &format!("{base}/{}/suspend", me.id),
        &admin,
        None,
        &[],
    )
    .await;
    assert_eq!(s, 409);
    let admin_b = token(&server, "qt.b", Role::HospitalAdmin, Some("bv-b")).await;
    let (s, _) = send(
        &server,
        "POST",
        &format!("/api/v1/hospitals/bv-b/staff/{id}/suspend"),
        &admin_b,
        None,
        &[],
    )
    .await;
    assert_eq!(s, 404);
    let (s, _) = send(
        &server,
        "POST",
        &format!("{base}/{id}/suspend"),
        &admin_b,
        None,
        &[],
    )
    .await;
    assert_eq!(s, 403);
    assert!(
        !audited(&server, "identity.staff_suspended")
            .await
            .is_empty()
    );
}

async fn import(server: &TestServer, admin: &str, csv: &str, dry_run: bool) -> (u16, Value) {
    let resp = server
        .client
        .post(format!(
            "{}/api/v1/hospitals/bv-a/staff/import?dry_run={dry_run}",
            server.base
        ))
        .bearer_auth(admin)
        .header("content-type", "text/csv; charset=utf-8")
        .body(csv.to_owned())
        .send()
        .await
        .expect("sent");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_csv_import_is_all_or_nothing_with_numbered_lines() {
    let server = server().await;
    let admin = token(&server, "qt.a", Role::HospitalAdmin, Some("bv-a")).await;
    let header = "username,display_name,national_id,licence_number,specialties,roles,email\n";
    let good = "bs.mot,BS. Trần Văn Một,001090000101,000101/BYT-GPHN,cardiology;radiology,practitioner,mot@bv-a.vn\n\
                ds.hai,\"DS. Lê Thị Hai, dược\",001090000102,000102/HNO-CCHN,clinical-pharmacy,pharmacist;hospital-admin,\n";
    let bad = format!(
        "{header}{good}bs.ba,BS. Ba,12345,000103/BYT-GPHN,cardiology,practitioner,\nbs.mot,BS. Một nữa,001090000104,000104/BYT-GPHN,,practitioner,\n"
    );
    let count = |body: &Value| body["staff"].as_array().map(Vec::len).unwrap_or(0);
    let before = count(
        &send(
            &server,
            "GET",
            "/api/v1/hospitals/bv-a/staff",
            &admin,
            None,
            &[],
        )
        .await
        .1,
    );

    let (s, body) = import(&server, &admin, &bad, false).await;
    assert_eq!(s, 422, "{body}");
    assert!(in_error_shape(&body), "{body}");
    let lines: Vec<i64> = body["error"]["lines"]
        .as_array()
        .expect("lines")
        .iter()
        .filter_map(|l| l["line"].as_i64())
        .collect();
    assert_eq!(lines, vec![4, 5], "{body}");
    let after = count(
        &send(
            &server,
            "GET",
            "/api/v1/hospitals/bv-a/staff",
            &admin,
            None,
            &[],
        )
        .await
        .1,
    );
    assert_eq!(before, after, "nothing applied");

    // A role no hospital admin grants: refused whatever the other lines.
    let (s, body) = import(
        &server,
        &admin,
        &format!("{header}bs.bon,BS. Bốn,001090000105,000105/BYT-GPHN,,operator,\n"),
        false,
    )
    .await;
    assert_eq!(s, 403, "{body}");

    let (s, body) = import(&server, &admin, &format!("{header}{good}"), true).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["dry_run"], true);
    assert_eq!(body["accounts"].as_array().map(Vec::len), Some(2), "{body}");
    assert!(
        server
            .runtime
            .identity
            .user_by_username("bs.mot")
            .await
            .expect("db")
            .is_none(),
        "a dry run creates nothing"
    );

    let (s, body) = import(&server, &admin, &format!("{header}{good}"), false).await;
    assert_eq!(s, 201, "{body}");
    let created = body["created"].as_array().expect("created");
    assert_eq!(created.len(), 2);
    assert!(
        created.iter().all(|c| c["invitation"]["url"]
            .as_str()
            .is_some_and(|u| u.contains("/invite/"))),
        "{body}"
    );
    assert_eq!(created[1]["user"]["display_name"], "DS. Lê Thị Hai, dược");
    assert_eq!(
        created[1]["user"]["roles"],
        json!(["pharmacist", "hospital-admin"])
    );
    // The same file again: every line taken, nothing applied.
    let (s, body) = import(&server, &admin, &format!("{header}{good}"), false).await;
    assert_eq!(s, 422, "{body}");
}

async fn client_token(server: &TestServer, id: &str, secret: &str) -> (u16, Value) {
    let resp = server
        .client
        .post(format!("{}/oidc/token", server.base))
        .basic_auth(id, Some(secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .expect("request");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_clients_rotate_with_an_overlap_and_are_revoked() {
    let server = server().await;
    let admin = token(&server, "qt.a", Role::HospitalAdmin, Some("bv-a")).await;
    let base = "/api/v1/hospitals/bv-a/clients";
    for bad in [
        json!({ "name": "", "kind": "his" }),
        json!({ "name": "X", "kind": "erp" }),
        json!({ "name": "X", "kind": "his", "scope": "BAD SCOPE!" }),
    ] {
        let (s, body) = send(&server, "POST", base, &admin, Some(bad.clone()), &[]).await;
        assert_eq!(s, 422, "{bad}: {body}");
    }
    let (s, created) = send(
        &server,
        "POST",
        base,
        &admin,
        Some(json!({ "name": "HIS Bệnh viện A", "kind": "his", "scope": "service fhir" })),
        &[],
    )
    .await;
    assert_eq!(s, 201, "{created}");
    let id = created["client_id"].as_str().expect("id").to_owned();
    let first = created["client_secret"]
        .as_str()
        .expect("secret")
        .to_owned();

    let (s, t) = client_token(&server, &id, &first).await;
    assert_eq!(s, 200, "{t}");
    let old_token = t["access_token"].as_str().expect("token").to_owned();
    let (s, me) = send(&server, "GET", "/api/v1/me", &old_token, None, &[]).await;
    assert_eq!(s, 200);
    assert_eq!(me["principal"]["roles"], json!(["service"]));
    let (_, list) = send(&server, "GET", base, &admin, None, &[]).await;
    let listed = list["clients"]
        .as_array()
        .and_then(|l| l.iter().find(|c| c["client_id"] == id.as_str()).cloned())
        .expect("listed");
    assert_eq!(listed["kind"], "his");
    assert!(listed["last_used_at"].as_i64().is_some(), "{listed}");
    assert!(
        !list.to_string().contains(&first),
        "the secret is never listed"
    );

    // Rotation: both secrets work during the grace.
    let (s, body) = send(
        &server,
        "POST",
        &format!("{base}/{id}/rotate"),
        &admin,
        Some(json!({ "grace_secs": 40 * 24 * 3600 })),
        &[],
    )
    .await;
    assert_eq!(s, 422, "at most 30 days: {body}");
    let (s, rotated) = send(
        &server,
        "POST",
        &format!("{base}/{id}/rotate"),
        &admin,
        Some(json!({ "grace_secs": 3600 })),
        &[],
    )
    .await;
    assert_eq!(s, 200, "{rotated}");
    let second = rotated["client_secret"]
        .as_str()
        .expect("secret")
        .to_owned();
    assert_ne!(first, second);
    assert_eq!(
        client_token(&server, &id, &first).await.0,
        200,
        "old secret during the grace"
    );
    assert_eq!(
        client_token(&server, &id, &second).await.0,
        200,
        "new secret"
    );
    // A rotation without grace: the previous secret stops at once.
    let (s, rotated) = send(
        &server,
        "POST",
        &format!("{base}/{id}/rotate"),
        &admin,
        Some(json!({ "grace_secs": 0 })),
        &[],
    )
    .await;
    assert_eq!(s, 200, "{rotated}");
    let third = rotated["client_secret"]
        .as_str()
        .expect("secret")
        .to_owned();
    assert_eq!(client_token(&server, &id, &second).await.0, 401);
    assert_eq!(client_token(&server, &id, &first).await.0, 401);
    let (s, t) = client_token(&server, &id, &third).await;
    assert_eq!(s, 200, "{t}");

    // Revoked: no new token, and issued tokens are refused.
    let (s, body) = send(
        &server,
        "POST",
        &format!("{base}/{id}/revoke"),
        &admin,
        None,
        &[],
    )
    .await;
    assert_eq!(s, 200, "{body}");
    assert!(body["client"]["revoked_at"].as_i64().is_some(), "{body}");
    assert_eq!(
        send(&server, "GET", "/api/v1/me", &old_token, None, &[])
            .await
            .0,
        401
    );
    assert_eq!(client_token(&server, &id, &third).await.0, 401);
    let (s, _) = send(
        &server,
        "POST",
        &format!("{base}/{id}/rotate"),
        &admin,
        None,
        &[],
    )
    .await;
    assert_eq!(s, 409);

    // Another hospital's admin sees none of it.
    let admin_b = token(&server, "qt.b", Role::HospitalAdmin, Some("bv-b")).await;
    assert_eq!(send(&server, "GET", base, &admin_b, None, &[]).await.0, 403);
    assert_eq!(
        send(
            &server,
            "POST",
            &format!("/api/v1/hospitals/bv-b/clients/{id}/revoke"),
            &admin_b,
            None,
            &[]
        )
        .await
        .0,
        404
    );
    assert!(!audited(&server, "identity.client_rotated").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_directory_finds_practitioners_and_hides_national_ids() {
    let server = server().await;
    let admin = token(&server, "qt.a", Role::HospitalAdmin, Some("bv-a")).await;
    invited(&server, &admin, doctor(), "mat-khau-moi-1").await;
    let citizen = token(&server, "001099000001", Role::Citizen, None).await;
    let search = |q: &str| format!("/api/v1/practitioners?{q}");

    let (s, body) = send(
        &server,
        "GET",
        &search("q=nguyen%20lan"),
        &citizen,
        None,
        &[],
    )
    .await;
    assert_eq!(s, 200, "{body}");
    let found = body["practitioners"].as_array().expect("list");
    assert_eq!(found.len(), 1, "{body}");
    assert_eq!(found[0]["display_name"], "BS. Nguyễn Thị Lan");
    assert_eq!(found[0]["hospital"]["name"], "Bệnh viện A");
    assert_eq!(found[0]["hospital"]["tier"], "central");
    assert_eq!(found[0]["specialties"][0]["name_vi"], "Tim mạch");
    let text = body.to_string();
    assert!(
        !text.contains(DOCTOR_CCCD) && !text.contains(DOCTOR_LICENCE) && !text.contains("national"),
        "{text}"
    );

    for (q, n) in [
        ("specialty=cardiology", 1),
        ("specialty=tim%20mach", 1),
        ("specialty=pediatrics", 0),
        ("tier=central", 1),
        ("tier=district", 0),
        ("province=ha%20noi", 1),
        ("facility=bv-b", 0),
        ("q=lan&offset=1", 0),
    ] {
        let (s, body) = send(&server, "GET", &search(q), &citizen, None, &[]).await;
        assert_eq!(s, 200, "{q}: {body}");
        assert_eq!(
            body["practitioners"].as_array().map(Vec::len),
            Some(n),
            "{q}: {body}"
        );
    }
    let (s, body) = send(
        &server,
        "GET",
        &search("tier=galactic"),
        &citizen,
        None,
        &[],
    )
    .await;
    assert_eq!(s, 400, "{body}");

    // Suspended practitioners leave the directory.
    let lan = server
        .runtime
        .identity
        .user_by_username("bs.lan")
        .await
        .expect("db")
        .expect("lan");
    server
        .runtime
        .identity
        .set_suspended(&lan.id, true)
        .await
        .expect("suspend");
    let (_, body) = send(&server, "GET", &search("q=lan"), &citizen, None, &[]).await;
    assert_eq!(
        body["practitioners"].as_array().map(Vec::len),
        Some(0),
        "{body}"
    );

    let vendor = token(&server, "dev.x", Role::VendorUser, None).await;
    assert_eq!(
        send(&server, "GET", &search("q=lan"), &vendor, None, &[])
            .await
            .0,
        403
    );
    assert_eq!(
        send_as(&server, "GET", &search("q=lan"), None, None, &[])
            .await
            .0,
        401
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vendor_admins_invite_colleagues_of_their_own_vendor() {
    let server = server().await;
    let id = &server.runtime.identity;
    id.create_vendor("vtelehealth-demo", "VTelehealth Demo Vendor")
        .await
        .expect("vendor");
    id.create_vendor("globex", "Globex Health")
        .await
        .expect("vendor");
    let operator = token(&server, "vanhanh", Role::Operator, None).await;
    let path = "/api/v1/vendors/vtelehealth-demo/users";
    let (s, body) = send(&server, "POST", path, &operator, Some(json!({ "username": "dev.lead", "display_name": "Trưởng nhóm", "email": "lead@demo.vn", "admin": false })), &[]).await;
    assert_eq!(s, 403, "an operator invites the first admin only: {body}");
    let (s, body) = send(&server, "POST", path, &operator, Some(json!({ "username": "dev.lead", "display_name": "Trưởng nhóm", "email": "lead@demo.vn", "admin": true })), &[]).await;
    assert_eq!(s, 201, "{body}");
    let url = body["invitation"]["url"].as_str().expect("url").to_owned();
    let (s, html) = page(&server, &url, None).await;
    assert_eq!(s, 200);
    assert!(html.contains("VTelehealth Demo Vendor"), "{html}");
    let (s, _) = page(
        &server,
        &url,
        Some(&[
            ("password", "mat-khau-nha-cc"),
            ("password_confirm", "mat-khau-nha-cc"),
        ]),
    )
    .await;
    assert_eq!(s, 200);
    let (s, tokens) = sign_in(&server, "dev.lead", "mat-khau-nha-cc").await;
    assert_eq!(s, 303);
    let lead = tokens.expect("tokens")["access_token"]
        .as_str()
        .expect("token")
        .to_owned();

    let (s, body) = send(&server, "POST", path, &lead, Some(json!({ "username": "dev.two", "display_name": "Lập trình viên", "email": "two@demo.vn", "admin": false })), &[]).await;
    assert_eq!(s, 201, "{body}");
    let (s, body) = send(&server, "GET", path, &lead, None, &[]).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["users"].as_array().map(Vec::len), Some(2), "{body}");
    // Another vendor's, a colleague who is no admin: refused.
    let (s, _) = send(
        &server,
        "POST",
        "/api/v1/vendors/globex/users",
        &lead,
        Some(json!({ "username": "x.y", "display_name": "X", "admin": false })),
        &[],
    )
    .await;
    assert_eq!(s, 403);
    let (s, _) = send(
        &server,
        "GET",
        "/api/v1/vendors/globex/users",
        &lead,
        None,
        &[],
    )
    .await;
    assert_eq!(s, 403);
    let plain = token(&server, "dev.plain", Role::VendorUser, None).await;
    let (s, _) = send(
        &server,
        "POST",
        path,
        &plain,
        Some(json!({ "username": "x.z", "display_name": "X", "admin": false })),
        &[],
    )
    .await;
    assert_eq!(s, 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_is_bootstrapped_with_an_invitation() {
    let server = server().await;
    let id = &server.runtime.identity;
    let (user, invitation) = id
        .add_operator("vanhanh.1", "Vận hành 1", "cli")
        .await
        .expect("invited");
    assert_eq!(user.roles, vec![Role::Operator]);
    let (s, html) = page(&server, &invitation.url, None).await;
    assert_eq!(s, 200);
    assert!(html.contains("Vận hành 1"), "{html}");
    let (s, _) = page(
        &server,
        &invitation.url,
        Some(&[
            ("password", "mat-khau-van-hanh"),
            ("password_confirm", "mat-khau-van-hanh"),
        ]),
    )
    .await;
    assert_eq!(s, 200);
    let (s, tokens) = sign_in(&server, "vanhanh.1", "mat-khau-van-hanh").await;
    assert_eq!(s, 303);
    let access = tokens.expect("tokens")["access_token"]
        .as_str()
        .expect("token")
        .to_owned();
    let (_, me) = send(&server, "GET", "/api/v1/me", &access, None, &[]).await;
    assert_eq!(me["principal"]["roles"], json!(["operator"]));
}

/// A hospital admin adds a doctor in the console's staff tab by clicking
/// and typing, and is shown the invitation link once; the doctor's link
/// then sets the password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hospital_admin_adds_a_doctor_in_the_console_in_chromium() {
    use crate::plugin_pages::Console;
    use vtelehealth_tests::browser::{Browser, chromium};
    let Some(chromium) = chromium() else { return };
    let server = server().await;
    let mut u = NewUser::new(
        "qt.console",
        "Quản trị Bệnh viện A",
        Role::HospitalAdmin,
        "password-1",
    );
    u.hospital_id = Some("bv-a".into());
    server.runtime.identity.create_user(u).await.expect("admin");
    let shots = vtelehealth_tests::repo_root()
        .join("target")
        .join("console-screenshots");
    std::fs::create_dir_all(&shots).expect("screenshot dir");
    let mut c = Console {
        browser: Browser::launch(&chromium, "about:blank")
            .await
            .expect("chromium"),
        shots_dir: shots,
        base: server.base.clone(),
    };
    c.set_width(1280, false).await;
    c.login("qt.console").await;
    c.mouse_click("#tab-staff").await;
    c.wait(
        "document.getElementById('main').dataset.view === 'staff' && !document.querySelector('main[aria-busy]') && !!document.getElementById('staff-username')",
        "the staff view",
    )
    .await;
    c.mouse_click("#staff-username").await;
    c.type_into("#staff-username", "bs.hoa").await;
    c.type_into("#staff-name", "BS. Phạm Thị Hoa").await;
    c.type_into("#staff-cccd", "001090000888").await;
    c.type_into("#staff-licence", "004321/BYT-GPHN").await;
    // Two specialties picked with the mouse in the list (Ctrl for the second).
    c.mouse_click("#staff-specialties option[value=cardiology]")
        .await;
    let chosen = c
        .eval("[...document.getElementById('staff-specialties').selectedOptions].map(o => o.value)")
        .await;
    assert_eq!(chosen, json!(["cardiology"]), "picked by clicking");
    c.mouse_click("#staff-add-submit").await;
    let link = c
        .wait(
            "(() => { const o = document.getElementById('invitation-link'); return o && o.textContent; })()",
            "the invitation link",
        )
        .await;
    let link = link.as_str().unwrap_or_default().to_owned();
    assert!(
        link.starts_with(&format!("{}/invite/", server.base)),
        "{link}"
    );
    let text = c.eval("document.body.innerText").await;
    let text = text.as_str().unwrap_or_default();
    assert!(
        text.contains("BS. Phạm Thị Hoa") && text.contains("Tim mạch"),
        "{text}"
    );
    assert!(text.contains("Chưa nhận lời mời"), "{text}");
    assert!(!text.contains("001090000888"), "no CCCD on screen: {text}");
    assert!(!text.contains("u-0"), "no ids on screen: {text}");
    assert!(
        c.eval("!!document.querySelector('[data-copy=invitation-link]')")
            .await
            == json!(true)
    );
    c.screenshot("staff-invitation", 1280, false).await;

    // The doctor opens the link and sets a password with the keyboard.
    c.browser
        .call("Page.navigate", json!({ "url": link }))
        .await
        .expect("navigate");
    c.wait(
        "!!document.querySelector('input[name=password_confirm]')",
        "the invitation form",
    )
    .await;
    assert!(
        c.eval("document.body.innerText.includes('Bệnh viện A')")
            .await
            == json!(true),
        "the hospital by name"
    );
    c.type_into("input[name=password]", "mat-khau-cua-hoa")
        .await;
    c.type_into("input[name=password_confirm]", "mat-khau-cua-hoa")
        .await;
    c.press_enter().await;
    c.wait("!!document.getElementById('done')", "the done page")
        .await;
    c.browser.kill().await;
    assert_eq!(sign_in(&server, "bs.hoa", "mat-khau-cua-hoa").await.0, 303);
}

/// A POST as `token` with its response headers.
async fn post_raw(
    server: &TestServer,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> reqwest::Response {
    let mut req = server
        .client
        .post(format!("{}{path}", server.base))
        .bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    req.send().await.expect("request")
}

fn no_store(resp: &reqwest::Response) -> bool {
    resp.headers()
        .get("cache-control")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("no-store"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_reissues_admin_links_only_while_bootstrapping() {
    let server = server().await;
    let operator = token(&server, "vanhanh", Role::Operator, None).await;
    let first = json!({ "username": "qt.b", "display_name": "Quản trị B", "national_id": "034090000777", "roles": ["hospital-admin"] });
    let resp = post_raw(
        &server,
        "/api/v1/hospitals/bv-b/staff",
        &operator,
        Some(first),
    )
    .await;
    assert_eq!(resp.status(), 201);
    assert!(no_store(&resp), "an invitation link is not cached");
    let created: Value = resp.json().await.expect("json");
    let id = created["user"]["id"].as_str().expect("id").to_owned();
    let reissue = format!("/api/v1/hospitals/bv-b/staff/{id}/invitation");

    // Nobody has taken charge of bv-b yet: the operator may send a new link.
    let resp = post_raw(&server, &reissue, &operator, None).await;
    assert_eq!(resp.status(), 200);
    assert!(no_store(&resp));

    // Once an admin of bv-b signs in with a password, they do it.
    let admin_b = token(&server, "qt.b.chinh", Role::HospitalAdmin, Some("bv-b")).await;
    let resp = post_raw(&server, &reissue, &operator, None).await;
    assert_eq!(resp.status(), 403);
    let body: Value = resp.json().await.expect("json");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("has a hospital admin who has signed in")),
        "{body}"
    );
    let resp = post_raw(&server, &reissue, &admin_b, None).await;
    assert_eq!(resp.status(), 200);
    let url = resp.json::<Value>().await.expect("json")["invitation"]["url"]
        .as_str()
        .expect("url")
        .to_owned();

    // A mangled form is answered with a page, not JSON.
    let resp = server
        .client
        .post(&url)
        .header("content-type", "text/plain")
        .body("password")
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status(), 400);
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(content_type.starts_with("text/html"), "{content_type}");
    let html = resp.text().await.unwrap_or_default();
    assert!(
        html.contains("Không đọc được biểu mẫu") && html.contains("The form sent is not valid"),
        "{html}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_linked_to_an_external_identity_gets_no_new_link() {
    let server = server().await;
    let admin = token(&server, "qt.a", Role::HospitalAdmin, Some("bv-a")).await;
    let resp = post_raw(
        &server,
        "/api/v1/hospitals/bv-a/staff",
        &admin,
        Some(doctor()),
    )
    .await;
    assert_eq!(resp.status(), 201);
    let created: Value = resp.json().await.expect("json");
    let id = created["user"]["id"].as_str().expect("id").to_owned();
    sqlx::query(
        "INSERT INTO external_identities (issuer, subject, user_id, linked_at, last_login_at) \
         VALUES ('https://idp.bv-a.example', 'sub-1', $1, 0, 0)",
    )
    .bind(&id)
    .execute(&server.runtime.db.pool)
    .await
    .expect("link");
    let (s, body) = send(
        &server,
        "POST",
        &format!("/api/v1/hospitals/bv-a/staff/{id}/invitation"),
        &admin,
        None,
        &[],
    )
    .await;
    assert_eq!(s, 409, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("external identity provider")),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_admin_is_checked_again_inside_the_write() {
    let server = server().await;
    // An admin appears between the API's check and the write.
    token(&server, "qt.b", Role::HospitalAdmin, Some("bv-b")).await;
    let new = vtelehealth_runtime::identity::staff::NewStaff {
        username: "qt.b2".into(),
        display_name: "Quản trị B".into(),
        national_id: "034090000777".into(),
        roles: vec!["hospital-admin".into()],
        ..Default::default()
    };
    let made = server
        .runtime
        .identity
        .create_staff(
            "bv-b",
            &new,
            "operator",
            vtelehealth_runtime::identity::staff::Creation::FirstAdmin,
        )
        .await;
    assert!(
        matches!(
            made,
            Err(vtelehealth_runtime::identity::staff::StaffError::Forbidden(
                _
            ))
        ),
        "{made:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn practitioners_of_a_suspended_facility_leave_the_directory() {
    let server = server().await;
    let admin = token(&server, "qt.a", Role::HospitalAdmin, Some("bv-a")).await;
    invited(&server, &admin, doctor(), "mat-khau-moi-1").await;
    let citizen = token(&server, "001099000001", Role::Citizen, None).await;
    let found = |body: &Value| body["practitioners"].as_array().map(Vec::len);
    let (s, body) = send(
        &server,
        "GET",
        "/api/v1/practitioners?q=lan",
        &citizen,
        None,
        &[],
    )
    .await;
    assert_eq!((s, found(&body)), (200, Some(1)), "{body}");
    sqlx::query("UPDATE hospitals SET status = 'suspended' WHERE id = 'bv-a'")
        .execute(&server.runtime.db.pool)
        .await
        .expect("suspend the facility");
    for q in ["q=lan", "q=lan&tier=central", "q=lan&province=ha%20noi"] {
        let (s, body) = send(
            &server,
            "GET",
            &format!("/api/v1/practitioners?{q}"),
            &citizen,
            None,
            &[],
        )
        .await;
        assert_eq!((s, found(&body)), (200, Some(0)), "{q}: {body}");
    }
}
