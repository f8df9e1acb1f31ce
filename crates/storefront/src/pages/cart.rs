//! The cart: a guest's (in a cookie, priced by the catalog on every view) or the
//! signed-in customer's (the cart service's), shown the same way.

use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, State};
use axum::response::{Html, IntoResponse, Response};
use contracts::Money;
use contracts::catalog::Product;
use http::{HeaderMap, Method};
use serde::Deserialize;

use super::{Chrome, Section, errors, render};
use crate::Site;
use crate::api::{ApiError, CartView, Service, segment};
use crate::session::{CookieJar, Shopper, local_path, see_other};

/// One line as the cart page shows it.
pub struct Row {
    /// The product's id (what forms send).
    pub product_id: String,
    /// Its slug, for its link.
    pub slug: String,
    /// Its name now.
    pub name: String,
    /// Its picture.
    pub picture: String,
    /// How many.
    pub quantity: i64,
    /// Its price tag now.
    pub unit_price: String,
    /// The line's total.
    pub line_total: String,
    /// A warning, e.g. that fewer are left than asked for.
    pub warning: String,
}

/// A cart ready to show: rows and the total.
pub struct Priced {
    /// The lines.
    pub rows: Vec<Row>,
    /// The total's price tag, if every line could be priced.
    pub total: Option<String>,
    /// The total itself.
    pub total_money: Option<Money>,
    /// Units in the cart.
    pub count: u32,
}

/// The cart page.
#[derive(Template)]
#[template(path = "cart.html")]
pub struct CartPage {
    chrome: Chrome,
    cart: Priced,
}

/// The shopper's cart, priced now: the cart service's for a customer, the cookie's
/// priced by the catalog for a guest.
pub async fn priced(site: &Site, shopper: &Shopper) -> Result<Priced, ApiError> {
    match shopper.token() {
        Some(token) => {
            let cart: CartView = site.api.get(Service::Cart, "/", Some(token)).await?;
            let products = products(site, cart.lines.iter().map(|l| l.product_id.as_str())).await;
            let rows = cart
                .lines
                .iter()
                .map(|line| {
                    let slug = products
                        .iter()
                        .flatten()
                        .find(|product| product.id == line.product_id)
                        .map_or_else(String::new, |product| product.slug.clone());
                    Row {
                        picture: crate::assets::picture(&slug),
                        product_id: line.product_id.clone(),
                        slug,
                        name: line.name.clone(),
                        quantity: line.quantity,
                        unit_price: line.unit_price.price_tag(),
                        line_total: line.line_total.price_tag(),
                        warning: warning(line.available, line.quantity),
                    }
                })
                .collect();
            let count = cart.lines.iter().map(|line| line.quantity).sum::<i64>();
            Ok(Priced {
                rows,
                total: cart.total.map(|total| total.price_tag()),
                total_money: cart.total,
                count: u32::try_from(count).unwrap_or(0),
            })
        }
        None => {
            let lines = &shopper.guest_cart.lines;
            let products = products(site, lines.iter().map(|(id, _)| id.as_str())).await;
            let availability = futures_util::future::join_all(
                lines.iter().map(|(id, _)| site.api.availability(id)),
            )
            .await;
            let mut rows = Vec::new();
            let mut sum: Option<Money> = None;
            // Once any line cannot be added up, the total is unknown, not partial.
            let mut unknown = false;
            for (((id, quantity), product), available) in
                lines.iter().zip(&products).zip(availability)
            {
                // A product gone from the catalog drops out of a guest's cart.
                let Some(product) = product else { continue };
                let line_total = product.price.checked_mul(*quantity).ok();
                match (line_total, sum) {
                    (None, _) => unknown = true,
                    (Some(line), None) => sum = Some(line),
                    (Some(line), Some(so_far)) => match so_far.checked_add(line) {
                        Ok(added) => sum = Some(added),
                        Err(_) => unknown = true,
                    },
                }
                rows.push(Row {
                    product_id: id.clone(),
                    slug: product.slug.clone(),
                    name: product.name.clone(),
                    picture: crate::assets::picture(&product.slug),
                    quantity: *quantity,
                    unit_price: product.price.price_tag(),
                    line_total: line_total.map_or_else(|| "—".to_owned(), |line| line.price_tag()),
                    warning: warning(available.ok(), *quantity),
                });
            }
            let total = sum.filter(|_| !unknown);
            Ok(Priced {
                rows,
                total: total.map(|total| total.price_tag()),
                total_money: total,
                count: shopper.guest_cart.count(),
            })
        }
    }
}

