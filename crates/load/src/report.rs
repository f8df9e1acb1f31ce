//! What a run measured: per journey how many ended well, how many failed and why, and
//! latency percentiles from an HDR histogram (microseconds, three significant digits);
//! the checkouts by how their orders ended. Printed as a table, or written as JSON.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::Pace;
use crate::journey::{Journey, Outcome};

/// The longest latency a histogram holds: a minute, in microseconds.
const HIGHEST_MICROS: u64 = 60_000_000;

/// Collects the walks of a run.
pub(crate) struct Recorder {
    started: Instant,
    journeys: Mutex<BTreeMap<Journey, Tally>>,
    /// Walks ended well and failed, by the second of the run they ended in.
    timeline: Mutex<Vec<Second>>,
}

/// One second of a run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Second {
    /// Walks that ended well in it.
    pub ok: u64,
    /// Walks that failed in it.
    pub failed: u64,
}

/// One journey's walks so far.
struct Tally {
    latency: Histogram<u64>,
    errors: BTreeMap<String, u64>,
    ends: BTreeMap<&'static str, u64>,
}

impl Tally {
    fn new() -> Self {
        Self {
            latency: Histogram::new_with_bounds(1, HIGHEST_MICROS, 3)
                .expect("valid histogram bounds"),
            errors: BTreeMap::new(),
            ends: BTreeMap::new(),
        }
    }

    fn failed(&self) -> u64 {
        self.errors.values().sum()
    }
}

impl Recorder {
    /// A recorder for a run that started at `started`.
    pub(crate) fn new(started: Instant) -> Self {
        Self {
            started,
            journeys: Mutex::default(),
            timeline: Mutex::default(),
        }
    }

    /// Records one walk of `journey`, ended now, that took `took`.
    pub(crate) fn record(&self, journey: Journey, took: Duration, outcome: Outcome) {
        {
            let second = usize::try_from(self.started.elapsed().as_secs()).unwrap_or(usize::MAX);
            let mut timeline = self
                .timeline
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if timeline.len() <= second {
                timeline.resize(second.saturating_add(1), Second::default());
            }
            match outcome {
                Outcome::Done(_) => timeline[second].ok += 1,
                Outcome::Failed(_) => timeline[second].failed += 1,
            }
        }
        let mut journeys = self
            .journeys
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let tally = journeys.entry(journey).or_insert_with(Tally::new);
        match outcome {
            Outcome::Done(walk) => {
                let took = took.saturating_sub(walk.waited);
                let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
                tally
                    .latency
                    .saturating_record(micros.clamp(1, HIGHEST_MICROS));
                if let Some(end) = walk.end {
                    *tally.ends.entry(end).or_default() += 1;
                }
            }
            Outcome::Failed(why) => *tally.errors.entry(why).or_default() += 1,
        }
    }

    /// Journeys ended well and failed, so far.
    pub(crate) fn totals(&self) -> (u64, u64) {
        let journeys = self
            .journeys
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        journeys.values().fold((0, 0), |(done, failed), tally| {
            (done + tally.latency.len(), failed + tally.failed())
        })
    }

    /// The report of a run that lasted `took`.
    pub(crate) fn report(
        &self,
        took: Duration,
        pace: &Pace,
        dropped: u64,
        notes: Vec<String>,
    ) -> Report {
        let journeys = self
            .journeys
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let seconds = took.as_secs_f64();
        let millis = |tally: &Tally, quantile: f64| {
            #[allow(clippy::cast_precision_loss, reason = "microseconds to milliseconds")]
            let value = tally.latency.value_at_quantile(quantile) as f64 / 1000.0;
            value
        };
        let reports = Journey::ALL
            .iter()
            .filter_map(|journey| {
                let tally = journeys.get(journey)?;
                let ok = tally.latency.len();
                #[allow(clippy::cast_precision_loss, reason = "counts")]
                let per_second = (ok + tally.failed()) as f64 / seconds.max(f64::EPSILON);
                Some(JourneyReport {
                    journey: journey.as_str(),
                    ok,
                    failed: tally.failed(),
                    per_second,
                    p50_ms: millis(tally, 0.50),
                    p90_ms: millis(tally, 0.90),
                    p99_ms: millis(tally, 0.99),
                    max_ms: millis(tally, 1.0),
                    errors: tally.errors.clone(),
                    ends: tally
                        .ends
                        .iter()
                        .map(|(end, count)| ((*end).to_owned(), *count))
                        .collect(),
                })
            })
            .collect();
        let timeline = self
            .timeline
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        Report {
            seconds,
            timeline,
            pace: match pace {
                Pace::Closed { users } => format!("closed loop, {users} shoppers"),
                Pace::Open {
                    per_second,
                    max_in_flight,
                } => format!("open loop, {per_second} journeys/s, at most {max_in_flight} at once"),
            },
            dropped,
            journeys: reports,
            notes,
        }
    }
}

