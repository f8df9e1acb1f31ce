//! The back-office, for the admin role: products and categories, stock levels and
//! adjustments, orders held for review, refunds, and the way to the console.
//!
//! The storefront shows these pages only to a verified admin token, and every change
//! goes to the owning service with that token, which checks the role again.

use std::collections::BTreeMap;
use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use contracts::Currency;
use contracts::catalog::{Category, Product};
use http::{Method, StatusCode};
use serde::Deserialize;

use super::orders::{OrderRow, row};
use super::{Chrome, FieldErrors, Section, errors, render, render_with};
use crate::Site;
use crate::api::{ApiError, Order, Page, Service, StockLevels, encode_query, segment};
use crate::session::{CookieJar, Shopper, see_other};

/// The part of the back-office a page is in, for its navigation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    /// Products.
    Products,
    /// Categories.
    Categories,
    /// Stock.
    Stock,
    /// Held orders and refunds.
    Orders,
}

/// The back-office's navigation.
pub struct AdminNav {
    part: Part,
    /// Where the console is.
    pub console: String,
}

impl AdminNav {
    /// `aria-current` for the link to `part`.
    pub fn current(&self, part: &str) -> &'static str {
        let this = match self.part {
            Part::Products => "products",
            Part::Categories => "categories",
            Part::Stock => "stock",
            Part::Orders => "orders",
        };
        if this == part { "page" } else { "false" }
    }
}

/// The page for a shopper who is not an admin (sign in, or 403); none for an admin.
fn refusal(shopper: &Shopper, here: &str) -> Option<Response> {
    match &shopper.user {
        None => Some(errors::sign_in_again(here)),
        Some(user) if !user.is_admin() => Some(errors::forbidden(shopper)),
        Some(_) => None,
    }
}

fn chrome(shopper: &Shopper, title: &str) -> Chrome {
    Chrome::new(shopper, title, Section::Admin)
}

fn nav(site: &Site, part: Part) -> AdminNav {
    AdminNav {
        part,
        console: site.config.console_path.clone(),
    }
}

fn done(site: &Site, location: &str, flash: &str) -> Response {
    let mut jar = CookieJar::default();
    jar.flash(flash, site.config.secure_cookies);
    see_other(location, jar)
}

/// `GET /admin`.
pub async fn index(shopper: Shopper) -> Response {
    if let Some(page) = refusal(&shopper, "/admin") {
        return page;
    }
    see_other("/admin/products", CookieJar::default())
}

/// Every product, following the catalog's pages (the back-office lists them all).
async fn all_products(site: &Site, q: &str) -> Result<Vec<Product>, ApiError> {
    let mut products = Vec::new();
    let mut cursor = String::new();
    for _ in 0..50 {
        let page = site
            .api
            .products(&[
                ("q", q),
                ("limit", "100"),
                ("sort", "name"),
                ("cursor", &cursor),
            ])
            .await?;
        products.extend(page.items);
        match page.next_cursor {
            Some(next) => cursor = next,
            None => break,
        }
    }
    Ok(products)
}

/// A product row of the back-office.
pub struct ProductRow {
    /// Its id.
    pub id: String,
    /// Its slug.
    pub slug: String,
    /// Its name.
    pub name: String,
    /// Its category's slug.
    pub category: String,
    /// Its price tag.
    pub price: String,
    /// Its stock: available, reserved, sold (if inventory knows it).
    pub stock: Option<(i64, i64, i64)>,
    /// The stock line's style.
    pub stock_class: &'static str,
}

/// The products page (and the stock page, which is the same table seen for stock).
#[derive(Template)]
#[template(path = "admin/products.html")]
pub struct ProductsPage {
    chrome: Chrome,
    nav: AdminNav,
    q: String,
    rows: Vec<ProductRow>,
    /// Whether this is the stock page.
    stock_view: bool,
}

/// A search box's query.
#[derive(Debug, Default, Deserialize)]
pub struct SearchQuery {
    /// Words to search for.
    #[serde(default)]
    pub q: String,
}

