//! The services' public REST APIs, as the storefront calls them.
//!
//! The storefront owns no business data: every page is made of answers to the same
//! REST calls a mobile app would make, sent with the signed-in shopper's own access
//! token, so each service decides what the shopper may see or do exactly as it does
//! for any client. It calls the services directly on their internal addresses rather
//! than back through the gateway: the page request already passed the gateway's edge
//! policy once, and a second pass would count every page against the shopper's rate
//! limit several times and add a hop to each call.
//!
//! The answer types here are the storefront's reading of each API: only the fields it
//! shows, so a field a service adds changes nothing here.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use contracts::Money;
use contracts::catalog::{Category, CategoryList, Product, ProductPage};
use contracts::identity::{Role, TokenResponse};
use http::{Method, StatusCode};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::config::Config;

/// A service the storefront calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Service {
    /// Accounts and tokens.
    Identity,
    /// Products and categories.
    Catalog,
    /// Availability and stock levels.
    Inventory,
    /// The signed-in customer's cart.
    Cart,
    /// Payment methods.
    Payments,
    /// Orders.
    Orders,
    /// The customer's emails.
    Notifications,
}

impl Service {
    /// Its name, as shoppers may read it in an error page.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Identity => "accounts",
            Self::Catalog => "catalog",
            Self::Inventory => "stock",
            Self::Cart => "cart",
            Self::Payments => "payments",
            Self::Orders => "orders",
            Self::Notifications => "messages",
        }
    }
}

/// One invalid field, as a service named it.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
pub struct FieldProblem {
    /// The field (a JSON field or a query parameter).
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

/// A problem body (RFC 9457) a service answered with.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct ProblemBody {
    /// The stable kind, e.g. `/problems/validation` or `empty-cart`.
    #[serde(rename = "type", default)]
    pub kind: String,
    /// What went wrong, for people.
    #[serde(default)]
    pub detail: String,
    /// The offending fields of a validation problem.
    #[serde(default)]
    pub errors: Vec<FieldProblem>,
}

/// Why a call gave no answer to use.
#[derive(Clone, Debug, thiserror::Error)]
pub enum ApiError {
    /// The service refused the request (4xx other than 401 and 429): the problem says
    /// why, in words that can be shown.
    #[error("{status}: {}", problem.detail)]
    Refused {
        /// The status the service answered.
        status: StatusCode,
        /// Its explanation.
        problem: ProblemBody,
    },
    /// The access token was refused (expired or revoked): sign in again.
    #[error("not signed in")]
    Unauthorized,
    /// The shopper is sending too much; try again after the seconds given.
    #[error("too many requests")]
    Throttled(u64),
    /// The service did not answer, answered late, or failed (5xx).
    #[error("{} is unavailable", .0.as_str())]
    Unavailable(Service),
}

impl ApiError {
    /// The status of a refusal, if it was one.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            Self::Refused { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Whether the service said the thing asked for does not exist.
    pub fn is_not_found(&self) -> bool {
        self.status() == Some(StatusCode::NOT_FOUND)
    }
}

/// A client of every service's REST API; cheap to clone.
#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    urls: std::sync::Arc<BTreeMap<&'static str, String>>,
    /// The shop's forwarding secret, by which identity believes the shopper's address.
    forwarding_secret: Option<platform::config::Secret>,
}

/// The body of a call.
pub enum Body<'a> {
    /// None.
    Empty,
    /// A JSON document.
    Json(&'a serde_json::Value),
}

