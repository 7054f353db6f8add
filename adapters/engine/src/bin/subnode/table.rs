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
    let rows: Vec<[String; 8]> = list
        .iter()
        .map(|i| {
            [
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
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let line = |out: &mut String, cells: &[&str], status: Option<Status>| {
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            let pad = w.saturating_sub(cell.chars().count());
            match status.filter(|_| coloured && i == 2) {
                Some(s) => {
                    let _ = write!(out, "{}{cell}\x1b[0m{:pad$}  ", colour(s), "");
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
    line(&mut out, &header, None);
    for (row, i) in rows.iter().zip(list) {
        let cells: Vec<&str> = row.iter().map(String::as_str).collect();
        line(&mut out, &cells, Some(i.status));
    }
    if list.is_empty() {
        out.push_str("(no instances)\n");
    }
    out
}
