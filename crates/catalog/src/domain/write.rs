//! What an admin may write: new products and categories and changes to them, parsed
//! from raw input, every invalid field named.

use std::collections::BTreeMap;

use contracts::{Currency, Money};
use platform::problem::FieldError;

use super::{CURRENCY, Category, Product, ProductId, Slug, keep_valid};

/// The rules every product and category field written by an admin must follow.
pub mod limits {
    /// The longest name, in characters, after trimming surrounding white space.
    pub const NAME_MAX_CHARS: usize = 120;
    /// The longest description, in characters.
    pub const DESCRIPTION_MAX_CHARS: usize = 4000;
    /// The highest price, in minor units (1 000 000.00 EUR).
    pub const PRICE_MAX_MINOR: i64 = 100_000_000;
    /// The longest image path or URL, in characters.
    pub const IMAGE_MAX_CHARS: usize = 500;
    /// The most attributes a product may have.
    pub const ATTRIBUTES_MAX: usize = 30;
    /// The longest attribute key, in characters (`a-z`, `0-9` and `_`).
    pub const ATTRIBUTE_KEY_MAX_CHARS: usize = 40;
    /// The longest attribute value, in characters.
    pub const ATTRIBUTE_VALUE_MAX_CHARS: usize = 200;
}

/// A price as sent, before parsing.
#[derive(Clone, Copy, Debug)]
pub struct RawPrice<'a> {
    /// `price.amount_minor`
    pub amount_minor: i64,
    /// `price.currency`
    pub currency: &'a str,
}

/// A new product as sent, before parsing.
#[derive(Clone, Copy, Debug)]
pub struct RawProduct<'a> {
    /// `slug`
    pub slug: &'a str,
    /// `name`
    pub name: &'a str,
    /// `description`
    pub description: &'a str,
    /// `category`
    pub category: &'a str,
    /// `price`
    pub price: RawPrice<'a>,
    /// `image`
    pub image: &'a str,
    /// `attributes`
    pub attributes: &'a BTreeMap<String, String>,
}

/// A new product, every field valid; it gets its id when it is created.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewProduct {
    /// Unique URL name.
    pub slug: Slug,
    /// Display name, trimmed.
    pub name: String,
    /// Product page text.
    pub description: String,
    /// The category's slug; whether it exists is the store's to say.
    pub category: Slug,
    /// Price, in [`CURRENCY`].
    pub price: Money,
    /// Image path or URL.
    pub image: String,
    /// Free-form facts.
    pub attributes: BTreeMap<String, String>,
}

impl NewProduct {
    /// Parses every field, reporting all invalid fields at once.
    pub fn parse(raw: RawProduct<'_>) -> Result<Self, Vec<FieldError>> {
        let mut invalid = Vec::new();
        let slug = keep_valid(&mut invalid, "slug", Slug::parse(raw.slug));
        let name = keep_valid(&mut invalid, "name", parse_name(raw.name));
        let description = keep_valid(
            &mut invalid,
            "description",
            parse_description(raw.description),
        );
        let category = keep_valid(&mut invalid, "category", Slug::parse(raw.category));
        let price = parse_price(&mut invalid, raw.price);
        let image = keep_valid(&mut invalid, "image", parse_image(raw.image));
        let attributes = keep_valid(&mut invalid, "attributes", parse_attributes(raw.attributes));
        match (slug, name, description, category, price, image, attributes) {
            (
                Some(slug),
                Some(name),
                Some(description),
                Some(category),
                Some(price),
                Some(image),
                Some(attributes),
            ) => Ok(Self {
                slug,
                name,
                description,
                category,
                price,
                image,
                attributes,
            }),
            _ => Err(invalid),
        }
    }

    /// The product this becomes once it has an id.
    pub fn into_product(self, id: ProductId) -> Product {
        Product {
            id,
            slug: self.slug,
            name: self.name,
            description: self.description,
            category: self.category,
            price: self.price,
            image: self.image,
            attributes: self.attributes,
        }
    }
}

/// Changes to a product as sent, before parsing; `None` leaves a field as it is.
#[derive(Clone, Copy, Debug, Default)]
pub struct RawProductPatch<'a> {
    /// `slug`
    pub slug: Option<&'a str>,
    /// `name`
    pub name: Option<&'a str>,
    /// `description`
    pub description: Option<&'a str>,
    /// `category`
    pub category: Option<&'a str>,
    /// `price`
    pub price: Option<RawPrice<'a>>,
    /// `image`
    pub image: Option<&'a str>,
    /// `attributes`, replaced as a whole
    pub attributes: Option<&'a BTreeMap<String, String>>,
}

