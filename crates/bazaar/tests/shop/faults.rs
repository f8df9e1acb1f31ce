//! The fault flags, switched in a running shop: each shows its effect and the recovery
//! the shop is built to make, and ends with `bazaar verify` clean.

use std::path::Path;

use payments::processor::faults::{DECLINE_ALL, FAILURE_RATE};
use serde_json::{Value, json};

use crate::checkout::{APPROVED, Mode, Scenario, on_both_modes};

on_both_modes!(
    declining_every_card_cancels_and_releases_the_stock,
    a_processor_outage_ends_orders_safely_and_lifting_it_heals,
);

/// Writes the shop's flag file in `data_dir`: every flag the shop knows, with `set`'s
/// flags given a variant (by name) or a targeting rule (as JSON). Written whole and
/// renamed into place, as an editor or a ConfigMap update would, so the shop never
/// reads half a file.
fn write_flags(data_dir: &Path, set: &[(&str, Value)]) {
    let mut flags: Value =
        serde_json::from_str(bazaar::shop::DEFAULT_FLAGS).expect("the default flags are JSON");
    for (name, setting) in set {
        let flag = &mut flags["flags"][name];
        assert!(flag.is_object(), "the shop knows no flag {name}");
        match setting {
            Value::String(_) => flag["defaultVariant"] = setting.clone(),
            rule => flag["targeting"] = rule.clone(),
        }
    }
    std::fs::create_dir_all(data_dir).expect("a data folder");
    let draft = data_dir.join("flags.json.draft");
    std::fs::write(&draft, flags.to_string()).expect("written");
    std::fs::rename(&draft, data_dir.join("flags.json")).expect("renamed into place");
}

async fn declining_every_card_cancels_and_releases_the_stock(mode: Mode) {
    let scenario = Scenario::start_with(
        mode,
        |config| write_flags(&config.data_dir, &[(DECLINE_ALL, json!("on"))]),
        |bus| bus,
    )
    .await;
    let (mug, stock) = scenario.product("enamel-camp-mug").await;
    // A card the processor would approve: only the flag declines it.
    let (token, card) = scenario.shopper("ada@example.com", APPROVED, &mug, 2).await;
    let (_, placed) = scenario.place(&token, "declined-by-flag", &card).await;
    let id = placed["id"].as_str().expect("an id");
    let order = scenario
        .wait_for(&token, id, &["cancelled", "confirmed"])
        .await;
    assert_eq!(order["status"], "cancelled", "{order:#}");
    assert_eq!(order["reason"], "payment_declined");
    assert_eq!(scenario.available(&mug).await, stock);
    scenario.wait_for_email(&token, "order_cancelled", id).await;
    scenario.assert_invariants().await;
}

async fn a_processor_outage_ends_orders_safely_and_lifting_it_heals(mode: Mode) {
    // Every authorization fails (cards can still be saved); the saga re-sends once
    // after two seconds, then gives up and compensates.
    let outage = json!({"if": [{"==": [{"var": "operation"}, "authorize"]}, "all", "off"]});
    let scenario = Scenario::start_with(
        mode,
        |config| {
            write_flags(&config.data_dir, &[(FAILURE_RATE, outage)]);
            config.orders.deadlines.max_step_ms = 2_000;
            config.orders.deadlines.max_attempts = 1;
        },
        |bus| bus,
    )
    .await;
    let (mug, stock) = scenario.product("enamel-camp-mug").await;
    let (token, card) = scenario.shopper("ada@example.com", APPROVED, &mug, 1).await;
    let (_, placed) = scenario.place(&token, "during-the-outage", &card).await;
    let id = placed["id"].as_str().expect("an id");
    let order = scenario
        .wait_for(&token, id, &["cancelled", "confirmed"])
        .await;
    assert_eq!(order["status"], "cancelled", "{order:#}");
    assert_eq!(order["reason"], "deadline_missed");
    assert_eq!(scenario.available(&mug).await, stock);

    // The outage ends. The shop sees the file change within a second; an order placed
    // before it does is retried by payments or, at worst, cancelled like the first.
    write_flags(&scenario.config.data_dir, &[]);
    let mut confirmed = None;
    for attempt in 0..3 {
        let email = format!("bo{attempt}@example.com");
        let (token, card) = scenario.shopper(&email, APPROVED, &mug, 1).await;
        let (_, placed) = scenario.place(&token, "after-the-outage", &card).await;
        let id = placed["id"].as_str().expect("an id").to_owned();
        let order = scenario
            .wait_for(&token, &id, &["cancelled", "confirmed"])
            .await;
        if order["status"] == "confirmed" {
            confirmed = Some((token, id));
            break;
        }
    }
    let (token, id) = confirmed.expect("an order confirms once the outage is lifted");
    scenario
        .wait_for_email(&token, "order_confirmed", &id)
        .await;
    assert_eq!(scenario.available(&mug).await, stock - 1);
    scenario.assert_invariants().await;
}

#[test]
fn the_default_flag_file_defines_every_fault_off() {
    use payments::processor::faults::DELAY_MS;
    use platform::flags::{EvaluationContext, FlagSet, Flags};

    let set = FlagSet::parse(bazaar::shop::DEFAULT_FLAGS).expect("a valid definition");
    let mut known: Vec<&str> = set.keys().collect();
    known.sort_unstable();
    assert_eq!(known, [DECLINE_ALL, DELAY_MS, FAILURE_RATE]);
    let flags = Flags::fixed(set);
    let anyone = EvaluationContext::new().targeting_key("order-1");
    assert!(!flags.boolean(DECLINE_ALL, &anyone, true));
    assert!(flags.number(DELAY_MS, &anyone, 1.0).abs() < f64::EPSILON);
    assert!(flags.number(FAILURE_RATE, &anyone, 1.0).abs() < f64::EPSILON);
}
