//! Signing in through an external OpenID Connect provider: the platform as
//! relying party of a real second provider, the built-in one of another
//! runtime in this process, playing VNeID or a hospital's own provider.
//! A citizen and a practitioner sign in in Chromium and land in their
//! console; wrong `state`, wrong `nonce`, an issuer asserting a role it may
//! not and a staff CCCD nobody created are refused with a readable page
//! and create nothing.

use base64::Engine as _;
use serde_json::{Value, json};
use sqlx::Row;
use tempfile::TempDir;
use vtelehealth_runtime::identity::{
    IdentityOptions, LoginConfig, LoginKind, LoginLimits, NewUser, Role, TrustedIssuer,
};
use vtelehealth_runtime::notify::NewMessage;
use vtelehealth_runtime::{RuntimeOptions, api::console::CLIENT_ID};
use vtelehealth_tests::TestServer;
use vtelehealth_tests::browser::{Browser, chromium};
use vtelehealth_tests::common::{CITIZEN_ID, HEALTH_ID, patient_with_lab, user};

use crate::plugin_pages::Console;

/// The platform's client id and secret at the provider.
const CLIENT: &str = "vtelehealth-platform";
const SECRET: &str = "platform-client-secret-0123456789";
const PASSWORD: &str = "mat-khau-123";
/// A practitioner's own citizen ID (CCCD), known to both sides.
const STAFF_CCCD: &str = "001085000111";

/// A provider: a runtime whose built-in provider signs people in.
async fn provider() -> TestServer {
    vtelehealth_tests::common::server().await
}

/// The provider as VNeID: citizens, by CCCD.
fn vneid(provider: &TestServer) -> TrustedIssuer {
    let mut t = TrustedIssuer::new(
        &provider.base,
        "vtelehealth",
        &format!("{}/oidc/jwks", provider.base),
    );
    t.national_ids = true;
    t.login = Some(LoginConfig::new(
        CLIENT,
        SECRET,
        LoginKind::Citizen,
        "VNeID",
        "VNeID",
    ));
    t
}

/// The provider as Bệnh viện A's own: its practitioners only.
fn hospital_a(provider: &TestServer) -> TrustedIssuer {
    let mut t = TrustedIssuer::new(
        &provider.base,
        "vtelehealth",
        &format!("{}/oidc/jwks", provider.base),
    );
    t.allowed_roles = vec![Role::Practitioner];
    t.hospitals = vec!["bv-a".into()];
    t.login = Some(LoginConfig::new(
        CLIENT,
        SECRET,
        LoginKind::Staff,
        "Bệnh viện A",
        "Hospital A",
    ));
    t
}

/// The platform trusting `issuer`, registered at the provider as a
/// confidential client with its callback.
async fn platform(provider: &TestServer, issuer: TrustedIssuer) -> TestServer {
    platform_with(provider, issuer, LoginLimits::default()).await
}

async fn platform_with(
    provider: &TestServer,
    issuer: TrustedIssuer,
    login: LoginLimits,
) -> TestServer {
    let data = TempDir::new().expect("temp dir");
    let options = RuntimeOptions {
        database_url: format!("sqlite://{}", data.path().join("platform.db").display()),
        cache_dir: Some(data.path().join("cache")),
        identity: IdentityOptions {
            trusted_issuers: vec![issuer],
            login,
            ..Default::default()
        },
        ..RuntimeOptions::default()
    };
    let server = TestServer::start_with(options, data).await;
    let callback = server.runtime.identity.login_callback_url();
    provider
        .runtime
        .identity
        .register_confidential_client(CLIENT, "VTelehealth", SECRET, &[&callback])
        .await
        .expect("platform registered at the provider");
    server
}

/// A person at the provider who signs in with [`PASSWORD`]; `cccd` is a
/// staff member's own citizen ID.
async fn provider_user(
    provider: &TestServer,
    username: &str,
    role: Role,
    hospital: Option<&str>,
    cccd: Option<&str>,
) {
    let mut u = NewUser::new(username, &format!("Người {username}"), role, PASSWORD);
    u.hospital_id = hospital.map(Into::into);
    if role == Role::Citizen {
        u.national_id = Some(CITIZEN_ID.into());
        u.health_id = Some(HEALTH_ID.into());
    }
    let created = provider
        .runtime
        .identity
        .create_user(u)
        .await
        .expect("provider user");
    if let Some(cccd) = cccd {
        set_staff_cccd(provider, &created.id, cccd).await;
    }
}

