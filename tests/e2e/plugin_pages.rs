//! Plugin pages (issue 14): the reference plugins declare `[[pages]]` in
//! their manifests and serve them (HTML, CSS, JS embedded in the component)
//! next to their JSON routes. A practitioner picks a module's page from the
//! console's menu with the mouse, and the page renders what it fetched from
//! its own JSON route (the visit counter increments on click); the hospital
//! admin gets the HIS adapter's message log and translation tester. A page
//! cannot fetch another plugin's route or an API outside its plugin.
//! Screenshots at 1280 and 390 px, in Vietnamese and English, go to
//! `target/page-screenshots/`.

use std::path::PathBuf;
use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};
use vtelehealth_runtime::config::Limits;
use vtelehealth_runtime::governance::bundle::Bundle;
use vtelehealth_runtime::governance::signing::SigningKey;
use vtelehealth_runtime::identity::{NewUser, Role};
use vtelehealth_tests::browser::{Browser, chromium};
use vtelehealth_tests::common::send;
use vtelehealth_tests::{TestServer, component, plugin_dir, repo_root};

const PASSWORD: &str = "password-1";
const VENDOR: &str = "vtelehealth";
const PHARMACIES: &str = r#"{ "pharmacies": [
    { "id": "pk-long-chau", "name": "Nhà thuốc Long Châu", "prices": { "J01CA04": 12000 } } ] }"#;

/// A user who can sign in with [`PASSWORD`]; their API token.
async fn person(
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
        u.national_id = Some(vtelehealth_tests::common::CITIZEN_ID.into());
        u.health_id = Some(vtelehealth_tests::common::HEALTH_ID.into());
    }
    let user = server.runtime.identity.create_user(u).await.expect("user");
    server.runtime.identity.token_for(&user).expect("token")
}

struct World {
    server: TestServer,
    doctor: String,
    admin: String,
    reviewer: String,
    /// The version ids, by plugin.
    versions: Vec<(String, String)>,
}

/// The reference plugins with pages, published through the signed-bundle
/// review (every capability granted) and activated at bv-a.
async fn world() -> World {
    let no_dev_plugins = tempfile::TempDir::new().expect("dir");
    let server = TestServer::start(no_dev_plugins.path(), Limits::default()).await;
    server
        .runtime
        .identity
        .create_vendor(VENDOR, "VTelehealth")
        .await
        .expect("vendor");
    let vendor = person(
        &server,
        "dev.pages",
        "Lập trình viên",
        Role::VendorUser,
        None,
    )
    .await;
    let reviewer = person(
        &server,
        "thamdinh.pages",
        "Thẩm định viên",
        Role::Reviewer,
        None,
    )
    .await;
    let admin = person(
        &server,
        "qt.pages",
        "Quản trị Nguyễn Thị Lan",
        Role::HospitalAdmin,
        Some("bv-a"),
    )
    .await;
    let doctor = person(
        &server,
        "bs.pages",
        "BS Phạm Minh Đức",
        Role::Practitioner,
        Some("bv-a"),
    )
    .await;
    let key = SigningKey::generate().expect("key");
    let public = base64::engine::general_purpose::STANDARD.encode(key.public_key());
    let (s, b) = send(
        &server,
        "POST",
        "/api/v1/vendor/keys",
        &vendor,
        Some(json!({ "public_key": public })),
        &[],
    )
    .await;
    assert_eq!(s, 201, "{b}");
    let mut versions = Vec::new();
    for (id, config) in [
        ("visit-counter", json!({})),
        ("epharmacy", serde_json::from_str(PHARMACIES).expect("json")),
        ("his-hl7v2", json!({})),
    ] {
        let (wasm, toml) = component(&plugin_dir(), id);
        let mut bundle = Bundle::new(
            std::fs::read_to_string(toml).expect("manifest"),
            std::fs::read(wasm).expect("component"),
        );
        key.sign(&mut bundle);
        let resp = server
            .client
            .post(format!("{}/api/v1/plugin-versions", server.base))
            .bearer_auth(&vendor)
            .header("content-type", "application/json")
            .body(bundle.to_json())
            .send()
            .await
            .expect("sent");
        assert_eq!(resp.status().as_u16(), 201, "{id}");
        let version = resp.json::<Value>().await.expect("json")["id"]
            .as_str()
            .expect("id")
            .to_owned();
        let (s, b) = send(
            &server,
            "POST",
            &format!("/api/v1/plugin-versions/{version}/approve"),
            &reviewer,
            Some(json!({ "note": "ok" })),
            &[],
        )
        .await;
        assert_eq!(s, 200, "{id}: {b}");
        let (s, b) = send(
            &server,
            "PUT",
            &format!("/api/v1/hospitals/bv-a/activations/{id}"),
            &admin,
            Some(json!({ "version_id": version, "config": config })),
            &[],
        )
        .await;
        assert_eq!(s, 200, "{id}: {b}");
        versions.push((id.to_owned(), version));
    }
    World {
        server,
        doctor,
        admin,
        reviewer,
        versions,
    }
}

