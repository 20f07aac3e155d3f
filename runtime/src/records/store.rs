//! The records store: create, read, vread, update, history and search of
//! FHIR resources in `fhir_resources`, `fhir_history` and
//! `fhir_search_index`, with the owning hospital's access rule and the
//! audit trail.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value, json};
use sqlx::Row;
use sqlx::any::AnyRow;

use super::access::{self, AccessEntry, Basis, PatientKeys};
use super::scopes::Purpose;
use super::validate::{self, IndexEntries, Reference};
use super::{BHYT_SYSTEM, CCCD_SYSTEM, RecordError, ResourceType, date_range};
use crate::audit::{AuditEvent, AuditLog, rfc3339};
use crate::db::{Database, WriteTx};

/// How the caller reaches records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActorKind {
    /// A practitioner or admin of `hospital_id`: that hospital's records,
    /// and another's with the patient's consent or a consultation.
    Staff,
    /// An integration acting for `hospital_id` (a service client, or a
    /// plugin's `system/` scope): that hospital's records only.
    System,
    /// A citizen: only records of `hospital_id` about themselves.
    Citizen(PatientKeys),
}

/// Who acts on the records, for which hospital and why.
#[derive(Debug, Clone)]
pub struct Actor {
    pub subject: String,
    /// Display name, for the citizen's access log.
    pub name: Option<String>,
    pub hospital_id: String,
    pub kind: ActorKind,
    pub purpose: Purpose,
    /// The plugin acting, when the call comes through one.
    pub plugin: Option<String>,
}

impl Actor {
    /// Staff of `hospital_id` acting for treatment, outside any plugin.
    pub fn staff(subject: impl Into<String>, hospital_id: impl Into<String>) -> Self {
        Self {
            subject: subject.into(),
            name: None,
            hospital_id: hospital_id.into(),
            kind: ActorKind::Staff,
            purpose: Purpose::Treatment,
            plugin: None,
        }
    }
}

/// A filter on the resources a call may see (a plugin's scope constraints).
pub type Admit<'a> = Option<&'a (dyn Fn(&Value) -> bool + Send + Sync)>;

/// One stored version of a resource.
#[derive(Debug, Clone)]
pub struct Stored {
    pub resource_type: ResourceType,
    pub id: String,
    pub version_id: i64,
    /// Milliseconds since the epoch.
    pub last_updated: i64,
    pub hospital_id: String,
    /// The patient it is about, `Patient/<id>`.
    pub patient_ref: Option<String>,
    /// The resource, `id` and `meta` included.
    pub resource: Value,
}

/// One page of search results.
#[derive(Debug, Clone)]
pub struct Page {
    pub total: i64,
    pub entries: Vec<Stored>,
    /// The offset of the next page, when there is one.
    pub next_offset: Option<i64>,
}

/// Default and largest `_count`.
pub const DEFAULT_COUNT: i64 = 20;
pub const MAX_COUNT: i64 = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Prefix {
    Eq,
    Ge,
    Le,
    Gt,
    Lt,
}

/// A parsed search: every criterion must hold.
#[derive(Debug, Clone, Default)]
pub struct SearchQuery {
    ids: Vec<String>,
    patients: Vec<String>,
    /// `patient.identifier`: (system, value) of the patient's identifier.
    patient_identifiers: Vec<(Option<String>, String)>,
    /// (system, value); `None` system matches any.
    identifiers: Vec<(Option<String>, String)>,
    codes: Vec<(Option<String>, String)>,
    dates: Vec<(Prefix, i64, i64)>,
    last_updated: Vec<(Prefix, i64, i64)>,
    pub count: i64,
    pub offset: i64,
}

fn token(v: &str) -> (Option<String>, String) {
    match v.split_once('|') {
        Some((s, c)) => (Some(s.to_owned()), c.to_owned()),
        None => (None, v.to_owned()),
    }
}

fn prefixed_date(name: &str, v: &str) -> Result<(Prefix, i64, i64), RecordError> {
    // `>=`, `<=`, `>`, `<` are the pre-R4 comparators that clients such as
    // SMART's fhirclient (`$gte`, `$lte`…) still send; they mean the same.
    let (prefix, rest) = match (v.get(..2), v.get(..1)) {
        (Some("eq"), _) => (Prefix::Eq, &v[2..]),
        (Some("ge" | ">="), _) => (Prefix::Ge, &v[2..]),
        (Some("le" | "<="), _) => (Prefix::Le, &v[2..]),
        (Some("gt"), _) => (Prefix::Gt, &v[2..]),
        (Some("lt"), _) => (Prefix::Lt, &v[2..]),
        (_, Some(">")) => (Prefix::Gt, &v[1..]),
        (_, Some("<")) => (Prefix::Lt, &v[1..]),
        _ => (Prefix::Eq, v),
    };
    let (lo, hi) = date_range(rest).ok_or_else(|| {
        RecordError::BadSearch(format!(
            "{name}={v}: expected [eq|ge|le|gt|lt] followed by a FHIR date or dateTime"
        ))
    })?;
    Ok((prefix, lo, hi))
}

