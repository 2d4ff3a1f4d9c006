//! Outgoing AGI commands, encoded to the exact bytes Asterisk reads. All quoting lives here.
//!
//! Data flow: the session decides (`decision`) and builds a [`Command`]; `agi::connection`
//! encodes it into its write buffer with [`Command::encode`] and writes it to the socket.
//! Nothing here does I/O.
//!
//! # How Asterisk reads a command (res_agi.c, Asterisk 20)
//!
//! * One command per line. Asterisk reads the line with `fgets` into a 2048-byte buffer, so a
//!   line longer than [`MAX_COMMAND_LEN`] bytes (newline included) would be cut, and its rest
//!   run as a **second command**. [`Command::encode`] refuses such commands
//!   ([`CommandError::TooLong`]).
//! * The line is split into words at spaces and tabs (`parse_args`). A `"` toggles quoting
//!   (the quote itself is dropped); a `\` makes the next character literal (the backslash is
//!   dropped), inside or outside quotes.
//!
//! # Quoting rules used here
//!
//! Values (variable values, VERBOSE messages, the `MSet` argument) are always written by [`quote`]:
//! wrapped in `"`, with `"` and `\` escaped by a backslash, and every ASCII control character
//! (C0 `0x00..=0x1F`, which includes CR, LF, NUL and TAB, plus DEL `0x7F`) replaced by a
//! space. CR/LF/NUL must never reach the socket: the values include the SIP From header, which
//! the caller controls, and a newline would let the caller append their own AGI commands.
//!
//! Names (variable names) are not quoted but validated ([`CommandError::BadName`]):
//! `[A-Za-z0-9_]+`, and for `SET VARIABLE` also the function form `NAME(args)` with `args` made
//! of `[A-Za-z0-9_,.:/@+=-]` (e.g. `CHANNEL(language)`).
//!
//! `MSet`'s argument goes through Asterisk's application-argument splitter (`agi::args`) once
//! more, so its values are also rewritten by [`mset_value`] so that the splitter has nothing
//! to do.
//!
//! Exact bytes (identical to what the fixture capture sent to Asterisk 20):
//!
//! ```text
//! SET VARIABLE STRANGER "true"\n
//! SET VARIABLE QTEST "a \"quoted\" value \\ backslash"\n
//! VERBOSE "ipcountry fixture capture" 1\n
//! EXEC MSet "STRANGER=true,IPCOUNTRY_VERDICT=stranger"\n
//! ```

/// The longest command line Asterisk reads in one piece, newline included (its `fgets`
/// buffer is `AGI_BUF_LEN` = 2048 bytes, one of which holds the terminating NUL).
pub const MAX_COMMAND_LEN: usize = 2047;

/// An AGI command the session may send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command<'a> {
    /// `SET VARIABLE <name> "<value>"`; Asterisk answers `200 result=1`.
    SetVariable {
        /// Variable (or function) name, see the module docs for the allowed form.
        name: &'a str,
        /// The value; quoted, control characters replaced by spaces.
        value: &'a str,
    },
    /// `VERBOSE "<message>" <level>`; logs to the Asterisk console, answers `200 result=1`.
    Verbose {
        /// The message; quoted, control characters replaced by spaces.
        message: &'a str,
        /// The verbosity level (Asterisk uses 1..=4).
        level: u8,
    },
    /// `EXEC MSet "NAME=value,NAME=value,..."`: sets several variables in one round trip;
    /// Asterisk answers `200 result=0` (the application's return value). Each value is
    /// rewritten by [`mset_value`].
    MSet {
        /// `(name, value)` pairs; names are `[A-Za-z0-9_]+`.
        vars: &'a [(&'a str, &'a str)],
    },
}

/// Why a command could not be encoded. Nothing is written when encoding fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CommandError {
    /// A variable name is empty or has characters outside the allowed set.
    #[error("invalid AGI variable name")]
    BadName,
    /// The encoded line would exceed [`MAX_COMMAND_LEN`].
    #[error("AGI command is {len} bytes, Asterisk reads at most {max}")]
    TooLong {
        /// Encoded length, newline included.
        len: usize,
        /// The limit, [`MAX_COMMAND_LEN`].
        max: usize,
    },
}

