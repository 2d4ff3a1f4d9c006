//! The open-files limit a server needs, raised at start-up instead of failing calls later.
//!
//! Each call holds a socket (and, while its From host is looked up, a DNS socket), so
//! `--max-sessions 1024` needs more open files than the soft `RLIMIT_NOFILE` most shells and
//! many service managers start with (1024). [`ensure`] raises the soft limit to what the
//! sessions cap needs, up to the hard limit, and refuses with a clear error when even the hard
//! limit is too low: a server that cannot open a socket under load fails calls with `EMFILE`.
//! The `rlimit` crate makes the two system calls (without `unsafe` here).

use rlimit::Resource;

/// Open files a server needs: two per session (its socket and a DNS socket), the listening
/// sockets, and a reserve for the database, the resolver's configuration, the runtime's
/// epoll and event descriptors, and stdio.
pub fn needed(max_sessions: usize, listeners: usize) -> u64 {
    const RESERVE: u64 = 64;
    let per_session = 2u64.saturating_mul(max_sessions as u64);
    per_session
        .saturating_add(listeners as u64)
        .saturating_add(RESERVE)
}

/// What [`ensure`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Raised {
    /// The soft limit before.
    pub from: u64,
    /// The soft limit now (at least what was needed).
    pub to: u64,
}

/// The hard limit is below what the server needs, or the limit cannot be read or set.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FdLimitError {
    /// Even the hard limit is too low.
    #[error(
        "{needed} open files are needed (two per session of --max-sessions, and a few more), \
         but the hard limit is {hard}: raise it (LimitNOFILE= in the systemd unit, or \
         `ulimit -Hn` as root) or lower --max-sessions"
    )]
    HardLimit {
        /// Files needed.
        needed: u64,
        /// The hard limit.
        hard: u64,
    },
    /// `getrlimit`/`setrlimit` failed.
    #[error("cannot read or raise the open-files limit")]
    Sys(#[source] std::io::Error),
}

/// Makes sure this process may open `needed` files: raises the soft limit if it is lower.
/// Returns what changed, or `None` when the limit was already enough.
pub fn ensure(needed: u64) -> Result<Option<Raised>, FdLimitError> {
    let (soft, hard) = Resource::NOFILE.get().map_err(FdLimitError::Sys)?;
    if soft >= needed {
        return Ok(None);
    }
    if hard < needed {
        return Err(FdLimitError::HardLimit { needed, hard });
    }
    Resource::NOFILE
        .set(needed, hard)
        .map_err(FdLimitError::Sys)?;
    Ok(Some(Raised {
        from: soft,
        to: needed,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_a_server_needs() {
        assert_eq!(needed(1024, 1), 2048 + 1 + 64);
        assert_eq!(needed(usize::MAX, 1), u64::MAX);
    }

    #[test]
    fn ensure_raises_to_what_is_needed_and_no_further() {
        let (soft, hard) = Resource::NOFILE.get().expect("getrlimit");
        // Already enough: nothing changes.
        assert_eq!(ensure(soft.min(16)).expect("enough"), None);
        // More than the hard limit: refused, and nothing changes.
        if hard < u64::MAX {
            let e = ensure(hard + 1).expect_err("beyond the hard limit");
            assert!(e.to_string().contains("LimitNOFILE="), "{e}");
            assert_eq!(Resource::NOFILE.get().expect("getrlimit").0, soft);
        }
        // Up to the hard limit: raised (when there is room to raise).
        if soft < hard {
            let want = soft + 1;
            assert_eq!(
                ensure(want).expect("raised"),
                Some(Raised {
                    from: soft,
                    to: want
                })
            );
            assert_eq!(Resource::NOFILE.get().expect("getrlimit").0, want);
        }
    }
}
