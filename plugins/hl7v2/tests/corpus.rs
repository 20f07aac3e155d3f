//! Runs the plugin's corpus (`plugins/his-hl7v2/corpus`) through `receive` and checks the
//! outcomes recorded in `corpus/expected.json`, plus what every Bundle must satisfy.

use std::collections::BTreeMap;
use std::path::PathBuf;

use hl7v2::{AckCode, MappingContext, Received, receive};
use serde_json::Value;

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../his-hl7v2/corpus")
}

fn expected() -> (String, BTreeMap<String, Value>) {
    let text = std::fs::read_to_string(corpus_dir().join("expected.json")).expect("expected.json");
    let v: Value = serde_json::from_str(&text).expect("expected.json is JSON");
    let hospital = v["hospital_id"].as_str().expect("hospital_id").to_owned();
    let files = v["files"]
        .as_object()
        .expect("files")
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    (hospital, files)
}

fn run(name: &str) -> Received {
    let (hospital, _) = expected();
    let body = std::fs::read(corpus_dir().join(name)).expect(name);
    receive(&body, &MappingContext::new(hospital), "20240312120000+0700")
}

fn bundle(name: &str) -> Value {
    match run(name) {
        Received::Mapped { bundle, .. } => bundle,
        Received::Refused { issue, .. } => panic!("{name}: {issue}"),
    }
}

/// Invariants of every Bundle: transaction, urn:uuid fullUrls, references that resolve
/// inside the Bundle, the Patient first with a conditional PUT, identifier formats.
fn check_bundle(name: &str, bundle: &Value) -> BTreeMap<String, u64> {
    assert_eq!(bundle["resourceType"], "Bundle", "{name}");
    assert_eq!(bundle["type"], "transaction", "{name}");
    let entries = bundle["entry"].as_array().expect("entries");
    let urls: Vec<&str> = entries
        .iter()
        .map(|e| e["fullUrl"].as_str().expect("fullUrl"))
        .collect();
    for (i, url) in urls.iter().enumerate() {
        assert!(
            url.starts_with("urn:uuid:") && url.len() == 45,
            "{name}: {url}"
        );
        assert!(!urls[..i].contains(url), "{name}: duplicate {url}");
    }
    assert_eq!(entries[0]["resource"]["resourceType"], "Patient", "{name}");
    assert_eq!(entries[0]["request"]["method"], "PUT", "{name}");
    let mut counts = BTreeMap::new();
    for entry in entries {
        let resource = &entry["resource"];
        let kind = resource["resourceType"].as_str().expect("resourceType");
        *counts.entry(kind.to_owned()).or_insert(0) += 1;
        let method = entry["request"]["method"].as_str().expect("method");
        let url = entry["request"]["url"].as_str().expect("url");
        match method {
            "POST" => assert_eq!(url, kind, "{name}"),
            "PUT" => assert!(
                url.starts_with(&format!("{kind}?identifier=")),
                "{name}: {url}"
            ),
            other => panic!("{name}: method {other}"),
        }
        references(resource, &mut |r| {
            assert!(
                urls.contains(&r),
                "{name}: {kind} refers to {r}, not in the Bundle"
            )
        });
        for id in resource["identifier"].as_array().into_iter().flatten() {
            let value = id["value"].as_str().expect("identifier value");
            let digits = |n: usize| value.len() == n && value.bytes().all(|b| b.is_ascii_digit());
            match id["system"].as_str().expect("identifier system") {
                hl7v2::CCCD_SYSTEM => assert!(digits(12), "{name}: CCCD {value}"),
                hl7v2::BHXH_SYSTEM => assert!(digits(10), "{name}: BHXH {value}"),
                _ => {}
            }
        }
    }
    counts
}

fn references<'a>(v: &'a Value, f: &mut dyn FnMut(&'a str)) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("reference", Value::String(r)) => f(r),
                    _ => references(v, f),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| references(v, f)),
        _ => {}
    }
}