async fn product_rows(
    site: &Site,
    shopper: &Shopper,
    q: &str,
) -> Result<Vec<ProductRow>, ApiError> {
    let (products, stock) = tokio::join!(
        all_products(site, q),
        site.api
            .get::<Vec<StockLevels>>(Service::Inventory, "/stock", shopper.token())
    );
    let stock: BTreeMap<String, StockLevels> = stock?
        .into_iter()
        .map(|levels| (levels.product_id.clone(), levels))
        .collect();
    Ok(products?
        .into_iter()
        .map(|product| {
            let levels = stock.get(&product.id);
            let available = levels.map(|levels| levels.available);
            ProductRow {
                stock: levels.map(|levels| (levels.available, levels.reserved, levels.sold)),
                stock_class: super::shop::stock_line(available).0,
                price: product.price.price_tag(),
                id: product.id,
                slug: product.slug,
                name: product.name,
                category: product.category,
            }
        })
        .collect())
}

/// `GET /admin/products`.
pub async fn products(
    State(site): State<Arc<Site>>,
    shopper: Shopper,
    Query(query): Query<SearchQuery>,
) -> Response {
    list(&site, &shopper, &query.q, false).await
}

/// `GET /admin/stock`.
pub async fn stock(
    State(site): State<Arc<Site>>,
    shopper: Shopper,
    Query(query): Query<SearchQuery>,
) -> Response {
    list(&site, &shopper, &query.q, true).await
}

async fn list(site: &Site, shopper: &Shopper, q: &str, stock_view: bool) -> Response {
    let here = if stock_view {
        "/admin/stock"
    } else {
        "/admin/products"
    };
    if let Some(page) = refusal(shopper, here) {
        return page;
    }
    match product_rows(site, shopper, q).await {
        Ok(rows) => render(&ProductsPage {
            chrome: chrome(shopper, if stock_view { "Stock" } else { "Products" }),
            nav: nav(
                site,
                if stock_view {
                    Part::Stock
                } else {
                    Part::Products
                },
            ),
            q: q.to_owned(),
            rows,
            stock_view,
        }),
        Err(error) => errors::failure(shopper, &error, here),
    }
}

/// The product form's fields, as typed.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct ProductForm {
    /// The URL name.
    #[serde(default)]
    pub slug: String,
    /// The name.
    #[serde(default)]
    pub name: String,
    /// The description.
    #[serde(default)]
    pub description: String,
    /// The category's slug.
    #[serde(default)]
    pub category: String,
    /// The price in major units, e.g. `14.50`.
    #[serde(default)]
    pub price: String,
    /// The currency code.
    #[serde(default)]
    pub currency: String,
    /// One `key: value` a line.
    #[serde(default)]
    pub attributes: String,
}

impl ProductForm {
    fn of(product: &Product) -> Self {
        Self {
            slug: product.slug.clone(),
            name: product.name.clone(),
            description: product.description.clone(),
            category: product.category.clone(),
            price: product.price.major().replace(',', ""),
            currency: product.price.currency.to_string(),
            attributes: product
                .attributes
                .iter()
                .map(|(key, value)| format!("{key}: {value}"))
                .collect::<Vec<_>>()
                .join("\n"),
        }
    }

    /// The catalog's JSON for this form, or the fields that are wrong before asking.
    fn to_json(&self) -> Result<serde_json::Value, FieldErrors> {
        let currency = Currency::parse(self.currency.trim())
            .map_err(|_| FieldErrors::one("currency", "must be a code like EUR"))?;
        let price = contracts::Money::parse_major(&self.price, currency)
            .map_err(|reason| FieldErrors::one("price", reason))?;
        let mut attributes = BTreeMap::new();
        for line in self
            .attributes
            .lines()
            .filter(|line| !line.trim().is_empty())
        {
            let Some((key, value)) = line.split_once(':') else {
                return Err(FieldErrors::one(
                    "attributes",
                    format!("{:?} is not a line like `colour: white`", line.trim()),
                ));
            };
            attributes.insert(key.trim().to_owned(), value.trim().to_owned());
        }
        let slug = self.slug.trim();
        Ok(serde_json::json!({
            "slug": slug,
            "name": self.name.trim(),
            "description": self.description.trim(),
            "category": self.category.trim(),
            "price": {"amount_minor": price.amount_minor, "currency": price.currency},
            "image": format!("/images/products/{slug}.svg"),
            "attributes": attributes,
        }))
    }
}

