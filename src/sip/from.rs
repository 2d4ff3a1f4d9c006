//! The SIP From header, parsed from whatever form it takes on its way into the AGI.
//!
//! Sits between `agi::env` (which hands over the raw argument text) and `request` (which
//! needs the caller's claimed host): `agi::env → sip::from → request`. Pure, no I/O.
//!
//! # The forms we accept
//!
//! 1. **Mangled by Asterisk's argument parser** (`agi_arg_1`). Asterisk removes double quotes
//!    and backslashes from application arguments, so `"Doe, John" <sip:john@…>;tag=1` arrives
//!    as `Doe, John <sip:john@…>;tag=1`, and an escaped quote in the display name comes out
//!    bare: `Bob "the" <Builder> <sip:bob@…>;tag=x`. The display name may therefore contain
//!    `<…>` pairs, so **the URI is the last `<…>`** in the value, never the first.
//! 2. **The raw header** (`GET VARIABLE PJSIP_HEADER(read,From)`), with a proper quoted-string
//!    display name (`\"` escapes; `<`, `@`, `:` inside the quotes). A display name that starts
//!    with `"` must be a complete quoted-string, else [`FromError::UnterminatedQuote`].
//! 3. **A bare addr-spec**, `sip:bob@203.0.113.7;tag=x`. Per RFC 3261 §20.10 the `;tag=x`
//!    here are *header* parameters, not URI parameters, and `?headers` are not allowed.
//! 4. **The legacy bare host** that old `CUT()` dialplans pass: `203.0.113.7`, `2001:db8::1`,
//!    `[2001:db8::1]`, `gw.example.com`, optionally with `:port` (not after an unbracketed
//!    IPv6 address) and `;params`. A bare *name* must contain a dot: a single word such as
//!    `Doe` or `plain` is far more likely a split display name than a host, and is rejected
//!    with [`FromError::NoUri`]. Its scheme is [`Scheme::Bare`].
//!
//! # Strictness
//!
//! Hosts are checked, not just copied: a host made only of digits and dots must be a valid
//! IPv4 address (`203.0.113.300` is [`FromError::BadHost`], since no resolver would do
//! anything useful with it), a bracketed host must be a valid IPv6 address without a zone,
//! and a name must follow the RFC 3261 hostname grammar (labels of letters, digits and
//! inner hyphens, at most 63 bytes each, at most 253 bytes in all, the last label starting
//! with a letter). Names are lower-cased and lose a trailing dot. Inputs longer than
//! [`MAX_LEN`] bytes, and inputs containing control characters (CR, LF, NUL, … but not
//! HTAB), are refused before parsing. Every step is linear in the input length.
//!
//! # Speed
//!
//! The parsed header borrows from the input (a part is copied only when unescaped or
//! lower-cased). There is one parser, the nom grammar below: a hand-written path for the
//! usual shape once sat beside it and saved about 0.1 µs of a call that costs tens of µs
//! (under 1 %, BENCHMARKS.md), so it went. The grammar's runs of characters are taken a byte
//! at a time by table (`sip::chars`), not by `nom`'s `char` predicates.
//!
//! # Known limits
//!
//! - A `<` inside a quoted header-parameter value (`;x="<"`) confuses the "last `<`" rule;
//!   such values do not occur in From headers in practice.
//! - Percent-escapes in the user part and in parameters are validated but not decoded.
//! - The password of `sip:user:password@host` is checked and then dropped, never stored.
//! - IPv4-mapped IPv6 addresses (`[::ffff:203.0.113.7]`) stay IPv6 here; canonicalising them
//!   is the range lookup's job.

use std::borrow::Cow;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use nom::branch::alt;
use nom::character::complete::{char, digit1, space0};
use nom::combinator::{opt, recognize};
use nom::error::ErrorKind;
use nom::multi::{many0, separated_list1};
use nom::sequence::preceded;
use nom::{IResult, Parser};
use serde::Serialize;

use super::chars;

/// The longest From value [`parse`] accepts, in bytes. Real From headers are well under
/// 300 bytes; anything near this limit is abuse.
pub const MAX_LEN: usize = 4096;

