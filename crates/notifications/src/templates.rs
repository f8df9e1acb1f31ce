//! The emails' words: a subject and a plain-text body for each kind of notification,
//! rendered from the event that caused it. Pure functions, no I/O.
//!
//! Bodies are rendered once, when the event arrives, and stored with the notification,
//! so what a customer reads in the API is exactly what was mailed, whatever later
//! versions of these templates say.

use contracts::messaging::orders::{
    CancelReason, OrderCancelledV1, OrderConfirmedV1, OrderRefundedV1,
};
use contracts::{Money, OrderId};

use crate::domain::Kind;

/// A rendered email, before it has an address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Email {
    /// What it is about.
    pub kind: Kind,
    /// The subject line.
    pub subject: String,
    /// The plain-text body, lines separated by `\n`.
    pub body: String,
}

/// The longest product name shown, in characters; longer ones are cut with `...`.
const NAME_MAX_CHARS: usize = 80;

/// Greets a customer whose account was just created.
pub fn welcome(email: &str) -> Email {
    Email {
        kind: Kind::Welcome,
        subject: "Welcome to Bazaar".to_owned(),
        body: format!(
            "Hello,\n\n\
             Welcome to Bazaar! Your account for {} is ready.\n\n\
             Whenever you order, we will write to you here to confirm it.\n\n\
             {SIGNATURE}",
            plain(email, 254)
        ),
    }
}

/// Asks the owner of `email` to confirm the account registered with it, by following
/// `link` before `expires_at_ms`.
pub fn confirm_address(email: &str, link: &str, expires_at_ms: i64) -> Email {
    let until = chrono::DateTime::from_timestamp_millis(expires_at_ms).map_or_else(
        || "soon".to_owned(),
        |at| at.format("%Y-%m-%d %H:%M UTC").to_string(),
    );
    Email {
        kind: Kind::ConfirmAddress,
        subject: "Confirm your Bazaar account".to_owned(),
        body: format!(
            "Hello,\n\n\
             Someone, we hope you, asked for a Bazaar account for {}.\n\
             To create it, follow this link before {until}, and enter the password you\n\
             chose when you registered:\n\n\
             {}\n\n\
             If it was not you, ignore this email, and do not enter a password of yours\n\
             there: without the link and the password, no account is made.\n\n\
             {SIGNATURE}",
            plain(email, 254),
            plain(link, 2048)
        ),
    }
}

/// Tells the owner of `email`, which has an account, that someone tried to register it
/// again; `shop_url` is where to sign in.
pub fn already_registered(email: &str, shop_url: &str) -> Email {
    Email {
        kind: Kind::AlreadyRegistered,
        subject: "You already have a Bazaar account".to_owned(),
        body: format!(
            "Hello,\n\n\
             Someone, we hope you, tried to create a Bazaar account for {}.\n\
             This address has an account already, so nothing was changed.\n\
             To use it, sign in at {}/sign-in\n\n\
             If it was not you, ignore this email: your account and password are as they were.\n\n\
             {SIGNATURE}",
            plain(email, 254),
            plain(shop_url.trim_end_matches('/'), 2048)
        ),
    }
}

/// Confirms a paid order: each line with its quantity, unit price and line price, and
/// the total charged.
pub fn order_confirmed(event: &OrderConfirmedV1) -> Email {
    let mut lines = String::new();
    for line in &event.lines {
        let line_total = line
            .unit_price
            .checked_mul(line.quantity)
            .map(format_money)
            // Only an absurd quantity overflows; the unit price still says what it cost.
            .unwrap_or_else(|_| "-".to_owned());
        lines.push_str(&format!(
            "  {} x {}, {} each: {}\n",
            line.quantity,
            plain(&line.name, NAME_MAX_CHARS),
            format_money(line.unit_price),
            line_total
        ));
    }
    Email {
        kind: Kind::OrderConfirmed,
        subject: format!("Your Bazaar order {} is confirmed", short(&event.order_id)),
        body: format!(
            "Hello,\n\n\
             Thank you for your order. It is paid, and we are getting it ready.\n\n\
             Order {}\n\n\
             {lines}\n\
             Total charged: {}\n\n\
             {SIGNATURE}",
            short(&event.order_id),
            format_money(event.total)
        ),
    }
}

