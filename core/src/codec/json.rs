//! JSON without an allocator: a zero-copy scanner for what we read, a writer for what we send.
//!
//! Control `parameters` and result `data` are arbitrary JSON chosen by the engine and the
//! application. Without an allocator they cannot become a map, so the core validates them here
//! (strict RFC 8259, bounded nesting, no recursion) and hands out borrowed [`RawJson`] slices.
//! Typed reads of one value go through `serde-json-core` ([`RawJson::deserialize`]).
//!
//! Outgoing payloads have fixed shapes, so [`Writer`] writes them straight into the caller's
//! buffer: keys are byte literals and strings are copied in runs between the rare characters
//! that need escaping. That is several times faster than a generic serializer writing one
//! character at a time, on the path every heartbeat and result takes.

use serde::Deserialize;

use crate::error::{EncodeError, JsonError, Unfit};
use crate::time::Timestamp;

/// Deepest nesting of objects and arrays accepted; the scanner tracks it in a `u64` bitset.
pub const MAX_DEPTH: u32 = 32;

/// One complete, valid JSON value, borrowed as text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawJson<'a>(&'a str);

impl<'a> RawJson<'a> {
    /// Validates that `text` holds exactly one JSON value (surrounding whitespace allowed).
    pub fn parse(text: &'a [u8]) -> Result<Self, JsonError> {
        let text = core::str::from_utf8(text).map_err(|e| JsonError::Syntax(e.valid_up_to()))?;
        let bytes = text.as_bytes();
        let start = skip_ws(bytes, 0);
        let end = value_end(bytes, start)?;
        if skip_ws(bytes, end) != bytes.len() {
            return Err(JsonError::Syntax(end));
        }
        Ok(Self(text.get(start..end).unwrap_or_default()))
    }

    /// The JSON text of the value.
    pub fn as_str(&self) -> &'a str {
        self.0
    }

    /// The contents of a JSON string, still escaped as on the wire; `None` for other types.
    pub fn as_escaped_str(&self) -> Option<&'a str> {
        self.0.strip_prefix('"')?.strip_suffix('"')
    }

    /// The value as an object, or `None` for other types.
    pub fn as_object(&self) -> Option<Object<'a>> {
        self.0.starts_with('{').then_some(Object(*self))
    }

    /// Reads the value as `T` with `serde-json-core`; `None` if it is not a `T`.
    pub fn deserialize<T: Deserialize<'a>>(&self) -> Option<T> {
        serde_json_core::from_str::<T>(self.0).ok().map(|(value, _)| value)
    }
}

/// The string a JSON string's escaped contents mean (`a\"b\u00e9` → `a"bé`), written out by
/// `Display` without allocating. Escapes that mean nothing (a lone surrogate, a broken `\u`)
/// come out as U+FFFD, so text from the wire always displays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unescaped<'a>(pub &'a str);

impl core::fmt::Display for Unescaped<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        use core::fmt::Write as _;
        let mut rest = self.0;
        while let Some(at) = rest.find('\\') {
            f.write_str(rest.get(..at).unwrap_or_default())?;
            let escape = rest.get(at + 1..).unwrap_or_default();
            let mut chars = escape.chars();
            let (c, used) = match chars.next() {
                Some('b') => ('\u{8}', 1),
                Some('f') => ('\u{c}', 1),
                Some('n') => ('\n', 1),
                Some('r') => ('\r', 1),
                Some('t') => ('\t', 1),
                Some('u') => unicode_escape(escape),
                Some(other) => (other, other.len_utf8()),
                None => ('\u{fffd}', 0),
            };
            f.write_char(c)?;
            rest = escape.get(used..).unwrap_or_default();
        }
        f.write_str(rest)
    }
}

