//! The network register, kept by the ministry: facilities (hospitals,
//! health centres, commune stations) with their BHYT codes, and vendors
//! (docs/operations.md, "The network register"). Facilities are the
//! `hospitals` the rest of the platform reads through
//! [`HospitalDirectory`]; a change here updates that cache on every node
//! through the cluster bus, so a suspension takes effect everywhere at once.

pub mod cli;
pub mod csv;
mod import;
mod vendors;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::broadcast;

use crate::audit::{AuditError, AuditEvent, AuditLog};
use crate::cluster::{Bus, BusMessage};
use crate::db::Database;
use crate::directory::{
    COLUMNS, DirectoryError, Hospital, HospitalDirectory, Status, Tier, provinces, row_to_hospital,
};
use crate::time::now_millis;

pub use import::{Action, Change, FacilityRow, HEADER, ImportReport, MAX_CHANGES, RowError};
pub use vendors::{NewVendor, Vendor};

/// The bus channel of register changes.
pub const CHANNEL: &str = "vth_network";

/// Why a register operation failed; nothing was changed.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// Rows of an import (or the one facility sent) that cannot be applied.
    #[error("{} row(s) cannot be imported; nothing was applied", .0.len())]
    BadRows(Vec<RowError>),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Audit(#[from] AuditError),
    #[error(transparent)]
    Directory(#[from] DirectoryError),
}

/// What another node changed (the bus payload).
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Notice {
    Facility(String),
    Vendor(String),
    All,
}

/// The register of one node.
pub struct NetworkRegister {
    db: Database,
    hospitals: Arc<HospitalDirectory>,
    bus: Arc<Bus>,
    /// Suspended vendors, checked on every request of their users.
    suspended_vendors: RwLock<HashSet<String>>,
}

/// A filter of [`NetworkRegister::facilities`].
#[derive(Debug, Clone, Default, Deserialize)]
pub struct FacilityQuery {
    /// Part of the name, code, id or commune (any case).
    pub q: Option<String>,
    pub tier: Option<String>,
    /// Code or name.
    pub province: Option<String>,
    pub status: Option<String>,
    pub limit: Option<usize>,
    pub offset: Option<usize>,
}

/// Counts of one group of facilities in the summary.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Counts {
    pub registered: usize,
    pub active: usize,
    pub connected: usize,
    pub public_registered: usize,
    pub public_connected: usize,
}

impl Counts {
    fn add(&mut self, h: &Hospital, connected: bool) {
        let public = h.ownership == Some(crate::directory::Ownership::Public);
        self.registered += 1;
        self.active += usize::from(h.status == Status::Active);
        self.connected += usize::from(connected);
        self.public_registered += usize::from(public);
        self.public_connected += usize::from(public && connected);
    }
}

/// Registered, active and connected facilities per tier and per province.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub total: Counts,
    pub tiers: Vec<serde_json::Value>,
    pub provinces: Vec<serde_json::Value>,
}

impl NetworkRegister {
    /// The register over `db`, reading the suspended vendors.
    pub async fn new(
        db: Database,
        hospitals: Arc<HospitalDirectory>,
        bus: Arc<Bus>,
    ) -> Result<Arc<Self>, NetworkError> {
        let me = Arc::new(Self {
            db,
            hospitals,
            bus,
            suspended_vendors: RwLock::default(),
        });
        me.reload_vendors().await?;
        Ok(me)
    }

