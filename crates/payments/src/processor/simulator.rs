//! A simulated card network, like the sandboxes payment providers offer.
//!
//! Its vault does not keep numbers: it decides once, at tokenization, how a card will
//! behave (see [`crate::cards`] for the test numbers) and writes that into the opaque
//! reference it returns, so a reference alone tells the simulator what to answer, even
//! after a restart. Results are remembered per idempotency key in memory (the newest
//! keys only), which is what makes a repeated call return the same authorization.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use contracts::Money;
use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};

use super::{Authorization, Capture, CardProcessor, CardRef, DeclineCode, ProcessorError, Refund};
use crate::cards::{self, Card};

/// How the simulator's slow and flaky test cards behave.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimulatorConfig {
    /// How long the slow test card takes to be authorized, in milliseconds.
    pub slow_ms: u64,
    /// How many authorization attempts per idempotency key fail transiently for the
    /// flaky test card before it is approved.
    pub transient_failures: u32,
}

impl Default for SimulatorConfig {
    fn default() -> Self {
        Self {
            slow_ms: 1500,
            transient_failures: 2,
        }
    }
}

/// The simulated processor.
#[derive(Debug)]
pub struct Simulator {
    config: SimulatorConfig,
    memory: Mutex<Memory>,
}

/// What the simulator remembers, per idempotency key and operation.
#[derive(Debug, Default)]
struct Memory {
    authorizations: Recent<Authorizing>,
    captures: Recent<Option<Capture>>,
    refunds: Recent<Option<Refund>>,
    voids: Recent<Option<String>>,
}

/// The attempts and, once final, the result of one authorization key.
#[derive(Debug, Default)]
struct Authorizing {
    attempts: u32,
    result: Option<Result<Authorization, ProcessorError>>,
}

/// How many keys of each operation the simulator remembers, which keeps a long-running
/// shop's memory bounded (some tens of megabytes at most). At the shop's target of 300
/// payments a second that is over five minutes of history, about as long as payments
/// retries one command; a retry later than that gets a fresh authorization, which only
/// a real processor's money would mind.
const REMEMBERED_KEYS: usize = 100_000;

/// Values by idempotency key, the oldest forgotten beyond [`REMEMBERED_KEYS`].
#[derive(Debug)]
struct Recent<V> {
    values: HashMap<String, V>,
    order: VecDeque<String>,
}

impl<V> Default for Recent<V> {
    fn default() -> Self {
        Self {
            values: HashMap::new(),
            order: VecDeque::new(),
        }
    }
}

impl<V: Default> Recent<V> {
    /// The value of `key`, created empty if it is new.
    fn entry(&mut self, key: &str) -> &mut V {
        if !self.values.contains_key(key) {
            if self.order.len() >= REMEMBERED_KEYS
                && let Some(oldest) = self.order.pop_front()
            {
                self.values.remove(&oldest);
            }
            self.order.push_back(key.to_owned());
        }
        self.values.entry(key.to_owned()).or_default()
    }

    fn get(&self, key: &str) -> Option<&V> {
        self.values.get(key)
    }
}

/// What a card does, as written into its reference.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Behaviour {
    Approve,
    Decline(DeclineCode),
    Transient,
    Slow,
    /// Authorized, but the authorization lapses: capture and void are refused.
    Lapsing,
    /// Authorized and captured, but refunds are refused.
    RefundRefused,
}

impl Behaviour {
    fn of(number: &str) -> Self {
        match number {
            cards::DECLINED => Self::Decline(DeclineCode::CardDeclined),
            cards::INSUFFICIENT_FUNDS => Self::Decline(DeclineCode::InsufficientFunds),
            cards::TRANSIENT => Self::Transient,
            cards::SLOW => Self::Slow,
            cards::LAPSING => Self::Lapsing,
            cards::REFUND_REFUSED => Self::RefundRefused,
            _ => Self::Approve,
        }
    }

