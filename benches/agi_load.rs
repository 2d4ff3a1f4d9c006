//! Calls per second: N concurrent fake Asterisks against a release `ipcountry serve` and,
//! in the same run, against a minimal "floor" server (TCP + framing and nothing else).
//!
//! Each call plays Asterisk as the fixtures show it: connect, send a real environment block
//! (`sessions/pjsip-ipv4.header.raw` with a different From and source per call, drawn from
//! the GeoLite2 networks, so calls are permitted, denied or strangers), answer every command
//! (`200 result=1`, or `200 result=0` to `EXEC`), and wait for the server to close. The
//! block goes out in one write, or line by line (one write per `agi_*` line, as Asterisk
//! 20 does: its block arrives in 1 to 20+ TCP segments, see the fixtures' README).
//!
//! Servers, each its own process, started here and stopped (SIGTERM) at the end:
//! * `floor`: this binary re-run with `AGI_LOAD_FLOOR=1`: per worker thread
//!   (`AGI_LOAD_SERVER_THREADS`, default 1) a current-thread runtime; per call one read
//!   buffer, frame at the empty line, write one fixed `SET VARIABLE`, read its reply, close;
//! * `serve (defaults)`: `ipcountry serve` exactly as README's "Run it" starts it: no flags,
//!   the default log level (a line per call at `info`), the default address 127.0.0.1:4573
//!   (which must be free), the database from `IPCOUNTRY_DB`;
//! * variants, on ports of their own, compared at 1, 64 and 256 clients with the block in one
//!   write: `--reply set-variable` (three round trips), `--threads 2` (two workers on
//!   `SO_REUSEPORT` sockets), and `RUST_LOG=warn` (no line per call).
//!
//! The servers read a SQLite database holding the benchmark policy (permit US, CA, GB, DE,
//! 1,000 denies, builtins). The client runs `AGI_LOAD_CLIENT_THREADS` threads (default 2), each a current-thread runtime:
//! on this 2-core machine client and server then share both cores, so a server that needs
//! more CPU per call also gets fewer calls through. Reported per run: calls/s, latency
//! (connect to close) p50/p99/p99.9, server CPU per call (all its threads, from
//! `/proc/<pid>/task/*/schedstat`), client CPU per call, failed calls; and each against the
//! floor measured just before it.
//!
//! The machine is shared and noisy, so each (mode, clients) cell runs every server in turn,
//! `AGI_LOAD_REPS` times (default 3), and reports the median of each metric.
//!
//! Then, at the rates a PBX sees (issue 18), the floor and the defaults (and, with the variants,
//! `RUST_LOG=warn`: what the line per call costs there):
//! * **paced**: one call at a time, `AGI_LOAD_PACED` calls per second (default 20; 0 skips it)
//!   for `AGI_LOAD_PACED_SECS` (default 10), the block line by line as Asterisk writes it;
//!   server CPU per call counts everything the server spent in the window (its idle share
//!   included), and latency is connect to close; the median of the windows, then each window
//!   (so that one that went wrong shows);
//! * **idle**: no call at all for `AGI_LOAD_IDLE_SECS` (default 60; 0 skips it), all servers at
//!   once: CPU per second and wake-ups per second (voluntary context switches of all threads).
//!
//! `cargo bench --bench agi_load`. Knobs: `AGI_LOAD_SECS` (per run, default 2),
//! `AGI_LOAD_LEVELS` (default `1,16,64,256,1024`; empty for none), `AGI_LOAD_REPS`,
//! `AGI_LOAD_SERVER_THREADS` (the floor's), `AGI_LOAD_CLIENT_THREADS`, `AGI_LOAD_VARIANTS=0`
//! (the floor and the defaults only), `AGI_LOAD_PACED`, `AGI_LOAD_PACED_SECS`,
//! `AGI_LOAD_IDLE_SECS`.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::{Command, Stdio};

use common::Server;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Blocks with different From headers, cycled through by the clients.
const BLOCKS: usize = 4096;

/// Deadline for one call; a call that takes longer counts as failed.
const CALL_DEADLINE: Duration = Duration::from_secs(10);