async fn set_staff_cccd(server: &TestServer, user_id: &str, cccd: &str) {
    sqlx::query("UPDATE identity_users SET staff_national_id = $1 WHERE id = $2")
        .bind(cccd)
        .bind(user_id)
        .execute(&server.runtime.db.pool)
        .await
        .expect("staff CCCD");
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

fn location(resp: &reqwest::Response) -> String {
    resp.headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// The console's side of a sign-in: PKCE verifier and the query of its
/// authorization request.
fn console_request(platform: &TestServer) -> (String, String) {
    let verifier = "console-verifier-0123456789-0123456789-0123456789".to_owned();
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(
        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes()).as_ref(),
    );
    let redirect = format!("{}/console/callback", platform.base);
    let query = format!(
        "response_type=code&client_id={CLIENT_ID}&redirect_uri={}&state=console-state&scope=openid\
         &nonce=console-nonce&code_challenge={challenge}&code_challenge_method=S256",
        vtelehealth_runtime::query::encode(&redirect)
    );
    (verifier, query)
}

/// Start at the platform and sign in at the provider's form: the URL the
/// provider sends the browser back to (the platform's callback).
async fn sign_in_at_provider(platform: &TestServer, username: &str) -> String {
    let client = no_redirects();
    let (_, query) = console_request(platform);
    let start = client
        .get(format!("{}/oidc/external/0/start?{query}", platform.base))
        .send()
        .await
        .expect("start");
    assert_eq!(start.status(), 303);
    let to_provider = reqwest::Url::parse(&location(&start)).expect("provider URL");
    let mut form: Vec<(String, String)> = to_provider
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    assert!(
        form.iter()
            .any(|(k, v)| k == "code_challenge_method" && v == "S256")
            && form.iter().any(|(k, _)| k == "nonce"),
        "{form:?}"
    );
    form.push(("username".into(), username.into()));
    form.push(("password".into(), PASSWORD.into()));
    let mut provider_form = to_provider.clone();
    provider_form.set_query(None);
    let signed = client
        .post(provider_form)
        .form(&form)
        .send()
        .await
        .expect("provider login");
    assert_eq!(signed.status(), 303, "the provider signed them in");
    let back = location(&signed);
    assert!(
        back.starts_with(&format!("{}/oidc/external/callback?", platform.base)),
        "{back}"
    );
    back
}

/// Status, `Location` and body of a GET without following redirects.
async fn get(url: &str) -> (u16, String, String) {
    let resp = no_redirects().get(url).send().await.expect("request");
    let status = resp.status().as_u16();
    let to = location(&resp);
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = resp.text().await.unwrap_or_default();
    if status >= 400 {
        assert!(
            content_type.starts_with("text/html"),
            "{content_type}: {body}"
        );
    }
    (status, to, body)
}

async fn count(server: &TestServer, table: &str) -> i64 {
    // Test-controlled table names only.
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT COUNT(*) AS n FROM {table}"
    )))
    .fetch_one(&server.runtime.db.pool)
    .await
    .expect("count")
    .try_get("n")
    .expect("n")
}

/// Redeem the platform's code as the console does; the tokens.
async fn redeem(platform: &TestServer, back_to_console: &str) -> Value {
    let url = reqwest::Url::parse(back_to_console).expect("console URL");
    let q = |k: &str| {
        url.query_pairs()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    assert_eq!(q("state"), "console-state");
    let (verifier, _) = console_request(platform);
    let resp = platform
        .client
        .post(format!("{}/oidc/token", platform.base))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", &q("code")),
            ("client_id", CLIENT_ID),
            (
                "redirect_uri",
                &format!("{}/console/callback", platform.base),
            ),
            ("code_verifier", &verifier),
        ])
        .send()
        .await
        .expect("token");
    assert_eq!(resp.status(), 200);
    resp.json().await.expect("tokens")
}

