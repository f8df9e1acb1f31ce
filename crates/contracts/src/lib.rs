//! Everything that crosses a Bazaar process boundary, defined once.
//!
//! - [`proto`]: the protobuf messages and tonic clients/servers for internal gRPC.
//! - [`money`]: [`Money`], integer minor units plus currency; no floating point anywhere
//!   money is handled.
//! - [`catalog`]: the catalog's public REST representations.
//! - [`identity`]: access token claims, roles, and the account API.
//! - [`messaging`]: the bus envelope and the event types, with their versioning rule.
//! - [`ids`]: the ids of orders, users and products, each with one parse rule.
//! - [`orders`]: the order number people read.
//!
//! **Compatibility rule:** fields may be added freely (readers ignore what they do not
//! know); renaming, removing or changing the meaning of a field is a new version (a new
//! proto package `v2`, a new path, a new event type).

pub mod catalog;
pub mod identity;
pub mod ids;
pub mod messaging;
pub mod money;
pub mod orders;

pub use ids::{CustomerId, OrderId, ProductId, UserId};
pub use money::{Currency, Money};

/// Generated protobuf types and gRPC stubs, one module per proto package.
#[allow(missing_docs, unreachable_pub, clippy::all, clippy::pedantic)]
pub mod proto {
    /// Types shared by every package.
    pub mod common {
        /// Version 1.
        pub mod v1 {
            tonic::include_proto!("bazaar.common.v1");
        }
    }
    /// The catalog's internal API.
    pub mod catalog {
        /// Version 1.
        pub mod v1 {
            tonic::include_proto!("bazaar.catalog.v1");
        }
    }
    /// Inventory's internal API.
    pub mod inventory {
        /// Version 1.
        pub mod v1 {
            tonic::include_proto!("bazaar.inventory.v1");
        }
    }
    /// The cart's internal API.
    pub mod cart {
        /// Version 1.
        pub mod v1 {
            tonic::include_proto!("bazaar.cart.v1");
        }
    }
    /// Payments' internal API.
    pub mod payments {
        /// Version 1.
        pub mod v1 {
            tonic::include_proto!("bazaar.payments.v1");
        }
    }
}
