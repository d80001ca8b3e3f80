//! Text that comes from outside (registry bodies and headers, image configs, names in
//! the store) on its way to a terminal, and error chains printed once each.
//!
//! A registry's 404 body can carry terminal escapes that set the window title, colour the
//! output or forge a line such as `frun: pulled OK`. Everything foreign is passed through
//! [`escape_controls`] before it is shown: control characters (C0, DEL, C1) and the
//! Unicode bidirectional overrides become visible `\u{..}` escapes.

use std::borrow::Cow;
use std::fmt::Write as _;

/// True for characters that change what a terminal shows rather than being shown.
fn is_unsafe(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `s` with every control character replaced by its `\u{..}` escape (`\n` and `\t`
/// too: a foreign text never gets to start a new line of frun's output).
pub fn escape_controls(s: &str) -> Cow<'_, str> {
    if !s.chars().any(is_unsafe) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if is_unsafe(c) {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// A short, printable excerpt of a foreign text: escaped, at most `max` characters.
pub fn excerpt(s: &str, max: usize) -> String {
    let s = s.trim();
    let mut out: String = s.chars().take(max).collect();
    let cut = out.len() < s.len();
    out = escape_controls(&out).into_owned();
    if cut {
        out.push('…');
    }
    out
}

/// `error` and its causes as one line, `a: b: c`, each cause once: a cause whose text
/// its parent already shows (libraries that print their source inside their own
/// message) is skipped.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut out = error.to_string();
    let mut cur = error.source();
    while let Some(e) = cur {
        let text = e.to_string();
        if !text.is_empty() && !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cur = e.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_stop_terminal_control() {
        let forged = "not found\x1b]0;pwned\x07\x1b[32m\nfrun: pulled OK\r\u{202e}";
        let shown = escape_controls(forged);
        assert!(!shown.chars().any(is_unsafe), "{shown}");
        assert_eq!(
            shown,
            "not found\\u{1b}]0;pwned\\u{7}\\u{1b}[32m\\u{a}frun: pulled OK\\u{d}\\u{202e}"
        );
        assert!(matches!(escape_controls("plain é"), Cow::Borrowed(_)));
        assert_eq!(excerpt("  abcdef\x1b ", 3), "abc…");
        assert_eq!(excerpt("ab\x1b", 10), "ab\\u{1b}");
    }

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] Mid);
    #[derive(Debug, thiserror::Error)]
    #[error("mid: {0}")]
    struct Mid(#[source] std::io::Error);

    #[test]
    fn chains_show_each_cause_once() {
        let e = Outer(Mid(std::io::Error::from_raw_os_error(111)));
        let text = error_chain(&e);
        assert_eq!(text.matches("Connection refused").count(), 1, "{text}");
        assert!(text.starts_with("outer: mid: Connection refused"), "{text}");
    }
}
