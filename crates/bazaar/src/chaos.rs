//! `bazaar chaos run <scenario>`: shoppers on, a fault on for a while, the fault off,
//! the shop left to settle, then the audit. The report says what the shoppers met
//! before, during and after the fault, how long the shop took to recover, and the
//! invariants' verdict; a scenario that ends with a violation exits non-zero.
//!
//! A scenario is a fault flag and the variant that breaks ([`SCENARIOS`]). It runs
//! against this configuration's shop, on this machine: it switches the flag in the
//! shop's flag file, makes its customers in the shop's identity database (as
//! `bazaar load --customers` does), and audits its databases (as `bazaar verify`).

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::Config;

/// A way to break the shop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Scenario {
    /// Its name on the command line.
    pub name: &'static str,
    /// The fault flag it switches.
    pub flag: &'static str,
    /// The flag's variant that breaks.
    pub variant: &'static str,
    /// What it breaks, and what should heal it.
    pub what: &'static str,
}

/// Every scenario.
pub const SCENARIOS: [Scenario; 8] = [
    Scenario {
        name: "payment-outage",
        flag: "payments-processor-failure-rate",
        variant: "all",
        what: "the card processor answers nothing: payments retry, orders past their deadlines are cancelled and their stock released",
    },
    Scenario {
        name: "decline-all",
        flag: "payments-decline-all",
        variant: "on",
        what: "every card is declined: orders are cancelled and their stock released",
    },
    Scenario {
        name: "broker-outage",
        flag: "bus-outage",
        variant: "on",
        what: "the broker is gone: orders wait in the outboxes, which drain once it is back",
    },
    Scenario {
        name: "catalog-down",
        flag: "service-unavailable",
        variant: "catalog",
        what: "the catalog is down: browsing fails, then fails fast once the gateway's breaker opens; it closes when the catalog is back",
    },
    Scenario {
        name: "slow-inventory",
        flag: "inventory-delay-ms",
        variant: "slow",
        what: "inventory is slow: carts, pages and reservations slow down",
    },
    Scenario {
        name: "slow-database",
        flag: "orders-db-delay-ms",
        variant: "slow",
        what: "the orders database answers slowly: placing and every saga step wait for its connections, which run short under load",
    },
    Scenario {
        name: "mail-down",
        flag: "notifications-mail-down",
        variant: "on",
        what: "the mail relay is down: emails wait, then go out once",
    },
    Scenario {
        name: "cart-store-down",
        flag: "cart-store-down",
        variant: "on",
        what: "the cart's store is unreachable: carts answer 503, checkouts fail, nothing is lost",
    },
];

/// Every scenario as the console offers it, healed by going back to its flag's
/// shipped default.
pub fn offered() -> Vec<gateway::console::Scenario> {
    let shipped = platform::flags::FlagSet::parse(crate::flags::DEFAULT_FLAGS)
        .map(|set| platform::flags::Flags::fixed(set).describe())
        .unwrap_or_default();
    SCENARIOS
        .iter()
        .filter_map(|scenario| {
            let heals = shipped
                .iter()
                .find(|flag| flag.key == scenario.flag)?
                .default_variant
                .clone()?;
            Some(gateway::console::Scenario {
                name: scenario.name.to_owned(),
                what: scenario.what.to_owned(),
                flag: scenario.flag.to_owned(),
                breaks: scenario.variant.to_owned(),
                heals,
            })
        })
        .collect()
}

/// The scenario named `name`.
pub fn scenario(name: &str) -> anyhow::Result<Scenario> {
    SCENARIOS
        .into_iter()
        .find(|scenario| scenario.name == name)
        .with_context(|| {
            let known: Vec<&str> = SCENARIOS.iter().map(|scenario| scenario.name).collect();
            format!(
                "there is no scenario {name:?}; the scenarios are {}",
                known.join(", ")
            )
        })
}

/// `bazaar chaos list`.
pub fn list() -> String {
    SCENARIOS
        .iter()
        .fold(String::new(), |mut listing, scenario| {
            let _ = writeln!(
                listing,
                "{:<16} {}={}: {}",
                scenario.name, scenario.flag, scenario.variant, scenario.what
            );
            listing
        })
}

