//! The AMI message reader on any bytes in any chunking: never a panic, every message within
//! the limits.
#![no_main]

mod chunked;

use ipcountry::ami::frame::{read_message, Limits};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    chunked::block_on(async {
        let mut reader = tokio::io::BufReader::new(chunked::Chunked::new(data));
        for _ in 0..64 {
            match read_message(&mut reader, &limits).await {
                Ok(Some(m)) => assert!(m.headers().len() <= limits.max_headers),
                Ok(None) | Err(_) => break,
            }
        }
    });
});
