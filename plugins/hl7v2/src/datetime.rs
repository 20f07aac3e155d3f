//! HL7 TS/DTM (`YYYY[MM[DD[HH[MM[SS[.S[S[S[S]]]]]]]]][+/-ZZZZ]`) to FHIR date, dateTime and
//! instant. A time without a zone is Vietnam time (+07:00), as the record store assumes.

use std::fmt;

/// The zone of times that carry none.
const DEFAULT_OFFSET: &str = "+07:00";

/// A value that is not an HL7 timestamp (or names an impossible date).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadTimestamp(pub String);

impl fmt::Display for BadTimestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} is not an HL7 timestamp YYYY[MM[DD[HH[MM[SS[.S]]]]]][+/-ZZZZ]",
            self.0
        )
    }
}

/// A parsed HL7 timestamp; unset parts were not sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timestamp {
    year: u16,
    month: Option<u8>,
    day: Option<u8>,
    hour: Option<u8>,
    minute: Option<u8>,
    second: Option<u8>,
    /// Digits after the point.
    fraction: Option<String>,
    /// `+07:00`, FHIR style.
    offset: Option<String>,
}

impl Timestamp {
    /// Parse an HL7 TS/DTM value (its first component).
    pub fn parse(value: &str) -> Result<Self, BadTimestamp> {
        let bad = || BadTimestamp(value.to_owned());
        let (body, offset) = match value.find(['+', '-']) {
            Some(i) => (&value[..i], Some(&value[i..])),
            None => (value, None),
        };
        let (digits, fraction) = match body.split_once('.') {
            Some((d, f)) => (d, Some(f)),
            None => (body, None),
        };
        if !digits.bytes().all(|b| b.is_ascii_digit())
            || !matches!(digits.len(), 4 | 6 | 8 | 10 | 12 | 14)
        {
            return Err(bad());
        }
        let fraction = match fraction {
            Some(f)
                if digits.len() == 14
                    && (1..=4).contains(&f.len())
                    && f.bytes().all(|b| b.is_ascii_digit()) =>
            {
                Some(f.to_owned())
            }
            Some(_) => return Err(bad()),
            None => None,
        };
        let num = |from: usize, len: usize| -> Option<u16> {
            digits.get(from..from + len).and_then(|s| s.parse().ok())
        };
        let part = |from: usize| num(from, 2).map(|n| n as u8);
        let year = num(0, 4).ok_or_else(bad)?;
        let ts = Self {
            year,
            month: part(4),
            day: part(6),
            hour: part(8),
            minute: part(10),
            second: part(12),
            fraction,
            offset: match offset {
                None => None,
                Some(z) => Some(parse_offset(z).ok_or_else(bad)?),
            },
        };
        let month_ok = ts.month.is_none_or(|m| (1..=12).contains(&m));
        let day_ok = match (ts.month, ts.day) {
            (Some(m), Some(d)) => d >= 1 && d <= days_in_month(year, m),
            _ => true,
        };
        let time_ok = ts.hour.is_none_or(|h| h <= 23)
            && ts.minute.is_none_or(|m| m <= 59)
            && ts.second.is_none_or(|s| s <= 59);
        if year == 0 || !month_ok || !day_ok || !time_ok {
            return Err(bad());
        }
        Ok(ts)
    }

    /// FHIR `date`: `YYYY`, `YYYY-MM` or `YYYY-MM-DD` (the time, if any, dropped).
    pub fn to_fhir_date(&self) -> String {
        let mut out = format!("{:04}", self.year);
        if let Some(m) = self.month {
            out.push_str(&format!("-{m:02}"));
            if let Some(d) = self.day {
                out.push_str(&format!("-{d:02}"));
            }
        }
        out
    }

    /// FHIR `dateTime`: a date, or with a time of day `YYYY-MM-DDThh:mm:ss[.f]+zz:zz`
    /// (minutes and seconds padded with zeros; +07:00 when no zone was sent).
    pub fn to_fhir_datetime(&self) -> String {
        let mut out = self.to_fhir_date();
        if let (Some(_), Some(h)) = (self.day, self.hour) {
            out.push_str(&format!(
                "T{h:02}:{:02}:{:02}",
                self.minute.unwrap_or(0),
                self.second.unwrap_or(0)
            ));
            if let Some(f) = &self.fraction {
                out.push('.');
                out.push_str(f);
            }
            out.push_str(self.offset.as_deref().unwrap_or(DEFAULT_OFFSET));
        }
        out
    }

    /// FHIR `instant`, which needs a time of day: `None` for a bare date.
    pub fn to_fhir_instant(&self) -> Option<String> {
        self.hour.map(|_| self.to_fhir_datetime())
    }
}

/// `+0700` → `+07:00`; `None` unless a sign and four digits within ±14:00.
fn parse_offset(z: &str) -> Option<String> {
    let (sign, digits) = z.split_at(1);
    if digits.len() != 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let hours: u8 = digits[..2].parse().ok()?;
    let minutes: u8 = digits[2..].parse().ok()?;
    if hours > 14 || minutes > 59 || (hours == 14 && minutes > 0) {
        return None;
    }
    Some(format!("{sign}{hours:02}:{minutes:02}"))
}

fn days_in_month(year: u16, month: u8) -> u8 {
    match month {
        2 if (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400) => {
            29
        }
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// An HL7 TS for `unix_millis` (UTC) in Vietnam time, `YYYYMMDDHHMMSS+0700`: for ACK MSH-7.
pub fn hl7_timestamp_vn(unix_millis: i64) -> String {
    let seconds = unix_millis.div_euclid(1000) + 7 * 3600;
    let days = seconds.div_euclid(86_400);
    let rem = seconds.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}{m:02}{d:02}{:02}{:02}{:02}+0700",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's method).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dt(s: &str) -> String {
        Timestamp::parse(s).expect(s).to_fhir_datetime()
    }

    #[test]
    fn converts_precisions_and_zones() {
        assert_eq!(dt("2024"), "2024");
        assert_eq!(dt("202403"), "2024-03");
        assert_eq!(dt("20240305"), "2024-03-05");
        assert_eq!(dt("2024030508"), "2024-03-05T08:00:00+07:00");
        assert_eq!(dt("202403050830"), "2024-03-05T08:30:00+07:00");
        assert_eq!(dt("20240305083015.25"), "2024-03-05T08:30:15.25+07:00");
        assert_eq!(dt("20240305083015-0500"), "2024-03-05T08:30:15-05:00");
        assert_eq!(dt("20240305+0000"), "2024-03-05");
        let ts = Timestamp::parse("19800229").expect("leap");
        assert_eq!(ts.to_fhir_date(), "1980-02-29");
        assert_eq!(ts.to_fhir_instant(), None);
    }

    #[test]
    fn refuses_nonsense() {
        for bad in [
            "",
            "24",
            "2024-03-05",
            "20241305",
            "20230229",
            "20240305256000",
            "2024030508+7",
            "20240305.5",
            "abcd",
            "0000",
        ] {
            assert!(Timestamp::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn vietnam_time_from_unix_millis() {
        assert_eq!(hl7_timestamp_vn(0), "19700101070000+0700");
        assert_eq!(hl7_timestamp_vn(1_709_602_200_000), "20240305083000+0700");
    }
}