    fn tag(self) -> &'static str {
        match self {
            Self::Approve => "approve",
            Self::Decline(DeclineCode::InsufficientFunds) => "nofunds",
            Self::Decline(_) => "declined",
            Self::Transient => "flaky",
            Self::Slow => "slow",
            Self::Lapsing => "lapsing",
            Self::RefundRefused => "norefund",
        }
    }

    /// The behaviour written into a reference; one the simulator did not issue is
    /// declined, as a real network refuses a card it does not know.
    fn from_reference(reference: &CardRef) -> Self {
        Self::from_id("simcard", reference.as_str())
    }

    /// The behaviour written into an id the simulator issued with `prefix` (a card
    /// reference, an authorization, a capture): `<prefix>_<tag>_<unique>`.
    fn from_id(prefix: &str, id: &str) -> Self {
        let tag = id
            .strip_prefix(prefix)
            .and_then(|rest| rest.strip_prefix('_'))
            .and_then(|rest| rest.split('_').next());
        match tag {
            Some("approve") => Self::Approve,
            Some("nofunds") => Self::Decline(DeclineCode::InsufficientFunds),
            Some("flaky") => Self::Transient,
            Some("slow") => Self::Slow,
            Some("lapsing") => Self::Lapsing,
            Some("norefund") => Self::RefundRefused,
            _ => Self::Decline(DeclineCode::CardDeclined),
        }
    }
}

impl Simulator {
    /// A simulator behaving as `config` says.
    pub fn new(config: SimulatorConfig) -> Self {
        Self {
            config,
            memory: Mutex::new(Memory::default()),
        }
    }

    /// How many times authorization was asked for under `idempotency_key`; for tests
    /// and demonstrations of retries.
    pub fn authorize_attempts(&self, idempotency_key: &str) -> u32 {
        self.remember(|memory| {
            memory
                .authorizations
                .get(idempotency_key)
                .map_or(0, |authorizing| authorizing.attempts)
        })
    }

    /// Whether a void was asked for under `idempotency_key`; for tests.
    pub fn was_voided(&self, idempotency_key: &str) -> bool {
        self.remember(|memory| memory.voids.entry(idempotency_key).is_some())
    }

    fn remember<T>(&self, f: impl FnOnce(&mut Memory) -> T) -> T {
        // A panic elsewhere while holding the lock leaves the maps usable: each update
        // is a single insert.
        let mut memory = self
            .memory
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut memory)
    }
}

/// A new id of the kind `prefix` that carries `behaviour`, so that later operations on
/// it behave as the card did.
fn new_id(prefix: &str, behaviour: Behaviour) -> String {
    format!(
        "{prefix}_{}_{}",
        behaviour.tag(),
        uuid::Uuid::new_v4().simple()
    )
}

impl CardProcessor for Simulator {
    fn tokenize<'a>(&'a self, card: &'a Card) -> BoxFuture<'a, Result<CardRef, ProcessorError>> {
        let behaviour = Behaviour::of(card.number());
        Box::pin(async move { Ok(CardRef::new(new_id("simcard", behaviour))) })
    }