fn number(name: &str, v: &str, max: i64) -> Result<i64, RecordError> {
    v.parse::<i64>()
        .ok()
        .filter(|n| (0..=max).contains(n))
        .ok_or_else(|| RecordError::BadSearch(format!("{name} must be a number from 0 to {max}")))
}

impl SearchQuery {
    /// Also require a code or category `token` (`code` or `system|code`).
    pub fn require_code(&mut self, token_text: &str) {
        self.codes.push(token(token_text));
    }

    /// Parse query parameters. Unknown parameters are refused, so a
    /// misspelt one never silently widens a search.
    pub fn parse<'a>(
        params: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, RecordError> {
        let mut q = SearchQuery {
            count: DEFAULT_COUNT,
            ..Default::default()
        };
        for (name, v) in params {
            match name {
                "_id" => q.ids.push(v.to_owned()),
                "patient" | "subject" => {
                    let p = if v.contains('/') {
                        v.to_owned()
                    } else {
                        format!("Patient/{v}")
                    };
                    if !p.starts_with("Patient/") {
                        return Err(RecordError::BadSearch(format!(
                            "{name}={v}: expected a Patient id or Patient/<id>"
                        )));
                    }
                    q.patients.push(p);
                }
                "patient.identifier" | "subject.identifier" => q.patient_identifiers.push(token(v)),
                "identifier" => q.identifiers.push(token(v)),
                "code" => q.codes.push(token(v)),
                "date" => q.dates.push(prefixed_date(name, v)?),
                "_lastUpdated" => q.last_updated.push(prefixed_date(name, v)?),
                "_count" => q.count = number(name, v, MAX_COUNT)?,
                "_offset" => q.offset = number(name, v, i64::from(i32::MAX))?,
                "_format" | "_pretty" => {}
                other => {
                    return Err(RecordError::BadSearch(format!(
                        "unsupported search parameter `{other}` (supported: _id, patient, subject, patient.identifier, subject.identifier, identifier, code, date, _lastUpdated, _count, _offset)"
                    )));
                }
            }
        }
        Ok(q)
    }
}

enum Bind {
    Text(String),
    Int(i64),
}

/// The records of one database.
#[derive(Clone)]
pub struct RecordStore {
    db: Database,
}

use crate::time::now_millis;

const COLUMNS: &str =
    "resource_type, id, version_id, last_updated, hospital_id, patient_ref, content";

fn stored_from_row(row: &AnyRow) -> Result<Stored, RecordError> {
    let rt: String = row.try_get("resource_type")?;
    let content: String = row.try_get("content")?;
    Ok(Stored {
        resource_type: rt.parse()?,
        id: row.try_get("id")?,
        version_id: row.try_get("version_id")?,
        last_updated: row.try_get("last_updated")?,
        hospital_id: row.try_get("hospital_id")?,
        patient_ref: row.try_get("patient_ref")?,
        resource: serde_json::from_str(&content).map_err(|e| RecordError::Invalid {
            path: "stored".into(),
            message: format!("stored resource is unreadable: {e}"),
        })?,
    })
}

/// A write inside a transaction, before its references are resolved.
pub(crate) struct Written {
    pub stored: Stored,
    pub refs: Vec<Reference>,
    pub created: bool,
}

/// Validate and insert a new resource as version 1 within `tx`, audited.
/// References are not resolved here.
pub(crate) async fn insert_in(
    tx: &mut WriteTx,
    actor: &Actor,
    rt: ResourceType,
    id: &str,
    mut resource: Map<String, Value>,
    now: i64,
) -> Result<Written, RecordError> {
    stamp(&mut resource, id, 1, now);
    let (refs, index) = validate::validate(rt, &resource)?;
    let content = Value::Object(resource);
    let text = content.to_string();
    sqlx::query(
        "INSERT INTO fhir_resources (resource_type, id, version_id, last_updated, hospital_id, patient_ref, content) \
         VALUES ($1, $2, 1, $3, $4, $5, $6)",
    )
    .bind(rt.as_str())
    .bind(id)
    .bind(now)
    .bind(&actor.hospital_id)
    .bind(&index.patient)
    .bind(&text)
    .execute(&mut *tx.tx)
    .await?;
    write_version(tx, actor, rt, id, 1, now, &index, &text).await?;
    AuditLog::append_in(tx, write_event(actor, "records.created", rt, id, 1, &index)).await?;
    Ok(Written {
        stored: Stored {
            resource_type: rt,
            id: id.to_owned(),
            version_id: 1,
            last_updated: now,
            hospital_id: actor.hospital_id.clone(),
            patient_ref: index.patient,
            resource: content,
        },
        refs,
        created: true,
    })
}

