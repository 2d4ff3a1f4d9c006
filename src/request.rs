//! `ScreenRequest`: what a `screen` call asks, built only by parsing the AGI arguments.
//!
//! Argument 1 is the From header (or, in the legacy dialplan, a bare IP or hostname);
//! argument 2 is the signalling source address (`ip:port`, `[v6]:port` from
//! `CHANNEL(pjsip,remote_addr)`, or a bare IP from chan_sip's `CHANNEL(recvip)`).
//! Nothing here does I/O; malformed values are kept as typed errors so the decision can say
//! why a caller became a stranger.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};

use crate::sip::from::{self, FromError, FromHeader};

/// A parsed screening request. It borrows the argument texts it was built from.
#[derive(Debug, Clone)]
pub struct ScreenRequest<'a> {
    /// The From header as received (for logs).
    pub from_raw: &'a str,
    /// The parsed From header, or why it could not be parsed.
    pub from: Result<FromHeader<'a>, FromError>,
    /// The signalling source address: `None` when the dialplan did not pass one.
    pub source: Option<Result<IpAddr, SourceError>>,
}

/// The source argument was not an address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an IP address or ip:port: {0:?}")]
pub struct SourceError(pub String);

impl<'a> ScreenRequest<'a> {
    /// Builds the request from the AGI arguments (`agi_arg_1..N`, already extracted, as
    /// [`AgiEnv::args`](crate::agi::env::AgiEnv::args) gives them or as `String`s).
    /// An empty argument list gives an unparseable From.
    pub fn from_args<S: AsRef<str>>(args: &'a [S]) -> ScreenRequest<'a> {
        let from_raw = args.first().map_or("", AsRef::as_ref);
        ScreenRequest::new(from_raw, args.get(1).map(AsRef::as_ref))
    }

    /// A request from the From (or bare address) and an optional source argument: what
    /// [`ScreenRequest::from_args`] builds from the first two arguments, and what the `check`
    /// command asks. A source that is empty or only whitespace counts as absent.
    pub fn new(from_text: &'a str, source: Option<&str>) -> ScreenRequest<'a> {
        let source = source
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(parse_source);
        ScreenRequest {
            from_raw: from_text,
            from: from::parse(from_text),
            source,
        }
    }
}

/// Parses `ip`, `ip:port`, `[v6]` or `[v6]:port`; the result is canonical (v4-mapped → v4).
pub fn parse_source(s: &str) -> Result<IpAddr, SourceError> {
    let s = s.trim();
    // The usual forms first, each with the one parser that can accept it (what the general
    // chain below would end up with): `ip:port` with an IPv4 address, a bare IPv4 address.
    if !s.contains('[') {
        let parsed = match s.bytes().filter(|&b| b == b':').count() {
            0 => s.parse::<Ipv4Addr>().ok(),
            1 => s.parse::<SocketAddrV4>().ok().map(|sa| *sa.ip()),
            _ => None,
        };
        if let Some(ip) = parsed {
            return Ok(IpAddr::V4(ip));
        }
    }
    parse_source_general(s)
}

/// Every form `parse_source` accepts, by trying each parser in turn (the fast path's oracle).
fn parse_source_general(s: &str) -> Result<IpAddr, SourceError> {
    let s = s.trim();
    let ip = s
        .parse::<IpAddr>()
        .or_else(|_| s.parse::<SocketAddr>().map(|sa| sa.ip()))
        .or_else(|_| {
            s.strip_prefix('[')
                .and_then(|r| r.strip_suffix(']'))
                .ok_or(())
                .and_then(|r| r.parse::<IpAddr>().map_err(|_| ()))
        })
        .map_err(|_| SourceError(s.chars().take(64).collect()))?;
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
        assert_eq!(parse_source("[::1]:15214"), Ok(v6));
        assert_eq!(parse_source("[::1]"), Ok(v6));
        assert_eq!(parse_source("::1"), Ok(v6));
        assert_eq!(parse_source("[::ffff:127.0.0.1]:5060"), Ok(v4));
        assert!(parse_source("bogus").is_err());
        assert!(parse_source("1.2.3.4:99999").is_err());
    }

    proptest::proptest! {
        #[test]
        fn fast_source_forms_agree_with_the_general_parser(
            s in "[ \t]?[0-9]{0,4}([.][0-9]{0,4}){0,4}(:[+0-9]{0,6})?[ :\\[\\]]?",
            ip in proptest::prelude::any::<IpAddr>(),
            port in proptest::prelude::any::<u16>(),
        ) {
            proptest::prop_assert_eq!(parse_source(&s), parse_source_general(&s));
            for text in [
                ip.to_string(),
                format!("{ip}:{port}"),
                format!("[{ip}]:{port}"),
                format!("[{ip}]"),
                format!("{ip}:0{port}"),
            ] {
                proptest::prop_assert_eq!(parse_source(&text), parse_source_general(&text), "{}", text);
            }
        }
    }

    #[test]
    fn args_to_request() {
        let r = ScreenRequest::from_args(&["Bob <sip:bob@203.0.113.7>;tag=1", "127.0.0.1:15201"]);
        assert!(r.from.is_ok());
        assert_eq!(r.from_raw, "Bob <sip:bob@203.0.113.7>;tag=1");
        assert_eq!(r.source, Some(Ok("127.0.0.1".parse().expect("ip"))));
        let owned = [String::from("203.0.113.7")];
        let r = ScreenRequest::from_args(&owned);
        assert!(r.from.is_ok());
        assert_eq!(r.source, None);
        let r = ScreenRequest::from_args::<String>(&[]);
        assert!(r.from.is_err());
        assert_eq!(r.from_raw, "");
        // A blank source is no source; a bad one is kept as an error.
        let r = ScreenRequest::from_args(&["203.0.113.7", " \t"]);
        assert_eq!(r.source, None);
        let r = ScreenRequest::new("203.0.113.7", Some(" junk "));
        assert_eq!(r.source, Some(Err(SourceError("junk".into()))));
    }
}
