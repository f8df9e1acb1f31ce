//! The pages: one module per part of the shop, each a set of thin handlers that call
//! the APIs ([`crate::api`]) and render a template. What every page shares is here:
//! the header and footer ([`Chrome`]), rendering with the shop's security headers,
//! one-time messages, and the friendly pages for failures ([`errors`]).

pub mod account;
pub mod admin;
pub mod cart;
pub mod checkout;
pub mod errors;
pub mod orders;
pub mod shop;

use askama::Template;
use axum::response::{Html, IntoResponse, Response};
use http::StatusCode;
use http::header::{self, HeaderValue};

use crate::api::{ApiError, FieldProblem};
use crate::session::Shopper;

/// The part of the shop a page belongs to, for the navigation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Section {
    /// Browsing the catalog.
    Shop,
    /// The cart and checkout.
    Cart,
    /// Orders.
    Orders,
    /// The inbox.
    Inbox,
    /// Account, sign-in and registration.
    Account,
    /// The back-office.
    Admin,
    /// None (error pages).
    None,
}

/// A one-time message shown at the top of a page.
#[derive(Clone, Debug)]
pub struct Flash {
    /// `info`, `success` or `error`, for its style.
    pub kind: &'static str,
    /// The sentence.
    pub text: String,
}

impl Flash {
    /// A success message.
    pub fn success(text: impl Into<String>) -> Self {
        Self {
            kind: "success",
            text: text.into(),
        }
    }

    /// An error message.
    pub fn error(text: impl Into<String>) -> Self {
        Self {
            kind: "error",
            text: text.into(),
        }
    }
}

/// The message a flash code left by a redirect stands for. Only these codes exist,
/// so a cookie cannot put text of its own on a page.
pub fn flash(code: &str) -> Option<Flash> {
    let (kind, text) = match code {
        "added" => ("success", "Added to your cart."),
        "cart-full" => (
            "error",
            "Your cart is full: check out or remove something first.",
        ),
        "cart-partly-moved" => (
            "error",
            "You are signed in, but some items of your cart could not be moved to your \
             account's cart: check your cart.",
        ),
        "signed-in" => ("success", "Welcome back! You are signed in."),
        "registered" => (
            "success",
            "Welcome to Bazaar! Your address is confirmed and you are signed in.",
        ),
        "signed-out" => ("success", "You are signed out."),
        "password-changed" => (
            "success",
            "Your password is changed. Other devices were signed out.",
        ),
        "order-cancelled" => ("success", "We are cancelling your order."),
        "product-saved" => ("success", "The product is saved."),
        "product-deleted" => ("success", "The product is deleted."),
        "category-saved" => ("success", "The category is saved."),
        "category-deleted" => ("success", "The category is deleted."),
        "stock-adjusted" => ("success", "The stock is adjusted."),
        "order-approved" => ("success", "The order is approved; payment continues."),
        "order-declined" => ("success", "The order is declined and will be cancelled."),
        "order-refunded" => ("success", "The refund is on its way."),
        "session-expired" => ("error", "Your session ended. Please sign in again."),
        _ => return None,
    };
    Some(Flash {
        kind,
        text: text.to_owned(),
    })
}

/// What the header and footer of every page need.
#[derive(Clone, Debug)]
pub struct Chrome {
    /// The page's title, before "· Bazaar".
    pub title: String,
    /// Where in the shop the page is.
    pub section: Section,
    /// Whether someone is signed in.
    pub signed_in: bool,
    /// Whether they may use the back-office.
    pub is_admin: bool,
    /// Units in the cart.
    pub cart_count: u32,
    /// The CSRF token the page's forms carry.
    pub csrf: String,
    /// A message for the top of the page.
    pub flash: Option<Flash>,
    /// What the search box holds.
    pub search: String,
    /// Every how many seconds the page refreshes itself when scripts are off (an order
    /// in progress).
    pub refresh_without_script: Option<u32>,
    /// The stylesheet's URL.
    pub stylesheet: String,
    /// htmx's URL.
    pub htmx: String,
    /// The icon's URL.
    pub favicon: String,
}

impl Chrome {
    /// The chrome of a page titled `title` in `section`, for `shopper`.
    pub fn new(shopper: &Shopper, title: impl Into<String>, section: Section) -> Self {
        Self {
            title: title.into(),
            section,
            signed_in: shopper.user.is_some(),
            is_admin: shopper.user.as_ref().is_some_and(|user| user.is_admin()),
            cart_count: shopper.cart_count,
            csrf: shopper.csrf.clone(),
            flash: shopper.flash.as_deref().and_then(flash),
            search: String::new(),
            refresh_without_script: None,
            stylesheet: crate::assets::stylesheet(),
            htmx: crate::assets::htmx(),
            favicon: crate::assets::favicon(),
        }
    }

    /// With `flash` shown instead of any left by a redirect.
    pub fn with_flash(mut self, flash: Flash) -> Self {
        self.flash = Some(flash);
        self
    }

