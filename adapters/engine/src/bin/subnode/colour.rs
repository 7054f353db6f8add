//! Whether output is coloured: the user's `NO_COLOR` and `CLICOLOR_FORCE`, then the terminal.

use std::ffi::OsString;
use std::io::IsTerminal as _;

/// Whether stdout may carry colour codes: never with `NO_COLOR` set and not empty
/// (<https://no-color.org>), always with `CLICOLOR_FORCE` set and not `0` (for a pager, or a test
/// that has no terminal), else only on a terminal. Cursor movement is not colour: a redraw goes
/// by the terminal alone.
pub(crate) fn on_stdout() -> bool {
    wanted(std::env::var_os("NO_COLOR"), std::env::var_os("CLICOLOR_FORCE"), std::io::stdout().is_terminal())
}

fn wanted(no_color: Option<OsString>, force: Option<OsString>, terminal: bool) -> bool {
    let set = |v: &Option<OsString>| v.as_ref().is_some_and(|v| !v.is_empty());
    if set(&no_color) {
        false
    } else if set(&force) && force.as_deref() != Some("0".as_ref()) {
        true
    } else {
        terminal
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_color_wins_then_clicolor_force_then_the_terminal() {
        let v = |s: &str| Some(OsString::from(s));
        assert!(wanted(None, None, true));
        assert!(!wanted(None, None, false));
        assert!(!wanted(v("1"), None, true));
        assert!(!wanted(v("1"), v("1"), true), "NO_COLOR wins over CLICOLOR_FORCE");
        assert!(wanted(v(""), None, true), "an empty NO_COLOR is not set");
        assert!(wanted(None, v("1"), false));
        assert!(!wanted(None, v("0"), false));
        assert!(!wanted(None, v(""), false));
    }
}
