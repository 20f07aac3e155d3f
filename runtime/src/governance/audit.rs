//! The audit trail: append-only and hash-chained. Each entry's hash covers
//! its content and the previous entry's hash, and the chain's head is kept
//! apart, so `verify` finds an edited, deleted or truncated entry.

use serde::Serialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use sqlx::Row;

use crate::db::{Database, WriteTx};

/// Hash of the entry before the first.
const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Why the audit trail could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit storage error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("audit entry {seq} has unreadable details: {message}")]
    Corrupt { seq: i64, message: String },
}

/// Something that happened, to be recorded.
#[derive(Debug, Clone)]
pub struct AuditEvent {
    /// Who did it: a principal's subject, or `system`.
    pub actor: String,
    /// What happened, e.g. `plugin.approved`, `activation.created`.
    pub action: String,
    /// What it happened to, e.g. `plugin-version:<id>`.
    pub target: String,
    /// The hospital concerned, if any.
    pub hospital_id: Option<String>,
    pub details: Value,
}

/// A recorded entry.
#[derive(Debug, Clone, Serialize)]
pub struct AuditEntry {
    pub seq: i64,
    /// Milliseconds since the Unix epoch.
    pub at: i64,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub hospital_id: Option<String>,
    pub details: Value,
    pub prev_hash: String,
    pub hash: String,
}

impl AuditEntry {
    fn compute_hash(&self) -> String {
        // A JSON array fixes field order: the canonical bytes of the entry.
        let canonical = json!([
            self.seq,
            self.at,
            self.actor,
            self.action,
            self.target,
            self.hospital_id,
            self.details,
            self.prev_hash
        ]);
        hex::encode(Sha256::digest(canonical.to_string().as_bytes()))
    }

    /// This entry as a FHIR R4 AuditEvent resource.
    pub fn to_fhir(&self) -> Value {
        let mut entity = vec![json!({
            "what": { "identifier": { "system": "urn:vtelehealth:target", "value": self.target } },
            "detail": [{ "type": "details", "valueString": self.details.to_string() }]
        })];
        if let Some(h) = &self.hospital_id {
            entity.push(json!({ "what": { "identifier": { "system": "urn:vtelehealth:hospital", "value": h } } }));
        }
        json!({
            "resourceType": "AuditEvent",
            "id": self.seq.to_string(),
            "type": {
                "system": "urn:vtelehealth:audit-action",
                "code": self.action,
                "display": self.action
            },
            "action": "E",
            "recorded": rfc3339(self.at),
            "outcome": "0",
            "agent": [{
                "who": { "identifier": { "system": "urn:vtelehealth:subject", "value": self.actor } },
                "requestor": true
            }],
            "source": { "observer": { "display": "VTelehealth runtime" } },
            "entity": entity,
            "meta": { "tag": [{ "system": "urn:vtelehealth:audit-hash", "code": self.hash }] }
        })
    }
}

/// Filters for listing entries.
#[derive(Debug, Default, Clone)]
pub struct AuditFilter {
    pub action_prefix: Option<String>,
    pub actor: Option<String>,
    pub hospital_id: Option<String>,
    pub target: Option<String>,
    pub limit: Option<i64>,
}

/// The outcome of checking the whole chain.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct VerifyReport {
    pub entries: i64,
    pub ok: bool,
    /// The first problem found, naming the entry.
    pub problem: Option<String>,
}

/// The audit trail of one database.
#[derive(Clone)]
pub struct AuditLog {
    db: Database,
}

fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl AuditLog {
    /// The audit trail stored in `db`.
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    /// Append `event` in its own transaction.
    pub async fn append(&self, event: AuditEvent) -> Result<AuditEntry, AuditError> {
        let mut tx = self.db.begin_write().await?;
        let entry = Self::append_in(&mut tx, event).await?;
        tx.commit().await?;
        Ok(entry)
    }

    /// Append `event` inside `tx`, so the entry exists exactly when the
    /// change it records does.
    pub async fn append_in(tx: &mut WriteTx, event: AuditEvent) -> Result<AuditEntry, AuditError> {
        // Writing the head first takes SQLite's write lock (and the row lock
        // in PostgreSQL) before reading it: appends never interleave.
        let head = sqlx::query(
            "INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, $1) \
             ON CONFLICT (id) DO UPDATE SET seq = audit_head.seq RETURNING seq, hash",
        )
        .bind(GENESIS)
        .fetch_one(&mut *tx.tx)
        .await?;
        let (last_seq, last_hash): (i64, String) = (head.try_get("seq")?, head.try_get("hash")?);
        let mut entry = AuditEntry {
            seq: last_seq + 1,
            at: now_millis(),
            actor: event.actor,
            action: event.action,
            target: event.target,
            hospital_id: event.hospital_id,
            details: event.details,
            prev_hash: last_hash,
            hash: String::new(),
        };
        entry.hash = entry.compute_hash();
        sqlx::query(
            "INSERT INTO audit_events (seq, at, actor, action, target, hospital_id, details, prev_hash, hash) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(entry.seq)
        .bind(entry.at)
        .bind(&entry.actor)
        .bind(&entry.action)
        .bind(&entry.target)
        .bind(&entry.hospital_id)
        .bind(entry.details.to_string())
        .bind(&entry.prev_hash)
        .bind(&entry.hash)
        .execute(&mut *tx.tx)
        .await?;
        sqlx::query("UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1")
            .bind(entry.seq)
            .bind(&entry.hash)
            .execute(&mut *tx.tx)
            .await?;
        Ok(entry)
    }

    /// Entries matching `filter`, newest first.
    pub async fn list(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>, AuditError> {
        let rows = sqlx::query(
            "SELECT seq, at, actor, action, target, hospital_id, details, prev_hash, hash FROM audit_events \
             WHERE ($1 = '' OR substr(action, 1, CAST($2 AS INTEGER)) = $1) \
             AND ($3 = '' OR actor = $3) AND ($4 = '' OR hospital_id = $4) AND ($5 = '' OR target = $5) \
             ORDER BY seq DESC LIMIT $6",
        )
        .bind(filter.action_prefix.clone().unwrap_or_default())
        .bind(filter.action_prefix.as_ref().map_or(0, |p| p.chars().count() as i64))
        .bind(filter.actor.clone().unwrap_or_default())
        .bind(filter.hospital_id.clone().unwrap_or_default())
        .bind(filter.target.clone().unwrap_or_default())
        .bind(filter.limit.unwrap_or(200).clamp(1, 10_000))
        .fetch_all(&self.db.pool)
        .await?;
        rows.iter().map(entry_from_row).collect()
    }

    /// Recompute the whole chain and compare it with the stored head.
    pub async fn verify(&self) -> Result<VerifyReport, AuditError> {
        let rows = sqlx::query(
            "SELECT seq, at, actor, action, target, hospital_id, details, prev_hash, hash FROM audit_events ORDER BY seq",
        )
        .fetch_all(&self.db.pool)
        .await?;
        let mut expected_prev = GENESIS.to_owned();
        let mut expected_seq = 1;
        let fail = |entries, problem: String| VerifyReport {
            entries,
            ok: false,
            problem: Some(problem),
        };
        for row in &rows {
            let entry = match entry_from_row(row) {
                Ok(e) => e,
                Err(e) => return Ok(fail(rows.len() as i64, e.to_string())),
            };
            if entry.seq != expected_seq {
                return Ok(fail(
                    rows.len() as i64,
                    format!(
                        "entry {expected_seq} is missing (next entry is {})",
                        entry.seq
                    ),
                ));
            }
            if entry.prev_hash != expected_prev {
                return Ok(fail(
                    rows.len() as i64,
                    format!(
                        "entry {} does not link to entry {}",
                        entry.seq,
                        entry.seq - 1
                    ),
                ));
            }
            if entry.compute_hash() != entry.hash {
                return Ok(fail(
                    rows.len() as i64,
                    format!("entry {} was modified after it was written", entry.seq),
                ));
            }
            expected_prev = entry.hash;
            expected_seq += 1;
        }
        let head = sqlx::query("SELECT seq, hash FROM audit_head WHERE id = 1")
            .fetch_optional(&self.db.pool)
            .await?;
        let (head_seq, head_hash) = match head {
            Some(row) => (
                row.try_get::<i64, _>("seq")?,
                row.try_get::<String, _>("hash")?,
            ),
            None => (0, GENESIS.to_owned()),
        };
        if head_seq != expected_seq - 1 || head_hash != expected_prev {
            return Ok(fail(
                rows.len() as i64,
                format!(
                    "the chain ends at entry {} but the recorded head is entry {head_seq}: entries were removed",
                    expected_seq - 1
                ),
            ));
        }
        Ok(VerifyReport {
            entries: rows.len() as i64,
            ok: true,
            problem: None,
        })
    }
}

fn entry_from_row(row: &sqlx::any::AnyRow) -> Result<AuditEntry, AuditError> {
    let seq: i64 = row.try_get("seq")?;
    let details: String = row.try_get("details")?;
    Ok(AuditEntry {
        seq,
        at: row.try_get("at")?,
        actor: row.try_get("actor")?,
        action: row.try_get("action")?,
        target: row.try_get("target")?,
        hospital_id: row.try_get("hospital_id")?,
        details: serde_json::from_str(&details).map_err(|e| AuditError::Corrupt {
            seq,
            message: e.to_string(),
        })?,
        prev_hash: row.try_get("prev_hash")?,
        hash: row.try_get("hash")?,
    })
}

/// Milliseconds since the epoch as an RFC 3339 UTC timestamp.
pub fn rfc3339(millis: i64) -> String {
    let secs = millis.div_euclid(1000);
    let ms = millis.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{ms:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_795_530_998_838), "2026-11-24T14:36:38.838Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }

    async fn log(dir: &tempfile::TempDir) -> (Database, AuditLog) {
        let db = Database::connect(&format!("sqlite://{}", dir.path().join("a.db").display()))
            .await
            .unwrap();
        (db.clone(), AuditLog::new(db))
    }

    fn event(n: u32) -> AuditEvent {
        AuditEvent {
            actor: "reviewer-1".into(),
            action: "plugin.approved".into(),
            target: format!("plugin-version:{n}"),
            hospital_id: None,
            details: json!({ "n": n }),
        }
    }

    #[tokio::test]
    async fn verify_detects_edits_deletions_and_truncation() {
        let dir = tempfile::TempDir::new().unwrap();
        let (db, audit) = log(&dir).await;
        for n in 0..5 {
            audit.append(event(n)).await.unwrap();
        }
        assert_eq!(
            audit.verify().await.unwrap(),
            VerifyReport {
                entries: 5,
                ok: true,
                problem: None
            }
        );

        sqlx::query("UPDATE audit_events SET actor = 'mallory' WHERE seq = 3")
            .execute(&db.pool)
            .await
            .unwrap();
        let report = audit.verify().await.unwrap();
        assert!(!report.ok && report.problem.unwrap().contains("entry 3 was modified"));
        sqlx::query("UPDATE audit_events SET actor = 'reviewer-1' WHERE seq = 3")
            .execute(&db.pool)
            .await
            .unwrap();
        assert!(audit.verify().await.unwrap().ok);

        sqlx::query("DELETE FROM audit_events WHERE seq = 2")
            .execute(&db.pool)
            .await
            .unwrap();
        let report = audit.verify().await.unwrap();
        assert!(report.problem.unwrap().contains("entry 2 is missing"));

        let dir = tempfile::TempDir::new().unwrap();
        let (db, audit) = log(&dir).await;
        for n in 0..3 {
            audit.append(event(n)).await.unwrap();
        }
        sqlx::query("DELETE FROM audit_events WHERE seq = 3")
            .execute(&db.pool)
            .await
            .unwrap();
        let report = audit.verify().await.unwrap();
        assert!(report.problem.unwrap().contains("entries were removed"));
    }

    #[tokio::test]
    async fn filters_and_fhir_export() {
        let dir = tempfile::TempDir::new().unwrap();
        let (_, audit) = log(&dir).await;
        audit.append(event(1)).await.unwrap();
        audit
            .append(AuditEvent {
                actor: "admin-a".into(),
                action: "activation.created".into(),
                target: "plugin:hello".into(),
                hospital_id: Some("bv-a".into()),
                details: json!({}),
            })
            .await
            .unwrap();
        let only = audit
            .list(&AuditFilter {
                action_prefix: Some("activation.".into()),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(only.len(), 1);
        let fhir = only[0].to_fhir();
        assert_eq!(fhir["resourceType"], "AuditEvent");
        assert_eq!(fhir["agent"][0]["who"]["identifier"]["value"], "admin-a");
        let by_hospital = audit
            .list(&AuditFilter {
                hospital_id: Some("bv-a".into()),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(by_hospital.len(), 1);
    }
}
