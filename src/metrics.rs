//! Metrics and health: what the server counts, and the small HTTP endpoint that shows it.
//!
//! [`Metrics`] holds the counters a session and the accept loop update (atomics, no lock on
//! the call path): calls by verdict and by reason kind, answers sent on failure by kind,
//! refused clients, sessions in flight, and a screening-latency histogram. Everything else is
//! read when scraped: DNS lookups and how many were answered by another call's lookup or a
//! remembered failure, the snapshot's generation, age and segment counts, reload failures,
//! and whether the database was reachable at the last poll.
//!
//! [`serve`] answers `GET /metrics` (Prometheus text format, via the `prometheus-client`
//! crate) and `GET /healthz` (200 when a snapshot is loaded and younger than the configured
//! age, 503 otherwise) over plain HTTP/1.1, one request per connection. The request reading is
//! written here: two fixed paths, a bounded request line and a deadline are all it needs, and an
//! HTTP server crate would add far more code than it saves.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use crate::alerts::Alerts;
use crate::decision::{ReasonKind, Verdict};
use crate::policy::SharedPolicy;
use crate::resolve::HostResolver;

/// The row of a verdict in [`Metrics`]' counters by verdict and reason.
fn verdict_index(verdict: Verdict) -> usize {
    match verdict {
        Verdict::Permit => 0,
        Verdict::Deny => 1,
        Verdict::Stranger => 2,
    }
}

/// The counters of one server.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    calls: Family<CallLabels, Counter>,
    /// `calls`' counters by verdict and reason kind, each taken from the family at its first use.
    call_counters: [[OnceLock<Counter>; ReasonKind::ALL.len()]; 3],
    failures: Family<KindLabels, Counter>,
    refused: Counter,
    shadow: Family<ShadowLabels, Counter>,
    in_flight: Gauge,
    latency: Histogram,
    knocks: Family<OutcomeLabels, Counter>,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ShadowLabels {
    /// The verdict the shadow rule would have given.
    would_be: &'static str,
    /// The verdict the call got.
    verdict: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    verdict: &'static str,
    reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Counters at zero; nothing read at scrape time until [`Metrics::watch`].
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("ipcountry");
        let calls = Family::<CallLabels, Counter>::default();
        registry.register(
            "calls",
            "Screened calls, by verdict and by the kind of reason that decided",
            calls.clone(),
        );
        let failures = Family::<KindLabels, Counter>::default();
        registry.register(
            "failed_calls",
            "Calls that could not be screened and got the error answer, by kind",
            failures.clone(),
        );
        let refused = Counter::default();
        registry.register(
            "refused_clients",
            "Connections closed unread: the peer is not in --allow-client",
            refused.clone(),
        );
        let shadow = Family::<ShadowLabels, Counter>::default();
        registry.register(
            "shadow_matches",
            "Calls a shadow rule matched: the verdict it would have given, and the one given",
            shadow.clone(),
        );
        let in_flight = Gauge::default();
        registry.register(
            "sessions_in_flight",
            "Calls being handled",
            in_flight.clone(),
        );
        // 100 µs to ~1.6 s.
        let latency = Histogram::new(exponential_buckets(0.000_1, 2.0, 15));
        registry.register(
            "screening_seconds",
            "Time from the environment block to the verdict sent",
            latency.clone(),
        );
        let knocks = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "knocks",
            "Knocks on the knock page, by outcome (permitted, refused, limited, denied, ...)",
            knocks.clone(),
        );
        Metrics {
            registry,
            calls,
            call_counters: Default::default(),
            failures,
            refused,
            shadow,
            in_flight,
            latency,
            knocks,
        }
    }

    /// Reads the snapshot's, the resolver's and the alerts' state at every scrape.
    pub fn watch(
        &mut self,
        policy: Arc<SharedPolicy>,
        resolver: HostResolver,
        alerts: Option<Alerts>,
    ) {
        self.registry.register_collector(Box::new(Scraped {
            policy,
            resolver,
            alerts,
        }));
    }

    /// `serve --firewall`: the keeper's applies and failures at every scrape
    /// (`ipcountry_firewall_applies_total`, `ipcountry_firewall_failures_total`).
    pub fn firewall(&mut self, stats: Arc<crate::firewall::keeper::KeeperStats>) {
        self.registry
            .register_collector(Box::new(FirewallScraped(stats)));
    }

    /// A call got its verdict.
    pub fn call(&self, verdict: Verdict, reason: ReasonKind, seconds: f64) {
        // The family's counter for the pair, looked up once and kept: the lookup takes the
        // family's lock and hashes the labels, each call, on cold caches (issue 18).
        self.call_counters[verdict_index(verdict)][reason.index()]
            .get_or_init(|| {
                self.calls
                    .get_or_create(&CallLabels {
                        verdict: verdict.as_str(),
                        reason: reason.as_str(),
                    })
                    .clone()
            })
            .inc();
        self.latency.observe(seconds);
    }

    /// A call got the error answer.
    pub fn failure(&self, kind: &'static str) {
        self.failures.get_or_create(&KindLabels { kind }).inc();
    }

    /// A shadow rule matched a call: it `would_be` that verdict; it got `verdict`.
    pub fn shadow(&self, would_be: &'static str, verdict: &'static str) {
        self.shadow
            .get_or_create(&ShadowLabels { would_be, verdict })
            .inc();
    }

    /// A knock on the knock page ended with `outcome`.
    pub fn knock(&self, outcome: &'static str) {
        self.knocks.get_or_create(&OutcomeLabels { outcome }).inc();
    }

    /// A connection from a peer not allowed was closed.
    pub fn refused(&self) {
        self.refused.inc();
    }

    /// A session started; it ends when the guard drops.
    pub fn session(&self) -> InFlight<'_> {
        self.in_flight.inc();
        InFlight(&self.in_flight)
    }

    /// The Prometheus text of everything.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a `String` cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry);
        out
    }
}