/// Valid changes to a product; `None` leaves a field as it is.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProductPatch {
    /// A new URL name.
    pub slug: Option<Slug>,
    /// A new display name, trimmed.
    pub name: Option<String>,
    /// A new product page text.
    pub description: Option<String>,
    /// Another category's slug.
    pub category: Option<Slug>,
    /// A new price, in [`CURRENCY`].
    pub price: Option<Money>,
    /// A new image path or URL.
    pub image: Option<String>,
    /// New attributes, replacing all the old ones.
    pub attributes: Option<BTreeMap<String, String>>,
}

impl ProductPatch {
    /// Parses every field present, reporting all invalid fields at once.
    pub fn parse(raw: RawProductPatch<'_>) -> Result<Self, Vec<FieldError>> {
        let mut invalid = Vec::new();
        let patch = Self {
            slug: raw
                .slug
                .and_then(|text| keep_valid(&mut invalid, "slug", Slug::parse(text))),
            name: raw
                .name
                .and_then(|text| keep_valid(&mut invalid, "name", parse_name(text))),
            description: raw
                .description
                .and_then(|text| keep_valid(&mut invalid, "description", parse_description(text))),
            category: raw
                .category
                .and_then(|text| keep_valid(&mut invalid, "category", Slug::parse(text))),
            price: raw.price.and_then(|price| parse_price(&mut invalid, price)),
            image: raw
                .image
                .and_then(|text| keep_valid(&mut invalid, "image", parse_image(text))),
            attributes: raw.attributes.and_then(|attributes| {
                keep_valid(&mut invalid, "attributes", parse_attributes(attributes))
            }),
        };
        if invalid.is_empty() {
            Ok(patch)
        } else {
            Err(invalid)
        }
    }

    /// `product` with these changes made; its id never changes.
    pub fn apply(&self, product: Product) -> Product {
        let Self {
            slug,
            name,
            description,
            category,
            price,
            image,
            attributes,
        } = self.clone();
        Product {
            id: product.id,
            slug: slug.unwrap_or(product.slug),
            name: name.unwrap_or(product.name),
            description: description.unwrap_or(product.description),
            category: category.unwrap_or(product.category),
            price: price.unwrap_or(product.price),
            image: image.unwrap_or(product.image),
            attributes: attributes.unwrap_or(product.attributes),
        }
    }
}

/// A new category as sent, before parsing.
#[derive(Clone, Copy, Debug)]
pub struct RawCategory<'a> {
    /// `slug`
    pub slug: &'a str,
    /// `name`
    pub name: &'a str,
    /// `description`
    pub description: &'a str,
}

impl Category {
    /// Parses a new category, reporting all invalid fields at once.
    pub fn parse(raw: RawCategory<'_>) -> Result<Self, Vec<FieldError>> {
        let mut invalid = Vec::new();
        let slug = keep_valid(&mut invalid, "slug", Slug::parse(raw.slug));
        let name = keep_valid(&mut invalid, "name", parse_name(raw.name));
        let description = keep_valid(
            &mut invalid,
            "description",
            parse_description(raw.description),
        );
        match (slug, name, description) {
            (Some(slug), Some(name), Some(description)) => Ok(Self {
                slug,
                name,
                description,
            }),
            _ => Err(invalid),
        }
    }
}

/// Changes to a category as sent, before parsing; `None` leaves a field as it is.
#[derive(Clone, Copy, Debug, Default)]
pub struct RawCategoryPatch<'a> {
    /// `name`
    pub name: Option<&'a str>,
    /// `description`
    pub description: Option<&'a str>,
}

/// Valid changes to a category; its slug never changes, since products refer to it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CategoryPatch {
    /// A new display name, trimmed.
    pub name: Option<String>,
    /// A new description.
    pub description: Option<String>,
}

impl CategoryPatch {
    /// Parses every field present, reporting all invalid fields at once.
    pub fn parse(raw: RawCategoryPatch<'_>) -> Result<Self, Vec<FieldError>> {
        let mut invalid = Vec::new();
        let patch = Self {
            name: raw
                .name
                .and_then(|text| keep_valid(&mut invalid, "name", parse_name(text))),
            description: raw
                .description
                .and_then(|text| keep_valid(&mut invalid, "description", parse_description(text))),
        };
        if invalid.is_empty() {
            Ok(patch)
        } else {
            Err(invalid)
        }
    }
}