/// How long each phase lasts, and the load.
#[derive(Clone, Debug)]
pub struct Phases {
    /// Load before the fault.
    pub before: Duration,
    /// Load with the fault on.
    pub fault: Duration,
    /// Load after the fault is lifted.
    pub after: Duration,
    /// The longest wait, after the load, for the audit to come out clean.
    pub settle: Duration,
    /// How long a confirmed order's email may still be on its way.
    pub email_grace: Duration,
}

/// What a scenario found.
#[derive(Debug)]
pub struct Outcome {
    /// The report, to print.
    pub report: String,
    /// Whether every invariant held in the end.
    pub clean: bool,
}

/// Runs `scenario` against this configuration's shop, with `load` as the shoppers
/// (its duration is set from `phases`).
pub fn run(
    config: &Config,
    scenario: Scenario,
    phases: &Phases,
    mut load: load::Settings,
) -> anyhow::Result<Outcome> {
    let config = config.clone().resolved();
    let flags = crate::flags::open(&config)?;
    let restore = flags
        .describe()
        .into_iter()
        .find(|flag| flag.key == scenario.flag)
        .with_context(|| format!("the flag file defines no {}", scenario.flag))?
        .default_variant
        .context("the flag has no default variant to go back to")?;
    anyhow::ensure!(
        restore != scenario.variant,
        "{} is already {}: the shop is broken before the scenario starts \
         (`bazaar flags set {} <variant>` to heal it first)",
        scenario.flag,
        scenario.variant,
        scenario.flag
    );
    load.duration = phases.before + phases.fault + phases.after;
    let started_ms = platform::clock::now_ms();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(async {
            let (ready, prepared) = tokio::sync::oneshot::channel();
            let shoppers = tokio::spawn(load::run_when_ready(load, ready));
            // The phases run from when the shoppers start, as the load's timeline does.
            if prepared.await.is_err() {
                return Err(shoppers
                    .await
                    .context("the shoppers' task failed")?
                    .err()
                    .unwrap_or_else(|| anyhow::anyhow!("the shoppers stopped before starting")));
            }
            let broken = async {
                tokio::time::sleep(phases.before).await;
                flags.set_default(scenario.flag, scenario.variant, "bazaar chaos")?;
                let broke = Instant::now();
                tokio::time::sleep(phases.fault).await;
                anyhow::Ok(broke)
            };
            // Interrupted, the fault is lifted all the same.
            let broke = tokio::select! {
                broke = broken => broke,
                _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
            };
            flags.set_default(scenario.flag, &restore, "bazaar chaos")?;
            let healed = Instant::now();
            let broke = broke?;
            let shopped = shoppers.await.context("the shoppers' task failed")??;
            let (audit, settled) = settle(&config, phases).await?;
            let mut report = String::new();
            writeln!(
                report,
                "scenario {}: {}={} for {:.0} s ({})",
                scenario.name,
                scenario.flag,
                scenario.variant,
                (healed - broke).as_secs_f64(),
                scenario.what
            )?;
            writeln!(report, "\n{shopped}")?;
            phase_lines(&mut report, &shopped, phases)?;
            match recovered(&shopped, phases) {
                Some(seconds) => writeln!(
                    report,
                    "recovered: {seconds} s after the fault was lifted, a second with no failed journey"
                )?,
                None => writeln!(
                    report,
                    "recovered: not while the shoppers ran (every second after the fault had a failure)"
                )?,
            }
            match settled {
                Some(after) => writeln!(
                    report,
                    "settled: the audit was clean {:.0} s after the load ended",
                    after.as_secs_f64()
                )?,
                None => writeln!(
                    report,
                    "settled: not within {:.0} s of the load ending",
                    phases.settle.as_secs_f64()
                )?,
            }
            let activity = activity(&config, started_ms).await?;
            writeln!(report, "{activity}")?;
            writeln!(report, "\n{audit}")?;
            Ok(Outcome {
                clean: audit.is_clean(),
                report,
            })
        })
}

/// What the orders' sagas did during a run.
struct Activity(orders::audit::Activity);

async fn activity(config: &Config, since_ms: i64) -> anyhow::Result<Activity> {
    let db =
        platform::db::Database::open(orders::NAME, config.orders.database_url.as_ref(), 1).await?;
    let activity = orders::audit::activity_since(&db, since_ms).await;
    db.close().await;
    Ok(Activity(activity?))
}

