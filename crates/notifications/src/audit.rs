//! What the shop's audit reads from notifications: how many confirmation emails each
//! order got (exactly one per confirmed order, never two), and what is still waiting
//! or was refused.

use std::collections::BTreeMap;

use platform::db::Database;

use crate::domain::{Kind, Status};
use crate::store;

/// Notifications' side of the audit, at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// For each order with a confirmation email sent, how many were sent.
    pub confirmations_sent: BTreeMap<String, u64>,
    /// Emails sent, of every kind.
    pub sent: u64,
    /// Emails not sent yet: due, backing off, or waiting for an address.
    pub pending: u64,
    /// Emails the mail system refused for good.
    pub failed: u64,
}

impl Snapshot {
    /// How many confirmation emails order `order_id` got.
    pub fn confirmations_of(&self, order_id: &str) -> u64 {
        self.confirmations_sent.get(order_id).copied().unwrap_or(0)
    }

    /// Orders that got more than one confirmation email; empty when all is well.
    pub fn duplicate_confirmations(&self) -> Vec<&str> {
        self.confirmations_sent
            .iter()
            .filter(|(_, sent)| **sent > 1)
            .map(|(order, _)| order.as_str())
            .collect()
    }
}

/// Reads the snapshot from notifications' database.
pub async fn snapshot(db: &Database) -> anyhow::Result<Snapshot> {
    let count = |n: i64| u64::try_from(n).unwrap_or(0);
    let confirmations_sent = store::per_order(db.pool(), Kind::OrderConfirmed, Status::Sent)
        .await?
        .into_iter()
        .map(|(order, sent)| (order, count(sent)))
        .collect();
    Ok(Snapshot {
        confirmations_sent,
        sent: count(store::count_by_status(db.pool(), Status::Sent).await?),
        pending: count(store::count_by_status(db.pool(), Status::Pending).await?),
        failed: count(store::count_by_status(db.pool(), Status::Failed).await?),
    })
}
