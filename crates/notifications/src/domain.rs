//! Pure types: what a notification is about, where it stands, and how a customer pages
//! through theirs. No SQL, no HTTP, no serde.

use std::fmt;

use platform::page::PageLimit;
use platform::problem::FieldError;

/// What a notification tells the customer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// Their account was created.
    Welcome,
    /// A link that confirms the account registered with their address.
    ConfirmAddress,
    /// Someone tried to register their address, which has an account already.
    AlreadyRegistered,
    /// Their order is paid and confirmed.
    OrderConfirmed,
    /// Their order ended without a sale.
    OrderCancelled,
    /// Their confirmed order's payment was given back.
    OrderRefunded,
}

impl Kind {
    /// Every kind.
    pub const ALL: [Self; 6] = [
        Self::Welcome,
        Self::ConfirmAddress,
        Self::AlreadyRegistered,
        Self::OrderConfirmed,
        Self::OrderCancelled,
        Self::OrderRefunded,
    ];

    /// The stored and wire form, e.g. `order_confirmed`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Welcome => "welcome",
            Self::ConfirmAddress => "confirm_address",
            Self::AlreadyRegistered => "already_registered",
            Self::OrderConfirmed => "order_confirmed",
            Self::OrderCancelled => "order_cancelled",
            Self::OrderRefunded => "order_refunded",
        }
    }

    /// The kind stored as `text`.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == text)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a notification stands: pending until a mailer took it, then sent; failed when
/// the mail system refused it for good (an address that can never receive mail).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Waiting for its next attempt (or for the customer's address).
    Pending,
    /// Handed to the mailer.
    Sent,
    /// Refused for good; not tried again.
    Failed,
}

impl Status {
    /// The stored and wire form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Sent => "sent",
            Self::Failed => "failed",
        }
    }

    /// The status stored as `text`.
    pub fn parse(text: &str) -> Option<Self> {
        [Self::Pending, Self::Sent, Self::Failed]
            .into_iter()
            .find(|status| status.as_str() == text)
    }
}

/// A notification's id: a UUID (v7, so ids sort by creation), in its hyphenated form.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NotificationId(String);

impl NotificationId {
    /// A new id.
    pub fn generate() -> Self {
        Self(uuid::Uuid::now_v7().hyphenated().to_string())
    }

    /// Parses a UUID in any of its usual forms.
    pub fn parse(text: &str) -> Option<Self> {
        uuid::Uuid::try_parse(text)
            .ok()
            .map(|id| Self(id.hyphenated().to_string()))
    }

    /// The hyphenated form.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NotificationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where the next page of a customer's notifications starts: after this (creation
/// time, id), newest first.
///
/// On the wire it is `<created_at_ms>.<id>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cursor {
    /// The last notification's creation time, Unix ms.
    pub created_at_ms: i64,
    /// The last notification's id.
    pub id: NotificationId,
}

impl Cursor {
    /// The form handed to clients: `<created ms>.<id>`, which the API document gives
    /// as a pattern; any value of that form is a position to continue after.
    pub fn encode(&self) -> String {
        format!("{}.{}", self.created_at_ms, self.id)
    }

    /// Reads a cursor of the form [`Cursor::encode`] gives.
    pub fn decode(text: &str) -> Result<Self, String> {
        const MALFORMED: &str = "malformed cursor; pass back next_cursor exactly as received";
        let (created, id) = text.split_once('.').ok_or(MALFORMED)?;
        let well_formed = (1..=18).contains(&created.len())
            && created.bytes().all(|byte| byte.is_ascii_digit())
            && id.len() == 36
            && id
                .bytes()
                .all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte) || byte == b'-');
        if !well_formed {
            return Err(MALFORMED.to_owned());
        }
        let created_at_ms = created.parse::<i64>().map_err(|_| MALFORMED.to_owned())?;
        let id = NotificationId::parse(id).ok_or(MALFORMED)?;
        Ok(Self { created_at_ms, id })
    }
}

/// A parsed, valid request for a page of notifications.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PageQuery {
    /// Page size.
    pub limit: PageLimit,
    /// Continue after this position.
    pub after: Option<Cursor>,
}

impl PageQuery {
    /// Parses `limit` and `cursor`, reporting every invalid one.
    pub fn parse(limit: Option<&str>, cursor: Option<&str>) -> Result<Self, Vec<FieldError>> {
        let mut invalid = Vec::new();
        let limit = PageLimit::parse_optional(limit).unwrap_or_else(|reason| {
            invalid.push(FieldError::new("limit", reason));
            PageLimit::default()
        });
        let after = match cursor.map(Cursor::decode) {
            None => None,
            Some(Ok(cursor)) => Some(cursor),
            Some(Err(reason)) => {
                invalid.push(FieldError::new("cursor", reason));
                None
            }
        };
        if invalid.is_empty() {
            Ok(Self { limit, after })
        } else {
            Err(invalid)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_statuses_round_trip() {
        for kind in Kind::ALL {
            assert_eq!(Kind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(Kind::parse("spam"), None);
        for status in [Status::Pending, Status::Sent, Status::Failed] {
            assert_eq!(Status::parse(status.as_str()), Some(status));
        }
    }

    #[test]
    fn cursors_round_trip() {
        let cursor = Cursor {
            created_at_ms: 1_700_000_000_123,
            id: NotificationId::generate(),
        };
        assert_eq!(Cursor::decode(&cursor.encode()), Ok(cursor));
    }

    #[test]
    fn every_cursor_of_the_documented_form_is_read() {
        for text in [
            "0.00000000-0000-0000-0000-000000000000",
            "999999999999999999.ffffffff-ffff-ffff-ffff-ffffffffffff",
            "1700000000123.01a24de4-ffdc-7583-8435-c9208c583895",
        ] {
            assert!(Cursor::decode(text).is_ok(), "{text}");
        }
    }

    #[test]
    fn garbage_cursors_are_rejected() {
        let id = NotificationId::generate();
        let negative = format!("-5.{id}");
        let too_long = format!("{}.{id}", "9".repeat(19));
        let upper = format!("12.{}", id.as_str().to_uppercase());
        let long = "A".repeat(200);
        for bad in [
            "",
            "%%%",
            "bm9waXBl",
            "12.not-a-uuid",
            "12",
            &negative,
            &too_long,
            &upper,
            &long,
        ] {
            assert!(Cursor::decode(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn every_bad_field_is_named() {
        let invalid = PageQuery::parse(Some("0"), Some("%%%")).expect_err("invalid");
        let fields: Vec<&str> = invalid
            .iter()
            .map(|invalid| invalid.field.as_str())
            .collect();
        assert_eq!(fields, ["limit", "cursor"]);
        assert_eq!(PageQuery::parse(None, None), Ok(PageQuery::default()));
    }
}
