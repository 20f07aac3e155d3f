//! What the server-rendered pages (login, invitation, sandbox payment)
//! share: text made safe for HTML.

/// `s` with the five characters that matter in HTML text and quoted
/// attributes replaced by their entities.
pub(crate) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::escape;

    #[test]
    fn markup_and_quotes_become_entities() {
        assert_eq!(
            escape("<a href='x'>\"Đ&B\"</a>"),
            "&lt;a href=&#39;x&#39;&gt;&quot;Đ&amp;B&quot;&lt;/a&gt;"
        );
    }
}
