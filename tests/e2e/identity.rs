//! Identity through the real HTTP server: the built-in OpenID Connect
//! provider (code flow with PKCE, client credentials, refresh, logout, key
//! rotation), token validation, trusted external issuers, and the bearer
//! token on plugin routes.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use aws_lc_rs::digest;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tempfile::TempDir;
use vtelehealth_runtime::RuntimeOptions;
use vtelehealth_runtime::identity::{IdentityOptions, NewUser, Role, TrustedIssuer, User};
use vtelehealth_tests::{TestServer, plugin_dir, plugin_set};

const REDIRECT: &str = "http://127.0.0.1:9/callback";

/// A server with no plugins and cheap password hashing (tests only).
async fn server_with(identity: IdentityOptions, plugins: Option<TempDir>) -> (TestServer, TempDir) {
    let plugins = match plugins {
        Some(p) => p,
        None => TempDir::new().expect("temp dir"),
    };
    let data = TempDir::new().expect("temp dir");
    let options = RuntimeOptions {
        database_url: format!("sqlite://{}", data.path().join("id.db").display()),
        plugin_dir: Some(plugins.path().to_path_buf()),
        cache_dir: Some(data.path().join("cache")),
        identity: IdentityOptions {
            password_iterations: 1_000,
            ..identity
        },
        ..RuntimeOptions::default()
    };
    (TestServer::start_with(options, data).await, plugins)
}

async fn server() -> (TestServer, TempDir) {
    server_with(IdentityOptions::default(), None).await
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

async fn citizen(server: &TestServer) -> User {
    let mut u = NewUser::new(
        "001090000123",
        "Nguyễn Thị Lan",
        Role::Citizen,
        "mat-khau-123",
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

async fn me(server: &TestServer, token: &str) -> (u16, Value) {
    let resp = server
        .client
        .get(format!("{}/api/v1/me", server.base))
        .bearer_auth(token)
        .send()
        .await
        .expect("request");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn pkce() -> (String, String) {
    let verifier = format!("{}-verifier-with-enough-entropy", uuid_like());
    let challenge = B64.encode(digest::digest(&digest::SHA256, verifier.as_bytes()).as_ref());
    (verifier, challenge)
}

fn uuid_like() -> String {
    let mut b = [0u8; 24];
    aws_lc_rs::rand::fill(&mut b).expect("random");
    B64.encode(b)
}

/// Log in through the form and return the code from the redirect.
async fn login(
    server: &TestServer,
    username: &str,
    password: &str,
    challenge: &str,
) -> (u16, Option<String>) {
    let resp = no_redirects()
        .post(format!("{}/oidc/authorize", server.base))
        .form(&[
            ("response_type", "code"),
            ("client_id", "test-web"),
            ("redirect_uri", REDIRECT),
            ("state", "st&ate"),
            ("scope", "openid profile"),
            ("nonce", "n-1"),
            ("code_challenge", challenge),
            ("code_challenge_method", "S256"),
            ("username", username),
            ("password", password),
        ])
        .send()
        .await
        .expect("request");
    let status = resp.status().as_u16();
    let location = resp
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let code = location.map(|l| {
        assert!(l.starts_with(&format!("{REDIRECT}?code=")), "{l}");
        assert!(l.ends_with("&state=st%26ate"), "state is returned: {l}");
        l.split("code=")
            .nth(1)
            .and_then(|r| r.split('&').next())
            .unwrap_or_default()
            .to_owned()
    });
    (status, code)
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

#[tokio::test]
async fn discovery_and_jwks_describe_the_provider() {
    let (server, _p) = server().await;
    let (status, doc) = server
        .get_json(&format!("{}/.well-known/openid-configuration", server.base))
        .await;
    assert_eq!(status, 200);
    assert_eq!(doc["issuer"], json!(server.base));
    assert_eq!(doc["jwks_uri"], json!(format!("{}/oidc/jwks", server.base)));
    assert_eq!(doc["code_challenge_methods_supported"], json!(["S256"]));
    let (status, jwks) = server.get_json(&format!("{}/oidc/jwks", server.base)).await;
    assert_eq!(status, 200);
    let keys = jwks["keys"].as_array().expect("keys");
    assert_eq!(keys.len(), 1, "{jwks}");
    assert_eq!(
        (
            keys[0]["kty"].as_str(),
            keys[0]["crv"].as_str(),
            keys[0]["alg"].as_str()
        ),
        (Some("EC"), Some("P-256"), Some("ES256"))
    );
    assert!(keys[0].get("d").is_none(), "no private part is published");
}

#[tokio::test]
async fn code_flow_with_pkce_refresh_and_logout() {
    let (server, _p) = server().await;
    let id = &server.runtime.identity;
    id.register_public_client("test-web", "Test web", &[REDIRECT])
        .await
        .expect("client");
    let user = citizen(&server).await;
    let (verifier, challenge) = pkce();

    // The login form, in Vietnamese and English, for a registered client.
    let page = server
        .client
        .get(format!(
            "{}/oidc/authorize?response_type=code&client_id=test-web&redirect_uri={}&state=s&code_challenge={challenge}&code_challenge_method=S256",
            server.base,
            "http%3A%2F%2F127.0.0.1%3A9%2Fcallback"
        ))
        .send()
        .await
        .expect("request");
    assert_eq!(page.status(), 200);
    let html = page.text().await.expect("html");
    // One language at a time, with a link to the other keeping the request.
    assert!(
        html.contains("Mật khẩu") && !html.contains("Password"),
        "{html}"
    );
    assert!(
        html.contains("lang=en") && html.contains("English"),
        "{html}"
    );
    let page = server
        .client
        .get(format!(
            "{}/oidc/authorize?response_type=code&client_id=test-web&redirect_uri={}&state=s&code_challenge={challenge}&code_challenge_method=S256&lang=en",
            server.base,
            "http%3A%2F%2F127.0.0.1%3A9%2Fcallback"
        ))
        .send()
        .await
        .expect("request");
    let html = page.text().await.expect("html");
    assert!(
        html.contains("Password") && !html.contains("Mật khẩu"),
        "{html}"
    );
    // Unregistered redirect URIs and plain PKCE are refused, not redirected to.
    for query in [
        format!(
            "response_type=code&client_id=test-web&redirect_uri=http%3A%2F%2Fevil.example%2F&code_challenge={challenge}&code_challenge_method=S256"
        ),
        format!(
            "response_type=code&client_id=test-web&redirect_uri=http%3A%2F%2F127.0.0.1%3A9%2Fcallback&code_challenge={challenge}&code_challenge_method=plain"
        ),
        "response_type=code&client_id=test-web&redirect_uri=http%3A%2F%2F127.0.0.1%3A9%2Fcallback"
            .to_owned(),
    ] {
        let resp = no_redirects()
            .get(format!("{}/oidc/authorize?{query}", server.base))
            .send()
            .await
            .expect("request");
        assert_eq!(resp.status(), 400, "{query}");
    }

    let (status, code) = login(&server, &user.username, "wrong-password", &challenge).await;
    assert_eq!((status, code), (401, None));
    let (status, code) = login(&server, &user.username, "mat-khau-123", &challenge).await;
    assert_eq!(status, 303);
    let code = code.expect("code");

    // A wrong verifier fails, and spends the code.
    let (status, body) = token_request(
        &server,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("client_id", "test-web"),
            ("code_verifier", "x".repeat(43).as_str()),
        ],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
    let (status, _) = token_request(
        &server,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("client_id", "test-web"),
            ("code_verifier", &verifier),
        ],
    )
    .await;
    assert_eq!(status, 400, "a code is single-use");

    let (_, code) = login(&server, &user.username, "mat-khau-123", &challenge).await;
    let code = code.expect("code");
    let (status, tokens) = token_request(
        &server,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("client_id", "test-web"),
            ("code_verifier", &verifier),
        ],
    )
    .await;
    assert_eq!(status, 200, "{tokens}");
    assert!(tokens["id_token"].is_string(), "{tokens}");
    let access = tokens["access_token"].as_str().expect("access token");
    let (status, body) = me(&server, access).await;
    assert_eq!(status, 200, "{body}");
    let p = &body["principal"];
    assert_eq!(p["subject"], json!(user.id));
    assert_eq!(p["roles"], json!(["citizen"]));
    assert_eq!(p["national_id"], json!("001090000123"));
    assert_eq!(p["health_id"], json!("0101111111"));
    let info = server
        .client
        .get(format!("{}/oidc/userinfo", server.base))
        .bearer_auth(access)
        .send()
        .await
        .expect("request");
    assert_eq!(info.status(), 200);
    let info: Value = info.json().await.expect("json");
    assert_eq!(info["sub"], json!(user.id));
    assert_eq!(info["name"], json!("Nguyễn Thị Lan"));

    // Refresh tokens rotate; a spent one replayed revokes the session.
    let r1 = tokens["refresh_token"]
        .as_str()
        .expect("refresh token")
        .to_owned();
    let (status, t2) = token_request(
        &server,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &r1),
            ("client_id", "test-web"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{t2}");
    let r2 = t2["refresh_token"].as_str().expect("rotated").to_owned();
    assert_ne!(r1, r2);
    let (status, _) = token_request(
        &server,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &r1),
            ("client_id", "test-web"),
        ],
    )
    .await;
    assert_eq!(status, 400, "a spent refresh token is refused");
    let (status, _) = token_request(
        &server,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &r2),
            ("client_id", "test-web"),
        ],
    )
    .await;
    assert_eq!(status, 400, "replaying a spent token revoked its family");

    // Logout revokes a fresh session's refresh token.
    let (_, code) = login(&server, &user.username, "mat-khau-123", &challenge).await;
    let (_, t3) = token_request(
        &server,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code.expect("code")),
            ("redirect_uri", REDIRECT),
            ("client_id", "test-web"),
            ("code_verifier", &verifier),
        ],
    )
    .await;
    let r3 = t3["refresh_token"].as_str().expect("refresh").to_owned();
    let resp = server
        .client
        .post(format!("{}/oidc/logout", server.base))
        .form(&[("refresh_token", r3.as_str())])
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 200);
    let (status, _) = token_request(
        &server,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &r3),
            ("client_id", "test-web"),
        ],
    )
    .await;
    assert_eq!(status, 400, "logged out");
}

