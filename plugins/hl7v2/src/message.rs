//! ER7 ("pipe and hat") parsing: segments, fields, repetitions, components, escapes.

use std::borrow::Cow;
use std::fmt;

use crate::error::{ErrorCode, Issue, Location};

/// The delimiters of one message, read from MSH-1 and MSH-2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Separators {
    /// MSH-1, usually `|`.
    pub field: char,
    /// Usually `^`.
    pub component: char,
    /// Usually `~`.
    pub repetition: char,
    /// Usually `\`.
    pub escape: char,
    /// Usually `&`.
    pub subcomponent: char,
    /// v2.7 truncation character (`#`), when MSH-2 has five characters.
    pub truncation: Option<char>,
}

impl Default for Separators {
    fn default() -> Self {
        Self {
            field: '|',
            component: '^',
            repetition: '~',
            escape: '\\',
            subcomponent: '&',
            truncation: None,
        }
    }
}

impl Separators {
    /// MSH-2 as written: component, repetition, escape, subcomponent [, truncation].
    pub fn encoding_characters(&self) -> String {
        let mut s: String = [
            self.component,
            self.repetition,
            self.escape,
            self.subcomponent,
        ]
        .iter()
        .collect();
        s.extend(self.truncation);
        s
    }

    /// Read MSH-1 and MSH-2; `None` unless they are 1 and 4-5 distinct printable ASCII
    /// characters that are neither letters, digits nor spaces.
    pub(crate) fn from_msh(field: char, encoding: &str) -> Option<Self> {
        let chars: Vec<char> = encoding.chars().collect();
        if !(4..=5).contains(&chars.len()) {
            return None;
        }
        let mut all = vec![field];
        all.extend(&chars);
        let usable = |c: &char| c.is_ascii_punctuation();
        if !all.iter().all(usable) {
            return None;
        }
        for (i, c) in all.iter().enumerate() {
            if all[..i].contains(c) {
                return None;
            }
        }
        Some(Self {
            field,
            component: chars[0],
            repetition: chars[1],
            escape: chars[2],
            subcomponent: chars[3],
            truncation: chars.get(4).copied(),
        })
    }

    /// Escape a text value so it can be placed in a field of a message with these separators.
    pub fn escape(&self, text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        let e = self.escape;
        for c in text.chars() {
            let code = match c {
                c if c == self.field => "F",
                c if c == self.component => "S",
                c if c == self.subcomponent => "T",
                c if c == self.repetition => "R",
                c if c == self.escape => "E",
                c if Some(c) == self.truncation => "P",
                '\n' => ".br",
                '\r' => continue,
                _ => {
                    out.push(c);
                    continue;
                }
            };
            out.push(e);
            out.push_str(code);
            out.push(e);
        }
        out
    }

    /// Decode the escape sequences of one leaf value (a component or subcomponent).
    ///
    /// Unknown or unterminated sequences are kept as written: HIS systems send stray
    /// backslashes in free text far more often than they send exotic escapes.
    pub fn unescape<'a>(&self, raw: &'a str) -> Cow<'a, str> {
        let e = self.escape;
        if !raw.contains(e) {
            return Cow::Borrowed(raw);
        }
        let mut out = String::with_capacity(raw.len());
        let mut rest = raw;
        while let Some(start) = rest.find(e) {
            out.push_str(&rest[..start]);
            let after = &rest[start + e.len_utf8()..];
            let Some(end) = after.find(e) else {
                out.push_str(&rest[start..]);
                return Cow::Owned(out);
            };
            let seq = &after[..end];
            match self.decode_escape(seq) {
                Some(decoded) => out.push_str(&decoded),
                None => {
                    out.push(e);
                    out.push_str(seq);
                    out.push(e);
                }
            }
            rest = &after[end + e.len_utf8()..];
        }
        out.push_str(rest);
        Cow::Owned(out)
    }

    fn decode_escape(&self, seq: &str) -> Option<String> {
        let one = |c: char| Some(c.to_string());
        match seq {
            "F" => one(self.field),
            "S" => one(self.component),
            "T" => one(self.subcomponent),
            "R" => one(self.repetition),
            "E" => one(self.escape),
            "P" => self.truncation.map(String::from),
            ".br" | ".sp" => Some("\n".into()),
            // Highlighting and formatting commands carry no text.
            "H" | "N" | ".fi" | ".nf" => Some(String::new()),
            _ if seq.starts_with(".in") || seq.starts_with(".ti") || seq.starts_with(".ce") => {
                Some(String::new())
            }
            _ => {
                let hex = seq.strip_prefix('X')?;
                decode_hex(hex)
            }
        }
    }
}

