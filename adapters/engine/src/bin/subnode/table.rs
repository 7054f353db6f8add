//! Terminal output: the instance table and time formatting.

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use subnodesync_engine::{printable, rfc3339, Instance, Status};

/// Unix milliseconds now.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// `HH:MM:SS` UTC now: the time part of the RFC 3339 timestamp, to the second.
pub(crate) fn clock() -> String {
    rfc3339(now_ms())[11..19].to_owned()
}

/// `3d4h`, `2h5m`, `4m10s`, `12s`.
pub(crate) fn span(secs: u64) -> String {
    match secs {
        s if s >= 86_400 => format!("{}d{}h", s / 86_400, s % 86_400 / 3600),
        s if s >= 3600 => format!("{}h{}m", s / 3600, s % 3600 / 60),
        s if s >= 60 => format!("{}m{}s", s / 60, s % 60),
        s => format!("{s}s"),
    }
}

fn colour(status: Status) -> &'static str {
    match status {
        Status::Online => "\x1b[32m",
        Status::Missing => "\x1b[33m",
        Status::Lost => "\x1b[31m",
        Status::Offline => "\x1b[90m",
    }
}

/// The registry as an aligned table, statuses in colour if `coloured`; `now` dates the heartbeat
/// ages.
pub(crate) fn instances(list: &[Instance], now: i64, coloured: bool) -> String {
    let header = ["INSTANCE", "NODE", "STATUS", "VERSION", "UPTIME", "CPU", "MEM", "LAST HB"];
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|i| {
            vec![
                printable(&i.instance_id),
                printable(&i.node_name),
                i.status.to_string(),
                printable(&i.version),
                i.uptime.map_or_else(|| "-".into(), span),
                i.cpu_centipercent.map_or_else(|| "-".into(), |c| format!("{}.{:02}%", c / 100, c % 100)),
                i.memory_mb.map_or_else(|| "-".into(), |m| format!("{m} MiB")),
                i.last_heartbeat_ms.map_or_else(
                    || "never".into(),
                    |t| format!("{} ago", span(u64::try_from(now.saturating_sub(t) / 1000).unwrap_or(0))),
                ),
            ]
        })
        .collect();
    let tint = |row: usize, column: usize| list.get(row).filter(|_| coloured && column == 2).map(|i| colour(i.status));
    let mut out = aligned(&header, &rows, tint);
    if list.is_empty() {
        out.push_str("(no instances)\n");
    }
    out
}

/// `header` and `rows` in aligned columns two spaces apart, each cell in the colour `tint(row,
/// column)` gives (an escape sequence), if any.
pub(crate) fn aligned(
    header: &[&str],
    rows: &[Vec<String>],
    tint: impl Fn(usize, usize) -> Option<&'static str>,
) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>, row: Option<usize>| {
        for (column, (cell, w)) in cells.zip(&widths).enumerate() {
            let pad = w.saturating_sub(cell.chars().count());
            match row.and_then(|r| tint(r, column)) {
                Some(colour) => {
                    let _ = write!(out, "{colour}{cell}\x1b[0m{:pad$}  ", "");
                }
                None => {
                    let _ = write!(out, "{cell}{:pad$}  ", "");
                }
            }
        }
        let trimmed = out.trim_end_matches(' ').len();
        out.truncate(trimmed);
        out.push('\n');
    };
    line(&mut header.iter().copied(), None);
    for (r, row) in rows.iter().enumerate() {
        line(&mut row.iter().map(String::as_str), Some(r));
    }
    out
}