impl Unescaped<'_> {
    /// Whether the escaped text means exactly `plain`, compared as it is unescaped, without
    /// allocating.
    pub fn means(&self, plain: &str) -> bool {
        if !self.0.contains('\\') {
            return self.0 == plain;
        }
        /// Consumes `rest` as long as what is written matches it.
        struct Matcher<'p> {
            rest: &'p str,
        }
        impl core::fmt::Write for Matcher<'_> {
            fn write_str(&mut self, s: &str) -> core::fmt::Result {
                self.rest = self.rest.strip_prefix(s).ok_or(core::fmt::Error)?;
                Ok(())
            }
        }
        let mut matcher = Matcher { rest: plain };
        core::fmt::write(&mut matcher, format_args!("{self}")).is_ok() && matcher.rest.is_empty()
    }
}

/// `u` and four hex digits (and, for a surrogate pair, `\u` and four more) at the start of
/// `escape`: the character and how many bytes it took.
fn unicode_escape(escape: &str) -> (char, usize) {
    let hex = |at: usize| {
        let digits = escape.get(at..at + 4).filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()))?;
        u32::from_str_radix(digits, 16).ok()
    };
    match hex(1) {
        Some(high @ 0xD800..=0xDBFF) => match (escape.get(5..7), hex(7)) {
            (Some("\\u"), Some(low @ 0xDC00..=0xDFFF)) => {
                let code = 0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00);
                (char::from_u32(code).unwrap_or('\u{fffd}'), 11)
            }
            _ => ('\u{fffd}', 5),
        },
        Some(code) => (char::from_u32(code).unwrap_or('\u{fffd}'), 5),
        None => ('\u{fffd}', 1),
    }
}

/// A valid JSON object, borrowed as text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Object<'a>(RawJson<'a>);

impl<'a> Object<'a> {
    /// The empty object `{}`.
    pub const EMPTY: Object<'static> = Object(RawJson("{}"));

    /// Validates that `text` is exactly one JSON object.
    pub fn parse(text: &'a [u8]) -> Result<Self, JsonError> {
        Self::parse_with(text, |_, _| {})
    }

    /// Validates that `text` is exactly one JSON object, handing each top-level member (escaped
    /// key, value) to `visit` on the way: one pass where parse-then-look-up would take several.
    pub fn parse_with(text: &'a [u8], mut visit: impl FnMut(&'a str, RawJson<'a>)) -> Result<Self, JsonError> {
        let text = core::str::from_utf8(text).map_err(|e| JsonError::Syntax(e.valid_up_to()))?;
        let b = text.as_bytes();
        let open = skip_ws(b, 0);
        if b.get(open) != Some(&b'{') {
            return Err(match RawJson::parse(b) {
                Ok(_) => JsonError::NotAnObject,
                Err(e) => e,
            });
        }
        let mut i = skip_ws(b, open + 1);
        if b.get(i) != Some(&b'}') {
            loop {
                if b.get(i) != Some(&b'"') {
                    return Err(JsonError::Syntax(i));
                }
                let key_end = string_end(b, i)?;
                let colon = skip_ws(b, key_end);
                if b.get(colon) != Some(&b':') {
                    return Err(JsonError::Syntax(colon));
                }
                let value_start = skip_ws(b, colon + 1);
                let value_end = value_end(b, value_start)?;
                let key = text.get(i + 1..key_end - 1).unwrap_or_default();
                visit(key, RawJson(text.get(value_start..value_end).unwrap_or_default()));
                i = skip_ws(b, value_end);
                match b.get(i) {
                    Some(b',') => i = skip_ws(b, i + 1),
                    Some(b'}') => break,
                    _ => return Err(JsonError::Syntax(i)),
                }
            }
        }
        let close = i + 1;
        if skip_ws(b, close) != b.len() {
            return Err(JsonError::Syntax(close));
        }
        Ok(Object(RawJson(text.get(open..close).unwrap_or_default())))
    }

    /// An object from text the scanner already validated as one. Were it not valid after all,
    /// member lookups would only come up short: they never panic.
    pub(crate) fn validated(text: &'a str) -> Self {
        Object(RawJson(text))
    }