    fn authorize<'a>(
        &'a self,
        idempotency_key: &'a str,
        card: &'a CardRef,
        amount: Money,
    ) -> BoxFuture<'a, Result<Authorization, ProcessorError>> {
        Box::pin(async move {
            let (attempt, known) = self.remember(|memory| {
                let authorizing = memory.authorizations.entry(idempotency_key);
                authorizing.attempts = authorizing.attempts.saturating_add(1);
                (authorizing.attempts, authorizing.result.clone())
            });
            if let Some(known) = known {
                return known;
            }
            let behaviour = Behaviour::from_reference(card);
            let result = match behaviour {
                _ if amount.amount_minor <= 0 => Err(ProcessorError::Declined {
                    code: DeclineCode::CardDeclined,
                }),
                Behaviour::Decline(code) => Err(ProcessorError::Declined { code }),
                Behaviour::Transient if attempt <= self.config.transient_failures => {
                    // Not remembered: the next attempt may succeed.
                    return Err(ProcessorError::Transient(format!(
                        "simulated network failure (attempt {attempt})"
                    )));
                }
                Behaviour::Slow => {
                    tokio::time::sleep(Duration::from_millis(self.config.slow_ms)).await;
                    Ok(Authorization {
                        id: new_id("auth", behaviour),
                    })
                }
                Behaviour::Approve
                | Behaviour::Transient
                | Behaviour::Lapsing
                | Behaviour::RefundRefused => Ok(Authorization {
                    id: new_id("auth", behaviour),
                }),
            };
            // Of two concurrent first calls, the one remembered first is the answer.
            self.remember(|memory| {
                memory
                    .authorizations
                    .entry(idempotency_key)
                    .result
                    .get_or_insert(result)
                    .clone()
            })
        })
    }

    fn capture<'a>(
        &'a self,
        idempotency_key: &'a str,
        authorization: &'a str,
        _amount: Money,
    ) -> BoxFuture<'a, Result<Capture, ProcessorError>> {
        Box::pin(async move {
            let behaviour = Behaviour::from_id("auth", authorization);
            if behaviour == Behaviour::Lapsing {
                return Err(ProcessorError::Declined {
                    code: DeclineCode::AuthorizationLapsed,
                });
            }
            Ok(self.remember(|memory| {
                memory
                    .captures
                    .entry(idempotency_key)
                    .get_or_insert_with(|| Capture {
                        id: new_id("cap", behaviour),
                    })
                    .clone()
            }))
        })
    }

    fn void<'a>(
        &'a self,
        idempotency_key: &'a str,
        authorization: &'a str,
    ) -> BoxFuture<'a, Result<(), ProcessorError>> {
        // Voiding twice is voiding once.
        Box::pin(async move {
            if Behaviour::from_id("auth", authorization) == Behaviour::Lapsing {
                return Err(ProcessorError::Declined {
                    code: DeclineCode::AuthorizationLapsed,
                });
            }
            self.remember(|memory| {
                *memory.voids.entry(idempotency_key) = Some(authorization.to_owned());
            });
            Ok(())
        })
    }

    fn refund<'a>(
        &'a self,
        idempotency_key: &'a str,
        capture: &'a str,
        _amount: Money,
    ) -> BoxFuture<'a, Result<Refund, ProcessorError>> {
        Box::pin(async move {
            let behaviour = Behaviour::from_id("cap", capture);
            if behaviour == Behaviour::RefundRefused {
                return Err(ProcessorError::Declined {
                    code: DeclineCode::CardClosed,
                });
            }
            Ok(self.remember(|memory| {
                memory
                    .refunds
                    .entry(idempotency_key)
                    .get_or_insert_with(|| Refund {
                        id: new_id("ref", behaviour),
                    })
                    .clone()
            }))
        })
    }
}

#[cfg(test)]
mod tests {
    use contracts::Currency;

    use super::*;
    use crate::cards::YearMonth;

    fn eur(amount: i64) -> Money {
        Money::new(amount, Currency::EUR)
    }

    async fn reference(simulator: &Simulator, number: &str) -> CardRef {
        let today = YearMonth::now();
        let card = Card::parse(number, 12, i64::from(today.year + 1), "123", today).expect("valid");
        let reference = simulator.tokenize(&card).await.expect("tokenized");
        assert!(!reference.as_str().contains(number));
        reference
    }