#[tokio::test]
async fn a_citizen_signs_in_through_vneid_once_created_by_cccd_then_found_by_the_link() {
    let vneid_server = provider().await;
    provider_user(&vneid_server, "an", Role::Citizen, None, None).await;
    let platform = platform(&vneid_server, vneid(&vneid_server)).await;

    let back = sign_in_at_provider(&platform, "an").await;
    let (status, to, body) = get(&back).await;
    assert_eq!(status, 303, "{body}");
    assert!(
        to.starts_with(&format!("{}/console/callback?code=", platform.base)),
        "{to}"
    );
    let tokens = redeem(&platform, &to).await;
    let me = platform
        .client
        .get(format!("{}/api/v1/me", platform.base))
        .bearer_auth(tokens["access_token"].as_str().expect("access token"))
        .send()
        .await
        .expect("me")
        .json::<Value>()
        .await
        .expect("json");
    let p = &me["principal"];
    assert_eq!(p["roles"], json!(["citizen"]));
    assert_eq!(p["national_id"], json!(CITIZEN_ID));
    assert_eq!(
        p["health_id"],
        json!(HEALTH_ID),
        "the BHXH number is stored"
    );
    assert_eq!(
        p["issuer"],
        json!(platform.base),
        "the platform's own token"
    );
    let account = platform
        .runtime
        .identity
        .user_by_username(CITIZEN_ID)
        .await
        .expect("query")
        .expect("created by CCCD");
    assert_eq!(
        p["sub"].as_str().or(p["subject"].as_str()),
        Some(account.id.as_str())
    );

    // Again: found by (issuer, sub), the same account, one link.
    let back = sign_in_at_provider(&platform, "an").await;
    let (status, to, _) = get(&back).await;
    assert_eq!(status, 303);
    let tokens = redeem(&platform, &to).await;
    assert!(tokens["access_token"].is_string());
    assert_eq!(count(&platform, "external_identities").await, 1);
    assert_eq!(
        count(&platform, "identity_users WHERE role = 'citizen'").await,
        1
    );
    // The state was spent: the same callback again is refused.
    let (status, _, body) = get(&back).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("Phiên đăng nhập không hợp lệ"), "{body}");

    // A suspended account is refused, however good the provider's word.
    sqlx::query("UPDATE identity_users SET status = 'suspended' WHERE id = $1")
        .bind(&account.id)
        .execute(&platform.runtime.db.pool)
        .await
        .expect("suspend");
    let back = sign_in_at_provider(&platform, "an").await;
    let (status, _, body) = get(&back).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("Tài khoản này đang bị tạm khóa"), "{body}");
}

#[tokio::test]
async fn a_flood_of_forged_callbacks_backs_off_per_address() {
    let vneid_server = provider().await;
    let platform = platform_with(
        &vneid_server,
        vneid(&vneid_server),
        LoginLimits {
            address_free_failures: 3,
            ..LoginLimits::default()
        },
    )
    .await;
    for i in 0..4 {
        let url = format!(
            "{}/oidc/external/callback?code=c&state=guess-{i}",
            platform.base
        );
        let (status, _, body) = get(&url).await;
        assert_eq!(status, 400, "{body}");
    }
    let resp = no_redirects()
        .get(format!(
            "{}/oidc/external/callback?code=c&state=guess-5",
            platform.base
        ))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 429);
    assert!(resp.headers().get("retry-after").is_some());
    let body = resp.text().await.unwrap_or_default();
    assert!(
        body.contains("Quá nhiều lần đăng nhập không thành công"),
        "{body}"
    );
}

#[tokio::test]
async fn a_wrong_state_is_refused_with_a_page_and_creates_nothing() {
    let vneid_server = provider().await;
    provider_user(&vneid_server, "an", Role::Citizen, None, None).await;
    let platform = platform(&vneid_server, vneid(&vneid_server)).await;
    let users = count(&platform, "identity_users").await;

    let back = sign_in_at_provider(&platform, "an").await;
    let mut url = reqwest::Url::parse(&back).expect("callback");
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| {
            let v = if k == "state" {
                format!("{v}x")
            } else {
                v.into_owned()
            };
            (k.into_owned(), v)
        })
        .collect();
    url.query_pairs_mut().clear().extend_pairs(pairs);
    let (status, _, body) = get(url.as_str()).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("Phiên đăng nhập không hợp lệ, đã dùng hoặc đã hết hạn"),
        "{body}"
    );
    assert!(body.contains("this sign-in is unknown"), "English second");
    assert_eq!(count(&platform, "identity_users").await, users);
    assert_eq!(count(&platform, "external_identities").await, 0);

    // The provider's own refusal (the person cancelled): a page too.
    let (_, query) = console_request(&platform);
    let start = no_redirects()
        .get(format!("{}/oidc/external/0/start?{query}", platform.base))
        .send()
        .await
        .expect("start");
    let to_provider = reqwest::Url::parse(&location(&start)).expect("provider URL");
    let state = to_provider
        .query_pairs()
        .find(|(k, _)| k == "state")
        .map(|(_, v)| v.into_owned())
        .expect("state");
    let (status, _, body) = get(&format!(
        "{}/oidc/external/callback?error=access_denied&state={}",
        platform.base,
        vtelehealth_runtime::query::encode(&state)
    ))
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("Nhà cung cấp định danh không cho đăng nhập (access_denied)"),
        "{body}"
    );
    assert_eq!(count(&platform, "identity_users").await, users);
}

