//! The shared list of specialty codes (`runtime/data/specialties.csv`), and
//! the identifier systems staff records use (docs/identity.md).

use std::sync::OnceLock;

use serde::Serialize;

/// Code system of the specialty codes. VN Core FHIR (HL7 Vietnam) defines
/// no specialty code system the platform could use, so it is the platform's
/// own, under the `urn:vtelehealth:` base of `HOSPITAL_SYSTEM`.
pub const SPECIALTY_SYSTEM: &str = "urn:vtelehealth:specialty";
/// Identifier system of a practising licence (giấy phép hành nghề, or an
/// older chứng chỉ hành nghề); the platform's own, as above.
pub const LICENCE_SYSTEM: &str = "urn:vtelehealth:practising-licence";

const CSV: &str = include_str!("../../data/specialties.csv");

/// One specialty of the list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Specialty {
    pub code: String,
    pub name_vi: String,
    pub name_en: String,
}

/// The whole list, in the file's order.
pub fn all() -> &'static [Specialty] {
    static LIST: OnceLock<Vec<Specialty>> = OnceLock::new();
    LIST.get_or_init(|| {
        CSV.lines()
            .skip(1)
            .filter_map(|line| {
                let mut f = line.splitn(3, ',');
                let (code, vi, en) = (f.next()?, f.next()?, f.next()?);
                Some(Specialty {
                    code: code.trim().to_owned(),
                    name_vi: vi.trim().to_owned(),
                    name_en: en.trim().to_owned(),
                })
            })
            .collect()
    })
}

/// The specialty with `code`.
pub fn get(code: &str) -> Option<&'static Specialty> {
    all().iter().find(|s| s.code == code)
}

/// The specialties of `codes` as shown: known codes with their names, an
/// unknown one (free text of older accounts) under its own text.
pub fn describe(codes: &[String]) -> Vec<Specialty> {
    codes
        .iter()
        .map(|c| {
            get(c).cloned().unwrap_or_else(|| Specialty {
                code: c.clone(),
                name_vi: c.clone(),
                name_en: c.clone(),
            })
        })
        .collect()
}

/// What the directory's text search matches: codes and both names, folded.
pub fn folded(codes: &[String]) -> String {
    let text: Vec<String> = describe(codes)
        .into_iter()
        .map(|s| format!("{} {} {}", s.code, s.name_vi, s.name_en))
        .collect();
    super::search::fold(&text.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_is_well_formed() {
        let list = all();
        assert!(list.len() >= 30, "{}", list.len());
        let mut codes: Vec<&str> = list.iter().map(|s| s.code.as_str()).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), list.len(), "codes are unique");
        for s in list {
            assert!(
                s.code.bytes().all(|b| b.is_ascii_lowercase() || b == b'-'),
                "{s:?}"
            );
            assert!(!s.name_vi.is_empty() && !s.name_en.is_empty(), "{s:?}");
        }
        assert_eq!(
            get("cardiology").map(|s| s.name_vi.as_str()),
            Some("Tim mạch")
        );
        assert!(folded(&["cardiology".into()]).contains("tim mach"));
    }
}
