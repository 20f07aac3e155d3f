//! Data scopes of a plugin's `records` grant, in the SMART App Launch v2
//! style (`user/Observation.rs?category=laboratory`), and purposes of use
//! (`purpose=treatment`): parsed from the manifest's `records:<scope>`
//! entries, described in plain words for reviewers, enforced on every call.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use serde_json::Value;

use super::ResourceType;

/// Why records are read or written (HL7 v3 PurposeOfUse).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Purpose {
    Treatment,
    Payment,
    PublicHealth,
}

impl Purpose {
    pub const ALL: [Purpose; 3] = [Self::Treatment, Self::Payment, Self::PublicHealth];

    /// The name in manifests, consents and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Treatment => "treatment",
            Self::Payment => "payment",
            Self::PublicHealth => "public-health",
        }
    }

    /// The HL7 v3 PurposeOfUse code.
    pub fn code(self) -> &'static str {
        match self {
            Self::Treatment => "TREAT",
            Self::Payment => "HPAYMT",
            Self::PublicHealth => "PUBHLTH",
        }
    }

    /// Plain words for reviewers and citizens.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Treatment => "treatment of the patient",
            Self::Payment => "payment and insurance claims",
            Self::PublicHealth => "public-health reporting",
        }
    }
}

impl fmt::Display for Purpose {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Purpose {
    type Err = String;
    /// The name or the HL7 code, any case.
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|p| p.as_str().eq_ignore_ascii_case(s) || p.code().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                format!("unknown purpose of use `{s}` (known: treatment, payment, public-health)")
            })
    }
}

/// Whose records a scope reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Context {
    /// Only records about the signed-in citizen.
    Patient,
    /// What the signed-in practitioner or hospital admin may reach.
    User,
    /// The whole hospital's records, whoever calls (integrations).
    System,
}

/// One interaction of a scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Interaction {
    Create,
    Read,
    Update,
    Delete,
    Search,
}

impl Interaction {
    const ORDER: [(char, Interaction); 5] = [
        ('c', Self::Create),
        ('r', Self::Read),
        ('u', Self::Update),
        ('d', Self::Delete),
        ('s', Self::Search),
    ];

    fn verb(self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::Read => "read",
            Self::Update => "update",
            Self::Delete => "delete",
            Self::Search => "search",
        }
    }
}

/// One data scope, e.g. `user/Observation.rs?category=laboratory`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataScope {
    pub context: Context,
    /// `None`: every resource type (`*`).
    pub resource_type: Option<ResourceType>,
    pub interactions: BTreeSet<Interaction>,
    /// `(parameter, token)` pairs that every resource reached must match;
    /// the token is `code` or `system|code`.
    pub constraints: Vec<(String, String)>,
}

/// The search parameters a scope may be narrowed by.
const CONSTRAINT_PARAMS: [&str; 2] = ["category", "code"];

