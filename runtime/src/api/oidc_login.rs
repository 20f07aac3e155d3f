//! Signing in through an external OpenID Connect provider (VNeID, a
//! hospital's own identity provider): the platform as relying party.

use std::sync::Arc;

use axum::Router;

use crate::Runtime;

pub fn routes() -> Router<Arc<Runtime>> {
    Router::new()
}
