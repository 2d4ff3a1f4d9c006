//! Tests of `decision.rs`: precedence, trust modes, the argument contract, hostnames.

use super::*;
use crate::hosts::HostPattern;
use crate::policy::Builtins;
use crate::ranges::{IpRange, RuleSource};
use crate::request::CallArgs;

fn rule(id: i64, kind: RuleKind, range: &str, note: &str) -> Rule {
    Rule {
        id,
        kind,
        range: range.parse::<IpRange>().expect("range"),
        country: "AA".into(),
        source: RuleSource::Custom,
        note: note.into(),
        terms: Default::default(),
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

/// Decides a call whose `AGI()` arguments are `args` (source first).
fn decide_args(args: &[&str], trust: Trust) -> Decision<'static> {
    let call = CallArgs::new(args.iter().copied());
    decide(policy(), &ScreenRequest::parse(&call), trust, None)
}

fn verdict_and_reason(d: &Decision<'_>) -> (Verdict, String) {
    (d.verdict, d.reason.to_string())
}

#[test]
fn acceptance_scenario() {
    let d = decide_args(
        &[
            "203.0.113.7:5060",
            r#""Bob" <sip:bob@203.0.113.7:5060>;tag=1"#,
        ],
        Trust::Both,
    );
    assert_eq!(
        verdict_and_reason(&d),
        (Verdict::Permit, "permit #1 203.0.113.0/24 office".into())
    );
    let d = decide_args(&["203.0.113.66"], Trust::Both);
    assert_eq!(
        verdict_and_reason(&d),
        (Verdict::Deny, "deny #1 203.0.113.66/32".into())
    );
    let d = decide_args(&["198.51.100.9"], Trust::Both);
    assert_eq!(
        verdict_and_reason(&d),
        (Verdict::Stranger, "no permit range for 198.51.100.9".into())
    );
}

#[test]
fn trust_modes() {
    let from = "Bob <sip:bob@203.0.113.7>;tag=x";
    // Source is a stranger: both → stranger; from → permitted; source → stranger.
    let stranger = ["198.51.100.9:5060", from];
    assert_eq!(
        decide_args(&stranger, Trust::Both).verdict,
        Verdict::Stranger
    );
    assert_eq!(decide_args(&stranger, Trust::From).verdict, Verdict::Permit);
    assert_eq!(
        decide_args(&stranger, Trust::Source).verdict,
        Verdict::Stranger
    );
    // Loopback source is builtin-permitted.
    let d = decide_args(&["127.0.0.1:15201", from], Trust::Both);
    assert_eq!(d.verdict, Verdict::Permit);
    assert_eq!(d.checks.len(), 2);
    // A denied source beats a permitted From.
    assert_eq!(
        decide_args(&["203.0.113.66", from], Trust::Both).verdict,
        Verdict::Deny
    );
    // A bad source.
    assert_eq!(
        verdict_and_reason(&decide_args(&["junk", from], Trust::Both)),
        (Verdict::Stranger, "bad source address".into())
    );
}

#[test]
fn no_source_no_pass() {
    let from = "Bob <sip:bob@203.0.113.7>;tag=x";
    for trust in [Trust::Both, Trust::Source] {
        for args in [&[][..], &[""], &[" ", from], &["", from]] {
            assert_eq!(
                verdict_and_reason(&decide_args(args, trust)),
                (Verdict::Stranger, "no source address".into()),
                "{trust:?} {args:?}"
            );
        }
    }
    // Only `--trust from` judges on the From alone.
    assert_eq!(
        decide_args(&["", from], Trust::From).verdict,
        Verdict::Permit
    );
    assert_eq!(
        verdict_and_reason(&decide_args(&["127.0.0.1"], Trust::From)),
        (Verdict::Stranger, "no From header".into())
    );
}

#[test]
fn a_source_without_a_from_is_judged_on_the_source() {
    // IAX2: one argument.
    let d = decide_args(&["203.0.113.9"], Trust::Both);
    assert_eq!(d.verdict, Verdict::Permit);
    assert_eq!(d.checks.len(), 1);
    // ... but an empty From argument is an unparseable From.
    let d = decide_args(&["203.0.113.9", ""], Trust::Both);
    assert_eq!(
        verdict_and_reason(&d),
        (Verdict::Stranger, "unparseable From".into())
    );
    assert_eq!(
        decide_args(&["203.0.113.9", ""], Trust::Source).verdict,
        Verdict::Permit
    );
}

#[test]
fn the_old_argument_order_is_a_bad_source() {
    // `AGI(url,${From},${source})` no longer passes: argument 1 is not an address.
    let d = decide_args(&["Bob <sip:bob@203.0.113.7>", "127.0.0.1"], Trust::Both);
    assert_eq!(
        verdict_and_reason(&d),
        (Verdict::Stranger, "bad source address".into())
    );
    // A legacy bare IP first is now the source, judged on its own.
    assert_eq!(
        decide_args(&["203.0.113.7"], Trust::Both).verdict,
        Verdict::Permit
    );
}

#[test]
fn commas_in_the_from_cannot_shift_the_source() {
    // chan_sip passes `203.0.113.7,,<sip:eve@198.51.100.9>` raw: Asterisk splits it into three
    // arguments after the source. Joined again, the From's host is the stranger's.
    let d = decide_args(
        &[
            "127.0.0.1",
            "203.0.113.7",
            "",
            "<sip:eve@198.51.100.9>;tag=1",
        ],
        Trust::Both,
    );
    assert_eq!(
        verdict_and_reason(&d),
        (Verdict::Stranger, "no permit range for 198.51.100.9".into())
    );
    assert_eq!(d.checks[0].subject.to_string(), "127.0.0.1");
}

#[test]
fn from_without_host_or_unparseable() {
    let d = decide_args(&["127.0.0.1", "<tel:+15551234>"], Trust::Both);
    assert_eq!(
        verdict_and_reason(&d),
        (Verdict::Stranger, "From has no host".into())
    );
    let d = decide_args(&["127.0.0.1", "<sip:bob@203.0.113.300>"], Trust::Both);
    assert_eq!(
        verdict_and_reason(&d),
        (Verdict::Stranger, "unparseable From".into())
    );
    // ... but with --trust source the From does not matter.
    let d = decide_args(&["127.0.0.1", "<tel:+15551234>"], Trust::Source);
    assert_eq!(d.verdict, Verdict::Permit);
}

#[test]
fn hostnames() {
    let p = policy();
    let call = CallArgs::new(["127.0.0.1", "<sip:bob@SipGate.com>"]);
    let req = ScreenRequest::parse(&call);
    assert_eq!(host_to_resolve(p, &req, Trust::Both), None);
    let d = decide(p, &req, Trust::Both, None);
    assert_eq!(
        verdict_and_reason(&d),
        (Verdict::Permit, "allow-host sipgate.com".into())
    );

    let call = CallArgs::new(["127.0.0.1", "<sip:bob@gw.example.com>"]);
    let req = ScreenRequest::parse(&call);
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
fn a_failed_source_decides_without_dns() {
    let p = policy();
    for source in ["198.51.100.9:5060", "203.0.113.66", "junk", ""] {
        let call = CallArgs::new([source, "<sip:bob@gw.example.com>"]);
        let req = ScreenRequest::parse(&call);
        assert_eq!(host_to_resolve(p, &req, Trust::Both), None, "{source}");
        let d = decide(p, &req, Trust::Both, None);
        assert!(d.verdict.is_stranger(), "{source}");
        assert_eq!(
            d.checks[0].role,
            Role::Source,
            "{source}: the source decides"
        );
        assert_eq!(d.reason, d.checks[0].reason, "{source}");
        assert_eq!(
            d.checks[1].reason.to_string(),
            "From host not resolved: the source decided"
        );
    }
    // With --trust from, the name is resolved whatever the source.
    let call = CallArgs::new(["198.51.100.9", "<sip:bob@gw.example.com>"]);
    let req = ScreenRequest::parse(&call);
    assert_eq!(
        host_to_resolve(p, &req, Trust::From),
        Some("gw.example.com")
    );
    // A denied From literal still shows, as the deny it is.
    let d = decide_args(&["198.51.100.9", "<sip:bob@203.0.113.66>"], Trust::Both);
    assert_eq!(d.verdict, Verdict::Deny);
}

#[test]
fn ipv6_and_mapped() {
    let d = decide_args(
        &["[::1]:5060", "<sip:bob@[2001:db8:1::5]:5060>"],
        Trust::Both,
    );
    assert_eq!(d.verdict, Verdict::Permit);
    let d = decide_args(&["[::1]:5060", "<sip:bob@[2001:db8::1]>"], Trust::Both);
    assert_eq!(d.verdict, Verdict::Stranger);
    let d = decide_args(&["::ffff:203.0.113.66"], Trust::Both);
    assert_eq!(d.verdict, Verdict::Deny);
}

#[test]
fn checks_keep_subjects_and_reasons_as_facts() {
    let d = decide_args(
        &["[::ffff:198.51.100.9]:5060", "<sip:bob@203.0.113.66>"],
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
    let d = decide_args(&["127.0.0.1", "junk\u{7f}"], Trust::Both);
    assert_eq!(d.checks[1].subject, Subject::Text("junk\u{7f}".into()));
    assert_eq!(d.reason.to_string(), "unparseable From");
}

#[test]
fn reasons_display_as_their_rules_do() {
    let r = rule(7, RuleKind::Permit, "10.0.0.1-10.0.0.6", "a, \"b\"");
    assert_eq!(Reason::Rule(&r).to_string(), r.to_string());
    assert_eq!(
        Reason::NoPermit("2001:db8::1".parse().expect("ip")).to_string(),
        "no permit range for 2001:db8::1"
    );
}

#[test]
fn reason_kinds_are_listed_at_their_indexes_with_distinct_labels() {
    let mut labels = std::collections::HashSet::new();
    for (i, kind) in ReasonKind::ALL.iter().enumerate() {
        assert_eq!(kind.index(), i, "{kind:?}");
        assert!(labels.insert(kind.as_str()), "{kind:?}");
    }
}
