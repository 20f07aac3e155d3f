//! The hospitals of the network, cached in memory: every plugin request
//! resolves its hospital, so the lookup must not cost a query.

use std::collections::HashMap;
use std::sync::RwLock;

use serde::{Deserialize, Serialize};
use sqlx::{AnyPool, Row};

/// Level of a hospital in the referral network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
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

/// A hospital of the network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hospital {
    pub id: String,
    pub name: String,
    pub tier: Tier,
    pub province: String,
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
        let rows = sqlx::query("SELECT id, name, tier, province FROM hospitals")
            .fetch_all(&pool)
            .await?;
        let mut cache = HashMap::new();
        for row in rows {
            let tier: String = row.try_get("tier")?;
            let hospital = Hospital {
                id: row.try_get("id")?,
                name: row.try_get("name")?,
                tier: tier.parse().map_err(DirectoryError::Invalid)?,
                province: row.try_get("province")?,
            };
            cache.insert(hospital.id.clone(), hospital);
        }
        Ok(Self {
            pool,
            cache: RwLock::new(cache),
        })
    }

    /// The hospital with this id.
    pub fn get(&self, id: &str) -> Option<Hospital> {
        self.cache
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
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

    /// Insert or replace a hospital.
    pub async fn upsert(&self, hospital: Hospital) -> Result<(), DirectoryError> {
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
        sqlx::query(
            "INSERT INTO hospitals (id, name, tier, province) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (id) DO UPDATE SET name = excluded.name, tier = excluded.tier, province = excluded.province",
        )
        .bind(&hospital.id)
        .bind(&hospital.name)
        .bind(hospital.tier.as_str())
        .bind(&hospital.province)
        .execute(&self.pool)
        .await?;
        self.cache
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(hospital.id.clone(), hospital);
        Ok(())
    }
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

/// Demo hospitals of the embedded default: one of each tier.
pub fn demo_hospitals() -> Vec<Hospital> {
    let h = |id: &str, name: &str, tier, province: &str| Hospital {
        id: id.into(),
        name: name.into(),
        tier,
        province: province.into(),
    };
    vec![
        h("bach-mai", "Bệnh viện Bạch Mai", Tier::Central, "Hà Nội"),
        h(
            "bvdk-thai-binh",
            "Bệnh viện Đa khoa tỉnh Thái Bình",
            Tier::Provincial,
            "Thái Bình",
        ),
        h(
            "ttyt-vu-thu",
            "Trung tâm Y tế huyện Vũ Thư",
            Tier::District,
            "Thái Bình",
        ),
        h(
            "tyt-xa-tam-quang",
            "Trạm Y tế xã Tam Quang",
            Tier::Commune,
            "Thái Bình",
        ),
    ]
}
