//! The decision table of the saga's commands: what each command does to an order's
//! payment in each state, and how a command that moves nothing is answered. Pure: no
//! I/O, no clock; [`super::lifecycle`] carries the decisions out.
//!
//! | command | acts when | repeated or late |
//! |---|---|---|
//! | authorize | no payment yet ([`Action::Open`]); a tombstone ([`Action::VoidOvertaken`]) | its authorization's outcome |
//! | review | held ([`Action::Approve`] or [`Action::DeclineOnReview`]) | its authorization's outcome |
//! | capture | authorized ([`Action::Capture`]) | captured (also once refunded); failed again after a refused capture; else where it stands |
//! | void | no payment ([`Action::Tombstone`]); held or authorized ([`Action::Void`]) | voided when declined or voided; else where it stands |
//! | refund | captured ([`Action::Refund`]) | refunded; else where it stands |

use contracts::messaging::Envelope;
use contracts::messaging::Message as _;
use contracts::messaging::payments::DeclineReason;
use contracts::messaging::payments::{
    AuthorizePaymentV1, CapturePaymentV1, RefundPaymentV1, ReviewPaymentV1, VoidPaymentV1,
};
use contracts::{Money, OrderId};

use crate::domain::{Charge, Payment, Stage};

/// A command of the saga, decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Check for fraud and authorize.
    Authorize(AuthorizePaymentV1),
    /// An admin's decision on a held payment.
    Review(ReviewPaymentV1),
    /// Take the authorized amount.
    Capture(CapturePaymentV1),
    /// Cancel the authorization, or the payment before it starts.
    Void(VoidPaymentV1),
    /// Give the captured amount back.
    Refund(RefundPaymentV1),
}

impl Command {
    /// The command in `envelope`; `None` for a type this version does not know.
    pub fn decode(envelope: &Envelope) -> anyhow::Result<Option<Self>> {
        let kind = envelope.kind.as_str();
        let command = match kind {
            AuthorizePaymentV1::TYPE => Self::Authorize(envelope.decode()?),
            ReviewPaymentV1::TYPE => Self::Review(envelope.decode()?),
            CapturePaymentV1::TYPE => Self::Capture(envelope.decode()?),
            VoidPaymentV1::TYPE => Self::Void(envelope.decode()?),
            RefundPaymentV1::TYPE => Self::Refund(envelope.decode()?),
            _ => return Ok(None),
        };
        Ok(Some(command))
    }

    /// The order it is about.
    pub fn order_id(&self) -> OrderId {
        match self {
            Self::Authorize(command) => command.order_id,
            Self::Review(command) => command.order_id,
            Self::Capture(command) => command.order_id,
            Self::Void(command) => command.order_id,
            Self::Refund(command) => command.order_id,
        }
    }

    /// The command in words, for logs: `a capture`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Authorize(_) => "an authorization",
            Self::Review(_) => "a review",
            Self::Capture(_) => "a capture",
            Self::Void(_) => "a void",
            Self::Refund(_) => "a refund",
        }
    }
}

/// A held or authorized payment: what voiding, approving or capturing it needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Live<'a> {
    /// The payment.
    pub payment: &'a Payment,
    /// Who pays how much.
    pub charge: &'a Charge,
    /// The processor's authorization.
    pub authorization: &'a str,
}

/// A captured payment: what refunding it needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Taken<'a> {
    /// The payment.
    pub payment: &'a Payment,
    /// Who paid how much.
    pub charge: &'a Charge,
    /// The processor's authorization.
    pub authorization: &'a str,
    /// The processor's capture.
    pub capture: &'a str,
}

