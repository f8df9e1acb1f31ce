//! Inventory's domain: what a valid reservation request is, and the states a
//! reservation moves through. Pure.

use std::collections::BTreeMap;

use contracts::ProductId;

/// The most units of one product one order may hold.
pub const MAX_QUANTITY: i64 = 1000;
/// The most distinct products one reservation may hold.
pub const MAX_LINES: usize = 100;

/// A reservation request's lines, checked: quantities from 1 to
/// [`MAX_QUANTITY`], duplicates merged, sorted by product (so concurrent reservations
/// lock rows in one order and cannot deadlock).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lines(Vec<(ProductId, i64)>);

impl Lines {
    /// Checks and normalises raw `(product id, quantity)` pairs.
    pub fn parse(raw: impl IntoIterator<Item = (ProductId, i64)>) -> Result<Self, String> {
        let mut merged: BTreeMap<ProductId, i64> = BTreeMap::new();
        for (product_id, quantity) in raw {
            if !(1..=MAX_QUANTITY).contains(&quantity) {
                return Err(format!(
                    "quantity {quantity} is not between 1 and {MAX_QUANTITY}"
                ));
            }
            let total = merged.entry(product_id).or_default();
            *total = total.saturating_add(quantity);
            if *total > MAX_QUANTITY {
                return Err(format!("more than {MAX_QUANTITY} of {product_id}"));
            }
        }
        if merged.is_empty() {
            return Err("a reservation needs at least one line".to_owned());
        }
        if merged.len() > MAX_LINES {
            return Err(format!("at most {MAX_LINES} products per reservation"));
        }
        Ok(Self(merged.into_iter().collect()))
    }

    /// `(product id, quantity)`, sorted by product id.
    pub fn iter(&self) -> impl Iterator<Item = (ProductId, i64)> + '_ {
        self.0.iter().copied()
    }
}

/// Where a reservation stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// The stock is held until the reservation expires.
    Held,
    /// The order was paid; the stock is sold.
    Committed,
    /// Given back on request.
    Released,
    /// Given back because the hold ran out.
    Expired,
    /// There was not enough stock; nothing was held.
    Rejected,
}

impl State {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Held => "held",
            Self::Committed => "committed",
            Self::Released => "released",
            Self::Expired => "expired",
            Self::Rejected => "rejected",
        }
    }

    /// Parses a stored name.
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "held" => Self::Held,
            "committed" => Self::Committed,
            "released" => Self::Released,
            "expired" => Self::Expired,
            "rejected" => Self::Rejected,
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(text: &str) -> ProductId {
        ProductId::parse(text).expect("a UUID")
    }

    #[test]
    fn lines_merge_duplicates_and_sort() {
        let a = id("0190a5a0-0000-7000-8000-00000000000a");
        let b = id("0190a5a0-0000-7000-8000-00000000000b");
        let lines = Lines::parse([(b, 1), (a, 2), (b, 3)]).expect("valid");
        let lines: Vec<_> = lines.iter().collect();
        assert_eq!(lines, vec![(a, 2), (b, 4)]);
    }

    #[test]
    fn bad_lines_are_refused() {
        let a = id("0190a5a0-0000-7000-8000-00000000000a");
        assert!(Lines::parse([]).is_err());
        assert!(Lines::parse([(a, 0)]).is_err());
        assert!(Lines::parse([(a, -1)]).is_err());
        assert!(Lines::parse([(a, 600), (a, 600)]).is_err());
    }

    #[test]
    fn states_survive_storage() {
        for state in [
            State::Held,
            State::Committed,
            State::Released,
            State::Expired,
            State::Rejected,
        ] {
            assert_eq!(State::parse(state.as_str()), Some(state));
        }
    }
}
