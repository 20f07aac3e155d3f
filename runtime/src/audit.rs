//! The audit trail: append-only and hash-chained. Each entry's hash covers
//! its content and the previous entry's hash, and the chain's head is kept
//! apart, so `verify` finds an edited, deleted or truncated entry.

use std::collections::HashMap;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use sqlx::Row;

use crate::db::{Database, WriteTx};
use crate::time::now_millis;

/// Hash of the entry before the first.
const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Why the audit trail could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit storage error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("audit entry {seq} has unreadable details: {message}")]
    Corrupt { seq: i64, message: String },
    /// A checkpoint is never signed over a chain that does not verify.
    #[error("no checkpoint signed: {0}")]
    Tampered(String),
}

/// How often a node signs a checkpoint of the chain's head (when it moved).
pub const CHECKPOINT_INTERVAL: std::time::Duration = std::time::Duration::from_secs(300);

/// The format name of an exported set of checkpoints.
pub const CHECKPOINT_EXPORT_FORMAT: &str = "vtelehealth-audit-checkpoints/1";

/// A signed statement of the chain's head: entry `seq` had hash `hash` at
/// `at`. Signed with a key derived from the deployment's master key, kept
/// apart from the entries (`audit_checkpoints`) and exportable.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Checkpoint {
    pub seq: i64,
    pub hash: String,
    /// Milliseconds since the Unix epoch.
    pub at: i64,
    pub key_id: String,
    /// Base64 Ed25519 signature of [`Checkpoint::message`].
    pub signature: String,
}

impl Checkpoint {
    /// The signed bytes.
    pub fn message(seq: i64, hash: &str, at: i64) -> String {
        format!("vtelehealth audit checkpoint v1\n{seq}\n{hash}\n{at}")
    }

    /// Whether the signature is valid under the raw Ed25519 `public` key.
    pub fn signed_by(&self, public: &[u8]) -> bool {
        crate::secrets::verify_ed25519(
            public,
            Self::message(self.seq, &self.hash, self.at).as_bytes(),
            &self.signature,
        )
    }
}

/// Checkpoints in the export format (what an operator stores elsewhere and
/// gives back to `runtime audit verify --checkpoints`).
pub fn export_checkpoints(
    signer: &crate::secrets::PlatformSigner,
    checkpoints: &[Checkpoint],
) -> Value {
    json!({
        "format": CHECKPOINT_EXPORT_FORMAT,
        "algorithm": "ed25519",
        "key_id": signer.key_id,
        "public_key": signer.public_key_base64(),
        "checkpoints": checkpoints,
    })
}

/// What `verify` checks the chain against besides itself.
#[derive(Debug, Clone, Default)]
pub struct CheckpointCheck {
    /// The checkpoint key's raw Ed25519 public key; `None` checks the
    /// chain alone (and fails when there are checkpoints to check).
    pub public_key: Option<Vec<u8>>,
    /// Checkpoints kept elsewhere (an exported file): each must also be in
    /// the database.
    pub exported: Vec<Checkpoint>,
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

/// How long repeated refusals of one (caller, target, reason) fold into
/// one aggregate entry.
pub const REFUSAL_WINDOW_MS: i64 = 60_000;
/// Most refusal entries one caller causes per window (first refusals of
/// distinct targets and reasons); beyond it their refusals are only
/// counted, into one capped entry per window. With the aggregates that
/// follow, one caller writes at most `2 × this + 1` rows per window.
pub const REFUSAL_ROWS_PER_CALLER: u32 = 20;
/// Most (caller, target, reason) windows held in memory at once.
const REFUSAL_KEYS_MAX: usize = 10_000;

/// Folds repeated refusals into counts, per node: the first refusal of a
/// (caller, target, reason) in a window is written at once, the others of
/// that window become one aggregate entry when it ends.
#[derive(Default)]
pub struct RefusalLimiter {
    state: Mutex<LimiterState>,
}

#[derive(Default)]
struct LimiterState {
    /// Open windows by key (a digest of caller, action, target, hospital
    /// and details).
    windows: HashMap<[u8; 32], Folded>,
    /// Per caller: (window start, rows written in it).
    callers: HashMap<String, (i64, u32)>,
    /// Per caller: refusals beyond the caller's budget.
    capped: HashMap<String, Folded>,
    /// Aggregates of windows that closed while a new one opened.
    ready: Vec<AuditEvent>,
}

/// Refusals counted but not yet written.
struct Folded {
    event: AuditEvent,
    first_at: i64,
    last_at: i64,
    count: u64,
}

impl Folded {
    fn new(event: AuditEvent, now: i64, count: u64) -> Self {
        Self {
            event,
            first_at: now,
            last_at: now,
            count,
        }
    }

