//! Expiry: pending intents past their deadline are cancelled by a sweep,
//! so the payer's clearing account never holds money for a dead checkout.

use std::sync::Arc;

use super::{IntentState, PaymentError, Payments};
use crate::time::now_millis;

impl Payments {
    /// Sweep expired pending intents every `every` while the service lives.
    pub fn spawn_expiry(
        self: &Arc<Self>,
        every: std::time::Duration,
    ) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(p) = weak.upgrade() else { break };
                if let Err(e) = p.expire_due().await {
                    tracing::warn!(error = %e, "expiring pending payments failed");
                }
            }
        })
    }

    /// Cancel every pending intent past its deadline; returns how many.
    pub async fn expire_due(&self) -> Result<usize, PaymentError> {
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM payment_intents WHERE state = 'pending' AND expires_at < $1 LIMIT 100",
        )
        .bind(now_millis())
        .fetch_all(&self.db.pool)
        .await?;
        let mut n = 0;
        for id in ids {
            // A racing IPN may have settled it meanwhile: that is fine.
            if self
                .abandon("system:payment-expiry", &id, IntentState::Cancelled)
                .await
                .is_ok()
            {
                n += 1;
            }
        }
        Ok(n)
    }
}