/// A display name: trimmed, then 1 to [`limits::NAME_MAX_CHARS`] characters.
fn parse_name(text: &str) -> Result<String, String> {
    let trimmed = text.trim();
    if trimmed.chars().any(char::is_control) {
        return Err("must not contain control characters".to_owned());
    }
    if (1..=limits::NAME_MAX_CHARS).contains(&trimmed.chars().count()) {
        Ok(trimmed.to_owned())
    } else {
        Err(format!(
            "must be 1 to {} characters, not counting surrounding spaces",
            limits::NAME_MAX_CHARS
        ))
    }
}

fn parse_description(text: &str) -> Result<String, String> {
    at_most(text, limits::DESCRIPTION_MAX_CHARS)
}

fn parse_image(text: &str) -> Result<String, String> {
    at_most(text, limits::IMAGE_MAX_CHARS)
}

fn at_most(text: &str, max_chars: usize) -> Result<String, String> {
    plain_text(text)?;
    if text.chars().count() <= max_chars {
        Ok(text.to_owned())
    } else {
        Err(format!("must be at most {max_chars} characters"))
    }
}

/// Both halves of a price are checked, so a request with a bad amount and a bad
/// currency hears about both.
fn parse_price(invalid: &mut Vec<FieldError>, raw: RawPrice<'_>) -> Option<Money> {
    let amount = keep_valid(
        invalid,
        "price.amount_minor",
        parse_amount(raw.amount_minor),
    );
    let currency = keep_valid(invalid, "price.currency", parse_currency(raw.currency));
    Some(Money::new(amount?, currency?))
}

fn parse_amount(amount_minor: i64) -> Result<i64, String> {
    if (0..=limits::PRICE_MAX_MINOR).contains(&amount_minor) {
        Ok(amount_minor)
    } else {
        Err(format!(
            "must be a whole number of minor units from 0 to {}",
            limits::PRICE_MAX_MINOR
        ))
    }
}

fn parse_currency(code: &str) -> Result<Currency, String> {
    let currency = Currency::parse(code).map_err(|error| error.to_string())?;
    if currency == CURRENCY {
        Ok(currency)
    } else {
        Err(format!(
            "must be {CURRENCY}: every product in the catalog is priced in {CURRENCY}"
        ))
    }
}

/// At most [`limits::ATTRIBUTES_MAX`] entries with short, plain keys, so attributes stay
/// facts to display rather than a place to store documents. The first offending entry is
/// named.
fn parse_attributes(
    attributes: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, String> {
    if attributes.len() > limits::ATTRIBUTES_MAX {
        return Err(format!(
            "must have at most {} entries, not {}",
            limits::ATTRIBUTES_MAX,
            attributes.len()
        ));
    }
    for (key, value) in attributes {
        let plain_key = (1..=limits::ATTRIBUTE_KEY_MAX_CHARS).contains(&key.len())
            && key
                .bytes()
                .all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'_');
        if !plain_key {
            return Err(format!(
                "key {key:?} must be 1 to {} of a-z, 0-9 and _",
                limits::ATTRIBUTE_KEY_MAX_CHARS
            ));
        }
        plain_text(value).map_err(|reason| format!("the value of {key:?} {reason}"))?;
        if value.chars().count() > limits::ATTRIBUTE_VALUE_MAX_CHARS {
            return Err(format!(
                "the value of {key:?} must be at most {} characters",
                limits::ATTRIBUTE_VALUE_MAX_CHARS
            ));
        }
    }
    Ok(attributes.clone())
}

