//! The practitioner directory's search: practitioners by name and specialty,
//! without regard to letter case or Vietnamese tone marks ("nguyen" finds
//! "Nguyễn"), over the folded copies of both kept beside each user
//! (`name_folded`, `specialty_folded`). Only practitioners, and never a
//! national identifier: the query selects no such column.

use sqlx::Row;

use super::{IdentityError, IdentityService};

/// Most practitioners one search returns.
pub const MAX_SEARCH_RESULTS: u32 = 50;
/// Longest query (and specialty) a search accepts, in characters.
pub const MAX_SEARCH_QUERY: usize = 200;
/// Most words of a query that are matched (each must appear in the name).
const MAX_QUERY_WORDS: usize = 6;

/// A practitioner as the directory shows them: no login name, no national
/// identifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PractitionerEntry {
    pub id: String,
    pub display_name: String,
    pub hospital_id: String,
    pub specialty: Option<String>,
    pub title: Option<String>,
    /// Specialty codes (`runtime/data/specialties.csv`).
    pub specialties: Vec<String>,
}

/// What to search for.
#[derive(Debug, Clone, Default)]
pub struct PractitionerSearch {
    /// One hospital's practitioners; `None`: the whole network's.
    pub hospital: Option<String>,
    /// Words that must all appear in the name (any case, tone marks
    /// optional); empty: every name.
    pub query: String,
    /// Text that must appear in the specialty, alike.
    pub specialty: Option<String>,
    /// At most this many (and never more than [`MAX_SEARCH_RESULTS`]).
    pub limit: u32,
    /// Only practitioners of active facilities of the register matching
    /// this (the directory API's filters); `None`: no such restriction.
    pub facilities: Option<FacilityFilter>,
    /// One specialty code that must be among theirs.
    pub specialty_code: Option<String>,
    /// Skip this many (paging).
    pub offset: u32,
}

/// Which facilities' practitioners a directory search lists: always the
/// active ones, narrowed by each filter given. A subquery on `hospitals`,
/// so a national register binds no parameter per facility.
#[derive(Debug, Clone, Default)]
pub struct FacilityFilter {
    /// One facility's id.
    pub facility: Option<String>,
    /// `central`, `provincial`, `district` or `commune`.
    pub tier: Option<String>,
    /// Province names as stored, or province codes: any of them (a
    /// province search resolves to the few names it matches).
    pub provinces: Option<Vec<String>>,
}

/// `s` in lower case without Vietnamese tone marks or other combining
/// marks, `đ` as `d`, runs of white space as one space, trimmed.
pub fn fold(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars().flat_map(char::to_lowercase) {
        let c = match c {
            'à' | 'á' | 'ả' | 'ã' | 'ạ' | 'ă' | 'ằ' | 'ắ' | 'ẳ' | 'ẵ' | 'ặ' | 'â' | 'ầ' | 'ấ'
            | 'ẩ' | 'ẫ' | 'ậ' => 'a',
            'è' | 'é' | 'ẻ' | 'ẽ' | 'ẹ' | 'ê' | 'ề' | 'ế' | 'ể' | 'ễ' | 'ệ' => {
                'e'
            }
            'ì' | 'í' | 'ỉ' | 'ĩ' | 'ị' => 'i',
            'ò' | 'ó' | 'ỏ' | 'õ' | 'ọ' | 'ô' | 'ồ' | 'ố' | 'ổ' | 'ỗ' | 'ộ' | 'ơ' | 'ờ' | 'ớ'
            | 'ở' | 'ỡ' | 'ợ' => 'o',
            'ù' | 'ú' | 'ủ' | 'ũ' | 'ụ' | 'ư' | 'ừ' | 'ứ' | 'ử' | 'ữ' | 'ự' => {
                'u'
            }
            'ỳ' | 'ý' | 'ỷ' | 'ỹ' | 'ỵ' => 'y',
            'đ' => 'd',
            // Combining marks of a decomposed (NFD) name: dropped.
            '\u{0300}'..='\u{036f}' => continue,
            c if c.is_whitespace() => ' ',
            c => c,
        };
        if c == ' ' && (out.is_empty() || out.ends_with(' ')) {
            continue;
        }
        out.push(c);
    }
    out.truncate(out.trim_end().len());
    out
}

