//! Text from a call, made safe to write into a log line or onto a terminal.
//!
//! The caller writes the From header and the caller ID; a CR or LF in them could forge a log
//! line, and an escape sequence could rewrite the admin's terminal. [`Escaped`] displays text
//! with every control character (C0, DEL, C1), the Unicode line and paragraph separators, the
//! bidirectional overrides and the backslash itself written as Rust escapes (`\n`,
//! `\u{1b}`, `\\`), and everything else as it is.

use std::fmt;

/// Displays its text escaped (see the module docs).
#[derive(Debug, Clone, Copy)]
pub struct Escaped<'a>(pub &'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_escaped(self.0, f)
    }
}

impl Escaped<'_> {
    /// Appends the escaped text to `out`: what `Display` writes, without `core::fmt` between
    /// (the per-call log line, issue 18).
    pub fn push_to(&self, out: &mut String) {
        let _ = write_escaped(self.0, out);
    }
}

fn write_escaped(text: &str, w: &mut impl fmt::Write) -> fmt::Result {
    // The usual value is printable ASCII without a backslash: one write, no decoding.
    if text
        .bytes()
        .all(|b| (b' '..=b'~').contains(&b) && b != b'\\')
    {
        return w.write_str(text);
    }
    // Runs of plain text go out as one slice: one write for a clean value, not one per
    // character (a log line has several such values per call).
    let mut plain = 0;
    for (at, c) in text.char_indices() {
        if needs_escape(c) {
            w.write_str(&text[plain..at])?;
            for e in c.escape_debug() {
                w.write_char(e)?;
            }
            plain = at + c.len_utf8();
        }
    }
    w.write_str(&text[plain..])
}

fn needs_escape(c: char) -> bool {
    c.is_control()
        || c == '\\'
        || matches!(c, '\u{2028}' | '\u{2029}' | '\u{200e}' | '\u{200f}')
        || ('\u{202a}'..='\u{202e}').contains(&c)
        || ('\u{2066}'..='\u{2069}').contains(&c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_and_separators_are_escaped() {
        let cases = [
            ("plain 203.0.113.7", "plain 203.0.113.7"),
            ("a\r\nfake: line", "a\\r\\nfake: line"),
            ("\u{1b}[31mred", "\\u{1b}[31mred"),
            ("nul\0del\u{7f}c1\u{85}", "nul\\0del\\u{7f}c1\\u{85}"),
            ("back\\slash", "back\\\\slash"),
            ("bidi\u{202e}x\u{2066}", "bidi\\u{202e}x\\u{2066}"),
            ("line\u{2028}sep", "line\\u{2028}sep"),
            ("Doe, \"John\" é \u{fffd}", "Doe, \"John\" é \u{fffd}"),
        ];
        for (text, want) in cases {
            assert_eq!(Escaped(text).to_string(), want, "{text:?}");
            let mut pushed = String::from(">");
            Escaped(text).push_to(&mut pushed);
            assert_eq!(pushed, format!(">{want}"), "{text:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn no_control_character_survives(text in proptest::prelude::any::<String>()) {
            let out = Escaped(&text).to_string();
            proptest::prop_assert!(!out.chars().any(|c| c.is_control()), "{:?}", out);
        }
    }
}
