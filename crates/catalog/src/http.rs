//! The catalog's REST API: thin handlers that parse, call the use cases, and map.
//!
//! Reading is open to anyone. Writing products and categories needs the admin role,
//! checked by the [`Admin`] extractor before the body is read.

use std::collections::BTreeMap;

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::routing::{get, patch};
use contracts::catalog as api;
use platform::auth::Admin;
use platform::http::{BearerAuth, EdgeResponses, Json, Query};
use platform::outbox::Origin;
use platform::problem::{FieldError, Problem};
use serde::{Deserialize, Deserializer};
use utoipa::{IntoParams, OpenApi, ToSchema};

use crate::domain::{
    Category, CategoryPatch, NewProduct, Product, ProductId, ProductPatch, ProductQuery,
    ProductRef, RawCategory, RawCategoryPatch, RawPrice, RawProduct, RawProductPatch,
    RawProductQuery, Slug, limits,
};
use crate::ops::{self, Catalog};
use crate::store::WriteError;

/// Gives a product's `attributes` their rules in the document: at most
/// [`limits::ATTRIBUTES_MAX`] entries, keys of a-z, 0-9 and `_`, plain-text values of at
/// most [`limits::ATTRIBUTE_VALUE_MAX_CHARS`] characters. (The derived schema of a map
/// has no place for rules on its keys.)
struct AttributeRules;

impl utoipa::Modify for AttributeRules {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::schema::{AdditionalProperties, ObjectBuilder, Type};
        use utoipa::openapi::{RefOr, Schema};
        let Some(components) = openapi.components.as_mut() else {
            return;
        };
        for body in ["CreateProduct", "UpdateProduct"] {
            let Some(RefOr::T(Schema::Object(body))) = components.schemas.get_mut(body) else {
                continue;
            };
            let Some(RefOr::T(Schema::Object(attributes))) = body.properties.get_mut("attributes")
            else {
                continue;
            };
            attributes.max_properties = Some(limits::ATTRIBUTES_MAX);
            attributes.property_names = Some(Box::new(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .pattern(Some(format!(
                        "^[a-z0-9_]{{1,{}}}$",
                        limits::ATTRIBUTE_KEY_MAX_CHARS
                    )))
                    .into(),
            ));
            attributes.additional_properties =
                Some(Box::new(AdditionalProperties::RefOr(RefOr::T(
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .max_length(Some(limits::ATTRIBUTE_VALUE_MAX_CHARS))
                        .pattern(Some(PLAIN_TEXT))
                        .into(),
                ))));
        }
    }
}

/// Plain text as the catalog takes it: no control characters but line breaks and tabs.
const PLAIN_TEXT: &str = r"^[^\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f]*$";

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
    paths(
        list_products,
        get_product,
        list_categories,
        create_product,
        update_product,
        delete_product,
        create_category,
        update_category,
        delete_category
    ),
    components(schemas(
        api::Product,
        api::ProductPage,
        api::Category,
        api::CategoryList,
        contracts::Money,
        Problem,
        FieldError,
        CreateProduct,
        UpdateProduct,
        PriceInput,
        CreateCategory,
        UpdateCategory
    )),
    modifiers(&BearerAuth, &EdgeResponses, &AttributeRules),
    tags(
        (name = "catalog", description = "Browse products"),
        (name = "admin", description = "Manage products and categories; needs the admin role")
    )
)]
pub struct ApiDoc;

/// The REST routes, with the OpenAPI document at `/openapi.json`.
///
/// The admin routes find the token verifier in the request extensions, so the caller
/// must layer an `Extension<Verifier>` over them (as [`crate::build`] does).
pub fn router(catalog: Catalog) -> Router {
    Router::new()
        .route("/products", get(list_products).post(create_product))
        .route(
            "/products/{product}",
            get(get_product)
                .patch(update_product)
                .delete(delete_product),
        )
        .route("/categories", get(list_categories).post(create_category))
        .route(
            "/categories/{slug}",
            patch(update_category).delete(delete_category),
        )
        .route("/openapi.json", get(|| async { Json(ApiDoc::openapi()) }))
        .with_state(catalog)
}

