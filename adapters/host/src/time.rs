//! The one place where the runtime's clock meets the core's.
//!
//! The core counts `Instant` ticks (microseconds) from an arbitrary origin and never reads a
//! clock. Here that origin is the moment the node task started: [`Clock::now`] is the time
//! since then, and [`Clock::to_runtime`] maps a core deadline back onto the runtime's clock so
//! the node can sleep until it. Durations cross in [`to_core`] and [`to_std`].

use std::marker::PhantomData;
use std::sync::OnceLock;
use std::time::{Duration as StdDuration, Instant as StdInstant, SystemTime, UNIX_EPOCH};

use subnodesync_core::{Backoff, Duration, Instant, Rng};

use crate::runtime::Runtime;

/// How late a node may wake for a deadline, so that the nodes of one process wake together.
///
/// Every deadline is rounded up to a process-wide grid of this step: a thousand nodes with a
/// heartbeat a second then cost a worker about `1 s / TIMER_SLACK` wake-ups, each serving many
/// nodes, instead of one wake-up (and a thread parked and unparked) per node. Nothing the core
/// times is that precise: heartbeats, keep-alive, retransmission and backoff are all seconds.
pub(crate) const TIMER_SLACK: StdDuration = StdDuration::from_millis(50);

/// A deadline so far away it never fires (tokio caps sleeps at about two years anyway).
const FAR_FUTURE: StdDuration = StdDuration::from_secs(86_400 * 365);

/// Maps the runtime's instants onto core instants, measured from an epoch captured at start.
#[derive(Debug)]
pub(crate) struct Clock<R> {
    epoch: StdInstant,
    runtime: PhantomData<fn() -> R>,
}

impl<R> Clone for Clock<R> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<R> Copy for Clock<R> {}

impl<R: Runtime> Clock<R> {
    /// A clock whose core time 0 is now.
    pub(crate) fn start() -> Self {
        Self { epoch: R::now(), runtime: PhantomData }
    }

    /// The core's `now`.
    pub(crate) fn now(self) -> Instant {
        self.to_core(R::now())
    }
}

impl<R> Clock<R> {
    /// A runtime instant as core time (instants before the epoch clamp to 0).
    pub(crate) fn to_core(self, at: StdInstant) -> Instant {
        Instant::from_micros(saturating_micros(at.saturating_duration_since(self.epoch)))
    }

    /// When to wake for the core deadline `at`: on the runtime's clock, rounded up to the
    /// process's [`TIMER_SLACK`] grid.
    pub(crate) fn wake_at(self, at: Instant) -> StdInstant {
        let exact = self.to_runtime(at);
        let anchor = *GRID.get_or_init(|| self.epoch);
        let since = exact.saturating_duration_since(anchor);
        let steps = since.as_nanos().div_ceil(TIMER_SLACK.as_nanos());
        u32::try_from(steps).ok().and_then(|steps| anchor.checked_add(TIMER_SLACK * steps)).unwrap_or(exact)
    }

    /// A core instant on the runtime's clock; one beyond what it can represent is "far away".
    pub(crate) fn to_runtime(self, at: Instant) -> StdInstant {
        self.epoch
            .checked_add(StdDuration::from_micros(at.as_micros()))
            .or_else(|| self.epoch.checked_add(FAR_FUTURE))
            .unwrap_or(self.epoch)
    }
}

/// The origin of the wake-up grid: the first node's start, shared by every node of the process.
static GRID: OnceLock<StdInstant> = OnceLock::new();

/// The core's full-jitter backoff in std time, with its own seeded jitter: for the retries made
/// outside the core (HTTP registration, an engine's broker connection), so they spread out as
/// the nodes' reconnects do.
#[derive(Debug, Clone)]
pub struct RetryDelays {
    backoff: Backoff,
    rng: Rng,
}

impl RetryDelays {
    /// Delays from `min` growing to at most `max`; `seed` decorrelates processes.
    pub fn new(min: StdDuration, max: StdDuration, seed: u64) -> Self {
        Self { backoff: Backoff::new(to_core(min), to_core(max)), rng: Rng::new(seed) }
    }

    /// The next delay to wait before retrying.
    pub fn next_delay(&mut self) -> StdDuration {
        to_std(self.backoff.delay_from(self.rng.next_u64()))
    }

    /// Starts the delays over (after a success that held).
    pub fn reset(&mut self) {
        self.backoff.reset();
    }
}

/// A std duration as a core duration, saturating at the core's maximum.
pub(crate) fn to_core(d: StdDuration) -> Duration {
    Duration::from_micros(saturating_micros(d))
}

/// A core duration as a std duration.
pub(crate) fn to_std(d: Duration) -> StdDuration {
    StdDuration::from_micros(d.as_micros())
}

/// Microseconds since the Unix epoch, for `Node::set_wall_clock`.
pub(crate) fn unix_micros() -> u64 {
    // A system clock set before 1970 is treated as 1970: timestamps stay valid RFC 3339.
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, saturating_micros)
}

fn saturating_micros(d: StdDuration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A clock whose epoch is now, without a runtime.
    fn clock() -> Clock<()> {
        Clock { epoch: StdInstant::now(), runtime: PhantomData }
    }

    #[test]
    fn core_and_runtime_instants_round_trip_to_the_microsecond() {
        let clock = clock();
        let at = Instant::from_micros(1_234_567);
        assert_eq!(clock.to_core(clock.to_runtime(at)), at);
        assert_eq!(to_core(StdDuration::from_millis(1500)), Duration::from_millis(1500));
        assert_eq!(to_std(Duration::from_secs(30)), StdDuration::from_secs(30));
    }

    #[test]
    fn wake_ups_fall_on_one_grid_no_earlier_and_at_most_one_step_late() {
        let (a, b) = (clock(), clock());
        let _ = a.wake_at(Instant::from_micros(0));
        let grid = *GRID.get().expect("the first wake_at sets the grid");
        for micros in [0, 1, 49_999, 50_000, 50_001, 1_234_567] {
            for clock in [a, b] {
                let at = Instant::from_micros(micros);
                let exact = clock.to_runtime(at);
                let wake = clock.wake_at(at);
                assert!(wake >= exact && wake - exact < TIMER_SLACK, "{micros} µs woke {:?} late", wake - exact);
                assert_eq!((wake - grid).as_nanos() % TIMER_SLACK.as_nanos(), 0, "off the grid");
            }
        }
    }

    #[test]
    fn a_deadline_at_the_end_of_time_is_merely_far_away() {
        let clock = clock();
        assert!(clock.to_runtime(Instant::MAX) > StdInstant::now() + StdDuration::from_secs(86_400));
    }
}
