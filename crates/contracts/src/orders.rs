//! How services and people name an order.

use std::fmt;
use std::str::FromStr;

/// An order's id: a UUID (v7 when the orders service makes it), written lower-case and
/// hyphenated. Every service parses an order id it is given with [`OrderId::parse`],
/// so all of them accept the same ids and answer the same to anything else.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OrderId(uuid::Uuid);

/// Text that is not an order id.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("must be an order id (a UUID)")]
pub struct NotAnOrderId;

impl OrderId {
    /// A new id, ordered by time.
    pub fn generate() -> Self {
        Self(uuid::Uuid::now_v7())
    }

    /// The id `text` names, in any of a UUID's usual forms.
    pub fn parse(text: &str) -> Result<Self, NotAnOrderId> {
        uuid::Uuid::parse_str(text)
            .map(Self)
            .map_err(|_| NotAnOrderId)
    }
}

impl fmt::Display for OrderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.hyphenated())
    }
}

impl FromStr for OrderId {
    type Err = NotAnOrderId;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

/// The number a shopper reads on pages and in emails: `BZ-` and the last ten hex
/// digits of the order's id, upper-case, in two groups (`BZ-1A2B3-C4D5E`).
///
/// An order id is a UUID v7: its first 48 bits are the time in milliseconds, so its
/// first characters are the same for every order of the same minute. The last ten hex
/// digits are random (40 bits), so two orders share a number about once in a million
/// million. The number is derived, never stored, so every service agrees on it.
pub fn order_number(order_id: &str) -> String {
    let digits: Vec<char> = order_id
        .chars()
        .filter(char::is_ascii_hexdigit)
        .map(|digit| digit.to_ascii_uppercase())
        .collect();
    let tail: String = digits[digits.len().saturating_sub(10)..].iter().collect();
    let (first, second) = tail.split_at(tail.len().min(5));
    format!("BZ-{first}-{second}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_order_id_is_a_uuid_in_one_written_form() {
        let id = OrderId::parse("01A24DE4-FFDC-7583-8435-C9208C583895").expect("a UUID");
        assert_eq!(id.to_string(), "01a24de4-ffdc-7583-8435-c9208c583895");
        assert_eq!("01a24de4ffdc75838435c9208c583895".parse(), Ok(id));
        for not_one in ["", "order-1", "01a24de4-ffdc-7583-8435", "not an id"] {
            assert_eq!(OrderId::parse(not_one), Err(NotAnOrderId), "{not_one:?}");
        }
        assert_ne!(OrderId::generate(), OrderId::generate());
    }

    #[test]
    fn orders_of_the_same_minute_read_apart() {
        assert_eq!(
            order_number("01a24de4-ffdc-7583-8435-c9208c583895"),
            "BZ-208C5-83895"
        );
        let first = order_number("01a24de4-ffdc-7583-8435-c9208c583895");
        let second = order_number("01a24de4-ffdd-7000-9000-1b2c3d4e5f60");
        assert_ne!(first, second, "the same minute, different numbers");
        assert_eq!(second, "BZ-2C3D4-E5F60");
    }

    #[test]
    fn anything_else_still_gives_a_number() {
        assert_eq!(order_number("abc"), "BZ-ABC-");
        assert_eq!(order_number(""), "BZ--");
    }
}
