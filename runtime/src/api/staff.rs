//! A hospital's staff and service clients, invitations, and the
//! practitioner directory (docs/identity.md).

use std::sync::Arc;

use axum::Router;

use crate::Runtime;

pub fn routes() -> Router<Arc<Runtime>> {
    Router::new()
}
