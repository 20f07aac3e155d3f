//! `notify`: a plugin tells named users about a step that concerns them.
//! Only during a call made by someone (a signed-in user or a service of the
//! hospital), to known users, with validated, size-limited messages; stored
//! with the plugin, hospital and caller that sent them.

use std::collections::BTreeSet;

use tracing::instrument;

use crate::bindings::WitError;
use crate::bindings::vtelehealth::platform::notify::{self as wit, Host};
use crate::capabilities::Capability;
use crate::notify::{MAX_RECIPIENTS, NewMessage, NotifyError};
use crate::sandbox::CallState;

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
    async fn send_impl(
        &self,
        recipients: Vec<String>,
        message: wit::Message,
    ) -> Result<u32, WitError> {
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
        let message = NewMessage {
            topic: message.topic,
            title: message.title,
            data: message.data,
            link: message.link,
        };
        Ok(service
            .send(
                &self.ctx.hospital.id,
                &self.ctx.plugin_id,
                self.ctx.directory.person(sender).as_str(),
                &recipients,
                &message,
            )
            .await?)
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
}
