//! Tests of `range.rs` (kept in their own file to keep the module readable).

use proptest::prelude::*;

use super::*;

fn parse(s: &str) -> Result<IpRange, RangeError> {
    s.parse()
}

fn v4(a: &str, b: &str) -> IpRange {
    let (a, b): (Ipv4Addr, Ipv4Addr) = (a.parse().unwrap(), b.parse().unwrap());
    IpRange::V4 {
        start: u32::from(a),
        end: u32::from(b),
    }
}

fn v6(a: &str, b: &str) -> IpRange {
    let (a, b): (Ipv6Addr, Ipv6Addr) = (a.parse().unwrap(), b.parse().unwrap());
    IpRange::V6 {
        start: u128::from(a),
        end: u128::from(b),
    }
}

fn nets(r: &IpRange) -> Vec<String> {
    r.to_cidrs().iter().map(ToString::to_string).collect()
}

#[test]
fn single_addresses() {
    assert_eq!(
        parse("203.0.113.66"),
        Ok(v4("203.0.113.66", "203.0.113.66"))
    );
    assert_eq!(parse("2001:db8::1"), Ok(v6("2001:db8::1", "2001:db8::1")));
    assert_eq!(parse("::ffff:1.2.3.4"), Ok(v4("1.2.3.4", "1.2.3.4")));
    assert_eq!(parse("0.0.0.0"), Ok(IpRange::V4 { start: 0, end: 0 }));
    assert_eq!(
        parse("255.255.255.255"),
        Ok(IpRange::V4 {
            start: u32::MAX,
            end: u32::MAX
        })
    );
    assert_eq!(parse("::"), Ok(IpRange::V6 { start: 0, end: 0 }));
    let max = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
    assert_eq!(
        parse(max),
        Ok(IpRange::V6 {
            start: u128::MAX,
            end: u128::MAX
        })
    );
    // IPv4-compatible (deprecated) addresses are not mapped ones: they stay IPv6.
    assert_eq!(parse("::1.2.3.4").map(|r| r.family()), Ok(Family::V6));
}

#[test]
fn whitespace_is_trimmed() {
    assert_eq!(
        parse("  203.0.113.66\t\n"),
        Ok(v4("203.0.113.66", "203.0.113.66"))
    );
    assert_eq!(
        parse(" 203.0.113.0/24 "),
        Ok(v4("203.0.113.0", "203.0.113.255"))
    );
    assert_eq!(parse(" 3405803776 "), Ok(v4("203.0.113.0", "203.0.113.0")));
    assert_eq!(
        IpRange::from_integers(" 1 ", "\t2\n"),
        Ok(IpRange::V4 { start: 1, end: 2 })
    );
    // Whitespace inside a CIDR is not accepted.
    assert!(matches!(
        parse("203.0.113.0 /24"),
        Err(RangeError::Syntax(_))
    ));
    assert!(matches!(
        parse("203.0.113.0/ 24"),
        Err(RangeError::Syntax(_))
    ));
}

#[test]
fn cidrs() {
    assert_eq!(
        parse("203.0.113.0/24"),
        Ok(v4("203.0.113.0", "203.0.113.255"))
    );
    assert_eq!(
        parse("203.0.113.66/32"),
        Ok(v4("203.0.113.66", "203.0.113.66"))
    );
    assert_eq!(
        parse("0.0.0.0/0"),
        Ok(IpRange::V4 {
            start: 0,
            end: u32::MAX
        })
    );
    assert_eq!(
        parse("::/0"),
        Ok(IpRange::V6 {
            start: 0,
            end: u128::MAX
        })
    );
    assert_eq!(
        parse("2001:db8::/32"),
        Ok(v6("2001:db8::", "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff"))
    );
    assert_eq!(
        parse("2001:db8::1/128"),
        Ok(v6("2001:db8::1", "2001:db8::1"))
    );
    // IPv4-mapped networks become IPv4.
    assert_eq!(parse("::ffff:1.2.3.0/120"), Ok(v4("1.2.3.0", "1.2.3.255")));
    assert_eq!(
        parse("::ffff:0.0.0.0/96"),
        Ok(IpRange::V4 {
            start: 0,
            end: u32::MAX
        })
    );
    // Wider than the mapped space: stays IPv6.
    assert_eq!(parse("::/80"), Ok(v6("::", "::ffff:ffff:ffff")));
}

