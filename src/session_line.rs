//! The per-call `info` line, "screened call". At a PBX's few calls a second, each call runs on
//! cold caches, and tracing's formatter was the largest piece of a call's CPU: about 80 µs of
//! an isolated call's ~200, where formatting the same line by hand costs about 10 (issue 18,
//! BENCHMARKS.md). So when tracing writes plain text to the log buffer (`logbuf::plain`: no
//! colours, not JSON, which is how a service runs), the line is formatted here, in
//! tracing-subscriber's own format (the test below holds the two to the same bytes), and
//! appended to the buffer; otherwise it goes through tracing like every other line.

use std::fmt::Write as _;

use tracing::info;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};

use super::Outcome;
use crate::escape::Escaped;
use crate::logbuf;

/// The target of the line: the session module's, as before it had a module of its own.
const TARGET: &str = "ipcountry::session";

/// The fields of the line; every text the caller wrote is escaped when written.
pub(super) struct CallLine<'a> {
    pub(super) uniqueid: &'a str,
    pub(super) callerid: &'a str,
    pub(super) from_host: &'a str,
    pub(super) source: &'a str,
    pub(super) verdict: &'static str,
    pub(super) monitor: bool,
    pub(super) reason: &'a str,
    pub(super) country: &'a str,
    pub(super) outcome: &'a Outcome,
    pub(super) micros: u64,
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
            from_host = %Escaped(self.from_host),
            source = %Escaped(self.source),
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
    fn format_plain(&self, out: &mut String) {
        let _ = SystemTime.format_time(&mut Writer::new(out));
        let _ = writeln!(
            out,
            "  INFO {TARGET}: screened call uniqueid={} callerid={} from_host={} source={} \
             verdict={:?} monitor={:?} reason={} country={:?} outcome={:?} micros={:?}",
            Escaped(self.uniqueid),
            Escaped(self.callerid),
            Escaped(self.from_host),
            Escaped(self.source),
            self.verdict,
            self.monitor,
            Escaped(self.reason),
            self.country,
            self.outcome,
            self.micros,
        );
    }
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
                from_host: if k == 1 { hostile } else { "203.0.113.7" },
                source: "198.51.100.9",
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