impl Command<'_> {
    /// Appends the command line, ending in exactly one `\n`, to `out`. On error `out` is left
    /// as it was.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), CommandError> {
        let start = out.len();
        let result = self.encode_unchecked(out).and_then(|()| {
            let len = out.len() - start;
            if len > MAX_COMMAND_LEN {
                Err(CommandError::TooLong {
                    len,
                    max: MAX_COMMAND_LEN,
                })
            } else {
                Ok(())
            }
        });
        if result.is_err() {
            out.truncate(start);
        }
        result
    }

    fn encode_unchecked(&self, out: &mut Vec<u8>) -> Result<(), CommandError> {
        match *self {
            Command::SetVariable { name, value } => {
                check_variable_name(name)?;
                out.extend_from_slice(b"SET VARIABLE ");
                out.extend_from_slice(name.as_bytes());
                out.push(b' ');
                quote(value, out);
            }
            Command::Verbose { message, level } => {
                out.extend_from_slice(b"VERBOSE ");
                quote(message, out);
                out.push(b' ');
                out.extend_from_slice(level.to_string().as_bytes());
            }
            Command::MSet { vars } => {
                // `quote` of the assignments joined, each value as `mset_value` rewrites it,
                // written in one pass (the tests hold the two to the same bytes): after the
                // rewrite no `"` or `\` is left to escape, only control bytes to blank.
                out.extend_from_slice(b"EXEC MSet \"");
                for (i, (name, value)) in vars.iter().enumerate() {
                    if name.is_empty() || !name.bytes().all(is_ident_byte) {
                        return Err(CommandError::BadName);
                    }
                    if i > 0 {
                        out.push(b',');
                    }
                    out.extend_from_slice(name.as_bytes());
                    out.push(b'=');
                    push_mset_value(value, out);
                }
                out.push(b'"');
            }
        }
        out.push(b'\n');
        Ok(())
    }
}

/// A value as [`Command::MSet`] writes it, so that Asterisk's argument splitter (which `MSet`
/// runs on its argument, see `agi::args`) leaves it as it is and cannot run it into the next
/// assignment:
///
/// * `,` becomes `;`, `"` becomes `'`, and `\` becomes `/`;
/// * if the value's `(`…`)` and `[`…`]` do not close (the splitter counts them and would not
///   split at the next comma), all four become `{` and `}`.
///
/// Control characters are replaced by spaces when the command is quoted, as for every value.
pub fn mset_value(value: &str) -> std::borrow::Cow<'_, str> {
    let (mut paren, mut bracket) = (0u32, 0u32);
    let mut special = false;
    for b in value.bytes() {
        match b {
            b'(' => paren += 1,
            b')' => paren = paren.saturating_sub(1),
            b'[' => bracket += 1,
            b']' => bracket = bracket.saturating_sub(1),
            b',' | b'"' | b'\\' => special = true,
            _ => {}
        }
    }
    let unclosed = paren > 0 || bracket > 0;
    if !special && !unclosed {
        return std::borrow::Cow::Borrowed(value);
    }
    value
        .chars()
        .map(|c| match c {
            ',' => ';',
            '"' => '\'',
            '\\' => '/',
            '(' | '[' if unclosed => '{',
            ')' | ']' if unclosed => '}',
            c => c,
        })
        .collect()
}

/// Appends [`mset_value`]`(value)`, quoted as [`quote`] would (control bytes blanked), to
/// `out`, copying runs of bytes that stay as they are.
fn push_mset_value(value: &str, out: &mut Vec<u8>) {
    let bytes = value.as_bytes();
    // Only a value with an opening bracket can leave one unclosed.
    let unclosed = memchr::memchr2(b'(', b'[', bytes).is_some() && {
        let (mut paren, mut bracket) = (0u32, 0u32);
        for &b in bytes {
            match b {
                b'(' => paren += 1,
                b')' => paren = paren.saturating_sub(1),
                b'[' => bracket += 1,
                b']' => bracket = bracket.saturating_sub(1),
                _ => {}
            }
        }
        paren > 0 || bracket > 0
    };
    push_replacing(bytes, out, |b| mset_byte(b, unclosed));
}

