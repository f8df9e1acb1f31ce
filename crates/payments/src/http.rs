//! Payments' REST API: customers' payment methods, an order's payment, and the ledger's
//! balances for admins.

use std::collections::BTreeMap;
use std::fmt;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use contracts::Money;
use contracts::orders::OrderId;
use platform::auth::{Admin, AuthUser};
use platform::clock::now_ms;
use platform::http::{BearerAuth, EdgeResponses, Json};
use platform::problem::{FieldError, Problem};
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};

use crate::cards::{self, Card, YearMonth};
use crate::domain::{Method, Payment};
use crate::ledger::{Balance, Kind};
use crate::ops::{self, Payments, RegisterError, Viewer};

/// The OpenAPI 3.1 document of this API.
#[derive(OpenApi)]
#[openapi(
    info(title = "Bazaar payments", version = "1", description = "Payment methods, payments and the ledger."),
    servers((url = "/api/payments", description = "through the gateway")),
    paths(register_method, list_methods, get_method, delete_method, get_payment, balances),
    components(schemas(NewMethod, MethodView, MethodList, PaymentView, BalanceView, Problem, FieldError)),
    modifiers(&BearerAuth, &EdgeResponses, &ExpiryYears),
    tags(
        (name = "methods", description = "A customer's saved cards"),
        (name = "payments", description = "Orders' payments and the ledger"),
    )
)]
pub struct ApiDoc;

/// Gives `exp_year` the years a card is accepted for, which move with the calendar:
/// this year to [`cards::MAX_YEARS_AHEAD`] years ahead, as of when the document is
/// made (at start).
struct ExpiryYears;

impl utoipa::Modify for ExpiryYears {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{RefOr, Schema};
        let this_year = YearMonth::now().year;
        let Some(components) = openapi.components.as_mut() else {
            return;
        };
        if let Some(RefOr::T(Schema::Object(method))) = components.schemas.get_mut("NewMethod")
            && let Some(RefOr::T(Schema::Object(year))) = method.properties.get_mut("exp_year")
        {
            let years = |year: i32| utoipa::Number::Int(isize::try_from(year).unwrap_or(0));
            year.minimum = Some(years(this_year));
            year.maximum = Some(years(this_year + cards::MAX_YEARS_AHEAD));
        }
    }
}

/// The REST routes.
pub fn router(payments: Payments) -> Router {
    Router::new()
        .route("/methods", get(list_methods).post(register_method))
        .route("/methods/{token}", get(get_method).delete(delete_method))
        .route("/orders/{order_id}", get(get_payment))
        .route("/ledger/balances", get(balances))
        .route("/openapi.json", get(|| async { Json(ApiDoc::openapi()) }))
        .with_state(payments)
}

/// A card to save. The number and security code go to the card processor's vault and
/// are never stored or logged by Bazaar.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct NewMethod {
    /// The card number: 12 to 19 digits, spaces allowed.
    #[schema(value_type = String, example = "4242 4242 4242 4242", pattern = r"^[0-9 ]{12,40}$")]
    number: Secret,
    /// Expiry month, 1-12.
    #[schema(example = 12, minimum = 1, maximum = 12)]
    exp_month: i64,
    /// Expiry year, four digits.
    #[schema(example = 2030)]
    exp_year: i64,
    /// The security code: 3 or 4 digits.
    #[schema(value_type = String, example = "123", pattern = r"^[0-9]{3,4}$")]
    cvc: Secret,
}

/// A saved card, as its owner sees it.
#[derive(Debug, Serialize, ToSchema)]
struct MethodView {
    /// The token to pay with: `pm_` and 32 hex digits.
    token: String,
    /// The card's network: `visa`, `mastercard`, `amex`, `discover` or `other`.
    brand: String,
    /// The last four digits.
    last4: String,
    /// Expiry month.
    exp_month: i64,
    /// Expiry year.
    exp_year: i64,
    /// When it was saved, Unix ms.
    created_at_ms: i64,
}

/// A customer's saved cards, oldest first.
#[derive(Debug, Serialize, ToSchema)]
struct MethodList {
    items: Vec<MethodView>,
}

/// An order's payment.
#[derive(Debug, Serialize, ToSchema)]
struct PaymentView {
    order_id: String,
    /// `held`, `authorized`, `declined`, `captured`, `voided` or `refunded`.
    state: String,
    /// The order's amount; absent when the order was cancelled before it was paid.
    amount: Option<Money>,
    /// The payment method's token.
    payment_method: Option<String>,
    /// Why the fraud rules held it for review.
    hold_reasons: Vec<String>,
    /// Why it was declined.
    decline_reason: Option<String>,
    /// Reserved on the card, per the ledger.
    authorized: Option<Money>,
    /// Reservations cancelled, per the ledger.
    voided: Option<Money>,
    /// Taken, per the ledger.
    captured: Option<Money>,
    /// Given back, per the ledger.
    refunded: Option<Money>,
    /// When it was created, Unix ms.
    created_at_ms: i64,
    /// When it last changed, Unix ms.
    updated_at_ms: i64,
}

