//! Query strings and form bodies (`application/x-www-form-urlencoded`): the
//! runtime's one decoder of them, used by FHIR search, the records
//! capability, conditional updates and the OIDC endpoints.

/// Decode one component: `+` is a space, `%XX` a byte; a malformed escape
/// is kept as it is and invalid UTF-8 becomes U+FFFD, so decoding never
/// fails (the caller validates what it expects).
pub fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = |c: u8| (c as char).to_digit(16);
                match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The decoded `name=value` pairs of a query string, in order; empty
/// segments are skipped and a name without `=` has an empty value.
pub fn pairs(raw: &str) -> Vec<(String, String)> {
    raw.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(p), String::new()),
        })
        .collect()
}

/// Percent-encode a component: everything but RFC 3986's unreserved
/// characters.
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_components_round_trip() {
        assert_eq!(
            decode("https%3A%2F%2Fvneid.gov.vn%2Fcccd%7C001"),
            "https://vneid.gov.vn/cccd|001"
        );
        assert_eq!(decode("a+b%zz%4"), "a b%zz%4");
        // A sign is no hex digit (`from_str_radix` would take `+1`).
        assert_eq!(decode("%+1"), "% 1");
        let s = "https://vneid.gov.vn/cccd|001 x";
        assert_eq!(decode(&encode(s)), s);
        assert_eq!(
            pairs("a=1&&b&c=x%3Dy"),
            vec![
                ("a".into(), "1".into()),
                ("b".into(), String::new()),
                ("c".into(), "x=y".into())
            ]
        );
    }
}
