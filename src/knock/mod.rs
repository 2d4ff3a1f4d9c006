//! The knock page ("Travelin' Man", issue 16): a user on the road opens `/knock`, types the
//! token `ipcountry knock-user add` gave them, and the address they came from becomes an
//! expiring permit entry noted `knock:<user>`.
//!
//! # Where it sits
//!
//! `http` (axum, its own listener inside `serve`) → [`Knocker::knock`] → `store` (one
//! transaction: [`Store::knock`]) → the reload request (`reload`'s `Notify`, the same path as
//! `agi://…/reload`) → the snapshot, which the answer waits for, so the entry is live when the
//! user reads "permitted". Expiry is the policy's, as for any `--for` entry: the snapshot is
//! recompiled at the second the entry expires, and `ipcountry purge` deletes it later. A knock
//! never reads or writes the deny table, and deny beats permit: from a denied address it is
//! refused, and adds nothing.
//!
//! # Abuse
//!
//! Per source address (IPv6: per /64) and per claimed user name, a rate limit (`limits`) is
//! taken before anything else. An unknown user, a malformed token and a wrong secret get the
//! same answer, after one argon2 verification each ([`token::Verifier`]); verifications run on
//! blocking threads, a few at a time, so the FastAGI calls are never held up. A user has at
//! most `cap` active entries: the oldest is replaced. Every attempt is logged, counted
//! (`ipcountry_knocks_total{outcome}`) and offered to the `--on-stranger` hook.

pub mod http;
pub mod limits;
pub mod page;
pub mod token;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::{Notify, OnceCell, Semaphore};
use tracing::{info, warn};

use crate::alerts::{Alerts, Event};
use crate::escape::Escaped;
use crate::metrics::Metrics;
use crate::policy::SharedPolicy;
use crate::ranges::{IpRange, Rule, RuleKind};
use crate::reload::Source;
use crate::store::{KnockRequest, Knocked, Store, StoreError};
use limits::{address_key, RateLimit, MAX_KEYS};
use token::{claimed_user, Token, Verifier};

/// How the knock page behaves.
#[derive(Debug, Clone)]
pub struct KnockSettings {
    /// Peers whose `X-Forwarded-For` and `X-Forwarded-Proto` are believed.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Serve plain HTTP to clients off loopback (else they get a 403 saying why).
    pub allow_http: bool,
    /// Attempts a minute from one address (IPv6: one /64).
    pub per_address: u32,
    /// Attempts a minute naming one user.
    pub per_user: u32,
    /// Active knock entries a user may have; at the cap the oldest is replaced.
    pub cap: usize,
    /// argon2 verifications at once (each holds ~19 MiB for some tens of milliseconds).
    pub verifications: usize,
    /// How long the answer waits for the new entry to be in the snapshot.
    pub settle: Duration,
}

impl Default for KnockSettings {
    fn default() -> Self {
        KnockSettings {
            trusted_proxies: Vec::new(),
            allow_http: false,
            per_address: 6,
            per_user: 6,
            cap: 4,
            verifications: 2,
            settle: Duration::from_secs(3),
        }
    }
}

/// What became of one knock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The address is permitted by this new entry, for `ttl`.
    Permit {
        /// The entry (`expires_at` set).
        rule: Rule,
        /// How long it lasts.
        ttl: Duration,
        /// Entries it replaced (the cap, or an earlier entry of the same address).
        replaced: usize,
    },
    /// An entry of the admin's already permits exactly this address; nothing changed.
    Keep(Rule),
    /// Unknown user, malformed token or wrong secret: the same answer for all three.
    Refuse,
    /// Over a rate limit (the address's or the user's).
    Limit,
    /// The token was good, but a deny rule holds the address; nothing was added.
    Deny(Rule),
    /// Too many verifications waiting.
    Busy,
    /// The store failed; nothing was added.
    Fail,
}

impl Outcome {
    /// The metrics label and log word.
    pub fn as_str(&self) -> &'static str {
        match self {
            Outcome::Permit { .. } => "permitted",
            Outcome::Keep(_) => "already_permitted",
            Outcome::Refuse => "refused",
            Outcome::Limit => "limited",
            Outcome::Deny(_) => "denied",
            Outcome::Busy => "busy",
            Outcome::Fail => "error",
        }
    }
}

