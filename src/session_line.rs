//! The per-call `info` line, "screened call". At a PBX's few calls a second, each call runs on
//! cold caches, and tracing's formatter was the largest piece of a call's CPU: about 80 µs of
//! an isolated call's ~200, where formatting the same line by hand costs about 10 (issue 18,
//! BENCHMARKS.md). So when tracing writes plain text to the log buffer (`logbuf::plain`: no
//! colours, not JSON, which is how a service runs), the line is formatted here, in
//! tracing-subscriber's own format (the test below holds the two to the same bytes), and
//! appended to the buffer; otherwise it goes through tracing like every other line.

use std::fmt::Write as _;
use std::net::IpAddr;

use tracing::info;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};

use super::Outcome;
use crate::escape::Escaped;
use crate::ip_text::IpText;
use crate::logbuf;

/// The target of the line: the session module's, as before it had a module of its own.
const TARGET: &str = "ipcountry::session";

/// The fields of the line; every text the caller wrote is escaped when written.
pub(super) struct CallLine<'a> {
    pub(super) uniqueid: &'a str,
    pub(super) callerid: &'a str,
    pub(super) from_host: Field<'a>,
    pub(super) source: Field<'a>,
    pub(super) verdict: &'static str,
    pub(super) monitor: bool,
    pub(super) reason: &'a str,
    pub(super) country: &'a str,
    pub(super) outcome: &'a Outcome,
    pub(super) micros: u64,
}

/// A field that is text from the call (escaped when written) or an address (written as it
/// is, with no string made for it).
#[derive(Clone, Copy)]
pub(super) enum Field<'a> {
    Text(&'a str),
    Ip(IpAddr),
}

impl Field<'_> {
    fn push_to(self, out: &mut String) {
        match self {
            Field::Text(text) => Escaped(text).push_to(out),
            Field::Ip(ip) => IpText(ip).push_to(out),
        }
    }
}

impl std::fmt::Display for Field<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Field::Text(text) => Escaped(text).fmt(f),
            Field::Ip(ip) => IpText(ip).fmt(f),
        }
    }
}

impl CallLine<'_> {
    /// Writes the line (the caller checked that `info` is enabled for [`TARGET`]).
    pub(super) fn write(&self) {
        match logbuf::plain() {
            Some(buf) => {
                let mut line = String::with_capacity(512);
                self.format_plain(&mut line);
                buf.append(line.as_bytes());
            }
            None => self.trace(),
        }
    }

    fn trace(&self) {
        info!(
            target: TARGET,
            uniqueid = %Escaped(self.uniqueid),
            callerid = %Escaped(self.callerid),
            from_host = %self.from_host,
            source = %self.source,
            verdict = self.verdict,
            monitor = self.monitor,
            reason = %Escaped(self.reason),
            country = self.country,
            outcome = ?self.outcome,
            micros = self.micros,
            "screened call"
        );
    }

    /// The line as tracing-subscriber's default text format writes it without colours:
    /// timestamp, level, target, message, then `name=value` (`%` fields as they display,
    /// the others as they debug-print).
    ///
    /// Written piece by piece, not through `core::fmt` (a third of the line's cost on cold
    /// caches, issue 18); the `?` fields of our own text take their `Debug` form the same way.
    fn format_plain(&self, out: &mut String) {
        timestamp(out);
        out.push_str("  INFO ");
        out.push_str(TARGET);
        out.push_str(": screened call uniqueid=");
        Escaped(self.uniqueid).push_to(out);
        out.push_str(" callerid=");
        Escaped(self.callerid).push_to(out);
        out.push_str(" from_host=");
        self.from_host.push_to(out);
        out.push_str(" source=");
        self.source.push_to(out);
        out.push_str(" verdict=");
        push_debug_str(out, self.verdict);
        out.push_str(if self.monitor {
            " monitor=true"
        } else {
            " monitor=false"
        });
        out.push_str(" reason=");
        Escaped(self.reason).push_to(out);
        out.push_str(" country=");
        push_debug_str(out, self.country);
        out.push_str(" outcome=");
        out.push_str(outcome_name(self.outcome));
        out.push_str(" micros=");
        push_decimal(out, self.micros);
        out.push('\n');
    }
}

