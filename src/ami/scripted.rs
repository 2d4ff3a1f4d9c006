//! Test support, not part of the API: a scripted Asterisk Manager on `127.0.0.1:0` that
//! replays recorded bytes. It writes a banner, then reads the client's actions one by one
//! and answers each with the bytes scripted for its `ActionID` (nothing, if none are: the
//! client then times out), closing after `Logoff` or after a reply marked as the last. It
//! records every byte the client sent, so tests can compare them with the capture.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

use super::frame::{self, Limits};

/// The recorded AMI sessions (`../shared/fixtures/asterisk-ami/ami`).
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/asterisk-ami")
}

/// The bytes of `ami/<name>`. Panics when the file is missing: the fixtures are part of the
/// test setup.
pub fn fixture(name: &str) -> Vec<u8> {
    let path = fixtures().join("ami").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The first message block of `bytes` after the banner line (a login reply), with its blank
/// line.
pub fn login_reply(from_asterisk: &[u8]) -> Vec<u8> {
    let after_banner = split_after(from_asterisk, b"\r\n");
    after_banner[..block_len(after_banner)].to_vec()
}

/// The banner line of a capture, with its CRLF.
pub fn banner(from_asterisk: &[u8]) -> Vec<u8> {
    let rest = split_after(from_asterisk, b"\r\n");
    from_asterisk[..from_asterisk.len() - rest.len()].to_vec()
}

/// The `Response: Goodbye` block that ends a capture.
pub fn goodbye(from_asterisk: &[u8]) -> Vec<u8> {
    let needle = b"Response: Goodbye";
    let at = from_asterisk
        .windows(needle.len())
        .rposition(|w| w == needle)
        .expect("the capture ends with a goodbye");
    from_asterisk[at..].to_vec()
}

fn split_after<'a>(bytes: &'a [u8], sep: &[u8]) -> &'a [u8] {
    match bytes.windows(sep.len()).position(|w| w == sep) {
        Some(i) => &bytes[i + sep.len()..],
        None => &[],
    }
}

fn block_len(bytes: &[u8]) -> usize {
    match bytes.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(i) => i + 4,
        None => bytes.len(),
    }
}

/// What to do when an action arrives.
#[derive(Debug, Clone)]
pub struct Reply {
    /// Bytes to write.
    pub bytes: Vec<u8>,
    /// Close the connection after writing them.
    pub close: bool,
}

/// A scripted server. Build it, then [`ScriptedAmi::start`].
#[derive(Debug, Clone, Default)]
pub struct ScriptedAmi {
    banner: Vec<u8>,
    replies: HashMap<String, Reply>,
}

/// A running scripted server.
#[derive(Debug)]
pub struct Running {
    /// Where it listens.
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<u8>>>,
}

impl Running {
    /// Every byte clients have sent so far.
    pub fn received(&self) -> Vec<u8> {
        self.received.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// An `ami://` URL for it with this user and secret.
    pub fn url(&self, user: &str, secret: &str) -> String {
        format!("ami://{user}:{secret}@{}", self.addr)
    }
}

impl ScriptedAmi {
    /// A server that sends this banner (the capture's own, e.g.
    /// `Asterisk Call Manager/9.0.0\r\n`), answers `login-1` with the login reply and
    /// `logoff-1` with the goodbye of `login-good`.
    pub fn asterisk() -> ScriptedAmi {
        let good = fixture("login-good.from-asterisk.raw");
        ScriptedAmi::default()
            .with_banner(banner(&good))
            .on("login-1", login_reply(&good))
            .on_last("logoff-1", goodbye(&fixture("logoff.from-asterisk.raw")))
    }

    /// Replaces the banner (bytes written on connect; empty: none).
    pub fn with_banner(mut self, bytes: Vec<u8>) -> ScriptedAmi {
        self.banner = bytes;
        self
    }

    /// Answers the action with this `ActionID` with `bytes`.
    pub fn on(mut self, action_id: &str, bytes: Vec<u8>) -> ScriptedAmi {
        self.replies.insert(
            action_id.to_owned(),
            Reply {
                bytes,
                close: false,
            },
        );
        self
    }

    /// Answers with `bytes`, then closes the connection.
    pub fn on_last(mut self, action_id: &str, bytes: Vec<u8>) -> ScriptedAmi {
        self.replies
            .insert(action_id.to_owned(), Reply { bytes, close: true });
        self
    }

    /// Listens on `127.0.0.1:0` and serves every connection with the script, until the
    /// runtime ends.
    pub async fn start(self) -> Running {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let received = Arc::new(Mutex::new(Vec::new()));
        let script = Arc::new(self);
        let seen = received.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, script.clone(), seen.clone()));
            }
        });
        Running { addr, received }
    }
}

async fn serve(
    stream: tokio::net::TcpStream,
    script: Arc<ScriptedAmi>,
    received: Arc<Mutex<Vec<u8>>>,
) {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    if write.write_all(&script.banner).await.is_err() {
        return;
    }
    let limits = Limits::default();
    while let Ok(Some(action)) = frame::read_message(&mut reader, &limits).await {
        if let Ok(mut r) = received.lock() {
            for (k, v) in action.headers() {
                r.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
            }
            r.extend_from_slice(b"\r\n");
        }
        let Some(reply) = action.get("ActionID").and_then(|id| script.replies.get(id)) else {
            continue;
        };
        if write.write_all(&reply.bytes).await.is_err() || reply.close {
            return;
        }
    }
}
