//! A small CSV reader for the register's files (RFC 4180: quoted fields may
//! hold commas, quotes doubled and line breaks), with each record's line.

/// One record: the line it starts on (1 = the header) and its fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub line: usize,
    pub fields: Vec<String>,
}

/// Why a file is not CSV.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct CsvError {
    pub line: usize,
    pub message: String,
    /// The same in Vietnamese, for the console and the CLI.
    pub message_vi: String,
}

/// A file that is not UTF-8: where its first bad byte is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the file is not UTF-8 text: the first bad byte is on line {line} (byte {offset}); \
     save it as \"CSV UTF-8\""
)]
pub struct NotUtf8 {
    pub line: usize,
    /// From 0, in the file.
    pub offset: usize,
}

impl NotUtf8 {
    /// The same in Vietnamese.
    pub fn message_vi(&self) -> String {
        format!(
            "tệp không phải văn bản UTF-8: byte lỗi đầu tiên ở dòng {} (byte {}); \
             hãy lưu lại dưới dạng \"CSV UTF-8\"",
            self.line, self.offset
        )
    }
}

/// `bytes` as text, or the line of the first byte that is not UTF-8
/// (spreadsheets often save Vietnamese as Windows-1258).
pub fn decode_utf8(bytes: Vec<u8>) -> Result<String, NotUtf8> {
    String::from_utf8(bytes).map_err(|e| {
        let offset = e.utf8_error().valid_up_to();
        let before = e.as_bytes().get(..offset).unwrap_or_default();
        NotUtf8 {
            line: 1 + before.iter().filter(|&&b| b == b'\n').count(),
            offset,
        }
    })
}

/// The records of `text` (a leading UTF-8 BOM is skipped); blank lines are
/// skipped too.
pub fn parse(text: &str) -> Result<Vec<Record>, CsvError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut records = Vec::new();
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut line = 1;
    let mut start = 1;
    let mut quoted = false;
    // Whether the current field began with a quote (then only a quote, a
    // separator or the end of the record may follow its closing quote).
    let mut was_quoted = false;
    let mut chars = text.chars().peekable();
    let mut end_record = |fields: &mut Vec<String>, field: &mut String, start: usize| {
        fields.push(std::mem::take(field));
        let all_blank = fields.len() == 1 && fields[0].trim().is_empty();
        if !all_blank {
            records.push(Record {
                line: start,
                fields: std::mem::take(fields),
            });
        } else {
            fields.clear();
        }
    };
    while let Some(c) = chars.next() {
        if quoted {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => quoted = false,
                '\n' => {
                    line += 1;
                    field.push('\n');
                }
                c => field.push(c),
            }
            continue;
        }
        match c {
            '"' if field.is_empty() && !was_quoted => {
                quoted = true;
                was_quoted = true;
            }
            '"' => {
                return Err(CsvError {
                    line,
                    message: "a quote inside an unquoted field (quote the whole field and double the quote)".into(),
                    message_vi: "dấu nháy kép trong trường không đặt trong nháy (đặt cả trường trong nháy kép và viết dấu nháy hai lần)".into(),
                });
            }
            ',' => {
                fields.push(std::mem::take(&mut field));
                was_quoted = false;
            }
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' | '\r' => {
                end_record(&mut fields, &mut field, start);
                was_quoted = false;
                line += 1;
                start = line;
            }
            c if was_quoted => {
                return Err(CsvError {
                    line,
                    message: format!("`{c}` after a closing quote"),
                    message_vi: format!("`{c}` sau dấu nháy đóng"),
                });
            }
            c => field.push(c),
        }
    }
    if quoted {
        return Err(CsvError {
            line: start,
            message: "a quoted field is not closed".into(),
            message_vi: "trường trong nháy kép không được đóng".into(),
        });
    }
    end_record(&mut fields, &mut field, start);
    Ok(records)
}

/// `value` as a CSV field: quoted when it holds a separator, quote or line
/// break.
pub fn field(value: &str) -> String {
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_fields_bom_crlf_and_line_numbers() {
        let text = "\u{feff}a,b\r\n\"x, y\",\"say \"\"hi\"\"\"\r\n\r\n\"multi\nline\",2\n3,4";
        let r = parse(text).expect("csv");
        assert_eq!(r.len(), 4);
        assert_eq!(r[0].fields, ["a", "b"]);
        assert_eq!(r[1].fields, ["x, y", "say \"hi\""]);
        assert_eq!(r[1].line, 2);
        assert_eq!(r[2].fields, ["multi\nline", "2"]);
        assert_eq!(r[2].line, 4);
        assert_eq!(r[3].line, 6);
    }

    #[test]
    fn malformed_quotes_name_their_line() {
        assert_eq!(parse("a\nb\"c").unwrap_err().line, 2);
        assert_eq!(parse("a\n\"open").unwrap_err().line, 2);
        assert_eq!(parse("\"a\"b").unwrap_err().line, 1);
        assert_eq!(field("a,b"), "\"a,b\"");
    }

    #[test]
    fn a_file_that_is_not_utf8_names_the_line_of_its_first_bad_byte() {
        // "Thái" in Windows-1258 on line 4 (`á` is 0xE1 there), after a
        // quoted field over two lines: lines as an editor counts them.
        let mut bytes = b"a,b\nx,\"y\nz\"\nTh".to_vec();
        bytes.extend([0xE1, b'i']);
        let e = decode_utf8(bytes).expect_err("not UTF-8");
        assert_eq!((e.line, e.offset), (4, 14));
        assert!(e.to_string().contains("line 4"), "{e}");
        assert!(e.message_vi().contains("dòng 4"));
        assert_eq!(decode_utf8("Hưng Yên".into()).as_deref(), Ok("Hưng Yên"));
    }
}