/// The knock service: everything a knock needs, shared by the HTTP handlers.
pub struct Knocker {
    source: Source,
    opened: OnceCell<Store>,
    policy: Arc<SharedPolicy>,
    reload: Arc<Notify>,
    metrics: Arc<Metrics>,
    alerts: Option<Alerts>,
    verifier: Arc<Verifier>,
    by_address: RateLimit<IpAddr>,
    by_user: RateLimit<String>,
    verifying: Arc<Semaphore>,
    settings: KnockSettings,
}

/// What a [`Knocker`] is made of.
pub struct Parts {
    /// The store (or where to open it, when the server started from its snapshot cache).
    pub store: Source,
    /// The published snapshot (read for the deny check and to wait for the new entry).
    pub policy: Arc<SharedPolicy>,
    /// The reload watcher's request: a knock's entry is loaded at once, not at the next poll.
    pub reload: Arc<Notify>,
    /// The counters.
    pub metrics: Arc<Metrics>,
    /// The `--on-stranger` hook, if any.
    pub alerts: Option<Alerts>,
}

impl Knocker {
    /// Makes the service; hashes the dummy secret (one argon2 hash) on a blocking thread.
    pub async fn new(parts: Parts, settings: KnockSettings) -> Result<Knocker, token::TokenError> {
        let verifier = tokio::task::spawn_blocking(Verifier::new)
            .await
            .map_err(|e| token::TokenError::Hash(e.to_string()))??;
        Ok(Knocker {
            source: parts.store,
            opened: OnceCell::new(),
            policy: parts.policy,
            reload: parts.reload,
            metrics: parts.metrics,
            alerts: parts.alerts,
            verifier: Arc::new(verifier),
            by_address: RateLimit::new(settings.per_address, MAX_KEYS),
            by_user: RateLimit::new(settings.per_user, MAX_KEYS),
            verifying: Arc::new(Semaphore::new(settings.verifications.max(1))),
            settings,
        })
    }

    /// The settings.
    pub fn settings(&self) -> &KnockSettings {
        &self.settings
    }

    /// One knock from `client` with the `typed` token: logged, counted and alerted, whatever
    /// its outcome.
    pub async fn knock(&self, client: IpAddr, typed: &str) -> Outcome {
        let client = client.to_canonical();
        let claimed = claimed_user(typed);
        let outcome = self.attempt(client, typed).await;
        self.report(
            client,
            claimed.as_ref().map(token::UserName::as_str),
            &outcome,
        );
        outcome
    }

    async fn attempt(&self, client: IpAddr, typed: &str) -> Outcome {
        let now = Instant::now();
        if !self.by_address.take(address_key(client), now) {
            return Outcome::Limit;
        }
        let token = Token::parse(typed);
        let claimed = token
            .as_ref()
            .map(|t| t.user().clone())
            .or(claimed_user(typed));
        if let Some(user) = &claimed {
            if !self.by_user.take(user.as_str().to_owned(), now) {
                return Outcome::Limit;
            }
        }
        let store = match self.store().await {
            Ok(store) => store,
            Err(error) => {
                warn!(%error, "knock: the database cannot be opened");
                return Outcome::Fail;
            }
        };
        // Looked up for a well-formed name whether or not the token is well-formed, so a
        // malformed token costs what a wrong one does.
        let stored = match &claimed {
            Some(user) => match store.knock_user(user.as_str()).await {
                Ok(found) => found,
                Err(error) => {
                    warn!(%error, "knock: cannot read the knock users");
                    return Outcome::Fail;
                }
            },
            None => None,
        };
        let Ok(permit) = tokio::time::timeout(
            Duration::from_secs(10),
            self.verifying.clone().acquire_owned(),
        )
        .await
        else {
            return Outcome::Busy;
        };
        let verifier = self.verifier.clone();
        let secret = token.as_ref().map(|t| t.secret().to_owned());
        let hash = stored.as_ref().map(|u| u.token_hash.clone());
        let verified = tokio::task::spawn_blocking(move || {
            let ok = verifier.verify(secret.as_deref(), hash.as_deref());
            drop(permit);
            ok
        })
        .await
        .unwrap_or(false);
        let (Some(user), true) = (stored, verified) else {
            return Outcome::Refuse;
        };
        // Deny beats permit: a knock does not try to lift a deny rule.
        if let Some(rule) = self.policy.load().table().lookup(client) {
            if rule.kind == RuleKind::Deny {
                return Outcome::Deny(rule.clone());
            }
        }
        let Ok(range) = IpRange::from_addrs(client, client) else {
            return Outcome::Fail;
        };
        let now_unix = crate::store::now_unix();
        let ttl = u64::try_from(user.ttl_seconds.max(1)).unwrap_or(1);
        let request = KnockRequest {
            user: &user.name,
            token_hash: &user.token_hash,
            range,
            expires_at: crate::store::expiry_after(Duration::from_secs(ttl)).unwrap_or(i64::MAX),
            cap: self.settings.cap,
            now: now_unix,
        };
        match store.knock(request).await {
            Ok(Knocked::Add {
                rule,
                replaced,
                generation,
            }) => {
                self.settle(generation).await;
                Outcome::Permit {
                    rule,
                    ttl: Duration::from_secs(ttl),
                    replaced: replaced.len(),
                }
            }
            Ok(Knocked::Keep(rule)) => Outcome::Keep(rule),
            Ok(Knocked::Gone) => Outcome::Refuse,
            Err(error) => {
                warn!(%error, "knock: cannot add the entry");
                Outcome::Fail
            }
        }
    }

