//! A hospital's staff, vendors' users and operators made by invitation; the
//! refusal of suspended accounts and revoked clients (docs/identity.md).
//!
//! An account is created without a password and with a one-time link,
//! `{issuer}/invite/{token}`, valid [`INVITATION_TTL_SECS`]: whoever opens it
//! sets the first password. Only the token's SHA-256 is stored.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sqlx::Row;

use super::{IdentityError, IdentityService, Role, User, people, search, sha256_hex, specialties};
use crate::audit::AuditEvent;
use crate::time::now_secs;

/// How long an invitation link is valid: 72 hours.
pub const INVITATION_TTL_SECS: i64 = 72 * 3600;
/// The roles a hospital admin may grant.
pub const STAFF_ROLES: [Role; 4] = [
    Role::Practitioner,
    Role::HospitalAdmin,
    Role::Pharmacist,
    Role::Assessor,
];
/// The stored password of an account that has none yet: no hash matches it.
const NO_PASSWORD: &str = "!invited";
/// The stored password of a staff account that signs in through its
/// hospital's identity provider only: no hash matches it either, but its
/// invitation is no longer pending.
const EXTERNAL_ONLY: &str = "!external";
/// How stale the node's list of suspended subjects may be (other nodes'
/// suspensions take effect within this; this node's at once).
const BLOCKED_REFRESH: Duration = Duration::from_secs(5);
/// A client's `last_used_at` is written at most this often per node.
const LAST_USED_EVERY: Duration = Duration::from_secs(60);
/// Counts a hospital's active admins (`$1`: the hospital).
const ACTIVE_ADMINS: &str = "SELECT COUNT(*) FROM identity_users WHERE hospital_id = $1 AND status = 'active' \
     AND (role = 'hospital-admin' OR roles LIKE '% hospital-admin %')";
/// Most accounts one CSV import creates.
pub const MAX_IMPORT_ROWS: usize = 500;

/// Why a staff operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StaffError {
    #[error("{0}")]
    Invalid(String),
    /// Lines of an import that cannot be applied (1-based, the header is 1).
    #[error("{} line(s) of the file are invalid; nothing was imported", .0.len())]
    Lines(Vec<LineError>),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// An invitation that was used or has expired.
    #[error("{0}")]
    Gone(String),
    #[error(transparent)]
    Identity(#[from] IdentityError),
}

impl From<sqlx::Error> for StaffError {
    fn from(e: sqlx::Error) -> Self {
        Self::Identity(IdentityError::Database(e))
    }
}

/// One refused line of an import.
#[derive(Debug, Clone, Serialize)]
pub struct LineError {
    pub line: usize,
    pub message: String,
}

/// Node state: suspended subjects and clients' last use.
#[derive(Debug, Default)]
pub struct StaffState {
    blocked: Mutex<Blocked>,
    client_used: Mutex<HashMap<String, Instant>>,
}

#[derive(Debug, Default)]
struct Blocked {
    loaded: Option<Instant>,
    subjects: Arc<HashSet<String>>,
}

/// A new member of a hospital's staff.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewStaff {
    pub username: String,
    pub display_name: String,
    /// Citizen ID (CCCD), 12 digits.
    pub national_id: String,
    #[serde(default)]
    pub licence_number: Option<String>,
    #[serde(default)]
    pub specialties: Vec<String>,
    pub roles: Vec<String>,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub phone: Option<String>,
    #[serde(default)]
    pub title: Option<String>,
}

/// Changes to a staff member; absent fields stay.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaffPatch {
    pub display_name: Option<String>,
    pub licence_number: Option<String>,
    pub specialties: Option<Vec<String>>,
    pub roles: Option<Vec<String>>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub title: Option<String>,
}

/// A staff member as a hospital admin sees them: the CCCD masked.
#[derive(Debug, Clone, Serialize)]
pub struct StaffMember {
    pub id: String,
    pub username: String,
    pub display_name: String,
    pub roles: Vec<Role>,
    pub title: Option<String>,
    pub licence_number: Option<String>,
    pub specialties: Vec<specialties::Specialty>,
    /// `active` or `suspended`.
    pub status: &'static str,
    /// Milliseconds since the epoch.
    pub last_login: Option<i64>,
    /// No password set yet.
    pub invitation_pending: bool,
    /// `001******123`.
    pub national_id_masked: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
}

/// A vendor's user as their colleagues see them.
#[derive(Debug, Clone, Serialize)]
pub struct VendorMember {
    pub id: String,
    pub username: String,
    pub display_name: String,
    pub email: Option<String>,
    pub admin: bool,
    pub status: &'static str,
    pub last_login: Option<i64>,
    pub invitation_pending: bool,
}

/// A one-time link to set the first password.
#[derive(Debug, Clone, Serialize)]
pub struct Invitation {
    pub url: String,
    /// Milliseconds since the epoch.
    pub expires_at: i64,
}

/// Who an open invitation is for, to show on its page.
#[derive(Debug, Clone)]
pub struct InvitationFor {
    pub user: User,
    pub purpose: String,
}

/// A checked new account, ready to insert.
#[derive(Debug, Clone)]
struct Checked {
    username: String,
    display_name: String,
    national_id: Option<String>,
    licence_number: Option<String>,
    specialties: Vec<String>,
    roles: Vec<Role>,
    email: Option<String>,
    phone: Option<String>,
    title: Option<String>,
}

fn invalid(m: impl Into<String>) -> StaffError {
    StaffError::Invalid(m.into())
}

/// Check a practising licence number and return it normalised (upper
/// case): `NNNNNN/XXX-GPHN` (giấy phép hành nghề, Law 15/2023/QH15) or
/// `NNNNNN/XXX-CCHN` (chứng chỉ hành nghề, before 2024): 1-7 digits, the
/// issuing authority's code (2-8 letters or digits, e.g. BYT, HNO, HCM).
pub fn validate_licence(licence: &str) -> Result<String, StaffError> {
    let l = licence.trim().to_uppercase();
    let ok = (|| {
        let (number, rest) = l.split_once('/')?;
        let (authority, kind) = rest.rsplit_once('-')?;
        let number_ok =
            (1..=7).contains(&number.len()) && number.bytes().all(|b| b.is_ascii_digit());
        let authority_ok = (2..=8).contains(&authority.len())
            && authority
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
        (number_ok && authority_ok && matches!(kind, "GPHN" | "CCHN")).then_some(())
    })()
    .is_some();
    if ok {
        Ok(l)
    } else {
        Err(invalid(
            "licence_number must look like 001234/BYT-GPHN (giấy phép hành nghề) or 001234/HNO-CCHN (chứng chỉ hành nghề)",
        ))
    }
}

