//! The page size of every listing endpoint.
//!
//! Every service that pages through a collection takes its page size as the `limit`
//! query parameter with the same range, default and message, so a client learns the
//! rule once.

/// How many items a page holds: 1 to [`PageLimit::MAX`], [`PageLimit::DEFAULT`] when the
/// request names none.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageLimit(u32);

impl PageLimit {
    /// The largest page.
    pub const MAX: u32 = 100;

    /// The page size when the request names none.
    pub const DEFAULT: Self = Self(20);

    /// Parses a page size from 1 to [`PageLimit::MAX`]; the error says what is accepted.
    pub fn parse(text: &str) -> Result<Self, String> {
        match text.parse::<u32>() {
            Ok(limit) if (1..=Self::MAX).contains(&limit) => Ok(Self(limit)),
            _ => Err(format!("must be a whole number from 1 to {}", Self::MAX)),
        }
    }

    /// Parses the page size a request may leave out: [`PageLimit::DEFAULT`] when absent.
    pub fn parse_optional(text: Option<&str>) -> Result<Self, String> {
        text.map_or(Ok(Self::DEFAULT), Self::parse)
    }

    /// The page size.
    pub fn get(self) -> u32 {
        self.0
    }
}

impl Default for PageLimit {
    fn default() -> Self {
        Self::DEFAULT
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_stay_in_range() {
        assert_eq!(PageLimit::parse("1").map(PageLimit::get), Ok(1));
        assert_eq!(PageLimit::parse("100").map(PageLimit::get), Ok(100));
        for bad in ["0", "101", "-1", "ten", "", "1.5"] {
            assert_eq!(
                PageLimit::parse(bad),
                Err("must be a whole number from 1 to 100".to_owned()),
                "{bad:?} should be rejected"
            );
        }
    }

    #[test]
    fn an_absent_limit_is_the_default() {
        assert_eq!(PageLimit::parse_optional(None), Ok(PageLimit::DEFAULT));
        assert_eq!(PageLimit::DEFAULT.get(), 20);
        assert_eq!(
            PageLimit::parse_optional(Some("7")).map(PageLimit::get),
            Ok(7)
        );
        assert!(PageLimit::parse_optional(Some("0")).is_err());
    }
}
