//! Parsing benchmarks on the recorded Asterisk sessions: the `agi_*` environment block
//! (`AgiEnv::parse`), the From header (`sip::from::parse`) and the whole request
//! (`CallArgs` + `ScreenRequest::parse`), for every `screen` header block in
//! `../shared/fixtures/asterisk-agi/sessions/` (one criterion benchmark per representative
//! case, and one pass over all of them).
//!
//! `cargo bench --bench parse`.

mod common;

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ipcountry::agi::env::AgiEnv;
use ipcountry::request::{CallArgs, ScreenRequest};
use ipcountry::sip::from;

/// `(case, header block)` for every recorded session.
fn blocks() -> Vec<(String, Vec<u8>)> {
    let dir = common::fixtures_dir().join("sessions");
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let case = name.strip_suffix(".header.raw")?.to_owned();
            Some((case, std::fs::read(e.path()).ok()?))
        })
        .collect();
    out.sort();
    out
}

fn parse(c: &mut Criterion) {
    let all = blocks();
    assert!(all.len() >= 30, "only {} recorded blocks", all.len());
    let picked = [
        "pjsip-ipv4",
        "chansip-ipv6",
        "pjsip-display-escaped",
        "pjsip-hostname",
    ];

    let mut group = c.benchmark_group("agi_env");
    for (case, block) in all.iter().filter(|(c, _)| picked.contains(&c.as_str())) {
        group.throughput(Throughput::Bytes(block.len() as u64));
        group.bench_function(case.as_str(), |b| {
            b.iter(|| black_box(AgiEnv::parse(black_box(block))))
        });
    }
    group.throughput(Throughput::Elements(all.len() as u64));
    group.bench_function("all_recorded_blocks", |b| {
        b.iter(|| {
            for (_, block) in &all {
                let _ = black_box(AgiEnv::parse(black_box(block)));
            }
        })
    });
    group.finish();

    // The From headers as Asterisk passed them (the recordings have the From first).
    let envs: Vec<(String, AgiEnv)> = all
        .iter()
        .filter_map(|(c, b)| Some((c.clone(), AgiEnv::parse(b).ok()?)))
        .collect();
    let args: Vec<(String, Vec<String>)> = envs
        .iter()
        .map(|(c, e)| (c.clone(), e.args().map(String::from).collect::<Vec<_>>()))
        .filter(|(_, a)| !a.is_empty())
        .collect();

    let mut group = c.benchmark_group("from_header");
    for (case, a) in args.iter().filter(|(c, _)| picked.contains(&c.as_str())) {
        let header = a[0].clone();
        group.bench_function(case.as_str(), |b| {
            b.iter(|| black_box(from::parse(black_box(&header))))
        });
    }
    group.throughput(Throughput::Elements(args.len() as u64));
    group.bench_function("all_recorded_froms", |b| {
        b.iter(|| {
            for (_, a) in &args {
                let _ = black_box(from::parse(black_box(&a[0])));
            }
        })
    });
    group.finish();

    let mut group = c.benchmark_group("request");
    // pjsip-ipv4 with its two arguments in the source-first order.
    let (_, recorded) = all
        .iter()
        .find(|(c, _)| c == "pjsip-ipv4")
        .expect("pjsip-ipv4 fixture");
    let block = String::from_utf8_lossy(recorded)
        .replace("agi_arg_2: 127.0.0.1:15201\n", "")
        .replace("agi_arg_1: ", "agi_arg_1: 127.0.0.1:15201\nagi_arg_2: ")
        .into_bytes();
    let pjsip = AgiEnv::parse(&block).expect("the rewritten block parses");
    assert_eq!(pjsip.args().next(), Some("127.0.0.1:15201"));
    group.bench_function("env_args_and_request_pjsip_ipv4", |b| {
        b.iter(|| {
            let call = CallArgs::new(black_box(&pjsip).args());
            let request = ScreenRequest::parse(&call);
            black_box(&request);
        })
    });
    group.bench_function("block_to_request_pjsip_ipv4", |b| {
        b.iter(|| {
            let env = AgiEnv::parse(black_box(&block)).expect("block parses");
            let call = CallArgs::new(env.args());
            let request = ScreenRequest::parse(&call);
            black_box(&request);
        })
    });
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args()
}

criterion_group! {
    name = benches;
    config = config();
    targets = parse
}
criterion_main!(benches);
