//! The fraud rules: a pure judgement of one payment, made before the card is asked.
//!
//! A payment is declined outright when its amount is beyond belief, and otherwise held
//! for an admin's review when any rule finds it suspicious: a large amount, a customer
//! paying unusually often, or a large amount from an account that is only hours old.
//! A held payment is still authorized on the card, so approving it later needs no
//! second trip to the processor.

use serde::{Deserialize, Serialize};

/// The thresholds of the rules. Amounts are in minor units of whatever currency the
/// payment is in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FraudRules {
    /// Payments above this are held for review (`amount`).
    pub hold_above_minor: i64,
    /// Payments above this are declined without asking the card (`fraud`).
    pub decline_above_minor: i64,
    /// The window, in seconds, in which a customer's payments are counted.
    pub velocity_window_secs: u64,
    /// How many payments a customer may start within the window, whatever became of
    /// them (declines count: trying card after card is what the rule is for); any beyond
    /// are held (`velocity`).
    pub velocity_hold_after: u64,
    /// Accounts younger than this, in seconds, are new.
    pub new_account_secs: u64,
    /// Payments of a new account above this are held (`account_age`).
    pub new_account_hold_above_minor: i64,
}

impl Default for FraudRules {
    fn default() -> Self {
        Self {
            hold_above_minor: 100_000,
            decline_above_minor: 1_000_000,
            velocity_window_secs: 3600,
            velocity_hold_after: 5,
            new_account_secs: 86_400,
            new_account_hold_above_minor: 50_000,
        }
    }
}

impl FraudRules {
    /// Whether the rules make sense: no negative threshold (which would hold or decline
    /// every payment), and declining starts at or above holding. The error names the
    /// setting.
    pub fn check(&self) -> Result<(), String> {
        for (name, value) in [
            ("hold_above_minor", self.hold_above_minor),
            ("decline_above_minor", self.decline_above_minor),
            (
                "new_account_hold_above_minor",
                self.new_account_hold_above_minor,
            ),
        ] {
            if value < 0 {
                return Err(format!(
                    "payments.fraud.{name} must not be negative, not {value}"
                ));
            }
        }
        if self.decline_above_minor < self.hold_above_minor {
            return Err(format!(
                "payments.fraud.decline_above_minor ({}) must not be below hold_above_minor ({})",
                self.decline_above_minor, self.hold_above_minor
            ));
        }
        Ok(())
    }
}

/// What the rules know about one payment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Facts {
    /// The amount, in minor units.
    pub amount_minor: i64,
    /// The customer's earlier payments within the velocity window.
    pub recent_payments: u64,
    /// How old the customer's account is, in milliseconds; `None` when payments never
    /// heard of the account, which then counts as new.
    pub account_age_ms: Option<i64>,
}

pub use contracts::messaging::payments::HoldReason as Reason;

/// The rules' judgement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing suspicious.
    Approve,
    /// Authorize, but let an admin decide; the reasons, in a stable order, never empty.
    Hold(Vec<Reason>),
    /// Do not even ask the card.
    Decline,
}

/// Judges one payment.
pub fn assess(rules: &FraudRules, facts: &Facts) -> Verdict {
    if facts.amount_minor > rules.decline_above_minor {
        return Verdict::Decline;
    }
    let mut reasons = Vec::new();
    if facts.amount_minor > rules.hold_above_minor {
        reasons.push(Reason::Amount);
    }
    if facts.recent_payments >= rules.velocity_hold_after {
        reasons.push(Reason::Velocity);
    }
    let new_account_ms =
        i64::try_from(rules.new_account_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
    let is_new = facts.account_age_ms.is_none_or(|age| age < new_account_ms);
    if is_new && facts.amount_minor > rules.new_account_hold_above_minor {
        reasons.push(Reason::AccountAge);
    }
    if reasons.is_empty() {
        Verdict::Approve
    } else {
        Verdict::Hold(reasons)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_that_would_stop_every_payment_are_refused() {
        assert_eq!(FraudRules::default().check(), Ok(()));
        let negative = FraudRules {
            new_account_hold_above_minor: -1,
            ..FraudRules::default()
        };
        assert!(
            negative
                .check()
                .is_err_and(|reason| reason.contains("new_account_hold_above_minor"))
        );
        let inverted = FraudRules {
            decline_above_minor: 10,
            hold_above_minor: 100,
            ..FraudRules::default()
        };
        assert!(inverted.check().is_err());
    }

    const DAY_MS: i64 = 86_400_000;

    fn facts(amount_minor: i64) -> Facts {
        Facts {
            amount_minor,
            recent_payments: 0,
            account_age_ms: Some(30 * DAY_MS),
        }
    }

    #[test]
    fn ordinary_payments_pass() {
        let rules = FraudRules::default();
        assert_eq!(assess(&rules, &facts(2_500)), Verdict::Approve);
        assert_eq!(
            assess(&rules, &facts(100_000)),
            Verdict::Approve,
            "the threshold itself is allowed"
        );
    }

    #[test]
    fn large_amounts_are_held_and_huge_ones_declined() {
        let rules = FraudRules::default();
        assert_eq!(
            assess(&rules, &facts(100_001)),
            Verdict::Hold(vec![Reason::Amount])
        );
        assert_eq!(
            assess(&rules, &facts(1_000_000)),
            Verdict::Hold(vec![Reason::Amount])
        );
        assert_eq!(assess(&rules, &facts(1_000_001)), Verdict::Decline);
        let hurried = Facts {
            recent_payments: 99,
            account_age_ms: None,
            ..facts(5_000_000)
        };
        assert_eq!(
            assess(&rules, &hurried),
            Verdict::Decline,
            "a decline wins over any hold"
        );
    }

    #[test]
    fn paying_too_often_is_held_beyond_the_allowance() {
        let rules = FraudRules::default();
        let within = Facts {
            recent_payments: 4,
            ..facts(1_000)
        };
        assert_eq!(
            assess(&rules, &within),
            Verdict::Approve,
            "the fifth passes"
        );
        let beyond = Facts {
            recent_payments: 5,
            ..facts(1_000)
        };
        assert_eq!(
            assess(&rules, &beyond),
            Verdict::Hold(vec![Reason::Velocity]),
            "the sixth is held"
        );
    }

    #[test]
    fn new_and_unknown_accounts_are_held_above_their_limit() {
        let rules = FraudRules::default();
        let young = Facts {
            account_age_ms: Some(DAY_MS - 1),
            ..facts(50_001)
        };
        assert_eq!(
            assess(&rules, &young),
            Verdict::Hold(vec![Reason::AccountAge])
        );
        let unknown = Facts {
            account_age_ms: None,
            ..facts(50_001)
        };
        assert_eq!(
            assess(&rules, &unknown),
            Verdict::Hold(vec![Reason::AccountAge])
        );
        let small = Facts {
            account_age_ms: None,
            ..facts(50_000)
        };
        assert_eq!(assess(&rules, &small), Verdict::Approve);
        let a_day_old = Facts {
            account_age_ms: Some(DAY_MS),
            ..facts(50_001)
        };
        assert_eq!(assess(&rules, &a_day_old), Verdict::Approve);
    }

    #[test]
    fn every_reason_is_reported() {
        let rules = FraudRules::default();
        let all = Facts {
            amount_minor: 200_000,
            recent_payments: 10,
            account_age_ms: None,
        };
        assert_eq!(
            assess(&rules, &all),
            Verdict::Hold(vec![Reason::Amount, Reason::Velocity, Reason::AccountAge])
        );
    }
}
