//! Importing facilities from CSV (or one facility as JSON): every row is
//! checked against the file and the register before anything is written,
//! then all changes are applied in one transaction, or none.

use std::collections::{HashMap, HashSet};

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
    /// The same in Vietnamese (the console shows the one of its language).
    pub message_vi: String,
}

impl RowError {
    fn new(line: usize, bad: Bad) -> Self {
        Self {
            line,
            message: bad.en,
            message_vi: bad.vi,
        }
    }
}

/// Why a row cannot be imported, in both languages.
#[derive(Debug)]
struct Bad {
    en: String,
    vi: String,
}

fn bad(en: impl Into<String>, vi: impl Into<String>) -> Bad {
    Bad {
        en: en.into(),
        vi: vi.into(),
    }
}

impl From<crate::text_limits::TooLong> for Bad {
    fn from(e: crate::text_limits::TooLong) -> Self {
        bad(e.to_string(), e.message_vi())
    }
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

/// One row's own fields, checked.
#[derive(Debug)]
struct RowFields {
    /// Its status is `Active` until compared with the register.
    hospital: Hospital,
    parent_code: Option<String>,
    explicit_id: bool,
    /// The status the row names, if any (empty keeps the stored one).
    status: Option<Status>,
}

/// A BHYT facility code's shape.
fn five_digits(c: &str) -> bool {
    c.len() == 5 && c.bytes().all(|b| b.is_ascii_digit())
}

fn status_vi(s: Status) -> &'static str {
    match s {
        Status::Active => "đang hoạt động",
        Status::Suspended => "bị đình chỉ",
    }
}

fn text(v: &str) -> Option<String> {
    let v = v.trim();
    (!v.is_empty()).then(|| v.to_owned())
}

/// Check one row's own fields.
fn check_row(row: &FacilityRow) -> Result<RowFields, Bad> {
    use crate::text_limits::{NAME, TITLE, check};
    let code = row.facility_code.trim();
    if !five_digits(code) {
        return Err(bad(
            format!("facility_code `{code}` must be the 5-digit BHYT code (mã cơ sở KCB)"),
            format!("facility_code `{code}` phải là mã cơ sở KCB BHYT gồm 5 chữ số"),
        ));
    }
    let name = row.name.trim();
    if name.is_empty() {
        return Err(bad("name is required", "thiếu tên cơ sở (name)"));
    }
    check("name", name, NAME)?;
    let tier_text = row.tier.trim();
    let tier: Tier = tier_text.parse().map_err(|en: String| {
        bad(
            en,
            format!(
                "tuyến `{tier_text}` không hợp lệ (central, provincial, district hoặc commune)"
            ),
        )
    })?;
    let level_text = row.level.trim();
    let level: Level = level_text.parse().map_err(|en: String| {
        bad(
            en,
            format!("cấp chuyên môn `{level_text}` không hợp lệ (primary, basic hoặc specialised)"),
        )
    })?;
    let province = provinces::find(&row.province).ok_or_else(|| {
        let p = row.province.trim();
        bad(
            format!(
                "province `{p}` is not one of the 34 provinces (code or name, runtime/data/provinces.csv)"
            ),
            format!(
                "tỉnh `{p}` không thuộc 34 tỉnh, thành phố hiện hành (mã hoặc tên, runtime/data/provinces.csv)"
            ),
        )
    })?;
    let commune = row.commune.as_deref().and_then(text);
    if let Some(c) = &commune {
        check("commune", c, TITLE)?;
    }
    let ownership_text = row.ownership.trim();
    let ownership: Ownership = ownership_text.parse().map_err(|en: String| {
        bad(
            en,
            format!("hình thức sở hữu `{ownership_text}` không hợp lệ (public hoặc private)"),
        )
    })?;
    let status = match row.status.as_deref().and_then(text) {
        Some(s) => Some(s.parse::<Status>().map_err(|en| {
            bad(
                en,
                format!("trạng thái `{s}` không hợp lệ (active hoặc suspended, hoặc để trống)"),
            )
        })?),
        None => None,
    };
    let parent_code = row.parent_code.as_deref().and_then(text);
    if let Some(p) = &parent_code {
        if p == code {
            return Err(bad(
                "parent_code is the facility itself",
                "parent_code là chính cơ sở này",
            ));
        }
        if !five_digits(p) {
            return Err(bad(
                format!("parent_code `{p}` must be a 5-digit BHYT code"),
                format!("parent_code `{p}` phải là mã cơ sở KCB BHYT gồm 5 chữ số"),
            ));
        }
    }
    let explicit = row.id.as_deref().and_then(text);
    let id = explicit.clone().unwrap_or_else(|| format!("kcb-{code}"));
    validate_id(&id).map_err(|e| {
        bad(
            e.to_string(),
            format!("id `{id}` phải gồm 1-64 ký tự a-z, 0-9 và '-', không bắt đầu bằng '-'"),
        )
    })?;
    Ok(RowFields {
        hospital: Hospital {
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
            status: Status::Active,
            updated_at: None,
        },
        parent_code,
        explicit_id: explicit.is_some(),
        status,
    })
}