#[tokio::test]
async fn a_wrong_nonce_is_refused_with_a_page_and_creates_nothing() {
    let vneid_server = provider().await;
    provider_user(&vneid_server, "an", Role::Citizen, None, None).await;
    let platform = platform(&vneid_server, vneid(&vneid_server)).await;
    let users = count(&platform, "identity_users").await;

    let back = sign_in_at_provider(&platform, "an").await;
    // The provider's ID token carries the nonce it was sent; the pending
    // login now expects another.
    sqlx::query("UPDATE external_logins SET nonce = 'another-nonce'")
        .execute(&platform.runtime.db.pool)
        .await
        .expect("tamper");
    let (status, _, body) = get(&back).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("Thông tin định danh nhận được không hợp lệ (wrong nonce)"),
        "{body}"
    );
    assert_eq!(count(&platform, "identity_users").await, users);
    assert_eq!(count(&platform, "external_identities").await, 0);
}

#[tokio::test]
async fn an_issuer_asserting_a_role_it_may_not_is_refused_audited_and_creates_nothing() {
    // "VNeID" signs in someone it calls a practitioner: it may assert citizens only.
    let vneid_server = provider().await;
    provider_user(
        &vneid_server,
        "bs.gia",
        Role::Practitioner,
        Some("bv-a"),
        None,
    )
    .await;
    let platform = platform(&vneid_server, vneid(&vneid_server)).await;
    let users = count(&platform, "identity_users").await;

    let back = sign_in_at_provider(&platform, "bs.gia").await;
    let (status, _, body) = get(&back).await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body.contains("không được phép xác nhận vai trò `practitioner`"),
        "{body}"
    );
    assert_eq!(count(&platform, "identity_users").await, users);
    assert_eq!(count(&platform, "external_identities").await, 0);
    let audited = count(
        &platform,
        "audit_events WHERE action = 'identity.login_refused'",
    )
    .await;
    assert_eq!(audited, 1);
}

#[tokio::test]
async fn a_staff_cccd_no_hospital_admin_created_is_refused_and_no_account_is_made() {
    let hospital_server = provider().await;
    provider_user(
        &hospital_server,
        "bs.moi",
        Role::Practitioner,
        Some("bv-a"),
        Some(STAFF_CCCD),
    )
    .await;
    let platform = platform(&hospital_server, hospital_a(&hospital_server)).await;
    let users = count(&platform, "identity_users").await;

    let back = sign_in_at_provider(&platform, "bs.moi").await;
    let (status, _, body) = get(&back).await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body.contains("Không tìm thấy tài khoản nhân viên y tế"),
        "{body}"
    );
    assert_eq!(count(&platform, "identity_users").await, users);
    assert_eq!(count(&platform, "external_identities").await, 0);
}

/// Sign in at the provider's own form in the browser, once it shows.
async fn provider_form(c: &mut Console, provider: &TestServer, username: &str) {
    let host = serde_json::to_string(&provider.addr.to_string()).expect("host");
    c.wait(
        &format!(
            "location.host === {host} && location.pathname === '/oidc/authorize' && !!document.querySelector('input[name=username]')"
        ),
        "the provider's sign-in form",
    )
    .await;
    c.type_into("input[name=username]", username).await;
    c.type_into("input[name=password]", PASSWORD).await;
    c.press_enter().await;
}

