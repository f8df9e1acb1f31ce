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

    /// How many decimal digits its minor unit has (ISO 4217): 2 for the euro, 0 for
    /// the yen, 3 for the dinar; 2 for codes not listed here.
    pub fn minor_digits(&self) -> u32 {
        match self.as_str() {
            "BIF" | "CLP" | "DJF" | "GNF" | "ISK" | "JPY" | "KMF" | "KRW" | "PYG" | "RWF"
            | "UGX" | "UYI" | "VND" | "VUV" | "XAF" | "XOF" | "XPF" => 0,
            "BHD" | "IQD" | "JOD" | "KWD" | "LYD" | "OMR" | "TND" => 3,
            "CLF" | "UYW" => 4,
            _ => 2,
        }
    }

    /// The sign shoppers know it by (`€`, `$`, `£`, `¥`), if it has a common one.
    pub fn symbol(&self) -> Option<&'static str> {
        Some(match self.as_str() {
            "EUR" => "€",
            "USD" => "$",
            "GBP" => "£",
            "JPY" => "¥",
            _ => return None,
        })
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

    /// The amount in major units with thousands grouped and the currency's own number
    /// of decimals, without the currency: `1,234.50` (EUR), `1,500` (JPY).
    pub fn major(&self) -> String {
        let decimals = self.currency.minor_digits();
        let sign = if self.amount_minor < 0 { "-" } else { "" };
        let minor = self.amount_minor.unsigned_abs();
        let scale = 10_u64.pow(decimals);
        let whole = minor / scale;
        let digits = whole.to_string();
        let mut grouped = String::with_capacity(digits.len() + digits.len() / 3);
        for (index, digit) in digits.chars().enumerate() {
            if index > 0 && (digits.len() - index).is_multiple_of(3) {
                grouped.push(',');
            }
            grouped.push(digit);
        }
        if decimals == 0 {
            format!("{sign}{grouped}")
        } else {
            let width = decimals as usize;
            format!("{sign}{grouped}.{:0width$}", minor % scale)
        }
    }

    /// As a price tag: `€14.50`, `¥1,500`, or `12.345 KWD` for a currency without a
    /// common sign.
    pub fn price_tag(&self) -> String {
        match self.currency.symbol() {
            Some(symbol) if self.amount_minor < 0 => {
                format!("-{symbol}{}", self.major().trim_start_matches('-'))
            }
            Some(symbol) => format!("{symbol}{}", self.major()),
            None => self.to_string(),
        }
    }

    /// Parses an amount typed in major units (`14.5`, `14.50`, `1,500`) of `currency`,
    /// refusing more decimals than the currency has, and negative or absurd amounts.
    pub fn parse_major(text: &str, currency: Currency) -> Result<Self, String> {
        let text: String = text.trim().chars().filter(|c| *c != ',').collect();
        let decimals = currency.minor_digits();
        let (whole, fraction) = text.split_once('.').unwrap_or((&text, ""));
        let digits = |part: &str| part.bytes().all(|byte| byte.is_ascii_digit());
        if whole.is_empty() || !digits(whole) || !digits(fraction) {
            return Err(format!("{text:?} is not an amount like 14.50"));
        }
        if fraction.len() > decimals as usize {
            return Err(format!(
                "{currency} has {decimals} decimal place(s); {text:?} has more"
            ));
        }
        let scale = 10_i64.pow(decimals);
        let whole: i64 = whole
            .parse()
            .map_err(|_| format!("{text:?} is too large"))?;
        let padded = format!("{fraction:0<width$}", width = decimals as usize);
        let fraction: i64 = if padded.is_empty() {
            0
        } else {
            padded
                .parse()
                .map_err(|_| format!("{text:?} is not an amount"))?
        };
        whole
            .checked_mul(scale)
            .and_then(|minor| minor.checked_add(fraction))
            .map(|minor| Self::new(minor, currency))
            .ok_or_else(|| format!("{text:?} is too large"))
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
    /// `1,234.50 EUR`, `1,500 JPY`: [`Money::major`] and the code.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.major(), self.currency)
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

    fn currency(code: &str) -> Currency {
        Currency::parse(code).expect("a currency")
    }

    #[test]
    fn displays_with_the_currencys_own_decimals() {
        let eur = |minor| Money::new(minor, Currency::EUR);
        assert_eq!(eur(1450).to_string(), "14.50 EUR");
        assert_eq!(eur(-5).to_string(), "-0.05 EUR");
        assert_eq!(eur(0).to_string(), "0.00 EUR");
        assert_eq!(eur(123_456_789).to_string(), "1,234,567.89 EUR");
        assert_eq!(eur(i64::MIN).to_string(), "-92,233,720,368,547,758.08 EUR");
        assert_eq!(Money::new(1500, currency("JPY")).to_string(), "1,500 JPY");
        assert_eq!(
            Money::new(12_345, currency("KWD")).to_string(),
            "12.345 KWD"
        );
    }

    #[test]
    fn price_tags_use_the_currencys_sign() {
        assert_eq!(Money::new(1450, Currency::EUR).price_tag(), "€14.50");
        assert_eq!(Money::new(-1450, Currency::EUR).price_tag(), "-€14.50");
        assert_eq!(Money::new(1500, currency("JPY")).price_tag(), "¥1,500");
        assert_eq!(
            Money::new(12_345, currency("KWD")).price_tag(),
            "12.345 KWD"
        );
    }

    #[test]
    fn amounts_typed_in_major_units_parse_exactly() {
        let eur = |text| Money::parse_major(text, Currency::EUR);
        assert_eq!(eur("14.50"), Ok(Money::new(1450, Currency::EUR)));
        assert_eq!(eur("14.5"), Ok(Money::new(1450, Currency::EUR)));
        assert_eq!(eur(" 1,234 "), Ok(Money::new(123_400, Currency::EUR)));
        assert_eq!(eur("0.07"), Ok(Money::new(7, Currency::EUR)));
        for bad in [
            "",
            "-1",
            "14.505",
            "1e3",
            "abc",
            ".5",
            "99999999999999999999",
        ] {
            assert!(eur(bad).is_err(), "{bad:?}");
        }
        let yen = Money::parse_major("1500", currency("JPY"));
        assert_eq!(yen, Ok(Money::new(1500, currency("JPY"))));
        assert!(Money::parse_major("15.00", currency("JPY")).is_err());
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
