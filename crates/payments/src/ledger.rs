//! The double-entry ledger: where every cent of a payment is, at every moment.
//!
//! Money moves between three accounts: `customer_funds` (what customers have not
//! committed), `authorized_holds` (reserved on cards) and `merchant_revenue` (taken).
//! Each movement is a [`Transaction`] of entries whose debits equal its credits; it can
//! only be built balanced, and [`append`] checks again before writing. Entries are
//! appended and never changed or removed (the schema refuses `UPDATE` and `DELETE` on
//! them), so the ledger is the payments' history, and the audit sums it.
//!
//! A transfer from one account to another credits the source and debits the
//! destination; an account's balance is its debits minus its credits, so the balances
//! of all accounts always sum to zero.
//!
//! | movement | from | to |
//! |---|---|---|
//! | authorize | `customer_funds` | `authorized_holds` |
//! | void | `authorized_holds` | `customer_funds` |
//! | capture | `authorized_holds` | `merchant_revenue` |
//! | refund | `merchant_revenue` | `customer_funds` |
//!
//! Each order has at most one transaction of each kind, which the schema enforces too:
//! a command handled twice cannot move money twice.

use std::collections::BTreeMap;

use anyhow::Context as _;
use contracts::{Currency, Money, OrderId};
use sqlx::{AnyConnection, AnyPool, Row as _};

/// A ledger account.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Account {
    /// Money customers have not committed to any order.
    CustomerFunds,
    /// Money reserved on cards for orders not yet paid.
    AuthorizedHolds,
    /// Money taken for confirmed orders.
    MerchantRevenue,
}

impl Account {
    /// Every account, in a stable order.
    pub const ALL: [Self; 3] = [
        Self::CustomerFunds,
        Self::AuthorizedHolds,
        Self::MerchantRevenue,
    ];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CustomerFunds => "customer_funds",
            Self::AuthorizedHolds => "authorized_holds",
            Self::MerchantRevenue => "merchant_revenue",
        }
    }

    /// The account of a stored name.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|account| account.as_str() == text)
    }
}

/// What a transaction records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// An amount reserved on a card.
    Authorize,
    /// A reservation cancelled.
    Void,
    /// A reserved amount taken.
    Capture,
    /// A taken amount given back.
    Refund,
}

impl Kind {
    /// Every kind, in a stable order.
    pub const ALL: [Self; 4] = [Self::Authorize, Self::Void, Self::Capture, Self::Refund];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Authorize => "authorize",
            Self::Void => "void",
            Self::Capture => "capture",
            Self::Refund => "refund",
        }
    }

    /// The kind of a stored name.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == text)
    }

    /// Where the money comes from and goes to.
    pub fn route(self) -> (Account, Account) {
        match self {
            Self::Authorize => (Account::CustomerFunds, Account::AuthorizedHolds),
            Self::Void => (Account::AuthorizedHolds, Account::CustomerFunds),
            Self::Capture => (Account::AuthorizedHolds, Account::MerchantRevenue),
            Self::Refund => (Account::MerchantRevenue, Account::CustomerFunds),
        }
    }
}

/// A side of an entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Money arriving in the account.
    Debit,
    /// Money leaving the account.
    Credit,
}

impl Direction {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Debit => "debit",
            Self::Credit => "credit",
        }
    }
}

/// One line of a transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The account.
    pub account: Account,
    /// Debit or credit.
    pub direction: Direction,
    /// How much; always positive.
    pub amount: Money,
}

/// Why a transaction was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LedgerError {
    /// Money moves in positive amounts only.
    #[error("a ledger amount must be positive, got {0}")]
    NotPositive(Money),
    /// A transaction without entries records nothing.
    #[error("a ledger transaction needs entries")]
    Empty,
    /// Debits and credits differ in some currency.
    #[error("debits of {debits} and credits of {credits} {currency} do not balance")]
    Unbalanced {
        /// The currency that does not balance.
        currency: Currency,
        /// Its debits, minor units.
        debits: i128,
        /// Its credits, minor units.
        credits: i128,
    },
}

