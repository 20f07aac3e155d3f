//! `payment`: payment intents in VND for the calling (hospital, plugin)
//! pair; the money goes to the hospital or the plugin's vendor, never
//! anywhere the plugin names. See [`crate::payment`] for the ledger.

use std::sync::Arc;

use tracing::instrument;

use super::CallState;
use crate::bindings::vtelehealth::platform::payment::{
    self as wit, Host, IntentState as WitState, Merchant, PaymentError as WitPaymentError,
};
use crate::capabilities::Capability;
use crate::payment::{IntentState, MerchantKind, NewIntent, PaymentError, PaymentIntent, Payments};

impl From<PaymentError> for WitPaymentError {
    fn from(e: PaymentError) -> Self {
        let message = e.to_string();
        match e {
            PaymentError::Invalid(_) => Self::Invalid(message),
            PaymentError::Conflict(_) => Self::Conflict(message),
            PaymentError::NotFound(_) => Self::NotFound(message),
            PaymentError::IllegalTransition { .. } => Self::IllegalTransition(message),
            PaymentError::ExceedsCaptured { .. } => Self::ExceedsCaptured(message),
            PaymentError::Config(_) => Self::Unavailable(message),
            PaymentError::Ledger(_) | PaymentError::Database(_) | PaymentError::Audit(_) => {
                tracing::error!(error = %message, "payment capability failed");
                Self::Unavailable("payment storage unavailable".into())
            }
        }
    }
}

fn state(s: IntentState) -> WitState {
    match s {
        IntentState::Created => WitState::Created,
        IntentState::Pending => WitState::Pending,
        IntentState::Succeeded => WitState::Succeeded,
        IntentState::Failed => WitState::Failed,
        IntentState::Cancelled => WitState::Cancelled,
        IntentState::PartiallyRefunded => WitState::PartiallyRefunded,
        IntentState::Refunded => WitState::Refunded,
    }
}

fn to_wit(i: PaymentIntent) -> wit::Intent {
    wit::Intent {
        merchant: if i.merchant_kind == "vendor" {
            Merchant::Vendor
        } else {
            Merchant::Hospital
        },
        state: state(i.state),
        id: i.id,
        amount: i.amount,
        currency: i.currency,
        payer: i.payer,
        purpose: i.purpose,
        captured: i.captured,
        refunded: i.refunded,
    }
}

type Answer<T> = wasmtime::Result<Result<T, WitPaymentError>>;

impl CallState {
    /// The payment service, if the capability was granted and the node has one.
    fn payments(&self, needs_caller: bool) -> Result<Arc<Payments>, WitPaymentError> {
        self.require(Capability::Payment)
            .map_err(|e| WitPaymentError::Denied(e.to_string()))?;
        if needs_caller && self.ctx.principal.is_none() {
            return Err(WitPaymentError::Denied(
                "payments need an authenticated caller; the request has no bearer token".into(),
            ));
        }
        self.ctx
            .directory
            .payments()
            .cloned()
            .ok_or_else(|| WitPaymentError::Unavailable("this node offers no payments".into()))
    }

    /// The caller's subject, for the audit trail.
    fn actor(&self) -> String {
        self.ctx.principal.as_ref().map_or_else(
            || format!("plugin:{}", self.ctx.plugin_id),
            |p| self.ctx.directory.person(p).into_string(),
        )
    }

    fn pair(&self) -> (String, String) {
        (self.ctx.hospital.id.clone(), self.ctx.plugin_id.clone())
    }
}

impl Host for CallState {
    #[instrument(level = "debug", skip_all, fields(plugin = %self.ctx.plugin_id, hospital = %self.ctx.hospital.id, amount = req.amount))]
    async fn create(&mut self, req: wit::NewIntent) -> Answer<wit::Intent> {
        let p = match self.payments(true) {
            Ok(p) => p,
            Err(e) => return Ok(Err(e)),
        };
        let (hospital, plugin) = self.pair();
        let new = NewIntent {
            amount: req.amount,
            currency: req.currency,
            payer: req.payer,
            merchant: match req.merchant {
                Merchant::Hospital => MerchantKind::Hospital,
                Merchant::Vendor => MerchantKind::Vendor,
            },
            purpose: req.purpose,
            idempotency_key: req.idempotency_key,
        };
        Ok(p.create(&hospital, &plugin, &new)
            .await
            .map(to_wit)
            .map_err(Into::into))
    }

