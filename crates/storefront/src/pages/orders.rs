//! A customer's orders: the history, one order with the checkout saga's steps shown
//! live, cancelling, and the inbox of emails the shop sent.

use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse as _, Response};
use http::Method;
use serde::Deserialize;

use super::{Chrome, Section, errors, iso, render, when};
use crate::Site;
use crate::api::{ApiError, Notification, Order, Page, Service, encode_query, segment};
use crate::session::{CookieJar, Shopper, see_other};

/// One step of the checkout as a shopper sees it.
pub struct Step {
    /// Its name: "Placed", "Stock reserved", "Paid", "Confirmed".
    pub label: &'static str,
    /// `done`, `current`, `failed` or `todo`, for its style.
    pub state: &'static str,
    /// The state in words, for screen readers.
    pub spoken: &'static str,
}

/// Where an order is, in words.
pub struct Progress {
    /// The four steps.
    pub steps: Vec<Step>,
    /// The status badge's text.
    pub badge: &'static str,
    /// The badge's style: `confirmed`, `cancelled`, `pending`, `held`, `refunded`.
    pub badge_style: &'static str,
    /// What is happening, in a sentence or two.
    pub explainer: String,
    /// Whether the order is still moving (the page keeps watching it).
    pub moving: bool,
    /// How often the page asks again while it moves: every second, but every ten while
    /// it waits for a person to review it.
    pub poll_seconds: u32,
}

/// Whether `order` has recorded `event`.
fn happened(order: &Order, event: &str) -> bool {
    order.timeline.iter().any(|entry| entry.event == event)
}

/// The progress of `order`, from its status and its timeline.
pub fn progress(order: &Order) -> Progress {
    let status = order.status.as_str();
    let reason = order.reason.as_deref().unwrap_or_default();
    let reserved = happened(order, "stock_reserved");
    // An approved payment the bank then would not release was never paid.
    let paid = happened(order, "payment_authorized") && reason != "payment_failed";
    let confirmed = matches!(
        status,
        "confirmed" | "refunding" | "refunded" | "refund_failed"
    );
    let failed_step = match (status, reason) {
        ("cancelling" | "cancelled" | "rejected", "out_of_stock") => Some(1),
        (
            "cancelling" | "cancelled" | "rejected",
            "payment_declined" | "review_declined" | "payment_failed",
        ) => Some(2),
        _ => None,
    };
    let ended = matches!(
        status,
        "cancelling" | "cancelled" | "rejected" | "refunding" | "refunded" | "refund_failed"
    );
    let done = [true, reserved, paid, confirmed];
    let current = done.iter().position(|done| !done);
    let steps = ["Placed", "Stock reserved", "Paid", "Confirmed"]
        .into_iter()
        .enumerate()
        .map(|(index, label)| {
            let (state, spoken) = if done[index] {
                ("done", "Done: ")
            } else if failed_step == Some(index) {
                ("failed", "Failed: ")
            } else if !ended && current == Some(index) {
                ("current", "In progress: ")
            } else if ended {
                ("todo", "Not reached: ")
            } else {
                ("todo", "Not yet: ")
            };
            Step {
                label,
                state,
                spoken,
            }
        })
        .collect();
    let (badge, badge_style) = match status {
        "confirmed" => ("Confirmed", "confirmed"),
        "cancelled" | "rejected" => ("Cancelled", "cancelled"),
        "cancelling" => ("Cancelling", "cancelled"),
        "payment_held" => ("Held for review", "held"),
        "refunding" => ("Refunding", "refunded"),
        "refunded" => ("Refunded", "refunded"),
        "refund_failed" => ("Refund by other means", "held"),
        _ => ("In progress", "pending"),
    };
    Progress {
        steps,
        badge,
        badge_style,
        explainer: explain(status, reason),
        moving: !matches!(
            status,
            "confirmed" | "cancelled" | "rejected" | "refunded" | "refund_failed"
        ),
        poll_seconds: if status == "payment_held" { 10 } else { 1 },
    }
}