/// What `{:?}` writes for `outcome` (the test below holds the two together), without
/// `core::fmt`.
fn outcome_name(outcome: &Outcome) -> &'static str {
    match outcome {
        Outcome::Screened => "Screened",
        Outcome::Failed => "Failed",
        Outcome::HungUp => "HungUp",
        Outcome::Abandoned => "Abandoned",
        Outcome::Reloaded => "Reloaded",
        Outcome::Dropped => "Dropped",
    }
}

/// `text` as `{:?}` writes it: quoted, and escaped unless it is plain ASCII (a verdict, a
/// country code).
fn push_debug_str(out: &mut String, text: &str) {
    if text
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b' ' || b == b'-')
    {
        out.push('"');
        out.push_str(text);
        out.push('"');
    } else {
        let _ = write!(out, "{text:?}");
    }
}

/// `n` in decimal.
fn push_decimal(out: &mut String, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend(digits[at..].iter().map(|&d| char::from(d)));
}

/// The time now as tracing-subscriber's `SystemTime` writes it (`2026-12-03T07:34:53.313772Z`,
/// UTC, microseconds), digit by digit: its formatter makes seven padded integer displays, a
/// third of the line's cost. A clock before 1970 or after 9999 goes through tracing's.
fn timestamp(out: &mut String) {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    match since.ok().and_then(stamp) {
        Some(text) => out.push_str(text.as_str()),
        None => {
            let _ = SystemTime.format_time(&mut Writer::new(out));
        }
    }
}

/// `since` the epoch as `YYYY-MM-DDTHH:MM:SS.ffffffZ`; `None` after the year 9999.
fn stamp(since: std::time::Duration) -> Option<Stamp> {
    let secs = since.as_secs();
    let (year, month, day) = civil_from_days(secs / 86_400);
    if year > 9999 {
        return None;
    }
    let of_day = secs % 86_400;
    let mut b = *b"0000-00-00T00:00:00.000000Z";
    let mut put = |at: usize, width: usize, mut n: u64| {
        for i in (at..at + width).rev() {
            b[i] = b'0' + (n % 10) as u8;
            n /= 10;
        }
    };
    put(0, 4, year);
    put(5, 2, month);
    put(8, 2, day);
    put(11, 2, of_day / 3600);
    put(14, 2, of_day / 60 % 60);
    put(17, 2, of_day % 60);
    put(20, 6, u64::from(since.subsec_micros()));
    Some(Stamp(b))
}

/// A timestamp's 27 ASCII bytes.
struct Stamp([u8; 27]);

impl Stamp {
    fn as_str(&self) -> &str {
        // Only ASCII digits and separators are written.
        std::str::from_utf8(&self.0).unwrap_or("")
    }
}