#[tokio::test]
async fn client_credentials_give_a_hospital_service() {
    let (server, _p) = server().await;
    server
        .runtime
        .identity
        .register_service_client("his-bv-a", "HIS A", "bv-a", "a-long-service-secret")
        .await
        .expect("client");
    let resp = server
        .client
        .post(format!("{}/oidc/token", server.base))
        .basic_auth("his-bv-a", Some("a-long-service-secret"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 200);
    let tokens: Value = resp.json().await.expect("json");
    assert!(tokens.get("refresh_token").is_none());
    let (status, body) = me(&server, tokens["access_token"].as_str().expect("token")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["principal"]["roles"], json!(["service"]));
    assert_eq!(body["principal"]["hospital_id"], json!("bv-a"));

    let (status, body) = token_request(
        &server,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", "his-bv-a"),
            ("client_secret", "wrong-secret-wrong"),
        ],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client"))
    );
}

#[tokio::test]
async fn key_rotation_keeps_the_previous_key_published() {
    let (server, _p) = server().await;
    let user = citizen(&server).await;
    let id = &server.runtime.identity;
    let old = id.token_for(&user).expect("token");
    let old_kid = id.active_kid().expect("kid");
    let new_kid = id.rotate_keys().await.expect("rotate");
    assert_ne!(old_kid, new_kid);
    let (_, jwks) = server.get_json(&format!("{}/oidc/jwks", server.base)).await;
    let kids: Vec<&str> = jwks["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .filter_map(|k| k["kid"].as_str())
        .collect();
    assert_eq!(kids.len(), 2, "{jwks}");
    assert!(kids.contains(&old_kid.as_str()) && kids.contains(&new_kid.as_str()));
    assert_eq!(
        me(&server, &old).await.0,
        200,
        "tokens of the previous key stay valid"
    );
    let new = id.token_for(&user).expect("token");
    assert_eq!(header_of(&new)["kid"], json!(new_kid));
    assert_eq!(me(&server, &new).await.0, 200);
}

#[tokio::test]
async fn keys_survive_a_restart() {
    let data = TempDir::new().expect("temp dir");
    let url = format!("sqlite://{}", data.path().join("keys.db").display());
    let start = || {
        vtelehealth_runtime::Runtime::start(RuntimeOptions {
            database_url: url.clone(),
            ..RuntimeOptions::default()
        })
    };
    let first = start().await.expect("start");
    let kid = first.identity.active_kid();
    drop(first);
    let second = start().await.expect("restart");
    assert_eq!(second.identity.active_kid(), kid);
}

fn header_of(token: &str) -> Value {
    let h = token.split('.').next().unwrap_or_default();
    serde_json::from_slice(&B64.decode(h).unwrap_or_default()).unwrap_or(Value::Null)
}

// ----- rejections (item 4): one test each, through /api/v1/me -----

fn now() -> i64 {
    vtelehealth_runtime::time::now_secs()
}

fn claims(server: &TestServer) -> Value {
    let t = now();
    json!({
        "iss": server.runtime.identity.issuer(), "aud": server.runtime.identity.audience(),
        "sub": "u-forged", "name": "Forged", "roles": ["operator"],
        "iat": t, "nbf": t, "exp": t + 600, "jti": "j-1",
    })
}

async fn assert_rejected(server: &TestServer, token: &str, why: &str) {
    let (status, body) = me(server, token).await;
    assert_eq!(status, 401, "{why}: {body}");
    assert_eq!(
        body["error"]["code"],
        json!("unauthorized"),
        "{why}: {body}"
    );
}

#[tokio::test]
async fn rejects_alg_none() {
    let (server, _p) = server().await;
    let kid = server.runtime.identity.active_kid().expect("kid");
    let header = B64.encode(json!({ "alg": "none", "typ": "JWT", "kid": kid }).to_string());
    let payload = B64.encode(claims(&server).to_string());
    assert_rejected(&server, &format!("{header}.{payload}."), "alg none").await;
}

#[tokio::test]
async fn rejects_hmac_signed_with_the_public_key() {
    let (server, _p) = server().await;
    let (_, jwks) = server.get_json(&format!("{}/oidc/jwks", server.base)).await;
    let jwk = &jwks["keys"][0];
    // Every form an attacker might use as the "secret": the JWK, its
    // coordinates, the SEC1 point.
    let x = B64
        .decode(jwk["x"].as_str().unwrap_or_default())
        .unwrap_or_default();
    let y = B64
        .decode(jwk["y"].as_str().unwrap_or_default())
        .unwrap_or_default();
    let point: Vec<u8> = [&[4u8][..], &x, &y].concat();
    for secret in [jwk.to_string().into_bytes(), point] {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = jwk["kid"].as_str().map(str::to_owned);
        let token = jsonwebtoken::encode(
            &header,
            &claims(&server),
            &EncodingKey::from_secret(&secret),
        )
        .expect("sign");
        assert_rejected(&server, &token, "HS256 with the public key").await;
    }
}

#[tokio::test]
async fn rejects_wrong_issuer() {
    let (server, _p) = server().await;
    let mut c = claims(&server);
    c["iss"] = json!("https://attacker.example");
    let token = server.runtime.identity.sign_claims(&c).expect("sign");
    assert_rejected(&server, &token, "untrusted issuer").await;
}

#[tokio::test]
async fn rejects_wrong_audience() {
    let (server, _p) = server().await;
    let mut c = claims(&server);
    c["aud"] = json!("another-service");
    let token = server.runtime.identity.sign_claims(&c).expect("sign");
    assert_rejected(&server, &token, "wrong audience").await;
}

#[tokio::test]
async fn rejects_expired_beyond_the_leeway() {
    let (server, _p) = server().await;
    let mut c = claims(&server);
    c["exp"] = json!(now() - 120);
    let token = server.runtime.identity.sign_claims(&c).expect("sign");
    assert_rejected(&server, &token, "expired").await;
    // Within the 30 s leeway a just-expired token still passes.
    c["exp"] = json!(now() - 5);
    let token = server.runtime.identity.sign_claims(&c).expect("sign");
    assert_eq!(me(&server, &token).await.0, 200);
}

#[tokio::test]
async fn rejects_not_yet_valid() {
    let (server, _p) = server().await;
    let mut c = claims(&server);
    c["nbf"] = json!(now() + 300);
    let token = server.runtime.identity.sign_claims(&c).expect("sign");
    assert_rejected(&server, &token, "not yet valid").await;
}

#[tokio::test]
async fn rejects_unknown_kid() {
    let (server, _p) = server().await;
    let token = server
        .runtime
        .identity
        .sign_claims(&claims(&server))
        .expect("sign");
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    let mut header = header_of(&token);
    header["kid"] = json!("es256-unknown");
    parts[0] = B64.encode(header.to_string());
    assert_rejected(&server, &parts.join("."), "unknown kid").await;
}

#[tokio::test]
async fn rejects_tampered_payload() {
    let (server, _p) = server().await;
    let mut c = claims(&server);
    c["roles"] = json!(["citizen"]);
    let token = server.runtime.identity.sign_claims(&c).expect("sign");
    assert_eq!(
        me(&server, &token).await.0,
        200,
        "the untampered token is valid"
    );
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    c["roles"] = json!(["operator"]);
    parts[1] = B64.encode(c.to_string());
    assert_rejected(&server, &parts.join("."), "tampered payload").await;
    // And on the userinfo endpoint too; a missing token is 401 as well.
    let resp = server
        .client
        .get(format!("{}/oidc/userinfo", server.base))
        .bearer_auth(parts.join("."))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 401);
    let (status, body) = server.get_json(&format!("{}/api/v1/me", server.base)).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (401, &json!("unauthorized"))
    );
}

