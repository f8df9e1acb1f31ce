//! The catalog's REST API: thin handlers that parse, call the store, and map.

use axum::extract::{Path, RawQuery, State};
use axum::routing::get;
use axum::{Json, Router};
use contracts::catalog as api;
use platform::http::Query;
use platform::problem::{FieldError, Problem};
use serde::Deserialize;
use utoipa::{IntoParams, OpenApi};

use crate::domain::{Category, Invalid, Product, ProductQuery, ProductRef, RawProductQuery};
use crate::store::Store;

/// The longest query string accepted, in bytes.
const MAX_QUERY_BYTES: usize = 2048;

/// The OpenAPI 3.1 document of this API.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Bazaar catalog",
        version = "1",
        description = "Products, categories and prices. Reached through the gateway under /api/catalog."
    ),
    servers((url = "/api/catalog", description = "through the gateway")),
    paths(list_products, get_product, list_categories),
    components(schemas(api::Product, api::ProductPage, api::Category, api::CategoryList, contracts::Money, Problem, FieldError)),
    tags((name = "catalog", description = "Browse products"))
)]
pub struct ApiDoc;

/// The REST routes, with the OpenAPI document at `/openapi.json`.
pub fn router(store: Store) -> Router {
    Router::new()
        .route("/products", get(list_products))
        .route("/products/{product}", get(get_product))
        .route("/categories", get(list_categories))
        .route("/openapi.json", get(|| async { Json(ApiDoc::openapi()) }))
        .with_state(store)
}

/// The query parameters of a product listing, as text; parsed into a `ProductQuery`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ListProductsParams {
    /// Only products in this category (its slug).
    category: Option<String>,
    /// Words that must all appear in the name or description (at most 5 words, 100 characters).
    q: Option<String>,
    /// `name`, `-name`, `price` or `-price` (a leading `-` sorts descending). Default `name`.
    sort: Option<String>,
    /// Page size, 1 to 100. Default 20.
    limit: Option<String>,
    /// `next_cursor` of the previous page, to continue after it (with the same `sort`).
    cursor: Option<String>,
}

/// Lists products, a page at a time.
#[utoipa::path(
    get,
    path = "/products",
    tag = "catalog",
    params(ListProductsParams),
    responses(
        (status = 200, description = "A page of products", body = api::ProductPage),
        (status = 400, description = "An invalid parameter, named in the problem", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn list_products(
    State(store): State<Store>,
    RawQuery(raw): RawQuery,
    Query(params): Query<ListProductsParams>,
) -> Result<Json<api::ProductPage>, Problem> {
    if raw.as_deref().map_or(0, str::len) > MAX_QUERY_BYTES {
        return Err(Problem::invalid_field(
            "query",
            format!("must be at most {MAX_QUERY_BYTES} bytes"),
        ));
    }
    let query = ProductQuery::parse(RawProductQuery {
        category: params.category.as_deref(),
        search: params.q.as_deref(),
        sort: params.sort.as_deref(),
        limit: params.limit.as_deref(),
        cursor: params.cursor.as_deref(),
    })
    .map_err(invalid)?;
    let page = store.list_products(&query).await?;
    Ok(Json(api::ProductPage {
        items: page.items.into_iter().map(product_view).collect(),
        next_cursor: page.next.map(|cursor| cursor.encode()),
    }))
}

/// Gets one product by id or slug.
#[utoipa::path(
    get,
    path = "/products/{product}",
    tag = "catalog",
    params(("product" = String, Path, description = "The product's id (UUID) or slug")),
    responses(
        (status = 200, description = "The product", body = api::Product),
        (status = 400, description = "Neither an id nor a slug", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such product", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn get_product(
    State(store): State<Store>,
    Path(product): Path<String>,
) -> Result<Json<api::Product>, Problem> {
    let reference =
        ProductRef::parse(&product).map_err(|reason| Problem::invalid_field("product", reason))?;
    store
        .product(&reference)
        .await?
        .map(|product| Json(product_view(product)))
        .ok_or_else(|| Problem::not_found(format!("no product {product:?}")))
}

/// Lists every category, in display order.
#[utoipa::path(
    get,
    path = "/categories",
    tag = "catalog",
    responses((status = 200, description = "All categories", body = api::CategoryList))
)]
async fn list_categories(State(store): State<Store>) -> Result<Json<api::CategoryList>, Problem> {
    let categories = store.categories().await?;
    Ok(Json(api::CategoryList {
        items: categories.into_iter().map(category_view).collect(),
    }))
}

fn invalid(fields: Vec<Invalid>) -> Problem {
    Problem::validation(
        fields
            .into_iter()
            .map(|invalid| FieldError::new(invalid.field, invalid.reason))
            .collect(),
    )
}

fn product_view(product: Product) -> api::Product {
    api::Product {
        id: product.id.to_string(),
        slug: product.slug.as_str().to_owned(),
        name: product.name,
        description: product.description,
        category: product.category.as_str().to_owned(),
        price: product.price,
        image: product.image,
        attributes: product.attributes,
    }
}

fn category_view(category: Category) -> api::Category {
    api::Category {
        slug: category.slug.as_str().to_owned(),
        name: category.name,
        description: category.description,
    }
}
