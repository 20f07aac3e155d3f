//! The teleconsult hospital admin's pages in Chromium (issue 14): the admin of the upper
//! hospital signs in, opens "Lịch trực hội chẩn" from the menu, finds doctors by name
//! without tone marks in the platform's practitioner directory and sets the cardiology
//! on-call rota; builds a 1-4-4-2 roster by names and is refused a 12th member with a clear
//! message; and opens the roster's mentoring activity. Screenshots at 1280 and 390 px, in
//! Vietnamese and English, go to `target/teleconsult-screenshots/`.

use std::path::PathBuf;
use std::time::Duration;

use crate::plugin_pages::Console;
use base64::Engine as _;
use serde_json::{Value, json};
use vtelehealth_runtime::config::Limits;
use vtelehealth_runtime::directory::{Hospital, Tier};
use vtelehealth_runtime::governance::bundle::Bundle;
use vtelehealth_runtime::governance::signing::SigningKey;
use vtelehealth_runtime::identity::{NewUser, Role, User};
use vtelehealth_tests::browser::{Browser, chromium};
use vtelehealth_tests::common::send;
use vtelehealth_tests::{TestServer, component, plugin_dir, repo_root};

const PASSWORD: &str = "password-1";
const VENDOR: &str = "vtelehealth";

async fn person(
    server: &TestServer,
    username: &str,
    name: &str,
    role: Role,
    hospital: Option<&str>,
    specialty: Option<&str>,
) -> User {
    let mut u = NewUser::new(username, name, role, PASSWORD);
    u.hospital_id = hospital.map(Into::into);
    u.specialty = specialty.map(Into::into);
    if role == Role::VendorUser {
        u.vendor_id = Some(VENDOR.into());
    }
    server.runtime.identity.create_user(u).await.expect("user")
}

fn token(server: &TestServer, u: &User) -> String {
    server.runtime.identity.token_for(u).expect("token")
}

