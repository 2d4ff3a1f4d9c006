//! The log writer: lines are appended to a buffer in memory, and a thread of its own writes the
//! buffer to stderr every [`PERIOD`] (or as soon as it holds [`SOON`] bytes). After [`IDLE_AFTER`]
//! with nothing to write it sleeps until the next line, so an idle server has no timer ticking
//! for its log (the first line after a quiet second wakes it, once).
//!
//! A call never waits on stderr (a slow terminal, a full pipe, journald under pressure): it
//! only copies its line under a short lock. And it never wakes another thread either, which is
//! what `tracing-appender`'s non-blocking writer does for every line (a futex wake-up per call,
//! measured at several µs of CPU per call on a VM); here the writer thread wakes on its period,
//! or once per [`SOON`] bytes. When stderr does not keep up and the buffer reaches [`MAX`],
//! new lines are dropped and counted, and the count is written when there is room again.

use std::io::Write;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// How often the buffer is written out: a wake-up and a write per period while lines come,
/// however few. At a PBX's few calls a second that wake-up is most of what a line costs
/// (about 100 µs of CPU each on a VM: 20 µs a call at 20 calls/s with 250 ms, 5 µs with 1 s,
/// BENCHMARKS.md), so a line reaches stderr up to a second after its call; its timestamp is
/// the call's.
pub const PERIOD: Duration = Duration::from_secs(1);
/// How long the buffer must stay empty before the writer sleeps until the next line.
const IDLE_AFTER: Duration = Duration::from_secs(1);
/// A buffer this full is written out at once.
const SOON: usize = 64 * 1024;
/// A buffer this full takes no more lines.
const MAX: usize = 4 * 1024 * 1024;

