//! People are matched as a `PersonRef` (issuer and subject; the user id for
//! the platform's own users), never by bare `sub`: a trusted external
//! issuer's token whose `sub` equals a local user's id is another person
//! in video rooms, imaging shares, plugin frames, what plugins see of the
//! caller (and so the data they key by it), payments and `/me` routes.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tempfile::TempDir;
use vtelehealth_runtime::RuntimeOptions;
use vtelehealth_runtime::identity::{IdentityOptions, NewUser, Role, TrustedIssuer, User};
use vtelehealth_tests::{TestServer, plugin_set, test_plugin_dir};

use vtelehealth_tests::common::{patient_with_lab, send};

/// `iss` of the external issuer.
const ISSUER: &str = "https://vneid.test";
const AUDIENCE: &str = "vtelehealth-national";

/// A trusted external issuer on loopback: one P-256 key and its JWKS.
struct External {
    pkcs8: Vec<u8>,
    jwks_url: String,
}

impl External {
    async fn start() -> Self {
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
                .expect("key")
                .as_ref()
                .to_vec();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &pkcs8).expect("key");
        let point = pair.public_key().as_ref();
        let jwks = json!({ "keys": [{ "kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig",
            "kid": "ext-1", "x": B64.encode(&point[1..33]), "y": B64.encode(&point[33..65]) }] });
        let app = axum::Router::new().route(
            "/jwks",
            axum::routing::get(move || {
                let jwks = jwks.clone();
                async move { axum::Json(jwks) }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            pkcs8,
            jwks_url: format!("http://{addr}/jwks"),
        }
    }

    /// Trusted for citizens and for the practitioners of both test hospitals.
    fn trusted(&self) -> TrustedIssuer {
        let mut t = TrustedIssuer::new(ISSUER, AUDIENCE, &self.jwks_url);
        t.allowed_roles = vec![Role::Citizen, Role::Practitioner];
        t.hospitals = vec!["bv-a".into(), "bv-b".into()];
        t
    }

    /// Trusted for citizens and social-insurance assessors (a network-wide
    /// role, so bound to no hospital).
    fn trusted_for_assessors(&self) -> TrustedIssuer {
        let mut t = TrustedIssuer::new(ISSUER, AUDIENCE, &self.jwks_url);
        t.allowed_roles = vec![Role::Citizen, Role::Assessor];
        t
    }

    /// A token of this issuer for `sub` with `roles` (and a hospital).
    fn token(&self, sub: &str, roles: &[&str], hospital: Option<&str>) -> String {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let mut claims = json!({
            "iss": ISSUER, "aud": AUDIENCE, "sub": sub, "name": "Người ngoài",
            "roles": roles, "iat": t, "nbf": t, "exp": t + 300,
        });
        if let Some(h) = hospital {
            claims["hospital_id"] = json!(h);
        }
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some("ext-1".into());
        jsonwebtoken::encode(&header, &claims, &EncodingKey::from_ec_der(&self.pkcs8))
            .expect("sign")
    }
}

/// A server trusting `ext`, with the plugins in `plugins` (none when `None`).
async fn server(ext: &External, plugins: Option<TempDir>) -> (TestServer, TempDir) {
    server_trusting(ext.trusted(), plugins).await
}

/// A server trusting `issuer`, with the plugins in `plugins`.
async fn server_trusting(issuer: TrustedIssuer, plugins: Option<TempDir>) -> (TestServer, TempDir) {
    let plugins = plugins.unwrap_or_else(|| TempDir::new().expect("dir"));
    let data = TempDir::new().expect("dir");
    let options = RuntimeOptions {
        database_url: format!("sqlite://{}", data.path().join("person.db").display()),
        plugin_dir: Some(plugins.path().to_path_buf()),
        cache_dir: Some(data.path().join("cache")),
        identity: IdentityOptions {
            password_iterations: 1_000,
            trusted_issuers: vec![issuer],
            ..IdentityOptions::default()
        },
        // The e-pharmacy test pays through the development sandbox.
        payment_sandbox: true,
        ..RuntimeOptions::default()
    };
    (TestServer::start_with(options, data).await, plugins)
}

/// A local user and their token.
async fn local(server: &TestServer, user: NewUser) -> (User, String) {
    let id = &server.runtime.identity;
    let user = id.create_user(user).await.expect("user");
    let token = id.token_for(&user).expect("token");
    (user, token)
}

fn new_user(name: &str, role: Role, hospital: Option<&str>) -> NewUser {
    let mut u = NewUser::new(name, name, role, "password-1");
    u.hospital_id = hospital.map(Into::into);
    u
}

#[tokio::test]
async fn an_external_sub_equal_to_a_local_user_id_cannot_chair_their_room() {
    let ext = External::start().await;
    let (s, _p) = server(&ext, None).await;
    let (chair, chair_token) =
        local(&s, new_user("bs.chair", Role::Practitioner, Some("bv-a"))).await;
    let (guest, _) = local(&s, new_user("bs.guest", Role::Practitioner, Some("bv-a"))).await;
    let (st, room) = send(
        &s,
        "POST",
        "/api/v1/video/rooms",
        &chair_token,
        Some(json!({ "purpose": "hội chẩn" })),
        &[],
    )
    .await;
    assert_eq!(st, 201, "{room}");
    let id = room["id"].as_str().expect("id").to_owned();
    let chair_pid = room["chair_participant_id"]
        .as_str()
        .expect("chair")
        .to_owned();

    // Same `sub` as the chair, same hospital and role, another issuer.
    let twin = ext.token(&chair.id, &["practitioner"], Some("bv-a"));
    let room_path = |rest: &str| format!("/api/v1/video/rooms/{id}{rest}");
    for (method, path, body) in [
        ("POST", room_path("/end"), None),
        (
            "POST",
            room_path("/invitations"),
            Some(json!({ "subject": guest.id, "role": "participant" })),
        ),
        (
            "POST",
            room_path(&format!("/participants/{chair_pid}/admit")),
            None,
        ),
        (
            "POST",
            room_path(&format!("/participants/{chair_pid}/remove")),
            None,
        ),
        ("POST", room_path("/token"), None),
        ("GET", room_path("/participants"), None),
    ] {
        let (st, b) = send(&s, method, &path, &twin, body, &[]).await;
        assert_eq!(st, 403, "{method} {path}: {b}");
        assert!(b["error"]["message"].is_string(), "{b}");
    }
    // Nothing changed: the room is open and the real chair still ends it.
    let (st, b) = send(
        &s,
        "GET",
        &room_path("/participants"),
        &chair_token,
        None,
        &[],
    )
    .await;
    assert_eq!(st, 200, "{b}");
    assert_eq!(b["participants"].as_array().map(Vec::len), Some(1), "{b}");
    assert_ne!(b["room"]["status"], "ended", "{b}");
    let (st, b) = send(&s, "POST", &room_path("/end"), &chair_token, None, &[]).await;
    assert_eq!((st, &b["status"]), (200, &json!("ended")), "{b}");

    // The external practitioner chairs a room of their own, as themselves.
    let (st, own) = send(
        &s,
        "POST",
        "/api/v1/video/rooms",
        &twin,
        Some(json!({ "purpose": "của mình" })),
        &[],
    )
    .await;
    assert_eq!(st, 201, "{own}");
    let own_id = own["id"].as_str().expect("id");
    let (st, b) = send(
        &s,
        "GET",
        &format!("/api/v1/video/rooms/{own_id}/participants"),
        &twin,
        None,
        &[],
    )
    .await;
    assert_eq!(st, 200, "{b}");
    assert_eq!(
        b["participants"][0]["subject"],
        json!(format!("{ISSUER}#{}", chair.id)),
        "{b}"
    );
    // ... which the local user with that id does not chair.
    let (st, _) = send(
        &s,
        "POST",
        &format!("/api/v1/video/rooms/{own_id}/end"),
        &chair_token,
        None,
        &[],
    )
    .await;
    assert_eq!(st, 403);
    let (st, b) = send(
        &s,
        "POST",
        &format!("/api/v1/video/rooms/{own_id}/token"),
        &twin,
        None,
        &[],
    )
    .await;
    assert_eq!(st, 200, "the external chair joins their own room: {b}");
    // `/api/v1/me` names the person the platform keys them as.
    let (st, me) = send(&s, "GET", "/api/v1/me", &twin, None, &[]).await;
    assert_eq!(st, 200, "{me}");
    assert_eq!(me["person"], json!(format!("{ISSUER}#{}", chair.id)));
    let (_, me) = send(&s, "GET", "/api/v1/me", &chair_token, None, &[]).await;
    assert_eq!(me["person"], json!(chair.id));
}

#[tokio::test]
async fn an_external_sub_equal_to_an_assessors_id_cannot_read_their_imaging_share() {
    let ext = External::start().await;
    let (s, _p) = server_trusting(ext.trusted_for_assessors(), None).await;
    let (_, doctor) = local(&s, new_user("bs.a", Role::Practitioner, Some("bv-a"))).await;
    let (assessor, assessor_token) = local(&s, new_user("gd.x", Role::Assessor, None)).await;
    let (_, study, report) =
        crate::imaging_share::imaging_records(&s, &doctor, Some("0101234567"), None).await;
    let (st, share) = send(
        &s,
        "POST",
        "/api/v1/hospitals/bv-a/imaging-shares",
        &doctor,
        Some(crate::imaging_share::share_body(
            "HS-2026-000777",
            &assessor.id,
            &report,
            &study,
        )),
        &[],
    )
    .await;
    assert_eq!(st, 201, "{share}");
    let share_path = format!(
        "/api/v1/imaging-shares/{}",
        share["id"].as_str().expect("id")
    );

    let twin = ext.token(&assessor.id, &["assessor"], None);
    let (st, b) = send(&s, "GET", &share_path, &twin, None, &[]).await;
    assert_eq!(st, 403, "{b}");
    let (st, b) = send(&s, "GET", "/api/v1/imaging-shares", &twin, None, &[]).await;
    assert_eq!((st, &b["shares"]), (200, &json!([])), "{b}");
    // The refusal is audited under the external person, not the assessor.
    let denied = s
        .runtime
        .governance
        .audit
        .list(&vtelehealth_runtime::governance::audit::AuditFilter {
            action_prefix: Some("imaging_share.access_denied".into()),
            ..Default::default()
        })
        .await
        .expect("audit");
    assert_eq!(
        denied.iter().map(|e| e.actor.as_str()).collect::<Vec<_>>(),
        [format!("{ISSUER}#{}", assessor.id)]
    );
    // The assessor themselves still reads and lists it.
    assert_eq!(
        send(&s, "GET", &share_path, &assessor_token, None, &[])
            .await
            .0,
        200
    );
    let (_, b) = send(
        &s,
        "GET",
        "/api/v1/imaging-shares",
        &assessor_token,
        None,
        &[],
    )
    .await;
    assert_eq!(b["shares"].as_array().map(Vec::len), Some(1), "{b}");
}

/// GET `url` (a plugin path or a frame URL) with an optional bearer token.
async fn get(s: &TestServer, url: &str, token: Option<&str>) -> (u16, Value) {
    let mut req = s.client.get(url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.expect("sent");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn plugins_and_frame_tickets_see_an_external_sub_as_issuer_and_subject() {
    let ext = External::start().await;
    let plugins = plugin_set(&test_plugin_dir(), &["hostile"]);
    let (s, _p) = server(&ext, Some(plugins)).await;
    let mut lan = new_user("cd-lan", Role::Citizen, None);
    lan.national_id = Some("001090000123".into());
    let (citizen, citizen_token) = local(&s, lan).await;
    let twin = ext.token(&citizen.id, &["citizen"], None);
    let whoami = s.plugin_url("bv-a", "hostile", "/whoami");

    let (st, b) = get(&s, &whoami, Some(&citizen_token)).await;
    assert_eq!(
        (st, &b["principal"]["subject"]),
        (200, &json!(citizen.id)),
        "{b}"
    );
    let (st, b) = get(&s, &whoami, Some(&twin)).await;
    let external = format!("{ISSUER}#{}", citizen.id);
    assert_eq!(
        (st, &b["principal"]["subject"]),
        (200, &json!(external)),
        "{b}"
    );

    // Through the console's frame ticket: the same person, and the ticket's
    // own `sub` says so.
    let (st, b) = send(
        &s,
        "POST",
        "/api/v1/console/plugin-frames",
        &twin,
        Some(json!({ "hospital": "bv-a", "plugin": "hostile" })),
        &[],
    )
    .await;
    assert_eq!(st, 200, "{b}");
    let url = b["url"].as_str().expect("url").to_owned();
    let ticket = url
        .trim_start_matches("/console/frame/")
        .trim_end_matches('/');
    let claims: Value = serde_json::from_slice(
        &B64.decode(ticket.split('.').nth(1).expect("a JWT"))
            .expect("base64url"),
    )
    .expect("claims");
    assert_eq!(claims["sub"], json!(external), "{claims}");
    let (st, b) = get(&s, &format!("{}{url}whoami", s.base), None).await;
    assert_eq!(
        (st, &b["principal"]["subject"]),
        (200, &json!(external)),
        "{b}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_external_sub_equal_to_a_citizens_id_sees_none_of_their_orders_or_payments() {
    let ext = External::start().await;
    let (s, _p) = server(&ext, None).await;
    crate::epharmacy::activate(
        &s,
        json!({ "pharmacies": [
            { "id": "pk-long-chau", "name": "Nhà thuốc Long Châu", "prices": { "J01CA04": 12_000 } }
        ] }),
    )
    .await;
    let doctor =
        vtelehealth_tests::common::user(&s, "dr-ph", Role::Practitioner, Some("bv-a")).await;
    let citizen_token = vtelehealth_tests::common::user(&s, "cd-1", Role::Citizen, None).await;
    let citizen = s
        .runtime
        .identity
        .user_by_username("cd-1")
        .await
        .expect("directory")
        .expect("cd-1");
    let (patient, _) = patient_with_lab(&s, &doctor).await;
    let mr = crate::epharmacy::prescribe(&s, &doctor, &patient, "J01CA04", 2).await;
    let orders = "/hospitals/bv-a/plugins/epharmacy/orders";
    let (st, b) = send(
        &s,
        "POST",
        orders,
        &citizen_token,
        Some(json!({ "medication_request": mr, "pharmacy": "pk-long-chau" })),
        &[],
    )
    .await;
    assert_eq!(st, 201, "{b}");
    let order = b["order"]["id"].as_str().expect("id").to_owned();
    let (_, b) = send(&s, "GET", "/api/v1/me/payments", &citizen_token, None, &[]).await;
    assert_eq!(b["payments"].as_array().map(Vec::len), Some(1), "{b}");

    // Same `sub`, another issuer: none of the citizen's orders or payments.
    let twin = ext.token(&citizen.id, &["citizen"], None);
    let (st, b) = send(&s, "GET", orders, &twin, None, &[]).await;
    assert_eq!((st, &b["orders"]), (200, &json!([])), "{b}");
    let (st, _) = send(&s, "GET", &format!("{orders}/{order}"), &twin, None, &[]).await;
    assert_eq!(st, 404);
    let (st, _) = send(
        &s,
        "POST",
        &format!("{orders}/{order}/cancel"),
        &twin,
        None,
        &[],
    )
    .await;
    assert_eq!(st, 404);
    let (st, b) = send(&s, "GET", "/api/v1/me/payments", &twin, None, &[]).await;
    assert_eq!((st, &b["payments"]), (200, &json!([])), "{b}");
    let (st, b) = send(&s, "GET", "/api/v1/me/notifications", &twin, None, &[]).await;
    assert_eq!((st, &b["notifications"]), (200, &json!([])), "{b}");
    // The citizen's order is untouched.
    let (st, b) = send(
        &s,
        "GET",
        &format!("{orders}/{order}"),
        &citizen_token,
        None,
        &[],
    )
    .await;
    assert_eq!((st, &b["status"]), (200, &json!("awaiting-payment")), "{b}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_external_sub_equal_to_an_invitees_id_gets_no_join_token_from_a_plugin() {
    let ext = External::start().await;
    let plugins = plugin_set(&test_plugin_dir(), &["video-probe"]);
    let (s, _p) = server(&ext, Some(plugins)).await;
    let (_, chair) = local(&s, new_user("bs.a", Role::Practitioner, Some("bv-a"))).await;
    let (guest, guest_token) = local(&s, new_user("bs.b", Role::Practitioner, Some("bv-b"))).await;
    let probe = |path: &str| format!("/hospitals/bv-a/plugins/video-probe{path}");
    let (st, r) = send(
        &s,
        "POST",
        &probe("/rooms"),
        &chair,
        Some(
            json!({ "purpose": "hội chẩn", "requesting_hospital": "bv-b", "max_participants": 4 }),
        ),
        &[],
    )
    .await;
    assert_eq!(st, 200, "{r}");
    let room = r["id"].as_str().expect("id").to_owned();
    let (st, inv) = send(
        &s,
        "POST",
        &probe(&format!("/rooms/{room}/invite")),
        &chair,
        Some(json!({ "practitioner": guest.id, "role": "presenter" })),
        &[],
    )
    .await;
    assert_eq!(st, 200, "{inv}");
    let token_path = probe(&format!(
        "/rooms/{room}/token/{}",
        inv["id"].as_str().expect("id")
    ));

    // The invitee (of another hospital) gets their own join token...
    let (st, t) = send(&s, "POST", &token_path, &guest_token, None, &[]).await;
    assert_eq!(st, 200, "{t}");
    // ... a token of another issuer with the invitee's `sub` does not.
    let twin = ext.token(&guest.id, &["practitioner"], Some("bv-b"));
    let (st, t) = send(&s, "POST", &token_path, &twin, None, &[]).await;
    assert_eq!(st, 403, "{t}");
}