    /// Follow the other nodes' changes: re-read what they name, everything
    /// when events may have been missed.
    pub fn start_cluster_events(self: &Arc<Self>) {
        let mut events = self.bus.subscribe(CHANNEL);
        let me = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                let message = events.recv().await;
                let Some(register) = me.upgrade() else { return };
                let result = match message {
                    Ok(BusMessage::Event(payload)) => match serde_json::from_str(&payload) {
                        Ok(notice) => register.apply_notice(notice).await,
                        Err(e) => {
                            tracing::warn!(error = %e, "unreadable network register event");
                            Ok(())
                        }
                    },
                    Ok(BusMessage::Resync) | Err(broadcast::error::RecvError::Lagged(_)) => {
                        register.apply_notice(Notice::All).await
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                };
                if let Err(e) = result {
                    tracing::warn!(error = %e, "cannot re-read the network register");
                }
            }
        });
    }

    async fn apply_notice(&self, notice: Notice) -> Result<(), NetworkError> {
        match notice {
            Notice::Facility(id) => self.hospitals.reload_one(&id).await?,
            Notice::Vendor(_) => self.reload_vendors().await?,
            Notice::All => {
                self.hospitals.reload().await?;
                self.reload_vendors().await?;
            }
        }
        Ok(())
    }

    /// Tell every node (this one's cache is already up to date).
    fn announce(&self, notice: &Notice) {
        if let Ok(payload) = serde_json::to_string(notice) {
            self.bus.notify_others(CHANNEL, &payload);
        }
    }

    /// Whether `vendor` is suspended (from the cache).
    pub fn vendor_suspended(&self, vendor: &str) -> bool {
        self.suspended_vendors
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains(vendor)
    }

    async fn reload_vendors(&self) -> Result<(), NetworkError> {
        let ids: Vec<String> =
            sqlx::query_scalar("SELECT id FROM vendors WHERE status = 'suspended'")
                .fetch_all(&self.db.pool)
                .await?;
        *self
            .suspended_vendors
            .write()
            .unwrap_or_else(|e| e.into_inner()) = ids.into_iter().collect();
        Ok(())
    }

    // ----- facilities -----

    /// Facilities matching `query`, by province then name, and how many
    /// match in all.
    pub fn facilities(
        &self,
        query: &FacilityQuery,
    ) -> Result<(Vec<Hospital>, usize), NetworkError> {
        let tier = query
            .tier
            .as_deref()
            .filter(|t| !t.is_empty())
            .map(str::parse::<Tier>)
            .transpose()
            .map_err(NetworkError::Invalid)?;
        let status = query
            .status
            .as_deref()
            .filter(|t| !t.is_empty())
            .map(str::parse::<Status>)
            .transpose()
            .map_err(NetworkError::Invalid)?;
        let province = query
            .province
            .as_deref()
            .map(str::trim)
            .filter(|p| !p.is_empty());
        let province_name = province.map(|p| provinces::find(p).map_or(p, |p| p.name_vi));
        let q = query
            .q
            .as_deref()
            .map(|q| q.trim().to_lowercase())
            .filter(|q| !q.is_empty());
        let mut found: Vec<Hospital> = self
            .hospitals
            .list()
            .into_iter()
            .filter(|h| tier.is_none_or(|t| h.tier == t))
            .filter(|h| status.is_none_or(|s| h.status == s))
            .filter(|h| province_name.is_none_or(|p| h.province == p))
            .filter(|h| {
                q.as_deref().is_none_or(|q| {
                    h.name.to_lowercase().contains(q)
                        || h.id.contains(q)
                        || h.facility_code.as_deref().is_some_and(|c| c.contains(q))
                        || h.commune
                            .as_deref()
                            .is_some_and(|c| c.to_lowercase().contains(q))
                })
            })
            .collect();
        found.sort_by(|a, b| (&a.province, &a.name).cmp(&(&b.province, &b.name)));
        let total = found.len();
        let limit = query.limit.unwrap_or(50).clamp(1, 500);
        let page = found
            .into_iter()
            .skip(query.offset.unwrap_or(0))
            .take(limit)
            .collect();
        Ok((page, total))
    }

    /// The facility with this BHYT code (from the cache).
    pub fn facility_by_code(&self, code: &str) -> Option<Hospital> {
        self.hospitals.find_by_code(code)
    }

    /// Registered, active and connected facilities per tier and province.
    /// `connected` holds the hospitals with at least one active module
    /// activation; only active facilities count as connected.
    pub fn summary(&self, connected: &HashSet<String>) -> Summary {
        let mut total = Counts::default();
        let mut tiers: BTreeMap<usize, Counts> = BTreeMap::new();
        let mut by_province: HashMap<String, Counts> = HashMap::new();
        for h in self.hospitals.list() {
            let is_connected = h.status == Status::Active && connected.contains(&h.id);
            total.add(&h, is_connected);
            tiers
                .entry(h.tier as usize)
                .or_default()
                .add(&h, is_connected);
            by_province
                .entry(h.province.clone())
                .or_default()
                .add(&h, is_connected);
        }
        let tier_of = |i: usize| {
            [
                Tier::Central,
                Tier::Provincial,
                Tier::District,
                Tier::Commune,
            ]
            .get(i)
            .copied()
            .unwrap_or_default()
        };
        let tiers = tiers
            .into_iter()
            .map(|(i, c)| json!({ "tier": tier_of(i), "counts": c }))
            .collect();
        // The current provinces in order, then names from before the
        // register (e.g. a province that has since merged).
        let mut provinces_out = Vec::new();
        for p in provinces::all() {
            if let Some(c) = by_province.remove(p.name_vi) {
                provinces_out.push(json!({ "code": p.code, "name": p.name_vi, "counts": c }));
            }
        }
        let mut rest: Vec<_> = by_province.into_iter().collect();
        rest.sort_by(|a, b| a.0.cmp(&b.0));
        for (name, c) in rest {
            provinces_out.push(json!({ "code": null, "name": name, "counts": c }));
        }
        Summary {
            total,
            tiers,
            provinces: provinces_out,
        }
    }

    /// Suspend or reactivate a facility; audited, and on every node at once.
    pub async fn set_facility_status(
        &self,
        code: &str,
        status: Status,
        actor: &str,
        reason: Option<&str>,
    ) -> Result<Hospital, NetworkError> {
        let mut tx = self.db.begin_write().await?;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM hospitals WHERE facility_code = $1"
        )))
        .bind(code)
        .fetch_optional(&mut *tx.tx)
        .await?
        .ok_or_else(|| NetworkError::NotFound(format!("no facility with code `{code}`")))?;
        let mut h = row_to_hospital(&row)?;
        if h.status == status {
            return Ok(h);
        }
        h.status = status;
        h.updated_at = Some(now_millis());
        sqlx::query("UPDATE hospitals SET status = $1, updated_at = $2 WHERE id = $3")
            .bind(status.as_str())
            .bind(h.updated_at)
            .bind(&h.id)
            .execute(&mut *tx.tx)
            .await?;
        AuditLog::append_in(
            &mut tx,
            AuditEvent {
                actor: actor.into(),
                action: format!(
                    "facility.{}",
                    if status == Status::Suspended {
                        "suspended"
                    } else {
                        "reactivated"
                    }
                ),
                target: format!("hospital:{}", h.id),
                hospital_id: Some(h.id.clone()),
                details: json!({ "facility_code": code, "reason": reason }),
            },
        )
        .await?;
        tx.commit().await?;
        self.hospitals.reload_one(&h.id).await?;
        self.announce(&Notice::Facility(h.id.clone()));
        Ok(h)
    }

    /// Every facility row as stored (fresh from the database, not the cache).
    async fn stored_facilities(
        &self,
        tx: &mut crate::db::WriteTx,
    ) -> Result<Vec<Hospital>, NetworkError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM hospitals"
        )))
        .fetch_all(&mut *tx.tx)
        .await?;
        rows.iter()
            .map(|r| row_to_hospital(r).map_err(NetworkError::from))
            .collect()
    }
}

