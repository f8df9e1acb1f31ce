//! `bazaar verify`: a read-only audit across services of the invariants the checkout
//! promises (ARCHITECTURE.md, the checkout's invariant). It reads each service's own database through that
//! service's `audit` module, compares them, and reports every violation.
//!
//! 1. Every order is over, or its current step is still within its deadline. The saga
//!    looks for passed deadlines every `deadline_check_ms` and re-sends the step, so a
//!    step counts as stuck only once its deadline passed longer ago than that period
//!    and [`STEP_LATENESS`]: a busy shop acts on a deadline a little late.
//! 2. Stock: on hand + reserved + sold = received, none negative, the counters agree
//!    with the reservations that hold and sold the units, and an order's stock is sold
//!    exactly when the order was (confirmed, or refunded or refused a refund after);
//!    stock returned to sale after a refused capture counts as not sold.
//! 3. Money: for every order, captured − refunded is its total if it is confirmed (or
//!    its refund was refused) and zero otherwise, to the cent; nothing stays authorized
//!    on the card once an order is over; no payment exists without an order; the ledger
//!    balances.
//! 4. Every confirmed order (also when later refunded) has exactly one confirmation
//!    email sent: never two, and none missing once the order has been confirmed for
//!    longer than the grace given (emails are sent after the fact, and wait out an
//!    SMTP outage).
//!
//! It may run on a live shop. The services' databases cannot be read at one instant,
//! so orders are read twice, before and after the others, and an order is judged only
//! if it is over and did not change in between: what the other services said of it
//! then is final. Orders in flight are skipped, not reported.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use orders::domain::Status;
use platform::clock::now_ms;
use platform::config::DatabaseUrl;
use platform::db::Database;

use crate::Config;

/// One invariant checked, and what broke it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Check {
    /// What was checked.
    pub name: &'static str,
    /// How many things (orders, products) were looked at.
    pub examined: usize,
    /// Each violation, in a sentence.
    pub violations: Vec<String>,
}

/// The audit's findings.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Every check, in order.
    pub checks: Vec<Check>,
}

impl Report {
    /// Whether no check found a violation.
    pub fn is_clean(&self) -> bool {
        self.checks.iter().all(|check| check.violations.is_empty())
    }
}

/// The most violations listed per check; the count is always exact.
const SHOWN: usize = 20;

/// How late, past its deadline and the saga's sweep period, a step may still be acted
/// on before the audit calls its order stuck: a busy shop's sweep runs late.
pub const STEP_LATENESS: std::time::Duration = std::time::Duration::from_secs(5);

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for check in &self.checks {
            if check.violations.is_empty() {
                writeln!(f, "ok    {} ({} examined)", check.name, check.examined)?;
                continue;
            }
            writeln!(
                f,
                "FAIL  {} ({} of {} examined)",
                check.name,
                check.violations.len(),
                check.examined
            )?;
            for violation in check.violations.iter().take(SHOWN) {
                writeln!(f, "      - {violation}")?;
            }
            if check.violations.len() > SHOWN {
                writeln!(f, "      … and {} more", check.violations.len() - SHOWN)?;
            }
        }
        let verdict = if self.is_clean() { "clean" } else { "VIOLATED" };
        write!(f, "invariants {verdict}")
    }
}

async fn open(name: &'static str, url: Option<&DatabaseUrl>) -> anyhow::Result<Database> {
    Database::open(name, url, 2).await
}