fn write_event(
    actor: &Actor,
    action: &str,
    rt: ResourceType,
    id: &str,
    version: i64,
    index: &IndexEntries,
) -> AuditEvent {
    let mut details = json!({ "version": version, "patient": index.patient });
    if let Some(plugin) = &actor.plugin {
        details["plugin"] = json!(plugin);
        details["purpose"] = json!(actor.purpose.as_str());
    }
    AuditEvent {
        actor: actor.subject.clone(),
        action: action.into(),
        target: format!("{rt}/{id}"),
        hospital_id: Some(actor.hospital_id.clone()),
        details,
    }
}

/// How [`replace_in`] ended when it wrote nothing.
pub(crate) enum NotReplaced {
    /// The resource belongs to this other hospital.
    OwnedBy(String),
    Error(RecordError),
}

impl From<RecordError> for NotReplaced {
    fn from(e: RecordError) -> Self {
        Self::Error(e)
    }
}

impl From<sqlx::Error> for NotReplaced {
    fn from(e: sqlx::Error) -> Self {
        Self::Error(e.into())
    }
}

/// Validate and write a new version of an existing resource within `tx`,
/// audited. References are not resolved here.
pub(crate) async fn replace_in(
    tx: &mut WriteTx,
    actor: &Actor,
    rt: ResourceType,
    id: &str,
    mut resource: Map<String, Value>,
    if_match: Option<i64>,
    now: i64,
) -> Result<Written, NotReplaced> {
    match resource.get("id").and_then(Value::as_str) {
        Some(body_id) if body_id == id => {}
        Some(body_id) => {
            return Err(RecordError::Invalid {
                path: format!("{rt}.id"),
                message: format!("the body's id `{body_id}` differs from the URL's `{id}`"),
            }
            .into());
        }
        None => {
            return Err(RecordError::Invalid {
                path: format!("{rt}.id"),
                message: "an update must carry the resource's id".into(),
            }
            .into());
        }
    }
    // Validate with a placeholder version; the real one is known below.
    stamp(&mut resource, id, 0, now);
    let (refs, index) = validate::validate(rt, &resource)?;
    // A write first: it locks the row (PostgreSQL) before it is read.
    let row = sqlx::query(
        "UPDATE fhir_resources SET version_id = version_id WHERE resource_type = $1 AND id = $2 \
         RETURNING version_id, hospital_id",
    )
    .bind(rt.as_str())
    .bind(id)
    .fetch_optional(&mut *tx.tx)
    .await?;
    let Some(row) = row else {
        return Err(RecordError::NotFound(format!("{rt}/{id}")).into());
    };
    let (current, owner): (i64, String) = (row.try_get("version_id")?, row.try_get("hospital_id")?);
    if owner != actor.hospital_id {
        return Err(NotReplaced::OwnedBy(owner));
    }
    if let Some(expected) = if_match
        && expected != current
    {
        return Err(RecordError::VersionConflict {
            target: format!("{rt}/{id}"),
            expected,
            current,
        }
        .into());
    }
    let version = current + 1;
    stamp(&mut resource, id, version, now);
    let content = Value::Object(resource);
    let text = content.to_string();
    sqlx::query(
        "UPDATE fhir_resources SET version_id = $1, last_updated = $2, patient_ref = $3, content = $4 \
         WHERE resource_type = $5 AND id = $6",
    )
    .bind(version)
    .bind(now)
    .bind(&index.patient)
    .bind(&text)
    .bind(rt.as_str())
    .bind(id)
    .execute(&mut *tx.tx)
    .await?;
    sqlx::query("DELETE FROM fhir_search_index WHERE resource_type = $1 AND id = $2")
        .bind(rt.as_str())
        .bind(id)
        .execute(&mut *tx.tx)
        .await?;
    write_version(tx, actor, rt, id, version, now, &index, &text).await?;
    AuditLog::append_in(
        tx,
        write_event(actor, "records.updated", rt, id, version, &index),
    )
    .await
    .map_err(RecordError::from)?;
    Ok(Written {
        stored: Stored {
            resource_type: rt,
            id: id.to_owned(),
            version_id: version,
            last_updated: now,
            hospital_id: actor.hospital_id.clone(),
            patient_ref: index.patient,
            resource: content,
        },
        refs,
        created: false,
    })
}

/// The decision on one resource a reader found.
enum Seen {
    /// Readable, on this basis; `None` when nothing needs logging (a
    /// citizen reading their own record).
    Allowed(Option<Basis>),
    Denied,
}

