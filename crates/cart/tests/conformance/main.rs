//! One conformance suite for every cart store: each scenario runs against the SQL store
//! on SQLite and on PostgreSQL, and against the Redis store, as `sqlite::<scenario>`,
//! `postgres::<scenario>` and `redis::<scenario>`.

mod expiry;
mod harness;
mod lines;
mod orders;

use expiry::*;
use lines::*;
use orders::*;

/// Runs each named scenario, an `async fn(Subject)`, once per store.
macro_rules! on_every_store {
    ($($scenario:ident),+ $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $scenario() {
                    let subject = crate::harness::Subject::new(crate::harness::Kind::Sqlite).await;
                    super::$scenario(subject).await;
                }
            )+
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $scenario() {
                    let subject = crate::harness::Subject::new(crate::harness::Kind::Postgres).await;
                    super::$scenario(subject).await;
                }
            )+
        }
        mod redis {
            $(
                #[tokio::test]
                async fn $scenario() {
                    let subject = crate::harness::Subject::new(crate::harness::Kind::Redis).await;
                    super::$scenario(subject).await;
                }
            )+
        }
    };
}

on_every_store!(
    an_unknown_customer_has_an_empty_cart,
    adding_creates_a_line_then_grows_it,
    a_line_never_grows_past_the_most_units,
    quantities_out_of_range_are_refused,
    a_cart_holds_at_most_the_most_lines,
    setting_a_quantity_needs_the_line,
    removing_a_line_and_clearing_the_cart,
    customers_never_see_each_others_lines,
    concurrent_adds_lose_no_update,
    concurrent_new_lines_respect_the_limit,
    an_order_leaves_the_cart_exactly_once,
    a_repeated_order_racing_itself_applies_once,
    an_order_leaves_other_customers_alone,
    a_line_added_again_after_the_order_stays,
    the_consumer_applies_each_confirmed_order_once,
    abandoned_carts_expire,
);
