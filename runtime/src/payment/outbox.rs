//! The settlement outbox: events written in the same transaction as the
//! ledger movement, handed to the plugin until it acknowledges them
//! (at least once; the event id makes it exactly once).

use serde::Serialize;
use serde_json::{Value, json};
use sqlx::Row;

use super::{PaymentError, PaymentIntent, Payments};
use crate::db::WriteTx;
use crate::time::now_millis;

/// A settlement event waiting in the outbox.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct SettlementEvent {
    pub event_id: String,
    pub kind: String,
    pub intent_id: String,
    pub payload: String,
    pub attempts: i64,
}

impl Payments {
    /// Write a settlement event in the caller's transaction (the outbox).
    pub(super) async fn queue_event(
        tx: &mut WriteTx,
        intent: &PaymentIntent,
        kind: &str,
        extra: Value,
        now: i64,
    ) -> Result<(), PaymentError> {
        let event_id = uuid::Uuid::now_v7().to_string();
        let mut payload = json!({ "event_id": event_id, "kind": kind, "intent": intent });
        if let (Some(p), Value::Object(extra)) = (payload.as_object_mut(), extra) {
            p.extend(extra);
        }
        sqlx::query(
            "INSERT INTO payment_outbox (event_id, hospital_id, plugin_id, intent_id, kind, payload, created_at, next_attempt_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
        )
        .bind(&event_id)
        .bind(&intent.hospital_id)
        .bind(&intent.plugin_id)
        .bind(&intent.id)
        .bind(kind)
        .bind(payload.to_string())
        .bind(now)
        .execute(&mut *tx.tx)
        .await?;
        Ok(())
    }

    /// Settlement events of `plugin` at `hospital` not yet acknowledged,
    /// oldest first. Each hand-out counts as an attempt; an event comes
    /// back until acknowledged (at-least-once; the event id lets the
    /// plugin make it exactly-once).
    pub async fn pending_events(
        &self,
        hospital: &str,
        plugin: &str,
        limit: u32,
    ) -> Result<Vec<SettlementEvent>, PaymentError> {
        let rows = sqlx::query(
            "SELECT event_id, kind, intent_id, payload, attempts FROM payment_outbox \
             WHERE hospital_id = $1 AND plugin_id = $2 AND delivered_at IS NULL ORDER BY id LIMIT $3",
        )
        .bind(hospital)
        .bind(plugin)
        .bind(i64::from(limit.clamp(1, 100)))
        .fetch_all(&self.db.pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let event_id: String = r.try_get("event_id")?;
            sqlx::query(
                "UPDATE payment_outbox SET attempts = attempts + 1, next_attempt_at = $1 WHERE event_id = $2",
            )
            .bind(now_millis())
            .bind(&event_id)
            .execute(&self.db.pool)
            .await?;
            out.push(SettlementEvent {
                event_id,
                kind: r.try_get("kind")?,
                intent_id: r.try_get("intent_id")?,
                payload: r.try_get("payload")?,
                attempts: r.try_get::<i64, _>("attempts")?.saturating_add(1),
            });
        }
        Ok(out)
    }

    /// Mark an event delivered; true the first time, false when it already
    /// was (redelivery is harmless).
    pub async fn acknowledge(
        &self,
        hospital: &str,
        plugin: &str,
        event_id: &str,
    ) -> Result<bool, PaymentError> {
        let changed = sqlx::query(
            "UPDATE payment_outbox SET delivered_at = $1 \
             WHERE event_id = $2 AND hospital_id = $3 AND plugin_id = $4 AND delivered_at IS NULL",
        )
        .bind(now_millis())
        .bind(event_id)
        .bind(hospital)
        .bind(plugin)
        .execute(&self.db.pool)
        .await?
        .rows_affected();
        if changed == 0 {
            let exists: Option<String> = sqlx::query_scalar(
                "SELECT event_id FROM payment_outbox WHERE event_id = $1 AND hospital_id = $2 AND plugin_id = $3",
            )
            .bind(event_id)
            .bind(hospital)
            .bind(plugin)
            .fetch_optional(&self.db.pool)
            .await?;
            if exists.is_none() {
                return Err(PaymentError::NotFound(event_id.to_owned()));
            }
        }
        Ok(changed == 1)
    }
}