#[test]
fn every_corpus_file_has_its_expected_outcome() {
    let (_, files) = expected();
    let mut on_disk = Vec::new();
    for dir in ["", "broken"] {
        for entry in std::fs::read_dir(corpus_dir().join(dir)).expect("corpus dir") {
            let path = entry.expect("entry").path();
            if path.extension().is_some_and(|e| e == "hl7") {
                let file = path
                    .file_name()
                    .expect("name")
                    .to_string_lossy()
                    .into_owned();
                on_disk.push(if dir.is_empty() {
                    file
                } else {
                    format!("{dir}/{file}")
                });
            }
        }
    }
    on_disk.sort();
    let listed: Vec<String> = files.keys().cloned().collect();
    assert_eq!(
        on_disk, listed,
        "expected.json lists exactly the corpus files"
    );

    for (name, want) in &files {
        let want_ack = want["ack"].as_str().expect("ack");
        let control = want["control_id"].as_str().unwrap_or("");
        match run(name) {
            Received::Mapped { message, bundle } => {
                assert_eq!(want_ack, "AA", "{name} was accepted");
                assert_eq!(message.control_id(), control, "{name}");
                let counts = check_bundle(name, &bundle);
                let want_counts: BTreeMap<String, u64> = want["resources"]
                    .as_object()
                    .expect("resources")
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_u64().expect("count")))
                    .collect();
                assert_eq!(counts, want_counts, "{name}");
                // Same message, same Bundle: the idempotency contract relies on it.
                assert_eq!(bundle, self::bundle(name), "{name}");
            }
            Received::Refused { issue, ack } => {
                assert_eq!(issue.ack_code.as_str(), want_ack, "{name}: {issue}");
                assert_ne!(issue.ack_code, AckCode::Accept);
                assert_eq!(
                    Some(u64::from(issue.code.code())),
                    want["error_code"].as_u64(),
                    "{name}: {issue}"
                );
                assert_eq!(
                    issue.location.as_ref().map(ToString::to_string).as_deref(),
                    want["error_location"].as_str(),
                    "{name}: {issue}"
                );
                assert!(want["resources"].as_object().is_some_and(|r| r.is_empty()));
                let segments: Vec<&str> = ack.split('\r').filter(|s| !s.is_empty()).collect();
                assert!(segments[0].starts_with("MSH|^~\\&|"), "{name}: {ack}");
                assert!(
                    segments[1].starts_with(&format!("MSA|{want_ack}|{control}")),
                    "{name}: {ack}"
                );
                assert!(segments[2].starts_with("ERR|"), "{name}: {ack}");
                if let Some(location) = want["error_location"].as_str()
                    && !ack.contains("|2.3\r")
                    && !ack.contains("|2.4\r")
                {
                    assert!(ack.contains(&format!("ERR||{location}|")), "{name}: {ack}");
                }
            }
        }
    }
}

#[test]
fn vietnamese_patient_with_cccd_and_bhxh() {
    let b = bundle("adt_a04_v25_cccd_bhxh.hl7");
    let patient = &b["entry"][0]["resource"];
    assert_eq!(
        b["entry"][0]["request"]["url"],
        "Patient?identifier=urn:vtelehealth:hospital:bach-mai:mrn|BN24005678"
    );
    let ids = patient["identifier"].as_array().expect("ids");
    assert!(
        ids.iter()
            .any(|i| i["system"] == hl7v2::CCCD_SYSTEM && i["value"] == "001195012345")
    );
    // The 15-character BHYT card number carries the BHXH number in its last 10 characters.
    assert!(
        ids.iter()
            .any(|i| i["system"] == hl7v2::BHXH_SYSTEM && i["value"] == "0123456789")
    );
    assert_eq!(patient["name"][0]["family"], "LÊ");
    assert_eq!(
        patient["name"][0]["given"],
        serde_json::json!(["THỊ", "HỒNG", "NHUNG"])
    );
    assert_eq!(patient["name"][0]["text"], "LÊ THỊ HỒNG NHUNG");
    assert_eq!(patient["gender"], "female");
    assert_eq!(patient["birthDate"], "1995-04-12");
    assert_eq!(patient["address"][0]["district"], "Quận 1");
    assert_eq!(patient["address"][0]["city"], "Thành phố Hồ Chí Minh");
    let telecom = patient["telecom"].as_array().expect("telecom");
    assert!(
        telecom
            .iter()
            .any(|t| t["system"] == "email" && t["value"] == "nhung.le@example.vn")
    );
    assert!(
        telecom
            .iter()
            .any(|t| t["use"] == "work" && t["value"] == "0283822999")
    );
    let encounter = &b["entry"][1]["resource"];
    assert_eq!(encounter["class"]["code"], "AMB");
    assert_eq!(encounter["status"], "in-progress");
    assert_eq!(encounter["period"]["start"], "2024-03-06T08:55:00+07:00");
    assert_eq!(encounter["subject"]["reference"], b["entry"][0]["fullUrl"]);
}

#[test]
fn custom_separators_and_middle_names() {
    let b = bundle("adt_a01_custom_separators.hl7");
    let patient = &b["entry"][0]["resource"];
    assert_eq!(patient["name"][0]["text"], "ĐẶNG THỊ THU HÀ");
    assert_eq!(patient["address"][0]["line"][0], "Thôn Đông%Xóm 3");
    assert_eq!(patient["identifier"][1]["value"], "037090001234");
    assert_eq!(
        b["entry"][1]["request"]["url"],
        "Encounter?identifier=urn:vtelehealth:hospital:bach-mai:visit|VTB0001"
    );
}

