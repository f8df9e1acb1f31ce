//! Messages that travel over the bus: the envelope every event and command rides in,
//! and the event types, each defined once, here.
//!
//! A message's type names its owner, what happened, and a version:
//! `catalog.product_created.v1`. It is also the bus subject, so a subscriber filters on
//! `catalog.>` or `*.product_created.v1`.
//!
//! **Compatibility rule:** a version's payload may gain fields (readers ignore fields
//! they do not know, and new fields are optional for readers); removing, renaming or
//! changing the meaning of a field is a new type with the next version, published
//! beside the old one until no subscriber reads the old one.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::Money;
use crate::ids::{CustomerId, OrderId, ProductId, UserId};

/// Defines a reason code: a closed set of snake_case codes that travel as strings, and
/// `Other` for a code this build does not know, so that a newer sender's new code is
/// read as "some other reason" instead of refusing the whole message.
macro_rules! codes {
    ($(#[$doc:meta])* $name:ident { $($(#[$variant_doc:meta])* $variant:ident = $code:literal,)* }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$variant_doc])* #[serde(rename = $code)] $variant,)*
            /// A code this build does not know (sent by a newer service).
            #[serde(other, rename = "other")]
            Other,
        }

        impl $name {
            /// The code as written on the wire and in storage.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $code,)*
                    Self::Other => "other",
                }
            }

            /// The reason `code` names; [`Self::Other`] for any code not known here.
            pub fn parse(code: &str) -> Self {
                match code {
                    $($code => Self::$variant,)*
                    _ => Self::Other,
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

/// What every message carries around its payload.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// Unique message id (UUID v7); the deduplication key of the bus and of inboxes.
    pub id: String,
    /// The versioned message type, e.g. `catalog.product_created.v1`; also its subject.
    #[serde(rename = "type")]
    pub kind: String,
    /// The service that produced it.
    pub source: String,
    /// When the change happened, milliseconds since the Unix epoch.
    pub occurred_at_ms: i64,
    /// Ties together every message caused by one request (the request id at the edge).
    pub correlation_id: String,
    /// The id of the message that caused this one, if a message did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<String>,
    /// W3C trace context of the producer's span, so the consumer's span joins its trace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    /// The message itself, as JSON.
    pub payload: serde_json::Value,
}

/// A payload type with its versioned name.
pub trait Message: Serialize + DeserializeOwned {
    /// The versioned type, e.g. `catalog.product_created.v1`.
    const TYPE: &'static str;
}

/// Why an envelope's payload could not be read as the type asked for.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The envelope is of another type.
    #[error("expected a {expected} message, got {actual}")]
    WrongType {
        /// The type asked for.
        expected: &'static str,
        /// The envelope's type.
        actual: String,
    },
    /// The payload does not match the type.
    #[error("malformed {kind} payload: {source}")]
    Malformed {
        /// The envelope's type.
        kind: String,
        /// The JSON error.
        source: serde_json::Error,
    },
}

impl Envelope {
    /// Reads the payload as `M`, checking the type first.
    pub fn decode<M: Message>(&self) -> Result<M, DecodeError> {
        if self.kind != M::TYPE {
            return Err(DecodeError::WrongType {
                expected: M::TYPE,
                actual: self.kind.clone(),
            });
        }
        serde_json::from_value(self.payload.clone()).map_err(|source| DecodeError::Malformed {
            kind: self.kind.clone(),
            source,
        })
    }
}

/// The catalog's events.
pub mod catalog {
    use super::*;

    /// An admin added a product.
    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    pub struct ProductCreatedV1 {
        /// The product's id.
        pub product_id: ProductId,
        /// Its slug.
        pub slug: String,
        /// Its name.
        pub name: String,
        /// Its category's slug.
        pub category: String,
        /// Its price.
        pub price: Money,
    }

    impl Message for ProductCreatedV1 {
        const TYPE: &'static str = "catalog.product_created.v1";
    }

    /// An admin changed a product's price.
    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    pub struct ProductPriceChangedV1 {
        /// The product's id.
        pub product_id: ProductId,
        /// The price before.
        pub old_price: Money,
        /// The price now.
        pub new_price: Money,
    }

    impl Message for ProductPriceChangedV1 {
        const TYPE: &'static str = "catalog.product_price_changed.v1";
    }

    /// An admin removed a product.
    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    pub struct ProductDeletedV1 {
        /// The product's id.
        pub product_id: ProductId,
    }

    impl Message for ProductDeletedV1 {
        const TYPE: &'static str = "catalog.product_deleted.v1";
    }
}

/// Inventory's commands (sent by the checkout saga) and events.
///
/// Commands are named `inventory.cmd.<verb>.v1`, so a subscription to `inventory.cmd.>`
/// receives exactly the commands and one to `inventory.*.v1` exactly the events.
pub mod inventory {
    use super::*;

    codes!(
        /// Why held stock went back on sale.
        ReleaseReason {
            /// The saga asked for it (`ReleaseStock`).
            Released = "released",
            /// The hold ran out.
            Expired = "expired",
            /// Nothing had been held: the reservation was rejected.
            Rejected = "rejected",
        }
    );

    codes!(
        /// How a reservation had ended when a commit came.
        ReservationEnd {
            /// Released when asked to.
            Released = "released",
            /// Its hold ran out.
            Expired = "expired",
            /// Nothing was ever held: there was too little stock.
            Rejected = "rejected",
            /// No reservation was ever asked for.
            Unknown = "unknown",
        }
    );

    /// One product and how many of it.
    #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
    pub struct Line {
        /// The product's id.
        pub product_id: ProductId,
        /// How many, at least 1.
        pub quantity: i64,
    }

    /// Hold stock for an order until it is paid, or until `hold_secs` pass.
    #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
    pub struct ReserveStockV1 {
        /// The order the stock is for; also the reservation's id.
        pub order_id: OrderId,
        /// What to hold.
        pub lines: Vec<Line>,
        /// How long to hold it before it goes back on sale.
        pub hold_secs: u64,
    }

    impl Message for ReserveStockV1 {
        const TYPE: &'static str = "inventory.cmd.reserve_stock.v1";
    }

    /// Give an order's held stock back (the order was cancelled or not paid).
    #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
    pub struct ReleaseStockV1 {
        /// The order.
        pub order_id: OrderId,
    }

    impl Message for ReleaseStockV1 {
        const TYPE: &'static str = "inventory.cmd.release_stock.v1";
    }

    /// The order is paid: its held stock is sold.
    #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
    pub struct CommitStockV1 {
        /// The order.
        pub order_id: OrderId,
    }

    impl Message for CommitStockV1 {
        const TYPE: &'static str = "inventory.cmd.commit_stock.v1";
    }

    /// The order's sold stock goes back on sale: its payment could not be taken.
    #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
    pub struct ReturnStockV1 {
        /// The order.
        pub order_id: OrderId,
    }

    impl Message for ReturnStockV1 {
        const TYPE: &'static str = "inventory.cmd.return_stock.v1";
    }

    /// The stock is held for the order until `expires_at_ms`.
    #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
    pub struct StockReservedV1 {
        /// The order.
        pub order_id: OrderId,
        /// When the hold ends, milliseconds since the Unix epoch.
        pub expires_at_ms: i64,
    }

    impl Message for StockReservedV1 {
        const TYPE: &'static str = "inventory.stock_reserved.v1";
    }

    /// Not enough stock: nothing was held.
    #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
    pub struct StockRejectedV1 {
        /// The order.
        pub order_id: OrderId,
        /// The products that were short.
        pub unavailable: Vec<ProductId>,
    }

    impl Message for StockRejectedV1 {
        const TYPE: &'static str = "inventory.stock_rejected.v1";
    }

    /// The order's held stock is back on sale.
    #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
    pub struct StockReleasedV1 {
        /// The order.
        pub order_id: OrderId,
        /// Why it went back on sale.
        pub reason: ReleaseReason,
    }

    impl Message for StockReleasedV1 {
        const TYPE: &'static str = "inventory.stock_released.v1";
    }

    /// The order's stock is sold.
    #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
    pub struct StockCommittedV1 {
        /// The order.
        pub order_id: OrderId,
    }

    impl Message for StockCommittedV1 {
        const TYPE: &'static str = "inventory.stock_committed.v1";
    }

    /// A commit came too late: the hold had ended and the stock was released.
    #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
    pub struct CommitRefusedV1 {
        /// The order.
        pub order_id: OrderId,
        /// How the reservation had ended.
        pub state: ReservationEnd,
    }

    impl Message for CommitRefusedV1 {
        const TYPE: &'static str = "inventory.commit_refused.v1";
    }

    /// The order's sold stock is back on sale (or none was sold).
    #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
    pub struct StockReturnedV1 {
        /// The order.
        pub order_id: OrderId,
    }

    impl Message for StockReturnedV1 {
        const TYPE: &'static str = "inventory.stock_returned.v1";
    }
}

/// Identity's events.
pub mod identity {
    use super::*;

    /// Someone created an account.
    #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
    pub struct UserRegisteredV1 {
        /// The user's id (the access token's subject).
        pub user_id: UserId,
        /// Where to write to them.
        pub email: String,
        /// When the account was created, milliseconds since the Unix epoch; the fraud
        /// rules judge an account's age from it.
        pub registered_at_ms: i64,
    }

    impl Message for UserRegisteredV1 {
        const TYPE: &'static str = "identity.user_registered.v1";
    }

    /// Someone asked for an account with an address. Identity answers every
    /// registration alike and writes to the address instead, so that only the
    /// address's owner learns whether it had an account already.
    #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
    pub struct RegistrationRequestedV1 {
        /// The new, unconfirmed account; or the account that holds the address.
        pub user_id: UserId,
        /// The address to write to.
        pub email: String,
        /// What to write.
        pub outcome: RegistrationOutcome,
    }

    impl Message for RegistrationRequestedV1 {
        const TYPE: &'static str = "identity.registration_requested.v1";
    }

    /// What became of a registration.
    #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(tag = "kind", rename_all = "snake_case")]
    pub enum RegistrationOutcome {
        /// A new account waits until its address is confirmed with `token`.
        Confirm {
            /// The one-time confirmation token (identity keeps only its hash).
            token: String,
            /// When the token expires, milliseconds since the Unix epoch.
            expires_at_ms: i64,
        },
        /// The address has a confirmed account already; nothing was created.
        AlreadyRegistered,
    }
}

/// Payments' commands (sent by the checkout saga) and events.
///
/// Every command and event names the order; payments keeps one payment per order, so
/// a repeated command gets the answer the first one got and never moves money twice.
pub mod payments {
    use super::*;

    codes!(
        /// Why no money will move, or why the processor refused an operation for good.
        DeclineReason {
            /// The issuer said no.
            CardDeclined = "card_declined",
            /// Not enough money on the card.
            InsufficientFunds = "insufficient_funds",
            /// The authorization expired at the issuer before it was used.
            AuthorizationLapsed = "authorization_lapsed",
            /// The card can no longer receive money.
            CardClosed = "card_closed",
            /// The fraud rules said no.
            Fraud = "fraud",
            /// A reviewer said no.
            ReviewDeclined = "review_declined",
            /// The order named no payment method of the customer's.
            UnknownPaymentMethod = "unknown_payment_method",
            /// The order was cancelled (its payment voided) first.
            Voided = "voided",
            /// The amount was not positive.
            InvalidAmount = "invalid_amount",
        }
    );

    codes!(
        /// A fraud rule that asked for a person to look.
        HoldReason {
            /// The amount is large.
            Amount = "amount",
            /// The customer pays unusually often.
            Velocity = "velocity",
            /// A large amount from a new account.
            AccountAge = "account_age",
        }
    );

    codes!(
        /// An operation on a payment that the processor can refuse for good.
        Operation {
            /// Taking the authorized amount.
            Capture = "capture",
            /// Giving a captured amount back.
            Refund = "refund",
        }
    );

    /// Check the order for fraud, then authorize its amount on the payment method.
    #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
    pub struct AuthorizePaymentV1 {
        /// The order being paid; one payment per order.
        pub order_id: OrderId,
        /// Who pays.
        pub customer_id: CustomerId,
        /// The payment method's token (from `POST /payments/methods`).
        pub payment_method: String,
        /// How much.
        pub amount: Money,
    }

    impl Message for AuthorizePaymentV1 {
        const TYPE: &'static str = "payments.cmd.authorize_payment.v1";
    }

    /// An admin's decision on a payment held for review.
    #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
    pub struct ReviewPaymentV1 {
        /// The order.
        pub order_id: OrderId,
        /// `true` to let it through, `false` to decline it (and void the authorization).
        pub approve: bool,
        /// The admin who decided.
        pub reviewer: String,
    }

    impl Message for ReviewPaymentV1 {
        const TYPE: &'static str = "payments.cmd.review_payment.v1";
    }

    /// Take the authorized amount: the order is confirmed.
    #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
    pub struct CapturePaymentV1 {
        /// The order.
        pub order_id: OrderId,
    }

    impl Message for CapturePaymentV1 {
        const TYPE: &'static str = "payments.cmd.capture_payment.v1";
    }

    /// Cancel an authorization that will not be captured (the order was cancelled).
    /// Answered with `PaymentVoided` also when nothing was ever authorized.
    #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
    pub struct VoidPaymentV1 {
        /// The order.
        pub order_id: OrderId,
    }

    impl Message for VoidPaymentV1 {
        const TYPE: &'static str = "payments.cmd.void_payment.v1";
    }

    /// Give a captured amount back in full.
    #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
    pub struct RefundPaymentV1 {
        /// The order.
        pub order_id: OrderId,
    }

    impl Message for RefundPaymentV1 {
        const TYPE: &'static str = "payments.cmd.refund_payment.v1";
    }

    /// The amount is authorized on the card and may be captured.
    #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
    pub struct PaymentAuthorizedV1 {
        /// The order.
        pub order_id: OrderId,
        /// The amount authorized.
        pub amount: Money,
    }

    impl Message for PaymentAuthorizedV1 {
        const TYPE: &'static str = "payments.payment_authorized.v1";
    }

    /// The fraud rules want a person to look: the amount is authorized but waits for
    /// an admin's `ReviewPayment`.
    #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
    pub struct PaymentHeldV1 {
        /// The order.
        pub order_id: OrderId,
        /// Which rules asked for the review.
        pub reasons: Vec<HoldReason>,
    }

    impl Message for PaymentHeldV1 {
        const TYPE: &'static str = "payments.payment_held.v1";
    }

    /// No money will move: the card was declined, the fraud rules or a reviewer said
    /// no, or the payment method is unknown.
    #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
    pub struct PaymentDeclinedV1 {
        /// The order.
        pub order_id: OrderId,
        /// Why.
        pub reason: DeclineReason,
    }

    impl Message for PaymentDeclinedV1 {
        const TYPE: &'static str = "payments.payment_declined.v1";
    }

    /// The authorized amount was taken.
    #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
    pub struct PaymentCapturedV1 {
        /// The order.
        pub order_id: OrderId,
        /// The amount captured.
        pub amount: Money,
    }

    impl Message for PaymentCapturedV1 {
        const TYPE: &'static str = "payments.payment_captured.v1";
    }

    /// The authorization (if there was one) is cancelled; nothing was taken.
    #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
    pub struct PaymentVoidedV1 {
        /// The order.
        pub order_id: OrderId,
    }

    impl Message for PaymentVoidedV1 {
        const TYPE: &'static str = "payments.payment_voided.v1";
    }

    /// The captured amount was given back.
    #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
    pub struct PaymentRefundedV1 {
        /// The order.
        pub order_id: OrderId,
        /// The amount refunded.
        pub amount: Money,
    }

    impl Message for PaymentRefundedV1 {
        const TYPE: &'static str = "payments.payment_refunded.v1";
    }

    /// The card processor refused a capture or a refund for good: asking again
    /// changes nothing. A refused capture took nothing and leaves no authorization to
    /// use (the payment is voided); a refused refund leaves the payment captured, for an
    /// operator to give the money back another way.
    #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
    pub struct PaymentFailedV1 {
        /// The order.
        pub order_id: OrderId,
        /// What was refused.
        pub operation: Operation,
        /// The processor's reason, e.g. `authorization_lapsed`.
        pub reason: DeclineReason,
    }

    impl Message for PaymentFailedV1 {
        const TYPE: &'static str = "payments.payment_failed.v1";
    }
}

/// The orders service's public events: what other services learn of an order's fate.
/// (The order's own event-sourced history is internal to orders.)
pub mod orders {
    use super::*;

    codes!(
        /// Why an order ended without a sale.
        CancelReason {
            /// Some of its stock was not there.
            OutOfStock = "out_of_stock",
            /// The payment was declined.
            PaymentDeclined = "payment_declined",
            /// A reviewer declined the payment.
            ReviewDeclined = "review_declined",
            /// The customer cancelled it.
            CustomerCancelled = "customer_cancelled",
            /// Its stock's hold ran out before it was paid for.
            ReservationExpired = "reservation_expired",
            /// A step was not answered in time.
            DeadlineMissed = "deadline_missed",
            /// The processor refused to capture the payment.
            PaymentFailed = "payment_failed",
        }
    );

    /// One ordered product at the price it was sold for.
    #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
    pub struct OrderLine {
        /// The product's id.
        pub product_id: ProductId,
        /// Its name when ordered.
        pub name: String,
        /// How many.
        pub quantity: i64,
        /// The price of one, when ordered.
        pub unit_price: Money,
    }

    /// The order is paid and its stock sold; the cart's ordered lines can go.
    #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
    pub struct OrderConfirmedV1 {
        /// The order.
        pub order_id: OrderId,
        /// Who ordered.
        pub customer_id: CustomerId,
        /// What was ordered.
        pub lines: Vec<OrderLine>,
        /// What was charged.
        pub total: Money,
        /// The revision of the cart the order was placed from, so the cart takes the
        /// order's lines out only of lines it held then; absent from orders placed
        /// before carts had revisions.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub cart_revision: Option<i64>,
    }

    impl Message for OrderConfirmedV1 {
        const TYPE: &'static str = "orders.order_confirmed.v1";
    }

    /// The order ended without a sale; nothing was charged.
    #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
    pub struct OrderCancelledV1 {
        /// The order.
        pub order_id: OrderId,
        /// Who ordered.
        pub customer_id: CustomerId,
        /// Why.
        pub reason: CancelReason,
    }

    impl Message for OrderCancelledV1 {
        const TYPE: &'static str = "orders.order_cancelled.v1";
    }

    /// A confirmed order's payment was given back in full.
    #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
    pub struct OrderRefundedV1 {
        /// The order.
        pub order_id: OrderId,
        /// Who ordered.
        pub customer_id: CustomerId,
        /// What was refunded.
        pub amount: Money,
    }

    impl Message for OrderRefundedV1 {
        const TYPE: &'static str = "orders.order_refunded.v1";
    }
}

#[cfg(test)]
mod tests {
    use super::orders::CancelReason;
    use super::payments::{DeclineReason, HoldReason};

    #[test]
    fn a_reason_travels_as_its_code_and_an_unknown_code_reads_as_other() {
        let json = serde_json::to_string(&DeclineReason::ReviewDeclined).expect("serializes");
        assert_eq!(json, "\"review_declined\"");
        assert_eq!(
            serde_json::from_str::<Vec<HoldReason>>("[\"account_age\", \"weather\"]")
                .expect("decodes"),
            vec![HoldReason::AccountAge, HoldReason::Other]
        );
        assert_eq!(
            CancelReason::parse("deadline_missed"),
            CancelReason::DeadlineMissed
        );
        assert_eq!(CancelReason::parse("weather"), CancelReason::Other);
        assert_eq!(CancelReason::OutOfStock.to_string(), "out_of_stock");
    }
}
