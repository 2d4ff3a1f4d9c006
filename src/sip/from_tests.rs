//! Tests of `from.rs` (kept in their own file to keep the module readable).

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::*;

const FIXTURES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/fixtures/asterisk-agi"
);

/// Stands for "a SIPp tag" (`<digits>SIPpTag001`) in fixture expectations, whose tags differ
/// per call.
const SIPP_TAG: &str = "<sipp tag>";

type P = (&'static str, Option<&'static str>);

/// Every field a parse must produce. `host` is written as text: an IP literal means
/// `Host::Ip`, anything else `Host::Domain`.
#[derive(Debug, Clone)]
struct Want {
    display: Option<&'static str>,
    scheme: Scheme,
    user: Option<&'static str>,
    host: Option<&'static str>,
    port: Option<u16>,
    uri_params: &'static [P],
    headers: &'static [P],
    params: &'static [P],
}

fn want(
    display: Option<&'static str>,
    scheme: Scheme,
    user: Option<&'static str>,
    host: Option<&'static str>,
    port: Option<u16>,
) -> Want {
    Want {
        display,
        scheme,
        user,
        host,
        port,
        uri_params: &[],
        headers: &[],
        params: &[],
    }
}

impl Want {
    fn uri_params(mut self, p: &'static [P]) -> Self {
        self.uri_params = p;
        self
    }
    fn headers(mut self, p: &'static [P]) -> Self {
        self.headers = p;
        self
    }
    fn params(mut self, p: &'static [P]) -> Self {
        self.params = p;
        self
    }
    /// Header parameters of just `tag`, a SIPp tag (as in every recorded From).
    fn sipp_tag(self) -> Self {
        self.params(&[("tag", Some(SIPP_TAG))])
    }
}

/// The value of the `tag` header parameter, if there is one with a value.
fn tag_of<'h>(h: &'h FromHeader<'_>) -> Option<&'h str> {
    h.params
        .iter()
        .find(|p| p.name == "tag")
        .and_then(|p| p.value.as_deref())
}

fn host_of(text: &str) -> Host<'_> {
    match text.parse::<IpAddr>() {
        Ok(ip) => Host::Ip(ip),
        Err(_) => Host::Domain(text.into()),
    }
}