/// The pages of each module in `/api/v1/me/plugin-pages`, as `plugin/path`.
fn listed(body: &Value) -> Vec<String> {
    let mut out: Vec<String> = body["modules"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|m| {
            m["pages"].as_array().into_iter().flatten().map(move |p| {
                format!(
                    "{}{}",
                    m["plugin"].as_str().unwrap_or(""),
                    p["path"].as_str().unwrap_or("")
                )
            })
        })
        .collect();
    out.sort();
    out
}

#[tokio::test]
async fn the_menu_lists_the_pages_a_role_may_see_and_a_page_is_its_plugins_own() {
    let w = world().await;
    let s = &w.server;
    // The practitioner: visit-counter's and epharmacy's pages, not the HIS adapter's admin pages.
    let (st, b) = send(s, "GET", "/api/v1/me/plugin-pages", &w.doctor, None, &[]).await;
    assert_eq!(st, 200, "{b}");
    assert_eq!(
        listed(&b),
        ["epharmacy/ui/orders.html", "visit-counter/ui/counter.html"],
        "{b}"
    );
    let counter = b["modules"]
        .as_array()
        .and_then(|m| m.iter().find(|m| m["plugin"] == "visit-counter"))
        .expect("visit-counter")
        .clone();
    assert_eq!(counter["name"]["vi"], "Đếm lượt khám", "{counter}");
    assert_eq!(counter["pages"][0]["title"]["en"], "Visit count");
    // The module without a page for this role is still listed, by name.
    let his = b["modules"]
        .as_array()
        .and_then(|m| m.iter().find(|m| m["plugin"] == "his-hl7v2"))
        .expect("his-hl7v2 listed");
    assert_eq!(his["pages"], json!([]));
    assert_eq!(his["declares_pages"], true);
    assert_eq!(his["name"]["vi"], "Kết nối HIS (HL7 v2)");
    // The admin: every page whose roles include hospital-admin.
    let (_, b) = send(s, "GET", "/api/v1/me/plugin-pages", &w.admin, None, &[]).await;
    assert_eq!(
        listed(&b),
        [
            "epharmacy/ui/orders.html",
            "his-hl7v2/ui/log.html",
            "his-hl7v2/ui/translate.html",
            "visit-counter/ui/counter.html"
        ],
        "{b}"
    );
    // Anyone else: none.
    let (_, b) = send(s, "GET", "/api/v1/me/plugin-pages", &w.reviewer, None, &[]).await;
    assert_eq!(b["modules"], json!([]), "{b}");
    // The review shows the declared pages.
    let his_version = &w
        .versions
        .iter()
        .find(|(p, _)| p == "his-hl7v2")
        .expect("his")
        .1;
    let (st, b) = send(
        s,
        "GET",
        &format!("/api/v1/plugin-versions/{his_version}/pages"),
        &w.reviewer,
        None,
        &[],
    )
    .await;
    assert_eq!(st, 200, "{b}");
    assert_eq!(b["pages"][0]["path"], "/ui/log.html", "{b}");
    assert_eq!(b["pages"][0]["roles"], json!(["hospital-admin"]));
    assert_eq!(b["pages"][1]["title"]["vi"], "Thử chuyển đổi HL7 sang FHIR");

    // A page through its frame: HTML with the pinned policy, its JSON route,
    // and nothing of another plugin through its ticket.
    let (st, b) = send(
        s,
        "POST",
        "/api/v1/console/plugin-frames",
        &w.doctor,
        Some(json!({ "hospital": "bv-a", "plugin": "visit-counter" })),
        &[],
    )
    .await;
    assert_eq!(st, 200, "{b}");
    let url = format!("{}{}", s.base, b["url"].as_str().expect("url"));
    let resp = s
        .client
        .get(format!("{url}ui/counter.html?lang=en"))
        .send()
        .await
        .expect("page");
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.headers()["content-type"], "text/html; charset=utf-8");
    let csp: Vec<String> = resp
        .headers()
        .get_all("content-security-policy")
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_owned))
        .collect();
    assert!(
        csp.iter()
            .any(|p| p.contains("sandbox allow-scripts") && p.contains("connect-src http://")),
        "{csp:?}"
    );
    let html = resp.text().await.expect("html");
    assert!(html.contains("<script src=\"vth.js\"></script>"), "{html}");
    let script = s
        .client
        .get(format!("{url}ui/vth.js"))
        .send()
        .await
        .expect("script");
    assert_eq!(
        script.headers()["content-type"],
        "text/javascript; charset=utf-8"
    );
    // The page's own fetch (Origin: null) is answered and readable.
    let resp = s
        .client
        .post(format!("{url}visits"))
        .header("origin", "null")
        .send()
        .await
        .expect("visit");
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.headers()["access-control-allow-origin"], "null");
    assert_eq!(resp.json::<Value>().await.expect("json")["visits"], 1);
    // Another plugin's route through this ticket: not this plugin's route.
    for other in ["queue", "log", "ui/log.html", "ui/orders.html"] {
        let resp = s
            .client
            .get(format!("{url}{other}"))
            .header("origin", "null")
            .send()
            .await
            .expect("sent");
        assert_eq!(resp.status().as_u16(), 404, "{other}");
    }
    // The admin pages refuse a practitioner even on the plugin's own address.
    let resp = s
        .client
        .get(s.plugin_url("bv-a", "his-hl7v2", "/ui/log.html"))
        .bearer_auth(&w.doctor)
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status().as_u16(), 403);
    let resp = s
        .client
        .get(s.plugin_url("bv-a", "his-hl7v2", "/log"))
        .bearer_auth(&w.admin)
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status().as_u16(), 200);
}