fn main() {
    // 1,024 concurrent calls need more open files than the usual soft limit, on both ends.
    ipcountry::fdlimit::ensure(ipcountry::fdlimit::needed(2048, 2)).expect("open-files limit");
    if std::env::var_os("AGI_LOAD_FLOOR").is_some() {
        floor_main();
        return;
    }
    if !std::env::args().any(|a| a == "--bench") {
        println!("agi_load: timing only; run it with `cargo bench --bench agi_load`");
        return;
    }
    let secs: f64 = env_or("AGI_LOAD_SECS", 2.0);
    let server_threads: usize = env_or("AGI_LOAD_SERVER_THREADS", 1);
    let levels: Vec<usize> = std::env::var("AGI_LOAD_LEVELS")
        .unwrap_or_else(|_| "1,16,64,256,1024".into())
        .split(',')
        .filter_map(|x| x.trim().parse().ok())
        .collect();
    let run_time = Duration::from_secs_f64(secs);

    // The policy database and the call blocks.
    let reader = common::open_geolite();
    let catalog = common::read_catalog(&reader);
    let rules = common::policy_rules(&catalog, 42);
    let blocks = Arc::new(make_blocks(&catalog));
    let client_threads: usize = env_or("AGI_LOAD_CLIENT_THREADS", 2).max(1);
    let reps: usize = env_or("AGI_LOAD_REPS", 3).max(1);
    let dir = tempfile::tempdir().expect("tempdir");
    let db = format!("sqlite://{}", dir.path().join("bench.db").display());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("client runtime");
    rt.block_on(async {
        let store = ipcountry::store::Store::open(&db)
            .await
            .expect("open store");
        common::fill_store(&db, &rules).await;
        store.close().await;
    });

    let threads = server_threads.to_string();
    // `AGI_LOAD_VARIANTS=0` runs only the floor and the defaults.
    let variants: bool = env_or("AGI_LOAD_VARIANTS", 1) != 0;
    let mut servers: Vec<(&str, Server)> = vec![
        ("floor", floor_server(dir.path(), &threads)),
        // Exactly as README's "Run it" says: `ipcountry serve`, no flags, the default log
        // level (a line per call at `info`), the default address 127.0.0.1:4573; the database
        // comes from IPCOUNTRY_DB, the documented setting.
        ("serve (defaults)", Server::defaults(dir.path(), &db)),
    ];
    if variants {
        servers.extend([
            (
                "serve --reply set-variable",
                Server::serve(dir.path(), "sv", &db, &["--reply", "set-variable"], None),
            ),
            (
                "serve --threads 2",
                Server::serve(dir.path(), "t2", &db, &["--threads", "2"], None),
            ),
            (
                "serve, RUST_LOG=warn",
                Server::serve(dir.path(), "lw", &db, &[], Some("warn")),
            ),
        ]);
    }

    println!(
        "== machine: {} CPUs; floor threads {server_threads}; client: {client_threads} threads, one current-thread runtime each; {secs} s per run; median of {reps} interleaved runs",
        std::thread::available_parallelism().map_or(0, usize::from)
    );
    // Warm up every server (page cache, allocator, accept queue).
    for (_, server) in &servers {
        let _ = run_level(
            server.addr,
            &blocks,
            8,
            Duration::from_millis(300),
            false,
            client_threads,
        );
    }
    println!();
    println!("| block sent | clients | server | calls/s | vs floor | p50 µs | p99 µs | p99.9 µs | p50 vs floor | server CPU µs/call | vs floor | client CPU µs/call | failed |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for line_by_line in [false, true] {
        for &clients in &levels {
            // Runs of the servers interleaved, `reps` times; each metric is the median.
            let mut runs: Vec<Vec<Stats>> = servers.iter().map(|_| Vec::new()).collect();
            for _ in 0..reps {
                for (k, (_, server)) in servers.iter().enumerate() {
                    // The variants only where they are compared.
                    let extra = k > 1;
                    if extra && (line_by_line || ![1, 64, 256].contains(&clients)) {
                        continue;
                    }
                    let cpu_before = server.cpu_ns();
                    let client_before = process_cpu_ns();
                    let mut st = run_level(
                        server.addr,
                        &blocks,
                        clients,
                        run_time,
                        line_by_line,
                        client_threads,
                    );
                    st.server_cpu_ns = server.cpu_ns().saturating_sub(cpu_before);
                    st.client_cpu_ns = process_cpu_ns().saturating_sub(client_before);
                    runs[k].push(st);
                }
            }
            let summaries: Vec<Option<Summary>> = runs.iter().map(|r| Summary::of(r)).collect();
            for (k, (name, _)) in servers.iter().enumerate() {
                if let Some(sum) = &summaries[k] {
                    print_row(line_by_line, clients, name, sum, summaries[0].as_ref());
                }
            }
        }
    }
    // The floor, the defaults and, with the variants, the defaults without the line per call
    // (what the log line costs at a PBX's rates).
    let quiet: Vec<&(&str, Server)> = servers
        .iter()
        .enumerate()
        .filter(|(k, (name, _))| *k < 2 || name.contains("RUST_LOG"))
        .map(|(_, s)| s)
        .collect();
    paced_and_idle(&quiet, &blocks, reps);
    for (_, mut server) in servers {
        server.stop();
    }
}

