//! The embedded web UI and the OpenAPI document: the files under `admin/` are compiled into the
//! binary with `include_bytes!` (no runtime file access, no Node build step), served at `/`
//! (`admin/index.html`) and `/assets/*`, with a Content-Security-Policy that allows only the
//! UI's own scripts.
//!
//! Why a table of `include_bytes!` and not rust-embed/include_dir: the UI is a handful of files,
//! so a list that names them costs a line per file and no dependency (cargo rebuilds when one
//! changes, since `include_bytes!` files are tracked).

use poem::http::StatusCode;
use poem::web::Path;
use poem::{IntoResponse, Response, handler};

/// One embedded file: path below `admin/assets/`, media type, bytes.
struct Asset {
    path: &'static str,
    media_type: &'static str,
    bytes: &'static [u8],
}

macro_rules! asset {
    ($path:literal, $media:literal) => {
        Asset {
            path: $path,
            media_type: $media,
            bytes: include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/admin/assets/", $path)),
        }
    };
}

/// Every file under `admin/assets/`.
const ASSETS: &[Asset] = &[
    asset!("app.js", "text/javascript; charset=utf-8"),
    asset!("api.js", "text/javascript; charset=utf-8"),
    asset!("pages.js", "text/javascript; charset=utf-8"),
    asset!("dom.js", "text/javascript; charset=utf-8"),
    asset!("style.css", "text/css; charset=utf-8"),
    asset!("favicon.svg", "image/svg+xml"),
    asset!("vendor/chart.umd.min.js", "text/javascript; charset=utf-8"),
    asset!("vendor/chart.js-LICENSE.md", "text/plain; charset=utf-8"),
];

/// The UI page.
const INDEX: &[u8] = include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/admin/index.html"));

/// The OpenAPI 3.1 document of the admin API (hand-written beside admin/API.md).
const OPENAPI: &[u8] = include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/admin/openapi.json"));

/// Scripts and styles only from this server; no framing (clickjacking), no plugins.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
                   img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; \
                   object-src 'none'; base-uri 'none'; form-action 'self'";

fn file(media_type: &str, bytes: &'static [u8]) -> Response {
    Response::builder()
        .content_type(media_type)
        .header("cache-control", "no-cache")
        .header("x-content-type-options", "nosniff")
        .header("x-frame-options", "DENY")
        .header("referrer-policy", "no-referrer")
        .header("content-security-policy", CSP)
        .body(bytes)
}

/// `GET /` → the UI (public: it shows the login form when `/api/session` answers 401).
#[handler]
pub async fn index() -> Response {
    file("text/html; charset=utf-8", INDEX)
}

/// `GET /assets/{path}` → an embedded file, 404 otherwise.
#[handler]
pub async fn asset(Path(path): Path<String>) -> Response {
    match ASSETS.iter().find(|a| a.path == path) {
        Some(a) => file(a.media_type, a.bytes),
        None => super::AdminError::NotFound(format!("no asset {path:?}")).into_response(),
    }
}

/// `GET /api/openapi.json` → the OpenAPI document.
#[handler]
pub async fn openapi() -> Response {
    Response::builder()
        .status(StatusCode::OK)
        .content_type("application/json")
        .body(OPENAPI)
}
