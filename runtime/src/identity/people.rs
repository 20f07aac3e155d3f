//! The directory of people and organisations: citizens, practitioners,
//! hospital admins, vendors and their users, ministry reviewers, operators,
//! social-insurance assessors, and the OAuth clients (browser apps and hospital service accounts).

use std::num::NonZeroU32;

use aws_lc_rs::pbkdf2;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::any::AnyRow;

use super::{IdentityError, Principal, Role};

/// Default PBKDF2-HMAC-SHA256 iterations for stored passwords and secrets.
pub const DEFAULT_PASSWORD_ITERATIONS: u32 = 210_000;

/// A person who can log in to the built-in provider.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct User {
    /// Stable subject (`sub`) of the user's tokens.
    pub id: String,
    /// Login name: the CCCD for citizens, a chosen name for staff.
    pub username: String,
    pub display_name: String,
    pub role: Role,
    pub hospital_id: Option<String>,
    pub vendor_id: Option<String>,
    /// 12-digit citizen ID (CCCD), citizens only.
    pub national_id: Option<String>,
    /// 10-digit social-insurance number used as the health ID, citizens only.
    pub health_id: Option<String>,
    /// Practitioners: specialty and title.
    pub specialty: Option<String>,
    pub title: Option<String>,
    /// Every role of the account (`role` first).
    pub roles: Vec<Role>,
    /// Suspended accounts cannot sign in; their tokens are refused.
    pub suspended: bool,
    /// Specialty codes (`runtime/data/specialties.csv`).
    pub specialties: Vec<String>,
    /// Practising licence number (staff).
    pub licence_number: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    /// Vendor users who may invite colleagues of their vendor.
    pub vendor_admin: bool,
    /// Last password sign-in, seconds since the epoch.
    pub last_login_at: Option<i64>,
}

impl User {
    /// Whether the account holds `role`.
    pub fn has_role(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    /// The principal this user acts as, with all its roles.
    pub fn principal(&self, issuer: &str) -> Principal {
        Principal {
            subject: self.id.clone(),
            name: self.display_name.clone(),
            roles: self.roles.clone(),
            hospital_id: self.hospital_id.clone(),
            vendor_id: self.vendor_id.clone(),
            national_id: self.national_id.clone(),
            health_id: self.health_id.clone(),
            issuer: issuer.to_owned(),
            client_id: None,
        }
    }

    pub(super) fn from_row(row: &AnyRow) -> Result<Self, IdentityError> {
        let role: String = row.try_get("role")?;
        let role: Role = role
            .parse()
            .map_err(|_| IdentityError::Internal(format!("stored role `{role}`")))?;
        let mut roles = vec![role];
        let stored: Option<String> = row.try_get("roles")?;
        for r in stored.as_deref().unwrap_or("").split_whitespace() {
            let r: Role = r
                .parse()
                .map_err(|_| IdentityError::Internal(format!("stored role `{r}`")))?;
            if !roles.contains(&r) {
                roles.push(r);
            }
        }
        let status: String = row.try_get("status")?;
        let specialties: Option<String> = row.try_get("specialties")?;
        let vendor_admin: i64 = row.try_get("vendor_admin")?;
        Ok(Self {
            roles,
            suspended: status == "suspended",
            specialties: specialties
                .as_deref()
                .unwrap_or("")
                .split_whitespace()
                .map(str::to_owned)
                .collect(),
            licence_number: row.try_get("licence_number")?,
            email: row.try_get("email")?,
            phone: row.try_get("phone")?,
            vendor_admin: vendor_admin != 0,
            last_login_at: row.try_get("last_login_at")?,
            id: row.try_get("id")?,
            username: row.try_get("username")?,
            display_name: row.try_get("display_name")?,
            role,
            hospital_id: row.try_get("hospital_id")?,
            vendor_id: row.try_get("vendor_id")?,
            national_id: row.try_get("national_id")?,
            health_id: row.try_get("health_id")?,
            specialty: row.try_get("specialty")?,
            title: row.try_get("title")?,
        })
    }
}

/// A new user for [`super::IdentityService::create_user`].
#[derive(Debug, Clone)]
pub struct NewUser {
    pub username: String,
    pub display_name: String,
    pub role: Role,
    pub password: String,
    pub hospital_id: Option<String>,
    pub vendor_id: Option<String>,
    pub national_id: Option<String>,
    pub health_id: Option<String>,
    pub specialty: Option<String>,
    pub title: Option<String>,
}

impl NewUser {
    /// A user with `role` and nothing else set.
    pub fn new(username: &str, display_name: &str, role: Role, password: &str) -> Self {
        Self {
            username: username.into(),
            display_name: display_name.into(),
            role,
            password: password.into(),
            hospital_id: None,
            vendor_id: None,
            national_id: None,
            health_id: None,
            specialty: None,
            title: None,
        }
    }