impl RecordStore {
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    pub fn database(&self) -> &Database {
        &self.db
    }

    /// Create a resource with a server-assigned id, as version 1.
    pub async fn create(
        &self,
        actor: &Actor,
        rt: ResourceType,
        resource: Map<String, Value>,
    ) -> Result<Stored, RecordError> {
        if matches!(actor.kind, ActorKind::Citizen(_)) {
            return Err(RecordError::Forbidden(
                "citizens do not write hospital records".into(),
            ));
        }
        let id = uuid::Uuid::now_v7().to_string();
        let mut tx = self.db.begin_write().await?;
        let written = insert_in(&mut tx, actor, rt, &id, resource, now_millis()).await?;
        resolve(&mut tx, &actor.hospital_id, &written.refs).await?;
        tx.commit().await?;
        Ok(written.stored)
    }

    /// Replace a resource's content as a new version; `if_match` names the
    /// version the caller last saw.
    pub async fn update(
        &self,
        actor: &Actor,
        rt: ResourceType,
        id: &str,
        resource: Map<String, Value>,
        if_match: Option<i64>,
    ) -> Result<Stored, RecordError> {
        if matches!(actor.kind, ActorKind::Citizen(_)) {
            return Err(RecordError::Forbidden(
                "citizens do not write hospital records".into(),
            ));
        }
        let mut tx = self.db.begin_write().await?;
        match replace_in(&mut tx, actor, rt, id, resource, if_match, now_millis()).await {
            Ok(written) => {
                resolve(&mut tx, &actor.hospital_id, &written.refs).await?;
                tx.commit().await?;
                Ok(written.stored)
            }
            Err(NotReplaced::Error(e)) => Err(e),
            Err(NotReplaced::OwnedBy(owner)) => {
                drop(tx);
                Err(self
                    .deny(actor, &format!("{rt}/{id}"), &owner, "update")
                    .await)
            }
        }
    }

    /// Record a refused access in the audit trail; the error to return.
    pub(crate) async fn deny(
        &self,
        actor: &Actor,
        target: &str,
        owner: &str,
        interaction: &str,
    ) -> RecordError {
        let event = AuditEvent {
            actor: actor.subject.clone(),
            action: "records.access_denied".into(),
            target: target.to_owned(),
            hospital_id: Some(owner.to_owned()),
            details: json!({
                "caller_hospital": actor.hospital_id,
                "interaction": interaction,
                "purpose": actor.purpose.as_str(),
                "plugin": actor.plugin,
                "reason": "the record belongs to another hospital and no consent or consultation grants access",
            }),
        };
        if let Err(e) = AuditLog::new(self.db.clone()).append_refusal(event).await {
            return e.into();
        }
        RecordError::Forbidden(format!(
            "{target} belongs to another hospital; reading it needs the patient's active consent for {} or an active consultation between the two hospitals",
            actor.purpose.describe()
        ))
    }

    /// Decide, for each resource found, whether `actor` may see it, and log
    /// the reads of citizens' records (cross-hospital ones also in the
    /// audit trail). Returns one flag per resource.
    async fn authorize(
        &self,
        actor: &Actor,
        found: &[Stored],
        interaction: &str,
        log_partial: bool,
    ) -> Result<Vec<bool>, RecordError> {
        // One query for the identifiers of every patient on the page.
        let refs: Vec<&str> = found
            .iter()
            .filter_map(|s| s.patient_ref.as_deref())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let keys_of = access::patient_keys_of(&self.db, &refs).await?;
        let mut decisions = Vec::with_capacity(found.len());
        // (owner, keys, basis) -> targets
        let mut groups: BTreeMap<(String, PatientKeys, String), (Basis, Vec<String>)> =
            BTreeMap::new();
        for s in found {
            let keys = s
                .patient_ref
                .as_ref()
                .and_then(|p| keys_of.get(p))
                .cloned()
                .unwrap_or_default();
            let own = s.hospital_id == actor.hospital_id;
            let seen = match &actor.kind {
                ActorKind::Citizen(mine) if own && keys.matches(mine) => Seen::Allowed(None),
                ActorKind::Citizen(_) => Seen::Denied,
                _ if own => Seen::Allowed(Some(Basis::OwnHospital)),
                ActorKind::System => Seen::Denied,
                ActorKind::Staff => match access::cross_hospital_basis(
                    &self.db,
                    &actor.hospital_id,
                    &s.hospital_id,
                    &keys,
                    actor.purpose,
                )
                .await?
                {
                    Some(b) => Seen::Allowed(Some(b)),
                    None => Seen::Denied,
                },
            };
            match seen {
                Seen::Allowed(Some(basis)) if !keys.is_empty() => {
                    groups
                        .entry((s.hospital_id.clone(), keys, basis.as_text()))
                        .or_insert_with(|| (basis, Vec::new()))
                        .1
                        .push(format!("{}/{}", s.resource_type, s.id));
                    decisions.push(true);
                }
                Seen::Allowed(_) => decisions.push(true),
                Seen::Denied => decisions.push(false),
            }
        }
        // A read refused as a whole shows nothing, so nothing is logged.
        if groups.is_empty() || (!log_partial && decisions.contains(&false)) {
            return Ok(decisions);
        }
        let mut tx = self.db.begin_write().await?;
        for ((owner, keys, _), (basis, targets)) in groups {
            let cross = basis != Basis::OwnHospital;
            let entry = AccessEntry {
                keys,
                reader_subject: actor.subject.clone(),
                reader_name: actor.name.clone(),
                reader_hospital: Some(actor.hospital_id.clone()),
                owner_hospital: owner.clone(),
                plugin_id: actor.plugin.clone(),
                interaction: interaction.to_owned(),
                targets,
                purpose: actor.purpose,
                basis,
            };
            access::log_access(&mut tx, &entry).await?;
            if cross {
                AuditLog::append_in(
                    &mut tx,
                    AuditEvent {
                        actor: actor.subject.clone(),
                        action: "records.cross_hospital_read".into(),
                        target: entry.targets.join(","),
                        hospital_id: Some(owner),
                        details: json!({
                            "caller_hospital": actor.hospital_id,
                            "interaction": interaction,
                            "purpose": actor.purpose.as_str(),
                            "basis": entry.basis.as_text(),
                            "plugin": actor.plugin,
                        }),
                    },
                )
                .await?;
            }
        }
        tx.commit().await?;
        Ok(decisions)
    }

