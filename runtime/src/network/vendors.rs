//! Vendors in the register: tax code, contact and status. A suspended
//! vendor's users are refused and it cannot submit versions.

use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::Row;

use super::{NetworkError, NetworkRegister, Notice};
use crate::audit::{AuditEvent, AuditLog};
use crate::directory::{Status, validate_id};
use crate::time::now_secs;

/// A vendor as registered.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Vendor {
    pub id: String,
    pub name: String,
    pub tax_code: Option<String>,
    pub contact_name: Option<String>,
    pub contact_email: Option<String>,
    pub contact_phone: Option<String>,
    pub status: Status,
    /// Seconds since the Unix epoch.
    pub created_at: i64,
}

/// A vendor to register (or whose details to complete).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct NewVendor {
    pub id: String,
    pub name: String,
    pub tax_code: String,
    #[serde(default)]
    pub contact_name: Option<String>,
    #[serde(default)]
    pub contact_email: Option<String>,
    #[serde(default)]
    pub contact_phone: Option<String>,
}

/// Mã số thuế: 10 digits, or 10-3 for a branch.
fn valid_tax_code(t: &str) -> bool {
    let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    match t.split_once('-') {
        None => digits(t, 10),
        Some((main, branch)) => digits(main, 10) && digits(branch, 3),
    }
}

