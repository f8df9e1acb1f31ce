//! The orders service's REST API: place an order (with an Idempotency-Key), read one's
//! own orders and their timelines, cancel before payment; admins list every order,
//! decide on held payments and refund.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use contracts::CustomerId;
use contracts::orders::OrderId;
use platform::auth::{Admin, AuthUser};
use platform::clock::now_ms;
use platform::db::Database;
use platform::http::{BearerAuth, EdgeResponses, Json, Query};
use platform::outbox::{Origin, Waker};
use platform::page::PageLimit;
use platform::problem::{FieldError, Problem};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, OpenApi, ToSchema};

use crate::domain::Status;
use crate::lookups::{LookupError, Lookups};
use crate::ops::{self, PlaceOrder, Placement, RequestError, Settings};
use crate::projection::{self, Filter, OrderView, TimelineEntry};
use crate::saga::Input;

/// The OpenAPI 3.1 document of this API.
#[derive(OpenApi)]
#[openapi(
    info(title = "Bazaar orders", version = "1", description = "Checkout and order history."),
    servers((url = "/api/orders", description = "through the gateway")),
    paths(place, list, stats, get_order, cancel, review, refund),
    components(schemas(PlaceOrder, OrderView, OrderPage, OrderDetail, OrderCounts, TimelineEntry, Status, Review, Problem, FieldError)),
    modifiers(&BearerAuth, &EdgeResponses),
    tags((name = "orders", description = "Orders and the checkout"))
)]
pub struct ApiDoc;

/// What the handlers share: the orders service, as its handlers see it.
#[derive(Clone)]
pub struct Orders {
    /// The service's database.
    pub db: Database,
    /// Clients for the cart and payments.
    pub lookups: Lookups,
    /// The saga's settings.
    pub settings: Settings,
    /// Wakes the outbox relay after a commit.
    pub relay: Waker,
    /// The most lines an order may have.
    pub max_lines: usize,
}

/// The REST routes.
pub fn router(state: Orders) -> Router {
    Router::new()
        .route("/", post(place).get(list))
        .route("/stats", get(stats))
        .route("/{id}", get(get_order))
        .route("/{id}/cancel", post(cancel))
        .route("/{id}/review", post(review))
        .route("/{id}/refund", post(refund))
        .route("/openapi.json", get(|| async { Json(ApiDoc::openapi()) }))
        .with_state(state)
}

/// The longest Idempotency-Key accepted.
const MAX_KEY_LEN: usize = 255;

fn idempotency_key(headers: &HeaderMap) -> Result<String, Problem> {
    let value = headers.get("idempotency-key").ok_or_else(|| {
        Problem::invalid_field(
            "Idempotency-Key",
            "the header is required: a unique value per order, e.g. a UUID, sent again unchanged on retries",
        )
    })?;
    match value.to_str() {
        Ok(key)
            if !key.is_empty()
                && key.len() <= MAX_KEY_LEN
                && key.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            Ok(key.to_owned())
        }
        _ => Err(Problem::invalid_field(
            "Idempotency-Key",
            "must be 1 to 255 visible ASCII characters",
        )),
    }
}

fn unavailable(error: LookupError) -> Problem {
    tracing::warn!("placing an order: {error}");
    match error {
        LookupError::Unavailable(service, _) => Problem::unavailable(
            format!("the {service} service is not answering; try again shortly"),
            2,
        ),
        LookupError::Malformed(..) => Problem::internal(),
    }
}

/// The answer to a placement: `202 Accepted` with the order's URL.
fn accepted(view: OrderView) -> Response {
    let location = format!("/api/orders/{}", view.id);
    let mut response = (StatusCode::ACCEPTED, Json(view)).into_response();
    if let Ok(location) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
}

/// A connection from the pool; a pool that cannot give one is a 503.
async fn connection(db: &Database) -> Result<sqlx::pool::PoolConnection<sqlx::Any>, Problem> {
    Ok(db.pool().acquire().await.map_err(anyhow::Error::from)?)
}