/// A parsed From header: `[display-name] <uri>;header-params`, an addr-spec, or a bare host.
///
/// It borrows from the parsed text: a part is copied only when parsing changes it (an
/// unescaped quoted-string, a lower-cased name).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FromHeader<'a> {
    /// The display name, unquoted and unescaped when it was a quoted-string, otherwise as it
    /// arrived (trimmed). `None` when absent or empty.
    pub display_name: Option<Cow<'a, str>>,
    /// The URI (the last `<…>` of a name-addr, or the addr-spec, or the bare host).
    pub uri: Uri<'a>,
    /// Header parameters after the URI (`tag` and friends), in order of appearance.
    pub params: Vec<Param<'a>>,
}

/// The scheme of a [`Uri`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Scheme {
    /// `sip:` (any case).
    Sip,
    /// `sips:` (any case).
    Sips,
    /// `tel:` (any case); the number is in [`Uri::user`] and there is no host.
    Tel,
    /// No scheme at all: the legacy bare IP address or hostname argument.
    Bare,
}

/// A SIP, SIPS or tel URI, or a bare host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Uri<'a> {
    /// The scheme.
    pub scheme: Scheme,
    /// The user part as written (case kept, percent-escapes not decoded), without any
    /// password; for `tel:` the telephone number. `None` when the URI has no user part.
    pub user: Option<Cow<'a, str>>,
    /// The host; `None` only for `tel:` URIs.
    pub host: Option<Host<'a>>,
    /// The port, when one was written.
    pub port: Option<u16>,
    /// URI parameters (`;transport=udp`, `;user=phone`), in order of appearance.
    pub params: Vec<Param<'a>>,
    /// URI headers (`?X-Foo=bar&…`), in order of appearance; each has a value, maybe empty.
    pub headers: Vec<Param<'a>>,
}

/// One `name[=value]` parameter or URI header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Param<'a> {
    /// The name, ASCII lower-cased (SIP parameter and header names are case-insensitive).
    pub name: Cow<'a, str>,
    /// The value as written (quoted-string values unquoted and unescaped); `None` for a bare
    /// flag such as `;lr`.
    pub value: Option<Cow<'a, str>>,
}

/// The host of a URI.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub enum Host<'a> {
    /// A literal IPv4 or IPv6 address (IPv6 without its brackets).
    Ip(IpAddr),
    /// A hostname, ASCII lower-cased, without a trailing dot.
    Domain(Cow<'a, str>),
}

/// Why a From value could not be parsed. Cheap to copy; the `&'static str` fields say what
/// exactly was wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FromError {
    /// The value is empty or only whitespace.
    #[error("the From value is empty")]
    Empty,
    /// The value is longer than the limit (the field), in bytes.
    #[error("the From value is longer than {0} bytes")]
    TooLong(usize),
    /// The value contains a control character (CR, LF, NUL, …) at this byte offset.
    #[error("control character at byte {0} of the From value")]
    ControlCharacter(usize),
    /// Nothing in the value looks like a URI, an addr-spec or a host.
    #[error("no SIP URI, addr-spec or host found in the From value")]
    NoUri,
    /// The URI has no scheme, or one other than `sip`, `sips` and `tel`.
    #[error("the URI scheme is missing or not sip, sips or tel")]
    BadScheme,
    /// The user part (or the `tel:` number) is malformed.
    #[error("bad user part: {0}")]
    BadUser(&'static str),
    /// The host is malformed.
    #[error("bad host: {0}")]
    BadHost(&'static str),
    /// The port is malformed.
    #[error("bad port: {0}")]
    BadPort(&'static str),
    /// A URI parameter, URI header or header parameter is malformed.
    #[error("bad parameter: {0}")]
    BadParam(&'static str),
    /// A display name opens a quoted-string and never closes it.
    #[error("the quoted display name is not terminated")]
    UnterminatedQuote,
    /// A `<` has no `>` after it.
    #[error("'<' without a closing '>'")]
    UnterminatedAngle,
    /// Something follows the parsed part that does not belong there.
    #[error("unexpected text after {0}")]
    TrailingGarbage(&'static str),
}

/// Parses a From value in any of the forms described in the [module docs](self): a
/// name-addr (raw or mangled by Asterisk's argument parsing), an addr-spec, or a legacy bare
/// host. Never panics; malformed input is a [`FromError`].
pub fn parse(input: &str) -> Result<FromHeader<'_>, FromError> {
    if input.len() > MAX_LEN {
        return Err(FromError::TooLong(MAX_LEN));
    }
    let control = if input.is_ascii() {
        // The usual case, a byte at a time: C0 controls but HTAB, and DEL.
        input
            .bytes()
            .position(|b| (b < 0x20 && b != b'\t') || b == 0x7f)
    } else {
        input
            .char_indices()
            .find(|&(_, c)| c.is_control() && c != '\t')
            .map(|(at, _)| at)
    };
    if let Some(at) = control {
        return Err(FromError::ControlCharacter(at));
    }
    parse_unbounded(input)
}

impl FromHeader<'_> {
    /// The URI's host; `None` for `tel:` URIs.
    pub fn host(&self) -> Option<&Host<'_>> {
        self.uri.host.as_ref()
    }
}

impl Host<'_> {
    /// The address, when the host is a literal IP address.
    pub fn ip(&self) -> Option<IpAddr> {
        match self {
            Host::Ip(ip) => Some(*ip),
            Host::Domain(_) => None,
        }
    }
}

