//! Hostname resolution for From hosts: A and AAAA, a hard deadline, a TTL-respecting cache,
//! and a memory of failures.
//!
//! Backed by hickory-resolver (async, so a slow name server never blocks other calls, and its
//! cache honours each record's TTL). Every lookup is bounded by the configured timeout
//! (500 ms by default): a call is answered in bounded time whatever DNS does. Names under the
//! reserved `.invalid` TLD (RFC 6761, e.g. `anonymous.invalid`) are refused without a query.
//!
//! A name is looked up once at a time: calls that want a name already being looked up wait
//! for that lookup instead of starting their own. A lookup that failed (or timed out) is
//! remembered for the failure TTL (30 s by default, `--dns-failure-ttl`), so a dead resolver
//! costs one deadline per name, not one per call. Successes are not kept here: hickory's
//! cache keeps them for their records' TTL.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hickory_resolver::config::{
    ConnectionConfig, LookupIpStrategy, NameServerConfig, ResolveHosts, ResolverConfig,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::ResolverBuilder;
use hickory_resolver::TokioResolver;

use crate::decision::HostLookup;

/// Default deadline for one hostname lookup.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(500);

/// Default time a failed lookup is remembered.
pub const DEFAULT_FAILURE_TTL: Duration = Duration::from_secs(30);

/// Upper bound on the addresses of one name that are checked.
const MAX_ADDRS: usize = 16;

/// Most names remembered at once (in flight or failed); when full, expired entries go, and if
/// none has expired, all of them (a flood of random names must not grow memory).
const MAX_REMEMBERED: usize = 4096;

/// Resolves From hostnames. Clones share the cache and the memory of failures.
#[derive(Clone)]
pub struct HostResolver {
    inner: Option<TokioResolver>,
    timeout: Duration,
    failure_ttl: Duration,
    lookups: Arc<Mutex<HashMap<String, Arc<Lookup>>>>,
    stats: Arc<Stats>,
}

/// How lookups were answered (for the metrics).
#[derive(Debug, Default)]
pub struct Stats {
    /// Lookups that asked the name server.
    pub queries: std::sync::atomic::AtomicU64,
    /// Lookups answered by another call's lookup in flight, or by a remembered failure.
    pub shared: std::sync::atomic::AtomicU64,
}

/// One name's lookup: in flight while `result` is unset, then its outcome and when it came.
#[derive(Default)]
struct Lookup {
    result: tokio::sync::OnceCell<(HostLookup, Instant)>,
}

