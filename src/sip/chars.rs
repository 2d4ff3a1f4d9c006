//! The character classes of the From grammar (RFC 3261 §25.1, RFC 3966's `tel:` extras), one
//! bit each in a table of the 256 bytes, and the runs of them that `sip::from` takes.
//!
//! Every class is ASCII, so a run of class bytes always ends on a character boundary and the
//! input can be scanned a byte at a time, with no `char` decoded. One table lookup per byte
//! instead of a chain of comparisons on a decoded character: the From is parsed on every call,
//! on cold caches at a PBX's rates (issue 18). `nom`'s `take_while` needs a `char` predicate,
//! hence these few lines of our own, and the runs as `nom` parsers for the grammar.

use nom::error::ErrorKind;
use nom::{IResult, Parser};

/// A set of bytes: a mask of [`CLASSES`] bits.
#[derive(Clone, Copy)]
pub(super) struct Class(u16);

/// RFC 3261 `unreserved`: alphanum / mark.
const UNRESERVED: u16 = 1;
/// `user-unreserved` extras: `& = + $ , ; ? /`.
const USER_EXTRA: u16 = 1 << 1;
/// `password` extras: `& = + $ ,`.
const PASSWORD_EXTRA: u16 = 1 << 2;
/// `param-unreserved` extras: `[ ] / : & + $`.
const PARAM_EXTRA: u16 = 1 << 3;
/// `hnv-unreserved` extras: `[ ] / ? : + $`.
const HEADER_EXTRA: u16 = 1 << 4;
/// RFC 3261 `token`.
const TOKEN_BIT: u16 = 1 << 5;
/// Hex digits.
const HEX: u16 = 1 << 6;
/// `tel:` number extras: `+ - . ( ) * #`.
const TEL_EXTRA: u16 = 1 << 7;
/// Hostname token bytes: alphanumerics and `- . _`.
const HOST_BIT: u16 = 1 << 8;
/// Scheme bytes after the first: alphanumerics and `+ - .`.
const SCHEME_BIT: u16 = 1 << 9;
/// The bare-host extras beyond a parameter's: `; = %`.
const BARE_EXTRA: u16 = 1 << 10;
/// IPv6 reference bytes: hex digits, `:` and `.`.
const V6_EXTRA: u16 = 1 << 11;

/// The user part of a SIP URI.
pub(super) const USER: Class = Class(UNRESERVED | USER_EXTRA);
/// The password of a SIP URI.
pub(super) const PASSWORD: Class = Class(UNRESERVED | PASSWORD_EXTRA);
/// A URI parameter's name or value.
pub(super) const PARAM: Class = Class(UNRESERVED | PARAM_EXTRA);
/// A URI header's name or value.
pub(super) const HEADER: Class = Class(UNRESERVED | HEADER_EXTRA);
/// A token (header parameter names and values).
pub(super) const TOKEN: Class = Class(TOKEN_BIT);
/// A `tel:` number.
pub(super) const TEL: Class = Class(HEX | TEL_EXTRA);
/// A hostname or IPv4 address, as one token.
pub(super) const HOST: Class = Class(HOST_BIT);
/// A scheme after its first letter.
pub(super) const SCHEME: Class = Class(SCHEME_BIT);
/// What a legacy bare host argument may consist of: host, port and URI-parameter text.
pub(super) const BARE: Class = Class(UNRESERVED | PARAM_EXTRA | BARE_EXTRA);
/// The inside of an IPv6 reference (`[…]`).
pub(super) const V6: Class = Class(HEX | V6_EXTRA);

const CLASSES: [u16; 256] = {
    let mut table = [0u16; 256];
    let mut i = 0;
    while i < 256 {
        let c = i as u8;
        let alnum = c.is_ascii_alphanumeric();
        let mut bits = 0;
        if alnum
            || matches!(
                c,
                b'-' | b'_' | b'.' | b'!' | b'~' | b'*' | b'\'' | b'(' | b')'
            )
        {
            bits |= UNRESERVED;
        }
        if matches!(c, b'&' | b'=' | b'+' | b'$' | b',' | b';' | b'?' | b'/') {
            bits |= USER_EXTRA;
        }
        if matches!(c, b'&' | b'=' | b'+' | b'$' | b',') {
            bits |= PASSWORD_EXTRA;
        }
        if matches!(c, b'[' | b']' | b'/' | b':' | b'&' | b'+' | b'$') {
            bits |= PARAM_EXTRA;
        }
        if matches!(c, b'[' | b']' | b'/' | b'?' | b':' | b'+' | b'$') {
            bits |= HEADER_EXTRA;
        }
        if alnum
            || matches!(
                c,
                b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
            )
        {
            bits |= TOKEN_BIT;
        }
        if c.is_ascii_hexdigit() {
            bits |= HEX;
        }
        if matches!(c, b'+' | b'-' | b'.' | b'(' | b')' | b'*' | b'#') {
            bits |= TEL_EXTRA;
        }
        if alnum || matches!(c, b'-' | b'.' | b'_') {
            bits |= HOST_BIT;
        }
        if alnum || matches!(c, b'+' | b'-' | b'.') {
            bits |= SCHEME_BIT;
        }
        if matches!(c, b';' | b'=' | b'%') {
            bits |= BARE_EXTRA;
        }
        if matches!(c, b':' | b'.') {
            bits |= V6_EXTRA;
        }
        table[i] = bits;
        i += 1;
    }
    table
};