fn screenshot_dir() -> PathBuf {
    let dir = repo_root().join("target").join("page-screenshots");
    std::fs::create_dir_all(&dir).expect("screenshot dir");
    dir
}

/// A console page in Chromium, driven through the DevTools protocol.
pub(crate) struct Console {
    pub(crate) browser: Browser,
    pub(crate) base: String,
    /// Where its screenshots go (under `target/`).
    pub(crate) shots_dir: PathBuf,
}

impl Console {
    /// Poll `js` until it is truthy; its value (bounded; the panic names what was awaited).
    pub(crate) async fn wait(&mut self, js: &str, what: &str) -> Value {
        let mut last = Value::Null;
        for _ in 0..300 {
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
        let text = self
            .browser
            .eval("document.body ? document.body.innerText : ''")
            .await
            .unwrap_or_default();
        panic!("waited in vain for {what} ({js}); last value {last}; page text: {text}");
    }

    pub(crate) async fn eval(&mut self, js: &str) -> Value {
        self.browser.eval(js).await.expect("page script")
    }

    pub(crate) async fn type_into(&mut self, selector: &str, text: &str) {
        let sel = serde_json::to_string(selector).expect("selector");
        self.wait(&format!("!!document.querySelector({sel})"), selector)
            .await;
        self.eval(&format!(
            "(() => {{ const e = document.querySelector({sel}); e.focus(); e.value = ''; }})()"
        ))
        .await;
        self.browser
            .call("Input.insertText", json!({ "text": text }))
            .await
            .expect("insertText");
    }

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

    /// Click `selector` with the mouse, as a person does: scrolled into
    /// view, pressed and released at its centre.
    pub(crate) async fn mouse_click(&mut self, selector: &str) {
        let sel = serde_json::to_string(selector).expect("selector");
        self.wait(
            &format!("(() => {{ const e = document.querySelector({sel}); return !!e && !e.disabled; }})()"),
            &format!("{selector} to be clickable"),
        )
        .await;
        let at = self
            .eval(&format!(
                "(() => {{ const e = document.querySelector({sel}); e.scrollIntoView({{ block: 'center' }}); \
                 const r = e.getBoundingClientRect(); return [r.left + r.width / 2, r.top + r.height / 2]; }})()"
            ))
            .await;
        let (x, y) = (at[0].as_f64().expect("x"), at[1].as_f64().expect("y"));
        for kind in ["mouseMoved", "mousePressed", "mouseReleased"] {
            self.browser
                .call(
                    "Input.dispatchMouseEvent",
                    json!({ "type": kind, "x": x, "y": y, "button": "left", "clickCount": 1 }),
                )
                .await
                .expect("mouse event");
        }
    }

    pub(crate) async fn login(&mut self, username: &str) {
        let url = format!("{}/console/", self.base);
        self.browser
            .call("Page.navigate", json!({ "url": url }))
            .await
            .expect("navigate");
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
        self.type_into("input[name=password]", PASSWORD).await;
        self.press_enter().await;
        self.wait(
            "location.pathname === '/console/' && document.querySelectorAll('#tabs button').length > 0 && !document.querySelector('main[aria-busy]')",
            &format!("{username}'s console"),
        )
        .await;
    }

    async fn sign_out(&mut self) {
        self.mouse_click("#sign-out").await;
        self.wait("!!document.getElementById('sign-in')", "the sign-in screen")
            .await;
    }

    /// A screenshot of the whole console: the viewport is made as tall as
    /// the page first, since Chromium paints an out-of-process frame only
    /// within the viewport.
    pub(crate) async fn screenshot(&mut self, name: &str, width: u32, mobile: bool) {
        let height = self
            .eval("document.documentElement.scrollHeight")
            .await
            .as_u64()
            .unwrap_or(1000)
            .clamp(600, 6000);
        self.browser
            .call(
                "Emulation.setDeviceMetricsOverride",
                json!({ "width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile }),
            )
            .await
            .expect("device metrics");
        tokio::time::sleep(Duration::from_millis(700)).await;
        let shot = self
            .browser
            .call("Page.captureScreenshot", json!({ "format": "png" }))
            .await
            .expect("screenshot");
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().unwrap_or_default())
            .expect("png");
        let path = self.shots_dir.join(format!("{name}.png"));
        std::fs::write(&path, png).expect("write screenshot");
        println!("screenshot: {}", path.display());
    }

    pub(crate) async fn set_width(&mut self, width: u32, mobile: bool) {
        self.browser
            .call(
                "Emulation.setDeviceMetricsOverride",
                json!({ "width": width, "height": 1000, "deviceScaleFactor": 1, "mobile": mobile }),
            )
            .await
            .expect("device metrics");
    }

    /// Nothing wider than the console at `width`, and every control labelled.
    async fn check_quality(&mut self, width: u32) {
        let unlabelled = self
            .eval("[...document.querySelectorAll('input, select, textarea')].filter(i => i.type !== 'hidden' && !(i.labels && i.labels.length)).map(i => i.id || i.name)")
            .await;
        assert_eq!(unlabelled, json!([]), "controls without a label");
        let wide = self.eval("document.documentElement.scrollWidth").await;
        assert!(
            wide.as_u64().unwrap_or(u64::MAX) <= u64::from(width),
            "the console is {wide} px wide at {width} px"
        );
    }

    /// Evaluate `js` (awaiting a promise) in the plugin frame whose URL
    /// contains `page`, through the DevTools protocol (the console cannot:
    /// the frame has an opaque origin); `None` while there is no such frame.
    pub(crate) async fn in_frame(&mut self, page: &str, js: &str) -> Option<Value> {
        let targets = self
            .browser
            .call("Target.getTargets", json!({}))
            .await
            .ok()?;
        let target = targets["targetInfos"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|t| {
                t["url"]
                    .as_str()
                    .is_some_and(|u| u.contains("/console/frame/") && u.contains(page))
            })
            .and_then(|t| t["targetId"].as_str())?
            .to_owned();
        let attached = self
            .browser
            .call(
                "Target.attachToTarget",
                json!({ "targetId": target, "flatten": true }),
            )
            .await
            .ok()?;
        let session = attached["sessionId"].as_str()?.to_owned();
        let r = self
            .browser
            .call_in(
                Some(&session),
                "Runtime.evaluate",
                json!({ "expression": js, "returnByValue": true, "awaitPromise": true }),
            )
            .await
            .ok()?;
        Some(r["result"]["value"].clone())
    }

    /// Poll `js` in the frame of `page` until it is truthy; its value.
    pub(crate) async fn frame_wait(&mut self, page: &str, js: &str, what: &str) -> Value {
        let mut last = Value::Null;
        for _ in 0..200 {
            if let Some(v) = self
                .in_frame(
                    page,
                    &format!("(() => {{ try {{ return {js}; }} catch (e) {{ return null; }} }})()"),
                )
                .await
            {
                if !(v.is_null() || v == json!(false) || v == json!("")) {
                    return v;
                }
                last = v;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let text = self
            .in_frame(page, "document.body ? document.body.innerText : ''")
            .await
            .unwrap_or_default();
        panic!(
            "waited in vain in the frame of {page} for {what} ({js}); last {last}; frame text: {text}"
        );
    }

    /// Screenshots of the console with its page at 1280 and 390 px.
    async fn shots(&mut self, name: &str, lang: &str) {
        self.set_width(1280, false).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        self.check_quality(1280).await;
        self.screenshot(&format!("{name}-{lang}-1280"), 1280, false)
            .await;
        self.set_width(390, true).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        self.check_quality(390).await;
        self.screenshot(&format!("{name}-{lang}-390"), 390, true)
            .await;
        self.set_width(1280, false).await;
    }
}

/// The sandbox gateway's payment page, as a citizen paying.
async fn pay(server: &TestServer, checkout: &str) {
    let no_follow = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let (page, ticket) = checkout.split_once("?ticket=").expect("a ticket");
    let paid = no_follow
        .post(format!("{}{page}/pay", server.base))
        .form(&[("ticket", ticket)])
        .send()
        .await
        .expect("pay");
    assert_eq!(paid.status().as_u16(), 303);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_practitioner_picks_a_module_page_from_the_menu_in_chromium() {
    let Some(chromium) = chromium() else { return };
    let w = world().await;
    let s = &w.server;
    // A paid order in the pharmacy's queue, and two HL7 messages in the log.
    let citizen = person(s, "cd-pages", "Trần Văn Bình", Role::Citizen, None).await;
    let (patient, _) = vtelehealth_tests::common::patient_with_lab(s, &w.doctor).await;
    let mr = crate::epharmacy::prescribe(s, &w.doctor, &patient, "J01CA04", 20).await;
    let (st, b) = send(
        s,
        "POST",
        "/hospitals/bv-a/plugins/epharmacy/orders",
        &citizen,
        Some(json!({ "medication_request": mr, "pharmacy": "pk-long-chau" })),
        &[],
    )
    .await;
    assert_eq!(st, 201, "{b}");
    pay(s, b["checkout_url"].as_str().expect("checkout")).await;
    let his = s.service_token("his-pages", "bv-a").await;
    let good =
        std::fs::read(repo_root().join("plugins/his-hl7v2/corpus/adt_a04_v25_cccd_bhxh.hl7"))
            .expect("corpus");
    for body in [
        good,
        b"MSH|^~\\&|HIS|BV|VTH|VTH|20240305083000||ADT^A01|BROKEN-1|P|2.5\rPID|1||".to_vec(),
    ] {
        let resp = s
            .client
            .post(s.plugin_url("bv-a", "his-hl7v2", "/messages"))
            .bearer_auth(&his)
            .header("content-type", "x-application/hl7-v2+er7")
            .body(body)
            .send()
            .await
            .expect("sent");
        assert_eq!(resp.status().as_u16(), 200);
    }

    let mut c = Console {
        browser: Browser::launch(&chromium, "about:blank")
            .await
            .expect("chromium"),
        shots_dir: screenshot_dir(),
        base: s.base.clone(),
    };
    c.set_width(1280, false).await;

    // ----- the practitioner: a menu, no path box -----
    c.login("bs.pages").await;
    let menu = c
        .wait(
            "(() => { const m = document.getElementById('modules-menu'); return m && m.innerText; })()",
            "the modules' menu",
        )
        .await;
    let menu = menu.as_str().unwrap_or_default().to_owned();
    for shown in [
        "Đếm lượt khám",
        "Bộ đếm lượt khám",
        "Nhà thuốc trực tuyến",
        "Hàng đợi đơn thuốc",
    ] {
        assert!(menu.contains(shown), "{shown} in the menu: {menu}");
    }
    assert!(!menu.contains("visit-counter"), "modules by name: {menu}");
    let hidden = c
        .eval("[!!document.querySelector('button[data-page^=\"his-hl7v2\"]'), !!document.getElementById('path-visit-counter'), !!document.getElementById('path-epharmacy')]")
        .await;
    assert_eq!(
        hidden,
        json!([false, false, false]),
        "no page the role may not see, no path box"
    );
    let inputs = c
        .eval("document.querySelectorAll('#modules-menu input').length")
        .await;
    assert_eq!(inputs, json!(0), "nothing to type in the menu");
    let his = c
        .eval("document.querySelector('#modules-menu [data-plugin=\"his-hl7v2\"]').innerText")
        .await;
    assert!(
        his.as_str()
            .unwrap_or_default()
            .contains("chưa có trang nào dành cho bạn"),
        "{his}"
    );
    // The visit counter's page, picked with the mouse.
    c.mouse_click("button[data-page='visit-counter/ui/counter.html']")
        .await;
    let ready = c
        .frame_wait(
            "ui/counter.html",
            "document.body.dataset.ready === 'true' && document.getElementById('count').dataset.count",
            "the count fetched from GET visits",
        )
        .await;
    assert_eq!(ready, json!("0"));
    let title = c
        .in_frame(
            "ui/counter.html",
            "document.querySelector('h1').textContent",
        )
        .await;
    assert_eq!(title, Some(json!("Bộ đếm lượt khám")));
    let current = c
        .eval("document.querySelector('button[data-page=\"visit-counter/ui/counter.html\"]').getAttribute('aria-current')")
        .await;
    assert_eq!(current, json!("page"));
    // A click in the page posts to its own route; the count follows.
    for expected in ["1", "2"] {
        c.in_frame(
            "ui/counter.html",
            "document.getElementById('increment').click()",
        )
        .await
        .expect("the increment button");
        c.frame_wait(
            "ui/counter.html",
            &format!("document.getElementById('count').dataset.count === '{expected}' && !document.getElementById('increment').disabled"),
            "the new count",
        )
        .await;
    }
    let said = c
        .in_frame(
            "ui/counter.html",
            "document.getElementById('message').textContent",
        )
        .await;
    assert_eq!(said, Some(json!("Đã ghi nhận lượt khám số 2.")));
    let rows = c
        .in_frame(
            "ui/counter.html",
            "document.querySelectorAll('#visits tbody tr').length",
        )
        .await;
    assert_eq!(rows, Some(json!(2)));
    let (_, counted) = send(
        s,
        "GET",
        "/hospitals/bv-a/plugins/visit-counter/visits",
        &w.doctor,
        None,
        &[],
    )
    .await;
    assert_eq!(counted["visits"], 2, "stored by the plugin: {counted}");

    // The page can reach nothing but its own plugin's routes.
    let attempts = c
        .in_frame(
            "ui/counter.html",
            r#"(async () => {
                const violations = [];
                document.addEventListener('securitypolicyviolation', (e) => violations.push(e.blockedURI));
                const out = {};
                const tries = {
                    'api': '/api/v1/me',
                    'other-plugin': '/hospitals/bv-a/plugins/epharmacy/queue',
                    'other-plugin-page': '/hospitals/bv-a/plugins/his-hl7v2/log',
                    'console': '/console/console.js',
                };
                for (const [k, u] of Object.entries(tries)) {
                    try { const r = await fetch(u); out[k] = 'sent ' + r.status; } catch (e) { out[k] = 'blocked'; }
                }
                // Through its own credential, another plugin's route is not its plugin's.
                try { await vth.json('GET', 'queue'); out['own-ticket-other-route'] = 'answered'; }
                catch (e) { out['own-ticket-other-route'] = 'refused ' + e.status; }
                out.own = (await vth.json('GET', 'visits')).visits;
                await new Promise((r) => setTimeout(r, 200));
                out.violations = violations;
                return out;
            })()"#,
        )
        .await
        .expect("the page's attempts");
    for k in ["api", "other-plugin", "other-plugin-page", "console"] {
        assert_eq!(attempts[k], "blocked", "{k}: {attempts}");
    }
    assert_eq!(
        attempts["own-ticket-other-route"], "refused 404",
        "{attempts}"
    );
    assert_eq!(attempts["own"], 2, "{attempts}");
    let violations = attempts["violations"].to_string();
    assert!(
        violations.contains("/api/v1/me") && violations.contains("/plugins/epharmacy/queue"),
        "{attempts}"
    );
    let usage = s.runtime.metrics.usage(Some("bv-a"));
    let calls = |p: &str| {
        usage
            .iter()
            .filter(|u| u.plugin == p)
            .map(|u| u.calls)
            .sum::<u64>()
    };
    assert_eq!(calls("his-hl7v2"), 2, "only the HIS's two messages");
    c.shots("visit-counter", "vi").await;
    // English: the console's switch reopens the page in English.
    c.mouse_click("#lang-switch").await;
    c.frame_wait(
        "lang=en",
        "document.body.dataset.ready === 'true' && document.querySelector('h1').textContent === 'Visit counter' && document.getElementById('count').dataset.count === '2'",
        "the page in English",
    )
    .await;
    let heading = c
        .eval("document.querySelector('#frame-slot h2').textContent")
        .await;
    assert_eq!(heading, json!("Visit counter: Visit count"));
    let current = c
        .eval("document.querySelector('button[data-page=\"visit-counter/ui/counter.html\"]').getAttribute('aria-current')")
        .await;
    assert_eq!(
        current,
        json!("page"),
        "the reopened page is marked in the menu"
    );
    c.shots("visit-counter", "en").await;
    c.mouse_click("#lang-switch").await;
    // Once redrawn in Vietnamese, with the counter reopened.
    c.wait(
        "document.documentElement.lang === 'vi' && !document.querySelector('main[aria-busy]') && document.querySelector('#frame-slot h2') && document.querySelector('#frame-slot h2').textContent === 'Đếm lượt khám: Bộ đếm lượt khám'",
        "Vietnamese again",
    )
    .await;

    // The pharmacy's order queue.
    c.mouse_click("button[data-page='epharmacy/ui/orders.html']")
        .await;
    let queue = c
        .frame_wait(
            "ui/orders.html",
            "document.body.dataset.ready === 'true' && document.getElementById('orders') && document.getElementById('orders').innerText",
            "the order queue",
        )
        .await;
    let queue = queue.as_str().unwrap_or_default();
    assert!(
        queue.contains("dh-1")
            && queue.contains("Nhà thuốc Long Châu")
            && queue.contains("đã xác nhận")
            && queue.contains("240.000"),
        "{queue}"
    );
    assert!(!queue.contains('{'), "no raw JSON: {queue}");
    c.shots("epharmacy-queue", "vi").await;
    c.sign_out().await;

    // ----- the hospital admin: the HIS adapter's log and translation tester -----
    c.login("qt.pages").await;
    c.mouse_click("#tab-modules").await;
    c.wait(
        "!!document.querySelector('button[data-page=\"his-hl7v2/ui/log.html\"]')",
        "the admin's page menu",
    )
    .await;
    c.mouse_click("button[data-page='his-hl7v2/ui/log.html']")
        .await;
    let log = c
        .frame_wait(
            "ui/log.html",
            "document.body.dataset.ready === 'true' && document.getElementById('log-table') && document.getElementById('log-table').innerText",
            "the message log",
        )
        .await;
    let log = log.as_str().unwrap_or_default();
    assert!(
        log.contains("ADT^A04")
            && log.contains("A04-0002")
            && log.contains("AA: đã chấp nhận và lưu")
            && log.contains("BROKEN-1")
            && log.contains("AE"),
        "{log}"
    );
    c.shots("his-hl7v2-log", "vi").await;
    c.mouse_click("button[data-page='his-hl7v2/ui/translate.html']")
        .await;
    c.frame_wait(
        "ui/translate.html",
        "document.body.dataset.ready === 'true'",
        "the translation tester",
    )
    .await;
    c.in_frame(
        "ui/translate.html",
        "document.getElementById('translate').click()",
    )
    .await
    .expect("the translate button");
    let table = c
        .frame_wait(
            "ui/translate.html",
            "document.getElementById('fhir-table') && document.getElementById('fhir-table').innerText",
            "the FHIR result table",
        )
        .await;
    let table = table.as_str().unwrap_or_default();
    assert!(
        table.contains("Người bệnh")
            && table.contains("LÊ THỊ HỒNG NHUNG")
            && table.contains("Lượt khám"),
        "{table}"
    );
    assert!(!table.contains('{'), "a readable table, not JSON: {table}");
    c.shots("his-hl7v2-translate", "vi").await;
    // A message that cannot be mapped: the reason and the ACK it would get.
    c.in_frame(
        "ui/translate.html",
        "(() => { document.getElementById('message-text').value = 'MSH|^~\\\\&|HIS|BV|VTH|VTH|20240305||ADT^A01|X-1|P|2.5\\rPID|1||'; document.getElementById('translate').click(); return true; })()",
    )
    .await
    .expect("the tester");
    let refused = c
        .frame_wait(
            "ui/translate.html",
            "document.getElementById('issue-table') && document.getElementById('message').textContent",
            "the refusal",
        )
        .await;
    assert!(
        refused
            .as_str()
            .unwrap_or_default()
            .contains("ACK sẽ là AE"),
        "{refused}"
    );
    c.mouse_click("#lang-switch").await;
    c.frame_wait(
        "lang=en",
        "document.body.dataset.ready === 'true' && document.querySelector('h1').textContent === 'Try an HL7 to FHIR translation'",
        "the tester in English",
    )
    .await;
    c.in_frame(
        "ui/translate.html",
        "document.getElementById('translate').click()",
    )
    .await
    .expect("the translate button");
    c.frame_wait(
        "lang=en",
        "document.getElementById('fhir-table') && document.getElementById('fhir-table').innerText.includes('Patient')",
        "the English result",
    )
    .await;
    c.shots("his-hl7v2-translate", "en").await;
    c.mouse_click("button[data-page='his-hl7v2/ui/log.html']")
        .await;
    c.frame_wait(
        "ui/log.html",
        "document.getElementById('log-table') && document.getElementById('log-table').innerText.includes('accepted and stored')",
        "the log in English",
    )
    .await;
    c.shots("his-hl7v2-log", "en").await;
    c.mouse_click("#lang-switch").await;
    c.wait(
        "document.documentElement.lang === 'vi' && !document.querySelector('main[aria-busy]')",
        "Vietnamese again",
    )
    .await;
    c.sign_out().await;

    // ----- the ministry's review shows the pages a version declares -----
    let his_version = w
        .versions
        .iter()
        .find(|(p, _)| p == "his-hl7v2")
        .expect("his")
        .1
        .clone();
    c.login("thamdinh.pages").await;
    c.mouse_click(&format!("button[data-version='{his_version}']"))
        .await;
    let pages = c
        .wait(
            "(() => { const t = document.getElementById('pages-table'); return t && t.innerText; })()",
            "the declared pages in the review",
        )
        .await;
    let pages = pages.as_str().unwrap_or_default();
    assert!(
        pages.contains("Nhật ký bản tin HL7")
            && pages.contains("HL7 message log")
            && pages.contains("/ui/log.html")
            && pages.contains("Quản trị bệnh viện"),
        "{pages}"
    );
    c.check_quality(1280).await;
    c.screenshot("review-pages-vi-1280", 1280, false).await;
    c.browser.kill().await;
}
