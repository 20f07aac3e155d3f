//! FHIR `transaction` Bundles: every entry is written in one database
//! transaction or none is. Entries may refer to each other by `fullUrl`
//! (`urn:uuid:…`); a conditional `PUT Type?identifier=system|value` updates
//! the one match or creates. An idempotency key makes a retried message
//! return the first response without writing again (how the HIS adapter
//! stays idempotent on the HL7 message control ID).

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};
use sqlx::Row;

use super::store::{NotReplaced, Written, insert_in, replace_in, resolve};
use super::{Actor, ActorKind, RecordError, RecordStore, ResourceType};
use crate::audit::rfc3339;
use crate::time::now_millis;

/// Most entries in one transaction.
pub const MAX_ENTRIES: usize = 1000;
/// Longest idempotency key.
pub const MAX_KEY_BYTES: usize = 256;

/// What one entry asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Method {
    /// POST: create with a new id.
    Create,
    /// PUT `Type/id`: update that resource.
    Update(String),
    /// PUT `Type?identifier=system|value`: update the one match, or create.
    Upsert {
        system: Option<String>,
        value: String,
    },
}

/// One parsed entry.
#[derive(Debug, Clone)]
pub struct Entry {
    pub full_url: Option<String>,
    pub resource_type: ResourceType,
    pub resource: Map<String, Value>,
    pub method: Method,
}

fn invalid(path: String, message: impl Into<String>) -> RecordError {
    RecordError::Invalid {
        path,
        message: message.into(),
    }
}

/// Parse a transaction Bundle into its entries, checking its shape only.
pub fn parse(bundle: &Value) -> Result<Vec<Entry>, RecordError> {
    let obj = bundle
        .as_object()
        .ok_or_else(|| RecordError::InvalidJson("a Bundle must be a JSON object".into()))?;
    if obj.get("resourceType").and_then(Value::as_str) != Some("Bundle") {
        return Err(invalid(
            "Bundle.resourceType".into(),
            "expected a Bundle of type transaction",
        ));
    }
    if obj.get("type").and_then(Value::as_str) != Some("transaction") {
        return Err(invalid(
            "Bundle.type".into(),
            "only `transaction` Bundles are processed",
        ));
    }
    let entries = match obj.get("entry") {
        None => return Ok(Vec::new()),
        Some(Value::Array(e)) => e,
        Some(_) => return Err(invalid("Bundle.entry".into(), "must be an array")),
    };
    if entries.len() > MAX_ENTRIES {
        return Err(invalid(
            "Bundle.entry".into(),
            format!(
                "{} entries; a transaction holds at most {MAX_ENTRIES}",
                entries.len()
            ),
        ));
    }
    let mut out = Vec::with_capacity(entries.len());
    let mut full_urls = std::collections::BTreeSet::new();
    for (i, e) in entries.iter().enumerate() {
        let path = format!("Bundle.entry[{i}]");
        let full_url = match e.get("fullUrl") {
            None => None,
            Some(Value::String(u)) if !u.is_empty() => {
                if !full_urls.insert(u.clone()) {
                    return Err(invalid(
                        format!("{path}.fullUrl"),
                        format!("`{u}` appears twice"),
                    ));
                }
                Some(u.clone())
            }
            Some(_) => {
                return Err(invalid(
                    format!("{path}.fullUrl"),
                    "must be a non-empty string",
                ));
            }
        };
        let resource = e
            .get("resource")
            .and_then(Value::as_object)
            .ok_or_else(|| invalid(format!("{path}.resource"), "is required"))?
            .clone();
        let rt: ResourceType = resource
            .get("resourceType")
            .and_then(Value::as_str)
            .ok_or_else(|| invalid(format!("{path}.resource.resourceType"), "is required"))?
            .parse()?;
        let request = e
            .get("request")
            .ok_or_else(|| invalid(format!("{path}.request"), "is required"))?;
        let method = request.get("method").and_then(Value::as_str).unwrap_or("");
        let url = request.get("url").and_then(Value::as_str).unwrap_or("");
        let method = match method {
            "POST" => {
                if url != rt.as_str() {
                    return Err(invalid(
                        format!("{path}.request.url"),
                        format!("a POST of a {rt} goes to `{rt}`, not `{url}`"),
                    ));
                }
                Method::Create
            }
            "PUT" => {
                parse_put_url(rt, url).map_err(|m| invalid(format!("{path}.request.url"), m))?
            }
            other => {
                return Err(invalid(
                    format!("{path}.request.method"),
                    format!("`{other}` is not supported in a transaction (POST and PUT are)"),
                ));
            }
        };
        out.push(Entry {
            full_url,
            resource_type: rt,
            resource,
            method,
        });
    }
    Ok(out)
}

