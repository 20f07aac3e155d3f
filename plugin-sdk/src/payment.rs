//! Payments in VND (WIT interface `payment`; list `"payment"` in the manifest).
//!
//! Amounts are integer đồng (`i64`). A payment goes to the calling hospital or to the
//! plugin's vendor ([`Merchant`]), through the gateway the hospital chose when it activated
//! the plugin; the host books every movement in the platform's double-entry ledger.
//!
//! ```no_run
//! use vtelehealth_plugin_sdk::payment::{self, Merchant};
//! # fn run() -> Result<(), vtelehealth_plugin_sdk::Error> {
//! let intent = payment::create(120_000, "citizen-001", Merchant::Vendor, "Đơn thuốc 42", "order-42")?;
//! let url = payment::checkout(&intent.id, "/orders/42")?; // redirect the browser here
//! # let _ = url;
//! for event in payment::settlement_events(50)? {
//!     // Act on each event id once (e.g. guard with kv::compare_and_swap), then:
//!     payment::acknowledge(&event.id)?;
//! }
//! # Ok(()) }
//! ```
//!
//! Refusals convert to [`Error`] with `?`: `invalid` → 400, `denied` → 403, `not-found` →
//! 404, `conflict` / `illegal-transition` / `exceeds-captured` → 409, `unavailable` → 503.

use crate::Error;
use crate::bindings::vtelehealth::platform::payment as raw;

pub use raw::{Intent, IntentState, Merchant, PaymentError, SettlementEvent};

impl From<PaymentError> for Error {
    fn from(e: PaymentError) -> Self {
        match e {
            PaymentError::Denied(m) => Self::Forbidden(m),
            PaymentError::Invalid(m) => Self::BadRequest(m),
            PaymentError::NotFound(m) => Self::NotFound(m),
            PaymentError::Conflict(m)
            | PaymentError::IllegalTransition(m)
            | PaymentError::ExceedsCaptured(m) => Self::Conflict(m),
            PaymentError::Unavailable(m) => Self::Unavailable(m),
        }
    }
}

/// Create an intent of `amount` đồng (or get the one created before with the same
/// `idempotency_key` and the same parameters).
pub fn create(
    amount: i64,
    payer: &str,
    merchant: Merchant,
    purpose: &str,
    idempotency_key: &str,
) -> Result<Intent, PaymentError> {
    raw::create(&raw::NewIntent {
        amount,
        currency: "VND".into(),
        payer: payer.into(),
        merchant,
        purpose: purpose.into(),
        idempotency_key: idempotency_key.into(),
    })
}

/// The intent `id` of this hospital and plugin.
pub fn get(id: &str) -> Result<Intent, PaymentError> {
    raw::get(id)
}

/// The gateway URL to send the payer to; after paying they come back to `return_path` (a
/// path of this plugin) with `?payment={id}`.
pub fn checkout(id: &str, return_path: &str) -> Result<String, PaymentError> {
    raw::checkout(id, return_path)
}

/// Cancel an intent that is not paid yet.
pub fn cancel(id: &str) -> Result<Intent, PaymentError> {
    raw::cancel(id)
}

/// Refund `amount` đồng of a paid intent; never more than captured. The same
/// `idempotency_key` repeats the first refund's result.
pub fn refund(id: &str, amount: i64, idempotency_key: &str) -> Result<Intent, PaymentError> {
    raw::refund(id, amount, idempotency_key)
}

/// Settlement events not yet acknowledged, oldest first. An event comes back until
/// [`acknowledge`]d, so handle each event id once.
pub fn settlement_events(limit: u32) -> Result<Vec<SettlementEvent>, PaymentError> {
    raw::settlement_events(limit)
}

/// Mark an event handled; `true` the first time.
pub fn acknowledge(event_id: &str) -> Result<bool, PaymentError> {
    raw::acknowledge(event_id)
}