async fn view_of(
    db: &Database,
    order_id: &str,
) -> Result<(OrderView, Vec<TimelineEntry>), Problem> {
    let mut connection = connection(db).await?;
    projection::get(&mut connection, order_id)
        .await?
        .ok_or_else(|| Problem::not_found(format!("no order {order_id}")))
}

/// Places an order for the signed-in customer's cart. The work continues after the
/// answer: poll the order's URL to watch it.
#[utoipa::path(post, path = "/", tag = "orders", security(("bearer" = [])),
    params(("Idempotency-Key" = String, Header, pattern = r"^[!-~]{1,255}$", description = "A unique value per order; a retry with the same key and body gets the same order")),
    request_body = PlaceOrder,
    responses(
        (status = 202, description = "Placed (or placed before with this key); the Location header is the order's URL", body = OrderView),
        (status = 400, description = "A missing or invalid Idempotency-Key", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "An empty cart, a cart that costs nothing, an unknown payment method, or a key reused with another body", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The cart or payments is not answering", body = Problem, content_type = "application/problem+json"),
    ))]
async fn place(
    user: AuthUser,
    State(state): State<Orders>,
    headers: HeaderMap,
    origin: Origin,
    Json(body): Json<PlaceOrder>,
) -> Result<Response, Problem> {
    let key = idempotency_key(&headers)?;
    // Identity names every account by a UUID, and the saga's messages carry it as one.
    if CustomerId::parse(&user.id).is_err() {
        return Err(Problem::forbidden(
            "only an account made by identity can place orders",
        ));
    }
    // The customer's own token goes with the lookups: cart and payments answer only
    // for the customer it names.
    let bearer = platform::auth::bearer_token(&headers).map_err(Problem::from)?;
    let token = body.payment_method.trim();
    if token.is_empty() || token.len() > 100 {
        return Err(Problem::invalid_field(
            "payment_method",
            "must be a payment method token",
        ));
    }
    // The order records, and the saga authorizes with, the token as it is checked
    // below; the request is compared with a retry's in the same form.
    let body = PlaceOrder {
        payment_method: token.to_owned(),
    };
    let token = body.payment_method.as_str();
    let placement = match ops::previous(&state.db, &user.id, &key, &body).await? {
        Some(placement) => placement,
        None => {
            if !state
                .lookups
                .has_payment_method(&user.id, token, bearer)
                .await
                .map_err(unavailable)?
            {
                return Err(Problem::unprocessable(
                    "unknown-payment-method",
                    "payment_method is not one of your payment methods",
                ));
            }
            let basket = state
                .lookups
                .basket(&user.id, bearer)
                .await
                .map_err(unavailable)?;
            if basket.lines.is_empty() {
                return Err(Problem::unprocessable(
                    "empty-cart",
                    "your cart is empty: add products before placing an order",
                ));
            }
            if basket.total.amount_minor <= 0 {
                // A card cannot be charged nothing: such an order would only ever be
                // declined, after reserving its stock.
                return Err(Problem::unprocessable(
                    "free-order",
                    "this order costs nothing, and a card cannot pay nothing: add \
                     something with a price",
                ));
            }
            if basket.lines.len() > state.max_lines {
                return Err(Problem::unprocessable(
                    "too-many-lines",
                    format!("an order may have at most {} lines", state.max_lines),
                ));
            }
            let new = ops::NewOrder {
                customer_id: &user.id,
                key: &key,
                request: &body,
                basket,
            };
            let placement = ops::place(&state.db, new, &origin, &state.settings, now_ms()).await?;
            state.relay.wake();
            placement
        }
    };
    match placement {
        Placement::Placed(order_id) | Placement::Repeated(order_id) => {
            Ok(accepted(view_of(&state.db, &order_id).await?.0))
        }
        Placement::KeyReused => Err(Problem::unprocessable(
            "idempotency-key-reused",
            "this Idempotency-Key was used for a different request; use a new key for a new order",
        )),
    }
}

/// A page of orders.
#[derive(Debug, Serialize, ToSchema)]
struct OrderPage {
    items: Vec<OrderView>,
    /// Pass as `cursor` for the next page; absent on the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_cursor: Option<String>,
}

