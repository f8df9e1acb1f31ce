//! Payments.

/// The service's name in logs, metrics and the topology.
pub const NAME: &str = "payments";
