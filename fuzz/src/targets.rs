//! The fuzz targets: every parser that reads what an outsider sends.
//!
//! | target | code under test | invariant |
//! | --- | --- | --- |
//! | `hl7v2` | `hl7v2::parse`, `to_fhir_bundle`, `AckTarget::sniff`, `ack` | no panic; every ACK starts with `MSH` |
//! | `manifest` | `Manifest::parse` | no panic |
//! | `bundle` | `Bundle::from_json`, then its manifest | no panic; a bundle read back from its own JSON is the same bundle |
//! | `fhir` | `records::validate::parse_body` and `validate` | no panic |
//! | `fhir-search` | `GET /fhir/R4/{type}?…` on a real runtime, as a practitioner | no panic, no 5xx |
//! | `gateway-notification` | `GET /api/v1/payments/vnpay/ipn?…` and `/return?…` | no panic, no 5xx |
//! | `oidc` | `/oidc/token`, `/oidc/authorize` (GET and POST), `/oidc/logout` | no panic, no 5xx |
//! | `jwt` | `IdentityService::validate` (header and claims decoding, signature) | no panic; nothing but a genuinely issued header and payload is accepted |

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, header};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use http_body_util::BodyExt as _;
use tower::ServiceExt as _;
use vtelehealth_runtime::governance::bundle::Bundle;
use vtelehealth_runtime::governance::manifest::Manifest;
use vtelehealth_runtime::records::validate;
use vtelehealth_runtime::{Runtime, RuntimeOptions, api};

use crate::{Outcome, Target, files_in, repo_root};

/// Every target's name, in the order `vth-fuzz` runs them.
pub const NAMES: &[&str] = &[
    "hl7v2",
    "manifest",
    "bundle",
    "fhir",
    "fhir-search",
    "gateway-notification",
    "oidc",
    "jwt",
];

/// The target called `name`.
pub fn by_name(name: &str) -> Option<Box<dyn Target>> {
    Some(match name {
        "hl7v2" => Box::new(Hl7v2),
        "manifest" => Box::new(ManifestTarget),
        "bundle" => Box::new(BundleTarget),
        "fhir" => Box::new(Fhir),
        "fhir-search" => Box::new(FhirSearch::new()),
        "gateway-notification" => Box::new(GatewayNotification::new()),
        "oidc" => Box::new(Oidc::new()),
        "jwt" => Box::new(Jwt::new()),
        _ => return None,
    })
}

/// Byte strings of `list`, for seeds and dictionaries.
fn bytes(list: &[&str]) -> Vec<Vec<u8>> {
    list.iter().map(|t| t.as_bytes().to_vec()).collect()
}

/// The kind of an error: its text up to the first digit or quote, so that
/// messages differing only in a position or a value count as one outcome.
fn kind(prefix: &str, error: &dyn std::fmt::Display) -> String {
    let text = error.to_string();
    // Characters, not bytes: a cut inside a Vietnamese letter would panic.
    let kind: String = text
        .chars()
        .take_while(|c| !(c.is_ascii_digit() || matches!(c, '`' | '"' | '\'')))
        .take(80)
        .collect();
    format!("{prefix}:{kind}")
}

// ----- HL7 v2 -----

/// The HL7 v2 parser, mapper and acknowledgment builder.
#[derive(Default)]
pub struct Hl7v2;