fn opt(v: &Option<String>) -> Option<String> {
    v.as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

impl NewVendor {
    fn checked(&self) -> Result<Self, NetworkError> {
        use crate::text_limits::{NAME, check};
        let invalid = |m: String| NetworkError::Invalid(m);
        validate_id(&self.id).map_err(|e| invalid(e.to_string()))?;
        let name = self.name.trim();
        if name.is_empty() {
            return Err(invalid("name is required".into()));
        }
        check("name", name, NAME).map_err(|e| invalid(e.to_string()))?;
        let tax_code = self.tax_code.trim();
        if !valid_tax_code(tax_code) {
            return Err(invalid(format!(
                "tax_code `{tax_code}` must be a mã số thuế: 10 digits, or 10-3 for a branch"
            )));
        }
        let contact_name = opt(&self.contact_name);
        if let Some(n) = &contact_name {
            check("contact_name", n, NAME).map_err(|e| invalid(e.to_string()))?;
        }
        let contact_email = opt(&self.contact_email);
        if let Some(e) = &contact_email {
            let ok = e.len() <= 254
                && e.split_once('@')
                    .is_some_and(|(l, d)| !l.is_empty() && d.contains('.') && !d.contains('@'));
            if !ok {
                return Err(invalid(format!(
                    "contact_email `{e}` is not an e-mail address"
                )));
            }
        }
        let contact_phone = opt(&self.contact_phone);
        if let Some(p) = &contact_phone {
            let digits = p.bytes().filter(u8::is_ascii_digit).count();
            let ok = (9..=15).contains(&digits)
                && p.bytes()
                    .all(|b| b.is_ascii_digit() || b" +-.()".contains(&b));
            if !ok {
                return Err(invalid(format!(
                    "contact_phone `{p}` is not a phone number"
                )));
            }
        }
        Ok(Self {
            id: self.id.clone(),
            name: name.to_owned(),
            tax_code: tax_code.to_owned(),
            contact_name,
            contact_email,
            contact_phone,
        })
    }
}

fn row_to_vendor(r: &sqlx::any::AnyRow) -> Result<Vendor, NetworkError> {
    let status: String = r.try_get("status")?;
    Ok(Vendor {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        tax_code: r.try_get("tax_code")?,
        contact_name: r.try_get("contact_name")?,
        contact_email: r.try_get("contact_email")?,
        contact_phone: r.try_get("contact_phone")?,
        status: status.parse().map_err(NetworkError::Invalid)?,
        created_at: r.try_get("created_at")?,
    })
}

const VENDOR_COLUMNS: &str =
    "id, name, tax_code, contact_name, contact_email, contact_phone, status, created_at";

impl NetworkRegister {
    /// Every vendor, by name.
    pub async fn vendors(&self) -> Result<Vec<Vendor>, NetworkError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {VENDOR_COLUMNS} FROM vendors ORDER BY name, id"
        )))
        .fetch_all(&self.db.pool)
        .await?;
        rows.iter().map(row_to_vendor).collect()
    }

    /// The vendor `id`.
    pub async fn vendor(&self, id: &str) -> Result<Option<Vendor>, NetworkError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {VENDOR_COLUMNS} FROM vendors WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.db.pool)
        .await?;
        row.as_ref().map(row_to_vendor).transpose()
    }

    /// Register a vendor, or complete the details of one that exists
    /// (vendors from before the register have no tax code). `true` when
    /// created.
    pub async fn register_vendor(
        &self,
        input: &NewVendor,
        actor: &str,
    ) -> Result<(Vendor, bool), NetworkError> {
        let v = input.checked()?;
        let mut tx = self.db.begin_write().await?;
        let holder: Option<String> =
            sqlx::query_scalar("SELECT id FROM vendors WHERE tax_code = $1 AND id <> $2")
                .bind(&v.tax_code)
                .bind(&v.id)
                .fetch_optional(&mut *tx.tx)
                .await?;
        if let Some(other) = holder {
            return Err(NetworkError::Conflict(format!(
                "tax code {} is registered to vendor `{other}`",
                v.tax_code
            )));
        }
        let exists: Option<String> = sqlx::query_scalar("SELECT id FROM vendors WHERE id = $1")
            .bind(&v.id)
            .fetch_optional(&mut *tx.tx)
            .await?;
        if exists.is_some() {
            sqlx::query(
                "UPDATE vendors SET name = $1, tax_code = $2, contact_name = $3, contact_email = $4, contact_phone = $5 WHERE id = $6",
            )
        } else {
            sqlx::query(
                "INSERT INTO vendors (created_at, name, tax_code, contact_name, contact_email, contact_phone, id) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(now_secs())
        }
        .bind(&v.name)
        .bind(&v.tax_code)
        .bind(&v.contact_name)
        .bind(&v.contact_email)
        .bind(&v.contact_phone)
        .bind(&v.id)
        .execute(&mut *tx.tx)
        .await?;
        AuditLog::append_in(
            &mut tx,
            AuditEvent {
                actor: actor.into(),
                action: if exists.is_some() {
                    "vendor.updated"
                } else {
                    "vendor.registered"
                }
                .into(),
                target: format!("vendor:{}", v.id),
                hospital_id: None,
                details: json!({ "name": v.name, "tax_code": v.tax_code }),
            },
        )
        .await?;
        tx.commit().await?;
        let vendor = self
            .vendor(&v.id)
            .await?
            .ok_or_else(|| NetworkError::NotFound(format!("vendor `{}`", v.id)))?;
        Ok((vendor, exists.is_none()))
    }

    /// Suspend or reactivate a vendor; audited, on every node at once.
    pub async fn set_vendor_status(
        &self,
        id: &str,
        status: Status,
        actor: &str,
        reason: Option<&str>,
    ) -> Result<Vendor, NetworkError> {
        let mut tx = self.db.begin_write().await?;
        let done = sqlx::query("UPDATE vendors SET status = $1 WHERE id = $2 AND status <> $1")
            .bind(status.as_str())
            .bind(id)
            .execute(&mut *tx.tx)
            .await?
            .rows_affected();
        if done > 0 {
            AuditLog::append_in(
                &mut tx,
                AuditEvent {
                    actor: actor.into(),
                    action: format!(
                        "vendor.{}",
                        if status == Status::Suspended {
                            "suspended"
                        } else {
                            "reactivated"
                        }
                    ),
                    target: format!("vendor:{id}"),
                    hospital_id: None,
                    details: json!({ "reason": reason }),
                },
            )
            .await?;
            tx.commit().await?;
        } else {
            drop(tx);
        }
        let vendor = self
            .vendor(id)
            .await?
            .ok_or_else(|| NetworkError::NotFound(format!("no vendor `{id}`")))?;
        self.reload_vendors().await?;
        if done > 0 {
            self.announce(&Notice::Vendor(id.to_owned()));
        }
        Ok(vendor)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn tax_codes() {
        assert!(super::valid_tax_code("0101234567"));
        assert!(super::valid_tax_code("0101234567-001"));
        assert!(!super::valid_tax_code("010123456"));
        assert!(!super::valid_tax_code("0101234567-01"));
        assert!(!super::valid_tax_code("01012345a7"));
    }
}
