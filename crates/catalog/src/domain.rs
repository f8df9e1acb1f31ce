//! The catalog's domain: what a product is, what a well-formed product query is, and
//! what an admin may write.
//!
//! Everything here is pure: no SQL, no HTTP, no serde. Raw input is parsed into these
//! types once, at the edge, and everything past the edge can rely on them.

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use contracts::{Currency, Money};
use platform::page::PageLimit;
use uuid::Uuid;

/// The currency of every price in the catalog.
///
/// One currency for all products keeps a listing sorted by price meaningful and means
/// nothing in the catalog ever converts; a price in another currency is refused.
pub const CURRENCY: Currency = Currency::EUR;

/// A product's stable id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProductId(Uuid);

impl ProductId {
    /// A new, time-ordered id.
    pub fn generate() -> Self {
        Self(Uuid::now_v7())
    }

    /// Parses the hyphenated UUID form.
    pub fn parse(text: &str) -> Option<Self> {
        Uuid::try_parse(text).ok().map(Self)
    }
}

impl fmt::Display for ProductId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

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
        if let Some(id) = ProductId::parse(text) {
            return Ok(Self::Id(id));
        }
        Slug::parse(text)
            .map(Self::Slug)
            .map_err(|reason| format!("must be a product id (UUID) or a slug: {reason}"))
    }
}

/// What products may be ordered by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SortKey {
    /// Display name, byte order.
    Name,
    /// Price in minor units.
    Price,
}

/// A sort key and its direction; ties are broken by id, in the same direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sort {
    /// What to order by.
    pub key: SortKey,
    /// Largest first.
    pub descending: bool,
}

impl Sort {
    /// The accepted spellings, as documented in the API.
    pub const ACCEPTED: &'static str = "name, -name, price, -price";

    /// Parses `name`, `-name`, `price` or `-price`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (descending, key) = match text.strip_prefix('-') {
            Some(key) => (true, key),
            None => (false, text),
        };
        let key = match key {
            "name" => SortKey::Name,
            "price" => SortKey::Price,
            _ => {
                return Err(format!(
                    "unknown sort {text:?}; expected one of {}",
                    Self::ACCEPTED
                ));
            }
        };
        Ok(Self { key, descending })
    }
}

impl Default for Sort {
    fn default() -> Self {
        Self {
            key: SortKey::Name,
            descending: false,
        }
    }
}

impl fmt::Display for Sort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.descending { "-" } else { "" };
        let key = match self.key {
            SortKey::Name => "name",
            SortKey::Price => "price",
        };
        write!(f, "{sign}{key}")
    }
}

/// The sort-key value of the last product on a page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SortValue {
    /// The last product's name.
    Name(String),
    /// The last product's price in minor units.
    Price(i64),
}

/// Where the next page starts: after this (sort value, id) in this sort order.
///
/// On the wire it is opaque: URL-safe base64 of `sort|value|id`. It carries its sort so
/// a cursor cannot be replayed against another order and silently skip products.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cursor {
    /// The order the cursor was issued for.
    pub sort: Sort,
    /// The last product's sort value.
    pub value: SortValue,
    /// The last product's id.
    pub id: ProductId,
}

impl Cursor {
    /// The cursor that continues after `product` in `sort` order.
    pub fn after(product: &Product, sort: Sort) -> Self {
        let value = match sort.key {
            SortKey::Name => SortValue::Name(product.name.clone()),
            SortKey::Price => SortValue::Price(product.price.amount_minor),
        };
        Self {
            sort,
            value,
            id: product.id,
        }
    }

    /// The opaque form handed to clients.
    pub fn encode(&self) -> String {
        let value = match &self.value {
            SortValue::Name(name) => name.clone(),
            SortValue::Price(price) => price.to_string(),
        };
        URL_SAFE_NO_PAD.encode(format!("{}|{value}|{}", self.sort, self.id))
    }