/// Teleconsult reviewed and active at bv-a (central), with hospitals of every tier and their
/// doctors; a routine request from a provincial doctor.
async fn world() -> TestServer {
    let no_dev_plugins = tempfile::TempDir::new().expect("dir");
    let server = TestServer::start(no_dev_plugins.path(), Limits::default()).await;
    let s = &server;
    for (id, name, tier) in [
        ("bv-tinh", "Bệnh viện Đa khoa tỉnh T", Tier::Provincial),
        ("tyt-xa", "Trạm Y tế xã X", Tier::Commune),
    ] {
        s.runtime
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
    s.runtime
        .identity
        .create_vendor(VENDOR, "VTelehealth")
        .await
        .expect("vendor");
    let vendor = person(s, "dev.tc", "Lập trình viên", Role::VendorUser, None, None).await;
    let reviewer = person(
        s,
        "thamdinh.tc",
        "Thẩm định viên",
        Role::Reviewer,
        None,
        None,
    )
    .await;
    let admin = person(
        s,
        "qt.tc",
        "Quản trị Bệnh viện A",
        Role::HospitalAdmin,
        Some("bv-a"),
        None,
    )
    .await;
    for (user, name, hospital, specialty) in [
        ("bs.lan", "BS. Nguyễn Thị Lan", "bv-a", "Tim mạch"),
        ("bs.hung", "PGS.TS. Trần Văn Hùng", "bv-a", "Tim mạch"),
        ("bs.minh", "BS. Vũ Đức Minh", "bv-a", "Nội khoa"),
        ("bs.an", "BS. Đặng Văn An", "bv-tinh", "Nội khoa"),
        ("bs.bich", "BS. Đặng Thị Bích", "bv-tinh", "Tim mạch"),
        ("bs.cuong", "BS. Đặng Quốc Cường", "bv-tinh", "Nhi khoa"),
        ("bs.duc", "BS. Đặng Minh Đức", "bv-tinh", "Ngoại khoa"),
        ("bs.ha", "BS. Đặng Thu Hà", "bv-tinh", "Sản khoa"),
        ("bs.hoang1", "BS. Hoàng Văn Bảo", "bv-b", "Nội khoa"),
        ("bs.hoang2", "BS. Hoàng Thị Cúc", "bv-b", "Nhi khoa"),
        ("bs.hoang3", "BS. Hoàng Minh Dương", "bv-b", "Nội khoa"),
        ("bs.hoang4", "BS. Hoàng Gia Huy", "bv-b", "Ngoại khoa"),
        ("ys.khoa", "YS. Đỗ Văn Khoa", "tyt-xa", "Đa khoa"),
        ("ys.mai", "YS. Đỗ Thị Mai", "tyt-xa", "Đa khoa"),
    ] {
        person(
            s,
            user,
            name,
            Role::Practitioner,
            Some(hospital),
            Some(specialty),
        )
        .await;
    }
    let key = SigningKey::generate().expect("key");
    let public = base64::engine::general_purpose::STANDARD.encode(key.public_key());
    let vendor = token(s, &vendor);
    let (st, b) = send(
        s,
        "POST",
        "/api/v1/vendor/keys",
        &vendor,
        Some(json!({ "public_key": public })),
        &[],
    )
    .await;
    assert_eq!(st, 201, "{b}");
    let (wasm, toml) = component(&plugin_dir(), "teleconsult");
    let mut bundle = Bundle::new(
        std::fs::read_to_string(toml).expect("manifest"),
        std::fs::read(wasm).expect("component"),
    );
    key.sign(&mut bundle);
    let resp = s
        .client
        .post(format!("{}/api/v1/plugin-versions", s.base))
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
    let (st, b) = send(
        s,
        "POST",
        &format!("/api/v1/plugin-versions/{version}/approve"),
        &token(s, &reviewer),
        Some(json!({ "note": "ok" })),
        &[],
    )
    .await;
    assert_eq!(st, 200, "{b}");
    let (st, b) = send(
        s,
        "PUT",
        "/api/v1/hospitals/bv-a/activations/teleconsult",
        &token(s, &admin),
        Some(json!({ "version_id": version, "config": {} })),
        &[],
    )
    .await;
    assert_eq!(st, 200, "{b}");
    // A routine request of a provincial doctor (a roster member to be).
    let dang = s
        .runtime
        .identity
        .user_by_username("bs.bich")
        .await
        .expect("user")
        .expect("bs.bich");
    let (st, b) = send(
        s,
        "POST",
        "/hospitals/bv-a/plugins/teleconsult/consultations",
        &token(s, &dang),
        Some(json!({
            "patient": { "reference": "Patient/42" },
            "summary": "Nữ 61 tuổi, suy tim mạn, xin ý kiến điều chỉnh thuốc",
            "urgency": "routine",
            "specialty": "Tim mạch",
        })),
        &[],
    )
    .await;
    assert_eq!(st, 201, "{b}");
    server
}

fn screenshot_dir() -> PathBuf {
    let dir = repo_root().join("target").join("teleconsult-screenshots");
    std::fs::create_dir_all(&dir).expect("screenshot dir");
    dir
}

/// What the admin pages' test adds to the shared console driver.
impl Console {
    /// The frame of `page`: its text fits the width (nothing scrolls sideways).
    async fn frame_fits(&mut self, page: &str, width: u32) {
        let wide = self
            .frame_wait(
                page,
                "document.body.dataset.ready === 'true' && [document.documentElement.scrollWidth, document.documentElement.clientWidth]",
                "the frame's width",
            )
            .await;
        let (scroll, client) = (wide[0].as_u64().unwrap_or(0), wide[1].as_u64().unwrap_or(0));
        assert!(
            scroll <= client + 1,
            "{page} scrolls sideways at {width} px: {scroll} > {client}"
        );
        let console = self.eval("document.documentElement.scrollWidth").await;
        assert!(
            console.as_u64().unwrap_or(u64::MAX) <= u64::from(width),
            "the console is {console} px wide at {width} px"
        );
    }

    /// Screenshots of the console with the page of `frame` at 1280 and 390 px.
    async fn frame_shots(&mut self, frame: &str, name: &str, lang: &str) {
        for (width, mobile) in [(1280, false), (390, true)] {
            self.set_width(width, mobile).await;
            tokio::time::sleep(Duration::from_millis(400)).await;
            self.frame_fits(frame, width).await;
            self.screenshot(&format!("{name}-{lang}-{width}"), width, mobile)
                .await;
        }
        self.set_width(1280, false).await;
    }

    /// In the frame of `page`: search the directory for `query` and press the `add` button
    /// of the result named `name`.
    async fn pick(&mut self, page: &str, query: &str, name: &str, add: &str) {
        let q = serde_json::to_string(query).expect("query");
        self.in_frame(
            page,
            &format!(
                "(() => {{ document.getElementById('doctor-results').replaceChildren(); \
                 const i = document.getElementById('doctor-q'); i.value = {q}; \
                 document.getElementById('doctor-find').click(); return true; }})()"
            ),
        )
        .await
        .expect("the search box");
        let n = serde_json::to_string(name).expect("name");
        let a = serde_json::to_string(add).expect("add");
        self.frame_wait(
            page,
            &format!("!!document.querySelector('#doctor-results li[data-name=' + JSON.stringify({n}) + '] [data-add=' + JSON.stringify({a}) + ']')"),
            &format!("{name} among the results of {query}"),
        )
        .await;
        self.in_frame(
            page,
            &format!("(() => {{ document.querySelector('#doctor-results li[data-name=' + JSON.stringify({n}) + '] [data-add=' + JSON.stringify({a}) + ']').click(); return true; }})()"),
        )
        .await
        .expect("the add button");
    }

    async fn page_message(&mut self, page: &str) -> String {
        self.in_frame(page, "document.getElementById('message').textContent")
            .await
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hospital_admin_sets_the_rota_builds_a_roster_and_reads_its_activity_in_chromium() {
    let Some(chromium) = chromium() else { return };
    let server = world().await;
    let s = &server;
    let mut c = Console {
        browser: Browser::launch(&chromium, "about:blank")
            .await
            .expect("chromium"),
        base: s.base.clone(),
        shots_dir: screenshot_dir(),
    };
    c.set_width(1280, false).await;
    c.login("qt.tc").await;
    c.mouse_click("#tab-modules").await;
    let menu = c
        .wait(
            "(() => { const m = document.getElementById('modules-menu'); return m && m.innerText; })()",
            "the modules' menu",
        )
        .await;
    let menu = menu.as_str().unwrap_or_default().to_owned();
    for shown in [
        "Lịch trực hội chẩn",
        "Kíp chỉ đạo tuyến 1-4-4-2",
        "Hoạt động chỉ đạo tuyến",
    ] {
        assert!(menu.contains(shown), "{shown} in the menu: {menu}");
    }

    // ----- the on-call rota: doctors found by name without tone marks -----
    c.mouse_click("button[data-page='teleconsult/ui/admin-rota.html']")
        .await;
    let rota = "ui/admin-rota.html";
    c.frame_wait(
        rota,
        "document.body.dataset.ready === 'true'",
        "the rota page",
    )
    .await;
    let h1 = c
        .in_frame(rota, "document.querySelector('h1').textContent")
        .await;
    assert_eq!(h1, Some(json!("Lịch trực hội chẩn")));
    c.pick(rota, "nguyen lan", "BS. Nguyễn Thị Lan", "on-call")
        .await;
    c.pick(rota, "hung", "PGS.TS. Trần Văn Hùng", "group").await;
    c.pick(rota, "vu duc", "BS. Vũ Đức Minh", "group").await;
    // A doctor of another hospital is not offered for the host's rota.
    c.in_frame(
        rota,
        "(() => { document.getElementById('doctor-q').value = 'dang'; document.getElementById('doctor-find').click(); return true; })()",
    )
    .await;
    c.frame_wait(
        rota,
        "document.getElementById('doctor-status').textContent.includes('Không tìm thấy')",
        "no doctor of another hospital",
    )
    .await;
    c.in_frame(
        rota,
        "(() => { const s = document.getElementById('specialty'); s.value = 'tim-mach'; document.getElementById('rota-name').value = 'Tim mạch'; document.getElementById('resend').value = '3'; document.getElementById('escalate').value = '10'; return true; })()",
    )
    .await;
    c.in_frame(rota, "document.getElementById('save').click()")
        .await;
    c.frame_wait(
        rota,
        "document.body.dataset.saved === 'tim-mach'",
        "the rota saved",
    )
    .await;
    assert_eq!(c.page_message(rota).await, "Đã lưu lịch trực Tim mạch.");
    let card = c
        .frame_wait(
            rota,
            "document.querySelector('#rotas li[data-rota=\"tim-mach\"]').innerText",
            "the rota's card",
        )
        .await;
    let card = card.as_str().unwrap_or_default();
    assert!(
        card.contains("BS. Nguyễn Thị Lan")
            && card.contains("PGS.TS. Trần Văn Hùng, BS. Vũ Đức Minh")
            && card.contains("3 phút")
            && card.contains("Quản trị Bệnh viện A"),
        "{card}"
    );
    assert!(
        !card.contains("u-0") && !card.contains('{'),
        "names, no ids: {card}"
    );
    let admin = s
        .runtime
        .identity
        .user_by_username("qt.tc")
        .await
        .expect("user")
        .expect("admin");
    let admin = token(s, &admin);
    let (st, r) = send(
        s,
        "GET",
        "/hospitals/bv-a/plugins/teleconsult/oncall/tim-mach",
        &admin,
        None,
        &[],
    )
    .await;
    assert_eq!(st, 200, "{r}");
    assert_eq!(r["on_call"][0]["name"], "BS. Nguyễn Thị Lan", "{r}");
    assert_eq!(r["group"].as_array().map(Vec::len), Some(2), "{r}");
    assert_eq!(r["resend_minutes"], 3, "{r}");
    assert_eq!(r["escalate_after_minutes"], 10, "{r}");
    c.frame_shots(rota, "admin-rota", "vi").await;

    // ----- the 1-4-4-2 roster, by names; the 12th member refused -----
    c.mouse_click("button[data-page='teleconsult/ui/admin-rosters.html']")
        .await;
    let rosters = "ui/admin-rosters.html";
    c.frame_wait(
        rosters,
        "document.body.dataset.ready === 'true'",
        "the rosters page",
    )
    .await;
    c.in_frame(
        rosters,
        "(() => { const n = document.getElementById('roster-name'); n.value = 'Kíp Tim mạch Thái Bình'; n.dispatchEvent(new Event('input')); return document.getElementById('roster-code').value; })()",
    )
    .await;
    let tier = |t: &str| {
        format!(
            "(() => {{ const s = document.getElementById('add-tier'); s.value = '{t}'; s.dispatchEvent(new Event('change')); return true; }})()"
        )
    };
    c.in_frame(rosters, &tier("central")).await;
    c.pick(rosters, "nguyen", "BS. Nguyễn Thị Lan", "member")
        .await;
    c.in_frame(rosters, &tier("district")).await;
    for name in [
        "BS. Hoàng Văn Bảo",
        "BS. Hoàng Thị Cúc",
        "BS. Hoàng Minh Dương",
        "BS. Hoàng Gia Huy",
    ] {
        c.pick(rosters, "hoang", name, "member").await;
    }
    c.in_frame(rosters, &tier("commune")).await;
    for name in ["YS. Đỗ Văn Khoa", "YS. Đỗ Thị Mai"] {
        c.pick(rosters, "do", name, "member").await;
    }
    c.in_frame(rosters, &tier("provincial")).await;
    for name in [
        "BS. Đặng Văn An",
        "BS. Đặng Thị Bích",
        "BS. Đặng Quốc Cường",
        "BS. Đặng Minh Đức",
    ] {
        c.pick(rosters, "dang", name, "member").await;
    }
    let total = c
        .in_frame(rosters, "document.getElementById('total').textContent")
        .await;
    assert_eq!(total, Some(json!("11/11")));
    // The 12th: refused, with the limits in words.
    c.pick(rosters, "dang", "BS. Đặng Thu Hà", "member").await;
    let refused = c
        .in_frame(rosters, "document.getElementById('add-note').textContent")
        .await
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    assert!(
        refused.contains("Không thêm được BS. Đặng Thu Hà")
            && refused.contains("đã đủ 4/4 bác sĩ")
            && refused.contains("11 người"),
        "{refused}"
    );
    let class = c
        .in_frame(rosters, "document.getElementById('add-note').className")
        .await;
    assert_eq!(class, Some(json!("msg error")));
    // Shown where the admin is looking: beside the search, not only at the top.
    c.in_frame(
        rosters,
        "(() => { document.getElementById('add-note').scrollIntoView({ block: 'center' }); return true; })()",
    )
    .await;
    assert_eq!(
        c.in_frame(rosters, "document.getElementById('total').textContent")
            .await,
        Some(json!("11/11"))
    );
    c.frame_shots(rosters, "admin-roster-refused", "vi").await;
    c.in_frame(rosters, "document.getElementById('save').click()")
        .await;
    c.frame_wait(
        rosters,
        "document.body.dataset.saved === 'kip-tim-mach-thai-binh' && !!document.querySelector('#rosters li[data-roster=\"kip-tim-mach-thai-binh\"]')",
        "the roster saved",
    )
    .await;
    assert_eq!(
        c.page_message(rosters).await,
        "Đã lưu kíp Kíp Tim mạch Thái Bình (11 thành viên)."
    );
    let (st, r) = send(
        s,
        "GET",
        "/hospitals/bv-a/plugins/teleconsult/rosters/kip-tim-mach-thai-binh",
        &admin,
        None,
        &[],
    )
    .await;
    assert_eq!(st, 200, "{r}");
    assert_eq!(r["members"]["central"]["name"], "BS. Nguyễn Thị Lan", "{r}");
    assert_eq!(r["provincial"].as_array().map(Vec::len), Some(4), "{r}");
    assert_eq!(r["district"].as_array().map(Vec::len), Some(4), "{r}");
    assert_eq!(r["commune"].as_array().map(Vec::len), Some(2), "{r}");
    // The platform refuses a fifth provincial doctor too, in words.
    let mut five = r.clone();
    let extra = s
        .runtime
        .identity
        .user_by_username("bs.ha")
        .await
        .expect("user")
        .expect("bs.ha");
    five["provincial"]
        .as_array_mut()
        .expect("list")
        .push(json!(extra.id));
    let (st, refused) = send(
        s,
        "PUT",
        "/hospitals/bv-a/plugins/teleconsult/rosters/kip-tim-mach-thai-binh",
        &admin,
        Some(five),
        &[],
    )
    .await;
    assert_eq!(st, 400, "{refused}");
    assert!(
        refused["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("1 đến 4 bác sĩ")),
        "{refused}"
    );
    let list = c
        .in_frame(
            rosters,
            "document.querySelector('#rosters li[data-roster=\"kip-tim-mach-thai-binh\"]').innerText",
        )
        .await
        .unwrap_or_default();
    let list = list.as_str().unwrap_or_default();
    assert!(
        list.contains("BS. Đặng Thị Bích") && list.contains("YS. Đỗ Thị Mai"),
        "{list}"
    );
    c.frame_shots(rosters, "admin-rosters", "vi").await;

    // ----- the roster's mentoring activity -----
    c.in_frame(
        rosters,
        "(() => { document.querySelector('a[data-activity=\"kip-tim-mach-thai-binh\"]').click(); return true; })()",
    )
    .await;
    let activity = "ui/admin-activity.html";
    let table = c
        .frame_wait(
            activity,
            "document.body.dataset.ready === 'true' && document.body.dataset.roster === 'kip-tim-mach-thai-binh' && document.getElementById('cases-table') && document.getElementById('members-table').innerText",
            "the roster's activity",
        )
        .await;
    let table = table.as_str().unwrap_or_default();
    assert!(
        table.contains("BS. Đặng Thị Bích")
            && table.contains("Bệnh viện Đa khoa tỉnh T")
            && table.contains("YS. Đỗ Văn Khoa"),
        "{table}"
    );
    let cases = c
        .in_frame(activity, "document.getElementById('cases-table').innerText")
        .await
        .unwrap_or_default();
    let cases = cases.as_str().unwrap_or_default();
    assert!(
        cases.contains("Bệnh viện Đa khoa tỉnh T — BS. Đặng Thị Bích")
            && cases.contains("Chờ tiếp nhận")
            && cases.contains("BS. Đặng Thị Bích (gửi yêu cầu)")
            && cases.contains("Thường quy"),
        "{cases}"
    );
    assert!(
        !cases.contains('{') && !cases.contains("u-0"),
        "no raw JSON, no ids: {cases}"
    );
    let heading = c
        .in_frame(activity, "document.getElementById('heading').textContent")
        .await;
    assert_eq!(
        heading,
        Some(json!("Hoạt động chỉ đạo tuyến: Kíp Tim mạch Thái Bình"))
    );
    let total = c
        .in_frame(
            activity,
            "document.querySelector('[data-fact=\"Consultations\"]').textContent",
        )
        .await;
    assert_eq!(total, Some(json!("1")));
    c.frame_shots(activity, "admin-activity", "vi").await;

    // ----- English: the console's switch reopens the page in English -----
    c.mouse_click("#lang-switch").await;
    c.frame_wait(
        "lang=en",
        "document.body.dataset.ready === 'true' && document.querySelector('h1').textContent === '1-4-4-2 mentoring rosters'",
        "the rosters page in English",
    )
    .await;
    c.frame_shots("lang=en", "admin-rosters", "en").await;
    c.in_frame(
        "lang=en",
        "(() => { document.querySelector('a[data-activity=\"kip-tim-mach-thai-binh\"]').click(); return true; })()",
    )
    .await;
    let cases = c
        .frame_wait(
            "admin-activity.html",
            "document.body.dataset.ready === 'true' && document.documentElement.lang === 'en' && document.getElementById('cases-table') && document.getElementById('cases-table').innerText",
            "the activity in English",
        )
        .await;
    let cases = cases.as_str().unwrap_or_default();
    assert!(
        cases.contains("Waiting") && cases.contains("(requester)"),
        "{cases}"
    );
    c.frame_shots("admin-activity.html", "admin-activity", "en")
        .await;
    c.mouse_click("button[data-page='teleconsult/ui/admin-rota.html']")
        .await;
    c.frame_wait(
        "admin-rota.html",
        "document.body.dataset.ready === 'true' && document.querySelector('h1').textContent === 'On-call rotas' && document.getElementById('rotas').innerText.includes('BS. Nguyễn Thị Lan')",
        "the rota page in English",
    )
    .await;
    c.frame_shots("admin-rota.html", "admin-rota", "en").await;
    c.browser.kill().await;
}
