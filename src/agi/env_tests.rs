//! Tests of `env.rs`: every recorded Asterisk block, the typed errors, and properties.

use super::*;
use proptest::prelude::*;

/// Directory of the captured Asterisk 20 sessions.
pub(crate) const SESSIONS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/fixtures/asterisk-agi/sessions"
);

/// Every `<case>` that has a `<case>.<suffix>`, sorted.
fn cases_with(suffix: &str) -> Vec<String> {
    let mut cases: Vec<String> = std::fs::read_dir(SESSIONS)
        .expect("fixture directory readable")
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            name.strip_suffix(suffix).map(str::to_owned)
        })
        .collect();
    cases.sort();
    cases
}

/// Every recorded block: `<case>.header.raw` (the hostile ones have nothing else).
pub(crate) fn header_cases() -> Vec<String> {
    cases_with(".header.raw")
}

/// Every recorded whole session: `<case>.from-asterisk.raw` and `<case>.to-asterisk.raw`.
pub(crate) fn session_cases() -> Vec<String> {
    cases_with(".from-asterisk.raw")
}

pub(crate) fn fixture(case: &str, suffix: &str) -> Vec<u8> {
    let path = format!("{SESSIONS}/{case}.{suffix}");
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

fn header(case: &str) -> AgiEnv {
    let raw = fixture(case, "header.raw");
    AgiEnv::parse(&raw).unwrap_or_else(|e| panic!("{case}: {e}"))
}

fn args(env: &AgiEnv) -> Vec<&str> {
    env.args().collect()
}

#[test]
fn every_captured_header_parses() {
    let cases = header_cases();
    assert!(
        cases.len() >= 45,
        "expected the whole capture set, hostile blocks included, got {}",
        cases.len()
    );
    for case in &cases {
        let raw = fixture(case, "header.raw");
        let env = header(case);
        assert_eq!(env.get("network"), Some("yes"), "{case}");
        assert_eq!(env.get("version"), Some("20.20.1"), "{case}");
        assert_eq!(env.get("enhanced"), Some("0.0"), "{case}");
        assert_eq!(env.get("accountcode"), Some(""), "{case}: empty value kept");
        assert!(env.uniqueid().is_some_and(|u| u.contains('.')), "{case}");
        assert!(env.get("channel").is_some(), "{case}");
        // Names are stored without the prefix, in wire order.
        assert_eq!(env.vars().next().map(|v| v.0), Some("network"), "{case}");
        let lines = raw.iter().filter(|&&b| b == b'\n').count() - 1;
        assert_eq!(env.vars().len(), lines, "{case}: one var per line");
        assert_eq!(
            env.had_invalid_utf8(),
            std::str::from_utf8(&raw).is_err(),
            "{case}"
        );
    }
}

#[test]
fn pjsip_ipv4_values() {
    let env = header("pjsip-ipv4");
    assert_eq!(env.script(), Some("screen"));
    assert_eq!(env.get("request"), Some("agi://127.0.0.1:4573/screen"));
    assert_eq!(env.get("channel"), Some("PJSIP/sipp-00000000"));
    assert_eq!(env.uniqueid(), Some("1795611310.0"));
    assert_eq!(env.callerid(), Some("bob"));
    assert_eq!(env.get("calleridname"), Some("Bob"));
    assert_eq!(env.get("type"), Some("PJSIP"));
    assert_eq!(env.get("threadid"), Some("140143344211648"));
    assert_eq!(env.get("agi_uniqueid"), None, "prefix is stripped");
    assert_eq!(env.get("nonexistent"), None);
    assert_eq!(
        args(&env),
        [
            "Bob <sip:bob@203.0.113.7>;tag=27303SIPpTag001",
            "127.0.0.1:15201"
        ]
    );
}

#[test]
fn args_literal_keeps_empty_and_padding() {
    let env = header("args-literal");
    assert_eq!(env.get("arg_7"), Some(""));
    assert_eq!(
        args(&env),
        [
            "plain",
            "with space",
            "quoted, comma",
            "escaped,comma",
            "'single'",
            "a \"q\" b",
            "",
            "  padded  ",
            "semi"
        ]
    );
}

#[test]
fn args_with_tab_and_punctuation() {
    let env = header("args-literal-escaped-semicolon");
    assert_eq!(
        args(&env),
        [
            "semi;colon",
            "pipe|bar",
            "tab\there",
            "dollar$",
            "brace{x}",
            "last"
        ]
    );
}

#[test]
fn display_name_escapes_survive() {
    let env = header("pjsip-display-escaped");
    let args = args(&env);
    assert!(
        args[0].starts_with("Bob \"the\" <Builder> <sip:bob@203.0.113.7>"),
        "{args:?}"
    );
    assert_eq!(env.get("calleridname"), Some("Bob \\\"the\\\" <Builder>"));
}

#[test]
fn non_utf8_bytes_are_replaced_not_refused() {
    // The byte 0xC3 in the display name, as PJSIP passed it on.
    let env = header("hostile-pjsip-non-utf8-display");
    assert!(env.had_invalid_utf8());
    assert_eq!(env.get("calleridname"), Some("Eve \u{fffd}"));
    let args = args(&env);
    assert!(
        args[0].starts_with("Eve \u{fffd} <sip:eve@198.51.100.9>;tag="),
        "{args:?}"
    );
    assert_eq!(args.len(), 2);
    // Anywhere in a value, and in several places.
    let env = AgiEnv::parse(b"agi_a: \xff\xfe x \xe2\x82\nagi_b: ok\n\n").expect("parses");
    assert_eq!(env.get("a"), Some("\u{fffd}\u{fffd} x \u{fffd}"));
    assert_eq!(env.get("b"), Some("ok"));
    // ... but not in a name, which must be [A-Za-z0-9_].
    assert_eq!(
        AgiEnv::parse(b"agi_\xff: 1\n\n"),
        Err(EnvError::BadName { line: 1 })
    );
}

#[test]
fn ipv6_agi_url_is_kept_verbatim() {
    let env = header("agi-url-ipv6");
    assert_eq!(env.get("request"), Some("agi://[::1]:4573/screen"));
    assert_eq!(env.script(), Some("screen"));
}

#[test]
fn no_script_line_means_none() {
    let env = header("no-script");
    assert_eq!(env.script(), None);
    assert_eq!(env.get("request"), Some("agi://127.0.0.1:4573"));
    assert_eq!(env.args().len(), 0);
}

#[test]
fn script_is_kept_whole_and_url_arguments_are_not_read() {
    // The old styles that carried arguments in the URL are not arguments any more: the
    // script name is what was sent, and the session refuses it as unknown.
    let env = header("url-query-args");
    assert_eq!(env.script(), Some("screen?from=203.0.113.7&src=127.0.0.1"));
    assert_eq!(env.args().len(), 0);
    let env = header("legacy-pipe");
    assert_eq!(env.script(), Some("screen|203.0.113.7"));
    assert_eq!(env.args().len(), 0);
}

#[test]
fn arguments_must_be_numbered_in_order() {
    let mut block = String::from("agi_network_script: screen\n");
    for i in 1..=11 {
        block.push_str(&format!("agi_arg_{i}: v{i}\n"));
    }
    block.push_str("agi_argument: not an arg\n\n");
    let env = AgiEnv::parse(block.as_bytes()).expect("valid");
    let want: Vec<String> = (1..=11).map(|i| format!("v{i}")).collect();
    assert_eq!(args(&env), want);
    assert_eq!(env.get("argument"), Some("not an arg"));
    for bad in [
        &b"agi_arg_2: x\n\n"[..],
        b"agi_arg_1: a\nagi_arg_3: c\n\n",
        b"agi_arg_01: a\n\n",
        b"agi_arg_: a\n\n",
        b"agi_arg_x: a\n\n",
    ] {
        let line = bad.iter().filter(|&&b| b == b'\n').count() - 1;
        assert_eq!(
            AgiEnv::parse(bad),
            Err(EnvError::BadArgument { line }),
            "{}",
            String::from_utf8_lossy(bad)
        );
    }
}

#[test]
fn crlf_and_unknown_names_are_tolerated() {
    let env = AgiEnv::parse(b"agi_network: yes\r\nagi_future_thing: x: y\r\nagi_arg_1: a\r\n\r\n")
        .expect("valid");
    assert_eq!(env.get("network"), Some("yes"));
    assert_eq!(
        env.get("future_thing"),
        Some("x: y"),
        "split at the first `: `"
    );
    assert_eq!(args(&env), ["a"]);
}

#[test]
fn empty_block_is_valid() {
    assert_eq!(AgiEnv::parse(b"\n"), Ok(AgiEnv::default()));
    assert_eq!(AgiEnv::parse(b"\r\n"), Ok(AgiEnv::default()));
}

#[test]
fn typed_errors_with_line_numbers() {
    let cases: &[(&[u8], EnvError)] = &[
        (b"not agi\n\n", EnvError::MissingPrefix { line: 1 }),
        (
            b"agi_a: 1\nagi_b 2\n\n",
            EnvError::MissingSeparator { line: 2 },
        ),
        (
            b"agi_a: 1\nagi_b:\n\n",
            EnvError::MissingSeparator { line: 2 },
        ),
        (b"agi_: 1\n\n", EnvError::BadName { line: 1 }),
        (b"agi_a b: 1\n\n", EnvError::BadName { line: 1 }),
        (
            b"agi_a: 1\nagi_a: 2\n\n",
            EnvError::DuplicateName { line: 2 },
        ),
        (b"agi_a: 1\n", EnvError::Unterminated),
        (b"agi_a: 1", EnvError::Unterminated),
        (b"", EnvError::Unterminated),
        (b"agi_a: 1\n\nHANGUP\n", EnvError::TrailingData { line: 3 }),
        (b"HANGUP\n\n", EnvError::MissingPrefix { line: 1 }),
        (
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
            EnvError::MissingPrefix { line: 1 },
        ),
    ];
    for (input, want) in cases {
        assert_eq!(
            AgiEnv::parse(input),
            Err(*want),
            "{:?}",
            String::from_utf8_lossy(input)
        );
    }
    assert_eq!(
        EnvError::MissingPrefix { line: 3 }.to_string(),
        "AGI environment line 3: does not start with `agi_`"
    );
}

#[test]
fn encode_block_round_trips_and_refuses_bad_names() {
    let vars = [
        ("network", "yes"),
        ("network_script", "reload"),
        ("arg_1", "a\r\nb"),
    ];
    let block = encode_block(&vars).expect("valid names");
    assert_eq!(
        block,
        b"agi_network: yes\nagi_network_script: reload\nagi_arg_1: a  b\n\n"
    );
    let env = AgiEnv::parse(&block).expect("parses back");
    assert_eq!(args(&env), ["a  b"]);
    assert_eq!(
        encode_block(&[("ok", ""), ("bad name", "x")]),
        Err(EnvError::BadName { line: 2 })
    );
}

/// Parsing line by line with the standard library: the oracle for [`AgiEnv::parse`].
fn parse_line_by_line(block: &[u8]) -> Result<Vec<(String, String)>, EnvError> {
    let text = String::from_utf8_lossy(block);
    let mut vars: Vec<(String, String)> = Vec::new();
    let mut rest: &str = &text;
    let mut line_no = 0;
    loop {
        line_no += 1;
        let Some((line, after)) = rest.split_once('\n') else {
            return Err(EnvError::Unterminated);
        };
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() {
            if after.is_empty() {
                return Ok(vars);
            }
            return Err(EnvError::TrailingData { line: line_no + 1 });
        }
        let named = line
            .strip_prefix("agi_")
            .ok_or(EnvError::MissingPrefix { line: line_no })?;
        let (name, value) = named
            .split_once(": ")
            .ok_or(EnvError::MissingSeparator { line: line_no })?;
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(EnvError::BadName { line: line_no });
        }
        if vars.iter().any(|(n, _)| n == name) {
            return Err(EnvError::DuplicateName { line: line_no });
        }
        if let Some(n) = name.strip_prefix("arg_") {
            let args = vars.iter().filter(|(n, _)| n.starts_with("arg_")).count();
            if n != format!("{}", args + 1) {
                return Err(EnvError::BadArgument { line: line_no });
            }
        }
        vars.push((name.to_owned(), value.to_owned()));
        rest = after;
    }
}