/// `%word%` for `LIKE … ESCAPE '\'`.
fn contains_pattern(word: &str) -> String {
    let mut p = String::with_capacity(word.len() + 2);
    p.push('%');
    for c in word.chars() {
        if matches!(c, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    p
}

impl IdentityService {
    /// Practitioners matching `search`, sorted by name (see
    /// [`PractitionerSearch`]); who may search is the caller's business.
    pub async fn search_practitioners(
        &self,
        search: &PractitionerSearch,
    ) -> Result<Vec<PractitionerEntry>, IdentityError> {
        for (field, text) in [
            ("query", Some(search.query.as_str())),
            ("specialty", search.specialty.as_deref()),
        ] {
            if text.is_some_and(|t| t.chars().count() > MAX_SEARCH_QUERY) {
                return Err(IdentityError::Invalid(format!(
                    "`{field}` is longer than {MAX_SEARCH_QUERY} characters"
                )));
            }
        }
        let limit = search.limit.min(MAX_SEARCH_RESULTS);
        if limit == 0 {
            return Ok(Vec::new());
        }
        let query = fold(&search.query);
        let words: Vec<&str> = query.split(' ').filter(|w| !w.is_empty()).collect();
        let specialty = search
            .specialty
            .as_deref()
            .map(fold)
            .filter(|s| !s.is_empty());
        let mut sql = String::from(
            "SELECT id, display_name, hospital_id, specialty, title, specialties FROM identity_users \
             WHERE (role = 'practitioner' OR roles LIKE '% practitioner %') \
             AND status = 'active' AND hospital_id IS NOT NULL",
        );
        let mut binds: Vec<String> = Vec::new();
        if let Some(h) = &search.hospital {
            binds.push(h.clone());
            sql.push_str(&format!(" AND hospital_id = ${}", binds.len()));
        }
        if let Some(f) = &search.facilities {
            sql.push_str(" AND hospital_id IN (SELECT id FROM hospitals WHERE status = 'active'");
            if let Some(id) = &f.facility {
                binds.push(id.clone());
                sql.push_str(&format!(" AND id = ${}", binds.len()));
            }
            if let Some(t) = &f.tier {
                binds.push(t.clone());
                sql.push_str(&format!(" AND tier = ${}", binds.len()));
            }
            if let Some(ps) = &f.provinces {
                // Bounded by the number of provinces, not of facilities.
                if ps.is_empty() || ps.len() > 200 {
                    return Ok(Vec::new());
                }
                let mut marks = Vec::with_capacity(ps.len());
                for p in ps {
                    binds.push(p.clone());
                    marks.push(format!("${}", binds.len()));
                }
                let marks = marks.join(", ");
                sql.push_str(&format!(
                    " AND (province IN ({marks}) OR province_code IN ({marks}))"
                ));
            }
            sql.push(')');
        }
        if let Some(code) = &search.specialty_code {
            binds.push(code.clone());
            let n = binds.len();
            binds.push(contains_pattern(&format!(" {code} ")));
            sql.push_str(&format!(
                " AND (specialty = ${n} OR specialties LIKE ${} ESCAPE '\\')",
                binds.len()
            ));
        }
        for w in words.iter().take(MAX_QUERY_WORDS) {
            binds.push(contains_pattern(w));
            sql.push_str(&format!(
                " AND name_folded LIKE ${} ESCAPE '\\'",
                binds.len()
            ));
        }
        if let Some(s) = &specialty {
            binds.push(contains_pattern(s));
            sql.push_str(&format!(
                " AND specialty_folded LIKE ${} ESCAPE '\\'",
                binds.len()
            ));
        }
        let offset = search.offset.min(100_000);
        sql.push_str(&format!(
            " ORDER BY name_folded, id LIMIT {limit} OFFSET {offset}"
        ));
        // Audited: the text is fixed; only placeholders and the bounded
        // limit are formatted into it, every value is bound.
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for b in &binds {
            q = q.bind(b);
        }
        let rows = q.fetch_all(&self.db.pool).await?;
        rows.iter()
            .map(|row| {
                Ok(PractitionerEntry {
                    id: row.try_get("id")?,
                    display_name: row.try_get("display_name")?,
                    hospital_id: row.try_get("hospital_id")?,
                    specialty: row.try_get("specialty")?,
                    title: row.try_get("title")?,
                    specialties: {
                        let codes: Option<String> = row.try_get("specialties")?;
                        let specialty: Option<String> = row.try_get("specialty")?;
                        match codes {
                            Some(c) => c.split_whitespace().map(str::to_owned).collect(),
                            None => specialty.into_iter().collect(),
                        }
                    },
                })
            })
            .collect()
    }

    /// Fill the folded name and specialty of the practitioners stored before
    /// they were kept (a no-op once done); at start, 500 at a time.
    pub(super) async fn fold_missing(&self) -> Result<(), IdentityError> {
        loop {
            let rows = sqlx::query(
                "SELECT id, display_name, specialty FROM identity_users \
                 WHERE role = 'practitioner' AND name_folded IS NULL LIMIT 500",
            )
            .fetch_all(&self.db.pool)
            .await?;
            if rows.is_empty() {
                return Ok(());
            }
            for row in rows {
                let id: String = row.try_get("id")?;
                let name: String = row.try_get("display_name")?;
                let specialty: Option<String> = row.try_get("specialty")?;
                sqlx::query(
                    "UPDATE identity_users SET name_folded = $1, specialty_folded = $2 WHERE id = $3",
                )
                .bind(fold(&name))
                .bind(specialty.as_deref().map(fold))
                .bind(&id)
                .execute(&self.db.pool)
                .await?;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folding_drops_case_tone_marks_and_extra_space() {
        assert_eq!(fold("  BS. Nguyễn   Thị LAN "), "bs. nguyen thi lan");
        assert_eq!(fold("Đỗ Văn Khoa"), "do van khoa");
        assert_eq!(fold("Tim mạch"), "tim mach");
        // Decomposed: e + combining circumflex + combining dot below.
        assert_eq!(fold("Nguye\u{0302}\u{0303}n"), "nguyen");
        assert_eq!(fold("ƯỚC Ở"), "uoc o");
    }

    #[test]
    fn like_patterns_escape_wildcards() {
        assert_eq!(contains_pattern("a%b_c\\"), "%a\\%b\\_c\\\\%");
    }
}
