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
use crate::ranges::{IpRange, Rule, RuleKind, RuleSource};
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
    pub subject: Subject,
    /// Its verdict.
    pub verdict: Verdict,
    /// Why: the matched rule, or what was missing.
    pub reason: Reason<'p>,
    /// The matched rule, if any (borrowed from the policy snapshot: no copy per call).
    pub rule: Option<&'p Rule>,
}

/// The verdict for a call, with the check that decided it and all checks made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision<'p> {
    /// The overall verdict.
    pub verdict: Verdict,
    /// The reason of the deciding check (`deny #1 203.0.113.66/32`).
    pub reason: Reason<'p>,
    /// The matched rule of the deciding check.
    pub rule: Option<&'p Rule>,
    /// Every check made, in order (source first).
    pub checks: Vec<Check<'p>>,
}

/// What a [`Check`] looked at. Displayed (and serialized) as text: the address in its
/// standard form, or the text as kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    /// An address: the source, the From's literal host, or one the From's name resolved to
    /// (canonical: an IPv4-mapped IPv6 address is shown as IPv4).
    Ip(IpAddr),
    /// A host name, or the raw text of an argument that could not be checked (at most 256
    /// characters of it).
    Text(String),
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Subject::Ip(ip) => ip.fmt(f),
            Subject::Text(text) => f.write_str(text),
        }
    }
}

impl Serialize for Subject {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Why a check (or a call) got its verdict. Kept as the facts, not as text: it is written out
/// only when shown ([`fmt::Display`], serialized as that text), so deciding a call formats
/// nothing and the session writes the one reason it sends straight into its command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason<'p> {
    /// An address matched this rule; shown as the rule is (`deny #1 203.0.113.66/32`,
    /// `geolite US 8.8.0.0/14`).
    Rule(&'p Rule),
    /// No permit range covers the address: `no permit range for 198.51.100.9`.
    NoPermit(IpAddr),
    /// A fixed explanation (`unparseable From`, `bad source address`, ...).
    Fixed(&'static str),
    /// An explanation built while deciding (allow-listed hosts, DNS outcomes).
    Text(String),
}

impl Reason<'_> {
    /// Writes the text of the reason (what [`fmt::Display`] shows) to `out`. For
    /// [`Reason::Rule`] it is the rule's own `Display` text (unit test
    /// `reason_text_matches_rule_display`), written with a fast path for IPv4 addresses and
    /// numbers instead of the standard formatting machinery: the session writes the reason of
    /// every call this way.
    pub fn write_to(&self, out: &mut impl fmt::Write) -> fmt::Result {
        match self {
            Reason::Rule(rule) => write_rule(out, rule),
            Reason::NoPermit(ip) => {
                out.write_str("no permit range for ")?;
                write_ip(out, *ip)
            }
            Reason::Fixed(text) => out.write_str(text),
            Reason::Text(text) => out.write_str(text),
        }
    }
}

impl fmt::Display for Reason<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_to(f)
    }
}

impl Serialize for Reason<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// The From hostname that must be resolved before [`decide`] can judge it, if any: the From
/// is trusted, names a domain, and that domain is not allow-listed.
pub fn host_to_resolve<'r>(
    policy: &Policy,
    request: &'r ScreenRequest<'_>,
    trust: Trust,
) -> Option<&'r str> {
    if !trust.from() {
        return None;
    }
    match request.from.as_ref().ok()?.host()? {
        Host::Domain(d) if policy.hosts().matching(d).is_none() => Some(d),
        _ => None,
    }
}