/// An order with its history.
#[derive(Debug, Serialize, ToSchema)]
struct OrderDetail {
    #[serde(flatten)]
    order: OrderView,
    timeline: Vec<TimelineEntry>,
}

/// The query of an order listing.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct ListParams {
    /// Orders per page, 1 to 100 (default 20).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    limit: Option<String>,
    /// `next_cursor` of the previous page: the id of the last order it held.
    #[param(format = Uuid)]
    cursor: Option<String>,
    /// Only orders in this status, e.g. `payment_held`.
    #[param(
        pattern = r"^(?:placed|stock_reserved|payment_held|paid|confirmed|rejected|cancelling|cancelled|refunding|refunded|refund_failed)$"
    )]
    status: Option<String>,
    /// `true`: only the caller's own orders (an admin otherwise sees every customer's).
    mine: Option<bool>,
}

/// The signed-in customer's orders, newest first; an admin sees every customer's,
/// unless asking for `mine`.
#[utoipa::path(get, path = "/", tag = "orders", security(("bearer" = [])),
    params(ListParams),
    responses(
        (status = 200, description = "A page of orders", body = OrderPage),
        (status = 400, description = "An invalid limit, cursor or status", body = Problem, content_type = "application/problem+json"),
    ))]
async fn list(
    user: AuthUser,
    State(state): State<Orders>,
    Query(params): Query<ListParams>,
) -> Result<Json<OrderPage>, Problem> {
    let limit = PageLimit::parse_optional(params.limit.as_deref())
        .map_err(|reason| Problem::invalid_field("limit", reason))?;
    let limit = i64::from(limit.get());
    let status = params
        .status
        .as_deref()
        .map(|name| {
            Status::parse(name).ok_or_else(|| {
                let names: Vec<_> = Status::ALL.iter().map(|status| status.as_str()).collect();
                Problem::invalid_field("status", format!("must be one of {}", names.join(", ")))
            })
        })
        .transpose()?;
    let before = params
        .cursor
        .map(|cursor| {
            uuid::Uuid::parse_str(&cursor)
                .map(|id| id.to_string())
                .map_err(|_| {
                    Problem::invalid_field("cursor", "must be the next_cursor of a previous page")
                })
        })
        .transpose()?;
    let own_only = !user.is_admin() || params.mine == Some(true);
    let filter = Filter {
        customer_id: own_only.then(|| user.id.clone()),
        status,
        before,
    };
    let mut connection = connection(&state.db).await?;
    let items = projection::list(&mut connection, &filter, limit + 1).await?;
    let more = items.len() > usize::try_from(limit).unwrap_or(usize::MAX);
    let items: Vec<_> = items
        .into_iter()
        .take(usize::try_from(limit).unwrap_or(0))
        .collect();
    let next_cursor = more
        .then(|| items.last().map(|order| order.id.clone()))
        .flatten();
    Ok(Json(OrderPage { items, next_cursor }))
}

fn order_id(text: &str) -> Result<String, Problem> {
    OrderId::parse(text)
        .map(|id| id.to_string())
        .map_err(|invalid| Problem::invalid_field("id", invalid.to_string()))
}

/// One order with its timeline: the customer's own, or any for an admin.
#[utoipa::path(get, path = "/{id}", tag = "orders", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "The order's id")),
    responses(
        (status = 200, description = "The order and its timeline", body = OrderDetail),
        (status = 404, description = "No such order of yours", body = Problem, content_type = "application/problem+json"),
    ))]
async fn get_order(
    user: AuthUser,
    State(state): State<Orders>,
    Path(id): Path<String>,
) -> Result<Json<OrderDetail>, Problem> {
    let id = order_id(&id)?;
    let (order, timeline) = view_of(&state.db, &id).await?;
    if order.customer_id != user.id && !user.is_admin() {
        return Err(Problem::not_found(format!("no order {id}")));
    }
    Ok(Json(OrderDetail { order, timeline }))
}