impl Target for Hl7v2 {
    fn name(&self) -> &'static str {
        "hl7v2"
    }
    fn seeds(&self) -> Vec<Vec<u8>> {
        let corpus = repo_root().join("plugins/his-hl7v2/corpus");
        let mut seeds = files_in(&corpus);
        seeds.extend(files_in(&corpus.join("broken")));
        seeds.retain(|s| s.starts_with(b"MSH") || s.starts_with(b"FHS") || s.starts_with(b"B"));
        seeds
    }
    fn dictionary(&self) -> Vec<Vec<u8>> {
        bytes(&[
            "\rPID|",
            "\rPV1|",
            "\rOBR|",
            "\rOBX|",
            "\rORC|",
            "\rNK1|",
            "\rIN1|",
            "\rEVN|",
            "^^^",
            "~",
            "\\E\\",
            "\\F\\",
            "\\X0D\\",
            "ADT^A01",
            "ORU^R01",
            "ORM^O01",
            "2.5",
            "20240305083000+0700",
            "NM",
            "ST",
            "CWE",
            "|||",
        ])
    }
    fn max_len(&self) -> usize {
        16 << 10
    }
    fn run(&mut self, input: &[u8]) -> Outcome {
        let text = String::from_utf8_lossy(input);
        let target = hl7v2::AckTarget::sniff(&text);
        let ack = hl7v2::ack(&target, None, "20240305083001+0700");
        if !ack.starts_with("MSH") {
            return Outcome::Violation(format!("an ACK that does not start with MSH: {ack:?}"));
        }
        match hl7v2::parse(&text) {
            Err(e) => Outcome::Handled(kind("parse", &format!("{:?}", e.kind))),
            Ok(message) => {
                let _ = hl7v2::idempotency_key(&message);
                let ctx = hl7v2::MappingContext::new("bach-mai");
                match hl7v2::to_fhir_bundle(&message, &ctx) {
                    Ok(bundle) => Outcome::Handled(format!(
                        "mapped:{}",
                        bundle["entry"].as_array().map_or(0, Vec::len).min(8)
                    )),
                    Err(e) => Outcome::Handled(kind("map", &format!("{:?}", e.kind))),
                }
            }
        }
    }
}

// ----- manifests and bundles -----

fn manifest_seeds() -> Vec<Vec<u8>> {
    let root = repo_root();
    let mut seeds = Vec::new();
    for dir in ["plugins", "tests/plugins"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir)) else {
            continue;
        };
        let mut paths: Vec<_> = entries
            .filter_map(Result::ok)
            .map(|e| e.path().join("plugin.toml"))
            .filter(|p| p.is_file())
            .collect();
        paths.sort();
        seeds.extend(paths.iter().filter_map(|p| std::fs::read(p).ok()));
    }
    seeds
}

fn manifest_dictionary() -> Vec<Vec<u8>> {
    bytes(&[
        "\n[[routes]]\n",
        "\n[capabilities]\n",
        "\n[config]\n",
        "capabilities = [",
        "\"records:read\"",
        "\"identity\"",
        "\"kv\"",
        "\"payment\"",
        "\"video\"",
        "\"notify\"",
        "purpose = \"treatment\"",
        "method = \"POST\"",
        "path = \"/{id}\"",
        "roles = [",
        "version = \"0.1.0\"",
        "= { type = \"object\" }",
        "\"\"\"",
        "'''",
        "[[",
        "]]",
        "=",
    ])
}

/// The manifest parser (TOML, then the platform's own rules).
pub struct ManifestTarget;

impl Target for ManifestTarget {
    fn name(&self) -> &'static str {
        "manifest"
    }
    fn seeds(&self) -> Vec<Vec<u8>> {
        manifest_seeds()
    }
    fn dictionary(&self) -> Vec<Vec<u8>> {
        manifest_dictionary()
    }
    fn max_len(&self) -> usize {
        32 << 10
    }
    fn run(&mut self, input: &[u8]) -> Outcome {
        let text = String::from_utf8_lossy(input);
        match Manifest::parse(&text) {
            Ok(m) => Outcome::Handled(format!("ok:{}", m.requested().len())),
            Err(e) => Outcome::Handled(kind("err", &e)),
        }
    }
}

/// The bundle envelope (JSON, base64 component, signature) and its manifest.
pub struct BundleTarget;

impl Target for BundleTarget {
    fn name(&self) -> &'static str {
        "bundle"
    }
    fn seeds(&self) -> Vec<Vec<u8>> {
        // A component header is enough: the envelope is what is parsed here.
        let component = b"\0asm\x0d\0\x01\0".to_vec();
        manifest_seeds()
            .into_iter()
            .map(|m| {
                Bundle::new(String::from_utf8_lossy(&m).into_owned(), component.clone()).to_json()
            })
            .collect()
    }
    fn dictionary(&self) -> Vec<Vec<u8>> {
        let mut d = manifest_dictionary();
        d.extend(
            [
                "\"signature\":{",
                "\"format\":\"vtelehealth-bundle/1\"",
                "\"component\":\"",
                "\"key_id\":\"",
                "\"algorithm\":\"",
                "\"signature\":\"",
                "==",
                "\\n",
                "\\u00e1",
            ]
            .iter()
            .map(|t| t.as_bytes().to_vec()),
        );
        d
    }
    fn run(&mut self, input: &[u8]) -> Outcome {
        match Bundle::from_json(input) {
            Err(e) => Outcome::Handled(kind("bundle", &e)),
            Ok(bundle) => {
                match Bundle::from_json(&bundle.to_json()) {
                    Ok(again) if again == bundle => {}
                    Ok(_) => {
                        return Outcome::Violation(
                            "a bundle read back from its own JSON differs".into(),
                        );
                    }
                    Err(e) => {
                        return Outcome::Violation(format!(
                            "a bundle's own JSON cannot be read back: {e}"
                        ));
                    }
                }
                match Manifest::parse(&bundle.manifest) {
                    Ok(_) => Outcome::Handled("bundle-ok".into()),
                    Err(e) => Outcome::Handled(kind("manifest", &e)),
                }
            }
        }
    }
}

