//! The operator console: one page and its scripts, embedded in the binary
//! and served by admin-api without a token (they carry no data). The page
//! asks for an admin token and calls the admin JSON API with it, so every
//! action has the API's checks and audit (docs/OPERATIONS.md#the-console).

use lambda_http::http::{HeaderValue, StatusCode, header};
use lambda_http::{Body, Response};

/// One embedded file.
#[derive(Debug, Clone, Copy)]
pub struct ConsoleAsset {
    pub content_type: &'static str,
    pub body: &'static str,
}

/// Only this origin's scripts, styles and API; no frames, no forms posted
/// elsewhere, no referrer.
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'";

/// The asset at `path` below `/v1/admin/console` (`""` is the page).
pub fn console_asset(path: &str) -> Option<ConsoleAsset> {
    let (content_type, body) = match path {
        "" => (
            "text/html; charset=utf-8",
            include_str!("console/index.html"),
        ),
        "/console.js" => (
            "text/javascript; charset=utf-8",
            include_str!("console/console.js"),
        ),
        "/console.css" => (
            "text/css; charset=utf-8",
            include_str!("console/console.css"),
        ),
        "/uplot.js" => (
            "text/javascript; charset=utf-8",
            include_str!("console/vendor/uplot.js"),
        ),
        "/uplot.css" => (
            "text/css; charset=utf-8",
            include_str!("console/vendor/uplot.css"),
        ),
        _ => return None,
    };
    Some(ConsoleAsset { content_type, body })
}

impl ConsoleAsset {
    pub fn response(&self) -> Response<Body> {
        let mut response = Response::new(Body::from(self.body));
        *response.status_mut() = StatusCode::OK;
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(self.content_type),
        );
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(POLICY),
        );
        headers.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        headers.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        response
    }
}
