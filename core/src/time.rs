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
//!
//! [`Date`] is the calendar behind [`Timestamp`], public so that adapters which write or read
//! dates count days the same way instead of keeping a copy.

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
    let Date { year, month, day } = Date::from_unix_days(unix_secs / 86_400);
    // Every value below is < 100 (the year < 10000), so each digit cast is exact.
    let two = |v: u64| [b'0' + (v / 10) as u8, b'0' + (v % 10) as u8];
    let [y0, y1] = two(year / 100);
    let [y2, y3] = two(year % 100);
    let [mo0, mo1] = two(month.into());
    let [d0, d1] = two(day.into());
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

/// Days from 0000-03-01 to 1970-01-01: counting from a March 1st puts the leap day last in the year.
const EPOCH_FROM_MARCH_0000: u64 = 719_468;

/// Days in a 400-year era of the Gregorian calendar.
const ERA_DAYS: u64 = 146_097;

/// A day of the proleptic Gregorian calendar; `Ord` is chronological for valid dates.
///
/// The conversions are Howard Hinnant's `civil_from_days` and `days_from_civil`: arithmetic on
/// 400-year eras counted from 0000-03-01, no tables, no allocation, and no panic on any input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Date {
    /// The year, e.g. 2024.
    pub year: u64,
    /// The month, 1 (January) to 12.
    pub month: u8,
    /// The day of the month, 1 to 31.
    pub day: u8,
}