/// `\Xhh..\`: bytes in hex; UTF-8 when they form UTF-8, otherwise Latin-1.
fn decode_hex(hex: &str) -> Option<String> {
    if hex.is_empty() || !hex.len().is_multiple_of(2) || !hex.bytes().all(|b| b.is_ascii_hexdigit())
    {
        return None;
    }
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16))
        .collect::<Result<_, _>>()
        .ok()?;
    match String::from_utf8(bytes) {
        Ok(s) => Some(s),
        Err(e) => Some(e.into_bytes().iter().map(|&b| char::from(b)).collect()),
    }
}

/// Why a message could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseErrorKind {
    /// The body holds no segment at all.
    Empty,
    /// The first segment is not MSH.
    NoMsh,
    /// MSH-1/MSH-2 are not a usable set of separators.
    BadEncodingCharacters(String),
    /// A required MSH field is empty (MSH-9 message type and trigger, MSH-10, MSH-12).
    MissingHeaderField(&'static str),
    /// A line that does not start with a segment ID followed by the field separator.
    BadSegment {
        /// The first characters of the line, for the error text.
        start: String,
    },
}

/// A message that could not be parsed, with where it failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// What is wrong.
    pub kind: ParseErrorKind,
    /// 1-based position of the offending segment among the message's segments.
    pub segment_index: usize,
    /// The HL7 location (ERR-2) when one can be named.
    pub location: Option<Location>,
}

impl ParseError {
    fn new(kind: ParseErrorKind, segment_index: usize, location: Option<Location>) -> Self {
        Self {
            kind,
            segment_index,
            location,
        }
    }

    /// The acknowledgment this error calls for: a broken header is rejected (AR), a broken
    /// body segment is a content error (AE).
    pub fn issue(&self) -> Issue {
        let (reject, code) = match self.kind {
            ParseErrorKind::Empty | ParseErrorKind::NoMsh => (true, ErrorCode::SegmentSequence),
            ParseErrorKind::BadEncodingCharacters(_) => (true, ErrorCode::DataType),
            ParseErrorKind::MissingHeaderField(_) => (true, ErrorCode::RequiredFieldMissing),
            ParseErrorKind::BadSegment { .. } => (false, ErrorCode::SegmentSequence),
        };
        let issue = if reject {
            Issue::reject(code, self.to_string())
        } else {
            Issue::error(code, self.to_string())
        };
        issue.at(self.location.clone())
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            ParseErrorKind::Empty => write!(f, "the message is empty"),
            ParseErrorKind::NoMsh => write!(f, "the message does not start with an MSH segment"),
            ParseErrorKind::BadEncodingCharacters(found) => write!(
                f,
                "MSH-1/MSH-2 {found:?} are not a field separator and 4 or 5 distinct encoding \
                 characters"
            ),
            ParseErrorKind::MissingHeaderField(field) => write!(f, "{field} is required"),
            ParseErrorKind::BadSegment { start } => write!(
                f,
                "segment {} ({start:?}) does not start with a segment ID and a field separator",
                self.segment_index
            ),
        }
    }
}

impl std::error::Error for ParseError {}

/// One segment: its ID and its fields, still escaped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    id: String,
    /// `fields[n]` is field n; `fields[0]` is the segment ID. For MSH, `fields[1]` is the
    /// field separator and `fields[2]` the encoding characters, as HL7 numbers them.
    fields: Vec<String>,
    sequence: usize,
}

impl Segment {
    /// The segment ID, e.g. `PID`.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// 1-based occurrence of this segment ID in the message (the second OBX is 2).
    pub fn sequence(&self) -> usize {
        self.sequence
    }