#[test]
fn cidr_with_host_bits_suggests_the_network() {
    assert_eq!(
        parse("203.0.113.7/24"),
        Err(RangeError::HostBits {
            given: "203.0.113.7/24".into(),
            network: "203.0.113.0/24".into()
        })
    );
    assert_eq!(
        parse("2001:db8::1/64"),
        Err(RangeError::HostBits {
            given: "2001:db8::1/64".into(),
            network: "2001:db8::/64".into()
        })
    );
    assert_eq!(
        parse("::ffff:1.2.3.4/120"),
        Err(RangeError::HostBits {
            given: "::ffff:1.2.3.4/120".into(),
            network: "1.2.3.0/24".into()
        })
    );
    let err = parse("10.1.2.3/8").unwrap_err().to_string();
    assert!(err.contains("did you mean 10.0.0.0/8"), "{err}");
}

#[test]
fn bad_cidrs_are_syntax_errors() {
    for bad in [
        "203.0.113.0/33",
        "2001:db8::/129",
        "203.0.113.0/",
        "/24",
        "203.0.113.0/+24",
        "203.0.113.0/-1",
        "203.0.113.0/0024",
        "203.0.113.0/24/24",
        "203.0.113.0/255.255.255.0",
        "203.0.113/24",
        "010.0.0.0/8",
    ] {
        assert_eq!(parse(bad), Err(RangeError::Syntax(bad.into())), "{bad}");
    }
}

#[test]
fn dash_ranges() {
    assert_eq!(
        parse("203.0.113.10-203.0.113.20"),
        Ok(v4("203.0.113.10", "203.0.113.20"))
    );
    assert_eq!(
        parse("203.0.113.10 - 203.0.113.20"),
        Ok(v4("203.0.113.10", "203.0.113.20"))
    );
    assert_eq!(
        parse("203.0.113.10  -\t203.0.113.20"),
        Ok(v4("203.0.113.10", "203.0.113.20"))
    );
    assert_eq!(
        parse("2001:db8::1-2001:db8::ff"),
        Ok(v6("2001:db8::1", "2001:db8::ff"))
    );
    assert_eq!(parse("1.2.3.4-1.2.3.4"), Ok(v4("1.2.3.4", "1.2.3.4")));
    assert_eq!(
        parse("0.0.0.0-255.255.255.255"),
        Ok(IpRange::V4 {
            start: 0,
            end: u32::MAX
        })
    );
    assert_eq!(
        parse("::ffff:1.2.3.4-1.2.3.9"),
        Ok(v4("1.2.3.4", "1.2.3.9"))
    );
    assert_eq!(
        parse("::ffff:1.2.3.4-::ffff:1.2.3.9"),
        Ok(v4("1.2.3.4", "1.2.3.9"))
    );
    // Only one end mapped, both IPv6: a plain IPv6 range (e.g. the display form of `::/80`).
    assert_eq!(parse("::1-::ffff:1.2.3.4"), Ok(v6("::1", "::ffff:1.2.3.4")));
    assert_eq!(parse("::-::ffff:255.255.255.255"), parse("::/80"));
}

#[test]
fn reversed_ranges_are_rejected() {
    assert_eq!(
        parse("203.0.113.20-203.0.113.10"),
        Err(RangeError::Reversed {
            start: "203.0.113.20".into(),
            end: "203.0.113.10".into()
        })
    );
    assert!(matches!(
        parse("2001:db8::ff-2001:db8::1"),
        Err(RangeError::Reversed { .. })
    ));
    // One mapped end and one plain IPv6 end compare as IPv6 integers.
    assert!(matches!(
        parse("::ffff:1.2.3.4-::1"),
        Err(RangeError::Reversed { .. })
    ));
    assert!(matches!(
        IpRange::from_integers("10", "9"),
        Err(RangeError::Reversed { .. })
    ));
    assert!(matches!(
        IpRange::from_integers("4294967297", "4294967296"),
        Err(RangeError::Reversed { .. })
    ));
}

#[test]
fn mixed_families_are_rejected() {
    assert!(matches!(
        parse("1.2.3.4-2001:db8::1"),
        Err(RangeError::MixedFamilies(_))
    ));
    assert!(matches!(
        parse("2001:db8::1-1.2.3.4"),
        Err(RangeError::MixedFamilies(_))
    ));
    assert!(matches!(
        parse("1.2.3.4-::1"),
        Err(RangeError::MixedFamilies(_))
    ));
    assert!(matches!(
        parse("::1-1.2.3.4"),
        Err(RangeError::MixedFamilies(_))
    ));
    assert!(matches!(
        parse("1.2.3.4-ffff::1"),
        Err(RangeError::MixedFamilies(_))
    ));
}