    /// Decodes a cursor that this service issued.
    pub fn decode(text: &str) -> Result<Self, String> {
        const MALFORMED: &str = "malformed cursor; pass back next_cursor exactly as received";
        if text.len() > 512 {
            return Err(MALFORMED.to_owned());
        }
        let bytes = URL_SAFE_NO_PAD
            .decode(text)
            .map_err(|_| MALFORMED.to_owned())?;
        let text = String::from_utf8(bytes).map_err(|_| MALFORMED.to_owned())?;
        if text.chars().any(char::is_control) {
            return Err(MALFORMED.to_owned());
        }
        let (sort, rest) = text.split_once('|').ok_or(MALFORMED)?;
        let (value, id) = rest.rsplit_once('|').ok_or(MALFORMED)?;
        let sort = Sort::parse(sort).map_err(|_| MALFORMED.to_owned())?;
        let id = ProductId::parse(id).ok_or(MALFORMED)?;
        let value = match sort.key {
            SortKey::Name => SortValue::Name(value.to_owned()),
            SortKey::Price => SortValue::Price(value.parse().map_err(|_| MALFORMED.to_owned())?),
        };
        Ok(Self { sort, value, id })
    }
}

/// Words that must all appear in a product's name or description.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Search(Vec<String>);

impl Search {
    /// The longest search text accepted, in characters.
    pub const MAX_CHARS: usize = 100;
    /// The most words a search may have.
    pub const MAX_WORDS: usize = 5;

    /// Parses free text into lower-cased words. Blank text means no search.
    pub fn parse(text: &str) -> Result<Option<Self>, String> {
        if text.chars().count() > Self::MAX_CHARS {
            return Err(format!("must be at most {} characters", Self::MAX_CHARS));
        }
        if text.chars().any(char::is_control) {
            return Err("must not contain control characters".to_owned());
        }
        let words: Vec<String> = text.split_whitespace().map(str::to_lowercase).collect();
        if words.len() > Self::MAX_WORDS {
            return Err(format!("must be at most {} words", Self::MAX_WORDS));
        }
        Ok((!words.is_empty()).then_some(Self(words)))
    }

    /// The words, lower-cased.
    pub fn words(&self) -> &[String] {
        &self.0
    }
}

/// A field of a request that failed to parse, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invalid {
    /// The request field.
    pub field: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

/// A parsed, valid product listing request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProductQuery {
    /// Only products of this category.
    pub category: Option<Slug>,
    /// Only products matching every word.
    pub search: Option<Search>,
    /// Order of the results.
    pub sort: Sort,
    /// Page size.
    pub limit: PageLimit,
    /// Continue after this position.
    pub after: Option<Cursor>,
}

/// The raw text of a product listing request, before parsing.
#[derive(Clone, Copy, Debug, Default)]
pub struct RawProductQuery<'a> {
    /// `category`
    pub category: Option<&'a str>,
    /// `q`
    pub search: Option<&'a str>,
    /// `sort`
    pub sort: Option<&'a str>,
    /// `limit`
    pub limit: Option<&'a str>,
    /// `cursor`
    pub cursor: Option<&'a str>,
}

