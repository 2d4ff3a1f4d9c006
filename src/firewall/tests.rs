//! The sets a snapshot becomes, and the text of the rulesets (the kernel's verdict on them is
//! in the integration tests, `firewall`).

use super::iptables::{self, IpFamily};
use super::*;
use crate::policy::Builtins;
use crate::ranges::{Rule, RuleSource, Terms};

fn rule(id: i64, kind: RuleKind, range: &str, terms: Terms) -> Rule {
    Rule {
        id,
        kind,
        range: range.parse().unwrap(),
        country: "AA".into(),
        source: RuleSource::Custom,
        note: String::new(),
        terms,
    }
}

fn strings(v: &[IpRange]) -> Vec<String> {
    v.iter().map(ToString::to_string).collect()
}

#[test]
fn sets_merge_per_kind_and_leave_out_expired_and_shadow_rules() {
    use RuleKind::{Deny, Permit};
    let now = 1_000;
    let forever = Terms::default();
    let rules = vec![
        rule(1, Permit, "203.0.113.0/25", forever),
        rule(2, Permit, "203.0.113.128/25", forever), // adjacent: merged
        rule(3, Permit, "203.0.113.10", forever),     // inside: merged
        rule(4, Permit, "2001:db8::/33", forever),
        rule(5, Permit, "2001:db8:8000::/33", forever),
        rule(6, Deny, "203.0.113.66", forever), // inside a permit range: stays a deny interval
        rule(
            7,
            Deny,
            "198.51.100.7",
            Terms {
                expires_at: Some(now),
                shadow: false,
            },
        ),
        rule(
            8,
            Deny,
            "198.51.100.8",
            Terms {
                expires_at: Some(now + 5),
                shadow: false,
            },
        ),
        rule(
            9,
            Deny,
            "198.51.100.9",
            Terms {
                expires_at: None,
                shadow: true,
            },
        ),
        rule(
            10,
            Permit,
            "192.0.2.0/24",
            Terms {
                expires_at: None,
                shadow: true,
            },
        ),
    ];
    let policy = Policy::try_compile_at(Some(1), rules, vec![], Builtins::Off, now).unwrap();
    let sets = Sets::from_policy(&policy);
    assert_eq!(strings(&sets.permit4), ["203.0.113.0/24"]);
    assert_eq!(strings(&sets.permit6), ["2001:db8::/32"]);
    assert_eq!(strings(&sets.deny4), ["198.51.100.8/32", "203.0.113.66/32"]);
    assert!(sets.deny6.is_empty());
}

#[test]
fn builtins_are_in_the_permit_sets_when_on() {
    let on = Policy::try_compile_at(None, vec![], vec![], Builtins::On, 0).unwrap();
    let sets = Sets::from_policy(&on);
    let v4 = strings(&sets.permit4);
    assert!(v4.contains(&"10.0.0.0/8".to_owned()), "{v4:?}");
    assert!(v4.contains(&"192.168.0.0/16".to_owned()), "{v4:?}");
    assert!(strings(&sets.permit6).contains(&"fc00::/7".to_owned()));
    let off = Policy::try_compile_at(None, vec![], vec![], Builtins::Off, 0).unwrap();
    assert_eq!(Sets::from_policy(&off), Sets::default());
}

#[test]
fn ports_parse_and_refuse() {
    let p: PortRange = "UDP/10000-20000".parse().unwrap();
    assert_eq!((p.proto, p.first, p.last), (Proto::Udp, 10000, 20000));
    assert_eq!(
        "tcp:5061".parse::<PortRange>().unwrap().to_string(),
        "tcp/5061"
    );
    for bad in [
        "5060",
        "sctp/5060",
        "udp/0",
        "udp/6000-5000",
        "udp/70000",
        "udp/a-b",
        "",
    ] {
        assert!(bad.parse::<PortRange>().is_err(), "{bad} was accepted");
    }
    let d = VoipPorts::default();
    assert_eq!(
        d.of(Proto::Udp),
        [(4569, 4569), (5060, 5061), (10000, 20000)]
    );
    assert_eq!(d.of(Proto::Tcp), [(5060, 5061)]);
}

#[test]
fn nft_text_has_no_empty_element_list_and_filters_only_the_voip_ports() {
    let text = nft::ruleset(
        &Sets::default(),
        &VoipPorts::default(),
        &["a\nb".to_owned()],
    );
    assert!(text.starts_with("# a b\ntable inet ipcountry {}\ndelete table inet ipcountry\n"));
    assert!(!text.contains("elements = { }"));
    assert!(
        text.contains("elements = { 4569, 5060-5061, 10000-20000 }"),
        "{text}"
    );
    assert!(text.contains("meta l4proto != { udp, tcp } return"));
    let sets = Sets {
        permit4: vec!["203.0.113.0/24".parse().unwrap()],
        deny6: vec![
            "2001:db8::1".parse().unwrap(),
            "2001:db8::5-2001:db8::9".parse().unwrap(),
        ],
        ..Sets::default()
    };
    let text = nft::table(&sets, &VoipPorts::new(vec!["udp/5060".parse().unwrap()]));
    assert!(text.contains("elements = { 203.0.113.0/24 }"));
    assert!(text.contains("elements = { 2001:db8::1, 2001:db8::5-2001:db8::9 }"));
    // No TCP port: the TCP port set is empty, so every TCP packet returns.
    assert!(text.contains("set tcp_ports {\n\t\ttype inet_service\n\t\tflags interval\n\t}"));
}

#[test]
fn ipset_sets_are_swapped_in_and_iptables_ports_split_at_fifteen() {
    let sets = Sets {
        permit4: vec!["203.0.113.0-203.0.113.130".parse().unwrap()],
        ..Sets::default()
    };
    let text = iptables::ipset_restore(&sets).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let at = |l: &str| {
        lines
            .iter()
            .position(|x| *x == l)
            .unwrap_or_else(|| panic!("{l}"))
    };
    let fill = at("add ipcountry-permit4-tmp 203.0.113.0/25");
    assert!(fill > at("flush ipcountry-permit4-tmp"));
    at("add ipcountry-permit4-tmp 203.0.113.128/31");
    at("add ipcountry-permit4-tmp 203.0.113.130/32");
    assert!(at("swap ipcountry-permit4-tmp ipcountry-permit4") > fill);
    at("destroy ipcountry-permit4-tmp");
    assert!(!text.contains("flush ipcountry-strangers4"));
    let many: Vec<PortRange> = (0..10)
        .map(|i| {
            format!("udp/{}-{}", 6000 + 10 * i, 6005 + 10 * i)
                .parse()
                .unwrap()
        })
        .collect();
    let frag = iptables::restore_fragment(IpFamily::V6, &VoipPorts::new(many));
    let jumps: Vec<&str> = frag.lines().filter(|l| l.contains("--dports")).collect();
    assert_eq!(jumps.len(), 2, "{frag}");
    assert!(
        jumps[0].ends_with("6050:6055,6060:6065 -j ipcountry-voip"),
        "{frag}"
    );
    assert!(
        jumps[1].contains("--dports 6070:6075,6080:6085,6090:6095 "),
        "{frag}"
    );
    assert!(frag.contains("--match-set ipcountry-permit6 src -j ACCEPT"));
    assert!(frag.ends_with("-A ipcountry-voip -j DROP\nCOMMIT\n"));
}