    #[instrument(level = "debug", skip_all, fields(plugin = %self.ctx.plugin_id, hospital = %self.ctx.hospital.id))]
    async fn get(&mut self, id: String) -> Answer<wit::Intent> {
        let p = match self.payments(false) {
            Ok(p) => p,
            Err(e) => return Ok(Err(e)),
        };
        let (hospital, plugin) = self.pair();
        Ok(p.get_scoped(&hospital, &plugin, &id)
            .await
            .map(to_wit)
            .map_err(Into::into))
    }

    #[instrument(level = "debug", skip_all, fields(plugin = %self.ctx.plugin_id, hospital = %self.ctx.hospital.id))]
    async fn checkout(&mut self, id: String, return_path: String) -> Answer<String> {
        let p = match self.payments(true) {
            Ok(p) => p,
            Err(e) => return Ok(Err(e)),
        };
        let (hospital, plugin) = self.pair();
        // The sandbox's link carries the caller's session (a ticket).
        let payer = self
            .ctx
            .principal
            .as_ref()
            .map(|p| self.ctx.directory.person(p).into_string());
        Ok(
            p.checkout_as(&hospital, &plugin, &id, &return_path, payer.as_deref())
                .await
                .map_err(Into::into),
        )
    }

    #[instrument(level = "debug", skip_all, fields(plugin = %self.ctx.plugin_id, hospital = %self.ctx.hospital.id))]
    async fn cancel(&mut self, id: String) -> Answer<wit::Intent> {
        let p = match self.payments(true) {
            Ok(p) => p,
            Err(e) => return Ok(Err(e)),
        };
        let (hospital, plugin) = self.pair();
        if let Err(e) = p.get_scoped(&hospital, &plugin, &id).await {
            return Ok(Err(e.into()));
        }
        Ok(p.abandon(&self.actor(), &id, IntentState::Cancelled)
            .await
            .map(to_wit)
            .map_err(Into::into))
    }

    #[instrument(level = "debug", skip_all, fields(plugin = %self.ctx.plugin_id, hospital = %self.ctx.hospital.id, amount))]
    async fn refund(
        &mut self,
        id: String,
        amount: i64,
        idempotency_key: String,
    ) -> Answer<wit::Intent> {
        let p = match self.payments(true) {
            Ok(p) => p,
            Err(e) => return Ok(Err(e)),
        };
        let (hospital, plugin) = self.pair();
        Ok(p.refund(
            &self.actor(),
            &hospital,
            &plugin,
            &id,
            amount,
            &idempotency_key,
        )
        .await
        .map(to_wit)
        .map_err(Into::into))
    }

    #[instrument(level = "debug", skip_all, fields(plugin = %self.ctx.plugin_id, hospital = %self.ctx.hospital.id))]
    async fn settlement_events(&mut self, limit: u32) -> Answer<Vec<wit::SettlementEvent>> {
        let p = match self.payments(false) {
            Ok(p) => p,
            Err(e) => return Ok(Err(e)),
        };
        let (hospital, plugin) = self.pair();
        Ok(p.pending_events(&hospital, &plugin, limit)
            .await
            .map(|events| {
                events
                    .into_iter()
                    .map(|e| wit::SettlementEvent {
                        id: e.event_id,
                        kind: e.kind,
                        intent_id: e.intent_id,
                        payload: e.payload,
                        attempts: u32::try_from(e.attempts).unwrap_or(u32::MAX),
                    })
                    .collect()
            })
            .map_err(Into::into))
    }

    #[instrument(level = "debug", skip_all, fields(plugin = %self.ctx.plugin_id, hospital = %self.ctx.hospital.id))]
    async fn acknowledge(&mut self, event_id: String) -> Answer<bool> {
        let p = match self.payments(false) {
            Ok(p) => p,
            Err(e) => return Ok(Err(e)),
        };
        let (hospital, plugin) = self.pair();
        Ok(p.acknowledge(&hospital, &plugin, &event_id)
            .await
            .map_err(Into::into))
    }
}
