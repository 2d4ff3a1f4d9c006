//! What `watch` remembers of the peers it has seen (the `peer_seen` table, migration 0004),
//! and the catalog country of one address, for `audit` and `watch`. The SQL is in
//! `sql/peers.rs`, compiled per backend.

use std::net::IpAddr;

use serde::Serialize;

use crate::store::{on_pool, Store, StoreError};

/// One peer at one address, as last seen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SeenPeer {
    /// `pjsip-contact`, `pjsip-registration`, `sip` or `iax`.
    pub kind: String,
    /// The endpoint or peer name.
    pub name: String,
    /// The screened address, in its standard text form.
    pub ip: String,
    /// Its catalog country, `""` when unknown.
    pub country: String,
    /// `permitted`, `denied` or `stranger`.
    pub verdict: String,
    /// When first seen at this address, Unix milliseconds.
    pub first_seen: i64,
    /// When last seen at this address, Unix milliseconds.
    pub last_seen: i64,
}

impl Store {
    /// Every peer address remembered, ordered by kind, name, then last seen (newest last).
    pub async fn seen_peers(&self) -> Result<Vec<SeenPeer>, StoreError> {
        on_pool!(self, peers::seen_peers())
    }

    /// Writes these rows (replacing those with the same kind, name and ip) and forgets the
    /// ones last seen before `forget_before`, in one transaction. The generation is not
    /// bumped.
    pub async fn record_peers(
        &self,
        rows: &[SeenPeer],
        forget_before: i64,
    ) -> Result<(), StoreError> {
        on_pool!(self, peers::record_peers(rows, forget_before))
    }

    /// The country the catalog gives `ip` (whether or not it is permitted), if any.
    pub async fn catalog_country(&self, ip: IpAddr) -> Result<Option<String>, StoreError> {
        on_pool!(self, peers::catalog_country(ip.to_canonical()))
    }
}