impl fmt::Display for Host<'_> {
    /// IP addresses in their standard form (IPv6 without brackets), names as stored.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Ip(ip) => crate::ip_text::IpText(*ip).fmt(f),
            Host::Domain(name) => f.write_str(name),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Top level: pick the form.
// ---------------------------------------------------------------------------------------

type Res<'a, T> = IResult<&'a str, T>;

/// Everything [`parse`] does except the length and control-character checks, so tests can
/// show the parser itself stays linear on inputs far beyond [`MAX_LEN`].
fn parse_unbounded(input: &str) -> Result<FromHeader<'_>, FromError> {
    let s = trim_lws(input);
    if s.is_empty() {
        return Err(FromError::Empty);
    }
    // memchr: `str::rfind` of a `char` costs several times as much on a short header.
    if let Some(open) = memchr::memrchr(b'<', s.as_bytes()) {
        return name_addr(s, open);
    }
    match scheme(s) {
        Ok((rest, scheme)) => addr_spec(scheme, rest),
        Err(_) => bare_host(s),
    }
}

/// `display-name <uri> *(;param)`, with the URI opening at `open`, the last `<` of `s`.
fn name_addr(s: &str, open: usize) -> Result<FromHeader<'_>, FromError> {
    // `<` and `>` are single bytes, so these slices fall on char boundaries.
    let (before, after_open) = (&s[..open], &s[open + 1..]);
    let display_name = display_name(before)?;
    let close = memchr::memchr(b'>', after_open.as_bytes()).ok_or(FromError::UnterminatedAngle)?;
    let uri = uri_in_brackets(&after_open[..close])?;
    let params = header_params(&after_open[close + 1..])?;
    Ok(FromHeader {
        display_name,
        uri,
        params,
    })
}

/// The text before the URI's `<`. A complete quoted-string (raw form) is unquoted; any other
/// text (token words, or a display name mangled by Asterisk) is kept as it is, trimmed.
fn display_name(text: &str) -> Result<Option<Cow<'_, str>>, FromError> {
    let t = trim_lws(text);
    if t.is_empty() {
        return Ok(None);
    }
    if t.starts_with('"') {
        return match quoted_string(t) {
            Ok(("", name)) => Ok(Some(name).filter(|n| !n.is_empty())),
            // A quoted section followed by more text: a mangled name such as
            // `"the" Bob` (from `"\"the\" Bob"`). Keep it whole.
            Ok(_) => Ok(Some(Cow::Borrowed(t))),
            Err(_) => Err(FromError::UnterminatedQuote),
        };
    }
    Ok(Some(Cow::Borrowed(t)))
}

/// The addr-spec form: the URI without its own parameters, then header parameters.
fn addr_spec(scheme: Scheme, rest: &str) -> Result<FromHeader<'_>, FromError> {
    let (rest, uri) = uri_core(scheme, rest)?;
    let params = header_params(rest)?;
    Ok(FromHeader {
        display_name: None,
        uri,
        params,
    })
}