    /// Check the fields the role requires and the formats of the IDs.
    pub fn validate(&self) -> Result<(), IdentityError> {
        let invalid = |m: &str| Err(IdentityError::Invalid(m.to_owned()));
        if self.username.trim().is_empty() || self.username.len() > 128 {
            return invalid("username must be 1-128 characters");
        }
        if self.display_name.trim().is_empty() {
            return invalid("display name must be 1-200 characters");
        }
        use crate::text_limits::{NAME, TITLE, check};
        let too_long = |e: crate::text_limits::TooLong| IdentityError::Invalid(e.to_string());
        check("display_name", &self.display_name, NAME).map_err(too_long)?;
        for (field, value) in [("specialty", &self.specialty), ("title", &self.title)] {
            check(field, value.as_deref().unwrap_or(""), TITLE).map_err(too_long)?;
        }
        if self.password.len() < 8 || self.password.len() > 1024 {
            return invalid("password must be 8-1024 bytes");
        }
        if let Some(id) = &self.national_id {
            validate_citizen_id(id)?;
        }
        if let Some(id) = &self.health_id {
            validate_health_id(id)?;
        }
        let needs_hospital = matches!(
            self.role,
            Role::Practitioner | Role::HospitalAdmin | Role::Pharmacist
        );
        // An assessor may be a hospital's (staff) or the insurer's (none).
        if self.role != Role::Assessor && needs_hospital != self.hospital_id.is_some() {
            return invalid(
                "practitioners, pharmacists and hospital admins, and only they, belong to a hospital",
            );
        }
        if (self.role == Role::VendorUser) != self.vendor_id.is_some() {
            return invalid("vendor users, and only they, belong to a vendor");
        }
        let citizen = self.role == Role::Citizen;
        if citizen != self.national_id.is_some() || (!citizen && self.health_id.is_some()) {
            return invalid("citizens, and only they, have a citizen ID (and a health ID)");
        }
        if self.role == Role::Service {
            return invalid("services are clients (client credentials), not users");
        }
        Ok(())
    }
}

/// Check a citizen ID (CCCD): 12 digits, the first three a province code
/// 001-096.
pub fn validate_citizen_id(id: &str) -> Result<(), IdentityError> {
    let digits = id.len() == 12 && id.bytes().all(|b| b.is_ascii_digit());
    let province = id.get(..3).and_then(|p| p.parse::<u16>().ok());
    if digits && province.is_some_and(|p| (1..=96).contains(&p)) {
        Ok(())
    } else {
        Err(IdentityError::Invalid(
            "citizen ID (CCCD) must be 12 digits starting with a province code 001-096".into(),
        ))
    }
}

/// Check a health ID (social-insurance number): 10 digits.
pub fn validate_health_id(id: &str) -> Result<(), IdentityError> {
    if id.len() == 10 && id.bytes().all(|b| b.is_ascii_digit()) {
        Ok(())
    } else {
        Err(IdentityError::Invalid(
            "health ID (social-insurance number) must be 10 digits".into(),
        ))
    }
}

/// `pbkdf2-sha256$ITERATIONS$SALT$HASH` (unpadded base64).
pub fn hash_password(password: &str, iterations: u32) -> Result<String, IdentityError> {
    let iterations = NonZeroU32::new(iterations)
        .ok_or_else(|| IdentityError::Internal("zero PBKDF2 iterations".into()))?;
    let mut salt = [0u8; 16];
    SystemRandom::new()
        .fill(&mut salt)
        .map_err(|_| IdentityError::Internal("no randomness".into()))?;
    let mut hash = [0u8; 32];
    pbkdf2::derive(
        pbkdf2::PBKDF2_HMAC_SHA256,
        iterations,
        &salt,
        password.as_bytes(),
        &mut hash,
    );
    Ok(format!(
        "pbkdf2-sha256${iterations}${}${}",
        STANDARD_NO_PAD.encode(salt),
        STANDARD_NO_PAD.encode(hash)
    ))
}

/// Whether `password` matches a stored hash (constant time).
pub fn verify_password(password: &str, stored: &str) -> bool {
    let mut parts = stored.split('$');
    let (Some("pbkdf2-sha256"), Some(iter), Some(salt), Some(hash), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return false;
    };
    let (Some(iterations), Ok(salt), Ok(hash)) = (
        iter.parse::<u32>().ok().and_then(NonZeroU32::new),
        STANDARD_NO_PAD.decode(salt),
        STANDARD_NO_PAD.decode(hash),
    ) else {
        return false;
    };
    pbkdf2::verify(
        pbkdf2::PBKDF2_HMAC_SHA256,
        iterations,
        &salt,
        password.as_bytes(),
        &hash,
    )
    .is_ok()
}

/// A registered OAuth client.
#[derive(Debug, Clone)]
pub struct Client {
    pub id: String,
    pub name: String,
    /// Confidential clients authenticate with a secret.
    pub confidential: bool,
    pub(super) secret_hash: Option<String>,
    pub redirect_uris: Vec<String>,
    /// The hospital a service client acts for (client credentials).
    pub hospital_id: Option<String>,
    /// The scope its tokens may carry (space-separated); `None`: any.
    pub scope: Option<String>,
    /// Revoked clients cannot authenticate; their tokens are refused.
    pub revoked: bool,
    /// The secret before the last rotation, valid until the time given.
    pub(super) previous_secret: Option<(String, i64)>,
}

impl Client {
    pub(super) fn from_row(row: &AnyRow) -> Result<Self, IdentityError> {
        let kind: String = row.try_get("kind")?;
        let uris: String = row.try_get("redirect_uris")?;
        let previous: Option<String> = row.try_get("previous_secret_hash")?;
        let until: Option<i64> = row.try_get("previous_secret_expires_at")?;
        let revoked: Option<i64> = row.try_get("revoked_at")?;
        Ok(Self {
            scope: row.try_get("scope")?,
            revoked: revoked.is_some(),
            previous_secret: previous.zip(until),
            id: row.try_get("id")?,
            name: row.try_get("name")?,
            confidential: kind == "confidential",
            secret_hash: row.try_get("secret_hash")?,
            redirect_uris: uris.lines().map(str::to_owned).collect(),
            hospital_id: row.try_get("hospital_id")?,
        })
    }
}

/// A demo account seeded by `runtime serve --demo`.
#[derive(Debug, Clone, Serialize)]
pub struct DemoAccount {
    pub username: &'static str,
    pub password: &'static str,
    pub display_name: &'static str,
    pub role: Role,
    pub hospital_id: Option<&'static str>,
    pub vendor_id: Option<&'static str>,
    pub national_id: Option<&'static str>,
    pub health_id: Option<&'static str>,
    pub specialty: Option<&'static str>,
    pub title: Option<&'static str>,
}

/// Demo vendor seeded with the demo accounts.
pub const DEMO_VENDOR: (&str, &str) = ("vtelehealth-demo", "VTelehealth Demo Vendor");
/// Public browser client of the demo (authorization code + PKCE).
pub const DEMO_WEB_CLIENT: &str = "vtelehealth-web";
/// Demo service client (client credentials) of Bạch Mai's HIS, and its secret.
pub const DEMO_SERVICE_CLIENT: (&str, &str, &str) =
    ("his-bach-mai", "demo-his-secret-bach-mai", "bach-mai");

/// The demo accounts, with their (public, documented) passwords.
pub fn demo_accounts() -> Vec<DemoAccount> {
    let base = |username, password, display_name, role| DemoAccount {
        username,
        password,
        display_name,
        role,
        hospital_id: None,
        vendor_id: None,
        national_id: None,
        health_id: None,
        specialty: None,
        title: None,
    };
    let practitioner = |username, name, hospital, specialty, title| DemoAccount {
        hospital_id: Some(hospital),
        specialty: Some(specialty),
        title: Some(title),
        ..base(username, "demo-bacsi", name, Role::Practitioner)
    };
    let admin = |username, name, hospital| DemoAccount {
        hospital_id: Some(hospital),
        ..base(username, "demo-quantri", name, Role::HospitalAdmin)
    };
    vec![
        DemoAccount {
            national_id: Some("001090000001"),
            health_id: Some("0101234567"),
            ..base(
                "001090000001",
                "demo-congdan",
                "Nguyễn Văn An",
                Role::Citizen,
            )
        },
        DemoAccount {
            national_id: Some("034095000002"),
            health_id: Some("3409876543"),
            ..base(
                "034095000002",
                "demo-congdan",
                "Trần Thị Bình",
                Role::Citizen,
            )
        },
        practitioner(
            "bs.bachmai",
            "BS. Lê Minh Châu",
            "bach-mai",
            "cardiology",
            "Bác sĩ chuyên khoa II",
        ),
        practitioner(
            "bs.thaibinh",
            "BS. Phạm Quốc Dũng",
            "bvdk-thai-binh",
            "internal-medicine",
            "Bác sĩ chuyên khoa I",
        ),
        practitioner(
            "bs.vuthu",
            "BS. Hoàng Thu Hà",
            "ttyt-vu-thu",
            "pediatrics",
            "Bác sĩ",
        ),
        practitioner(
            "ys.tamquang",
            "YS. Đỗ Văn Khoa",
            "tyt-xa-tam-quang",
            "general-practice",
            "Y sĩ",
        ),
        admin("qt.bachmai", "Quản trị Bạch Mai", "bach-mai"),
        admin("qt.thaibinh", "Quản trị BVĐK Thái Bình", "bvdk-thai-binh"),
        admin("qt.vuthu", "Quản trị TTYT Vũ Thư", "ttyt-vu-thu"),
        admin("qt.tamquang", "Quản trị TYT Tam Quang", "tyt-xa-tam-quang"),
        DemoAccount {
            hospital_id: Some("bach-mai"),
            specialty: Some("clinical-pharmacy"),
            title: Some("Dược sĩ"),
            ..base(
                "ds.bachmai",
                "demo-duocsi",
                "DS. Vũ Thị Mai",
                Role::Pharmacist,
            )
        },
        DemoAccount {
            vendor_id: Some(DEMO_VENDOR.0),
            ..base(
                "dev.demo",
                "demo-nhacungcap",
                "Nhà phát triển Demo",
                Role::VendorUser,
            )
        },
        base(
            "thamdinh.byt",
            "demo-thamdinh",
            "Thẩm định viên Bộ Y tế",
            Role::Reviewer,
        ),
        base(
            "vanhanh",
            "demo-vanhanh",
            "Vận hành nền tảng",
            Role::Operator,
        ),
        base(
            "giamdinh.bhxh",
            "demo-giamdinh",
            "Giám định viên BHXH Hà Nội",
            Role::Assessor,
        ),
    ]
}

/// A random URL-safe token of 32 bytes.
pub fn random_token() -> Result<String, IdentityError> {
    let mut bytes = [0u8; 32];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| IdentityError::Internal("no randomness".into()))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn citizen_and_health_ids() {
        assert!(validate_citizen_id("001090000001").is_ok());
        assert!(validate_citizen_id("096123456789").is_ok());
        assert!(validate_citizen_id("000123456789").is_err());
        assert!(validate_citizen_id("097123456789").is_err());
        assert!(validate_citizen_id("00109000000").is_err());
        assert!(validate_citizen_id("00109000000a").is_err());
        assert!(validate_citizen_id("٠٠١٠٩٠٠٠٠٠٠١").is_err());
        assert!(validate_health_id("0101234567").is_ok());
        assert!(validate_health_id("010123456").is_err());
        assert!(validate_health_id("01012345678").is_err());
    }

    #[test]
    fn passwords_round_trip() {
        let h = hash_password("correct horse", 1000).unwrap();
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("wrong horse", &h));
        assert!(!verify_password("correct horse", "garbage"));
        assert_ne!(h, hash_password("correct horse", 1000).unwrap(), "salted");
    }

    #[test]
    fn demo_accounts_are_valid() {
        for a in demo_accounts() {
            let mut u = NewUser::new(a.username, a.display_name, a.role, a.password);
            u.hospital_id = a.hospital_id.map(Into::into);
            u.vendor_id = a.vendor_id.map(Into::into);
            u.national_id = a.national_id.map(Into::into);
            u.health_id = a.health_id.map(Into::into);
            u.validate().unwrap();
        }
    }
}
