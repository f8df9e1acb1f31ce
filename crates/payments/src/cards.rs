//! Card details as a customer types them, and the simulator's test card numbers.
//!
//! A [`Card`] is parsed once and checked whole: digits only (spaces are dropped), 12 to
//! 19 of them, a valid Luhn check digit, an expiry month 1-12 that has not passed, and a
//! 3 or 4 digit security code. It lives only as long as the registration request: it
//! goes to the processor's vault, and payments keeps only the brand, the last four
//! digits and the expiry. Its `Debug` shows nothing more, so it cannot be logged whole
//! by accident.

use std::fmt;

use platform::problem::FieldError;

/// Approved by the simulator (any other valid number not listed here is too).
pub const APPROVED: &str = "4242424242424242";
/// Declined by the simulator with `card_declined`.
pub const DECLINED: &str = "4000000000000002";
/// Declined by the simulator with `insufficient_funds`.
pub const INSUFFICIENT_FUNDS: &str = "4000000000009995";
/// Fails transiently on the simulator's first `transient_failures` authorization
/// attempts per idempotency key, then is approved.
pub const TRANSIENT: &str = "4000000000000119";
/// Approved by the simulator after `slow_ms`.
pub const SLOW: &str = "4000000000000077";
/// Authorized by the simulator, but the authorization lapses at once: its capture and
/// its void are refused for good with `authorization_lapsed`.
pub const LAPSING: &str = "4000000000000267";
/// Authorized and captured by the simulator, but a refund is refused for good with
/// `card_closed`.
pub const REFUND_REFUSED: &str = "4000000000000358";

/// How far ahead an expiry may lie: cards are not issued for longer.
pub const MAX_YEARS_AHEAD: i32 = 20;

/// A card's network, told from its first digits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Brand {
    /// Visa: starts with 4.
    Visa,
    /// Mastercard: 51-55 or 2221-2720.
    Mastercard,
    /// American Express: 34 or 37.
    Amex,
    /// Discover: 6011, 644-649 or 65.
    Discover,
    /// Anything else.
    Other,
}

impl Brand {
    /// The brand's code: `visa`, `mastercard`, `amex`, `discover` or `other`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Visa => "visa",
            Self::Mastercard => "mastercard",
            Self::Amex => "amex",
            Self::Discover => "discover",
            Self::Other => "other",
        }
    }

    /// The brand of a card number (digits only).
    pub fn of(number: &str) -> Self {
        let prefix = |digits: usize| -> u32 {
            number
                .get(..digits)
                .and_then(|prefix| prefix.parse().ok())
                .unwrap_or(0)
        };
        match (prefix(1), prefix(2), prefix(3), prefix(4)) {
            (4, ..) => Self::Visa,
            (_, 34 | 37, ..) => Self::Amex,
            (_, 51..=55, ..) | (.., 2221..=2720) => Self::Mastercard,
            (_, 65, ..) | (_, _, 644..=649, _) | (.., 6011) => Self::Discover,
            _ => Self::Other,
        }
    }
}

/// A month of a year, to compare expiry dates with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct YearMonth {
    /// The year, e.g. 2027.
    pub year: i32,
    /// The month, 1-12.
    pub month: u32,
}

impl YearMonth {
    /// The current month, in UTC.
    pub fn now() -> Self {
        use chrono::Datelike as _;
        let today = chrono::Utc::now().date_naive();
        Self {
            year: today.year(),
            month: today.month(),
        }
    }
}

/// Card details that passed every check. Only the vault sees the number and code.
#[derive(Clone, PartialEq, Eq)]
pub struct Card {
    number: String,
    exp_month: u32,
    exp_year: i32,
    cvc: String,
}

impl Card {
    /// Checks the card as typed, on `today`'s date, and reports every invalid field.
    pub fn parse(
        number: &str,
        exp_month: i64,
        exp_year: i64,
        cvc: &str,
        today: YearMonth,
    ) -> Result<Self, Vec<FieldError>> {
        // The field (`number`, `exp_month`, `exp_year` or `cvc`) and what is wrong
        // with it; never the value.
        let mut invalid = Vec::new();
        let mut refuse = |field: &str, message: &str| {
            invalid.push(FieldError::new(field, message));
        };
        let digits: String = number.chars().filter(|c| *c != ' ').collect();
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            refuse("number", "must contain only digits (spaces are allowed)");
        } else if !(12..=19).contains(&digits.len()) {
            refuse("number", "must have 12 to 19 digits");
        } else if !luhn_valid(&digits) {
            refuse(
                "number",
                "is not a valid card number (its check digit is wrong)",
            );
        }
        let month = u32::try_from(exp_month)
            .ok()
            .filter(|month| (1..=12).contains(month));
        if month.is_none() {
            refuse("exp_month", "must be a month from 1 to 12");
        }
        let year = i32::try_from(exp_year)
            .ok()
            .filter(|year| (today.year..=today.year + MAX_YEARS_AHEAD).contains(year));
        if year.is_none() {
            refuse(
                "exp_year",
                &format!(
                    "must be a four-digit year from {} to {}",
                    today.year,
                    today.year + MAX_YEARS_AHEAD
                ),
            );
        }
        if let (Some(month), Some(year)) = (month, year)
            && (YearMonth { year, month }) < today
        {
            refuse("exp_month", "the card has expired");
        }
        if !(3..=4).contains(&cvc.len()) || !cvc.bytes().all(|b| b.is_ascii_digit()) {
            refuse("cvc", "must be 3 or 4 digits");
        }
        match (month, year) {
            (Some(exp_month), Some(exp_year)) if invalid.is_empty() => Ok(Self {
                number: digits,
                exp_month,
                exp_year,
                cvc: cvc.to_owned(),
            }),
            _ => Err(invalid),
        }
    }

    /// The full number, digits only: for the processor's vault, nothing else.
    pub fn number(&self) -> &str {
        &self.number
    }

    /// The security code: for the processor's vault, nothing else.
    pub fn cvc(&self) -> &str {
        &self.cvc
    }

    /// The card's network.
    pub fn brand(&self) -> Brand {
        Brand::of(&self.number)
    }

    /// The last four digits, which may be shown and stored.
    pub fn last4(&self) -> &str {
        &self.number[self.number.len() - 4..]
    }

    /// The expiry month, 1-12.
    pub fn exp_month(&self) -> u32 {
        self.exp_month
    }

    /// The expiry year.
    pub fn exp_year(&self) -> i32 {
        self.exp_year
    }
}