/// The legacy form: a bare IP address or hostname, maybe with `:port` and `;params`.
fn bare_host(s: &str) -> Result<FromHeader<'_>, FromError> {
    let host_part = s.find(';').map_or(s, |i| &s[..i]);
    let (rest, host, port) = if !host_part.starts_with('[') && host_part.matches(':').count() >= 2 {
        // An unbracketed IPv6 address; it cannot carry a port.
        let ip = host_part.parse::<Ipv6Addr>().map_err(|_| {
            if looks_like_other_scheme(s) {
                FromError::BadScheme
            } else {
                FromError::BadHost("not a valid IPv6 address")
            }
        })?;
        (&s[host_part.len()..], Host::Ip(IpAddr::V6(ip)), None)
    } else {
        if looks_like_other_scheme(s) {
            return Err(FromError::BadScheme);
        }
        if !s.bytes().all(|b| chars::BARE.has(b)) {
            return Err(FromError::NoUri);
        }
        let (rest, host) = host(s)?;
        if let Host::Domain(name) = &host {
            if !name.contains('.') {
                return Err(FromError::NoUri);
            }
        }
        let (rest, port) = port(rest)?;
        (rest, host, port)
    };
    let (rest, params) = uri_params(rest)?;
    if !rest.is_empty() {
        return Err(FromError::TrailingGarbage("the bare host"));
    }
    Ok(FromHeader {
        display_name: None,
        uri: Uri {
            scheme: Scheme::Bare,
            user: None,
            host: Some(host),
            port,
            params,
            headers: Vec::new(),
        },
        params: Vec::new(),
    })
}

// ---------------------------------------------------------------------------------------
// The URI.
// ---------------------------------------------------------------------------------------

/// A whole URI between `<` and `>`: scheme, user, host, port, parameters and headers.
fn uri_in_brackets(text: &str) -> Result<Uri<'_>, FromError> {
    if trim_lws(text).is_empty() {
        return Err(FromError::NoUri);
    }
    let (rest, scheme) = scheme(text).map_err(|_| FromError::BadScheme)?;
    let (rest, mut uri) = uri_core(scheme, rest)?;
    let (rest, params) = uri_params(rest)?;
    uri.params = params;
    let rest = if scheme == Scheme::Tel {
        rest
    } else {
        let (rest, headers) = uri_headers(rest)?;
        uri.headers = headers;
        rest
    };
    if rest.is_empty() {
        Ok(uri)
    } else {
        Err(FromError::TrailingGarbage("the URI inside '<>'"))
    }
}

/// `sip:` / `sips:` / `tel:` (any case), consuming the colon. Fails on any other scheme.
fn scheme(i: &str) -> Res<'_, Scheme> {
    let fail = || nom::Err::Error(nom::error::Error::new(i, ErrorKind::Tag));
    let (name, rest) = i.split_at(scheme_len(i).ok_or_else(fail)?);
    let rest = rest.strip_prefix(':').ok_or_else(fail)?;
    let scheme = if name.eq_ignore_ascii_case("sip") {
        Scheme::Sip
    } else if name.eq_ignore_ascii_case("sips") {
        Scheme::Sips
    } else if name.eq_ignore_ascii_case("tel") {
        Scheme::Tel
    } else {
        return Err(fail());
    };
    Ok((rest, scheme))
}

/// The length of the scheme name `i` starts with (a letter, then letters, digits, `+ - .`).
fn scheme_len(i: &str) -> Option<usize> {
    // The first byte is ASCII, so `1` is a character boundary.
    i.as_bytes()
        .first()
        .is_some_and(u8::is_ascii_alphabetic)
        .then(|| 1 + chars::SCHEME.run(&i[1..]))
}

/// The part of a URI after the scheme and before its parameters: `[userinfo@]host[:port]`
/// for SIP and SIPS, the number for tel.
fn uri_core(scheme: Scheme, rest: &str) -> Result<(&str, Uri<'_>), FromError> {
    let mut uri = Uri {
        scheme,
        user: None,
        host: None,
        port: None,
        params: Vec::new(),
        headers: Vec::new(),
    };
    if scheme == Scheme::Tel {
        let (rest, number) = chars::TEL
            .take1()
            .parse(rest)
            .map_err(|_| FromError::BadUser("missing telephone number"))?;
        if !number.bytes().any(|b| b.is_ascii_digit()) {
            return Err(FromError::BadUser("telephone number without digits"));
        }
        uri.user = Some(Cow::Borrowed(number));
        return Ok((rest, uri));
    }
    // `opt` backtracks when there is no `@`: then the text is the host.
    let (rest, user) = opt(userinfo)
        .parse(rest)
        .map_err(|_| FromError::BadUser("malformed user part"))?;
    let (rest, host) = host(rest)?;
    let (rest, port) = port(rest)?;
    uri.user = user.map(Cow::Borrowed);
    uri.host = Some(host);
    uri.port = port;
    Ok((rest, uri))
}