/// The paced and idle tables (see the module docs), for `servers` (the floor first).
fn paced_and_idle(servers: &[&(&str, Server)], blocks: &Arc<Vec<Vec<u8>>>, reps: usize) {
    let rate: f64 = env_or("AGI_LOAD_PACED", 20.0);
    let paced_secs: f64 = env_or("AGI_LOAD_PACED_SECS", 10.0);
    if rate > 0.0 && paced_secs > 0.0 {
        println!();
        println!("| paced | server | calls | server CPU µs/call (idle share included) | vs floor | p50 µs | p99 µs | p50 vs floor | failed |");
        println!("|---|---|---|---|---|---|---|---|---|");
        let mut runs: Vec<Vec<Stats>> = servers.iter().map(|_| Vec::new()).collect();
        for _ in 0..reps {
            for (k, &(_, server)) in servers.iter().enumerate() {
                let cpu_before = server.cpu_ns();
                let mut st = paced(
                    server.addr,
                    blocks,
                    rate,
                    Duration::from_secs_f64(paced_secs),
                );
                st.server_cpu_ns = server.cpu_ns().saturating_sub(cpu_before);
                runs[k].push(st);
            }
        }
        let sums: Vec<Option<Summary>> = runs.iter().map(|r| Summary::of(r)).collect();
        for (k, &(name, _)) in servers.iter().enumerate() {
            let (Some(sum), floor) = (&sums[k], sums[0].as_ref()) else {
                continue;
            };
            let vs = |x: f64, f: f64| {
                if k == 0 || f <= 0.0 {
                    "–".to_owned()
                } else {
                    format!("{:.2}", x / f)
                }
            };
            let calls = runs[k].iter().map(|r| r.calls).sum::<usize>() / runs[k].len().max(1);
            println!(
                "| {rate}/s, line by line | {name} | {calls} | {:.1} | {} | {:.0} | {:.0} | {} | {} |",
                sum.cpu_us,
                vs(sum.cpu_us, floor.map_or(0.0, |f| f.cpu_us)),
                sum.p50,
                sum.p99,
                vs(sum.p50, floor.map_or(0.0, |f| f.p50)),
                sum.failed
            );
        }
        // Each window too, in the order run (the servers interleaved): a median hides a
        // window that went wrong, and the windows show whether it was one server's or the
        // machine's.
        println!();
        for (k, &(name, _)) in servers.iter().enumerate() {
            let windows: Vec<String> = runs[k]
                .iter()
                .map(|r| format!("{:.1} ({})", r.cpu_per_call_us(), r.pct(0.5)))
                .collect();
            println!(
                "paced windows, {name}: CPU µs/call (p50 µs) {}",
                windows.join(", ")
            );
        }
    }
    let idle_secs: f64 = env_or("AGI_LOAD_IDLE_SECS", 60.0);
    if idle_secs > 0.0 {
        // A moment for what the last calls left (log writes, timers) to settle.
        std::thread::sleep(Duration::from_secs(2));
        let before: Vec<(u64, u64)> = servers
            .iter()
            .map(|(_, s)| (s.cpu_ns(), s.wakeups()))
            .collect();
        std::thread::sleep(Duration::from_secs_f64(idle_secs));
        println!();
        println!(
            "| idle, {idle_secs} s, no call | server | CPU ms per second | wake-ups per second |"
        );
        println!("|---|---|---|---|");
        for (&(name, server), (cpu, wakes)) in servers.iter().zip(before) {
            let cpu_ms = server.cpu_ns().saturating_sub(cpu) as f64 / 1e6 / idle_secs;
            let wakes = server.wakeups().saturating_sub(wakes) as f64 / idle_secs;
            println!("| | {name} | {cpu_ms:.3} | {wakes:.1} |");
        }
    }
}