    /// Allow one resource or fail, auditing a refusal.
    async fn authorize_one(
        &self,
        actor: &Actor,
        s: &Stored,
        interaction: &str,
        admit: Admit<'_>,
    ) -> Result<(), RecordError> {
        self.authorize_all(actor, std::slice::from_ref(s), interaction)
            .await?;
        // After the tenancy check, so that "outside the scope" never tells a
        // plugin anything about another hospital's records.
        if let Some(admit) = admit
            && !admit(&s.resource)
        {
            return Err(RecordError::Forbidden(format!(
                "{}/{} is outside the plugin's data scope",
                s.resource_type, s.id
            )));
        }
        Ok(())
    }

    /// Allow every resource of `found` or fail, auditing a refusal.
    async fn authorize_all(
        &self,
        actor: &Actor,
        found: &[Stored],
        interaction: &str,
    ) -> Result<(), RecordError> {
        let ok = self.authorize(actor, found, interaction, false).await?;
        let Some(s) = found.iter().zip(&ok).find(|(_, ok)| !**ok).map(|(s, _)| s) else {
            return Ok(());
        };
        if let ActorKind::Citizen(_) = actor.kind {
            return Err(RecordError::Forbidden(format!(
                "{}/{} is not about you",
                s.resource_type, s.id
            )));
        }
        Err(self
            .deny(
                actor,
                &format!("{}/{}", s.resource_type, s.id),
                &s.hospital_id,
                interaction,
            )
            .await)
    }