/// Tells the customer their order was cancelled, and why, in a sentence.
pub fn order_cancelled(event: &OrderCancelledV1) -> Email {
    Email {
        kind: Kind::OrderCancelled,
        subject: format!("Your Bazaar order {} was cancelled", short(&event.order_id)),
        body: format!(
            "Hello,\n\n\
             Your order {} was cancelled.\n\
             {}\n\n\
             Nothing was charged.\n\n\
             {SIGNATURE}",
            short(&event.order_id),
            cancellation_reason(event.reason)
        ),
    }
}

/// Tells the customer their money is on its way back.
pub fn order_refunded(event: &OrderRefundedV1) -> Email {
    Email {
        kind: Kind::OrderRefunded,
        subject: format!("Your refund for Bazaar order {}", short(&event.order_id)),
        body: format!(
            "Hello,\n\n\
             We have refunded {} for your order {}.\n\
             Depending on your bank, it can take a few days to appear on your statement.\n\n\
             {SIGNATURE}",
            format_money(event.amount),
            short(&event.order_id)
        ),
    }
}

/// A sentence that explains a cancellation's reason code to the customer.
pub fn cancellation_reason(reason: CancelReason) -> &'static str {
    match reason {
        CancelReason::OutOfStock => "Some of what you ordered was no longer in stock.",
        CancelReason::PaymentDeclined => "Your payment was declined.",
        CancelReason::ReviewDeclined => "We could not approve the payment after reviewing it.",
        CancelReason::CustomerCancelled => "You cancelled it.",
        CancelReason::ReservationExpired => {
            "The items were held for you, but the payment did not complete in time."
        }
        CancelReason::DeadlineMissed => "We could not complete it in time.",
        // A reason newer than this version of the templates: still a true sentence.
        CancelReason::PaymentFailed | CancelReason::Other => "We could not complete it.",
    }
}

/// `amount` in its currency's major units, e.g. `1,234.50 EUR` or `1,500 JPY`.
pub fn format_money(amount: Money) -> String {
    amount.to_string()
}

const SIGNATURE: &str = "Bazaar\n";

/// The order's number, as the shop shows it: orders of the same minute read apart.
fn short(order_id: &OrderId) -> String {
    contracts::orders::order_number(&order_id.to_string())
}

/// `text` on one line, control characters replaced by spaces, at most `max` characters.
fn plain(text: &str, max: usize) -> String {
    let flat: String = text
        .trim()
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if flat.chars().count() <= max {
        flat
    } else {
        let cut: String = flat.chars().take(max.saturating_sub(3)).collect();
        format!("{}...", cut.trim_end())
    }
}

#[cfg(test)]
mod tests {
    use contracts::Currency;
    use contracts::messaging::orders::OrderLine;

    use super::*;

    fn eur(minor: i64) -> Money {
        Money::new(minor, Currency::EUR)
    }

    fn currency(code: &str) -> Currency {
        Currency::parse(code).expect("a currency")
    }

    #[test]
    fn money_is_formatted_from_minor_units() {
        assert_eq!(format_money(eur(1450)), "14.50 EUR");
        assert_eq!(format_money(eur(5)), "0.05 EUR");
        assert_eq!(format_money(eur(0)), "0.00 EUR");
        assert_eq!(format_money(eur(-1999)), "-19.99 EUR");
        assert_eq!(format_money(eur(123_456_789)), "1,234,567.89 EUR");
        assert_eq!(format_money(Money::new(1500, currency("JPY"))), "1,500 JPY");
        assert_eq!(
            format_money(Money::new(12_345, currency("KWD"))),
            "12.345 KWD"
        );
        assert_eq!(
            format_money(eur(i64::MIN)),
            "-92,233,720,368,547,758.08 EUR"
        );
    }

