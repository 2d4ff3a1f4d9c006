//! Tests of `connection.rs` (kept in their own file to keep the module readable).

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
    c.send(&Command::Verbose {
        message: "PJSIP_HEADER(read,From)",
        level: 1,
    })
    .await
    .expect("send");
    assert!(matches!(
        c.send(&Command::SetVariable {
            name: "X\nANSWER",
            value: ""
        })
        .await,
        Err(ConnError::Command(CommandError::BadName))
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
            b"SET VARIABLE STRANGER \"true\"\nVERBOSE \"PJSIP_HEADER(read,From)\" 1\nSET VARIABLE R \"evil ANSWER\"\n"
        );
}

/// Commands are encoded after the received, unconsumed bytes and taken off again: those
/// bytes are intact after a send, a failed send, and a send dropped half-way.
#[tokio::test]
async fn send_leaves_received_bytes_alone() {
    // A `HANGUP` and half a reply are buffered, unconsumed.
    let mut c = AgiConnection::new(
        Chunked::new([b"HANGUP\n200 res".to_vec()]),
        tokio::io::sink(),
        Limits::default(),
    );
    assert!(matches!(c.read_reply().await, Ok(Reply::Hangup)));
    let buffered = c.buf.clone();
    assert_eq!(buffered, b"200 res");
    let cmd = Command::SetVariable {
        name: "IPCOUNTRY_REASON",
        value: "permit #1 203.0.113.0/24 office",
    };
    c.send(&cmd).await.expect("send");
    assert_eq!(c.buf, buffered, "after a send");
    assert!(c
        .send(&Command::SetVariable {
            name: "",
            value: ""
        })
        .await
        .is_err());
    assert_eq!(c.buf, buffered, "after a refused command");

    // A writer that takes 10 bytes and then never more: the send is dropped half-way.
    struct Stalls(usize);
    impl AsyncWrite for Stalls {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<std::io::Result<usize>> {
            if self.0 == 0 {
                return Poll::Pending;
            }
            let n = buf.len().min(self.0);
            self.0 -= n;
            Poll::Ready(Ok(n))
        }
        fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }
    let mut c = AgiConnection::new(
        Chunked::new([b"HANGUP\n200 res".to_vec()]),
        Stalls(10),
        Limits::default(),
    );
    assert!(matches!(c.read_reply().await, Ok(Reply::Hangup)));
    let dropped = tokio::time::timeout(std::time::Duration::from_millis(20), c.send(&cmd)).await;
    assert!(dropped.is_err(), "the send never finishes");
    assert_eq!(c.buf, buffered, "after a send dropped half-way");
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
    assert_eq!(env.args().nth(1), Some("127.0.0.1:15201"));
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
    c.send(&Command::Verbose {
        message: "STRANGER",
        level: 1,
    })
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
        b"SET VARIABLE STRANGER \"false\"\nVERBOSE \"STRANGER\" 1\n"
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

fn reader(input: &[u8], one_byte: bool) -> Chunked {
    if one_byte {
        Chunked::bytes_each(input)
    } else {
        Chunked::new(input.chunks(5000).map(<[u8]>::to_vec).collect::<Vec<_>>())
    }
}

#[tokio::test]
async fn skip_env_finds_the_end_of_a_block_over_the_limits() {
    for one_byte in [false, true] {
        // A 20,000-byte line, more lines, the empty line (here `\r\n`), then what follows.
        let mut input = b"agi_network: yes\nagi_arg_1: ".to_vec();
        input.extend(vec![b'x'; 20_000]);
        input.extend(b"\nagi_arg_2: y\n\r\nHANGUP\n");
        let mut c = AgiConnection::new(
            reader(&input, one_byte),
            tokio::io::sink(),
            Limits::default(),
        );
        let e = c.read_env().await.expect_err("line too long");
        assert!(matches!(e, ConnError::LineTooLong { limit: 8192 }), "{e}");
        assert!(e.is_limit());
        c.skip_env().await.expect("the block ends");
        assert_eq!(
            c.read_reply().await.expect("what follows the block"),
            Reply::Hangup
        );

        // Too many lines: the same.
        let mut input = "agi_x: y\n".repeat(300).into_bytes();
        input.extend(b"\n200 result=1\n");
        let mut c = AgiConnection::new(
            reader(&input, one_byte),
            tokio::io::sink(),
            Limits::default(),
        );
        let e = c.read_env().await.expect_err("too many lines");
        assert!(matches!(e, ConnError::TooManyLines { limit: 256 }), "{e}");
        c.skip_env().await.expect("the block ends");
        assert_eq!(
            c.read_reply().await.expect("reply"),
            Reply::Success {
                result: 1,
                data: None
            }
        );
    }
    // A line of `\r`s is not an empty line; the block ends at the first one that is.
    let mut input = vec![b'\r'; 10_000];
    input.extend(b"\n\r\r\nagi_a: b\n\nrest");
    let mut c = AgiConnection::new(reader(&input, false), tokio::io::sink(), Limits::default());
    assert!(c.read_env().await.expect_err("too long").is_limit());
    c.skip_env().await.expect("ends");
    assert_eq!(c.buf, b"rest");
}

#[tokio::test]
async fn skip_env_gives_up_on_a_block_that_never_ends() {
    let lim = limits(100, 1000, 10);
    // No empty line within `max_skip` (4,000 bytes here): a bound error, bytes unread.
    let flood = vec![b'a'; 100_000];
    let mut c = AgiConnection::new(Chunked::new([flood]), tokio::io::sink(), lim);
    assert!(c.read_env().await.expect_err("too long").is_limit());
    assert!(matches!(
        c.skip_env().await,
        Err(ConnError::BlockTooLarge { limit: 4000 })
    ));
    assert!(c.buf.len() <= 4096 + 2, "nothing kept: {}", c.buf.len());
    // EOF before the empty line.
    let mut input = vec![b'a'; 500];
    input.extend(b"\nagi_b: c\n");
    let mut c = AgiConnection::new(Chunked::new([input]), tokio::io::sink(), lim);
    assert!(c.read_env().await.expect_err("too long").is_limit());
    assert!(matches!(c.skip_env().await, Err(ConnError::Closed { .. })));
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

    /// `read_env` reading a block at once or a byte at a time ends the same way, leaving the
    /// same bytes unconsumed. (Which bound is reported first may depend on how the bytes
    /// arrive: a byte at a time, the block can be too large before its long line is too long.)
    #[test]
    fn framing_does_not_depend_on_how_bytes_arrive(
        lines in proptest::collection::vec(prop_oneof![
            "agi_[a-z_0-9]{0,6}: [ -~]{0,12}",
            "(agi_)?[a-z_0-9 :]{0,8}(: ?)?[ -~\t\r:]{0,12}",
            Just(String::new()),
            Just("\r".to_owned()),
            Just("agi_a: dup".to_owned()),
            "[ -~]{20,40}",
            "agi_(a|b)\u{e9}?: [a-z\u{e9}]{0,4}",
        ].prop_map(String::into_bytes).boxed().prop_union(
            proptest::collection::vec(any::<u8>(), 0..10).boxed(),
        ), 0..14),
        raw in proptest::collection::vec(any::<u8>(), 0..6),
        ending in prop_oneof![Just(&b"\n\n"[..]), Just(&b"\n\r\n"[..]), Just(&b"\n"[..]), Just(&b""[..])],
        max_line in prop_oneof![Just(8192usize), 5usize..40],
        max_block in prop_oneof![Just(65536usize), 10usize..300],
        max_lines in prop_oneof![Just(256usize), 1usize..12],
    ) {
        let mut input = lines.join(&b'\n');
        input.extend_from_slice(&raw);
        input.extend_from_slice(ending);
        let lim = limits(max_line, max_block, max_lines);

        let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
        let (whole, each) = rt.block_on(async {
            let mut outcomes = Vec::new();
            for reader in [Chunked::new([input.clone()]), Chunked::bytes_each(&input)] {
                let mut c = AgiConnection::new(reader, tokio::io::sink(), lim);
                let outcome = match c.read_env().await {
                    Ok(env) => {
                        // The framer's line ends give what a search of the block gives.
                        let left = c.buf.len() + c.reader.chunks.iter().map(Vec::len).sum::<usize>();
                        let block = &input[..input.len() - left];
                        assert_eq!(Ok(&env), AgiEnv::parse(block).as_ref(), "{block:?}");
                        format!("{env:?}")
                    }
                    Err(
                        ConnError::LineTooLong { .. }
                        | ConnError::BlockTooLarge { .. }
                        | ConnError::TooManyLines { .. },
                    ) => "a bound is broken".to_owned(),
                    Err(e) => e.to_string(),
                };
                // What is left: buffered, or not read yet.
                let mut left = c.buf.clone();
                left.extend(c.reader.chunks.iter().flatten());
                outcomes.push(format!("{outcome} / left {left:?}"));
            }
            (outcomes[0].clone(), outcomes[1].clone())
        });
        prop_assert_eq!(whole, each);
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
