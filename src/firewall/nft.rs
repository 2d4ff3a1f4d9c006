//! The nftables ruleset: one table, `inet ipcountry`, owned entirely by ipcountry.
//!
//! The file [`ruleset`] writes is a single `nft -f` transaction: it creates the table if it is
//! missing, deletes it, and creates it again with its sets and its chain, so loading it never
//! touches another table, and either all of it takes effect or none of it. Sets:
//!
//! - `permit4`, `permit6`, `deny4`, `deny6`: interval sets (`flags interval`, `auto-merge`)
//!   of the snapshot's merged intervals ([`Sets`]);
//! - `strangers4`, `strangers6`: timeout sets (default `timeout 1d`) for addresses blocked at
//!   run time, e.g. `nft add element inet ipcountry strangers4 '{ 198.51.100.7 timeout 1h }'`;
//!   [`apply`](super::apply) carries their elements over into a new table (entries
//!   `watch --block` adds to the deny table reach `deny4`/`deny6` at the next apply, which
//!   `serve --firewall` makes at every change);
//! - `udp_ports`, `tcp_ports`: the VoIP ports ([`VoipPorts`]).
//!
//! The chain `input` (hook input, priority filter, policy accept) returns at once for every
//! packet that is not UDP or TCP to a VoIP port; for the rest it drops denied and blocked
//! sources, accepts permitted ones and drops the others, each with a counter. Its `accept` is
//! this table's verdict only: other tables' chains still see the packet.

use std::fmt::Write as _;

use super::{Proto, Sets, VoipPorts};
use crate::ranges::IpRange;

/// The table's family and name, as nft commands spell them.
pub const TABLE: &str = "inet ipcountry";

/// How long a stranger added to `strangers4`/`strangers6` stays, unless the add says otherwise.
pub const STRANGER_TIMEOUT: &str = "1d";

/// The whole `nft -f` input: create-if-missing, delete, and the new table, in one transaction.
/// `header` lines become comments at the top (what the ruleset was built from).
pub fn ruleset(sets: &Sets, ports: &VoipPorts, header: &[String]) -> String {
    let mut out = String::new();
    for line in header {
        // A comment runs to the end of the line: keep each header line on its own.
        let line = line.replace(['\n', '\r'], " ");
        let _ = writeln!(out, "# {line}");
    }
    let _ = writeln!(out, "table {TABLE} {{}}");
    let _ = writeln!(out, "delete table {TABLE}");
    out.push_str(&table(sets, ports));
    out
}

/// The table alone (what `nft list table inet ipcountry` shows, give or take the counters).
pub fn table(sets: &Sets, ports: &VoipPorts) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "table {TABLE} {{");
    for proto in [Proto::Udp, Proto::Tcp] {
        let elements: Vec<String> = ports.spelled(proto, '-');
        set(
            &mut out,
            &format!("{}_ports", proto.as_str()),
            "inet_service",
            &["interval"],
            &elements,
        );
    }
    for (name, ranges) in sets.named() {
        let ty = if name.ends_with('4') {
            "ipv4_addr"
        } else {
            "ipv6_addr"
        };
        let elements: Vec<String> = ranges.iter().map(element).collect();
        set(&mut out, name, ty, &["interval", "auto-merge"], &elements);
    }
    for (name, ty) in [("strangers4", "ipv4_addr"), ("strangers6", "ipv6_addr")] {
        let _ = writeln!(
            out,
            "\tset {name} {{\n\t\ttype {ty}\n\t\tflags timeout\n\t\ttimeout {STRANGER_TIMEOUT}\n\t}}"
        );
    }
    out.push_str(concat!(
        "\tchain input {\n",
        "\t\ttype filter hook input priority filter; policy accept;\n",
        "\t\tmeta l4proto != { udp, tcp } return\n",
        "\t\tmeta l4proto udp udp dport != @udp_ports return\n",
        "\t\tmeta l4proto tcp tcp dport != @tcp_ports return\n",
        "\t\tip saddr @deny4 counter drop comment \"denied\"\n",
        "\t\tip6 saddr @deny6 counter drop comment \"denied\"\n",
        "\t\tip saddr @strangers4 counter drop comment \"blocked\"\n",
        "\t\tip6 saddr @strangers6 counter drop comment \"blocked\"\n",
        "\t\tip saddr @permit4 counter accept comment \"permitted\"\n",
        "\t\tip6 saddr @permit6 counter accept comment \"permitted\"\n",
        "\t\tcounter drop comment \"stranger\"\n",
        "\t}\n",
        "}\n",
    ));
    out
}

/// A set element: an address, a CIDR or `a-b`.
fn element(r: &IpRange) -> String {
    if r.start_addr() == r.end_addr() {
        r.start_addr().to_string()
    } else {
        r.to_string()
    }
}

/// Elements per line in a set, to keep lines short.
const PER_LINE: usize = 8;

fn set(out: &mut String, name: &str, ty: &str, flags: &[&str], elements: &[String]) {
    let (flags, auto_merge): (Vec<&str>, Vec<&str>) =
        flags.iter().partition(|f| **f != "auto-merge");
    let _ = writeln!(out, "\tset {name} {{\n\t\ttype {ty}");
    if !flags.is_empty() {
        let _ = writeln!(out, "\t\tflags {}", flags.join(", "));
    }
    if !auto_merge.is_empty() {
        let _ = writeln!(out, "\t\tauto-merge");
    }
    // An empty `elements = { }` does not parse: an empty set has no elements line.
    if !elements.is_empty() {
        let _ = write!(out, "\t\telements = {{");
        for (i, chunk) in elements.chunks(PER_LINE).enumerate() {
            let sep = if i == 0 { " " } else { ",\n\t\t\t     " };
            let _ = write!(out, "{sep}{}", chunk.join(", "));
        }
        let _ = writeln!(out, " }}");
    }
    let _ = writeln!(out, "\t}}");
}