impl FromStr for DataScope {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (main, query) = match s.split_once('?') {
            Some((m, q)) => (m, Some(q)),
            None => (s, None),
        };
        let (context, rest) = main
            .split_once('/')
            .ok_or_else(|| format!("`{s}`: expected <patient|user|system>/<Type or *>.<cruds>"))?;
        let context = match context {
            "patient" => Context::Patient,
            "user" => Context::User,
            "system" => Context::System,
            other => {
                return Err(format!(
                    "`{s}`: the context `{other}` is not patient, user or system"
                ));
            }
        };
        let (ty, ops) = rest
            .split_once('.')
            .ok_or_else(|| format!("`{s}`: expected <Type or *>.<cruds> after the context"))?;
        let resource_type = match ty {
            "*" => None,
            t => Some(
                t.parse::<ResourceType>()
                    .map_err(|e| format!("`{s}`: {e}"))?,
            ),
        };
        let interactions: BTreeSet<Interaction> = match ops {
            // SMART v1 names, still common.
            "read" => [Interaction::Read, Interaction::Search].into(),
            "write" => [
                Interaction::Create,
                Interaction::Update,
                Interaction::Delete,
            ]
            .into(),
            "*" => Interaction::ORDER.iter().map(|(_, i)| *i).collect(),
            letters => {
                // SMART v2: a non-empty subsequence of `cruds`, in that order.
                let mut out = BTreeSet::new();
                let mut next = 0;
                for ch in letters.chars() {
                    let pos = Interaction::ORDER[next..]
                        .iter()
                        .position(|(c, _)| *c == ch)
                        .ok_or_else(|| {
                            format!(
                                "`{s}`: interactions must be letters of `cruds`, in that order, each once"
                            )
                        })?;
                    out.insert(Interaction::ORDER[next + pos].1);
                    next += pos + 1;
                }
                if out.is_empty() {
                    return Err(format!("`{s}`: no interaction named"));
                }
                out
            }
        };
        if interactions.contains(&Interaction::Delete) {
            return Err(format!(
                "`{s}`: records are never deleted through the platform; drop `d`"
            ));
        }
        let mut constraints = Vec::new();
        for pair in query.into_iter().flat_map(|q| q.split('&')) {
            let (name, value) = pair
                .split_once('=')
                .filter(|(n, v)| !n.is_empty() && !v.is_empty())
                .ok_or_else(|| format!("`{s}`: `{pair}` is not parameter=value"))?;
            if !CONSTRAINT_PARAMS.contains(&name) {
                return Err(format!(
                    "`{s}`: a scope can be narrowed by category or code only, not `{name}`"
                ));
            }
            constraints.push((name.to_owned(), value.to_owned()));
        }
        Ok(Self {
            context,
            resource_type,
            interactions,
            constraints,
        })
    }
}

impl DataScope {
    /// Whether the scope covers `interaction` on `rt` in `context`.
    pub fn covers(&self, context: Context, rt: ResourceType, interaction: Interaction) -> bool {
        self.context == context
            && self.resource_type.is_none_or(|t| t == rt)
            && self.interactions.contains(&interaction)
    }

    /// Whether `resource` satisfies every constraint of the scope.
    pub fn admits(&self, resource: &Value) -> bool {
        self.constraints
            .iter()
            .all(|(param, token)| has_token(resource, param, token))
    }

    /// The scope in plain words.
    pub fn describe(&self) -> String {
        let verbs: Vec<&str> = self.interactions.iter().map(|i| i.verb()).collect();
        let what = match self.resource_type {
            Some(t) => format!("{t} records"),
            None => "records of every type".to_owned(),
        };
        let narrowed: Vec<String> = self
            .constraints
            .iter()
            .map(|(p, v)| format!("{p} {v}"))
            .collect();
        let narrowed = if narrowed.is_empty() {
            String::new()
        } else {
            format!(" with {}", narrowed.join(" and "))
        };
        let whose = match self.context {
            Context::Patient => "about the signed-in citizen only",
            Context::User => {
                "that the signed-in practitioner may see (their hospital's, or another's with the patient's consent or a consultation)"
            }
            Context::System => {
                "of the whole hospital, for callers of that hospital including its services (integrations such as a HIS)"
            }
        };
        format!("{} {what}{narrowed} {whose}", join_words(&verbs))
    }
}

impl fmt::Display for DataScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let context = match self.context {
            Context::Patient => "patient",
            Context::User => "user",
            Context::System => "system",
        };
        let ty = self.resource_type.map_or("*", ResourceType::as_str);
        let ops: String = Interaction::ORDER
            .iter()
            .filter(|(_, i)| self.interactions.contains(i))
            .map(|(c, _)| *c)
            .collect();
        write!(f, "{context}/{ty}.{ops}")?;
        for (i, (p, v)) in self.constraints.iter().enumerate() {
            write!(f, "{}{p}={v}", if i == 0 { '?' } else { '&' })?;
        }
        Ok(())
    }
}

