//! The same peers from CLI text, for `audit --from-cli`: the output of
//! `asterisk -rx 'pjsip show contacts'` and `asterisk -rx 'sip show peers'`, padded tables
//! with a header row. Lines that are not rows (headers, `=====`, footers, blank lines) are
//! skipped. Pure: no I/O.

use super::peers::{peer_at, uri_host, Kind, Peer};

/// Rows of `pjsip show contacts`:
/// `  Contact:  101/sip:101@[::1]:15202   851d0955cd Avail   0.731`.
/// `Unavail` is not reachable (qualify fails); `Avail`, `NonQual` and `Unknown` are.
pub fn pjsip_contacts(text: &str) -> Vec<Peer> {
    let mut out = Vec::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        if words.next() != Some("Contact:") {
            continue;
        }
        let Some(aor_uri) = words.next().filter(|w| !w.starts_with('<')) else {
            continue;
        };
        let Some((aor, uri)) = aor_uri.split_once('/') else {
            continue;
        };
        let _hash = words.next();
        let status = words.next().unwrap_or("");
        out.push(Peer {
            name: aor.to_owned(),
            kind: Kind::PjsipContact,
            address: uri.to_owned(),
            host: uri_host(uri),
            status: status.to_owned(),
            reachable: !status.eq_ignore_ascii_case("Unavail"),
        });
    }
    out
}

/// Rows of `sip show peers`, cut at the header's column starts (`Host`, `Dyn`, `Port`,
/// `Status`, `Description`): the name is `201/201` (name/username) once registered, the host
/// `(Unspecified)` when not.
pub fn sip_peers(text: &str) -> Vec<Peer> {
    let mut out = Vec::new();
    let mut columns = None;
    for line in text.lines() {
        if line.starts_with("Name/username") {
            columns = Columns::of(line);
            continue;
        }
        let Some(c) = &columns else { continue };
        if line.trim().is_empty() || line.contains(" sip peers [") {
            continue;
        }
        let cut = |a: usize, b: usize| {
            line.get(a.min(line.len())..b.min(line.len()))
                .unwrap_or("")
                .trim()
        };
        let name = cut(0, c.host);
        let name = name.split('/').next().unwrap_or(name);
        if name.is_empty() {
            continue;
        }
        let host = cut(c.host, c.dyn_);
        let port = cut(c.port, c.status);
        let status = cut(c.status, c.description);
        out.push(peer_at(name, Kind::Sip, host, port, status));
    }
    out
}

/// Byte offsets where the columns of `sip show peers` start.
struct Columns {
    host: usize,
    dyn_: usize,
    port: usize,
    status: usize,
    description: usize,
}

impl Columns {
    fn of(header: &str) -> Option<Columns> {
        let at = |word: &str| header.find(word);
        Some(Columns {
            host: at(" Host ")? + 1,
            dyn_: at(" Dyn ")? + 1,
            // Values are left-aligned under their header, one column before it at most.
            port: at(" Port ")?,
            status: at(" Status ")?,
            description: at(" Description").map_or(usize::MAX, |d| d + 1),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ami::peers::Host;

    fn cli(name: &str) -> String {
        let path = crate::ami::scripted::fixtures().join("cli").join(name);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    /// (name, address, status, reachable) of each peer.
    fn rows(peers: &[Peer]) -> Vec<(&str, &str, &str, bool)> {
        peers
            .iter()
            .map(|p| {
                (
                    p.name.as_str(),
                    p.address.as_str(),
                    p.status.as_str(),
                    p.reachable,
                )
            })
            .collect()
    }

    fn ip(s: &str) -> Option<Host> {
        Some(Host::Ip(s.parse().expect("ip")))
    }

    #[test]
    fn pjsip_show_contacts_capture() {
        let peers = pjsip_contacts(&cli("pjsip-show-contacts.txt"));
        let rows = rows(&peers);
        assert_eq!(
            rows,
            [
                ("101", "sip:101@127.0.0.1:15201", "Avail", true),
                ("101", "sip:101@[::1]:15202", "Avail", true),
                ("102", "sip:102@[::1]:15203", "NonQual", true),
                ("104", "sip:104@127.0.0.1:15204", "Unavail", false),
                ("carrier-a", "sip:203.0.113.50:5060", "NonQual", true),
            ]
        );
        assert_eq!(peers[1].host, ip("::1"));
        assert_eq!(peers[4].host, ip("203.0.113.50"));
        assert_eq!(
            pjsip_contacts(&cli("pjsip-show-contacts-after-unregister.txt")).len(),
            4
        );
    }

    #[test]
    fn sip_show_peers_captures_v4_and_v6() {
        let peers = sip_peers(&cli("sip-show-peers.txt"));
        let rows = rows(&peers);
        assert_eq!(
            rows,
            [
                ("201", "127.0.0.1:15211", "OK (1 ms)", true),
                ("202", "-", "UNKNOWN", false),
                ("203", "127.0.0.1:15213", "Unmonitored", true),
                ("carrier-b", "198.51.100.20:5060", "Unmonitored", true),
                ("pjsip-in", "127.0.0.1:5060", "Unmonitored", true),
            ]
        );
        let v6 = sip_peers(&cli("chansip-ipv6/sip-show-peers.txt"));
        assert_eq!(v6.len(), 5);
        assert_eq!(
            (v6[0].address.as_str(), &v6[0].host),
            ("[::1]:15221", &ip("::1"))
        );
        assert_eq!(
            (v6[2].name.as_str(), v6[2].address.as_str()),
            ("203", "[::1]:15223")
        );
        assert!(!v6[4].reachable, "pjsip-in is unregistered in run 2");
        let after = sip_peers(&cli("sip-show-peers-after-unregister.txt"));
        assert!(
            !after[2].reachable && after[2].address == "-",
            "{:?}",
            after[2]
        );
        assert!(sip_peers(&cli("iax2-show-peers.txt")).is_empty());
        assert!(pjsip_contacts(&cli("sip-show-peers.txt")).is_empty());
    }
}
