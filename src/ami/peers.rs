//! Registered peers as Asterisk reports them: [`Peer`] built from one AMI event
//! (`ContactList`, `OutboundRegistrationDetail`, `PeerEntry`), with the address to screen
//! picked out. Pure: no I/O. The CLI-text equivalents are in `cli_text`.

use std::fmt;
use std::net::IpAddr;

use serde::Serialize;

use super::frame::Message;

/// What kind of registration a peer is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum Kind {
    /// A PJSIP contact (a device registered to an AOR), from `PJSIPShowContacts`.
    #[serde(rename = "pjsip-contact")]
    PjsipContact,
    /// A PJSIP outbound registration (a trunk we register to), from
    /// `PJSIPShowRegistrationsOutbound`: its server's address.
    #[serde(rename = "pjsip-registration")]
    PjsipRegistration,
    /// A chan_sip peer, from `SIPpeers`.
    #[serde(rename = "sip")]
    Sip,
    /// A chan_iax2 peer, from `IAXpeerlist`.
    #[serde(rename = "iax")]
    Iax,
}

impl Kind {
    /// `pjsip-contact`, `pjsip-registration`, `sip`, `iax` (also the store's `kind` column).
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::PjsipContact => "pjsip-contact",
            Kind::PjsipRegistration => "pjsip-registration",
            Kind::Sip => "sip",
            Kind::Iax => "iax",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The host a peer signals from, as far as Asterisk knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    /// A literal address (canonical: IPv4-mapped IPv6 shown as IPv4).
    Ip(IpAddr),
    /// A host name (a contact URI may carry one), screened like a From host name.
    Name(String),
}

/// One registered (or configured but unregistered) peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// The endpoint, peer or registration name (`101`, `carrier-b`, `reg-to-chansip`).
    pub name: String,
    /// Where it came from.
    pub kind: Kind,
    /// The address as Asterisk reports it (`sip:101@[::1]:15202`, `127.0.0.1:15211`), or
    /// `-` when it has none.
    pub address: String,
    /// The host to screen, when there is one.
    pub host: Option<Host>,
    /// Asterisk's status word (`Reachable`, `OK (1 ms)`, `Registered`, `UNKNOWN`, ...).
    pub status: String,
    /// Whether it is registered and not known to be down: otherwise it is listed as
    /// `unreachable` and never counts as ko.
    pub reachable: bool,
}

/// A `ContactList` event: the contact URI's host (see the module `ami` on why not `ViaAddr`).
/// `Unreachable` contacts are not reachable; `Reachable`, `NonQualified` and `Unknown` are.
pub fn from_contact(event: &Message) -> Option<Peer> {
    let uri = event.get("Uri")?;
    let name = event
        .get("Endpoint")
        .filter(|e| !e.is_empty())
        .or_else(|| event.get("ObjectName").and_then(|o| o.split(';').next()))?;
    let status = event.get("Status").unwrap_or("");
    Some(Peer {
        name: name.to_owned(),
        kind: Kind::PjsipContact,
        address: uri.to_owned(),
        host: uri_host(uri),
        status: status.to_owned(),
        reachable: !status.eq_ignore_ascii_case("Unreachable"),
    })
}

/// An `OutboundRegistrationDetail` event: the server it registers to; reachable only while
/// `Registered`.
pub fn from_registration(event: &Message) -> Option<Peer> {
    if event.get("Event") != Some("OutboundRegistrationDetail") {
        return None;
    }
    let uri = event.get("ServerUri")?;
    let status = event.get("Status").unwrap_or("");
    Some(Peer {
        name: event.get("ObjectName")?.to_owned(),
        kind: Kind::PjsipRegistration,
        address: uri.to_owned(),
        host: uri_host(uri),
        status: status.to_owned(),
        reachable: status.eq_ignore_ascii_case("Registered"),
    })
}

/// A `PeerEntry` event of `SIPpeers` or `IAXpeerlist`: `IPaddress` and `IPport`.
/// `IPaddress: -none-` (never registered, or unregistered) and an `UNREACHABLE` status are
/// not reachable.
pub fn from_peer_entry(event: &Message, kind: Kind) -> Option<Peer> {
    if event.get("Event") != Some("PeerEntry") {
        return None;
    }
    let name = event.get("ObjectName")?;
    let ip = event.get("IPaddress").unwrap_or("");
    let port = event.get("IPport").unwrap_or("0");
    let status = event.get("Status").unwrap_or("");
    Some(peer_at(name, kind, ip, port, status))
}

/// A chan_sip or IAX peer at `ip` (`-none-`, `(Unspecified)` or empty for none) and `port`.
pub(super) fn peer_at(name: &str, kind: Kind, ip: &str, port: &str, status: &str) -> Peer {
    let host = ip
        .parse::<IpAddr>()
        .ok()
        .map(|ip| Host::Ip(ip.to_canonical()));
    let address = match host {
        Some(Host::Ip(IpAddr::V6(v6))) => format!("[{v6}]:{port}"),
        Some(_) => format!("{ip}:{port}"),
        None => "-".to_owned(),
    };
    let down = status.to_ascii_uppercase().starts_with("UNREACHABLE");
    Peer {
        name: name.to_owned(),
        kind,
        address,
        reachable: host.is_some() && !down,
        host,
        status: status.to_owned(),
    }
}

/// The host of a `sip:`/`sips:` URI: `sip:101@[::1]:15202` → `::1`,
/// `sip:203.0.113.50:5060` → `203.0.113.50`, `sip:101@pbx.example.com;transport=tcp` → the
/// name (lower-cased). `None` for anything else.
pub fn uri_host(uri: &str) -> Option<Host> {
    let uri = uri.trim().trim_start_matches('<').trim_end_matches('>');
    let lower = uri.get(..5).map(str::to_ascii_lowercase)?;
    let rest = if lower == "sips:" {
        &uri[5..]
    } else if lower.starts_with("sip:") {
        &uri[4..]
    } else {
        return None;
    };
    let rest = rest.split([';', '?']).next()?;
    let hostport = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    let host = if let Some(v6) = hostport.strip_prefix('[') {
        v6.split_once(']')?.0
    } else {
        hostport.split(':').next()?
    };
    if host.is_empty() {
        return None;
    }
    Some(match host.parse::<IpAddr>() {
        Ok(ip) => Host::Ip(ip.to_canonical()),
        Err(_) => {
            let ok = host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
            if !ok {
                return None;
            }
            Host::Name(host.to_ascii_lowercase())
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_hosts() {
        let ip = |s: &str| Some(Host::Ip(s.parse().expect("ip")));
        assert_eq!(uri_host("sip:101@127.0.0.1:15201"), ip("127.0.0.1"));
        assert_eq!(uri_host("sip:101@[::1]:15202"), ip("::1"));
        assert_eq!(uri_host("sip:203.0.113.50:5060"), ip("203.0.113.50"));
        assert_eq!(uri_host("sips:[::ffff:8.8.8.8]"), ip("8.8.8.8"));
        assert_eq!(
            uri_host("<sip:101@PBX.example.com;transport=tcp>"),
            Some(Host::Name("pbx.example.com".into()))
        );
        assert_eq!(uri_host("tel:+4930123"), None);
        assert_eq!(uri_host("sip:101@"), None);
        assert_eq!(uri_host("sip:101@bad host"), None);
    }
}
