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
        ("vnp_OrderInfo", order_info.to_owned()),
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
    let iso = crate::governance::audit::rfc3339(millis.saturating_add(7 * 3_600_000));
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
    fn timestamps_in_vietnam_time() {
        // 2026-11-24T19:00:00Z is 2026-11-25 02:00 in Hà Nội.
        assert_eq!(vietnam_timestamp(1_795_546_800_000), "20261125020000");
    }
}
