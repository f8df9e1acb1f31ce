//! A payment and its states; pure.
//!
//! One payment per order. Its state moves:
//!
//! ```text
//!   (none) ──authorize──▶ authorized ──capture──▶ captured ──refund──▶ refunded
//!     │  │                  ▲    │
//!     │  ├──hold──▶ held ───┘    └──void──▶ voided
//!     │  │           ├──review declines──▶ declined
//!     │  │           └──void──▶ voided
//!     │  └──decline──▶ declined
//!     └──void (before any authorization)──▶ voided, with no charge: a tombstone
//! ```

use contracts::messaging::payments::{DeclineReason, HoldReason};
use contracts::{Money, OrderId};

/// Where a payment stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Authorized on the card, waiting for an admin's review.
    Held,
    /// Authorized on the card; may be captured.
    Authorized,
    /// No money moves: the card, the fraud rules or a reviewer said no.
    Declined,
    /// The authorized amount was taken.
    Captured,
    /// The authorization was cancelled, or the order was cancelled before there was one.
    Voided,
    /// The captured amount was given back.
    Refunded,
}

impl State {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Held => "held",
            Self::Authorized => "authorized",
            Self::Declined => "declined",
            Self::Captured => "captured",
            Self::Voided => "voided",
            Self::Refunded => "refunded",
        }
    }

    /// The state of a stored name.
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "held" => Self::Held,
            "authorized" => Self::Authorized,
            "declined" => Self::Declined,
            "captured" => Self::Captured,
            "voided" => Self::Voided,
            "refunded" => Self::Refunded,
            _ => return None,
        })
    }
}

/// Who pays how much, with what. Every payment has one, except a void that came before
/// any authorization.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Charge {
    /// The paying customer.
    pub customer_id: String,
    /// The order's amount.
    pub amount: Money,
    /// The payment method's token; `None` when the order named one that did not exist.
    pub payment_method: Option<String>,
}

/// An order's payment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Payment {
    /// The order, which is also the payment's id.
    pub order_id: OrderId,
    /// Where it stands.
    pub state: State,
    /// Who pays how much; `None` for a tombstone.
    pub charge: Option<Charge>,
    /// Why the fraud rules held it, if they did.
    pub hold_reasons: Vec<HoldReason>,
    /// Why it was declined, or why the processor refused its capture, if either.
    pub decline_reason: Option<DeclineReason>,
    /// The processor's authorization, once there is one.
    pub authorization_id: Option<String>,
    /// The processor's capture, once there is one.
    pub capture_id: Option<String>,
    /// The processor's refund, once there is one.
    pub refund_id: Option<String>,
    /// When it was created, Unix ms.
    pub created_at_ms: i64,
    /// When it last changed, Unix ms.
    pub updated_at_ms: i64,
}

impl Payment {
    /// The payment of `order_id` as it is made at `now_ms`, in `state`, with nothing
    /// from the processor yet; `charge` is `None` for a tombstone.
    pub fn new(order_id: OrderId, state: State, charge: Option<Charge>, now_ms: i64) -> Self {
        Self {
            order_id,
            state,
            charge,
            hold_reasons: Vec::new(),
            decline_reason: None,
            authorization_id: None,
            capture_id: None,
            refund_id: None,
            created_at_ms: now_ms,
            updated_at_ms: now_ms,
        }
    }

    /// The customer who pays, unless it is a tombstone.
    pub fn customer_id(&self) -> Option<&str> {
        self.charge
            .as_ref()
            .map(|charge| charge.customer_id.as_str())
    }

    /// The order's amount, unless it is a tombstone.
    pub fn amount(&self) -> Option<Money> {
        self.charge.as_ref().map(|charge| charge.amount)
    }
}

/// A customer's saved card, as payments keeps it: never the number or security code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Method {
    /// Bazaar's own token for it, shown to the customer: `pm_` and 32 hex digits.
    pub token: String,
    /// Whose it is.
    pub customer_id: String,
    /// The processor's opaque reference to the card in its vault.
    pub processor_ref: String,
    /// The card's network.
    pub brand: String,
    /// The last four digits.
    pub last4: String,
    /// Expiry month, 1-12.
    pub exp_month: i64,
    /// Expiry year.
    pub exp_year: i64,
    /// When it was registered, Unix ms.
    pub created_at_ms: i64,
}
