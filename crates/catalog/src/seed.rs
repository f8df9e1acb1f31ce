//! The demo catalog, shipped in the binary and loaded on first start.

use std::collections::BTreeMap;

use anyhow::Context as _;
use contracts::{Currency, Money};
use serde::Deserialize;

use crate::domain::{CURRENCY, Category, Product, ProductId, Slug};
use crate::ops::Catalog;

/// The name recorded when the demo catalog has been applied.
const DEMO: &str = "demo-catalog-v1";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SeedFile {
    currency: String,
    categories: Vec<SeedCategory>,
    products: Vec<SeedProduct>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SeedCategory {
    slug: String,
    name: String,
    description: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SeedProduct {
    slug: String,
    name: String,
    description: String,
    category: String,
    price_minor: i64,
    image: String,
    attributes: BTreeMap<String, String>,
}

/// The demo catalog's categories and products, parsed from the embedded file.
pub fn demo() -> anyhow::Result<(Vec<Category>, Vec<Product>)> {
    let file: SeedFile = serde_json::from_str(include_str!("../seed/catalog.json"))
        .context("parsing the embedded demo catalog")?;
    let currency = Currency::parse(&file.currency)?;
    anyhow::ensure!(
        currency == CURRENCY,
        "the demo catalog is priced in {currency}, but the catalog prices everything in {CURRENCY}"
    );
    let slug = |text: &str| {
        Slug::parse(text).map_err(|reason| anyhow::anyhow!("demo slug {text:?}: {reason}"))
    };
    let categories = file
        .categories
        .into_iter()
        .map(|category| {
            Ok(Category {
                slug: slug(&category.slug)?,
                name: category.name,
                description: category.description,
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let products = file
        .products
        .into_iter()
        .map(|product| {
            Ok(Product {
                id: ProductId::generate(),
                slug: slug(&product.slug)?,
                name: product.name,
                description: product.description,
                category: slug(&product.category)?,
                price: Money::new(product.price_minor, currency),
                image: product.image,
                attributes: product.attributes,
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok((categories, products))
}

/// Loads the demo catalog unless it was loaded before.
pub async fn apply_demo(catalog: &Catalog) -> anyhow::Result<()> {
    let (categories, products) = demo()?;
    if crate::ops::seed(catalog, DEMO, &categories, &products).await? {
        tracing::info!(
            categories = categories.len(),
            products = products.len(),
            "loaded the demo catalog"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{NewProduct, RawPrice, RawProduct};

    #[test]
    fn demo_products_follow_the_rules_admins_are_held_to() {
        let (_, products) = demo().expect("the embedded catalog parses");
        for product in &products {
            let parsed = NewProduct::parse(RawProduct {
                slug: product.slug.as_str(),
                name: &product.name,
                description: &product.description,
                category: product.category.as_str(),
                price: RawPrice {
                    amount_minor: product.price.amount_minor,
                    currency: product.price.currency.as_str(),
                },
                image: &product.image,
                attributes: &product.attributes,
            });
            assert!(
                parsed.is_ok(),
                "{}: {:?}",
                product.slug.as_str(),
                parsed.err()
            );
        }
    }

    #[test]
    fn the_demo_catalog_is_well_formed() {
        let (categories, products) = demo().expect("the embedded catalog parses");
        assert!(categories.len() >= 5);
        assert!(products.len() >= 40);
        for product in &products {
            assert!(
                categories
                    .iter()
                    .any(|category| category.slug == product.category),
                "{} has an unknown category",
                product.slug.as_str()
            );
        }
    }
}
