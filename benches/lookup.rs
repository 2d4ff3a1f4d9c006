//! Lookup, build and reload benchmarks on the real GeoLite2 Country database.
//!
//! Policy: permit US, CA, GB, DE (merged catalog ranges), 1,000 custom denies inside them,
//! builtins (see `common.rs`). Addresses: 1,000,000 IPv4 and 1,000,000 IPv6 addresses drawn
//! from inside the database's networks (seeded), looked up in order ("random", cache-cold
//! for the table) or cycling through the first 1,000 ("hot set").
//!
//! Side by side in the same run, on the same addresses:
//! * `range_table`: [`RangeTable::kind`], the verdict (permit, deny, or none: stranger) from
//!   the layout the server uses, without reading the rule;
//! * `range_table_rule`: [`RangeTable::lookup`] and the matched rule's id (what `decide`
//!   does, since the reason names the rule: one more memory access into the rule list);
//! * `binary_search`: [`BinarySearchTable::lookup`] and the rule's id, the plain layout the
//!   fast one replaced (baseline);
//! * `maxminddb`: `Reader::lookup` + `decode_path(["country", "iso_code"])` to a borrowed
//!   `&str`, the cheapest country decode the crate offers.
//!
//! After criterion, a summary prints ns/lookup and ratios from one timing pass of each
//! variant over the whole address list (median of 5), the cold-cache figures (64 MiB read
//! between lookups, each lookup timed alone), the build times (table, and policy from a
//! SQLite store holding the full tables), the measured memory, and lookup latency while
//! another thread keeps swapping in new snapshots.
//!
//! `cargo bench --bench lookup` (add `-- --noplot`); criterion's filters work as usual, the
//! summary always runs. `IPCOUNTRY_DATA` points at another data directory.

mod common;

use std::hint::black_box;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use criterion::{criterion_group, BatchSize, Criterion, Throughput};
use ipcountry::policy::{Builtins, Policy, SharedPolicy};
use ipcountry::ranges::table::{BinarySearchTable, RangeTable};
use ipcountry::ranges::{IpRange, Rule};
use maxminddb::Reader;

use common::{median, Catalog, ISO_PATH};

const ADDRESSES: usize = 1_000_000;
const HOT: usize = 1_000;

struct Setup {
    reader: Reader<Vec<u8>>,
    catalog: Catalog,
    rules: Vec<Rule>,
    table: RangeTable,
    reference: BinarySearchTable,
    v4: Vec<IpAddr>,
    v6: Vec<IpAddr>,
}

fn setup() -> &'static Setup {
    static SETUP: OnceLock<Setup> = OnceLock::new();
    SETUP.get_or_init(|| {
        let reader = common::open_geolite();
        let catalog = common::read_catalog(&reader);
        let rules = common::policy_rules(&catalog, 42);
        let table = RangeTable::build(rules.clone()).expect("table");
        let reference = BinarySearchTable::build(rules.clone()).expect("reference table");
        let v4 = common::sample_v4(&catalog, ADDRESSES, 4);
        let v6 = common::sample_v6(&catalog, ADDRESSES, 6);
        Setup {
            reader,
            catalog,
            rules,
            table,
            reference,
            v4,
            v6,
        }
    })
}

/// The three lookups being compared, each reduced to something `black_box` can hold.
#[derive(Clone, Copy)]
enum Variant {
    RangeTable,
    RangeTableRule,
    BinarySearch,
    MaxMind,
}

const VARIANTS: [(Variant, &str); 4] = [
    (Variant::RangeTable, "range_table"),
    (Variant::RangeTableRule, "range_table_rule"),
    (Variant::BinarySearch, "binary_search"),
    (Variant::MaxMind, "maxminddb"),
];

#[inline(always)]
fn one(s: &Setup, v: Variant, ip: IpAddr) -> u64 {
    match v {
        Variant::RangeTable => s.table.kind(ip).map_or(0, |k| k as u64 + 1),
        Variant::RangeTableRule => s.table.lookup(ip).map_or(0, |r| r.id as u64),
        Variant::BinarySearch => s.reference.lookup(ip).map_or(0, |r| r.id as u64),
        Variant::MaxMind => s
            .reader
            .lookup(ip)
            .ok()
            .and_then(|r| r.decode_path::<&str>(&ISO_PATH).ok().flatten())
            .map_or(0, |c| c.len() as u64),
    }
}

