//! What Asterisk does to a dialplan application's argument text before the application sees
//! it: `__ast_app_separate_args(buf, ',', 1, argv, 128)` in `main/app.c`, which `AGI()` uses to
//! build `agi_arg_1..N` and `MSet` uses to split its assignments.
//!
//! The rules, ported statement by statement (and checked against the recorded blocks, see the
//! tests):
//!
//! * `,` separates arguments, except while a `"…"` is open or a `(` or `[` is not yet closed.
//! * `(` `)` `[` `]` are counted **even inside double quotes**, and kept. A `)` or `]` with
//!   nothing open is ignored by the counters.
//! * Double quotes toggle quoting and are **removed**.
//! * A backslash is removed and the character after it is kept literally (a trailing backslash
//!   is removed; Asterisk reads past its buffer there).
//! * An empty text gives no argument; a text ending in `,` gives a last, empty one.
//! * At most [`MAX_ARGS`] arguments: the last one then holds the rest of the text unsplit and
//!   unprocessed.
//! * The text is a C string: it ends at the first NUL.
//!
//! The text after `${…}` substitution is what is split, so a caller who writes the From header
//! controls the shape of every argument after it: hence ipcountry's contract, source first,
//! From after it. `ipcountry check` runs a From through this splitter so that it decides on
//! exactly what a call would deliver.

/// The most arguments `AGI()` splits (`MAX_ARGS` in `res/res_agi.c`), the URL included.
pub const MAX_ARGS: usize = 128;

/// Splits `text` the way Asterisk splits `AGI()`'s argument text (see the module docs).
pub fn separate_args(text: &[u8]) -> Vec<Vec<u8>> {
    let text = match memchr::memchr(0, text) {
        Some(nul) => &text[..nul],
        None => text,
    };
    let mut args: Vec<Vec<u8>> = Vec::new();
    let (mut paren, mut bracket, mut quote) = (0u32, 0u32, false);
    let mut i = 0;
    let mut ended_by_delimiter = false;
    while i < text.len() && args.len() < MAX_ARGS - 1 {
        let mut arg = Vec::new();
        ended_by_delimiter = false;
        while i < text.len() {
            let c = text[i];
            i += 1;
            match c {
                b'(' => paren += 1,
                b')' => paren = paren.saturating_sub(1),
                b'[' => bracket += 1,
                b']' => bracket = bracket.saturating_sub(1),
                b'"' => {
                    quote = !quote;
                    continue;
                }
                b'\\' => {
                    if let Some(&next) = text.get(i) {
                        arg.push(next);
                        i += 1;
                    }
                    continue;
                }
                b',' if paren == 0 && bracket == 0 && !quote => {
                    ended_by_delimiter = true;
                    break;
                }
                _ => {}
            }
            arg.push(c);
        }
        args.push(arg);
    }
    if i < text.len() {
        args.push(text[i..].to_vec());
    } else if ended_by_delimiter {
        args.push(Vec::new());
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agi::env::tests::fixture;
    use crate::agi::env::AgiEnv;

    fn split(text: &str) -> Vec<String> {
        separate_args(text.as_bytes())
            .into_iter()
            .map(|a| String::from_utf8_lossy(&a).into_owned())
            .collect()
    }

    #[test]
    fn the_rules() {
        assert_eq!(split(""), Vec::<String>::new());
        assert_eq!(split("a"), ["a"]);
        assert_eq!(split("a,b"), ["a", "b"]);
        assert_eq!(split("a,"), ["a", ""]);
        assert_eq!(split(","), ["", ""]);
        assert_eq!(split("a,,b"), ["a", "", "b"]);
        assert_eq!(split(r#""x, y",z"#), ["x, y", "z"]);
        assert_eq!(split(r"x\,y,z"), ["x,y", "z"]);
        assert_eq!(split(r#"a \"q\" b"#), [r#"a "q" b"#]);
        assert_eq!(split(r"a\\b"), [r"a\b"]);
        assert_eq!(split("a\\"), ["a"]);
        assert_eq!(split("f(a,b),c"), ["f(a,b)", "c"]);
        assert_eq!(split("[::1]:5060,c"), ["[::1]:5060", "c"]);
        // Brackets count inside quotes, and an unclosed one swallows the rest.
        assert_eq!(
            split(r#""Bob (" <sip:b@h>,1.2.3.4"#),
            ["Bob ( <sip:b@h>,1.2.3.4"]
        );
        assert_eq!(split("a),b"), ["a)", "b"]);
        assert_eq!(split("'single',  padded  "), ["'single'", "  padded  "]);
        assert_eq!(split("a\0,b"), ["a"]);
        assert_eq!(split("a,\u{e9}"), ["a", "\u{e9}"]);
    }

    #[test]
    fn at_most_max_args_and_the_rest_unsplit() {
        let text: String = (0..200).map(|i| format!("\"{i}\",")).collect();
        let args = split(&text);
        assert_eq!(args.len(), MAX_ARGS);
        assert_eq!(args[126], "126");
        assert!(args[127].starts_with("\"127\",\"128\""), "{}", args[127]);
    }

    /// The recorded blocks were made with `AGI(url,${From},${source})`: splitting the dialplan's
    /// text as Asterisk did gives exactly the recorded `agi_arg_N` lines. The From texts here
    /// are the values of `${PJSIP_HEADER(read,From)}` / `${SIP_HEADER(From)}` for the calls
    /// (the fixtures README and `sip/<case>.invite.txt`), tags taken from the blocks.
    #[test]
    fn reproduces_the_recorded_arguments() {
        let tag = |case: &str| {
            let raw = fixture(case, "header.raw");
            let env = AgiEnv::parse(&raw).expect("parses");
            let first: String = env.args().next().expect("arg 1").to_owned();
            let tag = first.split_once(";tag=").map_or("", |(_, t)| t);
            tag.split(',').next().unwrap_or_default().to_owned()
        };
        let cases: &[(&str, String, &str)] = &[
            (
                "hostile-pjsip-comma-display",
                format!(
                    r#""203.0.113.7,," <sip:eve@198.51.100.9>;tag={}"#,
                    tag("hostile-pjsip-comma-display")
                ),
                "127.0.0.1:15100",
            ),
            ("hostile-chansip-comma-shift", String::new(), "127.0.0.1"),
            (
                "hostile-pjsip-paren-display",
                format!(
                    r#""Bob (" <sip:bob@203.0.113.7>;tag={}"#,
                    tag("hostile-pjsip-paren-display")
                ),
                "198.51.100.9:15107",
            ),
            (
                "pjsip-display-escaped",
                format!(
                    r#""Bob \"the\" <Builder>" <sip:bob@203.0.113.7>;tag={}"#,
                    tag("pjsip-display-escaped")
                ),
                "127.0.0.1:15209",
            ),
        ];
        for (case, from, source) in cases {
            let raw = fixture(case, "header.raw");
            let env = AgiEnv::parse(&raw).expect("parses");
            let recorded: Vec<String> = env.args().map(str::to_owned).collect();
            let from = if from.is_empty() {
                // chan_sip passes the header as received (the tag is in the third argument).
                let tag = recorded[2].split_once(";tag=").map_or("", |(_, t)| t);
                format!("203.0.113.7,,<sip:eve@198.51.100.9>;tag={tag}")
            } else {
                from.clone()
            };
            assert_eq!(split(&format!("{from},{source}")), recorded, "{case}");
        }
    }
}