// ----- trusted external issuers -----

/// Key id and PKCS#8 of each key of an external issuer.
type SharedKeys = Arc<std::sync::Mutex<Vec<(String, Vec<u8>)>>>;

/// A tiny OIDC-like issuer on loopback: its own P-256 keys and a JWKS
/// endpoint that counts its fetches.
struct ExternalIssuer {
    url: String,
    keys: SharedKeys,
    fetches: Arc<AtomicUsize>,
}

impl ExternalIssuer {
    async fn start() -> Self {
        let keys: SharedKeys = Arc::default();
        let fetches = Arc::new(AtomicUsize::new(0));
        let (k, f) = (keys.clone(), fetches.clone());
        let app = axum::Router::new().route(
            "/jwks",
            axum::routing::get(move || {
                let (k, f) = (k.clone(), f.clone());
                async move {
                    f.fetch_add(1, Ordering::SeqCst);
                    let keys: Vec<Value> = k
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .iter()
                        .map(|(kid, pkcs8)| public_jwk(kid, pkcs8))
                        .collect();
                    axum::Json(json!({ "keys": keys }))
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let issuer = Self {
            url: format!("http://{addr}"),
            keys,
            fetches,
        };
        issuer.add_key("ext-1");
        issuer
    }

    fn add_key(&self, kid: &str) {
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
                .expect("key");
        self.keys
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((kid.to_owned(), pkcs8.as_ref().to_vec()));
    }

    fn sign(&self, kid: &str, claims: &Value) -> String {
        let keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        let (_, pkcs8) = keys.iter().find(|(k, _)| k == kid).expect("own key");
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(kid.to_owned());
        jsonwebtoken::encode(&header, claims, &EncodingKey::from_ec_der(pkcs8)).expect("sign")
    }
}

fn public_jwk(kid: &str, pkcs8: &[u8]) -> Value {
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8).expect("key");
    let point = pair.public_key().as_ref();
    json!({ "kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": kid,
        "x": B64.encode(&point[1..33]), "y": B64.encode(&point[33..65]) })
}

fn external_claims(iss: &str) -> Value {
    let t = now();
    json!({
        "iss": iss, "aud": "vtelehealth-national", "sub": "vneid-42",
        "full_name": "Võ Văn Tư", "groups": ["BacSi"], "org": "bv-a",
        "iat": t, "nbf": t, "exp": t + 300,
    })
}

#[tokio::test]
async fn trusted_external_issuer_with_claim_mapping_and_kid_refresh() {
    let ext = ExternalIssuer::start().await;
    let flood = ExternalIssuer::start().await;
    let mut trusted = TrustedIssuer::new(
        "https://vneid.test",
        "vtelehealth-national",
        &format!("{}/jwks", ext.url),
    );
    trusted.roles_claim = "groups".into();
    trusted.role_map.insert("BacSi".into(), Role::Practitioner);
    trusted.hospital_claim = "org".into();
    trusted.name_claim = "full_name".into();
    trusted.min_refresh_secs = 0;
    // Issue 12 item 1: an issuer states what it may assert.
    trusted.allowed_roles = vec![Role::Practitioner];
    trusted.hospitals = vec!["bv-a".into()];
    let mut limited = TrustedIssuer::new(
        "https://flood.test",
        "vtelehealth-national",
        &format!("{}/jwks", flood.url),
    );
    limited.min_refresh_secs = 3600;
    let (server, _p) = server_with(
        IdentityOptions {
            trusted_issuers: vec![trusted, limited],
            ..IdentityOptions::default()
        },
        None,
    )
    .await;

    let token = ext.sign("ext-1", &external_claims("https://vneid.test"));
    let (status, body) = me(&server, &token).await;
    assert_eq!(status, 200, "{body}");
    let p = &body["principal"];
    assert_eq!(p["roles"], json!(["practitioner"]));
    assert_eq!(p["hospital_id"], json!("bv-a"));
    assert_eq!(p["name"], json!("Võ Văn Tư"));
    assert_eq!(p["issuer"], json!("https://vneid.test"));

    // The issuer rotates: an unknown kid triggers a JWKS refresh.
    ext.add_key("ext-2");
    let token = ext.sign("ext-2", &external_claims("https://vneid.test"));
    assert_eq!(me(&server, &token).await.0, 200);
    // Its audience and issuer are still checked.
    let mut c = external_claims("https://vneid.test");
    c["aud"] = json!("vtelehealth");
    assert_rejected(&server, &ext.sign("ext-1", &c), "external wrong audience").await;
    // A key of one trusted issuer does not vouch for another.
    let token = ext.sign("ext-1", &external_claims("https://flood.test"));
    assert_rejected(&server, &token, "key of another issuer").await;

    // A flood of bogus kids fetches the rate-limited issuer's JWKS once.
    let before = flood.fetches.load(Ordering::SeqCst);
    for i in 0..20 {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(format!("bogus-{i}"));
        let keys = flood.keys.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let token = jsonwebtoken::encode(
            &header,
            &external_claims("https://flood.test"),
            &EncodingKey::from_ec_der(&keys[0].1),
        )
        .expect("sign");
        assert_rejected(&server, &token, "bogus kid").await;
    }
    let fetched = flood.fetches.load(Ordering::SeqCst) - before;
    assert!(fetched <= 1, "{fetched} JWKS fetches for 20 bogus kids");
}

/// A server trusting `issuers`.
async fn server_trusting(issuers: Vec<TrustedIssuer>) -> TestServer {
    server_with(
        IdentityOptions {
            trusted_issuers: issuers,
            ..IdentityOptions::default()
        },
        None,
    )
    .await
    .0
}

/// The audit entries whose action starts with `action`.
async fn audited(
    server: &TestServer,
    action: &str,
) -> Vec<vtelehealth_runtime::governance::audit::AuditEntry> {
    server
        .runtime
        .governance
        .audit
        .list(&vtelehealth_runtime::governance::audit::AuditFilter {
            action_prefix: Some(action.into()),
            ..Default::default()
        })
        .await
        .expect("audit")
}

/// Audit entries of refused external tokens.
async fn refused_tokens(
    server: &TestServer,
) -> Vec<vtelehealth_runtime::governance::audit::AuditEntry> {
    audited(server, "identity.token_refused").await
}

#[tokio::test]
async fn external_issuers_assert_only_the_roles_hospitals_and_ids_they_are_trusted_for() {
    // A hospital's own login server, bound to bv-a, for its practitioners;
    // the national e-ID, for citizens identified by CCCD.
    let hospital_idp = ExternalIssuer::start().await;
    let vneid = ExternalIssuer::start().await;
    let mut bound = TrustedIssuer::new(
        "https://sso.bv-a.test",
        "vtelehealth",
        &format!("{}/jwks", hospital_idp.url),
    );
    bound.allowed_roles = vec![Role::Practitioner];
    bound.hospitals = vec!["bv-a".into()];
    let mut national = TrustedIssuer::new(
        "https://vneid.test",
        "vtelehealth",
        &format!("{}/jwks", vneid.url),
    );
    national.national_ids = true;
    let server = server_trusting(vec![bound, national]).await;
    let t = now();
    let claims = |iss: &str, sub: &str, extra: Value| {
        let mut c =
            json!({ "iss": iss, "aud": "vtelehealth", "sub": sub, "iat": t, "exp": t + 300 });
        for (k, v) in extra.as_object().cloned().unwrap_or_default() {
            c[k] = v;
        }
        c
    };
    let sso = |sub: &str, extra: Value| {
        hospital_idp.sign("ext-1", &claims("https://sso.bv-a.test", sub, extra))
    };
    let eid =
        |sub: &str, extra: Value| vneid.sign("ext-1", &claims("https://vneid.test", sub, extra));

    // What each may assert is accepted.
    let (status, body) = me(
        &server,
        &sso(
            "bs-1",
            json!({ "roles": ["practitioner"], "hospital_id": "bv-a" }),
        ),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["principal"]["hospital_id"], json!("bv-a"));
    let (status, body) = me(
        &server,
        &eid(
            "cd-1",
            json!({ "roles": "citizen", "national_id": "001090000123", "health_id": "0101111111" }),
        ),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["principal"]["national_id"], json!("001090000123"));
    // A name claim of any length is cut to the platform's name limit.
    let (status, body) = me(
        &server,
        &eid(
            "cd-9",
            json!({ "roles": "citizen", "name": "Ư".repeat(1_000) }),
        ),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["principal"]["name"]
            .as_str()
            .map(|n| n.chars().count()),
        Some(vtelehealth_runtime::text_limits::NAME)
    );
    assert!(refused_tokens(&server).await.is_empty());

    // Anything more is refused with 401 and audited, naming the issuer.
    let cases = [
        (
            "another hospital",
            sso(
                "bs-2",
                json!({ "roles": ["practitioner"], "hospital_id": "bv-b" }),
            ),
            "the hospital `bv-b`",
        ),
        (
            "a practitioner of no hospital",
            sso("bs-3", json!({ "roles": ["practitioner"] })),
            "a staff role without a hospital",
        ),
        (
            "an admin",
            sso(
                "bs-4",
                json!({ "roles": ["hospital-admin"], "hospital_id": "bv-a" }),
            ),
            "the role `hospital-admin`",
        ),
        (
            "a citizen with someone's CCCD",
            sso(
                "cd-2",
                json!({ "roles": ["citizen"], "national_id": "001090000123" }),
            ),
            "the role `citizen`",
        ),
        (
            "a practitioner with a CCCD",
            sso(
                "bs-6",
                json!({ "roles": ["practitioner"], "hospital_id": "bv-a", "national_id": "001090000123" }),
            ),
            "national IDs",
        ),
        (
            "a practitioner from the e-ID",
            eid(
                "bs-5",
                json!({ "roles": "practitioner", "hospital_id": "bv-a" }),
            ),
            "the role `practitioner`",
        ),
        (
            "an operator from the e-ID",
            eid("op-1", json!({ "roles": ["citizen", "operator"] })),
            "the role `operator`",
        ),
        (
            "a vendor",
            eid(
                "cd-3",
                json!({ "roles": "citizen", "vendor_id": "vtelehealth-demo" }),
            ),
            "a vendor",
        ),
    ];
    for (why, token, what) in &cases {
        let (status, body) = me(&server, token).await;
        assert_eq!(
            (status, &body["error"]["code"]),
            (401, &json!("unauthorized")),
            "{why}: {body}"
        );
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("may not assert") && message.contains(what),
            "{why}: {message}"
        );
    }
    // The citizen's own records and consents are out of reach too.
    let resp = server
        .client
        .get(format!("{}/api/v1/me/records", server.base))
        .bearer_auth(&cases[3].1)
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 401);
    let refused = refused_tokens(&server).await;
    assert_eq!(
        refused.len(),
        cases.len(),
        "one entry per token, a replay is not recorded again"
    );
    // The issuer is the caller; the person is named as `PersonRef` does,
    // never as a local user's bare id.
    let entry = refused
        .iter()
        .find(|e| e.target == "https://sso.bv-a.test#bs-2")
        .expect("audited");
    assert_eq!(entry.actor, "issuer:https://sso.bv-a.test");
    assert_eq!(entry.details["refused"], json!("the hospital `bv-b`"));
}

#[tokio::test]
async fn a_trusted_issuers_configuration_is_checked_at_start() {
    let base = || {
        TrustedIssuer::new(
            "https://sso.bv-a.test",
            "vtelehealth",
            "https://sso.bv-a.test/jwks",
        )
    };
    let mut unbound = base();
    unbound.allowed_roles = vec![Role::Practitioner];
    let mut own = base();
    own.issuer = "http://127.0.0.1:9".into();
    for (issuers, expected) in [
        (vec![unbound], "`hospitals` is empty"),
        (vec![base(), base()], "listed twice"),
        (vec![own], "this platform's own issuer"),
    ] {
        let data = TempDir::new().expect("temp dir");
        let started = vtelehealth_runtime::Runtime::start(RuntimeOptions {
            database_url: format!("sqlite://{}", data.path().join("cfg.db").display()),
            cache_dir: Some(data.path().join("cache")),
            identity: IdentityOptions {
                issuer: Some("http://127.0.0.1:9".into()),
                trusted_issuers: issuers,
                ..IdentityOptions::default()
            },
            ..RuntimeOptions::default()
        })
        .await;
        let err = format!("{:#}", started.err().expect("refused at start"));
        assert!(err.contains(expected), "{err}");
    }
}

#[tokio::test]
async fn access_tokens_carry_and_require_typ_at_jwt() {
    let ext = ExternalIssuer::start().await;
    let mut strict = TrustedIssuer::new(
        "https://strict.test",
        "vtelehealth",
        &format!("{}/jwks", ext.url),
    );
    strict.require_at_jwt = true;
    let mut lenient = TrustedIssuer::new(
        "https://lenient.test",
        "vtelehealth",
        &format!("{}/jwks", ext.url),
    );
    lenient.min_refresh_secs = 0;
    let server = server_trusting(vec![strict, lenient]).await;
    let user = citizen(&server).await;
    let token = server.runtime.identity.token_for(&user).expect("token");
    assert_eq!(header_of(&token)["typ"], json!("at+jwt"));
    assert_eq!(me(&server, &token).await.0, 200);
    // Our own key, our audience, any other type: not an access token.
    let mut c = claims(&server);
    c["roles"] = json!(["citizen"]);
    for typ in [Some("JWT"), None, Some("vth-ticket+jwt")] {
        let token = server
            .runtime
            .identity
            .sign_claims_typed(&c, typ)
            .expect("sign");
        assert_rejected(&server, &token, &format!("own token with typ {typ:?}")).await;
    }
    let token = server
        .runtime
        .identity
        .sign_claims_typed(&c, Some("application/AT+JWT"))
        .expect("sign");
    assert_eq!(
        me(&server, &token).await.0,
        200,
        "media type form, any case"
    );
    // External issuers: `JWT` is accepted unless the issuer requires at+jwt;
    // a type naming another kind of token never is.
    let t = now();
    let ext_claims = |iss: &str| json!({ "iss": iss, "aud": "vtelehealth", "sub": "x-1", "roles": "citizen", "iat": t, "exp": t + 300 });
    let sign_typed = |iss: &str, typ: &str| {
        let keys = ext.keys.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some("ext-1".into());
        header.typ = Some(typ.into());
        jsonwebtoken::encode(
            &header,
            &ext_claims(iss),
            &EncodingKey::from_ec_der(&keys[0].1),
        )
        .expect("sign")
    };
    assert_eq!(
        me(&server, &sign_typed("https://lenient.test", "JWT"))
            .await
            .0,
        200
    );
    assert_eq!(
        me(&server, &sign_typed("https://lenient.test", "at+jwt"))
            .await
            .0,
        200
    );
    assert_rejected(
        &server,
        &sign_typed("https://lenient.test", "logout+jwt"),
        "external logout token",
    )
    .await;
    assert_rejected(
        &server,
        &sign_typed("https://strict.test", "JWT"),
        "strict issuer, typ JWT",
    )
    .await;
    assert_eq!(
        me(&server, &sign_typed("https://strict.test", "at+jwt"))
            .await
            .0,
        200
    );
}

#[tokio::test]
async fn platform_pages_cannot_be_framed_by_other_sites() {
    let plugins = plugin_set(&vtelehealth_tests::test_plugin_dir(), &["page-probe"]);
    let (server, _p) = server_with(IdentityOptions::default(), Some(plugins)).await;
    server
        .runtime
        .identity
        .register_public_client("test-web", "Test web", &[REDIRECT])
        .await
        .expect("client");
    let (_, challenge) = pkce();
    let base = &server.base;
    let pages = [
        (
            format!(
                "{base}/oidc/authorize?response_type=code&client_id=test-web&redirect_uri=http%3A%2F%2F127.0.0.1%3A9%2Fcallback&code_challenge={challenge}&code_challenge_method=S256"
            ),
            200,
        ),
        (format!("{base}/oidc/authorize?client_id=nobody"), 400),
        (format!("{base}/rooms/r-1"), 200),
        (format!("{base}/console/"), 200),
        // A plugin's own page: the host's sandbox policy and this one.
        (server.plugin_url("bv-a", "page-probe", "/"), 200),
    ];
    let policies = |resp: &reqwest::Response| -> Vec<String> {
        resp.headers()
            .get_all("content-security-policy")
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_owned))
            .collect()
    };
    for (url, status) in pages {
        let resp = server.client.get(&url).send().await.expect("request");
        assert_eq!(resp.status().as_u16(), status, "{url}");
        let csp = policies(&resp);
        let none: Vec<_> = csp
            .iter()
            .filter(|p| p.contains("frame-ancestors 'none'"))
            .collect();
        assert_eq!(none.len(), 1, "{url}: {csp:?}");
        assert_eq!(resp.headers()["x-frame-options"], "DENY", "{url}");
    }
    // The console's plugin frames stay frameable by the console itself.
    let resp = server
        .client
        .get(format!("{base}/console/frame/not-a-ticket/"))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 401);
    let csp = policies(&resp);
    assert!(
        csp.iter().any(|p| p.contains("frame-ancestors 'self'")),
        "{csp:?}"
    );
    assert!(
        !csp.iter().any(|p| p.contains("frame-ancestors 'none'")),
        "{csp:?}"
    );
    assert!(resp.headers().get("x-frame-options").is_none());
}

