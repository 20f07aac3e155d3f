//! The teleconsultation story as doctors live it, in headless Chromium, through the
//! teleconsult plugin's own pages in the console and the room page: set-up through the API
//! (hospitals, people, the reviewed plugin active at three hospitals, the patient's record,
//! the on-call rota), then every step a person takes by clicking and typing:
//!
//! 1. a district doctor finds the patient by name on "Yêu cầu hội chẩn", picks the central
//!    hospital (the console opens the central hospital's copy of the page), the specialty,
//!    writes the question, marks it urgent and sends it;
//! 2. the on-call central doctor sees the request in "Hàng chờ hội chẩn" and the page in the
//!    notifications, opens it ("Mở") onto the consultation's page, answers the page and
//!    accepts with a schedule;
//! 3. the chair opens it to the network; a doctor of a provincial hospital opens "Lịch phiên
//!    hội chẩn mở", the central hospital's schedule, and joins as observer with one click;
//! 4. the chair, the requester and the observer press "Vào phòng", the chair admits them and
//!    everyone decodes everyone who publishes;
//! 5. the chair removes the observer from the room page;
//! 6. the chair signs the conclusion in the form; the requester sees it and acknowledges;
//!    history shows the timings;
//! 7. nothing the observer saw names the patient or shows their national numbers.
//!
//! Screenshots at 1280 and 390 px, Vietnamese and English, go to
//! `target/teleconsult-screenshots/`.

use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};
use vtelehealth_runtime::capabilities::identity::{Hospital, Tier};
use vtelehealth_runtime::config::Limits;
use vtelehealth_runtime::governance::bundle::Bundle;
use vtelehealth_runtime::governance::signing::SigningKey;
use vtelehealth_runtime::identity::{NewUser, Role};
use vtelehealth_runtime::video::sfu::MediaRelay;
use vtelehealth_tests::browser::{Browser, ROOM_STATS_JS, chromium};
use vtelehealth_tests::common::{CITIZEN_ID, HEALTH_ID, patient_with_lab, send};
use vtelehealth_tests::{TestServer, component, plugin_dir, repo_root};

const PASSWORD: &str = "password-1";
const VENDOR: &str = "vtelehealth";
const CENTRAL: &str = "bv-a";
const DISTRICT: &str = "bv-b";
const PROVINCE: &str = "bv-tinh";
/// The patient `patient_with_lab` records at the district hospital.
const PATIENT_NAME: &str = "Trần Văn Bình";

async fn user(
    server: &TestServer,
    username: &str,
    name: &str,
    role: Role,
    hospital: &str,
) -> (String, String) {
    let mut u = NewUser::new(username, name, role, PASSWORD);
    u.hospital_id = Some(hospital.into());
    let user = server.runtime.identity.create_user(u).await.expect("user");
    let token = server.runtime.identity.token_for(&user).expect("token");
    (user.id, token)
}

/// The reviewed teleconsult plugin, active at `hospitals` (each activated by its admin).
async fn publish_and_activate(server: &TestServer, admins: &[(&str, &str)]) {
    server
        .runtime
        .identity
        .create_vendor(VENDOR, "VTelehealth")
        .await
        .expect("vendor");
    let mut v = NewUser::new("dev.story", "Lập trình viên", Role::VendorUser, PASSWORD);
    v.vendor_id = Some(VENDOR.into());
    let v = server
        .runtime
        .identity
        .create_user(v)
        .await
        .expect("vendor user");
    let vendor = server.runtime.identity.token_for(&v).expect("token");
    let r = NewUser::new("thamdinh.story", "Thẩm định viên", Role::Reviewer, PASSWORD);
    let r = server
        .runtime
        .identity
        .create_user(r)
        .await
        .expect("reviewer");
    let reviewer = server.runtime.identity.token_for(&r).expect("token");
    let key = SigningKey::generate().expect("key");
    let public = base64::engine::general_purpose::STANDARD.encode(key.public_key());
    let (s, b) = send(
        server,
        "POST",
        "/api/v1/vendor/keys",
        &vendor,
        Some(json!({ "public_key": public })),
        &[],
    )
    .await;
    assert_eq!(s, 201, "{b}");
    let (wasm, toml) = component(&plugin_dir(), "teleconsult");
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
    assert_eq!(resp.status().as_u16(), 201);
    let version = resp.json::<Value>().await.expect("json")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let (s, b) = send(
        server,
        "POST",
        &format!("/api/v1/plugin-versions/{version}/approve"),
        &reviewer,
        Some(json!({ "note": "ok" })),
        &[],
    )
    .await;
    assert_eq!(s, 200, "{b}");
    for (hospital, admin) in admins {
        let (s, b) = send(
            server,
            "PUT",
            &format!("/api/v1/hospitals/{hospital}/activations/teleconsult"),
            admin,
            Some(json!({ "version_id": version, "config": {} })),
            &[],
        )
        .await;
        assert_eq!(s, 200, "{hospital}: {b}");
    }
}

fn shots_dir() -> std::path::PathBuf {
    let dir = repo_root().join("target").join("teleconsult-screenshots");
    std::fs::create_dir_all(&dir).expect("screenshot dir");
    dir
}

