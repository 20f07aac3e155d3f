//! Health records: FHIR R4 resources (JSON) owned by the hospital that
//! wrote them, validated on write, versioned, searchable. The `/fhir/R4`
//! API (`crate::api::fhir`) and the `records` WIT capability
//! (`crate::capabilities::records`) both go through [`RecordStore`]; who may
//! read across hospitals is decided in [`access`].

pub mod access;
pub mod scopes;
mod store;
pub mod transaction;
pub mod validate;

use std::fmt;
use std::str::FromStr;

pub use scopes::Purpose;
pub use store::{Actor, ActorKind, Admit, Page, RecordStore, SearchQuery, Stored};

/// Identifier system of the citizen ID (Căn cước công dân, 12 digits).
pub const CCCD_SYSTEM: &str = "https://vneid.gov.vn/cccd";
/// Identifier system of the social-insurance number used as the health ID
/// (mã số BHXH, 10 digits).
pub const BHYT_SYSTEM: &str = "https://baohiemxahoi.gov.vn/ma-so-bhxh";

/// The resource types the store holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ResourceType {
    Patient,
    Practitioner,
    Organization,
    Encounter,
    ServiceRequest,
    Observation,
    DiagnosticReport,
    ImagingStudy,
    MedicationRequest,
    Appointment,
    Communication,
    Consent,
}

impl ResourceType {
    pub const ALL: [ResourceType; 12] = [
        Self::Patient,
        Self::Practitioner,
        Self::Organization,
        Self::Encounter,
        Self::ServiceRequest,
        Self::Observation,
        Self::DiagnosticReport,
        Self::ImagingStudy,
        Self::MedicationRequest,
        Self::Appointment,
        Self::Communication,
        Self::Consent,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Patient => "Patient",
            Self::Practitioner => "Practitioner",
            Self::Organization => "Organization",
            Self::Encounter => "Encounter",
            Self::ServiceRequest => "ServiceRequest",
            Self::Observation => "Observation",
            Self::DiagnosticReport => "DiagnosticReport",
            Self::ImagingStudy => "ImagingStudy",
            Self::MedicationRequest => "MedicationRequest",
            Self::Appointment => "Appointment",
            Self::Communication => "Communication",
            Self::Consent => "Consent",
        }
    }
}

impl fmt::Display for ResourceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ResourceType {
    type Err = RecordError;
    fn from_str(s: &str) -> Result<Self, RecordError> {
        Self::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| RecordError::UnknownType(s.to_owned()))
    }
}

/// Why a records operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("the body is not valid JSON: {0}")]
    InvalidJson(String),
    #[error("unknown or unsupported resource type `{0}`")]
    UnknownType(String),
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
    /// A string over its documented maximum ([`crate::text_limits`]).
    #[error(transparent)]
    TooLong(#[from] crate::text_limits::TooLong),
    #[error("{0}")]
    UnresolvedReference(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("{target} is at version {current}, not {expected}")]
    VersionConflict {
        target: String,
        expected: i64,
        current: i64,
    },
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    Conflict(String),
    #[error("invalid search: {0}")]
    BadSearch(String),
    #[error("records storage error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("audit trail error: {0}")]
    Audit(#[from] crate::audit::AuditError),
}

/// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// The instants a FHIR date, dateTime or instant covers, as the first and
/// last millisecond since the epoch: `2026` is the whole year, `2026-03-01`
/// the whole (UTC) day, `2026-03-01T08:30:00+07:00` that second. A
/// dateTime without a zone is read as Vietnam time (UTC+7).
pub fn date_range(s: &str) -> Option<(i64, i64)> {
    let num = |t: &str| -> Option<i64> {
        (!t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()))
            .then(|| t.parse().ok())
            .flatten()
    };
    let (date, time) = match s.split_once('T') {
        Some((d, t)) => (d, Some(t)),
        None => (s, None),
    };
    let parts: Vec<&str> = date.split('-').collect();
    if parts[0].len() != 4 || parts.iter().skip(1).any(|p| p.len() != 2) || parts.len() > 3 {
        return None;
    }
    let y = num(parts[0])?;
    let m = parts.get(1).map(|p| num(p)).unwrap_or(Some(1))?;
    let d = parts.get(2).map(|p| num(p)).unwrap_or(Some(1))?;
    if !(1..=12).contains(&m) || d < 1 || d > days_in_month(y, m) {
        return None;
    }
    let day_ms = 86_400_000;
    let start_day = days_from_civil(y, m, d) * day_ms;
    let Some(time) = time else {
        let end = match parts.len() {
            1 => days_from_civil(y + 1, 1, 1) * day_ms,
            2 => (days_from_civil(y, m, 1) + days_in_month(y, m)) * day_ms,
            _ => start_day + day_ms,
        };
        return Some((start_day, end - 1));
    };
    if parts.len() != 3 {
        return None;
    }
    let (clock, offset_min) = if let Some(c) = time.strip_suffix('Z') {
        (c, 0)
    } else if let Some(i) = time.rfind(['+', '-']) {
        let (c, off) = time.split_at(i);
        let sign = if off.starts_with('-') { -1 } else { 1 };
        let (oh, om) = off[1..].split_once(':')?;
        let (oh, om) = (num(oh)?, num(om)?);
        if oh > 14 || om > 59 {
            return None;
        }
        (c, sign * (oh * 60 + om))
    } else {
        (time, 7 * 60)
    };
    let (hms, frac) = match clock.split_once('.') {
        Some((h, f)) => (h, Some(f)),
        None => (clock, None),
    };
    let t: Vec<&str> = hms.split(':').collect();
    if t.len() < 2 || t.len() > 3 || t.iter().any(|p| p.len() != 2) {
        return None;
    }
    let (hh, mm) = (num(t[0])?, num(t[1])?);
    let ss = t.get(2).map(|p| num(p)).unwrap_or(Some(0))?;
    if hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    let ms = match frac {
        None => None,
        Some(f) => {
            num(f)?;
            let mut digits: String = f.chars().take(3).collect();
            while digits.len() < 3 {
                digits.push('0');
            }
            Some(digits.parse::<i64>().ok()?)
        }
    };
    let start = start_day + ((hh * 60 + mm - offset_min) * 60 + ss) * 1000 + ms.unwrap_or(0);
    let end = match (ms, t.len()) {
        (Some(_), _) => start,
        (None, 3) => start + 999,
        (None, _) => start + 59_999,
    };
    Some((start, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_fhir_dates_as_ranges() {
        assert_eq!(date_range("1970"), Some((0, 365 * 86_400_000 - 1)));
        assert_eq!(
            date_range("2000-02"),
            Some((949_363_200_000, 951_868_799_999))
        );
        assert_eq!(
            date_range("2000-02-29"),
            Some((951_782_400_000, 951_868_799_999))
        );
        assert_eq!(date_range("1970-01-01T07:00:00+07:00"), Some((0, 999)));
        assert_eq!(date_range("1970-01-01T00:00:00.5Z"), Some((500, 500)));
        assert_eq!(date_range("1970-01-01T07:00:00"), Some((0, 999)));
        for bad in [
            "",
            "2026-13",
            "2026-02-30",
            "26-01-01",
            "2026-01-01T25:00Z",
            "2026-01-01Tnoon",
            "2026-01-01T10:00+7",
        ] {
            assert_eq!(date_range(bad), None, "{bad}");
        }
        assert!(
            ResourceType::ALL
                .iter()
                .all(|t| t.as_str().parse::<ResourceType>().ok() == Some(*t))
        );
    }
}