fn join_words(words: &[&str]) -> String {
    match words {
        [] => String::new(),
        [one] => (*one).to_owned(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

/// Whether `resource` has a coding matching `token` (`code` or
/// `system|code`) under the element searched by `param`.
fn has_token(resource: &Value, param: &str, token: &str) -> bool {
    let (system, code) = match token.split_once('|') {
        Some((s, c)) => (Some(s), c),
        None => (None, token),
    };
    let concepts: Vec<&Value> = match resource.get(param) {
        Some(Value::Array(items)) => items.iter().collect(),
        Some(v) => vec![v],
        None => Vec::new(),
    };
    concepts.iter().any(|c| {
        c.get("coding")
            .and_then(Value::as_array)
            .is_some_and(|codings| {
                codings.iter().any(|coding| {
                    coding.get("code").and_then(Value::as_str) == Some(code)
                        && system
                            .is_none_or(|s| coding.get("system").and_then(Value::as_str) == Some(s))
                })
            })
    })
}

/// One entry of a `records` grant: a data scope or a purpose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScopeEntry {
    Data(DataScope),
    Purpose(Purpose),
    /// `consultation`: request and move consultations between hospitals.
    Consultation,
}

/// The `records:` entry that lets a plugin open and move consultations.
pub const CONSULTATION_SCOPE: &str = "consultation";

impl FromStr for ScopeEntry {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s == CONSULTATION_SCOPE {
            return Ok(Self::Consultation);
        }
        match s.strip_prefix("purpose=") {
            Some(p) => p.parse().map(Self::Purpose),
            None => s.parse().map(Self::Data),
        }
    }
}

impl ScopeEntry {
    /// The entry in plain words.
    pub fn describe(&self) -> String {
        match self {
            Self::Data(d) => d.describe(),
            Self::Purpose(p) => format!("only for {} (purpose of use {})", p.describe(), p.code()),
            Self::Consultation => "request, accept, decline and end consultations between the signed-in practitioner's hospital and this one; while one is active, each hospital reads the other's records about that patient for treatment (audited)".into(),
        }
    }
}

/// What a plugin may do with records: its granted data scopes and purposes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordGrant {
    pub scopes: Vec<DataScope>,
    pub purposes: BTreeSet<Purpose>,
    /// `records:consultation` was granted.
    pub consultations: bool,
}

impl RecordGrant {
    /// The grant of `records:<scope>` strings (other capabilities are
    /// ignored; scopes that do not parse grant nothing).
    pub fn from_grants<'a>(grants: impl IntoIterator<Item = &'a str>) -> Self {
        let mut grant = Self::default();
        for g in grants {
            let Some(scope) = g.strip_prefix("records:") else {
                continue;
            };
            match scope.parse::<ScopeEntry>() {
                Ok(ScopeEntry::Data(d)) => grant.scopes.push(d),
                Ok(ScopeEntry::Purpose(p)) => {
                    grant.purposes.insert(p);
                }
                Ok(ScopeEntry::Consultation) => grant.consultations = true,
                Err(e) => tracing::warn!(scope, error = %e, "ignoring an unreadable records scope"),
            }
        }
        grant
    }

    /// The scopes covering `interaction` on `rt` in `context`.
    pub fn matching(
        &self,
        context: Context,
        rt: ResourceType,
        interaction: Interaction,
    ) -> Vec<&DataScope> {
        self.scopes
            .iter()
            .filter(|s| s.covers(context, rt, interaction))
            .collect()
    }
}