fn owned_vars(env: &AgiEnv) -> Vec<(String, String)> {
    env.vars()
        .map(|(n, v)| (n.to_owned(), v.to_owned()))
        .collect()
}

#[test]
fn parse_matches_line_by_line_on_every_capture() {
    for case in header_cases() {
        let raw = fixture(&case, "header.raw");
        let want = parse_line_by_line(&raw);
        assert!(want.is_ok(), "{case}");
        assert_eq!(AgiEnv::parse(&raw).map(|e| owned_vars(&e)), want, "{case}");
    }
}

proptest! {
    #[test]
    fn parse_matches_line_by_line(lines in proptest::collection::vec(
        prop_oneof![
            "(agi_)?[a-z_0-9 :]{0,8}(: ?)?[ -~\t\r:]{0,12}".prop_map(String::into_bytes),
            // Names whose keys collide (callington, callingtns) or nearly (abcdefgh, abcdefghi).
            "agi_(network|arg_1|arg_2|arg_3|a|b|ab|ba|callington|callingtns|abcdefgh|abcdefghi)(: )[ -~]{0,6}".prop_map(String::into_bytes),
            // Not UTF-8, in the name, the value or instead of the separator.
            ("(agi_)?[a-z]{0,3}", prop_oneof![Just(&b"\xff"[..]), Just(&b"\xc3"[..]), Just(&b"\xe2\x82"[..])], "(: )?[a-z]{0,3}")
                .prop_map(|(a, bad, b)| [a.as_bytes(), bad, b.as_bytes()].concat()),
            proptest::collection::vec(any::<u8>(), 0..12),
        ],
        0..12),
        raw_tail in proptest::collection::vec(any::<u8>(), 0..4),
        terminate in any::<bool>(),
    ) {
        let mut block = lines.join(&b'\n');
        if terminate {
            block.extend_from_slice(b"\n\n");
        }
        block.extend_from_slice(&raw_tail);
        let want = parse_line_by_line(&block);
        prop_assert_eq!(AgiEnv::parse(&block).map(|e| owned_vars(&e)), want);
    }

    #[test]
    fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(env) = AgiEnv::parse(&bytes) {
            let _ = (env.script(), env.args().count());
            for (name, value) in env.vars() {
                prop_assert_eq!(env.get(name), Some(value));
            }
        }
    }

    #[test]
    fn valid_blocks_round_trip(values in proptest::collection::vec("[^\n\r]{0,20}", 0..20)) {
        let names: Vec<String> = (1..=values.len()).map(|i| format!("arg_{i}")).collect();
        let mut vars = vec![("network_script", "s")];
        vars.extend(names.iter().map(String::as_str).zip(values.iter().map(String::as_str)));
        let block = encode_block(&vars).expect("valid names");
        let env = AgiEnv::parse(&block).expect("valid block");
        prop_assert_eq!(env.args().collect::<Vec<_>>(), values);
    }
}