#[tokio::test]
async fn a_page_of_another_site_cannot_frame_the_login_form_in_chromium() {
    let Some(chromium) = vtelehealth_tests::browser::chromium() else {
        return;
    };
    // The attacker's page frames the login form and, as a control, a JSON
    // answer (not a page, so frameable). frame-ancestors 'none' refuses
    // every ancestor, this origin's too, so one server serves both.
    let (_, challenge) = pkce();
    let attacker = format!(
        "<!doctype html><title>win a prize</title>\
         <iframe id=\"login\" onload=\"this.dataset.loaded=1\" src=\"/oidc/authorize?response_type=code&client_id=test-web&redirect_uri=http%3A%2F%2F127.0.0.1%3A9%2Fcallback&code_challenge={challenge}&code_challenge_method=S256\"></iframe>\
         <iframe id=\"control\" onload=\"this.dataset.loaded=1\" src=\"/healthz\"></iframe>"
    );
    let data = TempDir::new().expect("temp dir");
    let options = RuntimeOptions {
        database_url: format!("sqlite://{}", data.path().join("frame.db").display()),
        cache_dir: Some(data.path().join("cache")),
        ..RuntimeOptions::default()
    };
    let server = TestServer::start_with_routes(options, data, async move {
        axum::Router::new().route(
            "/test/attacker",
            axum::routing::get(move || {
                let page = attacker.clone();
                async move { axum::response::Html(page) }
            }),
        )
    })
    .await;
    server
        .runtime
        .identity
        .register_public_client("test-web", "Test web", &[REDIRECT])
        .await
        .expect("client");
    let mut browser = vtelehealth_tests::browser::Browser::launch(&chromium, "about:blank")
        .await
        .expect("chromium");
    browser
        .call(
            "Page.navigate",
            json!({ "url": format!("{}/test/attacker", server.base) }),
        )
        .await
        .expect("navigate");
    // Until the attacker's page is the one evaluated in.
    for _ in 0..100 {
        let here = browser
            .eval("location.pathname")
            .await
            .unwrap_or(Value::Null);
        if here == json!("/test/attacker") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let seen = browser
        .eval(
            "(async () => {
               const frames = () => ['login', 'control'].map((id) => document.getElementById(id));
               for (let i = 0; i < 200 && !frames().every((f) => f && f.dataset.loaded); i++) {
                 await new Promise((r) => setTimeout(r, 50));
               }
               const form = (f) => { try { return !!f.contentDocument?.querySelector('input[name=password]'); } catch (e) { return false; } };
               const text = (f) => { try { return f.contentDocument?.body?.innerText ?? null; } catch (e) { return null; } };
               const [login, control] = frames();
               return { loaded: frames().every((f) => f.dataset.loaded), login_form: form(login), control: text(control) };
             })()",
        )
        .await
        .expect("eval");
    browser.kill().await;
    assert_eq!(seen["loaded"], json!(true), "{seen}");
    assert!(
        seen["control"].as_str().is_some_and(|t| t.contains("ok")),
        "the control frame shows: {seen}"
    );
    assert_eq!(
        seen["login_form"],
        json!(false),
        "the login form was framed: {seen}"
    );
}