/// What is happening to an order, in words a shopper understands.
fn explain(status: &str, reason: &str) -> String {
    let why = match reason {
        "payment_declined" => "your card was declined",
        "payment_failed" => "your bank would not release the approved payment",
        "review_declined" => "we could not approve the payment after reviewing it",
        "out_of_stock" => "some of what you ordered is no longer in stock",
        "customer_cancelled" => "you asked us to cancel it",
        "reservation_expired" | "deadline_missed" => "the payment did not complete in time",
        _ => "we could not complete it",
    };
    match status {
        "placed" => "We have your order and are setting your items aside. This page updates \
                     by itself."
            .to_owned(),
        "stock_reserved" => "Your items are set aside. We are asking your bank to approve \
                             the payment; this usually takes a few seconds."
            .to_owned(),
        "payment_held" => "Your payment is being reviewed by our team, as we do for some \
                           large or unusual orders. Your items stay set aside, and we will \
                           email you when it is decided."
            .to_owned(),
        "paid" => "Your payment is approved. We are confirming the order.".to_owned(),
        "confirmed" => "Your order is confirmed and paid. The confirmation email is in your \
                        inbox."
            .to_owned(),
        "cancelling" => format!(
            "We are cancelling this order because {why}: we are releasing the items we \
             set aside and any hold on your card."
        ),
        "cancelled" | "rejected" => format!(
            "This order was cancelled because {why}. We released the items we had set \
             aside, and you have not been charged."
        ),
        "refunding" => "We are refunding your payment.".to_owned(),
        "refunded" => {
            "This order was refunded: the money is on its way back to your card.".to_owned()
        }
        "refund_failed" => "Your bank would not take the refund back onto your card. Our \
                            team has been told and will return the money to you another \
                            way; we will be in touch."
            .to_owned(),
        _ => "We are working on your order.".to_owned(),
    }
}

/// An order's lines as shown.
pub struct LineRow {
    /// The product's name then.
    pub name: String,
    /// How many.
    pub quantity: i64,
    /// Its price tag then.
    pub unit_price: String,
    /// The line's total.
    pub line_total: String,
}

/// One order's page.
#[derive(Template)]
#[template(path = "order.html")]
pub struct OrderPage {
    chrome: Chrome,
    order: Order,
    number: String,
    placed: String,
    placed_iso: String,
    lines: Vec<LineRow>,
    total: String,
    progress: Progress,
    can_cancel: bool,
    timeline: Vec<(String, String, String)>,
    /// The console's page of the order's trace, for an admin.
    trace: Option<String>,
    /// Never sent with the whole page (its header has the count).
    cart_count: Option<u32>,
}

/// The live part of the order page, alone (what htmx polls).
#[derive(Template)]
#[template(path = "order_progress.html")]
pub struct ProgressFragment {
    progress: Progress,
    /// Once the order has ended, the cart's new size for the header (a confirmed
    /// order's lines leave the cart).
    cart_count: Option<u32>,
}

/// Items in the customer's cart now, once an order has ended (its lines may have left
/// the cart): remembered for the header. None while the order is moving or the cart
/// does not answer.
async fn settled_cart_count(
    site: &Site,
    shopper: &Shopper,
    progress: &Progress,
    jar: &mut CookieJar,
) -> Option<u32> {
    if progress.moving {
        return None;
    }
    let cart: crate::api::CartView = site
        .api
        .get(Service::Cart, "/", shopper.token())
        .await
        .ok()?;
    let count = u32::try_from(cart.lines.iter().map(|line| line.quantity).sum::<i64>()).ok()?;
    jar.cart_count(count, site.config.secure_cookies);
    Some(count)
}

/// The order number shoppers read (the same as in the emails).
pub fn number(id: &str) -> String {
    contracts::orders::order_number(id)
}

/// What a timeline event says to a shopper.
fn event_text(event: &str) -> &'static str {
    match event {
        "placed" => "Order placed",
        "stock_reserved" => "Items set aside",
        "stock_rejected" => "Some items were out of stock",
        "payment_authorized" => "Payment approved",
        "payment_held" => "Payment held for review",
        "review_requested" => "Payment reviewed",
        "payment_declined" => "Payment declined",
        "stock_committed" => "Items packed for you",
        "payment_captured" => "Payment taken",
        "cancellation_started" => "Cancelling",
        "stock_released" => "Items released",
        "payment_voided" => "Card hold released",
        "cancelled" => "Order cancelled",
        "refund_requested" => "Refund requested",
        "payment_refunded" => "Refunded",
        "command_resent" => "Still working on it",
        _ => "Update",
    }
}

async fn fetch(site: &Site, shopper: &Shopper, id: &str) -> Result<Order, ApiError> {
    site.api
        .get(
            Service::Orders,
            &format!("/{}", segment(id)),
            shopper.token(),
        )
        .await
}