/// One call at a time at `rate` calls per second for `duration`, line by line.
fn paced(addr: SocketAddr, blocks: &Arc<Vec<Vec<u8>>>, rate: f64, duration: Duration) -> Stats {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("client runtime");
    let started = Instant::now();
    let (latency, failed) = rt.block_on(async {
        let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut buf = Vec::with_capacity(4096);
        let (mut lat, mut failed) = (Vec::new(), 0usize);
        let mut n = 0;
        while started.elapsed() < duration {
            tick.tick().await;
            let block = &blocks[n % blocks.len()];
            n += 1;
            let t = Instant::now();
            match tokio::time::timeout(CALL_DEADLINE, call(addr, block, true, &mut buf)).await {
                Ok(Ok(_)) => lat.push(t.elapsed().as_micros().min(u128::from(u32::MAX)) as u32),
                _ => failed += 1,
            }
        }
        (lat, failed)
    });
    let mut st = Stats {
        calls: latency.len(),
        failed,
        elapsed: started.elapsed(),
        latency,
        ..Stats::default()
    };
    st.latency.sort_unstable();
    st
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The recorded pjsip block with its arguments (source first, then the From) and the uniqueid
/// replaced.
fn make_blocks(cat: &common::Catalog) -> Vec<Vec<u8>> {
    let path = common::fixtures_dir().join("sessions/pjsip-ipv4.header.raw");
    let header = String::from_utf8(std::fs::read(&path).expect("fixture block")).expect("UTF-8");
    let v4 = common::sample_v4(cat, BLOCKS, 11);
    let v6 = common::sample_v6(cat, BLOCKS, 12);
    let mut rng = common::Lcg::new(13);
    (0..BLOCKS)
        .map(|n| {
            let ip = if rng.below(5) == 0 { v6[n] } else { v4[n] };
            let host = match ip {
                IpAddr::V4(a) => a.to_string(),
                IpAddr::V6(a) => format!("[{a}]"),
            };
            let mut out = String::with_capacity(header.len() + 64);
            for line in header.split_inclusive('\n') {
                if line.starts_with("agi_arg_1: ") {
                    out.push_str(&format!("agi_arg_1: {host}:5060\n"));
                } else if line.starts_with("agi_arg_2: ") {
                    out.push_str(&format!(
                        "agi_arg_2: Bob <sip:bob@{host}>;tag={n}SIPpTag001\n"
                    ));
                } else if line.starts_with("agi_uniqueid: ") {
                    out.push_str(&format!("agi_uniqueid: 1795611310.{n}\n"));
                } else {
                    out.push_str(line);
                }
            }
            out.into_bytes()
        })
        .collect()
}

/// A server process under test.
/// The floor server: this binary re-run with `AGI_LOAD_FLOOR=1`.
fn floor_server(dir: &Path, threads: &str) -> Server {
    let log_path = dir.join("floor.log");
    let out = std::fs::File::create(&log_path).expect("floor log");
    let child = Command::new(std::env::current_exe().expect("own path"))
        .env("AGI_LOAD_FLOOR", "1")
        .env("AGI_LOAD_SERVER_THREADS", threads)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(Stdio::null())
        .spawn()
        .expect("start the floor server");
    Server::wait_for_addr(child, &log_path)
}

/// CPU time of this process (the client), threads that have exited included, in ns
/// (`utime + stime` from `/proc/self/stat`, in 10 ms ticks).
fn process_cpu_ns() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the `(comm)`: state is field 3, utime 14, stime 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    (f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0)) * 10_000_000
}

