//! The verdict: pure `decide(policy, request, trust, dns)`, no I/O.
//!
//! # Precedence
//! 1. An address in a **deny** range → [`Verdict::Deny`] (deny beats permit, whichever address
//!    matched and whatever else matched).
//! 2. Else any checked address outside every permit range, an unparseable From, a From with no
//!    host (`tel:`), a From hostname that is neither allow-listed nor resolvable, or a bad source
//!    argument → [`Verdict::Stranger`].
//! 3. Else → [`Verdict::Permit`]; the reason names the From's rule when the From was checked.
//!
//! Which addresses are checked is the [`Trust`] setting: the signalling source (argument 2), the
//! From host (argument 1), or both (the default). The From header is written by the caller and
//! can name any host, so `--trust from` alone lets anyone in who writes a permitted address into
//! it; the source address comes from the packet and is what a firewall would see.

use std::fmt;
use std::net::IpAddr;

use serde::Serialize;

use crate::policy::Policy;
use crate::ranges::{Rule, RuleKind};
use crate::request::ScreenRequest;
use crate::sip::from::Host;

/// Which addresses of a call are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Trust {
    /// Check the signalling source and the From host; a stranger if either is.
    #[default]
    Both,
    /// Check the signalling source only.
    Source,
    /// Check the From host only (forgeable: see the module docs).
    From,
}

impl Trust {
    fn source(self) -> bool {
        matches!(self, Trust::Both | Trust::Source)
    }
    fn from(self) -> bool {
        matches!(self, Trust::Both | Trust::From)
    }
}

/// The outcome for a call or for one address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Verdict {
    /// Let the call through.
    #[serde(rename = "permitted")]
    Permit,
    /// In a deny range.
    #[serde(rename = "denied")]
    Deny,
    /// Outside the permit ranges (or not checkable).
    #[serde(rename = "stranger")]
    Stranger,
}

impl Verdict {
    /// The word set in `IPCOUNTRY_VERDICT`: `permitted`, `denied`, `stranger`.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Permit => "permitted",
            Verdict::Deny => "denied",
            Verdict::Stranger => "stranger",
        }
    }

    /// The value of `STRANGER`: `false` only when permitted.
    pub fn is_stranger(self) -> bool {
        self != Verdict::Permit
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which argument an address came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The signalling source address (argument 2).
    Source,
    /// The From header's host (argument 1).
    From,
}

/// The result of resolving the From's hostname, done by the session before deciding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostLookup {
    /// The A and AAAA records found.
    Addrs(Vec<IpAddr>),
    /// Resolution failed or timed out; the text says why.
    Failed(String),
}

/// One checked subject (an address, a hostname, or an argument that could not be checked).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check<'p> {
    /// Which argument it came from.
    pub role: Role,
    /// The address or host name checked, or the raw text.
    pub subject: String,
    /// Its verdict.
    pub verdict: Verdict,
    /// Why: the matched rule, or what was missing.
    pub reason: String,
    /// The matched rule, if any (borrowed from the policy snapshot: no copy per call).
    pub rule: Option<&'p Rule>,
}

/// The verdict for a call, with the check that decided it and all checks made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision<'p> {
    /// The overall verdict.
    pub verdict: Verdict,
    /// The reason of the deciding check (`deny #1 203.0.113.66/32`).
    pub reason: String,
    /// The matched rule of the deciding check.
    pub rule: Option<&'p Rule>,
    /// Every check made, in order (source first).
    pub checks: Vec<Check<'p>>,
}

/// The From hostname that must be resolved before [`decide`] can judge it, if any: the From
/// is trusted, names a domain, and that domain is not allow-listed.
pub fn host_to_resolve<'r>(
    policy: &Policy,
    request: &'r ScreenRequest,
    trust: Trust,
) -> Option<&'r str> {
    if !trust.from() {
        return None;
    }
    match request.from.as_ref().ok()?.host()? {
        Host::Domain(d) if policy.hosts().matching(d).is_none() => Some(d.as_str()),
        _ => None,
    }
}

/// Decides a call. `dns` is the resolution of [`host_to_resolve`]'s name (if there was one).
pub fn decide<'p>(
    policy: &'p Policy,
    request: &ScreenRequest,
    trust: Trust,
    dns: Option<&HostLookup>,
) -> Decision<'p> {
    let mut checks = Vec::with_capacity(2);
    if trust.source() {
        match &request.source {
            Some(Ok(ip)) => checks.push(check_ip(policy, *ip, Role::Source)),
            Some(Err(e)) => checks.push(unchecked(Role::Source, &e.0, "bad source address")),
            // The legacy dialplan passes no source: judge on the From alone, unless only the
            // source is trusted.
            None if trust == Trust::Source => {
                checks.push(unchecked(Role::Source, "", "no source address"))
            }
            None => {}
        }
    }
    if trust.from() {
        check_from(policy, request, dns, &mut checks);
    }
    combine(checks)
}