    /// The object as a raw JSON value.
    pub fn as_raw(&self) -> RawJson<'a> {
        self.0
    }

    /// The value of the first member named `key` (compared in its escaped wire form).
    pub fn get(&self, key: &str) -> Option<RawJson<'a>> {
        self.members().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    /// The members in wire order: escaped key and value.
    pub fn members(&self) -> Members<'a> {
        Members { text: self.0 .0, at: 1 }
    }
}

/// Iterator over an [`Object`]'s members.
#[derive(Debug, Clone)]
pub struct Members<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Iterator for Members<'a> {
    type Item = (&'a str, RawJson<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        // The text was validated as an object, so every step below succeeds; any surprise just
        // ends the iteration instead of panicking.
        let b = self.text.as_bytes();
        let key_start = skip_ws(b, self.at);
        if b.get(key_start) != Some(&b'"') {
            self.at = b.len();
            return None;
        }
        let key_end = string_end(b, key_start).ok()?;
        let colon = skip_ws(b, key_end);
        let value_start = skip_ws(b, colon + 1);
        let value_end = value_end(b, value_start).ok()?;
        let after = skip_ws(b, value_end);
        self.at = after + 1;
        let key = self.text.get(key_start + 1..key_end - 1)?;
        let value = self.text.get(value_start..value_end)?;
        Some((key, RawJson(value)))
    }
}

/// Writes JSON into a caller's buffer. Running out of room is remembered and reported once, by
/// [`finish`](Self::finish), so message code reads as a straight sequence of writes.
#[derive(Debug)]
pub struct Writer<'b> {
    buf: &'b mut [u8],
    len: usize,
    full: bool,
}

impl<'b> Writer<'b> {
    /// A writer filling `buf` from the start.
    pub fn new(buf: &'b mut [u8]) -> Self {
        Self { buf, len: 0, full: false }
    }

    /// Appends bytes that are already JSON (punctuation, quoted keys, validated values).
    // Inlined so that copies of key literals become a few moves instead of a memcpy call each.
    #[inline(always)]
    pub fn raw(&mut self, bytes: &[u8]) {
        match self.buf.get_mut(self.len..self.len + bytes.len()) {
            Some(dst) => dst.copy_from_slice(bytes),
            None => self.full = true,
        }
        // Counted even when it did not fit, so that the outbox learns how much room the whole
        // text takes before it drops anything to make that room.
        self.len += bytes.len();
    }

    /// Appends `s` as a JSON string, escaping what RFC 8259 requires.
    pub fn str(&mut self, s: &str) {
        let bytes = s.as_bytes();
        // Names, ids and messages almost never need escaping; the scanner's word-at-a-time test
        // says so quickly.
        if plain_run(bytes) == bytes.len() {
            return self.quoted(bytes);
        }
        self.raw(b"\"");
        let mut run = 0;
        for (i, &b) in bytes.iter().enumerate() {
            let escape: &[u8] = match b {
                b'"' => b"\\\"",
                b'\\' => b"\\\\",
                b'\n' => b"\\n",
                b'\r' => b"\\r",
                b'\t' => b"\\t",
                0x00..=0x1F => {
                    let low = b & 0xF;
                    let low = if low < 10 { b'0' + low } else { b'a' + low - 10 };
                    self.raw(bytes.get(run..i).unwrap_or_default());
                    self.raw(b"\\u00");
                    // The high nibble of a control character is 0 or 1.
                    self.raw(&[b'0' + (b >> 4), low]);
                    run = i + 1;
                    continue;
                }
                _ => continue,
            };
            self.raw(bytes.get(run..i).unwrap_or_default());
            self.raw(escape);
            run = i + 1;
        }
        self.raw(bytes.get(run..).unwrap_or_default());
        self.raw(b"\"");
    }