// ----- FHIR -----

const FHIR_SEEDS: &[&str] = &[
    r#"{"resourceType":"Patient","id":"p1","identifier":[{"system":"http://hl7.org/fhir/sid/vn-cccd","value":"001090000001"}],"name":[{"family":"Nguyễn","given":["Văn","An"]}],"gender":"male","birthDate":"1990-01-01"}"#,
    r#"{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"8867-4"}]},"subject":{"reference":"Patient/p1"},"effectiveDateTime":"2024-03-05T08:30:00+07:00","valueQuantity":{"value":72,"unit":"/min"}}"#,
    r#"{"resourceType":"Encounter","status":"finished","class":{"code":"AMB"},"subject":{"reference":"Patient/p1"},"period":{"start":"2024-03-05","end":"2024-03-06"}}"#,
    r#"{"resourceType":"DiagnosticReport","status":"final","code":{"text":"X-quang ngực"},"subject":{"reference":"Patient/p1"},"result":[{"reference":"Observation/o1"}]}"#,
    r#"{"resourceType":"Bundle","type":"transaction","entry":[{"fullUrl":"urn:uuid:1","resource":{"resourceType":"Patient"},"request":{"method":"POST","url":"Patient"}}]}"#,
    r#"{"resourceType":"MedicationRequest","status":"active","intent":"order","subject":{"reference":"Patient/p1"},"medicationCodeableConcept":{"text":"Paracetamol 500mg"}}"#,
];

fn fhir_dictionary() -> Vec<Vec<u8>> {
    bytes(&[
        "\"resourceType\":",
        "\"Patient\"",
        "\"Observation\"",
        "\"reference\":\"Patient/",
        "\"identifier\":[{",
        "\"system\":",
        "\"value\":",
        "\"id\":\"",
        "\"meta\":{",
        "[{}]",
        "\"2024-02-30\"",
        "\"9999-12-31T23:59:60Z\"",
        "1e308",
        "-0.0",
        "{\"$ref\":1}",
    ])
}

/// FHIR JSON reading and validation of a resource about to be written.
pub struct Fhir;

impl Target for Fhir {
    fn name(&self) -> &'static str {
        "fhir"
    }
    fn seeds(&self) -> Vec<Vec<u8>> {
        FHIR_SEEDS.iter().map(|s| s.as_bytes().to_vec()).collect()
    }
    fn dictionary(&self) -> Vec<Vec<u8>> {
        fhir_dictionary()
    }
    fn run(&mut self, input: &[u8]) -> Outcome {
        match validate::parse_body(input, None) {
            Err(e) => Outcome::Handled(kind("parse", &e)),
            Ok((rt, object)) => match validate::validate(rt, &object) {
                Ok((refs, _)) => Outcome::Handled(format!("{}:{}", rt.as_str(), refs.len().min(4))),
                Err(e) => Outcome::Handled(kind(rt.as_str(), &e)),
            },
        }
    }
}

// ----- a real runtime for the HTTP targets -----

/// A runtime with the demo data on a throw-away SQLite file, its router,
/// and tokens of demo accounts.
struct Server {
    tokio: tokio::runtime::Runtime,
    app: Router,
    runtime: Arc<Runtime>,
    _data: tempfile::TempDir,
}

impl Server {
    fn start() -> Self {
        let data = tempfile::tempdir().expect("a temporary directory for the fuzzing database");
        let tokio = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let options = RuntimeOptions {
            database_url: format!("sqlite://{}", data.path().join("fuzz.db").display()),
            demo: true,
            ..RuntimeOptions::default()
        };
        let runtime = tokio
            .block_on(Runtime::start(options))
            .expect("the runtime starts on a fresh SQLite file");
        let app = api::app(runtime.clone());
        Self {
            tokio,
            app,
            runtime,
            _data: data,
        }
    }

