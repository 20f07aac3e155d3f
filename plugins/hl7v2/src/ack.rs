//! Original-mode acknowledgments (ACK with MSA and, on errors, ERR).

use crate::error::{AckCode, Issue};
use crate::message::{Message, Separators};

/// Versions this library reads; anything else is answered in the default version.
const VERSIONS: &[&str] = &["2.3", "2.3.1", "2.4", "2.5", "2.5.1"];
/// The version of ACKs to messages whose version is missing or not supported.
const DEFAULT_VERSION: &str = "2.5";

/// What an ACK copies from the message it answers. Fields are kept as written (escaped)
/// so they go back exactly as the sender spelled them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckTarget {
    /// The separators of the original message (the defaults when it had none usable).
    pub separators: Separators,
    /// MSH-3 to MSH-6 of the original: sending app, sending facility, receiving app,
    /// receiving facility.
    pub sending_application: String,
    /// MSH-4 of the original.
    pub sending_facility: String,
    /// MSH-5 of the original.
    pub receiving_application: String,
    /// MSH-6 of the original.
    pub receiving_facility: String,
    /// MSH-9.2 of the original, echoed in the ACK's MSH-9.
    pub trigger_event: String,
    /// MSH-10 of the original, echoed in MSA-2.
    pub control_id: String,
    /// MSH-11 of the original (`P` when absent).
    pub processing_id: String,
    /// MSH-12.1 of the original.
    pub version: String,
}

impl AckTarget {
    /// From a parsed message.
    pub fn from_message(message: &Message) -> Self {
        let raw = |n: usize| message.msh(n).raw().to_owned();
        let first = |n: usize| {
            message
                .msh(n)
                .first()
                .raw_component(1)
                .unwrap_or("")
                .to_owned()
        };
        Self {
            separators: message.separators().clone(),
            sending_application: raw(3),
            sending_facility: raw(4),
            receiving_application: raw(5),
            receiving_facility: raw(6),
            trigger_event: message
                .msh(9)
                .first()
                .raw_component(2)
                .unwrap_or("")
                .to_owned(),
            control_id: raw(10),
            processing_id: first(11),
            version: first(12),
        }
    }

    /// Best effort from text that did not parse: whatever the first line's MSH gives,
    /// defaults for the rest.
    pub fn sniff(input: &str) -> Self {
        let input = input.trim_start_matches(['\u{feff}', '\u{0b}']);
        let line = input.split(['\r', '\n']).next().unwrap_or("");
        let mut target = Self {
            separators: Separators::default(),
            sending_application: String::new(),
            sending_facility: String::new(),
            receiving_application: String::new(),
            receiving_facility: String::new(),
            trigger_event: String::new(),
            control_id: String::new(),
            processing_id: String::new(),
            version: String::new(),
        };
        let Some(rest) = line.strip_prefix("MSH") else {
            return target;
        };
        let Some(field) = rest.chars().next() else {
            return target;
        };
        let fields: Vec<&str> = rest[field.len_utf8()..].split(field).collect();
        // fields[0] is MSH-2, fields[n - 2] is MSH-n.
        let get = |n: usize| fields.get(n - 2).copied().unwrap_or("");
        if let Some(separators) = Separators::from_msh(field, get(2)) {
            target.separators = separators;
        }
        let s = &target.separators;
        // Only copy values that cannot break the ACK's own structure.
        let safe = |v: &str| {
            if v.contains(['\r', '\n']) || (s.field != field && v.contains(s.field)) {
                String::new()
            } else {
                v.to_owned()
            }
        };
        let first = |v: &str| v.split(s.component).next().unwrap_or("").to_owned();
        target.sending_application = safe(get(3));
        target.sending_facility = safe(get(4));
        target.receiving_application = safe(get(5));
        target.receiving_facility = safe(get(6));
        target.trigger_event = safe(get(9).split(s.component).nth(1).unwrap_or(""));
        target.control_id = safe(get(10));
        target.processing_id = first(&safe(get(11)));
        target.version = first(&safe(get(12)));
        target
    }

    /// The version the ACK is written in: the original's when supported.
    pub fn ack_version(&self) -> &str {
        if VERSIONS.contains(&self.version.as_str()) {
            &self.version
        } else {
            DEFAULT_VERSION
        }
    }
}

