//! Gateways that collect a payment: the built-in sandbox (pages served by
//! the runtime) and a connector for the redirect + signed return + IPN
//! protocol of Vietnamese gateways (VNPAY 2.1.0 style).

use std::collections::BTreeMap;

use aws_lc_rs::hmac;
use serde::Deserialize;

/// Which gateway collects a hospital's payments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum GatewayKind {
    /// Built-in pages that pay, cancel or fail: the embedded default.
    #[default]
    Sandbox,
    /// A VNPAY-compatible gateway.
    Vnpay,
}

impl GatewayKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sandbox => "sandbox",
            Self::Vnpay => "vnpay",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "sandbox" => Some(Self::Sandbox),
            "vnpay" => Some(Self::Vnpay),
            _ => None,
        }
    }
}

/// The merchant's terminal at a VNPAY-style gateway (activation config).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct VnpayTerminal {
    /// `vnp_TmnCode`.
    pub tmn_code: String,
    /// The gateway's payment page.
    pub pay_url: String,
    /// Where the gateway sends the payer back: this runtime's
    /// `/api/v1/payments/vnpay/return`, as reachable from the internet.
    pub return_url: String,
}

/// Why a sandbox payer ticket was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TicketError {
    #[error("the sandbox payment page needs the payer's ticket from the checkout link")]
    Missing,
    #[error("the payer's ticket is malformed or was not issued for this payment")]
    Invalid,
    #[error("the payer's ticket has expired; check out again")]
    Expired,
}

/// Short-lived tickets, HMAC-signed with a key derived from the master key,
/// that carry the payer's session to the sandbox page: issued at checkout
/// to the authenticated caller, bound to one intent. Development only.
#[derive(Clone)]
pub struct SandboxTickets {
    key: hmac::Key,
}

impl std::fmt::Debug for SandboxTickets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SandboxTickets")
    }
}

impl SandboxTickets {
    pub fn new(secret: &[u8; 32]) -> Self {
        Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
        }
    }

    fn mac(&self, intent: &str, expires: i64, subject: &str) -> hmac::Tag {
        // Length-prefixed fields: no two (intent, subject) pairs sign alike.
        let data = format!("{}:{intent}|{expires}|{subject}", intent.len());
        hmac::sign(&self.key, data.as_bytes())
    }

    /// `{expires}.{subject, base64url}.{mac, base64url}` for `subject`
    /// acting on `intent` until `expires` (ms since the epoch).
    pub fn issue(&self, intent: &str, subject: &str, expires: i64) -> String {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        format!(
            "{expires}.{}.{}",
            b64.encode(subject),
            b64.encode(self.mac(intent, expires, subject).as_ref())
        )
    }

    /// The subject the ticket was issued to, when it is valid for `intent`
    /// at `now`.
    pub fn check(&self, ticket: &str, intent: &str, now: i64) -> Result<String, TicketError> {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let mut parts = ticket.split('.');
        let (Some(expires), Some(subject), Some(mac), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TicketError::Invalid);
        };
        let expires: i64 = expires.parse().map_err(|_| TicketError::Invalid)?;
        let subject = b64
            .decode(subject)
            .ok()
            .and_then(|s| String::from_utf8(s).ok())
            .ok_or(TicketError::Invalid)?;
        let mac = b64.decode(mac).map_err(|_| TicketError::Invalid)?;
        let data = format!("{}:{intent}|{expires}|{subject}", intent.len());
        hmac::verify(&self.key, data.as_bytes(), &mac).map_err(|_| TicketError::Invalid)?;
        if now >= expires {
            return Err(TicketError::Expired);
        }
        Ok(subject)
    }
}

/// Longest `vnp_OrderInfo` the gateway takes.
pub const VNPAY_ORDER_INFO_MAX: usize = 255;

/// Vietnamese letters with diacritics, by the base letter they reduce to.
const VIETNAMESE: [(char, &str); 14] = [
    ('a', "àáảãạăằắẳẵặâầấẩẫậ"),
    ('A', "ÀÁẢÃẠĂẰẮẲẴẶÂẦẤẨẪẬ"),
    ('e', "èéẻẽẹêềếểễệ"),
    ('E', "ÈÉẺẼẸÊỀẾỂỄỆ"),
    ('i', "ìíỉĩị"),
    ('I', "ÌÍỈĨỊ"),
    ('o', "òóỏõọôồốổỗộơờớởỡợ"),
    ('O', "ÒÓỎÕỌÔỒỐỔỖỘƠỜỚỞỠỢ"),
    ('u', "ùúủũụưừứửữự"),
    ('U', "ÙÚỦŨỤƯỪỨỬỮỰ"),
    ('y', "ỳýỷỹỵ"),
    ('Y', "ỲÝỶỸỴ"),
    ('d', "đ"),
    ('D', "Đ"),
];

