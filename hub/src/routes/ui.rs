//! The web dashboard at `/ui/`: static files compiled into the binary (no Node at build or
//! run time), served with a strict Content-Security-Policy. The pages hold no data; they
//! call the query API with the visitor's token, so serving them needs none.

use crate::error::HubError;
use actix_web::http::header;
use actix_web::web::Path;
use actix_web::{HttpRequest, HttpResponse};
use sha2::Digest;
use std::sync::OnceLock;

/// Scripts and styles only from the hub itself, no inline code, no framing, API calls only to
/// the hub: an event payload that slipped into the page as markup still could not run.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
    style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; \
    form-action 'self'; frame-ancestors 'none'";

/// One embedded file.
pub struct Asset {
    pub name: &'static str,
    pub content_type: &'static str,
    pub body: &'static [u8],
}

macro_rules! assets {
    ($($name:literal => ($path:literal, $type:literal)),* $(,)?) => {
        /// Every file of the dashboard; `vendor/` files are copies of the locked npm package's
        /// (ui/vendor.sh checks them).
        pub const ASSETS: &[Asset] = &[$(Asset {
            name: $name,
            content_type: $type,
            body: include_bytes!(concat!("../../../ui/", $path)),
        }),*];
    };
}

assets! {
    "index.html" => ("src/index.html", "text/html; charset=utf-8"),
    "app.js" => ("src/app.js", "text/javascript; charset=utf-8"),
    "api.js" => ("src/api.js", "text/javascript; charset=utf-8"),
    "dom.js" => ("src/dom.js", "text/javascript; charset=utf-8"),
    "overview.js" => ("src/overview.js", "text/javascript; charset=utf-8"),
    "events.js" => ("src/events.js", "text/javascript; charset=utf-8"),
    "findings.js" => ("src/findings.js", "text/javascript; charset=utf-8"),
    "consumers.js" => ("src/consumers.js", "text/javascript; charset=utf-8"),
    "clusters.js" => ("src/clusters.js", "text/javascript; charset=utf-8"),
    "alerts.js" => ("src/alerts.js", "text/javascript; charset=utf-8"),
    "suppressions.js" => ("src/suppressions.js", "text/javascript; charset=utf-8"),
    "style.css" => ("src/style.css", "text/css; charset=utf-8"),
    "favicon.svg" => ("src/favicon.svg", "image/svg+xml"),
    "uPlot.esm.js" => ("vendor/uPlot.esm.js", "text/javascript; charset=utf-8"),
    "uPlot.min.css" => ("vendor/uPlot.min.css", "text/css; charset=utf-8"),
}

/// Entity tags of the assets, in `ASSETS` order: a digest of the content, so a browser
/// revalidates cheaply and never keeps a file of an older hub.
fn etags() -> &'static [String] {
    static ETAGS: OnceLock<Vec<String>> = OnceLock::new();
    ETAGS.get_or_init(|| {
        ASSETS
            .iter()
            .map(|a| {
                let digest = sha2::Sha256::digest(a.body);
                let hex: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
                format!("\"{hex}\"")
            })
            .collect()
    })
}

/// `GET /ui`: the dashboard lives under `/ui/`, so relative links resolve there.
pub async fn redirect() -> HttpResponse {
    HttpResponse::PermanentRedirect()
        .insert_header((header::LOCATION, "/ui/"))
        .finish()
}

/// `GET /`: a browser pointed at the hub lands on the dashboard.
pub async fn root() -> HttpResponse {
    HttpResponse::Found()
        .insert_header((header::LOCATION, "/ui/"))
        .finish()
}

/// `GET /ui/`
pub async fn index(request: HttpRequest) -> Result<HttpResponse, HubError> {
    serve(&request, "index.html")
}

/// `GET /ui/{file}`
pub async fn file(request: HttpRequest, name: Path<String>) -> Result<HttpResponse, HubError> {
    serve(&request, &name)
}

fn serve(request: &HttpRequest, name: &str) -> Result<HttpResponse, HubError> {
    let (index, asset) = ASSETS
        .iter()
        .enumerate()
        .find(|(_, a)| a.name == name)
        .ok_or_else(|| HubError::NotFound(format!("no file {name} in the dashboard")))?;
    let etag = &etags()[index];
    let fresh = request
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let mut response = if fresh {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    response
        .insert_header((header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        // Revalidate every time (the ETag makes that a 304): file names carry no version.
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header((header::ETAG, etag.as_str()));
    if fresh {
        return Ok(response.finish());
    }
    Ok(response.content_type(asset.content_type).body(asset.body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asset_names_are_unique_single_path_segments() {
        let mut names: Vec<&str> = ASSETS.iter().map(|a| a.name).collect();
        assert!(names.iter().all(|n| !n.contains('/') && !n.is_empty()));
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ASSETS.len());
    }

    #[test]
    fn every_file_of_the_dashboard_is_embedded() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../ui");
        for dir in ["src", "vendor"] {
            for entry in std::fs::read_dir(root.join(dir)).expect("ui directory") {
                let name = entry.expect("entry").file_name();
                let name = name.to_str().expect("UTF-8 name");
                assert!(
                    ASSETS.iter().any(|a| a.name == name),
                    "ui/{dir}/{name} is not in ASSETS"
                );
            }
        }
    }

    #[test]
    fn pages_hold_no_inline_script_or_style() {
        for asset in ASSETS.iter().filter(|a| a.name.ends_with(".html")) {
            let text = std::str::from_utf8(asset.body).expect("UTF-8");
            for forbidden in ["<style", " style=", "onclick=", "onload=", "javascript:"] {
                assert!(!text.contains(forbidden), "{} has {forbidden}", asset.name);
            }
            for line in text.lines().filter(|l| l.contains("<script")) {
                assert!(
                    line.contains(" src="),
                    "{}: inline script {line}",
                    asset.name
                );
            }
        }
    }

    #[test]
    fn our_scripts_never_assign_markup() {
        for asset in ASSETS
            .iter()
            .filter(|a| a.name.ends_with(".js") && !a.name.starts_with("uPlot"))
        {
            let text = std::str::from_utf8(asset.body).expect("UTF-8");
            for forbidden in [
                "innerHTML",
                "outerHTML",
                "insertAdjacentHTML",
                "document.write",
            ] {
                assert!(!text.contains(forbidden), "{} uses {forbidden}", asset.name);
            }
        }
    }
}
