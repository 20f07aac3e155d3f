//! The consultation room page (`admin-ui/room.html`) and its script, built
//! into the binary so a deployment needs no static file directory.

use std::sync::Arc;

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

use crate::Runtime;

const ROOM_HTML: &str = include_str!("../../../admin-ui/room.html");
const ROOM_JS: &str = include_str!("../../../admin-ui/room.js");

/// `GET /rooms/{room}` and `GET /ui/room.js`.
pub fn routes() -> Router<Arc<Runtime>> {
    Router::new()
        .route("/rooms/{room}", get(room_page))
        .route("/ui/room.js", get(room_script))
}

async fn room_page() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            // The page reads a token from its URL: keep it out of referrers.
            (header::REFERRER_POLICY, "no-referrer"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        ROOM_HTML,
    )
}

async fn room_script() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        ROOM_JS,
    )
}
