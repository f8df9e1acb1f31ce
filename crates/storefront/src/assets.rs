//! The stylesheet, htmx and product pictures, embedded at build time and served with
//! long-lived caching under URLs that change with their content.

use axum::extract::Path;
use axum::response::{IntoResponse, Response};
use http::header::{self, HeaderValue};

include!(concat!(env!("OUT_DIR"), "/assets.rs"));

/// The htmx version vendored in `assets/`.
const HTMX: &str = "htmx-2.0.11.min.js";
/// The picture of a product that has none of its own.
const PLACEHOLDER: &str = "products/placeholder.svg";

fn find(name: &str) -> Option<&'static (&'static str, &'static [u8], &'static str)> {
    EMBEDDED.iter().find(|(path, _, _)| *path == name)
}

/// `/static/<name>?v=<digest>`: a URL that changes whenever the file does.
fn versioned(prefix: &str, name: &str) -> String {
    let digest = find(name).map_or("0", |(_, _, digest)| *digest);
    format!("{prefix}{name}?v={digest}")
}

/// The stylesheet's URL.
pub fn stylesheet() -> String {
    versioned("/static/", "shop.css")
}

/// htmx's URL.
pub fn htmx() -> String {
    versioned("/static/", HTMX)
}

/// The shop's icon.
pub fn favicon() -> String {
    versioned("/static/", "favicon.svg")
}

/// The picture of the product `slug`: its own, or the placeholder.
pub fn picture(slug: &str) -> String {
    let own = format!("products/{slug}.svg");
    if find(&own).is_some() {
        versioned("/images/", &own)
    } else {
        versioned("/images/", PLACEHOLDER)
    }
}

/// Serves `/static/<name>`.
pub async fn static_file(Path(name): Path<String>) -> Response {
    serve(&name)
}

/// Serves `/favicon.ico`, which browsers ask for on pages that name no icon (the
/// console's): the shop's icon.
pub async fn favicon_ico() -> Response {
    serve("favicon.svg")
}

/// Serves `/images/products/<name>`.
pub async fn product_picture(Path(name): Path<String>) -> Response {
    serve(&format!("products/{name}"))
}

fn serve(name: &str) -> Response {
    let Some((path, bytes, digest)) = find(name) else {
        return crate::pages::errors::not_found_plain();
    };
    let content_type = match path.rsplit('.').next() {
        Some("css") => "text/css; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("svg") => "image/svg+xml",
        _ => "application/octet-stream",
    };
    let etag = HeaderValue::from_str(&format!("\"{digest}\"")).ok();
    let mut response = (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=31536000, immutable"),
            ),
        ],
        *bytes,
    )
        .into_response();
    if let Some(etag) = etag {
        response.headers_mut().insert(header::ETAG, etag);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_seeded_product_has_its_own_picture() {
        let seed: serde_json::Value =
            serde_json::from_str(include_str!("../../catalog/seed/catalog.json"))
                .expect("the seed catalog");
        let products = seed["products"].as_array().expect("products");
        assert!(!products.is_empty());
        for product in products {
            let slug = product["slug"].as_str().expect("a slug");
            let picture = picture(slug);
            assert!(
                picture.starts_with(&format!("/images/products/{slug}.svg?v=")),
                "{slug} has no picture of its own: {picture}"
            );
        }
        assert!(find(PLACEHOLDER).is_some());
        assert!(find(HTMX).is_some());
        assert!(find("shop.css").is_some());
    }

    #[test]
    fn pictures_are_self_contained_svg() {
        for (path, bytes, _) in EMBEDDED.iter().filter(|(path, ..)| path.ends_with(".svg")) {
            let text = std::str::from_utf8(bytes).expect("UTF-8");
            assert!(text.contains("<svg"), "{path}");
            assert!(text.contains("<title>"), "{path} has no title");
            for forbidden in ["<script", "href=\"http", "xlink:href=\"http", "@import"] {
                assert!(!text.contains(forbidden), "{path} contains {forbidden}");
            }
        }
    }
}
