//! A product listing request: its sort, search words, page size and cursor.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use platform::page::PageLimit;
use platform::problem::FieldError;

use super::{Product, ProductId, Slug, keep_valid};

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
        let id = ProductId::parse(id).ok().ok_or(MALFORMED)?;
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
    pub fn parse(raw: RawProductQuery<'_>) -> Result<Self, Vec<FieldError>> {
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

#[cfg(test)]
mod tests {
    use super::super::sample_product;
    use super::*;

    #[test]
    fn cursors_round_trip_even_with_separators_in_names() {
        let sort = Sort::parse("-name").expect("valid");
        let cursor = Cursor::after(&sample_product("Mug | Large", 100), sort);
        assert_eq!(Cursor::decode(&cursor.encode()), Ok(cursor));
        let sort = Sort::parse("price").expect("valid");
        let cursor = Cursor::after(&sample_product("Mug", 1450), sort);
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
        let cursor = Cursor::after(
            &sample_product("Mug", 1),
            Sort::parse("price").expect("valid"),
        );
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
        let fields: Vec<_> = invalid
            .iter()
            .map(|invalid| invalid.field.as_str())
            .collect();
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