/// The create and edit page.
#[derive(Template)]
#[template(path = "admin/product_form.html")]
pub struct ProductFormPage {
    chrome: Chrome,
    nav: AdminNav,
    /// The slug being edited, or none for a new product.
    editing: Option<String>,
    form: ProductForm,
    categories: Vec<Category>,
    errors: FieldErrors,
}

impl ProductFormPage {
    fn other_errors(&self) -> Vec<String> {
        self.errors.others(&[
            "slug",
            "name",
            "description",
            "category",
            "price",
            "currency",
            "attributes",
            "image",
        ])
    }
}

async fn form_page(
    site: &Site,
    shopper: &Shopper,
    editing: Option<String>,
    form: ProductForm,
    errors: FieldErrors,
) -> Response {
    let categories = match site.api.categories().await {
        Ok(categories) => categories,
        Err(error) => return errors::failure(shopper, &error, "/admin/products"),
    };
    let status = if errors.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    let title = match &editing {
        Some(_) => format!("Edit {}", form.name),
        None => "New product".to_owned(),
    };
    render_with(
        status,
        &ProductFormPage {
            chrome: chrome(shopper, &title),
            nav: nav(site, Part::Products),
            editing,
            form,
            categories,
            errors,
        },
    )
}

/// `GET /admin/products/new`.
pub async fn new_product(State(site): State<Arc<Site>>, shopper: Shopper) -> Response {
    if let Some(page) = refusal(&shopper, "/admin/products/new") {
        return page;
    }
    let form = ProductForm {
        currency: "EUR".to_owned(),
        ..ProductForm::default()
    };
    form_page(&site, &shopper, None, form, FieldErrors::default()).await
}

/// `GET /admin/products/{slug}/edit`.
pub async fn edit_product(
    State(site): State<Arc<Site>>,
    shopper: Shopper,
    Path(slug): Path<String>,
) -> Response {
    if let Some(page) = refusal(&shopper, "/admin/products") {
        return page;
    }
    match site.api.product(&slug).await {
        Ok(product) => {
            let form = ProductForm::of(&product);
            form_page(
                &site,
                &shopper,
                Some(product.slug),
                form,
                FieldErrors::default(),
            )
            .await
        }
        Err(error) => errors::failure(&shopper, &error, "/admin/products"),
    }
}

/// `POST /admin/products`: creates a product.
pub async fn create_product(
    State(site): State<Arc<Site>>,
    shopper: Shopper,
    axum::Form(form): axum::Form<ProductForm>,
) -> Response {
    save_product(&site, &shopper, None, form).await
}

/// `POST /admin/products/{slug}`: saves an edit.
pub async fn update_product(
    State(site): State<Arc<Site>>,
    shopper: Shopper,
    Path(slug): Path<String>,
    axum::Form(form): axum::Form<ProductForm>,
) -> Response {
    save_product(&site, &shopper, Some(slug), form).await
}