/// A balanced set of entries about one order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transaction {
    id: String,
    order_id: String,
    kind: Kind,
    entries: Vec<Entry>,
}

impl Transaction {
    /// Moves `amount` along `kind`'s route, for `order_id`.
    pub fn transfer(order_id: OrderId, kind: Kind, amount: Money) -> Result<Self, LedgerError> {
        let (from, to) = kind.route();
        Self::from_entries(
            &order_id.to_string(),
            kind,
            vec![
                Entry {
                    account: from,
                    direction: Direction::Credit,
                    amount,
                },
                Entry {
                    account: to,
                    direction: Direction::Debit,
                    amount,
                },
            ],
        )
    }

    /// A transaction of `entries`, if they are positive and balance.
    fn from_entries(order_id: &str, kind: Kind, entries: Vec<Entry>) -> Result<Self, LedgerError> {
        check_balanced(&entries)?;
        Ok(Self {
            id: uuid::Uuid::now_v7().to_string(),
            order_id: order_id.to_owned(),
            kind,
            entries,
        })
    }

    /// Its id, which groups its entries.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The order it is about.
    pub fn order_id(&self) -> &str {
        &self.order_id
    }

    /// What it records.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// Its entries.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }
}

/// Whether `entries` are positive, not empty, and their debits equal their credits in
/// every currency.
pub fn check_balanced(entries: &[Entry]) -> Result<(), LedgerError> {
    if entries.is_empty() {
        return Err(LedgerError::Empty);
    }
    let mut sums: BTreeMap<Currency, (i128, i128)> = BTreeMap::new();
    for entry in entries {
        if entry.amount.amount_minor <= 0 {
            return Err(LedgerError::NotPositive(entry.amount));
        }
        let sum = sums.entry(entry.amount.currency).or_default();
        let amount = i128::from(entry.amount.amount_minor);
        match entry.direction {
            Direction::Debit => sum.0 += amount,
            Direction::Credit => sum.1 += amount,
        }
    }
    match sums
        .into_iter()
        .find(|(_, (debits, credits))| debits != credits)
    {
        Some((currency, (debits, credits))) => Err(LedgerError::Unbalanced {
            currency,
            debits,
            credits,
        }),
        None => Ok(()),
    }
}

