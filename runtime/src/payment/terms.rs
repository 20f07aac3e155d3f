//! Payment terms: what a hospital's activation of a module sets (gateway,
//! fee, hospital share, maximum), read through [`ActivationSettings`] so
//! payment names no layer above it.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::Value;

use super::gateway::{GatewayKind, VnpayTerminal};
use super::{NO_GATEWAY, PLATFORM_MAX_AMOUNT, PaymentError, Payments};

/// A hospital activation's payment settings (`payment` in its config, the
/// hash secret in its secrets).
#[derive(Debug, Clone, Deserialize, Default)]
pub struct PaymentTerms {
    #[serde(default)]
    pub gateway: GatewayKind,
    /// The platform's fee, in basis points of each payment.
    #[serde(default)]
    pub platform_fee_bps: i64,
    /// The hospital's share of a vendor's sale, in basis points.
    #[serde(default)]
    pub hospital_share_bps: i64,
    /// Largest intent, in đồng (at most [`PLATFORM_MAX_AMOUNT`]).
    pub max_amount: Option<i64>,
    pub vnpay: Option<VnpayTerminal>,
    /// From the sealed secrets: `vnpay_hash_secret`.
    #[serde(skip)]
    pub hash_secret: Option<String>,
}

impl PaymentTerms {
    /// Terms from an activation's config and opened secrets.
    pub fn from_activation(config: &Value, secrets: &Value) -> Result<Self, PaymentError> {
        let mut terms: Self = match config.get("payment") {
            Some(v) => serde_json::from_value(v.clone())
                .map_err(|e| PaymentError::Config(format!("`payment` configuration: {e}")))?,
            None => Self::default(),
        };
        terms.hash_secret = secrets
            .get("vnpay_hash_secret")
            .and_then(Value::as_str)
            .map(str::to_owned);
        terms.check()?;
        Ok(terms)
    }

    fn check(&self) -> Result<(), PaymentError> {
        let bps_ok = |b: i64| (0..=10_000).contains(&b);
        if !bps_ok(self.platform_fee_bps)
            || !bps_ok(self.hospital_share_bps)
            || self.platform_fee_bps + self.hospital_share_bps > 10_000
        {
            return Err(PaymentError::Config(
                "fee and hospital share must be 0 to 10000 basis points and together at most 10000"
                    .into(),
            ));
        }
        if self.gateway == GatewayKind::Vnpay
            && (self.vnpay.is_none() || self.hash_secret.as_deref().is_none_or(str::is_empty))
        {
            return Err(PaymentError::Config(
                "the vnpay gateway needs `payment.vnpay` and the secret `vnpay_hash_secret`".into(),
            ));
        }
        Ok(())
    }

    /// The largest amount an intent may have.
    pub fn max_amount(&self) -> i64 {
        self.max_amount
            .unwrap_or(PLATFORM_MAX_AMOUNT)
            .clamp(1, PLATFORM_MAX_AMOUNT)
    }
}

/// The configuration and opened secrets of a module's activation at a
/// hospital (`None`: not activated there). Governance keeps them; payment
/// reads them through this trait so it names no layer above it.
pub trait ActivationSettings: Send + Sync {
    fn activation_settings<'a>(
        &'a self,
        hospital: &'a str,
        plugin: &'a str,
    ) -> futures::future::BoxFuture<'a, Result<Option<(Value, Value)>, String>>;
}

/// Where payment terms come from.
#[derive(Clone)]
pub enum TermsSource {
    /// Each hospital activation's config and secrets; unactivated
    /// (development) plugins get the sandbox with no fee.
    Activations(Arc<dyn ActivationSettings>),
    /// The same terms everywhere (tests).
    Fixed(Arc<PaymentTerms>),
}

impl Payments {
    /// The payment terms of `plugin` at `hospital`. From governance, the
    /// sandbox is refused unless this node offers it (fail closed).
    pub async fn terms(&self, hospital: &str, plugin: &str) -> Result<PaymentTerms, PaymentError> {
        match &self.terms {
            TermsSource::Fixed(t) => Ok((**t).clone()),
            TermsSource::Activations(g) => {
                let terms = match g
                    .activation_settings(hospital, plugin)
                    .await
                    .map_err(PaymentError::Config)?
                {
                    Some((config, secrets)) => PaymentTerms::from_activation(&config, &secrets)?,
                    None => PaymentTerms::default(),
                };
                if terms.gateway == GatewayKind::Sandbox && self.sandbox.is_none() {
                    return Err(PaymentError::Config(NO_GATEWAY.into()));
                }
                Ok(terms)
            }
        }
    }
}
