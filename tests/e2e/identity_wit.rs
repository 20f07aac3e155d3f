//! The `identity` WIT interface through the real HTTP server: a plugin
//! called with a real token sees the caller's subject, roles, own hospital
//! and (citizens only) citizen ID and health ID, and can look up hospitals
//! and practitioners of any hospital, but never a citizen.

use serde_json::{Value, json};
use tempfile::TempDir;
use vtelehealth_runtime::RuntimeOptions;
use vtelehealth_runtime::identity::{IdentityOptions, NewUser, Role, User};
use vtelehealth_tests::{TestServer, plugin_set, test_plugin_dir};

/// A server with the hostile test plugin and cheap password hashing.
async fn server() -> (TestServer, TempDir) {
    server_with_plugins(plugin_set(&test_plugin_dir(), &["hostile"])).await
}

/// A server serving the (unreviewed) plugins of `plugins` to every hospital.
async fn server_with_plugins(plugins: TempDir) -> (TestServer, TempDir) {
    let data = TempDir::new().expect("temp dir");
    let options = RuntimeOptions {
        database_url: format!("sqlite://{}", data.path().join("idwit.db").display()),
        plugin_dir: Some(plugins.path().to_path_buf()),
        cache_dir: Some(data.path().join("cache")),
        identity: IdentityOptions {
            password_iterations: 1_000,
            ..IdentityOptions::default()
        },
        ..RuntimeOptions::default()
    };
    (TestServer::start_with(options, data).await, plugins)
}

async fn practitioner(server: &TestServer, username: &str, hospital: &str) -> User {
    let mut u = NewUser::new(
        username,
        "BS. Trần Văn Minh",
        Role::Practitioner,
        "password-1",
    );
    u.hospital_id = Some(hospital.into());
    u.specialty = Some("Tim mạch".into());
    u.title = Some("BS.CKII".into());
    server
        .runtime
        .identity
        .create_user(u)
        .await
        .expect("practitioner")
}

async fn citizen(server: &TestServer) -> User {
    let mut u = NewUser::new(
        "001090000123",
        "Nguyễn Thị Lan",
        Role::Citizen,
        "password-1",
    );
    u.national_id = Some("001090000123".into());
    u.health_id = Some("0101111111".into());
    server
        .runtime
        .identity
        .create_user(u)
        .await
        .expect("citizen")
}