fn check_from<'p>(
    policy: &'p Policy,
    request: &ScreenRequest,
    dns: Option<&HostLookup>,
    checks: &mut Vec<Check<'p>>,
) {
    let Ok(from) = &request.from else {
        checks.push(unchecked(Role::From, &request.from_raw, "unparseable From"));
        return;
    };
    match from.host() {
        None => checks.push(unchecked(Role::From, &request.from_raw, "From has no host")),
        Some(Host::Ip(ip)) => checks.push(check_ip(policy, *ip, Role::From)),
        Some(Host::Domain(name)) => {
            if let Some(pattern) = policy.hosts().matching(name) {
                checks.push(Check {
                    role: Role::From,
                    subject: name.clone(),
                    verdict: Verdict::Permit,
                    reason: format!("allow-host {pattern}"),
                    rule: None,
                });
                return;
            }
            match dns {
                Some(HostLookup::Addrs(addrs)) if !addrs.is_empty() => {
                    checks.extend(addrs.iter().map(|ip| check_ip(policy, *ip, Role::From)))
                }
                Some(HostLookup::Addrs(_)) => checks.push(unchecked(
                    Role::From,
                    name,
                    &format!("{name} has no address"),
                )),
                Some(HostLookup::Failed(why)) => checks.push(unchecked(
                    Role::From,
                    name,
                    &format!("cannot resolve {name}: {why}"),
                )),
                None => checks.push(unchecked(Role::From, name, &format!("{name} not resolved"))),
            }
        }
    }
}

fn check_ip(policy: &Policy, ip: IpAddr, role: Role) -> Check<'_> {
    let ip = ip.to_canonical();
    let (verdict, reason, rule) = match policy.table().lookup(ip) {
        Some(rule) => {
            let verdict = match rule.kind {
                RuleKind::Deny => Verdict::Deny,
                RuleKind::Permit => Verdict::Permit,
            };
            (verdict, rule.to_string(), Some(rule))
        }
        None => (Verdict::Stranger, format!("no permit range for {ip}"), None),
    };
    Check {
        role,
        subject: ip.to_string(),
        verdict,
        reason,
        rule,
    }
}

fn unchecked<'p>(role: Role, subject: &str, reason: &str) -> Check<'p> {
    Check {
        role,
        subject: subject.chars().take(256).collect(),
        verdict: Verdict::Stranger,
        reason: reason.to_owned(),
        rule: None,
    }
}