async fn save_product(
    site: &Site,
    shopper: &Shopper,
    editing: Option<String>,
    form: ProductForm,
) -> Response {
    if let Some(page) = refusal(shopper, "/admin/products") {
        return page;
    }
    let body = match form.to_json() {
        Ok(body) => body,
        Err(errors) => return form_page(site, shopper, editing, form, errors).await,
    };
    let (method, path) = match &editing {
        Some(slug) => (Method::PATCH, format!("/products/{}", segment(slug))),
        None => (Method::POST, "/products".to_owned()),
    };
    let saved: Result<Product, ApiError> = site
        .api
        .send(Service::Catalog, method, &path, shopper.token(), &body)
        .await;
    match saved {
        Ok(_) => done(site, "/admin/products", "product-saved"),
        Err(error @ ApiError::Refused { .. }) if error.status() != Some(StatusCode::FORBIDDEN) => {
            let mut errors = FieldErrors::from_api(&error);
            if errors.is_empty() {
                let detail = match &error {
                    ApiError::Refused { problem, .. } => problem.detail.clone(),
                    _ => String::new(),
                };
                let field = if error.status() == Some(StatusCode::CONFLICT) {
                    "slug"
                } else {
                    "form"
                };
                errors = FieldErrors::one(field, detail);
            }
            form_page(site, shopper, editing, form, errors).await
        }
        Err(error) => errors::failure(shopper, &error, "/admin/products"),
    }
}

/// `POST /admin/products/{slug}/delete`.
pub async fn delete_product(
    State(site): State<Arc<Site>>,
    shopper: Shopper,
    Path(slug): Path<String>,
) -> Response {
    let path = format!("/products/{}", segment(&slug));
    let action = Action::new(Service::Catalog, Method::DELETE, &path);
    act(
        &site,
        &shopper,
        action,
        "/admin/products",
        "product-deleted",
    )
    .await
}

/// An admin's change to a resource of `service`: `method path`, with `body` if any.
struct Action<'a> {
    service: Service,
    method: Method,
    path: &'a str,
    body: Option<serde_json::Value>,
}

impl<'a> Action<'a> {
    fn new(service: Service, method: Method, path: &'a str) -> Self {
        Self {
            service,
            method,
            path,
            body: None,
        }
    }

    fn with(mut self, body: serde_json::Value) -> Self {
        self.body = Some(body);
        self
    }
}

/// Makes `action` as the admin, then goes back to `back` saying `flash`; or the page
/// that says why not (sign in, 403, the service's refusal).
async fn act(
    site: &Site,
    shopper: &Shopper,
    action: Action<'_>,
    back: &str,
    flash: &str,
) -> Response {
    if let Some(page) = refusal(shopper, back) {
        return page;
    }
    let body = match &action.body {
        Some(json) => crate::api::Body::Json(json),
        None => crate::api::Body::Empty,
    };
    let outcome: Result<serde_json::Value, ApiError> = site
        .api
        .call(
            action.service,
            action.method,
            action.path,
            shopper.token(),
            body,
            &[],
        )
        .await;
    match outcome {
        Ok(_) => done(site, back, flash),
        Err(error) => errors::failure(shopper, &error, back),
    }
}

/// A stock adjustment form.
#[derive(Debug, Deserialize)]
pub struct AdjustForm {
    /// Units received (positive) or written off (negative).
    pub delta: i64,
}

/// `POST /admin/stock/{product_id}`.
pub async fn adjust_stock(
    State(site): State<Arc<Site>>,
    shopper: Shopper,
    Path(product_id): Path<String>,
    form: Result<axum::Form<AdjustForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let delta = match form {
        Ok(axum::Form(form)) if form.delta != 0 => form.delta,
        _ => return see_other("/admin/stock", CookieJar::default()),
    };
    let path = format!("/stock/{}/adjustments", segment(&product_id));
    let action = Action::new(Service::Inventory, Method::POST, &path)
        .with(serde_json::json!({"delta": delta}));
    act(&site, &shopper, action, "/admin/stock", "stock-adjusted").await
}

/// The categories page.
#[derive(Template)]
#[template(path = "admin/categories.html")]
pub struct CategoriesPage {
    chrome: Chrome,
    nav: AdminNav,
    categories: Vec<Category>,
    form: CategoryForm,
    errors: FieldErrors,
}

/// A category form.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct CategoryForm {
    /// Its URL name (new categories only).
    #[serde(default)]
    pub slug: String,
    /// Its name.
    #[serde(default)]
    pub name: String,
    /// What it holds.
    #[serde(default)]
    pub description: String,
}

