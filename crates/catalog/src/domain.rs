//! The catalog's domain: what a product is, and what a well-formed product query is.
//!
//! Everything here is pure: no SQL, no HTTP, no serde. Raw input is parsed into these
//! types once, at the edge, and everything past the edge can rely on them.

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use contracts::Money;
use uuid::Uuid;

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

/// How many products a page holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limit(u32);

impl Limit {
    /// The largest page.
    pub const MAX: u32 = 100;

    /// Parses a page size from 1 to [`Limit::MAX`].
    pub fn parse(text: &str) -> Result<Self, String> {
        match text.parse::<u32>() {
            Ok(limit) if (1..=Self::MAX).contains(&limit) => Ok(Self(limit)),
            _ => Err(format!("must be a whole number from 1 to {}", Self::MAX)),
        }
    }

    /// The page size.
    pub fn get(self) -> u32 {
        self.0
    }
}

impl Default for Limit {
    fn default() -> Self {
        Self(20)
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
    pub limit: Limit,
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
            .and_then(|text| keep_valid(&mut invalid, "limit", Limit::parse(text)))
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

    #[test]
    fn limits_stay_in_range() {
        assert_eq!(Limit::parse("100").map(Limit::get), Ok(100));
        for bad in ["0", "101", "-1", "ten", ""] {
            assert!(Limit::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }
}