impl ProductQuery {
    /// Parses every field, reporting all invalid fields at once.
    pub fn parse(raw: RawProductQuery<'_>) -> Result<Self, Vec<Invalid>> {
        let mut invalid = Vec::new();
        let category = raw
            .category
            .and_then(|text| keep_valid(&mut invalid, "category", Slug::parse(text)));
        let search = raw
            .search
            .and_then(|text| keep_valid(&mut invalid, "q", Search::parse(text)))
            .flatten();
        let sort = raw
            .sort
            .and_then(|text| keep_valid(&mut invalid, "sort", Sort::parse(text)))
            .unwrap_or_default();
        let limit = raw
            .limit
            .and_then(|text| keep_valid(&mut invalid, "limit", PageLimit::parse(text)))
            .unwrap_or_default();
        let after = raw.cursor.and_then(|text| {
            let cursor = Cursor::decode(text).and_then(|cursor| {
                if cursor.sort == sort {
                    Ok(cursor)
                } else {
                    Err(format!(
                        "this cursor belongs to sort={}, not sort={sort}",
                        cursor.sort
                    ))
                }
            });
            keep_valid(&mut invalid, "cursor", cursor)
        });
        if invalid.is_empty() {
            Ok(Self {
                category,
                search,
                sort,
                limit,
                after,
            })
        } else {
            Err(invalid)
        }
    }
}

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
    pub fn parse(raw: RawProduct<'_>) -> Result<Self, Vec<Invalid>> {
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
    pub fn parse(raw: RawProductPatch<'_>) -> Result<Self, Vec<Invalid>> {
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
    pub fn parse(raw: RawCategory<'_>) -> Result<Self, Vec<Invalid>> {
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
    pub fn parse(raw: RawCategoryPatch<'_>) -> Result<Self, Vec<Invalid>> {
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
fn parse_price(invalid: &mut Vec<Invalid>, raw: RawPrice<'_>) -> Option<Money> {
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

/// The parsed value, or `None` after recording why `field` is invalid.
fn keep_valid<T>(
    invalid: &mut Vec<Invalid>,
    field: &'static str,
    result: Result<T, String>,
) -> Option<T> {
    result
        .map_err(|reason| invalid.push(Invalid { field, reason }))
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn product(name: &str, price: i64) -> Product {
        Product {
            id: ProductId::generate(),
            slug: Slug::parse("a-product").expect("valid"),
            name: name.to_owned(),
            description: String::new(),
            category: Slug::parse("kitchen").expect("valid"),
            price: Money::new(price, contracts::Currency::EUR),
            image: String::new(),
            attributes: BTreeMap::new(),
        }
    }

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

    fn fields(invalid: &[Invalid]) -> Vec<&'static str> {
        invalid.iter().map(|invalid| invalid.field).collect()
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
        let before = product("Mug", 100);
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

    #[test]
    fn slugs_are_lower_case_words_joined_by_hyphens() {
        assert!(Slug::parse("enamel-camp-mug").is_ok());
        for bad in ["", "-mug", "mug-", "Mug", "mug mug", "müg", &"a".repeat(81)] {
            assert!(Slug::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn cursors_round_trip_even_with_separators_in_names() {
        let sort = Sort::parse("-name").expect("valid");
        let cursor = Cursor::after(&product("Mug | Large", 100), sort);
        assert_eq!(Cursor::decode(&cursor.encode()), Ok(cursor));
        let sort = Sort::parse("price").expect("valid");
        let cursor = Cursor::after(&product("Mug", 1450), sort);
        assert_eq!(Cursor::decode(&cursor.encode()), Ok(cursor));
    }

    #[test]
    fn garbage_cursors_are_rejected() {
        for bad in ["", "!!!", "bm9uc2Vuc2U", &"A".repeat(600)] {
            assert!(Cursor::decode(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn a_cursor_cannot_switch_sort_order() {
        let cursor = Cursor::after(&product("Mug", 1), Sort::parse("price").expect("valid"));
        let encoded = cursor.encode();
        let invalid = ProductQuery::parse(RawProductQuery {
            sort: Some("name"),
            cursor: Some(&encoded),
            ..RawProductQuery::default()
        })
        .unwrap_err();
        assert_eq!(invalid[0].field, "cursor");
    }

    #[test]
    fn every_invalid_field_is_reported() {
        let invalid = ProductQuery::parse(RawProductQuery {
            sort: Some("colour"),
            limit: Some("0"),
            category: Some("Not A Slug"),
            search: Some(&"x".repeat(101)),
            cursor: Some("%%%"),
        })
        .unwrap_err();
        let fields: Vec<_> = invalid.iter().map(|invalid| invalid.field).collect();
        assert_eq!(fields, ["category", "q", "sort", "limit", "cursor"]);
    }

    #[test]
    fn search_splits_and_lowercases_words() {
        let search = Search::parse("  Steel   MUG ")
            .expect("valid")
            .expect("not blank");
        assert_eq!(search.words(), ["steel", "mug"]);
        assert_eq!(Search::parse("   "), Ok(None));
        assert!(Search::parse("a b c d e f").is_err());
    }
}
