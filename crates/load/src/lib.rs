//! Bazaar's load generator, behind `bazaar load`: shoppers walking weighted journeys
//! through any shop's public URL, as the API's clients and the storefront's browsers
//! would.
//!
//! It depends on no Bazaar crate: it speaks only HTTP, so it drives an embedded shop, a
//! distributed one or a shop in Kubernetes alike.
//!
//! - [`journey`]: the journeys (browse, product, search, cart, checkout, sign-in) and the
//!   shop's HTTP API they use.
//! - [`report`]: what a run measured: per journey its count, errors and latency
//!   percentiles from an HDR histogram, the checkouts' outcomes, as a table or JSON.
//!
//! Two paces: a **closed loop** of `users` shoppers, each starting a journey when its
//! last one ended (started over the ramp-up); and an **open loop**, a journey started
//! every `1 / rate` seconds whatever became of the earlier ones, its latency measured
//! from when it was due, so that queueing in the shop is not hidden (an arrival that
//! finds `max_in_flight` journeys running is dropped and counted).

pub mod journey;
pub mod report;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;

pub use journey::{Account, Journey, Mix};
pub use report::{Report, Second};

use crate::journey::Shop;
use crate::report::Recorder;

/// How journeys are started.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Pace {
    /// `users` shoppers, each starting a journey when its last one ended.
    Closed {
        /// How many.
        users: usize,
    },
    /// A journey every `1 / per_second` seconds, at most `max_in_flight` at once.
    Open {
        /// Journeys started per second.
        per_second: f64,
        /// The most journeys running at once; an arrival beyond is dropped.
        max_in_flight: usize,
    },
}

/// What to run.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The shop's public URL, e.g. `http://127.0.0.1:8080`.
    pub url: String,
    /// How long journeys are started for; those running then are waited for.
    pub duration: Duration,
    /// Over how long the closed loop's shoppers start (the open loop starts at once).
    pub ramp_up: Duration,
    /// Closed or open loop.
    pub pace: Pace,
    /// The journeys' weights.
    pub mix: Mix,
    /// Signed-up customers, for the journeys that need one (cart, checkout, sign-in);
    /// without any, those journeys are left out of the mix.
    pub accounts: Vec<Account>,
    /// Whether a line of progress is written to standard error every second.
    pub progress: bool,
}

/// Runs `settings` and reports what was measured. Fails only if the shop cannot be
/// prepared for (its catalog unreadable, an account refused): what goes wrong during
/// the run is counted, not fatal.
pub async fn run(settings: Settings) -> anyhow::Result<Report> {
    run_when_ready(settings, tokio::sync::oneshot::channel().0).await
}

/// [`run`], saying on `ready` when the shop is prepared for and the first journeys
/// start: what a caller times the run's phases from.
pub async fn run_when_ready(
    settings: Settings,
    ready: tokio::sync::oneshot::Sender<()>,
) -> anyhow::Result<Report> {
    if let Pace::Open { per_second, .. } = settings.pace {
        anyhow::ensure!(
            per_second.is_finite() && (0.01..=100_000.0).contains(&per_second),
            "the rate must be from 0.01 to 100000 journeys a second"
        );
    }
    let shop = Arc::new(Shop::prepare(&settings.url, &settings.accounts).await?);
    let mix = if shop.has_customers() {
        settings.mix.clone()
    } else {
        settings.mix.without_customers()
    };
    anyhow::ensure!(
        !mix.is_empty(),
        "no journey is left to run: the mix names only journeys that need accounts"
    );
    let started = Instant::now();
    let recorder = Arc::new(Recorder::new(started));
    // Nobody may be listening.
    let _ = ready.send(());
    let deadline = started + settings.duration;
    let progress = settings
        .progress
        .then(|| tokio::spawn(report_progress(Arc::clone(&recorder), started)));
    let dropped = match settings.pace {
        Pace::Closed { users } => {
            closed_loop(
                &shop,
                &mix,
                &recorder,
                users.max(1),
                settings.ramp_up,
                deadline,
            )
            .await?;
            0
        }
        Pace::Open {
            per_second,
            max_in_flight,
        } => open_loop(&shop, &mix, &recorder, per_second, max_in_flight, deadline).await?,
    };
    if let Some(progress) = progress {
        progress.abort();
    }
    let mut notes = Vec::new();
    if !shop.has_customers() {
        notes.push("no accounts: the cart, checkout and sign-in journeys were left out".to_owned());
    }
    Ok(recorder.report(started.elapsed(), &settings.pace, dropped, notes))
}

