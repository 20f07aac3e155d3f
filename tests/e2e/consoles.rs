//! The web consoles in a real headless Chromium: a vendor uploads a signed
//! bundle, a reviewer narrows and approves it, a hospital admin activates
//! it through the generated configuration form, a practitioner opens the
//! plugin's page inside the console, and the citizen sees that read in
//! their access log; with the bad inputs (a bundle that fails its checks,
//! an invalid configuration, an expired session, double clicks) and a
//! screenshot of each console in `target/console-screenshots`. Also the
//! role checks of the APIs the consoles added.

use std::path::PathBuf;
use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};
use vtelehealth_runtime::config::Limits;
use vtelehealth_runtime::governance::bundle::Bundle;
use vtelehealth_runtime::governance::signing::SigningKey;
use vtelehealth_runtime::identity::{NewUser, Role};
use vtelehealth_runtime::records::{BHYT_SYSTEM, CCCD_SYSTEM};
use vtelehealth_tests::browser::{Browser, chromium};
use vtelehealth_tests::{TestServer, component, plugin_dir, repo_root, test_plugin_dir};

const PASSWORD: &str = "password-1";
const VENDOR: &str = "vtelehealth-tests";
const CITIZEN_ID: &str = "001088054321";
const HEALTH_ID: &str = "0198765432";

/// Create a user who can log in with [`PASSWORD`]; returns an API token.
async fn user(
    server: &TestServer,
    username: &str,
    name: &str,
    role: Role,
    hospital: Option<&str>,
) -> String {
    let mut u = NewUser::new(username, name, role, PASSWORD);
    u.hospital_id = hospital.map(Into::into);
    if role == Role::VendorUser {
        u.vendor_id = Some(VENDOR.into());
    }
    if role == Role::Citizen {
        u.national_id = Some(CITIZEN_ID.into());
        u.health_id = Some(HEALTH_ID.into());
    }
    let user = server.runtime.identity.create_user(u).await.expect("user");
    server.runtime.identity.token_for(&user).expect("token")
}

async fn send(
    server: &TestServer,
    method: &str,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (u16, Value) {
    vtelehealth_tests::common::send(server, method, path, token, body, &[]).await
}

/// Submit a signed bundle as `vendor`; the new version's id.
async fn submit(server: &TestServer, vendor: &str, bundle: &Bundle) -> String {
    let resp = server
        .client
        .post(format!("{}/api/v1/plugin-versions", server.base))
        .bearer_auth(vendor)
        .header("content-type", "application/json")
        .body(bundle.to_json())
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status().as_u16(), 201);
    resp.json::<Value>().await.expect("json")["id"]
        .as_str()
        .expect("id")
        .to_owned()
}

