//! Governance as the runtime uses it: submissions, reviews, activations and
//! rollouts with their rules, and the resolution of a (hospital, plugin)
//! call to the one approved, activated, unrevoked version it may run.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::Serialize;
use serde_json::{Map, Value, json};

use super::audit::AuditLog;
use super::bundle::Bundle;
use super::checks::{CheckReport, check_submission};
use super::manifest::{CapabilityRequest, Manifest, compile_schema};
use super::registry::{
    Activation, ActivationChange, Decision, GovernanceError, NewVersion, PluginVersion, Registry,
    ReviewDecision,
};
use super::signing::VendorKey;
use crate::capabilities::Capability;
use crate::capabilities::identity::{CallContext, CallServices, Tier};
use crate::engine::PluginEngine;
use crate::plugins::{LoadedPlugin, prepare_granted};
use crate::records::scopes::RecordGrant;
use crate::sandbox::CallBuilder;
use crate::secrets::{MasterKey, PlatformSigner};

/// How often every node checks whether governance changed elsewhere.
pub const EPOCH_POLL: Duration = Duration::from_millis(200);

/// What a (hospital, plugin) call may run.
#[derive(Clone)]
pub enum Resolution {
    /// The approved, activated version, ready to instantiate.
    Runnable(Arc<LoadedPlugin>),
    /// The hospital has not activated the plugin.
    NotActivated,
    /// Activated, but the version was revoked (or the activation suspended).
    Suspended(String),
}

/// A submission the checks refused.
#[derive(Debug, Serialize)]
pub struct Refused {
    pub message: String,
    pub checks: Option<CheckReport>,
}

/// Why a submission failed.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("the bundle failed its checks")]
    Refused(CheckReport),
    #[error(transparent)]
    Governance(#[from] GovernanceError),
}

/// A ministry rollout: which hospitals get a version.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct RolloutTarget {
    pub tier: Option<Tier>,
    pub province: Option<String>,
    #[serde(default)]
    pub mandatory: bool,
}

/// An activation asked for by a hospital admin or a rollout.
#[derive(Debug, Clone, Default)]
pub struct ActivationRequest {
    pub version_id: String,
    /// Configuration; the manifest's defaults fill what is missing.
    pub config: Option<Value>,
    /// Secrets to seal; `None` keeps the stored ones.
    pub secrets: Option<Map<String, Value>>,
    pub mandatory: bool,
    /// `hospital` or `rollout:<id>`, for the audit trail.
    pub via: String,
}

/// The governance service of one node.
pub struct Governance {
    pub registry: Registry,
    pub audit: AuditLog,
    master: MasterKey,
    signer: PlatformSigner,
    /// Signs checkpoints of the audit chain's head.
    checkpoint_signer: PlatformSigner,
    engine: Arc<PluginEngine>,
    /// version id → linked plugin; a version's code never changes.
    compiled: RwLock<HashMap<String, Arc<LoadedPlugin>>>,
    /// (hospital, plugin) → resolution, valid for `epoch`.
    resolved: RwLock<HashMap<(String, String), Resolution>>,
    epoch: AtomicI64,
    /// Whether activations may leave payments to the built-in sandbox
    /// (`--demo` or `--payment-sandbox` only).
    payment_sandbox: bool,
    /// The node's kv store: activation hooks write where the plugin's
    /// calls read, under the same per-pair serialisation.
    kv: Arc<crate::capabilities::kv::KvStore>,
}

/// Capabilities named in grant strings (`kv`, `records:patient/…`).
pub fn grant_capabilities(grants: &[String]) -> BTreeSet<Capability> {
    grants
        .iter()
        .filter_map(|g| g.split(':').next()?.parse().ok())
        .collect()
}

/// The capability requests of a manifest, as strings.
pub fn requested_strings(manifest_text: &str) -> Vec<String> {
    Manifest::parse_structure(manifest_text)
        .map(|m| {
            m.capabilities
                .iter()
                .flat_map(CapabilityRequest::grant_strings)
                .collect()
        })
        .unwrap_or_default()
}

impl Governance {
    /// The deployment's master key (sealing secrets and ticket contents).
    pub fn master(&self) -> &MasterKey {
        &self.master
    }

