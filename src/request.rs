//! `ScreenRequest`: what a `screen` call asks, built only by parsing the AGI arguments.
//!
//! # The argument contract
//!
//! `AGI(agi://127.0.0.1:4573/screen,${source},${From})`:
//!
//! * **Argument 1 is the signalling source address**: `ip:port`, `[v6]:port` (from
//!   `CHANNEL(pjsip,remote_addr)`) or a bare IP (chan_sip's `CHANNEL(recvip)`, IAX2's
//!   `CHANNEL(peerip)`). Anything else is a bad source ([`SourceError`]).
//! * **The From header is every argument after it, joined again with `,`**: Asterisk splits
//!   `AGI()`'s text at commas (see `agi::args`), and the From is written by the caller, so the
//!   number of arguments after argument 1 is his to choose. Nothing he writes can move text
//!   across the earlier comma, so argument 1 is always the real source.
//! * Exactly one argument: a source and no From header (IAX2, or a dialplan that passes one
//!   address). `agi_arg_2` present but empty is an *empty* From (what
//!   `${PJSIP_HEADER(read,From)}` gives for a header too long for it): it does not parse.
//! * No argument at all: no source.
//!
//! Nothing here does I/O; malformed values are kept as typed errors so the decision can say
//! why a caller became a stranger.

use std::borrow::Cow;
use std::net::{IpAddr, SocketAddr};

use crate::sip::from::{self, FromError, FromHeader};

/// The texts of a `screen` call's arguments: the source and the From, split as the contract
/// says. A [`ScreenRequest`] borrows from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallArgs<'a> {
    /// Argument 1, if there is one.
    pub source: Option<&'a str>,
    /// Arguments 2..N joined with `,`, if there are any.
    pub from: Option<Cow<'a, str>>,
}

impl<'a> CallArgs<'a> {
    /// Splits the arguments (`agi_arg_1..N` in order) by the contract.
    pub fn new<I>(args: I) -> CallArgs<'a>
    where
        I: IntoIterator<Item = &'a str>,
    {
        let mut args = args.into_iter();
        let source = args.next();
        let from = args.next().map(|first| match args.next() {
            None => Cow::Borrowed(first),
            Some(second) => {
                let mut joined = format!("{first},{second}");
                for more in args {
                    joined.push(',');
                    joined.push_str(more);
                }
                Cow::Owned(joined)
            }
        });
        CallArgs { source, from }
    }
}

/// A parsed screening request.
#[derive(Debug, Clone)]
pub struct ScreenRequest<'a> {
    /// The signalling source address, or why there is none.
    pub source: Result<IpAddr, SourceError>,
    /// The From header: `None` when the call has no From argument.
    pub from: Option<FromArg<'a>>,
}

/// The From argument as received and as parsed.
#[derive(Debug, Clone)]
pub struct FromArg<'a> {
    /// The text as received (Asterisk's argument parsing already removed quotes and
    /// backslashes). Written by the caller: escape it before logging.
    pub raw: &'a str,
    /// The parsed header, or why it could not be parsed.
    pub header: Result<FromHeader<'a>, FromError>,
}

/// Why a call has no usable source address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceError {
    /// The call has no argument 1, or it is empty.
    #[error("no source address")]
    Missing,
    /// Argument 1 is not an address; the text (at most 64 characters) is kept for `check` and
    /// the logs.
    #[error("bad source address")]
    Bad(String),
}

impl<'a> ScreenRequest<'a> {
    /// Parses the call's arguments.
    pub fn parse(args: &'a CallArgs<'_>) -> ScreenRequest<'a> {
        ScreenRequest {
            source: args.source.map_or(Err(SourceError::Missing), parse_source),
            from: args.from.as_deref().map(|raw| FromArg {
                raw,
                header: from::parse(raw),
            }),
        }
    }
}

