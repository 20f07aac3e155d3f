//! Importing facilities from CSV (or one facility as JSON): every row is
//! checked against the file and the register before anything is written,
//! then all changes are applied in one transaction, or none.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{NetworkError, NetworkRegister, Notice, csv};
use crate::audit::{AuditEvent, AuditLog};
use crate::directory::{Hospital, Level, Ownership, Status, Tier, provinces, validate_id};
use crate::time::now_millis;

/// The documented header (`id` is optional).
pub const HEADER: [&str; 9] = [
    "facility_code",
    "name",
    "tier",
    "level",
    "province",
    "commune",
    "ownership",
    "parent_code",
    "status",
];

/// At most this many changes are listed in a report (the counts are exact).
pub const MAX_CHANGES: usize = 200;

/// One facility as a file row or a JSON body.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FacilityRow {
    pub facility_code: String,
    pub name: String,
    pub tier: String,
    pub level: String,
    pub province: String,
    #[serde(default)]
    pub commune: Option<String>,
    pub ownership: String,
    #[serde(default)]
    pub parent_code: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
    /// The platform id used in URLs; default `kcb-<code>` for a new one.
    #[serde(default)]
    pub id: Option<String>,
}

/// A row that cannot be imported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RowError {
    /// The file line (1 = the header; 0 for a JSON body).
    pub line: usize,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Created,
    Updated,
    Unchanged,
}

/// One row's effect.
#[derive(Debug, Clone, Serialize)]
pub struct Change {
    pub line: usize,
    pub facility_code: String,
    pub name: String,
    pub id: String,
    pub action: Action,
    /// The fields that change (for `updated`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<&'static str>,
}

/// What an import did (or, dry, would do).
#[derive(Debug, Clone, Serialize)]
pub struct ImportReport {
    pub dry_run: bool,
    pub created: usize,
    pub updated: usize,
    pub unchanged: usize,
    /// Created and updated rows, at most [`MAX_CHANGES`].
    pub changes: Vec<Change>,
    pub errors: Vec<RowError>,
}

/// A checked row, its parent still a code.
#[derive(Debug)]
struct Checked {
    line: usize,
    hospital: Hospital,
    parent_code: Option<String>,
}

fn text(v: &str) -> Option<String> {
    let v = v.trim();
    (!v.is_empty()).then(|| v.to_owned())
}

/// Check one row's own fields.
fn check_row(row: &FacilityRow) -> Result<(Hospital, Option<String>, bool), String> {
    use crate::text_limits::{NAME, TITLE, check};
    let code = row.facility_code.trim();
    if code.len() != 5 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "facility_code `{code}` must be the 5-digit BHYT code (mã cơ sở KCB)"
        ));
    }
    let name = row.name.trim();
    if name.is_empty() {
        return Err("name is required".into());
    }
    check("name", name, NAME).map_err(|e| e.to_string())?;
    let tier: Tier = row.tier.trim().parse()?;
    let level: Level = row.level.trim().parse()?;
    let province = provinces::find(&row.province).ok_or_else(|| {
        format!(
            "province `{}` is not one of the 34 provinces (code or name, runtime/data/provinces.csv)",
            row.province.trim()
        )
    })?;
    let commune = row.commune.as_deref().and_then(text);
    if let Some(c) = &commune {
        check("commune", c, TITLE).map_err(|e| e.to_string())?;
    }
    let ownership: Ownership = row.ownership.trim().parse()?;
    let status: Status = match row.status.as_deref().and_then(text) {
        Some(s) => s.parse()?,
        None => Status::Active,
    };
    let parent_code = row.parent_code.as_deref().and_then(text);
    if let Some(p) = &parent_code {
        if p == code {
            return Err("parent_code is the facility itself".into());
        }
        if p.len() != 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("parent_code `{p}` must be a 5-digit BHYT code"));
        }
    }
    let explicit = row.id.as_deref().and_then(text);
    let id = explicit.clone().unwrap_or_else(|| format!("kcb-{code}"));
    validate_id(&id).map_err(|e| e.to_string())?;
    Ok((
        Hospital {
            id,
            name: name.to_owned(),
            tier,
            province: province.name_vi.to_owned(),
            facility_code: Some(code.to_owned()),
            level: Some(level),
            province_code: Some(province.code.to_owned()),
            commune,
            ownership: Some(ownership),
            parent_id: None,
            status,
            updated_at: None,
        },
        parent_code,
        explicit.is_some(),
    ))
}