/// `GET /orders/{id}`.
pub async fn show(
    State(site): State<Arc<Site>>,
    shopper: Shopper,
    Path(id): Path<String>,
) -> Response {
    let here = format!("/orders/{}", segment(&id));
    if shopper.user.is_none() {
        return errors::sign_in_again(&here);
    }
    let order = match fetch(&site, &shopper, &id).await {
        Ok(order) => order,
        Err(error) => return errors::failure(&shopper, &error, &here),
    };
    let progress = progress(&order);
    let mut jar = CookieJar::default();
    let mut chrome = Chrome::new(
        &shopper,
        format!("Order {}", number(&order.id)),
        Section::Orders,
    );
    if let Some(count) = settled_cart_count(&site, &shopper, &progress, &mut jar).await {
        chrome.cart_count = count;
    }
    chrome.refresh_without_script =
        progress
            .moving
            .then_some(if progress.poll_seconds > 1 { 30 } else { 3 });
    let lines = order
        .lines
        .iter()
        .map(|line| LineRow {
            name: line.name.clone(),
            quantity: line.quantity,
            unit_price: line.unit_price.price_tag(),
            line_total: line
                .unit_price
                .checked_mul(line.quantity)
                .map_or_else(|_| String::new(), |total| total.price_tag()),
        })
        .collect();
    let timeline = order
        .timeline
        .iter()
        .map(|entry| {
            (
                iso(entry.at_ms),
                when(entry.at_ms),
                event_text(&entry.event).to_owned(),
            )
        })
        .collect();
    // Only hexadecimal digits go into the link.
    let trace = order
        .trace_id
        .as_deref()
        .filter(|trace| {
            chrome.is_admin && trace.len() == 32 && trace.bytes().all(|b| b.is_ascii_hexdigit())
        })
        .map(|trace| format!("/console/traces/{trace}"));
    let mut response = render(&OrderPage {
        chrome,
        trace,
        number: number(&order.id),
        placed: when(order.placed_at_ms),
        placed_iso: iso(order.placed_at_ms),
        lines,
        total: order.total.price_tag(),
        can_cancel: matches!(
            order.status.as_str(),
            "placed" | "stock_reserved" | "payment_held"
        ),
        progress,
        timeline,
        cart_count: None,
        order,
    });
    jar.apply(&mut response);
    response
}

/// `GET /orders/{id}/progress`: the live part alone, for the page to poll. An order
/// that has ended answers 286, which tells htmx to stop asking; a moment when orders
/// cannot answer is 204 (nothing to change, ask again); an ended session sends the
/// page to sign in.
pub async fn progress_fragment(
    State(site): State<Arc<Site>>,
    shopper: Shopper,
    Path(id): Path<String>,
) -> Response {
    let here = format!("/orders/{}", segment(&id));
    match fetch(&site, &shopper, &id).await {
        Ok(order) => {
            let progress = progress(&order);
            let moving = progress.moving;
            let mut jar = CookieJar::default();
            let cart_count = settled_cart_count(&site, &shopper, &progress, &mut jar).await;
            let mut response = render(&ProgressFragment {
                progress,
                cart_count,
            });
            if !moving {
                *response.status_mut() = STOP_POLLING;
            }
            jar.apply(&mut response);
            response
        }
        Err(ApiError::Unavailable(_) | ApiError::Throttled(_)) => {
            http::StatusCode::NO_CONTENT.into_response()
        }
        Err(ApiError::Unauthorized) => {
            let mut response = http::StatusCode::NO_CONTENT.into_response();
            let location = format!("/sign-in{}", encode_query(&[("next", &here)]));
            if let Ok(location) = http::HeaderValue::from_str(&location) {
                response.headers_mut().insert("hx-redirect", location);
            }
            response
        }
        Err(error) => {
            tracing::info!(%error, "an order's progress could not be read");
            let mut response = axum::response::Html(
                "<p class=\"order-explainer\">We cannot show this order's progress just \
                 now. Reload the page to try again.</p>",
            )
            .into_response();
            *response.status_mut() = STOP_POLLING;
            response
        }
    }
}

/// The status that tells htmx to stop polling (and still swap the answer in).
const STOP_POLLING: http::StatusCode = match http::StatusCode::from_u16(286) {
    Ok(status) => status,
    Err(_) => http::StatusCode::OK,
};