/// The query parameters of a product listing, as text; parsed into a `ProductQuery`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ListProductsParams {
    /// Only products in this category (its slug).
    #[param(pattern = r"^[a-z0-9](?:[a-z0-9-]{0,78}[a-z0-9])?$")]
    category: Option<String>,
    /// Words that must all appear in the name or description (at most 5 words, 100 characters).
    q: Option<String>,
    /// `name`, `-name`, `price` or `-price` (a leading `-` sorts descending). Default `name`.
    #[param(pattern = r"^-?(?:name|price)$")]
    sort: Option<String>,
    /// Page size, 1 to 100. Default 20.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
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
    State(catalog): State<Catalog>,
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
    .map_err(Problem::validation)?;
    let page = catalog.store.list_products(&query).await?;
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
    params(("product" = String, Path, pattern = r"^(?:[a-z0-9](?:[a-z0-9-]{0,78}[a-z0-9])?|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})$", description = "The product's id (UUID) or slug")),
    responses(
        (status = 200, description = "The product", body = api::Product),
        (status = 400, description = "Neither an id nor a slug", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such product", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn get_product(
    State(catalog): State<Catalog>,
    Path(product): Path<String>,
) -> Result<Json<api::Product>, Problem> {
    let reference = ProductRef::parse(&product).map_err(bad_product_ref)?;
    catalog
        .store
        .product(&reference)
        .await?
        .map(|product| Json(product_view(product)))
        .ok_or_else(|| no_product(&product))
}

/// Lists every category, in display order.
#[utoipa::path(
    get,
    path = "/categories",
    tag = "catalog",
    responses((status = 200, description = "All categories", body = api::CategoryList))
)]
async fn list_categories(
    State(catalog): State<Catalog>,
) -> Result<Json<api::CategoryList>, Problem> {
    let categories = catalog.store.categories().await?;
    Ok(Json(api::CategoryList {
        items: categories.into_iter().map(category_view).collect(),
    }))
}

/// A new product. Every field is required.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateProduct {
    /// Unique URL name: 1 to 80 lower-case letters, digits and inner hyphens.
    #[schema(pattern = r"^[a-z0-9](?:[a-z0-9-]{0,78}[a-z0-9])?$")]
    slug: String,
    /// Display name, 1 to 120 characters after trimming.
    #[schema(
        max_length = 120,
        pattern = r"^[^\u0000-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f][^\u0000-\u001f\u007f-\u009f]*$"
    )]
    name: String,
    /// Product page text, at most 4000 characters.
    #[schema(
        max_length = 4000,
        pattern = r"^[^\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f]*$"
    )]
    description: String,
    /// The slug of an existing category.
    #[schema(pattern = r"^[a-z0-9](?:[a-z0-9-]{0,78}[a-z0-9])?$")]
    category: String,
    /// The price, in EUR.
    #[serde(deserialize_with = "platform::http::object")]
    price: PriceInput,
    /// Image path or URL, at most 500 characters.
    #[schema(
        max_length = 500,
        pattern = r"^[^\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f]*$"
    )]
    image: String,
    /// At most 30 entries; keys 1 to 40 of `a-z`, `0-9` and `_`; values at most 200 characters.
    attributes: BTreeMap<String, String>,
}

/// Changes to a product: fields left out stay as they are; `null` is refused.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct UpdateProduct {
    /// A new unique URL name.
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false, pattern = r"^[a-z0-9](?:[a-z0-9-]{0,78}[a-z0-9])?$")]
    slug: Option<String>,
    /// A new display name.
    #[serde(default, deserialize_with = "present")]
    #[schema(
        nullable = false,
        max_length = 120,
        pattern = r"^[^\u0000-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f][^\u0000-\u001f\u007f-\u009f]*$"
    )]
    name: Option<String>,
    /// A new product page text.
    #[serde(default, deserialize_with = "present")]
    #[schema(
        nullable = false,
        max_length = 4000,
        pattern = r"^[^\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f]*$"
    )]
    description: Option<String>,
    /// Another existing category's slug.
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false, pattern = r"^[a-z0-9](?:[a-z0-9-]{0,78}[a-z0-9])?$")]
    category: Option<String>,
    /// A new price, in EUR.
    #[serde(default, deserialize_with = "present_object")]
    #[schema(nullable = false)]
    price: Option<PriceInput>,
    /// A new image path or URL.
    #[serde(default, deserialize_with = "present")]
    #[schema(
        nullable = false,
        max_length = 500,
        pattern = r"^[^\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f]*$"
    )]
    image: Option<String>,
    /// New attributes, replacing all the old ones.
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    attributes: Option<BTreeMap<String, String>>,
}

/// A price as written by an admin.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct PriceInput {
    /// Minor units (cents), 0 to 100000000.
    #[schema(minimum = 0, maximum = 100_000_000)]
    amount_minor: i64,
    /// `EUR`: every product in the catalog is priced in the same currency.
    #[schema(example = "EUR", pattern = r"^EUR$")]
    currency: String,
}