fn parse_put_url(rt: ResourceType, url: &str) -> Result<Method, String> {
    if let Some(query) = url.strip_prefix(&format!("{rt}?")) {
        let value = query
            .strip_prefix("identifier=")
            .filter(|v| !v.is_empty() && !v.contains('&'))
            .ok_or_else(|| {
                format!("a conditional update names one identifier: `{rt}?identifier=system|value`")
            })?;
        // The same decoding as search parameters (`%7C` is common for `|`).
        let value = crate::query::decode(value);
        return Ok(match value.split_once('|') {
            Some((s, v)) if !v.is_empty() => Method::Upsert {
                system: (!s.is_empty()).then(|| s.to_owned()),
                value: v.to_owned(),
            },
            Some(_) => return Err("the identifier has no value".into()),
            None => Method::Upsert {
                system: None,
                value,
            },
        });
    }
    match url.strip_prefix(&format!("{rt}/")) {
        Some(id) if !id.is_empty() && !id.contains(['/', '?']) => Ok(Method::Update(id.to_owned())),
        _ => Err(format!(
            "a PUT goes to `{rt}/<id>` or `{rt}?identifier=system|value`, not `{url}`"
        )),
    }
}

/// Replace every `reference` naming a `fullUrl` of the Bundle by `Type/id`.
fn rewrite_references(value: &mut Value, ids: &BTreeMap<String, String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                if k == "reference"
                    && let Value::String(r) = v
                    && let Some(target) = ids.get(r.as_str())
                {
                    *r = target.clone();
                } else {
                    rewrite_references(v, ids);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| rewrite_references(v, ids)),
        _ => {}
    }
}

/// The scope of an idempotency key: (hospital, plugin or API caller).
#[derive(Debug, Clone)]
pub struct IdempotencyKey {
    pub owner: String,
    pub key: String,
}

