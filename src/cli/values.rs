//! The value parsers of the command line: each refuses a bad value as it is parsed, with a
//! message that says what would do.

use std::time::Duration;

use ipcountry::server::MAX_SESSIONS;
use ipcountry::store::MAX_HEARTBEAT;

/// `knock-user add --ttl`: a whole number of seconds, 1 s to 366 days.
pub(super) fn knock_ttl(s: &str) -> Result<Duration, String> {
    match positive_duration(s)? {
        d if d > Duration::from_secs(366 * 86_400) => Err("at most 366 days".to_owned()),
        d if d.subsec_nanos() > 0 || d.as_secs() == 0 => {
            Err("a whole number of seconds (e.g. 12h, 30m, 90s)".to_owned())
        }
        d => Ok(d),
    }
}

/// A network (`192.0.2.10/32`) or one address (`192.0.2.10`, `::1`).
pub(super) fn cidr(s: &str) -> Result<ipnet::IpNet, String> {
    let s = s.trim();
    s.parse::<ipnet::IpNet>()
        .or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map(|n| n.trunc())
        .map_err(|_| format!("not a network or an address: {s:?} (e.g. 192.0.2.10/32)"))
}

/// A duration: `500ms`, `5s`, `2m`, `1h 30m` (humantime's format), or plain seconds.
pub(super) fn duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s
            .parse::<u64>()
            .map(Duration::from_secs)
            .map_err(|e| format!("{s:?}: {e}"));
    }
    humantime::parse_duration(s)
        .map_err(|e| format!("not a duration: {s:?} ({e}; use 500ms, 5s, 2m)"))
}

/// A [`duration`] that is not zero.
pub(super) fn positive_duration(s: &str) -> Result<Duration, String> {
    match duration(s)? {
        d if d.is_zero() => Err("must be more than zero".to_owned()),
        d => Ok(d),
    }
}

/// `--heartbeat`: more than zero, at most [`MAX_HEARTBEAT`].
pub(super) fn heartbeat(s: &str) -> Result<Duration, String> {
    match positive_duration(s)? {
        d if d > MAX_HEARTBEAT => Err(format!(
            "at most {} (a server row older than {} counts as gone)",
            humantime::format_duration(MAX_HEARTBEAT),
            humantime::format_duration(ipcountry::store::STALE_AFTER)
        )),
        d => Ok(d),
    }
}

/// `--max-sessions`: 1 to [`MAX_SESSIONS`].
pub(super) fn max_sessions(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(n) if (1..=MAX_SESSIONS).contains(&n) => Ok(n),
        _ => Err(format!("must be a whole number from 1 to {MAX_SESSIONS}")),
    }
}

pub(super) fn port_range(s: &str) -> Result<ipcountry::firewall::PortRange, String> {
    s.parse()
        .map_err(|e: ipcountry::firewall::FirewallError| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(duration("2"), Ok(Duration::from_secs(2)));
        assert_eq!(duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(duration("0s"), Ok(Duration::ZERO));
        assert!(duration("x").is_err());
        assert!(duration("5 parsecs").is_err());
        assert!(positive_duration("0").is_err());
        assert!(positive_duration("0ms").is_err());
        assert_eq!(positive_duration("1ms"), Ok(Duration::from_millis(1)));
        assert!(max_sessions("0").is_err());
        assert!(max_sessions(&(MAX_SESSIONS + 1).to_string()).is_err());
        assert_eq!(max_sessions("1024"), Ok(1024));
    }
}