    /// The current version, unchecked: for the host's own checks only.
    pub(crate) async fn current(
        &self,
        rt: ResourceType,
        id: &str,
    ) -> Result<Option<Stored>, RecordError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM fhir_resources WHERE resource_type = $1 AND id = $2"
        )))
        .bind(rt.as_str())
        .bind(id)
        .fetch_optional(&self.db.pool)
        .await?;
        row.as_ref().map(stored_from_row).transpose()
    }

    /// The current version, if the caller may see it.
    pub async fn read(
        &self,
        actor: &Actor,
        rt: ResourceType,
        id: &str,
    ) -> Result<Stored, RecordError> {
        self.read_scoped(actor, rt, id, None).await
    }

    /// [`read`](Self::read), also requiring `admit` of the resource.
    pub async fn read_scoped(
        &self,
        actor: &Actor,
        rt: ResourceType,
        id: &str,
        admit: Admit<'_>,
    ) -> Result<Stored, RecordError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM fhir_resources WHERE resource_type = $1 AND id = $2"
        )))
        .bind(rt.as_str())
        .bind(id)
        .fetch_optional(&self.db.pool)
        .await?
        .ok_or_else(|| RecordError::NotFound(format!("{rt}/{id}")))?;
        let stored = stored_from_row(&row)?;
        self.authorize_one(actor, &stored, "read", admit).await?;
        Ok(stored)
    }

    /// One version, if the caller may see the resource.
    pub async fn vread(
        &self,
        actor: &Actor,
        rt: ResourceType,
        id: &str,
        version: i64,
    ) -> Result<Stored, RecordError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM fhir_history WHERE resource_type = $1 AND id = $2 AND version_id = $3"
        )))
        .bind(rt.as_str())
        .bind(id)
        .bind(version)
        .fetch_optional(&self.db.pool)
        .await?
        .ok_or_else(|| RecordError::NotFound(format!("{rt}/{id}/_history/{version}")))?;
        let stored = stored_from_row(&row)?;
        self.authorize_one(actor, &stored, "vread", None).await?;
        Ok(stored)
    }

    /// Every version, newest first.
    pub async fn history(
        &self,
        actor: &Actor,
        rt: ResourceType,
        id: &str,
    ) -> Result<Vec<Stored>, RecordError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM fhir_history WHERE resource_type = $1 AND id = $2 ORDER BY version_id DESC"
        )))
        .bind(rt.as_str())
        .bind(id)
        .fetch_all(&self.db.pool)
        .await?;
        let versions = rows
            .iter()
            .map(stored_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        if versions.is_empty() {
            return Err(RecordError::NotFound(format!("{rt}/{id}")));
        }
        // Every version: an old one may be about another patient (a record
        // filed under the wrong patient and corrected since).
        self.authorize_all(actor, &versions, "history").await?;
        Ok(versions)
    }

    /// Resources of `rt` matching `q` that the caller may see, oldest
    /// change first. Without a `patient.identifier` criterion only the
    /// caller's hospital is searched; with one naming a citizen ID or health
    /// ID, also the hospitals a consent or consultation opens for it.
    pub async fn search(
        &self,
        actor: &Actor,
        rt: ResourceType,
        q: &SearchQuery,
    ) -> Result<Page, RecordError> {
        self.search_scoped(actor, rt, q, None).await
    }

    /// [`search`](Self::search), keeping only resources `admit` accepts.
    pub async fn search_scoped(
        &self,
        actor: &Actor,
        rt: ResourceType,
        q: &SearchQuery,
        admit: Admit<'_>,
    ) -> Result<Page, RecordError> {
        let mut binds = vec![Bind::Text(rt.as_str().into())];
        // SQLite has no statistics (nothing runs ANALYZE), so on a patient
        // search it may walk every resource of the type by date instead of
        // the patient index (10x slower at 20k resources, see
        // docs/benchmarks.md); `|| ''` keeps the type out of index choice.
        let by_patient = !q.patients.is_empty()
            || !q.patient_identifiers.is_empty()
            || matches!(actor.kind, ActorKind::Citizen(_));
        let type_clause = if by_patient {
            "r.resource_type || '' = $1"
        } else {
            "r.resource_type = $1"
        };
        let mut clauses = vec![type_clause.to_owned()];
        let bind = |b: Bind, binds: &mut Vec<Bind>| {
            binds.push(b);
            format!("${}", binds.len())
        };
        // Which hospitals' records the search reaches.
        let mut hospitals = Some(vec![actor.hospital_id.clone()]);
        if actor.kind == ActorKind::Staff {
            for (system, value) in &q.patient_identifiers {
                let keys = PatientKeys {
                    national_id: (system.as_deref().is_none_or(|s| s == CCCD_SYSTEM))
                        .then(|| value.clone()),
                    health_id: (system.as_deref().is_none_or(|s| s == BHYT_SYSTEM))
                        .then(|| value.clone()),
                };
                match access::readable_hospitals(&self.db, &actor.hospital_id, &keys, actor.purpose)
                    .await?
                {
                    None => hospitals = None,
                    Some(more) => {
                        if let Some(h) = hospitals.as_mut() {
                            h.extend(more);
                        }
                    }
                }
            }
        }
        if let Some(hospitals) = hospitals {
            let list: Vec<String> = hospitals
                .into_iter()
                .collect::<BTreeSet<_>>()
                .into_iter()
                .map(|h| bind(Bind::Text(h), &mut binds))
                .collect();
            // A date search is driven by the date index (the ids in range),
            // not by walking the hospital's resources of the type.
            let hospital_col = if q.dates.is_empty() || by_patient {
                "r.hospital_id"
            } else {
                "r.hospital_id || ''"
            };
            clauses.push(format!("{hospital_col} IN ({})", list.join(", ")));
        }
        if let ActorKind::Citizen(keys) = &actor.kind {
            // A citizen finds only records about themselves.
            let mut alternatives = Vec::new();
            for (system, value) in [
                (CCCD_SYSTEM, &keys.national_id),
                (BHYT_SYSTEM, &keys.health_id),
            ] {
                if let Some(v) = value {
                    let s = bind(Bind::Text(system.into()), &mut binds);
                    let v = bind(Bind::Text(v.clone()), &mut binds);
                    alternatives.push(format!("(i.system = {s} AND i.value = {v})"));
                }
            }
            if alternatives.is_empty() {
                alternatives.push("1 = 0".into());
            }
            clauses.push(format!(
                "r.patient_ref IN (SELECT 'Patient/' || i.id FROM fhir_search_index i WHERE i.resource_type = 'Patient' \
                 AND i.kind = 'identifier' AND ({}))",
                alternatives.join(" OR ")
            ));
        }
        for id in &q.ids {
            let p = bind(Bind::Text(id.clone()), &mut binds);
            clauses.push(format!("r.id = {p}"));
        }
        for patient in &q.patients {
            let p = bind(Bind::Text(patient.clone()), &mut binds);
            clauses.push(format!("r.patient_ref = {p}"));
        }
        for (system, value) in &q.patient_identifiers {
            let v = bind(Bind::Text(value.clone()), &mut binds);
            let mut c = format!(
                "r.patient_ref IN (SELECT 'Patient/' || i.id FROM fhir_search_index i WHERE i.resource_type = 'Patient' \
                 AND i.kind = 'identifier' AND i.value = {v}"
            );
            if let Some(system) = system {
                let s = bind(Bind::Text(system.clone()), &mut binds);
                c.push_str(&format!(" AND i.system = {s}"));
            }
            c.push(')');
            clauses.push(c);
        }
        for (kind, list) in [("identifier", &q.identifiers), ("code", &q.codes)] {
            for (system, value) in list {
                let v = bind(Bind::Text(value.clone()), &mut binds);
                let mut c = format!(
                    "EXISTS (SELECT 1 FROM fhir_search_index i WHERE i.resource_type = r.resource_type \
                     AND i.id = r.id AND i.kind = '{kind}' AND i.value = {v}"
                );
                if let Some(system) = system {
                    let s = bind(Bind::Text(system.clone()), &mut binds);
                    c.push_str(&format!(" AND i.system = {s}"));
                }
                c.push(')');
                clauses.push(c);
            }
        }
        for (prefix, lo, hi) in &q.dates {
            let l = bind(Bind::Int(*lo), &mut binds);
            let h = bind(Bind::Int(*hi), &mut binds);
            let cond = range_condition(*prefix, "i.date_start", "i.date_end", &l, &h);
            // A list of ids from the date indexes (migration 0007), rather
            // than a check per resource of the type.
            clauses.push(format!(
                "r.id IN (SELECT i.id FROM fhir_search_index i WHERE i.resource_type = $1 \
                 AND i.kind = 'date' AND {cond})"
            ));
        }
        for (prefix, lo, hi) in &q.last_updated {
            let l = bind(Bind::Int(*lo), &mut binds);
            let h = bind(Bind::Int(*hi), &mut binds);
            clauses.push(range_condition(
                *prefix,
                "r.last_updated",
                "r.last_updated",
                &l,
                &h,
            ));
        }
        let filter = clauses.join(" AND ");
        let count_sql = format!("SELECT COUNT(*) AS n FROM fhir_resources r WHERE {filter}");
        let mut count = sqlx::query(sqlx::AssertSqlSafe(count_sql));
        for b in &binds {
            count = match b {
                Bind::Text(s) => count.bind(s.clone()),
                Bind::Int(n) => count.bind(*n),
            };
        }
        let total: i64 = count.fetch_one(&self.db.pool).await?.try_get("n")?;
        let page_sql = format!(
            "SELECT r.resource_type, r.id, r.version_id, r.last_updated, r.hospital_id, r.patient_ref, r.content \
             FROM fhir_resources r WHERE {filter} ORDER BY r.last_updated, r.id LIMIT ${} OFFSET ${}",
            binds.len() + 1,
            binds.len() + 2
        );
        let mut page = sqlx::query(sqlx::AssertSqlSafe(page_sql));
        for b in &binds {
            page = match b {
                Bind::Text(s) => page.bind(s.clone()),
                Bind::Int(n) => page.bind(*n),
            };
        }
        let rows = page
            .bind(q.count)
            .bind(q.offset)
            .fetch_all(&self.db.pool)
            .await?;
        let mut entries = rows
            .iter()
            .map(stored_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        let mut dropped = 0;
        if let Some(admit) = admit {
            let before = entries.len();
            entries.retain(|s| admit(&s.resource));
            dropped += before - entries.len();
        }
        let allowed = self.authorize(actor, &entries, "search", true).await?;
        let mut allowed = allowed.into_iter();
        let before = entries.len();
        entries.retain(|_| allowed.next().unwrap_or(false));
        dropped += before - entries.len();
        let next = q.offset + q.count;
        let shown = q.offset + i64::try_from(entries.len()).unwrap_or(0);
        Ok(Page {
            // Only this page's refusals are known; never report fewer
            // matches than were shown.
            total: (total - i64::try_from(dropped).unwrap_or(0)).max(shown),
            entries,
            next_offset: (q.count > 0 && next < total).then_some(next),
        })
    }
}

