//! One FastAGI (or stdin/stdout AGI) conversation with Asterisk: the only code that touches
//! the bytes on the wire.
//!
//! Data flow: `server` accepts a TCP connection (or `ipcountry agi` takes stdin/stdout) and
//! wraps the two halves in an [`AgiConnection`]. The session calls [`AgiConnection::read_env`]
//! once, then alternates [`AgiConnection::send`] and [`AgiConnection::read_reply`], and finally
//! [`AgiConnection::shutdown`]. The session only ever sees typed values: [`AgiEnv`], [`Reply`],
//! [`Command`].
//!
//! # Framing
//!
//! Incoming bytes go into one growing buffer (read in chunks of at least [`READ_CHUNK`] bytes,
//! never one syscall per line). Each call first *frames* (finds the end of the environment
//! block or of the reply), then *parses* the complete slice, then *advances* past it. Bytes
//! after a frame stay buffered for the next call: Asterisk writes line by line, a block may
//! arrive in 20+ segments, and an early `HANGUP\n` may arrive right behind the block.
//!
//! Framing is incremental within one call (each byte is examined once), and restarts from the
//! start of the unconsumed bytes at the beginning of each call. That makes `read_env` and
//! `read_reply` **cancel-safe**: if a `tokio::time::timeout` drops the future, no byte is
//! lost and the next call starts over. [`AgiConnection::send`] is not cancel-safe (a partly
//! written command cannot be taken back); after a cancelled send, close the connection.
//!
//! # Limits
//!
//! Asterisk is the peer, but anyone who can reach the port can connect, so every frame is
//! bounded by [`Limits`]; exceeding one is an error, not a truncation. There are no timeouts
//! in here: the session wraps calls in `tokio::time::timeout`. After any error other than a
//! [`ConnError::Command`] (nothing was written) the connection is in an unknown state and
//! should be closed.
//!
//! # No pipelining
//!
//! Asterisk reads commands through stdio and answers one at a time; a second command written
//! before the first reply sits unread until the socket closes (`pipelined-commands` fixture).
//! Send one command, read its reply, then send the next. `HANGUP` may arrive before the reply
//! to the command just sent: [`AgiConnection::read_reply`] returns it as [`Reply::Hangup`] and
//! the real reply comes with the next call.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::agi::command::{Command, CommandError};
use crate::agi::env::{is_blank_line, AgiEnv, EnvError};
use crate::agi::reply::{self, Reply, ReplyError};

/// Minimum free space reserved in the read buffer before each read.
pub const READ_CHUNK: usize = 4096;

/// Size bounds for what Asterisk sends.
///
/// The defaults are generous for Asterisk 20, whose environment block is about 700 bytes and
/// 25 lines plus the arguments, and whose replies are one short line (or the usage text of
/// one command):
///
/// | field | default | bounds |
/// |---|---|---|
/// | `max_line` | 8 KiB (8192) | bytes in one line before its `\n` |
/// | `max_block` | 64 KiB (65536) | bytes in the whole environment block / multi-line reply |
/// | `max_lines` | 256 | lines in the environment block (not counting the empty line) / multi-line reply |
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest line, in bytes, not counting its `\n`.
    pub max_line: usize,
    /// Largest environment block or multi-line reply, in bytes, terminator included.
    pub max_block: usize,
    /// Most lines in an environment block (the terminating empty line not counted) or in a
    /// multi-line reply.
    pub max_lines: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_line: 8 * 1024,
            max_block: 64 * 1024,
            max_lines: 256,
        }
    }
}