    /// Appends a string whose contents are already JSON-escaped (as received on the wire).
    #[inline]
    pub fn escaped_str(&mut self, s: &str) {
        self.quoted(s.as_bytes());
    }

    /// `bytes` between quotes, as is: one bounds check and one copy for the three parts.
    #[inline]
    fn quoted(&mut self, bytes: &[u8]) {
        let end = self.len + bytes.len() + 2;
        match self.buf.get_mut(self.len..end) {
            Some([open, inner @ .., close]) => {
                *open = b'"';
                inner.copy_from_slice(bytes);
                *close = b'"';
            }
            _ => self.full = true,
        }
        self.len = end;
    }

    /// Appends an unsigned integer.
    pub fn u64(&mut self, mut v: u64) {
        // Counted first and written in place, last digit first: copying a few digits from a
        // scratch array would cost a call to memcpy, and every message has several numbers.
        let n = v.checked_ilog10().map_or(1, |log| log as usize + 1);
        match self.buf.get_mut(self.len..self.len + n) {
            Some(digits) => {
                for d in digits.iter_mut().rev() {
                    // A single decimal digit: the cast cannot truncate.
                    *d = b'0' + (v % 10) as u8;
                    v /= 10;
                }
            }
            None => self.full = true,
        }
        self.len += n;
    }

    /// Appends a signed integer.
    pub fn i64(&mut self, v: i64) {
        if v < 0 {
            self.raw(b"-");
        }
        self.u64(v.unsigned_abs());
    }

    /// Appends a number, or `null` for NaN and infinities, which JSON cannot express.
    pub fn f64(&mut self, v: f64) {
        if v.is_finite() {
            self.raw(ryu::Buffer::new().format_finite(v).as_bytes());
        } else {
            self.raw(b"null");
        }
    }

    /// Appends `true` or `false`.
    pub fn bool(&mut self, v: bool) {
        self.raw(if v { b"true" } else { b"false" });
    }

    /// Appends an RFC 3339 timestamp string.
    pub fn timestamp(&mut self, t: Timestamp) {
        self.raw(b"\"");
        self.raw(&t.to_rfc3339());
        self.raw(b"\"");
    }

    /// The bytes written so far, counting those that did not fit.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The number of bytes written, or `BufferTooSmall` if anything did not fit.
    pub fn finish(self) -> Result<usize, EncodeError> {
        self.finish_sized().map_err(|_| EncodeError::BufferTooSmall)
    }

    /// The number of bytes written, or, if anything did not fit, how many the whole text takes.
    pub(crate) fn finish_sized(self) -> Result<usize, Unfit> {
        if self.full {
            Err(Unfit::Needs(self.len))
        } else {
            Ok(self.len)
        }
    }
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while matches!(b.get(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        i += 1;
    }
    i
}

/// Expects `"key"` then `:` at `i`; returns the index after the colon.
fn key_colon(b: &[u8], i: usize) -> Result<usize, JsonError> {
    let i = skip_ws(b, i);
    if b.get(i) != Some(&b'"') {
        return Err(JsonError::Syntax(i));
    }
    let i = skip_ws(b, string_end(b, i)?);
    match b.get(i) {
        Some(b':') => Ok(i + 1),
        _ => Err(JsonError::Syntax(i)),
    }
}

/// Returns the index just past the JSON value starting at `i`.
fn value_end(b: &[u8], mut i: usize) -> Result<usize, JsonError> {
    if b.get(i) == Some(&b'"') {
        // Most values are strings, which need none of the container bookkeeping below.
        return string_end(b, i);
    }
    // Bit n of `stack` is set when the container at depth n is an object.
    let mut stack = 0u64;
    let mut depth = 0u32;
    'value: loop {
        i = skip_ws(b, i);
        let c = *b.get(i).ok_or(JsonError::Syntax(i))?;
        i = match c {
            b'{' | b'[' => {
                if depth == MAX_DEPTH {
                    return Err(JsonError::TooDeep);
                }
                let close = if c == b'{' { b'}' } else { b']' };
                let inner = skip_ws(b, i + 1);
                if b.get(inner) == Some(&close) {
                    inner + 1
                } else {
                    depth += 1;
                    stack = stack << 1 | u64::from(c == b'{');
                    i = if c == b'{' { key_colon(b, inner)? } else { inner };
                    continue 'value;
                }
            }
            b'"' => string_end(b, i)?,
            b'-' | b'0'..=b'9' => number_end(b, i)?,
            b't' => literal_end(b, i, b"true")?,
            b'f' => literal_end(b, i, b"false")?,
            b'n' => literal_end(b, i, b"null")?,
            _ => return Err(JsonError::Syntax(i)),
        };
        // A value ended: close as many containers as the input closes here.
        loop {
            if depth == 0 {
                return Ok(i);
            }
            i = skip_ws(b, i);
            let in_object = stack & 1 == 1;
            match b.get(i) {
                Some(b',') => {
                    i = if in_object { key_colon(b, i + 1)? } else { i + 1 };
                    continue 'value;
                }
                Some(b'}') if in_object => {}
                Some(b']') if !in_object => {}
                _ => return Err(JsonError::Syntax(i)),
            }
            stack >>= 1;
            depth -= 1;
            i += 1;
        }
    }
}