/// What [`push_mset_value`] writes instead of `b`, if anything (`unclosed`: the value leaves a
/// bracket open).
fn mset_byte(b: u8, unclosed: bool) -> Option<&'static [u8]> {
    match b {
        b',' => Some(b";"),
        b'"' => Some(b"'"),
        b'\\' => Some(b"/"),
        b'(' | b'[' if unclosed => Some(b"{"),
        b')' | b']' if unclosed => Some(b"}"),
        // UTF-8 continuation and lead bytes are >= 0x80: no character is split.
        0x00..=0x1f | 0x7f => Some(b" "),
        _ => None,
    }
}

/// Appends `bytes` to `out`, each byte `instead` maps to `Some` replaced by what it gives,
/// copying the runs of bytes that stay as they are in one slice each.
fn push_replacing(bytes: &[u8], out: &mut Vec<u8>, instead: impl Fn(u8) -> Option<&'static [u8]>) {
    out.reserve(bytes.len());
    let mut plain = 0;
    for (at, &b) in bytes.iter().enumerate() {
        // One table test for the usual byte, which nothing replaces.
        if !MAY_BE_REPLACED[usize::from(b)] {
            continue;
        }
        if let Some(with) = instead(b) {
            out.extend_from_slice(&bytes[plain..at]);
            out.extend_from_slice(with);
            plain = at + 1;
        }
    }
    out.extend_from_slice(&bytes[plain..]);
}

/// The bytes the `instead` of [`push_replacing`] may replace, for [`quote_byte`] and
/// [`mset_byte`]: ASCII controls and `" \ , ( ) [ ]`. A byte outside it is copied as it is
/// (a test holds the table to both).
const MAY_BE_REPLACED: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] =
            c < 0x20 || c == 0x7f || matches!(c, b'"' | b'\\' | b',' | b'(' | b')' | b'[' | b']');
        b += 1;
    }
    table
};

/// Appends `value` to `out` as one Asterisk AGI word: wrapped in double quotes, `"` and `\`
/// escaped with a backslash, every ASCII control character (C0 and DEL; CR, LF, NUL, TAB
/// included) replaced by a space. The output never contains CR, LF or NUL.
///
/// Scanned a byte at a time and copied in runs: values are at most a few hundred bytes, and no
/// byte-search crate finds a class of bytes (the controls) faster at that size.
pub fn quote(value: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    push_replacing(value.as_bytes(), out, quote_byte);
    out.push(b'"');
}

/// What [`quote`] writes instead of `b`, if anything.
fn quote_byte(b: u8) -> Option<&'static [u8]> {
    match b {
        b'"' => Some(b"\\\""),
        b'\\' => Some(b"\\\\"),
        // UTF-8 continuation and lead bytes are >= 0x80, so this never splits a character.
        0x00..=0x1f | 0x7f => Some(b" "),
        _ => None,
    }
}

/// `[A-Za-z0-9_]`: the bytes of a variable name, as in the environment block's names.
fn is_ident_byte(b: u8) -> bool {
    crate::agi::env::is_name_byte(b)
}

