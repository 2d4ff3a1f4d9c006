//! Change announcements (PostgreSQL `LISTEN`/`NOTIFY`): every write transaction's generation
//! bump also sends a `NOTIFY` (`postgres.rs`), which PostgreSQL delivers to every listening
//! server when the transaction commits, and never for one rolled back. A server waits on
//! [`Changes::next`] beside its poll timer and checks the generation at once; polling stays,
//! for announcements missed while the listener was disconnected.

use sqlx::postgres::{PgListener, PgPool};

use super::{postgres, query_err, StoreError};

/// A subscription to the database's change announcements (see [`Store::listen`](super::Store::listen)).
pub struct Changes {
    listener: PgListener,
}

/// What [`Changes::next`] saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// A change was committed.
    Announced,
    /// The listening connection was lost; the next call reconnects. Announcements made in
    /// between are lost: check the generation.
    Lost,
}

impl Changes {
    /// Subscribes on a connection of its own, taken from `pool`'s options.
    pub(super) async fn connect(pool: &PgPool) -> Result<Changes, StoreError> {
        const CONTEXT: &str = "listening for changes";
        let mut listener = PgListener::connect_with(pool)
            .await
            .map_err(query_err(CONTEXT))?;
        // The listener outlives a closed pool only as long as it is used; it must not end
        // because the store's pool was closed by a CLI-style `close()`.
        listener.ignore_pool_close_event(true);
        listener
            .listen(postgres::CHANNEL)
            .await
            .map_err(query_err(CONTEXT))?;
        Ok(Changes { listener })
    }

    /// Waits for the next announcement. An error means the database cannot be reached now
    /// (the next call tries to reconnect): wait before calling again.
    pub async fn next(&mut self) -> Result<Change, StoreError> {
        match self.listener.try_recv().await {
            Ok(Some(_)) => Ok(Change::Announced),
            Ok(None) => Ok(Change::Lost),
            Err(source) => Err(StoreError::Query {
                context: "waiting for change announcements",
                source,
            }),
        }
    }
}

impl std::fmt::Debug for Changes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Changes(PostgreSQL LISTEN)")
    }
}