/// Counts a session in flight while alive.
#[derive(Debug)]
pub struct InFlight<'a>(&'a Gauge);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The firewall keeper's counters, read when scraped.
#[derive(Debug)]
struct FirewallScraped(Arc<crate::firewall::keeper::KeeperStats>);

impl Collector for FirewallScraped {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for (name, help, value) in [
            (
                "firewall_applies",
                "Firewall tables applied by serve --firewall",
                &self.0.applied,
            ),
            (
                "firewall_failures",
                "Firewall applies that failed (the kernel kept the old table)",
                &self.0.failures,
            ),
        ] {
            let c = ConstCounter::new(value.load(Ordering::Relaxed));
            c.encode(encoder.encode_descriptor(name, help, None, c.metric_type())?)?;
        }
        Ok(())
    }
}

/// What is read when scraped.
#[derive(Debug)]
struct Scraped {
    policy: Arc<SharedPolicy>,
    resolver: HostResolver,
    alerts: Option<Alerts>,
}

impl Collector for Scraped {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let snapshot = self.policy.load();
        let stats = self.resolver.stats();
        let counters = [
            (
                "dns_queries",
                "From-host lookups that asked the name server",
                stats.queries.load(Ordering::Relaxed),
            ),
            (
                "dns_shared",
                "From-host lookups answered by another call's lookup or a remembered failure",
                stats.shared.load(Ordering::Relaxed),
            ),
            (
                "reload_failures",
                "Store polls and rebuilds that failed (the snapshot stayed)",
                self.policy.failures(),
            ),
        ];
        for (name, help, value) in counters {
            let c = ConstCounter::new(value);
            c.encode(encoder.encode_descriptor(name, help, None, c.metric_type())?)?;
        }
        if let Some(alerts) = &self.alerts {
            let s = alerts.stats();
            let c = ConstCounter::new(0u64);
            let mut family = encoder.encode_descriptor(
                "alerts",
                "--on-stranger events, by what became of them",
                None,
                c.metric_type(),
            )?;
            for (outcome, n) in [
                ("sent", &s.sent),
                ("deduplicated", &s.deduplicated),
                ("limited", &s.limited),
                ("dropped", &s.dropped),
                ("failed", &s.failed),
            ] {
                ConstCounter::new(n.load(Ordering::Relaxed))
                    .encode(family.encode_family(&[("outcome", outcome)])?)?;
            }
        }
        let gauges = [
            (
                "snapshot_generation",
                "Store generation the snapshot was built from",
                snapshot.generation().unwrap_or(-1),
            ),
            (
                "database_up",
                "1 if the last poll or rebuild reached the database",
                i64::from(self.policy.store_up()),
            ),
        ];
        for (name, help, value) in gauges {
            let g = ConstGauge::new(value);
            g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)?;
        }
        let age = ConstGauge::new(self.policy.age().as_secs_f64());
        age.encode(encoder.encode_descriptor(
            "snapshot_age_seconds",
            "Time since the snapshot was loaded or found current",
            None,
            age.metric_type(),
        )?)?;
        let (v4, v6) = snapshot.table().segment_counts();
        let segments = ConstGauge::new(0i64);
        let mut family = encoder.encode_descriptor(
            "snapshot_segments",
            "Segments of the compiled snapshot, by address family",
            None,
            segments.metric_type(),
        )?;
        for (label, n) in [("ipv4", v4), ("ipv6", v6)] {
            let g = ConstGauge::new(i64::try_from(n).unwrap_or(i64::MAX));
            g.encode(family.encode_family(&[("family", label)])?)?;
        }
        Ok(())
    }
}

