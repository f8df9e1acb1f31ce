//! Checkout: pay with a saved card or a new one, and place the order.
//!
//! A new card's number goes from the form straight to payments, which keeps only a
//! token, the brand and the last four digits; the storefront neither logs nor stores
//! it, and never puts it back into a page. The order is placed with an idempotency key
//! that the page carries in a hidden field, so a double click or a resent form places
//! one order.

use std::sync::Arc;

use askama::Template;
use axum::extract::State;
use axum::response::Response;
use http::Method;
use serde::Deserialize;

use super::cart::{Priced, priced};
use super::{Chrome, FieldErrors, Flash, Section, errors, render_with};
use crate::Site;
use crate::api::{ApiError, Order, PaymentMethod, PaymentMethods, Service};
use crate::session::{CookieJar, Shopper, random_token, see_other};

/// A test card of the demo shop's card simulator.
pub struct TestCard {
    /// Its number, grouped.
    pub number: &'static str,
    /// What the simulator does with it.
    pub outcome: &'static str,
}

/// The card simulator's test cards, as payments defines them.
const TEST_CARDS: [TestCard; 5] = [
    TestCard {
        number: "4242 4242 4242 4242",
        outcome: "Approved",
    },
    TestCard {
        number: "4000 0000 0000 0002",
        outcome: "Declined by the bank",
    },
    TestCard {
        number: "4000 0000 0000 9995",
        outcome: "Declined: insufficient funds",
    },
    TestCard {
        number: "4000 0000 0000 0119",
        outcome: "Fails twice, then approved on retry",
    },
    TestCard {
        number: "4000 0000 0000 0077",
        outcome: "Approved, but slowly",
    },
];

/// The checkout page.
#[derive(Template)]
#[template(path = "checkout.html")]
pub struct CheckoutPage {
    chrome: Chrome,
    cart: Priced,
    methods: Vec<PaymentMethod>,
    /// The idempotency key of this page's order.
    key: String,
    /// The chosen method: a token or `new`.
    chosen: String,
    /// What the new-card fields said (never the number).
    exp_month: String,
    exp_year: String,
    errors: FieldErrors,
    test_cards: &'static [TestCard],
    years: Vec<i32>,
}

/// The release flag of the express checkout: a customer with a saved card pays with
/// it in one click, and can still choose another way.
pub const EXPRESS_CHECKOUT: &str = "storefront-express-checkout";

/// The express checkout page: the saved card, one button.
#[derive(Template)]
#[template(path = "checkout_express.html")]
pub struct ExpressPage {
    chrome: Chrome,
    cart: Priced,
    method: PaymentMethod,
    /// The idempotency key of this page's order.
    key: String,
}

impl CheckoutPage {
    fn other_errors(&self) -> Vec<String> {
        self.errors
            .others(&["number", "exp_month", "exp_year", "cvc", "payment_method"])
    }
}

/// `GET /checkout`: for a signed-in customer with something in the cart. The express
/// page when its release flag is on for the customer and they have a saved card, unless
/// they asked for every way to pay (`?pay=another`).
pub async fn show(
    State(site): State<Arc<Site>>,
    shopper: Shopper,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
) -> Response {
    let Some(user) = &shopper.user else {
        return see_other("/sign-in?next=%2Fcheckout", CookieJar::default());
    };
    let every_way = query
        .as_deref()
        .is_some_and(|query| query.split('&').any(|pair| pair == "pay=another"));
    let customer = platform::flags::EvaluationContext::new()
        .targeting_key(user.id.as_str())
        .with("role", if user.is_admin() { "admin" } else { "customer" });
    let express = !every_way && site.flags.boolean(EXPRESS_CHECKOUT, &customer, false);
    page(
        &site,
        &shopper,
        Form::default(),
        FieldErrors::default(),
        None,
        express,
    )
    .await
}

/// What the checkout form sends.
#[derive(Default, Deserialize)]
pub struct Form {
    /// The order's idempotency key, from the page.
    #[serde(default)]
    pub key: String,
    /// A saved card's token, or `new`.
    #[serde(default)]
    pub payment_method: String,
    /// A new card's number.
    #[serde(default)]
    pub number: String,
    /// Its expiry month.
    #[serde(default)]
    pub exp_month: String,
    /// Its expiry year.
    #[serde(default)]
    pub exp_year: String,
    /// Its security code.
    #[serde(default)]
    pub cvc: String,
}

async fn page(
    site: &Site,
    shopper: &Shopper,
    form: Form,
    errors: FieldErrors,
    flash: Option<Flash>,
    express: bool,
) -> Response {
    let token = shopper.token();
    let (cart, methods) = tokio::join!(
        priced(site, shopper),
        site.api
            .get::<PaymentMethods>(Service::Payments, "/methods", token)
    );
    let (cart, methods) = match (cart, methods) {
        (Ok(cart), Ok(methods)) => (cart, methods.items),
        (Err(error), _) | (_, Err(error)) => return errors::failure(shopper, &error, "/checkout"),
    };
    if cart.rows.is_empty() {
        return see_other("/cart", CookieJar::default());
    }
    let chosen = if form.payment_method.is_empty() {
        methods
            .first()
            .map_or_else(|| "new".to_owned(), |method| method.token.clone())
    } else {
        form.payment_method
    };
    let key = if form.key.is_empty() {
        random_token()
    } else {
        form.key
    };
    let this_year = 1970 + i32::try_from(platform::clock::now_secs() / 31_556_952).unwrap_or(56);
    let mut chrome = Chrome::new(shopper, "Checkout", Section::Cart);
    if let Some(flash) = flash {
        chrome = chrome.with_flash(flash);
    }
    if express
        && errors.is_empty()
        && let Some(method) = methods.first().cloned()
    {
        return render_with(
            http::StatusCode::OK,
            &ExpressPage {
                chrome,
                cart,
                method,
                key,
            },
        );
    }
    let status = if errors.is_empty() {
        http::StatusCode::OK
    } else {
        http::StatusCode::UNPROCESSABLE_ENTITY
    };
    render_with(
        status,
        &CheckoutPage {
            chrome,
            cart,
            methods,
            key,
            chosen,
            exp_month: form.exp_month,
            exp_year: form.exp_year,
            errors,
            test_cards: if site.config.show_test_cards {
                &TEST_CARDS
            } else {
                &[]
            },
            years: (this_year..this_year + 15).collect(),
        },
    )
}