#[tokio::test]
async fn in_chromium_a_citizen_signs_in_with_vneid_and_sees_records_and_notifications() {
    let Some(chromium) = chromium() else { return };
    let vneid_server = provider().await;
    provider_user(&vneid_server, "an", Role::Citizen, None, None).await;
    let platform = platform(&vneid_server, vneid(&vneid_server)).await;
    // A record about them at Bệnh viện A, stored before they ever signed in.
    let doctor = user(&platform, "bs.a", Role::Practitioner, Some("bv-a")).await;
    patient_with_lab(&platform, &doctor).await;

    let browser = Browser::launch(&chromium, "about:blank")
        .await
        .expect("chromium");
    let mut c = Console {
        browser,
        base: platform.base.clone(),
        shots_dir: vtelehealth_tests::repo_root()
            .join("target")
            .join("console-screenshots"),
    };
    std::fs::create_dir_all(&c.shots_dir).expect("screenshot dir");
    c.browser
        .call(
            "Page.navigate",
            json!({ "url": format!("{}/console/", platform.base) }),
        )
        .await
        .expect("navigate");
    let label = c
        .wait(
            "(() => { const b = document.querySelector('#sign-in-providers [data-kind=citizen]'); return b && b.textContent; })()",
            "the VNeID button",
        )
        .await;
    assert_eq!(label, json!("Đăng nhập bằng VNeID"));
    c.screenshot("sign-in-vi", 1280, false).await;
    c.mouse_click("#sign-in-providers [data-kind=citizen]")
        .await;
    provider_form(&mut c, &vneid_server, "an").await;
    c.wait(
        "location.pathname === '/console/' && !!document.getElementById('tab-records') && !document.querySelector('main[aria-busy]')",
        "the citizen's console",
    )
    .await;
    let host = c.eval("location.host").await;
    assert_eq!(host, json!(platform.addr.to_string()));
    let record = c
        .wait(
            "(() => { const t = document.querySelector('.records-table[data-hospital=\"bv-a\"]'); return t && t.innerText; })()",
            "their record at bv-a",
        )
        .await;
    assert!(!record.as_str().unwrap_or_default().is_empty());

    // A notification to the account the sign-in created.
    let account = platform
        .runtime
        .identity
        .user_by_username(CITIZEN_ID)
        .await
        .expect("query")
        .expect("account");
    platform
        .runtime
        .notifications
        .send(
            "bv-a",
            "teleconsult",
            "system",
            std::slice::from_ref(&account.id),
            &NewMessage {
                topic: "appointment.reminder".into(),
                title: "Lịch hẹn khám ngày mai".into(),
                data: "{}".into(),
                link: None,
            },
        )
        .await
        .expect("notification");
    c.mouse_click("#tab-notices").await;
    let notice = c
        .wait(
            "(() => { const l = document.querySelector('#notices li'); return l && l.innerText; })()",
            "the notification",
        )
        .await;
    assert!(
        notice
            .as_str()
            .unwrap_or_default()
            .contains("Lịch hẹn khám ngày mai"),
        "{notice}"
    );
    c.screenshot("citizen-signed-in-with-vneid", 1280, false)
        .await;
}