/// Found by the `agi_env` fuzz target: a value may hold a CR that is not at its end; encoding
/// writes it as a space, and the block parses back to the pairs with that space.
#[test]
fn a_cr_inside_a_value_round_trips_as_a_space() {
    let env = AgiEnv::parse(b"agi_callington: \r\0x\nagi_arg_1: 1.2.3.4\n\n").expect("parses");
    let vars: Vec<(&str, &str)> = env.vars().collect();
    assert_eq!(vars[0], ("callington", "\r\0x"));
    let again = AgiEnv::parse(&encode_block(&vars).expect("encodes")).expect("parses");
    let got: Vec<(&str, &str)> = again.vars().collect();
    assert_eq!(got, vec![("callington", " \0x"), ("arg_1", "1.2.3.4")]);
}

#[test]
fn names_with_the_same_key_are_told_apart() {
    // Same length and the same first eight bytes: the same key, different names.
    let env = AgiEnv::parse(b"agi_callington: 0\nagi_callingtns: 7\n\n").expect("two names");
    assert_eq!(env.get("callington"), Some("0"));
    assert_eq!(env.get("callingtns"), Some("7"));
    assert_eq!(env.get("callingtnx"), None);
    assert_eq!(
        AgiEnv::parse(b"agi_callingtns: 0\nagi_callington: 1\nagi_callingtns: 2\n\n"),
        Err(EnvError::DuplicateName { line: 3 })
    );
}