/// `POST /checkout`: saves a new card if one was given, then places the order.
pub async fn place(
    State(site): State<Arc<Site>>,
    shopper: Shopper,
    form: Result<axum::Form<Form>, axum::extract::rejection::FormRejection>,
) -> Response {
    let Some(token) = shopper.token() else {
        return see_other("/sign-in?next=%2Fcheckout", CookieJar::default());
    };
    let Ok(axum::Form(mut form)) = form else {
        return page(
            &site,
            &shopper,
            Form::default(),
            FieldErrors::default(),
            Some(Flash::error("The form was incomplete; please try again.")),
            false,
        )
        .await;
    };
    if form.key.is_empty() || form.key.len() > 100 {
        form.key = random_token();
    }
    let method = if form.payment_method == "new" || form.payment_method.is_empty() {
        match new_card(&site, token, &form).await {
            Ok(method) => method,
            Err(NewCard::Invalid(errors)) => {
                form.payment_method = "new".to_owned();
                return page(&site, &shopper, form, errors, None, false).await;
            }
            Err(NewCard::Failed(error)) => {
                return errors::failure(&shopper, &error, "/checkout");
            }
        }
    } else {
        form.payment_method.clone()
    };
    let body = serde_json::json!({"payment_method": method});
    let placed: Result<Order, ApiError> = site
        .api
        .call(
            Service::Orders,
            Method::POST,
            "/",
            Some(token),
            crate::api::Body::Json(&body),
            &[("idempotency-key", &form.key)],
        )
        .await;
    match placed {
        Ok(order) => see_other(
            &format!("/orders/{}", crate::api::segment(&order.id)),
            CookieJar::default(),
        ),
        Err(ApiError::Refused { problem, .. }) if problem.kind == "empty-cart" => {
            see_other("/cart", CookieJar::default())
        }
        Err(ApiError::Refused { problem, status }) if status.is_client_error() => {
            // A card removed meanwhile, too many lines, a reused key: say so here.
            form.payment_method = method;
            let text = if problem.detail.is_empty() {
                "The order was refused.".to_owned()
            } else {
                problem.detail
            };
            let mut retry = form;
            retry.key = random_token();
            page(
                &site,
                &shopper,
                retry,
                FieldErrors::default(),
                Some(Flash::error(text)),
                false,
            )
            .await
        }
        Err(error @ (ApiError::Unavailable(_) | ApiError::Throttled(_))) => {
            // The order may have been placed before the answer was lost: the page keeps
            // its idempotency key, so sending it again cannot place a second one.
            tracing::warn!(%error, "placing an order gave no answer");
            form.payment_method = method;
            let message = "We could not confirm your order just now. Place it again: it will \
                           not be placed twice, and your orders page shows it if it went through.";
            page(
                &site,
                &shopper,
                form,
                FieldErrors::default(),
                Some(Flash::error(message)),
                false,
            )
            .await
        }
        Err(error) => errors::failure(&shopper, &error, "/checkout"),
    }
}

enum NewCard {
    /// The card was refused: say why next to the fields.
    Invalid(FieldErrors),
    /// Payments could not be asked.
    Failed(ApiError),
}

/// Registers the new card of `form` with payments; its token.
async fn new_card(site: &Site, token: &str, form: &Form) -> Result<String, NewCard> {
    let number = |field: &str, text: &str| -> Result<i64, NewCard> {
        text.trim()
            .parse()
            .map_err(|_| NewCard::Invalid(FieldErrors::one(field, "choose one")))
    };
    if form.number.trim().is_empty() {
        return Err(NewCard::Invalid(FieldErrors::one(
            "number",
            "enter the card number",
        )));
    }
    let body = serde_json::json!({
        "number": form.number,
        "exp_month": number("exp_month", &form.exp_month)?,
        "exp_year": number("exp_year", &form.exp_year)?,
        "cvc": form.cvc,
    });
    let saved: Result<PaymentMethod, ApiError> = site
        .api
        .send(
            Service::Payments,
            Method::POST,
            "/methods",
            Some(token),
            &body,
        )
        .await;
    match saved {
        Ok(method) => Ok(method.token),
        Err(error @ ApiError::Refused { .. }) => {
            let mut errors = FieldErrors::from_api(&error);
            if errors.is_empty() {
                let detail = match &error {
                    ApiError::Refused { problem, .. } => problem.detail.clone(),
                    _ => String::new(),
                };
                errors = FieldErrors::one("number", detail);
            }
            Err(NewCard::Invalid(errors))
        }
        Err(error) => Err(NewCard::Failed(error)),
    }
}
