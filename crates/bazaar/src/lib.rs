//! The `bazaar` binary's library: the topology, the shop-wide configuration, and the
//! wiring that starts any subset of services in one process.
//!
//! - [`topology`]: [`ServiceName`], the single list of services.
//! - [`config`]: the shop's configuration, one section per service.
//! - [`flags`]: the feature flags the shop knows, its flag file, and `bazaar flags`.
//! - [`load`]: `bazaar load`, the load generator pointed at this shop, with customers.
//! - [`shop`]: binds, builds and serves services; what `bazaar up` and `bazaar serve` run.
//! - [`admin`]: operator commands, such as creating the first admin.
//! - [`chaos`]: `bazaar chaos run`, a fault switched on and off under load, then the audit.
//! - [`verify`]: the read-only audit of the shop's invariants.

pub mod admin;
pub mod chaos;
pub mod config;
pub mod flags;
pub mod load;
pub mod shop;
pub mod topology;
pub mod verify;

pub use config::Config;
pub use topology::ServiceName;
