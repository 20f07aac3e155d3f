//! Error locations, HL7 error codes and the outcome an acknowledgment reports.

use std::fmt;

use crate::message::Separators;

/// Where in a message an error is (HL7 v2.5 ERL, ERR-2): segment ID, its 1-based occurrence,
/// and optionally field, repetition and component.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Location {
    /// Segment ID, e.g. `PID`.
    pub segment: String,
    /// 1-based occurrence of that segment ID in the message.
    pub sequence: usize,
    /// 1-based field number.
    pub field: Option<usize>,
    /// 1-based repetition of the field.
    pub repetition: Option<usize>,
    /// 1-based component number.
    pub component: Option<usize>,
}

impl Location {
    /// A whole segment.
    pub fn segment(id: &str, sequence: usize) -> Self {
        Self {
            segment: id.to_owned(),
            sequence,
            ..Self::default()
        }
    }

    /// The same location narrowed to a field.
    pub fn field(mut self, field: usize) -> Self {
        self.field = Some(field);
        self
    }

    pub(crate) fn field_opt(mut self, field: Option<usize>) -> Self {
        self.field = field;
        self
    }

    /// The same location narrowed to a repetition of the field.
    pub fn repetition(mut self, repetition: usize) -> Self {
        self.repetition = Some(repetition);
        self
    }

    /// The same location narrowed to a component.
    pub fn component(mut self, component: usize) -> Self {
        self.component = Some(component);
        self
    }

    /// ERL as HL7 v2.5 writes it (`PID^1^3^1^5`), trailing empty components dropped.
    pub fn to_erl(&self, component_separator: char) -> String {
        let parts = [
            Some(self.segment.clone()),
            Some(self.sequence.to_string()),
            self.field.map(|n| n.to_string()),
            self.repetition.map(|n| n.to_string()),
            self.component.map(|n| n.to_string()),
        ];
        let last = parts.iter().rposition(Option::is_some).unwrap_or(0);
        parts[..=last]
            .iter()
            .map(|p| p.as_deref().unwrap_or(""))
            .collect::<Vec<_>>()
            .join(&component_separator.to_string())
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_erl('^'))
    }
}

/// HL7 table 0357, message error condition codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// 100: a segment is missing, out of order or unreadable.
    SegmentSequence,
    /// 101: a required field is missing.
    RequiredFieldMissing,
    /// 102: a value does not have its data type (bad date, number...).
    DataType,
    /// 103: a coded value is not in its table.
    TableValueNotFound,
    /// 200: message type not supported.
    UnsupportedMessageType,
    /// 201: trigger event not supported.
    UnsupportedEventCode,
    /// 203: version not supported.
    UnsupportedVersion,
    /// 207: the receiving application failed (here: the record store refused or failed).
    ApplicationInternal,
}

impl ErrorCode {
    /// The numeric code, e.g. `101`.
    pub fn code(self) -> u16 {
        match self {
            Self::SegmentSequence => 100,
            Self::RequiredFieldMissing => 101,
            Self::DataType => 102,
            Self::TableValueNotFound => 103,
            Self::UnsupportedMessageType => 200,
            Self::UnsupportedEventCode => 201,
            Self::UnsupportedVersion => 203,
            Self::ApplicationInternal => 207,
        }
    }

    /// The table's text for the code.
    pub fn text(self) -> &'static str {
        match self {
            Self::SegmentSequence => "Segment sequence error",
            Self::RequiredFieldMissing => "Required field missing",
            Self::DataType => "Data type error",
            Self::TableValueNotFound => "Table value not found",
            Self::UnsupportedMessageType => "Unsupported message type",
            Self::UnsupportedEventCode => "Unsupported event code",
            Self::UnsupportedVersion => "Unsupported version id",
            Self::ApplicationInternal => "Application internal error",
        }
    }
}

/// MSA-1, the acknowledgment code (original mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckCode {
    /// AA: accepted and stored.
    Accept,
    /// AE: a content error; resending the same message will fail again.
    Error,
    /// AR: rejected (header, type or version not acceptable, or the receiver could not
    /// process it now).
    Reject,
}

impl AckCode {
    /// `AA`, `AE` or `AR`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accept => "AA",
            Self::Error => "AE",
            Self::Reject => "AR",
        }
    }
}

impl fmt::Display for AckCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A problem to report in an AE/AR acknowledgment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    /// AE or AR.
    pub ack_code: AckCode,
    /// ERR-3.
    pub code: ErrorCode,
    /// ERR-2, when the problem is in one place.
    pub location: Option<Location>,
    /// ERR-8, for people.
    pub text: String,
}

impl Issue {
    /// An AE issue.
    pub fn error(code: ErrorCode, text: impl Into<String>) -> Self {
        Self {
            ack_code: AckCode::Error,
            code,
            location: None,
            text: text.into(),
        }
    }

    /// An AR issue.
    pub fn reject(code: ErrorCode, text: impl Into<String>) -> Self {
        Self {
            ack_code: AckCode::Reject,
            ..Self::error(code, text)
        }
    }

    /// The same issue at a location.
    pub fn at(mut self, location: Option<Location>) -> Self {
        self.location = location;
        self
    }

    /// ERR-2 in the message's separators.
    pub fn erl(&self, separators: &Separators) -> String {
        self.location
            .as_ref()
            .map(|l| l.to_erl(separators.component))
            .unwrap_or_default()
    }
}

impl fmt::Display for Issue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.ack_code, self.code.code())?;
        if let Some(location) = &self.location {
            write!(f, " at {location}")?;
        }
        write!(f, ": {}", self.text)
    }
}
