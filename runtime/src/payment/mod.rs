//! Payments: a double-entry ledger, payment intents with their state
//! machine, the gateways that collect the money, and the outbox that tells
//! plugins about settlements exactly once.
//!
//! Ledger movements of one intent (amounts in đồng, credits positive):
//! - checkout (pending): `gateway:{gw}` −A, `clearing:payer:{payer}` +A
//! - verified IPN: the pending transfer is posted, and in the same
//!   transaction `clearing:payer:{payer}` −A is split to the merchant,
//!   `platform:fee` and `hospital_share:{hospital}` (posted)
//! - failure, cancel or timeout: the pending transfer is voided
//! - refund of R: merchant, fee and hospital share give back their parts of
//!   R, `gateway:{gw}` +R

mod expiry;
pub mod gateway;
mod ipn;
pub mod ledger;
mod outbox;
mod reconciliation;
mod terms;
pub use outbox::SettlementEvent;
pub use reconciliation::{Reconciliation, ReconciliationLine, ReconciliationTotals};
pub use terms::{ActivationSettings, PaymentTerms, TermsSource};

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use sqlx::Row;

use crate::db::{Database, WriteTx};
use gateway::{GatewayKind, IpnAnswer, SandboxTickets};
use ledger::{LedgerError, LedgerPosting};

/// The largest intent the platform accepts, in đồng; an activation may set
/// a lower maximum.
pub const PLATFORM_MAX_AMOUNT: i64 = 1_000_000_000;
/// Longest idempotency key, payer, purpose.
pub const MAX_TEXT: usize = crate::text_limits::PAYMENT_TEXT_BYTES;
/// How long a payer has at the gateway before the intent is cancelled.
pub const PENDING_TIMEOUT_MS: i64 = 15 * 60 * 1000;

/// Why a payment operation was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum PaymentError {
    #[error("{0}")]
    Invalid(String),
    #[error("idempotency key `{0}` was used before with other parameters")]
    Conflict(String),
    #[error("payment intent `{0}` does not exist")]
    NotFound(String),
    #[error("a {from} payment cannot be {action}")]
    IllegalTransition { from: String, action: &'static str },
    #[error("refund of {requested} đồng exceeds the {refundable} đồng still refundable")]
    ExceedsCaptured { requested: i64, refundable: i64 },
    #[error("payments are not configured: {0}")]
    Config(String),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error("audit trail: {0}")]
    Audit(#[from] crate::audit::AuditError),
    #[error("payment storage: {0}")]
    Database(#[from] sqlx::Error),
}

/// Where an intent stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IntentState {
    Created,
    Pending,
    Succeeded,
    Failed,
    Cancelled,
    PartiallyRefunded,
    Refunded,
}

impl IntentState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Pending => "pending",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
            Self::PartiallyRefunded => "partially_refunded",
            Self::Refunded => "refunded",
        }
    }

    fn parse(s: &str) -> Result<Self, PaymentError> {
        Ok(match s {
            "created" => Self::Created,
            "pending" => Self::Pending,
            "succeeded" => Self::Succeeded,
            "failed" => Self::Failed,
            "cancelled" => Self::Cancelled,
            "partially_refunded" => Self::PartiallyRefunded,
            "refunded" => Self::Refunded,
            other => return Err(PaymentError::Invalid(format!("unknown state `{other}`"))),
        })
    }
}

/// Who receives the money.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MerchantKind {
    /// The hospital the plugin serves.
    Hospital,
    /// The plugin's vendor.
    Vendor,
}

impl MerchantKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hospital => "hospital",
            Self::Vendor => "vendor",
        }
    }
}

/// What a plugin asks for.
#[derive(Debug, Clone)]
pub struct NewIntent {
    pub amount: i64,
    pub currency: String,
    pub payer: String,
    pub merchant: MerchantKind,
    pub purpose: String,
    pub idempotency_key: String,
}

/// A payment intent as stored.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PaymentIntent {
    pub id: String,
    pub hospital_id: String,
    pub plugin_id: String,
    pub amount: i64,
    pub currency: String,
    pub payer: String,
    pub merchant_kind: String,
    pub merchant_id: String,
    pub purpose: String,
    pub state: IntentState,
    pub gateway: String,
    pub captured: i64,
    pub refunded: i64,
    pub return_path: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl PaymentIntent {
    /// The merchant's ledger account.
    pub fn merchant_account(&self) -> String {
        format!("merchant:{}:{}", self.merchant_kind, self.merchant_id)
    }
}

