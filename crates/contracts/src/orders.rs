//! How services and people name an order.

pub use crate::ids::{NotAnOrderId, OrderId};

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