#[derive(Debug, Default)]
struct Stats {
    calls: usize,
    failed: usize,
    elapsed: Duration,
    /// Latencies in µs, sorted.
    latency: Vec<u32>,
    server_cpu_ns: u64,
    client_cpu_ns: u64,
}

impl Stats {
    fn rate(&self) -> f64 {
        self.calls as f64 / self.elapsed.as_secs_f64()
    }
    fn pct(&self, q: f64) -> u32 {
        if self.latency.is_empty() {
            return 0;
        }
        self.latency[((self.latency.len() as f64 * q) as usize).min(self.latency.len() - 1)]
    }
    fn cpu_per_call_us(&self) -> f64 {
        self.server_cpu_ns as f64 / 1e3 / self.calls.max(1) as f64
    }
}

/// The medians of several runs of one server at one level.
struct Summary {
    rate: f64,
    p50: f64,
    p99: f64,
    p999: f64,
    cpu_us: f64,
    client_cpu_us: f64,
    failed: usize,
}

impl Summary {
    fn of(runs: &[Stats]) -> Option<Summary> {
        if runs.is_empty() {
            return None;
        }
        let med = |f: &dyn Fn(&Stats) -> f64| {
            let mut v: Vec<f64> = runs.iter().map(f).collect();
            common::median(&mut v)
        };
        Some(Summary {
            rate: med(&|s| s.rate()),
            p50: med(&|s| f64::from(s.pct(0.5))),
            p99: med(&|s| f64::from(s.pct(0.99))),
            p999: med(&|s| f64::from(s.pct(0.999))),
            cpu_us: med(&|s| s.cpu_per_call_us()),
            client_cpu_us: med(&|s| s.client_cpu_ns as f64 / 1e3 / s.calls.max(1) as f64),
            failed: runs.iter().map(|s| s.failed).sum(),
        })
    }
}

fn print_row(
    line_by_line: bool,
    clients: usize,
    name: &str,
    st: &Summary,
    floor: Option<&Summary>,
) {
    let vs = |x: f64, f: Option<f64>| match f {
        Some(f) if f > 0.0 && !name.starts_with("floor") => format!("{:.2}", x / f),
        _ => "–".into(),
    };
    println!(
        "| {} | {clients} | {name} | {:.0} | {} | {:.0} | {:.0} | {:.0} | {} | {:.1} | {} | {:.1} | {} |",
        if line_by_line { "line by line" } else { "one write" },
        st.rate,
        vs(st.rate, floor.map(|f| f.rate)),
        st.p50,
        st.p99,
        st.p999,
        vs(st.p50, floor.map(|f| f.p50)),
        st.cpu_us,
        vs(st.cpu_us, floor.map(|f| f.cpu_us)),
        st.client_cpu_us,
        st.failed
    );
}

/// `clients` concurrent fake Asterisks calling back to back for `duration`, spread over
/// `threads` client threads (each a current-thread runtime).
fn run_level(
    addr: SocketAddr,
    blocks: &Arc<Vec<Vec<u8>>>,
    clients: usize,
    duration: Duration,
    line_by_line: bool,
    threads: usize,
) -> Stats {
    let started = Instant::now();
    let deadline = started + duration;
    let threads = threads.min(clients).max(1);
    let workers: Vec<_> = (0..threads)
        .map(|t| {
            let blocks = blocks.clone();
            // Clients t, t + threads, t + 2 * threads, ...
            let mine: Vec<usize> = (t..clients).step_by(threads).collect();
            std::thread::spawn(move || {
                client_thread(addr, blocks, mine, clients, deadline, line_by_line)
            })
        })
        .collect();
    let mut st = Stats::default();
    for w in workers {
        if let Ok((lat, failed)) = w.join() {
            st.calls += lat.len();
            st.latency.extend(lat);
            st.failed += failed;
        }
    }
    st.elapsed = started.elapsed();
    st.latency.sort_unstable();
    st
}