fn literal_end(b: &[u8], i: usize, word: &[u8]) -> Result<usize, JsonError> {
    match b.get(i..i + word.len()) {
        Some(found) if found == word => Ok(i + word.len()),
        _ => Err(JsonError::Syntax(i)),
    }
}

/// `i` is at the opening quote; returns the index after the closing quote.
#[inline]
fn string_end(b: &[u8], i: usize) -> Result<usize, JsonError> {
    let mut i = i + 1;
    loop {
        let rest = b.get(i..).ok_or(JsonError::Syntax(i))?;
        i += plain_run(rest);
        match b.get(i) {
            Some(b'"') => return Ok(i + 1),
            Some(b'\\') => match b.get(i + 1) {
                Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => i += 2,
                Some(b'u') => {
                    let hex = b.get(i + 2..i + 6).ok_or(JsonError::Syntax(i))?;
                    if !hex.iter().all(u8::is_ascii_hexdigit) {
                        return Err(JsonError::Syntax(i));
                    }
                    i += 6;
                }
                _ => return Err(JsonError::Syntax(i)),
            },
            _ => return Err(JsonError::Syntax(i)),
        }
    }
}

/// The length of the leading run of `bytes` that needs no attention inside a JSON string: no
/// quote, no backslash, no control character.
///
/// Strings are most of every payload, so eight bytes are tested at a time with the classic
/// SWAR tricks (a byte equal to `c` leaves a zero in `x ^ c·0x01..01`; a byte below 0x20 borrows
/// in `x - 0x20·0x01..01`). The tricks can also flag bytes *above* a true match, where the borrow
/// runs on, but never below one, so the lowest flagged byte is always the one to look at.
#[inline]
fn plain_run(bytes: &[u8]) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let has_zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGH;
    let flag = |x: u64| {
        has_zero(x ^ (ONES * u64::from(b'"')))
            | has_zero(x ^ (ONES * u64::from(b'\\')))
            | (x.wrapping_sub(ONES * 0x20) & !x & HIGH)
    };
    let mut at = 0;
    for chunk in bytes.chunks_exact(8) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let flagged = flag(u64::from_le_bytes(word));
        if flagged != 0 {
            // Little-endian: the lowest set bit belongs to the first flagged byte.
            return at + (flagged.trailing_zeros() / 8) as usize;
        }
        at += 8;
    }
    // The last few bytes as one more word, padded with a letter, which no test flags.
    let tail = bytes.get(at..).unwrap_or_default();
    let mut word = [b'a'; 8];
    if let Some(head) = word.get_mut(..tail.len()) {
        head.copy_from_slice(tail);
    }
    let flagged = flag(u64::from_le_bytes(word));
    at + if flagged == 0 { tail.len() } else { ((flagged.trailing_zeros() / 8) as usize).min(tail.len()) }
}