/// Appends `transaction` inside the caller's database transaction. This is the only
/// statement that writes entries; nothing ever updates or deletes them.
pub async fn append(
    connection: &mut AnyConnection,
    transaction: &Transaction,
    now: i64,
) -> anyhow::Result<()> {
    check_balanced(&transaction.entries).context("refusing to write an unbalanced transaction")?;
    let currency = transaction.entries[0].amount.currency;
    sqlx::query(
        "INSERT INTO ledger_transactions (id, order_id, kind, currency, created_at) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(transaction.id.clone())
    .bind(transaction.order_id.clone())
    .bind(transaction.kind.as_str())
    .bind(currency.as_str().to_owned())
    .bind(now)
    .execute(&mut *connection)
    .await
    .with_context(|| {
        format!(
            "recording the {} of order {}",
            transaction.kind.as_str(),
            transaction.order_id
        )
    })?;
    for (line, entry) in (1_i64..).zip(&transaction.entries) {
        sqlx::query(
            "INSERT INTO ledger_entries \
             (transaction_id, line, account, direction, amount_minor, currency, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(transaction.id.clone())
        .bind(line)
        .bind(entry.account.as_str())
        .bind(entry.direction.as_str())
        .bind(entry.amount.amount_minor)
        .bind(entry.amount.currency.as_str().to_owned())
        .bind(now)
        .execute(&mut *connection)
        .await
        .context("writing a ledger entry")?;
    }
    Ok(())
}

/// An account's totals in one currency.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Balance {
    /// The account.
    pub account: Account,
    /// Money that arrived.
    pub debits: Money,
    /// Money that left.
    pub credits: Money,
    /// Debits minus credits.
    pub balance: Money,
}

/// Every account's balance, per currency, by account then currency.
pub async fn balances(pool: &AnyPool) -> anyhow::Result<Vec<Balance>> {
    let rows = sqlx::query(
        "SELECT account, currency, \
           CAST(SUM(CASE WHEN direction = 'debit' THEN amount_minor ELSE 0 END) AS BIGINT) AS debits, \
           CAST(SUM(CASE WHEN direction = 'credit' THEN amount_minor ELSE 0 END) AS BIGINT) AS credits \
         FROM ledger_entries GROUP BY account, currency ORDER BY account, currency",
    )
    .fetch_all(pool)
    .await
    .context("summing ledger balances")?;
    rows.iter()
        .map(|row| {
            let account: String = row.try_get("account")?;
            let account =
                Account::parse(&account).with_context(|| format!("stored account {account:?}"))?;
            let currency = Currency::parse(&row.try_get::<String, _>("currency")?)?;
            let debits: i64 = row.try_get("debits")?;
            let credits: i64 = row.try_get("credits")?;
            let balance = debits.checked_sub(credits).context("a balance overflows")?;
            Ok(Balance {
                account,
                debits: Money::new(debits, currency),
                credits: Money::new(credits, currency),
                balance: Money::new(balance, currency),
            })
        })
        .collect()
}

/// A stored transaction's sums, for audits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Totals {
    /// The transaction.
    pub transaction_id: String,
    /// The order it is about.
    pub order_id: String,
    /// What it records.
    pub kind: Kind,
    /// The currency of these sums.
    pub currency: Currency,
    /// Its debits, minor units; what it moved.
    pub debits_minor: i64,
    /// Its credits, minor units.
    pub credits_minor: i64,
}

/// The sums of every stored transaction, one row per transaction and currency (so a
/// transaction that mixed currencies shows in each), in order of transaction id. A
/// transaction without entries shows with zero sums in its own currency.
pub async fn totals(connection: &mut AnyConnection) -> anyhow::Result<Vec<Totals>> {
    let rows = sqlx::query(
        "SELECT t.id, t.order_id, t.kind, COALESCE(e.currency, t.currency) AS currency, \
           CAST(COALESCE(SUM(CASE WHEN e.direction = 'debit' THEN e.amount_minor ELSE 0 END), 0) AS BIGINT) AS debits, \
           CAST(COALESCE(SUM(CASE WHEN e.direction = 'credit' THEN e.amount_minor ELSE 0 END), 0) AS BIGINT) AS credits \
         FROM ledger_transactions t LEFT JOIN ledger_entries e ON e.transaction_id = t.id \
         GROUP BY t.id, t.order_id, t.kind, COALESCE(e.currency, t.currency) \
         ORDER BY t.id",
    )
    .fetch_all(connection)
    .await
    .context("summing ledger transactions")?;
    rows.iter()
        .map(|row| {
            let kind: String = row.try_get("kind")?;
            Ok(Totals {
                transaction_id: row.try_get("id")?,
                order_id: row.try_get("order_id")?,
                kind: Kind::parse(&kind).with_context(|| format!("stored kind {kind:?}"))?,
                currency: Currency::parse(&row.try_get::<String, _>("currency")?)?,
                debits_minor: row.try_get("debits")?,
                credits_minor: row.try_get("credits")?,
            })
        })
        .collect()
}

