//! The network register: facilities (hospitals, health centres, commune
//! stations) and vendors, kept by the ministry (docs/operations.md).

use std::sync::Arc;

use axum::Router;

use crate::Runtime;

pub fn routes() -> Router<Arc<Runtime>> {
    Router::new()
}