/// The payment service of one node.
pub struct Payments {
    db: Database,
    terms: TermsSource,
    /// Set only when the node runs with `--demo` or `--payment-sandbox`:
    /// without it, no activation's payment goes to the sandbox.
    sandbox: Option<SandboxTickets>,
}

/// Why a payment that names no real gateway is refused on a production node.
pub const NO_GATEWAY: &str = "this activation takes payments but names no payment gateway: set `payment.gateway` to `vnpay` with its terminal (`payment.vnpay`) and the secret `vnpay_hash_secret`; the built-in sandbox gateway exists only on servers started with --demo or --payment-sandbox";

use crate::time::now_millis;

fn check_text(what: &str, value: &str) -> Result<(), PaymentError> {
    if value.trim().is_empty() || value.len() > MAX_TEXT || value.chars().any(char::is_control) {
        return Err(PaymentError::Invalid(format!(
            "{what} must be 1 to {MAX_TEXT} bytes without control characters"
        )));
    }
    Ok(())
}

const INTENT_COLUMNS: &str = "id, hospital_id, plugin_id, amount, currency, payer, merchant_kind, merchant_id, \
     purpose, state, gateway, captured, refunded, return_path, created_at, updated_at, \
     platform_fee_bps, hospital_share_bps, pending_transfer, request_hash";

/// An intent row with the columns only the host needs.
struct IntentRow {
    intent: PaymentIntent,
    fee_bps: i64,
    share_bps: i64,
    pending_transfer: Option<String>,
    request_hash: String,
}

fn intent_row(r: &sqlx::any::AnyRow) -> Result<IntentRow, PaymentError> {
    let state: String = r.try_get("state")?;
    Ok(IntentRow {
        intent: PaymentIntent {
            id: r.try_get("id")?,
            hospital_id: r.try_get("hospital_id")?,
            plugin_id: r.try_get("plugin_id")?,
            amount: r.try_get("amount")?,
            currency: r.try_get("currency")?,
            payer: r.try_get("payer")?,
            merchant_kind: r.try_get("merchant_kind")?,
            merchant_id: r.try_get("merchant_id")?,
            purpose: r.try_get("purpose")?,
            state: IntentState::parse(&state)?,
            gateway: r.try_get("gateway")?,
            captured: r.try_get("captured")?,
            refunded: r.try_get("refunded")?,
            return_path: r.try_get("return_path")?,
            created_at: r.try_get("created_at")?,
            updated_at: r.try_get("updated_at")?,
        },
        fee_bps: r.try_get("platform_fee_bps")?,
        share_bps: r.try_get("hospital_share_bps")?,
        pending_transfer: r.try_get("pending_transfer")?,
        request_hash: r.try_get("request_hash")?,
    })
}

/// `amount × bps / 10000`, rounded down, without overflow.
fn share(amount: i64, bps: i64) -> Result<i64, PaymentError> {
    let v = i128::from(amount) * i128::from(bps) / 10_000;
    i64::try_from(v).map_err(|_| PaymentError::Ledger(LedgerError::Overflow))
}

/// The split of a cumulative captured (or refunded) amount: (merchant,
/// platform fee, hospital share). Refunds use the difference between the
/// splits after and before them, so all refunds together give back exactly
/// the split of the capture.
fn split(amount: i64, row: &IntentRow) -> Result<(i64, i64, i64), PaymentError> {
    let fee = share(amount, row.fee_bps)?;
    // A hospital selling its own services keeps the share as merchant.
    let hospital = if row.intent.merchant_kind == "vendor" {
        share(amount, row.share_bps)?
    } else {
        0
    };
    let merchant = amount
        .checked_sub(fee)
        .and_then(|m| m.checked_sub(hospital))
        .ok_or(PaymentError::Ledger(LedgerError::Overflow))?;
    Ok((merchant, fee, hospital))
}

fn legs(postings: Vec<(String, i64)>) -> Vec<LedgerPosting> {
    postings
        .into_iter()
        .filter(|(_, a)| *a != 0)
        .map(|(acct, a)| LedgerPosting::new(acct, a))
        .collect()
}