/// The SQL condition of a date prefix, for a target range [lo_col, hi_col]
/// and a parameter range [$l, $h] (FHIR R4 search, 3.1.1.4.4).
fn range_condition(prefix: Prefix, lo_col: &str, hi_col: &str, l: &str, h: &str) -> String {
    match prefix {
        Prefix::Eq => format!("{lo_col} >= {l} AND {hi_col} <= {h}"),
        Prefix::Ge => format!("{hi_col} >= {l}"),
        Prefix::Le => format!("{lo_col} <= {h}"),
        Prefix::Gt => format!("{hi_col} > {h}"),
        Prefix::Lt => format!("{lo_col} < {l}"),
    }
}

/// Set the server-owned `id` and `meta` elements.
fn stamp(resource: &mut Map<String, Value>, id: &str, version: i64, now: i64) {
    resource.insert("id".into(), Value::String(id.to_owned()));
    let meta = resource
        .entry("meta")
        .or_insert_with(|| Value::Object(Map::new()));
    if !meta.is_object() {
        *meta = Value::Object(Map::new());
    }
    if let Some(m) = meta.as_object_mut() {
        m.insert("versionId".into(), Value::String(version.to_string()));
        m.insert("lastUpdated".into(), Value::String(rfc3339(now)));
    }
}

