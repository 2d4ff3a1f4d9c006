//! Asterisk's answers to AGI commands, parsed from one framed line.
//!
//! Data flow: after the session sends a command (`agi::command`), `agi::connection` frames the
//! answer (one line, or the multi-line `520-...`/`520 ...` usage block) and calls [`parse`] on
//! a single line; the session matches on the typed [`Reply`]. Nothing here does I/O.
//!
//! # Wire format (Asterisk 20, see `shared/fixtures/asterisk-agi/README.md`)
//!
//! ```text
//! 200 result=1                 SET VARIABLE, VERBOSE
//! 200 result=1 (true)          GET VARIABLE of a set variable; data may hold spaces,
//! 200 result=0                   quotes and parentheses: `("Doe, John" <sip:…>;x=1)`
//! 200 result=4                 CHANNEL STATUS
//! HANGUP                       unprompted, once, when the caller hangs up
//! 510 Invalid or unknown command
//! 511 Command Not Permitted on a dead channel or intercept routine
//! 520-Invalid command syntax.  Proper usage follows:   (framed by the connection
//! ...free text...                                        into one `Reply::Usage`)
//! 520 End of proper usage.
//! ```
//!
//! The status part (`HANGUP`, the code, `result=N`) must be ASCII. The data between the
//! parentheses is decoded lossily (invalid UTF-8 becomes U+FFFD): variable values come from SIP
//! headers and may be in any encoding, and a reply must not fail because of them.

/// One reply from Asterisk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `200 result=N`, optionally followed by ` (data)` (and, for some commands, other
    /// `key=value` words that are ignored).
    Success {
        /// The number after `result=` (may be negative: `result=-1`).
        result: i64,
        /// The text from the first `(` to the last `)`, both excluded. `None` when the reply
        /// has no parentheses; `Some("")` for `()`.
        data: Option<String>,
    },
    /// The unprompted `HANGUP` line Asterisk sends once when the caller hangs up.
    Hangup,
    /// `511 ...`: the command is not permitted on a dead channel.
    DeadChannel,
    /// `510 ...`: invalid or unknown command.
    InvalidCommand,
    /// `520 ...` (single line) or the multi-line `520-...` block framed by the connection:
    /// the command had the wrong syntax.
    Usage,
    /// Any other three-digit status code.
    Other {
        /// The status code (100..=999).
        code: u16,
    },
}

/// Why a reply line could not be parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReplyError {
    /// The line is empty.
    #[error("empty AGI reply line")]
    Empty,
    /// The line is neither `HANGUP` nor starts with a three-digit status code followed by the
    /// end of the line, a space or a `-`.
    #[error("AGI reply does not start with a status code")]
    BadStatus,
    /// A `200` line without ` result=`.
    #[error("AGI 200 reply without `result=`")]
    MissingResult,
    /// The value after `result=` is not a decimal integer that fits in an `i64`.
    #[error("AGI reply `result=` is not an integer")]
    BadResult,
    /// A `(` in a `200` reply has no `)` after it.
    #[error("AGI reply data has `(` without a closing `)`")]
    UnclosedData,
}

/// Parses one reply line. A trailing `\n` and/or `\r` is tolerated and ignored.
pub fn parse(line: &[u8]) -> Result<Reply, ReplyError> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.is_empty() {
        return Err(ReplyError::Empty);
    }
    if line == b"HANGUP" {
        return Ok(Reply::Hangup);
    }
    let code = status_code(line).ok_or(ReplyError::BadStatus)?;
    match code {
        200 => parse_success(&line[3..]),
        510 => Ok(Reply::InvalidCommand),
        511 => Ok(Reply::DeadChannel),
        520 => Ok(Reply::Usage),
        _ => Ok(Reply::Other { code }),
    }
}

/// The three-digit code at the start of `line`, if it is followed by end, ` ` or `-`.
fn status_code(line: &[u8]) -> Option<u16> {
    let digits = line.get(..3)?;
    if !digits.iter().all(u8::is_ascii_digit) || digits[0] == b'0' {
        return None;
    }
    match line.get(3) {
        None | Some(b' ') | Some(b'-') => {}
        Some(_) => return None,
    }
    Some(
        digits
            .iter()
            .fold(0u16, |acc, &d| acc * 10 + u16::from(d - b'0')),
    )
}