#[test]
fn the_key_filter_never_forgets_a_key() {
    // No false "no": every key inserted is reported as maybe held, whatever else is in it.
    let mut filter = super::KeyFilter::default();
    let keys: Vec<u64> = (0..300u64)
        .map(|n| super::name_key(format!("name_{n}").as_bytes()))
        .collect();
    for (i, &k) in keys.iter().enumerate() {
        filter.insert(k);
        assert!(
            keys[..=i].iter().all(|&k| filter.maybe_holds(k)),
            "after {i}"
        );
    }
    // Asterisk's own names mostly miss each other: the filter spares most scans.
    let block = fixture("pjsip-ipv4", "header.raw");
    let mut filter = super::KeyFilter::default();
    let mut scans = 0;
    for line in block.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let name = &line[4..line.iter().position(|&b| b == b':').expect("colon")];
        let key = super::name_key(name);
        scans += usize::from(filter.maybe_holds(key));
        filter.insert(key);
    }
    assert!(scans <= 5, "{scans} scans for 25 distinct names");
}

#[test]
fn a_key_is_the_length_and_the_first_eight_bytes() {
    for name in [
        "",
        "a",
        "type",
        "request",
        "uniqueid",
        "network_script",
        "arg_1",
    ] {
        let mut head = [0u8; 8];
        let n = name.len().min(8);
        head[..n].copy_from_slice(&name.as_bytes()[..n]);
        let want = u64::from_le_bytes(head) ^ (name.len() as u64).rotate_right(8);
        assert_eq!(super::name_key(name.as_bytes()), want, "{name}");
    }
}