/// The products of `ids`, fetched at once; `None` for any the catalog does not know.
async fn products<'a>(site: &Site, ids: impl Iterator<Item = &'a str>) -> Vec<Option<Product>> {
    futures_util::future::join_all(ids.map(|id| site.api.product(id)))
        .await
        .into_iter()
        .map(Result::ok)
        .collect()
}

fn warning(available: Option<i64>, quantity: i64) -> String {
    match available {
        Some(0) => "Out of stock: remove it to check out.".to_owned(),
        Some(left) if left < quantity => format!("Only {left} left."),
        _ => String::new(),
    }
}

/// `GET /cart`.
pub async fn show(State(site): State<Arc<Site>>, shopper: Shopper) -> Response {
    let cart = match priced(&site, &shopper).await {
        Ok(cart) => cart,
        Err(error) => return errors::failure(&shopper, &error, "/cart"),
    };
    let mut jar = CookieJar::default();
    jar.cart_count(cart.count, site.config.secure_cookies);
    let mut chrome = Chrome::new(&shopper, "Your cart", Section::Cart);
    chrome.cart_count = cart.count;
    let mut response = render(&CartPage { chrome, cart });
    jar.apply(&mut response);
    response
}

/// An add-to-cart form.
#[derive(Debug, Deserialize)]
pub struct AddForm {
    /// The product.
    pub product_id: String,
    /// How many.
    pub quantity: i64,
    /// The page to go back to.
    #[serde(default)]
    pub back: Option<String>,
}

/// `POST /cart/items`: adds to the cart, then back to the product (or, from htmx, a
/// line saying so and the header's new count).
pub async fn add(
    State(site): State<Arc<Site>>,
    shopper: Shopper,
    headers: HeaderMap,
    form: Result<axum::Form<AddForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let htmx = headers.contains_key("hx-request");
    let quantity_problem = refused("Choose a quantity from 1 to 99.");
    let Ok(axum::Form(form)) = form else {
        return not_added(htmx, &shopper, &quantity_problem, "/cart");
    };
    let back = local_path(form.back.as_deref());
    if !(1..=99).contains(&form.quantity) {
        return not_added(htmx, &shopper, &quantity_problem, &back);
    }
    let mut jar = CookieJar::default();
    let secure = site.config.secure_cookies;
    let count = match shopper.token() {
        Some(token) => {
            let body =
                serde_json::json!({"product_id": form.product_id, "quantity": form.quantity});
            let cart: Result<CartView, ApiError> = site
                .api
                .send(Service::Cart, Method::POST, "/items", Some(token), &body)
                .await;
            match cart {
                Ok(cart) => cart.lines.iter().map(|line| line.quantity).sum::<i64>(),
                Err(error) => return not_added(htmx, &shopper, &error, &back),
            }
        }
        None => {
            if let Err(error) = site.api.product(&form.product_id).await {
                return not_added(htmx, &shopper, &error, &back);
            }
            let mut cart = shopper.guest_cart.clone();
            if !cart.add(&form.product_id, form.quantity) {
                if htmx {
                    return fragment(
                        "error",
                        "Your cart is full: check out or remove something first.",
                    );
                }
                jar.flash("cart-full", secure);
                return see_other("/cart", jar);
            }
            jar.guest_cart(&cart, secure);
            i64::from(cart.count())
        }
    };
    let count = u32::try_from(count).unwrap_or(0);
    jar.cart_count(count, secure);
    if htmx {
        let mut response = Html(format!(
            "<p class=\"flash flash--success\" role=\"status\">Added to your cart. \
             <a href=\"/cart\">View cart</a></p>\
             <span id=\"cart-count\" hx-swap-oob=\"true\"><span class=\"badge\">{count}\
             <span class=\"visually-hidden\"> items</span></span></span>"
        ))
        .into_response();
        jar.apply(&mut response);
        return response;
    }
    jar.flash("added", secure);
    see_other(&back, jar)
}