impl std::fmt::Debug for HostResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostResolver")
            .field("configured", &self.inner.is_some())
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl HostResolver {
    /// A resolver from the system configuration (`/etc/resolv.conf`, `/etc/hosts`). When the
    /// system has no usable configuration, every lookup fails (and the caller is a stranger).
    /// `failure_ttl` is how long a failed lookup is remembered (zero: not at all).
    pub fn system(timeout: Duration, failure_ttl: Duration) -> Self {
        let inner = match TokioResolver::builder_tokio() {
            Ok(builder) => Self::finish(builder, timeout),
            Err(error) => {
                tracing::warn!(%error, "no system DNS configuration; From hostnames will be strangers");
                None
            }
        };
        Self::new(inner, timeout, failure_ttl)
    }

    fn new(inner: Option<TokioResolver>, timeout: Duration, failure_ttl: Duration) -> Self {
        HostResolver {
            inner,
            timeout,
            failure_ttl,
            lookups: Arc::default(),
            stats: Arc::default(),
        }
    }

    /// A resolver that asks one name server (UDP, then TCP) at `server` (`--dns-server`),
    /// still answering `/etc/hosts` names first.
    pub fn with_nameserver(server: SocketAddr, timeout: Duration, failure_ttl: Duration) -> Self {
        let connections = [ConnectionConfig::udp(), ConnectionConfig::tcp()]
            .into_iter()
            .map(|mut c| {
                c.port = server.port();
                c
            })
            .collect();
        let config = ResolverConfig::from_name_servers(vec![NameServerConfig::new(
            server.ip(),
            true,
            connections,
        )]);
        let builder = TokioResolver::builder_with_config(config, TokioRuntimeProvider::default());
        Self::new(Self::finish(builder, timeout), timeout, failure_ttl)
    }

    fn finish(
        mut builder: ResolverBuilder<TokioRuntimeProvider>,
        timeout: Duration,
    ) -> Option<TokioResolver> {
        let opts = builder.options_mut();
        opts.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
        opts.timeout = timeout;
        opts.attempts = 1;
        opts.use_hosts_file = ResolveHosts::Always;
        opts.cache_size = 4096;
        match builder.build() {
            Ok(r) => Some(r),
            Err(error) => {
                tracing::warn!(%error, "DNS resolver unavailable; From hostnames will be strangers");
                None
            }
        }
    }

    /// How lookups were answered so far (shared by the clones).
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// A resolver that resolves nothing: every name is a stranger (the tests' resolver).
    pub fn disabled() -> Self {
        Self::new(None, DEFAULT_TIMEOUT, DEFAULT_FAILURE_TTL)
    }

    /// Resolves `name` within the deadline, or gives the remembered failure, or waits for the
    /// lookup of `name` already in flight.
    pub async fn lookup(&self, name: &str) -> HostLookup {
        if name == "invalid" || name.ends_with(".invalid") {
            return HostLookup::Failed("reserved .invalid name".into());
        }
        let Some(resolver) = &self.inner else {
            return HostLookup::Failed("DNS disabled".into());
        };
        let lookup = self.lookup_of(name);
        let mut asked = false;
        let (result, _) = lookup
            .result
            .get_or_init(|| async {
                asked = true;
                (self.query(resolver, name).await, Instant::now())
            })
            .await;
        let counter = if asked {
            &self.stats.queries
        } else {
            &self.stats.shared
        };
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if matches!(result, HostLookup::Addrs(_)) || self.failure_ttl.is_zero() {
            self.forget(name, &lookup);
        }
        result.clone()
    }

    /// The lookup of `name` to share: the one in flight or remembered, or a new one.
    fn lookup_of(&self, name: &str) -> Arc<Lookup> {
        let now = Instant::now();
        let fresh = |l: &Lookup| match l.result.get() {
            None => true,
            Some((HostLookup::Failed(_), at)) => now.duration_since(*at) < self.failure_ttl,
            Some((HostLookup::Addrs(_), _)) => false,
        };
        // A poisoned lock only means another call panicked while holding it; the map is
        // still a valid map.
        let mut lookups = self.lookups.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(l) = lookups.get(name).filter(|l| fresh(l)) {
            return l.clone();
        }
        if lookups.len() >= MAX_REMEMBERED {
            lookups.retain(|_, l| fresh(l));
            if lookups.len() >= MAX_REMEMBERED {
                lookups.clear();
            }
        }
        let l = Arc::new(Lookup::default());
        lookups.insert(name.to_owned(), l.clone());
        l
    }

    /// Drops `name`'s entry if it is still `lookup`.
    fn forget(&self, name: &str, lookup: &Arc<Lookup>) {
        let mut lookups = self.lookups.lock().unwrap_or_else(|p| p.into_inner());
        if lookups.get(name).is_some_and(|l| Arc::ptr_eq(l, lookup)) {
            lookups.remove(name);
        }
    }

    async fn query(&self, resolver: &TokioResolver, name: &str) -> HostLookup {
        match tokio::time::timeout(self.timeout, resolver.lookup_ip(name)).await {
            Err(_) => {
                HostLookup::Failed(format!("timed out after {} ms", self.timeout.as_millis()))
            }
            Ok(Err(error)) => HostLookup::Failed(short_error(&error.to_string())),
            Ok(Ok(found)) => {
                let addrs: Vec<IpAddr> = found
                    .iter()
                    .map(|ip| ip.to_canonical())
                    .take(MAX_ADDRS)
                    .collect();
                HostLookup::Addrs(addrs)
            }
        }
    }
}