/// What a command does to the order's payment, with what doing it needs, taken from
/// the state it matched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action<'a> {
    /// Decide a new payment: the method, the fraud rules, the processor.
    Open(&'a AuthorizePaymentV1),
    /// A void overtook this authorization and left a tombstone: void whatever the
    /// processor authorized under the order's key, then answer as for the tombstone.
    VoidOvertaken(&'a AuthorizePaymentV1, &'a Payment),
    /// A reviewer approves the held payment.
    Approve(Live<'a>, &'a ReviewPaymentV1),
    /// A reviewer declines the held payment: its authorization is voided.
    DeclineOnReview(Live<'a>, &'a ReviewPaymentV1),
    /// Take the authorized amount.
    Capture(Live<'a>),
    /// Cancel the held or authorized payment's authorization.
    Void(Live<'a>),
    /// The order is cancelled before any authorization: leave a tombstone, so an
    /// authorization that comes later is voided.
    Tombstone,
    /// Give the captured amount back.
    Refund(Taken<'a>),
    /// Nothing moves: answer with [`reply`] (or, with no payment, ignore the command).
    Answer(Option<&'a Payment>),
}

/// What `command` does to `payment` (`None`: the order has none yet).
pub fn decide<'a>(command: &'a Command, payment: Option<&'a Payment>) -> Action<'a> {
    let live = |payment: &'a Payment, charge, authorization: &'a String| Live {
        payment,
        charge,
        authorization,
    };
    match (command, payment.map(|payment| (payment, &payment.stage))) {
        (Command::Authorize(authorize), None) => Action::Open(authorize),
        (Command::Authorize(authorize), Some((payment, Stage::Tombstone))) => {
            Action::VoidOvertaken(authorize, payment)
        }
        (
            Command::Review(review),
            Some((
                payment,
                Stage::Held {
                    charge,
                    authorization,
                },
            )),
        ) => {
            let held = live(payment, charge, authorization);
            if review.approve {
                Action::Approve(held, review)
            } else {
                Action::DeclineOnReview(held, review)
            }
        }
        (
            Command::Capture(_),
            Some((
                payment,
                Stage::Authorized {
                    charge,
                    authorization,
                },
            )),
        ) => Action::Capture(live(payment, charge, authorization)),
        (Command::Void(_), None) => Action::Tombstone,
        (
            Command::Void(_),
            Some((
                payment,
                Stage::Held {
                    charge,
                    authorization,
                }
                | Stage::Authorized {
                    charge,
                    authorization,
                },
            )),
        ) => Action::Void(live(payment, charge, authorization)),
        (
            Command::Refund(_),
            Some((
                payment,
                Stage::Captured {
                    charge,
                    authorization,
                    capture,
                },
            )),
        ) => Action::Refund(Taken {
            payment,
            charge,
            authorization,
            capture,
        }),
        (_, payment) => Action::Answer(payment.map(|(payment, _)| payment)),
    }
}

/// How a command that moved nothing is answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reply {
    /// The outcome of the payment's authorization: held, authorized (also once
    /// captured or refunded), declined, or declined `voided`.
    Authorization,
    /// Captured, this amount.
    Captured(Money),
    /// The capture failed again, for the reason the processor refused it before.
    CaptureFailed(DeclineReason),
    /// Voided.
    Voided,
    /// Refunded, this amount.
    Refunded(Money),
    /// The command does not apply to the payment's state: where it stands, with a
    /// warning (a captured payment is refunded, not voided; a capture or refund of a
    /// payment not in its state moves nothing).
    Standing,
}

/// The answer to `command`, which moved nothing of `payment`.
pub fn reply(command: &Command, payment: &Payment) -> Reply {
    match (command, &payment.stage) {
        (Command::Authorize(_) | Command::Review(_), _) => Reply::Authorization,
        (Command::Capture(_), Stage::Captured { charge, .. } | Stage::Refunded { charge, .. }) => {
            Reply::Captured(charge.amount)
        }
        // Voided because the processor refused the capture: the same failure again.
        (
            Command::Capture(_),
            Stage::Voided {
                capture_refused: Some(reason),
                ..
            },
        ) => Reply::CaptureFailed(*reason),
        (Command::Void(_), Stage::Declined { .. } | Stage::Voided { .. } | Stage::Tombstone) => {
            Reply::Voided
        }
        (Command::Refund(_), Stage::Refunded { charge, .. }) => Reply::Refunded(charge.amount),
        _ => Reply::Standing,
    }
}

#[cfg(test)]
mod tests {
    use contracts::Currency;

    use super::*;
    use crate::domain::State;

    fn order() -> OrderId {
        OrderId::parse("01900000-0000-7000-8000-000000000001").expect("a UUID")
    }

    fn charge() -> Charge {
        Charge {
            customer_id: "ada".to_owned(),
            amount: Money::new(1_450, Currency::EUR),
            payment_method: Some("pm_1".to_owned()),
        }
    }

    /// A payment in `state`, with what the processor gave it there.
    fn payment(state: State) -> Payment {
        let (charge, authorization) = (charge(), "auth_1".to_owned());
        let stage = match state {
            State::Held => Stage::Held {
                charge,
                authorization,
            },
            State::Authorized => Stage::Authorized {
                charge,
                authorization,
            },
            State::Declined => Stage::Declined {
                charge,
                reason: DeclineReason::CardDeclined,
            },
            State::Captured => Stage::Captured {
                charge,
                authorization,
                capture: "cap_1".to_owned(),
            },
            State::Voided => Stage::Voided {
                charge,
                capture_refused: None,
            },
            State::Refunded => Stage::Refunded {
                charge,
                authorization,
                capture: "cap_1".to_owned(),
                refund: "ref_1".to_owned(),
            },
        };
        Payment::new(order(), stage, 0)
    }

    fn tombstone() -> Payment {
        Payment::new(order(), Stage::Tombstone, 0)
    }

    fn commands() -> [(&'static str, Command); 6] {
        let order_id = order();
        [
            (
                "authorize",
                Command::Authorize(AuthorizePaymentV1 {
                    order_id,
                    customer_id: contracts::UserId::parse("01900000-0000-7000-8000-0000000000ad")
                        .expect("a UUID"),
                    payment_method: "pm_1".to_owned(),
                    amount: Money::new(1_450, Currency::EUR),
                }),
            ),
            (
                "approve",
                Command::Review(ReviewPaymentV1 {
                    order_id,
                    approve: true,
                    reviewer: "root".to_owned(),
                }),
            ),
            (
                "decline",
                Command::Review(ReviewPaymentV1 {
                    order_id,
                    approve: false,
                    reviewer: "root".to_owned(),
                }),
            ),
            ("capture", Command::Capture(CapturePaymentV1 { order_id })),
            ("void", Command::Void(VoidPaymentV1 { order_id })),
            ("refund", Command::Refund(RefundPaymentV1 { order_id })),
        ]
    }

    /// The action's name, for a table that reads as the module's.
    fn act(action: Action<'_>) -> &'static str {
        match action {
            Action::Open(_) => "open",
            Action::VoidOvertaken(..) => "void overtaken",
            Action::Approve(..) => "approve",
            Action::DeclineOnReview(..) => "decline on review",
            Action::Capture(_) => "capture",
            Action::Void(_) => "void",
            Action::Tombstone => "tombstone",
            Action::Refund(_) => "refund",
            Action::Answer(Some(_)) => "answer",
            Action::Answer(None) => "ignore",
        }
    }

    /// Every command against every standing, row by row: the whole table.
    #[test]
    fn every_command_in_every_state_does_what_the_table_says() {
        let standings: [(&str, Option<Payment>); 8] = [
            ("none", None),
            ("tombstone", Some(tombstone())),
            ("held", Some(payment(State::Held))),
            ("authorized", Some(payment(State::Authorized))),
            ("declined", Some(payment(State::Declined))),
            ("captured", Some(payment(State::Captured))),
            ("voided", Some(payment(State::Voided))),
            ("refunded", Some(payment(State::Refunded))),
        ];
        #[rustfmt::skip]
        let expected = [
            //            none       tombstone         held                 authorized answer...
            ("authorize", ["open",   "void overtaken", "answer",            "answer",  "answer", "answer",  "answer", "answer"]),
            ("approve",   ["ignore", "answer",         "approve",           "answer",  "answer", "answer",  "answer", "answer"]),
            ("decline",   ["ignore", "answer",         "decline on review", "answer",  "answer", "answer",  "answer", "answer"]),
            ("capture",   ["ignore", "answer",         "answer",            "capture", "answer", "answer",  "answer", "answer"]),
            ("void",      ["tombstone", "answer",      "void",              "void",    "answer", "answer",  "answer", "answer"]),
            ("refund",    ["ignore", "answer",         "answer",            "answer",  "answer", "refund",  "answer", "answer"]),
        ];
        for ((name, command), (row, actions)) in commands().iter().zip(expected) {
            assert_eq!(*name, row);
            for ((standing, payment), wanted) in standings.iter().zip(actions) {
                assert_eq!(
                    act(decide(command, payment.as_ref())),
                    wanted,
                    "{name} on {standing}"
                );
            }
        }
    }

    #[test]
    fn a_command_that_moved_nothing_is_answered_as_the_table_says() {
        let refused_capture = Payment::new(
            order(),
            Stage::Voided {
                charge: charge(),
                capture_refused: Some(DeclineReason::AuthorizationLapsed),
            },
            0,
        );
        let states = [
            ("held", payment(State::Held)),
            ("authorized", payment(State::Authorized)),
            ("declined", payment(State::Declined)),
            ("captured", payment(State::Captured)),
            ("voided", payment(State::Voided)),
            ("refunded", payment(State::Refunded)),
            ("capture refused", refused_capture),
        ];
        let (amount, lapsed) = (charge().amount, DeclineReason::AuthorizationLapsed);
        let (captured, failed, refunded) = (
            Reply::Captured(amount),
            Reply::CaptureFailed(lapsed),
            Reply::Refunded(amount),
        );
        use Reply::{Authorization as Auth, Standing, Voided};
        #[rustfmt::skip]
        let expected = [
            //            held      authorized declined  captured  voided    refunded  capture refused
            ("authorize", [Auth,     Auth,      Auth,     Auth,     Auth,     Auth,     Auth]),
            ("approve",   [Auth,     Auth,      Auth,     Auth,     Auth,     Auth,     Auth]),
            ("decline",   [Auth,     Auth,      Auth,     Auth,     Auth,     Auth,     Auth]),
            ("capture",   [Standing, Standing,  Standing, captured, Standing, captured, failed]),
            ("void",      [Standing, Standing,  Voided,   Standing, Voided,   Standing, Voided]),
            ("refund",    [Standing, Standing,  Standing, Standing, Standing, refunded, Standing]),
        ];
        for ((name, command), (row, replies)) in commands().iter().zip(expected) {
            assert_eq!(*name, row);
            for ((state, payment), wanted) in states.iter().zip(replies) {
                assert_eq!(reply(command, payment), wanted, "{name} on {state}");
            }
        }
    }
}
