//! `notify`: a plugin tells named users about a step that concerns them.
//! Only during a call made by someone (a signed-in user or a service of the
//! hospital), to known users, with validated, size-limited messages; stored
//! with the plugin, hospital and caller that sent them. Pages carry the same
//! checks for every stage's recipients, once, when the plugin pages.

use std::collections::BTreeSet;

use tracing::instrument;

use super::CallState;
use crate::bindings::WitError;
use crate::bindings::vtelehealth::platform::notify::{self as wit, Host};
use crate::capabilities::Capability;
use crate::notify::{MAX_PAGE_STAGES, MAX_RECIPIENTS, NewMessage, NewPage, NotifyError, PageStage};

impl From<NotifyError> for WitError {
    fn from(e: NotifyError) -> Self {
        match e {
            NotifyError::Invalid(m) => WitError::Invalid(m),
            NotifyError::Database(e) => {
                tracing::error!(error = %e, "notify capability failed");
                WitError::Unavailable("notifications storage unavailable".into())
            }
        }
    }
}

impl CallState {
    /// The grant, the caller (stored as the sender) and the service.
    fn notify_ready(
        &self,
    ) -> Result<(String, std::sync::Arc<crate::notify::Notifications>), WitError> {
        self.require(Capability::Notify)
            .map_err(|e| WitError::Denied(e.to_string()))?;
        let sender = self.ctx.principal.as_ref().ok_or_else(|| {
            WitError::Denied(
                "notifications are sent only during a call made by a signed-in user or a service"
                    .into(),
            )
        })?;
        let service = self
            .ctx
            .directory
            .notifications()
            .ok_or_else(|| WitError::Unavailable("no notifications on this node".into()))?;
        Ok((
            self.ctx.directory.person(sender).into_string(),
            service.clone(),
        ))
    }

    /// 1 to [`MAX_RECIPIENTS`] distinct recipients, each a known user.
    async fn known_recipients(&self, recipients: &[String]) -> Result<(), WitError> {
        let unique: BTreeSet<&str> = recipients.iter().map(String::as_str).collect();
        if unique.is_empty() {
            return Err(WitError::Invalid("name at least one recipient".into()));
        }
        if unique.len() > MAX_RECIPIENTS {
            return Err(WitError::Invalid(format!(
                "{} recipients; at most {MAX_RECIPIENTS}",
                unique.len()
            )));
        }
        for r in &unique {
            let known = self.ctx.directory.user_exists(r).await.map_err(|e| {
                tracing::error!(error = %e, "looking up a notification's recipient");
                WitError::Unavailable("the people directory is unavailable".into())
            })?;
            if !known {
                return Err(WitError::Invalid(format!(
                    "unknown recipient `{}`",
                    r.chars().take(80).collect::<String>()
                )));
            }
        }
        Ok(())
    }

    async fn send_impl(
        &self,
        recipients: Vec<String>,
        message: wit::Message,
    ) -> Result<u32, WitError> {
        let (sender, service) = self.notify_ready()?;
        self.known_recipients(&recipients).await?;
        Ok(service
            .send(
                &self.ctx.hospital.id,
                &self.ctx.plugin_id,
                &sender,
                &recipients,
                &message_of(message),
            )
            .await?)
    }

    async fn page_impl(
        &self,
        key: String,
        message: wit::Message,
        stages: Vec<wit::PageStage>,
        resend_minutes: u32,
    ) -> Result<u32, WitError> {
        let (sender, service) = self.notify_ready()?;
        if stages.is_empty() || stages.len() > MAX_PAGE_STAGES {
            return Err(WitError::Invalid(format!(
                "a page has 1 to {MAX_PAGE_STAGES} stages"
            )));
        }
        for stage in &stages {
            self.known_recipients(&stage.recipients).await?;
        }
        let page = NewPage {
            key,
            message: message_of(message),
            stages: stages
                .into_iter()
                .map(|s| PageStage {
                    recipients: s.recipients,
                    after_ms: i64::from(s.after_minutes) * 60_000,
                })
                .collect(),
            resend_ms: i64::from(resend_minutes) * 60_000,
        };
        Ok(service
            .page(&self.ctx.hospital.id, &self.ctx.plugin_id, &sender, &page)
            .await?)
    }

    async fn resolve_page_impl(&self, key: String) -> Result<bool, WitError> {
        let (_, service) = self.notify_ready()?;
        Ok(service
            .resolve_page(&self.ctx.hospital.id, &self.ctx.plugin_id, &key)
            .await?)
    }
}

fn message_of(m: wit::Message) -> NewMessage {
    NewMessage {
        topic: m.topic,
        title: m.title,
        data: m.data,
        link: m.link,
    }
}

impl Host for CallState {
    #[instrument(level = "debug", skip_all, fields(plugin = %self.ctx.plugin_id, recipients = recipients.len()))]
    async fn send(
        &mut self,
        recipients: Vec<String>,
        message: wit::Message,
    ) -> wasmtime::Result<Result<u32, WitError>> {
        Ok(self.send_impl(recipients, message).await)
    }

    #[instrument(level = "debug", skip_all, fields(plugin = %self.ctx.plugin_id, stages = stages.len()))]
    async fn page(
        &mut self,
        key: String,
        message: wit::Message,
        stages: Vec<wit::PageStage>,
        resend_minutes: u32,
    ) -> wasmtime::Result<Result<u32, WitError>> {
        Ok(self.page_impl(key, message, stages, resend_minutes).await)
    }

    #[instrument(level = "debug", skip_all, fields(plugin = %self.ctx.plugin_id))]
    async fn resolve_page(&mut self, key: String) -> wasmtime::Result<Result<bool, WitError>> {
        Ok(self.resolve_page_impl(key).await)
    }
}