/// `user [":" password] "@"`; returns the user, drops the password.
fn userinfo(i: &str) -> Res<'_, &str> {
    let (i, user) = chars::USER.escaped1().parse(i)?;
    let (i, _password) = opt(preceded(char(':'), chars::PASSWORD.escaped0())).parse(i)?;
    let (i, _) = char('@').parse(i)?;
    Ok((i, user))
}

/// `IPv6reference / IPv4address / hostname`.
fn host(i: &str) -> Result<(&str, Host<'_>), FromError> {
    if let Some(inner) = i.strip_prefix('[') {
        let (addr, rest) = inner.split_at(chars::V6.run(inner));
        let Some(rest) = rest.strip_prefix(']') else {
            return Err(if rest.contains(']') {
                FromError::BadHost("invalid character in IPv6 reference")
            } else {
                FromError::BadHost("'[' without a closing ']'")
            });
        };
        let ip = addr
            .parse::<Ipv6Addr>()
            .map_err(|_| FromError::BadHost("not a valid IPv6 address"))?;
        return Ok((rest, Host::Ip(IpAddr::V6(ip))));
    }
    let (rest, token) = chars::HOST
        .take1()
        .parse(i)
        .map_err(|_| FromError::BadHost("missing host"))?;
    if token.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        let ip = token
            .parse::<Ipv4Addr>()
            .map_err(|_| FromError::BadHost("not a valid IPv4 address"))?;
        return Ok((rest, Host::Ip(IpAddr::V4(ip))));
    }
    Ok((rest, Host::Domain(hostname(token)?)))
}

/// Checks the RFC 3261 hostname grammar (plus DNS length limits) and normalises the name.
fn hostname(token: &str) -> Result<Cow<'_, str>, FromError> {
    let name = token.strip_suffix('.').unwrap_or(token);
    if name.len() > 253 {
        return Err(FromError::BadHost("hostname longer than 253 bytes"));
    }
    let mut last = "";
    for label in name.split('.') {
        let bytes = label.as_bytes();
        match (bytes.first(), bytes.last()) {
            (Some(first), Some(end))
                if first.is_ascii_alphanumeric() && end.is_ascii_alphanumeric() => {}
            (None, _) | (_, None) => return Err(FromError::BadHost("empty hostname label")),
            _ => {
                return Err(FromError::BadHost(
                    "hostname label must start and end with a letter or digit",
                ))
            }
        }
        if bytes.len() > 63 {
            return Err(FromError::BadHost("hostname label longer than 63 bytes"));
        }
        if !bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
        {
            return Err(FromError::BadHost("invalid character in hostname"));
        }
        last = label;
    }
    if !last.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return Err(FromError::BadHost(
            "the last hostname label must start with a letter",
        ));
    }
    Ok(lowercase(name))
}

/// `[":" port]`.
fn port(i: &str) -> Result<(&str, Option<u16>), FromError> {
    let Ok((rest, _)) = char::<_, nom::error::Error<&str>>(':').parse(i) else {
        return Ok((i, None));
    };
    let (rest, digits) = digit1::<_, nom::error::Error<&str>>(rest)
        .map_err(|_| FromError::BadPort("':' not followed by digits"))?;
    let port = digits
        .parse::<u16>()
        .map_err(|_| FromError::BadPort("greater than 65535"))?;
    Ok((rest, Some(port)))
}

/// `*( ";" pname [ "=" pvalue ] )` inside a URI.
fn uri_params(i: &str) -> Result<(&str, Vec<Param<'_>>), FromError> {
    let (rest, params) = many0(preceded(char(';'), uri_param))
        .parse(i)
        .map_err(|_| FromError::BadParam("malformed URI parameter"))?;
    if rest.starts_with([';', '=']) {
        return Err(FromError::BadParam("empty or malformed URI parameter"));
    }
    Ok((rest, params))
}

fn uri_param(i: &str) -> Res<'_, Param<'_>> {
    let (i, name) = chars::PARAM.escaped1().parse(i)?;
    let (i, value) = opt(preceded(char('='), chars::PARAM.escaped1())).parse(i)?;
    Ok((i, param(name, value.map(Cow::Borrowed))))
}

/// `[ "?" hname "=" hvalue *( "&" hname "=" hvalue ) ]`.
fn uri_headers(i: &str) -> Result<(&str, Vec<Param<'_>>), FromError> {
    let Ok((rest, _)) = char::<_, nom::error::Error<&str>>('?').parse(i) else {
        return Ok((i, Vec::new()));
    };
    let (rest, headers) = separated_list1(char('&'), uri_header)
        .parse(rest)
        .map_err(|_| FromError::BadParam("malformed URI header"))?;
    if rest.starts_with(['&', '=']) {
        return Err(FromError::BadParam("malformed URI header"));
    }
    Ok((rest, headers))
}