fn lists(s: &Setup) -> [(&'static str, &[IpAddr]); 4] {
    [
        ("ipv4_random_1m", &s.v4[..]),
        ("ipv4_hot_1000", &s.v4[..HOT]),
        ("ipv6_random_1m", &s.v6[..]),
        ("ipv6_hot_1000", &s.v6[..HOT]),
    ]
}

fn lookups(c: &mut Criterion) {
    let s = setup();
    for (name, list) in lists(s) {
        let mut group = c.benchmark_group(format!("lookup/{name}"));
        group.throughput(Throughput::Elements(1));
        for (variant, vname) in VARIANTS {
            group.bench_function(vname, |b| {
                let mut i = 0usize;
                b.iter(|| {
                    let ip = list[i];
                    i += 1;
                    if i == list.len() {
                        i = 0;
                    }
                    black_box(one(s, variant, ip))
                })
            });
        }
        group.finish();
    }
}

fn builds(c: &mut Criterion) {
    let s = setup();
    let mut group = c.benchmark_group("build");
    group.sample_size(10);
    group.bench_function("range_table", |b| {
        b.iter_batched(|| s.rules.clone(), RangeTable::build, BatchSize::LargeInput)
    });
    group.bench_function("binary_search_table", |b| {
        b.iter_batched(
            || s.rules.clone(),
            BinarySearchTable::build,
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args()
}

criterion_group! {
    name = benches;
    config = config();
    targets = lookups, builds
}

fn main() {
    // `LOOKUP_PROFILE=<list>/<variant>` (e.g. `ipv4_random_1m/range_table`): only that loop,
    // for 5 s, and nothing else: a steady target for `perf stat` / `perf record`.
    if let Ok(target) = std::env::var("LOOKUP_PROFILE") {
        profile(&target);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
    // `cargo test --benches` runs each criterion benchmark once without `--bench`; the
    // summary is timing only, so it runs under `cargo bench` alone.
    if std::env::args().any(|a| a == "--bench") {
        summary();
    }
}

fn profile(target: &str) {
    let s = setup();
    let Some((list, variant)) = target.split_once('/') else {
        eprintln!("LOOKUP_PROFILE=<list>/<variant>");
        return;
    };
    let list = lists(s).into_iter().find(|(name, _)| *name == list);
    let variant = VARIANTS.iter().find(|(_, name)| *name == variant);
    let (Some((_, list)), Some(&(variant, _))) = (list, variant) else {
        eprintln!("unknown list or variant in {target}");
        return;
    };
    let started = Instant::now();
    let (mut n, mut acc) = (0u64, 0u64);
    while started.elapsed() < Duration::from_secs(5) {
        for _ in 0..(ADDRESSES / list.len()) {
            for ip in list {
                acc = acc.wrapping_add(one(s, variant, *ip));
            }
        }
        n += ADDRESSES as u64;
    }
    black_box(acc);
    println!(
        "{target}: {:.1} ns/lookup over {n} lookups",
        started.elapsed().as_nanos() as f64 / n as f64
    );
}

// ---- the summary: one run, ratios against baselines measured in it ----

fn summary() {
    let s = setup();
    println!();
    println!("== data");
    let (n4, n6) = s.table.segment_counts();
    println!(
        "GeoLite2-Country-2019-12-24: {} IPv4 and {} IPv6 networks; permit {:?}: {} IPv4 + {} IPv6 merged ranges; {} rules in all (with {} denies and builtins); segments: {n4} IPv4, {n6} IPv6",
        s.catalog.v4_networks.len(),
        s.catalog.v6_networks.len(),
        common::COUNTRIES,
        s.catalog.v4_ranges(),
        s.catalog.v6_ranges(),
        s.rules.len(),
        common::DENY_ENTRIES,
    );
    let m = s.table.memory();
    println!(
        "index: IPv4 {} levels below the root, {} KiB, {} leaves binary-searched; IPv6 {} levels, {} KiB, {} searched",
        m.v4_index_levels,
        m.v4_index_bytes / 1024,
        m.v4_searched_leaves,
        m.v6_index_levels,
        m.v6_index_bytes / 1024,
        m.v6_searched_leaves
    );
    let hits = |list: &[IpAddr]| {
        list.iter()
            .filter(|ip| s.table.lookup(**ip).is_some())
            .count()
    };
    println!(
        "hit rate: IPv4 {:.1}%, IPv6 {:.1}% of the sampled addresses have a rule",
        100.0 * hits(&s.v4) as f64 / s.v4.len() as f64,
        100.0 * hits(&s.v6) as f64 / s.v6.len() as f64
    );
    // The two layouts must agree on every sampled address (the property tests check more).
    for ip in s.v4.iter().chain(&s.v6) {
        assert_eq!(
            s.table.lookup(*ip),
            s.reference.lookup(*ip),
            "layouts disagree at {ip}"
        );
    }

    println!();
    println!(
        "== warm: ns/lookup, one pass over the list (hot: 1,000 passes over 1,000), median of 5"
    );
    println!("| addresses | range_table (verdict) | range_table_rule | binary_search | maxminddb | maxminddb / range_table | maxminddb / range_table_rule | binary_search / range_table_rule |");
    println!("|---|---|---|---|---|---|---|---|");
    for (name, list) in lists(s) {
        let passes = ADDRESSES / list.len();
        let ns: Vec<f64> = VARIANTS
            .iter()
            .map(|&(v, _)| {
                let mut runs: Vec<f64> = (0..5)
                    .map(|_| {
                        let t = Instant::now();
                        let mut acc = 0u64;
                        for _ in 0..passes {
                            for ip in list {
                                acc = acc.wrapping_add(one(s, v, *ip));
                            }
                        }
                        black_box(acc);
                        t.elapsed().as_nanos() as f64 / (passes * list.len()) as f64
                    })
                    .collect();
                median(&mut runs)
            })
            .collect();
        println!(
            "| {name} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1}× | {:.1}× | {:.1}× |",
            ns[0],
            ns[1],
            ns[2],
            ns[3],
            ns[3] / ns[0],
            ns[3] / ns[1],
            ns[2] / ns[1]
        );
    }

    // LOOKUP_SUMMARY=warm stops here (quick iterations on the layout).
    if std::env::var("LOOKUP_SUMMARY").is_ok_and(|v| v == "warm") {
        return;
    }
    cold(s);
    build_and_memory(s);
    swap_under_load(s);
}

/// Each lookup timed alone after reading a 64 MiB buffer (twice the L3), so the table, the
/// database and the TLB start cold. The cost of the timer itself (timed empty) is subtracted.
fn cold(s: &Setup) {
    const SAMPLES: usize = 301;
    let flush: Vec<u64> = (0..(64 << 20) / 8).map(|i| i as u64).collect();
    let evict = || {
        let mut acc = 0u64;
        for chunk in flush.chunks(8) {
            acc = acc.wrapping_add(chunk[0]);
        }
        black_box(acc);
    };
    let time = |f: &dyn Fn(usize) -> u64| {
        let mut t: Vec<f64> = (0..SAMPLES)
            .map(|i| {
                evict();
                let start = Instant::now();
                black_box(f(i));
                start.elapsed().as_nanos() as f64
            })
            .collect();
        median(&mut t)
    };
    let timer = time(&|i| i as u64);
    println!();
    println!("== cold: ns/lookup after evicting the caches (64 MiB read), median of {SAMPLES}, timer cost {timer:.0} ns subtracted");
    println!("| family | range_table (verdict) | range_table_rule | binary_search | maxminddb | maxminddb / range_table | maxminddb / range_table_rule |");
    println!("|---|---|---|---|---|---|---|");
    for (name, list) in [("ipv4", &s.v4), ("ipv6", &s.v6)] {
        let ns: Vec<f64> = VARIANTS
            .iter()
            .map(|&(v, _)| (time(&|i| one(s, v, list[i * 997])) - timer).max(1.0))
            .collect();
        println!(
            "| {name} | {:.0} | {:.0} | {:.0} | {:.0} | {:.1}× | {:.1}× |",
            ns[0],
            ns[1],
            ns[2],
            ns[3],
            ns[3] / ns[0],
            ns[3] / ns[1]
        );
    }
}

fn build_and_memory(s: &Setup) {
    println!();
    println!("== build (median of 5)");
    let time = |f: &dyn Fn()| {
        let mut t: Vec<f64> = (0..5)
            .map(|_| {
                let start = Instant::now();
                f();
                start.elapsed().as_secs_f64() * 1e3
            })
            .collect();
        median(&mut t)
    };
    let table_ms = time(&|| {
        let _ = black_box(RangeTable::build(s.rules.clone()));
    });
    let reference_ms = time(&|| {
        let _ = black_box(BinarySearchTable::build(s.rules.clone()));
    });
    let clone_ms = time(&|| {
        black_box(s.rules.clone());
    });
    // The full path a reload takes: read the store (SQLite file with the full tables), compile.
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("bench.db").display());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let store = rt.block_on(async {
        let store = ipcountry::store::Store::open(&url)
            .await
            .expect("open store");
        common::fill_store(&url, &s.rules).await;
        store
    });
    let load_ms = time(&|| {
        black_box(rt.block_on(store.load_policy()).expect("load"));
    });
    let reload_ms = time(&|| {
        black_box(
            rt.block_on(ipcountry::reload::build(&store, Builtins::On))
                .expect("reload"),
        );
    });
    rt.block_on(store.close());
    println!("| step | ms |");
    println!("|---|---|");
    println!(
        "| clone the {} rules (included in the two rows below) | {clone_ms:.1} |",
        s.rules.len()
    );
    println!("| RangeTable::build (sweep + bucket index + 64-bit IPv6) | {table_ms:.1} |");
    println!("| BinarySearchTable::build (sweep only) | {reference_ms:.1} |");
    println!("| store.load_policy() (SQLite read of all rows) | {load_ms:.1} |");
    println!("| reload::build (store read + compile on a blocking thread) | {reload_ms:.1} |");

    let m = s.table.memory();
    let v4_ranges = s
        .rules
        .iter()
        .filter(|r| matches!(r.range, IpRange::V4 { .. }))
        .count();
    let v6_ranges = s.rules.len() - v4_ranges;
    println!();
    println!("== memory (RangeTable::memory(), measured from the allocated capacities)");
    println!("| part | count | bytes | bytes each |");
    println!("|---|---|---|---|");
    println!(
        "| IPv4 segments | {} | {} | {:.2} |",
        m.v4_segments,
        m.v4_segment_bytes,
        m.v4_segment_bytes as f64 / m.v4_segments.max(1) as f64
    );
    println!(
        "| IPv4 index (65,536 root slots, {} levels below) | | {} | |",
        m.v4_index_levels, m.v4_index_bytes
    );
    println!(
        "| IPv6 segments, 64-bit keys | {} | {} | {:.2} |",
        m.v6_segments,
        m.v6_segment_bytes,
        m.v6_segment_bytes as f64 / m.v6_segments.max(1) as f64
    );
    println!(
        "| IPv6 index ({} levels below the root) | | {} | |",
        m.v6_index_levels, m.v6_index_bytes
    );
    println!(
        "| IPv6 segments, full width (`::1`, custom /128s) | {} | {} | {:.2} |",
        m.v6_fine_segments,
        m.v6_fine_bytes,
        m.v6_fine_bytes as f64 / m.v6_fine_segments.max(1) as f64
    );
    println!(
        "| per IPv4 input rule ({v4_ranges}), index excluded | | | {:.2} |",
        m.v4_segment_bytes as f64 / v4_ranges as f64
    );
    println!(
        "| per IPv6 input rule ({v6_ranges}), full-width part included | | | {:.2} |",
        (m.v6_segment_bytes + m.v6_fine_bytes) as f64 / v6_ranges as f64
    );
    println!(
        "| BinarySearchTable (baseline), all | {} segments | {} | |",
        n_segments(&s.reference),
        s.reference.heap_bytes()
    );
}

fn n_segments(t: &BinarySearchTable) -> usize {
    let (a, b) = t.segment_counts();
    a + b
}

/// Lookup latency through `SharedPolicy::load()` while another thread compiles full
/// snapshots and swaps them in, against the same loop with no swapping.
fn swap_under_load(s: &Setup) {
    const LOOKUPS: usize = 2_000_000;
    let run = |swapping: bool| {
        let shared = Arc::new(SharedPolicy::new(
            Policy::try_compile(None, s.rules.clone(), Vec::new(), Builtins::Off).expect("policy"),
        ));
        let stop = Arc::new(AtomicBool::new(false));
        let swaps = std::thread::scope(|scope| {
            let writer = swapping.then(|| {
                let shared = shared.clone();
                let stop = stop.clone();
                let rules = s.rules.clone();
                scope.spawn(move || {
                    let mut n = 0u32;
                    while !stop.load(Ordering::Relaxed) {
                        // As reload does: compile off the hot path, then one pointer swap.
                        shared.replace(
                            Policy::try_compile(None, rules.clone(), Vec::new(), Builtins::Off)
                                .expect("policy"),
                        );
                        n += 1;
                    }
                    n
                })
            });
            let mut lat: Vec<u32> = Vec::with_capacity(LOOKUPS);
            let started = Instant::now();
            for i in 0..LOOKUPS {
                let ip = s.v4[i % s.v4.len()];
                let t = Instant::now();
                let policy = shared.load();
                black_box(policy.table().lookup(ip).map(|r| r.id));
                lat.push(t.elapsed().as_nanos() as u32);
            }
            let elapsed = started.elapsed();
            stop.store(true, Ordering::Relaxed);
            let swaps = writer.map_or(0, |w| w.join().unwrap_or(0));
            (lat, elapsed, swaps)
        });
        swaps
    };
    println!();
    println!("== snapshot swaps: load() + lookup latency (ns, timer included) while another thread compiles and swaps in full snapshots");
    println!("| writer | swaps | lookups/s | p50 | p99 | p99.9 | max |");
    println!("|---|---|---|---|---|---|---|");
    for swapping in [false, true] {
        let (mut lat, elapsed, swaps) = run(swapping);
        lat.sort_unstable();
        let p = |q: f64| lat[((lat.len() as f64 * q) as usize).min(lat.len() - 1)];
        println!(
            "| {} | {swaps} | {:.1} M | {} | {} | {} | {} |",
            if swapping { "swapping" } else { "none" },
            lat.len() as f64 / elapsed.as_secs_f64() / 1e6,
            p(0.5),
            p(0.99),
            p(0.999),
            lat[lat.len() - 1]
        );
    }
}
