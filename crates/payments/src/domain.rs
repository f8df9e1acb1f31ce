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

/// The name of where a payment stands, as stored; [`Stage`] carries its data.
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

/// Where a payment stands, with what it has in that state and only there: the charge
/// (every payment but a tombstone), the processor's authorization (held, authorized,
/// captured, refunded), its capture (captured, refunded), its refund, and why it was
/// declined or its capture refused. A state is its [`State`] name plus this data, so
/// code that captures a payment gets the authorization from the state it matched, and
/// no payment can be authorized without one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stage {
    /// A void came before any authorization: nothing was charged or asked, and an
    /// authorization that comes later is voided.
    Tombstone,
    /// Authorized on the card, waiting for an admin's review.
    Held {
        /// Who pays how much.
        charge: Charge,
        /// The processor's authorization.
        authorization: String,
    },
    /// Authorized on the card; may be captured.
    Authorized {
        /// Who pays how much.
        charge: Charge,
        /// The processor's authorization.
        authorization: String,
    },
    /// No money moves: the card, the fraud rules or a reviewer said no.
    Declined {
        /// Who would have paid how much.
        charge: Charge,
        /// Why.
        reason: DeclineReason,
    },
    /// The authorized amount was taken.
    Captured {
        /// Who paid how much.
        charge: Charge,
        /// The processor's authorization.
        authorization: String,
        /// The processor's capture.
        capture: String,
    },
    /// The authorization was cancelled, or the processor refused the capture for good
    /// (then `capture_refused` says why, and a repeated capture fails the same way).
    Voided {
        /// Who would have paid how much.
        charge: Charge,
        /// Why the processor refused the capture, if that is how it ended.
        capture_refused: Option<DeclineReason>,
    },
    /// The captured amount was given back.
    Refunded {
        /// Who paid how much.
        charge: Charge,
        /// The processor's authorization.
        authorization: String,
        /// The processor's capture.
        capture: String,
        /// The processor's refund.
        refund: String,
    },
}

impl Stage {
    /// The state's name.
    pub fn state(&self) -> State {
        match self {
            Self::Held { .. } => State::Held,
            Self::Authorized { .. } => State::Authorized,
            Self::Declined { .. } => State::Declined,
            Self::Captured { .. } => State::Captured,
            Self::Tombstone | Self::Voided { .. } => State::Voided,
            Self::Refunded { .. } => State::Refunded,
        }
    }

    /// Who pays how much, unless it is a tombstone.
    pub fn charge(&self) -> Option<&Charge> {
        match self {
            Self::Tombstone => None,
            Self::Held { charge, .. }
            | Self::Authorized { charge, .. }
            | Self::Declined { charge, .. }
            | Self::Captured { charge, .. }
            | Self::Voided { charge, .. }
            | Self::Refunded { charge, .. } => Some(charge),
        }
    }

    /// The processor's authorization, in the states that have one.
    pub fn authorization(&self) -> Option<&str> {
        match self {
            Self::Held { authorization, .. }
            | Self::Authorized { authorization, .. }
            | Self::Captured { authorization, .. }
            | Self::Refunded { authorization, .. } => Some(authorization),
            Self::Tombstone | Self::Declined { .. } | Self::Voided { .. } => None,
        }
    }

    /// The processor's capture, in the states that have one.
    pub fn capture(&self) -> Option<&str> {
        match self {
            Self::Captured { capture, .. } | Self::Refunded { capture, .. } => Some(capture),
            _ => None,
        }
    }

    /// The processor's refund, once refunded.
    pub fn refund(&self) -> Option<&str> {
        match self {
            Self::Refunded { refund, .. } => Some(refund),
            _ => None,
        }
    }

    /// Why it was declined, or why its capture was refused.
    pub fn decline_reason(&self) -> Option<DeclineReason> {
        match self {
            Self::Declined { reason, .. } => Some(*reason),
            Self::Voided {
                capture_refused, ..
            } => *capture_refused,
            _ => None,
        }
    }

    /// The stage stored as these columns, or what is missing for the state to hold.
    /// (A declined payment stored without its reason reads as declined for a reason
    /// not known.)
    pub fn from_columns(columns: Columns) -> Result<Self, String> {
        let Columns {
            state,
            charge,
            decline_reason,
            authorization,
            capture,
            refund,
        } = columns;
        let missing = |what: &str| format!("{} payment without its {what}", state.as_str());
        let Some(charge) = charge else {
            return match state {
                State::Voided => Ok(Self::Tombstone),
                _ => Err(missing("charge")),
            };
        };
        let authorization = || {
            authorization
                .clone()
                .ok_or_else(|| missing("authorization"))
        };
        let capture = || capture.clone().ok_or_else(|| missing("capture"));
        Ok(match state {
            State::Held => Self::Held {
                authorization: authorization()?,
                charge,
            },
            State::Authorized => Self::Authorized {
                authorization: authorization()?,
                charge,
            },
            State::Declined => Self::Declined {
                reason: decline_reason.unwrap_or(DeclineReason::Other),
                charge,
            },
            State::Captured => Self::Captured {
                authorization: authorization()?,
                capture: capture()?,
                charge,
            },
            State::Voided => Self::Voided {
                capture_refused: decline_reason,
                charge,
            },
            State::Refunded => Self::Refunded {
                authorization: authorization()?,
                capture: capture()?,
                refund: refund.ok_or_else(|| missing("refund"))?,
                charge,
            },
        })
    }
}