#[tokio::test]
async fn in_chromium_a_practitioner_signs_in_through_their_hospital_and_lands_in_the_workspace() {
    let Some(chromium) = chromium() else { return };
    let hospital_server = provider().await;
    provider_user(
        &hospital_server,
        "bs.lan",
        Role::Practitioner,
        Some("bv-a"),
        Some(STAFF_CCCD),
    )
    .await;
    let platform = platform(&hospital_server, hospital_a(&hospital_server)).await;
    // The account Bệnh viện A's admin created, with the same CCCD.
    let mut doctor = NewUser::new("lan.nguyen", "BS Nguyễn Lan", Role::Practitioner, PASSWORD);
    doctor.hospital_id = Some("bv-a".into());
    let doctor = platform
        .runtime
        .identity
        .create_user(doctor)
        .await
        .expect("practitioner");
    set_staff_cccd(&platform, &doctor.id, STAFF_CCCD).await;

    let browser = Browser::launch(&chromium, "about:blank")
        .await
        .expect("chromium");
    let mut c = Console {
        browser,
        base: platform.base.clone(),
        shots_dir: vtelehealth_tests::repo_root()
            .join("target")
            .join("console-screenshots"),
    };
    std::fs::create_dir_all(&c.shots_dir).expect("screenshot dir");
    c.browser
        .call(
            "Page.navigate",
            json!({ "url": format!("{}/console/", platform.base) }),
        )
        .await
        .expect("navigate");
    let label = c
        .wait(
            "(() => { const b = document.querySelector('#sign-in-providers [data-kind=staff]'); return b && b.textContent; })()",
            "the hospital button",
        )
        .await;
    assert_eq!(label, json!("Đăng nhập bằng tài khoản bệnh viện"));
    // This time through the platform's own login page, which offers the
    // same button beside its form.
    c.mouse_click("#sign-in").await;
    let label = c
        .wait(
            "location.pathname === '/oidc/authorize' && (() => { const b = document.querySelector('a[data-kind=staff]'); return b && b.textContent; })()",
            "the hospital button on the login page",
        )
        .await;
    assert_eq!(label, json!("Đăng nhập bằng tài khoản bệnh viện"));
    c.screenshot("login-page-with-hospital-button", 1280, false)
        .await;
    c.mouse_click("a[data-kind=staff]").await;
    provider_form(&mut c, &hospital_server, "bs.lan").await;
    c.wait(
        "location.pathname === '/console/' && !!document.getElementById('tab-workspace') && !document.querySelector('main[aria-busy]')",
        "the practitioner's workspace",
    )
    .await;
    let who = c.eval("document.getElementById('who').textContent").await;
    assert!(
        who.as_str().unwrap_or_default().contains("BS Nguyễn Lan"),
        "{who}"
    );
    let linked: String = sqlx::query("SELECT user_id FROM external_identities")
        .fetch_one(&platform.runtime.db.pool)
        .await
        .expect("link")
        .try_get("user_id")
        .expect("user_id");
    assert_eq!(linked, doctor.id);
    c.screenshot("practitioner-signed-in-with-hospital", 1280, false)
        .await;
}

#[tokio::test]
async fn the_login_page_speaks_one_language_offers_the_buttons_and_lists_demo_accounts_only_in_a_demo()
 {
    let vneid_server = provider().await;
    let platform = platform(&vneid_server, vneid(&vneid_server)).await;
    let (_, query) = console_request(&platform);
    let page = |lang: &'static str| {
        let url = format!("{}/oidc/authorize?{query}{lang}", platform.base);
        async move { get(&url).await }
    };
    let (status, _, vi) = page("").await;
    assert_eq!(status, 200);
    assert!(
        vi.contains("Đăng nhập bằng VNeID") && vi.contains("/oidc/external/0/start?"),
        "{vi}"
    );
    assert!(!vi.contains("Sign in with VNeID") && vi.contains("lang=en"));
    assert!(
        !vi.contains("demo-accounts"),
        "no demo accounts outside a demo"
    );
    let (_, _, en) = page("&lang=en").await;
    assert!(
        en.contains("Sign in with VNeID") && !en.contains("Mật khẩu"),
        "{en}"
    );
    let (_, _, en) = page("&ui_locales=en-GB%20vi").await;
    assert!(en.contains("Sign in with VNeID"), "{en}");
    let options: Value = reqwest::get(format!("{}/oidc/sign-in-options", platform.base))
        .await
        .expect("options")
        .json()
        .await
        .expect("json");
    assert_eq!(
        options,
        json!({ "providers": [{ "index": 0, "kind": "citizen", "label_vi": "VNeID", "label_en": "VNeID" }], "demo_accounts": null })
    );
    // An unknown provider number: a page, not JSON.
    let (status, _, body) = get(&format!("{}/oidc/external/7/start?{query}", platform.base)).await;
    assert_eq!(status, 404);
    assert!(
        body.contains("Không có nhà cung cấp định danh này"),
        "{body}"
    );

    // A demo run lists its (public) demo accounts.
    let data = TempDir::new().expect("temp dir");
    let demo = TestServer::start_with(
        RuntimeOptions {
            database_url: format!("sqlite://{}", data.path().join("demo.db").display()),
            cache_dir: Some(data.path().join("cache")),
            demo: true,
            ..RuntimeOptions::default()
        },
        data,
    )
    .await;
    let (_, query) = console_request(&demo);
    let (status, _, html) = get(&format!("{}/oidc/authorize?{query}", demo.base)).await;
    assert_eq!(status, 200);
    assert!(
        html.contains("demo-accounts")
            && html.contains("bs.bachmai")
            && html.contains("demo-bacsi"),
        "{html}"
    );
}