/// Check a login name: 3-64 of a-z, 0-9, `.`, `_`, `-`, with a letter
/// (all-digit names are citizens' CCCD logins).
pub fn validate_username(username: &str) -> Result<(), StaffError> {
    let ok = (3..=64).contains(&username.len())
        && username
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
        && username.bytes().any(|b| b.is_ascii_lowercase());
    if ok {
        Ok(())
    } else {
        Err(invalid(
            "username must be 3-64 characters of a-z, 0-9, '.', '_' and '-', with at least one letter",
        ))
    }
}

fn check_name(name: &str) -> Result<String, StaffError> {
    let name = name.trim();
    if name.is_empty() {
        return Err(invalid("display_name is required"));
    }
    crate::text_limits::check("display_name", name, crate::text_limits::NAME)
        .map_err(|e| invalid(e.to_string()))?;
    Ok(name.to_owned())
}

fn check_email(email: Option<&str>) -> Result<Option<String>, StaffError> {
    let Some(e) = email.map(str::trim).filter(|e| !e.is_empty()) else {
        return Ok(None);
    };
    let ok = e.len() <= 254
        && !e.contains(char::is_whitespace)
        && e.split_once('@')
            .is_some_and(|(l, d)| !l.is_empty() && d.contains('.'));
    if ok {
        Ok(Some(e.to_owned()))
    } else {
        Err(invalid(format!("`{e}` is not an e-mail address")))
    }
}

fn check_phone(phone: Option<&str>) -> Result<Option<String>, StaffError> {
    let Some(p) = phone.map(str::trim).filter(|p| !p.is_empty()) else {
        return Ok(None);
    };
    let digits = p.strip_prefix('+').unwrap_or(p);
    if (9..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) {
        Ok(Some(p.to_owned()))
    } else {
        Err(invalid("phone must be 9-15 digits, optionally after '+'"))
    }
}

fn check_title(title: Option<&str>) -> Result<Option<String>, StaffError> {
    let Some(t) = title.map(str::trim).filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    crate::text_limits::check("title", t, crate::text_limits::TITLE)
        .map_err(|e| invalid(e.to_string()))?;
    Ok(Some(t.to_owned()))
}

fn check_specialties(codes: &[String]) -> Result<Vec<String>, StaffError> {
    let mut out: Vec<String> = Vec::new();
    for c in codes {
        let c = c.trim();
        if specialties::get(c).is_none() {
            return Err(invalid(format!(
                "`{c}` is not a specialty code (GET /api/v1/specialties lists them)"
            )));
        }
        if !out.iter().any(|o| o == c) {
            out.push(c.to_owned());
        }
    }
    if out.len() > 10 {
        return Err(invalid("at most 10 specialties"));
    }
    Ok(out)
}

/// The roles named, each one a hospital admin may grant.
pub fn check_staff_roles(names: &[String]) -> Result<Vec<Role>, StaffError> {
    let mut roles: Vec<Role> = Vec::new();
    for n in names {
        let role: Role = n
            .trim()
            .parse()
            .map_err(|_| invalid(format!("`{}` is not a role", n.trim())))?;
        if !STAFF_ROLES.contains(&role) {
            return Err(StaffError::Forbidden(format!(
                "a hospital admin may grant only the roles practitioner, hospital-admin, pharmacist and assessor, not `{role}`"
            )));
        }
        if !roles.contains(&role) {
            roles.push(role);
        }
    }
    if roles.is_empty() {
        return Err(invalid("at least one role is required"));
    }
    Ok(roles)
}

/// The primary (stored `role`) of a set of staff roles.
fn primary(roles: &[Role]) -> Role {
    [
        Role::Practitioner,
        Role::Pharmacist,
        Role::HospitalAdmin,
        Role::Assessor,
    ]
    .into_iter()
    .find(|r| roles.contains(r))
    .unwrap_or(roles[0])
}

fn needs_licence(roles: &[Role]) -> bool {
    roles.contains(&Role::Practitioner) || roles.contains(&Role::Pharmacist)
}

fn spaced<T: AsRef<str>>(items: &[T]) -> Option<String> {
    (!items.is_empty()).then(|| {
        let inner: Vec<&str> = items.iter().map(AsRef::as_ref).collect();
        format!(" {} ", inner.join(" "))
    })
}

fn role_list(roles: &[Role]) -> Option<String> {
    let names: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
    spaced(&names)
}

/// `001******123`.
pub fn mask_national_id(id: &str) -> String {
    let n = id.chars().count();
    if n <= 6 {
        return "*".repeat(n);
    }
    let head: String = id.chars().take(3).collect();
    let tail: String = id.chars().skip(n - 3).collect();
    format!("{head}{}{tail}", "*".repeat(n - 6))
}

fn check_new(new: &NewStaff) -> Result<Checked, StaffError> {
    let username = new.username.trim().to_owned();
    validate_username(&username)?;
    let display_name = check_name(&new.display_name)?;
    let national_id = new.national_id.trim().to_owned();
    people::validate_citizen_id(&national_id).map_err(|e| invalid(e.to_string()))?;
    let roles = check_staff_roles(&new.roles)?;
    let licence_number = match new.licence_number.as_deref().map(str::trim) {
        Some(l) if !l.is_empty() => Some(validate_licence(l)?),
        _ if needs_licence(&roles) => {
            return Err(invalid(
                "practitioners and pharmacists need a licence_number (giấy phép hành nghề)",
            ));
        }
        _ => None,
    };
    Ok(Checked {
        username,
        display_name,
        national_id: Some(national_id),
        licence_number,
        specialties: check_specialties(&new.specialties)?,
        roles,
        email: check_email(new.email.as_deref())?,
        phone: check_phone(new.phone.as_deref())?,
        title: check_title(new.title.as_deref())?,
    })
}

