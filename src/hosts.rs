//! Allow-host patterns: callers whose From host is one of these names are permitted by name,
//! without resolving it (`sipgate.com`, `*.example.com`).
//!
//! Patterns are validated and lower-cased on the way in ([`HostPattern::parse`]); the compiled
//! [`HostAllowList`] is part of the policy snapshot and matched without allocating
//! ([`HostAllowList::pattern_for`] hands back the stored pattern, borrowed;
//! [`HostAllowList::matching`] copies it for callers that keep it).

use std::collections::HashSet;
use std::fmt;

/// Why a host pattern was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HostPatternError {
    /// Empty pattern.
    #[error("empty host name")]
    Empty,
    /// Longer than a DNS name can be.
    #[error("host name longer than 253 characters")]
    TooLong,
    /// A label with characters other than letters, digits, `-` and `_`, longer than 63
    /// characters, starting or ending with `-`, or empty; or a `*` other than a `*.` prefix.
    #[error("not a valid host name (letters, digits, '-' and '.' only; '*.' only as a prefix)")]
    BadSyntax,
    /// An IP address was given: use `permit add` for addresses.
    #[error("that is an IP address: use `ipcountry permit add` for addresses")]
    IpAddress,
}

/// A validated, lower-cased host name, or a `*.suffix` wildcard that matches any name below
/// the suffix (not the suffix itself).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HostPattern(String);

impl HostPattern {
    /// Validates and normalizes a pattern (lower-case, no trailing dot).
    pub fn parse(input: &str) -> Result<Self, HostPatternError> {
        let s = input.trim().trim_end_matches('.').to_ascii_lowercase();
        if s.is_empty() {
            return Err(HostPatternError::Empty);
        }
        if s.len() > 253 {
            return Err(HostPatternError::TooLong);
        }
        if s.parse::<std::net::IpAddr>().is_ok() {
            return Err(HostPatternError::IpAddress);
        }
        let name = s.strip_prefix("*.").unwrap_or(&s);
        let valid_label = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        if !name.split('.').all(valid_label) {
            return Err(HostPatternError::BadSyntax);
        }
        Ok(HostPattern(s))
    }

    /// The normalized pattern text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The compiled allow-list: exact names and wildcard suffixes.
#[derive(Debug, Clone, Default)]
pub struct HostAllowList {
    exact: HashSet<String>,
    /// Wildcard patterns as written (`*.example.com`); a host matches on `.example.com`.
    wildcards: Vec<String>,
}

impl HostAllowList {
    /// Builds the list from validated patterns.
    pub fn new(patterns: impl IntoIterator<Item = HostPattern>) -> Self {
        let mut list = HostAllowList::default();
        for p in patterns {
            if p.0.starts_with('*') {
                list.wildcards.push(p.0);
            } else {
                list.exact.insert(p.0);
            }
        }
        list
    }

    /// The pattern that allows `host` (already lower-case, as the From parser gives it), if any,
    /// as an owned copy: [`pattern_for`](HostAllowList::pattern_for) and one allocation.
    pub fn matching(&self, host: &str) -> Option<String> {
        self.pattern_for(host).map(str::to_owned)
    }

    /// The pattern that allows `host` (already lower-case), if any, borrowed from the list:
    /// `sipgate.com`, `*.example.com`. Allocates nothing.
    pub fn pattern_for(&self, host: &str) -> Option<&str> {
        let host = host.trim_end_matches('.');
        if let Some(h) = self.exact.get(host) {
            return Some(h);
        }
        self.wildcards.iter().map(String::as_str).find(|w| {
            w.strip_prefix('*')
                .is_some_and(|suffix| host.len() > suffix.len() && host.ends_with(suffix))
        })
    }

    /// Number of patterns.
    pub fn len(&self) -> usize {
        self.exact.len() + self.wildcards.len()
    }

    /// Whether the list is empty (the companion of [`len`](HostAllowList::len) that clippy's
    /// `len_without_is_empty` asks of a public type).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(p: &[&str]) -> HostAllowList {
        HostAllowList::new(
            p.iter()
                .map(|s| HostPattern::parse(s).expect("valid pattern")),
        )
    }

    #[test]
    fn exact_and_wildcard() {
        let l = list(&["SipGate.com.", "*.example.com"]);
        assert_eq!(l.matching("sipgate.com").as_deref(), Some("sipgate.com"));
        assert_eq!(
            l.matching("gw.example.com").as_deref(),
            Some("*.example.com")
        );
        assert_eq!(
            l.matching("a.b.example.com").as_deref(),
            Some("*.example.com")
        );
        assert_eq!(l.matching("example.com"), None);
        assert_eq!(l.matching("badexample.com"), None);
        assert_eq!(l.matching("sipgate.com.evil.net"), None);
        // The same answers, borrowed.
        for host in [
            "sipgate.com",
            "gw.example.com",
            "example.com",
            "sipgate.com.evil.net",
        ] {
            assert_eq!(l.pattern_for(host), l.matching(host).as_deref(), "{host}");
        }
        assert_eq!(l.len(), 2);
    }

    #[test]
    fn rejects_bad_patterns() {
        use HostPatternError::{BadSyntax, Empty, IpAddress, TooLong};
        let long = "a".repeat(300);
        for (input, want) in [
            ("", Empty),
            ("203.0.113.7", IpAddress),
            ("a b.com", BadSyntax),
            ("*.*.com", BadSyntax),
            ("foo..com", BadSyntax),
            ("x\n.com", BadSyntax),
            (&long, TooLong),
        ] {
            assert_eq!(HostPattern::parse(input), Err(want), "{input:?}");
        }
    }
}
