//! Password hashing with Argon2id, bounded.
//!
//! A hash takes 19 MiB and tens of milliseconds of one core, and registration and
//! sign-in need no account, so hashing is the cheapest way to exhaust the shop's
//! memory. A [`Hasher`] therefore runs hashes on a fixed set of its own threads
//! (about one a core) fed by a short queue: at most `threads` hashes run at once, at
//! most `queue` wait, and a request that finds the queue full is refused at once with
//! [`Busy`], which the API answers with 503 and `Retry-After`. Each thread reuses its
//! own memory from one hash to the next, so the memory hashing holds is bounded by the
//! thread count, not by the number of clients. A job whose caller gave up still runs
//! to the end on its thread, so cancelled requests never let more hashes run than the
//! bound.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::oneshot;

/// OWASP's minimum for Argon2id: 19 MiB of memory, 2 passes, 1 lane.
pub fn owasp_params() -> Params {
    Params::new(19 * 1024, 2, 1, None).expect("valid Argon2 parameters")
}

/// A hash of a random password nobody knows, with the same parameters as real ones:
/// verifying against it costs what verifying a real password costs, which is all it is
/// for (an unknown email must take as long as a wrong password). A constant, so start-up
/// does not spend a hash on it.
pub const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$M7tdGnQtES2Zlv75MzyGNw$WzLGEBzTYLKiP+Sf1iEvfqTtKhRvIjUSlZFct7AUesQ";

/// Every hashing thread is busy and the queue is full: try again in a moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("password hashing is at capacity; try again in a moment")]
pub struct Busy;

/// Why a hashing request gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    /// The bound was reached; nothing was done.
    #[error(transparent)]
    Busy(#[from] Busy),
    /// The hash itself failed (never for valid parameters).
    #[error(transparent)]
    Failed(#[from] anyhow::Error),
}

/// How many hashes may run and wait.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Hashes running at once: the number of hashing threads.
    pub threads: usize,
    /// Hashes waiting for a thread before further ones are refused.
    pub queue: usize,
}

enum Job {
    Hash {
        password: String,
        answer: oneshot::Sender<anyhow::Result<String>>,
    },
    Verify {
        password: String,
        hash: String,
        answer: oneshot::Sender<bool>,
    },
}

/// Runs Argon2id on a fixed set of threads behind a bounded queue; cheap to clone.
#[derive(Clone)]
pub struct Hasher {
    jobs: SyncSender<Job>,
    gauge: Arc<Gauge>,
}

/// How many hashes run now, and the most that ever ran at once.
#[derive(Default)]
struct Gauge {
    running: AtomicUsize,
    peak: AtomicUsize,
}

impl Hasher {
    /// Starts `limits.threads` hashing threads (at least one) with OWASP's parameters.
    pub fn new(limits: Limits) -> anyhow::Result<Self> {
        Self::with_params(limits, owasp_params())
    }

    /// [`Hasher::new`] with other Argon2id parameters for new hashes (tests use cheap
    /// ones). Verification always uses the parameters stored in the hash.
    pub fn with_params(limits: Limits, params: Params) -> anyhow::Result<Self> {
        let (jobs, queue) = sync_channel(limits.queue);
        let queue = Arc::new(Mutex::new(queue));
        let gauge = Arc::new(Gauge::default());
        for index in 0..limits.threads.max(1) {
            let (queue, gauge, params) = (queue.clone(), gauge.clone(), params.clone());
            std::thread::Builder::new()
                .name(format!("password-hash-{index}"))
                .spawn(move || work(&queue, &gauge, &params))
                .context("starting a password hashing thread")?;
        }
        Ok(Self { jobs, gauge })
    }

    /// The PHC string of `password` with a fresh random salt.
    pub async fn hash(&self, password: String) -> Result<String, HashError> {
        let (answer, answered) = oneshot::channel();
        self.submit(Job::Hash { password, answer })?;
        answered
            .await
            .context("the hashing thread stopped")?
            .map_err(HashError::Failed)
    }

    /// Whether `password` matches the PHC string `hash`. A malformed hash never matches.
    pub async fn verify(&self, password: String, hash: String) -> Result<bool, HashError> {
        let (answer, answered) = oneshot::channel();
        self.submit(Job::Verify {
            password,
            hash,
            answer,
        })?;
        Ok(answered.await.context("the hashing thread stopped")?)
    }