    /// The number of the last field present.
    pub fn field_count(&self) -> usize {
        self.fields.len().saturating_sub(1)
    }

    /// Field `n` (1-based), still escaped, or `None` when absent or empty.
    pub fn raw(&self, n: usize) -> Option<&str> {
        self.fields
            .get(n)
            .map(String::as_str)
            .filter(|s| !s.is_empty() && n > 0)
    }

    /// A view of field `n` for reading its repetitions and components.
    pub fn field<'a>(&'a self, n: usize, separators: &'a Separators) -> Field<'a> {
        let raw = if n == 0 {
            ""
        } else {
            self.fields.get(n).map_or("", String::as_str)
        };
        Field {
            raw,
            separators,
            // MSH-1 and MSH-2 contain the separators themselves.
            literal: self.id == "MSH" && n <= 2,
        }
    }

    /// The location of this segment, or of one of its fields, for error reports.
    pub fn location(&self, field: Option<usize>) -> Location {
        Location::segment(&self.id, self.sequence).field_opt(field)
    }
}

/// One field of a segment (all its repetitions).
#[derive(Debug, Clone, Copy)]
pub struct Field<'a> {
    raw: &'a str,
    separators: &'a Separators,
    literal: bool,
}

impl<'a> Field<'a> {
    /// The field as written, escapes included.
    pub fn raw(&self) -> &'a str {
        self.raw
    }

    /// Whether the field is absent or empty (`""` the HL7 null counts as a value).
    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }

    /// The repetitions, in order; none for an empty field.
    pub fn repetitions(&self) -> impl Iterator<Item = Repetition<'a>> + 'a {
        let separators = self.separators;
        let literal = self.literal;
        let parts: Box<dyn Iterator<Item = &'a str>> = if self.raw.is_empty() {
            Box::new(std::iter::empty())
        } else if literal {
            Box::new(std::iter::once(self.raw))
        } else {
            Box::new(self.raw.split(separators.repetition))
        };
        parts.map(move |raw| Repetition {
            raw,
            separators,
            literal,
        })
    }

    /// The first repetition (empty when the field is empty).
    pub fn first(&self) -> Repetition<'a> {
        let raw = if self.literal {
            self.raw
        } else {
            self.raw
                .split(self.separators.repetition)
                .next()
                .unwrap_or("")
        };
        Repetition {
            raw,
            separators: self.separators,
            literal: self.literal,
        }
    }

    /// Component `n` (1-based) of the first repetition, unescaped; `None` when empty.
    pub fn component(&self, n: usize) -> Option<Cow<'a, str>> {
        self.first().component(n)
    }

    /// The first component of the first repetition, unescaped; `None` when empty.
    pub fn value(&self) -> Option<Cow<'a, str>> {
        self.component(1)
    }
}

/// One repetition of a field (its components).
#[derive(Debug, Clone, Copy)]
pub struct Repetition<'a> {
    raw: &'a str,
    separators: &'a Separators,
    literal: bool,
}

impl<'a> Repetition<'a> {
    /// The repetition as written, escapes included.
    pub fn raw(&self) -> &'a str {
        self.raw
    }

    /// Whether the repetition is empty.
    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }

    /// Component `n` (1-based) as written, subcomponents and escapes included.
    pub fn raw_component(&self, n: usize) -> Option<&'a str> {
        if n == 0 {
            return None;
        }
        let found = if self.literal {
            (n == 1).then_some(self.raw)
        } else {
            self.raw.split(self.separators.component).nth(n - 1)
        };
        found.filter(|s| !s.is_empty())
    }

    /// Component `n` (1-based), its first subcomponent unescaped; `None` when empty.
    pub fn component(&self, n: usize) -> Option<Cow<'a, str>> {
        self.subcomponent(n, 1)
    }

    /// Subcomponent `s` of component `n` (both 1-based), unescaped; `None` when empty.
    pub fn subcomponent(&self, n: usize, s: usize) -> Option<Cow<'a, str>> {
        let component = self.raw_component(n)?;
        if self.literal {
            return (s == 1).then_some(Cow::Borrowed(component));
        }
        let sub = component
            .split(self.separators.subcomponent)
            .nth(s.checked_sub(1)?)?;
        Some(self.separators.unescape(sub)).filter(|v| !v.is_empty())
    }

    /// The whole repetition as text: components unescaped and joined by `joiner`,
    /// subcomponents by a space. For free text such as ST/TX/FT values.
    pub fn text(&self, joiner: &str) -> String {
        if self.literal {
            return self.raw.to_owned();
        }
        let mut out = String::new();
        for (i, component) in self.raw.split(self.separators.component).enumerate() {
            if i > 0 {
                out.push_str(joiner);
            }
            for (j, sub) in component.split(self.separators.subcomponent).enumerate() {
                if j > 0 {
                    out.push(' ');
                }
                out.push_str(&self.separators.unescape(sub));
            }
        }
        out
    }
}