    fn token(&self, username: &str) -> String {
        self.tokio.block_on(async {
            let user = self
                .runtime
                .identity
                .user_by_username(username)
                .await
                .expect("the demo directory is readable")
                .expect("a demo account");
            self.runtime.identity.token_for(&user).expect("a token")
        })
    }

    /// Send one request; a 5xx answer is a violation.
    fn send(&self, request: Request<Body>) -> Outcome {
        let app = self.app.clone();
        let answer = self.tokio.block_on(async move {
            let response = app.oneshot(request).await.map_err(|e| e.to_string())?;
            let status = response.status();
            let body = response
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            Ok::<_, String>((status, body))
        });
        match answer {
            Err(e) => Outcome::Violation(format!("the router failed: {e}")),
            Ok((status, body)) if status.is_server_error() => Outcome::Violation(format!(
                "answered {status}: {}",
                String::from_utf8_lossy(&body[..body.len().min(300)])
            )),
            Ok((status, _)) => Outcome::Handled(status.as_u16().to_string()),
        }
    }
}

/// Percent-encode what a URI cannot carry, keeping `%` itself so that
/// malformed escapes reach the server's decoder.
fn uri_safe(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        match b {
            b'!'..=b'~' if !b"\"<>\\^`{|}#".contains(&b) => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

// ----- FHIR search -----

const SEARCH_TYPES: &[&str] = &[
    "Patient",
    "Observation",
    "Encounter",
    "DiagnosticReport",
    "MedicationRequest",
    "Condition",
    "Unknown",
];

/// FHIR search parameters through the real route.
pub struct FhirSearch {
    server: Server,
    token: String,
}

impl FhirSearch {
    fn new() -> Self {
        let server = Server::start();
        let token = server.token("bs.bachmai");
        Self { server, token }
    }
}

impl Target for FhirSearch {
    fn name(&self) -> &'static str {
        "fhir-search"
    }
    fn seeds(&self) -> Vec<Vec<u8>> {
        bytes(&[
            "0identifier=http://hl7.org/fhir/sid/vn-cccd|001090000001",
            "1subject=Patient/p1&date=ge2024-01-01&date=lt2024-12-31&_count=10",
            "1code=http://loinc.org|8867-4&_sort=-date&_offset=5",
            "2patient=p1&status=finished&_include=Encounter:subject",
            "0name=Nguy%E1%BB%85n&birthdate=1990&gender=male&_summary=count",
            "3_id=a,b,c&_lastUpdated=gt2024-03-05T08:30:00%2B07:00",
            "0_count=0&_count=99999999999999999999&page=-1",
        ])
    }
    fn dictionary(&self) -> Vec<Vec<u8>> {
        bytes(&[
            "&",
            "=",
            "|",
            ",",
            ":exact",
            ":missing=true",
            "ge",
            "le",
            "eq",
            "ap",
            "_count=",
            "_sort=",
            "_include=",
            "_revinclude=",
            "date=",
            "subject=",
            "patient=",
            "%2B07:00",
            "T",
            "Z",
        ])
    }
    fn max_len(&self) -> usize {
        4 << 10
    }
    fn run(&mut self, input: &[u8]) -> Outcome {
        let (&first, query) = input.split_first().unwrap_or((&b'0', &[]));
        let kind = SEARCH_TYPES[usize::from(first) % SEARCH_TYPES.len()];
        let query = String::from_utf8_lossy(query);
        // The query decoder on its own, then the whole route.
        let _ = vtelehealth_runtime::query::pairs(&query);
        let uri = format!("/fhir/R4/{kind}?{}", uri_safe(query.as_bytes()));
        let Ok(request) = Request::builder()
            .uri(uri)
            .header(header::AUTHORIZATION, format!("Bearer {}", self.token))
            .body(Body::empty())
        else {
            return Outcome::Handled("bad-uri".into());
        };
        self.server.send(request)
    }
}

// ----- payment gateway notifications -----

/// The gateway's server-to-server notification and the payer's return.
pub struct GatewayNotification {
    server: Server,
}

impl GatewayNotification {
    fn new() -> Self {
        Self {
            server: Server::start(),
        }
    }
}

impl Target for GatewayNotification {
    fn name(&self) -> &'static str {
        "gateway-notification"
    }
    fn seeds(&self) -> Vec<Vec<u8>> {
        bytes(&[
            "0vnp_Amount=15000000&vnp_BankCode=NCB&vnp_OrderInfo=Thanh+toan+don+hang&vnp_PayDate=20240305083000&vnp_ResponseCode=00&vnp_TmnCode=VTHDEMO1&vnp_TransactionNo=14000000&vnp_TransactionStatus=00&vnp_TxnRef=0190f0a0-0000-7000-8000-000000000000&vnp_SecureHash=3e0d6a4f",
            "1vnp_Amount=100&vnp_ResponseCode=24&vnp_TxnRef=x&vnp_SecureHashType=HmacSHA512&vnp_SecureHash=",
            "0vnp_TxnRef=%&vnp_Amount=-1&vnp_Amount=2",
        ])
    }
    fn dictionary(&self) -> Vec<Vec<u8>> {
        bytes(&[
            "&vnp_",
            "vnp_Amount=",
            "vnp_TxnRef=",
            "vnp_SecureHash=",
            "vnp_TmnCode=",
            "vnp_ResponseCode=00",
            "vnp_TransactionStatus=00",
            "=",
            "&",
        ])
    }
    fn max_len(&self) -> usize {
        4 << 10
    }
    fn run(&mut self, input: &[u8]) -> Outcome {
        let (&first, query) = input.split_first().unwrap_or((&b'0', &[]));
        let route = if first % 2 == 0 { "ipn" } else { "return" };
        let uri = format!("/api/v1/payments/vnpay/{route}?{}", uri_safe(query));
        let Ok(request) = Request::builder().uri(uri).body(Body::empty()) else {
            return Outcome::Handled("bad-uri".into());
        };
        self.server.send(request)
    }
}