    /// The aggregate entry: the refusal's own fields, the count in
    /// `details.aggregate` (new fields only in the details: the chain's
    /// format is unchanged).
    fn into_event(self) -> AuditEvent {
        let mut event = self.event;
        let aggregate = json!({
            "count": self.count,
            "first_at": rfc3339(self.first_at),
            "last_at": rfc3339(self.last_at),
            "window_seconds": REFUSAL_WINDOW_MS / 1000,
        });
        match &mut event.details {
            Value::Object(d) => {
                d.insert("aggregate".into(), aggregate);
            }
            other => *other = json!({ "detail": other.clone(), "aggregate": aggregate }),
        }
        event
    }
}

impl RefusalLimiter {
    /// Whether `event` (a refusal at `now`) is written now; otherwise it
    /// is counted into an aggregate.
    pub fn admit(&self, event: &AuditEvent, now: i64) -> bool {
        let key: [u8; 32] = Sha256::digest(
            json!([
                event.actor,
                event.action,
                event.target,
                event.hospital_id,
                event.details
            ])
            .to_string()
            .as_bytes(),
        )
        .into();
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let st = &mut *state;
        if let Some(w) = st.windows.get_mut(&key) {
            if now < w.first_at.saturating_add(REFUSAL_WINDOW_MS) {
                w.count += 1;
                w.last_at = now;
                return false;
            }
            if let Some(w) = st.windows.remove(&key).filter(|w| w.count > 0) {
                st.ready.push(w.into_event());
            }
        }
        let budget = st.callers.entry(event.actor.clone()).or_insert((now, 0));
        if now >= budget.0.saturating_add(REFUSAL_WINDOW_MS) {
            *budget = (now, 0);
        }
        if budget.1 >= REFUSAL_ROWS_PER_CALLER || st.windows.len() >= REFUSAL_KEYS_MAX {
            match st.capped.get_mut(&event.actor) {
                Some(c) => {
                    c.count += 1;
                    c.last_at = now;
                }
                None => {
                    let summary = AuditEvent {
                        actor: event.actor.clone(),
                        action: event.action.clone(),
                        target: "*".into(),
                        hospital_id: None,
                        details: json!({ "reason": "refusals beyond the per-caller audit limit (various targets)", "capped": true }),
                    };
                    st.capped
                        .insert(event.actor.clone(), Folded::new(summary, now, 1));
                }
            }
            return false;
        }
        budget.1 += 1;
        st.windows.insert(key, Folded::new(event.clone(), now, 0));
        true
    }

    /// Aggregates due at `now` (windows that ended), or all of them.
    pub fn due(&self, now: i64, all: bool) -> Vec<AuditEvent> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let st = &mut *state;
        let ended = |w: &Folded| all || now >= w.first_at.saturating_add(REFUSAL_WINDOW_MS);
        let mut out = std::mem::take(&mut st.ready);
        let closed: Vec<[u8; 32]> = st
            .windows
            .iter()
            .filter(|(_, w)| ended(w))
            .map(|(k, _)| *k)
            .collect();
        for k in closed {
            if let Some(w) = st.windows.remove(&k).filter(|w| w.count > 0) {
                out.push(w.into_event());
            }
        }
        let closed: Vec<String> = st
            .capped
            .iter()
            .filter(|(_, w)| ended(w))
            .map(|(k, _)| k.clone())
            .collect();
        for k in closed {
            if let Some(w) = st.capped.remove(&k) {
                out.push(w.into_event());
            }
        }
        st.callers
            .retain(|_, (start, _)| !all && now < start.saturating_add(REFUSAL_WINDOW_MS));
        out
    }
}