/// A ledger account's totals in one currency.
#[derive(Debug, Serialize, ToSchema)]
struct BalanceView {
    /// `customer_funds`, `authorized_holds` or `merchant_revenue`.
    account: String,
    /// Money that arrived in the account.
    debits: Money,
    /// Money that left it.
    credits: Money,
    /// Debits minus credits.
    balance: Money,
}

/// Saves a card for the signed-in customer.
#[utoipa::path(post, path = "/methods", tag = "methods", security(("bearer" = [])),
    request_body = NewMethod,
    responses(
        (status = 201, description = "Saved", body = MethodView),
        (status = 400, description = "Not a JSON object of the expected fields", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Too many saved cards", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid card details; each field says why", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The card processor did not answer", body = Problem, content_type = "application/problem+json"),
    ))]
async fn register_method(
    user: AuthUser,
    State(payments): State<Payments>,
    Json(body): Json<NewMethod>,
) -> Result<Response, Problem> {
    let card = Card::parse(
        &body.number.0,
        body.exp_month,
        body.exp_year,
        &body.cvc.0,
        YearMonth::now(),
    )
    .map_err(invalid_card)?;
    let method = match ops::register_method(&payments, &user.id, &card, now_ms()).await {
        Ok(method) => method,
        Err(error @ RegisterError::TooMany) => return Err(Problem::conflict(error.to_string())),
        Err(RegisterError::Refused) => {
            return Err(invalid_card(vec![FieldError::new(
                "number",
                "the card was refused by the card processor",
            )]));
        }
        Err(RegisterError::Unavailable) => {
            return Err(Problem::unavailable(
                "the card processor did not answer; try again shortly",
                5,
            ));
        }
        Err(RegisterError::Other(error)) => return Err(error.into()),
    };
    let location = format!("/methods/{}", method.token);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(method_view(method)),
    )
        .into_response())
}

/// The signed-in customer's saved cards.
#[utoipa::path(get, path = "/methods", tag = "methods", security(("bearer" = [])),
    responses(
        (status = 200, description = "Saved cards, oldest first", body = MethodList),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
    ))]
async fn list_methods(
    user: AuthUser,
    State(payments): State<Payments>,
) -> Result<Json<MethodList>, Problem> {
    let methods = ops::methods(&payments, &user.id).await?;
    Ok(Json(MethodList {
        items: methods.into_iter().map(method_view).collect(),
    }))
}

/// One of the signed-in customer's saved cards.
#[utoipa::path(get, path = "/methods/{token}", tag = "methods", security(("bearer" = [])),
    params(("token" = String, Path, pattern = r"^pm_[0-9a-f]{32}$", description = "The card's token")),
    responses(
        (status = 200, description = "The card", body = MethodView),
        (status = 400, description = "Not a token", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such card of yours", body = Problem, content_type = "application/problem+json"),
    ))]
async fn get_method(
    user: AuthUser,
    State(payments): State<Payments>,
    Path(token): Path<String>,
) -> Result<Json<MethodView>, Problem> {
    check_token(&token)?;
    let method = ops::method(&payments, &user.id, &token)
        .await?
        .ok_or_else(no_such_method)?;
    Ok(Json(method_view(method)))
}

/// Deletes one of the signed-in customer's saved cards.
#[utoipa::path(delete, path = "/methods/{token}", tag = "methods", security(("bearer" = [])),
    params(("token" = String, Path, pattern = r"^pm_[0-9a-f]{32}$", description = "The card's token")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "Not a token", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such card of yours", body = Problem, content_type = "application/problem+json"),
    ))]
async fn delete_method(
    user: AuthUser,
    State(payments): State<Payments>,
    Path(token): Path<String>,
) -> Result<StatusCode, Problem> {
    check_token(&token)?;
    if ops::delete_method(&payments, &user.id, &token, now_ms()).await? {
        tracing::info!(customer = user.id, token, "deleted a payment method");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(no_such_method())
    }
}

/// An order's payment: its customer's, or any for an admin.
#[utoipa::path(get, path = "/orders/{order_id}", tag = "payments", security(("bearer" = [])),
    params(("order_id" = uuid::Uuid, Path, description = "The order's id")),
    responses(
        (status = 200, description = "The payment", body = PaymentView),
        (status = 400, description = "Not an order id", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No payment of yours for this order", body = Problem, content_type = "application/problem+json"),
    ))]