fn digits_end(b: &[u8], mut i: usize) -> Result<usize, JsonError> {
    let start = i;
    while b.get(i).is_some_and(u8::is_ascii_digit) {
        i += 1;
    }
    if i == start {
        Err(JsonError::Syntax(i))
    } else {
        Ok(i)
    }
}

fn number_end(b: &[u8], mut i: usize) -> Result<usize, JsonError> {
    if b.get(i) == Some(&b'-') {
        i += 1;
    }
    i = match b.get(i) {
        Some(b'0') => i + 1,
        Some(b'1'..=b'9') => digits_end(b, i)?,
        _ => return Err(JsonError::Syntax(i)),
    };
    if b.get(i) == Some(&b'.') {
        i = digits_end(b, i + 1)?;
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        i = digits_end(b, i)?;
    }
    Ok(i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_valid_json_and_reports_where_invalid_json_breaks() {
        for ok in [
            "{}",
            " { \"a\" : [1, -2.5e+3, true, false, null, \"x\\u00e9\\n\"] } ",
            "[]",
            "0",
            "\"\"",
            "{\"a\":{\"b\":{}},\"c\":[[],{}]}",
        ] {
            assert!(RawJson::parse(ok.as_bytes()).is_ok(), "{ok}");
        }
        for (bad, at) in [
            ("", 0),
            ("{", 1),
            ("{\"a\"}", 4),
            ("{\"a\":1,}", 7),
            ("[1,]", 3),
            ("01", 1),
            ("1.", 2),
            ("\"\\x\"", 1),
            ("\"a", 2),
            ("tru", 0),
            ("{} {}", 2),
            ("[1 2]", 3),
            ("\"\u{1}\"", 1),
        ] {
            assert_eq!(RawJson::parse(bad.as_bytes()), Err(JsonError::Syntax(at)), "{bad:?}");
        }
    }

    #[test]
    fn nesting_is_bounded_without_recursion() {
        let deep = |n: usize| std::format!("{}{}", "[".repeat(n), "]".repeat(n));
        // The innermost empty array counts as a level too.
        assert!(RawJson::parse(deep(MAX_DEPTH as usize).as_bytes()).is_ok());
        assert_eq!(RawJson::parse(deep(MAX_DEPTH as usize + 1).as_bytes()), Err(JsonError::TooDeep));
        assert_eq!(RawJson::parse("[".repeat(100_000).as_bytes()), Err(JsonError::TooDeep));
    }

    #[test]
    fn the_writer_escapes_strings_and_formats_numbers_as_serde_json_does() {
        let mut buf = [0u8; 256];
        let mut w = Writer::new(&mut buf);
        let text = "quote\" back\\ nl\n tab\t bell\u{7} é ✓";
        w.str(text);
        w.raw(b",");
        w.i64(i64::MIN);
        w.raw(b",");
        w.f64(2.5);
        w.raw(b",");
        w.f64(f64::NAN);
        let n = w.finish().unwrap();
        let expected = std::format!(
            "{},{},{},null",
            serde_json::to_string(text).unwrap(),
            i64::MIN,
            serde_json::to_string(&2.5).unwrap()
        );
        assert_eq!(core::str::from_utf8(&buf[..n]).unwrap(), expected);
        let mut small = [0u8; 4];
        let mut w = Writer::new(&mut small);
        w.str("hello");
        assert_eq!(w.finish(), Err(EncodeError::BufferTooSmall));
    }

    #[test]
    fn a_byte_to_escape_is_found_wherever_it_falls_in_a_string_of_any_short_length() {
        // Lengths across one, two and three words, so the special byte lands in a whole word
        // and in the padded tail at every offset.
        for len in 0..=17 {
            for special in ["\"", "\\", "\n", "\u{1f}", "é", ""] {
                for at in 0..=len {
                    let text = std::format!("{}{special}{}", "x".repeat(at), "y".repeat(len - at));
                    let mut buf = [0u8; 64];
                    let mut w = Writer::new(&mut buf);
                    w.str(&text);
                    let n = w.finish().unwrap();
                    let expected = serde_json::to_string(&text).unwrap();
                    assert_eq!(core::str::from_utf8(&buf[..n]).unwrap(), expected, "{text:?}");
                }
            }
        }
    }

    #[test]
    fn integers_are_written_in_full_or_counted_in_full() {
        for v in [0, 7, 9, 10, 99, 100, 4242, u64::from(u32::MAX), u64::MAX] {
            let mut buf = [0u8; 20];
            let mut w = Writer::new(&mut buf);
            w.u64(v);
            let n = w.finish().unwrap();
            assert_eq!(core::str::from_utf8(&buf[..n]).unwrap(), std::format!("{v}"));
            let mut short = [0u8; 20];
            let mut w = Writer::new(&mut short[..n - 1]);
            w.u64(v);
            assert_eq!(w.finish_sized(), Err(Unfit::Needs(n)), "{v}");
        }
    }

    #[test]
    fn unescaping_gives_back_what_the_sender_meant() {
        let un = |s: &str| std::format!("{}", Unescaped(s));
        assert_eq!(un("plain"), "plain");
        assert_eq!(un(r#"a\"b\u00e9\\n\/"#), "a\"bé\\n/");
        assert_eq!(un(r"tab\tnl\ncr\r\b\f"), "tab\tnl\ncr\r\u{8}\u{c}");
        assert_eq!(un(r"\ud83d\ude00!"), "😀!");
        assert_eq!(un(r"lone \ud83d x"), "lone \u{fffd} x");
        assert_eq!(un(r"broken\u12"), "broken\u{fffd}12");
        assert_eq!(un(r"trailing\"), "trailing\u{fffd}");
        assert_eq!(un(r"\u+041"), "\u{fffd}+041");
    }

    #[test]
    fn an_escaped_string_means_what_it_unescapes_to_and_nothing_else() {
        assert!(Unescaped("node_name").means("node_name"));
        assert!(Unescaped(r"node\u005fname").means("node_name"));
        assert!(Unescaped(r"caf\u00e9").means("café"));
        for (escaped, plain) in
            [("node_name", "node_nam"), (r"node\u005fname", "node_names"), (r"a\nb", "a\\nb"), ("", "x")]
        {
            assert!(!Unescaped(escaped).means(plain), "{escaped} / {plain}");
        }
    }

    #[test]
    fn unescaping_agrees_with_serde_json_on_every_valid_string() {
        for text in [r#""\u0041\"\\x\n""#, r#""\ud834\udd1e""#, r#""caf\u00e9 \/ \t""#] {
            let want: std::string::String = serde_json::from_str(text).unwrap();
            let escaped = RawJson::parse(text.as_bytes()).unwrap().as_escaped_str().unwrap();
            assert_eq!(std::format!("{}", Unescaped(escaped)), want);
        }
    }

    #[test]
    fn objects_expose_members_and_typed_values() {
        let o = Object::parse(br#"{"seconds": 45, "name":"a\"b", "nested": {"x":[1]}}"#).unwrap();
        assert_eq!(o.get("seconds").and_then(|v| v.deserialize::<u64>()), Some(45));
        assert_eq!(o.get("name").and_then(|v| v.as_escaped_str()), Some(r#"a\"b"#));
        assert_eq!(o.get("nested").map(|v| v.as_str()), Some(r#"{"x":[1]}"#));
        assert_eq!(o.get("missing"), None);
        assert_eq!(o.members().count(), 3);
        assert_eq!(Object::parse(b"[1]"), Err(JsonError::NotAnObject));
    }
}