impl std::fmt::Display for Activity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let activity = &self.0;
        let reasons: Vec<String> = activity
            .cancellations
            .iter()
            .map(|(reason, count)| format!("{count} {reason}"))
            .collect();
        writeln!(
            f,
            "orders:  {} placed, {} paid, {} cancelled{}",
            activity.count("placed"),
            activity.count("payment_captured"),
            activity.count("cancelled"),
            if reasons.is_empty() {
                String::new()
            } else {
                format!(" ({})", reasons.join(", "))
            }
        )?;
        write!(
            f,
            "saga:    {} compensations (stock released {}, payments voided {}, refunded {}), \
             {} steps re-sent past their deadline",
            activity.count("stock_released")
                + activity.count("payment_voided")
                + activity.count("payment_refunded"),
            activity.count("stock_released"),
            activity.count("payment_voided"),
            activity.count("payment_refunded"),
            activity.count("command_resent"),
        )
    }
}

/// Audits the shop until the audit is clean or `phases.settle` has passed; the last
/// audit, and how long it took to come out clean.
async fn settle(
    config: &Config,
    phases: &Phases,
) -> anyhow::Result<(crate::verify::Report, Option<Duration>)> {
    let started = Instant::now();
    loop {
        let audit = crate::verify::run(config, phases.email_grace).await?;
        if audit.is_clean() {
            return Ok((audit, Some(started.elapsed())));
        }
        if started.elapsed() >= phases.settle {
            return Ok((audit, None));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Journeys ended well and failed before, during and after the fault.
fn phase_lines(report: &mut String, shopped: &load::Report, phases: &Phases) -> std::fmt::Result {
    let before = phases.before.as_secs();
    let fault_end = before + phases.fault.as_secs();
    let mut phase = [(0, 0); 3];
    for (second, counts) in (0_u64..).zip(&shopped.timeline) {
        let index = if second < before {
            0
        } else if second < fault_end {
            1
        } else {
            2
        };
        phase[index].0 += counts.ok;
        phase[index].1 += counts.failed;
    }
    for ((name, (ok, failed)), length) in ["before", "during", "after"]
        .into_iter()
        .zip(phase)
        .zip([phases.before, phases.fault, phases.after])
    {
        writeln!(
            report,
            "{name:<7} the fault ({:>3.0} s): {ok} journeys ended well, {failed} failed",
            length.as_secs_f64()
        )?;
    }
    Ok(())
}

/// Seconds from the fault's end to the first second with journeys and no failure.
fn recovered(shopped: &load::Report, phases: &Phases) -> Option<u64> {
    let lifted = (phases.before + phases.fault).as_secs();
    (lifted..)
        .zip(shopped.timeline.iter().skip(usize::try_from(lifted).ok()?))
        .find(|(_, second)| second.ok > 0 && second.failed == 0)
        .map(|(second, _)| second - lifted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_scenario_switches_a_flag_the_shop_knows_to_one_of_its_variants() {
        let flags = platform::flags::Flags::fixed(
            platform::flags::FlagSet::parse(crate::flags::DEFAULT_FLAGS).expect("valid"),
        );
        let views = flags.describe();
        for scenario in SCENARIOS {
            let flag = views
                .iter()
                .find(|view| view.key == scenario.flag)
                .unwrap_or_else(|| panic!("{} names no flag of the shop", scenario.name));
            assert!(
                flag.variants
                    .iter()
                    .any(|(name, _)| name == scenario.variant),
                "{} has no variant {}",
                scenario.flag,
                scenario.variant
            );
        }
        assert!(
            scenario("nothing")
                .unwrap_err()
                .to_string()
                .contains("payment-outage")
        );
        assert!(list().contains("broker-outage"));
    }

    #[test]
    fn the_console_offers_every_scenario_healed_by_its_flags_shipped_default() {
        let offered = offered();
        assert_eq!(offered.len(), SCENARIOS.len(), "{offered:?}");
        let outage = offered
            .iter()
            .find(|scenario| scenario.name == "catalog-down")
            .expect("catalog-down");
        assert_eq!(
            (
                outage.flag.as_str(),
                outage.breaks.as_str(),
                outage.heals.as_str()
            ),
            ("service-unavailable", "catalog", "none")
        );
        assert!(
            offered
                .iter()
                .all(|scenario| scenario.breaks != scenario.heals)
        );
    }
}
