//! Money: an integer amount of a currency's minor unit, and the currency.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::proto::common::v1 as proto;

/// An ISO 4217 currency code: three upper-case ASCII letters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Currency([u8; 3]);

/// A value that is not a currency code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an ISO 4217 currency code (three upper-case letters)")]
pub struct InvalidCurrency(pub String);

impl Currency {
    /// The euro.
    pub const EUR: Self = Self(*b"EUR");

    /// Parses a three-letter code such as `EUR`.
    pub fn parse(code: &str) -> Result<Self, InvalidCurrency> {
        match code.as_bytes() {
            &[a, b, c] if [a, b, c].iter().all(u8::is_ascii_uppercase) => Ok(Self([a, b, c])),
            _ => Err(InvalidCurrency(code.to_owned())),
        }
    }

    /// The code, e.g. `"EUR"`.
    pub fn as_str(&self) -> &str {
        // Only upper-case ASCII letters are ever stored.
        std::str::from_utf8(&self.0).unwrap_or("XXX")
    }
}

impl TryFrom<String> for Currency {
    type Error = InvalidCurrency;

    fn try_from(code: String) -> Result<Self, Self::Error> {
        Self::parse(&code)
    }
}

impl From<Currency> for String {
    fn from(currency: Currency) -> Self {
        currency.as_str().to_owned()
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An amount of money: integer minor units (cents) of one currency.
///
/// Arithmetic is checked and refuses to mix currencies, so a sum is either exact or an
/// error, never a silently wrapped or converted number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Money {
    /// The amount in minor units: `1450` with `EUR` is 14.50 euros.
    pub amount_minor: i64,
    /// ISO 4217 code.
    #[schema(value_type = String, example = "EUR")]
    pub currency: Currency,
}

/// Why a money operation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    /// The two amounts are in different currencies.
    #[error("cannot combine {0} with {1}")]
    CurrencyMismatch(Currency, Currency),
    /// The result does not fit in 64 bits of minor units.
    #[error("amount overflows")]
    Overflow,
    /// A wire value had no or an invalid currency.
    #[error(transparent)]
    Currency(#[from] InvalidCurrency),
}

impl Money {
    /// `amount_minor` minor units of `currency`.
    pub const fn new(amount_minor: i64, currency: Currency) -> Self {
        Self {
            amount_minor,
            currency,
        }
    }

    /// Zero of `currency`.
    pub const fn zero(currency: Currency) -> Self {
        Self::new(0, currency)
    }

    /// The sum, if both are in the same currency and it fits.
    pub fn checked_add(self, other: Self) -> Result<Self, MoneyError> {
        if self.currency != other.currency {
            return Err(MoneyError::CurrencyMismatch(self.currency, other.currency));
        }
        let amount = self
            .amount_minor
            .checked_add(other.amount_minor)
            .ok_or(MoneyError::Overflow)?;
        Ok(Self::new(amount, self.currency))
    }

    /// This amount times `quantity`, if it fits.
    pub fn checked_mul(self, quantity: i64) -> Result<Self, MoneyError> {
        let amount = self
            .amount_minor
            .checked_mul(quantity)
            .ok_or(MoneyError::Overflow)?;
        Ok(Self::new(amount, self.currency))
    }
}

impl fmt::Display for Money {
    /// `14.50 EUR`: two decimal places, which is right for the currencies Bazaar seeds.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.amount_minor < 0 { "-" } else { "" };
        let units = self.amount_minor.unsigned_abs();
        write!(
            f,
            "{sign}{}.{:02} {}",
            units / 100,
            units % 100,
            self.currency
        )
    }
}

impl From<Money> for proto::Money {
    fn from(money: Money) -> Self {
        Self {
            amount_minor: money.amount_minor,
            currency: money.currency.as_str().to_owned(),
        }
    }
}

impl TryFrom<proto::Money> for Money {
    type Error = MoneyError;

    fn try_from(money: proto::Money) -> Result<Self, Self::Error> {
        Ok(Self::new(
            money.amount_minor,
            Currency::parse(&money.currency)?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adds_exactly_and_refuses_mixed_currencies() {
        let eur = |amount| Money::new(amount, Currency::EUR);
        assert_eq!(eur(1450).checked_add(eur(50)), Ok(eur(1500)));
        let usd = Money::new(1, Currency::parse("USD").expect("valid"));
        assert!(matches!(
            eur(1).checked_add(usd),
            Err(MoneyError::CurrencyMismatch(..))
        ));
        assert_eq!(eur(i64::MAX).checked_add(eur(1)), Err(MoneyError::Overflow));
        assert_eq!(eur(1450).checked_mul(3), Ok(eur(4350)));
    }

    #[test]
    fn currencies_are_three_upper_case_letters() {
        assert!(Currency::parse("EUR").is_ok());
        assert!(Currency::parse("eur").is_err());
        assert!(Currency::parse("EURO").is_err());
        assert!(Currency::parse("").is_err());
    }

    #[test]
    fn displays_with_two_decimals() {
        assert_eq!(Money::new(1450, Currency::EUR).to_string(), "14.50 EUR");
        assert_eq!(Money::new(-5, Currency::EUR).to_string(), "-0.05 EUR");
    }

    #[test]
    fn survives_the_wire() {
        let money = Money::new(999, Currency::EUR);
        let json = serde_json::to_value(money).expect("serializes");
        assert_eq!(
            json,
            serde_json::json!({"amount_minor": 999, "currency": "EUR"})
        );
        assert_eq!(Money::try_from(proto::Money::from(money)), Ok(money));
    }
}