/// Submit a signed bundle and have the reviewer approve it; its id.
async fn submit_approved(
    server: &TestServer,
    vendor: &str,
    reviewer: &str,
    bundle: &Bundle,
) -> String {
    let id = submit(server, vendor, bundle).await;
    let (s, b) = send(
        server,
        "POST",
        &format!("/api/v1/plugin-versions/{id}/approve"),
        reviewer,
        Some(json!({ "note": "ok" })),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    id
}

/// A bundle of a built component whose manifest names `vendor`.
fn bundle_of(dir: &std::path::Path, id: &str, vendor_from: &str, version: Option<&str>) -> Bundle {
    let (wasm, toml) = component(dir, id);
    let mut manifest = std::fs::read_to_string(toml).expect("manifest").replace(
        &format!("vendor = \"{vendor_from}\""),
        &format!("vendor = \"{VENDOR}\""),
    );
    if let Some(v) = version {
        manifest = manifest.replace("version = \"0.1.0\"", &format!("version = \"{v}\""));
    }
    Bundle::new(manifest, std::fs::read(wasm).expect("component"))
}

fn screenshot_dir() -> PathBuf {
    let dir = repo_root().join("target").join("console-screenshots");
    std::fs::create_dir_all(&dir).expect("screenshot dir");
    dir
}

/// A console page in Chromium, driven through the DevTools protocol.
pub(crate) struct Console {
    browser: Browser,
    base: String,
}

impl Console {
    pub(crate) fn new(browser: Browser, base: String) -> Self {
        Self { browser, base }
    }

    pub(crate) async fn kill(self) {
        self.browser.kill().await;
    }

    /// Poll `js` (an expression) until it is truthy; its value. Bounded,
    /// never a timing assertion: the panic names what was awaited.
    pub(crate) async fn wait(&mut self, js: &str, what: &str) -> Value {
        let mut last = Value::Null;
        for _ in 0..300 {
            // Evaluation fails while a navigation replaces the page: retry.
            if let Ok(v) = self
                .browser
                .eval(&format!(
                    "(() => {{ try {{ return {js}; }} catch (e) {{ return null; }} }})()"
                ))
                .await
            {
                if !(v.is_null() || v == json!(false) || v == json!("") || v == json!(0)) {
                    return v;
                }
                last = v;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let msg = self
            .browser
            .eval("document.body ? document.body.innerText : ''")
            .await
            .unwrap_or_default();
        panic!("waited in vain for {what} ({js}); last value {last}; page text: {msg}");
    }

    pub(crate) async fn eval(&mut self, js: &str) -> Value {
        self.browser.eval(js).await.expect("page script")
    }

    /// Click `selector` once it exists and is enabled (a real `click()`,
    /// which runs the same handlers as a mouse click).
    pub(crate) async fn click(&mut self, selector: &str) {
        let sel = serde_json::to_string(selector).expect("selector");
        self.wait(
            &format!("(() => {{ const e = document.querySelector({sel}); return !!e && !e.disabled; }})()"),
            &format!("{selector} to be clickable"),
        )
        .await;
        self.eval(&format!("document.querySelector({sel}).click()"))
            .await;
    }

    /// Focus `selector`, clear it and type `text` as keyboard input.
    pub(crate) async fn type_into(&mut self, selector: &str, text: &str) {
        let sel = serde_json::to_string(selector).expect("selector");
        self.wait(&format!("!!document.querySelector({sel})"), selector)
            .await;
        self.eval(&format!(
            "(() => {{ const e = document.querySelector({sel}); e.focus(); e.select && e.select(); e.value = ''; }})()"
        ))
        .await;
        self.browser
            .call("Input.insertText", json!({ "text": text }))
            .await
            .expect("insertText");
    }

    /// The text of the message region, once it shows a message of `kind`.
    pub(crate) async fn message(&mut self, kind: &str) -> String {
        let k = serde_json::to_string(kind).expect("kind");
        self.wait(
            &format!("window.vthConsole && window.vthConsole.messageKind() === {k} && window.vthConsole.message()"),
            &format!("a message of kind {kind}"),
        )
        .await
        .as_str()
        .unwrap_or_default()
        .to_owned()
    }

    pub(crate) async fn clear_message(&mut self) {
        self.eval("document.getElementById('messages').replaceChildren()")
            .await;
    }

    pub(crate) async fn goto(&mut self, url: &str) {
        self.browser
            .call("Page.navigate", json!({ "url": url }))
            .await
            .expect("navigate");
    }

    /// Press Enter on the focused element, as a keyboard does.
    pub(crate) async fn press_enter(&mut self) {
        for kind in ["keyDown", "keyUp"] {
            let mut key = json!({ "type": kind, "key": "Enter", "code": "Enter",
                "windowsVirtualKeyCode": 13, "nativeVirtualKeyCode": 13 });
            if kind == "keyDown" {
                key["text"] = json!("\r");
            }
            self.browser
                .call("Input.dispatchKeyEvent", key)
                .await
                .expect("key event");
        }
    }

    /// Sign in with the keyboard only: the console's button, then the
    /// provider's real form, submitted with Enter.
    pub(crate) async fn login(&mut self, username: &str) {
        self.login_with(username, PASSWORD).await;
    }

    /// [`Self::login`] with the password the person chose.
    pub(crate) async fn login_with(&mut self, username: &str, password: &str) {
        let url = format!("{}/console/", self.base);
        self.goto(&url).await;
        self.wait("!!document.getElementById('sign-in')", "the sign-in button")
            .await;
        self.eval("document.getElementById('sign-in').focus()")
            .await;
        self.press_enter().await;
        self.wait(
            "location.pathname === '/oidc/authorize' && !!document.querySelector('input[name=username]')",
            "the login form",
        )
        .await;
        self.type_into("input[name=username]", username).await;
        self.type_into("input[name=password]", password).await;
        self.press_enter().await;
        self.wait(
            "location.pathname === '/console/' && document.querySelectorAll('#tabs button').length > 0 && !document.querySelector('main[aria-busy]')",
            &format!("{username}'s console"),
        )
        .await;
    }

    /// The console's tabs: each role sees its own only.
    pub(crate) async fn assert_tabs(&mut self, expected: &[&str]) {
        let tabs = self
            .eval(
                "[...document.querySelectorAll('#tabs button')].map(b => b.id.replace('tab-', ''))",
            )
            .await;
        assert_eq!(tabs, json!(expected), "tabs of this role");
    }

    pub(crate) async fn sign_out(&mut self) {
        self.click("#sign-out").await;
        self.wait("!!document.getElementById('sign-in')", "the sign-in screen")
            .await;
    }

    /// Open a tab and wait until its view is rendered.
    pub(crate) async fn tab(&mut self, name: &str) {
        self.click(&format!("#tab-{name}")).await;
        self.wait(
            &format!("document.getElementById('main').dataset.view === '{name}' && !document.querySelector('main[aria-busy]')"),
            &format!("the {name} view"),
        )
        .await;
    }

    /// Every form control has a label, and nothing is wider than the page.
    pub(crate) async fn check_quality(&mut self, width: u32) {
        let unlabelled = self
            .eval(
                "[...document.querySelectorAll('input, select, textarea')].filter(i => i.type !== 'hidden' && !(i.labels && i.labels.length)).map(i => i.id || i.name)",
            )
            .await;
        assert_eq!(unlabelled, json!([]), "controls without a label");
        let clickable_divs = self
            .eval("[...document.querySelectorAll('div[onclick], span[onclick]')].length")
            .await;
        assert_eq!(clickable_divs, json!(0));
        let wide = self.eval("document.documentElement.scrollWidth").await;
        assert!(
            wide.as_u64().unwrap_or(u64::MAX) <= u64::from(width),
            "the page is {wide} px wide at {width} px"
        );
    }

    pub(crate) async fn screenshot(&mut self, name: &str) {
        let shot = self
            .browser
            .call(
                "Page.captureScreenshot",
                json!({ "format": "png", "captureBeyondViewport": true }),
            )
            .await
            .expect("screenshot");
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().unwrap_or_default())
            .expect("png");
        let path = screenshot_dir().join(format!("{name}.png"));
        std::fs::write(&path, png).expect("write screenshot");
        println!("screenshot: {}", path.display());
    }

    pub(crate) async fn set_width(&mut self, width: u32, mobile: bool) {
        self.browser
            .call(
                "Emulation.setDeviceMetricsOverride",
                json!({ "width": width, "height": 900, "deviceScaleFactor": 1, "mobile": mobile }),
            )
            .await
            .expect("device metrics");
    }

    /// Put a file into a file input, as a person choosing it would.
    pub(crate) async fn choose_file(&mut self, selector: &str, path: &std::path::Path) {
        let sel = serde_json::to_string(selector).expect("selector");
        let found = self
            .browser
            .call(
                "Runtime.evaluate",
                json!({ "expression": format!("document.querySelector({sel})") }),
            )
            .await
            .expect("find input");
        let object_id = found["result"]["objectId"]
            .as_str()
            .expect("file input")
            .to_owned();
        self.browser
            .call(
                "DOM.setFileInputFiles",
                json!({ "files": [path.display().to_string()], "objectId": object_id }),
            )
            .await
            .expect("set file");
    }
}

struct World {
    server: TestServer,
    reviewer: String,
    admin_a: String,
    citizen: String,
    vendor: String,
    /// visit-counter 0.1.0 (approved) and 0.2.0 (submitted).
    counter_v1: String,
    counter_v2: String,
    key: SigningKey,
    files: tempfile::TempDir,
}

async fn world() -> World {
    let no_dev_plugins = tempfile::TempDir::new().expect("dir");
    let server = TestServer::start(no_dev_plugins.path(), Limits::default()).await;
    server
        .runtime
        .identity
        .create_vendor(VENDOR, "Công ty Kiểm thử")
        .await
        .expect("vendor");
    let vendor = user(
        &server,
        "dev.tests",
        "Lập trình viên",
        Role::VendorUser,
        None,
    )
    .await;
    let reviewer = user(&server, "thamdinh", "Thẩm định viên", Role::Reviewer, None).await;
    let admin_a = user(
        &server,
        "qt.a",
        "Quản trị A",
        Role::HospitalAdmin,
        Some("bv-a"),
    )
    .await;
    user(
        &server,
        "bs.a",
        "BS Lê Văn Tâm",
        Role::Practitioner,
        Some("bv-a"),
    )
    .await;
    let citizen = user(&server, CITIZEN_ID, "Đỗ Thị Hoa", Role::Citizen, None).await;
    let key = SigningKey::generate().expect("key");
    // visit-counter (with a configuration schema) is already approved.
    let public = base64::engine::general_purpose::STANDARD.encode(key.public_key());
    let (s, b) = send(
        &server,
        "POST",
        "/api/v1/vendor/keys",
        &vendor,
        Some(json!({ "public_key": public })),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    let mut counter = bundle_of(&plugin_dir(), "visit-counter", "vtelehealth", None);
    key.sign(&mut counter);
    let id = submit_approved(&server, &vendor, &reviewer, &counter).await;
    // A vendor's screens (HTML pages with a link and a form), approved.
    let mut pages = bundle_of(&test_plugin_dir(), "page-probe", VENDOR, None);
    key.sign(&mut pages);
    submit_approved(&server, &vendor, &reviewer, &pages).await;
    // Its next version asks for one more capability, and awaits review.
    let mut v2 = bundle_of(&plugin_dir(), "visit-counter", "vtelehealth", Some("0.2.0"));
    v2.manifest = v2.manifest.replace(
        "capabilities = [\"log\", \"clock\", \"kv\", \"identity\"]",
        "capabilities = [\"log\", \"clock\", \"kv\", \"identity\", \"random\"]",
    );
    key.sign(&mut v2);
    let counter_v2 = submit(&server, &vendor, &v2).await;
    // And 0.3.0, same capabilities, approved: an upgrade for the hospitals.
    let mut v3 = bundle_of(&plugin_dir(), "visit-counter", "vtelehealth", Some("0.3.0"));
    key.sign(&mut v3);
    submit_approved(&server, &vendor, &reviewer, &v3).await;
    World {
        server,
        reviewer,
        admin_a,
        citizen,
        vendor,
        counter_v1: id,
        counter_v2,
        key,
        files: tempfile::TempDir::new().expect("dir"),
    }
}

#[tokio::test]
async fn the_whole_lifecycle_through_the_consoles_in_chromium() {
    let Some(chromium) = chromium() else { return };
    let w = world().await;
    let base = w.server.base.clone();

    // The bundles the vendor chooses: one unsigned (fails its checks), one signed.
    let unsigned = bundle_of(&test_plugin_dir(), "records-probe", VENDOR, None);
    let bad_path = w.files.path().join("unsigned.vtpkg");
    std::fs::write(&bad_path, unsigned.to_json()).expect("write");
    let mut signed = bundle_of(&test_plugin_dir(), "records-probe", VENDOR, None);
    w.key.sign(&mut signed);
    let good_path = w.files.path().join("records-probe-0.1.0.vtpkg");
    std::fs::write(&good_path, signed.to_json()).expect("write");

    let browser = Browser::launch(&chromium, "about:blank")
        .await
        .expect("chromium");
    let mut c = Console {
        browser,
        base: base.clone(),
    };
    c.set_width(1280, false).await;

    // ----- vendor: a bundle that fails its checks, then a signed one -----
    c.login("dev.tests").await;
    c.assert_tabs(&["submit", "versions", "activations", "team"])
        .await;
    assert_eq!(
        c.eval("document.documentElement.lang").await,
        json!("vi"),
        "Vietnamese by default"
    );
    c.check_quality(1280).await;
    c.choose_file("#bundle-file", &bad_path).await;
    c.clear_message().await;
    c.click("#bundle-submit").await;
    let msg = c.message("error").await;
    assert!(
        msg.contains("signature"),
        "the failed check is named: {msg}"
    );
    c.screenshot("vendor-bundle-refused").await;
    c.clear_message().await;
    c.choose_file("#bundle-file", &good_path).await;
    // A double click submits once: the second click meets a disabled button.
    c.eval("(() => { document.getElementById('messages').replaceChildren(); const b = document.getElementById('bundle-submit'); b.click(); b.click(); })()").await;
    let msg = c.message("ok").await;
    assert!(msg.contains("records-probe"), "{msg}");
    let (_, listed) = send(
        &w.server,
        "GET",
        "/api/v1/plugin-versions?state=submitted",
        &w.reviewer,
        None,
    )
    .await;
    let pending: Vec<&Value> = listed["versions"]
        .as_array()
        .expect("versions")
        .iter()
        .filter(|v| v["plugin"] == "records-probe")
        .collect();
    assert_eq!(pending.len(), 1, "submitted once: {listed}");
    let version_id = pending[0]["id"].as_str().expect("id").to_owned();
    c.screenshot("vendor-submitted").await;
    c.sign_out().await;

    // ----- reviewer: version detail, narrowed approval, audit -----
    c.login("thamdinh").await;
    c.assert_tabs(&["queue", "audit", "network", "facilities", "vendors"])
        .await;
    c.check_quality(1280).await;
    c.click(&format!(
        "#queue-pending button[data-version='{version_id}']"
    ))
    .await;
    c.wait(
        "!!document.getElementById('approve') && !!document.getElementById('changes')",
        "the version detail",
    )
    .await;
    let text = c.eval("document.getElementById('main').innerText").await;
    let text = text.as_str().unwrap_or_default();
    assert!(text.contains("signature"), "check results shown: {text}");
    assert!(
        text.contains("Hồ sơ sức khỏe"),
        "capabilities in plain words: {text}"
    );
    assert!(
        text.contains("phiên bản đầu tiên"),
        "no previous version: {text}"
    );
    // Narrow the grant: no system/Encounter access.
    c.click("input[data-capability='records:system/Encounter.cru']")
        .await;
    // A note over its maximum: the server's refusal, shown in Vietnamese.
    c.eval("(() => { document.getElementById('messages').replaceChildren(); document.getElementById('approve-note').value = 'x'.repeat(2001); document.getElementById('approve').click(); })()").await;
    let msg = c.message("error").await;
    assert!(msg.contains("dài quá 2000 ký tự"), "{msg}");
    c.eval("document.getElementById('approve-note').value = ''")
        .await;
    c.clear_message().await;
    c.type_into(
        "#approve-note",
        "Đạt yêu cầu; không cấp quyền ghi lượt khám.",
    )
    .await;
    c.eval("(() => { document.getElementById('messages').replaceChildren(); const b = document.getElementById('approve'); b.click(); b.click(); })()").await;
    let msg = c.message("ok").await;
    assert!(msg.contains("records-probe"), "{msg}");
    c.wait(
        "!!document.getElementById('granted')",
        "the granted capabilities",
    )
    .await;
    let (_, v) = send(
        &w.server,
        "GET",
        &format!("/api/v1/plugin-versions/{version_id}"),
        &w.reviewer,
        None,
    )
    .await;
    assert_eq!(v["state"], "approved", "{v}");
    assert_eq!(
        v["decisions"].as_array().map(Vec::len),
        Some(1),
        "decided once: {v}"
    );
    let granted: Vec<&str> = v["granted"]
        .as_array()
        .expect("granted")
        .iter()
        .filter_map(|g| g["capability"].as_str())
        .collect();
    assert!(
        !granted.contains(&"records:system/Encounter.cru"),
        "{granted:?}"
    );
    assert!(granted.contains(&"records:user/Patient.rs"), "{granted:?}");
    c.screenshot("ministry-version-approved").await;
    c.set_width(390, true).await;
    c.check_quality(390).await;
    c.screenshot("ministry-version-phone").await;
    c.set_width(1280, false).await;
    // The next version of visit-counter: what changed, and a rejection needs a reason.
    c.tab("queue").await;
    c.click(&format!(
        "#queue-pending button[data-version='{}']",
        w.counter_v2
    ))
    .await;
    c.wait("!!document.getElementById('reject')", "the detail of 0.2.0")
        .await;
    let changes = c.eval("document.getElementById('changes').innerText").await;
    let changes = changes.as_str().unwrap_or_default();
    assert!(
        changes.contains("random") && changes.contains("0.1.0"),
        "{changes}"
    );
    c.clear_message().await;
    c.click("#reject").await;
    let msg = c.message("error").await;
    assert!(msg.contains("lý do"), "a reason is asked for: {msg}");
    c.type_into(
        "#reject-reason",
        "Quyền random không cần thiết cho việc đếm lượt khám.",
    )
    .await;
    c.clear_message().await;
    c.click("#reject").await;
    c.message("ok").await;
    let (_, v) = send(
        &w.server,
        "GET",
        &format!("/api/v1/plugin-versions/{}", w.counter_v2),
        &w.reviewer,
        None,
    )
    .await;
    assert_eq!(v["state"], "rejected", "{v}");
    c.screenshot("ministry-version-rejected").await;
    c.tab("audit").await;
    c.type_into("#audit-action", "plugin.approved").await;
    c.click("#audit-search").await;
    let rows = c
        .wait(
            "(() => { const t = document.getElementById('audit-table'); const rows = t ? [...t.querySelectorAll('tbody tr')].map(r => r.innerText) : []; return rows.length >= 2 && rows.every(r => r.includes('plugin.approved')) && rows; })()",
            "filtered audit rows",
        )
        .await;
    let rows = rows.as_array().expect("rows");
    assert!(
        rows.len() >= 2
            && rows
                .iter()
                .all(|r| r.as_str().unwrap_or_default().contains("plugin.approved")),
        "{rows:?}"
    );
    c.screenshot("ministry-audit").await;
    c.sign_out().await;

    // ----- hospital admin: invalid configuration, then activation -----
    c.login("qt.a").await;
    c.assert_tabs(&["catalogue", "modules", "staff", "clients", "directory"])
        .await;
    c.wait("!!document.querySelector('#catalogue')", "the catalogue")
        .await;
    c.click("button[data-activate='visit-counter'][data-version='0.1.0']")
        .await;
    c.check_quality(1280).await;
    c.type_into("#cfg-visit-counter-history_limit", "500").await;
    c.clear_message().await;
    c.click("#activate-submit-visit-counter").await;
    let msg = c.message("error").await;
    assert!(
        msg.contains("history_limit"),
        "the invalid field is named: {msg}"
    );
    let (_, acts) = send(
        &w.server,
        "GET",
        "/api/v1/hospitals/bv-a/activations",
        &w.admin_a,
        None,
    )
    .await;
    assert_eq!(
        acts["activations"].as_array().map(Vec::len),
        Some(0),
        "nothing activated: {acts}"
    );
    c.screenshot("hospital-invalid-configuration").await;
    c.type_into("#cfg-visit-counter-history_limit", "5").await;
    c.type_into("#secrets-visit-counter", "not json").await;
    c.clear_message().await;
    c.click("#activate-submit-visit-counter").await;
    let msg = c.message("error").await;
    assert!(msg.contains("JSON"), "{msg}");
    c.type_into("#secrets-visit-counter", "{\"token\": \"s3cret\"}")
        .await;
    c.clear_message().await;
    c.click("#activate-submit-visit-counter").await;
    c.message("ok").await;
    c.wait(
        "!!document.querySelector('button[data-activate=\"records-probe\"]')",
        "the refreshed catalogue",
    )
    .await;
    c.click("button[data-activate='records-probe']").await;
    c.eval("(() => { document.getElementById('messages').replaceChildren(); const b = document.getElementById('activate-submit-records-probe'); b.click(); b.click(); })()").await;
    let msg = c.message("ok").await;
    assert!(msg.contains("records-probe"), "{msg}");
    c.wait(
        "!!document.querySelector('button[data-activate=\"page-probe\"]')",
        "the refreshed catalogue",
    )
    .await;
    c.click("button[data-activate='page-probe']").await;
    c.clear_message().await;
    c.click("#activate-submit-page-probe").await;
    c.message("ok").await;
    // Upgrade visit-counter to 0.3.0: the form starts from the current
    // settings, and the stored secrets are kept.
    c.wait(
        "!!document.querySelector('button[data-activate=\"visit-counter\"][data-version=\"0.3.0\"]')",
        "the upgrade button",
    )
    .await;
    c.click("button[data-activate='visit-counter'][data-version='0.3.0']")
        .await;
    let kept = c
        .wait(
            "document.getElementById('cfg-visit-counter-history_limit') && document.getElementById('cfg-visit-counter-history_limit').value",
            "the upgrade form",
        )
        .await;
    assert_eq!(kept, json!("5"), "the current settings are kept");
    c.clear_message().await;
    c.click("#activate-submit-visit-counter").await;
    let msg = c.message("ok").await;
    assert!(msg.contains("0.3.0"), "{msg}");
    let (_, acts) = send(
        &w.server,
        "GET",
        "/api/v1/hospitals/bv-a/activations",
        &w.admin_a,
        None,
    )
    .await;
    let acts = acts["activations"].as_array().expect("activations").clone();
    assert_eq!(acts.len(), 3, "{acts:?}");
    let counter = acts
        .iter()
        .find(|a| a["plugin_id"] == "visit-counter")
        .expect("visit-counter");
    assert_eq!(counter["config"]["history_limit"], 5, "{counter}");
    assert_eq!(counter["has_secrets"], true, "{counter}");
    assert_eq!(counter["version"], "0.3.0", "upgraded: {counter}");
    c.screenshot("hospital-catalogue").await;
    c.set_width(390, true).await;
    c.check_quality(390).await;
    c.screenshot("hospital-catalogue-phone").await;
    c.set_width(1280, false).await;
    c.tab("modules").await;
    c.wait(
        "!!document.getElementById('modules-table')",
        "the modules table",
    )
    .await;
    c.screenshot("hospital-modules").await;
    // Deactivate visit-counter, with a double click: removed once.
    c.wait(
        "!!document.querySelector('button[data-deactivate=\"visit-counter\"]')",
        "the deactivate button",
    )
    .await;
    c.eval("(() => { document.getElementById('messages').replaceChildren(); const b = document.querySelector('button[data-deactivate=\"visit-counter\"]'); b.click(); b.click(); })()").await;
    c.message("ok").await;
    let (_, removed) = send(
        &w.server,
        "GET",
        "/api/v1/audit?action=activation.removed",
        &w.reviewer,
        None,
    )
    .await;
    assert_eq!(
        removed["entries"].as_array().map(Vec::len),
        Some(1),
        "removed once: {removed}"
    );
    c.sign_out().await;

    // The hospital's HIS stores the citizen's patient record through the plugin.
    let his = w.server.service_token("his-bv-a", "bv-a").await;
    let resp = w
        .server
        .client
        .post(w.server.plugin_url("bv-a", "records-probe", "/create"))
        .bearer_auth(&his)
        .body(json!({
            "resourceType": "Patient",
            "identifier": [{ "system": CCCD_SYSTEM, "value": CITIZEN_ID }, { "system": BHYT_SYSTEM, "value": HEALTH_ID }],
            "name": [{ "family": "Đỗ", "given": ["Thị Hoa"] }]
        }).to_string())
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status().as_u16(), 200);
    let pid = resp.json::<Value>().await.expect("json")["id"]
        .as_str()
        .expect("id")
        .to_owned();

    // ----- practitioner: the plugin's page inside the console -----
    c.login("bs.a").await;
    c.assert_tabs(&["workspace", "notices", "directory"]).await;
    c.check_quality(1280).await;
    c.type_into("#path-records-probe", &format!("/read/Patient/{pid}"))
        .await;
    c.clear_message().await;
    c.click("button[data-open='records-probe']").await;
    c.message("ok").await;
    c.wait(
        "!!document.getElementById('plugin-frame')",
        "the plugin frame",
    )
    .await;
    // The frame is sandboxed: the console cannot reach into it, nor it into the console.
    let sandbox = c
        .eval("document.getElementById('plugin-frame').getAttribute('sandbox')")
        .await;
    assert!(
        !sandbox
            .as_str()
            .unwrap_or_default()
            .contains("allow-same-origin"),
        "{sandbox}"
    );
    let patient_page = frame_text(&mut c, CITIZEN_ID).await;
    assert!(
        patient_page.contains(CITIZEN_ID),
        "the plugin answered in the frame: {patient_page}"
    );
    assert_eq!(
        c.eval("document.getElementById('plugin-frame').contentDocument")
            .await,
        Value::Null
    );
    c.screenshot("practitioner-plugin-page").await;
    // A vendor's HTML screen: it greets the practitioner (the session
    // reaches the plugin), cannot reach the console's token or page, and
    // its form posts with the same session.
    c.clear_message().await;
    c.click("button[data-open='page-probe']").await;
    c.message("ok").await;
    let page = frame_text(&mut c, "blocked").await;
    assert!(page.contains("Xin chào BS Lê Văn Tâm"), "{page}");
    assert!(
        page.contains("storage:blocked") && page.contains("parent:blocked"),
        "the sandbox keeps the page away from the console: {page}"
    );
    c.screenshot("practitioner-vendor-screen").await;
    frame_eval(
        &mut c,
        "(() => { document.getElementById('note').value = 'Tái khám sau 2 tuần'; document.getElementById('save').click(); return true; })()",
    )
    .await
    .expect("the form in the frame");
    let saved = frame_text(&mut c, "Đã lưu").await;
    assert!(
        saved.contains("Đã lưu: Tái khám sau 2 tuần (BS Lê Văn Tâm)"),
        "{saved}"
    );
    c.screenshot("practitioner-vendor-form-saved").await;
    c.sign_out().await;

    // ----- citizen: the read in the access log, consents -----
    c.login(CITIZEN_ID).await;
    c.assert_tabs(&["records", "access", "consents", "payments", "notices"])
        .await;
    // The personal health record opens first: each hospital's records about them.
    let record = c
        .wait(
            "(() => { const t = document.querySelector('.records-table[data-hospital=\"bv-a\"]'); return t && t.innerText; })()",
            "the citizen's own record at bv-a",
        )
        .await;
    let record = record.as_str().unwrap_or_default();
    assert!(
        record.contains("Thông tin hành chính") && record.contains("Đỗ Thị Hoa"),
        "{record}"
    );
    let stray = c
        .eval("document.getElementById('main').innerText.includes('null')")
        .await;
    assert_eq!(stray, json!(false), "no stray `null` on the page");
    c.check_quality(1280).await;
    c.screenshot("citizen-records").await;
    c.tab("access").await;
    let log = c
        .wait("(() => { const t = document.getElementById('access-table'); return t && t.innerText; })()", "the access log")
        .await;
    let log = log.as_str().unwrap_or_default();
    assert!(
        log.contains("BS Lê Văn Tâm") && log.contains("records-probe"),
        "{log}"
    );
    c.screenshot("citizen-access-log").await;
    c.tab("consents").await;
    c.eval("document.getElementById('consent-grantee').value = 'bv-b'")
        .await;
    c.eval("(() => { document.getElementById('messages').replaceChildren(); const b = document.getElementById('consent-grant'); b.click(); b.click(); })()").await;
    c.message("ok").await;
    let (_, consents) = send(&w.server, "GET", "/api/v1/me/consents", &w.citizen, None).await;
    assert_eq!(
        consents["consents"].as_array().map(Vec::len),
        Some(1),
        "granted once: {consents}"
    );
    c.wait(
        "!!document.querySelector('#consents-table button[data-consent]')",
        "the consent row",
    )
    .await;
    c.screenshot("citizen-consents").await;
    c.clear_message().await;
    c.click("#consents-table button[data-consent]").await;
    c.message("ok").await;
    let (_, consents) = send(&w.server, "GET", "/api/v1/me/consents", &w.citizen, None).await;
    assert_eq!(consents["consents"][0]["status"], "inactive", "{consents}");

    citizen_payment(&w.server, 250_000, "tu-van-2").await;
    c.tab("payments").await;
    let pays = c
        .wait("(() => { const t = document.getElementById('payments-table'); return t && t.innerText; })()", "the payments")
        .await;
    assert!(
        pays.as_str().unwrap_or_default().contains("250.000"),
        "{pays}"
    );
    c.screenshot("citizen-payments").await;

    // English, remembered; phone width.
    c.click("#lang-switch").await;
    c.wait("document.documentElement.lang === 'en' && document.getElementById('tab-access').textContent === 'Who read my records'", "English").await;
    c.goto(&format!("{base}/console/")).await;
    c.wait(
        "document.documentElement.lang === 'en' && !!document.getElementById('tab-access')",
        "English after a reload",
    )
    .await;
    c.set_width(390, true).await;
    c.tab("access").await;
    c.check_quality(390).await;
    c.screenshot("citizen-phone-en").await;
    c.set_width(1280, false).await;

    // An expired access token is renewed with the refresh token, unseen.
    c.eval("sessionStorage.setItem('vth.token', 'eyJhbGciOiJFUzI1NiJ9.e30.expired')")
        .await;
    c.clear_message().await;
    c.tab("consents").await;
    c.wait(
        "!!document.getElementById('consents-table')",
        "the consents after a silent renewal",
    )
    .await;
    assert_eq!(c.eval("window.vthConsole.messageKind()").await, Value::Null);
    // An expired session (the refresh token spent too): a clear message, a
    // way to sign in again, nothing done.
    c.eval("sessionStorage.setItem('vth.token', 'eyJhbGciOiJFUzI1NiJ9.e30.expired'); sessionStorage.setItem('vth.refresh', 'spent')")
        .await;
    c.click("#tab-consents").await;
    let msg = c.message("error").await;
    assert!(msg.contains("expired"), "{msg}");
    c.screenshot("citizen-session-expired").await;
    c.click("#sign-in-again").await;
    c.wait(
        "location.pathname === '/oidc/authorize'",
        "the login form again",
    )
    .await;
    c.goto(&format!("{base}/console/")).await;
    c.wait("!!document.getElementById('sign-in')", "the sign-in screen")
        .await;

    // ----- reviewer again: the network at a glance -----
    c.eval("localStorage.setItem('vth.lang', 'vi')").await;
    c.login("thamdinh").await;
    c.tab("network").await;
    let net = c
        .wait("(() => { const t = document.getElementById('network-table'); return t && t.innerText; })()", "the network table")
        .await;
    let net = net.as_str().unwrap_or_default();
    assert!(
        net.contains("records-probe") && net.contains("Thái Bình"),
        "{net}"
    );
    c.screenshot("ministry-network").await;

    // ----- vendor again: the reviewer's comments, where it is used -----
    c.sign_out().await;
    c.login("dev.tests").await;
    c.tab("versions").await;
    c.click(&format!(
        "#versions-table button[data-version='{version_id}']"
    ))
    .await;
    let decisions = c
        .wait("(() => { const d = document.getElementById('decisions'); return d && d.innerText; })()", "the decisions")
        .await;
    assert!(
        decisions
            .as_str()
            .unwrap_or_default()
            .contains("không cấp quyền ghi lượt khám"),
        "{decisions}"
    );
    // The reviewer is named, not shown by their user id.
    assert!(
        decisions
            .as_str()
            .is_some_and(|d| d.contains("Thẩm định viên") && !d.contains(" u-")),
        "{decisions}"
    );
    c.tab("versions").await;
    c.click(&format!(
        "#versions-table button[data-version='{}']",
        w.counter_v2
    ))
    .await;
    let decisions = c
        .wait("(() => { const d = document.getElementById('decisions'); return d && d.innerText.includes('Từ chối') && d.innerText; })()", "the rejection")
        .await;
    assert!(
        decisions
            .as_str()
            .unwrap_or_default()
            .contains("random không cần thiết"),
        "{decisions}"
    );
    c.screenshot("vendor-rejection-reason").await;
    c.tab("activations").await;
    let used = c
        .wait("(() => { const t = document.getElementById('vendor-activations'); return t && t.innerText; })()", "the vendor's activations")
        .await;
    let used = used.as_str().unwrap_or_default();
    assert!(
        used.contains("records-probe") && used.contains("Bệnh viện A"),
        "{used}"
    );
    c.screenshot("vendor-activations-usage").await;
    c.browser.kill().await;
}

/// Evaluate `js` in the plugin frame through the DevTools protocol (the
/// console itself cannot: the frame has an opaque origin, and Chromium runs
/// it out of process); `None` while there is no such frame.
async fn frame_eval(c: &mut Console, js: &str) -> Option<Value> {
    let targets = c
        .browser
        .call("Target.getTargets", json!({}))
        .await
        .expect("targets");
    let target = targets["targetInfos"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|t| {
            t["url"]
                .as_str()
                .is_some_and(|u| u.contains("/console/frame/"))
        })
        .and_then(|t| t["targetId"].as_str())?
        .to_owned();
    let attached = c
        .browser
        .call(
            "Target.attachToTarget",
            json!({ "targetId": target, "flatten": true }),
        )
        .await
        .ok()?;
    let session = attached["sessionId"].as_str()?.to_owned();
    let r = c
        .browser
        .call_in(
            Some(&session),
            "Runtime.evaluate",
            json!({ "expression": js, "returnByValue": true }),
        )
        .await
        .ok()?;
    Some(r["result"]["value"].clone())
}

/// The text of the plugin frame once it contains `expect` (bounded wait).
async fn frame_text(c: &mut Console, expect: &str) -> String {
    let mut last = String::new();
    for _ in 0..100 {
        if let Some(v) = frame_eval(c, "document.body ? document.body.innerText : ''").await {
            last = v.as_str().unwrap_or_default().to_owned();
            if last.contains(expect) {
                return last;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    last
}

/// A payment intent whose payer is the test citizen, as a module makes one.
async fn citizen_payment(server: &TestServer, amount: i64, key: &str) {
    use vtelehealth_runtime::payment::{MerchantKind, NewIntent};
    let citizen = server
        .runtime
        .identity
        .user_by_username(CITIZEN_ID)
        .await
        .expect("db")
        .expect("citizen");
    server
        .runtime
        .payments
        .create(
            "bv-a",
            "visit-counter",
            &NewIntent {
                amount,
                currency: "VND".into(),
                payer: citizen.id,
                merchant: MerchantKind::Hospital,
                purpose: "Phí tư vấn từ xa".into(),
                idempotency_key: key.into(),
            },
        )
        .await
        .expect("payment intent");
}

/// The role checks of the consoles' APIs, without a browser.
#[tokio::test]
async fn console_apis_hold_their_role_checks() {
    let w = world().await;
    let s = &w.server;
    let doctor_a = user(s, "bs.a2", "BS A", Role::Practitioner, Some("bv-a")).await;
    let doctor_b = user(s, "bs.b", "BS B", Role::Practitioner, Some("bv-b")).await;
    let admin_b = user(s, "qt.b", "QT B", Role::HospitalAdmin, Some("bv-b")).await;
    s.runtime
        .identity
        .create_vendor("other", "Other")
        .await
        .expect("vendor");
    let mut other = NewUser::new("dev.other", "Other dev", Role::VendorUser, PASSWORD);
    other.vendor_id = Some("other".into());
    let other = s.runtime.identity.create_user(other).await.expect("user");
    let vendor2 = s.runtime.identity.token_for(&other).expect("token");
    let vendor = w.vendor.clone();

    let changes_of = |id: &str| format!("/api/v1/plugin-versions/{id}/changes");
    let first = w.counter_v1.clone();
    let (st, b) = send(s, "GET", &changes_of(&first), &w.reviewer, None).await;
    assert_eq!(st, 200, "{b}");
    assert_eq!(b["previous"], Value::Null, "{b}");
    let second = w.counter_v2.clone();
    let (st, b) = send(s, "GET", &changes_of(&second), &w.reviewer, None).await;
    assert_eq!(st, 200, "{b}");
    assert_eq!(b["previous"]["version"], "0.1.0", "{b}");
    assert_eq!(b["capabilities_added"], json!(["random"]), "{b}");
    assert_eq!(b["capabilities_removed"], json!([]), "{b}");
    assert_eq!(b["component_changed"], false, "{b}");
    // The vendor sees its own; hospital staff do not see a submitted one.
    assert_eq!(
        send(s, "GET", &changes_of(&second), &vendor, None).await.0,
        200
    );
    assert_eq!(
        send(s, "GET", &changes_of(&second), &w.admin_a, None)
            .await
            .0,
        404
    );
    for (who, token, expected) in [
        ("citizen", &w.citizen, 404),
        ("another vendor", &vendor2, 404),
        ("hospital admin", &w.admin_a, 200),
        ("vendor", &vendor, 200),
    ] {
        assert_eq!(
            send(s, "GET", &changes_of(&first), token, None).await.0,
            expected,
            "changes for {who}"
        );
    }

    // Usage: the hospital's own admin, reviewers, operators.
    let usage = "/api/v1/hospitals/bv-a/plugin-usage";
    for (who, token, expected) in [
        ("admin A", &w.admin_a, 200),
        ("reviewer", &w.reviewer, 200),
        ("admin B", &admin_b, 403),
        ("practitioner A", &doctor_a, 403),
        ("citizen", &w.citizen, 403),
        ("vendor", &vendor, 403),
    ] {
        assert_eq!(
            send(s, "GET", usage, token, None).await.0,
            expected,
            "usage for {who}"
        );
    }
    assert_eq!(
        s.client
            .get(format!("{}{usage}", s.base))
            .send()
            .await
            .expect("sent")
            .status()
            .as_u16(),
        401
    );

    // Activate visit-counter at A and call it: the usage and the vendor's view count it.
    let (st, b) = send(
        s,
        "PUT",
        "/api/v1/hospitals/bv-a/activations/visit-counter",
        &w.admin_a,
        Some(json!({ "version_id": first })),
    )
    .await;
    assert_eq!(st, 200, "{b}");
    let resp = s
        .client
        .post(s.plugin_url("bv-a", "visit-counter", "/visits"))
        .bearer_auth(&doctor_a)
        .send()
        .await
        .expect("sent");
    assert!(resp.status().is_success());
    let (_, b) = send(s, "GET", usage, &w.admin_a, None).await;
    assert_eq!(
        b["usage"],
        json!([{ "hospital": "bv-a", "plugin": "visit-counter", "calls": 1, "errors": 0 }]),
        "{b}"
    );
    let (st, b) = send(s, "GET", "/api/v1/vendor/activations", &vendor, None).await;
    assert_eq!(st, 200, "{b}");
    assert_eq!(b["activations"][0]["hospital"], "bv-a", "{b}");
    assert_eq!(b["activations"][0]["calls"], 1, "{b}");
    assert!(
        b["activations"][0].get("config").is_none(),
        "no hospital configuration for vendors: {b}"
    );
    let (st, b) = send(s, "GET", "/api/v1/vendor/activations", &vendor2, None).await;
    assert_eq!(
        (st, b["activations"].as_array().map(Vec::len)),
        (200, Some(0)),
        "{b}"
    );
    for (who, token) in [
        ("reviewer", &w.reviewer),
        ("citizen", &w.citizen),
        ("admin", &w.admin_a),
    ] {
        assert_eq!(
            send(s, "GET", "/api/v1/vendor/activations", token, None)
                .await
                .0,
            403,
            "vendor activations for {who}"
        );
    }

    // Plugin frames: the hospital's staff and citizens only.
    let frames = "/api/v1/console/plugin-frames";
    let target = json!({ "hospital": "bv-a", "plugin": "visit-counter" });
    for (who, token, expected) in [
        ("practitioner A", &doctor_a, 200),
        ("admin A", &w.admin_a, 200),
        ("citizen", &w.citizen, 200),
        ("practitioner B", &doctor_b, 403),
        ("admin B", &admin_b, 403),
        ("reviewer", &w.reviewer, 403),
        ("vendor", &vendor, 403),
    ] {
        assert_eq!(
            send(s, "POST", frames, token, Some(target.clone())).await.0,
            expected,
            "frame for {who}"
        );
    }
    // The ticket rides in the frame's URL, which the plugin's page can read:
    // the citizen's name and ID numbers are sealed in it, never in clear.
    let (_, b) = send(s, "POST", frames, &w.citizen, Some(target.clone())).await;
    let citizen_ticket = b["url"]
        .as_str()
        .expect("url")
        .trim_start_matches("/console/frame/");
    let payload = citizen_ticket.split('.').nth(1).expect("a JWT");
    let claims = String::from_utf8(
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .expect("base64url"),
    )
    .expect("UTF-8");
    for secret in [CITIZEN_ID, HEALTH_ID, "Đỗ Thị Hoa"] {
        assert!(!claims.contains(secret), "{secret} in clear in {claims}");
    }
    let (_, b) = send(s, "POST", frames, &doctor_a, Some(target.clone())).await;
    let url = b["url"].as_str().expect("url").to_owned();
    let ticket = url
        .trim_start_matches("/console/frame/")
        .trim_end_matches('/')
        .to_owned();
    // The frame answers inside a CSP sandbox, for the ticket's holder.
    let resp = s
        .client
        .get(format!("{}{url}visits/history", s.base))
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status().as_u16(), 200);
    let csp: Vec<_> = resp
        .headers()
        .get_all("content-security-policy")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    assert!(
        csp.iter().any(|v| v.starts_with("sandbox allow-scripts")),
        "{csp:?}"
    );
    assert!(
        !csp.iter().any(|v| v.contains("allow-same-origin")),
        "{csp:?}"
    );
    // The ticket is no bearer token, and a forged one opens nothing.
    assert_eq!(send(s, "GET", "/api/v1/me", &ticket, None).await.0, 401);
    assert_eq!(
        send(
            s,
            "GET",
            "/hospitals/bv-a/plugins/visit-counter/visits/history",
            &ticket,
            None
        )
        .await
        .0,
        401
    );
    // One signature character changed (not the last: its low bits are padding).
    let mut forged: Vec<char> = ticket.chars().collect();
    let at = forged.len() - 10;
    forged[at] = if forged[at] == 'A' { 'B' } else { 'A' };
    let forged: String = forged.into_iter().collect();
    let resp = s
        .client
        .get(format!("{}/console/frame/{forged}/", s.base))
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status().as_u16(), 401);
    // An access token is no ticket either.
    let resp = s
        .client
        .get(format!("{}/console/frame/{doctor_a}/", s.base))
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status().as_u16(), 401);
    // A revoked plugin stops in the frame too.
    let (st, b) = send(
        s,
        "POST",
        &format!("/api/v1/plugin-versions/{first}/revoke"),
        &w.reviewer,
        Some(json!({ "reason": "test" })),
    )
    .await;
    assert_eq!(st, 200, "{b}");
    let resp = s
        .client
        .get(format!("{}{url}visits/history", s.base))
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status().as_u16(), 403);

    // A citizen's payments: their own, and only citizens.
    citizen_payment(s, 150_000, "tu-van-1").await;
    let (st, b) = send(s, "GET", "/api/v1/me/payments", &w.citizen, None).await;
    assert_eq!(st, 200, "{b}");
    assert_eq!(b["payments"].as_array().map(Vec::len), Some(1), "{b}");
    assert_eq!(b["payments"][0]["amount"], 150_000, "{b}");
    assert_eq!(b["payments"][0]["state"], "created", "{b}");
    let mut stranger = NewUser::new("001099000001", "Người khác", Role::Citizen, PASSWORD);
    stranger.national_id = Some("001099000001".into());
    let stranger = s
        .runtime
        .identity
        .create_user(stranger)
        .await
        .expect("user");
    let stranger = s.runtime.identity.token_for(&stranger).expect("token");
    let (st, b) = send(s, "GET", "/api/v1/me/payments", &stranger, None).await;
    assert_eq!(
        (st, b["payments"].as_array().map(Vec::len)),
        (200, Some(0)),
        "{b}"
    );
    for (who, token) in [
        ("practitioner", &doctor_a),
        ("admin", &w.admin_a),
        ("reviewer", &w.reviewer),
        ("vendor", &vendor),
    ] {
        assert_eq!(
            send(s, "GET", "/api/v1/me/payments", token, None).await.0,
            403,
            "payments for {who}"
        );
    }

    // The console page itself is served, with its client registered.
    let resp = s
        .client
        .get(format!("{}/console/", s.base))
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status().as_u16(), 200);
    assert!(resp.headers().get("content-security-policy").is_some());
    let client = s
        .runtime
        .identity
        .client("vtelehealth-console")
        .await
        .expect("db")
        .expect("client");
    assert_eq!(
        client.redirect_uris,
        vec![format!("{}/console/callback", s.base)]
    );
}