/// Parses `ip`, `ip:port`, `[v6]` or `[v6]:port` (spaces around it allowed); the result is
/// canonical (IPv4-mapped IPv6 → IPv4).
pub fn parse_source(s: &str) -> Result<IpAddr, SourceError> {
    let s = s.trim();
    if s.is_empty() {
        return Err(SourceError::Missing);
    }
    // `address:port` first: it is what the dialplan passes (`CHANNEL(pjsip,remote_addr)`), and
    // no text is both a socket address and a bare address.
    let ip = s
        .parse::<SocketAddr>()
        .map(|sa| sa.ip())
        .or_else(|_| s.parse::<IpAddr>())
        .or_else(|_| {
            s.strip_prefix('[')
                .and_then(|r| r.strip_suffix(']'))
                .ok_or(())
                .and_then(|r| r.parse::<IpAddr>().map_err(|_| ()))
        })
        .map_err(|_| SourceError::Bad(s.chars().take(64).collect()))?;
    Ok(ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_forms() {
        let v4: IpAddr = "127.0.0.1".parse().expect("ip");
        let v6: IpAddr = "::1".parse().expect("ip");
        assert_eq!(parse_source("127.0.0.1:15201"), Ok(v4));
        assert_eq!(parse_source("127.0.0.1"), Ok(v4));
        assert_eq!(parse_source(" 127.0.0.1 "), Ok(v4));
        assert_eq!(parse_source("[::1]:15214"), Ok(v6));
        assert_eq!(parse_source("[::1]"), Ok(v6));
        assert_eq!(parse_source("::1"), Ok(v6));
        assert_eq!(parse_source("[::ffff:127.0.0.1]:5060"), Ok(v4));
        assert_eq!(parse_source(" \t"), Err(SourceError::Missing));
        assert_eq!(parse_source("bogus"), Err(SourceError::Bad("bogus".into())));
        assert!(parse_source("1.2.3.4:99999").is_err());
        assert!(parse_source("203.0.113.7,,<sip:eve@198.51.100.9>").is_err());
        assert!(parse_source("Bob <sip:bob@203.0.113.7>").is_err());
    }

    #[test]
    fn the_contract() {
        let args = CallArgs::new(["127.0.0.1:15201", "Bob <sip:bob@203.0.113.7>;tag=1"]);
        assert_eq!(args.source, Some("127.0.0.1:15201"));
        assert_eq!(
            args.from.as_deref(),
            Some("Bob <sip:bob@203.0.113.7>;tag=1")
        );
        // The From's commas come back.
        let args = CallArgs::new(["127.0.0.1", "203.0.113.7", "", "<sip:eve@198.51.100.9>"]);
        assert_eq!(
            args.from.as_deref(),
            Some("203.0.113.7,,<sip:eve@198.51.100.9>")
        );
        let r = ScreenRequest::parse(&args);
        assert_eq!(r.source, Ok("127.0.0.1".parse().expect("ip")));
        let from = r.from.expect("a From");
        assert_eq!(from.raw, "203.0.113.7,,<sip:eve@198.51.100.9>");
        assert!(from.header.is_ok());
        // One argument: a source and no From.
        let args = CallArgs::new(["198.51.100.9"]);
        let r = ScreenRequest::parse(&args);
        assert!(r.source.is_ok() && r.from.is_none());
        // An empty From is a From that does not parse.
        let args = CallArgs::new(["127.0.0.1", ""]);
        let r = ScreenRequest::parse(&args);
        assert!(r.from.is_some_and(|f| f.header == Err(FromError::Empty)));
        // No arguments: no source.
        let args = CallArgs::new([]);
        assert_eq!(
            ScreenRequest::parse(&args).source,
            Err(SourceError::Missing)
        );
        // The old order (From first) has no source.
        let args = CallArgs::new(["Bob <sip:bob@203.0.113.7>", "127.0.0.1"]);
        assert!(matches!(
            ScreenRequest::parse(&args).source,
            Err(SourceError::Bad(_))
        ));
    }
}