/// Which unique column a violation names (SQLite and PostgreSQL messages).
fn conflict_of(e: &dyn sqlx::error::DatabaseError) -> StaffError {
    let m = e.message().to_ascii_lowercase();
    let what = if m.contains("licence") {
        "this licence number is already registered"
    } else if m.contains("staff_national_id") {
        "this citizen ID (CCCD) already has a staff account"
    } else if m.contains("username") {
        "this username is taken"
    } else {
        "username, citizen ID or licence number already registered"
    };
    StaffError::Conflict(what.into())
}

fn map_insert(e: sqlx::Error) -> StaffError {
    match e {
        sqlx::Error::Database(d) if d.is_unique_violation() => conflict_of(d.as_ref()),
        sqlx::Error::Database(d) if d.is_foreign_key_violation() => {
            StaffError::NotFound("unknown hospital or vendor".into())
        }
        e => e.into(),
    }
}

type Tx<'a> = sqlx::Transaction<'a, sqlx::Any>;

/// How a staff account is created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Creation {
    /// The caller records it (the CLI, tests).
    Unaudited,
    /// Recorded as `identity.staff_created` by `created_by` in the same
    /// transaction: the link is returned exactly when the entry exists.
    Audited,
    /// As [`Self::Audited`], and only while the hospital has no active
    /// admin (an operator's first admin), checked in that transaction.
    FirstAdmin,
}

/// What a new vendor user is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VendorSeat {
    Member,
    /// An admin of the vendor, invited by another admin.
    Admin,
    /// The vendor's first admin, by an operator: only while it has no
    /// active admin, checked in the creating transaction.
    FirstAdmin,
}

/// Append `event` in the write transaction `tx`.
async fn audit_in(tx: &mut crate::db::WriteTx, event: AuditEvent) -> Result<(), StaffError> {
    crate::audit::AuditLog::append_in(tx, event)
        .await
        .map(|_| ())
        .map_err(|e| StaffError::Identity(IdentityError::Internal(format!("audit: {e}"))))
}

impl IdentityService {
    // ----- suspended subjects -----

    /// Whether a subject of this issuer is suspended (a user) or revoked
    /// (`client:ID`). Re-read from the database at most every few seconds.
    pub(super) async fn is_blocked(&self, subject: &str) -> Result<bool, IdentityError> {
        let due = {
            let b = self.staff.blocked.lock().unwrap_or_else(|e| e.into_inner());
            b.loaded.is_none_or(|t| t.elapsed() >= BLOCKED_REFRESH)
        };
        if due {
            let rows = sqlx::query(
                "SELECT id FROM identity_users WHERE status = 'suspended' \
                 UNION ALL SELECT 'client:' || id FROM identity_clients WHERE revoked_at IS NOT NULL",
            )
            .fetch_all(&self.db.pool)
            .await?;
            let subjects: HashSet<String> = rows
                .iter()
                .map(|r| r.try_get::<String, _>(0))
                .collect::<Result<_, _>>()?;
            let mut b = self.staff.blocked.lock().unwrap_or_else(|e| e.into_inner());
            b.subjects = Arc::new(subjects);
            b.loaded = Some(Instant::now());
        }
        let b = self.staff.blocked.lock().unwrap_or_else(|e| e.into_inner());
        Ok(b.subjects.contains(subject))
    }

    /// Make this node refuse (or accept again) a subject at once.
    fn set_blocked(&self, subject: &str, blocked: bool) {
        let mut b = self.staff.blocked.lock().unwrap_or_else(|e| e.into_inner());
        let mut set = (*b.subjects).clone();
        if blocked {
            set.insert(subject.to_owned());
        } else {
            set.remove(subject);
        }
        b.subjects = Arc::new(set);
    }

    /// Make this node refuse a revoked client's tokens at once.
    pub(super) fn block_client(&self, client_id: &str) {
        self.set_blocked(&format!("client:{client_id}"), true);
    }

    /// Note a password sign-in (best effort: a failure only loses the time).
    pub(super) async fn record_login(&self, user_id: &str) {
        let done = async {
            let mut tx = self.db.begin_write().await?;
            sqlx::query("UPDATE identity_users SET last_login_at = $1 WHERE id = $2")
                .bind(now_secs())
                .bind(user_id)
                .execute(&mut *tx.tx)
                .await?;
            tx.commit().await
        };
        if let Err(e) = done.await {
            tracing::warn!(error = %e, "cannot record a sign-in time");
        }
    }

    /// Note a client's use, at most once a minute per client on this node.
    pub(super) async fn record_client_use(&self, client_id: &str) {
        {
            let mut used = self
                .staff
                .client_used
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if used
                .get(client_id)
                .is_some_and(|t| t.elapsed() < LAST_USED_EVERY)
            {
                return;
            }
            if used.len() > 10_000 {
                used.clear();
            }
            used.insert(client_id.to_owned(), Instant::now());
        }
        let done = async {
            let mut tx = self.db.begin_write().await?;
            sqlx::query("UPDATE identity_clients SET last_used_at = $1 WHERE id = $2")
                .bind(now_secs())
                .bind(client_id)
                .execute(&mut *tx.tx)
                .await?;
            tx.commit().await
        };
        if let Err(e) = done.await {
            tracing::warn!(error = %e, "cannot record a client's use");
        }
    }

    // ----- staff -----

    /// Whether `hospital` has an active hospital admin (an operator may
    /// create the first one only).
    pub async fn has_active_admin(&self, hospital: &str) -> Result<bool, StaffError> {
        let row = sqlx::query(ACTIVE_ADMINS)
            .bind(hospital)
            .fetch_one(&self.db.pool)
            .await?;
        Ok(row.try_get::<i64, _>(0)? > 0)
    }

    /// Whether `hospital` has an admin who took charge: set a password or
    /// linked an external identity. Until then an operator may re-issue
    /// its admins' links (the bootstrap); after, its admins do.
    pub async fn has_admin_in_charge(&self, hospital: &str) -> Result<bool, StaffError> {
        let row = sqlx::query(
            "SELECT COUNT(*) FROM identity_users u WHERE u.hospital_id = $1 \
             AND (u.role = 'hospital-admin' OR u.roles LIKE '% hospital-admin %') \
             AND (u.password_hash <> $2 \
                  OR EXISTS (SELECT 1 FROM external_identities e WHERE e.user_id = u.id))",
        )
        .bind(hospital)
        .bind(NO_PASSWORD)
        .fetch_one(&self.db.pool)
        .await?;
        Ok(row.try_get::<i64, _>(0)? > 0)
    }