#[derive(Default)]
struct State {
    buf: Vec<u8>,
    dropped: u64,
    closed: bool,
    /// The writer sleeps until a line arrives (the next line wakes it).
    idle: bool,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    wake: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A writer that panicked mid-append leaves a buffer that is still a buffer.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Where tracing writes its lines (a `MakeWriter`); cheap to clone.
#[derive(Clone)]
pub struct LogBuf(Arc<Shared>);

/// Writes what is left when dropped, and stops the writer thread.
pub struct Guard {
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Starts the writer thread. If it cannot be started, lines are written to stderr directly.
pub fn start() -> (LogBuf, Option<Guard>) {
    start_into(Box::new(std::io::stderr()))
}

/// [`start`], writing to `sink`.
fn start_into(mut sink: Box<dyn Write + Send>) -> (LogBuf, Option<Guard>) {
    let shared = Arc::new(Shared::default());
    let for_thread = shared.clone();
    let thread = std::thread::Builder::new()
        .name("ipcountry-log".into())
        .spawn(move || write_out(&for_thread, &mut *sink))
        .ok();
    let guard = thread.map(|t| Guard {
        shared: shared.clone(),
        thread: Some(t),
    });
    if guard.is_none() {
        shared.lock().closed = true;
    }
    (LogBuf(shared), guard)
}

fn write_out(shared: &Shared, sink: &mut dyn Write) {
    let mut out = Vec::new();
    let idle_periods = (IDLE_AFTER.as_millis() / PERIOD.as_millis()).max(1);
    let mut empty_periods = 0;
    loop {
        let closed = {
            let mut state = shared.lock();
            if !state.closed && state.buf.len() < SOON {
                if state.buf.is_empty() && empty_periods >= idle_periods {
                    // Quiet for a while: no more ticks until a line (or the end) comes.
                    state.idle = true;
                    while state.idle && !state.closed {
                        state = shared.wake.wait(state).unwrap_or_else(|p| p.into_inner());
                    }
                    empty_periods = 0;
                    // Let the lines of this burst gather for a period, as usual.
                    if !state.closed {
                        state = shared
                            .wake
                            .wait_timeout(state, PERIOD)
                            .map(|(s, _)| s)
                            .unwrap_or_else(|p| p.into_inner().0);
                    }
                } else {
                    state = shared
                        .wake
                        .wait_timeout(state, PERIOD)
                        .map(|(s, _)| s)
                        .unwrap_or_else(|p| p.into_inner().0);
                }
            }
            std::mem::swap(&mut out, &mut state.buf);
            if state.dropped > 0 && out.len() < MAX {
                let n = std::mem::take(&mut state.dropped);
                let _ = writeln!(out, "ipcountry: {n} log lines dropped (stderr too slow)");
            }
            state.closed
        };
        if out.is_empty() {
            empty_periods += 1;
        } else {
            empty_periods = 0;
            let _ = sink.write_all(&out);
            let _ = sink.flush();
            out.clear();
        }
        if closed && shared.lock().buf.is_empty() {
            return;
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.wake.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl LogBuf {
    /// Appends `line` (whole lines only), or counts it dropped when the buffer is full; with no
    /// writer thread, writes it to stderr.
    pub fn append(&self, line: &[u8]) {
        let mut state = self.0.lock();
        if state.closed {
            drop(state);
            let _ = std::io::stderr().write_all(line);
            return;
        }
        if state.buf.len() + line.len() > MAX {
            state.dropped += 1;
            return;
        }
        state.buf.extend_from_slice(line);
        let wake = std::mem::take(&mut state.idle) || state.buf.len() >= SOON;
        // Woken after the lock is released: woken under it, the writer would wake only to
        // wait for the lock (two more futex calls and a context switch, seen in `strace`).
        drop(state);
        if wake {
            self.0.wake.notify_one();
        }
    }
}

impl Write for LogBuf {
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        self.append(line);
        Ok(line.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The buffer tracing writes to, when its lines are plain text (no colours, not JSON): then a
/// line of a fixed shape may be formatted by hand and appended here directly, in the same
/// format (the per-call line, `session_line.rs`). Set once, by the binary.
static PLAIN: std::sync::OnceLock<LogBuf> = std::sync::OnceLock::new();

impl LogBuf {
    /// Says that tracing writes plain text lines to this buffer (see [`plain`]).
    pub fn set_plain(&self) {
        let _ = PLAIN.set(self.clone());
    }
}

/// The buffer tracing writes plain text lines to, if the binary said so ([`LogBuf::set_plain`]).
pub fn plain() -> Option<&'static LogBuf> {
    PLAIN.get()
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogBuf {
    type Writer = LogBuf;

    fn make_writer(&'a self) -> LogBuf {
        self.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_kept_in_order_and_dropped_past_the_cap() {
        // No writer thread: inspect the buffer.
        let shared = Arc::new(Shared::default());
        let mut w = LogBuf(shared.clone());
        w.write_all(b"one\n").expect("write");
        w.write_all(b"two\n").expect("write");
        assert_eq!(shared.lock().buf, b"one\ntwo\n");
        let big = vec![b'x'; MAX];
        w.write_all(&big).expect("a dropped line is not an error");
        assert_eq!(shared.lock().dropped, 1);
        assert_eq!(shared.lock().buf.len(), 8);
    }

    /// A sink the test can read.
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl Write for Sink {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
        let end = std::time::Instant::now() + Duration::from_secs(5);
        while !done() {
            assert!(std::time::Instant::now() < end, "{what}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn a_quiet_writer_sleeps_and_the_next_line_wakes_it() {
        let sink = Sink::default();
        let (mut w, guard) = start_into(Box::new(sink.clone()));
        w.write_all(b"first\n").expect("write");
        wait_for("the first line written", || {
            sink.0.lock().unwrap().ends_with(b"first\n")
        });
        // Quiet for IDLE_AFTER: the writer stops ticking.
        wait_for("the writer idles", || w.0.lock().idle);
        w.write_all(b"second\n").expect("write");
        assert!(!w.0.lock().idle, "the line woke it");
        wait_for("the line after the quiet written", || {
            sink.0.lock().unwrap().as_slice() == b"first\nsecond\n"
        });
        drop(guard);
    }

    #[test]
    fn the_guard_writes_what_is_left() {
        let (mut w, guard) = start();
        w.write_all(b"").expect("write");
        drop(guard);
        // Closed: later lines go straight to stderr, nothing is buffered.
        w.write_all(b"").expect("write");
        assert!(w.0.lock().closed);
        assert!(w.0.lock().buf.is_empty());
    }
}