    /// `aria-current="page"` for the navigation link of `section`.
    pub fn current(&self, section: &str) -> &'static str {
        let this = match self.section {
            Section::Shop => "shop",
            Section::Cart => "cart",
            Section::Orders => "orders",
            Section::Inbox => "inbox",
            Section::Account => "account",
            Section::Admin => "admin",
            Section::None => "",
        };
        if this == section { "page" } else { "false" }
    }
}

/// The security headers of every page: scripts, styles and pictures from the shop
/// only; forms post only to the shop; nothing frames it.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; img-src 'self'; \
     style-src 'self'; script-src 'self'; connect-src 'self'; form-action 'self'; \
     frame-ancestors 'none'; base-uri 'none'; object-src 'none'";

/// `template` rendered as a page with `status`. Pages are personal (they carry the
/// shopper's CSRF token and cart), so nothing stores them.
pub fn render_with(status: StatusCode, template: &impl Template) -> Response {
    match template.render() {
        Ok(html) => {
            let mut response = (status, Html(html)).into_response();
            let headers = response.headers_mut();
            headers.insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("private, no-store"),
            );
            headers.insert(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CONTENT_SECURITY_POLICY),
            );
            headers.insert(
                header::REFERRER_POLICY,
                HeaderValue::from_static("same-origin"),
            );
            headers.insert(
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            );
            headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
            response
        }
        Err(error) => {
            tracing::error!(%error, "a page failed to render");
            errors::plain_failure()
        }
    }
}

/// `template` rendered as a 200 page.
pub fn render(template: &impl Template) -> Response {
    render_with(StatusCode::OK, template)
}

/// Field errors by field name, for showing each next to its input.
#[derive(Clone, Debug, Default)]
pub struct FieldErrors {
    errors: Vec<FieldProblem>,
}

impl FieldErrors {
    /// The errors a service named in a validation problem.
    pub fn from_api(error: &ApiError) -> Self {
        match error {
            ApiError::Refused { problem, .. } => Self {
                errors: problem.errors.clone(),
            },
            _ => Self::default(),
        }
    }

    /// One error on `field`.
    pub fn one(field: &str, message: impl Into<String>) -> Self {
        Self {
            errors: vec![FieldProblem {
                field: field.to_owned(),
                message: message.into(),
            }],
        }
    }

    /// The message for `field` (or a field under it, such as `price.amount_minor`
    /// for `price`), or an empty string.
    pub fn of(&self, field: &str) -> String {
        self.errors
            .iter()
            .filter(|error| {
                error.field == field
                    || error
                        .field
                        .strip_prefix(field)
                        .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('/'))
                    || error.field.trim_start_matches('/') == field
            })
            .map(|error| error.message.as_str())
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    /// The messages of fields no input on the page shows.
    pub fn others(&self, shown: &[&str]) -> Vec<String> {
        self.errors
            .iter()
            .filter(|error| {
                !shown.iter().any(|field| {
                    error.field == *field
                        || error.field.starts_with(&format!("{field}."))
                        || error.field.trim_start_matches('/') == *field
                })
            })
            .map(|error| format!("{}: {}", error.field, error.message))
            .collect()
    }
}

/// A timestamp in Unix milliseconds as `7 Dec 2026, 14:02` (UTC).
pub fn when(at_ms: i64) -> String {
    chrono_like(at_ms / 1000)
}

/// `YYYY-MM-DDTHH:MM:SSZ` of Unix milliseconds, for `<time datetime>`.
pub fn iso(at_ms: i64) -> String {
    let (year, month, day, hour, minute, second) = civil(at_ms.div_euclid(1000));
    format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}Z")
}

fn chrono_like(secs: i64) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (year, month, day, hour, minute, _) = civil(secs);
    let name = MONTHS
        .get(usize::try_from(month).unwrap_or(1).saturating_sub(1))
        .copied()
        .unwrap_or("?");
    format!("{day} {name} {year}, {hour:02}:{minute:02}")
}

/// The UTC calendar date and time of Unix seconds (Howard Hinnant's civil algorithm).
fn civil(secs: i64) -> (i64, i64, i64, i64, i64, i64) {
    let days = secs.div_euclid(86_400);
    let in_day = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (
        year,
        month,
        day,
        in_day / 3600,
        in_day % 3600 / 60,
        in_day % 60,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_as_dates() {
        assert_eq!(iso(0), "1970-01-01T00:00:00Z");
        assert_eq!(iso(1_796_603_183_068), "2026-12-07T00:26:23Z");
        assert_eq!(when(1_796_603_183_068), "7 Dec 2026, 00:26");
        assert_eq!(iso(951_782_400_000), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn field_errors_are_found_by_field() {
        let errors = FieldErrors {
            errors: vec![
                FieldProblem {
                    field: "price.amount_minor".to_owned(),
                    message: "must be positive".to_owned(),
                },
                FieldProblem {
                    field: "slug".to_owned(),
                    message: "is taken".to_owned(),
                },
            ],
        };
        assert_eq!(errors.of("price"), "must be positive");
        assert_eq!(errors.of("slug"), "is taken");
        assert_eq!(errors.of("name"), "");
        assert_eq!(
            errors.others(&["slug"]),
            vec!["price.amount_minor: must be positive"]
        );
    }
}
