//! Orders: the checkout saga.

/// The service's name in logs, metrics and the topology.
pub const NAME: &str = "orders";