async fn act(
    state: &Orders,
    id: &str,
    customer: Option<&str>,
    input: Input,
    origin: &Origin,
) -> Result<Response, Problem> {
    let id = order_id(id)?;
    match ops::request(
        &state.db,
        &id,
        customer,
        input,
        origin,
        &state.settings,
        now_ms(),
    )
    .await
    {
        Ok(_) => {
            state.relay.wake();
            let (order, _) = view_of(&state.db, &id).await?;
            Ok((StatusCode::ACCEPTED, Json(order)).into_response())
        }
        Err(RequestError::NotFound) => Err(Problem::not_found(format!("no order {id}"))),
        Err(RequestError::Refused(refusal)) => Err(Problem::conflict(refusal.to_string())),
        Err(RequestError::Busy) => Err(Problem::unavailable(
            "the order is changing right now; try again in a moment",
            1,
        )),
        Err(RequestError::Internal(error)) => Err(error.into()),
    }
}

/// Cancels one of the signed-in customer's orders, if it is not paid yet.
#[utoipa::path(post, path = "/{id}/cancel", tag = "orders", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "The order's id")),
    responses(
        (status = 202, description = "Cancelling", body = OrderView),
        (status = 404, description = "No such order of yours", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Already paid, or over", body = Problem, content_type = "application/problem+json"),
    ))]
async fn cancel(
    user: AuthUser,
    State(state): State<Orders>,
    Path(id): Path<String>,
    origin: Origin,
) -> Result<Response, Problem> {
    act(&state, &id, Some(&user.id), Input::CustomerCancel, &origin).await
}

/// How many orders there are, by status.
#[derive(Debug, Serialize, ToSchema)]
struct OrderCounts {
    /// Orders by status (`confirmed`, `cancelled`, `payment_held`…); a status no order
    /// is in is left out.
    by_status: std::collections::BTreeMap<String, i64>,
    /// All orders.
    total: i64,
    /// Those not over yet (not confirmed, rejected, cancelled, refunded or failed to
    /// refund).
    in_flight: i64,
}

/// Counts the orders by status, from the service's own records (what survives a
/// restart, unlike a process's counters); admins only.
#[utoipa::path(get, path = "/stats", tag = "orders", security(("bearer" = [])),
    responses(
        (status = 200, description = "Orders by status", body = OrderCounts),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin", body = Problem, content_type = "application/problem+json"),
    ))]
async fn stats(_: Admin, State(state): State<Orders>) -> Result<Json<OrderCounts>, Problem> {
    let mut connection = connection(&state.db).await?;
    let by_status = projection::counts(&mut connection).await?;
    let in_flight = by_status
        .iter()
        .filter(|(status, _)| Status::parse(status).is_some_and(|status| !status.is_terminal()))
        .map(|(_, count)| count)
        .sum();
    Ok(Json(OrderCounts {
        total: by_status.values().sum(),
        in_flight,
        by_status,
    }))
}

/// An admin's decision on a held payment.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct Review {
    /// `true` lets the payment through; `false` declines it and cancels the order.
    approve: bool,
}

/// Decides on an order whose payment is held for review; admins only.
#[utoipa::path(post, path = "/{id}/review", tag = "orders", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "The order's id")),
    request_body = Review,
    responses(
        (status = 202, description = "The decision is on its way to payments", body = OrderView),
        (status = 403, description = "Not an admin", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such order", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Its payment is not held, or was reviewed", body = Problem, content_type = "application/problem+json"),
    ))]
async fn review(
    Admin(admin): Admin,
    State(state): State<Orders>,
    Path(id): Path<String>,
    origin: Origin,
    Json(body): Json<Review>,
) -> Result<Response, Problem> {
    let input = Input::Review {
        approve: body.approve,
        reviewer: admin.id,
    };
    act(&state, &id, None, input, &origin).await
}

/// Refunds a confirmed order in full; admins only.
#[utoipa::path(post, path = "/{id}/refund", tag = "orders", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "The order's id")),
    responses(
        (status = 202, description = "Refunding", body = OrderView),
        (status = 403, description = "Not an admin", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such order", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not confirmed", body = Problem, content_type = "application/problem+json"),
    ))]
async fn refund(
    Admin(admin): Admin,
    State(state): State<Orders>,
    Path(id): Path<String>,
    origin: Origin,
) -> Result<Response, Problem> {
    act(&state, &id, None, Input::Refund { by: admin.id }, &origin).await
}
