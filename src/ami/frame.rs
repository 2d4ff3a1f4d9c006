//! AMI framing: one message is `Key: value` lines (CRLF, LF accepted) ended by an empty line.
//! [`read_message`] reads exactly one, bounded in line length, message size and header count,
//! and decodes header bytes lossily (Asterisk passes peer-written text, such as a User-Agent,
//! through unchanged, so a value need not be UTF-8). [`Action`] writes one.
//!
//! Hand-written rather than a crate: the framing is these few dozen lines over tokio's
//! `BufReader`, and the AMI crates on crates.io bring their own connection, event-loop and
//! reconnect models (and dependencies) for what this needs: one short session, no events.

use std::fmt::Write as _;

use tokio::io::{AsyncBufRead, AsyncBufReadExt};

/// Size bounds for what Asterisk sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest line, in bytes (without its line end).
    pub max_line: usize,
    /// Largest message, in bytes (all its lines).
    pub max_message: usize,
    /// Most headers in one message.
    pub max_headers: usize,
}

impl Default for Limits {
    /// 8 KiB lines, 64 KiB messages, 512 headers: a `ContactList` event is about 600 bytes.
    fn default() -> Self {
        Limits {
            max_line: 8 * 1024,
            max_message: 64 * 1024,
            max_headers: 512,
        }
    }
}

/// Why a message could not be read.
#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FrameError {
    /// A line, a message or its header count went past its [`Limits`].
    #[error("oversized message from Asterisk: {what} over {limit}")]
    TooLarge {
        /// `line bytes`, `message bytes` or `headers`.
        what: &'static str,
        /// The limit.
        limit: usize,
    },
    /// The connection closed in the middle of a message.
    #[error("the connection closed in the middle of a message")]
    Truncated,
    /// Reading failed.
    #[error("read failed: {0}")]
    Io(std::io::ErrorKind),
}

/// One message from Asterisk: its headers in order, names and values as sent (lossily decoded).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Message {
    headers: Vec<(String, String)>,
}

impl Message {
    /// The value of the first header named `key` (ASCII case-insensitive), if any.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_str())
    }

    /// All headers, in order.
    pub fn headers(&self) -> &[(String, String)] {
        &self.headers
    }

    /// A message from `Key: value` pairs (for tests and the scripted server).
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Message {
        Message {
            headers: pairs
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        }
    }
}

/// Reads one message. `Ok(None)` is a clean end of stream between messages. Empty lines before
/// a message are skipped (Asterisk sends an extra one after some error replies).
pub async fn read_message<R>(reader: &mut R, limits: &Limits) -> Result<Option<Message>, FrameError>
where
    R: AsyncBufRead + Unpin,
{
    let mut message = Message::default();
    let mut size = 0_usize;
    let mut line = Vec::new();
    loop {
        line.clear();
        if !read_line(reader, &mut line, limits.max_line).await? {
            return if message.headers.is_empty() {
                Ok(None)
            } else {
                Err(FrameError::Truncated)
            };
        }
        if line.is_empty() {
            if message.headers.is_empty() {
                continue;
            }
            return Ok(Some(message));
        }
        size += line.len() + 2;
        if size > limits.max_message {
            return Err(FrameError::TooLarge {
                what: "message bytes",
                limit: limits.max_message,
            });
        }
        if message.headers.len() >= limits.max_headers {
            return Err(FrameError::TooLarge {
                what: "headers",
                limit: limits.max_headers,
            });
        }
        let text = String::from_utf8_lossy(&line);
        let (key, value) = match text.split_once(':') {
            Some((k, v)) => (k.trim(), v.strip_prefix(' ').unwrap_or(v)),
            // A line without a colon (command output): kept whole under an empty name.
            None => ("", text.as_ref()),
        };
        message.headers.push((key.to_owned(), value.to_owned()));
    }
}

/// Reads one line into `line` without its CRLF or LF; `false` at end of stream before any byte
/// (a partial last line without its end is [`FrameError::Truncated`]).
pub async fn read_line<R>(
    reader: &mut R,
    line: &mut Vec<u8>,
    max: usize,
) -> Result<bool, FrameError>
where
    R: AsyncBufRead + Unpin,
{
    loop {
        let buf = reader
            .fill_buf()
            .await
            .map_err(|e| FrameError::Io(e.kind()))?;
        if buf.is_empty() {
            return if line.is_empty() {
                Ok(false)
            } else {
                Err(FrameError::Truncated)
            };
        }
        let (chunk, done) = match memchr::memchr(b'\n', buf) {
            Some(i) => (&buf[..i], Some(i + 1)),
            None => (buf, None),
        };
        if line.len() + chunk.len() > max + 1 {
            return Err(FrameError::TooLarge {
                what: "line bytes",
                limit: max,
            });
        }
        line.extend_from_slice(chunk);
        let used = done.unwrap_or(buf.len());
        reader.consume(used);
        if done.is_some() {
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            if line.len() > max {
                return Err(FrameError::TooLarge {
                    what: "line bytes",
                    limit: max,
                });
            }
            return Ok(true);
        }
    }
}

/// An action to send: `Action: Name`, then its headers, then an empty line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Action {
    text: String,
}

impl Action {
    /// `Action: name`.
    pub fn new(name: &str) -> Action {
        let mut a = Action {
            text: String::with_capacity(128),
        };
        a.header("Action", name);
        a
    }