#[test]
fn discharge_finishes_the_encounter() {
    let b = bundle("adt_a03_discharge.hl7");
    let encounter = &b["entry"][1]["resource"];
    assert_eq!(encounter["status"], "finished");
    assert_eq!(encounter["period"]["end"], "2024-03-10T13:30:00+07:00");
}

#[test]
fn lab_results() {
    let b = bundle("oru_r01_v251.hl7");
    let entries = b["entry"].as_array().expect("entries");
    let glucose = &entries[1]["resource"];
    assert_eq!(glucose["status"], "final");
    assert_eq!(glucose["category"][0]["coding"][0]["code"], "laboratory");
    assert_eq!(glucose["code"]["coding"][0]["system"], "http://loinc.org");
    assert_eq!(
        glucose["code"]["coding"][1]["system"],
        "urn:vtelehealth:hospital:bach-mai:code:L"
    );
    assert_eq!(
        glucose["valueQuantity"],
        serde_json::json!({"value": 6.8, "unit": "mmol/L", "system": "http://unitsofmeasure.org", "code": "mmol/L"})
    );
    assert_eq!(glucose["referenceRange"][0]["low"]["value"], 3.9);
    assert_eq!(glucose["interpretation"][0]["coding"][0]["code"], "H");
    assert_eq!(glucose["effectiveDateTime"], "2024-03-08T08:00:00+07:00");
    let creatinine = &entries[2]["resource"];
    assert_eq!(creatinine["status"], "corrected");
    assert_eq!(creatinine["valueQuantity"]["value"], 88);
    assert_eq!(
        creatinine["note"][0]["text"],
        "Đã kiểm tra lại mẫu; kết quả hiệu chỉnh & xác nhận."
    );
    assert_eq!(
        entries[3]["resource"]["valueString"],
        "Vàng nhạt | trong\nKhông cặn AB"
    );
    assert_eq!(
        entries[4]["resource"]["valueCodeableConcept"]["coding"][0]["system"],
        "http://snomed.info/sct"
    );
    assert_eq!(entries[4]["resource"]["status"], "preliminary");
    assert_eq!(entries[5]["resource"]["valueQuantity"]["comparator"], "<");
    // Effective time falls back to OBR-7.
    assert_eq!(
        entries[6]["resource"]["effectiveDateTime"],
        "2024-03-08T07:15:00+07:00"
    );
    assert_eq!(
        entries[7]["resource"]["valueString"],
        "Hồng cầu bình thường\nKhông thấy tế bào lạ"
    );
    let report = &entries[8]["resource"];
    assert_eq!(report["resourceType"], "DiagnosticReport");
    assert_eq!(report["status"], "final");
    assert_eq!(report["issued"], "2024-03-08T09:30:00+07:00");
    assert_eq!(report["result"].as_array().map(Vec::len), Some(5));
    assert_eq!(report["result"][0]["reference"], entries[1]["fullUrl"]);
    assert_eq!(
        entries[8]["request"]["url"],
        "DiagnosticReport?identifier=urn:vtelehealth:hospital:bach-mai:filler-order|LIS-5521"
    );
    assert_eq!(entries[9]["resource"]["status"], "preliminary");
}

#[test]
fn orders() {
    let b = bundle("orm_o01.hl7");
    let ct = &b["entry"][1]["resource"];
    assert_eq!(ct["status"], "active");
    assert_eq!(ct["intent"], "order");
    assert_eq!(ct["priority"], "stat");
    assert_eq!(ct["authoredOn"], "2024-03-06T09:10:00+07:00");
    assert_eq!(ct["requester"]["display"], "BS PHẠM ĐỨC MINH");
    assert_eq!(ct["note"][0]["text"], "Bệnh nhân dị ứng thuốc cản quang");
    assert_eq!(
        ct["reasonCode"][0]["coding"][0]["system"],
        "http://hl7.org/fhir/sid/icd-10"
    );
    assert_eq!(
        b["entry"][1]["request"]["url"],
        "ServiceRequest?identifier=urn:vtelehealth:hospital:bach-mai:placer-order|CD-1001"
    );
    assert_eq!(b["entry"][2]["resource"]["priority"], "routine");
    assert_eq!(
        b["entry"][2]["resource"]["code"]["coding"][0]["system"],
        "urn:vtelehealth:hospital:bach-mai:code:L"
    );
}