/// The order description as the gateway wants it: Vietnamese without
/// diacritics (đ→d), only ASCII letters, digits, space and `-` `.` `_`
/// (the characters every sample implementation percent-encodes alike);
/// anything else becomes a space, runs of spaces collapse, at most
/// [`VNPAY_ORDER_INFO_MAX`] characters. Never empty.
pub fn vnpay_order_info(purpose: &str) -> String {
    let mut out = String::with_capacity(purpose.len());
    for c in purpose.chars() {
        let c = VIETNAMESE
            .iter()
            .find(|(_, variants)| variants.contains(c))
            .map_or(c, |(base, _)| *base);
        let c = if c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_') {
            c
        } else {
            ' '
        };
        if c == ' ' && (out.is_empty() || out.ends_with(' ')) {
            continue;
        }
        if out.len() >= VNPAY_ORDER_INFO_MAX {
            break;
        }
        out.push(c);
    }
    let out = out.trim_end();
    if out.is_empty() {
        "Thanh toan".to_owned()
    } else {
        out.to_owned()
    }
}

/// The gateway's amount unit: đồng × 100.
pub const VNPAY_UNITS_PER_DONG: i64 = 100;

/// The string that is signed: parameters (except the hash fields) sorted by
/// name, names and values form-URL-encoded, joined as `k=v&k=v`.
pub fn vnpay_sign_data(params: &BTreeMap<String, String>) -> String {
    params
        .iter()
        .filter(|(k, v)| {
            k.as_str() != "vnp_SecureHash" && k.as_str() != "vnp_SecureHashType" && !v.is_empty()
        })
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn encode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// HMAC-SHA512 of `data` under `secret`, lower-case hex.
pub fn hmac_sha512_hex(secret: &[u8], data: &str) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA512, secret);
    hex::encode(hmac::sign(&key, data.as_bytes()).as_ref())
}

/// Whether `params` carry a valid `vnp_SecureHash` under `secret`
/// (compared in constant time).
pub fn vnpay_verify(params: &BTreeMap<String, String>, secret: &[u8]) -> bool {
    let Some(given) = params.get("vnp_SecureHash") else {
        return false;
    };
    let Ok(given) = hex::decode(given) else {
        return false;
    };
    let key = hmac::Key::new(hmac::HMAC_SHA512, secret);
    hmac::verify(&key, vnpay_sign_data(params).as_bytes(), &given).is_ok()
}

/// The payment URL the payer is redirected to.
pub fn vnpay_payment_url(
    terminal: &VnpayTerminal,
    secret: &[u8],
    intent_id: &str,
    amount_dong: i64,
    order_info: &str,
    created_millis: i64,
) -> Option<String> {
    let amount = amount_dong.checked_mul(VNPAY_UNITS_PER_DONG)?;
    let mut params = BTreeMap::new();
    for (k, v) in [
        ("vnp_Version", "2.1.0".to_owned()),
        ("vnp_Command", "pay".to_owned()),
        ("vnp_TmnCode", terminal.tmn_code.clone()),
        ("vnp_Amount", amount.to_string()),
        ("vnp_CurrCode", "VND".to_owned()),
        ("vnp_TxnRef", intent_id.to_owned()),
        ("vnp_OrderInfo", vnpay_order_info(order_info)),
        ("vnp_OrderType", "other".to_owned()),
        ("vnp_Locale", "vn".to_owned()),
        ("vnp_ReturnUrl", terminal.return_url.clone()),
        ("vnp_IpAddr", "127.0.0.1".to_owned()),
        ("vnp_CreateDate", vietnam_timestamp(created_millis)),
    ] {
        params.insert(k.to_owned(), v);
    }
    let data = vnpay_sign_data(&params);
    let hash = hmac_sha512_hex(secret, &data);
    Some(format!("{}?{data}&vnp_SecureHash={hash}", terminal.pay_url))
}