    /// On a staff account's first link to an external identity: its open
    /// invitations end and it is marked as signing in externally, so it is
    /// no longer pending (and no link can set a password for it).
    pub(super) async fn spend_invitations_on_link(
        &self,
        tx: &mut crate::db::WriteTx,
        user_id: &str,
    ) -> Result<(), StaffError> {
        let t = now_secs();
        sqlx::query(
            "UPDATE identity_invitations SET expires_at = $1 WHERE user_id = $2 AND used_at IS NULL AND expires_at > $1",
        )
        .bind(t)
        .bind(user_id)
        .execute(&mut *tx.tx)
        .await?;
        sqlx::query(
            "UPDATE identity_users SET password_hash = $1, updated_at = $2 WHERE id = $3 AND password_hash = $4",
        )
        .bind(EXTERNAL_ONLY)
        .bind(t)
        .bind(user_id)
        .bind(NO_PASSWORD)
        .execute(&mut *tx.tx)
        .await?;
        Ok(())
    }

    /// Whether the account signs in through an external identity.
    async fn externally_linked(&self, user_id: &str) -> Result<bool, StaffError> {
        let row = sqlx::query("SELECT COUNT(*) FROM external_identities WHERE user_id = $1")
            .bind(user_id)
            .fetch_one(&self.db.pool)
            .await?;
        Ok(row.try_get::<i64, _>(0)? > 0)
    }

    /// Insert a checked account without a password, and its invitation.
    #[allow(clippy::too_many_arguments)]
    async fn insert_invited(
        &self,
        tx: &mut Tx<'_>,
        c: &Checked,
        hospital: Option<&str>,
        vendor: Option<(&str, bool)>,
        role: Role,
        purpose: &str,
        created_by: &str,
    ) -> Result<(String, Invitation), StaffError> {
        let id = format!("u-{}", uuid::Uuid::now_v7().simple());
        let t = now_secs();
        let specialty = c.specialties.first().cloned();
        sqlx::query(
            "INSERT INTO identity_users (id, username, display_name, role, hospital_id, vendor_id, \
             specialty, title, password_hash, created_at, name_folded, specialty_folded, status, \
             licence_number, specialties, roles, staff_national_id, email, phone, vendor_admin, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, 'active', $13, $14, $15, $16, $17, $18, $19, $10)",
        )
        .bind(&id)
        .bind(&c.username)
        .bind(&c.display_name)
        .bind(role.as_str())
        .bind(hospital)
        .bind(vendor.map(|v| v.0))
        .bind(&specialty)
        .bind(&c.title)
        .bind(NO_PASSWORD)
        .bind(t)
        .bind(search::fold(&c.display_name))
        .bind((!c.specialties.is_empty()).then(|| specialties::folded(&c.specialties)))
        .bind(&c.licence_number)
        .bind(spaced(&c.specialties))
        .bind(role_list(&c.roles))
        .bind(&c.national_id)
        .bind(&c.email)
        .bind(&c.phone)
        .bind(i64::from(vendor.is_some_and(|v| v.1)))
        .execute(&mut **tx)
        .await
        .map_err(map_insert)?;
        let invitation = self.insert_invitation(tx, &id, purpose, created_by).await?;
        Ok((id, invitation))
    }