/// A payment's stage as it is stored: a column each.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Columns {
    /// The state's name.
    pub state: State,
    /// The charge, unless a tombstone.
    pub charge: Option<Charge>,
    /// `decline_reason`.
    pub decline_reason: Option<DeclineReason>,
    /// `authorization_id`.
    pub authorization: Option<String>,
    /// `capture_id`.
    pub capture: Option<String>,
    /// `refund_id`.
    pub refund: Option<String>,
}

/// An order's payment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Payment {
    /// The order, which is also the payment's id.
    pub order_id: OrderId,
    /// Where it stands, with what it has there.
    pub stage: Stage,
    /// Why the fraud rules held it, if they did (kept once it moves on).
    pub hold_reasons: Vec<HoldReason>,
    /// When it was created, Unix ms.
    pub created_at_ms: i64,
    /// When it last changed, Unix ms.
    pub updated_at_ms: i64,
}

impl Payment {
    /// The payment of `order_id` as it is made at `now_ms`, in `stage`.
    pub fn new(order_id: OrderId, stage: Stage, now_ms: i64) -> Self {
        Self {
            order_id,
            stage,
            hold_reasons: Vec::new(),
            created_at_ms: now_ms,
            updated_at_ms: now_ms,
        }
    }

    /// Its state's name.
    pub fn state(&self) -> State {
        self.stage.state()
    }

    /// Who pays how much, unless it is a tombstone.
    pub fn charge(&self) -> Option<&Charge> {
        self.stage.charge()
    }

    /// The customer who pays, unless it is a tombstone.
    pub fn customer_id(&self) -> Option<&str> {
        self.charge().map(|charge| charge.customer_id.as_str())
    }

    /// The order's amount, unless it is a tombstone.
    pub fn amount(&self) -> Option<Money> {
        self.charge().map(|charge| charge.amount)
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

#[cfg(test)]
mod tests {
    use contracts::Currency;

    use super::*;

    fn charge() -> Charge {
        Charge {
            customer_id: "ada".to_owned(),
            amount: Money::new(1_450, Currency::EUR),
            payment_method: Some("pm_1".to_owned()),
        }
    }

    fn columns(stage: &Stage) -> Columns {
        Columns {
            state: stage.state(),
            charge: stage.charge().cloned(),
            decline_reason: stage.decline_reason(),
            authorization: stage.authorization().map(str::to_owned),
            capture: stage.capture().map(str::to_owned),
            refund: stage.refund().map(str::to_owned),
        }
    }

    #[test]
    fn every_stage_survives_its_columns() {
        let (auth, capture) = ("auth_1".to_owned(), "cap_1".to_owned());
        let stages = [
            Stage::Tombstone,
            Stage::Held {
                charge: charge(),
                authorization: auth.clone(),
            },
            Stage::Authorized {
                charge: charge(),
                authorization: auth.clone(),
            },
            Stage::Declined {
                charge: charge(),
                reason: DeclineReason::Fraud,
            },
            Stage::Captured {
                charge: charge(),
                authorization: auth.clone(),
                capture: capture.clone(),
            },
            Stage::Voided {
                charge: charge(),
                capture_refused: None,
            },
            Stage::Voided {
                charge: charge(),
                capture_refused: Some(DeclineReason::AuthorizationLapsed),
            },
            Stage::Refunded {
                charge: charge(),
                authorization: auth,
                capture,
                refund: "ref_1".to_owned(),
            },
        ];
        for stage in stages {
            assert_eq!(Stage::from_columns(columns(&stage)), Ok(stage.clone()));
            assert_eq!(State::parse(stage.state().as_str()), Some(stage.state()));
        }
    }

    #[test]
    fn a_stored_state_without_its_data_is_refused_by_name() {
        let captured_without_capture = Columns {
            capture: None,
            ..columns(&Stage::Captured {
                charge: charge(),
                authorization: "auth_1".to_owned(),
                capture: "cap_1".to_owned(),
            })
        };
        assert_eq!(
            Stage::from_columns(captured_without_capture),
            Err("captured payment without its capture".to_owned())
        );
        let authorized_without_charge = Columns {
            charge: None,
            ..columns(&Stage::Authorized {
                charge: charge(),
                authorization: "auth_1".to_owned(),
            })
        };
        assert_eq!(
            Stage::from_columns(authorized_without_charge),
            Err("authorized payment without its charge".to_owned())
        );
    }
}
