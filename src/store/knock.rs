//! The knock page's part of the store (issue 16): its users (the `knock_user` table,
//! migration 0005) and the knock itself, which adds the requester's address as an expiring
//! `custom` permit entry noted `knock:<user>`, one transaction that keeps to the per-user cap.
//! The SQL is in `sql/knock.rs`, compiled per backend; the rule rows are written through the
//! same helpers as `permit add` (`sql/rules.rs`).

use serde::Serialize;

use crate::ranges::{IpRange, Rule};
use crate::store::{on_pool, Store, StoreError};

/// The note of a knock's permit entries starts with this, then the user's name.
pub const NOTE_PREFIX: &str = "knock:";

/// One user of the knock page, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KnockUser {
    /// The name the token starts with (`alice`).
    pub name: String,
    /// The argon2 PHC string of the token's secret (never shown).
    #[serde(skip)]
    pub token_hash: String,
    /// How long a knock's permit entry lasts, in seconds.
    pub ttl_seconds: i64,
    /// When the user was added, Unix seconds.
    pub created_at: i64,
    /// When the token was last set (added or rotated), Unix seconds.
    pub rotated_at: i64,
}

impl KnockUser {
    /// The note of this user's permit entries (`knock:alice`).
    pub fn note(&self) -> String {
        note_of(&self.name)
    }
}

/// The note of `name`'s permit entries (`knock:alice`).
pub fn note_of(name: &str) -> String {
    format!("{NOTE_PREFIX}{name}")
}

/// What a knock asks for.
#[derive(Debug, Clone, Copy)]
pub struct KnockRequest<'a> {
    /// The user, as verified.
    pub user: &'a str,
    /// The token hash the verification used: the knock is refused if it changed since
    /// (rotated or removed in between).
    pub token_hash: &'a str,
    /// The requester's address, as a one-address range.
    pub range: IpRange,
    /// When the entry stops matching, Unix seconds.
    pub expires_at: i64,
    /// Active entries a user may have; at the cap, the oldest is replaced.
    pub cap: usize,
    /// Now, Unix seconds.
    pub now: i64,
}

/// What a knock did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Knocked {
    /// A permit entry was added (its generation), replacing these (the user's oldest at the
    /// cap, and an earlier knock's or an expired entry for the same address).
    Add {
        /// The new entry.
        rule: Rule,
        /// Entries deleted to make room.
        replaced: Vec<Rule>,
        /// The generation the change committed as.
        generation: i64,
    },
    /// A live entry the admin made already permits exactly this address; nothing changed.
    Keep(Rule),
    /// The user no longer exists, or the token changed since it was verified; nothing changed.
    Gone,
}

impl Store {
    /// Adds a knock user; an existing name is [`StoreError::DuplicateUser`].
    pub async fn add_knock_user(&self, user: &KnockUser) -> Result<(), StoreError> {
        on_pool!(self, knock::add_user(user))
    }

    /// Every knock user, ordered by name.
    pub async fn knock_users(&self) -> Result<Vec<KnockUser>, StoreError> {
        on_pool!(self, knock::users())
    }

    /// The knock user with exactly this name, if any.
    pub async fn knock_user(&self, name: &str) -> Result<Option<KnockUser>, StoreError> {
        on_pool!(self, knock::user(name))
    }

    /// Replaces a user's token hash (`knock-user rotate`): the old token stops working at once.
    pub async fn rotate_knock_token(
        &self,
        name: &str,
        token_hash: &str,
        now: i64,
    ) -> Result<KnockUser, StoreError> {
        on_pool!(self, knock::set_token(name, token_hash, now))
    }

    /// Removes a knock user and the permit entries their knocks added, in one transaction.
    pub async fn remove_knock_user(
        &self,
        name: &str,
    ) -> Result<(KnockUser, Vec<Rule>), StoreError> {
        on_pool!(self, knock::remove_user(name))
    }

    /// The knock: adds `request.range` as an expiring permit entry noted `knock:<user>`,
    /// replacing the user's oldest active entry at the cap, in one transaction that bumps the
    /// generation. Never touches the deny table.
    pub async fn knock(&self, request: KnockRequest<'_>) -> Result<Knocked, StoreError> {
        on_pool!(self, knock::knock(request))
    }
}

#[cfg(test)]
#[path = "knock_tests.rs"]
mod tests;