/// What a run measured.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// How long the run took, waiting for the last journeys included.
    pub seconds: f64,
    /// How journeys were started.
    pub pace: String,
    /// Open loop only: arrivals not started because the most allowed were running.
    pub dropped: u64,
    /// Per journey walked.
    pub journeys: Vec<JourneyReport>,
    /// What the reader should know, e.g. journeys left out.
    pub notes: Vec<String>,
    /// Walks ended well and failed in each second of the run, from its start.
    pub timeline: Vec<Second>,
}

/// One journey's figures.
#[derive(Clone, Debug, Serialize)]
pub struct JourneyReport {
    /// Its name.
    pub journey: &'static str,
    /// Walks whose every request answered as it should.
    pub ok: u64,
    /// Walks in which a request failed.
    pub failed: u64,
    /// Walks per second, ended well or not.
    pub per_second: f64,
    /// Latency of the walks that ended well, in milliseconds: the median.
    pub p50_ms: f64,
    /// The 90th percentile.
    pub p90_ms: f64,
    /// The 99th percentile.
    pub p99_ms: f64,
    /// The slowest.
    pub max_ms: f64,
    /// Failures by what failed, e.g. `503 adding to the cart`.
    pub errors: BTreeMap<String, u64>,
    /// Checkouts by how their orders ended: `confirmed`, `cancelled`, `rejected`,
    /// `payment_held`.
    pub ends: BTreeMap<String, u64>,
}

impl Report {
    /// All walks that failed.
    pub fn failed(&self) -> u64 {
        self.journeys.iter().map(|journey| journey.failed).sum()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{} over {:.1} s", self.pace, self.seconds)?;
        writeln!(
            f,
            "{:<10} {:>8} {:>7} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "journey", "ok", "failed", "per s", "p50 ms", "p90 ms", "p99 ms", "max ms"
        )?;
        for journey in &self.journeys {
            writeln!(
                f,
                "{:<10} {:>8} {:>7} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1}",
                journey.journey,
                journey.ok,
                journey.failed,
                journey.per_second,
                journey.p50_ms,
                journey.p90_ms,
                journey.p99_ms,
                journey.max_ms
            )?;
        }
        for journey in &self.journeys {
            for (end, count) in &journey.ends {
                writeln!(f, "{} ended {end}: {count}", journey.journey)?;
            }
            for (error, count) in &journey.errors {
                writeln!(f, "{} failed, {error}: {count}", journey.journey)?;
            }
        }
        if self.dropped > 0 {
            writeln!(f, "arrivals dropped (too many running): {}", self.dropped)?;
        }
        for note in &self.notes {
            writeln!(f, "note: {note}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journey::Walk;

    #[test]
    fn walks_are_tallied_by_journey_outcome_and_error() {
        let recorder = Recorder::new(Instant::now());
        for millis in 1..=100 {
            recorder.record(
                Journey::Browse,
                Duration::from_millis(millis),
                Outcome::Done(Walk::default()),
            );
        }
        let ended = |end| {
            Outcome::Done(Walk {
                end: Some(end),
                waited: Duration::from_millis(30),
            })
        };
        recorder.record(
            Journey::Checkout,
            Duration::from_millis(80),
            ended("confirmed"),
        );
        recorder.record(
            Journey::Checkout,
            Duration::from_millis(90),
            ended("cancelled"),
        );
        recorder.record(
            Journey::Checkout,
            Duration::from_millis(5),
            Outcome::Failed("503 placing the order".to_owned()),
        );
        assert_eq!(recorder.totals(), (102, 1));
        let timeline = &recorder
            .report(
                Duration::from_secs(1),
                &Pace::Closed { users: 1 },
                0,
                Vec::new(),
            )
            .timeline;
        assert_eq!(
            timeline
                .iter()
                .map(|second| (second.ok, second.failed))
                .fold((0, 0), |(ok, failed), (o, f)| (ok + o, failed + f)),
            (102, 1)
        );
        let report = recorder.report(
            Duration::from_secs(2),
            &Pace::Closed { users: 4 },
            0,
            Vec::new(),
        );
        let browse = &report.journeys[0];
        assert_eq!(
            (browse.journey, browse.ok, browse.failed),
            ("browse", 100, 0)
        );
        assert!((browse.per_second - 50.0).abs() < 1e-9);
        assert!((49.0..=51.0).contains(&browse.p50_ms), "{}", browse.p50_ms);
        assert!((98.0..=101.0).contains(&browse.p99_ms), "{}", browse.p99_ms);
        let checkout = &report.journeys[1];
        assert_eq!(checkout.ends["confirmed"], 1);
        assert_eq!(checkout.ends["cancelled"], 1);
        assert_eq!(checkout.errors["503 placing the order"], 1);
        assert!(
            checkout.max_ms < 61.0,
            "the wait for a customer is left out"
        );
        assert_eq!(report.failed(), 1);
        let table = report.to_string();
        assert!(table.contains("closed loop, 4 shoppers"), "{table}");
        assert!(
            table.contains("checkout failed, 503 placing the order: 1"),
            "{table}"
        );
        let json = serde_json::to_value(&report).expect("JSON");
        assert_eq!(json["journeys"][1]["ends"]["confirmed"], 1);
    }
}
