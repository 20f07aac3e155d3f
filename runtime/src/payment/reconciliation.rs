//! A merchant's day of settled movements with the ledger's split.

use super::*;

impl Payments {
    /// One merchant's day (UTC, `YYYY-MM-DD`): captures and refunds with
    /// the ledger's split, and totals.
    pub async fn reconciliation(
        &self,
        merchant: &str,
        day: &str,
    ) -> Result<Reconciliation, PaymentError> {
        let start = parse_day(day)?;
        let end = start + 86_400_000;
        let rows = sqlx::query(
            "SELECT t.id, t.intent_id, t.kind, t.resolved_at, p.account_id, p.amount \
             FROM ledger_transfers t JOIN ledger_postings p ON p.transfer_id = t.id \
             JOIN payment_intents i ON i.id = t.intent_id \
             WHERE t.state = 'posted' AND t.kind IN ('capture', 'refund') \
             AND ('merchant:' || i.merchant_kind || ':' || i.merchant_id) = $1 \
             AND t.resolved_at >= $2 AND t.resolved_at < $3 ORDER BY t.resolved_at, t.id",
        )
        .bind(merchant)
        .bind(start)
        .bind(end)
        .fetch_all(&self.db.pool)
        .await?;
        let mut lines: Vec<ReconciliationLine> = Vec::new();
        for r in rows {
            let transfer: String = r.try_get("id")?;
            let account: String = r.try_get("account_id")?;
            let amount: i64 = r.try_get("amount")?;
            if lines.last().is_none_or(|l| l.transfer_id != transfer) {
                lines.push(ReconciliationLine {
                    transfer_id: transfer,
                    intent_id: r
                        .try_get::<Option<String>, _>("intent_id")?
                        .unwrap_or_default(),
                    kind: r.try_get("kind")?,
                    at: r.try_get::<Option<i64>, _>("resolved_at")?.unwrap_or(0),
                    gross: 0,
                    merchant: 0,
                    platform_fee: 0,
                    hospital_share: 0,
                });
            }
            let Some(line) = lines.last_mut() else {
                continue;
            };
            let slot = if account == merchant {
                &mut line.merchant
            } else if account == "platform:fee" {
                &mut line.platform_fee
            } else if account.starts_with("hospital_share:") {
                &mut line.hospital_share
            } else {
                // The clearing (capture) or gateway (refund) leg: the gross.
                line.gross = line
                    .gross
                    .checked_sub(amount)
                    .ok_or(LedgerError::Overflow)?;
                continue;
            };
            *slot = slot.checked_add(amount).ok_or(LedgerError::Overflow)?;
        }
        let mut totals = ReconciliationTotals::default();
        for l in &lines {
            let add = |t: &mut i64, v: i64| -> Result<(), PaymentError> {
                *t = t.checked_add(v).ok_or(LedgerError::Overflow)?;
                Ok(())
            };
            if l.kind == "capture" {
                add(&mut totals.captured, l.gross)?;
            } else {
                add(
                    &mut totals.refunded,
                    l.gross.checked_neg().ok_or(LedgerError::Overflow)?,
                )?;
            }
            add(&mut totals.merchant_net, l.merchant)?;
            add(&mut totals.platform_fee, l.platform_fee)?;
            add(&mut totals.hospital_share, l.hospital_share)?;
        }
        Ok(Reconciliation {
            merchant: merchant.to_owned(),
            day: day.to_owned(),
            lines,
            totals,
        })
    }
}

/// One settled movement in a reconciliation report, signed as the
/// merchant sees it: captures positive, refunds negative.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ReconciliationLine {
    pub transfer_id: String,
    pub intent_id: String,
    pub kind: String,
    pub at: i64,
    pub gross: i64,
    pub merchant: i64,
    pub platform_fee: i64,
    pub hospital_share: i64,
}

/// The day's totals, in đồng.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct ReconciliationTotals {
    pub captured: i64,
    pub refunded: i64,
    pub merchant_net: i64,
    pub platform_fee: i64,
    pub hospital_share: i64,
}

/// A merchant's daily reconciliation report.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Reconciliation {
    pub merchant: String,
    pub day: String,
    pub lines: Vec<ReconciliationLine>,
    pub totals: ReconciliationTotals,
}

impl Reconciliation {
    /// The report as CSV, one line per movement.
    pub fn to_csv(&self) -> String {
        let mut out = String::from(
            "transfer_id,intent_id,kind,at,gross,merchant,platform_fee,hospital_share\n",
        );
        for l in &self.lines {
            out.push_str(&format!(
                "{},{},{},{},{},{},{},{}\n",
                l.transfer_id,
                l.intent_id,
                l.kind,
                crate::audit::rfc3339(l.at),
                l.gross,
                l.merchant,
                l.platform_fee,
                l.hospital_share
            ));
        }
        out
    }
}

/// Milliseconds at the start of `YYYY-MM-DD` (UTC).
fn parse_day(day: &str) -> Result<i64, PaymentError> {
    let bad = || PaymentError::Invalid(format!("`{day}` is not a date (YYYY-MM-DD)"));
    let mut parts = day.split('-');
    let (Some(y), Some(m), Some(d), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad());
    };
    let (y, m, d): (i64, i64, i64) = (
        y.parse().map_err(|_| bad())?,
        m.parse().map_err(|_| bad())?,
        d.parse().map_err(|_| bad())?,
    );
    if !(1970..=9999).contains(&y) || !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return Err(bad());
    }
    // Days from civil (Howard Hinnant's algorithm).
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let millis = days * 86_400_000;
    if crate::audit::rfc3339(millis).get(..10) != Some(day) {
        return Err(bad());
    }
    Ok(millis)
}