/// A parsed HL7 v2 message. The first segment is always MSH and MSH-9 (type and trigger),
/// MSH-10 and MSH-12 are present.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    separators: Separators,
    segments: Vec<Segment>,
}

/// Parse an ER7 message. Segments may end with `\r`, `\n` or `\r\n`; blank lines, a
/// leading byte-order mark and MLLP framing bytes are ignored.
pub fn parse(input: &str) -> Result<Message, ParseError> {
    let input = input
        .trim_start_matches(['\u{feff}', '\u{0b}'])
        .trim_end_matches(['\u{1c}', '\r', '\n']);
    let mut lines = input.split(['\r', '\n']).filter(|l| !l.trim().is_empty());
    let Some(first) = lines.next() else {
        return Err(ParseError::new(ParseErrorKind::Empty, 1, None));
    };
    let msh = || Location::segment("MSH", 1);
    if !first.starts_with("MSH") {
        return Err(ParseError::new(
            ParseErrorKind::NoMsh,
            1,
            Some(Location::segment("MSH", 1)),
        ));
    }
    let (separators, header) = read_msh(first).map_err(|found| {
        ParseError::new(
            ParseErrorKind::BadEncodingCharacters(found),
            1,
            Some(msh().field(2)),
        )
    })?;

    let mut segments = vec![header];
    let mut counts: Vec<(String, usize)> = vec![("MSH".into(), 1)];
    for line in lines {
        let index = segments.len() + 1;
        let id = segment_id(line, separators.field).ok_or_else(|| {
            ParseError::new(
                ParseErrorKind::BadSegment {
                    start: line.chars().take(12).collect(),
                },
                index,
                None,
            )
        })?;
        let sequence = match counts.iter_mut().find(|(seen, _)| seen == id) {
            Some((_, n)) => {
                *n += 1;
                *n
            }
            None => {
                counts.push((id.to_owned(), 1));
                1
            }
        };
        let fields = line.split(separators.field).map(str::to_owned).collect();
        segments.push(Segment {
            id: id.to_owned(),
            fields,
            sequence,
        });
    }
    let message = Message {
        separators,
        segments,
    };
    let required: [(&'static str, usize, usize); 4] = [
        ("MSH-9.1 (message type)", 9, 1),
        ("MSH-9.2 (trigger event)", 9, 2),
        ("MSH-10 (message control ID)", 10, 1),
        ("MSH-12 (version ID)", 12, 1),
    ];
    for (name, field, component) in required {
        if message.msh(field).component(component).is_none() {
            let mut location = msh().field(field);
            if field == 9 {
                location = location.component(component);
            }
            return Err(ParseError::new(
                ParseErrorKind::MissingHeaderField(name),
                1,
                Some(location),
            ));
        }
    }
    Ok(message)
}

/// `MSH|^~\&|...` → separators and the MSH segment; `Err` carries MSH-1/MSH-2 as found.
fn read_msh(line: &str) -> Result<(Separators, Segment), String> {
    let mut chars = line.chars().skip(3);
    let Some(field) = chars.next() else {
        return Err(String::new());
    };
    let rest: &str = &line[3 + field.len_utf8()..];
    let encoding = rest.split(field).next().unwrap_or("");
    let separators = Separators::from_msh(field, encoding)
        .ok_or_else(|| format!("{field}{}", encoding.chars().take(8).collect::<String>()))?;
    let mut fields = vec!["MSH".to_owned(), field.to_string()];
    fields.extend(rest.split(field).map(str::to_owned));
    Ok((
        separators,
        Segment {
            id: "MSH".into(),
            fields,
            sequence: 1,
        },
    ))
}

/// The segment ID of a line: three upper-case letters or digits, starting with a letter,
/// followed by the field separator or the end of the line.
fn segment_id(line: &str, field: char) -> Option<&str> {
    let id = line.get(..3)?;
    let bytes = id.as_bytes();
    let ok = bytes[0].is_ascii_uppercase()
        && bytes[1..]
            .iter()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
    let next = line[3..].chars().next();
    (ok && (next.is_none() || next == Some(field))).then_some(id)
}

impl Message {
    /// The separators of this message.
    pub fn separators(&self) -> &Separators {
        &self.separators
    }

    /// All segments in order, MSH first.
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// The first segment with this ID.
    pub fn segment(&self, id: &str) -> Option<&Segment> {
        self.segments.iter().find(|s| s.id == id)
    }

    /// Every segment with this ID, in order.
    pub fn segments_with_id<'a>(&'a self, id: &'a str) -> impl Iterator<Item = &'a Segment> {
        self.segments.iter().filter(move |s| s.id == id)
    }

    /// Field `n` of a segment, as a view that knows this message's separators.
    pub fn field<'a>(&'a self, segment: &'a Segment, n: usize) -> Field<'a> {
        segment.field(n, &self.separators)
    }

    /// A field of the MSH segment.
    pub fn msh(&self, n: usize) -> Field<'_> {
        self.segments[0].field(n, &self.separators)
    }

    /// Read one value by a terse path: `PID-5-1` (segment, field, component), `PID-3(2)-1`
    /// (second repetition), `PID-5-1-1` (subcomponent), `OBX[2]-5` (second OBX). Unescaped;
    /// `None` when absent, empty or when the path is malformed.
    pub fn get(&self, path: &str) -> Option<Cow<'_, str>> {
        let mut parts = path.split('-');
        let (id, occurrence) = indexed(parts.next()?, '[', ']')?;
        let (field, repetition) = indexed(parts.next()?, '(', ')')?;
        let field: usize = field.parse().ok()?;
        let component: usize = parts.next().map_or(Some(1), |c| c.parse().ok())?;
        let subcomponent: usize = parts.next().map_or(Some(1), |c| c.parse().ok())?;
        if parts.next().is_some() || occurrence == 0 || repetition == 0 {
            return None;
        }
        let segment = self
            .segments
            .iter()
            .filter(|s| s.id == id)
            .nth(occurrence - 1)?;
        let field = self.field(segment, field);
        field
            .repetitions()
            .nth(repetition - 1)?
            .subcomponent(component, subcomponent)
    }

    /// MSH-9.1, e.g. `ADT`.
    pub fn message_code(&self) -> Cow<'_, str> {
        self.msh(9).component(1).unwrap_or_default()
    }

    /// MSH-9.2, e.g. `A01`.
    pub fn trigger_event(&self) -> Cow<'_, str> {
        self.msh(9).component(2).unwrap_or_default()
    }

    /// MSH-10, the message control ID.
    pub fn control_id(&self) -> Cow<'_, str> {
        self.msh(10).component(1).unwrap_or_default()
    }

    /// MSH-12.1, e.g. `2.5.1`.
    pub fn version(&self) -> Cow<'_, str> {
        self.msh(12).component(1).unwrap_or_default()
    }

    /// MSH-3.1, the sending application's namespace ID.
    pub fn sending_application(&self) -> Option<Cow<'_, str>> {
        self.msh(3).component(1)
    }

    /// MSH-4.1, the sending facility's namespace ID.
    pub fn sending_facility(&self) -> Option<Cow<'_, str>> {
        self.msh(4).component(1)
    }
}

