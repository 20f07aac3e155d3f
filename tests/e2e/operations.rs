//! The walk of `docs/operations.md` ("From an empty database to a working
//! hospital"), exactly as written: the `runtime` binary without `--demo`,
//! the documented commands, and the consoles in Chromium for every step a
//! person takes. Only the HIS is a machine, so it speaks HTTP.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;
use vtelehealth_tests::browser::{Browser, chromium};
use vtelehealth_tests::{plugin_dir, repo_root};

use super::consoles::Console;

/// The passwords the invited people choose on their invitation pages.
const PASSWORD: &str = "mat-khau-rat-dai-2026";

fn runtime_bin() -> PathBuf {
    let bin = repo_root().join("target/debug/runtime");
    assert!(
        bin.is_file(),
        "{} is missing: `cargo build --workspace`",
        bin.display()
    );
    bin
}

/// Run `runtime ARGS` as an operator types it; its output.
fn runtime(args: &[&str]) -> Output {
    Command::new(runtime_bin())
        .args(args)
        .env_remove("VTH_DATABASE")
        .env_remove("VTH_ISSUER")
        .output()
        .expect("runtime runs")
}

fn ok(out: Output, what: &str) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what} failed: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The one-time link an `accounts` command printed.
fn link_in(stdout: &str) -> String {
    stdout
        .split_whitespace()
        .find(|w| w.contains("/invite/"))
        .unwrap_or_else(|| panic!("no invitation link in: {stdout}"))
        .to_owned()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The node, killed when the test ends however it ends.
struct Node(Child);

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn serve(dir: &Path, db: &str, base: &str, port: u16) -> Node {
    let child = Command::new(runtime_bin())
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--db",
            db,
            "--issuer",
            base,
            "--master-key",
            &dir.join("master.key").display().to_string(),
            "--cache-dir",
            &dir.join("cache").display().to_string(),
        ])
        .env_remove("VTH_DATABASE")
        .env_remove("VTH_ISSUER")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("runtime serve starts");
    let node = Node(child);
    let client = reqwest::Client::new();
    for _ in 0..300 {
        if let Ok(r) = client.get(format!("{base}/healthz")).send().await
            && r.status().is_success()
        {
            return node;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the node at {base} did not answer /healthz");
}

/// A person opens their invitation link and chooses a password.
async fn accept_invitation(c: &mut Console, link: &str) {
    c.goto(link).await;
    c.wait(
        "!!document.querySelector('input[name=password_confirm]')",
        "the invitation page",
    )
    .await;
    c.type_into("input[name=password]", PASSWORD).await;
    c.type_into("input[name=password_confirm]", PASSWORD).await;
    c.eval("document.querySelector('input[name=password_confirm]').form.submit()")
        .await;
    c.wait(
        "location.pathname.startsWith('/invite/') && !!document.querySelector('a[href=\"/console/\"]')",
        "the invitation's done page",
    )
    .await;
}

/// Four facilities of one province: a provincial hospital, a district
/// health centre and a commune station under it, and a private clinic.
const FACILITIES: &str = "\
facility_code,name,tier,level,province,commune,ownership,parent_code,status
36001,Bệnh viện Đa khoa tỉnh Ninh Bình,provincial,specialised,Ninh Bình,Phường Hoa Lư,public,,active
36102,Trung tâm Y tế khu vực Nho Quan,district,basic,Ninh Bình,Xã Nho Quan,public,,active
36203,Trạm Y tế xã Gia Vân,commune,primary,Ninh Bình,Xã Gia Vân,public,36102,active
36904,Phòng khám Đa khoa Tâm An,district,primary,Ninh Bình,Phường Hoa Lư,private,,active
";

#[tokio::test]
async fn from_an_empty_database_to_a_working_hospital() {
    let Some(chromium) = chromium() else { return };
    // No runtime in this process installs the TLS provider reqwest needs.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let dir = tempfile::TempDir::new().expect("dir");
    let db = format!("sqlite://{}", dir.path().join("vth.db").display());
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");

    // ----- 1. import facilities (dry run, then for real) -----
    let csv = dir.path().join("facilities.csv");
    std::fs::write(&csv, FACILITIES).expect("write csv");
    let csv_arg = csv.display().to_string();
    let dry = ok(
        runtime(&["network", "import", &csv_arg, "--dry-run", "--db", &db]),
        "the dry run",
    );
    assert!(dry.contains('4'), "the dry run counts the rows: {dry}");
    let done = ok(
        runtime(&["network", "import", &csv_arg, "--db", &db]),
        "the import",
    );
    assert!(done.contains('4'), "{done}");
    let again = ok(
        runtime(&["network", "import", &csv_arg, "--db", &db]),
        "the re-import",
    );
    assert!(
        again.contains('4'),
        "re-import leaves all unchanged: {again}"
    );

    // The ministry's first accounts, from the CLI on the database host.
    let operator_link = link_in(&ok(
        runtime(&[
            "accounts",
            "add-operator",
            "--username",
            "vanhanh",
            "--name",
            "Nguyễn Thị Vận Hành",
            "--db",
            &db,
            "--issuer",
            &base,
        ]),
        "add-operator",
    ));
    let reviewer_link = link_in(&ok(
        runtime(&[
            "accounts",
            "add-reviewer",
            "--username",
            "thamdinh",
            "--name",
            "Trần Văn Thẩm Định",
            "--db",
            &db,
            "--issuer",
            &base,
        ]),
        "add-reviewer",
    ));

    let _node = serve(dir.path(), &db, &base, port).await;
    let browser = Browser::launch(&chromium, "about:blank")
        .await
        .expect("chromium");
    let mut c = Console::new(browser, base.clone());
    c.set_width(1280, false).await;

    // ----- 2. register a vendor (the operator's console) -----
    accept_invitation(&mut c, &operator_link).await;
    c.login_with("vanhanh", PASSWORD).await;
    c.tab("facilities").await;
    let text = c
        .wait(
            "(() => { const t = document.getElementById('main').innerText; return t.includes('Trạm Y tế xã Gia Vân') && t; })()",
            "the imported facilities",
        )
        .await;
    assert!(
        !text.as_str().unwrap_or_default().contains("kcb-"),
        "facilities by name, never by id"
    );
    c.tab("vendors").await;
    c.type_into("#vendor-id", "vtelehealth").await;
    c.type_into("#vendor-name", "Công ty Cổ phần VTelehealth")
        .await;
    c.type_into("#vendor-tax", "0109876543").await;
    c.type_into("#vendor-contact", "Lê Văn Liên Hệ").await;
    c.type_into("#vendor-email", "lienhe@vtelehealth.vn").await;
    c.clear_message().await;
    c.click("#vendor-register").await;
    c.message("ok").await;
    // ... and invite its first admin.
    c.click("button[data-vendor-invite='vtelehealth']").await;
    c.type_into("#vendor-admin-username", "dev.admin").await;
    c.type_into("#vendor-admin-name", "Phạm Minh Phát Triển")
        .await;
    c.clear_message().await;
    c.click("#vendor-admin-invite").await;
    let vendor_link = c
        .wait(
            "(() => { const o = document.querySelector('#vendor-once #invitation-link'); return o && o.textContent.includes('/invite/') && o.textContent; })()",
            "the vendor admin's invitation link",
        )
        .await
        .as_str()
        .expect("link")
        .to_owned();
    c.sign_out().await;

    // The vendor submits its signed HIS adapter (the CLI, then its console).
    let key = dir.path().join("vendor.pem");
    let keys = ok(
        runtime(&["keys", "new", "--out", &key.display().to_string()]),
        "keys new",
    );
    let public = keys
        .lines()
        .find_map(|l| l.strip_prefix("public key:"))
        .expect("public key printed")
        .trim()
        .to_owned();
    let bundle = dir.path().join("his-hl7v2-0.1.0.vtpkg");
    let plugins = plugin_dir();
    ok(
        runtime(&[
            "plugin",
            "pack",
            "--manifest",
            &plugins.join("his-hl7v2.toml").display().to_string(),
            "--component",
            &plugins.join("his-hl7v2.wasm").display().to_string(),
            "--out",
            &bundle.display().to_string(),
        ]),
        "plugin pack",
    );
    ok(
        runtime(&[
            "plugin",
            "sign",
            &bundle.display().to_string(),
            "--key",
            &key.display().to_string(),
        ]),
        "plugin sign",
    );
    accept_invitation(&mut c, &vendor_link).await;
    c.login_with("dev.admin", PASSWORD).await;
    c.tab("submit").await;
    c.type_into("#vendor-key", &public).await;
    c.clear_message().await;
    c.click("#vendor-key-submit").await;
    c.message("ok").await;
    c.choose_file("#bundle-file", &bundle).await;
    c.clear_message().await;
    c.click("#bundle-submit").await;
    let msg = c.message("ok").await;
    assert!(msg.contains("his-hl7v2"), "{msg}");
    // The vendor's admin invites a colleague.
    c.tab("team").await;
    c.type_into("#team-username", "dev.lan").await;
    c.type_into("#team-name", "Hoàng Thị Lan").await;
    c.clear_message().await;
    c.click("#team-invite").await;
    c.wait(
        "(() => { const o = document.querySelector('#team-once #invitation-link'); return o && o.textContent.includes('/invite/'); })()",
        "the colleague's invitation link",
    )
    .await;
    c.sign_out().await;

    // The ministry's reviewer approves it.
    accept_invitation(&mut c, &reviewer_link).await;
    c.login_with("thamdinh", PASSWORD).await;
    c.click("#queue-pending button[data-version]").await;
    c.wait("!!document.getElementById('approve')", "the version detail")
        .await;
    c.type_into("#approve-note", "Đạt yêu cầu.").await;
    c.clear_message().await;
    c.click("#approve").await;
    c.message("ok").await;
    c.sign_out().await;

    // ----- 3. create the hospital's admin (the CLI) -----
    let hospital = "kcb-36001";
    let admin_link = link_in(&ok(
        runtime(&[
            "accounts",
            "invite-hospital-admin",
            "--hospital",
            hospital,
            "--username",
            "qt.ninhbinh",
            "--name",
            "Đỗ Thị Quản Trị",
            "--national-id",
            "036190001234",
            "--db",
            &db,
            "--issuer",
            &base,
        ]),
        "invite-hospital-admin",
    ));

    // ----- 4. the admin activates the adapter, creates a doctor and a HIS client -----
    accept_invitation(&mut c, &admin_link).await;
    c.login_with("qt.ninhbinh", PASSWORD).await;
    let who = c.eval("document.getElementById('who').innerText").await;
    assert!(
        who.as_str()
            .unwrap_or_default()
            .contains("Bệnh viện Đa khoa tỉnh Ninh Bình"),
        "the hospital by its name: {who}"
    );
    c.tab("catalogue").await;
    c.click("button[data-activate='his-hl7v2']").await;
    c.clear_message().await;
    c.click("#activate-submit-his-hl7v2").await;
    c.message("ok").await;

    c.tab("staff").await;
    c.type_into("#staff-username", "bs.hoa").await;
    c.type_into("#staff-name", "BS. Vũ Thị Hoa").await;
    c.type_into("#staff-cccd", "036185005678").await;
    c.type_into("#staff-licence", "001234/NB-GPHN").await;
    c.clear_message().await;
    c.click("#staff-add-submit").await;
    let doctor_link = c
        .wait(
            "(() => { const o = document.getElementById('invitation-link'); return o && o.textContent.includes('/invite/') && o.textContent; })()",
            "the doctor's invitation link, shown once",
        )
        .await
        .as_str()
        .expect("link")
        .to_owned();

    c.tab("clients").await;
    c.type_into("#client-name", "HIS Bệnh viện tỉnh").await;
    c.clear_message().await;
    c.click("#client-create").await;
    let shown = c
        .wait(
            "(() => { const o = document.getElementById('client-secret'); return o && o.textContent.includes('client_secret=') && o.textContent; })()",
            "the client's secret, shown once",
        )
        .await;
    let field = |name: &str| {
        shown
            .as_str()
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.trim().strip_prefix(&format!("{name}=")))
            .unwrap_or_else(|| panic!("{name} shown: {shown}"))
            .to_owned()
    };
    let (client_id, client_secret) = (field("client_id"), field("client_secret"));
    c.sign_out().await;

    // ----- 5. the HIS client posts an ADT and gets AA -----
    let http = reqwest::Client::new();
    let token: Value = http
        .post(format!("{base}/oidc/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", client_id.as_str()),
            ("client_secret", client_secret.as_str()),
        ])
        .send()
        .await
        .expect("token request")
        .json()
        .await
        .expect("token json");
    let access = token["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no token: {token}"));
    let adt = std::fs::read(repo_root().join("plugins/his-hl7v2/corpus/adt_a01_v23.hl7"))
        .expect("corpus message");
    let ack = http
        .post(format!(
            "{base}/hospitals/{hospital}/plugins/his-hl7v2/messages"
        ))
        .bearer_auth(access)
        .header("content-type", "x-application/hl7-v2+er7")
        .body(adt)
        .send()
        .await
        .expect("ADT sent");
    assert_eq!(ack.status().as_u16(), 200);
    let ack = ack.text().await.unwrap_or_default();
    assert!(ack.contains("MSA|AA"), "the ADT is accepted: {ack}");

    // ----- 6. the doctor signs in -----
    accept_invitation(&mut c, &doctor_link).await;
    c.login_with("bs.hoa", PASSWORD).await;
    c.tab("workspace").await;
    let who = c.eval("document.getElementById('who').innerText").await;
    assert!(
        who.as_str().unwrap_or_default().contains("BS. Vũ Thị Hoa"),
        "{who}"
    );
    c.screenshot("operations-doctor-signed-in").await;
    // The directory finds colleagues by name, with their hospital by name
    // and never a national identifier or licence number.
    c.tab("directory").await;
    c.type_into("#dir-q", "hoa").await;
    c.click("#dir-search").await;
    // The search has answered: its button is enabled again and the view idle.
    c.wait(
        "(() => { const b = document.getElementById('dir-search'); return !!b && !b.disabled && !document.querySelector('main[aria-busy]'); })()",
        "the directory search's answer",
    )
    .await;
    let found = c
        .wait(
            "(() => { const t = document.getElementById('directory-table'); return t && t.innerText.includes('BS. Vũ Thị Hoa') && document.getElementById('main').innerText; })()",
            "the doctor in the directory",
        )
        .await;
    let found = found.as_str().unwrap_or_default();
    assert!(
        found.contains("Bệnh viện Đa khoa tỉnh Ninh Bình"),
        "{found}"
    );
    assert!(
        !found.contains("036185005678") && !found.contains("001234/NB-GPHN"),
        "no national id or licence in the directory: {found}"
    );
    c.sign_out().await;

    // The ministry counts the hospital as connected.
    c.login_with("vanhanh", PASSWORD).await;
    c.tab("network").await;
    let text = c.eval("document.getElementById('main').innerText").await;
    assert!(
        text.as_str().unwrap_or_default().contains("Ninh Bình"),
        "{text}"
    );
    c.kill().await;
}