async fn closed_loop(
    shop: &Arc<Shop>,
    mix: &Mix,
    recorder: &Arc<Recorder>,
    users: usize,
    ramp_up: Duration,
    deadline: Instant,
) -> anyhow::Result<()> {
    let mut shoppers = tokio::task::JoinSet::new();
    for user in 0..users {
        let (shop, mix, recorder) = (Arc::clone(shop), mix.clone(), Arc::clone(recorder));
        #[allow(clippy::cast_possible_truncation, reason = "a ramp-up is short")]
        let delay = ramp_up.mul_f64(user as f64 / users as f64);
        shoppers.spawn(async move {
            tokio::time::sleep(delay).await;
            while Instant::now() < deadline {
                let journey = mix.pick();
                let began = Instant::now();
                let outcome = journey.walk(&shop).await;
                recorder.record(journey, began.elapsed(), outcome);
            }
        });
    }
    while let Some(ended) = shoppers.join_next().await {
        ended.context("a shopper's task failed")?;
    }
    Ok(())
}

/// Starts a journey each time one is due until `deadline`; returns how many arrivals
/// were dropped because `max_in_flight` were running.
async fn open_loop(
    shop: &Arc<Shop>,
    mix: &Mix,
    recorder: &Arc<Recorder>,
    per_second: f64,
    max_in_flight: usize,
    deadline: Instant,
) -> anyhow::Result<u64> {
    let room = Arc::new(tokio::sync::Semaphore::new(max_in_flight.max(1)));
    let interval = Duration::from_secs_f64(1.0 / per_second);
    let started = Instant::now();
    let mut journeys = tokio::task::JoinSet::new();
    let mut dropped = 0;
    for arrival in 0_u32.. {
        let due = started + interval * arrival;
        if due >= deadline {
            break;
        }
        tokio::time::sleep_until(due.into()).await;
        let Ok(permit) = Arc::clone(&room).try_acquire_owned() else {
            dropped += 1;
            continue;
        };
        let (shop, recorder) = (Arc::clone(shop), Arc::clone(recorder));
        let journey = mix.pick();
        journeys.spawn(async move {
            let outcome = journey.walk(&shop).await;
            // From when it was due, not from when it could start.
            recorder.record(journey, due.elapsed(), outcome);
            drop(permit);
        });
        // Reap what ended, so the set does not grow with the run.
        while journeys.try_join_next().is_some() {}
    }
    while let Some(ended) = journeys.join_next().await {
        ended.context("a journey's task failed")?;
    }
    Ok(dropped)
}

/// Writes a line to standard error every second: journeys and errors in that second,
/// and the run so far.
async fn report_progress(recorder: Arc<Recorder>, started: Instant) {
    let (mut done_before, mut failed_before) = (0, 0);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    loop {
        tick.tick().await;
        let (done, failed) = recorder.totals();
        #[allow(
            clippy::print_stderr,
            reason = "the progress line is the tool's output"
        )]
        {
            eprintln!(
                "{:>4} s  {:>6} journeys/s  {:>4} errors/s  ({done} journeys, {failed} errors so far)",
                started.elapsed().as_secs(),
                done - done_before,
                failed - failed_before,
            );
        }
        (done_before, failed_before) = (done, failed);
    }
}