/// Every relative reference must name a resource of the caller's hospital.
pub(crate) async fn resolve(
    tx: &mut WriteTx,
    hospital: &str,
    refs: &[Reference],
) -> Result<(), RecordError> {
    let mut seen = BTreeSet::new();
    for r in refs {
        if !seen.insert((r.resource_type, r.id.clone())) {
            continue;
        }
        let found = sqlx::query(
            "SELECT 1 AS one FROM fhir_resources WHERE resource_type = $1 AND id = $2 AND hospital_id = $3",
        )
        .bind(r.resource_type.as_str())
        .bind(&r.id)
        .bind(hospital)
        .fetch_optional(&mut *tx.tx)
        .await?;
        if found.is_none() {
            return Err(RecordError::UnresolvedReference(format!(
                "{}: {}/{} does not exist in this hospital's records",
                r.path, r.resource_type, r.id
            )));
        }
    }
    Ok(())
}

/// Insert the history row and the search index of one version.
#[allow(clippy::too_many_arguments)]
async fn write_version(
    tx: &mut WriteTx,
    actor: &Actor,
    rt: ResourceType,
    id: &str,
    version: i64,
    now: i64,
    index: &IndexEntries,
    text: &str,
) -> Result<(), RecordError> {
    sqlx::query(
        "INSERT INTO fhir_history (resource_type, id, version_id, last_updated, hospital_id, patient_ref, content, written_by) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(rt.as_str())
    .bind(id)
    .bind(version)
    .bind(now)
    .bind(&actor.hospital_id)
    .bind(&index.patient)
    .bind(text)
    .bind(&actor.subject)
    .execute(&mut *tx.tx)
    .await?;
    let tokens = index
        .identifiers
        .iter()
        .map(|t| ("identifier", t))
        .chain(index.codes.iter().map(|t| ("code", t)));
    for (kind, (system, value)) in tokens {
        sqlx::query(
            "INSERT INTO fhir_search_index (resource_type, id, kind, system, value) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(rt.as_str())
        .bind(id)
        .bind(kind)
        .bind(system)
        .bind(value)
        .execute(&mut *tx.tx)
        .await?;
    }
    for (lo, hi) in &index.dates {
        sqlx::query(
            "INSERT INTO fhir_search_index (resource_type, id, kind, date_start, date_end) VALUES ($1, $2, 'date', $3, $4)",
        )
        .bind(rt.as_str())
        .bind(id)
        .bind(*lo)
        .bind(*hi)
        .execute(&mut *tx.tx)
        .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn date_prefixes_include_the_old_comparators() {
        let day = date_range("2026-03-02").expect("date");
        for (v, prefix) in [
            ("2026-03-02", Prefix::Eq),
            ("ge2026-03-02", Prefix::Ge),
            (">=2026-03-02", Prefix::Ge),
            ("<=2026-03-02", Prefix::Le),
            (">2026-03-02", Prefix::Gt),
            ("lt2026-03-02", Prefix::Lt),
            ("<2026-03-02", Prefix::Lt),
        ] {
            assert_eq!(
                prefixed_date("date", v).ok(),
                Some((prefix, day.0, day.1)),
                "{v}"
            );
        }
        assert!(prefixed_date("date", "=>2026").is_err());
        assert!(prefixed_date("date", "ne2026").is_err());
    }
}
