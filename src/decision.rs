//! The verdict: pure `decide(policy, request, trust, dns)`, no I/O.
//!
//! # Precedence
//! 1. An address in a **deny** range → [`Verdict::Deny`] (deny beats permit, whichever address
//!    matched and whatever else matched).
//! 2. Else a checked address outside every permit range, a missing or bad source, an
//!    unparseable or empty From, a From with no host (`tel:`), or a From hostname that is
//!    neither allow-listed nor resolvable → [`Verdict::Stranger`].
//! 3. Else → [`Verdict::Permit`]; the reason names the From's rule when the From was checked.
//!
//! Which addresses are checked is the [`Trust`] setting: the signalling source (argument 1),
//! the From host (the arguments after it), or both (the default). The From header is written
//! by the caller and can name any host, so `Trust::From` alone lets anyone in who writes a
//! permitted address into it; the source address comes from the packet and is what a firewall
//! would see. **No source, no pass**: unless only the From is trusted, a call without a usable
//! source is a stranger. A call with a source and no From argument at all (IAX2) is judged on
//! the source.
//!
//! Under `Trust::Both` a source that is denied or a stranger decides the call on its own: the
//! From is still checked when that needs no lookup (an address, an allow-listed name), but
//! its hostname is not resolved ([`host_to_resolve`] says `None`), so a hostile caller
//! cannot make a call wait on DNS.

use std::fmt;
use std::net::IpAddr;

use serde::Serialize;

use crate::ip_text::IpText;
use crate::policy::Policy;
use crate::ranges::{Rule, RuleKind, RuleSource};
use crate::request::{FromArg, ScreenRequest, SourceError};
use crate::sip::from::Host;

/// Which addresses of a call are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
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
    /// The signalling source address (argument 1).
    Source,
    /// The From header's host (the arguments after it).
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
    /// characters of it). Written by the caller: escape it before logging.
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
/// only when shown ([`fmt::Display`], serialized as that text).
///
/// A reason never carries text the caller wrote, other than a From hostname, which has passed
/// the hostname grammar (letters, digits, `-` and `.`): it goes back to Asterisk and into logs.
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
    /// What kind of reason it is, for the metrics.
    pub fn kind(&self) -> ReasonKind {
        match self {
            Reason::Rule(rule) => match (rule.kind, rule.source) {
                (RuleKind::Deny, _) => ReasonKind::DenyRule,
                (RuleKind::Permit, RuleSource::Builtin) => ReasonKind::Builtin,
                (RuleKind::Permit, RuleSource::Geolite) => ReasonKind::Country,
                (RuleKind::Permit, RuleSource::Custom) => ReasonKind::PermitRule,
            },
            Reason::NoPermit(_) => ReasonKind::NoPermitRange,
            Reason::Text(text) if text.starts_with("allow-host ") => ReasonKind::AllowHost,
            Reason::Text(_) => ReasonKind::Dns,
            Reason::Fixed(text) => match *text {
                "no source address" => ReasonKind::NoSource,
                "bad source address" => ReasonKind::BadSource,
                "unparseable From" => ReasonKind::UnparseableFrom,
                "From has no host" => ReasonKind::FromNoHost,
                "no From header" => ReasonKind::NoFrom,
                "From host not resolved: the source decided" => ReasonKind::SourceDecided,
                _ => ReasonKind::Nothing,
            },
        }
    }
}

/// The kind of a [`Reason`]: the `reason` label of the calls counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReasonKind {
    /// A deny rule matched.
    DenyRule,
    /// A built-in permit range (loopback, private networks) matched.
    Builtin,
    /// A permitted country's range matched.
    Country,
    /// A custom permit rule matched.
    PermitRule,
    /// No permit range covers the address.
    NoPermitRange,
    /// The From host is allow-listed.
    AllowHost,
    /// A DNS outcome decided.
    Dns,
    /// No source address.
    NoSource,
    /// The source address does not parse.
    BadSource,
    /// The From does not parse.
    UnparseableFrom,
    /// The From has no host.
    FromNoHost,
    /// There is no From.
    NoFrom,
    /// The From host was not resolved and the source decided.
    SourceDecided,
    /// Nothing else applies.
    Nothing,
}

impl ReasonKind {
    /// Every kind, in the order of their indexes.
    pub const ALL: [ReasonKind; 14] = [
        ReasonKind::DenyRule,
        ReasonKind::Builtin,
        ReasonKind::Country,
        ReasonKind::PermitRule,
        ReasonKind::NoPermitRange,
        ReasonKind::AllowHost,
        ReasonKind::Dns,
        ReasonKind::NoSource,
        ReasonKind::BadSource,
        ReasonKind::UnparseableFrom,
        ReasonKind::FromNoHost,
        ReasonKind::NoFrom,
        ReasonKind::SourceDecided,
        ReasonKind::Nothing,
    ];

    /// The label: `deny_rule`, `builtin`, `country`, `permit_rule`, `no_permit_range`,
    /// `allow_host`, `dns`, `no_source`, `bad_source`, `unparseable_from`, `from_no_host`,
    /// `no_from`, `source_decided`, `nothing`.
    pub fn as_str(self) -> &'static str {
        match self {
            ReasonKind::DenyRule => "deny_rule",
            ReasonKind::Builtin => "builtin",
            ReasonKind::Country => "country",
            ReasonKind::PermitRule => "permit_rule",
            ReasonKind::NoPermitRange => "no_permit_range",
            ReasonKind::AllowHost => "allow_host",
            ReasonKind::Dns => "dns",
            ReasonKind::NoSource => "no_source",
            ReasonKind::BadSource => "bad_source",
            ReasonKind::UnparseableFrom => "unparseable_from",
            ReasonKind::FromNoHost => "from_no_host",
            ReasonKind::NoFrom => "no_from",
            ReasonKind::SourceDecided => "source_decided",
            ReasonKind::Nothing => "nothing",
        }
    }

    /// The position in [`ReasonKind::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Reason<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_to(f)
    }
}

