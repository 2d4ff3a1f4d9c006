//! Shared by the benches: the data paths, a seeded generator, address samplers that draw from
//! inside the GeoLite2 database's networks, and the permit/deny rule set the issue specifies
//! (permit US, CA, GB, DE from the country catalog, 1,000 custom denies inside them, builtins).
//!
//! The catalog import (`ipcountry::import`) is not used here on purpose: the rules are built
//! straight from the `.mmdb` with the maxminddb crate, so the benches depend on nothing but
//! the table, the policy and the store.

// Each bench binary uses a different part of this module.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ipcountry::ranges::{builtin, IpRange, Rule, RuleKind, RuleSource, CUSTOM_COUNTRY};
use maxminddb::{PathElement, Reader, WithinOptions};

/// The permit countries of the benchmark policy.
pub(crate) const COUNTRIES: [&str; 4] = ["US", "CA", "GB", "DE"];

/// Custom deny entries scattered inside the permit ranges.
pub(crate) const DENY_ENTRIES: usize = 1_000;

/// `IPCOUNTRY_DATA`, or `../shared/data` beside the crate.
pub(crate) fn data_dir() -> PathBuf {
    std::env::var_os("IPCOUNTRY_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/data")))
}

/// The GeoLite2 Country database (2019-12-24, CC BY-SA 4.0).
pub(crate) fn geolite_path() -> PathBuf {
    data_dir().join("full/GeoLite2-Country-2019-12-24.mmdb")
}

/// The recorded Asterisk FastAGI sessions.
pub(crate) fn fixtures_dir() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/fixtures/asterisk-agi"
    ))
}

/// A 64-bit linear congruential generator (Knuth's MMIX constants) with an xorshift on the
/// output: deterministic, seedable, and good enough to scatter addresses.
#[derive(Debug, Clone)]
pub(crate) struct Lcg(u64);

impl Lcg {
    pub(crate) fn new(seed: u64) -> Self {
        Lcg(seed ^ 0x9e37_79b9_7f4a_7c15)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let x = self.0;
        x ^ (x >> 29) ^ (x >> 43)
    }

    pub(crate) fn next_u128(&mut self) -> u128 {
        (u128::from(self.next_u64()) << 64) | u128::from(self.next_u64())
    }

    /// Uniform-ish in `0..n` (`n > 0`).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
}

/// One network of the database: `start | (random & host_mask)` is an address inside it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Net<K> {
    pub(crate) start: K,
    pub(crate) host_mask: K,
}

