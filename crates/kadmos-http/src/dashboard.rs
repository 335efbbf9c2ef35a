//! `GET /ui/`: the daemon's dashboard, a page of plain HTML, CSS and JavaScript compiled into
//! the binary (no build step, no files to install). It reads `/daemon/routing-table`,
//! `/daemon/stats` and `/daemon/history` every few seconds and draws them in SVG; its listen
//! box opens the gateway's `/key/{h}/listen` as Server-Sent Events.

use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};

const PAGE: &str = include_str!("dashboard/index.html");
const SCRIPT: &str = include_str!("dashboard/app.js");
const STYLE: &str = include_str!("dashboard/style.css");

pub(crate) async fn redirect() -> Redirect {
    Redirect::permanent("/ui/")
}

pub(crate) async fn page() -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], PAGE).into_response()
}

pub(crate) async fn asset(Path(file): Path<String>) -> Response {
    match file.as_str() {
        "app.js" => ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], SCRIPT).into_response(),
        "style.css" => ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLE).into_response(),
        "index.html" => page().await,
        _ => (StatusCode::NOT_FOUND, "no such file\n").into_response(),
    }
}