// ----- login throttling (issue 12 item 4) -----

/// A server with `login` limits and the `test-web` client.
async fn throttled_server(login: vtelehealth_runtime::identity::LoginLimits) -> TestServer {
    let (server, _p) = server_with(
        IdentityOptions {
            login,
            ..IdentityOptions::default()
        },
        None,
    )
    .await;
    server
        .runtime
        .identity
        .register_public_client("test-web", "Test web", &[REDIRECT])
        .await
        .expect("client");
    server
}

/// Post the login form; status, `Retry-After` and body.
async fn login_attempt(
    server: &TestServer,
    username: &str,
    password: &str,
) -> (u16, Option<u64>, String) {
    // One client for every attempt: building one costs more CPU than the
    // throttled answer it would wait for (and would skew the benchmark).
    static CLIENT: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    let (_, challenge) = pkce();
    let resp = CLIENT
        .get_or_init(no_redirects)
        .post(format!("{}/oidc/authorize", server.base))
        .form(&[
            ("response_type", "code"),
            ("client_id", "test-web"),
            ("redirect_uri", REDIRECT),
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
            ("username", username),
            ("password", password),
        ])
        .send()
        .await
        .expect("request");
    let status = resp.status().as_u16();
    let retry = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    (status, retry, resp.text().await.unwrap_or_default())
}