/// A step of a teleconsultation reaches the requester's open console at
/// once (pushed on the notifications stream, no reload), with the unread
/// count on the tab; its link opens the consultation inside the console,
/// although teleconsult runs at the upper hospital (a reviewed network
/// plugin); marking read clears the count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_teleconsultation_step_is_pushed_to_the_requesters_console() {
    let Some(chromium) = chromium() else { return };
    let no_dev_plugins = tempfile::TempDir::new().expect("dir");
    let server = TestServer::start(no_dev_plugins.path(), Limits::default()).await;
    // Streams re-read the database hourly here: only a push can deliver.
    server
        .runtime
        .notifications
        .set_recheck_interval(Duration::from_secs(3600));
    let published =
        vtelehealth_runtime::demo::publish_reference_plugins(&server.runtime, &plugin_dir())
            .await
            .expect("reference plugins published and rolled out");
    assert!(
        published.iter().any(|p| p == "teleconsult"),
        "{published:?}"
    );
    let chair = user(
        &server,
        "gs.a",
        "GS Nguyễn Chủ Trì",
        Role::Practitioner,
        Some("bv-a"),
    )
    .await;
    let requester = user(
        &server,
        "bs.b",
        "BS Trần Yêu Cầu",
        Role::Practitioner,
        Some("bv-b"),
    )
    .await;
    let at = |p: &str| format!("/hospitals/bv-a/plugins/teleconsult{p}");
    let (s, c) = send(
        &server,
        "POST",
        &at("/consultations"),
        &requester,
        Some(json!({
            "patient": { "identifiers": [{ "system": "https://vneid.gov.vn/cccd", "value": CITIZEN_ID }] },
            "summary": "Sốt kéo dài, xin hội chẩn truyền nhiễm",
            "urgency": "urgent"
        })),
    )
    .await;
    assert_eq!(s, 201, "{c}");
    let id = c["id"].as_str().expect("id").to_owned();

    let browser = Browser::launch(&chromium, "about:blank")
        .await
        .expect("chromium");
    let mut con = Console {
        browser,
        base: server.base.clone(),
    };
    con.set_width(1280, false).await;
    con.login("bs.b").await;
    con.tab("notices").await;
    con.wait("window.vthConsole.following()", "the live stream")
        .await;
    con.wait(
        "!!document.getElementById('notices-empty')",
        "an empty list",
    )
    .await;

    let (s, a) = send(
        &server,
        "POST",
        &at(&format!("/consultations/{id}/accept")),
        &chair,
        Some(json!({ "scheduled_at": 1_795_000_000_000u64, "consultants": [] })),
    )
    .await;
    assert_eq!(s, 200, "{a}");
    con.wait(
        "!!document.querySelector('#notices li[data-topic=\"teleconsult.accepted\"]')",
        "the accepted step, pushed",
    )
    .await;
    let tab = con
        .wait(
            "(() => { const t = document.getElementById('tab-notices').textContent; return /\\(\\d+\\)/.test(t) && t; })()",
            "the unread count on the tab",
        )
        .await;
    assert!(
        tab.as_str().is_some_and(|t| t.starts_with("Thông báo (")),
        "{tab}"
    );
    let said = con.message("info").await;
    assert!(said.contains("Thông báo mới"), "{said}");
    con.check_quality(1280).await;
    con.screenshot("practitioner-notifications").await;

    // The link opens the consultation's page (the plugin's, not its JSON) in the console's
    // sandboxed frame.
    con.click("#notices li[data-topic=\"teleconsult.accepted\"] button[data-open-notice]")
        .await;
    con.message("ok").await;
    let text = frame_text(&mut con, &id).await;
    assert!(text.contains(&id) && text.contains("Đã nhận"), "{text}");

    con.click("#notices-read").await;
    con.message("ok").await;
    con.wait(
        "document.getElementById('tab-notices').textContent === 'Thông báo'",
        "the count cleared",
    )
    .await;
    let (s, l) = send(&server, "GET", "/api/v1/me/notifications", &requester, None).await;
    assert_eq!((s, &l["unread"]), (200, &json!(0)), "{l}");
}