/// Bệnh viện A's provider with a licence claim.
fn hospital_a_with_licence(provider: &TestServer) -> TrustedIssuer {
    let mut t = hospital_a(provider);
    if let Some(l) = t.login.as_mut() {
        l.licence_claim = Some("licence_number".into());
    }
    t
}

/// A practitioner account at the platform, as an admin made it.
async fn platform_doctor(platform: &TestServer, username: &str, hospital: &str) -> String {
    let mut doctor = NewUser::new(username, "BS Nguyễn Lan", Role::Practitioner, PASSWORD);
    doctor.hospital_id = Some(hospital.into());
    platform
        .runtime
        .identity
        .create_user(doctor)
        .await
        .expect("practitioner")
        .id
}

#[tokio::test]
async fn an_account_holding_a_role_the_issuer_may_not_assert_is_refused_and_audited() {
    let hospital_server = provider().await;
    provider_user(
        &hospital_server,
        "bs.lan",
        Role::Practitioner,
        Some("bv-a"),
        Some(STAFF_CCCD),
    )
    .await;
    let platform = platform(&hospital_server, hospital_a(&hospital_server)).await;
    // Primary role practitioner, but also the hospital's admin: the
    // provider may vouch for practitioners only.
    let id = platform_doctor(&platform, "lan.nguyen", "bv-a").await;
    set_staff_cccd(&platform, &id, STAFF_CCCD).await;
    sqlx::query("UPDATE identity_users SET roles = ' practitioner hospital-admin ' WHERE id = $1")
        .bind(&id)
        .execute(&platform.runtime.db.pool)
        .await
        .expect("roles");

    let back = sign_in_at_provider(&platform, "bs.lan").await;
    let (status, _, body) = get(&back).await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body.contains("không được phép xác nhận vai trò `hospital-admin`"),
        "{body}"
    );
    assert_eq!(count(&platform, "external_identities").await, 0);
    assert_eq!(
        count(
            &platform,
            "audit_events WHERE action = 'identity.login_refused'"
        )
        .await,
        1
    );
}

#[tokio::test]
async fn signing_in_through_the_hospital_spends_the_invitation() {
    let hospital_server = provider().await;
    provider_user(
        &hospital_server,
        "bs.lan",
        Role::Practitioner,
        Some("bv-a"),
        Some(STAFF_CCCD),
    )
    .await;
    let platform = platform(&hospital_server, hospital_a(&hospital_server)).await;
    let new = vtelehealth_runtime::identity::staff::NewStaff {
        username: "lan.nguyen".into(),
        display_name: "BS Nguyễn Lan".into(),
        national_id: STAFF_CCCD.into(),
        licence_number: Some("001234/BYT-GPHN".into()),
        roles: vec!["practitioner".into()],
        ..Default::default()
    };
    let (doctor, invitation) = platform
        .runtime
        .identity
        .create_staff(
            "bv-a",
            &new,
            "test:seed",
            vtelehealth_runtime::identity::staff::Creation::Unaudited,
        )
        .await
        .expect("invited");

    let back = sign_in_at_provider(&platform, "bs.lan").await;
    let (status, _, body) = get(&back).await;
    assert_eq!(status, 303, "{body}");

    // The link no longer sets a password; the account is not pending.
    let (status, _, body) = get(&invitation.url).await;
    assert_eq!(status, 410, "{body}");
    let member = platform
        .runtime
        .identity
        .staff_member("bv-a", &doctor.id)
        .await
        .expect("member");
    assert!(!member.invitation_pending);
    // And no new link can be issued for it.
    let mut admin = NewUser::new("qt.a", "Quản trị A", Role::HospitalAdmin, PASSWORD);
    admin.hospital_id = Some("bv-a".into());
    let admin = platform
        .runtime
        .identity
        .create_user(admin)
        .await
        .expect("admin");
    let token = platform.runtime.identity.token_for(&admin).expect("token");
    let resp = platform
        .client
        .post(format!(
            "{}/api/v1/hospitals/bv-a/staff/{}/invitation",
            platform.base, doctor.id
        ))
        .bearer_auth(token)
        .send()
        .await
        .expect("reissue");
    assert_eq!(resp.status(), 409);
    let body: Value = resp.json().await.expect("json");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("external identity provider")),
        "{body}"
    );
}