/// One person's console in Chromium, driven as they would: mouse clicks at the centre of
/// what they click (in the console, in a plugin page's frame, in the room) and typed text.
struct Desk {
    who: &'static str,
    browser: Browser,
    base: String,
    /// The text of every plugin page this person saw, for the privacy check.
    seen: Vec<String>,
    /// The DevTools session of the room's tab, once found.
    room: Option<String>,
}

const FRAME: &str = "document.getElementById('plugin-frame')";

fn truthy(v: &Value) -> bool {
    !(v.is_null() || *v == json!(false) || *v == json!("") || *v == json!(0))
}

impl Desk {
    async fn open(chromium: &std::path::Path, who: &'static str, base: &str) -> Self {
        let mut d = Self {
            who,
            browser: Browser::launch(chromium, "about:blank")
                .await
                .expect("chromium"),
            base: base.to_owned(),
            seen: Vec::new(),
            room: None,
        };
        d.width(1280, false).await;
        d
    }

    async fn width(&mut self, width: u32, mobile: bool) {
        self.browser
            .call(
                "Emulation.setDeviceMetricsOverride",
                json!({ "width": width, "height": 1100, "deviceScaleFactor": 1, "mobile": mobile }),
            )
            .await
            .expect("device metrics");
    }

    async fn eval(&mut self, js: &str) -> Value {
        self.browser.eval(js).await.expect("console script")
    }