/// GET a hostile plugin path at `hospital`, with `user`'s token if any.
async fn call(server: &TestServer, user: Option<&User>, hospital: &str, path: &str) -> Value {
    let mut req = server
        .client
        .get(server.plugin_url(hospital, "hostile", path));
    if let Some(user) = user {
        let token = server.runtime.identity.token_for(user).expect("token");
        req = req.bearer_auth(token);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    assert_eq!(status, 200, "{path}: {body}");
    body
}

fn hospital_a() -> Value {
    json!({ "id": "bv-a", "name": "Bệnh viện A", "tier": "central", "province": "Hà Nội" })
}

fn hospital_b() -> Value {
    json!({ "id": "bv-b", "name": "Bệnh viện B", "tier": "district", "province": "Thái Bình" })
}

#[tokio::test]
async fn a_practitioner_sees_their_subject_roles_and_hospital() {
    let (server, _p) = server().await;
    let doctor = practitioner(&server, "bs.minh", "bv-b").await;
    let me = call(&server, Some(&doctor), "bv-b", "/whoami").await;
    assert_eq!(me["hospital"], hospital_b(), "{me}");
    assert_eq!(me["plugin_id"], "hostile");
    assert!(!me["request_id"].as_str().unwrap_or("").is_empty(), "{me}");
    assert_eq!(
        me["principal"],
        json!({
            "subject": doctor.id,
            "name": "BS. Trần Văn Minh",
            "roles": ["practitioner"],
            "hospital": hospital_b(),
            "national_id": null,
            "health_id": null,
        }),
        "{me}"
    );
    let checks = call(&server, Some(&doctor), "bv-b", "/lookup?role=practitioner").await;
    assert_eq!(checks["has_role"], true, "{checks}");
    let checks = call(&server, Some(&doctor), "bv-b", "/lookup?role=citizen").await;
    assert_eq!(checks["has_role"], false, "{checks}");
}

#[tokio::test]
async fn a_citizen_sees_their_citizen_id_and_health_id_and_no_hospital() {
    let (server, _p) = server().await;
    let lan = citizen(&server).await;
    let me = call(&server, Some(&lan), "bv-a", "/whoami").await;
    assert_eq!(me["hospital"], hospital_a(), "{me}");
    assert_eq!(
        me["principal"],
        json!({
            "subject": lan.id,
            "name": "Nguyễn Thị Lan",
            "roles": ["citizen"],
            "hospital": null,
            "national_id": "001090000123",
            "health_id": "0101111111",
        }),
        "{me}"
    );
    let checks = call(&server, Some(&lan), "bv-a", "/lookup?role=citizen").await;
    assert_eq!(checks["has_role"], true, "{checks}");
}

#[tokio::test]
async fn an_anonymous_call_has_no_principal_and_no_role() {
    let (server, _p) = server().await;
    let me = call(&server, None, "bv-a", "/whoami").await;
    assert_eq!(me["principal"], Value::Null, "{me}");
    assert_eq!(me["hospital"], hospital_a(), "{me}");
    let checks = call(&server, None, "bv-a", "/lookup?role=citizen").await;
    assert_eq!(checks["has_role"], false, "{checks}");
}

#[tokio::test]
async fn look_ups_reach_other_hospitals_but_never_citizens() {
    let (server, _p) = server().await;
    let caller = practitioner(&server, "bs.a", "bv-a").await;
    let consultant = practitioner(&server, "bs.b", "bv-b").await;
    let lan = citizen(&server).await;

    // A practitioner of another hospital, and that hospital.
    let found = call(
        &server,
        Some(&caller),
        "bv-a",
        &format!("/lookup?practitioner={}&hospital=bv-b", consultant.id),
    )
    .await;
    assert_eq!(
        found["practitioner"],
        json!({
            "id": consultant.id,
            "name": "BS. Trần Văn Minh",
            "hospital_id": "bv-b",
            "specialty": "Tim mạch",
            "title": "BS.CKII",
        }),
        "{found}"
    );
    assert_eq!(found["hospital"], hospital_b(), "{found}");

    // A citizen's subject is not a practitioner: nothing, for any caller.
    for who in [Some(&caller), Some(&lan), None] {
        let hidden = call(
            &server,
            who,
            "bv-a",
            &format!("/lookup?practitioner={}", lan.id),
        )
        .await;
        assert_eq!(hidden["practitioner"], Value::Null, "{hidden}");
    }

    // Unknown and absurd ids are just absent.
    let long = "x".repeat(10_000);
    let missing = call(
        &server,
        Some(&caller),
        "bv-a",
        &format!("/lookup?practitioner={long}&hospital={long}"),
    )
    .await;
    assert_eq!(missing["practitioner"], Value::Null, "{missing}");
    assert_eq!(missing["hospital"], Value::Null, "{missing}");
    let missing = call(
        &server,
        Some(&caller),
        "bv-a",
        "/lookup?practitioner=nobody&hospital=bv-zz",
    )
    .await;
    assert_eq!(missing["practitioner"], Value::Null, "{missing}");
    assert_eq!(missing["hospital"], Value::Null, "{missing}");
}

/// The hostile plugin's manifest without the `identity:national-ids` grant.
fn without_national_ids(manifest: &str) -> String {
    let narrowed = manifest.replace(", \"identity:national-ids\"", "");
    assert_ne!(
        narrowed, manifest,
        "the test plugin requests identity:national-ids"
    );
    narrowed
}

#[tokio::test]
async fn a_plugin_without_the_national_ids_grant_never_sees_a_citizens_ids() {
    let plugins = plugin_set(&test_plugin_dir(), &["hostile"]);
    let toml = plugins.path().join("hostile.toml");
    let manifest = std::fs::read_to_string(&toml).expect("manifest");
    std::fs::write(&toml, without_national_ids(&manifest)).expect("narrowed manifest");
    let (server, _p) = server_with_plugins(plugins).await;
    let lan = citizen(&server).await;
    let me = call(&server, Some(&lan), "bv-a", "/whoami").await;
    assert_eq!(me["principal"]["subject"], json!(lan.id), "{me}");
    assert_eq!(me["principal"]["roles"], json!(["citizen"]), "{me}");
    assert_eq!(me["principal"]["national_id"], Value::Null, "{me}");
    assert_eq!(me["principal"]["health_id"], Value::Null, "{me}");
}

#[tokio::test]
async fn reviewers_see_the_national_ids_grant_in_plain_words_and_can_withhold_it() {
    use vtelehealth_runtime::governance::bundle::Bundle;
    use vtelehealth_runtime::governance::registry::Decision;
    use vtelehealth_runtime::governance::signing::SigningKey;
    let no_dev_plugins = TempDir::new().expect("dir");
    let (server, _p) = server_with_plugins(no_dev_plugins).await;
    let rt = &server.runtime;
    let gov = &rt.governance;
    rt.identity
        .create_vendor("vtelehealth-tests", "Tests")
        .await
        .expect("vendor");
    let key = SigningKey::generate().expect("key");
    gov.registry
        .add_vendor_key(
            "test",
            "vtelehealth-tests",
            &key.key_id(),
            &key.public_key(),
        )
        .await
        .expect("vendor key");
    let (wasm, toml) = vtelehealth_tests::component(&test_plugin_dir(), "hostile");
    let mut bundle = Bundle::new(
        std::fs::read_to_string(toml).expect("manifest"),
        std::fs::read(wasm).expect("component"),
    );
    key.sign(&mut bundle);
    let (version, _) = gov
        .submit("test", "vtelehealth-tests", bundle)
        .await
        .unwrap_or_else(|e| panic!("submitted: {e:?}"));
    assert!(
        version.requested.contains(&"identity".to_owned())
            && version
                .requested
                .contains(&"identity:national-ids".to_owned()),
        "{:?}",
        version.requested
    );

    // The reviewer reads what the grant means, in plain words.
    let mut reviewer = NewUser::new("reviewer", "Reviewer", Role::Reviewer, "password-1");
    reviewer.hospital_id = None;
    let reviewer = rt.identity.create_user(reviewer).await.expect("reviewer");
    let token = rt.identity.token_for(&reviewer).expect("token");
    let view: Value = server
        .client
        .get(format!(
            "{}/api/v1/plugin-versions/{}",
            server.base, version.id
        ))
        .bearer_auth(&token)
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    let meaning = view["requested"]
        .as_array()
        .and_then(|r| {
            r.iter()
                .find(|c| c["capability"] == "identity:national-ids")
        })
        .map(|c| c["meaning"].as_str().unwrap_or_default().to_owned())
        .unwrap_or_default();
    assert!(
        meaning.contains("citizen ID (CCCD)") && meaning.contains("health insurance number (BHXH)"),
        "{view}"
    );

    // Approved with `identity` only: the plugin runs, without the ids.
    let granted: Vec<String> = version
        .requested
        .iter()
        .filter(|g| g.as_str() != "identity:national-ids")
        .cloned()
        .collect();
    gov.decide(
        "reviewer",
        &version.id,
        Decision::Approve {
            granted,
            note: "the module does not need citizens' ids".into(),
        },
    )
    .await
    .expect("approved");
    gov.rollout(
        "test",
        &version.id,
        &Default::default(),
        &rt.directory(),
        None,
    )
    .await
    .expect("rolled out");
    let lan = citizen(&server).await;
    let me = call(&server, Some(&lan), "bv-a", "/whoami").await;
    assert_eq!(me["principal"]["subject"], json!(lan.id), "{me}");
    assert_eq!(me["principal"]["national_id"], Value::Null, "{me}");
    assert_eq!(me["principal"]["health_id"], Value::Null, "{me}");
}

// ---- the practitioner directory's search (issue 14) ----

/// A user of `role` at `hospital` named `name`.
async fn staff(
    server: &TestServer,
    username: &str,
    name: &str,
    role: Role,
    hospital: &str,
    specialty: Option<&str>,
) -> User {
    let mut u = NewUser::new(username, name, role, "password-1");
    u.hospital_id = Some(hospital.into());
    u.specialty = specialty.map(Into::into);
    u.title = (role == Role::Practitioner).then(|| "BS.CKI".into());
    server.runtime.identity.create_user(u).await.expect("user")
}

/// The names a `/search` answer lists, in its order.
fn names(found: &Value) -> Vec<String> {
    found["practitioners"]
        .as_array()
        .unwrap_or_else(|| panic!("no practitioners: {found}"))
        .iter()
        .map(|p| p["name"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test]
async fn the_directory_finds_practitioners_by_name_without_tone_marks_and_by_specialty() {
    let (server, _p) = server().await;
    let lan = staff(
        &server,
        "bs.lan",
        "BS. Nguyễn Thị Lan",
        Role::Practitioner,
        "bv-a",
        Some("Tim mạch"),
    )
    .await;
    staff(
        &server,
        "bs.hung",
        "PGS.TS. Nguyễn Văn Hùng",
        Role::Practitioner,
        "bv-a",
        Some("Nội khoa"),
    )
    .await;
    staff(
        &server,
        "bs.minh",
        "BS. Trần Văn Minh",
        Role::Practitioner,
        "bv-a",
        Some("Tim mạch"),
    )
    .await;
    let admin = staff(
        &server,
        "qt.a",
        "Quản trị Nguyễn Văn Quân",
        Role::HospitalAdmin,
        "bv-a",
        None,
    )
    .await;
    staff(
        &server,
        "bs.other",
        "BS. Nguyễn Hữu Đức",
        Role::Practitioner,
        "bv-b",
        Some("Tim mạch"),
    )
    .await;
    // A citizen named alike is never found.
    let citizen = citizen(&server).await;

    // By name without tone marks or case, at the call's hospital: only practitioners.
    let found = call(
        &server,
        Some(&admin),
        "bv-a",
        "/search?q=NGUYEN&hospital=bv-a",
    )
    .await;
    assert_eq!(
        names(&found),
        ["BS. Nguyễn Thị Lan", "PGS.TS. Nguyễn Văn Hùng"],
        "{found}"
    );
    assert_eq!(
        found["practitioners"][0],
        json!({
            "id": lan.id, "name": "BS. Nguyễn Thị Lan", "hospital_id": "bv-a",
            "specialty": "Tim mạch", "title": "BS.CKI",
        }),
        "the practitioner record, nothing more"
    );
    // Every word must match; tone marks in the query are optional too.
    let found = call(&server, Some(&admin), "bv-a", "/search?q=nguyen%20lan").await;
    assert_eq!(names(&found), ["BS. Nguyễn Thị Lan"], "{found}");
    let found = call(&server, Some(&admin), "bv-a", "/search?q=H%C3%B9ng").await;
    assert_eq!(names(&found), ["PGS.TS. Nguyễn Văn Hùng"], "{found}");
    // By specialty, of one hospital or of the network (sorted by name).
    let found = call(
        &server,
        Some(&admin),
        "bv-a",
        "/search?hospital=bv-a&specialty=tim%20mach",
    )
    .await;
    assert_eq!(
        names(&found),
        ["BS. Nguyễn Thị Lan", "BS. Trần Văn Minh"],
        "{found}"
    );
    let found = call(&server, Some(&lan), "bv-a", "/search?specialty=TIM MACH").await;
    assert_eq!(
        names(&found),
        [
            "BS. Nguyễn Hữu Đức",
            "BS. Nguyễn Thị Lan",
            "BS. Trần Văn Minh"
        ],
        "{found}"
    );
    // Never a citizen, never a national identifier.
    let found = call(&server, Some(&admin), "bv-a", "/search?q=an").await;
    let text = found.to_string();
    assert!(
        !text.contains(&citizen.id)
            && !text.contains("001090000123")
            && !text.contains("0101111111"),
        "{found}"
    );
    assert!(!text.contains("national"), "{found}");
    // Wildcards are text.
    let found = call(&server, Some(&admin), "bv-a", "/search?q=%25").await;
    assert_eq!(names(&found), Vec::<String>::new(), "{found}");
    // A query too long is refused as invalid.
    let long = "a".repeat(201);
    let found = call(&server, Some(&admin), "bv-a", &format!("/search?q={long}")).await;
    assert_eq!(found["error"]["status"], 400, "{found}");
}

#[tokio::test]
async fn the_directory_is_bounded_to_fifty_and_to_the_limit() {
    let (server, _p) = server().await;
    let admin = staff(
        &server,
        "qt.a",
        "Quản trị A",
        Role::HospitalAdmin,
        "bv-a",
        None,
    )
    .await;
    for i in 0..55 {
        staff(
            &server,
            &format!("bs.{i}"),
            &format!("BS. Lê Văn {i:02}"),
            Role::Practitioner,
            "bv-a",
            Some("Nhi"),
        )
        .await;
    }
    let found = call(&server, Some(&admin), "bv-a", "/search?q=le&limit=1000").await;
    assert_eq!(names(&found).len(), 50, "never more than 50");
    assert_eq!(names(&found)[0], "BS. Lê Văn 00");
    let found = call(&server, Some(&admin), "bv-a", "/search?q=le&limit=3").await;
    assert_eq!(
        names(&found),
        ["BS. Lê Văn 00", "BS. Lê Văn 01", "BS. Lê Văn 02"]
    );
    let found = call(&server, Some(&admin), "bv-a", "/search?limit=0").await;
    assert_eq!(names(&found), Vec::<String>::new());
    // The hospitals, by tier.
    let all = call(&server, Some(&admin), "bv-a", "/hospitals").await;
    assert_eq!(
        all["hospitals"],
        json!([hospital_a(), hospital_b()]),
        "{all}"
    );
    let district = call(&server, Some(&admin), "bv-a", "/hospitals?tier=district").await;
    assert_eq!(district["hospitals"], json!([hospital_b()]), "{district}");
}

#[tokio::test]
async fn another_hospitals_staff_only_when_allowed_and_never_for_anonymous_callers() {
    let plugins = plugin_set(&test_plugin_dir(), &["hostile"]);
    let (server, _p) = server_with_plugins(plugins).await;
    server
        .runtime
        .hospitals
        .upsert(vtelehealth_runtime::directory::Hospital {
            id: "bv-c".into(),
            name: "Bệnh viện C".into(),
            tier: vtelehealth_runtime::directory::Tier::Commune,
            province: "Thái Bình".into(),
            ..Default::default()
        })
        .await
        .expect("hospital");
    let here = staff(
        &server,
        "bs.a",
        "BS. Nguyễn A",
        Role::Practitioner,
        "bv-a",
        None,
    )
    .await;
    let there = staff(
        &server,
        "bs.b",
        "BS. Nguyễn B",
        Role::Practitioner,
        "bv-b",
        None,
    )
    .await;
    staff(
        &server,
        "bs.c",
        "BS. Nguyễn C",
        Role::Practitioner,
        "bv-c",
        None,
    )
    .await;
    let admin_b = staff(
        &server,
        "qt.b",
        "Quản trị B",
        Role::HospitalAdmin,
        "bv-b",
        None,
    )
    .await;
    let lan = citizen(&server).await;
    let refused = |v: &Value| v["error"]["status"] == 403 && v["practitioners"].is_null();

    // The call's hospital's staff: any hospital, or the whole network.
    let found = call(
        &server,
        Some(&here),
        "bv-a",
        "/search?q=nguyen&hospital=bv-b",
    )
    .await;
    assert_eq!(names(&found), ["BS. Nguyễn B"], "{found}");
    let found = call(&server, Some(&here), "bv-a", "/search?q=nguyen").await;
    assert_eq!(
        names(&found),
        ["BS. Nguyễn A", "BS. Nguyễn B", "BS. Nguyễn C"],
        "{found}"
    );
    // Anonymous callers, citizens and another hospital's staff of a plugin that does not
    // serve the network: refused.
    for who in [None, Some(&lan), Some(&there), Some(&admin_b)] {
        for q in ["/search?q=nguyen", "/search?q=nguyen&hospital=bv-a"] {
            let v = call(&server, who, "bv-a", q).await;
            assert!(refused(&v), "{q}: {v}");
        }
    }

    // A network plugin: another hospital's practitioner finds the call's hospital's
    // practitioners and their own, nobody else's, and not the whole network.
    let plugins = plugin_set(&test_plugin_dir(), &["hostile"]);
    let toml = plugins.path().join("hostile.toml");
    let manifest = std::fs::read_to_string(&toml).expect("manifest");
    let network = manifest.replacen(
        "kind = \"workflow\"",
        "kind = \"workflow\"\nnetwork = true",
        1,
    );
    assert_ne!(network, manifest);
    std::fs::write(&toml, network).expect("network manifest");
    let (server, _p) = server_with_plugins(plugins).await;
    server
        .runtime
        .hospitals
        .upsert(vtelehealth_runtime::directory::Hospital {
            id: "bv-c".into(),
            name: "Bệnh viện C".into(),
            tier: vtelehealth_runtime::directory::Tier::Commune,
            province: "Thái Bình".into(),
            ..Default::default()
        })
        .await
        .expect("hospital");
    staff(
        &server,
        "bs.a",
        "BS. Nguyễn A",
        Role::Practitioner,
        "bv-a",
        None,
    )
    .await;
    let there = staff(
        &server,
        "bs.b",
        "BS. Nguyễn B",
        Role::Practitioner,
        "bv-b",
        None,
    )
    .await;
    staff(
        &server,
        "bs.c",
        "BS. Nguyễn C",
        Role::Practitioner,
        "bv-c",
        None,
    )
    .await;
    let admin_b = staff(
        &server,
        "qt.b",
        "Quản trị B",
        Role::HospitalAdmin,
        "bv-b",
        None,
    )
    .await;
    let found = call(
        &server,
        Some(&there),
        "bv-a",
        "/search?q=nguyen&hospital=bv-a",
    )
    .await;
    assert_eq!(names(&found), ["BS. Nguyễn A"], "{found}");
    let found = call(
        &server,
        Some(&there),
        "bv-a",
        "/search?q=nguyen&hospital=bv-b",
    )
    .await;
    assert_eq!(names(&found), ["BS. Nguyễn B"], "{found}");
    for q in ["/search?q=nguyen&hospital=bv-c", "/search?q=nguyen"] {
        let v = call(&server, Some(&there), "bv-a", q).await;
        assert!(refused(&v), "{q}: {v}");
    }
    // Only practitioners travel the network: another hospital's admin is refused.
    let v = call(
        &server,
        Some(&admin_b),
        "bv-a",
        "/search?q=nguyen&hospital=bv-a",
    )
    .await;
    assert!(refused(&v), "{v}");
    let v = call(&server, None, "bv-a", "/search?q=nguyen&hospital=bv-a").await;
    assert!(refused(&v), "{v}");
}

#[tokio::test]
async fn practitioners_stored_before_the_directory_are_found_once_identity_starts() {
    let (server, _p) = server().await;
    let admin = staff(
        &server,
        "qt.a",
        "Quản trị A",
        Role::HospitalAdmin,
        "bv-a",
        None,
    )
    .await;
    let lan = staff(
        &server,
        "bs.lan",
        "BS. Nguyễn Thị Lan",
        Role::Practitioner,
        "bv-a",
        Some("Tim mạch"),
    )
    .await;
    // As stored before migration 0013: no folded copies.
    sqlx::query(
        "UPDATE identity_users SET name_folded = NULL, specialty_folded = NULL WHERE id = $1",
    )
    .bind(&lan.id)
    .execute(&server.runtime.db.pool)
    .await
    .expect("unfolded");
    let found = call(&server, Some(&admin), "bv-a", "/search?q=nguyen").await;
    assert_eq!(names(&found), Vec::<String>::new(), "{found}");
    // A node starting its identity service fills them.
    vtelehealth_runtime::identity::IdentityService::new(
        server.runtime.db.clone(),
        IdentityOptions {
            password_iterations: 1_000,
            ..IdentityOptions::default()
        },
    )
    .await
    .expect("identity service");
    let found = call(
        &server,
        Some(&admin),
        "bv-a",
        "/search?q=nguyen&specialty=tim%20mach",
    )
    .await;
    assert_eq!(names(&found), ["BS. Nguyễn Thị Lan"], "{found}");
}
