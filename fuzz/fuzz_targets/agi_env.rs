//! The FastAGI environment block reader and the reply reader after it, fed in arbitrary
//! chunkings: never a panic, limits enforced, every accepted block re-parses the same.
#![no_main]

mod chunked;

use ipcountry::agi::connection::{AgiConnection, Limits};
use ipcountry::agi::env::AgiEnv;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    chunked::block_on(async {
        let mut conn = AgiConnection::new(chunked::Chunked::new(data), tokio::io::sink(), limits);
        match conn.read_env().await {
            Ok(env) => {
                // What was accepted is within the limits, and encodes to a block that parses
                // to the same pairs (CR and LF inside values written as spaces).
                let vars: Vec<(&str, &str)> = env.vars().collect();
                assert!(vars.len() <= limits.max_lines);
                let block = ipcountry::agi::env::encode_block(&vars).expect("parsed names encode");
                let again = AgiEnv::parse(&block).expect("an encoded block parses");
                let spaced = |v: &str| v.replace(['\r', '\n'], " ");
                let want: Vec<(String, String)> =
                    vars.iter().map(|(k, v)| (k.to_string(), spaced(v))).collect();
                let got: Vec<(String, String)> =
                    again.vars().map(|(k, v)| (k.to_string(), v.to_string())).collect();
                assert_eq!(got, want);
                for _ in 0..4 {
                    if conn.read_reply().await.is_err() {
                        break;
                    }
                }
            }
            Err(e) if e.is_limit() => {
                let _ = conn.skip_env().await;
            }
            Err(_) => {}
        }
    });
});
