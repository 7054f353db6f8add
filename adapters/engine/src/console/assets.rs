//! The page's files, compiled in: nothing to build or fetch at run time.

use axum::extract::{Path, Request};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};

use super::json_error;

/// The files under `/assets/`, with their content types: the page's ES modules (`app.js` imports
/// the rest) and its style sheet.
const ASSETS: &[(&str, &str, &str)] = &[
    ("app.js", JS, include_str!("assets/app.js")),
    ("api.js", JS, include_str!("assets/api.js")),
    ("chart.js", JS, include_str!("assets/chart.js")),
    ("dom.js", JS, include_str!("assets/dom.js")),
    ("events.js", JS, include_str!("assets/events.js")),
    ("fleet.js", JS, include_str!("assets/fleet.js")),
    ("format.js", JS, include_str!("assets/format.js")),
    ("frame.js", JS, include_str!("assets/frame.js")),
    ("instance.js", JS, include_str!("assets/instance.js")),
    ("send.js", JS, include_str!("assets/send.js")),
    ("style.css", "text/css; charset=utf-8", include_str!("assets/style.css")),
];

/// The content type of the page's modules.
const JS: &str = "text/javascript; charset=utf-8";

/// `GET /`: the dashboard.
pub(super) async fn index() -> Html<&'static str> {
    Html(include_str!("assets/index.html"))
}

/// `GET /assets/{name}`.
pub(super) async fn asset(Path(name): Path<String>) -> Response {
    match ASSETS.iter().find(|(n, _, _)| *n == name) {
        Some((_, content_type, body)) => ([(header::CONTENT_TYPE, *content_type)], *body).into_response(),
        None => json_error(StatusCode::NOT_FOUND, "no such file"),
    }
}

/// The headers every answer carries: only the console's own scripts and styles run in its page
/// (so text from the wire cannot become script even if it were ever put into HTML), no other
/// site may frame it, and nothing is cached or sniffed.
pub(super) async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    for (name, value) in [
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; \
             form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::CACHE_CONTROL, "no-store"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}