    #[test]
    fn a_confirmation_lists_lines_and_the_total() {
        let email = order_confirmed(&OrderConfirmedV1 {
            order_id: OrderId::parse("0192f0c4-aaaa-7bbb-8ccc-123456789abc").expect("a UUID"),
            customer_id: test_support::user_id("c-1"),
            lines: vec![
                OrderLine {
                    product_id: test_support::product_id("p-1"),
                    name: "Enamel mug".to_owned(),
                    quantity: 2,
                    unit_price: eur(1450),
                },
                OrderLine {
                    product_id: test_support::product_id("p-2"),
                    name: "Cast iron\nteapot".to_owned(),
                    quantity: 1,
                    unit_price: eur(120_000),
                },
            ],
            total: eur(122_900),
            cart_revision: None,
        });
        assert_eq!(email.kind, Kind::OrderConfirmed);
        assert_eq!(
            email.subject,
            "Your Bazaar order BZ-34567-89ABC is confirmed"
        );
        assert_eq!(
            email.body,
            "Hello,\n\n\
             Thank you for your order. It is paid, and we are getting it ready.\n\n\
             Order BZ-34567-89ABC\n\n\
             \x20 2 x Enamel mug, 14.50 EUR each: 29.00 EUR\n\
             \x20 1 x Cast iron teapot, 1,200.00 EUR each: 1,200.00 EUR\n\n\
             Total charged: 1,229.00 EUR\n\n\
             Bazaar\n"
        );
    }

    #[test]
    fn an_overflowing_line_still_renders() {
        let email = order_confirmed(&OrderConfirmedV1 {
            order_id: test_support::order_id("o-1"),
            customer_id: test_support::user_id("c-1"),
            lines: vec![OrderLine {
                product_id: test_support::product_id("p-1"),
                name: "x".repeat(200),
                quantity: i64::MAX,
                unit_price: eur(2),
            }],
            total: eur(1),
            cart_revision: None,
        });
        let expected = format!("{}..., 0.02 EUR each: -", "x".repeat(77));
        assert!(email.body.contains(&expected), "{}", email.body);
    }

    #[test]
    fn every_cancellation_reason_has_its_own_sentence() {
        let codes = [
            "out_of_stock",
            "payment_declined",
            "review_declined",
            "customer_cancelled",
            "reservation_expired",
            "deadline_missed",
        ];
        let sentences: std::collections::BTreeSet<&str> = codes
            .iter()
            .map(|code| cancellation_reason(CancelReason::parse(code)))
            .collect();
        assert_eq!(sentences.len(), codes.len(), "two reasons share a sentence");
        assert!(!sentences.contains(cancellation_reason(CancelReason::parse("meteor_strike"))));
        let email = order_cancelled(&OrderCancelledV1 {
            order_id: OrderId::parse("0192f0c4-aaaa-7bbb-8ccc-0000000000a2").expect("a UUID"),
            customer_id: test_support::user_id("c-1"),
            reason: CancelReason::OutOfStock,
        });
        assert_eq!(
            email.subject,
            "Your Bazaar order BZ-00000-000A2 was cancelled"
        );
        assert!(email.body.contains(
            "Your order BZ-00000-000A2 was cancelled.\nSome of what you ordered was no longer in stock.\n"
        ));
        assert!(email.body.contains("Nothing was charged."));
    }

    #[test]
    fn a_refund_names_the_amount() {
        let email = order_refunded(&OrderRefundedV1 {
            order_id: OrderId::parse("0192f0c4-aaaa-7bbb-8ccc-0000000000b7").expect("a UUID"),
            customer_id: test_support::user_id("c-1"),
            amount: eur(5900),
        });
        assert_eq!(email.kind, Kind::OrderRefunded);
        assert!(
            email
                .body
                .contains("We have refunded 59.00 EUR for your order BZ-00000-000B7.")
        );
    }

    #[test]
    fn a_confirmation_carries_its_link_and_when_it_expires() {
        let email = confirm_address(
            "ada@example.com",
            "http://shop.test/confirm?token=abc",
            1_800_000_000_000,
        );
        assert_eq!(email.kind, Kind::ConfirmAddress);
        assert!(
            email
                .body
                .contains("\nhttp://shop.test/confirm?token=abc\n")
        );
        assert!(email.body.contains("before 2027-01-15 08:00 UTC"));
        assert!(email.body.contains("ada@example.com"));
    }

    #[test]
    fn word_of_an_existing_account_says_where_to_sign_in() {
        let email = already_registered("ada@example.com", "http://shop.test/");
        assert_eq!(email.kind, Kind::AlreadyRegistered);
        assert!(email.body.contains("sign in at http://shop.test/sign-in\n"));
        assert!(!email.body.contains("token"));
    }

    #[test]
    fn a_welcome_names_the_account() {
        let email = welcome("ada@example.com");
        assert_eq!(email.subject, "Welcome to Bazaar");
        assert!(
            email
                .body
                .contains("Your account for ada@example.com is ready.")
        );
    }
}
