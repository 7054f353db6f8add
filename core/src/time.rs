//! Time, always handed in by the caller.
//!
//! Deadlines use [`Instant`] and [`Duration`] from `embassy-time`: plain `u64` ticks that the
//! core only adds and compares. The core never calls `Instant::now()`, so it links without an
//! embassy time driver, and an embassy adapter hands its timer values over unconverted; a std
//! adapter maps its own clock onto ticks in one function.
//!
//! Message timestamps need UTC. The caller anchors the monotonic clock to UTC with
//! [`Node::set_wall_clock`](crate::Node::set_wall_clock) whenever it knows the time (at start on
//! a server, after SNTP on a device). Until then a timestamp is the Unix epoch plus the caller's
//! `Instant` (the time since boot, on a device whose clock starts at boot): obviously not a real
//! date, still ordered, and still valid RFC 3339.

use core::cell::Cell;
use core::fmt;

pub use embassy_time::{Duration, Instant};

/// The latest timestamp we format: 9999-12-31T23:59:59Z, the end of four-digit years.
const MAX_UNIX_SECS: u64 = 253_402_300_799;

/// A UTC time with second precision, serialized as RFC 3339 `YYYY-MM-DDTHH:MM:SSZ`.
///
/// It carries its text, formatted once: the node's clock hands out the same timestamp for every
/// message within a second, so a busy node formats a date once a second, not once a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timestamp {
    unix_secs: u64,
    text: [u8; 20],
}

impl Default for Timestamp {
    fn default() -> Self {
        Self::from_unix_secs(0)
    }
}

impl Timestamp {
    /// The timestamp `unix_secs` seconds after 1970-01-01T00:00:00Z, clamped to year 9999.
    pub fn from_unix_secs(unix_secs: u64) -> Self {
        let unix_secs = unix_secs.min(MAX_UNIX_SECS);
        Self { unix_secs, text: format_rfc3339(unix_secs) }
    }

    /// Seconds since the Unix epoch.
    pub const fn unix_secs(self) -> u64 {
        self.unix_secs
    }

    /// The 20 ASCII bytes of the RFC 3339 form, e.g. `2024-01-01T12:00:00Z`.
    pub fn to_rfc3339(self) -> [u8; 20] {
        self.text
    }
}

fn format_rfc3339(unix_secs: u64) -> [u8; 20] {
    let secs_of_day = unix_secs % 86_400;
    let (year, month, day) = civil_from_days(unix_secs / 86_400);
    // Every value below is < 100 (the year < 10000), so each digit cast is exact.
    let two = |v: u64| [b'0' + (v / 10) as u8, b'0' + (v % 10) as u8];
    let [y0, y1] = two(year / 100);
    let [y2, y3] = two(year % 100);
    let [mo0, mo1] = two(month);
    let [d0, d1] = two(day);
    let [h0, h1] = two(secs_of_day / 3600);
    let [mi0, mi1] = two(secs_of_day / 60 % 60);
    let [s0, s1] = two(secs_of_day % 60);
    [y0, y1, y2, y3, b'-', mo0, mo1, b'-', d0, d1, b'T', h0, h1, b':', mi0, mi1, b':', s0, s1, b'Z']
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bytes = self.to_rfc3339();
        // Only ASCII digits and separators are ever written above.
        f.write_str(core::str::from_utf8(&bytes).map_err(|_| fmt::Error)?)
    }
}

/// Converts days since 1970-01-01 into (year, month, day) in the proleptic Gregorian calendar.
///
/// Howard Hinnant's `civil_from_days`, restricted to non-negative days so it needs no signed
/// arithmetic.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    // Shift the epoch to 0000-03-01 so leap days fall at the end of each 400-year era.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// Maps the caller's monotonic clock onto UTC.
#[derive(Debug, Clone, Default)]
pub(crate) struct WallClock {
    /// A monotonic instant and the Unix time in microseconds at that instant.
    anchor: Option<(Instant, u64)>,
    /// The last timestamp handed out, reused while the second lasts.
    last: Cell<Timestamp>,
}

impl WallClock {
    /// Records that `now` is `unix_micros` after the epoch.
    pub(crate) fn set(&mut self, now: Instant, unix_micros: u64) {
        self.anchor = Some((now, unix_micros));
    }

    /// The UTC time at `at`, or uptime since the epoch when no anchor was ever set.
    pub(crate) fn at(&self, at: Instant) -> Timestamp {
        let micros = match self.anchor {
            None => at.as_micros(),
            Some((base, unix)) if at >= base => unix.saturating_add(at.saturating_duration_since(base).as_micros()),
            Some((base, unix)) => unix.saturating_sub(base.saturating_duration_since(at).as_micros()),
        };
        let secs = (micros / 1_000_000).min(MAX_UNIX_SECS);
        let last = self.last.get();
        if last.unix_secs == secs {
            return last;
        }
        let fresh = Timestamp::from_unix_secs(secs);
        self.last.set(fresh);
        fresh
    }
}

/// `at + d`, saturating at the end of time: a deadline that far away simply never fires.
pub(crate) fn later(at: Instant, d: Duration) -> Instant {
    at.saturating_add(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fmt(secs: u64) -> [u8; 20] {
        Timestamp::from_unix_secs(secs).to_rfc3339()
    }

    #[test]
    fn formats_the_epoch_and_known_dates() {
        assert_eq!(&fmt(0), b"1970-01-01T00:00:00Z");
        assert_eq!(&fmt(1_704_110_400), b"2024-01-01T12:00:00Z");
        assert_eq!(&fmt(951_782_400), b"2000-02-29T00:00:00Z");
        assert_eq!(&fmt(4_107_542_399), b"2100-02-28T23:59:59Z");
        assert_eq!(&fmt(u64::MAX), b"9999-12-31T23:59:59Z");
    }

    #[test]
    fn every_day_follows_the_previous_one_from_1970_to_2100() {
        let mut previous = civil_from_days(0);
        for days in 1..47_482 {
            let (y, m, d) = civil_from_days(days);
            let (py, pm, pd) = previous;
            let next_day = (y, m, d) == (py, pm, pd + 1);
            let next_month = (y, m, d) == (py, pm + 1, 1);
            let next_year = (y, m, d) == (py + 1, 1, 1) && (pm, pd) == (12, 31);
            assert!(next_day || next_month || next_year, "{previous:?} -> {:?}", (y, m, d));
            previous = (y, m, d);
        }
    }

    #[test]
    fn wall_clock_without_anchor_counts_uptime_from_the_epoch() {
        let clock = WallClock::default();
        assert_eq!(&clock.at(Instant::from_secs(3661)).to_rfc3339(), b"1970-01-01T01:01:01Z");
    }

    #[test]
    fn wall_clock_follows_the_monotonic_clock_both_ways_from_its_anchor() {
        let mut clock = WallClock::default();
        clock.set(Instant::from_secs(100), 1_704_110_400_000_000);
        assert_eq!(&clock.at(Instant::from_secs(130)).to_rfc3339(), b"2024-01-01T12:00:30Z");
        assert_eq!(&clock.at(Instant::from_secs(40)).to_rfc3339(), b"2024-01-01T11:59:00Z");
    }
}