/// hickory's messages can be long; keep the first line, bounded.
fn short_error(s: &str) -> String {
    s.lines()
        .next()
        .unwrap_or("lookup failed")
        .chars()
        .take(120)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn invalid_tld_is_refused_without_a_query() {
        let r = HostResolver::system(DEFAULT_TIMEOUT, DEFAULT_FAILURE_TTL);
        assert_eq!(
            r.lookup("anonymous.invalid").await,
            HostLookup::Failed("reserved .invalid name".into())
        );
    }

    #[tokio::test]
    async fn localhost_resolves_from_hosts_file() {
        let r = HostResolver::system(DEFAULT_TIMEOUT, DEFAULT_FAILURE_TTL);
        match r.lookup("localhost").await {
            HostLookup::Addrs(a) => assert!(a.iter().all(|ip| ip.is_loopback()), "{a:?}"),
            HostLookup::Failed(why) => panic!("localhost did not resolve: {why}"),
        }
    }

    #[tokio::test]
    async fn silent_name_server_times_out_within_the_deadline() {
        // A UDP socket on loopback that never answers: the lookup must give up in time.
        let silent = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let addr = silent.local_addr().expect("addr");
        let r =
            HostResolver::with_nameserver(addr, Duration::from_millis(200), DEFAULT_FAILURE_TTL);
        let t = std::time::Instant::now();
        let out = r.lookup("gw.example.com").await;
        assert!(matches!(out, HostLookup::Failed(_)), "{out:?}");
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "took {:?}",
            t.elapsed()
        );
    }

    /// Counts the queries a silent name server receives (it never answers).
    fn silent_server() -> (SocketAddr, impl Fn() -> usize) {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        socket.set_nonblocking(true).expect("nonblocking");
        let addr = socket.local_addr().expect("addr");
        let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let seen = count.clone();
        let drain = move || {
            let mut buf = [0u8; 1500];
            while socket.recv(&mut buf).is_ok() {
                seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
            seen.load(std::sync::atomic::Ordering::SeqCst)
        };
        (addr, drain)
    }

    #[tokio::test]
    async fn a_failure_is_remembered_and_shared() {
        let (addr, queries) = silent_server();
        let r =
            HostResolver::with_nameserver(addr, Duration::from_millis(200), DEFAULT_FAILURE_TTL);
        // Twenty calls at once want the same name: one lookup, one deadline.
        let t = std::time::Instant::now();
        let mut calls = tokio::task::JoinSet::new();
        for _ in 0..20 {
            let r = r.clone();
            calls.spawn(async move { r.lookup("gw.example.com").await });
        }
        let all = calls.join_all().await;
        assert!(
            all.iter().all(|o| matches!(o, HostLookup::Failed(_))),
            "{all:?}"
        );
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "took {:?}",
            t.elapsed()
        );
        let after_first = queries();
        assert!(after_first >= 1, "the name server was asked");
        // Then it is remembered: no new query.
        let again = r.lookup("gw.example.com").await;
        assert_eq!(again, all[0]);
        assert_eq!(queries(), after_first, "a remembered failure asks nobody");
        // Another name is asked for.
        let _ = r.lookup("other.example.com").await;
        assert!(queries() > after_first);
    }

    #[tokio::test]
    async fn a_zero_failure_ttl_remembers_nothing() {
        let (addr, queries) = silent_server();
        let r = HostResolver::with_nameserver(addr, Duration::from_millis(100), Duration::ZERO);
        let _ = r.lookup("gw.example.com").await;
        let first = queries();
        let _ = r.lookup("gw.example.com").await;
        assert!(queries() > first, "asked again");
    }

    #[tokio::test]
    async fn disabled_resolver_fails() {
        let r = HostResolver::disabled();
        assert!(matches!(
            r.lookup("example.com").await,
            HostLookup::Failed(_)
        ));
    }
}
