//! One log line per peer per minute for connections that could not be screened.
//!
//! A scanner that probes the FastAGI port, or a dialplan that calls a misspelt script on every
//! call, would otherwise write a line per connection. [`FailureLog::admit`] lets the first
//! failure from a peer address through in each window and counts the rest; the next line
//! written for that peer says how many were left out. The table is bounded: when it is full,
//! expired windows go, and if none has expired, all of them (a flood from many addresses
//! costs a few extra lines, never memory).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The window: one line per peer per minute.
pub const WINDOW: Duration = Duration::from_secs(60);

/// Most peers remembered at once.
const MAX_PEERS: usize = 4096;

/// Failure counts per peer address.
#[derive(Debug, Default)]
pub struct FailureLog {
    peers: Mutex<HashMap<IpAddr, Window>>,
}

#[derive(Debug, Clone, Copy)]
struct Window {
    started: Instant,
    left_out: u64,
}

/// Whether to write the line for a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Write it; `left_out` failures of this peer were not written since its last line.
    Log {
        /// Failures counted but not written in the peer's last window.
        left_out: u64,
    },
    /// Count it and write nothing.
    Quiet,
}

impl FailureLog {
    /// Notes a failure from `peer` (`None`, plain AGI over stdio: always written) at `now`.
    pub fn admit(&self, peer: Option<IpAddr>, now: Instant) -> Admit {
        let Some(peer) = peer else {
            return Admit::Log { left_out: 0 };
        };
        // A poisoned lock only means another call panicked while holding it.
        let mut peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        match peers.get_mut(&peer) {
            Some(w) if now.duration_since(w.started) < WINDOW => {
                w.left_out += 1;
                Admit::Quiet
            }
            Some(w) => {
                let left_out = std::mem::take(&mut w.left_out);
                w.started = now;
                Admit::Log { left_out }
            }
            None => {
                if peers.len() >= MAX_PEERS {
                    peers.retain(|_, w| now.duration_since(w.started) < WINDOW);
                    if peers.len() >= MAX_PEERS {
                        peers.clear();
                    }
                }
                peers.insert(
                    peer,
                    Window {
                        started: now,
                        left_out: 0,
                    },
                );
                Admit::Log { left_out: 0 }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_peer_per_window_with_the_count() {
        let log = FailureLog::default();
        let a: IpAddr = "192.0.2.1".parse().expect("ip");
        let b: IpAddr = "192.0.2.2".parse().expect("ip");
        let t0 = Instant::now();
        assert_eq!(log.admit(Some(a), t0), Admit::Log { left_out: 0 });
        for s in 1..=5 {
            assert_eq!(
                log.admit(Some(a), t0 + Duration::from_secs(s)),
                Admit::Quiet
            );
        }
        // Another peer has its own window.
        assert_eq!(log.admit(Some(b), t0), Admit::Log { left_out: 0 });
        // After the window, one line that says how many were left out.
        assert_eq!(log.admit(Some(a), t0 + WINDOW), Admit::Log { left_out: 5 });
        assert_eq!(log.admit(Some(a), t0 + WINDOW), Admit::Quiet);
        // Plain AGI has no peer: always written.
        assert_eq!(log.admit(None, t0), Admit::Log { left_out: 0 });
        assert_eq!(log.admit(None, t0), Admit::Log { left_out: 0 });
    }

    #[test]
    fn a_flood_of_addresses_stays_bounded() {
        let log = FailureLog::default();
        let t0 = Instant::now();
        for i in 0..(MAX_PEERS as u32 * 2) {
            let ip = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            assert_eq!(log.admit(Some(ip), t0), Admit::Log { left_out: 0 });
        }
        assert!(log.peers.lock().expect("lock").len() <= MAX_PEERS);
    }
}