/// The proleptic Gregorian (year, month, day) of a count of days since 1970-01-01: Howard
/// Hinnant's `civil_from_days`, for days on or after the epoch.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// What tracing-subscriber's text format (as the binary sets it up, without colours)
    /// writes for `line`.
    fn through_tracing(line: &CallLine<'_>) -> String {
        let out = Arc::new(Mutex::new(Vec::new()));
        let sink = out.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || Sink(sink.clone()))
            .finish();
        tracing::subscriber::with_default(subscriber, || line.trace());
        let bytes = out.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Sink {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Counts the days year by year and month by month: the oracle of [`civil_from_days`].
    fn naive_civil(mut days: u64) -> (u64, u64, u64) {
        let leap =
            |y: u64| (y.is_multiple_of(4) && !y.is_multiple_of(100)) || y.is_multiple_of(400);
        let mut year = 1970;
        loop {
            let len = if leap(year) { 366 } else { 365 };
            if days < len {
                break;
            }
            days -= len;
            year += 1;
        }
        let lengths = [
            31,
            if leap(year) { 29 } else { 28 },
            31,
            30,
            31,
            30,
            31,
            31,
            30,
            31,
            30,
            31,
        ];
        let mut month = 1;
        for len in lengths {
            if days < len {
                break;
            }
            days -= len;
            month += 1;
        }
        (year, month, days + 1)
    }

    #[test]
    fn outcome_names_are_their_debug_forms() {
        for outcome in [
            Outcome::Screened,
            Outcome::Failed,
            Outcome::HungUp,
            Outcome::Abandoned,
            Outcome::Reloaded,
            Outcome::Dropped,
        ] {
            assert_eq!(outcome_name(&outcome), format!("{outcome:?}"));
        }
    }

    #[test]
    fn stamps_at_known_instants() {
        let at = |secs: u64, micros: u32| {
            let d = std::time::Duration::new(secs, micros * 1000);
            stamp(d).map(|s| s.as_str().to_owned())
        };
        assert_eq!(at(0, 0).as_deref(), Some("1970-01-01T00:00:00.000000Z"));
        assert_eq!(
            at(951_868_799, 999_999).as_deref(),
            Some("2000-02-29T23:59:59.999999Z")
        );
        assert_eq!(
            at(951_868_800, 7).as_deref(),
            Some("2000-03-01T00:00:00.000007Z")
        );
        assert_eq!(
            at(1_795_611_310, 313_772).as_deref(),
            Some("2026-11-25T12:55:10.313772Z")
        );
        assert_eq!(
            at(4_107_542_400, 0).as_deref(),
            Some("2100-03-01T00:00:00.000000Z")
        );
        assert_eq!(
            at(253_402_300_799, 0).as_deref(),
            Some("9999-12-31T23:59:59.000000Z")
        );
        assert_eq!(at(253_402_300_800, 0), None);
    }

    proptest::proptest! {
        #[test]
        fn civil_dates_match_counting_days(days in 0u64..2_932_897) {
            proptest::prop_assert_eq!(civil_from_days(days), naive_civil(days));
        }
    }

    #[test]
    fn the_stamp_is_tracings_to_the_second() {
        // Tracing takes its own clock reading: compare once both fall in the same second.
        for _ in 0..100 {
            let mut ours = String::new();
            timestamp(&mut ours);
            let mut theirs = String::new();
            let _ = SystemTime.format_time(&mut Writer::new(&mut theirs));
            if ours[..19] == theirs[..19] {
                assert_eq!(ours.len(), theirs.len(), "{ours} {theirs}");
                assert!(ours.ends_with('Z'), "{ours}");
                return;
            }
        }
        panic!("the two clocks never agreed on the second");
    }

    /// The line without its timestamp (the first word), which differs by the time between.
    fn untimed(line: &str) -> &str {
        line.split_once(' ').map_or("", |(_, rest)| rest)
    }

    #[test]
    fn the_line_by_hand_is_the_line_tracing_writes() {
        let outcomes = [Outcome::Screened, Outcome::HungUp, Outcome::Failed];
        let hostile = "a\"b\\c\r\nd\u{0}e é \u{1b}[31m";
        for (k, outcome) in outcomes.iter().enumerate() {
            let line = CallLine {
                uniqueid: "1795611310.0",
                callerid: if k == 0 { "bob" } else { hostile },
                from_host: if k == 1 {
                    Field::Text(hostile)
                } else {
                    Field::Ip(IpAddr::from([203, 0, 113, 7]))
                },
                source: if k == 2 {
                    Field::Ip("2001:db8::9".parse().expect("test address"))
                } else {
                    Field::Text("198.51.100.9")
                },
                verdict: ["permitted", "denied", "stranger"][k],
                monitor: k == 2,
                reason: if k == 2 {
                    hostile
                } else {
                    "geolite US 8.7.245.0-8.14.196.255"
                },
                country: ["US", "-", "\"Q\""][k],
                outcome,
                micros: [174, 0, u64::MAX][k],
            };
            let mut by_hand = String::new();
            line.format_plain(&mut by_hand);
            let traced = through_tracing(&line);
            assert_eq!(untimed(&by_hand), untimed(&traced));
            assert!(by_hand.ends_with('\n') && by_hand.matches('\n').count() == 1);
            // The timestamps have the same shape: 2026-12-02T14:51:17.343042Z.
            let stamp = |s: &str| s.split(' ').next().unwrap_or("").len();
            assert_eq!(stamp(&by_hand), stamp(&traced));
            assert!(
                by_hand.starts_with("20") && by_hand[..27].ends_with('Z'),
                "{by_hand}"
            );
        }
    }
}