impl Api {
    /// A client of the services at the URLs of `config`.
    pub fn new(config: &Config) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(config.call_timeout_ms))
            .connect_timeout(Duration::from_millis(config.call_timeout_ms.min(1_000)))
            .pool_max_idle_per_host(64)
            .pool_idle_timeout(platform::http::CLIENT_IDLE_TIMEOUT)
            .build()?;
        let urls = [
            (Service::Identity, &config.identity_url),
            (Service::Catalog, &config.catalog_url),
            (Service::Inventory, &config.inventory_url),
            (Service::Cart, &config.cart_url),
            (Service::Payments, &config.payments_url),
            (Service::Orders, &config.orders_url),
            (Service::Notifications, &config.notifications_url),
        ]
        .into_iter()
        .map(|(service, url)| (service.as_str(), url.trim_end_matches('/').to_owned()))
        .collect();
        Ok(Self {
            http,
            urls: std::sync::Arc::new(urls),
            forwarding_secret: config.forwarding_secret.clone(),
        })
    }

    /// Sends `method path` to `service` with `token` (if signed in), `body` and
    /// `headers`; the decoded answer, or why there is none.
    pub async fn call<T: DeserializeOwned>(
        &self,
        service: Service,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Body<'_>,
        headers: &[(&str, &str)],
    ) -> Result<T, ApiError> {
        let base = self.urls.get(service.as_str()).map_or("", String::as_str);
        let mut request = self.http.request(method, format!("{base}{path}"));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Body::Json(json) = body {
            request = request.json(json);
        }
        let response = request.send().await.map_err(|error| {
            tracing::warn!(service = service.as_str(), %error, "a call failed");
            ApiError::Unavailable(service)
        })?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(http::header::RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse().ok())
            .unwrap_or(1);
        let bytes = response
            .bytes()
            .await
            .map_err(|_| ApiError::Unavailable(service))?;
        if status.is_success() {
            let bytes = if bytes.is_empty() {
                &b"null"[..]
            } else {
                &bytes
            };
            return serde_json::from_slice(bytes).map_err(|error| {
                tracing::error!(service = service.as_str(), %error, "an answer did not parse");
                ApiError::Unavailable(service)
            });
        }
        match status {
            StatusCode::UNAUTHORIZED => Err(ApiError::Unauthorized),
            StatusCode::TOO_MANY_REQUESTS => Err(ApiError::Throttled(retry_after)),
            status if status.is_client_error() => Err(ApiError::Refused {
                status,
                problem: serde_json::from_slice(&bytes).unwrap_or_default(),
            }),
            _ => Err(ApiError::Unavailable(service)),
        }
    }

    /// `GET path` of `service`.
    pub async fn get<T: DeserializeOwned>(
        &self,
        service: Service,
        path: &str,
        token: Option<&str>,
    ) -> Result<T, ApiError> {
        self.call(service, Method::GET, path, token, Body::Empty, &[])
            .await
    }

    /// `method path` of `service` without a body (a deletion, an action on a
    /// resource).
    pub async fn bodiless<T: DeserializeOwned>(
        &self,
        service: Service,
        method: Method,
        path: &str,
        token: Option<&str>,
    ) -> Result<T, ApiError> {
        self.call(service, method, path, token, Body::Empty, &[])
            .await
    }

    /// `method path` of `service` with a JSON body.
    pub async fn send<T: DeserializeOwned>(
        &self,
        service: Service,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: &serde_json::Value,
    ) -> Result<T, ApiError> {
        self.call(service, method, path, token, Body::Json(body), &[])
            .await
    }

    /// One page of products.
    pub async fn products(&self, query: &[(&str, &str)]) -> Result<ProductPage, ApiError> {
        let query = encode_query(query);
        self.get(Service::Catalog, &format!("/products{query}"), None)
            .await
    }

    /// A product by id or slug.
    pub async fn product(&self, key: &str) -> Result<Product, ApiError> {
        self.get(
            Service::Catalog,
            &format!("/products/{}", segment(key)),
            None,
        )
        .await
    }

    /// Every category.
    pub async fn categories(&self) -> Result<Vec<Category>, ApiError> {
        let list: CategoryList = self.get(Service::Catalog, "/categories", None).await?;
        Ok(list.items)
    }

    /// How many of a product can be bought now.
    pub async fn availability(&self, product_id: &str) -> Result<i64, ApiError> {
        let availability: Availability = self
            .get(
                Service::Inventory,
                &format!("/stock/{}", segment(product_id)),
                None,
            )
            .await?;
        Ok(availability.available)
    }

    /// Signs in from `client`'s address; tokens for the account.
    pub async fn sign_in(
        &self,
        email: &str,
        password: &str,
        client: Option<IpAddr>,
    ) -> Result<TokenResponse, ApiError> {
        let body = serde_json::json!({"email": email, "password": password});
        self.from_client(Method::POST, "/token", None, &body, client)
            .await
    }

    /// Exchanges a refresh token for fresh tokens, for `client`.
    pub async fn refresh(
        &self,
        refresh_token: &str,
        client: Option<IpAddr>,
    ) -> Result<TokenResponse, ApiError> {
        let body = serde_json::json!({"refresh_token": refresh_token});
        self.from_client(Method::POST, "/refresh", None, &body, client)
            .await
    }

    /// A call to identity on behalf of the shopper at `client`: identity throttles
    /// sign-in per client network, so it must hear whose attempt it is (it believes
    /// the header from the storefront, as from the gateway).
    pub async fn from_client<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: &serde_json::Value,
        client: Option<IpAddr>,
    ) -> Result<T, ApiError> {
        let forwarded = client.map(|client| client.to_string());
        let mut headers: Vec<(&str, &str)> = Vec::new();
        if let Some(client) = forwarded.as_deref() {
            headers.push(("x-forwarded-for", client));
            if let Some(secret) = &self.forwarding_secret {
                headers.push((platform::net::FORWARDED_BY, secret.expose()));
            }
        }
        self.call(
            Service::Identity,
            method,
            path,
            token,
            Body::Json(body),
            &headers,
        )
        .await
    }
}

/// `?a=1&b=2` with each value percent-encoded; empty values left out.
pub fn encode_query(pairs: &[(&str, &str)]) -> String {
    let encoded: Vec<String> = pairs
        .iter()
        .filter(|(_, value)| !value.is_empty())
        .map(|(name, value)| format!("{name}={}", percent_encode(value)))
        .collect();
    if encoded.is_empty() {
        String::new()
    } else {
        format!("?{}", encoded.join("&"))
    }
}