#[test]
fn garbage_is_a_syntax_error() {
    for bad in [
        "",
        "   ",
        "-",
        "/",
        "1.2.3",
        "1.2.3.4.5",
        "256.0.0.1",
        "1.2.3.4-",
        "-1.2.3.4",
        "1.2.3.4-1.2.3.5-1.2.3.6",
        "1.2.3.4--1.2.3.5",
        "hello",
        "+5",
        "-5",
        "12a",
        "0x10",
        "fe80::1%eth0",
        "1.2.3.4 1.2.3.5",
        "3405803776-3405804031",
        "١٢٣",
    ] {
        assert!(
            matches!(parse(bad), Err(RangeError::Syntax(_))),
            "{bad:?} -> {:?}",
            parse(bad)
        );
    }
    assert_eq!(parse(" nope "), Err(RangeError::Syntax("nope".into())));
}

#[test]
fn integers() {
    assert_eq!(parse("3405803776"), Ok(v4("203.0.113.0", "203.0.113.0")));
    assert_eq!(parse("0"), Ok(IpRange::V4 { start: 0, end: 0 }));
    assert_eq!(
        parse("4294967295"),
        Ok(IpRange::V4 {
            start: u32::MAX,
            end: u32::MAX
        })
    );
    assert_eq!(
        parse("4294967296"),
        Ok(IpRange::V6 {
            start: 1 << 32,
            end: 1 << 32
        })
    );
    let max = u128::MAX.to_string();
    assert_eq!(
        parse(&max),
        Ok(IpRange::V6 {
            start: u128::MAX,
            end: u128::MAX
        })
    );
    let over = "340282366920938463463374607431768211456"; // u128::MAX + 1
    assert_eq!(parse(over), Err(RangeError::IntegerOutOfRange(over.into())));
    assert_eq!(parse("00042"), Ok(IpRange::V4 { start: 42, end: 42 }));
}

#[test]
fn from_integers_forms() {
    assert_eq!(
        IpRange::from_integers("3405803776", "3405804031"),
        Ok(v4("203.0.113.0", "203.0.113.255"))
    );
    assert_eq!(
        IpRange::from_integers("0", "4294967295"),
        Ok(IpRange::V4 {
            start: 0,
            end: u32::MAX
        })
    );
    // One end above u32::MAX makes both IPv6.
    assert_eq!(
        IpRange::from_integers("0", "4294967296"),
        Ok(IpRange::V6 {
            start: 0,
            end: 1 << 32
        })
    );
    assert_eq!(
        IpRange::from_integers("0", &u128::MAX.to_string()),
        Ok(IpRange::V6 {
            start: 0,
            end: u128::MAX
        })
    );
    let over = "340282366920938463463374607431768211456";
    assert_eq!(
        IpRange::from_integers("1", over),
        Err(RangeError::IntegerOutOfRange(over.into()))
    );
    assert_eq!(
        IpRange::from_integers("1.2.3.4", "5"),
        Err(RangeError::Syntax("1.2.3.4".into()))
    );
    assert_eq!(
        IpRange::from_integers("", "5"),
        Err(RangeError::Syntax("".into()))
    );
    assert_eq!(
        IpRange::from_integers("5", "-6"),
        Err(RangeError::Syntax("-6".into()))
    );
    assert_eq!(
        IpRange::from_integers("+5", "6"),
        Err(RangeError::Syntax("+5".into()))
    );
}

#[test]
fn cidr_cover_examples() {
    assert_eq!(
        nets(&v4("203.0.113.0", "203.0.113.255")),
        ["203.0.113.0/24"]
    );
    assert_eq!(
        nets(&v4("10.0.0.1", "10.0.0.6")),
        ["10.0.0.1/32", "10.0.0.2/31", "10.0.0.4/31", "10.0.0.6/32"]
    );
    assert_eq!(
        nets(&IpRange::V4 {
            start: 0,
            end: u32::MAX
        }),
        ["0.0.0.0/0"]
    );
    assert_eq!(
        nets(&IpRange::V6 {
            start: 0,
            end: u128::MAX
        }),
        ["::/0"]
    );
    assert_eq!(nets(&IpRange::V4 { start: 0, end: 0 }), ["0.0.0.0/32"]);
    assert_eq!(
        nets(&IpRange::V4 {
            start: u32::MAX,
            end: u32::MAX
        }),
        ["255.255.255.255/32"]
    );
    assert_eq!(
        nets(&IpRange::V6 {
            start: u128::MAX,
            end: u128::MAX
        }),
        ["ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128"]
    );
    assert_eq!(
        nets(&IpRange::V4 {
            start: 1,
            end: u32::MAX
        })
        .len(),
        32
    );
    assert_eq!(
        nets(&IpRange::V4 {
            start: 0,
            end: u32::MAX - 1
        })
        .len(),
        32
    );
    assert_eq!(
        nets(&IpRange::V6 {
            start: 1,
            end: u128::MAX - 1
        })
        .len(),
        254
    );
    assert_eq!(
        nets(&v6("2001:db8::1", "2001:db8::ff")),
        [
            "2001:db8::1/128",
            "2001:db8::2/127",
            "2001:db8::4/126",
            "2001:db8::8/125",
            "2001:db8::10/124",
            "2001:db8::20/123",
            "2001:db8::40/122",
            "2001:db8::80/121"
        ]
    );
}

