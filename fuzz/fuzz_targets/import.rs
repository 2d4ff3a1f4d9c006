//! The catalog readers (format detection, .mmdb through the maxminddb crate's own checks,
//! GeoLite2 CSV, start,end,country CSV, gzip) on any file: a catalog or an error, never a
//! panic. The first byte picks the file name the detection sees.
#![no_main]

use std::io::Write;

use ipcountry::import::{read, ImportOptions};
use libfuzzer_sys::fuzz_target;

const NAMES: [&str; 6] = [
    "catalog.mmdb",
    "GeoLite2-Country-Blocks-IPv4.csv",
    "ranges.csv",
    "ranges.csv.gz",
    "catalog",
    "GeoLite2-Country-Locations-en.csv",
];

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("ipcountry-fuzz-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join(NAMES[usize::from(pick) % NAMES.len()]);
    let written = std::fs::File::create(&path).and_then(|mut f| f.write_all(body));
    if written.is_err() {
        return;
    }
    let _ = read(&[path.clone()], &ImportOptions::default());
    let _ = std::fs::remove_file(&path);
});