    /// Poll `js` in the console until truthy (at most 60 s).
    async fn wait(&mut self, js: &str, what: &str) -> Value {
        let mut last = Value::Null;
        for _ in 0..600 {
            if let Ok(v) = self
                .browser
                .eval(&format!(
                    "(() => {{ try {{ return {js}; }} catch (e) {{ return null; }} }})()"
                ))
                .await
            {
                if truthy(&v) {
                    return v;
                }
                last = v;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let text = self
            .eval("document.body ? document.body.innerText : ''")
            .await;
        panic!(
            "{}: waited in vain for {what} ({js}); last {last}; console text: {text}",
            self.who
        );
    }

    async fn mouse_at(&mut self, x: f64, y: f64) {
        // The console's tab in front (the room may have its own tab).
        self.browser
            .call("Page.bringToFront", json!({}))
            .await
            .expect("bring to front");
        if self.room.is_some() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
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

    async fn key(&mut self, key: &str, code: &str, vk: u32, text: Option<&str>) {
        for kind in ["keyDown", "keyUp"] {
            let mut k = json!({ "type": kind, "key": key, "code": code,
                "windowsVirtualKeyCode": vk, "nativeVirtualKeyCode": vk });
            if kind == "keyDown"
                && let Some(t) = text
            {
                k["text"] = json!(t);
            }
            self.browser
                .call("Input.dispatchKeyEvent", k)
                .await
                .expect("key event");
        }
    }

    /// Click `selector` of the console itself.
    async fn click(&mut self, selector: &str) {
        let sel = json!(selector);
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
        self.mouse_at(at[0].as_f64().expect("x"), at[1].as_f64().expect("y"))
            .await;
    }

    async fn type_text(&mut self, text: &str) {
        self.browser
            .call("Input.insertText", json!({ "text": text }))
            .await
            .expect("insertText");
    }

    async fn login(&mut self, username: &str) {
        let url = format!("{}/console/", self.base);
        self.browser
            .call("Page.navigate", json!({ "url": url }))
            .await
            .expect("navigate");
        self.wait("!!document.getElementById('sign-in')", "the sign-in button")
            .await;
        self.click("#sign-in").await;
        self.wait(
            "location.pathname === '/oidc/authorize' && !!document.querySelector('input[name=username]')",
            "the login form",
        )
        .await;
        self.click("input[name=username]").await;
        self.type_text(username).await;
        self.click("input[name=password]").await;
        self.type_text(PASSWORD).await;
        self.key("Enter", "Enter", 13, Some("\r")).await;
        self.wait(
            "location.pathname === '/console/' && document.querySelectorAll('#tabs button').length > 0 && !document.querySelector('main[aria-busy]')",
            &format!("{username}'s console"),
        )
        .await;
    }

    /// The DevTools session of the plugin frame showing `page` (a part of its URL).
    async fn frame_session(&mut self, page: &str) -> Option<String> {
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
                t["type"] == "iframe"
                    && t["url"]
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
        attached["sessionId"].as_str().map(str::to_owned)
    }

    /// Evaluate `js` in the plugin frame showing `page`; `None` while there is none.
    async fn in_frame(&mut self, page: &str, js: &str) -> Option<Value> {
        let session = self.frame_session(page).await?;
        let r = self
            .browser
            .call_in(
                Some(&session),
                "Runtime.evaluate",
                json!({ "expression": js, "returnByValue": true, "awaitPromise": true }),
            )
            .await
            .ok()?;
        if r.get("exceptionDetails").is_some() {
            return None;
        }
        Some(r["result"]["value"].clone())
    }

    /// Poll `js` in the frame of `page` until truthy (at most 60 s).
    async fn frame_wait(&mut self, page: &str, js: &str, what: &str) -> Value {
        let mut last = Value::Null;
        for _ in 0..400 {
            if let Some(v) = self
                .in_frame(
                    page,
                    &format!("(() => {{ try {{ return {js}; }} catch (e) {{ return null; }} }})()"),
                )
                .await
            {
                if truthy(&v) {
                    return v;
                }
                last = v;
            }
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
        let text = self
            .in_frame(page, "document.body ? document.body.innerText : ''")
            .await
            .unwrap_or_default();
        let console = self.eval("document.getElementById('messages') ? document.getElementById('messages').innerText : ''").await;
        let mut frames = Vec::new();
        for other in [
            "ui/request.html",
            "ui/queue.html",
            "ui/consultation.html",
            "ui/sessions.html",
            "ui/history.html",
        ] {
            if let Some(t) = self
                .in_frame(other, "document.body ? document.body.innerText : ''")
                .await
            {
                frames.push(format!("{other}: {t}"));
            }
        }
        panic!(
            "{}: waited in vain in {page} for {what} ({js}); last {last}; frame text: {text}; console says: {console}; frames: {frames:#?}",
            self.who
        );
    }

    /// The text of the frame of `page`, remembered as seen.
    async fn frame_text(&mut self, page: &str) -> String {
        let t = self
            .frame_wait(
                page,
                "document.body && document.body.dataset.ready && document.body.innerText",
                "the page's text",
            )
            .await;
        let t = t.as_str().unwrap_or_default().to_owned();
        self.seen.push(t.clone());
        t
    }

    /// Click `selector` in the plugin frame showing `page`, with the mouse.
    async fn frame_click(&mut self, page: &str, selector: &str) {
        let sel = json!(selector);
        self.frame_wait(
            page,
            &format!("(() => {{ const e = document.querySelector({sel}); return !!e && !e.disabled; }})()"),
            &format!("{selector} to be clickable"),
        )
        .await;
        // Wait for the console's layout to settle (a message above the frame moves it).
        let mut frame = Value::Null;
        for _ in 0..20 {
            self.eval(&format!("{FRAME}.scrollIntoView({{ block: 'start' }})"))
                .await;
            let now = self
                .eval(&format!(
                    "(() => {{ const f = {FRAME}; const r = f.getBoundingClientRect(); return [r.left + f.clientLeft, r.top + f.clientTop]; }})()"
                ))
                .await;
            if now == frame {
                break;
            }
            frame = now;
            tokio::time::sleep(Duration::from_millis(120)).await;
        }
        let inner = self
            .in_frame(
                page,
                &format!(
                    "(() => {{ const e = document.querySelector({sel}); e.scrollIntoView({{ block: 'center' }}); \
                     const r = e.getBoundingClientRect(); return [r.left + Math.min(r.width / 2, 12), r.top + r.height / 2]; }})()"
                ),
            )
            .await
            .expect("the element's place");
        let x = frame[0].as_f64().unwrap_or(0.0) + inner[0].as_f64().unwrap_or(0.0);
        let y = frame[1].as_f64().unwrap_or(0.0) + inner[1].as_f64().unwrap_or(0.0);
        self.mouse_at(x, y).await;
    }

    /// Click `selector` in the frame of `page` until `done` holds there (a click that
    /// landed while the page was still moving is repeated, at most three times).
    async fn frame_click_until(&mut self, page: &str, selector: &str, done: &str) {
        for _ in 0..3 {
            self.frame_click(page, selector).await;
            for _ in 0..20 {
                if self.in_frame(page, done).await.is_some_and(|v| truthy(&v)) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(150)).await;
            }
        }
        self.frame_wait(page, done, &format!("{selector} to take effect"))
            .await;
    }

    /// Click into the field `selector` of the frame and type `text`.
    async fn frame_type(&mut self, page: &str, selector: &str, text: &str) {
        self.frame_click(page, selector).await;
        self.type_text(text).await;
        let sel = json!(selector);
        let want = json!(text);
        let typed = self
            .in_frame(
                page,
                &format!("document.querySelector({sel}).value === {want}"),
            )
            .await;
        if typed != Some(json!(true)) {
            // The key events went to the console: type in the frame's own session.
            let session = self.frame_session(page).await.expect("frame session");
            self.browser
                .call_in(Some(&session), "Input.insertText", json!({ "text": text }))
                .await
                .expect("insertText in the frame");
        }
        self.frame_wait(
            page,
            &format!("document.querySelector({sel}).value === {want}"),
            &format!("{text} typed into {selector}"),
        )
        .await;
    }

    /// The DevTools session of the room page's tab (the console opens the room in a tab of
    /// its own: rooms are never framed).
    async fn room_session(&mut self) -> Option<String> {
        if let Some(s) = &self.room {
            return Some(s.clone());
        }
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
                t["type"] == "page" && t["url"].as_str().is_some_and(|u| u.contains("/rooms/"))
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
        self.room = attached["sessionId"].as_str().map(str::to_owned);
        self.room.clone()
    }

    /// Evaluate `js` in the room page's tab; `Null` while there is none.
    async fn in_room(&mut self, js: &str) -> Value {
        let Some(session) = self.room_session().await else {
            return Value::Null;
        };
        let r = self
            .browser
            .call_in(
                Some(&session),
                "Runtime.evaluate",
                json!({ "expression": js, "returnByValue": true, "awaitPromise": true }),
            )
            .await;
        match r {
            Ok(r) => r["result"]["value"].clone(),
            Err(_) => {
                self.room = None;
                Value::Null
            }
        }
    }

    async fn room_wait(&mut self, js: &str, what: &str) -> Value {
        let mut last = Value::Null;
        for _ in 0..480 {
            let v = self
                .in_room(&format!(
                    "(() => {{ try {{ return {js}; }} catch (e) {{ return null; }} }})()"
                ))
                .await;
            if truthy(&v) {
                return v;
            }
            last = v;
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        let text = self.in_room("document.body.innerText").await;
        let console = self
            .eval("document.getElementById('messages').innerText")
            .await;
        panic!(
            "{}: waited in vain in the room for {what}; last {last}; room text: {text}; console: {console}",
            self.who
        );
    }

    /// Click `selector` in the room page with the mouse.
    async fn room_click(&mut self, selector: &str) {
        let sel = json!(selector);
        self.room_wait(
            &format!("(() => {{ const e = document.querySelector({sel}); return !!e && !e.disabled; }})()"),
            &format!("{selector} to be clickable"),
        )
        .await;
        let at = self
            .in_room(&format!(
                "(() => {{ const e = document.querySelector({sel}); e.scrollIntoView({{ block: 'center' }}); \
                 const r = e.getBoundingClientRect(); return [r.left + r.width / 2, r.top + r.height / 2]; }})()"
            ))
            .await;
        let session = self.room_session().await.expect("the room's tab");
        self.browser
            .call_in(Some(&session), "Page.bringToFront", json!({}))
            .await
            .expect("the room's tab in front");
        for kind in ["mouseMoved", "mousePressed", "mouseReleased"] {
            self.browser
                .call_in(
                    Some(&session),
                    "Input.dispatchMouseEvent",
                    json!({ "type": kind, "x": at[0].as_f64().unwrap_or(0.0), "y": at[1].as_f64().unwrap_or(0.0), "button": "left", "clickCount": 1 }),
                )
                .await
                .expect("mouse event in the room");
        }
    }

    /// A screenshot of the room's tab at 1280 px.
    async fn room_shot(&mut self, name: &str) {
        let session = self.room_session().await.expect("the room's tab");
        let shot = self
            .browser
            .call_in(
                Some(&session),
                "Page.captureScreenshot",
                json!({ "format": "png" }),
            )
            .await
            .expect("screenshot");
        let png = base64::engine::general_purpose::STANDARD
            .decode(
                shot["result"]["data"]
                    .as_str()
                    .or(shot["data"].as_str())
                    .unwrap_or_default(),
            )
            .expect("png");
        std::fs::write(shots_dir().join(format!("{name}.png")), png).expect("write screenshot");
    }

    /// Screenshots of the console with its page, at 1280 and 390 px.
    async fn shots(&mut self, name: &str, lang: &str) {
        for (width, mobile) in [(1280u32, false), (390, true)] {
            self.width(width, mobile).await;
            tokio::time::sleep(Duration::from_millis(500)).await;
            let wide = self.eval("document.documentElement.scrollWidth").await;
            assert!(
                wide.as_u64().unwrap_or(u64::MAX) <= u64::from(width),
                "{}: {name} is {wide} px wide at {width} px",
                self.who
            );
            let height = self
                .eval("document.documentElement.scrollHeight")
                .await
                .as_u64()
                .unwrap_or(1100)
                .clamp(600, 4000);
            self.browser
                .call(
                    "Emulation.setDeviceMetricsOverride",
                    json!({ "width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile }),
                )
                .await
                .expect("device metrics");
            tokio::time::sleep(Duration::from_millis(600)).await;
            let shot = self
                .browser
                .call("Page.captureScreenshot", json!({ "format": "png" }))
                .await
                .expect("screenshot");
            let png = base64::engine::general_purpose::STANDARD
                .decode(shot["data"].as_str().unwrap_or_default())
                .expect("png");
            std::fs::write(shots_dir().join(format!("{name}-{lang}-{width}.png")), png)
                .expect("write screenshot");
        }
        self.width(1280, false).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    /// The plugin frame's page width fits a phone: nothing wider than the frame.
    async fn frame_fits(&mut self, page: &str) {
        self.width(390, true).await;
        tokio::time::sleep(Duration::from_millis(400)).await;
        let fits = self
            .in_frame(
                page,
                "document.documentElement.scrollWidth <= window.innerWidth + 1",
            )
            .await;
        assert_eq!(fits, Some(json!(true)), "{}: {page} fits 390 px", self.who);
        self.width(1280, false).await;
        tokio::time::sleep(Duration::from_millis(400)).await;
    }

    /// Wait until the room page says `status` (e.g. `connected`, `waiting`).
    async fn room_status(&mut self, status: &str) {
        self.room_wait(
            &format!("window.vthState && window.vthState().status === '{status}'"),
            &format!("the room's status {status}"),
        )
        .await;
    }

    /// The room's WebRTC stats (`ROOM_STATS_JS`).
    async fn room_stats(&mut self) -> Value {
        self.in_room(ROOM_STATS_JS).await
    }
}

/// How many other people's video this room page decodes (frames > 0).
fn decoding(stats: &Value) -> usize {
    stats["decoded"]
        .as_object()
        .map(|m| m.values().filter(|v| v.as_u64().unwrap_or(0) > 0).count())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn teleconsult_story_in_chromium_from_request_to_acknowledged_conclusion() {
    let Some(chromium) = chromium() else { return };
    // ----- set-up through the API -----
    let no_dev_plugins = tempfile::TempDir::new().expect("dir");
    let s = TestServer::start(no_dev_plugins.path(), Limits::default()).await;
    let relay = MediaRelay::start("127.0.0.1:0".parse().expect("address"))
        .await
        .expect("media relay starts");
    assert!(s.runtime.video.set_media_plane(std::sync::Arc::new(relay)));
    for (id, name, tier, province) in [
        (
            CENTRAL,
            "Bệnh viện Trung ương Huế",
            Tier::Central,
            "Thừa Thiên Huế",
        ),
        (
            DISTRICT,
            "Trung tâm Y tế huyện Phong Điền",
            Tier::District,
            "Thừa Thiên Huế",
        ),
        (
            PROVINCE,
            "Bệnh viện Đa khoa tỉnh Quảng Trị",
            Tier::Provincial,
            "Quảng Trị",
        ),
    ] {
        s.runtime
            .hospitals
            .upsert(Hospital {
                id: id.into(),
                name: name.into(),
                tier,
                province: province.into(),
                ..Default::default()
            })
            .await
            .expect("hospital");
    }
    let (_, admin_central) = user(
        &s,
        "qt.tw",
        "Quản trị Trung ương",
        Role::HospitalAdmin,
        CENTRAL,
    )
    .await;
    let (_, admin_district) = user(
        &s,
        "qt.huyen",
        "Quản trị huyện",
        Role::HospitalAdmin,
        DISTRICT,
    )
    .await;
    let (_, admin_province) = user(
        &s,
        "qt.tinh",
        "Quản trị tỉnh",
        Role::HospitalAdmin,
        PROVINCE,
    )
    .await;
    let (chair_id, _) = user(
        &s,
        "bs.chau",
        "PGS.TS. Lê Minh Châu",
        Role::Practitioner,
        CENTRAL,
    )
    .await;
    let (_, requester) = user(
        &s,
        "bs.nam",
        "BS. Nguyễn Văn Nam",
        Role::Practitioner,
        DISTRICT,
    )
    .await;
    let (_, _) = user(
        &s,
        "bs.hoa",
        "BS. Phạm Thị Hoa",
        Role::Practitioner,
        PROVINCE,
    )
    .await;
    publish_and_activate(
        &s,
        &[
            (CENTRAL, admin_central.as_str()),
            (DISTRICT, admin_district.as_str()),
            (PROVINCE, admin_province.as_str()),
        ],
    )
    .await;
    let (st, b) = send(
        &s,
        "PUT",
        &format!("/hospitals/{CENTRAL}/plugins/teleconsult/oncall/tim-mach"),
        &admin_central,
        Some(json!({ "name": "Tim mạch", "on_call": [chair_id], "group": [] })),
        &[],
    )
    .await;
    assert_eq!(st, 200, "{b}");
    let (patient, observation) = patient_with_lab(&s, &requester).await;
    let forbidden = [PATIENT_NAME, CITIZEN_ID, HEALTH_ID];

    let mut district = Desk::open(&chromium, "district doctor", &s.base).await;
    let mut chair = Desk::open(&chromium, "chair", &s.base).await;
    let mut observer = Desk::open(&chromium, "observer", &s.base).await;

    // ----- 1. the district doctor files the request -----
    district.login("bs.nam").await;
    district
        .click("button[data-page='teleconsult/ui/request.html']")
        .await;
    let page = "ui/request.html";
    district
        .frame_wait(
            page,
            "document.body.dataset.step === 'patient'",
            "the patient step",
        )
        .await;
    district.frame_type(page, "#patient-q", "Bình").await;
    district.frame_click(page, "#patient-search").await;
    let found = district
        .frame_wait(page, "document.querySelector('#patient-results li') && document.getElementById('patient-results').innerText", "a patient found")
        .await;
    assert!(
        found.as_str().unwrap_or_default().contains(PATIENT_NAME),
        "{found}"
    );
    district.shots("request-1-patient", "vi").await;
    district.frame_fits(page).await;
    district
        .frame_click_until(
            page,
            "button[data-patient='0']",
            "!document.getElementById('upper-panel').hidden",
        )
        .await;
    district
        .frame_click_until(
            page,
            "#upper-panel input[value='bv-a']",
            "document.querySelector('#upper-panel input[value=\"bv-a\"]').checked",
        )
        .await;
    let upper = district
        .in_frame(page, "document.getElementById('upper-panel').innerText")
        .await
        .unwrap_or_default();
    assert!(
        upper
            .as_str()
            .unwrap_or_default()
            .contains("Bệnh viện Trung ương Huế"),
        "{upper}"
    );
    assert!(
        !upper.as_str().unwrap_or_default().contains("bv-a"),
        "hospitals by name: {upper}"
    );
    district.frame_click(page, "#continue").await;
    // The console opens the central hospital's copy of the page, the patient carried along.
    district
        .frame_wait(page, "document.body.dataset.step === 'request' && document.getElementById('patient-name').textContent", "the request form at the central hospital")
        .await;
    let form = district.frame_text(page).await;
    assert!(
        form.contains(PATIENT_NAME) && form.contains("Bệnh viện Trung ương Huế"),
        "{form}"
    );
    assert!(form.contains("Tim mạch"), "the specialty by name: {form}");
    district
        .frame_type(page, "#question", "Nam 58 tuổi, đau ngực kéo dài 3 giờ, ST chênh lên ở V1-V4; xin ý kiến can thiệp mạch vành")
        .await;
    district
        .frame_click(page, "input[name=urgency][value=urgent]")
        .await;
    district
        .frame_type(page, "#records", &format!("Observation/{observation}"))
        .await;
    district.shots("request-2-form", "vi").await;
    district.frame_fits(page).await;
    district.frame_click(page, "#submit").await;
    let cpage = "ui/consultation.html";
    district
        .frame_wait(
            cpage,
            "document.body.dataset.status === 'requested'",
            "the new request's page",
        )
        .await;
    let id = district
        .in_frame(cpage, "new URLSearchParams(location.search).get('id')")
        .await
        .and_then(|v| v.as_str().map(str::to_owned))
        .expect("the consultation's id in the page's URL");
    let text = district.frame_text(cpage).await;
    assert!(
        text.contains("Khẩn") && text.contains(PATIENT_NAME),
        "{text}"
    );

    // ----- 2. the on-call central doctor: the queue, the page, accept -----
    chair.login("bs.chau").await;
    chair
        .click("button[data-page='teleconsult/ui/queue.html']")
        .await;
    let qpage = "ui/queue.html";
    let queue = chair.frame_text(qpage).await;
    assert!(
        queue.contains("Tim mạch")
            && queue.contains("Khẩn")
            && queue.contains("BS. Nguyễn Văn Nam")
            && queue.contains("Trung tâm Y tế huyện Phong Điền"),
        "{queue}"
    );
    chair.shots("queue", "vi").await;
    chair.frame_fits(qpage).await;
    chair.click("#tab-notices").await;
    chair
        .wait("!!document.querySelector('#notices li[data-topic=\"teleconsult.page\"] button[data-open-notice]')", "the page in the notifications")
        .await;
    chair
        .click("#notices li[data-topic=\"teleconsult.page\"] button[data-open-notice]")
        .await;
    chair
        .frame_wait(
            cpage,
            "document.body.dataset.status === 'requested' && !!document.getElementById('accept')",
            "the consultation's page, opened from the notification",
        )
        .await;
    let seen = chair.frame_text(cpage).await;
    assert!(
        seen.contains("BS. Nguyễn Văn Nam") && seen.contains(PATIENT_NAME),
        "{seen}"
    );
    assert!(!seen.contains("\"status\""), "a page, not JSON: {seen}");
    chair.frame_click(cpage, "#page-ack").await;
    chair
        .frame_wait(
            cpage,
            "!document.getElementById('page-ack') && document.body.dataset.ready === 'true'",
            "the page answered",
        )
        .await;
    chair.shots("consultation-1-requested", "vi").await;
    chair.frame_click(cpage, "#accept").await;
    chair
        .frame_wait(cpage, "document.body.dataset.status === 'accepted' && !!document.getElementById('enter-room')", "accepted")
        .await;

    // ----- 3. opened to the network; a provincial doctor joins as observer -----
    chair
        .frame_type(
            cpage,
            "#session-title",
            "Hội chẩn nhồi máu cơ tim cấp: chỉ định can thiệp",
        )
        .await;
    chair.frame_click(cpage, "#open-session").await;
    chair
        .frame_wait(cpage, "!!document.querySelector('#session p') && document.querySelector('#session p').textContent.includes('nhồi máu')", "the session opened")
        .await;
    chair.shots("consultation-2-accepted", "vi").await;
    chair.frame_fits(cpage).await;

    observer.login("bs.hoa").await;
    observer
        .click("button[data-page='teleconsult/ui/sessions.html']")
        .await;
    let spage = "ui/sessions.html";
    observer
        .frame_wait(
            spage,
            "!!document.querySelector('#other-hospitals button[data-hospital=\"bv-a\"]')",
            "the other hospitals' schedules",
        )
        .await;
    observer.frame_text(spage).await;
    observer
        .frame_click_until(
            spage,
            "#other-hospitals button[data-hospital='bv-a']",
            "document.querySelector('#sessions h2').textContent.includes('Trung ương')",
        )
        .await;
    let join = format!("button[data-join='{id}']");
    observer
        .frame_wait(
            spage,
            &format!("!!document.querySelector({})", json!(join)),
            "the central hospital's session",
        )
        .await;
    let schedule = observer.frame_text(spage).await;
    assert!(
        schedule.contains("nhồi máu") && schedule.contains("PGS.TS. Lê Minh Châu"),
        "{schedule}"
    );
    observer.shots("sessions", "vi").await;
    observer.frame_fits(spage).await;
    observer.frame_click(spage, &join).await;
    let enter = format!("button[data-enter='{id}']");
    observer
        .frame_wait(
            spage,
            &format!("!!document.querySelector({})", json!(enter)),
            "joined",
        )
        .await;
    observer.frame_text(spage).await;

    // ----- 4. everyone enters the room; the chair admits; everyone decodes -----
    chair.frame_click(cpage, "#enter-room").await;
    chair.room_status("connected").await;
    district.frame_click(cpage, "#reload").await;
    district
        .frame_wait(cpage, "document.body.dataset.status === 'accepted' && !!document.getElementById('enter-room')", "the requester sees it accepted")
        .await;
    district.frame_text(cpage).await;
    district.frame_click(cpage, "#enter-room").await;
    district.room_status("waiting").await;
    observer.frame_click(spage, &enter).await;
    observer.room_status("waiting").await;
    for _ in 0..2 {
        chair.room_click("button[data-admit]").await;
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    district.room_status("connected").await;
    observer.room_status("connected").await;
    let mut stats = Vec::new();
    for _ in 0..240 {
        stats = vec![
            chair.room_stats().await,
            district.room_stats().await,
            observer.room_stats().await,
        ];
        if decoding(&stats[0]) >= 1 && decoding(&stats[1]) >= 1 && decoding(&stats[2]) >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(
        decoding(&stats[0]) >= 1 && decoding(&stats[1]) >= 1 && decoding(&stats[2]) >= 2,
        "everyone decodes everyone who publishes: {stats:#?}"
    );
    assert_eq!(
        stats[2]["outboundBytes"], 0,
        "the observer sends nothing: {:#}",
        stats[2]
    );
    // The consultant (the chair) shares a screen; the others decode it.
    chair
        .room_wait(
            "!document.getElementById('share').hidden && !document.getElementById('share').disabled",
            "the share button",
        )
        .await;
    chair.room_click("#share").await;
    for d in [&mut district, &mut observer] {
        let track = d
            .room_wait(
                "Object.values(window.vthState().remoteScreenTracks || {})[0]",
                "the chair's screen",
            )
            .await;
        let frames = format!(
            "(async () => {{ let n = 0; (await window.vthPc.getStats()).forEach((s) => {{ \
               if (s.type === 'inbound-rtp' && s.kind === 'video' && s.trackIdentifier === {track}) n = s.framesDecoded || 0; }}); return n > 0; }})()"
        );
        let mut decoded = false;
        for _ in 0..240 {
            if d.in_room(&frames).await == json!(true) {
                decoded = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        assert!(decoded, "{} decodes the shared screen", d.who);
    }
    chair.room_shot("room-chair-vi-1280").await;
    let room_text = observer.in_room("document.body.innerText").await;
    observer
        .seen
        .push(room_text.as_str().unwrap_or_default().to_owned());

    // ----- 5. the chair removes the observer -----
    let observer_pid = stats[2]["me"]
        .as_str()
        .expect("observer's participant id")
        .to_owned();
    let remove = format!("button[data-remove='{observer_pid}']");
    chair.room_click(&remove).await;
    chair
        .room_wait(
            &format!(
                "!!document.querySelector({}.concat('.confirm'))",
                json!(remove)
            ),
            "the confirmation",
        )
        .await;
    chair.room_click(&remove).await;
    observer.room_status("removedMe").await;
    // The observer's view of the consultation's page: no patient.
    observer
        .frame_click(spage, &format!("a[data-open='{id}']"))
        .await;
    observer
        .frame_wait(
            cpage,
            "document.body.dataset.ready === 'true' && !!document.getElementById('patient-hidden')",
            "the consultation's page without the patient",
        )
        .await;
    observer.frame_text(cpage).await;
    observer.shots("consultation-observer", "vi").await;

    // ----- 6. the conclusion, seen and acknowledged by the requester -----
    chair
        .frame_type(
            cpage,
            "#conclusion-assessment",
            "Nhồi máu cơ tim cấp thành trước, Killip I.",
        )
        .await;
    chair
        .frame_type(
            cpage,
            "#conclusion-recommendations",
            "Chuyển can thiệp mạch vành qua da trong 12 giờ; aspirin, ticagrelor.",
        )
        .await;
    chair
        .frame_type(
            cpage,
            "#conclusion-follow-up",
            "Siêu âm tim sau 48 giờ; hội chẩn lại nếu sốc tim.",
        )
        .await;
    chair.frame_click(cpage, "#sign-conclusion").await;
    chair
        .frame_wait(
            cpage,
            "document.body.dataset.status === 'concluded'",
            "concluded",
        )
        .await;
    chair.shots("consultation-3-concluded", "vi").await;
    district
        .frame_click_until(
            cpage,
            "#reload",
            "document.body.dataset.status === 'concluded' && !!document.getElementById('acknowledge')",
        )
        .await;
    let concluded = district.frame_text(cpage).await;
    assert!(
        concluded.contains("Killip I") && concluded.contains("PGS.TS. Lê Minh Châu"),
        "{concluded}"
    );
    district.frame_click(cpage, "#acknowledge").await;
    district
        .frame_wait(
            cpage,
            "!!document.getElementById('acknowledged')",
            "acknowledged",
        )
        .await;
    district.shots("consultation-4-acknowledged", "vi").await;

    // History at the central hospital, from the district doctor's menu.
    district
        .click("button[data-page='teleconsult/ui/history.html']")
        .await;
    let hpage = "ui/history.html";
    district
        .frame_wait(
            hpage,
            "!!document.querySelector('#other-hospitals button[data-hospital=\"bv-a\"]')",
            "the upper hospitals' histories",
        )
        .await;
    district
        .frame_click_until(
            hpage,
            "#other-hospitals button[data-hospital='bv-a']",
            "document.querySelector('#history h2').textContent.includes('Trung ương')",
        )
        .await;
    district
        .frame_wait(
            hpage,
            &format!("!!document.querySelector('[data-consultation=\"{id}\"]')"),
            "the consultation in the history",
        )
        .await;
    let history = district.frame_text(hpage).await;
    for shown in [
        "Đã có kết luận",
        "Gửi:",
        "Nhận:",
        "Phiên:",
        "Kết luận:",
        "Đã xác nhận:",
        "PGS.TS. Lê Minh Châu",
        "BS. Phạm Thị Hoa",
    ] {
        assert!(history.contains(shown), "{shown} in the history: {history}");
    }
    district.shots("history", "vi").await;
    district.frame_fits(hpage).await;

    // The conclusion in the requesting hospital's record, as its own doctors read it.
    let (st, bundle) = send(
        &s,
        "GET",
        &format!("/fhir/R4/Communication?patient={patient}"),
        &requester,
        None,
        &[],
    )
    .await;
    assert_eq!(st, 200, "{bundle}");
    assert!(
        bundle.to_string().contains("urn:vtelehealth:teleconsult")
            && bundle.to_string().contains(&id),
        "the conclusion of {id} in the district hospital's record: {bundle}"
    );
    assert!(
        concluded.contains("Đã lưu vào hồ sơ bệnh án tại Trung tâm Y tế huyện Phong Điền"),
        "the requester's page says where the conclusion was saved: {concluded}"
    );

    // ----- 7. the observer never saw the patient -----
    assert!(observer.seen.len() >= 3, "{:?}", observer.seen);
    for text in &observer.seen {
        for secret in forbidden {
            assert!(!text.contains(secret), "the observer saw {secret}: {text}");
        }
    }

    // ----- English -----
    for d in [&mut district, &mut chair] {
        d.click("#lang-switch").await;
        d.wait(
            "document.documentElement.lang === 'en' && !document.querySelector('main[aria-busy]')",
            "English",
        )
        .await;
    }
    district.click("#tab-workspace").await;
    district
        .click("button[data-page='teleconsult/ui/request.html']")
        .await;
    district
        .frame_wait(page, "document.body.dataset.step === 'patient' && document.title === 'Request a consultation'", "the request page in English")
        .await;
    district.shots("request-1-patient", "en").await;
    district
        .click("button[data-page='teleconsult/ui/history.html']")
        .await;
    district
        .frame_wait(
            hpage,
            "document.body.dataset.ready === 'true' && document.title === 'Consultation history'",
            "history in English",
        )
        .await;
    district
        .frame_click_until(
            hpage,
            "#other-hospitals button[data-hospital='bv-a']",
            "document.querySelector('#history h2').textContent.includes('Trung ương')",
        )
        .await;
    district
        .frame_wait(
            hpage,
            &format!("!!document.querySelector('[data-consultation=\"{id}\"]')"),
            "the history in English",
        )
        .await;
    let en = district.frame_text(hpage).await;
    assert!(
        en.contains("Concluded") && en.contains("Acknowledged:"),
        "{en}"
    );
    district.shots("history", "en").await;
    chair.click("#tab-workspace").await;
    chair
        .click("button[data-page='teleconsult/ui/queue.html']")
        .await;
    chair
        .frame_wait(
            qpage,
            "document.body.dataset.ready === 'true' && document.title === 'Consultation queue'",
            "the queue in English",
        )
        .await;
    chair.shots("queue", "en").await;
    chair
        .click("button[data-page='teleconsult/ui/sessions.html']")
        .await;
    chair
        .frame_wait(
            spage,
            "document.body.dataset.ready === 'true' && document.title === 'Open sessions'",
            "sessions in English",
        )
        .await;
    chair.shots("sessions", "en").await;
    chair.click("#tab-notices").await;
    chair
        .click("#notices li[data-topic=\"teleconsult.acknowledged\"] button[data-open-notice]")
        .await;
    let en = chair
        .frame_wait(
            cpage,
            "document.body.dataset.status === 'concluded' && document.body.innerText",
            "the consultation in English",
        )
        .await;
    assert!(
        en.as_str().unwrap_or_default().contains("Conclusion"),
        "{en}"
    );
    chair.shots("consultation-3-concluded", "en").await;
}
