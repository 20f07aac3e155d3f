//! The hospitals of the network, cached in memory: every plugin request
//! resolves its hospital, so the lookup must not cost a query.

use std::collections::HashMap;
use std::sync::RwLock;

use serde::{Deserialize, Serialize};
use sqlx::{AnyPool, Row};

/// Level of a hospital in the referral network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    #[default]
    Central,
    Provincial,
    District,
    Commune,
}

impl Tier {
    /// Lower-case name as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Central => "central",
            Self::Provincial => "provincial",
            Self::District => "district",
            Self::Commune => "commune",
        }
    }
}

impl std::str::FromStr for Tier {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "central" => Ok(Self::Central),
            "provincial" => Ok(Self::Provincial),
            "district" => Ok(Self::District),
            "commune" => Ok(Self::Commune),
            other => Err(format!("unknown hospital tier `{other}`")),
        }
    }
}

/// Technical level under the 2023 Law on Medical Examination and
/// Treatment (Luật Khám bệnh, chữa bệnh 2023, art. 104).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Cấp khám bệnh, chữa bệnh ban đầu.
    Primary,
    /// Cấp khám bệnh, chữa bệnh cơ bản.
    Basic,
    /// Cấp khám bệnh, chữa bệnh chuyên sâu.
    Specialised,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Primary => "primary",
            Self::Basic => "basic",
            Self::Specialised => "specialised",
        }
    }
}

impl std::str::FromStr for Level {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "primary" => Ok(Self::Primary),
            "basic" => Ok(Self::Basic),
            "specialised" => Ok(Self::Specialised),
            other => Err(format!(
                "unknown level `{other}` (primary, basic or specialised)"
            )),
        }
    }
}

/// Who owns a facility.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Ownership {
    Public,
    Private,
}

impl Ownership {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Public => "public",
            Self::Private => "private",
        }
    }
}

impl std::str::FromStr for Ownership {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "public" => Ok(Self::Public),
            "private" => Ok(Self::Private),
            other => Err(format!("unknown ownership `{other}` (public or private)")),
        }
    }
}

/// Whether a facility (or vendor) may use the platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    #[default]
    Active,
    Suspended,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Suspended => "suspended",
        }
    }
}

impl std::str::FromStr for Status {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "active" => Ok(Self::Active),
            "suspended" => Ok(Self::Suspended),
            other => Err(format!("unknown status `{other}` (active or suspended)")),
        }
    }
}

/// A hospital (facility) of the network. The register's fields are
/// optional so hospitals from before it (and their JSON) still read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Hospital {
    pub id: String,
    pub name: String,
    pub tier: Tier,
    /// The province's name ([`provinces`]), as every older reader expects.
    pub province: String,
    /// BHYT facility code (mã cơ sở KCB): 5 digits.
    #[serde(default)]
    pub facility_code: Option<String>,
    #[serde(default)]
    pub level: Option<Level>,
    #[serde(default)]
    pub province_code: Option<String>,
    /// Commune or ward (xã, phường).
    #[serde(default)]
    pub commune: Option<String>,
    #[serde(default)]
    pub ownership: Option<Ownership>,
    /// The facility above it (a commune station's health centre).
    #[serde(default)]
    pub parent_id: Option<String>,
    #[serde(default)]
    pub status: Status,
    /// Milliseconds since the Unix epoch of the last register change.
    #[serde(default)]
    pub updated_at: Option<i64>,
}

impl Hospital {
    /// A hospital with only the fields that predate the register.
    pub fn new(id: &str, name: &str, tier: Tier, province: &str) -> Self {
        Self {
            id: id.into(),
            name: name.into(),
            tier,
            province: province.into(),
            ..Self::default()
        }
    }

    /// The register's fields equal (everything but `updated_at`).
    pub fn same_as(&self, other: &Self) -> bool {
        Self {
            updated_at: None,
            ..self.clone()
        } == Self {
            updated_at: None,
            ..other.clone()
        }
    }
}

/// The columns [`row_to_hospital`] reads.
pub const COLUMNS: &str = "id, name, tier, province, facility_code, level, province_code, commune, ownership, parent_id, status, updated_at";

/// A `hospitals` row (selected with [`COLUMNS`]).
pub fn row_to_hospital(row: &sqlx::any::AnyRow) -> Result<Hospital, DirectoryError> {
    fn parse<T: std::str::FromStr<Err = String>>(
        v: Option<String>,
    ) -> Result<Option<T>, DirectoryError> {
        v.map(|s| s.parse().map_err(DirectoryError::Invalid))
            .transpose()
    }
    let tier: String = row.try_get("tier")?;
    let status: String = row.try_get("status")?;
    Ok(Hospital {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        tier: tier.parse().map_err(DirectoryError::Invalid)?,
        province: row.try_get("province")?,
        facility_code: row.try_get("facility_code")?,
        level: parse(row.try_get("level")?)?,
        province_code: row.try_get("province_code")?,
        commune: row.try_get("commune")?,
        ownership: parse(row.try_get("ownership")?)?,
        parent_id: row.try_get("parent_id")?,
        status: status.parse().map_err(DirectoryError::Invalid)?,
        updated_at: row.try_get("updated_at")?,
    })
}