impl Class {
    /// Whether `b` is in the class.
    pub(super) fn has(self, b: u8) -> bool {
        CLASSES[usize::from(b)] & self.0 != 0
    }

    /// The length in bytes of the longest prefix of `text` made of bytes of the class.
    pub(super) fn run(self, text: &str) -> usize {
        text.bytes()
            .position(|b| !self.has(b))
            .unwrap_or(text.len())
    }

    /// The length in bytes of the longest prefix of `text` made of bytes of the class and
    /// `%HH` escapes.
    pub(super) fn escaped_run(self, text: &str) -> usize {
        let b = text.as_bytes();
        let mut at = 0;
        while let Some(&c) = b.get(at) {
            if self.has(c) {
                at += 1;
            } else if c == b'%'
                && b.get(at + 1).is_some_and(u8::is_ascii_hexdigit)
                && b.get(at + 2).is_some_and(u8::is_ascii_hexdigit)
            {
                at += 3;
            } else {
                break;
            }
        }
        at
    }
}

/// A `nom` parse error on a `&str`.
type NomError<'a> = nom::error::Error<&'a str>;

/// The class's runs as `nom` parsers, for the grammar's combinators.
impl Class {
    /// One or more bytes of the class (`nom`'s `take_while1`, a byte at a time).
    pub(super) fn take1<'a>(self) -> impl Parser<&'a str, Output = &'a str, Error = NomError<'a>> {
        move |i: &'a str| run1(i, self.run(i), ErrorKind::TakeWhile1)
    }

    /// One or more bytes of the class or `%HH` escapes.
    pub(super) fn escaped1<'a>(
        self,
    ) -> impl Parser<&'a str, Output = &'a str, Error = NomError<'a>> {
        move |i: &'a str| run1(i, self.escaped_run(i), ErrorKind::Many1Count)
    }

    /// Zero or more bytes of the class or `%HH` escapes.
    pub(super) fn escaped0<'a>(
        self,
    ) -> impl Parser<&'a str, Output = &'a str, Error = NomError<'a>> {
        move |i: &'a str| {
            let n = self.escaped_run(i);
            Ok::<_, nom::Err<NomError<'a>>>((&i[n..], &i[..n]))
        }
    }
}

/// The first `n` bytes of `i` as a parsed run, an error when there are none.
fn run1(i: &str, n: usize, kind: ErrorKind) -> IResult<&str, &str> {
    if n == 0 {
        Err(nom::Err::Error(nom::error::Error::new(i, kind)))
    } else {
        Ok((&i[n..], &i[..n]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The classes as `char` predicates, written out as the grammar states them: the oracle
    /// of the table.
    fn oracle(c: char) -> [bool; 10] {
        let unreserved = c.is_ascii_alphanumeric()
            || matches!(c, '-' | '_' | '.' | '!' | '~' | '*' | '\'' | '(' | ')');
        let param = unreserved || matches!(c, '[' | ']' | '/' | ':' | '&' | '+' | '$');
        [
            unreserved || matches!(c, '&' | '=' | '+' | '$' | ',' | ';' | '?' | '/'),
            unreserved || matches!(c, '&' | '=' | '+' | '$' | ','),
            param,
            unreserved || matches!(c, '[' | ']' | '/' | '?' | ':' | '+' | '$'),
            c.is_ascii_alphanumeric()
                || matches!(
                    c,
                    '-' | '.' | '!' | '%' | '*' | '_' | '+' | '`' | '\'' | '~'
                ),
            c.is_ascii_hexdigit() || matches!(c, '+' | '-' | '.' | '(' | ')' | '*' | '#'),
            c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'),
            c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'),
            param || matches!(c, ';' | '=' | '%'),
            c.is_ascii_hexdigit() || c == ':' || c == '.',
        ]
    }

    #[test]
    fn every_byte_is_classed_as_the_grammar_says() {
        let classes = [
            USER, PASSWORD, PARAM, HEADER, TOKEN, TEL, HOST, SCHEME, BARE, V6,
        ];
        for b in 0..=255u8 {
            let want = oracle(char::from(b));
            for (class, want) in classes.iter().zip(want) {
                // A byte over 0x7f is no character of its own; no class holds it.
                assert_eq!(class.has(b), want && b.is_ascii(), "byte {b:#04x}");
            }
        }
    }

    #[test]
    fn runs_stop_at_the_first_byte_outside() {
        assert_eq!(HOST.run("gw.example.com:5060"), 14);
        assert_eq!(HOST.run(""), 0);
        assert_eq!(HOST.run("héllo"), 1);
        assert_eq!(USER.escaped_run("bob%40x@host"), 7);
        // An incomplete or non-hex escape ends the run before its `%`.
        assert_eq!(USER.escaped_run("bob%4"), 3);
        assert_eq!(USER.escaped_run("bob%zz"), 3);
        assert_eq!(USER.escaped_run("%41%42"), 6);
    }
}
