//! The catalog's domain: what a product is, what a well-formed product query is, and
//! what an admin may write.
//!
//! Everything here is pure: no SQL, no HTTP, no serde. Raw input is parsed into these
//! types once, at the edge, and everything past the edge can rely on them.
//!
//! - `product`: what a product and a category are, and how they are named.
//! - `query`: a well-formed product listing: sort, search, cursor, page size.
//! - `write`: what an admin may write, parsed from raw input with every invalid field
//!   named.

mod product;
mod query;
mod write;

pub use product::*;
pub use query::*;
pub use write::*;

use platform::problem::FieldError;

/// The parsed value, or `None` after recording why `field` is invalid.
fn keep_valid<T>(
    invalid: &mut Vec<FieldError>,
    field: &'static str,
    result: Result<T, String>,
) -> Option<T> {
    result
        .map_err(|reason| invalid.push(FieldError::new(field, reason)))
        .ok()
}

/// A valid product named `name` at `price` euro cents, for the modules' tests.
#[cfg(test)]
fn sample_product(name: &str, price: i64) -> Product {
    Product {
        id: ProductId::generate(),
        slug: Slug::parse("a-product").expect("valid"),
        name: name.to_owned(),
        description: String::new(),
        category: Slug::parse("kitchen").expect("valid"),
        price: contracts::Money::new(price, contracts::Currency::EUR),
        image: String::new(),
        attributes: std::collections::BTreeMap::new(),
    }
}