/// What moved for one order, by kind: the debits of its transactions of each kind.
pub async fn order_movements(
    connection: &mut AnyConnection,
    order_id: &str,
) -> anyhow::Result<BTreeMap<Kind, Money>> {
    let rows = sqlx::query(
        "SELECT t.kind, e.currency, CAST(SUM(e.amount_minor) AS BIGINT) AS amount \
         FROM ledger_transactions t JOIN ledger_entries e ON e.transaction_id = t.id \
         WHERE t.order_id = $1 AND e.direction = 'debit' \
         GROUP BY t.kind, e.currency",
    )
    .bind(order_id.to_owned())
    .fetch_all(connection)
    .await
    .context("reading an order's ledger")?;
    let mut moved = BTreeMap::new();
    for row in &rows {
        let kind: String = row.try_get("kind")?;
        let kind = Kind::parse(&kind).with_context(|| format!("stored kind {kind:?}"))?;
        let currency = Currency::parse(&row.try_get::<String, _>("currency")?)?;
        let amount = Money::new(row.try_get("amount")?, currency);
        // One payment has one currency; should that ever break, the sum says so.
        let total = match moved.get(&kind) {
            Some(earlier) => amount.checked_add(*earlier)?,
            None => amount,
        };
        moved.insert(kind, total);
    }
    Ok(moved)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eur(amount: i64) -> Money {
        Money::new(amount, Currency::EUR)
    }

    fn order(name: &str) -> OrderId {
        match name {
            "o" => OrderId::parse("01900000-0000-7000-8000-00000000000a"),
            _ => OrderId::parse("01900000-0000-7000-8000-00000000000b"),
        }
        .expect("a UUID")
    }

    #[test]
    fn transfers_are_balanced_by_construction() {
        for kind in Kind::ALL {
            let transaction =
                Transaction::transfer(order("o-1"), kind, eur(1_999)).expect("balanced");
            assert_eq!(check_balanced(transaction.entries()), Ok(()));
            let (from, to) = kind.route();
            assert_eq!(transaction.entries()[0].account, from);
            assert_eq!(transaction.entries()[0].direction, Direction::Credit);
            assert_eq!(transaction.entries()[1].account, to);
            assert_eq!(transaction.entries()[1].direction, Direction::Debit);
        }
    }

    #[test]
    fn unbalanced_empty_and_non_positive_entries_are_refused() {
        let debit = |amount: Money| Entry {
            account: Account::AuthorizedHolds,
            direction: Direction::Debit,
            amount,
        };
        let credit = |amount: Money| Entry {
            account: Account::CustomerFunds,
            direction: Direction::Credit,
            amount,
        };
        assert!(matches!(
            Transaction::from_entries(
                "o-1",
                Kind::Authorize,
                vec![debit(eur(100)), credit(eur(99))]
            ),
            Err(LedgerError::Unbalanced { .. })
        ));
        let usd = Money::new(100, Currency::parse("USD").expect("valid"));
        assert!(
            matches!(
                Transaction::from_entries(
                    "o-1",
                    Kind::Authorize,
                    vec![debit(eur(100)), credit(usd)]
                ),
                Err(LedgerError::Unbalanced { .. })
            ),
            "currencies balance separately"
        );
        assert_eq!(
            Transaction::from_entries("o-1", Kind::Authorize, Vec::new()),
            Err(LedgerError::Empty)
        );
        assert_eq!(
            Transaction::transfer(order("o-1"), Kind::Capture, eur(0)),
            Err(LedgerError::NotPositive(eur(0)))
        );
        assert!(Transaction::transfer(order("o-1"), Kind::Capture, eur(-5)).is_err());
    }

    #[test]
    fn the_four_movements_conserve_money() {
        // Authorize, capture, refund of one order; void of another.
        let mut balances: BTreeMap<Account, i64> = BTreeMap::new();
        for (kind, amount) in [
            (Kind::Authorize, 500),
            (Kind::Capture, 500),
            (Kind::Refund, 500),
            (Kind::Authorize, 300),
            (Kind::Void, 300),
        ] {
            let transaction =
                Transaction::transfer(order("o"), kind, eur(amount)).expect("balanced");
            for entry in transaction.entries() {
                let sign = match entry.direction {
                    Direction::Debit => 1,
                    Direction::Credit => -1,
                };
                *balances.entry(entry.account).or_default() += sign * entry.amount.amount_minor;
            }
        }
        assert!(
            balances.values().all(|balance| *balance == 0),
            "{balances:?}"
        );
    }
}
