//! The cart's REST API: the signed-in customer's own cart, priced by the catalog.
//!
//! There is no cart id in any path: every route works on the caller's cart, found from
//! the access token, so one customer can never name another's.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post, put};
use contracts::Money;
use platform::auth::AuthUser;
use platform::http::{BearerAuth, EdgeResponses, Json};
use platform::problem::{FieldError, Problem};
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};

use crate::Carts;
use crate::domain::{CustomerId, ProductId};
use crate::pricing::{PricedCart, PricingError};
use crate::store::CartError;

/// How long a client should wait before retrying when the catalog is unavailable.
const RETRY_AFTER_SECS: u64 = 2;

/// The OpenAPI 3.1 document of this API.
#[derive(OpenApi)]
#[openapi(
    info(title = "Bazaar cart", version = "1", description = "The signed-in customer's cart, priced by the catalog."),
    servers((url = "/api/cart", description = "through the gateway")),
    paths(get_cart, clear_cart, add_item, set_quantity, remove_item),
    components(schemas(CartView, LineView, AddItem, SetQuantity, Money, Problem, FieldError)),
    modifiers(&BearerAuth, &EdgeResponses),
    tags((name = "cart", description = "The customer's cart"))
)]
pub struct ApiDoc;

/// The REST routes. They find the token verifier in the request extensions, so the
/// caller must layer an `Extension<Verifier>` over them (as [`crate::build`] does).
pub fn router(carts: Carts) -> Router {
    Router::new()
        .route("/", get(get_cart).delete(clear_cart))
        .route("/items", post(add_item))
        .route("/items/{product_id}", put(set_quantity).delete(remove_item))
        .route("/openapi.json", get(|| async { Json(ApiDoc::openapi()) }))
        .with_state(carts)
}

/// A cart, priced as the catalog says now.
#[derive(Debug, Serialize, ToSchema)]
struct CartView {
    /// The products the catalog sells, by product id.
    lines: Vec<LineView>,
    /// The sum of the lines' totals; absent when no line is priced.
    total: Option<Money>,
    /// Products in the cart that the catalog no longer sells; not in `lines`.
    unavailable_product_ids: Vec<String>,
}

/// One product in the cart.
#[derive(Debug, Serialize, ToSchema)]
struct LineView {
    /// The product's id.
    product_id: String,
    /// The product's name in the catalog.
    name: String,
    /// Units in the cart.
    quantity: i64,
    /// The catalog's price of one unit.
    unit_price: Money,
    /// `unit_price` times `quantity`.
    line_total: Money,
    /// Units in stock now (a hint: only an order reserves them); null when inventory
    /// did not answer.
    available: Option<i64>,
}

/// Units of a product to put in the cart.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct AddItem {
    /// A product the catalog sells.
    #[schema(format = Uuid)]
    product_id: String,
    /// Units to add, from 1 to the maximum (99 by default); a line never grows past the
    /// maximum.
    #[schema(minimum = 1, maximum = 99)]
    quantity: i64,
}

/// The units a line should hold.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct SetQuantity {
    /// From 1 to the maximum (99 by default); remove the line to have none.
    #[schema(minimum = 1, maximum = 99)]
    quantity: i64,
}

/// The caller's cart.
#[utoipa::path(get, path = "/", tag = "cart", security(("bearer" = [])),
    responses(
        (status = 200, description = "The cart, priced now", body = CartView),
        (status = 401, description = "No valid access token", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The catalog is unavailable; retry after the Retry-After header", body = Problem, content_type = "application/problem+json"),
    ))]
async fn get_cart(user: AuthUser, State(carts): State<Carts>) -> Result<Json<CartView>, Problem> {
    let customer = customer(&user)?;
    priced(&carts, &customer).await
}

/// Empties the caller's cart.
#[utoipa::path(delete, path = "/", tag = "cart", security(("bearer" = [])),
    responses(
        (status = 200, description = "The empty cart", body = CartView),
        (status = 401, description = "No valid access token", body = Problem, content_type = "application/problem+json"),
    ))]
async fn clear_cart(user: AuthUser, State(carts): State<Carts>) -> Result<Json<CartView>, Problem> {
    let customer = customer(&user)?;
    carts.store.clear(&customer).await?;
    priced(&carts, &customer).await
}

/// Adds units of a product to the caller's cart.
#[utoipa::path(post, path = "/items", tag = "cart", security(("bearer" = [])),
    request_body = AddItem,
    responses(
        (status = 200, description = "The cart after the change", body = CartView),
        (status = 400, description = "A malformed body", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid access token", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "An unknown product, a quantity out of range, or a full cart; `errors` names the field", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The catalog is unavailable; retry after the Retry-After header", body = Problem, content_type = "application/problem+json"),
    ))]
