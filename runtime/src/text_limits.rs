//! The maxima of free text, in one place: what a person or a plugin may
//! write into a note, reason, name, title or FHIR string. Lengths are in
//! characters (Unicode scalar values), so a Vietnamese name with diacritics
//! gets the same room as an unaccented one. `docs/security.md` lists them.

/// A reviewer's note on an approval.
pub const NOTE: usize = 2_000;
/// A reason: a rejection, a revocation, a consultation request.
pub const REASON: usize = 2_000;
/// A person's or hospital's name, and each part of a FHIR `HumanName`.
pub const NAME: usize = 200;
/// A title: a person's professional title or specialty, a province.
pub const TITLE: usize = 200;
/// Any other FHIR string (an observation's text, a report's conclusion).
pub const FHIR_STRING: usize = 16_384;
/// A FHIR narrative (`text.div`, XHTML).
pub const FHIR_NARRATIVE: usize = 65_536;

// Older limits counted in bytes of UTF-8 (a Vietnamese letter is 2-3):
/// A notification's title (one line).
pub const NOTIFY_TITLE_BYTES: usize = 300;
/// A video room's purpose.
pub const ROOM_PURPOSE_BYTES: usize = 500;
/// A payment's texts: its purpose, payer and idempotency key.
pub const PAYMENT_TEXT_BYTES: usize = 256;

/// A text longer than its maximum.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{field}` is longer than {max} characters")]
pub struct TooLong {
    /// The field, as the caller named it (`note`, `Patient.name[0].family`).
    pub field: String,
    pub max: usize,
}

impl TooLong {
    /// The same refusal in Vietnamese.
    pub fn message_vi(&self) -> String {
        format!("`{}` dài quá {} ký tự", self.field, self.max)
    }
}

/// Refuse `value` when it has more than `max` characters.
pub fn check(field: &str, value: &str, max: usize) -> Result<(), TooLong> {
    // Bytes bound characters from above: most texts never need counting,
    // and a huge one is counted only up to `max + 1`.
    if value.len() <= max || value.chars().nth(max).is_none() {
        return Ok(());
    }
    Err(TooLong {
        field: field.to_owned(),
        max,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_characters_not_bytes() {
        // 200 Vietnamese letters are 400 bytes of UTF-8: still allowed.
        assert!(check("name", &"Đ".repeat(NAME), NAME).is_ok());
        let err = check("name", &"Đ".repeat(NAME + 1), NAME).expect_err("too long");
        assert_eq!(err.to_string(), "`name` is longer than 200 characters");
        assert_eq!(err.message_vi(), "`name` dài quá 200 ký tự");
        assert!(check("note", "", NOTE).is_ok());
    }
}