    /// Governance over `registry`, sealing secrets and signing decisions with
    /// keys derived from `master`.
    pub async fn new(
        registry: Registry,
        master: MasterKey,
        engine: Arc<PluginEngine>,
    ) -> Result<Self, GovernanceError> {
        let signer = master
            .platform_signer()
            .map_err(|e| GovernanceError::Invalid(e.to_string()))?;
        let checkpoint_signer = master
            .audit_checkpoint_signer()
            .map_err(|e| GovernanceError::Invalid(e.to_string()))?;
        let epoch = registry.epoch().await?;
        let db = registry.db().clone();
        Ok(Self {
            checkpoint_signer,
            audit: AuditLog::new(registry.db().clone()),
            registry,
            master,
            signer,
            engine,
            compiled: RwLock::default(),
            resolved: RwLock::default(),
            epoch: AtomicI64::new(epoch),
            payment_sandbox: false,
            kv: Arc::new(crate::capabilities::kv::KvStore::new(db)),
        })
    }

    /// Let activations that take payments use the built-in sandbox gateway
    /// (development and demo nodes only).
    pub fn allow_payment_sandbox(mut self, allow: bool) -> Self {
        self.payment_sandbox = allow;
        self
    }

    /// Share the node's kv store with activation hooks (a store of its own
    /// otherwise, on the same database).
    pub fn with_kv(mut self, kv: Arc<crate::capabilities::kv::KvStore>) -> Self {
        self.kv = kv;
        self
    }

    /// The key that signs checkpoints of the audit chain.
    pub fn checkpoint_signer(&self) -> &PlatformSigner {
        &self.checkpoint_signer
    }

    /// Sign a checkpoint of the audit chain's head now.
    pub async fn checkpoint_audit(
        &self,
    ) -> Result<super::audit::Checkpoint, super::audit::AuditError> {
        self.audit.checkpoint(&self.checkpoint_signer).await
    }

    /// Verify the audit chain and its stored checkpoints.
    pub async fn verify_audit(
        &self,
    ) -> Result<super::audit::VerifyReport, super::audit::AuditError> {
        self.audit
            .verify_with(&super::audit::CheckpointCheck {
                public_key: Some(self.checkpoint_signer.public_key().to_vec()),
                exported: Vec::new(),
            })
            .await
    }

    /// The checkpoints as an operator stores them elsewhere, with the
    /// public key that verifies them.
    pub async fn export_checkpoints(&self) -> Result<Value, super::audit::AuditError> {
        Ok(super::audit::export_checkpoints(
            &self.checkpoint_signer,
            &self.audit.checkpoints().await?,
        ))
    }