/// Audits the shop that `config` (resolved) describes, now. A confirmation email may be
/// missing for up to `email_grace` after its order was confirmed.
pub async fn run(config: &Config, email_grace: std::time::Duration) -> anyhow::Result<Report> {
    config.clone().ensure_shop_exists(&[
        crate::ServiceName::Orders,
        crate::ServiceName::Inventory,
        crate::ServiceName::Payments,
        crate::ServiceName::Notifications,
    ])?;
    let now = now_ms();
    let orders_db = open(orders::NAME, config.orders.database_url.as_ref()).await?;
    let inventory_db = open(inventory::NAME, config.inventory.database_url.as_ref()).await?;
    let payments_db = open(payments::NAME, config.payments.database_url.as_ref()).await?;
    let notifications_db = open(
        notifications::NAME,
        config.notifications.database_url.as_ref(),
    )
    .await?;

    let before = orders::audit::snapshot(&orders_db, &config.orders.deadlines).await?;
    let (stock, reservations) = inventory::audit::snapshot(&inventory_db).await?;
    let money = payments::audit::snapshot(&payments_db).await?;
    let emails = notifications::audit::snapshot(&notifications_db).await?;
    let orders = orders::audit::snapshot(&orders_db, &config.orders.deadlines).await?;
    // Over, and unchanged while the other services were read.
    let versions: BTreeMap<&str, i64> = before
        .iter()
        .map(|order| (order.order_id.as_str(), order.version))
        .collect();
    let settled: Vec<&orders::audit::OrderFact> = orders
        .iter()
        .filter(|order| {
            order.status.is_terminal()
                && versions.get(order.order_id.as_str()) == Some(&order.version)
        })
        .collect();
    let quiet = settled.len() == orders.len();

    let mut report = Report::default();

    let lateness = i64::try_from(config.orders.deadline_check_ms)
        .unwrap_or(i64::MAX)
        .saturating_add(STEP_LATENESS.as_millis() as i64);
    let mut overdue = Vec::new();
    for order in &orders {
        if let Some(due) = order.due_at_ms
            && due.saturating_add(lateness) < now
        {
            overdue.push(format!(
                "order {} is {} and its step was due {} ms ago",
                order.order_id,
                order.status.as_str(),
                now - due
            ));
        }
    }
    report.checks.push(Check {
        name: "every order is over or within its deadline",
        examined: orders.len(),
        violations: overdue,
    });

    let mut stock_violations = Vec::new();
    for product in &stock {
        let id = &product.product_id;
        if product.reserved < 0 || product.sold < 0 || product.on_hand() < 0 {
            stock_violations.push(format!(
                "{id}: received {} reserved {} sold {}: something is negative",
                product.received, product.reserved, product.sold
            ));
        }
        if product.reserved != product.held_by_reservations {
            stock_violations.push(format!(
                "{id}: {} reserved but held reservations add up to {}",
                product.reserved, product.held_by_reservations
            ));
        }
        if product.sold != product.sold_by_reservations {
            stock_violations.push(format!(
                "{id}: {} sold but committed reservations add up to {}",
                product.sold, product.sold_by_reservations
            ));
        }
    }
    let states: BTreeMap<&str, &str> = reservations
        .iter()
        .map(|reservation| (reservation.order_id.as_str(), reservation.state.as_str()))
        .collect();
    for order in &settled {
        let state = states.get(order.order_id.as_str()).copied();
        let sold = state == Some("committed");
        let wrong = match order.status {
            // A confirmed (or later refunded) order's stock was sold.
            Status::Confirmed | Status::Refunded | Status::RefundFailed => !sold,
            // An order that ended without a sale sold nothing and holds nothing.
            Status::Rejected | Status::Cancelled => sold || state == Some("held"),
            _ => false,
        };
        if wrong {
            stock_violations.push(format!(
                "order {} is {} but its reservation is {}",
                order.order_id,
                order.status.as_str(),
                state.unwrap_or("missing")
            ));
        }
    }
    report.checks.push(Check {
        name: "stock on hand + reserved + sold = received, never negative, sold exactly for sales",
        examined: stock.len() + settled.len(),
        violations: stock_violations,
    });

    let mut money_violations = Vec::new();
    let known: BTreeSet<&str> = orders.iter().map(|order| order.order_id.as_str()).collect();
    for order in &settled {
        let paid = money.order(&order.order_id);
        let net = paid.map_or(0, |paid| paid.charged().amount_minor);
        let held = paid.map_or(0, |paid| paid.held().amount_minor);
        if order.status.is_terminal() && held != 0 {
            money_violations.push(format!(
                "order {} is {} but {held} is still authorized on the card",
                order.order_id,
                order.status.as_str()
            ));
        }
        let expected = match order.status {
            // A refused refund leaves the money with the shop, for an operator.
            Status::Confirmed | Status::RefundFailed => Some(order.total.amount_minor),
            Status::Rejected | Status::Cancelled | Status::Refunded => Some(0),
            // In flight: money may be on its way either way.
            _ => None,
        };
        if let Some(expected) = expected
            && net != expected
        {
            money_violations.push(format!(
                "order {} is {} with a total of {} but captured − refunded is {net}",
                order.order_id,
                order.status.as_str(),
                order.total
            ));
        }
    }
    for order_id in money.orders.iter().map(|paid| paid.order_id.as_str()) {
        if !known.contains(order_id) {
            money_violations.push(format!(
                "money moved for order {order_id}, which orders does not know"
            ));
        }
    }
    for transaction in &money.unbalanced {
        money_violations.push(format!("ledger transaction {transaction} does not balance"));
    }
    let confirmed: i64 = orders
        .iter()
        .filter(|order| matches!(order.status, Status::Confirmed | Status::RefundFailed))
        .map(|order| order.total.amount_minor)
        .sum();
    let charged: i64 = money
        .orders
        .iter()
        .map(|paid| paid.charged().amount_minor)
        .sum();
    // Only when nothing moved: otherwise money may be on its way for some order.
    if quiet && charged != confirmed {
        money_violations.push(format!(
            "captured − refunded is {charged} in all but confirmed orders total {confirmed}"
        ));
    }
    report.checks.push(Check {
        name: "captured − refunded = total of confirmed orders, to the cent",
        examined: settled.len(),
        violations: money_violations,
    });

    let mut email_violations = Vec::new();
    let mut confirmations: BTreeMap<&str, u64> = BTreeMap::new();
    let was_confirmed = |status: Status| {
        matches!(
            status,
            Status::Confirmed | Status::Refunded | Status::RefundFailed
        )
    };
    let grace = i64::try_from(email_grace.as_millis()).unwrap_or(i64::MAX);
    let mut waiting = BTreeSet::new();
    for order in settled.iter().filter(|order| was_confirmed(order.status)) {
        let sent = emails.confirmations_of(&order.order_id);
        if sent == 0 && now.saturating_sub(order.since_ms) < grace {
            waiting.insert(order.order_id.as_str());
        }
        confirmations.insert(&order.order_id, sent);
    }
    for (order_id, sent) in &confirmations {
        if *sent != 1 && !waiting.contains(order_id) {
            email_violations.push(format!(
                "confirmed order {order_id} has {sent} confirmation emails sent"
            ));
        }
    }
    report.checks.push(Check {
        name: "every confirmed order has exactly one confirmation email",
        examined: confirmations.len(),
        violations: email_violations,
    });
    Ok(report)
}