impl Date {
    /// The date `days` after 1970-01-01. Every `u64` has one; the year is at most about 5 × 10^16.
    pub const fn from_unix_days(days: u64) -> Self {
        // Whole eras first: shifting the epoch to 0000-03-01 then cannot overflow.
        let shifted = days % ERA_DAYS + EPOCH_FROM_MARCH_0000;
        let era = days / ERA_DAYS + shifted / ERA_DAYS;
        let day_of_era = shifted % ERA_DAYS;
        // Every 4th year of an era is a leap year, except every 100th, except the 400th (its
        // last day, which the last term takes back).
        let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / (ERA_DAYS - 1)) / 365;
        let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
        // Months from March: their lengths repeat 31, 30, 31, 30, 31 (153 days every five months).
        let month_from_march = (5 * day_of_year + 2) / 153;
        // Both casts are exact: the day is 1..=31 and the month 1..=12.
        let day = (day_of_year - (153 * month_from_march + 2) / 5 + 1) as u8;
        let (month, next_year) =
            if month_from_march < 10 { (month_from_march + 3, 0) } else { (month_from_march - 9, 1) };
        Self { year: era * 400 + year_of_era + next_year, month: month as u8, day }
    }

    /// Days from 1970-01-01 to this date, negative before it; the inverse of [`Self::from_unix_days`].
    ///
    /// A day past the end of its month counts on into the next (February 30th is March 1st or
    /// 2nd), as lenient date parsers read it. `None` if the month is not 1 to 12, the day not 1
    /// to 31, or the count does not fit an `i64` (years past about 2.5 × 10^16).
    pub const fn to_unix_days(self) -> Option<i64> {
        if self.month < 1 || self.month > 12 || self.day < 1 || self.day > 31 {
            return None;
        }
        // Signed, and wide enough for any u64 year times 366 days: nothing below overflows, and
        // January and February of year 0 fall in the era before 0000-03-01 (year -1 from March).
        let (month, day) = (self.month as i128, self.day as i128);
        let year_from_march = self.year as i128 - (month <= 2) as i128;
        let era = year_from_march.div_euclid(400);
        let year_of_era = year_from_march.rem_euclid(400);
        let month_from_march = if month > 2 { month - 3 } else { month + 9 };
        let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
        let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
        let days = era * ERA_DAYS as i128 + day_of_era - EPOCH_FROM_MARCH_0000 as i128;
        if days < i64::MIN as i128 || days > i64::MAX as i128 {
            return None;
        }
        Some(days as i64)
    }
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

    fn civil_from_days(days: u64) -> (u64, u64, u64) {
        let Date { year, month, day } = Date::from_unix_days(days);
        (year, month.into(), day.into())
    }

    fn date(year: u64, month: u8, day: u8) -> Date {
        Date { year, month, day }
    }

    fn is_leap(year: u64) -> bool {
        year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400))
    }

    fn days_in_month(year: u64, month: u8) -> u8 {
        match month {
            2 if is_leap(year) => 29,
            2 => 28,
            4 | 6 | 9 | 11 => 30,
            _ => 31,
        }
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
    fn known_dates_convert_both_ways() {
        for (days, expected) in [
            (0, date(1970, 1, 1)),
            (11_016, date(2000, 2, 29)),
            (11_017, date(2000, 3, 1)),
            (19_782, date(2024, 2, 29)),
            (24_855, date(2038, 1, 19)),
            (47_540, date(2100, 2, 28)),
            (47_541, date(2100, 3, 1)),
            (2_932_896, date(9999, 12, 31)),
            (2_932_897, date(10_000, 1, 1)),
        ] {
            assert_eq!(Date::from_unix_days(days), expected, "day {days}");
            assert_eq!(expected.to_unix_days(), i64::try_from(days).ok(), "{expected:?}");
        }
        assert_eq!(date(1969, 12, 31).to_unix_days(), Some(-1));
        assert_eq!(date(0, 3, 1).to_unix_days(), Some(-719_468));
        assert_eq!(date(0, 2, 29).to_unix_days(), Some(-719_469));
        assert_eq!(date(0, 1, 1).to_unix_days(), Some(-719_528));
    }

    #[test]
    fn days_and_dates_round_trip_over_eight_thousand_years() {
        for days in 0..=3_000_000 {
            let date = Date::from_unix_days(days);
            assert!((1..=12).contains(&date.month), "{date:?}");
            assert!((1..=days_in_month(date.year, date.month)).contains(&date.day), "{date:?}");
            assert_eq!(date.to_unix_days(), i64::try_from(days).ok(), "{date:?}");
        }
    }

    /// Every date from year 0 to 1970 against a calendar counted one day at a time.
    #[test]
    fn dates_before_1970_count_up_to_day_zero() {
        let (mut year, mut month, mut day) = (0, 1, 1);
        let mut expected = -719_528;
        while (year, month, day) != (1970, 1, 2) {
            assert_eq!(date(year, month, day).to_unix_days(), Some(expected), "{:?}", (year, month, day));
            expected += 1;
            day += 1;
            if day > days_in_month(year, month) {
                (day, month) = (1, month + 1);
            }
            if month > 12 {
                (month, year) = (1, year + 1);
            }
        }
        assert_eq!(expected, 1);
    }

    #[test]
    fn days_past_the_end_of_a_month_count_on_into_the_next() {
        assert_eq!(date(2024, 2, 30).to_unix_days(), date(2024, 3, 1).to_unix_days());
        assert_eq!(date(2023, 2, 31).to_unix_days(), date(2023, 3, 3).to_unix_days());
        assert_eq!(date(2024, 4, 31).to_unix_days(), date(2024, 5, 1).to_unix_days());
    }

    #[test]
    fn impossible_fields_and_out_of_range_counts_give_none() {
        for bad in [date(2024, 0, 1), date(2024, 13, 1), date(2024, 1, 0), date(2024, 1, 32), date(u64::MAX, 12, 31)] {
            assert_eq!(bad.to_unix_days(), None, "{bad:?}");
        }
        let last = Date::from_unix_days(i64::MAX.unsigned_abs());
        assert_eq!(last.to_unix_days(), Some(i64::MAX));
        assert_eq!(Date::from_unix_days(i64::MAX.unsigned_abs() + 1).to_unix_days(), None);
        assert_eq!(Date::from_unix_days(u64::MAX).to_unix_days(), None);
    }

    proptest::proptest! {
        #[test]
        fn any_day_converts_without_panicking_and_round_trips_within_i64(days in proptest::prelude::any::<u64>()) {
            let date = Date::from_unix_days(days);
            proptest::prop_assert!((1..=12).contains(&date.month));
            proptest::prop_assert!((1..=days_in_month(date.year, date.month)).contains(&date.day));
            proptest::prop_assert_eq!(date.to_unix_days(), i64::try_from(days).ok());
        }

        #[test]
        fn any_fields_convert_without_panicking_and_valid_dates_round_trip(
            year in proptest::prop_oneof![0u64..20_000, proptest::prelude::any::<u64>()],
            month in 0u8..=14,
            day in 0u8..=33,
        ) {
            let date = date(year, month, day);
            let fields_in_range = (1..=12).contains(&month) && (1..=31).contains(&day);
            let valid = fields_in_range && day <= days_in_month(year, month);
            match date.to_unix_days() {
                Some(days) if valid => match u64::try_from(days) {
                    Ok(days) => proptest::prop_assert_eq!(Date::from_unix_days(days), date),
                    Err(_) => proptest::prop_assert!(year < 1970),
                },
                // Lenient: only the last days of a short month count on into the next.
                Some(_) => proptest::prop_assert!(fields_in_range && day > 28),
                None => proptest::prop_assert!(!fields_in_range || year > 25_000_000_000_000_000),
            }
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