/// The rows of a CSV file, or the errors of its header and quoting.
pub fn parse_file(text: &str) -> Result<Vec<(usize, FacilityRow)>, Vec<RowError>> {
    let records = csv::parse(text).map_err(|e| {
        vec![RowError {
            line: e.line,
            message: e.message,
        }]
    })?;
    let Some((header, rows)) = records.split_first() else {
        return Err(vec![RowError {
            line: 1,
            message: format!(
                "the file is empty; the header is `{}[,id]`",
                HEADER.join(",")
            ),
        }]);
    };
    let names: Vec<String> = header
        .fields
        .iter()
        .map(|f| f.trim().to_lowercase())
        .collect();
    let with_id = names.len() == HEADER.len() + 1 && names.last().is_some_and(|n| n == "id");
    if names[..names.len().min(HEADER.len())] != HEADER[..]
        || !(names.len() == HEADER.len() || with_id)
    {
        return Err(vec![RowError {
            line: header.line,
            message: format!(
                "the header must be `{}` with an optional `,id` at the end",
                HEADER.join(",")
            ),
        }]);
    }
    let mut out = Vec::with_capacity(rows.len());
    let mut errors = Vec::new();
    for r in rows {
        if r.fields.len() != names.len() {
            errors.push(RowError {
                line: r.line,
                message: format!("{} fields, the header has {}", r.fields.len(), names.len()),
            });
            continue;
        }
        let f = |i: usize| r.fields.get(i).cloned().unwrap_or_default();
        out.push((
            r.line,
            FacilityRow {
                facility_code: f(0),
                name: f(1),
                tier: f(2),
                level: f(3),
                province: f(4),
                commune: Some(f(5)),
                ownership: f(6),
                parent_code: Some(f(7)),
                status: Some(f(8)),
                id: with_id.then(|| f(9)),
            },
        ));
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// The fields of `new` that differ from `old`.
fn changed_fields(old: &Hospital, new: &Hospital) -> Vec<&'static str> {
    let mut f = Vec::new();
    let mut diff = |name, differs: bool| {
        if differs {
            f.push(name);
        }
    };
    diff("name", old.name != new.name);
    diff("tier", old.tier != new.tier);
    diff("level", old.level != new.level);
    diff(
        "province",
        old.province != new.province || old.province_code != new.province_code,
    );
    diff("commune", old.commune != new.commune);
    diff("ownership", old.ownership != new.ownership);
    diff("parent", old.parent_id != new.parent_id);
    diff("status", old.status != new.status);
    diff("facility_code", old.facility_code != new.facility_code);
    f
}

/// A row's facility, what happens to it, and the fields that change.
type Planned = (Checked, Action, Vec<&'static str>);

/// The plan of an import: each row's facility and its action.
fn plan(
    rows: Vec<(usize, FacilityRow)>,
    stored: &[Hospital],
) -> Result<Vec<Planned>, Vec<RowError>> {
    let by_code: HashMap<&str, &Hospital> = stored
        .iter()
        .filter_map(|h| h.facility_code.as_deref().map(|c| (c, h)))
        .collect();
    let by_id: HashMap<&str, &Hospital> = stored.iter().map(|h| (h.id.as_str(), h)).collect();
    let mut errors = Vec::new();
    let mut checked = Vec::with_capacity(rows.len());
    // Code and id → the line that has it, for duplicates within the file.
    let mut codes: HashMap<String, usize> = HashMap::new();
    let mut ids: HashMap<String, usize> = HashMap::new();
    for (line, row) in rows {
        let (mut hospital, parent_code, explicit_id) = match check_row(&row) {
            Ok(c) => c,
            Err(message) => {
                errors.push(RowError { line, message });
                continue;
            }
        };
        let code = hospital.facility_code.clone().unwrap_or_default();
        // A registered code keeps its platform id (URLs must not change).
        if let Some(existing) = by_code.get(code.as_str()) {
            if explicit_id && existing.id != hospital.id {
                errors.push(RowError {
                    line,
                    message: format!(
                        "facility {code} is registered with id `{}`, not `{}`; ids do not change",
                        existing.id, hospital.id
                    ),
                });
                continue;
            }
            hospital.id = existing.id.clone();
        } else if let Some(other) = by_id.get(hospital.id.as_str()) {
            // An id of a hospital from before the register gets its code;
            // one of another facility is taken.
            if let Some(other_code) = &other.facility_code {
                errors.push(RowError {
                    line,
                    message: format!("id `{}` belongs to facility {other_code}", hospital.id),
                });
                continue;
            }
        }
        if let Some(first) = codes.insert(code.clone(), line) {
            errors.push(RowError {
                line,
                message: format!("facility code {code} is also on line {first}"),
            });
            continue;
        }
        if let Some(first) = ids.insert(hospital.id.clone(), line) {
            errors.push(RowError {
                line,
                message: format!("id `{}` is also on line {first}", hospital.id),
            });
            continue;
        }
        checked.push(Checked {
            line,
            hospital,
            parent_code,
        });
    }
    // Parents may be later in the file, or already registered.
    let file_ids: HashMap<String, String> = checked
        .iter()
        .filter_map(|c| {
            c.hospital
                .facility_code
                .clone()
                .map(|code| (code, c.hospital.id.clone()))
        })
        .collect();
    let mut planned = Vec::with_capacity(checked.len());
    for mut c in checked {
        if let Some(parent) = &c.parent_code {
            let id = file_ids
                .get(parent)
                .cloned()
                .or_else(|| by_code.get(parent.as_str()).map(|h| h.id.clone()));
            match id {
                Some(id) => c.hospital.parent_id = Some(id),
                None => {
                    errors.push(RowError {
                        line: c.line,
                        message: format!(
                            "parent_code {parent} is neither registered nor in the file"
                        ),
                    });
                    continue;
                }
            }
        }
        let (action, fields) = match by_id.get(c.hospital.id.as_str()) {
            None => (Action::Created, Vec::new()),
            Some(old) => {
                let fields = changed_fields(old, &c.hospital);
                if fields.is_empty() {
                    (Action::Unchanged, fields)
                } else {
                    (Action::Updated, fields)
                }
            }
        };
        planned.push((c, action, fields));
    }
    if errors.is_empty() {
        Ok(planned)
    } else {
        errors.sort_by_key(|e| e.line);
        Err(errors)
    }
}

impl NetworkRegister {
    /// Import a CSV file: all rows or none; `dry_run` only reports.
    /// `progress(done, total)` follows the rows.
    pub async fn import_csv(
        &self,
        text: &str,
        dry_run: bool,
        actor: &str,
        progress: &mut (dyn FnMut(usize, usize) + Send),
    ) -> Result<ImportReport, NetworkError> {
        let rows = parse_file(text).map_err(NetworkError::BadRows)?;
        self.import_rows(rows, dry_run, actor, progress).await
    }

    /// Import checked rows (a file's, or one JSON facility's at line 0).
    pub async fn import_rows(
        &self,
        rows: Vec<(usize, FacilityRow)>,
        dry_run: bool,
        actor: &str,
        progress: &mut (dyn FnMut(usize, usize) + Send),
    ) -> Result<ImportReport, NetworkError> {
        let total = rows.len();
        progress(0, total);
        // Read and write in one transaction: nobody changes the register
        // between the plan and its application.
        let mut tx = self.db.begin_write().await?;
        let stored = self.stored_facilities(&mut tx).await?;
        let planned = plan(rows, &stored).map_err(NetworkError::BadRows)?;
        let mut report = ImportReport {
            dry_run,
            created: 0,
            updated: 0,
            unchanged: 0,
            changes: Vec::new(),
            errors: Vec::new(),
        };
        let now = now_millis();
        for (done, (c, action, fields)) in planned.into_iter().enumerate() {
            match action {
                Action::Created => report.created += 1,
                Action::Updated => report.updated += 1,
                Action::Unchanged => report.unchanged += 1,
            }
            if action != Action::Unchanged && report.changes.len() < MAX_CHANGES {
                report.changes.push(Change {
                    line: c.line,
                    facility_code: c.hospital.facility_code.clone().unwrap_or_default(),
                    name: c.hospital.name.clone(),
                    id: c.hospital.id.clone(),
                    action,
                    fields,
                });
            }
            if !dry_run && action != Action::Unchanged {
                write(&mut tx, &c.hospital, action, now).await?;
            }
            if (done + 1) % 500 == 0 {
                progress(done + 1, total);
            }
        }
        progress(total, total);
        if dry_run || report.created + report.updated == 0 {
            // Nothing to write: the transaction ends without a change.
            drop(tx);
            return Ok(report);
        }
        AuditLog::append_in(
            &mut tx,
            AuditEvent {
                actor: actor.into(),
                action: "facility.imported".into(),
                target: "network:facilities".into(),
                hospital_id: None,
                details: json!({
                    "created": report.created, "updated": report.updated,
                    "unchanged": report.unchanged,
                }),
            },
        )
        .await?;
        tx.commit().await?;
        self.hospitals.reload().await?;
        self.announce(&Notice::All);
        Ok(report)
    }
}

async fn write(
    tx: &mut crate::db::WriteTx,
    h: &Hospital,
    action: Action,
    now: i64,
) -> Result<(), sqlx::Error> {
    let sql = if action == Action::Created {
        "INSERT INTO hospitals (name, tier, province, facility_code, level, province_code, commune, ownership, parent_id, status, updated_at, id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
    } else {
        "UPDATE hospitals SET name = $1, tier = $2, province = $3, facility_code = $4, level = $5, \
         province_code = $6, commune = $7, ownership = $8, parent_id = $9, status = $10, updated_at = $11 \
         WHERE id = $12"
    };
    sqlx::query(sql)
        .bind(&h.name)
        .bind(h.tier.as_str())
        .bind(&h.province)
        .bind(&h.facility_code)
        .bind(h.level.map(Level::as_str))
        .bind(&h.province_code)
        .bind(&h.commune)
        .bind(h.ownership.map(Ownership::as_str))
        .bind(&h.parent_id)
        .bind(h.status.as_str())
        .bind(now)
        .bind(&h.id)
        .execute(&mut *tx.tx)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(code: &str, parent: &str) -> FacilityRow {
        FacilityRow {
            facility_code: code.into(),
            name: format!("Trạm Y tế {code}"),
            tier: "commune".into(),
            level: "primary".into(),
            province: "33".into(),
            commune: Some("Xã A".into()),
            ownership: "public".into(),
            parent_code: Some(parent.into()),
            status: None,
            id: None,
        }
    }

    #[test]
    fn parents_may_come_later_and_must_exist() {
        let rows = vec![(2, row("34001", "34002")), (3, row("34002", ""))];
        let planned = plan(rows, &[]).expect("plan");
        assert_eq!(
            planned[0].0.hospital.parent_id.as_deref(),
            Some("kcb-34002")
        );
        let errors = plan(vec![(2, row("34001", "34999"))], &[]).expect_err("bad");
        assert_eq!(errors[0].line, 2);
        let errors = plan(vec![(2, row("34001", "34001"))], &[]).expect_err("bad");
        assert!(errors[0].message.contains("itself"), "{errors:?}");
    }

    #[test]
    fn header_and_field_errors_name_their_lines() {
        let text = "facility_code,name,tier,level,province,commune,ownership,parent_code,status\n\
                    34001,\"Trạm, Y tế\",commune,primary,Hưng Yên,Xã A,public,,\n\
                    3400,B,commune,primary,Hưng Yên,,public,,\n\
                    34003,C,commune,primary,Thái Bình,,public,,\n";
        let rows = parse_file(text).expect("parsed");
        assert_eq!(rows[0].1.name, "Trạm, Y tế");
        let errors = plan(rows, &[]).expect_err("bad rows");
        assert_eq!(errors.iter().map(|e| e.line).collect::<Vec<_>>(), [3, 4]);
        let errors = parse_file("code,name\n1,2").expect_err("bad header");
        assert_eq!(errors[0].line, 1);
    }
}