async fn get_payment(
    user: AuthUser,
    State(payments): State<Payments>,
    Path(order_id): Path<String>,
) -> Result<Json<PaymentView>, Problem> {
    let order_id = OrderId::parse(&order_id)
        .map_err(|invalid| Problem::invalid_field("order_id", invalid.to_string()))?;
    let viewer = if user.is_admin() {
        Viewer::Admin
    } else {
        Viewer::Customer(&user.id)
    };
    let (payment, moved) = ops::payment(&payments, viewer, order_id)
        .await?
        .ok_or_else(|| Problem::not_found(format!("no payment of yours for order {order_id}")))?;
    Ok(Json(payment_view(payment, &moved)))
}

/// Every ledger account's balance, per currency; admins only.
#[utoipa::path(get, path = "/ledger/balances", tag = "payments", security(("bearer" = [])),
    responses(
        (status = 200, description = "Balances by account and currency", body = [BalanceView]),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin", body = Problem, content_type = "application/problem+json"),
    ))]
async fn balances(
    _admin: Admin,
    State(payments): State<Payments>,
) -> Result<Json<Vec<BalanceView>>, Problem> {
    let balances = ops::balances(&payments).await?;
    Ok(Json(balances.into_iter().map(balance_view).collect()))
}

/// Card details the customer typed in, kept out of error messages: serde's messages
/// quote a mistyped value, and this one must never be echoed or logged.
struct Secret(String);

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SecretVisitor;

        impl Visitor<'_> for SecretVisitor {
            type Value = Secret;

            fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str("a string of digits")
            }

            fn visit_str<E: de::Error>(self, value: &str) -> Result<Secret, E> {
                Ok(Secret(value.to_owned()))
            }

            fn visit_string<E: de::Error>(self, value: String) -> Result<Secret, E> {
                Ok(Secret(value))
            }

            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Secret, E> {
                Err(E::custom("must be a string of digits, not a number"))
            }

            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Secret, E> {
                Err(E::custom("must be a string of digits, not a number"))
            }

            fn visit_i128<E: de::Error>(self, _: i128) -> Result<Secret, E> {
                Err(E::custom("must be a string of digits, not a number"))
            }

            fn visit_u128<E: de::Error>(self, _: u128) -> Result<Secret, E> {
                Err(E::custom("must be a string of digits, not a number"))
            }

            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Secret, E> {
                Err(E::custom("must be a string of digits, not a number"))
            }
        }

        // `deserialize_any`, so that numbers reach the visitor above instead of being
        // quoted in the deserializer's own "invalid type" message.
        deserializer.deserialize_any(SecretVisitor)
    }
}

fn invalid_card(fields: Vec<FieldError>) -> Problem {
    Problem::with_fields(StatusCode::UNPROCESSABLE_ENTITY, "invalid-card", fields)
}

fn check_token(token: &str) -> Result<(), Problem> {
    let valid = token.strip_prefix("pm_").is_some_and(|hex| {
        hex.len() == 32 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    });
    if valid {
        Ok(())
    } else {
        Err(Problem::invalid_field(
            "token",
            "must be a payment method token: pm_ and 32 hex digits",
        ))
    }
}

fn no_such_method() -> Problem {
    Problem::not_found("no such payment method of yours")
}

fn method_view(method: Method) -> MethodView {
    MethodView {
        token: method.token,
        brand: method.brand,
        last4: method.last4,
        exp_month: method.exp_month,
        exp_year: method.exp_year,
        created_at_ms: method.created_at_ms,
    }
}

fn payment_view(payment: Payment, moved: &BTreeMap<Kind, Money>) -> PaymentView {
    let amount = payment.amount();
    let of = |kind: Kind| {
        amount.map(|amount| {
            moved
                .get(&kind)
                .copied()
                .unwrap_or(Money::zero(amount.currency))
        })
    };
    PaymentView {
        state: payment.state().as_str().to_owned(),
        authorized: of(Kind::Authorize),
        voided: of(Kind::Void),
        captured: of(Kind::Capture),
        refunded: of(Kind::Refund),
        amount,
        payment_method: payment
            .charge()
            .and_then(|charge| charge.payment_method.clone()),
        hold_reasons: payment
            .hold_reasons
            .iter()
            .map(|reason| reason.as_str().to_owned())
            .collect(),
        decline_reason: payment
            .stage
            .decline_reason()
            .map(|reason| reason.as_str().to_owned()),
        order_id: payment.order_id.to_string(),
        created_at_ms: payment.created_at_ms,
        updated_at_ms: payment.updated_at_ms,
    }
}

fn balance_view(balance: Balance) -> BalanceView {
    BalanceView {
        account: balance.account.as_str().to_owned(),
        debits: balance.debits,
        credits: balance.credits,
        balance: balance.balance,
    }
}