/// `POST /orders/{id}/cancel`.
pub async fn cancel(
    State(site): State<Arc<Site>>,
    shopper: Shopper,
    Path(id): Path<String>,
) -> Response {
    let here = format!("/orders/{}", segment(&id));
    let cancelled: Result<Order, ApiError> = site
        .api
        .bodiless(
            Service::Orders,
            Method::POST,
            &format!("/{}/cancel", segment(&id)),
            shopper.token(),
        )
        .await;
    match cancelled {
        Ok(_) => {
            let mut jar = CookieJar::default();
            jar.flash("order-cancelled", site.config.secure_cookies);
            see_other(&here, jar)
        }
        Err(error) => errors::failure(&shopper, &error, &here),
    }
}

/// A cursor in a query string.
#[derive(Debug, Default, Deserialize)]
pub struct CursorQuery {
    /// Where the page starts.
    #[serde(default)]
    pub cursor: String,
}

/// A row of the order history.
pub struct OrderRow {
    /// The order's id.
    pub id: String,
    /// Its number.
    pub number: String,
    /// When it was placed.
    pub placed: String,
    /// The same, for `<time>`.
    pub placed_iso: String,
    /// Its progress (for the badge).
    pub progress: Progress,
    /// Its total.
    pub total: String,
}

/// The order history.
#[derive(Template)]
#[template(path = "orders.html")]
pub struct OrdersPage {
    chrome: Chrome,
    orders: Vec<OrderRow>,
    next_page: Option<String>,
    first_page: Option<String>,
}

/// `GET /orders`: the customer's orders, newest first, ten a page.
pub async fn list(
    State(site): State<Arc<Site>>,
    shopper: Shopper,
    Query(query): Query<CursorQuery>,
) -> Response {
    if shopper.user.is_none() {
        return errors::sign_in_again("/orders");
    }
    let path = format!(
        "/{}",
        // `mine`: an admin's own orders, not every customer's.
        encode_query(&[("limit", "10"), ("mine", "true"), ("cursor", &query.cursor)])
    );
    let page: Page<Order> = match site.api.get(Service::Orders, &path, shopper.token()).await {
        Ok(page) => page,
        Err(error) => return errors::failure(&shopper, &error, "/orders"),
    };
    render(&OrdersPage {
        chrome: Chrome::new(&shopper, "Your orders", Section::Orders),
        orders: page.items.iter().map(row).collect(),
        next_page: page
            .next_cursor
            .map(|cursor| format!("/orders{}", encode_query(&[("cursor", &cursor)]))),
        first_page: (!query.cursor.is_empty()).then(|| "/orders".to_owned()),
    })
}

/// An order as a row of a table.
pub fn row(order: &Order) -> OrderRow {
    OrderRow {
        id: order.id.clone(),
        number: number(&order.id),
        placed: when(order.placed_at_ms),
        placed_iso: iso(order.placed_at_ms),
        progress: progress(order),
        total: order.total.price_tag(),
    }
}

/// A message in the inbox's list.
pub struct MessageRow {
    /// Its id.
    pub id: String,
    /// Its subject.
    pub subject: String,
    /// When it was written, for `<time>`.
    pub at_iso: String,
    /// The same, for people (`2026-12-07 00:26`, UTC).
    pub at: String,
    /// The start of its body.
    pub preview: String,
}

impl From<Notification> for MessageRow {
    fn from(message: Notification) -> Self {
        let at = message
            .created_at
            .get(..16)
            .unwrap_or(&message.created_at)
            .replace('T', " ");
        let flat: String = message
            .body
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        let preview = if flat.chars().count() > 120 {
            format!("{}…", flat.chars().take(119).collect::<String>())
        } else {
            flat
        };
        Self {
            id: message.id,
            subject: message.subject,
            at_iso: message.created_at,
            at,
            preview,
        }
    }
}

/// The inbox.
#[derive(Template)]
#[template(path = "inbox.html")]
pub struct InboxPage {
    chrome: Chrome,
    messages: Vec<MessageRow>,
    next_page: Option<String>,
    first_page: Option<String>,
}

/// One email.
#[derive(Template)]
#[template(path = "email.html")]
pub struct EmailPage {
    chrome: Chrome,
    message: Notification,
}