impl Reason<'_> {
    /// Writes the reason to `w` as `Display` does, piece by piece: every call's reply carries
    /// it.
    pub fn write_to<W: fmt::Write>(&self, w: &mut W) -> fmt::Result {
        match self {
            Reason::Rule(rule) => rule.write_to(w),
            Reason::NoPermit(ip) => {
                w.write_str("no permit range for ")?;
                IpText(*ip).write_to(w)
            }
            Reason::Fixed(text) => w.write_str(text),
            Reason::Text(text) => w.write_str(text),
        }
    }
}

impl Serialize for Reason<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// The From hostname that must be resolved before [`decide`] can judge it, if any: the From
/// is trusted, names a domain that is not allow-listed, and (when the source is trusted too)
/// the source passed.
pub fn host_to_resolve<'r>(
    policy: &Policy,
    request: &'r ScreenRequest<'_>,
    trust: Trust,
) -> Option<&'r str> {
    if !trust.from() || (trust.source() && source_check(policy, request).verdict != Verdict::Permit)
    {
        return None;
    }
    match from_target(policy, request.from.as_ref()?) {
        FromTarget::Name(name) => Some(name),
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
    let mut source_passed = true;
    if trust.source() {
        let check = source_check(policy, request);
        source_passed = check.verdict == Verdict::Permit;
        checks.push(check);
    }
    if trust.from() {
        match &request.from {
            Some(from) => check_from(policy, from, dns, source_passed, &mut checks),
            // No From argument: judged on the source, unless only the From is trusted.
            None if trust == Trust::From => {
                checks.push(unchecked(Role::From, "", Reason::Fixed("no From header")))
            }
            None => {}
        }
    }
    combine(checks)
}

/// Whether a shadow rule would have decided the call: [`decide`] on the policy's shadow
/// view ([`Policy::shadow`]); the verdict and the rule (shown) when the deciding rule there is
/// a shadow rule.
pub fn shadow_match(
    view: &Policy,
    request: &ScreenRequest<'_>,
    trust: Trust,
    dns: Option<&HostLookup>,
) -> Option<(Verdict, String)> {
    let decision = decide(view, request, trust, dns);
    let rule = decision.rule.filter(|r| r.terms.shadow)?;
    Some((decision.verdict, rule.to_string()))
}

/// What the From header asks to be checked.
enum FromTarget<'r> {
    /// It does not parse.
    Unparseable,
    /// It names no host (`tel:`).
    NoHost,
    /// A literal address.
    Ip(IpAddr),
    /// A name on the allow-list, with the pattern that matched.
    Allowed(&'r str, String),
    /// A name to resolve.
    Name(&'r str),
}

fn from_target<'r>(policy: &Policy, from: &'r FromArg<'_>) -> FromTarget<'r> {
    let Ok(header) = &from.header else {
        return FromTarget::Unparseable;
    };
    match header.host() {
        None => FromTarget::NoHost,
        Some(Host::Ip(ip)) => FromTarget::Ip(*ip),
        Some(Host::Domain(name)) => match policy.hosts().matching(name) {
            Some(pattern) => FromTarget::Allowed(name, pattern),
            None => FromTarget::Name(name),
        },
    }
}

fn source_check<'p>(policy: &'p Policy, request: &ScreenRequest<'_>) -> Check<'p> {
    match &request.source {
        Ok(ip) => check_ip(policy, *ip, Role::Source),
        Err(SourceError::Missing) => {
            unchecked(Role::Source, "", Reason::Fixed("no source address"))
        }
        Err(SourceError::Bad(text)) => {
            unchecked(Role::Source, text, Reason::Fixed("bad source address"))
        }
    }
}

fn check_from<'p>(
    policy: &'p Policy,
    from: &FromArg<'_>,
    dns: Option<&HostLookup>,
    source_passed: bool,
    checks: &mut Vec<Check<'p>>,
) {
    match from_target(policy, from) {
        FromTarget::Unparseable => checks.push(unchecked(
            Role::From,
            from.raw,
            Reason::Fixed("unparseable From"),
        )),
        FromTarget::NoHost => checks.push(unchecked(
            Role::From,
            from.raw,
            Reason::Fixed("From has no host"),
        )),
        FromTarget::Ip(ip) => checks.push(check_ip(policy, ip, Role::From)),
        FromTarget::Allowed(name, pattern) => checks.push(Check {
            role: Role::From,
            subject: Subject::Text(name.to_owned()),
            verdict: Verdict::Permit,
            reason: Reason::Text(format!("allow-host {pattern}")),
            rule: None,
        }),
        FromTarget::Name(name) => match dns {
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
            None if !source_passed => checks.push(unchecked(
                Role::From,
                name,
                Reason::Fixed("From host not resolved: the source decided"),
            )),
            None => checks.push(unchecked(
                Role::From,
                name,
                Reason::Text(format!("{name} not resolved")),
            )),
        },
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

#[cfg(test)]
#[path = "decision_tests.rs"]
mod tests;