fn is_sipp_tag(v: &str) -> bool {
    v.strip_suffix("SIPpTag001")
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

fn assert_params(what: &str, input: &str, got: &[Param], want: &[P]) {
    assert_eq!(
        got.len(),
        want.len(),
        "{what} of {input:?}: got {got:?}, want {want:?}"
    );
    for (g, (name, value)) in got.iter().zip(want) {
        assert_eq!(g.name, *name, "{what} name of {input:?}");
        match (*value, g.value.as_deref()) {
            (Some(SIPP_TAG), Some(v)) => {
                assert!(
                    is_sipp_tag(v),
                    "{what} of {input:?}: {v:?} is not a SIPp tag"
                )
            }
            (w, v) => assert_eq!(v, w, "{what} value of {input:?}"),
        }
    }
}

fn check(input: &str, got: &Result<FromHeader, FromError>, want: &Want) {
    let h = match got {
        Ok(h) => h,
        Err(e) => panic!("{input:?} failed with {e:?}, want {want:?}"),
    };
    assert_eq!(
        h.display_name.as_deref(),
        want.display,
        "display of {input:?}"
    );
    assert_eq!(h.uri.scheme, want.scheme, "scheme of {input:?}");
    assert_eq!(h.uri.user.as_deref(), want.user, "user of {input:?}");
    assert_eq!(h.uri.host, want.host.map(host_of), "host of {input:?}");
    assert_eq!(h.host(), h.uri.host.as_ref(), "host() of {input:?}");
    assert_eq!(h.uri.port, want.port, "port of {input:?}");
    assert_params("URI params", input, &h.uri.params, want.uri_params);
    assert_params("URI headers", input, &h.uri.headers, want.headers);
    assert_params("header params", input, &h.params, want.params);
}

use Scheme::{Bare, Sip, Sips, Tel};

const V4: Option<&str> = Some("203.0.113.7");
const V6: Option<&str> = Some("2001:db8::1");
const BOB: Option<&str> = Some("bob");

/// The anonymous From of RFC 3323, `"Anonymous" <sip:anonymous@anonymous.invalid>`.
fn anonymous() -> Want {
    want(
        Some("Anonymous"),
        Sip,
        Some("anonymous"),
        Some("anonymous.invalid"),
        None,
    )
}

#[test]
fn shapes() {
    let rows: Vec<(&str, Want)> = vec![
        (
            r#""Bob" <sip:bob@203.0.113.7:5060>;tag=abc"#,
            want(Some("Bob"), Sip, BOB, V4, Some(5060)).params(&[("tag", Some("abc"))]),
        ),
        ("<sip:bob@203.0.113.7>", want(None, Sip, BOB, V4, None)),
        (
            "sip:bob@203.0.113.7;tag=x",
            want(None, Sip, BOB, V4, None).params(&[("tag", Some("x"))]),
        ),
        (
            "sip:bob@203.0.113.7:5060;tag=x;lr",
            want(None, Sip, BOB, V4, Some(5060)).params(&[("tag", Some("x")), ("lr", None)]),
        ),
        ("<sips:bob@203.0.113.7>", want(None, Sips, BOB, V4, None)),
        (
            "sips:alice@example.com",
            want(None, Sips, Some("alice"), Some("example.com"), None),
        ),
        (
            "<SIP:BOB@203.0.113.7>",
            want(None, Sip, Some("BOB"), V4, None),
        ),
        (
            "SiPs:Bob@GW.Example.COM",
            want(None, Sips, Some("Bob"), Some("gw.example.com"), None),
        ),
        (
            "Bob <sip:+15551234@gw.example.com;user=phone>",
            want(
                Some("Bob"),
                Sip,
                Some("+15551234"),
                Some("gw.example.com"),
                None,
            )
            .uri_params(&[("user", Some("phone"))]),
        ),
        (
            "<sip:bob@[2001:db8::1]:5060>",
            want(None, Sip, BOB, V6, Some(5060)),
        ),
        ("<sip:bob@[2001:db8::1]>", want(None, Sip, BOB, V6, None)),
        (
            "<sip:bob@[::ffff:203.0.113.7]>",
            want(None, Sip, BOB, Some("::ffff:203.0.113.7"), None),
        ),
        ("<sip:203.0.113.7>", want(None, Sip, None, V4, None)),
        (
            "<sip:203.0.113.7:5070;transport=tcp>",
            want(None, Sip, None, V4, Some(5070)).uri_params(&[("transport", Some("tcp"))]),
        ),
        (
            r#""a <b> c@d:e" <sip:bob@203.0.113.7>"#,
            want(Some("a <b> c@d:e"), Sip, BOB, V4, None),
        ),
        (
            r#""Bob \"the\" <Builder>" <sip:bob@203.0.113.7>;tag=x"#,
            want(Some(r#"Bob "the" <Builder>"#), Sip, BOB, V4, None).params(&[("tag", Some("x"))]),
        ),
        (
            r#"Bob "the" <Builder> <sip:bob@203.0.113.7>;tag=x"#,
            want(Some(r#"Bob "the" <Builder>"#), Sip, BOB, V4, None).params(&[("tag", Some("x"))]),
        ),
        (
            r#""the" Bob <sip:bob@203.0.113.7>"#,
            want(Some(r#""the" Bob"#), Sip, BOB, V4, None),
        ),
        (
            "Doe, John <x@198.51.100.1> <sip:john@203.0.113.11>;tag=1",
            want(
                Some("Doe, John <x@198.51.100.1>"),
                Sip,
                Some("john"),
                Some("203.0.113.11"),
                None,
            )
            .params(&[("tag", Some("1"))]),
        ),
        (
            r#""Doe, John" <sip:john@203.0.113.7>;tag=abc;x=1"#,
            want(Some("Doe, John"), Sip, Some("john"), V4, None)
                .params(&[("tag", Some("abc")), ("x", Some("1"))]),
        ),
        (
            r#""Doe, John" <sip:john@203.0.113.7>;x=1;tag=abc"#,
            want(Some("Doe, John"), Sip, Some("john"), V4, None)
                .params(&[("x", Some("1")), ("tag", Some("abc"))]),
        ),
        (
            " John <sip:john@203.0.113.7>;tag=1",
            want(Some("John"), Sip, Some("john"), V4, None).params(&[("tag", Some("1"))]),
        ),
        (
            "<sip:bob@203.0.113.7:5070;transport=udp?X-Foo=bar>",
            want(None, Sip, BOB, V4, Some(5070))
                .uri_params(&[("transport", Some("udp"))])
                .headers(&[("x-foo", Some("bar"))]),
        ),
        (
            "<sip:bob@host.example;LR;maddr=[2001:db8::2]?a=1&Subject=hi%20there&b=>",
            want(None, Sip, BOB, Some("host.example"), None)
                .uri_params(&[("lr", None), ("maddr", Some("[2001:db8::2]"))])
                .headers(&[
                    ("a", Some("1")),
                    ("subject", Some("hi%20there")),
                    ("b", Some("")),
                ]),
        ),
        (
            "<tel:+15551234>",
            want(None, Tel, Some("+15551234"), None, None),
        ),
        (
            "<tel:+1-555-1234;phone-context=example.com>",
            want(None, Tel, Some("+1-555-1234"), None, None)
                .uri_params(&[("phone-context", Some("example.com"))]),
        ),
        (
            "TEL:+15551234;tag=t",
            want(None, Tel, Some("+15551234"), None, None).params(&[("tag", Some("t"))]),
        ),
        ("Anonymous <sip:anonymous@anonymous.invalid>", anonymous()),
        (
            "  \"Bob\"  <sip:bob@203.0.113.7> ; tag = a  ",
            want(Some("Bob"), Sip, BOB, V4, None).params(&[("tag", Some("a"))]),
        ),
        ("\t<sip:bob@203.0.113.7>\t", want(None, Sip, BOB, V4, None)),
        (
            r#""  spaced  " <sip:bob@203.0.113.7>"#,
            want(Some("  spaced  "), Sip, BOB, V4, None),
        ),
        (
            r#""" <sip:bob@203.0.113.7>"#,
            want(None, Sip, BOB, V4, None),
        ),
        ("sip:bob:secret@203.0.113.7", want(None, Sip, BOB, V4, None)),
        (
            "<sip:bob%40home:pa%20ss@203.0.113.7>",
            want(None, Sip, Some("bob%40home"), V4, None),
        ),
        (
            "<sip:+1555;npdi;rn=+1666@gw.example.com;user=phone>",
            want(
                None,
                Sip,
                Some("+1555;npdi;rn=+1666"),
                Some("gw.example.com"),
                None,
            )
            .uri_params(&[("user", Some("phone"))]),
        ),
        (
            r#"<sip:bob@gw.example.com>;tag="quoted \"v\"";received=[2001:db8::2]"#,
            want(None, Sip, BOB, Some("gw.example.com"), None).params(&[
                ("tag", Some(r#"quoted "v""#)),
                ("received", Some("[2001:db8::2]")),
            ]),
        ),
        (
            "Ünïcødé <sip:bob@203.0.113.7>",
            want(Some("Ünïcødé"), Sip, BOB, V4, None),
        ),
        // The legacy bare-host argument.
        ("203.0.113.7", want(None, Bare, None, V4, None)),
        (" 203.0.113.7:5060 ", want(None, Bare, None, V4, Some(5060))),
        ("2001:db8::1", want(None, Bare, None, V6, None)),
        ("[2001:db8::1]", want(None, Bare, None, V6, None)),
        ("[2001:db8::1]:5060", want(None, Bare, None, V6, Some(5060))),
        (
            "abcd:ef01::1",
            want(None, Bare, None, Some("abcd:ef01::1"), None),
        ),
        (
            "gw.example.com",
            want(None, Bare, None, Some("gw.example.com"), None),
        ),
        (
            "GW.Example.com.:5061",
            want(None, Bare, None, Some("gw.example.com"), Some(5061)),
        ),
        (
            "203.0.113.7;transport=udp",
            want(None, Bare, None, V4, None).uri_params(&[("transport", Some("udp"))]),
        ),
    ];
    for (input, w) in &rows {
        check(input, &parse(input), w);
    }
}

#[test]
fn malformed() {
    use FromError::*;
    let long = "a".repeat(MAX_LEN + 1);
    let rows: Vec<(&str, FromError)> = vec![
        ("", Empty),
        (" \t ", Empty),
        (&long, TooLong(MAX_LEN)),
        (
            "<sip:bob@203.0.113.300>",
            BadHost("not a valid IPv4 address"),
        ),
        ("203.0.113.300", BadHost("not a valid IPv4 address")),
        ("<sip:bob@1.2.3>", BadHost("not a valid IPv4 address")),
        ("<sip:bob@01.2.3.4>", BadHost("not a valid IPv4 address")),
        (
            "<sip:bob@[2001:db8::1>",
            BadHost("'[' without a closing ']'"),
        ),
        ("[2001:db8::1", BadHost("'[' without a closing ']'")),
        (
            "<sip:bob@[fe80::1%eth0]>",
            BadHost("invalid character in IPv6 reference"),
        ),
        (
            "<sip:bob@[203.0.113.7]>",
            BadHost("not a valid IPv6 address"),
        ),
        (
            "<sip:bob@[2001:db8:::1]>",
            BadHost("not a valid IPv6 address"),
        ),
        ("2001:db8:::1", BadHost("not a valid IPv6 address")),
        ("<sip:bob@>", BadHost("missing host")),
        ("<sip:>", BadHost("missing host")),
        (
            "<sip:bob@gw_1.example.com>",
            BadHost("invalid character in hostname"),
        ),
        (
            "<sip:bob@-gw.example.com>",
            BadHost("hostname label must start and end with a letter or digit"),
        ),
        ("<sip:bob@gw..example.com>", BadHost("empty hostname label")),
        (
            "<sip:bob@host.123>",
            BadHost("the last hostname label must start with a letter"),
        ),
        ("garbage without any uri", NoUri),
        ("garbage without any uri;tag=1", NoUri),
        ("plain", NoUri),
        ("Doe", NoUri),
        ("semi;colon", NoUri),
        ("203.0.113.7 junk", NoUri),
        ("bob>", NoUri),
        ("Bob <>", NoUri),
        (r#""Bob <sip:bob@203.0.113.7>"#, UnterminatedQuote),
        (r#""Bob <sip:bob@203.0.113.7>;tag=1"#, UnterminatedQuote),
        (r#""Bob\" <sip:bob@203.0.113.7>"#, UnterminatedQuote),
        ("Bob <sip:bob@203.0.113.7", UnterminatedAngle),
        ("Bob <sip:bob@203.0.113.7;tag=1", UnterminatedAngle),
        ("Bob <Builder> <sip:bob@203.0.113.7", UnterminatedAngle),
        (
            "<sip:bob@203.0.113.7> junk",
            TrailingGarbage("the URI and its header parameters"),
        ),
        (
            "<sip:bob@203.0.113.7>;tag=1 junk",
            TrailingGarbage("the URI and its header parameters"),
        ),
        (
            "<sip:bob@203.0.113.7>>",
            TrailingGarbage("the URI and its header parameters"),
        ),
        (
            "sip:bob@203.0.113.7?x=y",
            TrailingGarbage("the URI and its header parameters"),
        ),
        (
            "sip:bob@203.0.113.7 junk",
            TrailingGarbage("the URI and its header parameters"),
        ),
        (
            "<sip:bob@203.0.113.7 x>",
            TrailingGarbage("the URI inside '<>'"),
        ),
        ("<tel:+1555?x=y>", TrailingGarbage("the URI inside '<>'")),
        ("<sip:bob@203.0.113.7>\r\n", ControlCharacter(21)),
        ("<sip:bob@203.0.113.7>\0", ControlCharacter(21)),
        ("Bob\n <sip:bob@203.0.113.7>", ControlCharacter(3)),
        ("<sip:bob@203.0.113.7\u{7f}>", ControlCharacter(20)),
        ("<http://example.com>", BadScheme),
        ("<john>", BadScheme),
        (r#""Doe, John" <john>"#, BadScheme),
        ("Bob <Builder>", BadScheme),
        ("mailto:bob@example.com", BadScheme),
        ("http://example.com", BadScheme),
        ("<sip:bob@203.0.113.7:99999>", BadPort("greater than 65535")),
        (
            "<sip:bob@203.0.113.7:>",
            BadPort("':' not followed by digits"),
        ),
        ("203.0.113.7:x5", BadPort("':' not followed by digits")),
        ("<tel:>", BadUser("missing telephone number")),
        ("<tel:+-()>", BadUser("telephone number without digits")),
        (
            "<sip:bob@203.0.113.7;=x>",
            BadParam("empty or malformed URI parameter"),
        ),
        (
            "<sip:bob@203.0.113.7;x=>",
            BadParam("empty or malformed URI parameter"),
        ),
        ("<sip:bob@203.0.113.7?=x>", BadParam("malformed URI header")),
        (
            "<sip:bob@203.0.113.7?a=1&>",
            BadParam("malformed URI header"),
        ),
        (
            "<sip:bob@203.0.113.7>;tag=",
            BadParam("empty or malformed header parameter"),
        ),
        (
            r#"<sip:bob@203.0.113.7>;tag="open"#,
            BadParam("empty or malformed header parameter"),
        ),
        (
            "<sip:bob@203.0.113.7>;;tag=1",
            BadParam("empty or malformed header parameter"),
        ),
    ];
    for (input, want) in rows {
        assert_eq!(parse(input), Err(want), "input {input:?}");
    }
}

#[test]
fn accessors_and_display() {
    let h = parse(r#""Bob" <sip:bob@[2001:db8::1]:5060>;x=1;TAG=abc"#).expect("valid");
    assert_eq!(tag_of(&h), Some("abc"));
    assert_eq!(
        h.host().map(ToString::to_string).as_deref(),
        Some("2001:db8::1")
    );
    assert_eq!(h.host().and_then(Host::ip), "2001:db8::1".parse().ok());

    let h = parse("<sip:bob@GW.example.COM>;lr").expect("valid");
    assert_eq!(tag_of(&h), None);
    assert_eq!(
        h.host().map(ToString::to_string).as_deref(),
        Some("gw.example.com")
    );
    assert_eq!(h.host().and_then(Host::ip), None);

    let h = parse("<tel:+15551234>;tag").expect("valid");
    assert_eq!(tag_of(&h), None, "a value-less tag is no tag");
    assert_eq!(h.host(), None);

    // The password is validated, then dropped: it must not be kept anywhere.
    let h = parse("sip:bob:secret@203.0.113.7").expect("valid");
    assert!(!format!("{h:?}").contains("secret"));

    assert_eq!(
        FromError::BadHost("not a valid IPv4 address").to_string(),
        "bad host: not a valid IPv4 address"
    );
    assert_eq!(
        FromError::TooLong(MAX_LEN).to_string(),
        "the From value is longer than 4096 bytes"
    );
}

/// Runs `f` and fails if it takes longer than a linear parse of 100 KB ever could.
fn timed<T>(what: &str, f: impl FnOnce() -> T) -> T {
    let start = Instant::now();
    let out = f();
    let took = start.elapsed();
    assert!(took < Duration::from_secs(5), "{what} took {took:?}");
    out
}

#[test]
fn huge_inputs_stay_linear() {
    const N: usize = 100 * 1024;
    let big = "<".repeat(N);
    assert_eq!(parse(&big), Err(FromError::TooLong(MAX_LEN)));

    // Beyond the public limit, the parser itself must still be linear.
    let cases: Vec<(String, Result<(), FromError>)> = vec![
        ("<".repeat(N), Err(FromError::UnterminatedAngle)),
        (">".repeat(N), Err(FromError::NoUri)),
        (format!("\"{}", "\\\"".repeat(N / 2)), Err(FromError::NoUri)),
        (
            format!("\"{}<sip:bob@203.0.113.7>", "\\\"".repeat(N / 2)),
            Err(FromError::UnterminatedQuote),
        ),
        (
            format!("{}<sip:bob@203.0.113.7>", "a<b>".repeat(N / 4)),
            Ok(()),
        ),
        (
            format!("<sip:bob@203.0.113.7>{}", ";a=b".repeat(N / 4)),
            Ok(()),
        ),
        (
            format!("<sip:bob@203.0.113.7{}>", ";a".repeat(N / 2)),
            Ok(()),
        ),
        (format!("<sip:{}@203.0.113.7>", "a;".repeat(N / 2)), Ok(())),
        (
            format!("sip:{}", "a;".repeat(N / 2)),
            Err(FromError::BadParam("empty or malformed header parameter")),
        ),
        (
            format!("<sip:{}>", "a.".repeat(N / 2)),
            Err(FromError::BadHost("hostname longer than 253 bytes")),
        ),
        (
            format!("<sip:bob@{}>", "%".repeat(N)),
            Err(FromError::BadHost("missing host")),
        ),
        ("a ".repeat(N / 2), Err(FromError::NoUri)),
    ];
    for (input, want) in cases {
        let got = timed(&input[..20], || parse_unbounded(&input)).map(|_| ());
        assert_eq!(got, want, "input starting {:?}", &input[..20]);
    }
}

// ---- fixtures ------------------------------------------------------------------

enum Expect {
    Parse(Want),
    Fail(FromError),
    /// The case has no `agi_arg_1` (the URL or the dialplan passed no argument).
    NoArg,
}

// The Froms of the recorded calls, named once for both expectation tables below.

fn bob(port: Option<u16>) -> Want {
    want(Some("Bob"), Sip, BOB, V4, port).sipp_tag()
}

/// `<sip:bob@203.0.113.7>`: no display name, no port.
fn bob_plain() -> Want {
    want(None, Sip, BOB, V4, None).sipp_tag()
}

fn bob_v6(port: Option<u16>) -> Want {
    want(None, Sip, BOB, V6, port).sipp_tag()
}

fn bob_v6_udp() -> Want {
    want(Some("Bob"), Sip, BOB, V6, Some(5070))
        .uri_params(&[("transport", Some("udp"))])
        .sipp_tag()
}

fn sips_bob() -> Want {
    want(None, Sips, BOB, V4, None).sipp_tag()
}

fn uppercase_user() -> Want {
    want(None, Sip, Some("BOB"), V4, None).sipp_tag()
}

fn no_user() -> Want {
    want(None, Sip, None, V4, None).sipp_tag()
}

fn doe_john() -> Want {
    want(Some("Doe, John"), Sip, Some("john"), V4, None).sipp_tag()
}

fn doe_john_phone() -> Want {
    want(
        Some("Doe, John"),
        Sip,
        Some("+15551234"),
        Some("gw.example.com"),
        None,
    )
    .uri_params(&[("user", Some("phone"))])
    .sipp_tag()
}

/// `sip:eve@198.51.100.9`, behind `display`.
fn eve(display: &'static str) -> Want {
    want(Some(display), Sip, Some("eve"), Some("198.51.100.9"), None).sipp_tag()
}

fn tel() -> Want {
    want(None, Tel, Some("+15551234"), None, None).sipp_tag()
}

fn escaped() -> Want {
    want(Some(r#"Bob "the" <Builder>"#), Sip, BOB, V4, None).sipp_tag()
}

fn hostname_only() -> Want {
    want(None, Sip, BOB, Some("sipgate.com"), None).sipp_tag()
}

/// `Fail(BadHost(…))` of a host that is not an IPv4 address.
fn bad_ipv4() -> Expect {
    Expect::Fail(FromError::BadHost("not a valid IPv4 address"))
}

/// `Fail(BadHost(…))` of an IPv6 reference with no `]`.
fn bad_ipv6() -> Expect {
    Expect::Fail(FromError::BadHost("'[' without a closing ']'"))
}

/// `Fail(TrailingGarbage(…))` after the URI and its header parameters.
fn trailing_garbage() -> Expect {
    Expect::Fail(FromError::TrailingGarbage(
        "the URI and its header parameters",
    ))
}

/// What `agi_arg_1` of each recorded session must parse to. PJSIP re-serialises the From
/// (drops the port and URI params/headers, lower-cases the scheme); chan_sip passes it as
/// received; Asterisk's argument parser strips the display name's quotes.
fn arg1_expectation(case: &str) -> Option<Expect> {
    use Expect::*;
    Some(match case {
        "agi-url-ipv6"
        | "capture-commands-pjsip"
        | "hangup-after-answer"
        | "hangup-before-answer"
        | "pjsip-ipv4"
        | "pjsip-over-ipv6-transport" => Parse(bob(None)),
        "capture-commands-chansip" | "chansip-ipv4" => Parse(bob(Some(5060))),
        "args-from-variable" => Parse(doe_john()),
        // Not From values at all: literal arguments, and the first half of a From split
        // at the comma of its display name.
        "args-literal" | "args-literal-escaped-semicolon" | "args-quoted-from" => {
            Fail(FromError::NoUri)
        }
        "chansip-anonymous" | "pjsip-anonymous" => Parse(anonymous().sipp_tag()),
        "chansip-bad-ipv4" | "pjsip-bad-ipv4" => bad_ipv4(),
        // Asterisk's argument parser kept `,127.0.0.1` in arg 1 (the unclosed `[`).
        "chansip-bad-ipv6" => bad_ipv6(),
        "chansip-display-escaped" | "pjsip-display-escaped" => Parse(escaped()),
        "chansip-hostname" | "pjsip-hostname" => Parse(hostname_only()),
        "chansip-ipv6" => Parse(bob_v6(Some(5060))),
        "pjsip-ipv6" => Parse(bob_v6(None)),
        "chansip-over-ipv6-uri-with-port" => Parse(bob_v6_udp()),
        "chansip-sips" | "pjsip-sips" => Parse(sips_bob()),
        "chansip-tel-uri" | "pjsip-tel-uri" => Parse(tel()),
        "getfrom-chansip"
        | "getfrom-pjsip"
        | "legacy-pipe"
        | "no-script"
        | "pipelined-commands"
        | "server-closes-immediately"
        | "server-sends-garbage"
        | "slow-server"
        | "url-query-args" => NoArg,
        "legacy-cut-ip" => Parse(want(None, Bare, None, V4, None)),
        // PJSIP turned the addr-spec into a name-addr.
        "pjsip-addr-spec" | "pjsip-uri-params-headers" => Parse(bob_plain()),
        "pjsip-display-comma-userphone" => Parse(doe_john_phone()),
        "pjsip-no-user" => Parse(no_user()),
        "pjsip-uppercase-scheme" => Parse(uppercase_user()),
        // The hostile blocks, recorded with the From first (the order that let them through):
        // what the From parser makes of arg 1.
        "hostile-pjsip-comma-display" => Parse(eve("203.0.113.7,,")),
        // chan_sip's raw header split at its commas: arg 1 is a permitted bare IP.
        "hostile-chansip-comma-shift" => Parse(want(None, Bare, None, V4, None)),
        // The source swallowed into arg 1 after the tag.
        "hostile-pjsip-paren-display" => trailing_garbage(),
        // The byte 0xC3, replaced when the block is read.
        "hostile-pjsip-non-utf8-display" => Parse(eve("Eve \u{fffd}")),
        // `${PJSIP_HEADER(read,From)}` came back empty for a 9,000-character display name.
        "hostile-pjsip-long-display" => Fail(FromError::Empty),
        _ => return None,
    })
}

/// What the From line of each recorded INVITE (the header as sent) must parse to.
fn invite_expectation(case: &str) -> Option<Expect> {
    use Expect::*;
    Some(match case {
        "agi-connect-timeout"
        | "agi-server-down"
        | "agi-url-ipv6"
        | "capture-commands-chansip"
        | "capture-commands-pjsip"
        | "chansip-ipv4"
        | "hangup-after-answer"
        | "hangup-before-answer"
        | "legacy-cut-ip"
        | "legacy-pipe"
        | "lookupblacklist-app"
        | "no-script"
        | "pipelined-commands"
        | "pjsip-ipv4"
        | "pjsip-over-ipv6-transport"
        | "server-closes-immediately"
        | "server-sends-garbage"
        | "slow-server"
        | "url-query-args" => Parse(bob(Some(5060))),
        "args-literal" | "args-literal-escaped-semicolon" => Parse(bob(None)),
        "args-from-variable" | "args-quoted-from" => Parse(doe_john()),
        "chansip-anonymous" | "pjsip-anonymous" => Parse(anonymous().sipp_tag()),
        "chansip-bad-ipv4" | "pjsip-bad-ipv4" => bad_ipv4(),
        "chansip-bad-ipv6" | "pjsip-bad-ipv6" => bad_ipv6(),
        "chansip-display-escaped" | "pjsip-display-escaped" => Parse(escaped()),
        "chansip-hostname" | "pjsip-hostname" => Parse(hostname_only()),
        "chansip-ipv6" | "pjsip-ipv6" => Parse(bob_v6(Some(5060))),
        "chansip-malformed" | "pjsip-malformed" => Fail(FromError::NoUri),
        "chansip-missing-gt" | "pjsip-missing-gt" => Fail(FromError::UnterminatedAngle),
        "chansip-unterminated-quote" | "pjsip-unterminated-quote" => {
            Fail(FromError::UnterminatedQuote)
        }
        "pjsip-trailing-junk" => trailing_garbage(),
        "chansip-over-ipv6-uri-with-port" => Parse(bob_v6_udp()),
        "chansip-sips" | "pjsip-sips" => Parse(sips_bob()),
        "chansip-tel-uri" | "pjsip-tel-uri" => Parse(tel()),
        "getfrom-chansip" | "getfrom-pjsip" => Parse(
            want(Some("Doe, John"), Sip, Some("john"), V4, None)
                .params(&[("x", Some("1")), ("tag", Some(SIPP_TAG))]),
        ),
        "pjsip-addr-spec" => Parse(bob_plain()),
        "pjsip-display-comma-userphone" => Parse(doe_john_phone()),
        "pjsip-no-user" => Parse(no_user()),
        "pjsip-uppercase-scheme" => Parse(uppercase_user()),
        "pjsip-uri-params-headers" => Parse(
            want(None, Sip, BOB, V4, Some(5070))
                .uri_params(&[("transport", Some("udp"))])
                .headers(&[("x-foo", Some("bar"))])
                .sipp_tag(),
        ),
        _ => return None,
    })
}

fn check_expect(case: &str, value: Option<&str>, expect: &Expect) {
    match (expect, value) {
        (Expect::NoArg, None) => {}
        (Expect::NoArg, Some(v)) => panic!("{case}: unexpected value {v:?}"),
        (_, None) => panic!("{case}: no From value found"),
        (Expect::Parse(w), Some(v)) => check(v, &parse(v), w),
        (Expect::Fail(e), Some(v)) => {
            assert_eq!(parse(v), Err(*e), "{case}: {v:?}")
        }
    }
}

/// Every `<case><suffix>` file in `dir`, as `(case, contents)`, sorted by case.
fn fixture_files(dir: &str, suffix: &str) -> Vec<(String, String)> {
    let dir = Path::new(FIXTURES).join(dir);
    let mut out: Vec<(String, String)> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter_map(|path| {
            let name = path.file_name()?.to_str()?;
            let case = name.strip_suffix(suffix)?.to_owned();
            // Lossy, as the server reads blocks: the hostile ones are not all UTF-8.
            let bytes =
                fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
            let text = String::from_utf8_lossy(&bytes).into_owned();
            Some((case, text))
        })
        .collect();
    out.sort();
    out
}

#[test]
fn fixture_agi_arg_1() {
    let files = fixture_files("sessions", ".header.raw");
    assert!(
        files.len() >= 40,
        "only {} header fixtures found",
        files.len()
    );
    let mut parsed = 0;
    for (case, text) in &files {
        let arg1 = text.lines().find_map(|l| l.strip_prefix("agi_arg_1: "));
        let expect = arg1_expectation(case)
            .unwrap_or_else(|| panic!("no expectation written for session {case}"));
        parsed += usize::from(matches!(expect, Expect::Parse(_)));
        check_expect(case, arg1, &expect);
    }
    assert!(parsed >= 25, "only {parsed} sessions parsed successfully");
}

#[test]
fn fixture_invite_from_lines() {
    let files = fixture_files("sip", ".invite.txt");
    assert!(
        files.len() >= 50,
        "only {} INVITE fixtures found",
        files.len()
    );
    for (case, text) in &files {
        // The From is on the third line; find it by name rather than by position.
        let from = text.lines().find_map(|l| l.strip_prefix("From: "));
        let expect = invite_expectation(case)
            .unwrap_or_else(|| panic!("no expectation written for INVITE {case}"));
        check_expect(case, from, &expect);
    }
}

/// `GET VARIABLE PJSIP_HEADER(read,From)` and friends return the raw header in
/// `200 result=1 (…)`. Pair each command with its reply (Asterisk answers one command at a
/// time) and parse every From-header reply.
#[test]
fn fixture_getfrom_replies() {
    for (case, params) in [
        (
            "getfrom-pjsip",
            &[("tag", Some(SIPP_TAG)), ("x", Some("1"))] as &[P],
        ),
        (
            "getfrom-chansip",
            &[("x", Some("1")), ("tag", Some(SIPP_TAG))],
        ),
    ] {
        let dir = Path::new(FIXTURES).join("sessions");
        let sent = fs::read_to_string(dir.join(format!("{case}.to-asterisk.raw")))
            .expect("to-asterisk fixture");
        let received = fs::read_to_string(dir.join(format!("{case}.from-asterisk.raw")))
            .expect("from-asterisk fixture");
        let (_header, replies) = received.split_once("\n\n").expect("header block end");
        let w = want(Some("Doe, John"), Sip, Some("john"), V4, None).params(params);
        let mut parsed = 0;
        for (command, reply) in sent.lines().zip(replies.lines()) {
            if !command.contains("_HEADER(") {
                continue;
            }
            let Some(value) = reply
                .strip_prefix("200 result=1 (")
                .and_then(|r| r.strip_suffix(')'))
            else {
                assert_eq!(reply, "200 result=0", "{case}: {command}");
                continue;
            };
            if value.is_empty() {
                // chan_sip answers PJSIP_HEADER() with an empty value.
                assert_eq!(parse(value), Err(FromError::Empty), "{case}: {command}");
                continue;
            }
            check(value, &parse(value), &w);
            parsed += 1;
        }
        assert!(parsed >= 1, "{case}: no From header reply parsed");
    }
}

// ---- properties ----------------------------------------------------------------

proptest! {
    #[test]
    fn arbitrary_strings_never_panic(s in any::<String>()) {
        let _ = parse(&s);
        let _ = parse_unbounded(&s);
    }

    #[test]
    fn sip_like_strings_never_panic(s in r#"[ "<>@:;=?&\[\]\\a-zA-Z0-9.%+,\t-]{0,200}"#) {
        if let Ok(h) = parse(&s) {
            // Whatever parses must have a host unless it is a tel: URI.
            prop_assert_eq!(h.host().is_none(), h.uri.scheme == Scheme::Tel);
        }
    }

    #[test]
    fn well_formed_headers_round_trip(
        name in r#"[A-Za-z0-9 ,<>@:"\\]{0,24}"#,
        user in "[a-z][a-z0-9.+-]{0,15}",
        ip in any::<IpAddr>(),
        port in any::<u16>(),
        tag in "[A-Za-z0-9]{1,16}",
    ) {
        let host = match ip {
            IpAddr::V4(v4) => v4.to_string(),
            IpAddr::V6(v6) => format!("[{v6}]"),
        };
        // `raw` parses to the generated parts, shown with `display` as the display name.
        let parses_back = |raw: &str, display: &str| -> Result<(), TestCaseError> {
            let h = parse(raw).map_err(|e| TestCaseError::fail(format!("{raw:?}: {e}")))?;
            prop_assert_eq!(h.display_name.as_deref(), Some(display).filter(|n| !n.is_empty()));
            prop_assert_eq!(h.uri.user.as_deref(), Some(user.as_str()));
            prop_assert_eq!(h.host(), Some(&Host::Ip(ip)));
            prop_assert_eq!(h.uri.port, Some(port));
            prop_assert_eq!(tag_of(&h), Some(tag.as_str()));
            Ok(())
        };
        let quoted = name.replace('\\', "\\\\").replace('"', "\\\"");
        parses_back(&format!("\"{quoted}\" <sip:{user}@{host}:{port}>;tag={tag}"), &name)?;

        // The same header after Asterisk's argument parsing: quotes and escapes gone.
        // (A name that then starts with `"` reads as an unterminated quoted-string.)
        prop_assume!(!name.trim_start().starts_with('"'));
        parses_back(&format!("{name} <sip:{user}@{host}:{port}>;tag={tag}"), name.trim())?;
    }
}
