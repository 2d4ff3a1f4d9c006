//! Hostname resolution for From hosts: A and AAAA, a hard deadline, a TTL-respecting cache.
//!
//! Backed by hickory-resolver (async, so a slow name server never blocks other calls, and its
//! cache honours each record's TTL). Every lookup is bounded by the configured timeout
//! (500 ms by default): a call is answered in bounded time whatever DNS does. Names under the
//! reserved `.invalid` TLD (RFC 6761, e.g. `anonymous.invalid`) are refused without a query.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_resolver::config::{
    ConnectionConfig, LookupIpStrategy, NameServerConfig, ResolveHosts, ResolverConfig,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::ResolverBuilder;
use hickory_resolver::TokioResolver;

use crate::decision::HostLookup;

/// Default deadline for one hostname lookup.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(500);

/// Upper bound on the addresses of one name that are checked.
const MAX_ADDRS: usize = 16;

/// Resolves From hostnames.
#[derive(Clone)]
pub struct HostResolver {
    inner: Option<TokioResolver>,
    timeout: Duration,
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
    pub fn system(timeout: Duration) -> Self {
        let inner = match TokioResolver::builder_tokio() {
            Ok(builder) => Self::finish(builder, timeout),
            Err(error) => {
                tracing::warn!(%error, "no system DNS configuration; From hostnames will be strangers");
                None
            }
        };
        HostResolver { inner, timeout }
    }

    /// A resolver that asks one name server (UDP, then TCP) at `server` (`--dns-server`),
    /// still answering `/etc/hosts` names first.
    pub fn with_nameserver(server: SocketAddr, timeout: Duration) -> Self {
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
        HostResolver {
            inner: Self::finish(builder, timeout),
            timeout,
        }
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

    /// A resolver that resolves nothing (tests, or `--no-dns`).
    pub fn disabled() -> Self {
        HostResolver {
            inner: None,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// Resolves `name` within the deadline.
    pub async fn lookup(&self, name: &str) -> HostLookup {
        if name == "invalid" || name.ends_with(".invalid") {
            return HostLookup::Failed("reserved .invalid name".into());
        }
        let Some(resolver) = &self.inner else {
            return HostLookup::Failed("DNS disabled".into());
        };
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
        let r = HostResolver::system(DEFAULT_TIMEOUT);
        assert_eq!(
            r.lookup("anonymous.invalid").await,
            HostLookup::Failed("reserved .invalid name".into())
        );
    }

    #[tokio::test]
    async fn localhost_resolves_from_hosts_file() {
        let r = HostResolver::system(DEFAULT_TIMEOUT);
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
        let r = HostResolver::with_nameserver(addr, Duration::from_millis(200));
        let t = std::time::Instant::now();
        let out = r.lookup("gw.example.com").await;
        assert!(matches!(out, HostLookup::Failed(_)), "{out:?}");
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "took {:?}",
            t.elapsed()
        );
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
