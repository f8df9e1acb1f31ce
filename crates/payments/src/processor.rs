//! The card processor: the outside party that keeps card numbers and moves money.
//!
//! [`CardProcessor`] is the seam a real provider's adapter would fill; [`Simulator`] is
//! the one Bazaar ships, a fake card network that behaves like public payment sandboxes
//! (its test card numbers are in [`crate::cards`]). [`Faulty`] stands in front of any
//! processor and fails as the shop's fault flags say ([`faults`]).
//!
//! Every money-moving call takes an idempotency key: the same key gets the same result,
//! so a call repeated after a crash or a lost answer moves nothing twice. Payments keys
//! an order's authorization by the order id and the later calls by the order id and the
//! operation (see [`crate::ops::processor_key`]).

pub mod faults;
mod simulator;

use contracts::Money;
use contracts::messaging::payments::DeclineReason;
use futures_util::future::BoxFuture;

use crate::cards::Card;

pub use faults::Faulty;
pub use simulator::{Simulator, SimulatorConfig};

/// A card payment provider.
pub trait CardProcessor: Send + Sync + 'static {
    /// Keeps `card` in the processor's vault and returns its opaque reference, the only
    /// thing payments stores of it.
    fn tokenize<'a>(&'a self, card: &'a Card) -> BoxFuture<'a, Result<CardRef, ProcessorError>>;

    /// Reserves `amount` on the card.
    fn authorize<'a>(
        &'a self,
        idempotency_key: &'a str,
        card: &'a CardRef,
        amount: Money,
    ) -> BoxFuture<'a, Result<Authorization, ProcessorError>>;

    /// Takes `amount` of an authorization.
    fn capture<'a>(
        &'a self,
        idempotency_key: &'a str,
        authorization: &'a str,
        amount: Money,
    ) -> BoxFuture<'a, Result<Capture, ProcessorError>>;

    /// Cancels an authorization that will not be captured.
    fn void<'a>(
        &'a self,
        idempotency_key: &'a str,
        authorization: &'a str,
    ) -> BoxFuture<'a, Result<(), ProcessorError>>;

    /// Gives `amount` of a capture back.
    fn refund<'a>(
        &'a self,
        idempotency_key: &'a str,
        capture: &'a str,
        amount: Money,
    ) -> BoxFuture<'a, Result<Refund, ProcessorError>>;
}

/// The processor's reference to a card in its vault. Opaque to payments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CardRef(String);

impl CardRef {
    /// A reference as the processor gave it, or as it was stored.
    pub fn new(reference: impl Into<String>) -> Self {
        Self(reference.into())
    }

    /// The reference, to store.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An amount reserved on a card.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Authorization {
    /// The processor's id of the authorization.
    pub id: String,
}

/// An amount taken from an authorization.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Capture {
    /// The processor's id of the capture.
    pub id: String,
}

/// An amount given back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refund {
    /// The processor's id of the refund.
    pub id: String,
}

/// Why a card, or an operation on an authorization or a capture, was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeclineCode {
    /// The issuer said no.
    CardDeclined,
    /// Not enough money on the card.
    InsufficientFunds,
    /// The authorization is no longer there to capture or void (it expired at the
    /// issuer).
    AuthorizationLapsed,
    /// The card can no longer receive money: a refund cannot go back to it.
    CardClosed,
}

impl DeclineCode {
    /// The code, as logged and counted.
    pub fn as_str(self) -> &'static str {
        DeclineReason::from(self).as_str()
    }
}

impl From<DeclineCode> for DeclineReason {
    fn from(code: DeclineCode) -> Self {
        match code {
            DeclineCode::CardDeclined => Self::CardDeclined,
            DeclineCode::InsufficientFunds => Self::InsufficientFunds,
            DeclineCode::AuthorizationLapsed => Self::AuthorizationLapsed,
            DeclineCode::CardClosed => Self::CardClosed,
        }
    }
}

/// A processor call that did not succeed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProcessorError {
    /// A final answer: the card or the operation was refused; asking again changes
    /// nothing.
    #[error("the card was declined: {}", code.as_str())]
    Declined {
        /// Why.
        code: DeclineCode,
    },
    /// No answer or a temporary failure: the same call, with the same idempotency key,
    /// may be made again.
    #[error("the card processor failed transiently: {0}")]
    Transient(String),
}