/// What went wrong on the connection.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnError {
    /// Reading from or writing to the peer failed.
    #[error("I/O error while {context}")]
    Io {
        /// What the connection was doing.
        context: &'static str,
        /// The underlying error (its `kind()` tells reset/broken pipe/... apart).
        #[source]
        source: std::io::Error,
    },
    /// The peer closed its side before a complete frame arrived.
    #[error("Asterisk closed the connection{}", closed_suffix(.partial))]
    Closed {
        /// Whether unconsumed bytes (an incomplete frame) were buffered at EOF.
        partial: bool,
    },
    /// A line exceeded [`Limits::max_line`] before its `\n`.
    #[error("AGI line longer than {limit} bytes")]
    LineTooLong {
        /// The limit that was exceeded.
        limit: usize,
    },
    /// A block or multi-line reply exceeded [`Limits::max_block`].
    #[error("AGI block larger than {limit} bytes")]
    BlockTooLarge {
        /// The limit that was exceeded.
        limit: usize,
    },
    /// A block or multi-line reply had more than [`Limits::max_lines`] lines.
    #[error("AGI block has more than {limit} lines")]
    TooManyLines {
        /// The limit that was exceeded.
        limit: usize,
    },
    /// The environment block was framed but is malformed.
    #[error(transparent)]
    Env(#[from] EnvError),
    /// A reply line was framed but is malformed.
    #[error(transparent)]
    Reply(#[from] ReplyError),
    /// The command could not be encoded; nothing was written.
    #[error(transparent)]
    Command(#[from] CommandError),
}

/// One AGI conversation over a reader and a writer (the halves of a `TcpStream` from
/// `into_split()`, or stdin/stdout).
#[derive(Debug)]
pub struct AgiConnection<R, W> {
    reader: R,
    writer: W,
    /// Received, not yet consumed bytes; the next frame starts at index 0.
    buf: Vec<u8>,
    /// Reused encode buffer for outgoing commands.
    out: Vec<u8>,
    limits: Limits,
}

impl<R, W> AgiConnection<R, W>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    /// Wraps a reader and a writer. Nothing is read or written yet.
    pub fn new(reader: R, writer: W, limits: Limits) -> Self {
        AgiConnection {
            reader,
            writer,
            buf: Vec::with_capacity(READ_CHUNK),
            out: Vec::with_capacity(256),
            limits,
        }
    }

    /// Reads the `agi_*` environment block, up to and including its empty line, and parses it.
    /// Bytes after the block stay buffered.
    ///
    /// Errors: [`ConnError::LineTooLong`], [`ConnError::BlockTooLarge`],
    /// [`ConnError::TooManyLines`] as soon as a read makes them certain;
    /// [`ConnError::Closed`] on EOF before the empty line; [`ConnError::Env`] if the framed
    /// block does not parse (the block is consumed either way).
    pub async fn read_env(&mut self) -> Result<AgiEnv, ConnError> {
        let mut scan = Scan::default();
        loop {
            if let Some(end) = scan.env_frame(&self.buf, &self.limits)? {
                let parsed = AgiEnv::parse(&self.buf[..end]);
                self.advance(end);
                return Ok(parsed?);
            }
            self.fill().await?;
        }
    }

    /// Encodes `cmd` into a reusable buffer and writes it with one `write_all`, then flushes.
    /// On [`ConnError::Command`] nothing is written.
    pub async fn send(&mut self, cmd: &Command<'_>) -> Result<(), ConnError> {
        self.out.clear();
        cmd.encode(&mut self.out)?;
        self.writer
            .write_all(&self.out)
            .await
            .map_err(|source| ConnError::Io {
                context: "writing an AGI command",
                source,
            })?;
        self.writer.flush().await.map_err(|source| ConnError::Io {
            context: "flushing an AGI command",
            source,
        })
    }

    /// Reads one reply: one line, or the multi-line usage reply (`520-...` up to and including
    /// the line starting with `520 `) as [`Reply::Usage`].
    ///
    /// A stray `HANGUP` line comes back as [`Reply::Hangup`]; Asterisk sends it once,
    /// unprompted, possibly before the reply to the last command, so the caller decides and
    /// usually calls `read_reply` again for the actual reply.
    pub async fn read_reply(&mut self) -> Result<Reply, ConnError> {
        let mut scan = Scan::default();
        loop {
            if let Some((end, usage)) = scan.reply_frame(&self.buf, &self.limits)? {
                let parsed = if usage {
                    Ok(Reply::Usage)
                } else {
                    reply::parse(&self.buf[..end - 1])
                };
                self.advance(end);
                return Ok(parsed?);
            }
            self.fill().await?;
        }
    }

    /// True if a complete `HANGUP\n` line is already buffered as the next line; consumes it.
    /// Does no I/O.
    pub fn hangup_pending(&mut self) -> bool {
        for line in [&b"HANGUP\n"[..], &b"HANGUP\r\n"[..]] {
            if self.buf.starts_with(line) {
                self.advance(line.len());
                return true;
            }
        }
        false
    }

    /// Flushes and shuts down the write side (FIN on TCP). Asterisk ends the AGI only when the
    /// server closes, so call this once the session is done.
    pub async fn shutdown(&mut self) -> Result<(), ConnError> {
        self.writer.flush().await.map_err(|source| ConnError::Io {
            context: "flushing before shutdown",
            source,
        })?;
        self.writer
            .shutdown()
            .await
            .map_err(|source| ConnError::Io {
                context: "shutting down the write side",
                source,
            })
    }

    /// Reads at least one more byte into the buffer, or reports EOF as `Closed`.
    async fn fill(&mut self) -> Result<(), ConnError> {
        self.buf.reserve(READ_CHUNK);
        let n = self
            .reader
            .read_buf(&mut self.buf)
            .await
            .map_err(|source| ConnError::Io {
                context: "reading from Asterisk",
                source,
            })?;
        if n == 0 {
            return Err(ConnError::Closed {
                partial: !self.buf.is_empty(),
            });
        }
        Ok(())
    }

    /// Drops the first `n` bytes (a consumed frame).
    fn advance(&mut self, n: usize) {
        self.buf.drain(..n);
    }
}

fn closed_suffix(partial: &bool) -> &'static str {
    if *partial {
        " in the middle of a frame"
    } else {
        ""
    }
}

