//! Unix-millisecond times as RFC 3339 text, for people and for tools that parse dates.
//!
//! Hand-written rather than a date crate: the engine only ever formats UTC instants, which is
//! arithmetic on whole days, and the calendar is the core's [`Date`].

use subnodesync_core::Date;

/// Milliseconds in a day.
const DAY_MS: u64 = 86_400_000;

/// 9999-12-31T23:59:59.999Z: RFC 3339 has four-digit years, so nothing later can be written.
const LATEST_MS: i64 = 253_402_300_799_999;

/// `unix_ms` as `YYYY-MM-DDTHH:MM:SS.mmmZ`. Times before 1970 (no engine records one) read as
/// 1970-01-01T00:00:00.000Z, times after the year 9999 as its last millisecond.
pub fn rfc3339(unix_ms: i64) -> String {
    // Clamped into range first, so it is not negative.
    let ms = u64::try_from(unix_ms.clamp(0, LATEST_MS)).unwrap_or(0);
    let Date { year, month, day } = Date::from_unix_days(ms / DAY_MS);
    let in_day = ms % DAY_MS;
    let (hours, minutes, seconds, millis) =
        (in_day / 3_600_000, in_day / 60_000 % 60, in_day / 1000 % 60, in_day % 1000);
    format!("{year:04}-{month:02}-{day:02}T{hours:02}:{minutes:02}:{seconds:02}.{millis:03}Z")
}

/// `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)` as Unix milliseconds.
pub(crate) fn parse_rfc3339(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    let num = |range: std::ops::Range<usize>| -> Option<i64> {
        let digits = b.get(range)?;
        digits.iter().try_fold(0i64, |n, d| d.is_ascii_digit().then(|| n * 10 + i64::from(d - b'0')))
    };
    let sep = |i: usize, c: u8| b.get(i).is_some_and(|x| *x == c || (c == b'T' && *x == b't'));
    if !(sep(4, b'-') && sep(7, b'-') && sep(10, b'T') && sep(13, b':') && sep(16, b':')) {
        return None;
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut i = 19;
    let mut millis = 0;
    if b.get(i) == Some(&b'.') {
        let digits = b.get(i + 1..)?.iter().take_while(|d| d.is_ascii_digit()).count();
        if digits == 0 {
            return None;
        }
        let first3 = num(i + 1..i + 1 + digits.min(3))?;
        millis = first3 * 10i64.pow(3 - u32::try_from(digits.min(3)).ok()?);
        i += 1 + digits;
    }
    let offset_min = match b.get(i..)? {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let m = num(i + 1..i + 3)? * 60 + num(i + 4..i + 6)?;
            if *sign == b'-' {
                -m
            } else {
                m
            }
        }
        _ => return None,
    };
    // Four digits, 1..=12 and 1..=31, checked above: every conversion succeeds.
    let date = Date { year: u64::try_from(year).ok()?, month: u8::try_from(month).ok()?, day: u8::try_from(day).ok()? };
    let seconds = date.to_unix_days()? * 86_400 + hour * 3600 + minute * 60 + second - offset_min * 60;
    Some(seconds * 1000 + millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1), "1970-01-01T00:00:00.001Z");
        assert_eq!(rfc3339(86_399_999), "1970-01-01T23:59:59.999Z");
        assert_eq!(rfc3339(68_169_600_000), "1972-02-29T00:00:00.000Z");
        assert_eq!(rfc3339(946_684_799_999), "1999-12-31T23:59:59.999Z");
        assert_eq!(rfc3339(946_684_800_000), "2000-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(rfc3339(951_868_800_000), "2000-03-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_709_164_800_000), "2024-02-29T00:00:00.000Z");
        assert_eq!(rfc3339(1_796_196_601_123), "2026-12-02T07:30:01.123Z");
        // One past the largest 32-bit time_t.
        assert_eq!(rfc3339(2_147_483_648_000), "2038-01-19T03:14:08.000Z");
        // 2100 is not a leap year: February 28th is followed by March 1st.
        assert_eq!(rfc3339(4_107_456_000_000), "2100-02-28T00:00:00.000Z");
        assert_eq!(rfc3339(4_107_542_400_000), "2100-03-01T00:00:00.000Z");
    }

    #[test]
    fn out_of_range_times_clamp_to_what_rfc_3339_can_write() {
        assert_eq!(rfc3339(-1), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(i64::MIN), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(LATEST_MS), "9999-12-31T23:59:59.999Z");
        assert_eq!(rfc3339(LATEST_MS + 1), "9999-12-31T23:59:59.999Z");
        assert_eq!(rfc3339(i64::MAX), "9999-12-31T23:59:59.999Z");
    }

    /// Every day from 1970 to 2500 against a calendar counted one day at a time.
    #[test]
    fn every_day_follows_the_one_before() {
        let leap = |y: u64| y.is_multiple_of(4) && (!y.is_multiple_of(100) || y.is_multiple_of(400));
        let (mut year, mut month, mut day) = (1970, 1, 1);
        for days in 0..(530 * 366) {
            let expected = format!("{year:04}-{month:02}-{day:02}T12:00:00.000Z");
            let noon = i64::try_from(days * DAY_MS + DAY_MS / 2).unwrap();
            assert_eq!(rfc3339(noon), expected, "day {days}");
            let length = match month {
                2 if leap(year) => 29,
                2 => 28,
                4 | 6 | 9 | 11 => 30,
                _ => 31,
            };
            day += 1;
            if day > length {
                (day, month) = (1, month + 1);
            }
            if month > 12 {
                (month, year) = (1, year + 1);
            }
        }
        assert!(year > 2500);
    }
    #[test]
    fn rfc3339_timestamps_read_as_unix_milliseconds() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339("2000-02-29T12:00:00.5Z"), Some(951_825_600_500));
        assert_eq!(parse_rfc3339("2024-01-01T12:00:00.123456Z"), Some(1_704_110_400_123));
        assert_eq!(parse_rfc3339("2024-01-01T14:00:00+02:00"), Some(1_704_110_400_000));
        assert_eq!(parse_rfc3339("2038-01-19T03:14:08Z"), Some(2_147_483_648_000));
        for bad in [
            "",
            "2024-01-01",
            "2024-13-01T00:00:00Z",
            "2024-01-01T00:00:00",
            "2024-01-01T00:00:00.Z",
            "x024-01-01T00:00:00Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn reading_what_was_written_gives_the_same_instant() {
        for ms in [0, 1, 951_782_400_000, 1_709_164_800_123, 4_102_444_800_000, 253_402_300_799_999] {
            assert_eq!(parse_rfc3339(&rfc3339(ms)), Some(ms), "{ms}");
        }
    }
}