async fn throttle_entries(
    server: &TestServer,
) -> Vec<vtelehealth_runtime::governance::audit::AuditEntry> {
    audited(server, "identity.login_throttled").await
}

#[tokio::test]
async fn repeated_bad_passwords_back_off_with_429_retry_after_and_an_audit_entry() {
    let server = throttled_server(vtelehealth_runtime::identity::LoginLimits {
        account_free_failures: 3,
        address_free_failures: 1_000,
        ..Default::default()
    })
    .await;
    let lan = citizen(&server).await;
    for _ in 0..4 {
        let (status, retry, _) = login_attempt(&server, &lan.username, "wrong-password").await;
        assert_eq!((status, retry), (401, None));
    }
    assert!(
        throttle_entries(&server).await.len() == 1,
        "the back-off started is audited"
    );
    // Held: even the right password is refused, without being checked.
    let (status, retry, page) = login_attempt(&server, &lan.username, "mat-khau-123").await;
    assert_eq!(status, 429, "{page}");
    let retry = retry.expect("Retry-After");
    assert!((1..=2).contains(&retry), "{retry}");
    assert!(page.contains("Too many failed sign-in attempts"), "{page}");
    let entry = &throttle_entries(&server).await[0];
    assert_eq!(entry.target, format!("user:{}", lan.username));
    assert_eq!(entry.details["failures"], json!(4));
    assert_eq!(entry.details["from"], json!("127.0.0.1"));
    // Another account from the same address is not held.
    let mut other = NewUser::new("034095000077", "Trần Bình", Role::Citizen, "mat-khau-456");
    other.national_id = Some("034095000077".into());
    server
        .runtime
        .identity
        .create_user(other)
        .await
        .expect("user");
    assert_eq!(
        login_attempt(&server, "034095000077", "mat-khau-456")
            .await
            .0,
        303
    );
    // After the back-off, the right password works and clears the account.
    tokio::time::sleep(std::time::Duration::from_millis(retry * 1000 + 200)).await;
    assert_eq!(
        login_attempt(&server, &lan.username, "mat-khau-123")
            .await
            .0,
        303
    );
    assert_eq!(
        login_attempt(&server, &lan.username, "wrong-password")
            .await
            .0,
        401
    );
}