// ----- OIDC -----

/// The identity provider's endpoints: token, authorize (both ways), logout.
pub struct Oidc {
    server: Server,
}

impl Oidc {
    fn new() -> Self {
        Self {
            server: Server::start(),
        }
    }
}

impl Target for Oidc {
    fn name(&self) -> &'static str {
        "oidc"
    }
    fn seeds(&self) -> Vec<Vec<u8>> {
        let issuer = self.server.runtime.identity.issuer().to_owned();
        let callback = format!("{issuer}/oidc/callback");
        let cb: String = form_urlencoded::byte_serialize(callback.as_bytes()).collect();
        let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        [
            "0grant_type=client_credentials&client_id=his-bach-mai&client_secret=demo-his-secret-bach-mai".to_owned(),
            format!("1response_type=code&client_id=vtelehealth-web&redirect_uri={cb}&code_challenge={challenge}&code_challenge_method=S256&state=abc&scope=openid"),
            format!("2username=bs.bachmai&password=wrong&response_type=code&client_id=vtelehealth-web&redirect_uri={cb}&code_challenge={challenge}&code_challenge_method=S256&state=abc"),
            format!("0grant_type=authorization_code&code=abc&client_id=vtelehealth-web&redirect_uri={cb}&code_verifier=dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "0grant_type=refresh_token&refresh_token=abc.def&client_id=vtelehealth-web".to_owned(),
            "3his-bach-mai:demo-his-secret-bach-mai\ngrant_type=client_credentials".to_owned(),
            "4refresh_token=abc&client_id=vtelehealth-web".to_owned(),
        ]
        .into_iter()
        .map(String::into_bytes)
        .collect()
    }
    fn dictionary(&self) -> Vec<Vec<u8>> {
        bytes(&[
            "&",
            "=",
            "%",
            "+",
            "grant_type=",
            "client_id=",
            "redirect_uri=",
            "code_verifier=",
            "code_challenge_method=plain",
            "response_type=token",
            "scope=",
            "state=",
            "nonce=",
            "prompt=none",
            "password=",
            "username=",
        ])
    }
    fn max_len(&self) -> usize {
        4 << 10
    }
    fn run(&mut self, input: &[u8]) -> Outcome {
        let (&first, rest) = input.split_first().unwrap_or((&b'0', &[]));
        let form = |path: &str, body: &[u8]| {
            Request::builder()
                .method(Method::POST)
                .uri(path)
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(Body::from(body.to_vec()))
        };
        let request = match first % 5 {
            0 => form("/oidc/token", rest),
            1 => Request::builder()
                .uri(format!("/oidc/authorize?{}", uri_safe(rest)))
                .body(Body::empty()),
            2 => form("/oidc/authorize", rest),
            3 => {
                // Client credentials in a Basic header (first line), form below.
                let (user, body) = match rest.iter().position(|&b| b == b'\n') {
                    Some(i) => (&rest[..i], &rest[i + 1..]),
                    None => (rest, &[][..]),
                };
                Request::builder()
                    .method(Method::POST)
                    .uri("/oidc/token")
                    .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                    .header(
                        header::AUTHORIZATION,
                        format!(
                            "Basic {}",
                            base64::engine::general_purpose::STANDARD.encode(user)
                        ),
                    )
                    .body(Body::from(body.to_vec()))
            }
            _ => form("/oidc/logout", rest),
        };
        match request {
            Ok(request) => self.server.send(request),
            Err(_) => Outcome::Handled("bad-request".into()),
        }
    }
}