/// `IDENT` or `IDENT(args)`, see the module docs.
fn check_variable_name(name: &str) -> Result<(), CommandError> {
    let bad = CommandError::BadName;
    let (ident, args) = match name.split_once('(') {
        None => (name, None),
        Some((ident, rest)) => (ident, Some(rest.strip_suffix(')').ok_or(bad)?)),
    };
    if ident.is_empty() || !ident.bytes().all(is_ident_byte) {
        return Err(bad);
    }
    if let Some(args) = args {
        let ok = args
            .bytes()
            .all(|b| is_ident_byte(b) || b",.:/@+=-".contains(&b));
        if !ok {
            return Err(bad);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agi::env::tests::{fixture, session_cases};
    use proptest::prelude::*;

    fn encoded(cmd: Command<'_>) -> Result<Vec<u8>, CommandError> {
        let mut out = Vec::new();
        cmd.encode(&mut out).map(|()| out)
    }

    /// Asterisk's `parse_args` (res_agi.c), ported word for word: splits a command line into
    /// words. Used as the oracle for what Asterisk will see.
    fn asterisk_parse_args(line: &[u8]) -> Vec<Vec<u8>> {
        let mut argv: Vec<Vec<u8>> = Vec::new();
        let (mut quoted, mut escaped, mut whitespace) = (false, false, true);
        for &c in line {
            if c == 0 {
                break; // C string: NUL ends the line
            }
            let literal = match c {
                b'"' if !escaped => {
                    quoted = !quoted;
                    if quoted && whitespace {
                        argv.push(Vec::new());
                        whitespace = false;
                    }
                    escaped = false;
                    false
                }
                b' ' | b'\t' if !quoted && !escaped => {
                    whitespace = true;
                    false
                }
                b'\\' if !escaped => {
                    escaped = true;
                    false
                }
                _ => true,
            };
            if literal {
                if whitespace {
                    argv.push(Vec::new());
                    whitespace = false;
                }
                if let Some(word) = argv.last_mut() {
                    word.push(c);
                }
                escaped = false;
            }
        }
        argv
    }

    fn sanitized(value: &str) -> Vec<u8> {
        value
            .bytes()
            .map(|b| if b < 0x20 || b == 0x7f { b' ' } else { b })
            .collect()
    }

    #[test]
    fn the_table_holds_every_byte_a_rewrite_replaces() {
        for b in 0..=255u8 {
            let replaced = quote_byte(b).is_some()
                || mset_byte(b, false).is_some()
                || mset_byte(b, true).is_some();
            assert_eq!(MAY_BE_REPLACED[usize::from(b)], replaced, "byte {b:#04x}");
        }
    }

    #[test]
    fn exact_bytes() {
        let cases: &[(Command<'_>, &[u8])] = &[
            (
                Command::SetVariable { name: "STRANGER", value: "true" },
                b"SET VARIABLE STRANGER \"true\"\n",
            ),
            (
                Command::SetVariable { name: "QTEST", value: "a \"quoted\" value \\ backslash" },
                b"SET VARIABLE QTEST \"a \\\"quoted\\\" value \\\\ backslash\"\n",
            ),
            (Command::SetVariable { name: "EMPTY", value: "" }, b"SET VARIABLE EMPTY \"\"\n"),
            (
                Command::SetVariable { name: "R", value: "x\r\nANSWER\0y\tz\x7f" },
                b"SET VARIABLE R \"x  ANSWER y z \"\n",
            ),
            (
                Command::Verbose { message: "ipcountry fixture capture", level: 1 },
                b"VERBOSE \"ipcountry fixture capture\" 1\n",
            ),
            (
                Command::MSet {
                    vars: &[
                        ("STRANGER", "true"),
                        ("IPCOUNTRY_VERDICT", "stranger"),
                        ("IPCOUNTRY_REASON", "no permit range for 198.51.100.9"),
                    ],
                },
                b"EXEC MSet \"STRANGER=true,IPCOUNTRY_VERDICT=stranger,IPCOUNTRY_REASON=no permit range for 198.51.100.9\"\n",
            ),
            (Command::MSet { vars: &[] }, b"EXEC MSet \"\"\n"),
        ];
        for (cmd, want) in cases {
            assert_eq!(
                encoded(*cmd).as_deref(),
                Ok(*want),
                "{cmd:?} gave {:?}",
                encoded(*cmd).map(|b| String::from_utf8_lossy(&b).into_owned())
            );
        }
    }

    #[test]
    fn names_are_validated() {
        let good = [
            "STRANGER",
            "_x9",
            "CHANNEL(channeltype)",
            "CHANNEL(pjsip,remote_addr)",
            "PJSIP_HEADER(read,From)",
            "SIP_HEADER(From)",
            "F()",
        ];
        for name in good {
            assert!(
                encoded(Command::SetVariable { name, value: "v" }).is_ok(),
                "{name}"
            );
        }
        let bad = [
            "",
            "TWO WORDS",
            "A\"B",
            "A\nANSWER",
            "A\\B",
            "A\0",
            "${X}",
            "F(a b)",
            "F(a",
            "F(a)b",
            "F((a))",
            "(a)",
            "Ä",
        ];
        for name in bad {
            let want = Err(CommandError::BadName);
            assert_eq!(
                encoded(Command::SetVariable { name, value: "v" }),
                want,
                "{name:?}"
            );
        }
        for name in ["", "M Set", "A\n", "F(x)"] {
            assert_eq!(
                encoded(Command::MSet {
                    vars: &[("OK", "v"), (name, "")]
                }),
                Err(CommandError::BadName),
                "{name:?}"
            );
        }
    }

    #[test]
    fn mset_values_leave_the_splitter_nothing_to_do() {
        let hostile = r#"deny #7 1.2.3.0/24 a,b,STRANGER=false "q" \, (x"#;
        assert_eq!(
            mset_value(hostile),
            "deny #7 1.2.3.0/24 a;b;STRANGER=false 'q' /; {x"
        );
        assert_eq!(mset_value("office (main) [x]"), "office (main) [x]");
        assert_eq!(mset_value("a) (b"), "a} {b");
        assert!(matches!(
            mset_value("no permit range for 198.51.100.9"),
            std::borrow::Cow::Borrowed(_)
        ));
    }

    #[test]
    fn too_long_is_refused_and_leaves_buffer_untouched() {
        // "SET VARIABLE X " + quotes + newline = 18 bytes of framing.
        let fits = "a".repeat(MAX_COMMAND_LEN - 18);
        let line = encoded(Command::SetVariable {
            name: "X",
            value: &fits,
        })
        .expect("fits");
        assert_eq!(line.len(), MAX_COMMAND_LEN);
        let too_long = "a".repeat(MAX_COMMAND_LEN - 17);
        let mut out = b"keep".to_vec();
        assert_eq!(
            Command::SetVariable {
                name: "X",
                value: &too_long
            }
            .encode(&mut out),
            Err(CommandError::TooLong {
                len: MAX_COMMAND_LEN + 1,
                max: MAX_COMMAND_LEN
            })
        );
        assert_eq!(out, b"keep");
        // Escapes count: 1015 quotes become 2030 bytes.
        let quotes = "\"".repeat(1015);
        assert!(matches!(
            encoded(Command::SetVariable {
                name: "X",
                value: &quotes
            }),
            Err(CommandError::TooLong { .. })
        ));
    }

    /// Every canonical SET VARIABLE / VERBOSE line the capture listener sent to
    /// Asterisk is reproduced byte for byte. Deliberately odd lines in the captures
    /// (`SET VARIABLE UNQUOTED two words`, lower-case `set variable`, a bare `SET VARIABLE`)
    /// are not in the canonical form and are skipped.
    #[test]
    fn reproduces_fixture_commands() {
        let mut checked = 0;
        for case in session_cases() {
            let sent = fixture(&case, "to-asterisk.raw");
            for line in sent.split_inclusive(|&b| b == b'\n') {
                let body = line.strip_suffix(b"\n").unwrap_or(line);
                let argv = asterisk_parse_args(body);
                let words: Vec<&str> = argv
                    .iter()
                    .map(|w| std::str::from_utf8(w).expect("fixture is UTF-8"))
                    .collect();
                let cmd = match words.as_slice() {
                    ["SET", "VARIABLE", name, value] if body.ends_with(b"\"") => {
                        Command::SetVariable { name, value }
                    }
                    ["VERBOSE", message, level] => Command::Verbose {
                        message,
                        level: level.parse().expect("numeric level"),
                    },
                    _ => continue,
                };
                assert_eq!(
                    encoded(cmd).as_deref(),
                    Ok(line),
                    "{case}: {}",
                    String::from_utf8_lossy(line)
                );
                checked += 1;
            }
        }
        assert!(checked >= 100, "only {checked} fixture commands checked");
    }

    #[test]
    fn parse_args_oracle_matches_capture_semantics() {
        // The capture shows Asterisk reading this line back as `a "quoted" value \ backslash`.
        let argv = asterisk_parse_args(br#"SET VARIABLE QTEST "a \"quoted\" value \\ backslash""#);
        assert_eq!(argv[3], br#"a "quoted" value \ backslash"#);
        assert_eq!(
            asterisk_parse_args(b"SET VARIABLE UNQUOTED two words").len(),
            5
        );
        assert_eq!(asterisk_parse_args(b"X \"\"").len(), 2);
    }

    proptest! {
        #[test]
        fn set_variable_is_one_safe_line(value in prop_oneof![
            any::<String>(),
            "(?s).{0,80}",
            "[\"\\\\\r\n\t\0\x01-\x1f\x7f a-z]{0,80}",
            "[a-z\"]{0,2100}",
        ]) {
            let mut out = Vec::new();
            match (Command::SetVariable { name: "IPCOUNTRY_REASON", value: &value }).encode(&mut out) {
                Ok(()) => {
                    prop_assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 1);
                    prop_assert_eq!(out.last(), Some(&b'\n'));
                    prop_assert!(!out.contains(&b'\r'));
                    prop_assert!(!out.contains(&0));
                    prop_assert!(out.len() <= MAX_COMMAND_LEN);
                    let argv = asterisk_parse_args(&out[..out.len() - 1]);
                    prop_assert_eq!(argv.len(), 4);
                    prop_assert_eq!(&argv[0], b"SET");
                    prop_assert_eq!(&argv[1], b"VARIABLE");
                    prop_assert_eq!(&argv[2], b"IPCOUNTRY_REASON");
                    prop_assert_eq!(&argv[3], &sanitized(&value));
                }
                Err(e) => {
                    let too_long = matches!(e, CommandError::TooLong { .. });
                    prop_assert!(too_long, "unexpected error {:?}", e);
                    prop_assert!(out.is_empty());
                }
            }
        }

        #[test]
        fn set_variable_with_hostile_ascii(value in "[\"\\\\\r\n\t\0 a-z]{0,64}") {
            let out = encoded(Command::SetVariable { name: "V", value: &value }).expect("short");
            prop_assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 1);
            prop_assert!(!out.contains(&b'\r') && !out.contains(&0));
            let argv = asterisk_parse_args(&out[..out.len() - 1]);
            prop_assert_eq!(argv.len(), 4);
            prop_assert_eq!(&argv[3], &sanitized(&value));
        }

        #[test]
        fn verbose_and_exec_round_trip(text in any::<String>(), level in any::<u8>()) {
            if let Ok(out) = encoded(Command::Verbose { message: &text, level }) {
                let argv = asterisk_parse_args(&out[..out.len() - 1]);
                prop_assert_eq!(argv.len(), 3);
                prop_assert_eq!(&argv[1], &sanitized(&text));
                let level_text = level.to_string();
                prop_assert_eq!(&argv[2], level_text.as_bytes());
            }
        }

        /// The one-pass `MSet` encoding is the quoted join of the rewritten values, byte for
        /// byte.
        #[test]
        fn mset_is_the_quoted_join_of_the_rewritten_values(values in proptest::collection::vec(prop_oneof![
            any::<String>(),
            "[,\"\\\\()\\[\\]\r\n\0\x7f= a-z]{0,24}",
        ], 1..4)) {
            let names = ["STRANGER", "IPCOUNTRY_VERDICT", "IPCOUNTRY_REASON"];
            let vars: Vec<(&str, &str)> = names.iter().copied().zip(values.iter().map(String::as_str)).collect();
            let joined = vars
                .iter()
                .map(|(name, value)| format!("{name}={}", mset_value(value)))
                .collect::<Vec<_>>()
                .join(",");
            let mut want = b"EXEC MSet ".to_vec();
            quote(&joined, &mut want);
            want.push(b'\n');
            match encoded(Command::MSet { vars: &vars }) {
                Ok(out) => prop_assert_eq!(out, want),
                Err(e) => {
                    let too_long = matches!(e, CommandError::TooLong { .. });
                    prop_assert!(too_long && want.len() > MAX_COMMAND_LEN, "{:?}", e);
                }
            }
        }

        /// Whatever the values, Asterisk's splitter (the model in `agi::args`) gives back
        /// exactly the assignments, in order, each with its rewritten value.
        #[test]
        fn mset_assignments_survive_the_splitter(values in proptest::collection::vec(prop_oneof![
            any::<String>(),
            "[,\"\\\\()\\[\\]= a-z]{0,24}",
        ], 1..4)) {
            let names = ["STRANGER", "IPCOUNTRY_VERDICT", "IPCOUNTRY_REASON"];
            let vars: Vec<(&str, &str)> = names.iter().copied().zip(values.iter().map(String::as_str)).collect();
            if let Ok(out) = encoded(Command::MSet { vars: &vars }) {
                let argv = asterisk_parse_args(&out[..out.len() - 1]);
                prop_assert_eq!(argv.len(), 3);
                prop_assert_eq!(&argv[0], b"EXEC");
                prop_assert_eq!(&argv[1], b"MSet");
                let assignments = crate::agi::args::separate_args(&argv[2]);
                prop_assert_eq!(assignments.len(), vars.len());
                for (got, (name, value)) in assignments.iter().zip(&vars) {
                    let want = format!("{name}={}", mset_value(value));
                    prop_assert_eq!(got, &sanitized(&want));
                }
            }
        }
    }
}
