//! Intervals that wake an idle server once per period, for the store poll and the heartbeat
//! (issue 18: an idle server's CPU is its wake-ups).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tracing::warn;

/// A clock: a thread of its own that sleeps the interval, then wakes the task awaiting
/// [`Clock::tick`] (the watcher's poll, the heartbeat).
///
/// Not a tokio interval: the runtime's timer wheel keeps a timer seconds away in a coarse level
/// and moves it down a level at each slot boundary, waking the runtime's thread every time:
/// three wake-ups for each 5 s poll of an idle server, and on a VM each wake from idle costs
/// tens of µs of CPU (issue 18, BENCHMARKS.md). A sleeping thread wakes once. Its first tick
/// is at once, like an interval's; the thread ends at its first tick after the clock is dropped.
pub(crate) enum Clock {
    Thread(Arc<Notify>),
    /// When no thread could be started.
    Interval(tokio::time::Interval),
}

impl Clock {
    /// Ticks every `every`, at once first, on a thread named `name` (at most 15 bytes).
    pub(crate) fn every(name: &str, every: Duration) -> Clock {
        let tick = Arc::new(Notify::new());
        tick.notify_one();
        let weak = Arc::downgrade(&tick);
        let spawned = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || loop {
                std::thread::sleep(every);
                match weak.upgrade() {
                    Some(tick) => tick.notify_one(),
                    None => return,
                }
            });
        match spawned {
            Ok(_) => Clock::Thread(tick),
            Err(error) => {
                warn!(%error, thread = name, "cannot start a clock's thread; using a timer");
                let mut interval = tokio::time::interval(every);
                interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                Clock::Interval(interval)
            }
        }
    }

    /// The next tick (at most one is kept while the watcher is busy).
    pub(crate) async fn tick(&mut self) {
        match self {
            Clock::Thread(tick) => tick.notified().await,
            Clock::Interval(interval) => {
                interval.tick().await;
            }
        }
    }
}
