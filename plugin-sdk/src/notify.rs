//! Notifications to people (WIT interface `notify`; list `"notify"` in the manifest). The
//! recipients see them at `/api/v1/me/notifications`, pushed as they happen on
//! `/api/v1/me/notifications/stream`.

use serde_json::Value;

use crate::Error;
use crate::bindings::vtelehealth::platform::notify as raw;

/// Send a notification to users named by subject (at most 100, each a known user), during a
/// call made by a signed-in user or a service. `topic`: a short machine name such as
/// `consultation.accepted`; `title`: one line for people; `data`: a small JSON value (at
/// most 4 KiB) for the plugin's pages; `link`: a path of this plugin, e.g. `/orders/42`.
/// Returns how many were notified.
pub fn send(
    recipients: &[String],
    topic: &str,
    title: &str,
    data: &Value,
    link: Option<&str>,
) -> Result<u32, Error> {
    let message = raw::Message {
        topic: topic.to_owned(),
        title: title.to_owned(),
        data: data.to_string(),
        link: link.map(str::to_owned),
    };
    Ok(raw::send(recipients, &message)?)
}