/// `GET /inbox`: the emails the shop sent the customer, newest first.
pub async fn inbox(
    State(site): State<Arc<Site>>,
    shopper: Shopper,
    Query(query): Query<CursorQuery>,
) -> Response {
    if shopper.user.is_none() {
        return errors::sign_in_again("/inbox");
    }
    let path = format!(
        "/{}",
        encode_query(&[("limit", "20"), ("cursor", &query.cursor)])
    );
    let page: Page<Notification> = match site
        .api
        .get(Service::Notifications, &path, shopper.token())
        .await
    {
        Ok(page) => page,
        Err(error) => return errors::failure(&shopper, &error, "/inbox"),
    };
    render(&InboxPage {
        chrome: Chrome::new(&shopper, "Inbox", Section::Inbox),
        messages: page.items.into_iter().map(MessageRow::from).collect(),
        next_page: page
            .next_cursor
            .map(|cursor| format!("/inbox{}", encode_query(&[("cursor", &cursor)]))),
        first_page: (!query.cursor.is_empty()).then(|| "/inbox".to_owned()),
    })
}

/// `GET /inbox/{id}`.
pub async fn email(
    State(site): State<Arc<Site>>,
    shopper: Shopper,
    Path(id): Path<String>,
) -> Response {
    let here = format!("/inbox/{}", segment(&id));
    if shopper.user.is_none() {
        return errors::sign_in_again(&here);
    }
    let message: Notification = match site
        .api
        .get(
            Service::Notifications,
            &format!("/{}", segment(&id)),
            shopper.token(),
        )
        .await
    {
        Ok(message) => message,
        Err(error) => return errors::failure(&shopper, &error, &here),
    };
    render(&EmailPage {
        chrome: Chrome::new(&shopper, message.subject.clone(), Section::Inbox),
        message,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::TimelineEntry;

    fn order(status: &str, reason: Option<&str>, events: &[&str]) -> Order {
        Order {
            id: "01a24de4-ffdc-7583-8435-c9208c583895".to_owned(),
            status: status.to_owned(),
            lines: Vec::new(),
            total: contracts::Money::new(2900, contracts::Currency::EUR),
            reason: reason.map(str::to_owned),
            placed_at_ms: 0,
            timeline: events
                .iter()
                .map(|event| TimelineEntry {
                    event: (*event).to_owned(),
                    status: status.to_owned(),
                    at_ms: 0,
                })
                .collect(),
            trace_id: None,
        }
    }

    fn states(progress: &Progress) -> Vec<&'static str> {
        progress.steps.iter().map(|step| step.state).collect()
    }

    #[test]
    fn a_confirmed_order_has_every_step_done() {
        let done = progress(&order(
            "confirmed",
            None,
            &[
                "placed",
                "stock_reserved",
                "payment_authorized",
                "stock_committed",
            ],
        ));
        assert_eq!(states(&done), ["done"; 4]);
        assert!(!done.moving);
        assert_eq!(done.badge, "Confirmed");
    }

    #[test]
    fn an_order_in_progress_shows_where_it_is() {
        let waiting = progress(&order(
            "stock_reserved",
            None,
            &["placed", "stock_reserved"],
        ));
        assert_eq!(states(&waiting), ["done", "done", "current", "todo"]);
        assert!(waiting.moving);
    }

    #[test]
    fn a_declined_card_fails_the_payment_step_and_says_nothing_was_charged() {
        let declined = progress(&order(
            "cancelled",
            Some("payment_declined"),
            &[
                "placed",
                "stock_reserved",
                "payment_declined",
                "stock_released",
                "cancelled",
            ],
        ));
        assert_eq!(states(&declined), ["done", "done", "failed", "todo"]);
        assert!(declined.explainer.contains("card was declined"));
        assert!(declined.explainer.contains("not been charged"));
        assert!(!declined.moving);
    }

    #[test]
    fn a_payment_the_bank_would_not_release_fails_the_payment_step() {
        let failed = progress(&order(
            "cancelled",
            Some("payment_failed"),
            &[
                "placed",
                "stock_reserved",
                "payment_authorized",
                "stock_committed",
                "payment_failed",
                "stock_returned",
                "cancelled",
            ],
        ));
        assert_eq!(states(&failed), ["done", "done", "failed", "todo"]);
        assert!(failed.explainer.contains("not been charged"));
        let refund = progress(&order("refund_failed", None, &["placed"]));
        assert!(!refund.moving);
        assert!(refund.explainer.contains("another way"));
    }

    #[test]
    fn missing_stock_fails_the_stock_step() {
        let short = progress(&order(
            "cancelled",
            Some("out_of_stock"),
            &["placed", "stock_rejected", "cancelled"],
        ));
        assert_eq!(states(&short), ["done", "failed", "todo", "todo"]);
    }

    #[test]
    fn order_numbers_are_the_emails() {
        assert_eq!(
            number("01a24de4-ffdc-7583-8435-c9208c583895"),
            "BZ-208C5-83895"
        );
    }
}