/// The audit trail of one database.
#[derive(Clone)]
pub struct AuditLog {
    db: Database,
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

    /// Record a refusal (access denied, submission refused): the first of
    /// a (caller, target, reason) in [`REFUSAL_WINDOW_MS`] is written now,
    /// repeats are counted into one aggregate entry written when the window
    /// ends (by [`Self::flush_refusals`]); a caller's refusals beyond
    /// [`REFUSAL_ROWS_PER_CALLER`] per window are only counted. `None` when
    /// the refusal was counted, not written.
    pub async fn append_refusal(
        &self,
        event: AuditEvent,
    ) -> Result<Option<AuditEntry>, AuditError> {
        if self
            .db
            .extension::<RefusalLimiter>()
            .admit(&event, now_millis())
        {
            self.append(event).await.map(Some)
        } else {
            Ok(None)
        }
    }

    /// Write the aggregates of refusal windows that ended (all of them
    /// when `all`); returns how many entries were written.
    pub async fn flush_refusals(&self, all: bool) -> Result<usize, AuditError> {
        let due = self.db.extension::<RefusalLimiter>().due(now_millis(), all);
        let n = due.len();
        for event in due {
            self.append(event).await?;
        }
        Ok(n)
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

    /// Sign a checkpoint of the chain's head with `signer`, after checking
    /// the entries since the previous checkpoint; the existing one when the
    /// head has not moved.
    pub async fn checkpoint(
        &self,
        signer: &crate::secrets::PlatformSigner,
    ) -> Result<Checkpoint, AuditError> {
        let (head_seq, head_hash) = self.head().await?;
        let last = self.checkpoints().await?.pop();
        if let Some(last) = last.as_ref().filter(|c| c.seq == head_seq) {
            return Ok(last.clone());
        }
        // The segment since the previous checkpoint must link to it and
        // end at the head: a rebuilt chain is never signed.
        let (from_seq, mut expected_prev) = match &last {
            Some(c) => {
                if !c.signed_by(signer.public_key()) {
                    return Err(AuditError::Tampered(format!(
                        "the checkpoint of entry {} has an invalid signature",
                        c.seq
                    )));
                }
                (c.seq, c.hash.clone())
            }
            None => (0, GENESIS.to_owned()),
        };
        if from_seq > 0 {
            let at_checkpoint: Option<String> =
                sqlx::query_scalar("SELECT hash FROM audit_events WHERE seq = $1")
                    .bind(from_seq)
                    .fetch_optional(&self.db.pool)
                    .await?;
            if at_checkpoint.as_deref() != Some(expected_prev.as_str()) {
                return Err(AuditError::Tampered(format!(
                    "entry {from_seq} no longer matches its signed checkpoint"
                )));
            }
        }
        let rows = sqlx::query(
            "SELECT seq, at, actor, action, target, hospital_id, details, prev_hash, hash FROM audit_events \
             WHERE seq > $1 AND seq <= $2 ORDER BY seq",
        )
        .bind(from_seq)
        .bind(head_seq)
        .fetch_all(&self.db.pool)
        .await?;
        let mut expected_seq = from_seq + 1;
        for row in &rows {
            let entry = entry_from_row(row)?;
            if entry.seq != expected_seq
                || entry.prev_hash != expected_prev
                || entry.compute_hash() != entry.hash
            {
                return Err(AuditError::Tampered(format!(
                    "the chain does not verify at entry {expected_seq}"
                )));
            }
            expected_prev = entry.hash;
            expected_seq += 1;
        }
        if expected_seq - 1 != head_seq || expected_prev != head_hash {
            return Err(AuditError::Tampered(format!(
                "the chain does not end at the recorded head (entry {head_seq})"
            )));
        }
        let at = now_millis();
        let checkpoint = Checkpoint {
            seq: head_seq,
            signature: signer.sign(Checkpoint::message(head_seq, &head_hash, at).as_bytes()),
            hash: head_hash,
            at,
            key_id: signer.key_id.clone(),
        };
        // Two nodes checkpointing the same head: the first one stays.
        sqlx::query(
            "INSERT INTO audit_checkpoints (seq, hash, at, key_id, signature) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (seq) DO NOTHING",
        )
        .bind(checkpoint.seq)
        .bind(&checkpoint.hash)
        .bind(checkpoint.at)
        .bind(&checkpoint.key_id)
        .bind(&checkpoint.signature)
        .execute(&self.db.pool)
        .await?;
        Ok(self
            .checkpoints()
            .await?
            .into_iter()
            .find(|c| c.seq == head_seq)
            .unwrap_or(checkpoint))
    }

    /// Every stored checkpoint, oldest first.
    pub async fn checkpoints(&self) -> Result<Vec<Checkpoint>, AuditError> {
        let rows = sqlx::query(
            "SELECT seq, hash, at, key_id, signature FROM audit_checkpoints ORDER BY seq",
        )
        .fetch_all(&self.db.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Checkpoint {
                    seq: r.try_get("seq")?,
                    hash: r.try_get("hash")?,
                    at: r.try_get("at")?,
                    key_id: r.try_get("key_id")?,
                    signature: r.try_get("signature")?,
                })
            })
            .collect()
    }

    /// The recorded head: (seq, hash); (0, genesis) when empty.
    async fn head(&self) -> Result<(i64, String), AuditError> {
        let head = sqlx::query("SELECT seq, hash FROM audit_head WHERE id = 1")
            .fetch_optional(&self.db.pool)
            .await?;
        Ok(match head {
            Some(row) => (
                row.try_get::<i64, _>("seq")?,
                row.try_get::<String, _>("hash")?,
            ),
            None => (0, GENESIS.to_owned()),
        })
    }

    /// Recompute the whole chain and compare it with the stored head, then
    /// with every signed checkpoint (stored, and `check.exported`): a chain
    /// rebuilt after a deletion or edit no longer matches the checkpoints
    /// taken before, and the report names the entries between the last
    /// matching checkpoint and the first that does not.
    pub async fn verify_with(&self, check: &CheckpointCheck) -> Result<VerifyReport, AuditError> {
        // Checkpoints first: each then covers entries already committed
        // when the chain is read, so a concurrent append is no false alarm.
        let stored = self.checkpoints().await?;
        let (report, hashes) = self.verify_chain().await?;
        if !report.ok {
            return Ok(report);
        }
        let fail = |problem: String| VerifyReport {
            entries: report.entries,
            ok: false,
            problem: Some(problem),
        };
        let mut all: std::collections::BTreeMap<i64, Checkpoint> =
            stored.iter().map(|c| (c.seq, c.clone())).collect();
        // Exported checkpoints the database lost are checked all the same.
        let mut deleted = Vec::new();
        for c in &check.exported {
            match all.get(&c.seq) {
                Some(s) if s == c => {}
                Some(_) => {
                    return Ok(fail(format!(
                        "the stored checkpoint of entry {} differs from the exported copy: checkpoint rows were edited",
                        c.seq
                    )));
                }
                None => {
                    deleted.push(c.seq.to_string());
                    all.insert(c.seq, c.clone());
                }
            }
        }
        let deleted = (!deleted.is_empty()).then(|| {
            format!(
                "the checkpoints of entries {} are in the exported copy but missing from the database: checkpoint rows were deleted",
                deleted.join(", ")
            )
        });
        if all.is_empty() {
            return Ok(report);
        }
        let Some(public) = &check.public_key else {
            return Ok(fail(format!(
                "{} checkpoints cannot be checked without the checkpoint key (the master key or its public key)",
                all.len()
            )));
        };
        let mut last_good = 0;
        for c in all.values() {
            if !c.signed_by(public) {
                return Ok(fail(format!(
                    "the checkpoint of entry {} has an invalid signature: it was forged or edited",
                    c.seq
                )));
            }
            let range = format!("entries {} to {}", last_good + 1, c.seq);
            let problem = match usize::try_from(c.seq - 1).ok().and_then(|i| hashes.get(i)) {
                _ if c.seq == 0 => None,
                Some(h) if *h == c.hash => None,
                Some(_) => Some(format!(
                    "the chain was rewritten in {range}: entry {} does not match the checkpoint signed {} (entries deleted or edited, and the chain rebuilt)",
                    c.seq,
                    rfc3339(c.at)
                )),
                None => Some(format!(
                    "the chain was rewritten in {range}: it ends at entry {} but the checkpoint signed {} covers entry {} (entries deleted and the chain rebuilt)",
                    hashes.len(),
                    rfc3339(c.at),
                    c.seq
                )),
            };
            if let Some(problem) = problem {
                return Ok(fail(match &deleted {
                    Some(d) => format!("{problem}; {d}"),
                    None => problem,
                }));
            }
            last_good = c.seq;
        }
        Ok(match deleted {
            Some(d) => fail(d),
            None => report,
        })
    }

    /// Recompute the whole chain and compare it with the stored head
    /// (stored checkpoints are not checked: see [`Self::verify_with`]).
    pub async fn verify(&self) -> Result<VerifyReport, AuditError> {
        Ok(self.verify_chain().await?.0)
    }

    /// The chain's report and, when it verifies, each entry's hash (index
    /// `seq - 1`).
    async fn verify_chain(&self) -> Result<(VerifyReport, Vec<String>), AuditError> {
        let rows = sqlx::query(
            "SELECT seq, at, actor, action, target, hospital_id, details, prev_hash, hash FROM audit_events ORDER BY seq",
        )
        .fetch_all(&self.db.pool)
        .await?;
        let mut expected_prev = GENESIS.to_owned();
        let mut expected_seq = 1;
        let mut hashes = Vec::with_capacity(rows.len());
        let fail = |entries, problem: String| {
            (
                VerifyReport {
                    entries,
                    ok: false,
                    problem: Some(problem),
                },
                Vec::new(),
            )
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
            hashes.push(entry.hash.clone());
            expected_prev = entry.hash;
            expected_seq += 1;
        }
        let (head_seq, head_hash) = self.head().await?;
        if head_seq != expected_seq - 1 || head_hash != expected_prev {
            return Ok(fail(
                rows.len() as i64,
                format!(
                    "the chain ends at entry {} but the recorded head is entry {head_seq}: entries were removed",
                    expected_seq - 1
                ),
            ));
        }
        Ok((
            VerifyReport {
                entries: rows.len() as i64,
                ok: true,
                problem: None,
            },
            hashes,
        ))
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

    fn refusal(target: &str) -> AuditEvent {
        AuditEvent {
            actor: "bs-b".into(),
            action: "access.denied".into(),
            target: target.into(),
            hospital_id: Some("bv-a".into()),
            details: json!({ "reason": "cross-hospital plugin call" }),
        }
    }

    #[test]
    fn refusals_fold_per_window_and_per_caller() {
        let l = RefusalLimiter::default();
        let t0 = 1_000_000;
        // The first of a window is written, the next 499 counted.
        assert!(l.admit(&refusal("plugin:hello"), t0));
        for i in 0..499 {
            assert!(!l.admit(&refusal("plugin:hello"), t0 + i));
        }
        assert!(l.due(t0 + REFUSAL_WINDOW_MS - 1, false).is_empty());
        let due = l.due(t0 + REFUSAL_WINDOW_MS, false);
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].details["aggregate"]["count"], 499);
        assert_eq!(due[0].details["reason"], "cross-hospital plugin call");
        assert_eq!(due[0].target, "plugin:hello");
        // A new window writes its first refusal again; a window that ended
        // before the next refusal still yields its aggregate.
        let t1 = t0 + 2 * REFUSAL_WINDOW_MS;
        assert!(l.admit(&refusal("plugin:hello"), t1));
        assert!(!l.admit(&refusal("plugin:hello"), t1 + 1));
        assert!(l.admit(&refusal("plugin:hello"), t1 + REFUSAL_WINDOW_MS));
        let due = l.due(t1 + REFUSAL_WINDOW_MS, false);
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].details["aggregate"]["count"], 1);
        // A window with no repeats needs no aggregate.
        assert!(l.due(t1 + 3 * REFUSAL_WINDOW_MS, false).is_empty());

        // Distinct targets: at most the caller's budget is written.
        let l = RefusalLimiter::default();
        let written = (0..100)
            .filter(|n| l.admit(&refusal(&format!("plugin:p{n}")), t0))
            .count();
        assert_eq!(written, REFUSAL_ROWS_PER_CALLER as usize);
        // Another caller has a budget of its own.
        let mut other = refusal("plugin:p0");
        other.actor = "bs-c".into();
        assert!(l.admit(&other, t0));
        let due = l.due(t0, true);
        assert_eq!(due.len(), 1, "{due:?}");
        assert_eq!(due[0].target, "*");
        assert_eq!(due[0].details["aggregate"]["count"], 80);
    }

    #[tokio::test]
    async fn checkpoints_are_signed_only_over_a_chain_that_verifies() {
        let dir = tempfile::TempDir::new().unwrap();
        let (db, audit) = log(&dir).await;
        let master = crate::secrets::MasterKey::ephemeral().unwrap();
        let signer = master.audit_checkpoint_signer().unwrap();
        let check = CheckpointCheck {
            public_key: Some(signer.public_key().to_vec()),
            exported: Vec::new(),
        };
        for n in 0..5 {
            audit.append(event(n)).await.unwrap();
        }
        let first = audit.checkpoint(&signer).await.unwrap();
        assert_eq!(first.seq, 5);
        assert!(first.signed_by(signer.public_key()));
        assert_eq!(audit.checkpoint(&signer).await.unwrap(), first);
        for n in 5..8 {
            audit.append(event(n)).await.unwrap();
        }
        assert!(audit.verify_with(&check).await.unwrap().ok);
        // Without a key, checkpoints cannot be checked: not ok.
        let unchecked = audit
            .verify_with(&CheckpointCheck::default())
            .await
            .unwrap();
        assert!(!unchecked.ok);
        // Another deployment's key does not verify them.
        let stranger = crate::secrets::MasterKey::ephemeral().unwrap();
        let report = audit
            .verify_with(&CheckpointCheck {
                public_key: Some(
                    stranger
                        .audit_checkpoint_signer()
                        .unwrap()
                        .public_key()
                        .to_vec(),
                ),
                exported: Vec::new(),
            })
            .await
            .unwrap();
        assert!(report.problem.unwrap().contains("invalid signature"));

        // Entry 2 edited and the chain rebuilt from there on.
        sqlx::query("UPDATE audit_events SET actor = 'mallory' WHERE seq = 2")
            .execute(&db.pool)
            .await
            .unwrap();
        let rows = sqlx::query(
            "SELECT seq, at, actor, action, target, hospital_id, details, prev_hash, hash FROM audit_events ORDER BY seq",
        )
        .fetch_all(&db.pool)
        .await
        .unwrap();
        let mut prev = GENESIS.to_owned();
        for row in &rows {
            let mut e = entry_from_row(row).unwrap();
            e.prev_hash = prev;
            e.hash = e.compute_hash();
            sqlx::query("UPDATE audit_events SET prev_hash = $1, hash = $2 WHERE seq = $3")
                .bind(&e.prev_hash)
                .bind(&e.hash)
                .bind(e.seq)
                .execute(&db.pool)
                .await
                .unwrap();
            prev = e.hash;
        }
        sqlx::query("UPDATE audit_head SET hash = $1 WHERE id = 1")
            .bind(&prev)
            .execute(&db.pool)
            .await
            .unwrap();
        assert!(audit.verify().await.unwrap().ok, "the chain alone verifies");
        let report = audit.verify_with(&check).await.unwrap();
        assert!(
            report
                .problem
                .unwrap()
                .contains("rewritten in entries 1 to 5: entry 5 does not match"),
        );
        assert!(matches!(
            audit.checkpoint(&signer).await,
            Err(AuditError::Tampered(_))
        ));
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
