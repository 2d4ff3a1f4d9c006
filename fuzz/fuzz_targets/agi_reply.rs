//! The parser of Asterisk's replies (`200 result=1`, `510 …`, `520-…`) on any line.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = ipcountry::agi::reply::parse(data);
});