fn client_thread(
    addr: SocketAddr,
    blocks: Arc<Vec<Vec<u8>>>,
    clients: Vec<usize>,
    stride: usize,
    deadline: Instant,
    line_by_line: bool,
) -> (Vec<u32>, usize) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("client runtime");
    let local = tokio::task::LocalSet::new();
    let handles: Vec<_> = clients
        .into_iter()
        .map(|c| {
            let blocks = blocks.clone();
            local.spawn_local(async move {
                let mut lat = Vec::new();
                let mut failed = 0usize;
                let mut buf = Vec::with_capacity(4096);
                let mut n = c;
                while Instant::now() < deadline {
                    let block = &blocks[n % blocks.len()];
                    n += stride;
                    let t = Instant::now();
                    match tokio::time::timeout(
                        CALL_DEADLINE,
                        call(addr, block, line_by_line, &mut buf),
                    )
                    .await
                    {
                        Ok(Ok(_)) => {
                            lat.push(t.elapsed().as_micros().min(u128::from(u32::MAX)) as u32)
                        }
                        _ => failed += 1,
                    }
                }
                (lat, failed)
            })
        })
        .collect();
    rt.block_on(local.run_until(async {
        let mut lat = Vec::new();
        let mut failed = 0;
        for h in handles {
            if let Ok((l, f)) = h.await {
                lat.extend(l);
                failed += f;
            }
        }
        (lat, failed)
    }))
}

/// One call; the number of commands the server sent.
async fn call(
    addr: SocketAddr,
    block: &[u8],
    line_by_line: bool,
    buf: &mut Vec<u8>,
) -> std::io::Result<usize> {
    let mut s = TcpStream::connect(addr).await?;
    s.set_nodelay(true)?;
    if line_by_line {
        for line in block.split_inclusive(|&b| b == b'\n') {
            s.write_all(line).await?;
        }
    } else {
        s.write_all(block).await?;
    }
    buf.clear();
    let mut commands = 0;
    loop {
        if s.read_buf(buf).await? == 0 {
            break;
        }
        while let Some(i) = buf.iter().position(|&b| b == b'\n') {
            let reply: &[u8] = if buf.starts_with(b"EXEC ") {
                b"200 result=0\n"
            } else {
                b"200 result=1\n"
            };
            buf.drain(..=i);
            commands += 1;
            s.write_all(reply).await?;
        }
    }
    if commands == 0 {
        return Err(std::io::Error::other("closed without a command"));
    }
    Ok(commands)
}

// ---- the floor server ----

/// The floor: accept, read the block through one buffer up to the empty line, write one
/// fixed command, read its reply, close. One current-thread runtime per worker thread, all
/// accepting on the same socket (the same shape as `ipcountry serve`'s default).
fn floor_main() {
    let threads: usize = env_or("AGI_LOAD_SERVER_THREADS", 1).max(1);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let listener = rt
        .block_on(TcpListener::bind("127.0.0.1:0"))
        .expect("bind")
        .into_std()
        .expect("std listener");
    println!("listening on {}", listener.local_addr().expect("addr"));
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let l = listener.try_clone().expect("clone listener");
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                rt.block_on(async move {
                    let l = TcpListener::from_std(l).expect("register listener");
                    loop {
                        if let Ok((s, _)) = l.accept().await {
                            tokio::spawn(floor_call(s));
                        }
                    }
                })
            })
        })
        .collect();
    for w in workers {
        let _ = w.join();
    }
}

async fn floor_call(mut s: TcpStream) {
    let _ = s.set_nodelay(true);
    let mut buf = Vec::with_capacity(4096);
    let mut scanned = 0usize;
    loop {
        match s.read_buf(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let from = scanned.saturating_sub(1);
        if buf[from..].windows(2).any(|w| w == b"\n\n") {
            break;
        }
        scanned = buf.len();
    }
    if s.write_all(b"SET VARIABLE STRANGER \"false\"\n")
        .await
        .is_err()
    {
        return;
    }
    buf.clear();
    loop {
        match s.read_buf(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) if buf.contains(&b'\n') => break,
            Ok(_) => {}
        }
    }
    let _ = s.shutdown().await;
}
