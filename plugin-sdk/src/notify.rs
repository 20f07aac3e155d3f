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

/// One stage of a page: who is paged, and how many minutes after the page started.
pub use raw::PageStage;

/// Page people until someone answers: the first stage at once, each later stage when its
/// minutes have passed (escalation), everyone paged so far again every `resend_minutes`
/// (0: never), until [`resolve_page`]. The host keeps the clock, so this goes on while
/// nobody calls the plugin. `key` names the page within this hospital and plugin; paging
/// again with an open page's key replaces it. At most 5 stages; recipients, topic, title,
/// data and link follow [`send`]. Returns how many were paged now.
pub fn page(
    key: &str,
    topic: &str,
    title: &str,
    data: &Value,
    link: Option<&str>,
    stages: &[PageStage],
    resend_minutes: u32,
) -> Result<u32, Error> {
    let message = raw::Message {
        topic: topic.to_owned(),
        title: title.to_owned(),
        data: data.to_string(),
        link: link.map(str::to_owned),
    };
    Ok(raw::page(key, &message, stages, resend_minutes)?)
}

/// Stop the page `key` (it was answered): no more re-sends or escalation. Whether an open
/// page was resolved.
pub fn resolve_page(key: &str) -> Result<bool, Error> {
    Ok(raw::resolve_page(key)?)
}
