//! What a shopper sees when something goes wrong: a page in words, never a raw JSON
//! body. A service that is down or busy becomes "try again in a moment", a refusal
//! its reason, an expired session the sign-in page, and a failure inside the shop a
//! page with the request id to quote.

use askama::Template;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use http::StatusCode;
use http::header::{self, HeaderValue};

use super::{Chrome, Section, render_with};
use crate::api::ApiError;
use crate::session::{CookieJar, CsrfRefusal, Shopper, see_other};

/// A page saying what went wrong.
#[derive(Template)]
#[template(path = "error.html")]
pub struct ErrorPage {
    /// Header and footer.
    pub chrome: Chrome,
    /// The status, shown large.
    pub status: u16,
    /// The heading.
    pub heading: String,
    /// What happened and what to do.
    pub detail: String,
    /// The request id to quote, for failures inside the shop.
    pub request_id: String,
}

/// A page without the header, for when the shopper is not known (a refused form, a
/// failure before the page was made).
#[derive(Template)]
#[template(path = "bare_error.html")]
pub struct BareErrorPage {
    /// The status, shown large.
    pub status: u16,
    /// The heading.
    pub heading: String,
    /// What happened and what to do.
    pub detail: String,
    /// The request id to quote, if any.
    pub request_id: String,
    /// The stylesheet's URL.
    pub stylesheet: String,
}

fn page(shopper: &Shopper, status: StatusCode, heading: &str, detail: &str) -> Response {
    let chrome = Chrome::new(shopper, heading, Section::None);
    render_with(
        status,
        &ErrorPage {
            chrome,
            status: status.as_u16(),
            heading: heading.to_owned(),
            detail: detail.to_owned(),
            request_id: String::new(),
        },
    )
}

/// 404: no such page or product.
pub fn not_found(shopper: &Shopper) -> Response {
    page(
        shopper,
        StatusCode::NOT_FOUND,
        "We couldn't find that page",
        "The link may be old, or the product may no longer be in the catalogue.",
    )
}

/// The fallback for any path the shop does not have.
pub async fn fallback(shopper: Shopper) -> Response {
    not_found(&shopper)
}

/// 403: the page is for admins.
pub fn forbidden(shopper: &Shopper) -> Response {
    page(
        shopper,
        StatusCode::FORBIDDEN,
        "This page is for the shop's staff",
        "Your account cannot open the back-office. If you work here, sign in with your \
         staff account.",
    )
}

/// What to show for an API call that failed while making a page.
pub fn failure(shopper: &Shopper, error: &ApiError, next: &str) -> Response {
    match error {
        ApiError::Unauthorized => sign_in_again(next),
        ApiError::Throttled(wait) => page(
            shopper,
            StatusCode::TOO_MANY_REQUESTS,
            "Slow down a little",
            &format!(
                "You have sent a lot of requests in a short time. Please wait {wait} \
                 second{} and try again.",
                if *wait == 1 { "" } else { "s" }
            ),
        ),
        ApiError::Unavailable(service) => page(
            shopper,
            StatusCode::SERVICE_UNAVAILABLE,
            "Part of the shop is unavailable",
            &format!(
                "Our {} service is not answering just now. Nothing was changed; please \
                 try again in a moment.",
                service.as_str()
            ),
        ),
        ApiError::Refused { status, .. } if *status == StatusCode::NOT_FOUND => not_found(shopper),
        ApiError::Refused { status, .. } if *status == StatusCode::FORBIDDEN => forbidden(shopper),
        ApiError::Refused { status, problem } => page(
            shopper,
            *status,
            "We couldn't do that",
            if problem.detail.is_empty() {
                "The request was refused."
            } else {
                &problem.detail
            },
        ),
    }
}

/// The session ended (its refresh token expired or was revoked): sign in again, then
/// come back to `next`.
pub fn sign_in_again(next: &str) -> Response {
    let mut jar = CookieJar::default();
    jar.sign_out();
    jar.flash("session-expired", false);
    let next = crate::api::encode_query(&[("next", next)]);
    see_other(&format!("/sign-in{next}"), jar)
}

/// 403 for a form refused by the CSRF check.
pub fn csrf_refused(refusal: CsrfRefusal) -> Response {
    let (status, detail) = match refusal {
        CsrfRefusal::CrossSite => (
            StatusCode::FORBIDDEN,
            "This form was sent from another website, so the shop ignored it. Nothing was \
             changed.",
        ),
        CsrfRefusal::Token => (
            StatusCode::FORBIDDEN,
            "This form has expired or did not come from the shop, so it was ignored. \
             Nothing was changed. Go back, reload the page and try again.",
        ),
        CsrfRefusal::NotAForm => (
            StatusCode::BAD_REQUEST,
            "The shop only accepts its own forms here. Nothing was changed.",
        ),
    };
    bare(status, "The form was refused", detail, "")
}

fn bare(status: StatusCode, heading: &str, detail: &str, request_id: &str) -> Response {
    render_with(
        status,
        &BareErrorPage {
            status: status.as_u16(),
            heading: heading.to_owned(),
            detail: detail.to_owned(),
            request_id: request_id.to_owned(),
            stylesheet: crate::assets::stylesheet(),
        },
    )
}

/// A 500 page for a template that failed to render (the one page that cannot be a
/// template).
pub fn plain_failure() -> Response {
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        Html("<!doctype html><title>Error · Bazaar</title><h1>Something went wrong</h1>"),
    )
        .into_response()
}

/// 404 for an asset that does not exist.
pub fn not_found_plain() -> Response {
    (StatusCode::NOT_FOUND, "no such file").into_response()
}

/// Turns any failure inside the shop (a 5xx that is not already a page, a handler
/// that panicked) into a page that shows the request id, so a shopper can quote it
/// and an operator can find the log lines.
pub async fn pages_for_failures(request: Request, next: Next) -> Response {
    let request_id = request
        .headers()
        .get("x-request-id")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let response = next.run(request).await;
    let is_page = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes().starts_with(b"text/html"));
    // The shop's own 502-504 pages say what to do already; a bare 500 (a panic, a
    // template that failed) becomes the page with the request id.
    let keep = !response.status().is_server_error()
        || (is_page && response.status() != StatusCode::INTERNAL_SERVER_ERROR);
    if keep {
        return response;
    }
    tracing::error!(
        request_id,
        status = response.status().as_u16(),
        "a page failed"
    );
    let mut page = with_request_id(&request_id);
    // The session may have been refreshed on the way in: the new cookies must reach
    // the browser, or it would present a used refresh token next time.
    for cookie in response.headers().get_all(header::SET_COOKIE) {
        page.headers_mut()
            .append(header::SET_COOKIE, cookie.clone());
    }
    page
}

fn with_request_id(request_id: &str) -> Response {
    let mut response = bare(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Something went wrong on our side",
        "The shop failed to make this page. It has been logged; please try again. If it \
         keeps happening, quote the request id below.",
        request_id,
    );
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
