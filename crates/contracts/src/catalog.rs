//! The catalog's public REST representations.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::Money;

/// A product as shown to shoppers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Product {
    /// Stable id (UUID).
    pub id: String,
    /// URL-friendly unique name, e.g. `enamel-camp-mug`.
    pub slug: String,
    /// Display name.
    pub name: String,
    /// A few sentences for the product page.
    pub description: String,
    /// The slug of the product's category.
    pub category: String,
    /// Current price.
    pub price: Money,
    /// Path or URL of the product image.
    pub image: String,
    /// Free-form facts, e.g. `{"material": "steel"}`.
    pub attributes: std::collections::BTreeMap<String, String>,
}

/// One page of products.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ProductPage {
    /// The products on this page, in the requested order.
    pub items: Vec<Product>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// A product category.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Category {
    /// URL-friendly unique name.
    pub slug: String,
    /// Display name.
    pub name: String,
    /// One sentence about what it holds.
    pub description: String,
}

/// All categories, in display order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CategoryList {
    /// The categories.
    pub items: Vec<Category>,
}