/// Parses what follows `200`: ` result=N`, then optionally ` (data)` and other words.
fn parse_success(rest: &[u8]) -> Result<Reply, ReplyError> {
    let rest = rest
        .strip_prefix(b" result=")
        .ok_or(ReplyError::MissingResult)?;
    let num_len = rest.iter().position(|&b| b == b' ').unwrap_or(rest.len());
    let result = std::str::from_utf8(&rest[..num_len])
        .ok()
        .filter(|s| !s.starts_with('+'))
        .and_then(|s| s.parse::<i64>().ok())
        .ok_or(ReplyError::BadResult)?;
    let tail = &rest[num_len..];
    let data = match tail.iter().position(|&b| b == b'(') {
        None => None,
        Some(open) => {
            let close = tail
                .iter()
                .rposition(|&b| b == b')')
                .filter(|&close| close > open)
                .ok_or(ReplyError::UnclosedData)?;
            Some(String::from_utf8_lossy(&tail[open + 1..close]).into_owned())
        }
    };
    Ok(Reply::Success { result, data })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ok(result: i64, data: Option<&str>) -> Reply {
        Reply::Success {
            result,
            data: data.map(str::to_owned),
        }
    }

    #[test]
    fn success_replies_from_captures() {
        let cases: &[(&str, Reply)] = &[
            ("200 result=1", ok(1, None)),
            ("200 result=0", ok(0, None)),
            ("200 result=-1", ok(-1, None)),
            ("200 result=4", ok(4, None)),
            ("200 result=1 (true)", ok(1, Some("true"))),
            ("200 result=1 (PJSIP)", ok(1, Some("PJSIP"))),
            ("200 result=1 ()", ok(1, Some(""))),
            (
                "200 result=1 (deny #1 203.0.113.66/32)",
                ok(1, Some("deny #1 203.0.113.66/32")),
            ),
            (
                "200 result=1 (a \"quoted\" value \\ backslash)",
                ok(1, Some("a \"quoted\" value \\ backslash")),
            ),
            (
                "200 result=1 (\"Doe, John\" <sip:john@203.0.113.7>;tag=28560SIPpTag001;x=1)",
                ok(
                    1,
                    Some("\"Doe, John\" <sip:john@203.0.113.7>;tag=28560SIPpTag001;x=1"),
                ),
            ),
            ("200 result=1 (a (b) c)", ok(1, Some("a (b) c"))),
            ("200 result=1 (x))", ok(1, Some("x)"))),
            ("200 result=1 (abc()", ok(1, Some("abc("))),
            ("200 result=0 endpos=1234", ok(0, None)),
            ("200 result=1 (timeout) endpos=99", ok(1, Some("timeout"))),
            ("200 result=1\r", ok(1, None)),
            ("200 result=1\n", ok(1, None)),
        ];
        for (line, want) in cases {
            assert_eq!(parse(line.as_bytes()).as_ref(), Ok(want), "{line}");
        }
    }

    #[test]
    fn status_replies() {
        assert_eq!(parse(b"HANGUP"), Ok(Reply::Hangup));
        assert_eq!(parse(b"HANGUP\n"), Ok(Reply::Hangup));
        assert_eq!(
            parse(b"511 Command Not Permitted on a dead channel or intercept routine"),
            Ok(Reply::DeadChannel)
        );
        assert_eq!(
            parse(b"510 Invalid or unknown command"),
            Ok(Reply::InvalidCommand)
        );
        assert_eq!(parse(b"520 End of proper usage."), Ok(Reply::Usage));
        assert_eq!(
            parse(b"520 Invalid command syntax.  Proper usage not available."),
            Ok(Reply::Usage)
        );
        assert_eq!(parse(b"520-Invalid command syntax."), Ok(Reply::Usage));
        assert_eq!(parse(b"210"), Ok(Reply::Other { code: 210 }));
        assert_eq!(parse(b"999 whatever"), Ok(Reply::Other { code: 999 }));
    }

    #[test]
    fn malformed_replies_are_typed_errors() {
        let cases: &[(&[u8], ReplyError)] = &[
            (b"", ReplyError::Empty),
            (b"\r\n", ReplyError::Empty),
            (b"hangup", ReplyError::BadStatus),
            (b"HANGUP now", ReplyError::BadStatus),
            (b"20", ReplyError::BadStatus),
            (b"2000 result=1", ReplyError::BadStatus),
            (b"099 x", ReplyError::BadStatus),
            (b"abc", ReplyError::BadStatus),
            (b"\xff\xfe\xfd", ReplyError::BadStatus),
            (b"200", ReplyError::MissingResult),
            (b"200 result 1", ReplyError::MissingResult),
            (b"200 result=", ReplyError::BadResult),
            (b"200 result=x", ReplyError::BadResult),
            (b"200 result=+1", ReplyError::BadResult),
            (b"200 result=1(x)", ReplyError::BadResult),
            (b"200 result=99999999999999999999", ReplyError::BadResult),
            (b"200 result=1 (open", ReplyError::UnclosedData),
            (b"200 result=1 )(", ReplyError::UnclosedData),
        ];
        for (line, want) in cases {
            assert_eq!(
                parse(line),
                Err(*want),
                "{:?}",
                String::from_utf8_lossy(line)
            );
        }
    }

    #[test]
    fn data_is_decoded_lossily() {
        assert_eq!(
            parse(b"200 result=1 (caf\xe9)"),
            Ok(ok(1, Some("caf\u{fffd}")))
        );
    }

    proptest! {
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = parse(&bytes);
        }

        #[test]
        fn parse_never_panics_on_near_valid(line in "(HANGUP|[0-9]{0,4}[ -]?(result=)?-?[0-9]{0,20})[ ()a-z]{0,10}") {
            let _ = parse(line.as_bytes());
        }

        #[test]
        fn data_round_trips(result in any::<i64>(), data in "[^\n\r]{0,40}") {
            let line = format!("200 result={result} ({data})");
            prop_assert_eq!(parse(line.as_bytes()), Ok(ok(result, Some(&data))));
        }
    }
}