/// The rows of a CSV file, or the errors of its header and quoting.
pub fn parse_file(text: &str) -> Result<Vec<(usize, FacilityRow)>, Vec<RowError>> {
    let records = csv::parse(text).map_err(|e| {
        vec![RowError {
            line: e.line,
            message: e.message,
            message_vi: e.message_vi,
        }]
    })?;
    let Some((header, rows)) = records.split_first() else {
        let header = HEADER.join(",");
        return Err(vec![RowError::new(
            1,
            bad(
                format!("the file is empty; the header is `{header}[,id]`"),
                format!("tệp trống; dòng tiêu đề là `{header}[,id]`"),
            ),
        )]);
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
        let expected = HEADER.join(",");
        return Err(vec![RowError::new(
            header.line,
            bad(
                format!("the header must be `{expected}` with an optional `,id` at the end"),
                format!("dòng tiêu đề phải là `{expected}`, có thể thêm `,id` ở cuối"),
            ),
        )]);
    }
    let mut out = Vec::with_capacity(rows.len());
    let mut errors = Vec::new();
    for r in rows {
        if r.fields.len() != names.len() {
            let (n, want) = (r.fields.len(), names.len());
            errors.push(RowError::new(
                r.line,
                bad(
                    format!("{n} fields, the header has {want}"),
                    format!("dòng có {n} trường, dòng tiêu đề có {want}"),
                ),
            ));
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
        let RowFields {
            mut hospital,
            parent_code,
            explicit_id,
            status,
        } = match check_row(&row) {
            Ok(c) => c,
            Err(b) => {
                errors.push(RowError::new(line, b));
                continue;
            }
        };
        let code = hospital.facility_code.clone().unwrap_or_default();
        // A registered code keeps its platform id (URLs must not change).
        if let Some(existing) = by_code.get(code.as_str()) {
            if explicit_id && existing.id != hospital.id {
                errors.push(RowError::new(
                    line,
                    bad(
                        format!(
                            "facility {code} is registered with id `{}`, not `{}`; ids do not change",
                            existing.id, hospital.id
                        ),
                        format!(
                            "cơ sở {code} đã đăng ký với id `{}`, không phải `{}`; id không thay đổi",
                            existing.id, hospital.id
                        ),
                    ),
                ));
                continue;
            }
            hospital.id = existing.id.clone();
        } else if let Some(other) = by_id.get(hospital.id.as_str()) {
            // An id of a hospital from before the register gets its code;
            // one of another facility is taken.
            if let Some(other_code) = &other.facility_code {
                errors.push(RowError::new(
                    line,
                    bad(
                        format!("id `{}` belongs to facility {other_code}", hospital.id),
                        format!("id `{}` là của cơ sở {other_code}", hospital.id),
                    ),
                ));
                continue;
            }
        }
        // Status changes only through suspend and reactivate, which need a
        // reason and audit each facility: an import never lifts (or
        // imposes) a suspension, and an empty status keeps the stored one.
        match (by_id.get(hospital.id.as_str()), status) {
            (Some(old), Some(s)) if s != old.status => {
                let (en_verb, vi_verb) = match s {
                    Status::Active => ("reactivate", "Khôi phục (reactivate)"),
                    Status::Suspended => ("suspend", "Đình chỉ (suspend)"),
                };
                errors.push(RowError::new(
                    line,
                    bad(
                        format!(
                            "facility {code} is {}; status `{}` would change that: use {en_verb} \
                             (POST /api/v1/network/facilities/{code}/{en_verb}, with a reason), \
                             or leave status empty to keep it",
                            old.status.as_str(),
                            s.as_str()
                        ),
                        format!(
                            "cơ sở {code} đang {}; trạng thái `{}` sẽ thay đổi điều đó: hãy dùng \
                             {vi_verb} trên màn hình Cơ sở (có lý do), hoặc để trống cột status để giữ nguyên",
                            status_vi(old.status),
                            s.as_str()
                        ),
                    ),
                ));
                continue;
            }
            (Some(old), _) => hospital.status = old.status,
            (None, s) => hospital.status = s.unwrap_or_default(),
        }
        if let Some(first) = codes.insert(code.clone(), line) {
            errors.push(RowError::new(
                line,
                bad(
                    format!("facility code {code} is also on line {first}"),
                    format!("mã cơ sở {code} trùng với dòng {first}"),
                ),
            ));
            continue;
        }
        if let Some(first) = ids.insert(hospital.id.clone(), line) {
            errors.push(RowError::new(
                line,
                bad(
                    format!("id `{}` is also on line {first}", hospital.id),
                    format!("id `{}` trùng với dòng {first}", hospital.id),
                ),
            ));
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
                    errors.push(RowError::new(
                        c.line,
                        bad(
                            format!("parent_code {parent} is neither registered nor in the file"),
                            format!("parent_code {parent} chưa được đăng ký và không có trong tệp"),
                        ),
                    ));
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
    errors.extend(cycles(&planned, stored));
    if errors.is_empty() {
        Ok(planned)
    } else {
        errors.sort_by_key(|e| e.line);
        Err(errors)
    }
}

/// Parent cycles through the file's rows, with the register as it would
/// be after the import: a cycle would make every walk up the tree endless.
/// Each row in a cycle gets an error naming the whole cycle.
fn cycles(planned: &[Planned], stored: &[Hospital]) -> Vec<RowError> {
    let mut parent: HashMap<&str, Option<&str>> = stored
        .iter()
        .map(|h| (h.id.as_str(), h.parent_id.as_deref()))
        .collect();
    let mut label: HashMap<&str, &str> = stored
        .iter()
        .map(|h| (h.id.as_str(), h.facility_code.as_deref().unwrap_or(&h.id)))
        .collect();
    let mut line: HashMap<&str, usize> = HashMap::new();
    for (c, _, _) in planned {
        let h = &c.hospital;
        parent.insert(&h.id, h.parent_id.as_deref());
        label.insert(&h.id, h.facility_code.as_deref().unwrap_or(&h.id));
        line.insert(&h.id, c.line);
    }
    let mut done: HashSet<&str> = HashSet::new();
    let mut errors = Vec::new();
    for (c, _, _) in planned {
        // Each facility has at most one parent: follow the chain until it
        // ends, reaches a checked facility, or comes back to itself.
        let mut path: Vec<&str> = Vec::new();
        let mut cur = Some(c.hospital.id.as_str());
        while let Some(id) = cur {
            if done.contains(id) {
                break;
            }
            if let Some(at) = path.iter().position(|p| *p == id) {
                let ring = &path[at..];
                let name = |id: &str| label.get(id).copied().unwrap_or(id).to_owned();
                let mut codes: Vec<String> = ring.iter().map(|id| name(id)).collect();
                codes.push(name(id));
                let chain = codes.join(" → ");
                let mut lines: Vec<usize> =
                    ring.iter().filter_map(|id| line.get(id).copied()).collect();
                lines.sort_unstable();
                let list = lines
                    .iter()
                    .map(usize::to_string)
                    .collect::<Vec<_>>()
                    .join(", ");
                // Line 0 is a JSON body: no lines to name.
                let (en_at, vi_at) = if lines.iter().any(|&l| l > 0) {
                    (format!(" (lines {list})"), format!(" (dòng {list})"))
                } else {
                    (String::new(), String::new())
                };
                for &l in &lines {
                    errors.push(RowError::new(
                        l,
                        bad(
                            format!("parent_code makes a cycle: {chain}{en_at}"),
                            format!("parent_code tạo thành vòng lặp: {chain}{vi_at}"),
                        ),
                    ));
                }
                break;
            }
            path.push(id);
            cur = parent.get(id).copied().flatten();
        }
        done.extend(path);
    }
    errors
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

    /// A registered facility as `plan` reads it from the database.
    fn stored(code: &str, parent: Option<&str>, status: Status) -> Hospital {
        Hospital {
            parent_id: parent.map(|p| format!("kcb-{p}")),
            status,
            ..check_row(&row(code, "")).expect("row").hospital
        }
    }

    #[test]
    fn an_empty_status_keeps_a_suspension_and_a_change_is_refused() {
        let register = [stored("34001", None, Status::Suspended)];
        // The routine file leaves status empty: still suspended, unchanged.
        let planned = plan(vec![(2, row("34001", ""))], &register).expect("plan");
        assert_eq!(planned[0].0.hospital.status, Status::Suspended);
        assert_eq!(planned[0].1, Action::Unchanged);
        // Naming the stored status is fine; changing it is not.
        let mut same = row("34001", "");
        same.status = Some("suspended".into());
        assert_eq!(
            plan(vec![(2, same)], &register).expect("plan")[0].1,
            Action::Unchanged
        );
        let mut lift = row("34001", "");
        lift.status = Some("active".into());
        let errors = plan(vec![(2, lift)], &register).expect_err("refused");
        assert_eq!(errors[0].line, 2);
        assert!(errors[0].message.contains("reactivate"), "{errors:?}");
        assert!(errors[0].message_vi.contains("Khôi phục"), "{errors:?}");
        // A new facility: empty is active, and it may start suspended.
        let planned = plan(vec![(2, row("34002", ""))], &register).expect("plan");
        assert_eq!(planned[0].0.hospital.status, Status::Active);
        let mut new = row("34003", "");
        new.status = Some("suspended".into());
        let planned = plan(vec![(2, new)], &register).expect("plan");
        assert_eq!(planned[0].0.hospital.status, Status::Suspended);
    }

    #[test]
    fn parent_cycles_in_the_file_or_with_the_register_name_their_lines() {
        // Within the file: 34001 → 34002 → 34003 → 34001, and a good row.
        let rows = vec![
            (2, row("34001", "34002")),
            (3, row("34004", "34001")),
            (4, row("34002", "34003")),
            (5, row("34003", "34001")),
        ];
        let errors = plan(rows, &[]).expect_err("a cycle");
        assert_eq!(errors.iter().map(|e| e.line).collect::<Vec<_>>(), [2, 4, 5]);
        assert!(errors[0].message.contains("(lines 2, 4, 5)"), "{errors:?}");
        assert!(errors[0].message_vi.contains("vòng lặp"), "{errors:?}");
        // Against the register: 34002 is stored under 34001; the file puts
        // 34001 under 34002.
        let register = [
            stored("34001", None, Status::Active),
            stored("34002", Some("34001"), Status::Active),
        ];
        let errors = plan(vec![(7, row("34001", "34002"))], &register).expect_err("a cycle");
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].line, 7);
        assert!(
            errors[0].message.contains("34001 → 34002 → 34001"),
            "{errors:?}"
        );
        // Moving 34002 up in the same file breaks the old link: no cycle.
        let rows = vec![(2, row("34001", "34002")), (3, row("34002", ""))];
        assert!(plan(rows, &register).is_ok());
        // A JSON body (line 0) names no lines.
        let errors = plan(vec![(0, row("34001", "34002"))], &register).expect_err("a cycle");
        assert!(!errors[0].message.contains("lines"), "{errors:?}");
    }

    #[test]
    fn every_line_error_has_a_vietnamese_message() {
        let text = "facility_code,name,tier,level,province,commune,ownership,parent_code,status\n\
                    34001,A,commune,primary,Thái Bình,,public,,\n\
                    34002,B,xa,primary,33,,public,,\n\
                    34003,C,commune,primary,33,,public,,paused\n\
                    34005,D,commune,primary,33,,public,,\n\
                    34005,E,commune,primary,33,,public,,\n";
        let errors = plan(parse_file(text).expect("parsed"), &[]).expect_err("bad rows");
        let vi: Vec<_> = errors
            .iter()
            .map(|e| (e.line, e.message_vi.as_str()))
            .collect();
        assert!(
            vi[0].1.starts_with("tỉnh `Thái Bình` không thuộc 34 tỉnh"),
            "{vi:?}"
        );
        assert!(vi[1].1.starts_with("tuyến `xa` không hợp lệ"), "{vi:?}");
        assert!(vi[2].1.starts_with("trạng thái `paused`"), "{vi:?}");
        assert_eq!(vi[3].0, 6);
        assert!(vi[3].1.contains("trùng với dòng 5"), "{vi:?}");
        let errors = parse_file("a\n\"open").expect_err("csv");
        assert!(errors[0].message_vi.contains("nháy"), "{errors:?}");
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