fn combine(checks: Vec<Check<'_>>) -> Decision<'_> {
    let deciding = checks
        .iter()
        .find(|c| c.verdict == Verdict::Deny)
        .or_else(|| checks.iter().find(|c| c.verdict == Verdict::Stranger))
        // All permitted: name the From's rule, it says who the caller claims to be.
        .or_else(|| checks.iter().find(|c| c.role == Role::From))
        .or_else(|| checks.first());
    let (verdict, reason, rule) = match deciding {
        Some(c) => (c.verdict, c.reason.clone(), c.rule),
        None => (Verdict::Stranger, "nothing to check".to_owned(), None),
    };
    Decision {
        verdict,
        reason,
        rule,
        checks,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hosts::HostPattern;
    use crate::policy::Builtins;
    use crate::ranges::{IpRange, RuleSource};

    fn rule(id: i64, kind: RuleKind, range: &str, note: &str) -> Rule {
        Rule {
            id,
            kind,
            range: range.parse::<IpRange>().expect("range"),
            country: "AA".into(),
            source: RuleSource::Custom,
            note: note.into(),
        }
    }

    fn policy() -> &'static Policy {
        static POLICY: std::sync::OnceLock<Policy> = std::sync::OnceLock::new();
        POLICY.get_or_init(|| {
            Policy::compile(
                Some(1),
                vec![
                    rule(1, RuleKind::Permit, "203.0.113.0/24", "office"),
                    rule(1, RuleKind::Deny, "203.0.113.66", ""),
                    rule(2, RuleKind::Permit, "2001:db8:1::/48", ""),
                ],
                [HostPattern::parse("sipgate.com").expect("pattern")],
                Builtins::On,
            )
        })
    }

    fn decide_str(from: &str, src: Option<&str>, trust: Trust) -> Decision<'static> {
        decide(policy(), &ScreenRequest::new(from, src), trust, None)
    }

    #[test]
    fn acceptance_scenario() {
        let d = decide_str(
            r#""Bob" <sip:bob@203.0.113.7:5060>;tag=1"#,
            None,
            Trust::Both,
        );
        assert_eq!(d.verdict, Verdict::Permit);
        assert_eq!(d.reason, "permit #1 203.0.113.0/24 office");
        let d = decide_str("203.0.113.66", None, Trust::Both);
        assert_eq!(d.verdict, Verdict::Deny);
        assert_eq!(d.reason, "deny #1 203.0.113.66/32");
        let d = decide_str("198.51.100.9", None, Trust::Both);
        assert_eq!(d.verdict, Verdict::Stranger);
        assert_eq!(d.reason, "no permit range for 198.51.100.9");
    }

    #[test]
    fn trust_modes() {
        let from = "Bob <sip:bob@203.0.113.7>;tag=x";
        // Source is a stranger: both → stranger; from → permitted; source → stranger.
        assert_eq!(
            decide_str(from, Some("198.51.100.9:5060"), Trust::Both).verdict,
            Verdict::Stranger
        );
        assert_eq!(
            decide_str(from, Some("198.51.100.9:5060"), Trust::From).verdict,
            Verdict::Permit
        );
        assert_eq!(
            decide_str(from, Some("198.51.100.9:5060"), Trust::Source).verdict,
            Verdict::Stranger
        );
        // Loopback source is builtin-permitted.
        let d = decide_str(from, Some("127.0.0.1:15201"), Trust::Both);
        assert_eq!(d.verdict, Verdict::Permit);
        assert_eq!(d.checks.len(), 2);
        // A denied source beats a permitted From.
        let d = decide_str(from, Some("203.0.113.66"), Trust::Both);
        assert_eq!(d.verdict, Verdict::Deny);
        // No source at all with --trust source.
        assert_eq!(
            decide_str(from, None, Trust::Source).reason,
            "no source address"
        );
        assert_eq!(
            decide_str(from, Some("junk"), Trust::Both).reason,
            "bad source address"
        );
    }

    #[test]
    fn from_without_host_or_unparseable() {
        let d = decide_str("<tel:+15551234>", Some("127.0.0.1"), Trust::Both);
        assert_eq!(
            (d.verdict, d.reason.as_str()),
            (Verdict::Stranger, "From has no host")
        );
        let d = decide_str("<sip:bob@203.0.113.300>", Some("127.0.0.1"), Trust::Both);
        assert_eq!(
            (d.verdict, d.reason.as_str()),
            (Verdict::Stranger, "unparseable From")
        );
        // ... but with --trust source the From does not matter.
        let d = decide_str("<tel:+15551234>", Some("127.0.0.1"), Trust::Source);
        assert_eq!(d.verdict, Verdict::Permit);
    }

    #[test]
    fn hostnames() {
        let p = policy();
        let req = ScreenRequest::new("<sip:bob@SipGate.com>", Some("127.0.0.1"));
        assert_eq!(host_to_resolve(p, &req, Trust::Both), None);
        let d = decide(p, &req, Trust::Both, None);
        assert_eq!(
            (d.verdict, d.reason.as_str()),
            (Verdict::Permit, "allow-host sipgate.com")
        );

        let req = ScreenRequest::new("<sip:bob@gw.example.com>", Some("127.0.0.1"));
        assert_eq!(
            host_to_resolve(p, &req, Trust::Both),
            Some("gw.example.com")
        );
        assert_eq!(host_to_resolve(p, &req, Trust::Source), None);
        let ok = HostLookup::Addrs(vec!["203.0.113.9".parse().expect("ip")]);
        assert_eq!(
            decide(p, &req, Trust::Both, Some(&ok)).verdict,
            Verdict::Permit
        );
        let mixed = HostLookup::Addrs(vec![
            "203.0.113.9".parse().expect("ip"),
            "198.51.100.1".parse().expect("ip"),
        ]);
        assert_eq!(
            decide(p, &req, Trust::Both, Some(&mixed)).verdict,
            Verdict::Stranger
        );
        let failed = HostLookup::Failed("timed out".into());
        let d = decide(p, &req, Trust::Both, Some(&failed));
        assert_eq!(d.reason, "cannot resolve gw.example.com: timed out");
    }

    #[test]
    fn ipv6_and_mapped() {
        let d = decide_str(
            "<sip:bob@[2001:db8:1::5]:5060>",
            Some("[::1]:5060"),
            Trust::Both,
        );
        assert_eq!(d.verdict, Verdict::Permit);
        let d = decide_str("<sip:bob@[2001:db8::1]>", Some("[::1]:5060"), Trust::Both);
        assert_eq!(d.verdict, Verdict::Stranger);
        let d = decide_str("::ffff:203.0.113.66", None, Trust::Both);
        assert_eq!(d.verdict, Verdict::Deny);
    }
}