/// Check the scopes of a manifest's `records` request: each must parse, and
/// at least one data scope and one purpose are needed.
pub fn check_request(scopes: &[String]) -> Result<(), String> {
    let mut data = 0;
    let mut purposes = 0;
    for s in scopes {
        match s.parse::<ScopeEntry>()? {
            ScopeEntry::Data(_) => data += 1,
            ScopeEntry::Purpose(_) => purposes += 1,
            ScopeEntry::Consultation => {}
        }
    }
    if data == 0 || purposes == 0 {
        return Err(
            "`records` must name its data scopes and purposes of use, e.g. \"records:user/Observation.rs\" and \"records:purpose=treatment\""
                .into(),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_smart_v2_scopes() {
        let s: DataScope = "user/Observation.rs?category=laboratory".parse().unwrap();
        assert_eq!(s.context, Context::User);
        assert_eq!(s.resource_type, Some(ResourceType::Observation));
        assert_eq!(
            s.interactions,
            [Interaction::Read, Interaction::Search].into()
        );
        assert_eq!(s.constraints, [("category".into(), "laboratory".into())]);
        assert_eq!(s.to_string(), "user/Observation.rs?category=laboratory");
        assert!(s.covers(Context::User, ResourceType::Observation, Interaction::Read));
        assert!(!s.covers(
            Context::User,
            ResourceType::Observation,
            Interaction::Create
        ));
        assert!(!s.covers(
            Context::System,
            ResourceType::Observation,
            Interaction::Read
        ));
        let all: DataScope = "system/*.cru".parse().unwrap();
        assert!(all.covers(Context::System, ResourceType::Patient, Interaction::Update));
        assert_eq!(
            "patient/Patient.read"
                .parse::<DataScope>()
                .unwrap()
                .to_string(),
            "patient/Patient.rs"
        );
        for bad in [
            "Observation.rs",
            "doctor/Observation.rs",
            "user/Lab.rs",
            "user/Observation.sr",
            "user/Observation.rr",
            "user/Observation.",
            "user/Observation.cruds",
            "user/Observation.rs?status=final",
            "user/Observation.rs?category",
        ] {
            assert!(bad.parse::<DataScope>().is_err(), "{bad}");
        }
    }

    #[test]
    fn constraints_match_codings() {
        let lab: DataScope = "user/Observation.rs?category=laboratory".parse().unwrap();
        let obs = |code: &str| json!({"resourceType": "Observation", "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": code}]}]});
        assert!(lab.admits(&obs("laboratory")));
        assert!(!lab.admits(&obs("vital-signs")));
        assert!(!lab.admits(&json!({"resourceType": "Observation"})));
        let sys: DataScope = "user/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory"
            .parse()
            .unwrap();
        assert!(sys.admits(&obs("laboratory")));
        let code: DataScope = "user/ServiceRequest.r?code=http://loinc.org|718-7"
            .parse()
            .unwrap();
        assert!(code.admits(
            &json!({"code": {"coding": [{"system": "http://loinc.org", "code": "718-7"}]}})
        ));
    }

    #[test]
    fn describes_scopes_in_plain_words() {
        let s: DataScope = "user/Observation.rs?category=laboratory".parse().unwrap();
        assert_eq!(
            s.describe(),
            "read and search Observation records with category laboratory that the signed-in practitioner may see (their hospital's, or another's with the patient's consent or a consultation)"
        );
        assert_eq!(
            "purpose=payment".parse::<ScopeEntry>().unwrap().describe(),
            "only for payment and insurance claims (purpose of use HPAYMT)"
        );
        let grant = RecordGrant::from_grants([
            "kv",
            "records:system/Patient.cru",
            "records:purpose=treatment",
            "records:nonsense",
        ]);
        assert_eq!(grant.scopes.len(), 1);
        assert!(!grant.consultations);
        assert!(RecordGrant::from_grants(["records:consultation"]).consultations);
        assert!(
            "consultation"
                .parse::<ScopeEntry>()
                .unwrap()
                .describe()
                .contains("consultations between")
        );
        assert_eq!(grant.purposes, [Purpose::Treatment].into());
        assert!(check_request(&["system/Patient.cru".into()]).is_err());
        assert!(check_request(&["system/Patient.cru".into(), "purpose=TREAT".into()]).is_ok());
    }
}