    /// Adds `key: value`. CR and LF in a value (which would start a new header) are replaced
    /// by spaces; callers refuse such values earlier where it matters (the secret).
    pub fn header(&mut self, key: &str, value: &str) -> &mut Action {
        let value = value.replace(['\r', '\n'], " ");
        // Writing to a String cannot fail.
        let _ = write!(self.text, "{key}: {value}\r\n");
        self
    }

    /// The bytes on the wire, blank line included.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(self.text.len() + 2);
        bytes.extend_from_slice(self.text.as_bytes());
        bytes.extend_from_slice(b"\r\n");
        bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn all(bytes: &[u8], limits: Limits) -> Result<Vec<Message>, FrameError> {
        let mut r = tokio::io::BufReader::with_capacity(7, bytes);
        let mut out = Vec::new();
        while let Some(m) = read_message(&mut r, &limits).await? {
            out.push(m);
        }
        Ok(out)
    }

    #[tokio::test]
    async fn reads_the_recorded_contact_list() {
        let bytes = crate::ami::scripted::fixture("pjsipshowcontacts.response.raw");
        let msgs = all(&bytes, Limits::default()).await.expect("frames");
        assert_eq!(msgs.len(), 6, "response, 4 ContactList, complete");
        assert_eq!(msgs[0].get("response"), Some("Success"));
        assert_eq!(msgs[0].get("EventList"), Some("start"));
        assert_eq!(msgs[2].get("Uri"), Some("sip:101@[::1]:15202"));
        assert_eq!(msgs[2].get("RegServer"), Some(""), "an empty value");
        assert_eq!(msgs[5].get("Event"), Some("ContactListComplete"));
        assert_eq!(msgs[5].get("ListItems"), Some("4"));
    }

    #[tokio::test]
    async fn lf_only_extra_blank_lines_and_non_utf8_are_accepted() {
        let msgs = all(
            b"\r\nResponse: Error\nMessage: No Contacts found\n\n\r\nUserAgent: caf\xe9\r\n\r\n",
            Limits::default(),
        )
        .await
        .expect("frames");
        assert_eq!(msgs.len(), 2);
        assert_eq!(msgs[0].get("message"), Some("No Contacts found"));
        assert_eq!(msgs[1].get("UserAgent"), Some("caf\u{fffd}"));
    }

    #[tokio::test]
    async fn bounds_and_truncation_are_errors() {
        let limits = Limits {
            max_line: 16,
            max_message: 40,
            max_headers: 3,
        };
        assert_eq!(
            all(b"Key: 0123456789abcdefXYZ\r\n\r\n", limits).await,
            Err(FrameError::TooLarge {
                what: "line bytes",
                limit: 16
            })
        );
        assert_eq!(
            all(b"A: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n", limits).await,
            Err(FrameError::TooLarge {
                what: "headers",
                limit: 3
            })
        );
        assert_eq!(
            all(
                b"A: 0123456789\r\nB: 0123456789\r\nC: 0123456789\r\n\r\n",
                limits
            )
            .await,
            Err(FrameError::TooLarge {
                what: "message bytes",
                limit: 40
            })
        );
        assert_eq!(
            all(b"A: 1\r\nB: 2", limits).await,
            Err(FrameError::Truncated)
        );
        assert_eq!(all(b"A: 1\r\n", limits).await, Err(FrameError::Truncated));
        assert_eq!(all(b"", limits).await, Ok(vec![]));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(128))]

        /// Any bytes, and the recorded contact list with bytes overwritten, read in any chunk
        /// size under small limits: messages within the limits or an error, never a panic, and
        /// the reading ends (the cheap part of the `ami_frame` fuzz target).
        #[test]
        fn any_bytes_in_any_chunking_frame_within_the_limits(
            noise in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600),
            flips in proptest::collection::vec((0usize..4096, proptest::prelude::any::<u8>()), 0..24),
            chunk in 1usize..64,
        ) {
            let limits = Limits { max_line: 96, max_message: 512, max_headers: 12 };
            let mut recorded = crate::ami::scripted::fixture("pjsipshowcontacts.response.raw");
            for (at, byte) in flips {
                let at = at % recorded.len();
                recorded[at] = byte;
            }
            let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
            for bytes in [noise, recorded] {
                let mut r = tokio::io::BufReader::with_capacity(chunk, &bytes[..]);
                let mut read = 0;
                while let Ok(Some(m)) = rt.block_on(read_message(&mut r, &limits)) {
                    proptest::prop_assert!(m.headers().len() <= limits.max_headers);
                    let size: usize = m.headers().iter().map(|(k, v)| k.len() + v.len()).sum();
                    proptest::prop_assert!(size <= limits.max_message);
                    read += 1;
                    proptest::prop_assert!(read <= bytes.len(), "more messages than bytes");
                }
            }
        }
    }

    #[test]
    fn actions_are_crlf_lines_and_cannot_smuggle_headers() {
        let mut a = Action::new("Login");
        a.header("Username", "ipcountry")
            .header("Secret", "x\r\nAction: Command");
        assert_eq!(
            a.to_bytes(),
            b"Action: Login\r\nUsername: ipcountry\r\nSecret: x  Action: Command\r\n\r\n"
        );
    }
}
