//! Text from the wire, made safe to print on a terminal.

use std::fmt;

/// Shows the text as it is, except for what a terminal would act on instead of show: C0 controls
/// (newline and tab included, so one field cannot fake another line), DEL, C1 controls (ESC and
/// CSI start colour changes, cursor moves and screen clears) and the bidirectional overrides
/// (which reorder what is shown). Each comes out as a visible `\u{..}` escape. JSON output never
/// goes through this: it is exact, and JSON escapes controls itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Printable<'a>(pub &'a str);

impl fmt::Display for Printable<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        while let Some((at, c)) = rest.char_indices().find(|&(_, c)| needs_escape(c)) {
            f.write_str(&rest[..at])?;
            write!(f, "\\u{{{:x}}}", u32::from(c))?;
            rest = &rest[at + c.len_utf8()..];
        }
        f.write_str(rest)
    }
}

/// Control characters and the characters that reorder text on screen.
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{61c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `text` made printable, as an owned string (for table cells, whose width is measured).
pub fn printable(text: &str) -> String {
    Printable(text).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_controls_show_as_escapes_and_everything_else_as_it_is() {
        assert_eq!(printable("v1.2 ✓ café"), "v1.2 ✓ café");
        assert_eq!(printable("\u{1b}[2J\u{1b}]0;pwned\u{7}"), r"\u{1b}[2J\u{1b}]0;pwned\u{7}");
        assert_eq!(printable("a\nb\tc\rd"), r"a\u{a}b\u{9}c\u{d}d");
        assert_eq!(printable("del\u{7f} csi\u{9b}31m"), r"del\u{7f} csi\u{9b}31m");
        assert_eq!(printable("abc\u{202e}fed"), r"abc\u{202e}fed");
        assert_eq!(printable("x\u{61c}y"), r"x\u{61c}y");
        assert_eq!(printable(""), "");
    }
}