    /// The most hashes that have run at the same moment since the start.
    pub fn peak_concurrency(&self) -> usize {
        self.gauge.peak.load(Ordering::Relaxed)
    }

    fn submit(&self, job: Job) -> Result<(), HashError> {
        match self.jobs.try_send(job) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => {
                metrics::counter!("identity_password_hashes_refused_total").increment(1);
                Err(Busy.into())
            }
            Err(TrySendError::Disconnected(_)) => {
                Err(anyhow::anyhow!("the hashing threads stopped").into())
            }
        }
    }
}

/// One hashing thread: takes jobs until every [`Hasher`] clone is dropped.
fn work(queue: &Mutex<Receiver<Job>>, gauge: &Gauge, params: &Params) {
    let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    loop {
        // The lock is held only while waiting; another thread takes the next job while
        // this one hashes.
        let job = match queue.lock() {
            Ok(queue) => queue.recv(),
            Err(_) => return,
        };
        let Ok(job) = job else { return };
        let running = gauge.running.fetch_add(1, Ordering::SeqCst) + 1;
        gauge.peak.fetch_max(running, Ordering::SeqCst);
        metrics::gauge!("identity_password_hashes_running").increment(1.0);
        match job {
            Job::Hash { password, answer } => {
                let hash = argon2
                    .hash_password(password.as_bytes())
                    .map(|hash| hash.to_string())
                    .map_err(|error| anyhow::anyhow!("hashing a password: {error}"));
                let _ = answer.send(hash);
            }
            Job::Verify {
                password,
                hash,
                answer,
            } => {
                let matches = argon2
                    .verify_password(password.as_bytes(), hash.as_str())
                    .is_ok();
                let _ = answer.send(matches);
            }
        }
        metrics::gauge!("identity_password_hashes_running").decrement(1.0);
        gauge.running.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cheap() -> Params {
        Params::new(64, 1, 1, None).expect("valid")
    }

    #[tokio::test]
    async fn a_hash_verifies_its_password_only() {
        let hasher = Hasher::new(Limits {
            threads: 1,
            queue: 4,
        })
        .expect("started");
        let hash = hasher
            .hash("correct horse battery staple".to_owned())
            .await
            .expect("hashed");
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        let verify =
            |password: &str, hash: &str| hasher.verify(password.to_owned(), hash.to_owned());
        assert!(
            verify("correct horse battery staple", &hash)
                .await
                .expect("ran")
        );
        assert!(
            !verify("correct horse battery stapler", &hash)
                .await
                .expect("ran")
        );
        assert!(!verify("x", "not a hash").await.expect("ran"));
        assert!(!verify("x", DUMMY_HASH).await.expect("ran"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn no_more_hashes_run_at_once_than_there_are_threads() {
        let hasher = Hasher::with_params(
            Limits {
                threads: 2,
                queue: 64,
            },
            cheap(),
        )
        .expect("started");
        let hash = hasher.hash("secret".to_owned()).await.expect("hashed");
        let verifications = (0..64).map(|_| {
            let (hasher, hash) = (hasher.clone(), hash.clone());
            tokio::spawn(async move { hasher.verify("secret".to_owned(), hash).await })
        });
        for verification in verifications.collect::<Vec<_>>() {
            assert!(verification.await.expect("joined").expect("admitted"));
        }
        assert!(
            hasher.peak_concurrency() <= 2,
            "{}",
            hasher.peak_concurrency()
        );
        assert!(hasher.peak_concurrency() >= 1);
    }

    #[tokio::test]
    async fn a_full_queue_refuses_at_once_and_the_work_admitted_still_completes() {
        let hasher = Hasher::new(Limits {
            threads: 1,
            queue: 1,
        })
        .expect("started");
        let attempts = (0..16).map(|_| {
            let hasher = hasher.clone();
            tokio::spawn(async move {
                hasher
                    .verify("guess".to_owned(), DUMMY_HASH.to_owned())
                    .await
            })
        });
        let (mut answered, mut refused) = (0, 0);
        for attempt in attempts.collect::<Vec<_>>() {
            match attempt.await.expect("joined") {
                Ok(matches) => {
                    assert!(!matches);
                    answered += 1;
                }
                Err(HashError::Busy(Busy)) => refused += 1,
                Err(error) => panic!("{error:#}"),
            }
        }
        assert_eq!(answered + refused, 16);
        assert!(refused > 0, "a queue of one admitted all 16");
        assert!(answered >= 1);
        assert_eq!(hasher.peak_concurrency(), 1);
    }
}
