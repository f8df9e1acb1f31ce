//! Inventory's REST API: availability for shoppers, stock levels and adjustments for
//! admins.

use axum::Router;
use axum::extract::{Path, State};
use axum::routing::{get, post};
use contracts::ProductId;
use platform::auth::Admin;
use platform::db::Database;
use platform::http::{BearerAuth, EdgeResponses, Json};
use platform::problem::{FieldError, Problem};
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};

use crate::store::{self, AdjustError, Levels};

/// The OpenAPI 3.1 document of this API.
#[derive(OpenApi)]
#[openapi(
    info(title = "Bazaar inventory", version = "1", description = "Stock levels and availability."),
    servers((url = "/api/inventory", description = "through the gateway")),
    paths(availability, list_stock, adjust),
    components(schemas(Availability, StockLevels, Adjustment, Problem, FieldError)),
    modifiers(&BearerAuth, &EdgeResponses),
    tags((name = "inventory", description = "Stock"))
)]
pub struct ApiDoc;

/// The REST routes.
pub fn router(db: Database) -> Router {
    Router::new()
        .route("/stock", get(list_stock))
        .route("/stock/{product}", get(availability))
        .route("/stock/{product}/adjustments", post(adjust))
        .route("/openapi.json", get(|| async { Json(ApiDoc::openapi()) }))
        .with_state(db)
}

/// How many units of a product can be bought now.
#[derive(Debug, Serialize, ToSchema)]
struct Availability {
    product_id: String,
    available: i64,
}

/// A product's stock, as admins see it.
#[derive(Debug, Serialize, ToSchema)]
struct StockLevels {
    product_id: String,
    /// Units received, net of removals.
    received: i64,
    /// Units held for unpaid orders.
    reserved: i64,
    /// Units sold.
    sold: i64,
    /// Units that can be reserved now.
    available: i64,
    /// Whether the catalog removed the product.
    discontinued: bool,
}

/// Stock received (positive) or written off (negative).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct Adjustment {
    /// Units to add, or to remove when negative; not zero, at most a million either way.
    #[schema(minimum = -1_000_000, maximum = 1_000_000)]
    delta: i64,
}

/// How many units of a product can be bought now.
#[utoipa::path(get, path = "/stock/{product}", tag = "inventory",
    params(("product" = uuid::Uuid, Path, description = "The product's id")),
    responses(
        (status = 200, description = "Availability", body = Availability),
        (status = 400, description = "Not a product id", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No stock is kept for this product", body = Problem, content_type = "application/problem+json"),
    ))]
async fn availability(
    State(db): State<Database>,
    Path(product): Path<String>,
) -> Result<Json<Availability>, Problem> {
    let product_id = product_id(&product)?;
    let mut connection = db.pool().acquire().await.map_err(anyhow::Error::from)?;
    let levels = store::levels_of(&mut connection, product_id)
        .await?
        .ok_or_else(|| Problem::not_found(format!("no stock is kept for {product_id}")))?;
    let available = if levels.discontinued {
        0
    } else {
        levels.available()
    };
    Ok(Json(Availability {
        product_id: product_id.to_string(),
        available,
    }))
}

/// Every product's stock; admins only.
#[utoipa::path(get, path = "/stock", tag = "inventory", security(("bearer" = [])),
    responses(
        (status = 200, description = "Stock levels", body = [StockLevels]),
        (status = 403, description = "Not an admin", body = Problem, content_type = "application/problem+json"),
    ))]
async fn list_stock(
    _admin: Admin,
    State(db): State<Database>,
) -> Result<Json<Vec<StockLevels>>, Problem> {
    let levels = store::all_levels(db.pool()).await?;
    Ok(Json(levels.into_iter().map(view).collect()))
}

/// Receives or writes off stock; admins only. Stock never drops below what is reserved
/// and sold.
#[utoipa::path(post, path = "/stock/{product}/adjustments", tag = "inventory", security(("bearer" = [])),
    params(("product" = uuid::Uuid, Path, description = "The product's id")),
    request_body = Adjustment,
    responses(
        (status = 200, description = "The stock after the adjustment", body = StockLevels),
        (status = 400, description = "An invalid delta or product id", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No stock is kept for this product", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "It would remove reserved or sold units", body = Problem, content_type = "application/problem+json"),
    ))]
async fn adjust(
    Admin(admin): Admin,
    State(db): State<Database>,
    Path(product): Path<String>,
    Json(body): Json<Adjustment>,
) -> Result<Json<StockLevels>, Problem> {
    let product_id = product_id(&product)?;
    if body.delta == 0 || body.delta.abs() > 1_000_000 {
        return Err(Problem::invalid_field(
            "delta",
            "must be a non-zero number of units, at most 1000000 either way",
        ));
    }
    let mut connection = db.pool().acquire().await.map_err(anyhow::Error::from)?;
    let levels = match store::adjust(
        &mut connection,
        product_id,
        body.delta,
        platform::clock::now_ms(),
    )
    .await
    {
        Ok(levels) => levels,
        Err(AdjustError::Unknown) => {
            return Err(Problem::not_found(format!(
                "no stock is kept for {product_id}"
            )));
        }
        Err(error @ AdjustError::BelowCommitted) => {
            return Err(Problem::conflict(error.to_string()));
        }
        Err(AdjustError::Other(error)) => return Err(error.into()),
    };
    tracing::info!(
        admin = admin.id,
        product = %product_id,
        delta = body.delta,
        "adjusted stock"
    );
    Ok(Json(view(levels)))
}

fn product_id(text: &str) -> Result<ProductId, Problem> {
    ProductId::parse(text).map_err(|error| Problem::invalid_field("product", error.to_string()))
}

fn view(levels: Levels) -> StockLevels {
    StockLevels {
        available: levels.available(),
        product_id: levels.product_id,
        received: levels.received,
        reserved: levels.reserved,
        sold: levels.sold,
        discontinued: levels.discontinued,
    }
}