/// Everything read from the database: all networks with data (the sampling space), and the
/// merged ranges of the permit countries.
#[derive(Debug, Default)]
pub(crate) struct Catalog {
    pub(crate) v4_networks: Vec<Net<u32>>,
    pub(crate) v6_networks: Vec<Net<u128>>,
    /// Merged `[start, end]` per permit country, in [`COUNTRIES`] order.
    pub(crate) v4_permit: Vec<(&'static str, Vec<(u32, u32)>)>,
    pub(crate) v6_permit: Vec<(&'static str, Vec<(u128, u128)>)>,
}

impl Catalog {
    pub(crate) fn v4_ranges(&self) -> usize {
        self.v4_permit.iter().map(|(_, r)| r.len()).sum()
    }

    pub(crate) fn v6_ranges(&self) -> usize {
        self.v6_permit.iter().map(|(_, r)| r.len()).sum()
    }
}

/// The ISO code path: the cheapest decode the crate offers (a borrowed `&str`).
pub(crate) const ISO_PATH: [PathElement<'static>; 2] =
    [PathElement::Key("country"), PathElement::Key("iso_code")];

/// Opens the database into memory.
pub(crate) fn open_geolite() -> Reader<Vec<u8>> {
    let path = geolite_path();
    Reader::open_readfile(&path)
        .unwrap_or_else(|e| panic!("cannot open {}: {e} (set IPCOUNTRY_DATA)", path.display()))
}

/// Reads every network of `reader` (aliases skipped; IPv4 networks stored under `::/96`
/// become IPv4) and merges the adjacent networks of each permit country.
pub(crate) fn read_catalog(reader: &Reader<Vec<u8>>) -> Catalog {
    let mut cat = Catalog::default();
    let mut v4: Vec<Vec<(u32, u32)>> = vec![Vec::new(); COUNTRIES.len()];
    let mut v6: Vec<Vec<(u128, u128)>> = vec![Vec::new(); COUNTRIES.len()];
    for item in reader
        .networks(WithinOptions::default())
        .expect("iterate networks")
    {
        let item = item.expect("network");
        let net = item.network().expect("network prefix");
        let (addr, prefix) = (net.network(), u32::from(net.prefix()));
        let code: Option<&str> = item.decode_path(&ISO_PATH).expect("decode iso code");
        let country = code.and_then(|c| COUNTRIES.iter().position(|&k| k == c));
        let v4_of = |a: u32, len: u32| {
            let host_mask = u32::MAX.checked_shr(len).unwrap_or(0);
            Net {
                start: a & !host_mask,
                host_mask,
            }
        };
        let range4 = match addr {
            IpAddr::V4(a) => Some(v4_of(u32::from(a), prefix)),
            IpAddr::V6(a) if u128::from(a) >> 32 == 0 && prefix >= 96 => {
                Some(v4_of(u128::from(a) as u32, prefix - 96))
            }
            IpAddr::V6(_) => None,
        };
        match range4 {
            Some(n) => {
                cat.v4_networks.push(n);
                if let Some(c) = country {
                    v4[c].push((n.start, n.start | n.host_mask));
                }
            }
            None => {
                let a = match addr {
                    IpAddr::V6(a) => u128::from(a),
                    IpAddr::V4(_) => unreachable!("IPv4 handled above"),
                };
                let host_mask = u128::MAX.checked_shr(prefix).unwrap_or(0);
                let n = Net {
                    start: a & !host_mask,
                    host_mask,
                };
                cat.v6_networks.push(n);
                if let Some(c) = country {
                    v6[c].push((n.start, n.start | n.host_mask));
                }
            }
        }
    }
    for (i, code) in COUNTRIES.iter().enumerate() {
        cat.v4_permit
            .push((code, merge(std::mem::take(&mut v4[i]))));
        cat.v6_permit
            .push((code, merge(std::mem::take(&mut v6[i]))));
    }
    cat
}

/// Sorts and joins overlapping or adjacent ranges.
fn merge<K: Copy + Ord + Successor>(mut ranges: Vec<(K, K)>) -> Vec<(K, K)> {
    ranges.sort_unstable();
    let mut out: Vec<(K, K)> = Vec::with_capacity(ranges.len());
    for (s, e) in ranges {
        if let Some(last) = out.last_mut() {
            if last.1.succ().is_none_or(|next| s <= next) {
                last.1 = last.1.max(e);
                continue;
            }
        }
        out.push((s, e));
    }
    out
}

trait Successor: Sized {
    fn succ(self) -> Option<Self>;
}
impl Successor for u32 {
    fn succ(self) -> Option<Self> {
        self.checked_add(1)
    }
}
impl Successor for u128 {
    fn succ(self) -> Option<Self> {
        self.checked_add(1)
    }
}

/// The benchmark policy: the merged permit ranges of [`COUNTRIES`] (source geolite, ids from
/// 1), [`DENY_ENTRIES`] custom deny entries inside them (70% IPv4: single addresses and
/// `/24`s; 30% IPv6: single addresses and `/56`s; each clipped to its permit range), and the
/// builtins.
pub(crate) fn policy_rules(cat: &Catalog, seed: u64) -> Vec<Rule> {
    let mut rules = Vec::new();
    let mut id = 0i64;
    let mut rule = |kind, range, country: &str, source| {
        id += 1;
        Rule {
            id,
            kind,
            range,
            country: country.to_owned(),
            source,
            note: String::new(),
            terms: Default::default(),
        }
    };
    for (code, ranges) in &cat.v4_permit {
        for &(start, end) in ranges {
            rules.push(rule(
                RuleKind::Permit,
                IpRange::V4 { start, end },
                code,
                RuleSource::Geolite,
            ));
        }
    }
    for (code, ranges) in &cat.v6_permit {
        for &(start, end) in ranges {
            rules.push(rule(
                RuleKind::Permit,
                IpRange::V6 { start, end },
                code,
                RuleSource::Geolite,
            ));
        }
    }
    let v4: Vec<(u32, u32)> = cat
        .v4_permit
        .iter()
        .flat_map(|(_, r)| r.iter().copied())
        .collect();
    let v6: Vec<(u128, u128)> = cat
        .v6_permit
        .iter()
        .flat_map(|(_, r)| r.iter().copied())
        .collect();
    let mut rng = Lcg::new(seed);
    for n in 0..DENY_ENTRIES {
        let range = if n % 10 < 7 {
            let (s, e) = v4[rng.below(v4.len() as u64) as usize];
            let a = s + rng.below(u64::from(e - s) + 1) as u32;
            if rng.next_u64() & 1 == 0 {
                IpRange::V4 { start: a, end: a }
            } else {
                IpRange::V4 {
                    start: (a & !0xff).max(s),
                    end: (a | 0xff).min(e),
                }
            }
        } else {
            let (s, e) = v6[rng.below(v6.len() as u64) as usize];
            let a = s + (rng.next_u128() % (e - s).saturating_add(1).max(1));
            let mask = (1u128 << 72) - 1; // a /56
            if rng.next_u64() & 1 == 0 {
                IpRange::V6 { start: a, end: a }
            } else {
                IpRange::V6 {
                    start: (a & !mask).max(s),
                    end: (a | mask).min(e),
                }
            }
        };
        rules.push(rule(
            RuleKind::Deny,
            range,
            CUSTOM_COUNTRY,
            RuleSource::Custom,
        ));
    }
    rules.extend(builtin::rules());
    rules
}

/// `n` IPv4 addresses, each inside a network of the database (network chosen uniformly).
pub(crate) fn sample_v4(cat: &Catalog, n: usize, seed: u64) -> Vec<IpAddr> {
    let mut rng = Lcg::new(seed);
    (0..n)
        .map(|_| {
            let net = cat.v4_networks[rng.below(cat.v4_networks.len() as u64) as usize];
            IpAddr::V4(Ipv4Addr::from(
                net.start | (rng.next_u64() as u32 & net.host_mask),
            ))
        })
        .collect()
}

/// `n` IPv6 addresses, each inside an IPv6 network of the database.
pub(crate) fn sample_v6(cat: &Catalog, n: usize, seed: u64) -> Vec<IpAddr> {
    let mut rng = Lcg::new(seed);
    (0..n)
        .map(|_| {
            let net = cat.v6_networks[rng.below(cat.v6_networks.len() as u64) as usize];
            IpAddr::V6(Ipv6Addr::from(
                net.start | (rng.next_u128() & net.host_mask),
            ))
        })
        .collect()
}

/// Writes `rules` (permit and deny, builtins skipped) into the SQLite database at `url`,
/// created with `ipcountry::store::Store::open` beforehand, in one transaction, with the
/// store's encoding (big-endian address bytes).
pub(crate) async fn fill_store(url: &str, rules: &[Rule]) {
    use sqlx::Connection;
    let mut conn = sqlx::SqliteConnection::connect(url)
        .await
        .expect("connect to the bench database");
    let mut tx = conn.begin().await.expect("begin");
    for r in rules.iter().filter(|r| r.source != RuleSource::Builtin) {
        let sql = format!(
            "INSERT INTO {} (family, start_ip, end_ip, country_code, source, note, created_at) \
             VALUES (?, ?, ?, ?, ?, ?, 0)",
            r.kind.as_str()
        );
        sqlx::query(&sql)
            .bind(r.range.family().number())
            .bind(r.range.start_bytes())
            .bind(r.range.end_bytes())
            .bind(&r.country)
            .bind(r.source.as_str())
            .bind(&r.note)
            .execute(&mut *tx)
            .await
            .expect("insert rule");
    }
    sqlx::query("UPDATE generation SET value = value + 1 WHERE id = 1")
        .execute(&mut *tx)
        .await
        .expect("bump generation");
    tx.commit().await.expect("commit");
}

/// Median of `v` (sorts it).
pub(crate) fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// An `ipcountry serve` process started by a bench, killed if the bench panics.
pub(crate) struct Server {
    pub(crate) child: Child,
    pub(crate) addr: SocketAddr,
    /// See [`Server::threads`].
    seen: Mutex<HashMap<u32, ThreadTimes>>,
}

/// What `/proc/<pid>/task/<tid>` said of a thread at its last reading.
#[derive(Clone, Copy)]
struct ThreadTimes {
    /// `schedstat`'s first field: time on the CPU, in ns.
    cpu_ns: u64,
    /// `status`' `voluntary_ctxt_switches`.
    wakeups: u64,
}

impl Server {
    /// `ipcountry serve` exactly as README runs it (see `main`).
    pub(crate) fn defaults(dir: &Path, db: &str) -> Server {
        let log_path = dir.join("defaults.log");
        let log_file = std::fs::File::create(&log_path).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_ipcountry"))
            .arg("serve")
            .env("IPCOUNTRY_DB", db)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .expect("start ipcountry serve");
        Server::wait_for_addr(child, &log_path)
    }

    /// `ipcountry serve` on a port of its own with `args`, at the default log level or `log`.
    pub(crate) fn serve(
        dir: &Path,
        tag: &str,
        db: &str,
        args: &[&str],
        log: Option<&str>,
    ) -> Server {
        let log_path = dir.join(format!("{tag}.log"));
        let log_file = std::fs::File::create(&log_path).expect("log file");
        let mut command = Command::new(env!("CARGO_BIN_EXE_ipcountry"));
        command
            .args(["--db", db, "serve", "--listen", "127.0.0.1:0"])
            .args(args)
            .env_remove("RUST_LOG");
        if let Some(log) = log {
            // The server module logs `listening on` at info; the rest at `log`.
            command.env("RUST_LOG", format!("{log},ipcountry::server=info"));
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .expect("start ipcountry serve");
        Server::wait_for_addr(child, &log_path)
    }

    /// Polls the log for `listening on <addr>`.
    pub(crate) fn wait_for_addr(mut child: Child, log: &PathBuf) -> Server {
        let started = Instant::now();
        loop {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            if let Some(rest) = text.split("listening on ").nth(1) {
                let addr: String = rest.chars().take_while(|c| !c.is_whitespace()).collect();
                if let Ok(addr) = addr.parse() {
                    return Server {
                        child,
                        addr,
                        seen: Mutex::default(),
                    };
                }
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("server exited with {status}: {text}");
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "server did not start: {text}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// CPU time of all the process's threads so far, in ns, the threads that have exited
    /// included (see [`Server::threads`]).
    pub(crate) fn cpu_ns(&self) -> u64 {
        self.threads().values().map(|t| t.cpu_ns).sum()
    }

    /// Voluntary context switches of all the process's threads so far (how often they went
    /// to sleep and were woken), the threads that have exited included.
    pub(crate) fn wakeups(&self) -> u64 {
        self.threads().values().map(|t| t.wakeups).sum()
    }

    /// Every thread of the process seen so far, by thread id, with what `/proc` said of it at
    /// its last reading. `/proc/<pid>/task` lists the living threads only: summed over it,
    /// the process's CPU drops when a thread exits (tokio's blocking-pool thread, idle for
    /// 10 s, takes its start-up work with it), and a window's CPU read as zero. A thread that
    /// has exited keeps its last reading.
    fn threads(&self) -> std::sync::MutexGuard<'_, HashMap<u32, ThreadTimes>> {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let dir = format!("/proc/{}/task", self.child.id());
        for task in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let Some(tid) = task
                .file_name()
                .to_str()
                .and_then(|t| t.parse::<u32>().ok())
            else {
                continue;
            };
            let cpu_ns = std::fs::read_to_string(task.path().join("schedstat"))
                .ok()
                .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok());
            let wakeups = std::fs::read_to_string(task.path().join("status"))
                .ok()
                .and_then(|s| {
                    s.lines()
                        .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
                        .and_then(|v| v.trim().parse::<u64>().ok())
                });
            // A thread that exits between the listing and the reads keeps what it had.
            if let (Some(cpu_ns), Some(wakeups)) = (cpu_ns, wakeups) {
                seen.insert(tid, ThreadTimes { cpu_ns, wakeups });
            }
        }
        seen
    }

    /// SIGTERM (graceful shutdown), then wait; SIGKILL if it does not exit in 10 s.
    pub(crate) fn stop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    /// A bench that panics must not leave servers behind.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
