//! Registered peers screened with the policy: [`judge`] gives each [`Peer`] the verdict a call
//! from its address would get, through the same `decision::decide` as calls. An address is
//! checked as a call's signalling source (`Trust::Source`); a host name (a contact URI may
//! carry one) as a call's From host name (`Trust::From`): allow-hosts first, then DNS.
//! Unregistered or unreachable peers are `unreachable`, and never ko.

use std::fmt;
use std::net::IpAddr;

use serde::Serialize;

use crate::ami::{Host, Peer};
use crate::decision::{self, Subject, Trust, Verdict};
use crate::policy::Policy;
use crate::ranges::RuleSource;
use crate::request::{CallArgs, ScreenRequest};
use crate::resolve::HostResolver;

/// A peer's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PeerVerdict {
    /// Its address is permitted.
    Permitted,
    /// Its address is in a deny range.
    Denied,
    /// Its address is outside every permit range (or its host cannot be checked).
    Stranger,
    /// It is not registered, or known to be down: nothing to screen.
    Unreachable,
}

impl PeerVerdict {
    /// `permitted`, `denied`, `stranger`, `unreachable`.
    pub fn as_str(self) -> &'static str {
        match self {
            PeerVerdict::Permitted => "permitted",
            PeerVerdict::Denied => "denied",
            PeerVerdict::Stranger => "stranger",
            PeerVerdict::Unreachable => "unreachable",
        }
    }

    /// Whether the peer is fine: permitted or unreachable.
    pub fn is_ok(self) -> bool {
        matches!(self, PeerVerdict::Permitted | PeerVerdict::Unreachable)
    }
}

impl fmt::Display for PeerVerdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A peer and what the policy makes of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The peer.
    pub peer: Peer,
    /// Its verdict.
    pub verdict: PeerVerdict,
    /// The address checked (for a host name: the one that decided).
    pub ip: Option<IpAddr>,
    /// The deciding rule, shown (`permit #1 203.0.113.0/24 office`).
    pub rule: Option<String>,
    /// Why (`no permit range for 198.51.100.9`).
    pub reason: String,
    /// The country of the deciding `geolite` rule, when there is one (the caller may fill it
    /// from the catalog otherwise).
    pub country: Option<String>,
}

impl Finding {
    /// Whether the peer is fine (see [`PeerVerdict::is_ok`]).
    pub fn ok(&self) -> bool {
        self.verdict.is_ok()
    }
}

/// Screens one peer. Resolves its host name first when the policy needs that (as a call's
/// From name), with `resolver`'s deadline and cache.
pub async fn judge(policy: &Policy, peer: Peer, resolver: &HostResolver) -> Finding {
    let unchecked = |peer: Peer, verdict, reason: &str| Finding {
        peer,
        verdict,
        ip: None,
        rule: None,
        reason: reason.to_owned(),
        country: None,
    };
    let (texts, trust) = match &peer.host {
        _ if !peer.reachable => {
            let status = format!("not registered or not reachable ({})", peer.status);
            return unchecked(peer, PeerVerdict::Unreachable, &status);
        }
        None => return unchecked(peer, PeerVerdict::Stranger, "no address to screen"),
        Some(Host::Ip(ip)) => (vec![ip.to_string()], Trust::Source),
        Some(Host::Name(name)) => (vec![String::new(), format!("<sip:{name}>")], Trust::From),
    };
    let call = CallArgs::new(texts.iter().map(String::as_str));
    let request = ScreenRequest::parse(&call);
    let dns = match decision::host_to_resolve(policy, &request, trust) {
        Some(name) => Some(resolver.lookup(name).await),
        None => None,
    };
    let d = decision::decide(policy, &request, trust, dns.as_ref());
    let verdict = match d.verdict {
        Verdict::Permit => PeerVerdict::Permitted,
        Verdict::Deny => PeerVerdict::Denied,
        Verdict::Stranger => PeerVerdict::Stranger,
    };
    let deciding = d
        .checks
        .iter()
        .find(|c| c.verdict == d.verdict)
        .and_then(|c| match c.subject {
            Subject::Ip(ip) => Some(ip),
            Subject::Text(_) => None,
        });
    let country = d
        .rule
        .filter(|r| r.source == RuleSource::Geolite)
        .map(|r| r.country.clone());
    Finding {
        ip: deciding.or(match &peer.host {
            Some(Host::Ip(ip)) => Some(*ip),
            _ => None,
        }),
        peer,
        verdict,
        rule: d.rule.map(ToString::to_string),
        reason: d.reason.to_string(),
        country,
    }
}