async fn categories_page(
    site: &Site,
    shopper: &Shopper,
    form: CategoryForm,
    errors: FieldErrors,
) -> Response {
    if let Some(page) = refusal(shopper, "/admin/categories") {
        return page;
    }
    let categories = match site.api.categories().await {
        Ok(categories) => categories,
        Err(error) => return errors::failure(shopper, &error, "/admin/categories"),
    };
    let status = if errors.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    render_with(
        status,
        &CategoriesPage {
            chrome: chrome(shopper, "Categories"),
            nav: nav(site, Part::Categories),
            categories,
            form,
            errors,
        },
    )
}

/// `GET /admin/categories`.
pub async fn categories(State(site): State<Arc<Site>>, shopper: Shopper) -> Response {
    categories_page(
        &site,
        &shopper,
        CategoryForm::default(),
        FieldErrors::default(),
    )
    .await
}

/// `POST /admin/categories`: creates one.
pub async fn create_category(
    State(site): State<Arc<Site>>,
    shopper: Shopper,
    axum::Form(form): axum::Form<CategoryForm>,
) -> Response {
    let body = serde_json::json!({
        "slug": form.slug.trim(),
        "name": form.name.trim(),
        "description": form.description.trim(),
    });
    category_change(
        &site,
        &shopper,
        Method::POST,
        "/categories".to_owned(),
        body,
        form,
    )
    .await
}

/// `POST /admin/categories/{slug}`: renames or redescribes one.
pub async fn update_category(
    State(site): State<Arc<Site>>,
    shopper: Shopper,
    Path(slug): Path<String>,
    axum::Form(form): axum::Form<CategoryForm>,
) -> Response {
    let body = serde_json::json!({
        "name": form.name.trim(),
        "description": form.description.trim(),
    });
    let path = format!("/categories/{}", segment(&slug));
    category_change(
        &site,
        &shopper,
        Method::PATCH,
        path,
        body,
        CategoryForm::default(),
    )
    .await
}

/// `POST /admin/categories/{slug}/delete`.
pub async fn delete_category(
    State(site): State<Arc<Site>>,
    shopper: Shopper,
    Path(slug): Path<String>,
) -> Response {
    let path = format!("/categories/{}", segment(&slug));
    category_change(
        &site,
        &shopper,
        Method::DELETE,
        path,
        serde_json::Value::Null,
        CategoryForm::default(),
    )
    .await
}

async fn category_change(
    site: &Site,
    shopper: &Shopper,
    method: Method,
    path: String,
    body: serde_json::Value,
    form: CategoryForm,
) -> Response {
    if let Some(page) = refusal(shopper, "/admin/categories") {
        return page;
    }
    let deleting = method == Method::DELETE;
    // Only the new-category form has fields on the page; a refused edit or deletion of
    // a row is said above the table.
    let creating = method == Method::POST;
    let body = if body.is_null() {
        crate::api::Body::Empty
    } else {
        crate::api::Body::Json(&body)
    };
    let changed: Result<serde_json::Value, ApiError> = site
        .api
        .call(Service::Catalog, method, &path, shopper.token(), body, &[])
        .await;
    match changed {
        Ok(_) if deleting => done(site, "/admin/categories", "category-deleted"),
        Ok(_) => done(site, "/admin/categories", "category-saved"),
        Err(error @ ApiError::Refused { .. }) if error.status() != Some(StatusCode::FORBIDDEN) => {
            let mut errors = FieldErrors::from_api(&error);
            if (errors.is_empty() || !creating)
                && let ApiError::Refused { problem, .. } = &error
            {
                let mut detail = problem.detail.clone();
                for field in &problem.errors {
                    detail.push_str(&format!(" {}: {}.", field.field, field.message));
                }
                errors = FieldErrors::one("form", detail.trim().to_owned());
            }
            categories_page(site, shopper, form, errors).await
        }
        Err(error) => errors::failure(shopper, &error, "/admin/categories"),
    }
}