impl RecordStore {
    /// Apply a transaction Bundle for `actor`; the transaction-response
    /// Bundle comes back. With `idempotency` already used, the stored
    /// response comes back and nothing is written.
    pub async fn transaction(
        &self,
        actor: &Actor,
        entries: Vec<Entry>,
        idempotency: Option<&IdempotencyKey>,
    ) -> Result<Value, RecordError> {
        if matches!(actor.kind, ActorKind::Citizen(_)) {
            return Err(RecordError::Forbidden(
                "citizens do not write hospital records".into(),
            ));
        }
        if let Some(k) = idempotency {
            if k.key.is_empty() || k.key.len() > MAX_KEY_BYTES {
                return Err(invalid(
                    "idempotency-key".into(),
                    format!("must be 1 to {MAX_KEY_BYTES} bytes"),
                ));
            }
            if let Some(previous) = self.previous_response(actor, k).await? {
                return Ok(previous);
            }
        }
        let db = self.database().clone();
        let mut tx = db.begin_write().await?;
        if let Some(k) = idempotency {
            // Claim the key first: a concurrent duplicate waits here
            // (PostgreSQL) or behind the writer queue (SQLite).
            let claimed = sqlx::query(
                "INSERT INTO records_idempotency (hospital_id, plugin_id, idempotency_key, response, created_at) \
                 VALUES ($1, $2, $3, '', $4) ON CONFLICT DO NOTHING",
            )
            .bind(&actor.hospital_id)
            .bind(&k.owner)
            .bind(&k.key)
            .bind(now_millis())
            .execute(&mut *tx.tx)
            .await?
            .rows_affected();
            if claimed == 0 {
                drop(tx);
                return self.previous_response(actor, k).await?.ok_or_else(|| {
                    RecordError::Conflict(format!(
                        "a transaction with idempotency key `{}` is in progress",
                        k.key
                    ))
                });
            }
        }
        let now = now_millis();
        // Ids first, so entries can refer to each other whatever their order.
        let mut targets = Vec::with_capacity(entries.len());
        let mut ids = BTreeMap::new();
        // Conditional updates of one identifier within the Bundle share one id.
        let mut upserts: BTreeMap<(ResourceType, Option<String>, String), String> = BTreeMap::new();
        for (i, e) in entries.iter().enumerate() {
            let rt = e.resource_type;
            let (id, existing) = match &e.method {
                Method::Create => (uuid::Uuid::now_v7().to_string(), false),
                Method::Update(id) => (id.clone(), true),
                Method::Upsert { system, value }
                    if upserts.contains_key(&(rt, system.clone(), value.clone())) =>
                {
                    (upserts[&(rt, system.clone(), value.clone())].clone(), true)
                }
                Method::Upsert { system, value } => {
                    if db.backend == crate::db::Backend::Postgres {
                        // Two messages creating the same new patient at once
                        // must not both create: serialize on the identifier.
                        sqlx::query(
                            "SELECT 1 AS one FROM (SELECT pg_advisory_xact_lock(hashtext($1))) AS l",
                        )
                        .bind(format!(
                            "{}|{rt}|{}|{value}",
                            actor.hospital_id,
                            system.as_deref().unwrap_or("")
                        ))
                        .fetch_one(&mut *tx.tx)
                        .await?;
                    }
                    let matches = find_by_identifier(
                        &mut tx,
                        &actor.hospital_id,
                        rt,
                        system.as_deref(),
                        value,
                    )
                    .await?;
                    let found = match matches.as_slice() {
                        [] => (uuid::Uuid::now_v7().to_string(), false),
                        [one] => (one.clone(), true),
                        _ => {
                            return Err(RecordError::Conflict(format!(
                                "Bundle.entry[{i}]: several {rt} resources have identifier {}{value}; a conditional update needs exactly one",
                                system
                                    .as_deref()
                                    .map(|s| format!("{s}|"))
                                    .unwrap_or_default()
                            )));
                        }
                    };
                    upserts.insert((rt, system.clone(), value.clone()), found.0.clone());
                    found
                }
            };
            if let Some(u) = &e.full_url {
                ids.insert(u.clone(), format!("{rt}/{id}"));
            }
            targets.push((id, existing));
        }
        let mut written: Vec<Written> = Vec::with_capacity(entries.len());
        let mut refs = Vec::new();
        for (i, (e, (id, existing))) in entries.into_iter().zip(targets).enumerate() {
            let mut resource = Value::Object(e.resource);
            rewrite_references(&mut resource, &ids);
            let Value::Object(mut resource) = resource else {
                continue;
            };
            let rt = e.resource_type;
            let result = if existing {
                resource.insert("id".into(), Value::String(id.clone()));
                replace_in(&mut tx, actor, rt, &id, resource, None, now).await
            } else {
                resource.remove("id");
                insert_in(&mut tx, actor, rt, &id, resource, now)
                    .await
                    .map_err(NotReplaced::Error)
            };
            let w = match result {
                Ok(w) => w,
                Err(NotReplaced::Error(e)) => return Err(at_entry(i, e)),
                Err(NotReplaced::OwnedBy(owner)) => {
                    drop(tx);
                    return Err(self
                        .deny(actor, &format!("{rt}/{id}"), &owner, "update")
                        .await);
                }
            };
            refs.extend(w.refs.iter().cloned());
            written.push(w);
        }
        resolve(&mut tx, &actor.hospital_id, &refs).await?;
        let response = json!({
            "resourceType": "Bundle",
            "type": "transaction-response",
            "entry": written.iter().map(|w| {
                let s = &w.stored;
                json!({
                    "response": {
                        "status": if w.created { "201 Created" } else { "200 OK" },
                        "location": format!("{}/{}/_history/{}", s.resource_type, s.id, s.version_id),
                        "etag": format!("W/\"{}\"", s.version_id),
                        "lastModified": rfc3339(s.last_updated),
                    }
                })
            }).collect::<Vec<_>>(),
        });
        if let Some(k) = idempotency {
            sqlx::query(
                "UPDATE records_idempotency SET response = $1 WHERE hospital_id = $2 AND plugin_id = $3 AND idempotency_key = $4",
            )
            .bind(response.to_string())
            .bind(&actor.hospital_id)
            .bind(&k.owner)
            .bind(&k.key)
            .execute(&mut *tx.tx)
            .await?;
        }
        tx.commit().await?;
        Ok(response)
    }

