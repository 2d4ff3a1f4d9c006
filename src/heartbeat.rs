//! The server's row in its database: registered at start, rewritten at every beat, deleted on a
//! clean exit (the `server` table, see `store::servers`), so that `ipcountry status` lists who
//! screens with a database and a change made where no server looks says so.
//!
//! Beside the data flow: the task reads the [`SharedPolicy`] (the snapshot's generation and
//! when it was loaded) and writes the store; calls never wait for it. A database that cannot
//! be reached just means a skipped beat (logged at `debug`: `reload` already logs the outage
//! once); a server started from its snapshot cache ([`Source::Pending`]) registers once the
//! database first answers, through a small pool of its own. Nothing here can stop the server.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::clock::Clock;
use crate::policy::SharedPolicy;
use crate::reload::Source;
use crate::store::{now_unix, PoolSettings, ServerRow, Store, StoreError, PRUNE_AFTER};

/// How long one beat (or the last deregistration) may take before it is given up.
const BEAT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long the deregistration at a clean exit may take.
const DEREGISTER_TIMEOUT: Duration = Duration::from_secs(2);

/// The heartbeat task's settings.
pub struct Heartbeat {
    /// The server's store, or how to open it once the database answers.
    pub store: Source,
    /// The published snapshot, whose generation and load time each beat writes.
    pub shared: Arc<SharedPolicy>,
    /// The longest time between beats (at most [`MAX_HEARTBEAT`](crate::store::MAX_HEARTBEAT),
    /// so that readers can tell a live server by a fixed limit).
    pub interval: Duration,
    /// How often to retry while no beat has been written yet (the database is down, or not
    /// there yet; the poll interval). Once registered, the task wakes only every `interval`
    /// and when a new snapshot is published (a beat is then written at once, so `status`
    /// shows a server current soon after it reloaded): no timer of its own ticks between
    /// (issue 18: an idle server's wake-ups are the store's poll).
    pub check: Duration,
    /// Who this server is: the row written, but for its generation, load time and heartbeat.
    pub identity: ServerRow,
    /// Stops the task, which then deletes its row.
    pub shutdown: CancellationToken,
}

