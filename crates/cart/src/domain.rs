//! The cart's pure types: whose cart, which product, how many, and the limits on both.

use std::fmt;

/// The customer a cart belongs to: the access token's subject.
///
/// At most 128 printable ASCII characters without braces, so that it can be part of a
/// Redis key (where braces mark the hash slot) without ambiguity.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CustomerId(String);

impl CustomerId {
    /// The most characters a customer id may have.
    pub const MAX_LEN: usize = 128;

    /// `text` as a customer id, if it is one.
    pub fn parse(text: &str) -> Option<Self> {
        let plausible = !text.is_empty()
            && text.len() <= Self::MAX_LEN
            && text
                .bytes()
                .all(|byte| byte.is_ascii_graphic() && byte != b'{' && byte != b'}');
        plausible.then(|| Self(text.to_owned()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CustomerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

pub use contracts::ProductId;

/// One product in a cart and how many of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    /// The product.
    pub product_id: ProductId,
    /// Units of it, at least 1.
    pub quantity: i64,
}

impl Line {
    /// A line of `quantity` units of `product_id`.
    pub fn new(product_id: ProductId, quantity: i64) -> Self {
        Self {
            product_id,
            quantity,
        }
    }
}

/// How much one cart may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// The most different products.
    pub max_lines: usize,
    /// The most units of one product.
    pub max_quantity: i64,
}

impl Limits {
    /// Whether `quantity` is a quantity a line may be set to or grow by.
    pub fn allows(&self, quantity: i64) -> bool {
        (1..=self.max_quantity).contains(&quantity)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn customer_ids_are_printable_and_brace_free() {
        assert!(CustomerId::parse("0195f3b2-7c1e-7d00-8000-000000000001").is_some());
        assert!(CustomerId::parse("u-1").is_some());
        for bad in ["", "a b", "x{y}", "tab\t", &"u".repeat(129), "é"] {
            assert!(CustomerId::parse(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn quantities_run_from_one_to_the_maximum() {
        let limits = Limits {
            max_lines: 50,
            max_quantity: 99,
        };
        assert!(limits.allows(1) && limits.allows(99));
        assert!(!limits.allows(0) && !limits.allows(-1) && !limits.allows(100));
    }
}