/// `value` fit for one path segment: anything but unreserved characters is encoded, so
/// a slug or id typed into a URL cannot reach another path of the service.
/// (Dots too, so `..` stays a name and never climbs a level.)
pub fn segment(value: &str) -> String {
    percent_encode(value).replace('.', "%2E")
}

fn percent_encode(value: &str) -> String {
    let mut encoded = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// Inventory's answer for one product.
#[derive(Clone, Debug, Deserialize)]
pub struct Availability {
    /// Units that can be bought now.
    pub available: i64,
}

/// One product's stock, as an admin sees it.
#[derive(Clone, Debug, Deserialize)]
pub struct StockLevels {
    /// The product.
    pub product_id: String,
    /// Units that can be bought now.
    pub available: i64,
    /// Units set aside for orders in progress.
    pub reserved: i64,
    /// Units sold.
    pub sold: i64,
    /// Whether the product was removed from the catalog.
    #[serde(default)]
    pub discontinued: bool,
}

/// The signed-in customer's cart, priced by the catalog.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct CartView {
    /// Its lines.
    pub lines: Vec<CartLine>,
    /// What it costs, if every line could be priced.
    pub total: Option<Money>,
}

/// One line of a cart.
#[derive(Clone, Debug, Deserialize)]
pub struct CartLine {
    /// The product.
    pub product_id: String,
    /// Its name now.
    pub name: String,
    /// How many.
    pub quantity: i64,
    /// Its price now.
    pub unit_price: Money,
    /// `unit_price` times `quantity`.
    pub line_total: Money,
    /// How many can be bought now, if inventory answered.
    pub available: Option<i64>,
}

/// A saved card.
#[derive(Clone, Debug, Deserialize)]
pub struct PaymentMethod {
    /// What an order names it by.
    pub token: String,
    /// `visa`, `mastercard`, `amex`…
    pub brand: String,
    /// The last four digits.
    pub last4: String,
    /// Expiry month.
    pub exp_month: u32,
    /// Expiry year.
    pub exp_year: u32,
}

/// The customer's saved cards.
#[derive(Clone, Debug, Deserialize)]
pub struct PaymentMethods {
    /// The cards.
    pub items: Vec<PaymentMethod>,
}

/// One line of an order, priced when it was placed.
#[derive(Clone, Debug, Deserialize)]
pub struct OrderLine {
    /// The product.
    pub product_id: String,
    /// Its name then.
    pub name: String,
    /// How many.
    pub quantity: i64,
    /// Its price then.
    pub unit_price: Money,
}

/// An order as orders shows it.
#[derive(Clone, Debug, Deserialize)]
pub struct Order {
    /// Its id.
    pub id: String,
    /// Where the saga is: `placed`, `stock_reserved`, `payment_held`, `paid`,
    /// `confirmed`, `cancelling`, `cancelled`, `refunding`, `refunded`…
    pub status: String,
    /// What was ordered.
    pub lines: Vec<OrderLine>,
    /// What it costs.
    pub total: Money,
    /// Why it was cancelled, as a code (`payment_declined`, `out_of_stock`…).
    pub reason: Option<String>,
    /// When it was placed, in Unix milliseconds.
    pub placed_at_ms: i64,
    /// Its steps so far (only in a single order's answer).
    #[serde(default)]
    pub timeline: Vec<TimelineEntry>,
    /// The trace it was placed in, if recorded.
    #[serde(default)]
    pub trace_id: Option<String>,
}

/// One step of an order's history.
#[derive(Clone, Debug, Deserialize)]
pub struct TimelineEntry {
    /// What happened, as a code (`placed`, `stock_reserved`, `payment_declined`…).
    pub event: String,
    /// The order's status after it.
    pub status: String,
    /// When, in Unix milliseconds.
    pub at_ms: i64,
}

/// A page of a listing with a cursor to the next one.
#[derive(Clone, Debug, Deserialize)]
pub struct Page<T> {
    /// This page.
    pub items: Vec<T>,
    /// The cursor of the next page, if there is one.
    pub next_cursor: Option<String>,
}

/// An email the shop sent the customer.
#[derive(Clone, Debug, Deserialize)]
pub struct Notification {
    /// Its id.
    pub id: String,
    /// Its subject line.
    pub subject: String,
    /// Its plain-text body.
    pub body: String,
    /// When it was written (RFC 3339).
    pub created_at: String,
    /// The order it is about, if any.
    pub order_id: Option<String>,
}

/// The signed-in account.
#[derive(Clone, Debug, Deserialize)]
pub struct Account {
    /// Its id.
    pub id: String,
    /// Its email address.
    pub email: String,
    /// What it may do.
    pub roles: Vec<Role>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_and_segments_are_encoded() {
        assert_eq!(
            encode_query(&[("q", "tea & towel"), ("category", ""), ("limit", "12")]),
            "?q=tea%20%26%20towel&limit=12"
        );
        assert_eq!(encode_query(&[("q", "")]), "");
        assert_eq!(segment("../admin?x=1"), "%2E%2E%2Fadmin%3Fx%3D1");
        assert_eq!(segment("enamel-camp-mug"), "enamel-camp-mug");
    }
}