/// Longest request head read, in bytes.
const MAX_REQUEST: usize = 8 * 1024;

/// Serves `/metrics` and `/healthz` on `listener` until `shutdown`. `/healthz` is 200 while
/// the snapshot is younger than `max_age`.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    policy: Arc<SharedPolicy>,
    max_age: Duration,
    shutdown: CancellationToken,
) {
    if let Ok(addr) = listener.local_addr() {
        info!(%addr, "metrics on http://{addr}/metrics");
    }
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(error) => {
                    debug!(%error, "metrics accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let metrics = metrics.clone();
        let policy = policy.clone();
        tokio::spawn(async move {
            let answer = tokio::time::timeout(
                Duration::from_secs(2),
                answer(stream, &metrics, &policy, max_age),
            );
            if answer.await.is_err() {
                debug!(%peer, "metrics client too slow");
            }
        });
    }
}

async fn answer(
    mut stream: tokio::net::TcpStream,
    metrics: &Metrics,
    policy: &SharedPolicy,
    max_age: Duration,
) {
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && !head.windows(2).any(|w| w == b"\n\n") {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&chunk[..n]),
        }
        if head.len() > MAX_REQUEST {
            let _ = stream
                .write_all(&response(431, "text/plain", "request too large\n"))
                .await;
            return;
        }
    }
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let mut words = line.split(|&b| b == b' ');
    let (method, path) = (
        words.next().unwrap_or_default(),
        words.next().unwrap_or_default(),
    );
    let reply = match (method, path) {
        (b"GET", b"/metrics") => response(
            200,
            "text/plain; version=0.0.4; charset=utf-8",
            &metrics.render(),
        ),
        (b"GET", b"/healthz") => {
            let age = policy.age();
            if age <= max_age {
                response(
                    200,
                    "text/plain",
                    &format!("ok: snapshot {:.0} s old\n", age.as_secs_f64()),
                )
            } else {
                response(
                    503,
                    "text/plain",
                    &format!(
                        "stale: snapshot {:.0} s old (more than {} s)\n",
                        age.as_secs_f64(),
                        max_age.as_secs()
                    ),
                )
            }
        }
        (b"GET", _) => response(404, "text/plain", "not found: /metrics or /healthz\n"),
        _ => response(405, "text/plain", "GET only\n"),
    };
    let _ = stream.write_all(&reply).await;
    let _ = stream.shutdown().await;
}

fn response(status: u16, content_type: &str, body: &str) -> Vec<u8> {
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        _ => "Service Unavailable",
    };
    let mut head = String::new();
    let _ = write!(
        head,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let mut out = head.into_bytes();
    out.extend_from_slice(body.as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::firewall::keeper::KeeperStats;

    #[test]
    fn the_firewall_counters_are_scraped() {
        let stats = Arc::new(KeeperStats::default());
        let mut metrics = Metrics::new();
        metrics.firewall(stats.clone());
        stats.applied.fetch_add(2, Ordering::Relaxed);
        stats.failures.fetch_add(1, Ordering::Relaxed);
        let text = metrics.render();
        assert!(
            text.contains("ipcountry_firewall_applies_total 2"),
            "{text}"
        );
        assert!(
            text.contains("ipcountry_firewall_failures_total 1"),
            "{text}"
        );
    }

    #[test]
    fn calls_are_counted_by_verdict_and_reason_through_the_kept_counters() {
        let metrics = Metrics::new();
        metrics.call(Verdict::Permit, ReasonKind::Country, 0.001);
        metrics.call(Verdict::Permit, ReasonKind::Country, 0.001);
        metrics.call(Verdict::Stranger, ReasonKind::NoPermitRange, 0.001);
        let text = metrics.render();
        for line in [
            r#"ipcountry_calls_total{verdict="permitted",reason="country"} 2"#,
            r#"ipcountry_calls_total{verdict="stranger",reason="no_permit_range"} 1"#,
            "ipcountry_screening_seconds_count 3",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
        assert!(!text.contains(r#"verdict="denied""#), "{text}");
    }
}