/// Why adding to the cart failed: a line in place for htmx (which swaps nothing of an
/// error status, and would put a whole page into the product's), else the error page.
fn not_added(htmx: bool, shopper: &Shopper, error: &ApiError, back: &str) -> Response {
    if !htmx {
        return errors::failure(shopper, error, back);
    }
    match error {
        ApiError::Unauthorized => {
            let mut response = Html("").into_response();
            let location = format!("/sign-in{}", crate::api::encode_query(&[("next", back)]));
            if let Ok(location) = http::HeaderValue::from_str(&location) {
                response.headers_mut().insert("hx-redirect", location);
            }
            response
        }
        ApiError::Refused { problem, .. } if !problem.detail.is_empty() => {
            fragment("error", &format!("Not added: {}", problem.detail))
        }
        ApiError::Refused { .. } => fragment("error", "Not added: the cart refused it."),
        ApiError::Throttled(wait) => fragment(
            "error",
            &format!("Not added: too many requests; try again in {wait} s."),
        ),
        ApiError::Unavailable(_) => fragment(
            "error",
            "Not added: the cart is unavailable just now. Try again in a moment.",
        ),
    }
}

/// A one-line message for htmx to put in place (its text escaped).
fn fragment(kind: &str, text: &str) -> Response {
    let role = if kind == "error" { "alert" } else { "status" };
    let text = text
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;");
    Html(format!(
        "<p class=\"flash flash--{kind}\" role=\"{role}\">{text}</p>"
    ))
    .into_response()
}

fn refused(detail: &str) -> ApiError {
    ApiError::Refused {
        status: http::StatusCode::BAD_REQUEST,
        problem: crate::api::ProblemBody {
            detail: detail.to_owned(),
            ..Default::default()
        },
    }
}

/// A quantity form.
#[derive(Debug, Deserialize)]
pub struct QuantityForm {
    /// The new quantity; 0 removes the line.
    pub quantity: i64,
}

/// `POST /cart/items/{product_id}`: sets a line's quantity (0 removes it).
pub async fn set_quantity(
    State(site): State<Arc<Site>>,
    shopper: Shopper,
    Path(product_id): Path<String>,
    form: Result<axum::Form<QuantityForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    match form {
        Ok(axum::Form(form)) if (0..=99).contains(&form.quantity) => {
            change(&site, &shopper, &product_id, form.quantity).await
        }
        _ => errors::failure(
            &shopper,
            &refused("Choose a quantity from 0 to 99."),
            "/cart",
        ),
    }
}

/// `POST /cart/items/{product_id}/remove`.
pub async fn remove(
    State(site): State<Arc<Site>>,
    shopper: Shopper,
    Path(product_id): Path<String>,
) -> Response {
    change(&site, &shopper, &product_id, 0).await
}

async fn change(site: &Site, shopper: &Shopper, product_id: &str, quantity: i64) -> Response {
    let secure = site.config.secure_cookies;
    let mut jar = CookieJar::default();
    match shopper.token() {
        Some(token) => {
            let path = format!("/items/{}", segment(product_id));
            let cart: Result<CartView, ApiError> = if quantity == 0 {
                site.api
                    .bodiless(Service::Cart, Method::DELETE, &path, Some(token))
                    .await
            } else {
                let body = serde_json::json!({"quantity": quantity});
                site.api
                    .send(Service::Cart, Method::PUT, &path, Some(token), &body)
                    .await
            };
            match cart {
                Ok(cart) => {
                    let count = cart.lines.iter().map(|line| line.quantity).sum::<i64>();
                    jar.cart_count(u32::try_from(count).unwrap_or(0), secure);
                }
                Err(error) if error.is_not_found() => {}
                Err(error) => return errors::failure(shopper, &error, "/cart"),
            }
        }
        None => {
            let mut cart = shopper.guest_cart.clone();
            cart.set(product_id, quantity);
            jar.guest_cart(&cart, secure);
        }
    }
    see_other("/cart", jar)
}