/// A new category, placed after the existing ones.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateCategory {
    /// Unique URL name: 1 to 80 lower-case letters, digits and inner hyphens.
    #[schema(pattern = r"^[a-z0-9](?:[a-z0-9-]{0,78}[a-z0-9])?$")]
    slug: String,
    /// Display name, 1 to 120 characters after trimming.
    #[schema(
        max_length = 120,
        pattern = r"^[^\u0000-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f][^\u0000-\u001f\u007f-\u009f]*$"
    )]
    name: String,
    /// What it holds, at most 4000 characters.
    #[schema(
        max_length = 4000,
        pattern = r"^[^\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f]*$"
    )]
    description: String,
}

/// Changes to a category: fields left out stay as they are. Its slug cannot change.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct UpdateCategory {
    /// A new display name.
    #[serde(default, deserialize_with = "present")]
    #[schema(
        nullable = false,
        max_length = 120,
        pattern = r"^[^\u0000-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f][^\u0000-\u001f\u007f-\u009f]*$"
    )]
    name: Option<String>,
    /// A new description.
    #[serde(default, deserialize_with = "present")]
    #[schema(
        nullable = false,
        max_length = 4000,
        pattern = r"^[^\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f]*$"
    )]
    description: Option<String>,
}

/// A field that may be left out but not sent as `null`: "absent" already means
/// "unchanged", and `null` could as well mean "clear it", so it is refused rather than
/// guessed at.
fn present<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(deserializer).map(Some)
}

/// [`present`] for a field that must be an object.
fn present_object<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    platform::http::object(deserializer).map(Some)
}