/// Build an ACK answering `target`: AA when `issue` is `None`, else AE/AR with the issue in
/// ERR. `timestamp` is MSH-7 (HL7 TS, e.g. `20240305083000+0700`). Segments end with `\r`.
///
/// v2.5 and later get ERR-2 (location), ERR-3 (code), ERR-4 (severity) and ERR-8 (text);
/// v2.3/v2.4 get ERR-1 (segment^sequence^field^code) and the text in MSA-3.
pub fn ack(target: &AckTarget, issue: Option<&Issue>, timestamp: &str) -> String {
    let s = &target.separators;
    let f = s.field.to_string();
    let version = target.ack_version();
    let modern = !matches!(version, "2.3" | "2.3.1" | "2.4");
    let c = s.component.to_string();
    // MSH-9.3 (message structure) exists from v2.3.1.
    let mut message_type = vec!["ACK", target.trigger_event.as_str()];
    if version != "2.3" {
        message_type.push("ACK");
    }
    let message_type = message_type.join(&c);
    let message_type = message_type.trim_end_matches(s.component);
    let processing = if target.processing_id.is_empty() {
        "P"
    } else {
        &target.processing_id
    };
    // Our own control ID: derived from the original, so a repeated message gets the same.
    let control: String = format!("ACK{}", target.control_id)
        .chars()
        .take(20)
        .collect();
    let msh = [
        format!("MSH{f}{}", s.encoding_characters()),
        target.receiving_application.clone(),
        target.receiving_facility.clone(),
        target.sending_application.clone(),
        target.sending_facility.clone(),
        s.escape(timestamp),
        String::new(),
        message_type.to_owned(),
        control,
        processing.to_owned(),
        version.to_owned(),
    ]
    .join(&f);
    let code = issue.map_or(AckCode::Accept, |i| i.ack_code);
    let mut msa = vec![
        "MSA".to_owned(),
        code.as_str().to_owned(),
        target.control_id.clone(),
    ];
    let mut out = format!("{msh}\r");
    let Some(issue) = issue else {
        out.push_str(&msa.join(&f));
        out.push('\r');
        return out;
    };
    let text = s.escape(&issue.text);
    let sc = s.subcomponent.to_string();
    let err = if modern {
        let code = [
            issue.code.code().to_string(),
            s.escape(issue.code.text()),
            "HL70357".into(),
        ]
        .join(&c);
        // ERR-1 (withdrawn) empty, ERR-2 location, ERR-3 code, ERR-4 severity, ERR-8 text.
        [
            "ERR".to_owned(),
            String::new(),
            issue.erl(s),
            code,
            "E".into(),
            String::new(),
            String::new(),
            String::new(),
            text,
        ]
        .join(&f)
    } else {
        msa.push(text);
        let location = issue.location.as_ref();
        let code = [
            issue.code.code().to_string(),
            s.escape(issue.code.text()),
            "HL70357".into(),
        ]
        .join(&sc);
        let eld = [
            location.map(|l| l.segment.clone()).unwrap_or_default(),
            location.map(|l| l.sequence.to_string()).unwrap_or_default(),
            location
                .and_then(|l| l.field)
                .map(|n| n.to_string())
                .unwrap_or_default(),
            code,
        ]
        .join(&c);
        format!("ERR{f}{eld}")
    };
    out.push_str(&msa.join(&f));
    out.push('\r');
    out.push_str(&err);
    out.push('\r');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{ErrorCode, Location};

    #[test]
    fn aa_swaps_sender_and_receiver() {
        let m = crate::parse(
            "MSH|^~\\&|HIS|BVBM^1.2^ISO|VTH|VTEL|20240101||ADT^A01^ADT_A01|C1|P|2.5.1",
        )
        .expect("parses");
        let ack = ack(&AckTarget::from_message(&m), None, "20240101120000+0700");
        assert_eq!(
            ack,
            "MSH|^~\\&|VTH|VTEL|HIS|BVBM^1.2^ISO|20240101120000+0700||ACK^A01^ACK|ACKC1|P|2.5.1\r\
             MSA|AA|C1\r"
        );
    }

    #[test]
    fn ae_in_v25_and_v23() {
        let issue = Issue::error(ErrorCode::RequiredFieldMissing, "PID-3 | missing")
            .at(Some(Location::segment("PID", 1).field(3)));
        let m = crate::parse("MSH|^~\\&|HIS|H|||1||ADT^A01|C1|P|2.5").expect("parses");
        let a = ack(&AckTarget::from_message(&m), Some(&issue), "2024");
        assert!(
            a.ends_with("MSA|AE|C1\rERR||PID^1^3|101^Required field missing^HL70357|E||||PID-3 \\F\\ missing\r"),
            "{a}"
        );
        let m = crate::parse("MSH|^~\\&|HIS|H|||1||ADT^A01|C1|P|2.3").expect("parses");
        let a = ack(&AckTarget::from_message(&m), Some(&issue), "2024");
        assert!(a.contains("ACK^A01|ACKC1|P|2.3\r"), "{a}");
        assert!(
            a.ends_with(
                "MSA|AE|C1|PID-3 \\F\\ missing\rERR|PID^1^3^101&Required field missing&HL70357\r"
            ),
            "{a}"
        );
    }

    #[test]
    fn sniffs_broken_headers() {
        let t = AckTarget::sniff("MSH|^~|HIS|H|R|RF|x||ADT^A04|77|T|2.4\rPID|");
        assert_eq!(t.separators, Separators::default());
        assert_eq!(t.control_id, "77");
        assert_eq!(t.trigger_event, "A04");
        assert_eq!(t.version, "2.4");
        let t = AckTarget::sniff("hello");
        assert_eq!(t.control_id, "");
        let a = ack(
            &t,
            Some(&Issue::reject(ErrorCode::SegmentSequence, "no MSH")),
            "2024",
        );
        assert!(
            a.starts_with("MSH|^~\\&|||||2024||ACK^^ACK|ACK|P|2.5\r"),
            "{a}"
        );
    }
}
