//! The storefront: Bazaar's web shop and back-office, rendered on the server.
//!
//! It owns no business data. It is a backend-for-frontend: each page is made of calls
//! to the services' public REST APIs with the signed-in shopper's own token
//! ([`api`]), rendered with compile-time-checked templates (askama, in `templates/`).
//! The gateway routes `/` and every path outside `/api` here. The whole journey
//! (browse, cart, checkout, the order's progress) works with JavaScript off; htmx
//! (vendored, `assets/`) only adds to it: add to cart without leaving the page, and
//! the order's steps updating live.
//!
//! - [`config`]: where the services are, cookie and demo settings.
//! - [`api`]: the REST calls and the answer types the pages read.
//! - [`session`]: the session in cookies, token refresh, CSRF, the guest cart.
//! - [`pages`]: the handlers, one module per part of the shop, and error pages.
//! - [`assets`]: the stylesheet, htmx and product pictures, embedded at build time.

pub mod api;
pub mod assets;
pub mod config;
pub mod pages;
pub mod session;

use std::sync::Arc;

use axum::Router;
use axum::middleware;
use axum::routing::{get, post};
use platform::auth::Verifier;
use platform::http::Readiness;
use platform::service::{Context, Service};

pub use config::Config;

/// The service's name in logs, metrics and the topology.
pub const NAME: &str = "storefront";

/// What every page handler shares.
pub struct Site {
    /// The services' APIs.
    pub api: api::Api,
    /// Settings.
    pub config: Config,
    /// Verifies shoppers' access tokens, as every service does.
    pub verifier: Verifier,
    /// Refresh exchanges in flight or just made.
    pub refreshes: session::Refreshes,
    /// The process's feature flags: release flags choose between pages.
    pub flags: platform::flags::Flags,
}

/// The storefront's service: its pages, on the verifier of `context`.
pub async fn build(config: &Config, context: &Context) -> anyhow::Result<Service> {
    let site = Arc::new(Site {
        api: api::Api::new(config)?,
        config: config.clone(),
        verifier: context.verifier.clone(),
        refreshes: session::Refreshes::default(),
        flags: context.flags.clone(),
    });
    let options = platform::http::AppOptions {
        // Unknown paths get the shop's 404 page, not a problem body.
        problem_fallback: false,
        ..context.options(NAME)
    };
    Ok(Service::serving(platform::http::app_with(
        NAME,
        router(site),
        Readiness::new(),
        options,
    )))
}

/// Every page and asset of the shop.
pub fn router(site: Arc<Site>) -> Router {
    use pages::{account, admin, cart, checkout, orders, shop};
    let pages = Router::new()
        .route("/", get(shop::home))
        .route("/products", get(shop::listing))
        .route("/products/{slug}", get(shop::product))
        .route("/cart", get(cart::show))
        .route("/cart/items", post(cart::add))
        .route("/cart/items/{product_id}", post(cart::set_quantity))
        .route("/cart/items/{product_id}/remove", post(cart::remove))
        .route("/checkout", get(checkout::show).post(checkout::place))
        .route("/orders", get(orders::list))
        .route("/orders/{id}", get(orders::show))
        .route("/orders/{id}/progress", get(orders::progress_fragment))
        .route("/orders/{id}/cancel", post(orders::cancel))
        .route("/inbox", get(orders::inbox))
        .route("/inbox/{id}", get(orders::email))
        .route(
            "/sign-in",
            get(account::sign_in_page).post(account::sign_in),
        )
        .route(
            "/register",
            get(account::register_page).post(account::register),
        )
        .route(
            "/confirm",
            get(account::confirm_link).post(account::confirm),
        )
        .route("/sign-out", post(account::sign_out))
        .route("/account", get(account::account))
        .route("/account/password", post(account::change_password))
        .route("/account/cards/{token}/delete", post(account::delete_card))
        .route("/admin", get(admin::index))
        .route(
            "/admin/products",
            get(admin::products).post(admin::create_product),
        )
        .route("/admin/products/new", get(admin::new_product))
        .route("/admin/products/{slug}", post(admin::update_product))
        .route("/admin/products/{slug}/edit", get(admin::edit_product))
        .route("/admin/products/{slug}/delete", post(admin::delete_product))
        .route("/admin/stock", get(admin::stock))
        .route("/admin/stock/{product_id}", post(admin::adjust_stock))
        .route(
            "/admin/categories",
            get(admin::categories).post(admin::create_category),
        )
        .route("/admin/categories/{slug}", post(admin::update_category))
        .route(
            "/admin/categories/{slug}/delete",
            post(admin::delete_category),
        )
        .route("/admin/orders", get(admin::orders))
        .route("/admin/orders/{id}/review", post(admin::review))
        .route("/admin/orders/{id}/refund", post(admin::refund))
        .fallback(pages::errors::fallback)
        .layer(middleware::from_fn_with_state(
            Arc::clone(&site),
            session::layer,
        ))
        .with_state(site);
    Router::new()
        .route("/static/{name}", get(assets::static_file))
        .route("/favicon.ico", get(assets::favicon_ico))
        .route("/images/products/{name}", get(assets::product_picture))
        .merge(pages)
        .layer(tower_http::catch_panic::CatchPanicLayer::new())
        .layer(middleware::from_fn(pages::errors::pages_for_failures))
}