    /// Asks the watcher to reload now, and waits (bounded) until the snapshot has the change.
    async fn settle(&self, generation: i64) {
        self.reload.notify_one();
        let deadline = Instant::now() + self.settings.settle;
        while self
            .policy
            .load()
            .generation()
            .is_none_or(|g| g < generation)
        {
            if Instant::now() >= deadline {
                warn!(
                    generation,
                    "knock: the snapshot has not loaded the new entry yet"
                );
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn store(&self) -> Result<Store, StoreError> {
        match &self.source {
            Source::Open(store) => Ok(store.clone()),
            Source::Pending { url, settings } => self
                .opened
                .get_or_try_init(|| Store::open_with(url, settings))
                .await
                .cloned(),
        }
    }

    /// The log line, the counter and the alert of one attempt.
    fn report(&self, client: IpAddr, user: Option<&str>, outcome: &Outcome) {
        let word = outcome.as_str();
        self.metrics.knock(word);
        let shown = user.unwrap_or("");
        let (reason, rule) = describe(client, outcome);
        info!(%client, user = %Escaped(shown), outcome = word, reason = %reason, "knock");
        if let Some(alerts) = &self.alerts {
            alerts.offer(Event {
                time: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
                uniqueid: String::new(),
                callerid: shown.to_owned(),
                from: String::new(),
                source: client.to_string(),
                verdict: match outcome {
                    Outcome::Permit { .. } | Outcome::Keep(_) => "knocked",
                    _ => "knock-refused",
                },
                reason,
                rule,
                country: None,
                source_ip: Some(client),
                // Deduplicated per user, outcome and address.
                peer: Some(format!("knock:{shown}:{word}")),
            });
        }
    }
}

/// The log reason and rule text of an outcome.
fn describe(client: IpAddr, outcome: &Outcome) -> (String, Option<String>) {
    match outcome {
        Outcome::Permit { rule, ttl, .. } => (
            format!("{client} permitted until {}", until(rule, *ttl)),
            Some(rule.to_string()),
        ),
        Outcome::Keep(rule) => (
            format!("{client} already permitted"),
            Some(rule.to_string()),
        ),
        Outcome::Refuse => ("unknown user or wrong token".to_owned(), None),
        Outcome::Limit => ("over the rate limit".to_owned(), None),
        Outcome::Deny(rule) => (
            format!("{client} is denied; nothing added"),
            Some(rule.to_string()),
        ),
        Outcome::Busy => ("too many knocks at once".to_owned(), None),
        Outcome::Fail => ("the database failed".to_owned(), None),
    }
}

/// `21:40 UTC on 2026-12-02 (12h)`: when an entry expires, and for how long it was given.
pub fn until(rule: &Rule, ttl: Duration) -> String {
    let at = rule
        .terms
        .expires_at
        .and_then(|t| u64::try_from(t).ok())
        .map_or(SystemTime::now(), |t| UNIX_EPOCH + Duration::from_secs(t));
    let text = humantime::format_rfc3339_seconds(at).to_string();
    let (date, time) = text.split_once('T').unwrap_or((&text, ""));
    format!(
        "{} UTC on {date} ({})",
        time.get(..5).unwrap_or(time),
        humantime::format_duration(ttl)
    )
}