    #[tokio::test]
    async fn test_cards_answer_as_documented() {
        let simulator = Simulator::new(SimulatorConfig {
            slow_ms: 1,
            transient_failures: 2,
        });
        let approved = reference(&simulator, cards::APPROVED).await;
        let first = simulator.authorize("o-1", &approved, eur(100)).await;
        let again = simulator.authorize("o-1", &approved, eur(100)).await;
        assert!(first.is_ok());
        assert_eq!(first, again, "same key, same authorization");
        let other = simulator.authorize("o-2", &approved, eur(100)).await;
        assert_ne!(first, other);

        let declined = reference(&simulator, cards::DECLINED).await;
        assert_eq!(
            simulator.authorize("o-3", &declined, eur(100)).await,
            Err(ProcessorError::Declined {
                code: DeclineCode::CardDeclined
            })
        );
        let broke = reference(&simulator, cards::INSUFFICIENT_FUNDS).await;
        assert_eq!(
            simulator.authorize("o-4", &broke, eur(100)).await,
            Err(ProcessorError::Declined {
                code: DeclineCode::InsufficientFunds
            })
        );
        let slow = reference(&simulator, cards::SLOW).await;
        assert!(simulator.authorize("o-5", &slow, eur(100)).await.is_ok());
        let unknown = CardRef::new("somebody-elses-card");
        assert!(
            simulator
                .authorize("o-6", &unknown, eur(100))
                .await
                .is_err()
        );
        let lapsing = reference(&simulator, cards::LAPSING).await;
        let lapsed = simulator
            .authorize("o-7", &lapsing, eur(100))
            .await
            .expect("authorized");
        let refused = Err(ProcessorError::Declined {
            code: DeclineCode::AuthorizationLapsed,
        });
        assert_eq!(
            simulator.capture("o-7/capture", &lapsed.id, eur(100)).await,
            refused.clone().map(|()| Capture { id: String::new() })
        );
        assert_eq!(simulator.void("o-7/void", &lapsed.id).await, refused);
        let closing = reference(&simulator, cards::REFUND_REFUSED).await;
        let authorized = simulator
            .authorize("o-8", &closing, eur(100))
            .await
            .expect("authorized");
        let captured = simulator
            .capture("o-8/capture", &authorized.id, eur(100))
            .await
            .expect("captured");
        assert_eq!(
            simulator.refund("o-8/refund", &captured.id, eur(100)).await,
            Err(ProcessorError::Declined {
                code: DeclineCode::CardClosed
            })
        );
    }

    #[tokio::test]
    async fn the_flaky_card_fails_transiently_then_approves_per_key() {
        let simulator = Simulator::new(SimulatorConfig {
            slow_ms: 1,
            transient_failures: 2,
        });
        let flaky = reference(&simulator, cards::TRANSIENT).await;
        for attempt in 1..=2 {
            assert!(
                matches!(
                    simulator.authorize("o-1", &flaky, eur(100)).await,
                    Err(ProcessorError::Transient(_))
                ),
                "attempt {attempt}"
            );
        }
        let approved = simulator.authorize("o-1", &flaky, eur(100)).await;
        assert!(approved.is_ok());
        assert_eq!(simulator.authorize("o-1", &flaky, eur(100)).await, approved);
        assert_eq!(simulator.authorize_attempts("o-1"), 4);
        assert!(
            simulator.authorize("o-2", &flaky, eur(100)).await.is_err(),
            "a new key starts over"
        );
    }

    #[test]
    fn only_the_newest_keys_are_remembered() {
        let mut recent: Recent<u32> = Recent::default();
        for key in 0..=REMEMBERED_KEYS {
            *recent.entry(&key.to_string()) += 1;
        }
        assert_eq!(recent.values.len(), REMEMBERED_KEYS);
        assert!(recent.get("0").is_none(), "the oldest was forgotten");
        assert_eq!(recent.get(&REMEMBERED_KEYS.to_string()), Some(&1));
        *recent.entry("1") += 1;
        assert_eq!(recent.get("1"), Some(&2), "a known key is not added again");
        assert_eq!(recent.order.len(), REMEMBERED_KEYS);
    }

    #[tokio::test]
    async fn captures_and_refunds_are_idempotent() {
        let simulator = Simulator::new(SimulatorConfig::default());
        let first = simulator.capture("o-1:capture", "auth_1", eur(5)).await;
        assert_eq!(
            first,
            simulator.capture("o-1:capture", "auth_1", eur(5)).await
        );
        let refund = simulator.refund("o-1:refund", "cap_1", eur(5)).await;
        assert_eq!(
            refund,
            simulator.refund("o-1:refund", "cap_1", eur(5)).await
        );
        assert!(simulator.void("o-1:void", "auth_1").await.is_ok());
    }
}