/// `OBX[2]` → (`OBX`, 2); `OBX` → (`OBX`, 1).
fn indexed(part: &str, open: char, close: char) -> Option<(&str, usize)> {
    match part.split_once(open) {
        Some((name, rest)) => Some((name, rest.strip_suffix(close)?.parse().ok()?)),
        None => Some((part, 1)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ADT: &str = "MSH|^~\\&|HIS|BVBM|VTH|VTH|20240305083000||ADT^A01|MSG1|P|2.5\r\
        PID|1||123^^^BVBM^MR~001203004567^^^BCA^CCCD||NGUYỄN^VĂN AN||19800101|M\r\
        OBX|1|ST|X^Y||a\\T\\b \\F\\ c\\.br\\d \\X41\\ \\Xc3a1\\ \\Q\\||";

    #[test]
    fn reads_fields_components_repetitions_and_escapes() {
        let m = parse(ADT).expect("parses");
        assert_eq!(m.message_code(), "ADT");
        assert_eq!(m.trigger_event(), "A01");
        assert_eq!(m.control_id(), "MSG1");
        assert_eq!(m.msh(1).raw(), "|");
        assert_eq!(m.msh(2).value().as_deref(), Some("^~\\&"));
        assert_eq!(m.get("PID-5-1").as_deref(), Some("NGUYỄN"));
        assert_eq!(m.get("PID-5-2").as_deref(), Some("VĂN AN"));
        assert_eq!(m.get("PID-3(2)-1").as_deref(), Some("001203004567"));
        assert_eq!(m.get("PID-3(2)-5").as_deref(), Some("CCCD"));
        assert_eq!(m.get("PID-3(3)-1"), None);
        assert_eq!(m.get("PID-9"), None);
        assert_eq!(m.get("OBX-5").as_deref(), Some("a&b | c\nd A á \\Q\\"));
        let obx = m.segment("OBX").expect("OBX");
        assert_eq!(obx.field_count(), 7);
        assert_eq!(obx.sequence(), 1);
    }

    #[test]
    fn takes_separators_from_msh() {
        let m = parse("MSH#$*/%@#A#B#####X$Y#1#P#2.3\nPID#1##7$$$H$MR*8").expect("parses");
        assert_eq!(m.separators().component, '$');
        assert_eq!(m.separators().truncation, Some('@'));
        assert_eq!(m.get("PID-3-1").as_deref(), Some("7"));
        assert_eq!(m.get("PID-3(2)-1").as_deref(), Some("8"));
        assert_eq!(m.trigger_event(), "Y");
    }

    #[test]
    fn line_endings_and_framing() {
        let crlf = "\u{0b}MSH|^~\\&|A|B|||||ADT^A08|1||2.4\r\n\r\nPID|1\r\n\u{1c}\r";
        let m = parse(crlf).expect("parses");
        assert_eq!(m.segments().len(), 2);
    }

    #[test]
    fn broken_headers() {
        let err = |s: &str| parse(s).expect_err("fails").kind;
        assert_eq!(err(""), ParseErrorKind::Empty);
        assert_eq!(err("PID|1"), ParseErrorKind::NoMsh);
        assert!(matches!(
            err("MSH|^~|A"),
            ParseErrorKind::BadEncodingCharacters(_)
        ));
        assert!(matches!(
            err("MSH|^^\\&|A"),
            ParseErrorKind::BadEncodingCharacters(_)
        ));
        assert!(matches!(
            err("MSH|^~\\&|A|B|||||ADT^A01||P|2.5"),
            ParseErrorKind::MissingHeaderField(_)
        ));
        let e = parse("MSH|^~\\&|A|B|||||ADT^A01|1|P|2.5\rPID|1\rgarbage here").expect_err("x");
        assert_eq!(e.segment_index, 3);
        assert!(matches!(e.kind, ParseErrorKind::BadSegment { .. }));
    }

    #[test]
    fn escape_round_trip() {
        let s = Separators::default();
        let text = "a|b^c&d~e\\f\ng";
        assert_eq!(s.escape(text), "a\\F\\b\\S\\c\\T\\d\\R\\e\\E\\f\\.br\\g");
        assert_eq!(s.unescape(&s.escape(text)), text);
    }
}