/// The row of this process: id `host/pid/started_at`, the host name, the pid, `listen`, this
/// version, and now as its start (generation, load time and heartbeat are set at each beat).
pub fn identity(listen: &[std::net::SocketAddr]) -> ServerRow {
    let host = host_name();
    let pid = i64::from(std::process::id());
    let started_at = now_unix();
    ServerRow {
        id: format!("{host}/{pid}/{started_at}"),
        host,
        pid,
        listen: listen.iter().map(ToString::to_string).collect(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        started_at,
        generation: 0,
        loaded_at: 0,
        heartbeat: 0,
    }
}

/// The kernel's host name (`/proc/sys/kernel/hostname`), else `/etc/hostname`, else
/// `localhost`.
fn host_name() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .filter_map(|path| std::fs::read_to_string(path).ok())
        .map(|name| name.trim().to_owned())
        .find(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

impl Heartbeat {
    /// Beats every `interval` (the first at once) until shutdown, then deletes the row.
    pub async fn run(self) {
        let Heartbeat {
            store: source,
            shared,
            interval,
            check,
            identity,
            shutdown,
        } = self;
        let (mut store, pending) = match source {
            Source::Open(store) => (Some(store), None),
            Source::Pending { url, settings } => (None, Some((url, settings))),
        };
        let mut log = Logged::default();
        // A thread's clock, not a tokio interval: the timer wheel would wake the runtime a few
        // times for each beat (`clock`).
        let mut tick = Clock::every("ipcountry-beat", interval);
        let mut retry = tokio::time::interval(check.min(interval));
        retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut replaced = shared.subscribe();
        // The generation of the last beat written.
        let mut written: Option<i64> = None;
        loop {
            let due = tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tick.tick() => true,
                _ = retry.tick(), if written.is_none() => true,
                // Err: the snapshot's sender is gone; the interval still beats.
                Ok(()) = replaced.changed() => false,
            };
            let generation = shared.load().generation().unwrap_or(0);
            if !due && written == Some(generation) {
                continue;
            }
            let beat = async {
                if store.is_none() {
                    if let Some((url, settings)) = &pending {
                        // One connection is all a beat needs.
                        let settings = PoolSettings {
                            max_connections: 1,
                            ..*settings
                        };
                        match Store::open_with(url, &settings).await {
                            Ok(opened) => store = Some(opened),
                            Err(e) => return log.failed(&e),
                        }
                    }
                }
                let Some(store) = &store else { return };
                let row = ServerRow {
                    generation,
                    loaded_at: shared.loaded_at(),
                    heartbeat: now_unix(),
                    ..identity.clone()
                };
                match store.register_server(&row).await {
                    Ok(()) => {
                        written = Some(generation);
                        log.registered(store, &row).await;
                    }
                    Err(e) => log.failed(&e),
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => break,
                done = tokio::time::timeout(BEAT_TIMEOUT, beat) => {
                    if done.is_err() {
                        debug!("heartbeat timed out");
                    }
                }
            }
        }
        let Some(store) = store else { return };
        match tokio::time::timeout(DEREGISTER_TIMEOUT, store.deregister_server(&identity.id)).await
        {
            Ok(Ok(())) => debug!(id = %identity.id, "deregistered from the database"),
            Ok(Err(error)) => debug!(%error, "cannot deregister from the database"),
            Err(_) => debug!("deregistering from the database timed out"),
        }
        if pending.is_some() {
            store.close().await;
        }
    }
}

/// What the task has logged: the first registration once at `info`, a failure other than an
/// unreachable database once per distinct error at `warn`, everything else at `debug`.
#[derive(Default)]
struct Logged {
    registered: bool,
    failed: Option<String>,
}

impl Logged {
    /// A beat was written; the first one also prunes rows long dead.
    async fn registered(&mut self, store: &Store, row: &ServerRow) {
        self.failed = None;
        if self.registered {
            debug!(generation = row.generation, "heartbeat written");
            return;
        }
        self.registered = true;
        info!(id = %row.id, "registered in the database");
        match store.prune_servers(PRUNE_AFTER).await {
            Ok(0) => {}
            Ok(n) => debug!(rows = n, "pruned servers gone for more than a day"),
            Err(error) => debug!(%error, "cannot prune old server rows"),
        }
    }

    fn failed(&mut self, e: &StoreError) {
        let text = e.to_string();
        if e.is_unreachable() || self.failed.as_deref() == Some(text.as_str()) {
            debug!(error = %e, "heartbeat skipped");
            return;
        }
        warn!(error = %e, "cannot write this server's row in the database");
        self.failed = Some(text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{Builtins, Policy};

    /// Polls `store`'s server rows until `done` says yes, for up to 10 s.
    async fn until(store: &Store, done: impl Fn(&[ServerRow]) -> bool) -> Vec<ServerRow> {
        let end = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let rows = store.servers().await.unwrap();
            if done(&rows) {
                return rows;
            }
            assert!(tokio::time::Instant::now() < end, "gave up at {rows:#?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A server whose database could not be opened at start registers once it can be, writes
    /// its snapshot's generation, and deletes its row when shut down. (SQLite: a file in a
    /// directory that appears later.)
    #[tokio::test]
    async fn registers_once_the_database_opens_and_deregisters_at_shutdown() {
        let dir = tempfile::tempdir().unwrap();
        let later = dir.path().join("later");
        let url = format!("sqlite://{}", later.join("ipcountry.db").display());
        let policy = Policy::compile(Some(3), Vec::new(), Vec::new(), Builtins::Off);
        let shutdown = CancellationToken::new();
        let listen: std::net::SocketAddr = ([127, 0, 0, 1], 4573).into();
        let identity = identity(&[listen, listen]);
        let task = tokio::spawn(
            Heartbeat {
                store: Source::Pending {
                    url: url.clone(),
                    settings: PoolSettings::default(),
                },
                shared: Arc::new(SharedPolicy::new(policy)),
                interval: Duration::from_millis(50),
                check: Duration::from_millis(50),
                identity: identity.clone(),
                shutdown: shutdown.clone(),
            }
            .run(),
        );
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert!(!later.exists(), "nothing can be written yet");
        std::fs::create_dir(&later).unwrap();
        // The heartbeat may be creating the same file at this moment: SQLite's migrations take
        // no lock across connections, so the second opener can find the schema half made.
        let mut tries = 0;
        let store = loop {
            match Store::open(&url).await {
                Ok(store) => break store,
                Err(e) if tries < 50 => {
                    tries += 1;
                    eprintln!("open while the heartbeat creates the file: {e}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("cannot open {url}: {e}"),
            }
        };
        let rows = until(&store, |rows| !rows.is_empty()).await;
        let [row] = rows.as_slice() else {
            panic!("one row: {rows:#?}")
        };
        assert_eq!(row.id, identity.id);
        assert_eq!(row.pid, i64::from(std::process::id()));
        assert_eq!(row.listen, ["127.0.0.1:4573", "127.0.0.1:4573"]);
        assert_eq!(row.generation, 3);
        assert!(row.is_live(now_unix()));
        assert_eq!(store.generation().await.unwrap(), 0, "no bump");

        shutdown.cancel();
        task.await.unwrap();
        assert!(store.servers().await.unwrap().is_empty(), "deregistered");
        store.close().await;
    }

    #[test]
    fn the_id_is_host_pid_and_start() {
        let row = identity(&[]);
        assert_eq!(
            row.id,
            format!("{}/{}/{}", row.host, row.pid, row.started_at)
        );
        assert!(!row.host.is_empty() && !row.host.contains('\n'));
        assert_eq!(row.version, env!("CARGO_PKG_VERSION"));
    }
}