/// Why a hospital could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    #[error("invalid hospital: {0}")]
    Invalid(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

/// The hospital directory.
pub struct HospitalDirectory {
    pool: AnyPool,
    cache: RwLock<HashMap<String, Hospital>>,
}

impl HospitalDirectory {
    /// Load every hospital from the database.
    pub async fn load(pool: AnyPool) -> Result<Self, DirectoryError> {
        let cache = read_all(&pool).await?;
        Ok(Self {
            pool,
            cache: RwLock::new(cache),
        })
    }

    /// Re-read every hospital (after an import, or events were missed).
    pub async fn reload(&self) -> Result<(), DirectoryError> {
        let all = read_all(&self.pool).await?;
        *self.cache.write().unwrap_or_else(|e| e.into_inner()) = all;
        Ok(())
    }

    /// Re-read one hospital (another node changed it).
    pub async fn reload_one(&self, id: &str) -> Result<(), DirectoryError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM hospitals WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        let mut cache = self.cache.write().unwrap_or_else(|e| e.into_inner());
        match row {
            Some(row) => {
                let h = row_to_hospital(&row)?;
                cache.insert(h.id.clone(), h);
            }
            None => {
                cache.remove(id);
            }
        }
        Ok(())
    }

    /// Whether the hospital is suspended: checked on every request of its
    /// staff and its plugin routes, so no clone.
    pub fn is_suspended(&self, id: &str) -> bool {
        self.cache
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .is_some_and(|h| h.status == Status::Suspended)
    }

    /// The hospital with this id.
    pub fn get(&self, id: &str) -> Option<Hospital> {
        self.cache
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned()
    }

    /// The facility with this BHYT code.
    pub fn find_by_code(&self, code: &str) -> Option<Hospital> {
        self.cache
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .find(|h| h.facility_code.as_deref() == Some(code))
            .cloned()
    }

    /// Every hospital, sorted by id.
    pub fn list(&self) -> Vec<Hospital> {
        let mut all: Vec<_> = self
            .cache
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        all.sort_by(|a, b| a.id.cmp(&b.id));
        all
    }

    /// Insert or replace a hospital, keeping the status of one that exists
    /// (only the register suspends and reactivates). A province name of the
    /// current list gets its code; other names are kept as they are
    /// (hospitals from before the register).
    pub async fn upsert(&self, mut hospital: Hospital) -> Result<(), DirectoryError> {
        validate_id(&hospital.id)?;
        if hospital.name.trim().is_empty() || hospital.province.trim().is_empty() {
            return Err(DirectoryError::Invalid(
                "name and province are required".into(),
            ));
        }
        use crate::text_limits::{NAME, TITLE, check};
        check("name", &hospital.name, NAME)
            .and_then(|()| check("province", &hospital.province, TITLE))
            .map_err(|e| DirectoryError::Invalid(e.to_string()))?;
        if hospital.province_code.is_none() {
            hospital.province_code = provinces::find(&hospital.province).map(|p| p.code.to_owned());
        }
        sqlx::query(
            "INSERT INTO hospitals (id, name, tier, province, facility_code, level, province_code, commune, ownership, parent_id, status, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
             ON CONFLICT (id) DO UPDATE SET name = excluded.name, tier = excluded.tier, province = excluded.province, \
             facility_code = excluded.facility_code, level = excluded.level, province_code = excluded.province_code, \
             commune = excluded.commune, ownership = excluded.ownership, parent_id = excluded.parent_id, \
             updated_at = excluded.updated_at",
        )
        .bind(&hospital.id)
        .bind(&hospital.name)
        .bind(hospital.tier.as_str())
        .bind(&hospital.province)
        .bind(&hospital.facility_code)
        .bind(hospital.level.map(Level::as_str))
        .bind(&hospital.province_code)
        .bind(&hospital.commune)
        .bind(hospital.ownership.map(Ownership::as_str))
        .bind(&hospital.parent_id)
        .bind(hospital.status.as_str())
        .bind(hospital.updated_at)
        .execute(&self.pool)
        .await?;
        // A suspension stays (a restart with --demo re-seeds): the cache
        // takes the row as stored.
        self.reload_one(&hospital.id).await
    }
}

async fn read_all(pool: &AnyPool) -> Result<HashMap<String, Hospital>, DirectoryError> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM hospitals"
    )))
    .fetch_all(pool)
    .await?;
    let mut cache = HashMap::with_capacity(rows.len());
    for row in rows {
        let h = row_to_hospital(&row)?;
        cache.insert(h.id.clone(), h);
    }
    Ok(cache)
}

/// Ids used in URLs: lower-case ASCII letters, digits and `-`, 1 to 64 long.
pub fn validate_id(id: &str) -> Result<(), DirectoryError> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !id.starts_with('-');
    if ok {
        Ok(())
    } else {
        Err(DirectoryError::Invalid(format!(
            "id `{id}` must be 1-64 characters of a-z, 0-9 and '-', not starting with '-'"
        )))
    }
}

