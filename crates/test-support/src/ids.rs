//! Ids with names: a test calls its orders `order-1` and its products `kettle`, and
//! sends real ids, the same for the same name every time.

use contracts::{OrderId, ProductId, UserId};

/// The UUID (version 8, "custom") that stands for `name`: its bytes are a 64-bit FNV-1a
/// hash of the name, twice with different seeds.
fn named(name: &str) -> String {
    let hash = |seed: u64| {
        name.bytes().fold(seed, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
        })
    };
    let (high, low) = (hash(0xcbf2_9ce4_8422_2325), hash(0x8422_2325_cbf2_9ce4));
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&high.to_be_bytes());
    bytes[8..].copy_from_slice(&low.to_be_bytes());
    uuid::Builder::from_custom_bytes(bytes)
        .into_uuid()
        .hyphenated()
        .to_string()
}

/// The order id named `name`.
pub fn order_id(name: &str) -> OrderId {
    OrderId::parse(&named(name)).expect("a UUID")
}

/// The product id named `name`.
pub fn product_id(name: &str) -> ProductId {
    ProductId::parse(&named(name)).expect("a UUID")
}

/// The user id named `name`.
pub fn user_id(name: &str) -> UserId {
    UserId::parse(&named(name)).expect("a UUID")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_is_always_the_same_id_and_names_differ() {
        assert_eq!(order_id("order-1"), order_id("order-1"));
        assert_ne!(order_id("order-1"), order_id("order-2"));
        assert_eq!(order_id("a").to_string(), product_id("a").to_string());
    }
}
