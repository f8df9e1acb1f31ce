//! The audit's view of payments: what the ledger says moved for each order, whether
//! every ledger transaction balances, and totals per currency. Read-only, from one
//! statement, so the figures are consistent with each other; the shop's audit compares
//! them with what orders says was confirmed, cancelled and refunded.

use std::collections::BTreeMap;

use contracts::{Currency, Money};
use platform::db::Database;

use crate::ledger::{self, Kind};

/// The ledger, summed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// What moved for each order, by order id (and currency, should an order have
    /// used more than one).
    pub orders: Vec<OrderMoney>,
    /// Whether every ledger transaction's debits equal its credits.
    pub balanced: bool,
    /// The ids of the transactions that do not balance; empty when `balanced`.
    pub unbalanced: Vec<String>,
    /// Totals per currency.
    pub totals: Vec<CurrencyTotals>,
}

impl Snapshot {
    /// The figures of one order, in its currency.
    pub fn order(&self, order_id: &str) -> Option<&OrderMoney> {
        self.orders.iter().find(|order| order.order_id == order_id)
    }
}

/// What moved for one order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrderMoney {
    /// The order.
    pub order_id: String,
    /// Reserved on the card.
    pub authorized: Money,
    /// Reservations cancelled.
    pub voided: Money,
    /// Taken.
    pub captured: Money,
    /// Given back.
    pub refunded: Money,
}

impl OrderMoney {
    /// What the customer is out of pocket for the order: captured minus refunded.
    pub fn charged(&self) -> Money {
        Money::new(
            self.captured.amount_minor - self.refunded.amount_minor,
            self.captured.currency,
        )
    }

    /// What is still reserved on the card: authorized minus voided minus captured.
    pub fn held(&self) -> Money {
        Money::new(
            self.authorized.amount_minor - self.voided.amount_minor - self.captured.amount_minor,
            self.authorized.currency,
        )
    }
}

/// The ledger's totals in one currency.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CurrencyTotals {
    /// The currency.
    pub currency: Currency,
    /// How many transactions moved it.
    pub transactions: u64,
    /// All authorizations.
    pub authorized: Money,
    /// All voids.
    pub voided: Money,
    /// All captures.
    pub captured: Money,
    /// All refunds.
    pub refunded: Money,
}

/// Sums the ledger. Changes nothing.
pub async fn snapshot(db: &Database) -> anyhow::Result<Snapshot> {
    let mut connection = db.pool().acquire().await?;
    let transactions = ledger::totals(&mut connection).await?;
    let mut orders: BTreeMap<(String, Currency), OrderMoney> = BTreeMap::new();
    let mut totals: BTreeMap<Currency, CurrencyTotals> = BTreeMap::new();
    let mut unbalanced = Vec::new();
    for transaction in transactions {
        if transaction.debits_minor != transaction.credits_minor || transaction.debits_minor == 0 {
            unbalanced.push(transaction.transaction_id.clone());
        }
        let currency = transaction.currency;
        let zero = Money::zero(currency);
        let order = orders
            .entry((transaction.order_id.clone(), currency))
            .or_insert_with(|| OrderMoney {
                order_id: transaction.order_id.clone(),
                authorized: zero,
                voided: zero,
                captured: zero,
                refunded: zero,
            });
        let total = totals.entry(currency).or_insert(CurrencyTotals {
            currency,
            transactions: 0,
            authorized: zero,
            voided: zero,
            captured: zero,
            refunded: zero,
        });
        total.transactions += 1;
        // What a transaction moved is its debits.
        let moved = Money::new(transaction.debits_minor, currency);
        let (per_order, overall) = match transaction.kind {
            Kind::Authorize => (&mut order.authorized, &mut total.authorized),
            Kind::Void => (&mut order.voided, &mut total.voided),
            Kind::Capture => (&mut order.captured, &mut total.captured),
            Kind::Refund => (&mut order.refunded, &mut total.refunded),
        };
        *per_order = per_order.checked_add(moved)?;
        *overall = overall.checked_add(moved)?;
    }
    unbalanced.dedup();
    Ok(Snapshot {
        orders: orders.into_values().collect(),
        balanced: unbalanced.is_empty(),
        unbalanced,
        totals: totals.into_values().collect(),
    })
}