/// A plugin's page cannot leak its frame's ticket: in Chromium, its script
/// tries to send its URL (which holds the ticket) to another origin (fetch,
/// image, beacon) and to another plugin's routes (a form-like post, and the
/// ticket as a bearer token), and every attempt is blocked by the frame's
/// policy: the server on another loopback port records no hit and the
/// other plugin no call. Its `fetch` of its own JSON routes, GET and POST,
/// works. A leaked ticket is refused from another site's page and is no
/// bearer token.
#[tokio::test]
async fn a_plugin_page_sends_data_only_to_its_own_plugin_routes_in_chromium() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    let Some(chromium) = chromium() else { return };
    let dir = vtelehealth_tests::plugin_set(&test_plugin_dir(), &["page-probe", "hostile"]);
    let server = TestServer::start(dir.path(), Limits::default()).await;
    drop(dir);
    let doctor = user(
        &server,
        "bs.frame",
        "BS Trần Thị Mai",
        Role::Practitioner,
        Some("bv-a"),
    )
    .await;
    // Another origin (another loopback port) that counts every connection.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = hits.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = socket.read(&mut buf).await;
                let _ = socket
                    .write_all(b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n")
                    .await;
            });
        }
    });
    // It does record a request that reaches it.
    let _ = server
        .client
        .get(format!("http://127.0.0.1:{port}/control"))
        .send()
        .await;
    assert_eq!(hits.load(Ordering::SeqCst), 1);

    let (s, b) = send(
        &server,
        "POST",
        "/api/v1/console/plugin-frames",
        &doctor,
        Some(json!({ "hospital": "bv-a", "plugin": "page-probe" })),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let url = b["url"].as_str().expect("url").to_owned();
    let ticket = url
        .trim_start_matches("/console/frame/")
        .trim_end_matches('/')
        .to_owned();
    // The frame's policy pins every way out to its own prefix.
    let resp = server
        .client
        .get(format!("{}{url}exfil", server.base))
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status().as_u16(), 200);
    let csp: Vec<String> = resp
        .headers()
        .get_all("content-security-policy")
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_owned))
        .collect();
    let own = format!("http://{}/console/frame/{ticket}/", server.addr);
    for directive in ["connect-src", "img-src", "form-action", "script-src"] {
        assert!(
            csp.iter()
                .any(|p| p.contains(&format!("{directive} {own} "))),
            "{directive} pinned to {own}: {csp:?}"
        );
    }
    // A leaked ticket: another site's page cannot use it, nor is it a bearer token.
    let resp = server
        .client
        .get(format!("{}{url}api/note", server.base))
        .header("origin", "http://evil.example")
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status().as_u16(), 403);
    let resp = server
        .client
        .get(server.plugin_url("bv-a", "page-probe", "/api/note"))
        .bearer_auth(&ticket)
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status().as_u16(), 401);

    // The page's script, in Chromium.
    let mut browser = Browser::launch(&chromium, &format!("{}{url}exfil?to={port}", server.base))
        .await
        .expect("chromium");
    let mut probe = Value::Null;
    for _ in 0..300 {
        if let Ok(Value::String(text)) = browser
            .eval("(() => { const p = window.probe; return p && p.done && p.violations.length >= 5 ? JSON.stringify(p) : null; })()")
            .await
        {
            probe = serde_json::from_str(&text).expect("json");
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let last = browser
        .eval("JSON.stringify(window.probe || null)")
        .await
        .unwrap_or_default();
    assert!(!probe.is_null(), "the page's probe finished: {last}");
    let out = &probe["out"];
    for attempt in [
        "other-origin-fetch",
        "other-origin-image",
        "other-plugin-post",
        "other-plugin-bearer",
    ] {
        assert_eq!(out[attempt], "blocked", "{attempt}: {probe}");
    }
    // Chromium says a beacon is queued even when the policy drops it: the
    // violation below and the silent port show it never left.
    let violations = probe["violations"].to_string();
    for blocked in [
        format!("connect-src http://127.0.0.1:{port}/fetch"),
        format!("img-src http://127.0.0.1:{port}/img"),
        format!("connect-src http://127.0.0.1:{port}/beacon"),
        format!(
            "connect-src {}/hospitals/bv-a/plugins/hostile/echo",
            server.base
        ),
        format!(
            "connect-src {}/hospitals/bv-a/plugins/hostile/whoami",
            server.base
        ),
    ] {
        assert!(violations.contains(&blocked), "{blocked}: {probe}");
    }
    // Its own JSON routes answer it, with the frame's session.
    assert_eq!(out["own-json-post"], "sent 200 from the page", "{probe}");
    assert_eq!(out["own-json-get"], "sent 200 from the page", "{probe}");
    browser.kill().await;
    // Nothing reached the other origin or the other plugin.
    assert_eq!(hits.load(Ordering::SeqCst), 1, "only the control request");
    let hostile_calls: u64 = server
        .runtime
        .metrics
        .usage(Some("bv-a"))
        .iter()
        .filter(|u| u.plugin == "hostile")
        .map(|u| u.calls)
        .sum();
    assert_eq!(hostile_calls, 0);
}

/// "Đăng xuất" shows only to someone signed in: the buttons' own `display`
/// must not override `hidden`.
#[tokio::test]
async fn the_sign_out_button_shows_only_when_signed_in_in_chromium() {
    let Some(chromium) = chromium() else { return };
    let w = world().await;
    let browser = Browser::launch(&chromium, "about:blank")
        .await
        .expect("chromium");
    let mut c = Console {
        browser,
        base: w.server.base.clone(),
    };
    c.set_width(1280, false).await;
    let shown = "getComputedStyle(document.getElementById('sign-out')).display !== 'none'";
    let url = format!("{}/console/", c.base);
    c.goto(&url).await;
    c.wait("!!document.getElementById('sign-in')", "the sign-in button")
        .await;
    assert_eq!(c.eval(shown).await, json!(false), "hidden when signed out");
    c.login("dev.tests").await;
    assert_eq!(c.eval(shown).await, json!(true), "shown when signed in");
    c.sign_out().await;
    assert_eq!(c.eval(shown).await, json!(false), "hidden again");
}
