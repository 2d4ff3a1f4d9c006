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
//! Incoming bytes go into one growing buffer (each read has room for at least [`MIN_READ`]
//! bytes, never one syscall per line). Each read first *checks* for a complete frame (the
//! environment block up to its empty line, or one reply), then *parses* exactly that slice
//! (`reply::parse`), then *advances* past it: mini-redis's `Frame::check` → `Frame::parse` →
//! `advance`. The check is [`Framer`], the one place that knows where a frame ends, and it
//! enforces [`Limits`] as it goes. The environment block's lines are parsed as the framer
//! finds them (`agi::env::EnvParser`), while the rest of the block is on its way; the
//! complete block's bytes then become the environment's text. Bytes after a frame stay
//! buffered for the next call: Asterisk writes line by line, a block may arrive in 20+
//! segments, and an early `HANGUP\n` may arrive right behind the block.
//!
//! Framing is incremental within one call (each byte is examined once), and restarts from the
//! start of the unconsumed bytes at the beginning of each call. That makes `read_env`,
//! `skip_env` and `read_reply` **cancel-safe**: if a `tokio::time::timeout` drops the future,
//! no byte is lost and the next call starts over. [`AgiConnection::send`] is not cancel-safe
//! (a partly written command cannot be taken back); after a cancelled send, close the
//! connection.
//!
//! # Limits
//!
//! Asterisk is the peer, but anyone who can reach the port can connect, so every frame is
//! bounded by [`Limits`]; exceeding one is an error, not a truncation. A block that breaks a
//! limit can still be read to its end and thrown away ([`AgiConnection::skip_env`], bounded
//! by [`Limits::max_skip`]), so that the session can answer it. There are no timeouts in
//! here: the session wraps calls in `tokio::time::timeout`.
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
use crate::agi::env::{self, AgiEnv, EnvError, EnvParser};
use crate::agi::reply::{self, Reply, ReplyError};

/// The read buffer's first capacity, and what it grows by when [`MIN_READ`] is not free.
pub const READ_CHUNK: usize = 4096;

/// The least free room a read gets. A block sent line by line (Asterisk's way, about 1 KB in
/// 25 writes) then fits the first [`READ_CHUNK`] without growing it.
pub const MIN_READ: usize = 1024;

/// Size bounds for what Asterisk sends: the one bounds type of the framing.
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
///
/// A block that breaks one of them may still be skipped to its end, up to
/// [`Limits::max_skip`] bytes in all, to be answered.
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

impl Limits {
    /// How many bytes [`AgiConnection::skip_env`] reads, at most, looking for the end of a
    /// block that broke a limit: four times `max_block` (256 KiB by default). A real
    /// Asterisk block is far smaller even with a hostile From header (PJSIP hands an empty
    /// value for a header it cannot hold); a peer that sends more is not Asterisk.
    pub fn max_skip(&self) -> usize {
        self.max_block.saturating_mul(4)
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

impl ConnError {
    /// Whether this is a broken [`Limits`] bound: the frame was not read to its end, and
    /// [`AgiConnection::skip_env`] may still find it.
    pub fn is_limit(&self) -> bool {
        matches!(
            self,
            ConnError::LineTooLong { .. }
                | ConnError::BlockTooLarge { .. }
                | ConnError::TooManyLines { .. }
        )
    }
}

/// One AGI conversation over a reader and a writer (the halves of a `TcpStream` from
/// `split()`, or stdin/stdout).
#[derive(Debug)]
pub struct AgiConnection<R, W> {
    reader: R,
    writer: W,
    /// Received, not yet consumed bytes; the next frame starts at index 0. While a command is
    /// being sent, its encoding follows them (see [`AgiConnection::send`]).
    buf: Vec<u8>,
    limits: Limits,
    /// The write side was shut down: [`AgiConnection::shutdown`] is done.
    shut: bool,
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
            limits,
            shut: false,
        }
    }

    /// Reads the `agi_*` environment block, up to and including its empty line, and parses it.
    /// Bytes after the block stay buffered.
    ///
    /// Errors: [`ConnError::LineTooLong`], [`ConnError::BlockTooLarge`],
    /// [`ConnError::TooManyLines`] as soon as a read makes them certain (the bytes stay
    /// buffered: see [`AgiConnection::skip_env`]); [`ConnError::Closed`] on EOF before the
    /// empty line; [`ConnError::Env`] if the framed block does not parse (the block is
    /// consumed either way).
    pub async fn read_env(&mut self) -> Result<AgiEnv, ConnError> {
        let mut framer = Framer::default();
        // Each line is parsed as soon as it is framed, while the rest is still on its way.
        let mut parser = EnvParser::default();
        loop {
            if let Some(end) = framer.env(&self.buf, &self.limits, &mut parser)? {
                // The buffer, holding the block, becomes the environment's text (no copy of
                // the block); what follows the block moves to a new buffer.
                let mut rest = Vec::with_capacity(READ_CHUNK.max(self.buf.len() - end));
                rest.extend_from_slice(&self.buf[end..]);
                let mut block = std::mem::replace(&mut self.buf, rest);
                block.truncate(end);
                return Ok(parser.finish(block)?);
            }
            self.fill().await?;
        }
    }