/// Decides a call. `dns` is the resolution of [`host_to_resolve`]'s name (if there was one).
pub fn decide<'p>(
    policy: &'p Policy,
    request: &ScreenRequest<'_>,
    trust: Trust,
    dns: Option<&HostLookup>,
) -> Decision<'p> {
    let mut checks = Vec::with_capacity(2);
    if trust.source() {
        match &request.source {
            Some(Ok(ip)) => checks.push(check_ip(policy, *ip, Role::Source)),
            Some(Err(e)) => checks.push(unchecked(
                Role::Source,
                &e.0,
                Reason::Fixed("bad source address"),
            )),
            // The legacy dialplan passes no source: judge on the From alone, unless only the
            // source is trusted.
            None if trust == Trust::Source => checks.push(unchecked(
                Role::Source,
                "",
                Reason::Fixed("no source address"),
            )),
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
    request: &ScreenRequest<'_>,
    dns: Option<&HostLookup>,
    checks: &mut Vec<Check<'p>>,
) {
    let Ok(from) = &request.from else {
        checks.push(unchecked(
            Role::From,
            request.from_raw,
            Reason::Fixed("unparseable From"),
        ));
        return;
    };
    match from.host() {
        None => checks.push(unchecked(
            Role::From,
            request.from_raw,
            Reason::Fixed("From has no host"),
        )),
        Some(Host::Ip(ip)) => checks.push(check_ip(policy, *ip, Role::From)),
        Some(Host::Domain(name)) => {
            if let Some(pattern) = policy.hosts().matching(name) {
                checks.push(Check {
                    role: Role::From,
                    subject: Subject::Text(name.to_string()),
                    verdict: Verdict::Permit,
                    reason: Reason::Text(format!("allow-host {pattern}")),
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
                    Reason::Text(format!("{name} has no address")),
                )),
                Some(HostLookup::Failed(why)) => checks.push(unchecked(
                    Role::From,
                    name,
                    Reason::Text(format!("cannot resolve {name}: {why}")),
                )),
                None => checks.push(unchecked(
                    Role::From,
                    name,
                    Reason::Text(format!("{name} not resolved")),
                )),
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
            (verdict, Reason::Rule(rule), Some(rule))
        }
        None => (Verdict::Stranger, Reason::NoPermit(ip), None),
    };
    Check {
        role,
        subject: Subject::Ip(ip),
        verdict,
        reason,
        rule,
    }
}

fn unchecked<'p>(role: Role, subject: &str, reason: Reason<'p>) -> Check<'p> {
    Check {
        role,
        subject: Subject::Text(subject.chars().take(256).collect()),
        verdict: Verdict::Stranger,
        reason,
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
        None => (Verdict::Stranger, Reason::Fixed("nothing to check"), None),
    };
    Decision {
        verdict,
        reason,
        rule,
        checks,
    }
}

/// Writes `rule` exactly as its `Display` does (`permit #12 203.0.113.0/24 office`,
/// `permit builtin 10.0.0.0/8 RFC 1918`, `geolite US 8.8.0.0/14`, `deny geolite US ...`),
/// with the fast number and address writers below.
fn write_rule(out: &mut impl fmt::Write, rule: &Rule) -> fmt::Result {
    match (rule.source, rule.kind) {
        (RuleSource::Custom, kind) => {
            out.write_str(kind.as_str())?;
            out.write_str(" #")?;
            write_i64(out, rule.id)?;
        }
        (RuleSource::Builtin, kind) => {
            out.write_str(kind.as_str())?;
            out.write_str(" builtin")?;
        }
        (RuleSource::Geolite, RuleKind::Permit) => {
            out.write_str("geolite ")?;
            out.write_str(&rule.country)?;
        }
        (RuleSource::Geolite, RuleKind::Deny) => {
            out.write_str("deny geolite ")?;
            out.write_str(&rule.country)?;
        }
    }
    out.write_char(' ')?;
    write_range(out, &rule.range)?;
    if !rule.note.is_empty() {
        out.write_char(' ')?;
        out.write_str(&rule.note)?;
    }
    Ok(())
}

/// Writes a range as its `Display` does: `start/prefix` when it is exactly one network,
/// `start-end` otherwise.
fn write_range(out: &mut impl fmt::Write, range: &IpRange) -> fmt::Result {
    // One network exactly when, below the common prefix of start and end, start has only
    // zeros and end only ones (what `IpRange`'s `Display` asks of `ipnet`).
    let prefix = match *range {
        IpRange::V4 { start, end } => {
            let prefix = (start ^ end).leading_zeros();
            let host = u32::MAX.checked_shr(prefix).unwrap_or(0);
            (start & host == 0 && end & host == host).then_some(prefix)
        }
        IpRange::V6 { start, end } => {
            let prefix = (start ^ end).leading_zeros();
            let host = u128::MAX.checked_shr(prefix).unwrap_or(0);
            (start & host == 0 && end & host == host).then_some(prefix)
        }
    };
    write_ip(out, range.start_addr())?;
    match prefix {
        Some(prefix) => {
            out.write_char('/')?;
            write_u64(out, u64::from(prefix))
        }
        None => {
            out.write_char('-')?;
            write_ip(out, range.end_addr())
        }
    }
}