#[test]
fn display_round_trips_through_parse() {
    for text in [
        "203.0.113.0/24",
        "203.0.113.10-203.0.113.20",
        "2001:db8::/32",
        "::/0",
        "0.0.0.0/0",
    ] {
        let r = parse(text).unwrap();
        assert_eq!(r.to_string(), text);
        assert_eq!(parse(&r.to_string()), Ok(r));
    }
}

/// Keys concentrated near 0, near the top, and around an arbitrary point, as `u128`.
fn key(bits: u32) -> impl Strategy<Value = u128> {
    let max = if bits == 128 {
        u128::MAX
    } else {
        (1u128 << bits) - 1
    };
    prop_oneof![
        0..300u128,
        (0..300u128).prop_map(move |d| max - d),
        any::<u128>().prop_map(move |k| k & max),
    ]
}

fn range_strategy() -> impl Strategy<Value = IpRange> {
    prop_oneof![
        (key(32), key(32)).prop_map(|(a, b)| IpRange::V4 {
            start: a.min(b) as u32,
            end: a.max(b) as u32
        }),
        (key(128), key(128)).prop_map(|(a, b)| IpRange::V6 {
            start: a.min(b),
            end: a.max(b)
        }),
    ]
}

fn bounds(net: &IpNet) -> (u128, u128) {
    match net {
        IpNet::V4(n) => (
            u32::from(n.network()).into(),
            u32::from(n.broadcast()).into(),
        ),
        IpNet::V6(n) => (u128::from(n.network()), u128::from(n.broadcast())),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// The cover is exact, made of proper networks, and minimal (ipnet's `aggregate`, which
    /// yields the unique minimal set, leaves it unchanged).
    #[test]
    fn to_cidrs_is_an_exact_minimal_cover(r in range_strategy()) {
        let cidrs = r.to_cidrs();
        let (start, end) = match r {
            IpRange::V4 { start, end } => (u128::from(start), u128::from(end)),
            IpRange::V6 { start, end } => (start, end),
        };
        prop_assert!(!cidrs.is_empty());
        prop_assert_eq!(bounds(&cidrs[0]).0, start);
        prop_assert_eq!(bounds(&cidrs[cidrs.len() - 1]).1, end);
        for pair in cidrs.windows(2) {
            prop_assert_eq!(bounds(&pair[0]).1.checked_add(1), Some(bounds(&pair[1]).0));
        }
        for net in &cidrs {
            prop_assert_eq!(net.trunc(), *net);
            prop_assert_eq!(net.addr().is_ipv4(), r.family() == Family::V4);
        }
        prop_assert_eq!(IpNet::aggregate(&cidrs), cidrs);
    }

    /// Every range's display form parses back to the same range.
    #[test]
    fn display_parses_back(r in range_strategy()) {
        prop_assert_eq!(r.to_string().parse::<IpRange>(), Ok(r));
    }

    /// Every CIDR of a cover parses back to exactly that network's range.
    #[test]
    fn cover_parts_parse_back(r in range_strategy()) {
        for net in r.to_cidrs() {
            let (s, e) = bounds(&net);
            let parsed: IpRange = net.to_string().parse().unwrap();
            let expected = match r {
                IpRange::V4 { .. } => IpRange::V4 { start: s as u32, end: e as u32 },
                IpRange::V6 { .. } => IpRange::V6 { start: s, end: e },
            };
            prop_assert_eq!(parsed, expected);
        }
    }

    /// Parsing arbitrary text never panics.
    #[test]
    fn parse_never_panics(s in "[0-9a-fA-F:./ \\-]{0,40}") {
        let _ = s.parse::<IpRange>();
    }

    /// The integer forms agree with the address forms.
    #[test]
    fn integer_forms_agree(a in key(128), b in key(128)) {
        let (lo, hi) = (a.min(b), a.max(b));
        let got = IpRange::from_integers(&lo.to_string(), &hi.to_string()).unwrap();
        match (u32::try_from(lo), u32::try_from(hi)) {
            (Ok(l), Ok(h)) => prop_assert_eq!(got, IpRange::V4 { start: l, end: h }),
            _ => prop_assert_eq!(got, IpRange::V6 { start: lo, end: hi }),
        }
        let single: IpRange = lo.to_string().parse().unwrap();
        prop_assert_eq!(single.family() == Family::V4, lo <= u128::from(u32::MAX));
    }
}
