//! `identity`: the call's hospital and principal, read-only.

use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::bindings::vtelehealth::platform::identity::{self as wit, Host};
use crate::sandbox::CallState;

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

pub use crate::identity::Principal;

/// The context of one plugin call.
#[derive(Debug, Clone)]
pub struct CallContext {
    pub hospital: Hospital,
    pub plugin_id: String,
    pub request_id: String,
    pub principal: Option<Principal>,
    /// When the call started; origin of the plugin's monotonic clock.
    pub started: Instant,
}

impl From<Tier> for wit::Tier {
    fn from(t: Tier) -> Self {
        match t {
            Tier::Central => wit::Tier::Central,
            Tier::Provincial => wit::Tier::Provincial,
            Tier::District => wit::Tier::District,
            Tier::Commune => wit::Tier::Commune,
        }
    }
}

impl Host for CallState {
    async fn current(&mut self) -> wasmtime::Result<wit::CallContext> {
        self.require(crate::capabilities::Capability::Identity)?;
        let ctx = &self.ctx;
        Ok(wit::CallContext {
            hospital: wit::Hospital {
                id: ctx.hospital.id.clone(),
                name: ctx.hospital.name.clone(),
                tier: ctx.hospital.tier.into(),
                province: ctx.hospital.province.clone(),
            },
            plugin_id: ctx.plugin_id.clone(),
            request_id: ctx.request_id.clone(),
            principal: ctx.principal.as_ref().map(|p| wit::Principal {
                subject: p.subject.clone(),
                name: p.name.clone(),
                roles: p.roles.iter().map(|r| r.as_str().to_owned()).collect(),
            }),
        })
    }
}