/// Writes an address as its `Display` does; IPv4 without the formatting machinery.
fn write_ip(out: &mut impl fmt::Write, ip: IpAddr) -> fmt::Result {
    match ip {
        IpAddr::V4(v4) => {
            // "255.255.255.255" is 15 bytes.
            let mut buf = [0u8; 15];
            let mut len = 0;
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    buf[len] = b'.';
                    len += 1;
                }
                if octet >= 100 {
                    buf[len] = b'0' + octet / 100;
                    len += 1;
                }
                if octet >= 10 {
                    buf[len] = b'0' + octet / 10 % 10;
                    len += 1;
                }
                buf[len] = b'0' + octet % 10;
                len += 1;
            }
            out.write_str(std::str::from_utf8(&buf[..len]).map_err(|_| fmt::Error)?)
        }
        IpAddr::V6(v6) => write!(out, "{v6}"),
    }
}

/// Writes a decimal number without the formatting machinery.
fn write_u64(out: &mut impl fmt::Write, mut n: u64) -> fmt::Result {
    // u64::MAX has 20 digits.
    let mut buf = [0u8; 20];
    let mut start = buf.len();
    loop {
        start -= 1;
        buf[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.write_str(std::str::from_utf8(&buf[start..]).map_err(|_| fmt::Error)?)
}

fn write_i64(out: &mut impl fmt::Write, n: i64) -> fmt::Result {
    if n < 0 {
        out.write_char('-')?;
    }
    write_u64(out, n.unsigned_abs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hosts::HostPattern;
    use crate::policy::Builtins;
    use crate::ranges::{IpRange, RuleSource};
    use proptest::prelude::*;

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
        assert_eq!(d.reason.to_string(), "permit #1 203.0.113.0/24 office");
        let d = decide_str("203.0.113.66", None, Trust::Both);
        assert_eq!(d.verdict, Verdict::Deny);
        assert_eq!(d.reason.to_string(), "deny #1 203.0.113.66/32");
        let d = decide_str("198.51.100.9", None, Trust::Both);
        assert_eq!(d.verdict, Verdict::Stranger);
        assert_eq!(d.reason.to_string(), "no permit range for 198.51.100.9");
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
            decide_str(from, None, Trust::Source).reason.to_string(),
            "no source address"
        );
        assert_eq!(
            decide_str(from, Some("junk"), Trust::Both)
                .reason
                .to_string(),
            "bad source address"
        );
    }

    #[test]
    fn from_without_host_or_unparseable() {
        let d = decide_str("<tel:+15551234>", Some("127.0.0.1"), Trust::Both);
        assert_eq!(
            (d.verdict, d.reason.to_string().as_str()),
            (Verdict::Stranger, "From has no host")
        );
        let d = decide_str("<sip:bob@203.0.113.300>", Some("127.0.0.1"), Trust::Both);
        assert_eq!(
            (d.verdict, d.reason.to_string().as_str()),
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
            (d.verdict, d.reason.to_string().as_str()),
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
        assert_eq!(
            d.reason.to_string(),
            "cannot resolve gw.example.com: timed out"
        );
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

    #[test]
    fn checks_keep_subjects_and_reasons_as_facts() {
        let d = decide_str(
            "<sip:bob@203.0.113.66>",
            Some("[::ffff:198.51.100.9]:5060"),
            Trust::Both,
        );
        assert_eq!(d.verdict, Verdict::Deny);
        assert_eq!(d.checks.len(), 2);
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        assert_eq!(d.checks[0].subject, Subject::Ip(ip("198.51.100.9")));
        assert_eq!(d.checks[0].reason, Reason::NoPermit(ip("198.51.100.9")));
        assert_eq!(d.checks[1].subject.to_string(), "203.0.113.66");
        assert!(matches!(d.checks[1].reason, Reason::Rule(r) if r.kind == RuleKind::Deny));
        let json = serde_json::to_value(&d).expect("json");
        assert_eq!(json["reason"], "deny #1 203.0.113.66/32");
        assert_eq!(json["checks"][0]["subject"], "198.51.100.9");
        assert_eq!(
            json["checks"][0]["reason"],
            "no permit range for 198.51.100.9"
        );
        let d = decide_str("junk\u{7f}", None, Trust::Both);
        assert_eq!(d.checks[0].subject, Subject::Text("junk\u{7f}".into()));
        assert_eq!(d.reason.to_string(), "unparseable From");
    }

    /// Every way a rule can look, against the rule's own `Display`.
    fn any_rule() -> impl Strategy<Value = Rule> {
        let range = prop_oneof![
            (any::<u32>(), any::<u32>()).prop_map(|(a, b)| IpRange::v4(a.min(b), a.max(b))),
            (any::<u32>(), 0u32..=32).prop_map(|(a, p)| {
                let host = u32::MAX.checked_shr(p).unwrap_or(0);
                IpRange::v4(a & !host, a | host)
            }),
            (any::<u128>(), any::<u128>()).prop_map(|(a, b)| IpRange::v6(a.min(b), a.max(b))),
            (any::<u128>(), 0u32..=128).prop_map(|(a, p)| {
                let host = u128::MAX.checked_shr(p).unwrap_or(0);
                IpRange::v6(a & !host, a | host)
            }),
            // IPv4-mapped IPv6 and small IPv6 (shown in dotted or compressed forms).
            (any::<u32>(), 0u32..=32).prop_map(|(a, p)| {
                let host = u32::MAX.checked_shr(p).unwrap_or(0);
                let base = 0xffff_u128 << 32;
                IpRange::v6(base | u128::from(a & !host), base | u128::from(a | host))
            }),
            (0u128..70_000, 0u128..70_000).prop_map(|(a, b)| IpRange::v6(a.min(b), a.max(b))),
        ]
        .prop_map(|r| r.expect("start <= end"));
        let kind = prop_oneof![Just(RuleKind::Permit), Just(RuleKind::Deny)];
        let source = prop_oneof![
            Just(RuleSource::Custom),
            Just(RuleSource::Builtin),
            Just(RuleSource::Geolite)
        ];
        (
            any::<i64>(),
            kind,
            range,
            "[A-Z]{2}",
            source,
            "|office|RFC 1918|a, \"b\" \\ é",
        )
            .prop_map(|(id, kind, range, country, source, note)| Rule {
                id,
                kind,
                range,
                country,
                source,
                note,
            })
    }

    proptest! {
        #[test]
        fn reason_text_matches_rule_display(rule in any_rule()) {
            prop_assert_eq!(Reason::Rule(&rule).to_string(), rule.to_string());
            let ip = rule.range.start_addr();
            prop_assert_eq!(
                Reason::NoPermit(ip).to_string(),
                format!("no permit range for {ip}")
            );
        }
    }

    #[test]
    fn reason_text_edge_cases() {
        let mapped = 0xffff_0102_0304_u128;
        for (range, text) in [
            (IpRange::v4(0, u32::MAX), "permit #-7 0.0.0.0/0"),
            (
                IpRange::v4(u32::MAX, u32::MAX),
                "permit #-7 255.255.255.255/32",
            ),
            (
                IpRange::v4(0x0a00_0001, 0x0a00_0006),
                "permit #-7 10.0.0.1-10.0.0.6",
            ),
            (IpRange::v6(0, u128::MAX), "permit #-7 ::/0"),
            (IpRange::v6(mapped, mapped), "permit #-7 ::ffff:1.2.3.4/128"),
            (IpRange::v6(1, 1), "permit #-7 ::1/128"),
        ] {
            let r = Rule {
                range: range.expect("range"),
                ..rule(-7, RuleKind::Permit, "1.2.3.4", "")
            };
            assert_eq!(Reason::Rule(&r).to_string(), text);
            assert_eq!(Reason::Rule(&r).to_string(), r.to_string());
        }
        let r = rule(i64::MIN, RuleKind::Deny, "1.2.3.4", "");
        assert_eq!(Reason::Rule(&r).to_string(), r.to_string());
    }
}