    /// A new invitation for `user_id`; earlier open ones stop working.
    async fn insert_invitation(
        &self,
        tx: &mut Tx<'_>,
        user_id: &str,
        purpose: &str,
        created_by: &str,
    ) -> Result<Invitation, StaffError> {
        let token = people::random_token()?;
        let t = now_secs();
        sqlx::query(
            "UPDATE identity_invitations SET expires_at = $1 WHERE user_id = $2 AND used_at IS NULL AND expires_at > $1",
        )
        .bind(t)
        .bind(user_id)
        .execute(&mut **tx)
        .await?;
        let expires = t + INVITATION_TTL_SECS;
        sqlx::query(
            "INSERT INTO identity_invitations (token_hash, user_id, purpose, created_by, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(sha256_hex(&token))
        .bind(user_id)
        .bind(purpose)
        .bind(created_by)
        .bind(t)
        .bind(expires)
        .execute(&mut **tx)
        .await?;
        Ok(Invitation {
            url: format!("{}/invite/{token}", self.issuer),
            expires_at: expires * 1000,
        })
    }

    /// Add a member to `hospital`'s staff with a one-time invitation.
    /// Who may grant which roles is the caller's business (the API checks).
    pub async fn create_staff(
        &self,
        hospital: &str,
        new: &NewStaff,
        created_by: &str,
        creation: Creation,
    ) -> Result<(User, Invitation), StaffError> {
        let c = check_new(new)?;
        let mut tx = self.db.begin_write().await?;
        // Re-checked under the write lock: two operators racing both saw
        // no admin before.
        if creation == Creation::FirstAdmin {
            let row = sqlx::query(ACTIVE_ADMINS)
                .bind(hospital)
                .fetch_one(&mut *tx.tx)
                .await?;
            if row.try_get::<i64, _>(0)? > 0 {
                return Err(StaffError::Forbidden(format!(
                    "`{hospital}` already has an active hospital admin, who adds further staff"
                )));
            }
        }
        let (id, invitation) = self
            .insert_invited(
                &mut tx.tx,
                &c,
                Some(hospital),
                None,
                primary(&c.roles),
                "staff",
                created_by,
            )
            .await?;
        if creation != Creation::Unaudited {
            audit_in(&mut tx, staff_created(created_by, hospital, &id, &c, false)).await?;
        }
        tx.commit().await?;
        let user = self.user(&id).await?.ok_or_else(|| {
            StaffError::Identity(IdentityError::Internal("a created user vanished".into()))
        })?;
        Ok((user, invitation))
    }

    /// Check the lines of an import (all of them, against each other and
    /// the directory) and, unless `dry_run`, create them all or nothing.
    pub async fn import_staff(
        &self,
        hospital: &str,
        rows: &[(usize, NewStaff)],
        created_by: &str,
        dry_run: bool,
    ) -> Result<Vec<(User, Option<Invitation>)>, StaffError> {
        if rows.len() > MAX_IMPORT_ROWS {
            return Err(invalid(format!(
                "at most {MAX_IMPORT_ROWS} accounts per file"
            )));
        }
        let mut errors = Vec::new();
        let mut checked = Vec::new();
        let mut seen: HashMap<String, usize> = HashMap::new();
        for (line, new) in rows {
            match check_new(new) {
                Ok(c) => {
                    let mut keys = vec![format!("username {}", c.username)];
                    keys.extend(c.national_id.iter().map(|n| format!("citizen ID {n}")));
                    keys.extend(c.licence_number.iter().map(|l| format!("licence {l}")));
                    for k in keys {
                        if let Some(first) = seen.insert(k.clone(), *line) {
                            errors.push(LineError {
                                line: *line,
                                message: format!("{k} also on line {first}"),
                            });
                        }
                    }
                    if let Some(m) = self.taken(&c).await? {
                        errors.push(LineError {
                            line: *line,
                            message: m,
                        });
                    }
                    checked.push((*line, c));
                }
                Err(e) => errors.push(LineError {
                    line: *line,
                    message: e.to_string(),
                }),
            }
        }
        if !errors.is_empty() {
            return Err(StaffError::Lines(errors));
        }
        if dry_run {
            return Ok(checked
                .into_iter()
                .map(|(_, c)| (preview(&c, hospital), None))
                .collect());
        }
        let mut tx = self.db.begin_write().await?;
        let mut made = Vec::new();
        for (line, c) in &checked {
            let inserted = self
                .insert_invited(
                    &mut tx.tx,
                    c,
                    Some(hospital),
                    None,
                    primary(&c.roles),
                    "staff",
                    created_by,
                )
                .await;
            match inserted {
                Ok(done) => {
                    audit_in(
                        &mut tx,
                        staff_created(created_by, hospital, &done.0, c, true),
                    )
                    .await?;
                    made.push(done)
                }
                // Raced with another writer: still all or nothing.
                Err(e @ StaffError::Conflict(_)) => {
                    return Err(StaffError::Lines(vec![LineError {
                        line: *line,
                        message: e.to_string(),
                    }]));
                }
                Err(e) => return Err(e),
            }
        }
        tx.commit().await?;
        let mut out = Vec::new();
        for (id, invitation) in made {
            if let Some(u) = self.user(&id).await? {
                out.push((u, Some(invitation)));
            }
        }
        Ok(out)
    }

    /// Why a checked account cannot be created, if a unique value is taken.
    async fn taken(&self, c: &Checked) -> Result<Option<String>, StaffError> {
        let row = sqlx::query(
            "SELECT username, staff_national_id, licence_number FROM identity_users \
             WHERE username = $1 OR staff_national_id = $2 OR licence_number = $3 LIMIT 1",
        )
        .bind(&c.username)
        .bind(&c.national_id)
        .bind(&c.licence_number)
        .fetch_optional(&self.db.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let username: String = row.try_get(0)?;
        let national: Option<String> = row.try_get(1)?;
        Ok(Some(if username == c.username {
            format!("username {} is taken", c.username)
        } else if national.is_some() && national == c.national_id {
            "this citizen ID (CCCD) already has a staff account".into()
        } else {
            "this licence number is already registered".into()
        }))
    }

    /// The staff of a hospital, by name.
    pub async fn list_staff(&self, hospital: &str) -> Result<Vec<StaffMember>, StaffError> {
        let rows = user_query!("WHERE hospital_id = $1 ORDER BY name_folded, id")
            .bind(hospital)
            .fetch_all(&self.db.pool)
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let user = User::from_row(row)?;
            let hash: String = row.try_get("password_hash")?;
            out.push(self.member(user, hash == NO_PASSWORD).await?);
        }
        Ok(out)
    }

    async fn member(&self, u: User, pending: bool) -> Result<StaffMember, StaffError> {
        let national: Option<String> =
            sqlx::query("SELECT staff_national_id FROM identity_users WHERE id = $1")
                .bind(&u.id)
                .fetch_optional(&self.db.pool)
                .await?
                .map(|r| r.try_get(0))
                .transpose()?
                .flatten();
        Ok(StaffMember {
            specialties: specialties::describe(&u.specialties),
            status: if u.suspended { "suspended" } else { "active" },
            last_login: u.last_login_at.map(|t| t * 1000),
            invitation_pending: pending,
            national_id_masked: national.as_deref().map(mask_national_id),
            id: u.id,
            username: u.username,
            display_name: u.display_name,
            roles: u.roles,
            title: u.title,
            licence_number: u.licence_number,
            email: u.email,
            phone: u.phone,
        })
    }

    /// One staff member of `hospital` as listed.
    pub async fn staff_member(
        &self,
        hospital: &str,
        user_id: &str,
    ) -> Result<StaffMember, StaffError> {
        let user = self.staff_user(hospital, user_id).await?;
        let pending = self.pending(&user.id).await?;
        self.member(user, pending).await
    }

    async fn pending(&self, user_id: &str) -> Result<bool, StaffError> {
        let row = sqlx::query("SELECT password_hash FROM identity_users WHERE id = $1")
            .bind(user_id)
            .fetch_optional(&self.db.pool)
            .await?;
        Ok(match row {
            Some(r) => r.try_get::<String, _>(0)? == NO_PASSWORD,
            None => false,
        })
    }

    /// A user of `hospital` (404 for anyone else's).
    pub async fn staff_user(&self, hospital: &str, user_id: &str) -> Result<User, StaffError> {
        self.user(user_id)
            .await?
            .filter(|u| u.hospital_id.as_deref() == Some(hospital))
            .ok_or_else(|| StaffError::NotFound(format!("no staff member `{user_id}` here")))
    }

    /// Change a staff member's name, licence, specialties, roles, contact.
    pub async fn update_staff(
        &self,
        hospital: &str,
        user_id: &str,
        patch: &StaffPatch,
    ) -> Result<StaffMember, StaffError> {
        let user = self.staff_user(hospital, user_id).await?;
        let name = match &patch.display_name {
            Some(n) => check_name(n)?,
            None => user.display_name.clone(),
        };
        let roles = match &patch.roles {
            Some(r) => check_staff_roles(r)?,
            None => user.roles.clone(),
        };
        if roles.iter().any(|r| !STAFF_ROLES.contains(r)) {
            return Err(StaffError::Forbidden(
                "this account holds a role a hospital admin does not manage".into(),
            ));
        }
        let licence = match patch.licence_number.as_deref().map(str::trim) {
            Some("") => None,
            Some(l) => Some(validate_licence(l)?),
            None => user.licence_number.clone(),
        };
        if needs_licence(&roles) && licence.is_none() {
            return Err(invalid(
                "practitioners and pharmacists need a licence_number (giấy phép hành nghề)",
            ));
        }
        let codes = match &patch.specialties {
            Some(s) => check_specialties(s)?,
            None => user.specialties.clone(),
        };
        let email = match &patch.email {
            Some(e) => check_email(Some(e))?,
            None => user.email.clone(),
        };
        let phone = match &patch.phone {
            Some(p) => check_phone(Some(p))?,
            None => user.phone.clone(),
        };
        let title = match &patch.title {
            Some(t) => check_title(Some(t))?,
            None => user.title.clone(),
        };
        let mut tx = self.db.begin_write().await?;
        sqlx::query(
            "UPDATE identity_users SET display_name = $1, name_folded = $2, role = $3, roles = $4, \
             licence_number = $5, specialties = $6, specialty = $7, specialty_folded = $8, email = $9, \
             phone = $10, title = $11, updated_at = $12 WHERE id = $13 AND hospital_id = $14",
        )
        .bind(&name)
        .bind(search::fold(&name))
        .bind(primary(&roles).as_str())
        .bind(role_list(&roles))
        .bind(&licence)
        .bind(spaced(&codes))
        .bind(codes.first().cloned().or(user.specialty.clone().filter(|_| patch.specialties.is_none())))
        .bind((!codes.is_empty()).then(|| specialties::folded(&codes)))
        .bind(&email)
        .bind(&phone)
        .bind(&title)
        .bind(now_secs())
        .bind(user_id)
        .bind(hospital)
        .execute(&mut *tx.tx)
        .await
        .map_err(map_insert)?;
        tx.commit().await?;
        self.staff_member(hospital, user_id).await
    }

    /// Suspend an account (it cannot sign in; its refresh tokens are
    /// revoked and its access tokens refused) or make it active again.
    pub async fn set_suspended(&self, user_id: &str, suspended: bool) -> Result<(), StaffError> {
        let t = now_secs();
        let mut tx = self.db.begin_write().await?;
        let done =
            sqlx::query("UPDATE identity_users SET status = $1, updated_at = $2 WHERE id = $3")
                .bind(if suspended { "suspended" } else { "active" })
                .bind(t)
                .bind(user_id)
                .execute(&mut *tx.tx)
                .await?;
        if done.rows_affected() == 0 {
            return Err(StaffError::NotFound(format!("no account `{user_id}`")));
        }
        if suspended {
            sqlx::query(
                "UPDATE identity_refresh_tokens SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL",
            )
            .bind(t)
            .bind(user_id)
            .execute(&mut *tx.tx)
            .await?;
        }
        tx.commit().await?;
        self.set_blocked(user_id, suspended);
        Ok(())
    }

    /// A new invitation for an account that has not set a password yet.
    pub async fn reissue_invitation(
        &self,
        user_id: &str,
        created_by: &str,
    ) -> Result<Invitation, StaffError> {
        let user = self
            .user(user_id)
            .await?
            .ok_or_else(|| StaffError::NotFound(format!("no account `{user_id}`")))?;
        // Signing in through the hospital's provider spent the invitation;
        // a new link would let whoever holds it set a password.
        if self.externally_linked(&user.id).await? {
            return Err(StaffError::Conflict(
                "this person signs in through an external identity provider (VNeID or their hospital's); they need no invitation"
                    .into(),
            ));
        }
        if !self.pending(&user.id).await? {
            return Err(StaffError::Conflict(
                "this person has already set a password; an invitation is for a first sign-in"
                    .into(),
            ));
        }
        let purpose = if user.has_role(Role::Operator) {
            "operator"
        } else if user.has_role(Role::Reviewer) {
            "reviewer"
        } else if user.has_role(Role::VendorUser) {
            "vendor-user"
        } else {
            "staff"
        };
        let mut tx = self.db.begin_write().await?;
        let inv = self
            .insert_invitation(&mut tx.tx, &user.id, purpose, created_by)
            .await?;
        tx.commit().await?;
        Ok(inv)
    }

    // ----- invitations -----

    /// Who an open invitation is for; `NotFound` for an unknown token,
    /// `Gone` for a used or expired one.
    pub async fn invitation(&self, token: &str) -> Result<InvitationFor, StaffError> {
        let row = sqlx::query(
            "SELECT user_id, purpose, expires_at, used_at FROM identity_invitations WHERE token_hash = $1",
        )
        .bind(sha256_hex(token))
        .fetch_optional(&self.db.pool)
        .await?
        .ok_or_else(|| StaffError::NotFound("unknown invitation".into()))?;
        let used: Option<i64> = row.try_get("used_at")?;
        let expires: i64 = row.try_get("expires_at")?;
        if used.is_some() {
            return Err(StaffError::Gone("this invitation has been used".into()));
        }
        if expires <= now_secs() {
            return Err(StaffError::Gone("this invitation has expired".into()));
        }
        let user_id: String = row.try_get("user_id")?;
        let user = self
            .user(&user_id)
            .await?
            .ok_or_else(|| StaffError::NotFound("unknown invitation".into()))?;
        Ok(InvitationFor {
            user,
            purpose: row.try_get("purpose")?,
        })
    }

    /// Spend an open invitation in `tx`: the user it is for.
    async fn spend_invitation(&self, tx: &mut Tx<'_>, token: &str) -> Result<String, StaffError> {
        let t = now_secs();
        let row = sqlx::query(
            "UPDATE identity_invitations SET used_at = $1 WHERE token_hash = $2 AND used_at IS NULL \
             AND expires_at > $1 RETURNING user_id",
        )
        .bind(t)
        .bind(sha256_hex(token))
        .fetch_optional(&mut **tx)
        .await?;
        match row {
            Some(r) => Ok(r.try_get(0)?),
            None => Err(StaffError::Gone(
                "this invitation has been used or has expired".into(),
            )),
        }
    }

    /// Set the first password through an invitation (once).
    pub async fn accept_invitation(&self, token: &str, password: &str) -> Result<User, StaffError> {
        self.invitation(token).await?;
        if password.len() < 8 || password.len() > 1024 {
            return Err(invalid("the password must be 8-1024 bytes"));
        }
        let hash = self.hash(password).await?;
        let mut tx = self.db.begin_write().await?;
        let user_id = self.spend_invitation(&mut tx.tx, token).await?;
        sqlx::query("UPDATE identity_users SET password_hash = $1, updated_at = $2 WHERE id = $3")
            .bind(&hash)
            .bind(now_secs())
            .bind(&user_id)
            .execute(&mut *tx.tx)
            .await?;
        tx.commit().await?;
        self.user(&user_id)
            .await?
            .ok_or_else(|| StaffError::NotFound("unknown invitation".into()))
    }

    // ----- vendors' users and operators -----

    /// A vendor's users.
    pub async fn list_vendor_users(&self, vendor: &str) -> Result<Vec<VendorMember>, StaffError> {
        let rows = user_query!("WHERE vendor_id = $1 ORDER BY display_name, id")
            .bind(vendor)
            .fetch_all(&self.db.pool)
            .await?;
        rows.iter()
            .map(|row| {
                let u = User::from_row(row)?;
                let hash: String = row.try_get("password_hash")?;
                Ok(VendorMember {
                    status: if u.suspended { "suspended" } else { "active" },
                    last_login: u.last_login_at.map(|t| t * 1000),
                    invitation_pending: hash == NO_PASSWORD,
                    id: u.id,
                    username: u.username,
                    display_name: u.display_name,
                    email: u.email,
                    admin: u.vendor_admin,
                })
            })
            .collect()
    }

    /// Whether `vendor` exists.
    pub async fn vendor_name(&self, vendor: &str) -> Result<Option<String>, StaffError> {
        let row = sqlx::query("SELECT name FROM vendors WHERE id = $1")
            .bind(vendor)
            .fetch_optional(&self.db.pool)
            .await?;
        Ok(row.map(|r| r.try_get(0)).transpose()?)
    }

    /// Make a vendor user an admin of their vendor (or not).
    pub async fn set_vendor_admin(&self, user_id: &str, admin: bool) -> Result<(), StaffError> {
        let mut tx = self.db.begin_write().await?;
        let done = sqlx::query(
            "UPDATE identity_users SET vendor_admin = $1, updated_at = $2 WHERE id = $3 AND role = 'vendor-user'",
        )
        .bind(i64::from(admin))
        .bind(now_secs())
        .bind(user_id)
        .execute(&mut *tx.tx)
        .await?;
        tx.commit().await?;
        if done.rows_affected() == 0 {
            return Err(StaffError::NotFound(format!("no vendor user `{user_id}`")));
        }
        Ok(())
    }

    /// Whether `vendor` has an active admin (an operator invites the first).
    pub async fn has_vendor_admin(&self, vendor: &str) -> Result<bool, StaffError> {
        let row = sqlx::query(VENDOR_ADMINS)
            .bind(vendor)
            .fetch_one(&self.db.pool)
            .await?;
        Ok(row.try_get::<i64, _>(0)? > 0)
    }

    /// Invite a user of `vendor` as `seat`.
    pub async fn create_vendor_user(
        &self,
        vendor: &str,
        username: &str,
        display_name: &str,
        email: Option<&str>,
        seat: VendorSeat,
        created_by: &str,
    ) -> Result<(User, Invitation), StaffError> {
        let admin = seat != VendorSeat::Member;
        let c = Checked {
            username: username.trim().to_owned(),
            display_name: check_name(display_name)?,
            national_id: None,
            licence_number: None,
            specialties: Vec::new(),
            roles: vec![Role::VendorUser],
            email: check_email(email)?,
            phone: None,
            title: None,
        };
        validate_username(&c.username)?;
        let mut tx = self.db.begin_write().await?;
        // An operator's first admin: re-checked under the write lock.
        if seat == VendorSeat::FirstAdmin {
            let row = sqlx::query(VENDOR_ADMINS)
                .bind(vendor)
                .fetch_one(&mut *tx.tx)
                .await?;
            if row.try_get::<i64, _>(0)? > 0 {
                return Err(StaffError::Forbidden(
                    "an operator invites only a vendor's first admin (admin: true); the vendor's admin invites colleagues".into(),
                ));
            }
        }
        let (id, invitation) = self
            .insert_invited(
                &mut tx.tx,
                &c,
                None,
                Some((vendor, admin)),
                Role::VendorUser,
                "vendor-user",
                created_by,
            )
            .await?;
        let event = AuditEvent {
            actor: created_by.into(),
            action: "identity.vendor_user_created".into(),
            target: format!("user:{id}"),
            hospital_id: None,
            details: serde_json::json!({ "vendor": vendor, "username": c.username, "admin": admin }),
        };
        audit_in(&mut tx, event).await?;
        tx.commit().await?;
        let user = self.user(&id).await?.ok_or_else(|| {
            StaffError::Identity(IdentityError::Internal("a created user vanished".into()))
        })?;
        Ok((user, invitation))
    }

    /// Invite an operator (`runtime accounts add-operator`).
    pub async fn add_operator(
        &self,
        username: &str,
        display_name: &str,
        created_by: &str,
    ) -> Result<(User, Invitation), StaffError> {
        self.add_ministry_account(username, display_name, Role::Operator, created_by)
            .await
    }

    /// Invite a ministry account (operator or reviewer): only the CLI, run
    /// by whoever holds the database, creates these.
    pub async fn add_ministry_account(
        &self,
        username: &str,
        display_name: &str,
        role: Role,
        created_by: &str,
    ) -> Result<(User, Invitation), StaffError> {
        if !matches!(role, Role::Operator | Role::Reviewer) {
            return Err(StaffError::Identity(IdentityError::Invalid(format!(
                "`{role}` is not a ministry role (operator, reviewer)"
            ))));
        }
        let c = Checked {
            username: username.trim().to_owned(),
            display_name: check_name(display_name)?,
            national_id: None,
            licence_number: None,
            specialties: Vec::new(),
            roles: vec![role],
            email: None,
            phone: None,
            title: None,
        };
        validate_username(&c.username)?;
        let mut tx = self.db.begin_write().await?;
        let (id, invitation) = self
            .insert_invited(&mut tx.tx, &c, None, None, role, role.as_str(), created_by)
            .await?;
        tx.commit().await?;
        let user = self.user(&id).await?.ok_or_else(|| {
            StaffError::Identity(IdentityError::Internal("a created user vanished".into()))
        })?;
        Ok((user, invitation))
    }
}

/// Counts a vendor's active admins (`$1`: the vendor).
const VENDOR_ADMINS: &str = "SELECT COUNT(*) FROM identity_users WHERE vendor_id = $1 AND vendor_admin = 1 AND status = 'active'";

/// The audit entry of a created staff account.
fn staff_created(by: &str, hospital: &str, id: &str, c: &Checked, import: bool) -> AuditEvent {
    let mut details = serde_json::json!({ "username": c.username, "roles": c.roles });
    if import {
        details["import"] = serde_json::json!(true);
    } else {
        details["specialties"] = serde_json::json!(c.specialties);
    }
    AuditEvent {
        actor: by.into(),
        action: "identity.staff_created".into(),
        target: format!("user:{id}"),
        hospital_id: Some(hospital.into()),
        details,
    }
}

/// What a dry run shows of an account it would create.
fn preview(c: &Checked, hospital: &str) -> User {
    User {
        id: String::new(),
        username: c.username.clone(),
        display_name: c.display_name.clone(),
        role: primary(&c.roles),
        hospital_id: Some(hospital.to_owned()),
        vendor_id: None,
        national_id: None,
        health_id: None,
        specialty: c.specialties.first().cloned(),
        title: c.title.clone(),
        roles: c.roles.clone(),
        suspended: false,
        specialties: c.specialties.clone(),
        licence_number: c.licence_number.clone(),
        email: c.email.clone(),
        phone: c.phone.clone(),
        vendor_admin: false,
        last_login_at: None,
    }
}

/// Read an import file: header `username,display_name,national_id,
/// licence_number,specialties,roles,email` (specialties and roles
/// `;`-separated; double quotes around a field allowed). Lines are numbered
/// from 1 (the header).
pub fn parse_staff_csv(text: &str) -> Result<Vec<(usize, NewStaff)>, StaffError> {
    const HEADER: [&str; 7] = [
        "username",
        "display_name",
        "national_id",
        "licence_number",
        "specialties",
        "roles",
        "email",
    ];
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut lines = text.lines().enumerate();
    let header = lines
        .next()
        .map(|(_, l)| split_csv_line(l))
        .transpose()
        .map_err(|m| {
            StaffError::Lines(vec![LineError {
                line: 1,
                message: m,
            }])
        })?
        .unwrap_or_default();
    let header: Vec<String> = header
        .iter()
        .map(|h| h.trim().to_ascii_lowercase())
        .collect();
    if header != HEADER {
        return Err(StaffError::Lines(vec![LineError {
            line: 1,
            message: format!("the header must be `{}`", HEADER.join(",")),
        }]));
    }
    let mut rows = Vec::new();
    let mut errors = Vec::new();
    for (i, line) in lines {
        let n = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let fields = match split_csv_line(line) {
            Ok(f) => f,
            Err(m) => {
                errors.push(LineError {
                    line: n,
                    message: m,
                });
                continue;
            }
        };
        if fields.len() != HEADER.len() {
            errors.push(LineError {
                line: n,
                message: format!("{} fields, expected {}", fields.len(), HEADER.len()),
            });
            continue;
        }
        let list = |s: &str| -> Vec<String> {
            s.split(';')
                .map(str::trim)
                .filter(|x| !x.is_empty())
                .map(str::to_owned)
                .collect()
        };
        let opt = |s: &str| Some(s.trim().to_owned()).filter(|s| !s.is_empty());
        rows.push((
            n,
            NewStaff {
                username: fields[0].trim().to_owned(),
                display_name: fields[1].trim().to_owned(),
                national_id: fields[2].trim().to_owned(),
                licence_number: opt(&fields[3]),
                specialties: list(&fields[4]),
                roles: list(&fields[5]),
                email: opt(&fields[6]),
                phone: None,
                title: None,
            },
        ));
    }
    if !errors.is_empty() {
        return Err(StaffError::Lines(errors));
    }
    if rows.is_empty() {
        return Err(invalid("the file has no account lines"));
    }
    Ok(rows)
}

fn split_csv_line(line: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = line.trim_end_matches('\r').chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            (true, '"') => quoted = false,
            (false, '"') if cur.trim().is_empty() => {
                cur.clear();
                quoted = true;
            }
            (false, ',') => out.push(std::mem::take(&mut cur)),
            (_, c) => cur.push(c),
        }
    }
    if quoted {
        return Err("a quoted field is not closed".into());
    }
    out.push(cur);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn licences() {
        assert_eq!(
            validate_licence(" 001234/byt-gphn ").unwrap(),
            "001234/BYT-GPHN"
        );
        assert!(validate_licence("0012345/HNO-CCHN").is_ok());
        assert!(validate_licence("1/HCM-CCHN").is_ok());
        for bad in [
            "",
            "001234",
            "001234/BYT",
            "12345678/BYT-GPHN",
            "0012/B-GPHN",
            "0012/BYT-XYZ",
            "00a1/BYT-GPHN",
        ] {
            assert!(validate_licence(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn roles_a_hospital_admin_may_grant() {
        let r =
            |v: &[&str]| check_staff_roles(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(
            r(&["practitioner", "pharmacist"]).unwrap(),
            vec![Role::Practitioner, Role::Pharmacist]
        );
        assert!(matches!(r(&["operator"]), Err(StaffError::Forbidden(_))));
        assert!(matches!(r(&["citizen"]), Err(StaffError::Forbidden(_))));
        assert!(matches!(r(&["wizard"]), Err(StaffError::Invalid(_))));
        assert!(matches!(r(&[]), Err(StaffError::Invalid(_))));
    }

    #[test]
    fn csv_lines_and_quotes() {
        let text = "username,display_name,national_id,licence_number,specialties,roles,email\n\
                    bs.an,\"Nguyễn Văn An, BS\",001090000001,001/BYT-GPHN,cardiology;internal-medicine,practitioner,\n";
        let rows = parse_staff_csv(text).unwrap();
        assert_eq!(rows[0].0, 2);
        assert_eq!(rows[0].1.display_name, "Nguyễn Văn An, BS");
        assert_eq!(
            rows[0].1.specialties,
            vec!["cardiology", "internal-medicine"]
        );
        assert!(matches!(
            parse_staff_csv("a,b\n"),
            Err(StaffError::Lines(_))
        ));
        assert_eq!(mask_national_id("001090000001"), "001******001");
    }
}
