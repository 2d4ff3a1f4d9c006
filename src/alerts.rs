//! Alerts: a command run for callers who were not let through (`--on-stranger CMD`).
//!
//! A session hands each denied or stranger call to [`Alerts::offer`], which never waits: the
//! event goes into a bounded queue, and when the queue is full it is dropped and counted. One
//! task takes events from the queue, leaves out the ones whose source address (for `watch`:
//! peer and address) already had an alert within the dedup window, keeps to a rate (a token bucket), and runs the command
//! through `/bin/sh -c` with the event as one JSON object on its stdin, one command at a time,
//! each under a deadline. What was sent, left out, limited and dropped is counted for the
//! metrics.

use std::collections::HashMap;
use std::net::IpAddr;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

/// Events waiting for the command, at most, by default.
pub const QUEUE: usize = 1024;
/// Longest a command may run; it is killed after.
const DEADLINE: Duration = Duration::from_secs(30);

/// One call that was not let through, as the command reads it.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// When, in RFC 3339 (UTC).
    pub time: String,
    /// Asterisk's channel id.
    pub uniqueid: String,
    /// The caller-ID number (written by the caller).
    pub callerid: String,
    /// The From header as received (written by the caller).
    pub from: String,
    /// The signalling source address, or the text that was not one.
    pub source: String,
    /// `denied` or `stranger`.
    pub verdict: &'static str,
    /// Why (`no permit range for 198.51.100.9`).
    pub reason: String,
    /// The matched rule, if any (`deny #1 203.0.113.66/32`).
    pub rule: Option<String>,
    /// The matched rule's country, if any.
    pub country: Option<String>,
    /// The source address, for deduplication (not in the JSON).
    #[serde(skip)]
    pub source_ip: Option<IpAddr>,
    /// The registered peer the alert is about (`watch`), deduplicated per peer and address
    /// rather than per address alone (not in the JSON; `callerid` names it); `None` for calls.
    #[serde(skip)]
    pub peer: Option<String>,
}

/// How the alerts are limited.
#[derive(Debug, Clone)]
pub struct AlertSettings {
    /// The shell command (`/bin/sh -c`).
    pub command: String,
    /// One alert per source address within this window.
    pub dedup: Duration,
    /// At most this many commands a minute.
    pub per_minute: u32,
    /// Events waiting for the command, at most ([`QUEUE`]).
    pub queue: usize,
}

/// What happened to the events (for the metrics).
#[derive(Debug, Default)]
pub struct AlertStats {
    /// Commands run.
    pub sent: AtomicU64,
    /// Left out: the source already had an alert within the window.
    pub deduplicated: AtomicU64,
    /// Left out: over the rate.
    pub limited: AtomicU64,
    /// Dropped: the queue was full.
    pub dropped: AtomicU64,
    /// Commands that failed or ran past the deadline.
    pub failed: AtomicU64,
}

/// The sending side, held by the sessions.
#[derive(Debug, Clone)]
pub struct Alerts {
    queue: mpsc::Sender<Event>,
    stats: Arc<AlertStats>,
}

impl Alerts {
    /// Starts the task that runs the command; it ends at `shutdown`.
    pub fn start(settings: AlertSettings, shutdown: CancellationToken) -> Alerts {
        Alerts::start_joinable(settings, shutdown).0
    }

    /// [`Alerts::start`], also giving the task: it ends once every `Alerts` clone is dropped
    /// and the queue is empty, so a one-shot caller can drop its senders and await it.
    pub fn start_joinable(
        settings: AlertSettings,
        shutdown: CancellationToken,
    ) -> (Alerts, tokio::task::JoinHandle<()>) {
        let (queue, events) = mpsc::channel(settings.queue.max(1));
        let stats = Arc::new(AlertStats::default());
        let task = tokio::spawn(run(settings, events, stats.clone(), shutdown));
        (Alerts { queue, stats }, task)
    }

    /// Queues `event` without waiting; a full queue drops it (counted).
    pub fn offer(&self, event: Event) {
        if self.queue.try_send(event).is_err() {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// What happened to the events so far.
    pub fn stats(&self) -> &AlertStats {
        &self.stats
    }
}

async fn run(
    settings: AlertSettings,
    mut events: mpsc::Receiver<Event>,
    stats: Arc<AlertStats>,
    shutdown: CancellationToken,
) {
    let mut last_alert: HashMap<(Option<String>, IpAddr), Instant> = HashMap::new();
    let mut bucket = Bucket::new(settings.per_minute);
    loop {
        let event = tokio::select! {
            _ = shutdown.cancelled() => return,
            e = events.recv() => match e {
                Some(e) => e,
                None => return,
            },
        };
        let now = Instant::now();
        if let Some(ip) = event.source_ip {
            let key = (event.peer.clone(), ip);
            if last_alert
                .get(&key)
                .is_some_and(|at| now.duration_since(*at) < settings.dedup)
            {
                stats.deduplicated.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            if last_alert.len() >= 4 * settings.queue.max(QUEUE) {
                last_alert.retain(|_, at| now.duration_since(*at) < settings.dedup);
            }
            last_alert.insert(key, now);
        }
        if !bucket.take(now) {
            stats.limited.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        match run_command(&settings.command, &event).await {
            Ok(()) => stats.sent.fetch_add(1, Ordering::Relaxed),
            Err(error) => {
                warn!(%error, "the --on-stranger command failed");
                stats.failed.fetch_add(1, Ordering::Relaxed)
            }
        };
    }
}

async fn run_command(command: &str, event: &Event) -> std::io::Result<()> {
    let json = serde_json::to_vec(event).map_err(std::io::Error::other)?;
    let mut child = tokio::process::Command::new("/bin/sh")
        .arg("-c")
        .arg(command)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    if let Some(mut stdin) = child.stdin.take() {
        // A command that does not read its stdin is not an error.
        let _ = stdin.write_all(&json).await;
        let _ = stdin.write_all(b"\n").await;
    }
    match tokio::time::timeout(DEADLINE, child.wait()).await {
        Ok(Ok(status)) if status.success() => Ok(()),
        Ok(Ok(status)) => Err(std::io::Error::other(format!("exited with {status}"))),
        Ok(Err(e)) => Err(e),
        Err(_) => {
            debug!("killing the --on-stranger command after {DEADLINE:?}");
            Err(std::io::Error::other("ran past its deadline"))
        }
    }
}

/// A token bucket of `per_minute` tokens, refilled continuously.
struct Bucket {
    tokens: f64,
    capacity: f64,
    per_second: f64,
    at: Instant,
}

impl Bucket {
    fn new(per_minute: u32) -> Bucket {
        let capacity = f64::from(per_minute.max(1));
        Bucket {
            tokens: capacity,
            capacity,
            per_second: capacity / 60.0,
            at: Instant::now(),
        }
    }

    fn take(&mut self, now: Instant) -> bool {
        let refill = now.duration_since(self.at).as_secs_f64() * self.per_second;
        self.tokens = (self.tokens + refill).min(self.capacity);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bucket_keeps_to_the_rate() {
        let t0 = Instant::now();
        let mut b = Bucket::new(2);
        assert!(b.take(t0) && b.take(t0));
        assert!(!b.take(t0), "the third in the same minute is limited");
        assert!(
            b.take(t0 + Duration::from_secs(30)),
            "one token back after 30 s"
        );
        assert!(!b.take(t0 + Duration::from_secs(30)));
    }
}
