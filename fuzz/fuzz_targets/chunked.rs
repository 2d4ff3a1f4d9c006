//! A reader that hands its bytes out in the chunk sizes the input's first bytes choose, as a
//! network peer would (one byte at a time, whole lines, or anything between); shared by the
//! targets that read from a socket.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};

/// Splits `data` into chunk sizes (from its first 8 bytes, each 1..=256) and a payload.
pub struct Chunked<'a> {
    sizes: &'a [u8],
    turn: usize,
    rest: &'a [u8],
}

impl<'a> Chunked<'a> {
    pub fn new(data: &'a [u8]) -> Chunked<'a> {
        let (sizes, rest) = data.split_at(data.len().min(8));
        Chunked { sizes, turn: 0, rest }
    }
}

impl AsyncRead for Chunked<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let size = match self.sizes.get(self.turn % self.sizes.len().max(1)) {
            Some(&s) => usize::from(s) + 1,
            None => 4096,
        };
        self.turn += 1;
        let n = size.min(self.rest.len()).min(buf.remaining());
        let (head, tail) = self.rest.split_at(n);
        buf.put_slice(head);
        self.rest = tail;
        Poll::Ready(Ok(()))
    }
}

thread_local! {
    /// One runtime per fuzzing thread: building one per input cost more than the input.
    static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
}

/// Runs `f` to completion on a one-thread runtime without I/O drivers (the readers here never
/// wait on anything but the chunked input).
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    RUNTIME.with(|rt| rt.block_on(f))
}
