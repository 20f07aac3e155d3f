//! The gateway's notifications: a VNPAY-style IPN and the payer's return,
//! each verified before anything is settled.

use super::*;

impl Payments {
    /// Handle a VNPAY-style IPN: verify, then settle at most once.
    pub async fn vnpay_ipn(&self, params: &BTreeMap<String, String>) -> IpnAnswer {
        match self.vnpay_ipn_inner(params).await {
            Ok(answer) => answer,
            Err(e) => {
                tracing::error!(error = %e, "IPN handling failed");
                IpnAnswer::Unknown
            }
        }
    }

    async fn vnpay_ipn_inner(
        &self,
        params: &BTreeMap<String, String>,
    ) -> Result<IpnAnswer, PaymentError> {
        let Some(id) = params.get("vnp_TxnRef") else {
            return Ok(IpnAnswer::OrderNotFound);
        };
        let row = match self.load(id).await {
            Ok(r) => r,
            Err(PaymentError::NotFound(_)) => return Ok(IpnAnswer::OrderNotFound),
            Err(e) => return Err(e),
        };
        let terms = self
            .terms(&row.intent.hospital_id, &row.intent.plugin_id)
            .await?;
        let Some(secret) = terms
            .hash_secret
            .as_deref()
            .filter(|_| row.intent.gateway == "vnpay")
        else {
            return Ok(IpnAnswer::InvalidSignature);
        };
        if !gateway::vnpay_verify(params, secret.as_bytes()) {
            return Ok(IpnAnswer::InvalidSignature);
        }
        // A validly signed notice for another terminal is not about this
        // order, even if the secret is shared (answered as the protocol's
        // "order not found").
        if !terminal_matches(&terms, params) {
            tracing::warn!(intent = %id, tmn_code = ?params.get("vnp_TmnCode"),
                "IPN for another merchant code refused");
            return Ok(IpnAnswer::OrderNotFound);
        }
        let paid = params
            .get("vnp_Amount")
            .and_then(|a| a.parse::<i64>().ok())
            .and_then(|a| (a % gateway::VNPAY_UNITS_PER_DONG == 0).then_some(a / 100));
        if paid != Some(row.intent.amount) {
            return Ok(IpnAnswer::InvalidAmount);
        }
        if row.intent.state != IntentState::Pending {
            return Ok(IpnAnswer::AlreadyConfirmed);
        }
        let ok = params.get("vnp_ResponseCode").map(String::as_str) == Some("00")
            && params.get("vnp_TransactionStatus").map(String::as_str) == Some("00");
        let gateway_ref = params.get("vnp_TransactionNo").cloned().unwrap_or_default();
        let result = if ok {
            self.succeed("gateway:vnpay", id, &gateway_ref).await
        } else {
            self.abandon("gateway:vnpay", id, IntentState::Failed).await
        };
        match result {
            Ok(_) => Ok(IpnAnswer::Confirmed),
            // Lost a race with another IPN for the same order.
            Err(PaymentError::IllegalTransition { .. }) => Ok(IpnAnswer::AlreadyConfirmed),
            Err(e) => Err(e),
        }
    }

    /// Verify a VNPAY-style return (the payer's browser): the intent, or
    /// `None` when the signature or amount does not match.
    pub async fn vnpay_return(
        &self,
        params: &BTreeMap<String, String>,
    ) -> Result<Option<PaymentIntent>, PaymentError> {
        let Some(id) = params.get("vnp_TxnRef") else {
            return Ok(None);
        };
        let row = match self.load(id).await {
            Ok(r) => r,
            Err(PaymentError::NotFound(_)) => return Ok(None),
            Err(e) => return Err(e),
        };
        let terms = self
            .terms(&row.intent.hospital_id, &row.intent.plugin_id)
            .await?;
        let verified = terms
            .hash_secret
            .as_deref()
            .is_some_and(|s| gateway::vnpay_verify(params, s.as_bytes()));
        let amount_ok = params.get("vnp_Amount").and_then(|a| a.parse::<i64>().ok())
            == row.intent.amount.checked_mul(gateway::VNPAY_UNITS_PER_DONG);
        Ok((verified && amount_ok && terminal_matches(&terms, params)).then_some(row.intent))
    }
}

/// Whether a gateway's notice names the activation's own terminal.
fn terminal_matches(terms: &PaymentTerms, params: &BTreeMap<String, String>) -> bool {
    terms
        .vnpay
        .as_ref()
        .is_some_and(|t| params.get("vnp_TmnCode") == Some(&t.tmn_code))
}