/// Incremental framing state for one `read_env`/`read_reply` call.
#[derive(Debug, Default)]
struct Scan {
    /// Bytes of the buffer already examined.
    pos: usize,
    /// Start of the line being scanned.
    line_start: usize,
    /// Complete lines counted so far (env: non-empty lines; reply: lines of a `520-` block).
    lines: usize,
    /// The reply being framed started with `520-`.
    usage: bool,
}

impl Scan {
    /// The next complete line, `(start, index of its '\n')`, checking the line length.
    /// Advances `pos` and `line_start` past it.
    fn next_line(
        &mut self,
        buf: &[u8],
        limits: &Limits,
    ) -> Result<Option<(usize, usize)>, ConnError> {
        match buf[self.pos..].iter().position(|&b| b == b'\n') {
            Some(off) => {
                let nl = self.pos + off;
                let start = self.line_start;
                if nl - start > limits.max_line {
                    return Err(ConnError::LineTooLong {
                        limit: limits.max_line,
                    });
                }
                self.pos = nl + 1;
                self.line_start = nl + 1;
                Ok(Some((start, nl)))
            }
            None => {
                self.pos = buf.len();
                if buf.len() - self.line_start > limits.max_line {
                    return Err(ConnError::LineTooLong {
                        limit: limits.max_line,
                    });
                }
                Ok(None)
            }
        }
    }

    /// Length of the complete environment block at the start of `buf`, if there is one.
    fn env_frame(&mut self, buf: &[u8], limits: &Limits) -> Result<Option<usize>, ConnError> {
        while let Some((start, nl)) = self.next_line(buf, limits)? {
            if nl + 1 > limits.max_block {
                return Err(ConnError::BlockTooLarge {
                    limit: limits.max_block,
                });
            }
            if is_blank_line(&buf[start..nl]) {
                return Ok(Some(nl + 1));
            }
            self.lines += 1;
            if self.lines > limits.max_lines {
                return Err(ConnError::TooManyLines {
                    limit: limits.max_lines,
                });
            }
        }
        if buf.len() > limits.max_block {
            return Err(ConnError::BlockTooLarge {
                limit: limits.max_block,
            });
        }
        Ok(None)
    }