/// Demo hospitals of the embedded default: one of each tier. Thái Bình
/// merged into Hưng Yên in 2025 (Resolution 202/2025/QH15); the hospitals
/// keep their names.
pub fn demo_hospitals() -> Vec<Hospital> {
    let h = |id: &str,
             name: &str,
             tier,
             province: &str,
             code: &str,
             level,
             commune: &str,
             parent: Option<&str>| Hospital {
        facility_code: Some(code.into()),
        level: Some(level),
        province_code: provinces::find(province).map(|p| p.code.to_owned()),
        commune: Some(commune.into()),
        ownership: Some(Ownership::Public),
        parent_id: parent.map(Into::into),
        ..Hospital::new(id, name, tier, province)
    };
    vec![
        h(
            "bach-mai",
            "Bệnh viện Bạch Mai",
            Tier::Central,
            "Hà Nội",
            "01929",
            Level::Specialised,
            "Phường Kim Liên",
            None,
        ),
        h(
            "bvdk-thai-binh",
            "Bệnh viện Đa khoa tỉnh Thái Bình",
            Tier::Provincial,
            "Hưng Yên",
            "34001",
            Level::Specialised,
            "Phường Trần Hưng Đạo",
            None,
        ),
        h(
            "ttyt-vu-thu",
            "Trung tâm Y tế huyện Vũ Thư",
            Tier::District,
            "Hưng Yên",
            "34011",
            Level::Basic,
            "Xã Vũ Thư",
            Some("bvdk-thai-binh"),
        ),
        h(
            "tyt-xa-tam-quang",
            "Trạm Y tế xã Tam Quang",
            Tier::Commune,
            "Hưng Yên",
            "34113",
            Level::Primary,
            "Xã Tam Quang",
            Some("ttyt-vu-thu"),
        ),
    ]
}

/// The 34 provinces and centrally-run cities after the 2025
/// reorganisation (Resolution 202/2025/QH15), from `runtime/data/provinces.csv`.
pub mod provinces {
    use std::sync::OnceLock;

    /// One province or centrally-run city.
    #[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
    pub struct Province {
        pub code: &'static str,
        pub name_vi: &'static str,
        pub name_en: &'static str,
    }

    const CSV: &str = include_str!("../data/provinces.csv");

    /// Every province, in the file's order (by code).
    pub fn all() -> &'static [Province] {
        static ALL: OnceLock<Vec<Province>> = OnceLock::new();
        ALL.get_or_init(|| {
            CSV.lines()
                .skip(1)
                .filter_map(|l| {
                    let mut f = l.split(',').map(str::trim);
                    Some(Province {
                        code: f.next().filter(|c| !c.is_empty())?,
                        name_vi: f.next()?,
                        name_en: f.next()?,
                    })
                })
                .collect()
        })
    }

    /// The province named by `key`: its code (`01`, `1`), or its name in
    /// Vietnamese or English, with or without `Tỉnh`/`Thành phố`/`TP.`,
    /// any case.
    pub fn find(key: &str) -> Option<&'static Province> {
        let key = key.trim();
        if !key.is_empty() && key.bytes().all(|b| b.is_ascii_digit()) {
            let padded = format!("{key:0>2}");
            return all().iter().find(|p| p.code == padded);
        }
        let bare = |s: &str| -> String {
            let lower = s.trim().to_lowercase();
            let mut rest = lower.as_str();
            for prefix in ["thành phố ", "tỉnh ", "tp. ", "tp.", "tp ", "city of "] {
                if let Some(r) = rest.strip_prefix(prefix) {
                    rest = r.trim_start();
                    break;
                }
            }
            rest.strip_suffix(" city").unwrap_or(rest).trim().to_owned()
        };
        let wanted = bare(key);
        all()
            .iter()
            .find(|p| bare(p.name_vi) == wanted || bare(p.name_en) == wanted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_province_list_has_the_34_of_2025() {
        let all = provinces::all();
        assert_eq!(all.len(), 34);
        let mut codes: Vec<_> = all.iter().map(|p| p.code).collect();
        codes.dedup();
        assert_eq!(codes.len(), 34, "codes are unique and sorted");
        assert_eq!(provinces::find("01").map(|p| p.name_vi), Some("Hà Nội"));
        assert_eq!(provinces::find("1").map(|p| p.name_vi), Some("Hà Nội"));
        assert_eq!(
            provinces::find("Thành phố Hồ Chí Minh").map(|p| p.code),
            Some("79")
        );
        assert_eq!(provinces::find("hung yen").map(|p| p.code), Some("33"));
        assert_eq!(provinces::find("Hưng Yên").map(|p| p.code), Some("33"));
        assert!(provinces::find("Thái Bình").is_none(), "merged in 2025");
    }

    #[test]
    fn old_hospital_json_still_reads() {
        let h: Hospital = serde_json::from_str(
            r#"{"id":"bv-a","name":"A","tier":"central","province":"Hà Nội"}"#,
        )
        .expect("old JSON");
        assert_eq!(h, Hospital::new("bv-a", "A", Tier::Central, "Hà Nội"));
        assert_eq!(h.status, Status::Active);
    }
}