#[tokio::test]
async fn the_licence_is_matched_as_stored_and_only_at_the_issuers_hospitals() {
    let hospital_server = provider().await;
    provider_user(
        &hospital_server,
        "bs.lan",
        Role::Practitioner,
        Some("bv-a"),
        Some(STAFF_CCCD),
    )
    .await;
    // The provider writes the licence its own way.
    sqlx::query(
        "UPDATE identity_users SET licence_number = ' 001234/byt-gphn ' WHERE username = 'bs.lan'",
    )
    .execute(&hospital_server.runtime.db.pool)
    .await
    .expect("licence");
    let platform = platform(&hospital_server, hospital_a_with_licence(&hospital_server)).await;
    // Another hospital's account holds the same CCCD: not this issuer's.
    let other = platform_doctor(&platform, "lan.khac", "bv-b").await;
    set_staff_cccd(&platform, &other, STAFF_CCCD).await;
    let doctor = platform_doctor(&platform, "lan.nguyen", "bv-a").await;
    sqlx::query("UPDATE identity_users SET licence_number = '001234/BYT-GPHN' WHERE id = $1")
        .bind(&doctor)
        .execute(&platform.runtime.db.pool)
        .await
        .expect("licence");

    let back = sign_in_at_provider(&platform, "bs.lan").await;
    let (status, _, body) = get(&back).await;
    assert_eq!(status, 303, "{body}");
    let linked: String = sqlx::query("SELECT user_id FROM external_identities")
        .fetch_one(&platform.runtime.db.pool)
        .await
        .expect("link")
        .try_get("user_id")
        .expect("user_id");
    assert_eq!(linked, doctor);
}

#[tokio::test]
async fn a_burst_of_sign_in_starts_from_one_address_gets_429() {
    let vneid_server = provider().await;
    let platform = platform_with(
        &vneid_server,
        vneid(&vneid_server),
        LoginLimits {
            address_free_failures: 3,
            ..LoginLimits::default()
        },
    )
    .await;
    let (_, query) = console_request(&platform);
    let url = format!("{}/oidc/external/0/start?{query}", platform.base);
    for _ in 0..4 {
        let (status, _, body) = get(&url).await;
        assert_eq!(status, 303, "{body}");
    }
    let resp = no_redirects().get(&url).send().await.expect("start");
    assert_eq!(resp.status(), 429);
    assert!(resp.headers().get("retry-after").is_some());
    let body = resp.text().await.unwrap_or_default();
    assert!(body.contains("Quá nhiều lần"), "{body}");
    assert_eq!(count(&platform, "external_logins").await, 4);
}

#[tokio::test]
async fn a_public_client_asking_for_profile_gets_no_national_ids() {
    let provider = provider().await;
    provider_user(&provider, "an", Role::Citizen, None, None).await;
    let (verifier, query) = console_request(&provider);
    let query = query.replace("scope=openid", "scope=openid%20profile");
    let authorize = reqwest::Url::parse(&format!("{}/oidc/authorize?{query}", provider.base))
        .expect("authorize URL");
    let mut form: Vec<(String, String)> = authorize
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    form.push(("username".into(), "an".into()));
    form.push(("password".into(), PASSWORD.into()));
    let signed = no_redirects()
        .post(format!("{}/oidc/authorize", provider.base))
        .form(&form)
        .send()
        .await
        .expect("login");
    assert_eq!(signed.status(), 303);
    let back = reqwest::Url::parse(&location(&signed)).expect("callback");
    let code = back
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .expect("code");
    let tokens: Value = provider
        .client
        .post(format!("{}/oidc/token", provider.base))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("client_id", CLIENT_ID),
            (
                "redirect_uri",
                &format!("{}/console/callback", provider.base),
            ),
            ("code_verifier", &verifier),
        ])
        .send()
        .await
        .expect("token")
        .json()
        .await
        .expect("tokens");
    let id_token = tokens["id_token"].as_str().expect("ID token");
    let payload = id_token.split('.').nth(1).expect("payload");
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .expect("base64"),
    )
    .expect("claims");
    assert_eq!(claims["roles"], json!(["citizen"]), "{claims}");
    for claim in ["national_id", "health_id", "licence_number"] {
        assert!(claims.get(claim).is_none(), "{claim} in {claims}");
    }
}