#[tokio::test]
async fn one_address_spraying_many_accounts_is_held() {
    let server = throttled_server(vtelehealth_runtime::identity::LoginLimits {
        account_free_failures: 1_000,
        address_free_failures: 5,
        ..Default::default()
    })
    .await;
    let lan = citizen(&server).await;
    for i in 0..6 {
        let (status, _, _) = login_attempt(&server, &format!("guess-{i}"), "123456").await;
        assert_eq!(status, 401);
    }
    let (status, retry, _) = login_attempt(&server, &lan.username, "mat-khau-123").await;
    assert_eq!(status, 429);
    assert!(retry.is_some());
    let entries = throttle_entries(&server).await;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].target, "address:127.0.0.1");
}

#[tokio::test]
async fn client_secret_guessing_backs_off_with_429_in_the_oauth_shape() {
    let server = throttled_server(vtelehealth_runtime::identity::LoginLimits {
        account_free_failures: 2,
        address_free_failures: 1_000,
        ..Default::default()
    })
    .await;
    server
        .runtime
        .identity
        .register_service_client("his-a", "HIS A", "bv-a", "the-right-service-secret")
        .await
        .expect("client");
    let attempt = |secret: &'static str| {
        let server = &server;
        async move {
            let resp = server
                .client
                .post(format!("{}/oidc/token", server.base))
                .basic_auth("his-a", Some(secret))
                .form(&[("grant_type", "client_credentials")])
                .send()
                .await
                .expect("request");
            let status = resp.status().as_u16();
            let retry: Option<u64> = resp
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok());
            (
                status,
                retry,
                resp.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    for _ in 0..3 {
        let (status, _, body) = attempt("a-wrong-service-secret").await;
        assert_eq!((status, &body["error"]), (401, &json!("invalid_client")));
    }
    let (status, retry, body) = attempt("the-right-service-secret").await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"], json!("temporarily_unavailable"));
    let retry = retry.expect("Retry-After");
    assert_eq!(throttle_entries(&server).await[0].target, "client:his-a");
    tokio::time::sleep(std::time::Duration::from_millis(retry * 1000 + 200)).await;
    assert_eq!(attempt("the-right-service-secret").await.0, 200);
}

/// Issue 12 item 4's measurement: `/healthz` latency alone and while 8
/// anonymous bad-login loops run, with the real password hashing (210,000
/// PBKDF2 iterations), without and with throttling. Prints a table for
/// `docs/benchmarks.md`; asserts nothing about time. Run with
/// `cargo test -p vtelehealth-tests --test e2e -- --ignored --nocapture login_stall`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, run on demand"]
async fn login_stall_benchmark() {
    use std::time::{Duration, Instant};
    async fn healthz(server: &TestServer, n: usize) -> Vec<Duration> {
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let t = Instant::now();
            let resp = server
                .client
                .get(format!("{}/healthz", server.base))
                .send()
                .await
                .expect("healthz");
            assert_eq!(resp.status(), 200);
            out.push(t.elapsed());
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        out.sort();
        out
    }
    fn row(name: &str, mut d: Vec<Duration>, logins: Option<(usize, usize, f64)>) {
        d.sort();
        let q = |p: f64| d[((d.len() as f64 * p) as usize).min(d.len() - 1)].as_secs_f64() * 1e3;
        let logins = logins.map_or_else(String::new, |(answered, throttled, secs)| {
            format!(
                "{:.1}/s ({throttled} of {answered} answered 429/503)",
                answered as f64 / secs
            )
        });
        println!(
            "| {name} | {:.1} ms | {:.1} ms | {:.1} ms | {logins} |",
            q(0.5),
            q(0.99),
            q(1.0)
        );
    }
    println!("| variant | healthz p50 | healthz p99 | healthz max | bad logins |");
    println!("|---|---|---|---|---|");
    for (name, login) in [
        (
            "no throttling (hashing off the workers only)",
            vtelehealth_runtime::identity::LoginLimits {
                account_free_failures: u32::MAX,
                address_free_failures: u32::MAX,
                ..Default::default()
            },
        ),
        ("default throttling", Default::default()),
    ] {
        let data = TempDir::new().expect("temp dir");
        let server = TestServer::start_with(
            RuntimeOptions {
                database_url: format!("sqlite://{}", data.path().join("bench.db").display()),
                cache_dir: Some(data.path().join("cache")),
                identity: IdentityOptions {
                    login,
                    ..IdentityOptions::default()
                },
                ..RuntimeOptions::default()
            },
            TempDir::new().expect("temp dir"),
        )
        .await;
        server
            .runtime
            .identity
            .register_public_client("test-web", "Test web", &[REDIRECT])
            .await
            .expect("client");
        citizen(&server).await;
        let _ = healthz(&server, 50).await;
        row(
            &format!("alone, before the loops ({name})"),
            healthz(&server, 400).await,
            None,
        );
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let answered = Arc::new(AtomicUsize::new(0));
        let throttled = Arc::new(AtomicUsize::new(0));
        let server = Arc::new(server);
        let started = Instant::now();
        let loops: Vec<_> = (0..8)
            .map(|_| {
                let (server, stop, answered, throttled) = (
                    server.clone(),
                    stop.clone(),
                    answered.clone(),
                    throttled.clone(),
                );
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        let (status, _, _) =
                            login_attempt(&server, "001090000123", "wrong-password").await;
                        answered.fetch_add(1, Ordering::Relaxed);
                        if status == 429 || status == 503 {
                            throttled.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_secs(2)).await;
        let during = healthz(&server, 400).await;
        stop.store(true, Ordering::Relaxed);
        let secs = started.elapsed().as_secs_f64();
        for l in loops {
            let _ = l.await;
        }
        row(
            &format!("8 bad-login loops ({name})"),
            during,
            Some((
                answered.load(Ordering::Relaxed),
                throttled.load(Ordering::Relaxed),
                secs,
            )),
        );
    }
}

// ----- plugin routes and demo accounts -----

#[tokio::test]
async fn plugin_routes_take_an_optional_bearer_token() {
    let plugins = plugin_set(&plugin_dir(), &["hello"]);
    let (server, _p) = server_with(IdentityOptions::default(), Some(plugins)).await;
    let url = server.plugin_url("bv-a", "hello", "/");
    assert_eq!(server.get_json(&url).await.0, 200, "anonymous");
    let user = citizen(&server).await;
    let token = server.runtime.identity.token_for(&user).expect("token");
    let resp = server
        .client
        .get(&url)
        .bearer_auth(&token)
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 200);
    let resp = server
        .client
        .get(&url)
        .bearer_auth(format!("{token}x"))
        .send()
        .await
        .expect("request");
    assert_eq!(
        resp.status(),
        401,
        "an invalid token is refused, not ignored"
    );
}

#[tokio::test]
async fn demo_accounts_log_in() {
    let data = TempDir::new().expect("temp dir");
    let plugins = TempDir::new().expect("temp dir");
    let options = RuntimeOptions {
        database_url: format!("sqlite://{}", data.path().join("demo.db").display()),
        plugin_dir: Some(plugins.path().to_path_buf()),
        demo: true,
        identity: IdentityOptions {
            password_iterations: 1_000,
            ..IdentityOptions::default()
        },
        ..RuntimeOptions::default()
    };
    let server = TestServer::start_with(options, data).await;
    let accounts = vtelehealth_runtime::identity::demo_accounts();
    for role in Role::ALL.into_iter().filter(|r| *r != Role::Service) {
        assert!(accounts.iter().any(|a| a.role == role), "a demo {role}");
    }
    for hospital in [
        "bach-mai",
        "bvdk-thai-binh",
        "ttyt-vu-thu",
        "tyt-xa-tam-quang",
    ] {
        for role in [Role::Practitioner, Role::HospitalAdmin] {
            assert!(
                accounts
                    .iter()
                    .any(|a| a.role == role && a.hospital_id == Some(hospital))
            );
        }
    }
    // A practitioner logs in through the browser flow of the demo client.
    let redirect = format!("{}/oidc/callback", server.base);
    let (verifier, challenge) = pkce();
    let doctor = accounts
        .iter()
        .find(|a| a.username == "bs.bachmai")
        .expect("doctor");
    let resp = no_redirects()
        .post(format!("{}/oidc/authorize", server.base))
        .form(&[
            ("response_type", "code"),
            ("client_id", "vtelehealth-web"),
            ("redirect_uri", &redirect),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
            ("username", doctor.username),
            ("password", doctor.password),
        ])
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 303);
    let location = resp.headers()["location"]
        .to_str()
        .expect("location")
        .to_owned();
    let code = location.split("code=").nth(1).expect("code");
    let (status, tokens) = token_request(
        &server,
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", &redirect),
            ("client_id", "vtelehealth-web"),
            ("code_verifier", &verifier),
        ],
    )
    .await;
    assert_eq!(status, 200, "{tokens}");
    let (_, body) = me(&server, tokens["access_token"].as_str().expect("token")).await;
    assert_eq!(body["principal"]["roles"], json!(["practitioner"]));
    assert_eq!(body["principal"]["hospital_id"], json!("bach-mai"));

    // The demo HIS service client.
    let (client, secret, hospital) = vtelehealth_runtime::identity::DEMO_SERVICE_CLIENT;
    let (status, tokens) = token_request(
        &server,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", client),
            ("client_secret", secret),
        ],
    )
    .await;
    assert_eq!(status, 200, "{tokens}");
    let (_, body) = me(&server, tokens["access_token"].as_str().expect("token")).await;
    assert_eq!(body["principal"]["hospital_id"], json!(hospital));
}

#[tokio::test]
async fn directory_validates_citizen_and_health_ids() {
    let (server, _p) = server().await;
    let id = &server.runtime.identity;
    let mut bad = NewUser::new("000123456789", "X", Role::Citizen, "password-1");
    bad.national_id = Some("000123456789".into());
    assert!(id.create_user(bad).await.is_err(), "province 000");
    let mut bad = NewUser::new("001090000999", "X", Role::Citizen, "password-1");
    bad.national_id = Some("001090000999".into());
    bad.health_id = Some("12345".into());
    assert!(id.create_user(bad).await.is_err(), "short health ID");
    let mut doctor = NewUser::new("bs.x", "BS. X", Role::Practitioner, "password-1");
    doctor.hospital_id = Some("no-such-hospital".into());
    assert!(id.create_user(doctor).await.is_err(), "unknown hospital");
    citizen(&server).await;
    let mut dup = NewUser::new("other", "Y", Role::Citizen, "password-1");
    dup.national_id = Some("001090000123".into());
    assert!(id.create_user(dup).await.is_err(), "duplicate citizen ID");
}