async fn add_item(
    user: AuthUser,
    State(carts): State<Carts>,
    Json(body): Json<AddItem>,
) -> Result<Json<CartView>, Problem> {
    let customer = customer(&user)?;
    let unknown = || {
        unprocessable(
            "unknown-product",
            "product_id",
            "must be the id of a product the catalog sells",
        )
    };
    let product = ProductId::parse(&body.product_id)
        .ok()
        .ok_or_else(unknown)?;
    if !carts.limits.allows(body.quantity) {
        return Err(cart_problem(CartError::QuantityOutOfRange {
            max: carts.limits.max_quantity,
        }));
    }
    let sold = carts
        .pricing
        .products(std::slice::from_ref(&product))
        .await
        .map_err(pricing_problem)?;
    if !sold.contains_key(&product) {
        return Err(unknown());
    }
    carts
        .store
        .add(&customer, &product, body.quantity)
        .await
        .map_err(cart_problem)?;
    priced(&carts, &customer).await
}

/// Sets how many units of a product the caller's cart holds.
#[utoipa::path(put, path = "/items/{product_id}", tag = "cart", security(("bearer" = [])),
    params(("product_id" = uuid::Uuid, Path, description = "The product's id")),
    request_body = SetQuantity,
    responses(
        (status = 200, description = "The cart after the change", body = CartView),
        (status = 400, description = "A malformed body or product id", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid access token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "The cart has no line for this product", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A quantity out of range; `errors` names the field", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The catalog is unavailable; retry after the Retry-After header", body = Problem, content_type = "application/problem+json"),
    ))]
async fn set_quantity(
    user: AuthUser,
    State(carts): State<Carts>,
    Path(product_id): Path<String>,
    Json(body): Json<SetQuantity>,
) -> Result<Json<CartView>, Problem> {
    let customer = customer(&user)?;
    let product = path_product(&product_id)?;
    carts
        .store
        .set_quantity(&customer, &product, body.quantity)
        .await
        .map_err(cart_problem)?;
    priced(&carts, &customer).await
}

/// Removes a product from the caller's cart.
#[utoipa::path(delete, path = "/items/{product_id}", tag = "cart", security(("bearer" = [])),
    params(("product_id" = uuid::Uuid, Path, description = "The product's id")),
    responses(
        (status = 200, description = "The cart after the change", body = CartView),
        (status = 400, description = "A malformed product id", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid access token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "The cart has no line for this product", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The catalog is unavailable; retry after the Retry-After header", body = Problem, content_type = "application/problem+json"),
    ))]
async fn remove_item(
    user: AuthUser,
    State(carts): State<Carts>,
    Path(product_id): Path<String>,
) -> Result<Json<CartView>, Problem> {
    let customer = customer(&user)?;
    let product = path_product(&product_id)?;
    if !carts.store.remove(&customer, &product).await? {
        return Err(cart_problem(CartError::NoSuchLine));
    }
    priced(&carts, &customer).await
}

/// The caller as a cart owner.
fn customer(user: &AuthUser) -> Result<CustomerId, Problem> {
    // Identity issues UUID subjects; anything else cannot own a cart.
    CustomerId::parse(&user.id)
        .ok_or_else(|| Problem::forbidden("the access token's subject cannot own a cart"))
}

fn path_product(text: &str) -> Result<ProductId, Problem> {
    ProductId::parse(text).map_err(|error| Problem::invalid_field("product_id", error.to_string()))
}

async fn priced(carts: &Carts, customer: &CustomerId) -> Result<Json<CartView>, Problem> {
    let cart = carts.priced(customer).await.map_err(pricing_problem)?;
    Ok(Json(view(cart)))
}

fn view(cart: PricedCart) -> CartView {
    CartView {
        lines: cart
            .lines
            .into_iter()
            .map(|line| LineView {
                product_id: line.product_id.to_string(),
                name: line.name,
                quantity: line.quantity,
                unit_price: line.unit_price,
                line_total: line.line_total,
                available: line.available,
            })
            .collect(),
        total: cart.total,
        unavailable_product_ids: cart.unavailable.iter().map(ToString::to_string).collect(),
    }
}

/// 422: the request is well formed, but the cart cannot do it; names the field.
fn unprocessable(kind: &str, field: &str, message: impl Into<String>) -> Problem {
    let message = message.into();
    Problem {
        errors: vec![FieldError::new(field, message.clone())],
        ..Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            kind,
            format!("{field}: {message}"),
        )
    }
}

fn cart_problem(error: CartError) -> Problem {
    match error {
        CartError::QuantityOutOfRange { .. } => {
            unprocessable("quantity-out-of-range", "quantity", error.to_string())
        }
        CartError::TooManyLines { .. } => unprocessable(
            "too-many-lines",
            "product_id",
            format!("{error}; remove a product first"),
        ),
        CartError::NoSuchLine => Problem::not_found(error.to_string()),
        CartError::Other(error) => error.into(),
    }
}

fn pricing_problem(error: PricingError) -> Problem {
    match error {
        PricingError::CatalogUnavailable(_) => Problem::unavailable(
            "the catalog is unavailable, so the cart cannot be priced; try again shortly",
            RETRY_AFTER_SECS,
        ),
        PricingError::Other(error) => error.into(),
    }
}