/// Audit actor for the CLI.
pub const CLI_ACTOR: &str = "cli:network-import";

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn another_nodes_event_updates_this_nodes_cache() {
        let dir = tempfile::TempDir::new().expect("dir");
        let url = format!("sqlite://{}", dir.path().join("n.db").display());
        let db = Database::connect(&url).await.expect("db");
        let hospitals = Arc::new(HospitalDirectory::load(db.pool.clone()).await.expect("dir"));
        for h in crate::directory::demo_hospitals() {
            hospitals.upsert(h).await.expect("seed");
        }
        let bus = Arc::new(Bus::new(db.clone()));
        let register = NetworkRegister::new(db.clone(), hospitals.clone(), bus.clone())
            .await
            .expect("register");
        register.start_cluster_events();
        // Another node suspends a facility: the row changes, and its event
        // arrives here (on PostgreSQL through NOTIFY; here published directly).
        sqlx::query("UPDATE hospitals SET status = 'suspended' WHERE id = 'ttyt-vu-thu'")
            .execute(&db.pool)
            .await
            .expect("update");
        assert!(!hospitals.is_suspended("ttyt-vu-thu"));
        bus.publish(
            CHANNEL,
            serde_json::to_string(&Notice::Facility("ttyt-vu-thu".into())).expect("json"),
        );
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
        while !hospitals.is_suspended("ttyt-vu-thu") {
            assert!(std::time::Instant::now() < deadline, "within a second");
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        // A vendor suspended elsewhere, then a resync re-reads everything.
        sqlx::query(
            "INSERT INTO vendors (id, name, created_at, status) VALUES ('v1', 'V', 0, 'suspended')",
        )
        .execute(&db.pool)
        .await
        .expect("vendor");
        sqlx::query("UPDATE hospitals SET status = 'active' WHERE id = 'ttyt-vu-thu'")
            .execute(&db.pool)
            .await
            .expect("update");
        bus.publish(CHANNEL, serde_json::to_string(&Notice::All).expect("json"));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
        while hospitals.is_suspended("ttyt-vu-thu") || !register.vendor_suspended("v1") {
            assert!(std::time::Instant::now() < deadline, "within a second");
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }
}