    /// After [`AgiConnection::read_env`] failed with a broken limit
    /// ([`ConnError::is_limit`]): reads on, without keeping it, to the empty line that ends
    /// the block, so that the call can still be answered. Bytes after the block stay
    /// buffered. Gives up with [`ConnError::BlockTooLarge`] after [`Limits::max_skip`] bytes
    /// in all, and with [`ConnError::Closed`] at EOF.
    pub async fn skip_env(&mut self) -> Result<(), ConnError> {
        let budget = self.limits.max_skip();
        let mut skipped = 0usize;
        // Within the block, a line starts at 0; `line_start` is where the current one began.
        let mut line_start = 0usize;
        let mut pos = 0usize;
        loop {
            for nl in memchr::memchr_iter(b'\n', &self.buf[pos..]).map(|i| i + pos) {
                if env::is_blank(&self.buf, line_start, nl) {
                    self.advance(nl + 1);
                    return Ok(());
                }
                line_start = nl + 1;
            }
            // Throw away the complete lines; keep the line in progress (its length tells a
            // blank line from a long one: only its first two bytes matter).
            let keep_from = line_start.min(self.buf.len());
            skipped += keep_from;
            self.advance(keep_from);
            let partial = self.buf.len().min(2);
            // A long partial line is dropped too, all but the two bytes that matter.
            if self.buf.len() > partial {
                let extra = self.buf.len() - partial;
                skipped += extra;
                self.buf.drain(partial..);
            }
            line_start = 0;
            pos = self.buf.len();
            if skipped > budget {
                return Err(ConnError::BlockTooLarge { limit: budget });
            }
            self.fill().await?;
        }
    }

    /// Encodes `cmd` and writes it with one `write_all`, then flushes. On
    /// [`ConnError::Command`] nothing is written.
    ///
    /// The command is encoded into the read buffer's spare room, after the bytes not consumed
    /// yet, and taken off again once written (or when the send is dropped): no buffer of its
    /// own, and the received bytes are untouched.
    pub async fn send(&mut self, cmd: &Command<'_>) -> Result<(), ConnError> {
        let received = self.buf.len();
        cmd.encode(&mut self.buf)?;
        let encoded = Truncate {
            buf: &mut self.buf,
            len: received,
        };
        self.writer
            .write_all(&encoded.buf[received..])
            .await
            .map_err(|source| ConnError::Io {
                context: "writing an AGI command",
                source,
            })?;
        drop(encoded);
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
        let mut framer = Framer::default();
        loop {
            if let Some((end, usage)) = framer.reply(&self.buf, &self.limits)? {
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
    /// server closes, so call this once the session is done. Only the first call acts (even
    /// when it failed); later ones return `Ok`.
    pub async fn shutdown(&mut self) -> Result<(), ConnError> {
        if std::mem::replace(&mut self.shut, true) {
            return Ok(());
        }
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
        if self.buf.capacity() - self.buf.len() < MIN_READ {
            self.buf.reserve(READ_CHUNK);
        }
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

/// Cuts a buffer back to `len` bytes when dropped: takes an encoded command off the read
/// buffer however its send ends (written, failed, or dropped half-way).
struct Truncate<'a> {
    buf: &'a mut Vec<u8>,
    len: usize,
}

impl Drop for Truncate<'_> {
    fn drop(&mut self) {
        self.buf.truncate(self.len);
    }
}

fn closed_suffix(partial: &bool) -> &'static str {
    if *partial {
        " in the middle of a frame"
    } else {
        ""
    }
}

/// The frame check: where the frame at the start of the buffer ends, if it is complete,
/// enforcing [`Limits`] on the way. State for one `read_env`/`read_reply` call, so that each
/// byte is examined once however many reads the frame takes.
#[derive(Debug, Default)]
struct Framer {
    /// Bytes of the buffer already examined.
    pos: usize,
    /// Start of the line being scanned.
    line_start: usize,
    /// Complete lines counted so far (env: non-empty lines; reply: lines of a `520-` block).
    lines: usize,
    /// The reply being framed started with `520-`.
    usage: bool,
}

impl Framer {
    /// The next complete line of `buf`, `(start, index of its '\n')`, checking the line
    /// length (also of the incomplete line at the end).
    fn next_line(
        &mut self,
        buf: &[u8],
        limits: &Limits,
    ) -> Result<Option<(usize, usize)>, ConnError> {
        match memchr::memchr(b'\n', &buf[self.pos..]) {
            Some(i) => {
                let nl = self.pos + i;
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
    /// Each of its lines within the limits goes to `parser` as it is framed.
    fn env(
        &mut self,
        buf: &[u8],
        limits: &Limits,
        parser: &mut EnvParser,
    ) -> Result<Option<usize>, ConnError> {
        while let Some((start, nl)) = self.next_line(buf, limits)? {
            if nl + 1 > limits.max_block {
                return Err(ConnError::BlockTooLarge {
                    limit: limits.max_block,
                });
            }
            if env::is_blank(buf, start, nl) {
                return Ok(Some(nl + 1));
            }
            self.lines += 1;
            if self.lines > limits.max_lines {
                return Err(ConnError::TooManyLines {
                    limit: limits.max_lines,
                });
            }
            parser.line(buf, start, nl);
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
    fn reply(&mut self, buf: &[u8], limits: &Limits) -> Result<Option<(usize, bool)>, ConnError> {
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
#[path = "connection_tests.rs"]
mod tests;