/// Text that a database can store and a page can show: no NUL or other control
/// characters but line breaks and tabs. (PostgreSQL refuses NUL in text outright.)
fn plain_text(text: &str) -> Result<(), String> {
    if text
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
    {
        Err("must not contain control characters".to_owned())
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::sample_product;
    use super::*;

    fn raw_product<'a>(attributes: &'a BTreeMap<String, String>) -> RawProduct<'a> {
        RawProduct {
            slug: "steel-mug",
            name: "  Steel Mug ",
            description: "A mug.",
            category: "kitchen",
            price: RawPrice {
                amount_minor: 1450,
                currency: "EUR",
            },
            image: "/images/steel-mug.jpg",
            attributes,
        }
    }

    fn fields(invalid: &[FieldError]) -> Vec<&str> {
        invalid
            .iter()
            .map(|invalid| invalid.field.as_str())
            .collect()
    }

    #[test]
    fn a_valid_product_parses_with_its_name_trimmed() {
        let attributes = BTreeMap::from([("material".to_owned(), "steel".to_owned())]);
        let product = NewProduct::parse(raw_product(&attributes)).expect("valid");
        assert_eq!(product.name, "Steel Mug");
        assert_eq!(product.price, Money::new(1450, CURRENCY));
        assert_eq!(product.attributes, attributes);
    }

    #[test]
    fn every_invalid_product_field_is_reported() {
        let attributes = BTreeMap::from([("Colour".to_owned(), "red".to_owned())]);
        let long = "x".repeat(4001);
        let invalid = NewProduct::parse(RawProduct {
            slug: "Steel Mug",
            name: "   ",
            description: &long,
            category: "",
            price: RawPrice {
                amount_minor: -1,
                currency: "eur",
            },
            image: &long,
            attributes: &attributes,
        })
        .unwrap_err();
        assert_eq!(
            fields(&invalid),
            [
                "slug",
                "name",
                "description",
                "category",
                "price.amount_minor",
                "price.currency",
                "image",
                "attributes"
            ]
        );
    }

    #[test]
    fn limits_are_inclusive() {
        assert!(parse_name(&"n".repeat(120)).is_ok());
        assert!(parse_name(&"n".repeat(121)).is_err());
        assert!(parse_name(&format!(" {} ", "n".repeat(120))).is_ok());
        assert!(parse_description("").is_ok());
        assert!(parse_description(&"é".repeat(4000)).is_ok());
        assert!(parse_image(&"i".repeat(500)).is_ok());
        assert!(parse_image(&"i".repeat(501)).is_err());
        assert_eq!(parse_amount(0), Ok(0));
        assert_eq!(parse_amount(100_000_000), Ok(100_000_000));
        assert!(parse_amount(100_000_001).is_err());
    }

    #[test]
    fn only_the_catalog_currency_is_accepted() {
        assert_eq!(parse_currency("EUR"), Ok(CURRENCY));
        let foreign = parse_currency("USD").unwrap_err();
        assert!(foreign.contains("EUR"), "{foreign}");
        assert!(parse_currency("euro").is_err());
    }

    #[test]
    fn attributes_are_few_with_plain_keys_and_short_values() {
        let entries = |pairs: &[(&str, String)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(key, value)| ((*key).to_owned(), value.clone()))
                .collect()
        };
        assert!(parse_attributes(&entries(&[("battery_life_2", "8 h".to_owned())])).is_ok());
        assert!(parse_attributes(&entries(&[(&"k".repeat(40), "v".repeat(200))])).is_ok());
        for bad in [
            entries(&[("", "v".to_owned())]),
            entries(&[("Colour", "v".to_owned())]),
            entries(&[("size-eu", "v".to_owned())]),
            entries(&[(&"k".repeat(41), "v".to_owned())]),
            entries(&[("k", "v".repeat(201))]),
            (0..31)
                .map(|index| (format!("k{index}"), String::new()))
                .collect(),
        ] {
            assert!(
                parse_attributes(&bad).is_err(),
                "{bad:?} should be rejected"
            );
        }
    }

    #[test]
    fn a_patch_changes_only_what_it_names() {
        let before = sample_product("Mug", 100);
        let patch = ProductPatch::parse(RawProductPatch {
            price: Some(RawPrice {
                amount_minor: 250,
                currency: "EUR",
            }),
            name: Some(" Big Mug "),
            ..RawProductPatch::default()
        })
        .expect("valid");
        let after = patch.apply(before.clone());
        assert_eq!(after.name, "Big Mug");
        assert_eq!(after.price.amount_minor, 250);
        assert_eq!(after.id, before.id);
        assert_eq!(after.slug, before.slug);
        assert_eq!(after.description, before.description);
        assert_eq!(ProductPatch::default().apply(before.clone()), before);
    }

    #[test]
    fn an_invalid_patch_reports_every_field() {
        let invalid = ProductPatch::parse(RawProductPatch {
            name: Some(""),
            price: Some(RawPrice {
                amount_minor: 1,
                currency: "GBP",
            }),
            ..RawProductPatch::default()
        })
        .unwrap_err();
        assert_eq!(fields(&invalid), ["name", "price.currency"]);
        let invalid = CategoryPatch::parse(RawCategoryPatch {
            name: Some(&"n".repeat(121)),
            description: Some(&"d".repeat(4001)),
        })
        .unwrap_err();
        assert_eq!(fields(&invalid), ["name", "description"]);
    }

    #[test]
    fn a_category_parses_like_a_product_does() {
        let category = Category::parse(RawCategory {
            slug: "garden",
            name: " Garden ",
            description: "",
        })
        .expect("valid");
        assert_eq!(category.name, "Garden");
        let invalid = Category::parse(RawCategory {
            slug: "Garden",
            name: "",
            description: "",
        })
        .unwrap_err();
        assert_eq!(fields(&invalid), ["slug", "name"]);
    }
}