/// Creates a product.
#[utoipa::path(
    post,
    path = "/products",
    tag = "admin",
    request_body = CreateProduct,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "The new product", body = api::Product),
        (status = 400, description = "An invalid field, named in the problem", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "No category by that slug", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The caller is not an admin", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Another product has this slug", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn create_product(
    Admin(admin): Admin,
    State(catalog): State<Catalog>,
    origin: Origin,
    Json(body): Json<CreateProduct>,
) -> Result<(StatusCode, Json<api::Product>), Problem> {
    let product = NewProduct::parse(RawProduct {
        slug: &body.slug,
        name: &body.name,
        description: &body.description,
        category: &body.category,
        price: raw_price(&body.price),
        image: &body.image,
        attributes: &body.attributes,
    })
    .map_err(Problem::validation)?
    .into_product(ProductId::generate());
    ops::create_product(&catalog, &product, &origin).await?;
    tracing::info!(admin = admin.id, product = %product.id, slug = product.slug.as_str(), "created a product");
    Ok((StatusCode::CREATED, Json(product_view(product))))
}

/// Changes some fields of a product.
#[utoipa::path(
    patch,
    path = "/products/{product}",
    tag = "admin",
    params(("product" = String, Path, pattern = r"^(?:[a-z0-9](?:[a-z0-9-]{0,78}[a-z0-9])?|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})$", description = "The product's id (UUID) or slug")),
    request_body = UpdateProduct,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The product as changed", body = api::Product),
        (status = 400, description = "An invalid field, named in the problem", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "No category by that slug", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The caller is not an admin", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such product", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Another product has the new slug", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn update_product(
    Admin(admin): Admin,
    State(catalog): State<Catalog>,
    origin: Origin,
    Path(product): Path<String>,
    Json(body): Json<UpdateProduct>,
) -> Result<Json<api::Product>, Problem> {
    let reference = ProductRef::parse(&product).map_err(bad_product_ref)?;
    let patch = ProductPatch::parse(RawProductPatch {
        slug: body.slug.as_deref(),
        name: body.name.as_deref(),
        description: body.description.as_deref(),
        category: body.category.as_deref(),
        price: body.price.as_ref().map(raw_price),
        image: body.image.as_deref(),
        attributes: body.attributes.as_ref(),
    })
    .map_err(Problem::validation)?;
    let updated = ops::update_product(&catalog, &reference, &patch, &origin)
        .await?
        .ok_or_else(|| no_product(&product))?;
    tracing::info!(admin = admin.id, product = %updated.id, "updated a product");
    Ok(Json(product_view(updated)))
}

/// Deletes a product.
#[utoipa::path(
    delete,
    path = "/products/{product}",
    tag = "admin",
    params(("product" = String, Path, pattern = r"^(?:[a-z0-9](?:[a-z0-9-]{0,78}[a-z0-9])?|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})$", description = "The product's id (UUID) or slug")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "Neither an id nor a slug", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The caller is not an admin", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such product", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn delete_product(
    Admin(admin): Admin,
    State(catalog): State<Catalog>,
    origin: Origin,
    Path(product): Path<String>,
) -> Result<StatusCode, Problem> {
    let reference = ProductRef::parse(&product).map_err(bad_product_ref)?;
    if !ops::delete_product(&catalog, &reference, &origin).await? {
        return Err(no_product(&product));
    }
    tracing::info!(admin = admin.id, product, "deleted a product");
    Ok(StatusCode::NO_CONTENT)
}

/// Creates a category, placed after the existing ones.
#[utoipa::path(
    post,
    path = "/categories",
    tag = "admin",
    request_body = CreateCategory,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "The new category", body = api::Category),
        (status = 400, description = "An invalid field, named in the problem", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The caller is not an admin", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Another category has this slug", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn create_category(
    Admin(admin): Admin,
    State(catalog): State<Catalog>,
    Json(body): Json<CreateCategory>,
) -> Result<(StatusCode, Json<api::Category>), Problem> {
    let category = Category::parse(RawCategory {
        slug: &body.slug,
        name: &body.name,
        description: &body.description,
    })
    .map_err(Problem::validation)?;
    ops::create_category(&catalog, &category).await?;
    tracing::info!(
        admin = admin.id,
        category = category.slug.as_str(),
        "created a category"
    );
    Ok((StatusCode::CREATED, Json(category_view(category))))
}

/// Changes the name or description of a category.
#[utoipa::path(
    patch,
    path = "/categories/{slug}",
    tag = "admin",
    params(("slug" = String, Path, pattern = r"^[a-z0-9](?:[a-z0-9-]{0,78}[a-z0-9])?$", description = "The category's slug")),
    request_body = UpdateCategory,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The category as changed", body = api::Category),
        (status = 400, description = "An invalid field, named in the problem", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The caller is not an admin", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such category", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn update_category(
    Admin(admin): Admin,
    State(catalog): State<Catalog>,
    Path(slug): Path<String>,
    Json(body): Json<UpdateCategory>,
) -> Result<Json<api::Category>, Problem> {
    let slug = Slug::parse(&slug).map_err(bad_category_slug)?;
    let patch = CategoryPatch::parse(RawCategoryPatch {
        name: body.name.as_deref(),
        description: body.description.as_deref(),
    })
    .map_err(Problem::validation)?;
    let updated = ops::update_category(&catalog, &slug, &patch)
        .await?
        .ok_or_else(|| no_category(&slug))?;
    tracing::info!(
        admin = admin.id,
        category = slug.as_str(),
        "updated a category"
    );
    Ok(Json(category_view(updated)))
}

/// Deletes a category that holds no products.
#[utoipa::path(
    delete,
    path = "/categories/{slug}",
    tag = "admin",
    params(("slug" = String, Path, pattern = r"^[a-z0-9](?:[a-z0-9-]{0,78}[a-z0-9])?$", description = "The category's slug")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "Not a slug", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The caller is not an admin", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such category", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Products are still in the category", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn delete_category(
    Admin(admin): Admin,
    State(catalog): State<Catalog>,
    Path(slug): Path<String>,
) -> Result<StatusCode, Problem> {
    let slug = Slug::parse(&slug).map_err(bad_category_slug)?;
    if !ops::delete_category(&catalog, &slug).await? {
        return Err(no_category(&slug));
    }
    tracing::info!(
        admin = admin.id,
        category = slug.as_str(),
        "deleted a category"
    );
    Ok(StatusCode::NO_CONTENT)
}

fn raw_price(price: &PriceInput) -> RawPrice<'_> {
    RawPrice {
        amount_minor: price.amount_minor,
        currency: &price.currency,
    }
}

fn bad_product_ref(reason: String) -> Problem {
    Problem::invalid_field("product", reason)
}

fn bad_category_slug(reason: String) -> Problem {
    Problem::invalid_field("slug", reason)
}

fn no_product(text: &str) -> Problem {
    Problem::not_found(format!("no product {text:?}"))
}

fn no_category(slug: &Slug) -> Problem {
    Problem::not_found(format!("no category {:?}", slug.as_str()))
}

/// A refused write as the client sees it: the field to fix, or the state in the way.
impl From<WriteError> for Problem {
    fn from(error: WriteError) -> Self {
        match error {
            WriteError::SlugTaken(_) => Problem {
                errors: vec![FieldError::new("slug", "is taken")],
                ..Problem::conflict(error.to_string())
            },
            // Well formed, but naming nothing: 422, as for the cart's unknown product.
            WriteError::UnknownCategory(_) => Problem {
                errors: vec![FieldError::new("category", error.to_string())],
                ..Problem::unprocessable("unknown-category", error.to_string())
            },
            WriteError::CategoryInUse(_) => {
                Problem::conflict(format!("{error}; move or delete them first"))
            }
            WriteError::Other(error) => error.into(),
        }
    }
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
