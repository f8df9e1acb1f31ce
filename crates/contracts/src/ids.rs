//! The ids that cross service boundaries: an order's, a user's, a product's.
//!
//! Each is a UUID (v7 where Bazaar makes it), written lower-case and hyphenated, and
//! each has one parse rule, [`parse`](OrderId::parse), used by every service at its
//! edges and by the messages themselves: a message naming an order with anything but
//! an order id does not decode. On the wire (JSON, SQL, gRPC, URLs) an id is its
//! written form, so typing them changed no stored or sent byte.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Defines an id type around a UUID with its parse rule, display and serde forms.
macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident, $not:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(uuid::Uuid);

        #[doc = concat!("Text that is not ", $what, ".")]
        #[derive(Clone, Debug, PartialEq, Eq)]
        pub struct $not;

        impl fmt::Display for $not {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(concat!("must be ", $what, " (a UUID)"))
            }
        }

        impl std::error::Error for $not {}

        impl $name {
            /// A new id, ordered by time.
            pub fn generate() -> Self {
                Self(uuid::Uuid::now_v7())
            }

            /// The id `text` names, in any of a UUID's usual forms.
            pub fn parse(text: &str) -> Result<Self, $not> {
                uuid::Uuid::parse_str(text).map(Self).map_err(|_| $not)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.hyphenated().fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = $not;

            fn from_str(text: &str) -> Result<Self, Self::Err> {
                Self::parse(text)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = std::borrow::Cow::<'de, str>::deserialize(deserializer)?;
                Self::parse(&text).map_err(serde::de::Error::custom)
            }
        }
    };
}

uuid_id!(
    /// An order's id; the orders service makes it when an order is placed.
    OrderId,
    NotAnOrderId,
    "an order id"
);

uuid_id!(
    /// A user's id, the subject of their access tokens; identity makes it when an
    /// account is created. A customer is the user who placed an order.
    UserId,
    NotAUserId,
    "a user id"
);

uuid_id!(
    /// A product's id; the catalog makes it when a product is added.
    ProductId,
    NotAProductId,
    "a product id"
);

/// The user an order belongs to.
pub type CustomerId = UserId;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_is_a_uuid_in_one_written_form() {
        let id = OrderId::parse("01A24DE4-FFDC-7583-8435-C9208C583895").expect("a UUID");
        assert_eq!(id.to_string(), "01a24de4-ffdc-7583-8435-c9208c583895");
        assert_eq!("01a24de4ffdc75838435c9208c583895".parse(), Ok(id));
        for not_one in ["", "order-1", "01a24de4-ffdc-7583-8435", "not an id"] {
            assert_eq!(OrderId::parse(not_one), Err(NotAnOrderId), "{not_one:?}");
        }
        assert_ne!(OrderId::generate(), OrderId::generate());
    }

    #[test]
    fn an_id_travels_as_its_written_form_and_nothing_else_decodes() {
        let id = ProductId::parse("01a24de4-ffdc-7583-8435-c9208c583895").expect("a UUID");
        let json = serde_json::to_string(&id).expect("serializes");
        assert_eq!(json, "\"01a24de4-ffdc-7583-8435-c9208c583895\"");
        assert_eq!(
            serde_json::from_str::<ProductId>(&json).expect("decodes"),
            id
        );
        let refused = serde_json::from_str::<UserId>("\"user-1\"").expect_err("not a UUID");
        assert!(
            refused.to_string().contains("must be a user id"),
            "{refused}"
        );
    }
}