fn uri_header(i: &str) -> Res<'_, Param<'_>> {
    let (i, name) = chars::HEADER.escaped1().parse(i)?;
    let (i, _) = char('=').parse(i)?;
    let (i, value) = chars::HEADER.escaped0().parse(i)?;
    Ok((i, param(name, Some(Cow::Borrowed(value)))))
}

/// `*( SEMI generic-param )` to the end of the value.
fn header_params(i: &str) -> Result<Vec<Param<'_>>, FromError> {
    let (rest, params) = many0(preceded((space0, char(';'), space0), generic_param))
        .parse(i)
        .map_err(|_| FromError::BadParam("malformed header parameter"))?;
    let rest = trim_lws(rest);
    if rest.is_empty() {
        Ok(params)
    } else if rest.starts_with([';', '=']) {
        Err(FromError::BadParam("empty or malformed header parameter"))
    } else {
        Err(FromError::TrailingGarbage(
            "the URI and its header parameters",
        ))
    }
}

/// `token [ EQUAL gen-value ]`, gen-value being a token, host or quoted-string.
fn generic_param(i: &str) -> Res<'_, Param<'_>> {
    let (i, name) = chars::TOKEN.take1().parse(i)?;
    let (i, value) = opt(preceded(
        (space0, char('='), space0),
        alt((
            quoted_string,
            recognize((char('['), chars::V6.take1(), char(']'))).map(Cow::Borrowed),
            chars::TOKEN.take1().map(Cow::Borrowed),
        )),
    ))
    .parse(i)?;
    Ok((i, param(name, value)))
}

/// `"…"` with `\x` escapes; returns the content unescaped (borrowed when it has no escape).
fn quoted_string(i: &str) -> Res<'_, Cow<'_, str>> {
    let fail = || nom::Err::Error(nom::error::Error::new(i, nom::error::ErrorKind::Char));
    let body = i.strip_prefix('"').ok_or_else(fail)?;
    // `"` and `\` are ASCII, so every index where one is found is a character boundary.
    let mut unescaped: Option<String> = None;
    let mut run = 0;
    let mut at = 0;
    loop {
        match body.as_bytes().get(at) {
            None => return Err(fail()),
            Some(b'"') => {
                let content = match unescaped {
                    None => Cow::Borrowed(&body[..at]),
                    Some(mut text) => {
                        text.push_str(&body[run..at]);
                        Cow::Owned(text)
                    }
                };
                return Ok((&body[at + 1..], content));
            }
            Some(b'\\') => {
                // The escaped character, whatever it is; a `\` at the very end is an error.
                let escaped = body[at + 1..].chars().next().ok_or_else(fail)?;
                let text = unescaped.get_or_insert_with(String::new);
                text.push_str(&body[run..at]);
                text.push(escaped);
                at += 1 + escaped.len_utf8();
                run = at;
            }
            Some(_) => at += 1,
        }
    }
}

// ---------------------------------------------------------------------------------------
// Character classes and small helpers.
// ---------------------------------------------------------------------------------------

fn param<'a>(name: &'a str, value: Option<Cow<'a, str>>) -> Param<'a> {
    Param {
        name: lowercase(name),
        value,
    }
}

/// `text` ASCII lower-cased, copied only when it has an upper-case letter.
fn lowercase(text: &str) -> Cow<'_, str> {
    if text.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(text.to_ascii_lowercase())
    } else {
        Cow::Borrowed(text)
    }
}

/// Trims SP and HTAB (not Unicode whitespace) at both ends.
fn trim_lws(s: &str) -> &str {
    s.trim_matches([' ', '\t'])
}

/// `scheme:` followed by something that is neither a port digit nor another colon, e.g.
/// `http://…` or `mailto:…`, as opposed to `host:5060` or `fe80::1`.
fn looks_like_other_scheme(s: &str) -> bool {
    let Some(len) = scheme_len(s) else {
        return false;
    };
    let b = s.as_bytes();
    b.get(len) == Some(&b':')
        && b.get(len + 1)
            .is_some_and(|&c| !c.is_ascii_digit() && c != b':')
}

#[cfg(test)]
#[path = "from_tests.rs"]
mod tests;