// ----- JWT -----

/// Token validation: header, claims, key lookup and signature.
///
/// An input is `header JSON \n claims JSON \n signature` (encoded here, so
/// mutations work on the JSON), or a raw token when it has no line break.
pub struct Jwt {
    server: Server,
    /// (header, payload) segments of the genuinely issued tokens.
    genuine: Vec<(String, String)>,
    tokens: Vec<String>,
}

impl Jwt {
    fn new() -> Self {
        let server = Server::start();
        let tokens: Vec<String> = ["bs.bachmai", "001090000001", "thamdinh.byt"]
            .iter()
            .map(|u| server.token(u))
            .collect();
        let genuine = tokens
            .iter()
            .filter_map(|t| {
                let mut parts = t.split('.');
                Some((parts.next()?.to_owned(), parts.next()?.to_owned()))
            })
            .collect();
        Self {
            server,
            genuine,
            tokens,
        }
    }

    fn assemble(input: &[u8]) -> String {
        let mut lines = input.splitn(3, |&b| b == b'\n');
        match (lines.next(), lines.next(), lines.next()) {
            (Some(h), Some(c), Some(s)) => format!(
                "{}.{}.{}",
                B64URL.encode(h),
                B64URL.encode(c),
                String::from_utf8_lossy(s)
            ),
            _ => String::from_utf8_lossy(input).into_owned(),
        }
    }
}

impl Target for Jwt {
    fn name(&self) -> &'static str {
        "jwt"
    }
    fn seeds(&self) -> Vec<Vec<u8>> {
        let mut seeds = Vec::new();
        for token in &self.tokens {
            seeds.push(token.as_bytes().to_vec());
            let parts: Vec<&str> = token.split('.').collect();
            if let [h, c, s] = parts[..] {
                let mut structured = B64URL.decode(h).unwrap_or_default();
                structured.push(b'\n');
                structured.extend(B64URL.decode(c).unwrap_or_default());
                structured.push(b'\n');
                structured.extend_from_slice(s.as_bytes());
                seeds.push(structured);
            }
        }
        seeds
    }
    fn dictionary(&self) -> Vec<Vec<u8>> {
        bytes(&[
            "\"alg\":\"none\"",
            "\"alg\":\"HS256\"",
            "\"alg\":\"RS256\"",
            "\"typ\":\"JWT\"",
            "\"typ\":\"at+jwt\"",
            "\"kid\":\"",
            "\"jku\":\"http://127.0.0.1/\"",
            "\"crit\":[\"x\"]",
            "\"exp\":",
            "\"nbf\":",
            "\"iss\":\"",
            "\"aud\":[",
            "\"roles\":[\"admin\"]",
            "\"hospital_id\":\"",
            "\"national_id\":\"",
            "9999999999",
            ".",
            "==",
        ])
    }
    fn max_len(&self) -> usize {
        8 << 10
    }
    fn run(&mut self, input: &[u8]) -> Outcome {
        let token = Self::assemble(input);
        let identity = self.server.runtime.identity.clone();
        match self.server.tokio.block_on(identity.validate(&token)) {
            Err(e) => Outcome::Handled(kind("refused", &e)),
            Ok(principal) => {
                let mut parts = token.split('.');
                let signed = (
                    parts.next().unwrap_or_default(),
                    parts.next().unwrap_or_default(),
                );
                if self
                    .genuine
                    .iter()
                    .any(|(h, c)| h == signed.0 && c == signed.1)
                {
                    Outcome::Handled("accepted-genuine".into())
                } else {
                    Outcome::Violation(format!(
                        "a token that was never issued was accepted for {}",
                        principal.subject
                    ))
                }
            }
        }
    }
}