impl Payments {
    /// Payments over `db`, with terms from `terms`.
    pub fn new(db: Database, terms: TermsSource) -> Self {
        Self {
            db,
            terms,
            sandbox: None,
        }
    }

    /// Offer the built-in sandbox gateway (development and demo nodes
    /// only), its pages opened with tickets signed by `tickets`.
    pub fn with_sandbox(mut self, tickets: SandboxTickets) -> Self {
        self.sandbox = Some(tickets);
        self
    }

    /// The sandbox's tickets, when this node offers the sandbox.
    pub fn sandbox(&self) -> Option<&SandboxTickets> {
        self.sandbox.as_ref()
    }

    /// The database (for reports and checks).
    pub fn database(&self) -> &Database {
        &self.db
    }

    /// Create an intent, or return the one created before under the same
    /// idempotency key with the same parameters.
    pub async fn create(
        &self,
        hospital: &str,
        plugin: &str,
        req: &NewIntent,
    ) -> Result<PaymentIntent, PaymentError> {
        if req.currency != "VND" {
            return Err(PaymentError::Invalid(format!(
                "currency `{}` is not accepted: amounts are in VND (integer đồng)",
                req.currency
            )));
        }
        check_text("the idempotency key", &req.idempotency_key)?;
        check_text("the payer", &req.payer)?;
        check_text("the purpose", &req.purpose)?;
        let terms = self.terms(hospital, plugin).await?;
        if req.amount <= 0 || req.amount > terms.max_amount() {
            return Err(PaymentError::Invalid(format!(
                "amount must be 1 to {} đồng, got {}",
                terms.max_amount(),
                req.amount
            )));
        }
        let merchant_id = match req.merchant {
            MerchantKind::Hospital => hospital,
            MerchantKind::Vendor => plugin,
        };
        let hash = hex::encode(Sha256::digest(
            serde_json::to_vec(&json!([
                req.amount,
                req.currency,
                req.payer,
                req.merchant.as_str(),
                req.purpose
            ]))
            .unwrap_or_default(),
        ));
        let now = now_millis();
        let mut tx = self.db.begin_write().await?;
        // The unique key makes one of any racing creates insert; the others
        // wait for it (PostgreSQL) or queue (SQLite) and then read it.
        sqlx::query(
            "INSERT INTO payment_intents (id, hospital_id, plugin_id, idempotency_key, request_hash, amount, \
             currency, payer, merchant_kind, merchant_id, purpose, state, gateway, platform_fee_bps, \
             hospital_share_bps, created_at, updated_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, 'VND', $7, $8, $9, $10, 'created', $11, $12, $13, $14, $14, $15) \
             ON CONFLICT (hospital_id, plugin_id, idempotency_key) DO NOTHING",
        )
        .bind(uuid::Uuid::now_v7().to_string())
        .bind(hospital)
        .bind(plugin)
        .bind(&req.idempotency_key)
        .bind(&hash)
        .bind(req.amount)
        .bind(&req.payer)
        .bind(req.merchant.as_str())
        .bind(merchant_id)
        .bind(&req.purpose)
        .bind(terms.gateway.as_str())
        .bind(terms.platform_fee_bps)
        .bind(terms.hospital_share_bps)
        .bind(now)
        .bind(now.saturating_add(PENDING_TIMEOUT_MS))
        .execute(&mut *tx.tx)
        .await?;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {INTENT_COLUMNS} FROM payment_intents \
             WHERE hospital_id = $1 AND plugin_id = $2 AND idempotency_key = $3"
        )))
        .bind(hospital)
        .bind(plugin)
        .bind(&req.idempotency_key)
        .fetch_one(&mut *tx.tx)
        .await?;
        tx.commit().await?;
        let row = intent_row(&row)?;
        if row.request_hash != hash {
            return Err(PaymentError::Conflict(req.idempotency_key.clone()));
        }
        Ok(row.intent)
    }

    async fn load(&self, id: &str) -> Result<IntentRow, PaymentError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {INTENT_COLUMNS} FROM payment_intents WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.db.pool)
        .await?
        .ok_or_else(|| PaymentError::NotFound(id.to_owned()))?;
        intent_row(&row)
    }

    async fn load_in(tx: &mut WriteTx, id: &str) -> Result<IntentRow, PaymentError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {INTENT_COLUMNS} FROM payment_intents WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&mut *tx.tx)
        .await?
        .ok_or_else(|| PaymentError::NotFound(id.to_owned()))?;
        intent_row(&row)
    }

    /// The newest intents whose payer is `payer` (a citizen's subject, as
    /// the plugins record it), at most `limit`.
    pub async fn of_payer(
        &self,
        payer: &str,
        limit: i64,
    ) -> Result<Vec<PaymentIntent>, PaymentError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {INTENT_COLUMNS} FROM payment_intents WHERE payer = $1 \
             ORDER BY created_at DESC, id DESC LIMIT $2"
        )))
        .bind(payer)
        .bind(limit)
        .fetch_all(&self.db.pool)
        .await?;
        rows.iter().map(|r| Ok(intent_row(r)?.intent)).collect()
    }

    /// An intent, by id.
    pub async fn get(&self, id: &str) -> Result<PaymentIntent, PaymentError> {
        Ok(self.load(id).await?.intent)
    }

    /// An intent of `plugin` at `hospital` (others do not exist for it).
    pub async fn get_scoped(
        &self,
        hospital: &str,
        plugin: &str,
        id: &str,
    ) -> Result<PaymentIntent, PaymentError> {
        let intent = self.get(id).await?;
        if intent.hospital_id != hospital || intent.plugin_id != plugin {
            return Err(PaymentError::NotFound(id.to_owned()));
        }
        Ok(intent)
    }

    /// Send the payer to the gateway: created → pending with the amount
    /// held in the ledger. Returns the URL to redirect to (again the same
    /// while pending).
    pub async fn checkout(
        &self,
        hospital: &str,
        plugin: &str,
        id: &str,
        return_path: &str,
    ) -> Result<String, PaymentError> {
        self.checkout_as(hospital, plugin, id, return_path, None)
            .await
    }

    /// [`Self::checkout`] for the authenticated `payer` (their subject): the
    /// sandbox's link then carries a ticket for them (see `SandboxTickets`).
    pub async fn checkout_as(
        &self,
        hospital: &str,
        plugin: &str,
        id: &str,
        return_path: &str,
        payer: Option<&str>,
    ) -> Result<String, PaymentError> {
        if !return_path.starts_with('/')
            || return_path.starts_with("//")
            || return_path.len() > 1024
        {
            return Err(PaymentError::Invalid(
                "the return path must be a path of the plugin, starting with one `/`".into(),
            ));
        }
        let intent = self.get_scoped(hospital, plugin, id).await?;
        let terms = self.terms(hospital, plugin).await?;
        if intent.gateway != terms.gateway.as_str() {
            return Err(PaymentError::Config(
                "the hospital changed its gateway since the intent was created".into(),
            ));
        }
        let now = now_millis();
        let mut tx = self.db.begin_write().await?;
        let changed = sqlx::query(
            "UPDATE payment_intents SET state = 'pending', return_path = $1, updated_at = $2, expires_at = $3 \
             WHERE id = $4 AND state = 'created'",
        )
        .bind(return_path)
        .bind(now)
        .bind(now.saturating_add(PENDING_TIMEOUT_MS))
        .bind(id)
        .execute(&mut *tx.tx)
        .await?
        .rows_affected();
        if changed == 1 {
            let postings = legs(vec![
                (format!("gateway:{}", intent.gateway), -intent.amount),
                (format!("clearing:payer:{}", intent.payer), intent.amount),
            ]);
            let transfer =
                ledger::transfer(&mut tx, Some(id), "checkout", &postings, true, now).await?;
            sqlx::query("UPDATE payment_intents SET pending_transfer = $1 WHERE id = $2")
                .bind(&transfer)
                .bind(id)
                .execute(&mut *tx.tx)
                .await?;
            tx.commit().await?;
        } else {
            drop(tx);
            let state = self.get(id).await?.state;
            if state != IntentState::Pending {
                return Err(PaymentError::IllegalTransition {
                    from: state.as_str().into(),
                    action: "sent to the gateway",
                });
            }
        }
        match terms.gateway {
            GatewayKind::Sandbox => match (&self.sandbox, payer) {
                (Some(tickets), Some(payer)) => {
                    let ticket =
                        tickets.issue(id, payer, now_millis().saturating_add(PENDING_TIMEOUT_MS));
                    Ok(format!("/payments/sandbox/{id}?ticket={ticket}"))
                }
                _ => Ok(format!("/payments/sandbox/{id}")),
            },
            GatewayKind::Vnpay => {
                let (Some(terminal), Some(secret)) = (&terms.vnpay, &terms.hash_secret) else {
                    return Err(PaymentError::Config("vnpay terminal missing".into()));
                };
                gateway::vnpay_payment_url(
                    terminal,
                    secret.as_bytes(),
                    id,
                    intent.amount,
                    &intent.purpose,
                    intent.created_at,
                )
                .ok_or(PaymentError::Ledger(LedgerError::Overflow))
            }
        }
    }

    /// The gateway confirmed the payment: pending → succeeded, the held
    /// amount posted and split, a settlement event queued; all or nothing.
    pub async fn succeed(
        &self,
        actor: &str,
        id: &str,
        gateway_ref: &str,
    ) -> Result<PaymentIntent, PaymentError> {
        let now = now_millis();
        let mut tx = self.db.begin_write().await?;
        let changed = sqlx::query(
            "UPDATE payment_intents SET state = 'succeeded', captured = amount, gateway_ref = $1, updated_at = $2 \
             WHERE id = $3 AND state = 'pending'",
        )
        .bind(gateway_ref)
        .bind(now)
        .bind(id)
        .execute(&mut *tx.tx)
        .await?
        .rows_affected();
        let row = Self::load_in(&mut tx, id).await?;
        if changed == 0 {
            return Err(PaymentError::IllegalTransition {
                from: row.intent.state.as_str().into(),
                action: "confirmed",
            });
        }
        let pending = row
            .pending_transfer
            .clone()
            .ok_or_else(|| PaymentError::Invalid("pending intent without a hold".into()))?;
        ledger::post(&mut tx, &pending, now).await?;
        let (merchant, fee, hospital) = split(row.intent.amount, &row)?;
        let postings = legs(vec![
            (
                format!("clearing:payer:{}", row.intent.payer),
                -row.intent.amount,
            ),
            (row.intent.merchant_account(), merchant),
            ("platform:fee".to_owned(), fee),
            (
                format!("hospital_share:{}", row.intent.hospital_id),
                hospital,
            ),
        ]);
        ledger::transfer(&mut tx, Some(id), "capture", &postings, false, now).await?;
        Self::queue_event(&mut tx, &row.intent, "payment.succeeded", json!({}), now).await?;
        Self::audit(
            &mut tx,
            actor,
            &row.intent,
            "payment.succeeded",
            row.intent.amount,
        )
        .await?;
        tx.commit().await?;
        Ok(row.intent)
    }

    /// The payment ended without money: pending (or created) → `to`
    /// (failed or cancelled), the hold voided, an event queued.
    pub async fn abandon(
        &self,
        actor: &str,
        id: &str,
        to: IntentState,
    ) -> Result<PaymentIntent, PaymentError> {
        let action = match to {
            IntentState::Failed => "failed",
            IntentState::Cancelled => "cancelled",
            _ => return Err(PaymentError::Invalid("only fail or cancel abandon".into())),
        };
        let now = now_millis();
        let mut tx = self.db.begin_write().await?;
        let from = if to == IntentState::Failed {
            "state = 'pending'"
        } else {
            "state IN ('created', 'pending')"
        };
        let changed = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE payment_intents SET state = $1, updated_at = $2 WHERE id = $3 AND {from}"
        )))
        .bind(to.as_str())
        .bind(now)
        .bind(id)
        .execute(&mut *tx.tx)
        .await?
        .rows_affected();
        let row = Self::load_in(&mut tx, id).await?;
        if changed == 0 {
            return Err(PaymentError::IllegalTransition {
                from: row.intent.state.as_str().into(),
                action,
            });
        }
        if let Some(pending) = &row.pending_transfer {
            ledger::void(&mut tx, pending, now).await?;
        }
        let kind = format!("payment.{action}");
        Self::queue_event(&mut tx, &row.intent, &kind, json!({}), now).await?;
        Self::audit(&mut tx, actor, &row.intent, &kind, row.intent.amount).await?;
        tx.commit().await?;
        Ok(row.intent)
    }

    /// Refund `amount` of a settled intent; the same idempotency key
    /// returns the first refund's result. Racing refunds are serialized by
    /// the guarded update, so together they never exceed the capture.
    pub async fn refund(
        &self,
        actor: &str,
        hospital: &str,
        plugin: &str,
        id: &str,
        amount: i64,
        key: &str,
    ) -> Result<PaymentIntent, PaymentError> {
        check_text("the idempotency key", key)?;
        if amount <= 0 {
            return Err(PaymentError::Invalid(format!(
                "a refund must be a positive number of đồng, got {amount}"
            )));
        }
        self.get_scoped(hospital, plugin, id).await?;
        let now = now_millis();
        let mut tx = self.db.begin_write().await?;
        let inserted = sqlx::query(
            "INSERT INTO payment_refunds (id, intent_id, idempotency_key, amount, created_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (intent_id, idempotency_key) DO NOTHING",
        )
        .bind(uuid::Uuid::now_v7().to_string())
        .bind(id)
        .bind(key)
        .bind(amount)
        .bind(now)
        .execute(&mut *tx.tx)
        .await?
        .rows_affected();
        if inserted == 0 {
            let earlier: i64 = sqlx::query_scalar(
                "SELECT amount FROM payment_refunds WHERE intent_id = $1 AND idempotency_key = $2",
            )
            .bind(id)
            .bind(key)
            .fetch_one(&mut *tx.tx)
            .await?;
            drop(tx);
            if earlier != amount {
                return Err(PaymentError::Conflict(key.to_owned()));
            }
            return self.get(id).await;
        }
        let changed = sqlx::query(
            "UPDATE payment_intents SET refunded = refunded + $1, updated_at = $2, \
             state = CASE WHEN refunded + $1 = captured THEN 'refunded' ELSE 'partially_refunded' END \
             WHERE id = $3 AND state IN ('succeeded', 'partially_refunded') AND refunded + $1 <= captured",
        )
        .bind(amount)
        .bind(now)
        .bind(id)
        .execute(&mut *tx.tx)
        .await?
        .rows_affected();
        let row = Self::load_in(&mut tx, id).await?;
        if changed == 0 {
            drop(tx);
            return Err(match row.intent.state {
                IntentState::Succeeded | IntentState::PartiallyRefunded => {
                    PaymentError::ExceedsCaptured {
                        requested: amount,
                        refundable: row.intent.captured.saturating_sub(row.intent.refunded),
                    }
                }
                other => PaymentError::IllegalTransition {
                    from: other.as_str().into(),
                    action: "refunded",
                },
            });
        }
        let after = row.intent.refunded;
        let before = after
            .checked_sub(amount)
            .ok_or(PaymentError::Ledger(LedgerError::Overflow))?;
        let (m1, f1, h1) = split(after, &row)?;
        let (m0, f0, h0) = split(before, &row)?;
        let postings = legs(vec![
            (row.intent.merchant_account(), m0 - m1),
            ("platform:fee".to_owned(), f0 - f1),
            (
                format!("hospital_share:{}", row.intent.hospital_id),
                h0 - h1,
            ),
            (format!("gateway:{}", row.intent.gateway), amount),
        ]);
        ledger::transfer(&mut tx, Some(id), "refund", &postings, false, now).await?;
        Self::queue_event(
            &mut tx,
            &row.intent,
            "payment.refunded",
            json!({ "refund_amount": amount }),
            now,
        )
        .await?;
        Self::audit(&mut tx, actor, &row.intent, "payment.refunded", amount).await?;
        tx.commit().await?;
        Ok(row.intent)
    }

    /// Record a settlement change in the audit trail, in its transaction.
    async fn audit(
        tx: &mut WriteTx,
        actor: &str,
        intent: &PaymentIntent,
        action: &str,
        amount: i64,
    ) -> Result<(), PaymentError> {
        crate::audit::AuditLog::append_in(
            tx,
            crate::audit::AuditEvent {
                actor: actor.to_owned(),
                action: action.to_owned(),
                target: format!("payment:{}", intent.id),
                hospital_id: Some(intent.hospital_id.clone()),
                details: json!({ "plugin": intent.plugin_id, "amount": amount, "merchant": intent.merchant_account() }),
            },
        )
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