    /// Every `checkpoint_every`, sign a checkpoint of the audit chain; every
    /// few seconds, write the aggregates of refusal windows that ended.
    pub fn spawn_audit_tasks(self: &Arc<Self>, checkpoint_every: Duration) {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let flush_every = Duration::from_secs(5);
            let mut since_checkpoint = Duration::ZERO;
            loop {
                tokio::time::sleep(flush_every).await;
                let Some(g) = weak.upgrade() else { break };
                if let Err(e) = g.audit.flush_refusals(false).await {
                    tracing::warn!(error = %e, "writing aggregated refusals failed");
                }
                since_checkpoint += flush_every;
                if since_checkpoint >= checkpoint_every {
                    since_checkpoint = Duration::ZERO;
                    if let Err(e) = g.checkpoint_audit().await {
                        tracing::error!(error = %e, "audit checkpoint failed");
                    }
                }
            }
        });
    }

    /// The platform key that signs review decisions.
    pub fn signer(&self) -> &PlatformSigner {
        &self.signer
    }

    /// Watch the governance epoch and drop resolutions when it moves, so a
    /// change made on another node (a revocation) applies here within
    /// [`EPOCH_POLL`].
    pub fn spawn_epoch_watcher(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(EPOCH_POLL);
            loop {
                tick.tick().await;
                let Some(gov) = weak.upgrade() else { return };
                match gov.registry.epoch().await {
                    Ok(epoch) if epoch != gov.epoch.load(Ordering::Acquire) => {
                        gov.invalidate(epoch)
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "cannot read the governance epoch"),
                }
            }
        })
    }

    fn invalidate(&self, epoch: i64) {
        self.resolved
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        self.epoch.store(epoch, Ordering::Release);
    }

    /// After a change on this node: apply it at once.
    async fn changed(&self) {
        let epoch = self
            .registry
            .epoch()
            .await
            .unwrap_or_else(|_| self.epoch.load(Ordering::Acquire) + 1);
        self.invalidate(epoch);
    }

    /// What `plugin_id` may run at `hospital_id` now.
    pub async fn resolve(
        &self,
        hospital_id: &str,
        plugin_id: &str,
    ) -> Result<Resolution, GovernanceError> {
        let key = (hospital_id.to_owned(), plugin_id.to_owned());
        if let Some(r) = self
            .resolved
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            return Ok(r.clone());
        }
        let epoch = self.epoch.load(Ordering::Acquire);
        let resolution = match self.registry.runnable(hospital_id, plugin_id).await? {
            Some((version_id, granted)) => {
                Resolution::Runnable(self.linked(&version_id, &granted).await?)
            }
            None => match self.registry.activation(hospital_id, plugin_id).await? {
                Some(a) => Resolution::Suspended(format!(
                    "`{plugin_id}` {} is suspended at `{hospital_id}`: the version was revoked by the ministry",
                    a.version
                )),
                None => Resolution::NotActivated,
            },
        };
        // Cache only if nothing changed while resolving.
        if self.epoch.load(Ordering::Acquire) == epoch {
            self.resolved
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .insert(key, resolution.clone());
        }
        Ok(resolution)
    }

    async fn linked(
        &self,
        version_id: &str,
        granted: &[String],
    ) -> Result<Arc<LoadedPlugin>, GovernanceError> {
        if let Some(p) = self
            .compiled
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(version_id)
        {
            return Ok(p.clone());
        }
        let version = self
            .registry
            .get_version(version_id, requested_strings)
            .await?;
        let component = self.registry.component(version_id).await?;
        let manifest = Manifest::parse_structure(&version.manifest)
            .map_err(|e| GovernanceError::Invalid(e.to_string()))?;
        let records = RecordGrant::from_grants(granted.iter().map(String::as_str));
        let national_ids = granted
            .iter()
            .any(|g| g == crate::capabilities::NATIONAL_IDS_GRANT);
        let granted = grant_capabilities(granted);
        let engine = self.engine.clone();
        let plugin = tokio::task::spawn_blocking(move || {
            prepare_granted(&engine, manifest, &component, granted, records).map(|mut p| {
                p.national_ids = national_ids;
                p
            })
        })
        .await
        .map_err(|e| GovernanceError::Invalid(format!("loader task failed: {e}")))?
        .map_err(|e| GovernanceError::Invalid(format!("approved version cannot be loaded: {e}")))?;
        let plugin = Arc::new(plugin);
        self.compiled
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(version_id.to_owned(), plugin.clone());
        Ok(plugin)
    }

    /// Check a bundle and, when every check passes, store it for review.
    pub async fn submit(
        &self,
        actor: &str,
        vendor_id: &str,
        bundle: Bundle,
    ) -> Result<(PluginVersion, CheckReport), SubmitError> {
        let keys: Vec<VendorKey> = self
            .registry
            .vendor_keys(vendor_id)
            .await?
            .into_iter()
            .map(|(key_id, public_key)| VendorKey {
                vendor_id: vendor_id.to_owned(),
                key_id,
                public_key,
            })
            .collect();
        let engine = self.engine.clone();
        let (bundle, report) = tokio::task::spawn_blocking(move || {
            let report = check_submission(&engine, &bundle, &keys);
            (bundle, report)
        })
        .await
        .map_err(|e| GovernanceError::Invalid(format!("check task failed: {e}")))?;
        let manifest = Manifest::parse_structure(&bundle.manifest).ok();
        let vendor_matches = manifest.as_ref().is_some_and(|m| m.vendor == vendor_id);
        if !report.passed || !vendor_matches {
            let mut report = report;
            if manifest.is_some() && !vendor_matches {
                report.passed = false;
                report.checks.push(super::checks::Check {
                    name: "vendor".into(),
                    passed: false,
                    skipped: false,
                    detail: format!(
                        "the manifest names another vendor than the submitter's (`{vendor_id}`)"
                    ),
                });
            }
            self.audit
                .append_refusal(super::audit::AuditEvent {
                    actor: actor.into(),
                    action: "plugin.submission_refused".into(),
                    target: format!("vendor:{vendor_id}"),
                    hospital_id: None,
                    details: json!({ "failed": report.failures().map(|c| c.name.clone()).collect::<Vec<_>>() }),
                })
                .await
                .map_err(GovernanceError::from)?;
            return Err(SubmitError::Refused(report));
        }
        let Some(manifest) = manifest else {
            return Err(SubmitError::Refused(report));
        };
        let new = NewVersion {
            plugin_id: manifest.id.clone(),
            version: manifest.version.clone(),
            vendor_id: vendor_id.to_owned(),
            component_digest: crate::engine::digest(&bundle.component),
            requested: requested_strings(&bundle.manifest),
            manifest: bundle.manifest.clone(),
            component: bundle.component.clone(),
            signature: serde_json::to_value(&bundle.signature).unwrap_or(Value::Null),
            checks: serde_json::to_value(&report).unwrap_or(Value::Null),
        };
        let version = self.registry.submit(actor, new).await?;
        self.changed().await;
        Ok((version, report))
    }

    /// A version with its requested capabilities filled in.
    pub async fn version(&self, id: &str) -> Result<PluginVersion, GovernanceError> {
        self.registry.get_version(id, requested_strings).await
    }

    /// Approve, reject or revoke `version_id`.
    pub async fn decide(
        &self,
        reviewer: &str,
        version_id: &str,
        decision: Decision,
    ) -> Result<ReviewDecision, GovernanceError> {
        decision.check_text()?;
        let version = self.version(version_id).await?;
        let decided = self
            .registry
            .decide(&self.signer, reviewer, &version, decision)
            .await?;
        self.changed().await;
        Ok(decided)
    }

    /// Activate an approved version at a hospital: the config is completed
    /// with the manifest's defaults and validated against its schema; the
    /// plugin's activation hook must accept it; secrets are sealed at rest.
    pub async fn activate(
        &self,
        actor: &str,
        ctx: CallContext,
        request: ActivationRequest,
    ) -> Result<Activation, GovernanceError> {
        let ActivationRequest {
            version_id,
            config,
            secrets,
            mandatory,
            via,
        } = request;
        let version = self.version(&version_id).await?;
        let manifest = Manifest::parse_structure(&version.manifest)
            .map_err(|e| GovernanceError::Invalid(e.to_string()))?;
        let hospital_id = ctx.hospital.id.clone();
        let config = complete_config(&manifest, config)?;
        // Secrets given now replace the stored ones; otherwise the stored
        // ones are handed to the hook again (an upgrade keeps them).
        let sealed_new = match &secrets {
            Some(s) => Some(
                self.master
                    .seal(
                        &secret_context(&hospital_id, &version.plugin_id),
                        Value::Object(s.clone()).to_string().as_bytes(),
                    )
                    .map_err(|e| GovernanceError::Invalid(e.to_string()))?,
            ),
            None => None,
        };
        let secrets_for_hook = match secrets {
            Some(s) => Value::Object(s),
            None => {
                self.stored_secrets(&hospital_id, &version.plugin_id)
                    .await?
            }
        };
        // Payment terms are the host's, not the plugin's: refuse bad ones now
        // rather than at the first payment.
        // A module granted `payment` must name a real gateway unless this
        // node offers the sandbox: never fall back to it silently.
        let takes_payments = version
            .granted
            .as_deref()
            .is_some_and(|g| grant_capabilities(g).contains(&Capability::Payment));
        if config.get("payment").is_some() || takes_payments {
            let terms = crate::payment::PaymentTerms::from_activation(&config, &secrets_for_hook)
                .map_err(|e| GovernanceError::Invalid(e.to_string()))?;
            if takes_payments
                && terms.gateway == crate::payment::gateway::GatewayKind::Sandbox
                && !self.payment_sandbox
            {
                return Err(GovernanceError::Invalid(format!(
                    "`{}`: {}",
                    version.plugin_id,
                    crate::payment::NO_GATEWAY
                )));
            }
        }
        if version.state == super::registry::VersionState::Approved {
            let granted = version.granted.clone().unwrap_or_default();
            let plugin = self.linked(&version.id, &granted).await?;
            self.run_activation_hook(&plugin, ctx, &config, secrets_for_hook)
                .await?;
        }
        let activation = self
            .registry
            .activate(
                actor,
                ActivationChange {
                    hospital_id: &hospital_id,
                    version: &version,
                    config: &config,
                    sealed_secrets: sealed_new,
                    mandatory,
                    via: &via,
                },
            )
            .await?;
        self.changed().await;
        Ok(activation)
    }

    /// The configuration and opened secrets of the activation of
    /// `plugin_id` at `hospital_id` (payments read their gateway and terms
    /// here), or `None` when it is not activated there.
    pub async fn activation_settings(
        &self,
        hospital_id: &str,
        plugin_id: &str,
    ) -> Result<Option<(Value, Value)>, GovernanceError> {
        let Some(activation) = self.registry.activation(hospital_id, plugin_id).await? else {
            return Ok(None);
        };
        let secrets = self.stored_secrets(hospital_id, plugin_id).await?;
        Ok(Some((activation.config, secrets)))
    }

    async fn stored_secrets(
        &self,
        hospital_id: &str,
        plugin_id: &str,
    ) -> Result<Value, GovernanceError> {
        let Some(sealed) = self.registry.sealed_secrets(hospital_id, plugin_id).await? else {
            return Ok(Value::Object(Map::new()));
        };
        let plain = self
            .master
            .open(&secret_context(hospital_id, plugin_id), &sealed)
            .map_err(|e| GovernanceError::Invalid(e.to_string()))?;
        Ok(serde_json::from_slice(&plain).unwrap_or(Value::Object(Map::new())))
    }

    async fn run_activation_hook(
        &self,
        plugin: &LoadedPlugin,
        ctx: CallContext,
        config: &Value,
        secrets: Value,
    ) -> Result<(), GovernanceError> {
        // Hooks run under the default limits, not the operator's call limits:
        // a decision (ADR 0014), so a tight per-request deadline never makes
        // a module impossible to activate.
        let limits = crate::config::Limits::default();
        let mut document = config.clone();
        if let Value::Object(map) = &mut document {
            map.insert("secrets".into(), secrets);
        }
        CallBuilder::new(plugin, ctx.hospital, ctx.directory, &self.kv, &limits)
            .principal(ctx.principal)
            .request_id(ctx.request_id)
            .video(ctx.video)
            .activate(document.to_string())
            .await
            .map_err(|e| {
                GovernanceError::Invalid(format!("the plugin's activation hook failed: {e}"))
            })?
            .map_err(|message| {
                GovernanceError::Invalid(format!(
                    "the plugin refused this configuration: {message}"
                ))
            })
    }

    /// Activate a version at every hospital matching `target` with its
    /// default configuration (a national rollout).
    pub async fn rollout(
        &self,
        actor: &str,
        version_id: &str,
        target: &RolloutTarget,
        directory: &CallServices,
        principal: Option<crate::identity::Principal>,
    ) -> Result<Vec<Activation>, GovernanceError> {
        let rollout_id = uuid::Uuid::now_v7().to_string();
        let via = format!("rollout:{rollout_id}");
        let mut done = Vec::new();
        for hospital in directory.hospitals() {
            if target.tier.is_some_and(|t| t != hospital.tier)
                || target
                    .province
                    .as_ref()
                    .is_some_and(|p| *p != hospital.province)
            {
                continue;
            }
            let ctx = CallContext {
                hospital,
                plugin_id: String::new(),
                request_id: via.clone(),
                principal: principal.clone(),
                started: std::time::Instant::now(),
                directory: directory.clone(),
                video: None,
            };
            let request = ActivationRequest {
                version_id: version_id.to_owned(),
                config: None,
                secrets: None,
                mandatory: target.mandatory,
                via: via.clone(),
            };
            done.push(self.activate(actor, ctx, request).await?);
        }
        Ok(done)
    }

    /// Deactivate, unless the module is mandatory.
    pub async fn deactivate(
        &self,
        actor: &str,
        hospital_id: &str,
        plugin_id: &str,
    ) -> Result<(), GovernanceError> {
        self.registry
            .deactivate(actor, hospital_id, plugin_id)
            .await?;
        self.changed().await;
        Ok(())
    }
}