    /// Length of the complete reply at the start of `buf` and whether it is a multi-line
    /// usage reply, if there is one.
    fn reply_frame(
        &mut self,
        buf: &[u8],
        limits: &Limits,
    ) -> Result<Option<(usize, bool)>, ConnError> {
        while let Some((start, nl)) = self.next_line(buf, limits)? {
            let line = &buf[start..nl];
            if !self.usage {
                if !line.starts_with(b"520-") {
                    return Ok(Some((nl + 1, false)));
                }
                self.usage = true;
            }
            self.lines += 1;
            if self.lines > limits.max_lines {
                return Err(ConnError::TooManyLines {
                    limit: limits.max_lines,
                });
            }
            if nl + 1 > limits.max_block {
                return Err(ConnError::BlockTooLarge {
                    limit: limits.max_block,
                });
            }
            if line.starts_with(b"520 ") {
                return Ok(Some((nl + 1, true)));
            }
        }
        if self.usage && buf.len() > limits.max_block {
            return Err(ConnError::BlockTooLarge {
                limit: limits.max_block,
            });
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use proptest::prelude::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadBuf};
    use tokio::net::{TcpListener, TcpStream};

    use super::*;
    use crate::agi::env::tests::{fixture, session_cases};

    /// A reader that returns the given chunks one per `poll_read` (splitting a chunk only if
    /// the caller's buffer is smaller), then EOF. Counts the reads.
    struct Chunked {
        chunks: VecDeque<Vec<u8>>,
        reads: usize,
    }

    impl Chunked {
        fn new(chunks: impl IntoIterator<Item = Vec<u8>>) -> Self {
            Chunked {
                chunks: chunks.into_iter().collect(),
                reads: 0,
            }
        }

        fn bytes_each(bytes: &[u8]) -> Self {
            Self::new(bytes.iter().map(|&b| vec![b]))
        }

        fn lines(bytes: &[u8]) -> Self {
            Self::new(bytes.split_inclusive(|&b| b == b'\n').map(<[u8]>::to_vec))
        }
    }

    impl AsyncRead for Chunked {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<std::io::Result<()>> {
            self.reads += 1;
            if let Some(mut chunk) = self.chunks.pop_front() {
                let n = chunk.len().min(buf.remaining());
                buf.put_slice(&chunk[..n]);
                if n < chunk.len() {
                    self.chunks.push_front(chunk.split_off(n));
                }
            }
            Poll::Ready(Ok(()))
        }
    }

    fn conn<R: AsyncRead + Unpin>(reader: R) -> AgiConnection<R, tokio::io::Sink> {
        AgiConnection::new(reader, tokio::io::sink(), Limits::default())
    }

    /// The replies that follow the header in `<case>.from-asterisk.raw`, computed line by line
    /// independently of the connection's framing.
    fn expected_replies(case: &str) -> Vec<Reply> {
        let all = fixture(case, "from-asterisk.raw");
        let header = fixture(case, "header.raw");
        assert!(
            all.starts_with(&header),
            "{case}: capture starts with the header"
        );
        let mut out = Vec::new();
        let mut in_usage = false;
        for line in all[header.len()..].split_inclusive(|&b| b == b'\n') {
            let line = line.strip_suffix(b"\n").expect("fixture lines end in \\n");
            if in_usage {
                if line.starts_with(b"520 ") {
                    out.push(Reply::Usage);
                    in_usage = false;
                }
            } else if line.starts_with(b"520-") {
                in_usage = true;
            } else {
                out.push(reply::parse(line).unwrap_or_else(|e| panic!("{case}: {e}")));
            }
        }
        assert!(!in_usage, "{case}: unterminated usage block");
        out
    }

    async fn run_session<R: AsyncRead + Unpin>(
        case: &str,
        reader: R,
    ) -> AgiConnection<R, tokio::io::Sink> {
        let want_env = AgiEnv::parse(&fixture(case, "header.raw")).expect("header parses");
        let mut c = conn(reader);
        assert_eq!(c.read_env().await.expect("env"), want_env, "{case}");
        for (i, want) in expected_replies(case).into_iter().enumerate() {
            let got = c
                .read_reply()
                .await
                .unwrap_or_else(|e| panic!("{case} reply {i}: {e}"));
            assert_eq!(got, want, "{case} reply {i}");
        }
        assert!(
            matches!(
                c.read_reply().await,
                Err(ConnError::Closed { partial: false })
            ),
            "{case}: clean EOF after the last reply"
        );
        c
    }

    #[tokio::test]
    async fn every_capture_line_by_line_and_byte_by_byte() {
        let cases = session_cases();
        assert!(cases.len() >= 40);
        for case in &cases {
            let all = fixture(case, "from-asterisk.raw");
            run_session(case, Chunked::lines(&all)).await;
            let c = run_session(case, Chunked::bytes_each(&all)).await;
            assert!(c.reader.reads > all.len(), "{case}: one byte per read");
            let c = run_session(case, Chunked::new([all.clone()])).await;
            assert!(
                c.reader.reads <= 3,
                "{case}: whole capture in one read, then EOF"
            );
        }
    }

    #[tokio::test]
    async fn capture_commands_reply_sequence() {
        fn ok(result: i64, data: Option<&str>) -> Reply {
            Reply::Success {
                result,
                data: data.map(str::to_owned),
            }
        }
        let want = vec![
            ok(1, None),
            ok(1, Some("true")),
            ok(0, None),
            ok(1, Some("PJSIP")),
            ok(1, Some("PJSIP")),
            ok(1, None),
            ok(1, None),
            ok(1, Some("deny #1 203.0.113.66/32")),
            ok(1, None),
            ok(1, Some("a \"quoted\" value \\ backslash")),
            Reply::Usage,
            ok(0, None),
            ok(4, None),
            Reply::InvalidCommand,
            Reply::Usage,
            ok(1, None),
            ok(1, Some("1")),
        ];
        let all = fixture("capture-commands-pjsip", "from-asterisk.raw");
        let mut c = conn(Chunked::bytes_each(&all));
        let env = c.read_env().await.expect("env");
        assert_eq!(env.script(), Some("capture"));
        for (i, w) in want.into_iter().enumerate() {
            assert_eq!(c.read_reply().await.expect("reply"), w, "reply {i}");
        }
    }

    #[tokio::test]
    async fn hangup_before_reply() {
        let all = fixture("hangup-before-answer", "from-asterisk.raw");
        let mut c = conn(Chunked::new([all.clone()]));
        c.read_env().await.expect("env");
        // Everything arrived in one read: the HANGUP behind the block is already buffered.
        assert!(c.hangup_pending());
        assert!(!c.hangup_pending(), "consumed once");
        assert_eq!(
            c.read_reply().await.expect("reply"),
            Reply::Success {
                result: 1,
                data: None
            }
        );

        let mut c = conn(Chunked::lines(&all));
        c.read_env().await.expect("env");
        assert!(!c.hangup_pending(), "not read yet");
        assert_eq!(c.read_reply().await.expect("reply"), Reply::Hangup);
        for want in [
            Reply::Success {
                result: 1,
                data: None,
            },
            Reply::Success {
                result: 1,
                data: None,
            },
            Reply::Success {
                result: 1,
                data: Some("true".into()),
            },
            Reply::DeadChannel,
        ] {
            assert_eq!(c.read_reply().await.expect("reply"), want);
        }
    }

    #[tokio::test]
    async fn hangup_pending_needs_a_complete_line() {
        let mut c = conn(Chunked::new([b"agi_a: b\n\nHANGUP".to_vec()]));
        c.read_env().await.expect("env");
        assert!(!c.hangup_pending());
        let mut c = conn(Chunked::new([
            b"agi_a: b\n\n200 result=1\nHANGUP\n".to_vec()
        ]));
        c.read_env().await.expect("env");
        assert!(!c.hangup_pending(), "only the next line counts");
        assert_eq!(
            c.read_reply().await.expect("reply"),
            Reply::Success {
                result: 1,
                data: None
            }
        );
        assert!(c.hangup_pending());
    }

    #[tokio::test]
    async fn reads_are_chunked_not_per_line() {
        let all = fixture("pjsip-ipv4", "from-asterisk.raw");
        let header_len = fixture("pjsip-ipv4", "header.raw").len();
        let mut c = conn(Chunked::new([all.clone()]));
        c.read_env().await.expect("env");
        assert_eq!(c.reader.reads, 1, "the whole block in one read");
        assert_eq!(c.buf, all[header_len..], "replies stay buffered");
    }

    fn limits(max_line: usize, max_block: usize, max_lines: usize) -> Limits {
        Limits {
            max_line,
            max_block,
            max_lines,
        }
    }

    async fn env_err(input: &[u8], limits: Limits, one_byte: bool) -> ConnError {
        let reader = if one_byte {
            Chunked::bytes_each(input)
        } else {
            Chunked::new([input.to_vec()])
        };
        let mut c = AgiConnection::new(reader, tokio::io::sink(), limits);
        c.read_env().await.expect_err("must fail")
    }

    #[tokio::test]
    async fn limits_are_enforced() {
        for one_byte in [false, true] {
            // A line longer than max_line, terminated or not.
            let long = format!("agi_a: {}\n\n", "x".repeat(100));
            assert!(matches!(
                env_err(long.as_bytes(), limits(50, 1 << 16, 256), one_byte).await,
                ConnError::LineTooLong { limit: 50 }
            ));
            let endless = vec![b'x'; 10_000];
            assert!(matches!(
                env_err(&endless, limits(8192, 1 << 16, 256), one_byte).await,
                ConnError::LineTooLong { limit: 8192 }
            ));
            // Many short lines: too large before too many.
            let lines = "agi_a: b\n".repeat(100);
            assert!(matches!(
                env_err(lines.as_bytes(), limits(8192, 500, 1000), one_byte).await,
                ConnError::BlockTooLarge { limit: 500 }
            ));
            assert!(matches!(
                env_err(lines.as_bytes(), limits(8192, 1 << 16, 50), one_byte).await,
                ConnError::TooManyLines { limit: 50 }
            ));
            // Exactly at the limits is fine.
            let mut block: String = (0..50).map(|i| format!("agi_{i:03}: b\n")).collect();
            block.push('\n');
            let reader = if one_byte {
                Chunked::bytes_each(block.as_bytes())
            } else {
                Chunked::new([block.as_bytes().to_vec()])
            };
            let mut c = AgiConnection::new(reader, tokio::io::sink(), limits(10, block.len(), 50));
            let env = c.read_env().await.expect("at the limits");
            assert_eq!(env.vars().len(), 50);
            assert_eq!(env.get("049"), Some("b"));
            // One byte less of each limit fails.
            assert!(matches!(
                env_err(block.as_bytes(), limits(9, 1 << 16, 256), one_byte).await,
                ConnError::LineTooLong { limit: 9 }
            ));
            assert!(matches!(
                env_err(
                    block.as_bytes(),
                    limits(8192, block.len() - 1, 256),
                    one_byte
                )
                .await,
                ConnError::BlockTooLarge { .. }
            ));
            assert!(matches!(
                env_err(block.as_bytes(), limits(8192, 1 << 16, 49), one_byte).await,
                ConnError::TooManyLines { limit: 49 }
            ));
        }
    }

    #[tokio::test]
    async fn default_limits_stop_a_flood() {
        let flood = vec![b'a'; 1 << 20];
        let mut c = conn(Chunked::new([flood]));
        assert!(matches!(
            c.read_env().await,
            Err(ConnError::LineTooLong { limit: 8192 })
        ));
        assert!(
            c.buf.len() < 64 * 1024,
            "stopped early, buffered {}",
            c.buf.len()
        );
        let lines = "agi_x: y\n".repeat(300);
        let mut c = conn(Chunked::lines(lines.as_bytes()));
        assert!(matches!(
            c.read_env().await,
            Err(ConnError::TooManyLines { limit: 256 })
        ));
    }

    #[tokio::test]
    async fn eof_and_garbage() {
        let mut c = conn(Chunked::new([b"agi_network: yes\nagi_chan".to_vec()]));
        assert!(matches!(
            c.read_env().await,
            Err(ConnError::Closed { partial: true })
        ));
        let mut c = conn(Chunked::new(Vec::<Vec<u8>>::new()));
        assert!(matches!(
            c.read_env().await,
            Err(ConnError::Closed { partial: false })
        ));
        let mut c = conn(Chunked::new([b"not agi\n\n".to_vec()]));
        assert!(matches!(
            c.read_env().await,
            Err(ConnError::Env(EnvError::MissingPrefix { line: 1 }))
        ));
        let mut c = conn(Chunked::new([b"\n200 result=x\n200 result=1".to_vec()]));
        assert_eq!(c.read_env().await.expect("empty env"), AgiEnv::default());
        assert!(matches!(
            c.read_reply().await,
            Err(ConnError::Reply(ReplyError::BadResult))
        ));
        assert!(matches!(
            c.read_reply().await,
            Err(ConnError::Closed { partial: true })
        ));
    }

    #[tokio::test]
    async fn usage_block_limits() {
        let mut input = b"\n520-Invalid command syntax.  Proper usage follows:\n".to_vec();
        input.extend("text\n".repeat(300).as_bytes());
        input.extend(b"520 End of proper usage.\n");
        let mut c = conn(Chunked::new([input.clone()]));
        c.read_env().await.expect("env");
        assert!(matches!(
            c.read_reply().await,
            Err(ConnError::TooManyLines { limit: 256 })
        ));
        let mut c = AgiConnection::new(
            Chunked::new([input]),
            tokio::io::sink(),
            limits(8192, 200, 1000),
        );
        c.read_env().await.expect("env");
        assert!(matches!(
            c.read_reply().await,
            Err(ConnError::BlockTooLarge { limit: 200 })
        ));
        // An unterminated usage block is not a reply yet.
        let mut c = conn(Chunked::new([b"\n520-x\nmore\n".to_vec()]));
        c.read_env().await.expect("env");
        assert!(matches!(
            c.read_reply().await,
            Err(ConnError::Closed { partial: true })
        ));
    }

    #[tokio::test]
    async fn send_writes_exact_bytes_and_refuses_bad_commands() {
        let (mut peer, ours) = tokio::io::duplex(1024);
        let mut c = AgiConnection::new(tokio::io::empty(), ours, Limits::default());
        c.send(&Command::SetVariable {
            name: "STRANGER",
            value: "true",
        })
        .await
        .expect("send");
        c.send(&Command::GetVariable {
            name: "PJSIP_HEADER(read,From)",
        })
        .await
        .expect("send");
        assert!(matches!(
            c.send(&Command::GetVariable { name: "X\nANSWER" }).await,
            Err(ConnError::Command(CommandError::BadName { .. }))
        ));
        c.send(&Command::SetVariable {
            name: "R",
            value: "evil\nANSWER",
        })
        .await
        .expect("send");
        c.shutdown().await.expect("shutdown");
        let mut got = Vec::new();
        peer.read_to_end(&mut got).await.expect("read");
        assert_eq!(
            got,
            b"SET VARIABLE STRANGER \"true\"\nGET VARIABLE PJSIP_HEADER(read,From)\nSET VARIABLE R \"evil ANSWER\"\n"
        );
    }

    /// A fake Asterisk on loopback TCP that writes the capture one byte per write, answering
    /// in step with the commands it receives.
    #[tokio::test]
    async fn loopback_tcp_session() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let header = fixture("pjsip-ipv4", "header.raw");
        let asterisk = tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.expect("accept");
            sock.set_nodelay(true).expect("nodelay");
            for &b in &header {
                sock.write_all(&[b]).await.expect("write");
            }
            let mut received = Vec::new();
            let mut byte = [0u8; 1];
            for reply in [&b"200 result=1\n"[..], b"HANGUP\n200 result=1 (true)\n"] {
                loop {
                    sock.read_exact(&mut byte).await.expect("read command");
                    received.push(byte[0]);
                    if byte[0] == b'\n' {
                        break;
                    }
                }
                for &b in reply {
                    sock.write_all(&[b]).await.expect("write");
                }
            }
            let mut rest = Vec::new();
            sock.read_to_end(&mut rest).await.expect("read to EOF");
            (received, rest)
        });

        let stream = TcpStream::connect(addr).await.expect("connect");
        let (r, w) = stream.into_split();
        let mut c = AgiConnection::new(r, w, Limits::default());
        let env = c.read_env().await.expect("env");
        assert_eq!(env.args()[1], "127.0.0.1:15201");
        c.send(&Command::SetVariable {
            name: "STRANGER",
            value: "false",
        })
        .await
        .expect("send");
        assert_eq!(
            c.read_reply().await.expect("reply"),
            Reply::Success {
                result: 1,
                data: None
            }
        );
        c.send(&Command::GetVariable { name: "STRANGER" })
            .await
            .expect("send");
        assert_eq!(c.read_reply().await.expect("reply"), Reply::Hangup);
        assert_eq!(
            c.read_reply().await.expect("reply"),
            Reply::Success {
                result: 1,
                data: Some("true".into())
            }
        );
        c.shutdown().await.expect("shutdown");
        let (received, rest) = asterisk.await.expect("fake asterisk");
        assert_eq!(
            received,
            b"SET VARIABLE STRANGER \"false\"\nGET VARIABLE STRANGER\n"
        );
        assert!(rest.is_empty(), "nothing after shutdown");
    }

    #[tokio::test]
    async fn cancelled_read_loses_nothing() {
        let all = fixture("capture-commands-chansip", "from-asterisk.raw");
        let (mut tx, rx) = tokio::io::duplex(64);
        let mut c = conn(rx);
        // Nothing written yet: the read times out, the next one still gets the whole env.
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(10), c.read_env())
                .await
                .is_err()
        );
        let writer = tokio::spawn(async move {
            for chunk in all.chunks(7) {
                tx.write_all(chunk).await.expect("write");
                tokio::task::yield_now().await;
            }
        });
        let env = c.read_env().await.expect("env");
        assert_eq!(env.get("type"), Some("SIP"));
        let mut replies = Vec::new();
        let end = loop {
            match c.read_reply().await {
                Ok(r) => replies.push(r),
                Err(e) => break e,
            }
        };
        drop(c); // never leave the writer blocked on a full pipe, even when failing
        writer.await.expect("writer");
        assert!(matches!(end, ConnError::Closed { partial: false }), "{end}");
        assert_eq!(replies, expected_replies("capture-commands-chansip"));
        assert_eq!(replies.len(), 17);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Any split of a capture into reads gives the same env and replies.
        #[test]
        fn any_split_gives_same_frames(
            case_idx in 0usize..1000,
            cuts in proptest::collection::vec(1usize..64, 1..200),
        ) {
            let cases = session_cases();
            let case = &cases[case_idx % cases.len()];
            let all = fixture(case, "from-asterisk.raw");
            let mut chunks = Vec::new();
            let mut rest = &all[..];
            for cut in cuts.iter().cycle() {
                if rest.is_empty() { break; }
                let n = (*cut).min(rest.len());
                chunks.push(rest[..n].to_vec());
                rest = &rest[n..];
            }
            let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
            rt.block_on(run_session(case, Chunked::new(chunks)));
        }

        /// Arbitrary bytes never panic the framing; every outcome is a value or a typed error.
        #[test]
        fn arbitrary_input_never_panics(
            bytes in proptest::collection::vec(any::<u8>(), 0..2048),
            split in 1usize..16,
        ) {
            let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
            rt.block_on(async {
                let reader = Chunked::new(bytes.chunks(split).map(<[u8]>::to_vec).collect::<Vec<_>>());
                let mut c = AgiConnection::new(reader, tokio::io::sink(), limits(64, 512, 16));
                let _ = c.read_env().await;
                for _ in 0..8 {
                    let _ = c.hangup_pending();
                    if c.read_reply().await.is_err() { break; }
                }
            });
        }
    }
}