    async fn previous_response(
        &self,
        actor: &Actor,
        k: &IdempotencyKey,
    ) -> Result<Option<Value>, RecordError> {
        let row = sqlx::query(
            "SELECT response FROM records_idempotency WHERE hospital_id = $1 AND plugin_id = $2 AND idempotency_key = $3",
        )
        .bind(&actor.hospital_id)
        .bind(&k.owner)
        .bind(&k.key)
        .fetch_optional(&self.database().pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let text: String = row.try_get("response")?;
        Ok(serde_json::from_str(&text).ok())
    }
}

/// Prefix an entry's validation error with its position.
fn at_entry(i: usize, e: RecordError) -> RecordError {
    match e {
        RecordError::Invalid { path, message } => RecordError::Invalid {
            path: format!("Bundle.entry[{i}].resource.{path}"),
            message,
        },
        RecordError::NotFound(m) => RecordError::NotFound(format!("Bundle.entry[{i}]: {m}")),
        RecordError::TooLong(mut e) => {
            e.field = format!("Bundle.entry[{i}].resource.{}", e.field);
            RecordError::TooLong(e)
        }
        other => other,
    }
}

/// Ids of `rt` resources of `hospital` with the identifier.
async fn find_by_identifier(
    tx: &mut crate::db::WriteTx,
    hospital: &str,
    rt: ResourceType,
    system: Option<&str>,
    value: &str,
) -> Result<Vec<String>, RecordError> {
    let rows = sqlx::query(
        "SELECT DISTINCT r.id FROM fhir_resources r JOIN fhir_search_index i \
         ON i.resource_type = r.resource_type AND i.id = r.id \
         WHERE r.resource_type = $1 AND r.hospital_id = $2 AND i.kind = 'identifier' AND i.value = $3 \
         AND ($4 = '' OR i.system = $4) LIMIT 2",
    )
    .bind(rt.as_str())
    .bind(hospital)
    .bind(value)
    .bind(system.unwrap_or(""))
    .fetch_all(&mut *tx.tx)
    .await?;
    rows.iter()
        .map(|r| r.try_get::<String, _>("id").map_err(RecordError::from))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_entries_and_urls() {
        let b = json!({
            "resourceType": "Bundle", "type": "transaction",
            "entry": [
                {"fullUrl": "urn:uuid:1", "resource": {"resourceType": "Patient"},
                 "request": {"method": "PUT", "url": "Patient?identifier=urn:x%7C42"}},
                {"resource": {"resourceType": "Encounter"}, "request": {"method": "POST", "url": "Encounter"}},
                {"resource": {"resourceType": "Encounter"}, "request": {"method": "PUT", "url": "Encounter/abc"}}
            ]
        });
        let e = parse(&b).unwrap();
        assert_eq!(
            e[0].method,
            Method::Upsert {
                system: Some("urn:x".into()),
                value: "42".into()
            }
        );
        assert_eq!(e[1].method, Method::Create);
        assert_eq!(e[2].method, Method::Update("abc".into()));
        for (bad, path) in [
            (
                json!({"resourceType": "Bundle", "type": "batch"}),
                "Bundle.type",
            ),
            (
                json!({"resourceType": "Bundle", "type": "transaction", "entry": [{"resource": {"resourceType": "Patient"}, "request": {"method": "DELETE", "url": "Patient/1"}}]}),
                "Bundle.entry[0].request.method",
            ),
            (
                json!({"resourceType": "Bundle", "type": "transaction", "entry": [{"resource": {"resourceType": "Patient"}, "request": {"method": "POST", "url": "Encounter"}}]}),
                "Bundle.entry[0].request.url",
            ),
            (
                json!({"resourceType": "Bundle", "type": "transaction", "entry": [{"resource": {"resourceType": "Patient"}, "request": {"method": "PUT", "url": "Patient?name=x"}}]}),
                "Bundle.entry[0].request.url",
            ),
            (
                json!({"resourceType": "Bundle", "type": "transaction", "entry": [{"request": {"method": "POST", "url": "Patient"}}]}),
                "Bundle.entry[0].resource",
            ),
        ] {
            match parse(&bad) {
                Err(RecordError::Invalid { path: p, .. }) => assert_eq!(p, path),
                other => panic!("{bad}: {other:?}"),
            }
        }
    }

    #[test]
    fn rewrites_references_to_full_urls() {
        let ids = BTreeMap::from([("urn:uuid:p".to_owned(), "Patient/42".to_owned())]);
        let mut v = json!({"subject": {"reference": "urn:uuid:p"}, "result": [{"reference": "urn:uuid:p"}, {"reference": "Observation/1"}]});
        rewrite_references(&mut v, &ids);
        assert_eq!(v["subject"]["reference"], "Patient/42");
        assert_eq!(v["result"][0]["reference"], "Patient/42");
        assert_eq!(v["result"][1]["reference"], "Observation/1");
    }
}
