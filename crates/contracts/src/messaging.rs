//! Messages that travel over the bus: the envelope every event and command rides in,
//! and the event types, each defined once, here.
//!
//! A message's type names its owner, what happened, and a version:
//! `catalog.product_created.v1`. It is also the bus subject, so a subscriber filters on
//! `catalog.>` or `*.product_created.v1`.
//!
//! **Compatibility rule:** a version's payload may gain fields (readers ignore fields
//! they do not know, and new fields are optional for readers); removing, renaming or
//! changing the meaning of a field is a new type with the next version, published
//! beside the old one until no subscriber reads the old one.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::Money;

/// What every message carries around its payload.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// Unique message id (UUID v7); the deduplication key of the bus and of inboxes.
    pub id: String,
    /// The versioned message type, e.g. `catalog.product_created.v1`; also its subject.
    #[serde(rename = "type")]
    pub kind: String,
    /// The service that produced it.
    pub source: String,
    /// When the change happened, milliseconds since the Unix epoch.
    pub occurred_at_ms: i64,
    /// Ties together every message caused by one request (the request id at the edge).
    pub correlation_id: String,
    /// The id of the message that caused this one, if a message did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<String>,
    /// W3C trace context of the producer's span, so the consumer's span joins its trace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    /// The message itself, as JSON.
    pub payload: serde_json::Value,
}

/// A payload type with its versioned name.
pub trait Message: Serialize + DeserializeOwned {
    /// The versioned type, e.g. `catalog.product_created.v1`.
    const TYPE: &'static str;
}

/// Why an envelope's payload could not be read as the type asked for.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The envelope is of another type.
    #[error("expected a {expected} message, got {actual}")]
    WrongType {
        /// The type asked for.
        expected: &'static str,
        /// The envelope's type.
        actual: String,
    },
    /// The payload does not match the type.
    #[error("malformed {kind} payload: {source}")]
    Malformed {
        /// The envelope's type.
        kind: String,
        /// The JSON error.
        source: serde_json::Error,
    },
}

impl Envelope {
    /// Reads the payload as `M`, checking the type first.
    pub fn decode<M: Message>(&self) -> Result<M, DecodeError> {
        if self.kind != M::TYPE {
            return Err(DecodeError::WrongType {
                expected: M::TYPE,
                actual: self.kind.clone(),
            });
        }
        serde_json::from_value(self.payload.clone()).map_err(|source| DecodeError::Malformed {
            kind: self.kind.clone(),
            source,
        })
    }
}

/// The catalog's events.
pub mod catalog {
    use super::*;

    /// An admin added a product.
    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    pub struct ProductCreatedV1 {
        /// The product's id.
        pub product_id: String,
        /// Its slug.
        pub slug: String,
        /// Its name.
        pub name: String,
        /// Its category's slug.
        pub category: String,
        /// Its price.
        pub price: Money,
    }

    impl Message for ProductCreatedV1 {
        const TYPE: &'static str = "catalog.product_created.v1";
    }

    /// An admin changed a product's price.
    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    pub struct ProductPriceChangedV1 {
        /// The product's id.
        pub product_id: String,
        /// The price before.
        pub old_price: Money,
        /// The price now.
        pub new_price: Money,
    }

    impl Message for ProductPriceChangedV1 {
        const TYPE: &'static str = "catalog.product_price_changed.v1";
    }

    /// An admin removed a product.
    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    pub struct ProductDeletedV1 {
        /// The product's id.
        pub product_id: String,
    }

    impl Message for ProductDeletedV1 {
        const TYPE: &'static str = "catalog.product_deleted.v1";
    }
}
