//! One process sampler for every node in the process.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use crate::{ProcessSampler, Sample};

/// The process's metrics, sampled at most once per `max_age` however many nodes the process
/// runs.
///
/// Every node of one process reports the same process (its CPU, memory and threads), so one
/// sample serves them all: a thousand nodes with one heartbeat a second cost one `/proc` read a
/// second, not a thousand hand-offs to blocking threads. A node asks [`latest`](Self::latest)
/// on the runtime (it never blocks there); when the sample is too old, the first node to notice
/// gets a [`Refresh`] to run on a blocking thread, and everyone keeps using the previous sample
/// until the new one is in.
#[derive(Debug, Default)]
pub struct SharedSampler {
    /// Held only while a sample is taken, on a blocking thread.
    sampler: Mutex<ProcessSampler>,
    /// Held only to copy the sample in or out, so the runtime never waits on `/proc`.
    latest: Mutex<Option<(Sample, Instant)>>,
    /// A [`Refresh`] is out: nobody else is handed one.
    refreshing: AtomicBool,
}

/// The right to take the next sample; run it where blocking is allowed.
#[derive(Debug)]
#[must_use = "a refresh that is never run leaves the sample stale until it is dropped"]
pub struct Refresh<'a> {
    shared: &'a SharedSampler,
}

impl SharedSampler {
    /// The sampler of this process, created on first use.
    pub fn global() -> &'static SharedSampler {
        static GLOBAL: OnceLock<SharedSampler> = OnceLock::new();
        GLOBAL.get_or_init(SharedSampler::default)
    }

    /// The latest sample (`None` before the first), and a [`Refresh`] when it is missing or
    /// older than `max_age` and no other caller is already refreshing it. Never blocks on a
    /// sample being taken.
    pub fn latest(&self, max_age: Duration) -> (Option<Sample>, Option<Refresh<'_>>) {
        let latest = *self.latest.lock().unwrap_or_else(PoisonError::into_inner);
        let stale = latest.is_none_or(|(_, at)| at.elapsed() >= max_age);
        // `then`, not `then_some`: a Refresh made and dropped here would clear the flag.
        let refresh = (stale && !self.refreshing.swap(true, Ordering::AcqRel)).then(|| Refresh { shared: self });
        (latest.map(|(sample, _)| sample), refresh)
    }

    /// The latest sample no older than `max_age`, taking one if needed. Blocks: call it where
    /// blocking is allowed, e.g. for a node's first heartbeat before any sample exists.
    pub fn sample(&self, max_age: Duration) -> Sample {
        let mut sampler = self.sampler.lock().unwrap_or_else(PoisonError::into_inner);
        // Whoever held the sampler before may have just taken a fresh sample.
        if let Some((sample, at)) = *self.latest.lock().unwrap_or_else(PoisonError::into_inner) {
            if at.elapsed() < max_age {
                return sample;
            }
        }
        let sample = sampler.sample();
        *self.latest.lock().unwrap_or_else(PoisonError::into_inner) = Some((sample, Instant::now()));
        sample
    }
}

impl Refresh<'_> {
    /// Takes a new sample and makes it the latest. Blocks (see [`ProcessSampler::sample`]).
    pub fn run(self) -> Sample {
        self.shared.sample(Duration::ZERO)
    }
}

impl Drop for Refresh<'_> {
    fn drop(&mut self) {
        self.shared.refreshing.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_refresh_at_a_time_and_none_while_fresh() {
        let shared = SharedSampler::default();
        let (sample, first) = shared.latest(Duration::from_secs(60));
        assert_eq!(sample, None);
        let first = first.expect("no sample yet: the first caller refreshes");
        for _ in 0..2 {
            assert!(shared.latest(Duration::from_secs(60)).1.is_none(), "a second refresh while one is out");
        }
        let taken = first.run();
        assert!(taken.memory_mb > 0 || cfg!(not(target_os = "linux")), "a real sample of this process");
        let (latest, refresh) = shared.latest(Duration::from_secs(60));
        assert_eq!(latest, Some(taken));
        assert!(refresh.is_none(), "fresh samples need no refresh");
        let (latest, refresh) = shared.latest(Duration::ZERO);
        assert_eq!(latest, Some(taken), "the stale sample still serves until the new one is in");
        assert!(refresh.is_some(), "a stale sample is refreshed");
    }

    #[test]
    fn a_dropped_refresh_lets_the_next_caller_refresh() {
        let shared = SharedSampler::default();
        drop(shared.latest(Duration::ZERO).1.expect("first refresh"));
        assert!(shared.latest(Duration::ZERO).1.is_some());
    }

    #[test]
    fn sample_reuses_a_fresh_sample() {
        let shared = SharedSampler::default();
        let first = shared.sample(Duration::from_secs(60));
        assert_eq!(shared.sample(Duration::from_secs(60)), first);
    }
}
