//! What a product and a category are, and how a URL names a product.

use std::collections::BTreeMap;

use contracts::{Currency, Money};

/// The currency of every price in the catalog.
///
/// One currency for all products keeps a listing sorted by price meaningful and means
/// nothing in the catalog ever converts; a price in another currency is refused.
pub const CURRENCY: Currency = Currency::EUR;

pub use contracts::ProductId;

/// A URL-friendly name: 1 to 80 lower-case ASCII letters, digits and inner hyphens.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Slug(String);

impl Slug {
    /// The longest slug accepted.
    pub const MAX_LEN: usize = 80;

    /// Parses a slug, or says what is wrong with it.
    pub fn parse(text: &str) -> Result<Self, String> {
        let well_formed = !text.is_empty()
            && text.len() <= Self::MAX_LEN
            && text
                .bytes()
                .all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'-')
            && !text.starts_with('-')
            && !text.ends_with('-');
        if well_formed {
            Ok(Self(text.to_owned()))
        } else {
            Err(format!(
                "must be 1 to {} lower-case letters, digits and inner hyphens",
                Self::MAX_LEN
            ))
        }
    }

    /// The slug's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A product as the catalog keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Product {
    /// Stable id.
    pub id: ProductId,
    /// Unique URL name.
    pub slug: Slug,
    /// Display name.
    pub name: String,
    /// Product page text.
    pub description: String,
    /// The category's slug.
    pub category: Slug,
    /// Current price.
    pub price: Money,
    /// Image path or URL.
    pub image: String,
    /// Free-form facts.
    pub attributes: BTreeMap<String, String>,
}

impl Product {
    /// The lower-cased text that search terms are matched against.
    pub fn search_text(&self) -> String {
        format!("{} {}", self.name, self.description).to_lowercase()
    }
}

/// A product category.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Category {
    /// Unique URL name.
    pub slug: Slug,
    /// Display name.
    pub name: String,
    /// What it holds.
    pub description: String,
}

/// How a product might be named in a URL: by id or by slug.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProductRef {
    /// By UUID.
    Id(ProductId),
    /// By slug.
    Slug(Slug),
}

impl ProductRef {
    /// A UUID is an id; anything else must be a well-formed slug.
    pub fn parse(text: &str) -> Result<Self, String> {
        if let Ok(id) = ProductId::parse(text) {
            return Ok(Self::Id(id));
        }
        Slug::parse(text)
            .map(Self::Slug)
            .map_err(|reason| format!("must be a product id (UUID) or a slug: {reason}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_are_lower_case_words_joined_by_hyphens() {
        assert!(Slug::parse("enamel-camp-mug").is_ok());
        for bad in ["", "-mug", "mug-", "Mug", "mug mug", "müg", &"a".repeat(81)] {
            assert!(Slug::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }
}
