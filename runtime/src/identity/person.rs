//! [`PersonRef`]: who a person is wherever the platform stores or compares
//! people (rooms, shares, payments, notifications, audit, what plugins see).

use std::fmt;

use serde::Serialize;

use super::{Principal, User};

/// A person as the platform keys them: the user id for the platform's own
/// users and service clients (unchanged, so stored data keeps working),
/// `issuer#subject` for a person of a trusted external issuer. A bare `sub`
/// names nobody: two issuers may hand out the same one, and an external
/// `sub` equal to a local user id must never act as that user. Local ids
/// (`u-…`, `client:…`) never contain `#`, and an external reference always
/// starts with its issuer's URL, so the two forms cannot collide.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct PersonRef(String);

impl PersonRef {
    /// The person a verified principal stands for; `own_issuer` is the
    /// built-in provider's `iss`. Only [`super::IdentityService::person`]
    /// calls this, so the own issuer is always the node's.
    pub(super) fn of(p: &Principal, own_issuer: &str) -> Self {
        if p.issuer == own_issuer {
            Self(p.subject.clone())
        } else {
            Self(format!("{}#{}", p.issuer, p.subject))
        }
    }

    /// A user of the platform's own directory (their id), e.g. someone
    /// invited to a room by id.
    pub fn of_user(user: &User) -> Self {
        Self(user.id.clone())
    }

    /// The stored form.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The stored form, owned.
    pub fn into_string(self) -> String {
        self.0
    }

    /// Whether this is a user of the platform's own directory.
    pub fn is_local(&self) -> bool {
        !self.0.contains('#')
    }
}

impl fmt::Display for PersonRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<PersonRef> for String {
    fn from(p: PersonRef) -> Self {
        p.0
    }
}

impl PartialEq<str> for PersonRef {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<String> for PersonRef {
    fn eq(&self, other: &String) -> bool {
        &self.0 == other
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Role;

    fn principal(issuer: &str, subject: &str) -> Principal {
        Principal {
            subject: subject.into(),
            name: "n".into(),
            roles: vec![Role::Citizen],
            hospital_id: None,
            vendor_id: None,
            national_id: None,
            health_id: None,
            issuer: issuer.into(),
            client_id: None,
        }
    }

    #[test]
    fn an_external_sub_equal_to_a_local_id_is_another_person() {
        let own = "http://127.0.0.1:8080";
        let local = PersonRef::of(&principal(own, "u-1"), own);
        let external = PersonRef::of(&principal("https://vneid.test", "u-1"), own);
        assert_eq!(local.as_str(), "u-1");
        assert!(local.is_local());
        assert_eq!(external.as_str(), "https://vneid.test#u-1");
        assert!(!external.is_local());
        assert_ne!(local, external);
        // Two external issuers with the same `sub` are two people too.
        let other = PersonRef::of(&principal("https://his.bv-a.test", "u-1"), own);
        assert_ne!(external, other);
    }
}