impl fmt::Debug for Card {
    /// Only what may be shown: the brand, last four digits and expiry.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Card")
            .field("brand", &self.brand())
            .field("last4", &self.last4())
            .field("exp_month", &self.exp_month)
            .field("exp_year", &self.exp_year)
            .finish_non_exhaustive()
    }
}

/// Whether `digits` (ASCII digits only) pass the Luhn check.
fn luhn_valid(digits: &str) -> bool {
    let sum: u32 = digits
        .bytes()
        .rev()
        .enumerate()
        .map(|(index, byte)| {
            let digit = u32::from(byte - b'0');
            if !index.is_multiple_of(2) {
                let doubled = digit * 2;
                if doubled > 9 { doubled - 9 } else { doubled }
            } else {
                digit
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TODAY: YearMonth = YearMonth {
        year: 2030,
        month: 6,
    };

    fn fields(result: Result<Card, Vec<FieldError>>) -> Vec<String> {
        result
            .err()
            .unwrap_or_default()
            .into_iter()
            .map(|invalid| invalid.field)
            .collect()
    }

    #[test]
    fn the_test_cards_are_valid_numbers() {
        for number in [APPROVED, DECLINED, INSUFFICIENT_FUNDS, TRANSIENT, SLOW] {
            assert!(luhn_valid(number), "{number}");
        }
        assert!(luhn_valid("378282246310005"), "an Amex test number");
        assert!(!luhn_valid("4242424242424241"));
    }

    #[test]
    fn a_valid_card_keeps_only_digits() {
        let card = Card::parse("4242 4242 4242 4242", 12, 2031, "123", TODAY).expect("valid");
        assert_eq!(card.number(), APPROVED);
        assert_eq!(card.last4(), "4242");
        assert_eq!(card.brand(), Brand::Visa);
        assert_eq!((card.exp_month(), card.exp_year()), (12, 2031));
        let shown = format!("{card:?}");
        assert!(
            !shown.contains(APPROVED) && !shown.contains("123"),
            "{shown}"
        );
    }

    #[test]
    fn every_invalid_field_is_named() {
        assert_eq!(
            fields(Card::parse("4242-4242-4242-4242", 12, 2031, "123", TODAY)),
            ["number"]
        );
        assert_eq!(
            fields(Card::parse("42424242424", 12, 2031, "123", TODAY)),
            ["number"]
        );
        assert_eq!(
            fields(Card::parse("42424242424242424242", 12, 2031, "123", TODAY)),
            ["number"]
        );
        assert_eq!(
            fields(Card::parse("4242424242424241", 12, 2031, "123", TODAY)),
            ["number"]
        );
        assert_eq!(fields(Card::parse("", 12, 2031, "123", TODAY)), ["number"]);
        assert_eq!(
            fields(Card::parse(APPROVED, 0, 2031, "123", TODAY)),
            ["exp_month"]
        );
        assert_eq!(
            fields(Card::parse(APPROVED, 13, 2031, "123", TODAY)),
            ["exp_month"]
        );
        assert_eq!(
            fields(Card::parse(APPROVED, 5, 2030, "123", TODAY)),
            ["exp_month"]
        );
        assert_eq!(
            fields(Card::parse(APPROVED, 12, 2029, "123", TODAY)),
            ["exp_year"]
        );
        assert_eq!(
            fields(Card::parse(APPROVED, 12, 31, "123", TODAY)),
            ["exp_year"]
        );
        assert_eq!(
            fields(Card::parse(APPROVED, 12, 2051, "123", TODAY)),
            ["exp_year"]
        );
        assert_eq!(
            fields(Card::parse(APPROVED, 12, 2031, "12", TODAY)),
            ["cvc"]
        );
        assert_eq!(
            fields(Card::parse(APPROVED, 12, 2031, "12345", TODAY)),
            ["cvc"]
        );
        assert_eq!(
            fields(Card::parse(APPROVED, 12, 2031, "12a", TODAY)),
            ["cvc"]
        );
        assert_eq!(
            fields(Card::parse("x", -1, 0, "", TODAY)),
            ["number", "exp_month", "exp_year", "cvc"]
        );
        assert!(
            Card::parse(APPROVED, 6, 2030, "1234", TODAY).is_ok(),
            "valid through its month"
        );
    }

    #[test]
    fn brands_follow_the_networks_prefixes() {
        assert_eq!(Brand::of("4000000000000002"), Brand::Visa);
        assert_eq!(Brand::of("5555555555554444"), Brand::Mastercard);
        assert_eq!(Brand::of("2223003122003222"), Brand::Mastercard);
        assert_eq!(Brand::of("378282246310005"), Brand::Amex);
        assert_eq!(Brand::of("6011111111111117"), Brand::Discover);
        assert_eq!(Brand::of("6445644564456445"), Brand::Discover);
        assert_eq!(Brand::of("3530111333300000"), Brand::Other);
    }
}