/// Held orders, orders that may be refunded, and orders whose refund the card network
/// refused (the money must go back another way).
#[derive(Template)]
#[template(path = "admin/orders.html")]
pub struct OrdersPage {
    chrome: Chrome,
    nav: AdminNav,
    held: Vec<OrderRow>,
    confirmed: Vec<OrderRow>,
    refund_failed: Vec<OrderRow>,
}

/// `GET /admin/orders`.
pub async fn orders(State(site): State<Arc<Site>>, shopper: Shopper) -> Response {
    if let Some(page) = refusal(&shopper, "/admin/orders") {
        return page;
    }
    let listing = |status: &'static str| {
        let path = format!("/{}", encode_query(&[("status", status), ("limit", "100")]));
        let api = site.api.clone();
        let token = shopper.token().map(str::to_owned);
        async move {
            api.get::<Page<Order>>(Service::Orders, &path, token.as_deref())
                .await
        }
    };
    let (held, confirmed, refund_failed) = tokio::join!(
        listing("payment_held"),
        listing("confirmed"),
        listing("refund_failed")
    );
    match (held, confirmed, refund_failed) {
        (Ok(held), Ok(confirmed), Ok(refund_failed)) => render(&OrdersPage {
            chrome: chrome(&shopper, "Orders"),
            nav: nav(&site, Part::Orders),
            held: held.items.iter().map(row).collect(),
            confirmed: confirmed.items.iter().map(row).collect(),
            refund_failed: refund_failed.items.iter().map(row).collect(),
        }),
        (Err(error), _, _) | (_, Err(error), _) | (_, _, Err(error)) => {
            errors::failure(&shopper, &error, "/admin/orders")
        }
    }
}

/// A review decision.
#[derive(Debug, Deserialize)]
pub struct ReviewForm {
    /// `true` to let the payment continue, `false` to decline the order.
    pub approve: bool,
}

/// `POST /admin/orders/{id}/review`.
pub async fn review(
    State(site): State<Arc<Site>>,
    shopper: Shopper,
    Path(id): Path<String>,
    axum::Form(form): axum::Form<ReviewForm>,
) -> Response {
    let path = format!("/{}/review", segment(&id));
    let action = Action::new(Service::Orders, Method::POST, &path)
        .with(serde_json::json!({"approve": form.approve}));
    let flash = if form.approve {
        "order-approved"
    } else {
        "order-declined"
    };
    act(&site, &shopper, action, "/admin/orders", flash).await
}

/// `POST /admin/orders/{id}/refund`.
pub async fn refund(
    State(site): State<Arc<Site>>,
    shopper: Shopper,
    Path(id): Path<String>,
) -> Response {
    let path = format!("/{}/refund", segment(&id));
    let action = Action::new(Service::Orders, Method::POST, &path);
    act(&site, &shopper, action, "/admin/orders", "order-refunded").await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_product_form_becomes_the_catalogs_json() {
        let form = ProductForm {
            slug: "teapot".to_owned(),
            name: " Teapot ".to_owned(),
            description: "Brews tea.".to_owned(),
            category: "kitchen".to_owned(),
            price: "24.5".to_owned(),
            currency: "EUR".to_owned(),
            attributes: "colour: white\n\ncapacity: 1 l\n".to_owned(),
        };
        let json = form.to_json().expect("valid");
        assert_eq!(json["price"]["amount_minor"], 2450);
        assert_eq!(json["name"], "Teapot");
        assert_eq!(json["attributes"]["capacity"], "1 l");
        let bad_price = ProductForm {
            price: "cheap".to_owned(),
            ..form.clone()
        };
        assert!(
            !bad_price
                .to_json()
                .expect_err("refused")
                .of("price")
                .is_empty()
        );
        let bad_attributes = ProductForm {
            attributes: "no colon here".to_owned(),
            ..form
        };
        let errors = bad_attributes.to_json().expect_err("refused");
        assert!(!errors.of("attributes").is_empty());
    }
}