fn secret_context(hospital_id: &str, plugin_id: &str) -> String {
    format!("activation-secrets/{hospital_id}/{plugin_id}")
}

/// Fill defaults from the manifest and validate against its schema.
fn complete_config(manifest: &Manifest, config: Option<Value>) -> Result<Value, GovernanceError> {
    let mut merged = manifest
        .config
        .defaults
        .clone()
        .unwrap_or_else(|| Value::Object(Map::new()));
    match config {
        None | Some(Value::Null) => {}
        Some(Value::Object(given)) => {
            if let Value::Object(base) = &mut merged {
                base.extend(given);
            } else {
                merged = Value::Object(given);
            }
        }
        Some(_) => {
            return Err(GovernanceError::Invalid(
                "the configuration must be a JSON object".into(),
            ));
        }
    }
    if let Some(schema) = &manifest.config.schema {
        let validator = compile_schema(schema).map_err(GovernanceError::Invalid)?;
        let problems: Vec<String> = validator
            .iter_errors(&merged)
            .map(|e| {
                let at = e.instance_path().to_string();
                if at.is_empty() {
                    e.to_string()
                } else {
                    format!("{at}: {e}")
                }
            })
            .collect();
        if !problems.is_empty() {
            return Err(GovernanceError::Invalid(format!(
                "the configuration does not match the plugin's schema: {}",
                problems.join("; ")
            )));
        }
    }
    Ok(merged)
}

impl crate::payment::ActivationSettings for Governance {
    fn activation_settings<'a>(
        &'a self,
        hospital: &'a str,
        plugin: &'a str,
    ) -> futures::future::BoxFuture<'a, Result<Option<(Value, Value)>, String>> {
        Box::pin(async move {
            Governance::activation_settings(self, hospital, plugin)
                .await
                .map_err(|e| e.to_string())
        })
    }
}