/// `yyyyMMddHHmmss` in Vietnam's time (UTC+7), as the protocol wants.
pub fn vietnam_timestamp(millis: i64) -> String {
    let iso = crate::audit::rfc3339(millis.saturating_add(7 * 3_600_000));
    iso.chars().filter(char::is_ascii_digit).take(14).collect()
}

/// The protocol's answer to an IPN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpnAnswer {
    Confirmed,
    OrderNotFound,
    AlreadyConfirmed,
    InvalidAmount,
    InvalidSignature,
    Unknown,
}

impl IpnAnswer {
    /// `{"RspCode": .., "Message": ..}` as VNPAY expects.
    pub fn body(self) -> serde_json::Value {
        let (code, message) = match self {
            Self::Confirmed => ("00", "Confirm Success"),
            Self::OrderNotFound => ("01", "Order not found"),
            Self::AlreadyConfirmed => ("02", "Order already confirmed"),
            Self::InvalidAmount => ("04", "Invalid amount"),
            Self::InvalidSignature => ("97", "Invalid signature"),
            Self::Unknown => ("99", "Unknown error"),
        };
        serde_json::json!({ "RspCode": code, "Message": message })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_sorted_encoded_parameters() {
        let mut p = BTreeMap::new();
        p.insert("vnp_OrderInfo".to_owned(), "Thanh toan don 1".to_owned());
        p.insert("vnp_Amount".to_owned(), "1000000".to_owned());
        p.insert("vnp_SecureHash".to_owned(), "x".to_owned());
        assert_eq!(
            vnpay_sign_data(&p),
            "vnp_Amount=1000000&vnp_OrderInfo=Thanh+toan+don+1"
        );
        let hash = hmac_sha512_hex(b"secret", &vnpay_sign_data(&p));
        p.insert("vnp_SecureHash".to_owned(), hash);
        assert!(vnpay_verify(&p, b"secret"));
        assert!(!vnpay_verify(&p, b"other"));
        p.insert("vnp_Amount".to_owned(), "1000001".to_owned());
        assert!(!vnpay_verify(&p, b"secret"));
    }

    #[test]
    fn order_info_is_reduced_to_the_gateways_characters() {
        assert_eq!(vnpay_order_info("Đơn thuốc 7"), "Don thuoc 7");
        assert_eq!(
            vnpay_order_info("Khám từ xa: BS. Nguyễn Thị Ánh (lần 2), 150.000đ!"),
            "Kham tu xa BS. Nguyen Thi Anh lan 2 150.000d"
        );
        assert_eq!(
            vnpay_order_info("ỨNG DỤNG ĐẶT THUỐC ỶỸỴ"),
            "UNG DUNG DAT THUOC YYY"
        );
        assert_eq!(vnpay_order_info("  ?&=%+  "), "Thanh toan");
        let long = vnpay_order_info(&"ế".repeat(1000));
        assert_eq!(long, "e".repeat(VNPAY_ORDER_INFO_MAX));
        // What is left encodes the same in every implementation.
        let info = vnpay_order_info("Thuốc hạ sốt #3 & vitamin C/D; 2×");
        assert!(
            info.chars()
                .all(|c| c.is_ascii_alphanumeric() || " -._".contains(c)),
            "{info}"
        );
    }

    #[test]
    fn sandbox_tickets_are_bound_to_intent_and_time() {
        let t = SandboxTickets::new(&[7; 32]);
        let ticket = t.issue("intent-1", "citizen-9", 2_000);
        assert_eq!(t.check(&ticket, "intent-1", 1_999), Ok("citizen-9".into()));
        assert_eq!(
            t.check(&ticket, "intent-1", 2_000),
            Err(TicketError::Expired)
        );
        assert_eq!(
            t.check(&ticket, "intent-2", 1_000),
            Err(TicketError::Invalid)
        );
        assert_eq!(
            SandboxTickets::new(&[8; 32]).check(&ticket, "intent-1", 1_000),
            Err(TicketError::Invalid)
        );
        let later = ticket.replacen("2000", "9999", 1);
        assert_eq!(
            t.check(&later, "intent-1", 1_000),
            Err(TicketError::Invalid)
        );
        assert_eq!(t.check("x.y", "intent-1", 1_000), Err(TicketError::Invalid));
    }

    #[test]
    fn timestamps_in_vietnam_time() {
        // 2026-11-24T19:00:00Z is 2026-11-25 02:00 in Hà Nội.
        assert_eq!(vietnam_timestamp(1_795_546_800_000), "20261125020000");
    }
}
