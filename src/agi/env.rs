//! The `agi_*` environment block Asterisk sends first on every AGI session.
//!
//! Data flow: `agi::connection` frames the block (everything up to and including the first empty
//! line, see [`find_block_end`]) and hands the complete bytes to [`AgiEnv::parse`] (or, when
//! the whole block arrived at once, frames and parses it in the same single pass); the
//! session then reads typed values ([`AgiEnv::script`], [`AgiEnv::first_two_args`], ...) and
//! builds a screening request from them. Nothing here does I/O.
//!
//! # Wire format (Asterisk 20, see `shared/fixtures/asterisk-agi/README.md`)
//!
//! ```text
//! agi_network: yes\n
//! agi_network_script: screen\n
//! ...
//! agi_accountcode: \n            <- an empty value is `name: ` followed by the newline
//! agi_arg_1: Bob <sip:bob@203.0.113.7>;tag=x\n
//! \n                             <- the empty line ends the block
//! ```
//!
//! # Strictness
//!
//! * Every line must be `agi_<name>: <value>`; `<name>` is `[A-Za-z0-9_]+`. The value is
//!   everything after the first `": "`, kept byte for byte (leading/trailing spaces and tabs are
//!   data: `agi_arg_8:   padded  `).
//! * A `\r` right before a `\n` is tolerated and dropped (Asterisk never sends one).
//! * Lines must be valid UTF-8. A non-UTF-8 line is **rejected** ([`EnvError::NotUtf8`]) rather
//!   than decoded lossily: Asterisk passes the From header through as received, and silently
//!   replacing bytes could change what the screening logic sees.
//! * The same name twice is rejected ([`EnvError::DuplicateName`]), so two readers of the
//!   environment can never see different values for one name.
//! * The block must end with an empty line and nothing may follow it.

use std::borrow::Cow;

/// The parsed environment block: every `agi_<name>: <value>` line, in order.
///
/// Names are stored **without** the `agi_` prefix (`uniqueid`, `arg_1`, ...). Unknown names are
/// kept, so a newer Asterisk adding variables does not break parsing.
///
/// The block is kept as one string with the byte ranges of each name and value, so parsing a
/// block costs two allocations whatever its number of lines.
#[derive(Debug, Clone, Default)]
pub struct AgiEnv {
    /// The whole block, as received (every line checked to be UTF-8).
    text: String,
    /// Byte ranges of each line's name and value in `text`, in order.
    spans: Vec<Span>,
}

/// Where one `agi_<name>: <value>` line's parts are in [`AgiEnv::text`] (byte offsets).
#[derive(Debug, Clone, Copy)]
struct Span {
    name_start: usize,
    name_end: usize,
    value_start: usize,
    value_end: usize,
}

impl PartialEq for AgiEnv {
    /// Two environments are equal when they hold the same variables in the same order,
    /// whatever their line endings.
    fn eq(&self, other: &Self) -> bool {
        self.vars().eq(other.vars())
    }
}

impl Eq for AgiEnv {}

/// Why an environment block was rejected. Line numbers are 1-based within the block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EnvError {
    /// A line is not valid UTF-8.
    #[error("AGI environment line {line}: not valid UTF-8")]
    NotUtf8 {
        /// 1-based line number.
        line: usize,
    },
    /// A line does not start with `agi_`.
    #[error("AGI environment line {line}: does not start with `agi_`")]
    MissingPrefix {
        /// 1-based line number.
        line: usize,
    },
    /// A line has no `": "` between the name and the value.
    #[error("AGI environment line {line}: no `: ` after the variable name")]
    MissingSeparator {
        /// 1-based line number.
        line: usize,
    },
    /// The name between `agi_` and `": "` is empty or has characters outside `[A-Za-z0-9_]`.
    #[error("AGI environment line {line}: variable name is empty or not [A-Za-z0-9_]")]
    BadName {
        /// 1-based line number.
        line: usize,
    },
    /// A name appears a second time.
    #[error("AGI environment line {line}: variable name repeats an earlier line")]
    DuplicateName {
        /// 1-based line number of the repetition.
        line: usize,
    },
    /// The block does not end with an empty line.
    #[error("AGI environment block does not end with an empty line")]
    Unterminated,
    /// Bytes follow the empty line that ends the block.
    #[error("AGI environment line {line}: data after the empty line that ends the block")]
    TrailingData {
        /// 1-based line number of the first line after the terminator.
        line: usize,
    },
}

impl AgiEnv {
    /// Parses one complete, framed block: the bytes up to and including the terminating empty
    /// line (as found by [`find_block_end`]). A block that is only `"\n"` gives an empty env.
    ///
    /// One pass over the block: a word-at-a-time search for each line's `\n`, per line only
    /// the name's bytes are looked at one by one (the value is never scanned again), and a
    /// single UTF-8 check for all of it. Errors are the same, and reported for the same
    /// (first) line, as checking line by line would give.
    pub fn parse(block: &[u8]) -> Result<AgiEnv, EnvError> {
        match scan(block, &Bounds::NONE) {
            Scanned::Complete {
                len,
                blank_line,
                spans,
                error,
            } => {
                let env = finish(&block[..len], spans, error)?;
                if len != block.len() {
                    return Err(EnvError::TrailingData {
                        line: blank_line + 1,
                    });
                }
                Ok(env)
            }
            Scanned::Incomplete { complete, error } => {
                Err(first_error(&block[..complete], error).unwrap_or(EnvError::Unterminated))
            }
            // Unreachable without bounds; reported as what it would be, an unfinished block.
            Scanned::OutOfBounds(_) => Err(EnvError::Unterminated),
        }
    }

    /// The value of `agi_<name>`, e.g. `get("uniqueid")`. `None` when the line is absent;
    /// `Some("")` when it is present but empty (`agi_accountcode: `).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars().find(|&(n, _)| n == name).map(|(_, v)| v)
    }

    /// The FastAGI script name: `agi_network_script` without any `?query` or `|...` suffix
    /// (`screen?from=1.2.3.4` and `screen|1.2.3.4` both give `screen`).
    ///
    /// `None` when the line is missing, which is what Asterisk does for a URL without a path
    /// (`agi://127.0.0.1:4573`) and for non-network (stdin) AGI.
    pub fn script(&self) -> Option<&str> {
        let raw = self.get("network_script")?;
        Some(split_script(raw).0)
    }

    /// The script's arguments, as strings.
    ///
    /// 1. `agi_arg_1..N` in numeric order (`arg_10` after `arg_9`), empty ones included. Only
    ///    canonical numbers count (`arg_01` is not an argument; it stays in [`AgiEnv::vars`]).
    /// 2. If there are none, the old styles carried in `agi_network_script`:
    ///    * a URL query after the first `?`, split at `&`, each part percent-decoded (`%XX`;
    ///      `+` is kept as `+`, invalid escapes are kept literally, bytes that do not form
    ///      UTF-8 after decoding are replaced with U+FFFD):
    ///      * if no part contains `=`, the parts are positional: `screen?203.0.113.7` gives
    ///        `["203.0.113.7"]`;
    ///      * otherwise parts are `key=value` and only the keys `from` (argument 1) and `src`
    ///        (argument 2) are used, in that order whatever their order in the URL (keys are
    ///        ASCII case-insensitive, unknown keys and key-less parts are ignored, the first
    ///        occurrence wins). `from` alone gives `[from]`; `src` alone gives `["", src]`, so
    ///        the source address can never be mistaken for a From header.
    ///    * or `|`-separated after the first `|` (`screen|203.0.113.7|127.0.0.1`), kept as is.
    ///
    ///    Whichever of `?` and `|` comes first decides the style.
    /// 3. Otherwise no arguments.
    ///
    /// Values are borrowed from the block where they can be (everything but percent-decoded
    /// query parts), so the usual call allocates only the returned `Vec`.
    pub fn args(&self) -> Vec<Cow<'_, str>> {
        // Asterisk sends `agi_arg_1..N` in order: collect them in one pass, and sort only
        // when they were not in order.
        let mut args: Vec<Cow<'_, str>> = Vec::new();
        let mut in_order = true;
        for (name, value) in self.vars() {
            if let Some(i) = arg_index(name.as_bytes()) {
                in_order &= usize::try_from(i).is_ok_and(|i| i == args.len() + 1);
                args.push(Cow::Borrowed(value));
            }
        }
        if !in_order {
            let mut numbered: Vec<(u32, &str)> = self
                .vars()
                .filter_map(|(n, v)| Some((arg_index(n.as_bytes())?, v)))
                .collect();
            numbered.sort_by_key(|&(i, _)| i);
            return numbered
                .into_iter()
                .map(|(_, v)| Cow::Borrowed(v))
                .collect();
        }
        if !args.is_empty() {
            return args;
        }
        let Some(raw) = self.get("network_script") else {
            return Vec::new();
        };
        match split_script(raw).1 {
            Suffix::None => Vec::new(),
            Suffix::Query(query) => query_args(query),
            Suffix::Pipe(rest) => rest.split('|').map(Cow::Borrowed).collect(),
        }
    }

    /// The first two of [`AgiEnv::args`]: what a `screen` call uses (the From and the
    /// source). The same values, without collecting the other arguments: nothing is
    /// allocated unless an old-style argument has to be percent-decoded.
    pub fn first_two_args(&self) -> [Option<Cow<'_, str>>; 2] {
        // The two smallest argument numbers (names are unique, so numbers are too).
        let mut first: Option<(u32, &str)> = None;
        let mut second: Option<(u32, &str)> = None;
        for span in &self.spans {
            let Some(i) = arg_index(&self.text.as_bytes()[span.name_start..span.name_end]) else {
                continue;
            };
            let value = &self.text[span.value_start..span.value_end];
            match (first, second) {
                (None, _) => first = Some((i, value)),
                (Some((a, _)), _) if i < a => {
                    second = first;
                    first = Some((i, value));
                }
                (_, None) => second = Some((i, value)),
                (_, Some((b, _))) if i < b => second = Some((i, value)),
                _ => {}
            }
        }
        if first.is_some() {
            return [first, second].map(|arg| arg.map(|(_, value)| Cow::Borrowed(value)));
        }
        let mut args = self.args().into_iter();
        [args.next(), args.next()]
    }

    /// `agi_uniqueid`, Asterisk's id of the channel (`1795611310.0`).
    pub fn uniqueid(&self) -> Option<&str> {
        self.get("uniqueid")
    }

    /// `agi_callerid`, the caller-ID number (`bob`).
    pub fn callerid(&self) -> Option<&str> {
        self.get("callerid")
    }

    /// `agi_channel`, the channel name (`PJSIP/sipp-00000000`).
    pub fn channel(&self) -> Option<&str> {
        self.get("channel")
    }

    /// All variables in the order received, names without the `agi_` prefix.
    pub fn vars(&self) -> impl ExactSizeIterator<Item = (&str, &str)> + '_ {
        self.spans.iter().map(|s| {
            (
                &self.text[s.name_start..s.name_end],
                &self.text[s.value_start..s.value_end],
            )
        })
    }
}

/// Bounds on an environment block, checked while it is scanned (the connection's `Limits`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bounds {
    /// Longest line, `\n` not counted.
    pub(crate) max_line: usize,
    /// Largest block, its empty line included.
    pub(crate) max_block: usize,
    /// Most lines, the empty line not counted.
    pub(crate) max_lines: usize,
}

impl Bounds {
    /// No bounds at all.
    const NONE: Bounds = Bounds {
        max_line: usize::MAX,
        max_block: usize::MAX,
        max_lines: usize::MAX,
    };
}

/// Which [`Bounds`] field a block broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Bound {
    /// A line is longer than `max_line`.
    Line,
    /// The block is larger than `max_block`.
    Block,
    /// The block has more than `max_lines` lines.
    Lines,
}

/// What [`parse_prefix`] found at the start of a buffer.
#[derive(Debug)]
pub(crate) enum Prefix {
    /// A whole block, `len` bytes long (up to and including its empty line), parsed or not.
    Complete {
        /// Length of the block.
        len: usize,
        /// The parsed block, or why it does not parse.
        env: Result<AgiEnv, EnvError>,
    },
    /// No empty line yet, and no bound broken.
    Incomplete,
    /// A bound is broken (checked as the connection's framing checks it: line by line, in
    /// order, before anything about the lines' contents).
    OutOfBounds(Bound),
}

/// Frames and parses the environment block at the start of `buf` in a single pass: what the
/// connection's framing followed by [`AgiEnv::parse`] of the framed block would give (unit
/// tests in `connection_tests.rs` hold the two against each other), for a buffer that holds
/// the whole block.
pub(crate) fn parse_prefix(buf: &[u8], bounds: &Bounds) -> Prefix {
    match scan(buf, bounds) {
        Scanned::Complete {
            len, spans, error, ..
        } => Prefix::Complete {
            len,
            env: finish(&buf[..len], spans, error),
        },
        Scanned::Incomplete { .. } => Prefix::Incomplete,
        Scanned::OutOfBounds(bound) => Prefix::OutOfBounds(bound),
    }
}

/// Finds the end of an environment block: the index just past the first empty line (`\n`, or
/// `\r\n`), counting lines from the start of `buf`. A buffer that starts with an empty line is
/// a complete (empty) block of length 1 (or 2 for `\r\n`). `None` while the block is incomplete.
pub fn find_block_end(buf: &[u8]) -> Option<usize> {
    let mut start = 0;
    for nl in Newlines::new(buf, 0) {
        if is_blank_line(&buf[start..nl]) {
            return Some(nl + 1);
        }
        start = nl + 1;
    }
    None
}

/// The positions of the `\n`s in `haystack[start..]`, in order (as indexes into
/// `haystack`), found eight bytes at a time: a 700-byte block takes about ninety steps, plus
/// one per line. Shared with `connection.rs`, whose framing scans the same way.
#[derive(Debug, Clone)]
pub(crate) struct Newlines<'a> {
    haystack: &'a [u8],
    /// Index of the first byte of the word `mask` describes.
    base: usize,
    /// The high bit of each byte of that word that is a `\n` not yet returned.
    mask: u64,
    /// Index of the first byte not yet loaded.
    next: usize,
}

impl<'a> Newlines<'a> {
    /// The `\n`s of `haystack` from index `start` on (none if `start` is past the end).
    pub(crate) fn new(haystack: &'a [u8], start: usize) -> Self {
        Newlines {
            haystack,
            base: 0,
            mask: 0,
            next: start.min(haystack.len()),
        }
    }
}

impl Iterator for Newlines<'_> {
    type Item = usize;

    #[inline]
    fn next(&mut self) -> Option<usize> {
        if self.mask == 0 {
            let rest = self.haystack.get(self.next..).unwrap_or_default();
            let mut words = rest.chunks_exact(8);
            let mut base = self.next;
            for word in &mut words {
                let mut bytes = [0u8; 8];
                bytes.copy_from_slice(word);
                let mask = newline_mask(bytes);
                base += 8;
                if mask != 0 {
                    self.base = base - 8;
                    self.mask = mask;
                    break;
                }
            }
            if self.mask == 0 {
                // The tail, padded with zero bytes (which are not `\n`s).
                let tail = words.remainder();
                let mut bytes = [0u8; 8];
                for (to, from) in bytes.iter_mut().zip(tail) {
                    *to = *from;
                }
                self.base = base;
                self.mask = newline_mask(bytes);
                base += tail.len();
            }
            self.next = base;
            if self.mask == 0 {
                return None;
            }
        }
        let at = self.base + (self.mask.trailing_zeros() / 8) as usize;
        self.mask &= self.mask - 1;
        Some(at)
    }
}

/// The high bit of every byte of `word` that is a `\n`, and no other bit. Little-endian, so
/// the first byte in memory is the lowest.
#[inline]
fn newline_mask(word: [u8; 8]) -> u64 {
    const LOW7: u64 = u64::from_ne_bytes([0x7f; 8]);
    const NEWLINES: u64 = u64::from_ne_bytes([b'\n'; 8]);
    // `x` has a zero byte exactly where the word has a `\n`. Per byte, `(x & 0x7f) + 0x7f`
    // has its high bit set unless the low seven bits are zero (and never carries into the
    // next byte: 0x7f + 0x7f < 0x100); `| x` adds the byte's own high bit. What stays clear
    // is a zero byte.
    let x = u64::from_le_bytes(word) ^ NEWLINES;
    !(((x & LOW7).wrapping_add(LOW7)) | x | LOW7)
}

/// True for the line (without its `\n`) that terminates a block: empty, or a lone `\r`.
/// Shared with `connection.rs` so framing and parsing agree on what ends a block.
pub(crate) fn is_blank_line(line: &[u8]) -> bool {
    line.is_empty() || line == b"\r"
}

/// The result of [`scan`].
enum Scanned {
    Complete {
        len: usize,
        /// Line number of the empty line.
        blank_line: usize,
        spans: Vec<Span>,
        /// The first error in the lines' structure (UTF-8 not checked yet).
        error: Option<EnvError>,
    },
    Incomplete {
        /// Length of the complete lines.
        complete: usize,
        /// The first error in the complete lines' structure (UTF-8 not checked yet).
        error: Option<EnvError>,
    },
    OutOfBounds(Bound),
}

/// One pass over the lines at the start of `buf`, up to the first empty line: the bounds
/// (in the order the connection's framing checks them), each line's structure and the
/// duplicate names (up to the first error, which is kept), and the spans.
fn scan(buf: &[u8], bounds: &Bounds) -> Scanned {
    let mut spans: Vec<Span> = Vec::with_capacity(32);
    let mut seen = NameFilter::default();
    let mut error = None;
    let mut start = 0usize;
    let mut lines = 0usize;
    for nl in Newlines::new(buf, 0) {
        if nl - start > bounds.max_line {
            return Scanned::OutOfBounds(Bound::Line);
        }
        if nl + 1 > bounds.max_block {
            return Scanned::OutOfBounds(Bound::Block);
        }
        let line = &buf[start..nl];
        if is_blank_line(line) {
            return Scanned::Complete {
                len: nl + 1,
                blank_line: lines + 1,
                spans,
                error,
            };
        }
        lines += 1;
        if lines > bounds.max_lines {
            return Scanned::OutOfBounds(Bound::Lines);
        }
        if error.is_none() {
            let end = if line.last() == Some(&b'\r') {
                nl - 1
            } else {
                nl
            };
            match parse_line(buf, start, end, lines) {
                Ok(span) => {
                    let name = &buf[span.name_start..span.name_end];
                    if !seen.insert(name)
                        && spans.iter().any(|s| &buf[s.name_start..s.name_end] == name)
                    {
                        error = Some(EnvError::DuplicateName { line: lines });
                    } else {
                        spans.push(span);
                    }
                }
                Err(e) => error = Some(e),
            }
        }
        start = nl + 1;
    }
    if buf.len() - start > bounds.max_line {
        return Scanned::OutOfBounds(Bound::Line);
    }
    if buf.len() > bounds.max_block {
        return Scanned::OutOfBounds(Bound::Block);
    }
    Scanned::Incomplete {
        complete: start,
        error,
    }
}

/// The environment from a scanned, complete `block`, or the first error of its lines.
fn finish(block: &[u8], spans: Vec<Span>, error: Option<EnvError>) -> Result<AgiEnv, EnvError> {
    match std::str::from_utf8(block) {
        Ok(text) => match error {
            Some(e) => Err(e),
            None => Ok(AgiEnv {
                text: text.to_owned(),
                spans,
            }),
        },
        Err(_) => Err(first_error(block, error).unwrap_or(EnvError::Unterminated)),
    }
}

/// The first error of the complete lines `lines`, given the first error of their structure:
/// a line that is not UTF-8 is reported as such, before anything else about it.
fn first_error(lines: &[u8], structure: Option<EnvError>) -> Option<EnvError> {
    let utf8 = std::str::from_utf8(lines).err().map(|e| {
        // The invalid sequence starts inside a line (never at a `\n`): its number is one
        // more than the number of `\n`s before it.
        let line = 1 + Newlines::new(&lines[..e.valid_up_to()], 0).count();
        EnvError::NotUtf8 { line }
    });
    match (utf8, structure) {
        (Some(u), Some(s)) => Some(if line_of(&u) <= line_of(&s) { u } else { s }),
        (u, s) => u.or(s),
    }
}

/// The line an error is about.
fn line_of(e: &EnvError) -> usize {
    match *e {
        EnvError::NotUtf8 { line }
        | EnvError::MissingPrefix { line }
        | EnvError::MissingSeparator { line }
        | EnvError::BadName { line }
        | EnvError::DuplicateName { line }
        | EnvError::TrailingData { line } => line,
        EnvError::Unterminated => usize::MAX,
    }
}

/// Splits the non-blank line `block[start..end]` (without its `\n` and any `\r` before it;
/// UTF-8 is checked separately) into the spans of its name (without `agi_`) and value: the name is
/// what comes before the first `": "`, the value everything after it.
fn parse_line(block: &[u8], start: usize, end: usize, line_no: usize) -> Result<Span, EnvError> {
    let line = &block[start..end];
    let Some(rest) = line.strip_prefix(b"agi_") else {
        return Err(EnvError::MissingPrefix { line: line_no });
    };
    let name_len = rest
        .iter()
        .position(|&b| !NAME_BYTES[usize::from(b)])
        .unwrap_or(rest.len());
    if !rest[name_len..].starts_with(b": ") {
        // The first `": "` (if any) comes after a byte that cannot be in a name.
        return Err(if rest.windows(2).any(|w| w == b": ") {
            EnvError::BadName { line: line_no }
        } else {
            EnvError::MissingSeparator { line: line_no }
        });
    }
    if name_len == 0 {
        return Err(EnvError::BadName { line: line_no });
    }
    let name_start = start + 4;
    let name_end = name_start + name_len;
    Ok(Span {
        name_start,
        name_end,
        value_start: name_end + 2,
        value_end: end,
    })
}

/// `[A-Za-z0-9_]`, the bytes of a variable name, as a table (one load per byte).
static NAME_BYTES: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric() || c == b'_';
        b += 1;
    }
    table
};

/// A one-hash Bloom filter of the names seen so far in a block (128 bits): a name not in it
/// cannot be a duplicate, so the exact comparison with the earlier names runs only on a hit
/// (a repeated name, or now and then two names sharing a bit).
#[derive(Default)]
struct NameFilter(u128);

impl NameFilter {
    /// Adds `name`; false if its bit was already set (the name may have been seen).
    fn insert(&mut self, name: &[u8]) -> bool {
        // Length, first and last two bytes: enough to tell Asterisk's names apart
        // (`arg_1`/`arg_2`, `callingpres`/`callingani2`); a collision only costs a scan.
        let byte = |i: Option<usize>| i.and_then(|i| name.get(i)).copied().unwrap_or(0);
        let key = u64::from_le_bytes([
            byte(Some(0)),
            byte(name.len().checked_sub(1)),
            byte(name.len().checked_sub(2)),
            name.len() as u8,
            0,
            0,
            0,
            0,
        ]);
        let bit = 1u128 << (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 57);
        let new = self.0 & bit == 0;
        self.0 |= bit;
        new
    }
}

/// `arg_<N>` with canonical decimal `N >= 1` (that fits a `u32`) gives `Some(N)`.
#[inline]
fn arg_index(name: &[u8]) -> Option<u32> {
    let digits = name.strip_prefix(b"arg_")?;
    if digits.is_empty() || digits[0] == b'0' {
        return None;
    }
    let mut n: u32 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(u32::from(d - b'0'))?;
    }
    Some(n)
}

/// What follows the script name in `agi_network_script`.
enum Suffix<'a> {
    None,
    Query(&'a str),
    Pipe(&'a str),
}

/// Splits `screen?q` / `screen|a|b` / `screen` at whichever of `?` and `|` comes first.
fn split_script(raw: &str) -> (&str, Suffix<'_>) {
    match raw.find(['?', '|']) {
        None => (raw, Suffix::None),
        Some(i) if raw.as_bytes()[i] == b'?' => (&raw[..i], Suffix::Query(&raw[i + 1..])),
        Some(i) => (&raw[..i], Suffix::Pipe(&raw[i + 1..])),
    }
}

/// Arguments from a URL query; see [`AgiEnv::args`] for the rules.
fn query_args(query: &str) -> Vec<Cow<'_, str>> {
    if query.is_empty() {
        return Vec::new();
    }
    let parts: Vec<&str> = query.split('&').collect();
    if !parts.iter().any(|p| p.contains('=')) {
        return parts.into_iter().map(percent_decode).collect();
    }
    let named = |key: &str| {
        parts.iter().find_map(|p| {
            let (k, v) = p.split_once('=')?;
            k.eq_ignore_ascii_case(key).then(|| percent_decode(v))
        })
    };
    match (named("from"), named("src")) {
        (from, Some(src)) => vec![from.unwrap_or_default(), src],
        (Some(from), None) => vec![from],
        (None, None) => Vec::new(),
    }
}

/// Decodes `%XX` escapes; anything else (including `+` and broken escapes) is kept.
fn percent_decode(s: &str) -> Cow<'_, str> {
    if !s.contains('%') {
        return Cow::Borrowed(s);
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            if let (Some(h), Some(l)) = (
                bytes.get(i + 1).and_then(|&b| hex_val(b)),
                bytes.get(i + 2).and_then(|&b| hex_val(b)),
            ) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Directory of the captured Asterisk 20 sessions.
    pub(crate) const SESSIONS: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/fixtures/asterisk-agi/sessions"
    );

    /// Every `<case>` that has a `<case>.header.raw`, sorted.
    pub(crate) fn session_cases() -> Vec<String> {
        let mut cases: Vec<String> = std::fs::read_dir(SESSIONS)
            .expect("fixture directory readable")
            .filter_map(|e| {
                let name = e.ok()?.file_name().into_string().ok()?;
                name.strip_suffix(".header.raw").map(str::to_owned)
            })
            .collect();
        cases.sort();
        cases
    }

    pub(crate) fn fixture(case: &str, suffix: &str) -> Vec<u8> {
        let path = format!("{SESSIONS}/{case}.{suffix}");
        std::fs::read(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"))
    }

    fn header(case: &str) -> AgiEnv {
        let raw = fixture(case, "header.raw");
        AgiEnv::parse(&raw).unwrap_or_else(|e| panic!("{case}: {e}"))
    }

    #[test]
    fn every_captured_header_parses() {
        let cases = session_cases();
        assert!(
            cases.len() >= 40,
            "expected the whole capture set, got {}",
            cases.len()
        );
        for case in &cases {
            let raw = fixture(case, "header.raw");
            assert_eq!(find_block_end(&raw), Some(raw.len()), "{case}: framing");
            let env = header(case);
            assert_eq!(env.get("network"), Some("yes"), "{case}");
            assert_eq!(env.get("version"), Some("20.20.1"), "{case}");
            assert_eq!(env.get("enhanced"), Some("0.0"), "{case}");
            assert_eq!(env.get("accountcode"), Some(""), "{case}: empty value kept");
            assert!(env.uniqueid().is_some_and(|u| u.contains('.')), "{case}");
            assert!(env.channel().is_some(), "{case}");
            // Names are stored without the prefix, in wire order.
            assert_eq!(env.vars().next().map(|v| v.0), Some("network"), "{case}");
            let lines = raw.iter().filter(|&&b| b == b'\n').count() - 1;
            assert_eq!(env.vars().len(), lines, "{case}: one var per line");
        }
    }

    #[test]
    fn pjsip_ipv4_values() {
        let env = header("pjsip-ipv4");
        assert_eq!(env.script(), Some("screen"));
        assert_eq!(env.get("request"), Some("agi://127.0.0.1:4573/screen"));
        assert_eq!(env.channel(), Some("PJSIP/sipp-00000000"));
        assert_eq!(env.uniqueid(), Some("1795611310.0"));
        assert_eq!(env.callerid(), Some("bob"));
        assert_eq!(env.get("calleridname"), Some("Bob"));
        assert_eq!(env.get("type"), Some("PJSIP"));
        assert_eq!(env.get("threadid"), Some("140143344211648"));
        assert_eq!(env.get("agi_uniqueid"), None, "prefix is stripped");
        assert_eq!(env.get("nonexistent"), None);
        assert_eq!(
            env.args(),
            [
                "Bob <sip:bob@203.0.113.7>;tag=27303SIPpTag001",
                "127.0.0.1:15201"
            ]
        );
    }

    #[test]
    fn args_literal_keeps_empty_and_padding() {
        let env = header("args-literal");
        assert_eq!(env.get("arg_7"), Some(""));
        assert_eq!(
            env.args(),
            [
                "plain",
                "with space",
                "quoted, comma",
                "escaped,comma",
                "'single'",
                "a \"q\" b",
                "",
                "  padded  ",
                "semi"
            ]
        );
    }

    #[test]
    fn args_with_tab_and_punctuation() {
        let env = header("args-literal-escaped-semicolon");
        assert_eq!(
            env.args(),
            [
                "semi;colon",
                "pipe|bar",
                "tab\there",
                "dollar$",
                "brace{x}",
                "last"
            ]
        );
    }

    #[test]
    fn display_name_escapes_survive() {
        let env = header("pjsip-display-escaped");
        let args = env.args();
        assert!(
            args[0].starts_with("Bob \"the\" <Builder> <sip:bob@203.0.113.7>"),
            "{args:?}"
        );
        assert_eq!(env.get("calleridname"), Some("Bob \\\"the\\\" <Builder>"));
    }

    #[test]
    fn ipv6_agi_url_is_kept_verbatim() {
        let env = header("agi-url-ipv6");
        assert_eq!(env.get("request"), Some("agi://[::1]:4573/screen"));
        assert_eq!(env.script(), Some("screen"));
    }

    #[test]
    fn no_script_line_means_none() {
        let env = header("no-script");
        assert_eq!(env.script(), None);
        assert_eq!(env.get("request"), Some("agi://127.0.0.1:4573"));
        assert!(env.args().is_empty());
    }

    #[test]
    fn url_query_args_from_capture() {
        let env = header("url-query-args");
        assert_eq!(env.script(), Some("screen"));
        assert_eq!(env.args(), ["203.0.113.7", "127.0.0.1"]);
    }

    #[test]
    fn legacy_pipe_args_from_capture() {
        let env = header("legacy-pipe");
        assert_eq!(env.script(), Some("screen"));
        assert_eq!(env.args(), ["203.0.113.7"]);
    }

    fn env_with_script(script: &str) -> AgiEnv {
        let block = format!("agi_network: yes\nagi_network_script: {script}\n\n");
        AgiEnv::parse(block.as_bytes()).expect("valid block")
    }

    #[test]
    fn query_and_pipe_styles() {
        let cases: &[(&str, &[&str])] = &[
            (
                "screen?from=203.0.113.7&src=127.0.0.1",
                &["203.0.113.7", "127.0.0.1"],
            ),
            (
                "screen?src=127.0.0.1&from=203.0.113.7",
                &["203.0.113.7", "127.0.0.1"],
            ),
            (
                "screen?SRC=127.0.0.1&From=203.0.113.7",
                &["203.0.113.7", "127.0.0.1"],
            ),
            ("screen?from=a&x=y&from=b", &["a"]),
            ("screen?src=127.0.0.1", &["", "127.0.0.1"]),
            ("screen?x=1", &[]),
            ("screen?203.0.113.7", &["203.0.113.7"]),
            (
                "screen?203.0.113.7&127.0.0.1",
                &["203.0.113.7", "127.0.0.1"],
            ),
            (
                "screen?from=%22Bob%22%20%3Csip%3Abob%401.2.3.4%3E",
                &["\"Bob\" <sip:bob@1.2.3.4>"],
            ),
            ("screen?from=tel:+1555&src=%zz%4", &["tel:+1555", "%zz%4"]),
            ("screen?from=%ff", &["\u{fffd}"]),
            ("screen?", &[]),
            (
                "screen|203.0.113.7|127.0.0.1",
                &["203.0.113.7", "127.0.0.1"],
            ),
            ("screen||x", &["", "x"]),
            ("screen|a?b=c", &["a?b=c"]),
            ("screen?from=a|b", &["a|b"]),
            ("screen", &[]),
        ];
        for (script, want) in cases {
            let env = env_with_script(script);
            assert_eq!(env.script(), Some("screen"), "{script}");
            assert_eq!(env.args(), *want, "{script}");
        }
    }

    #[test]
    fn numbered_args_win_and_sort_numerically() {
        let mut block = String::from("agi_network_script: screen?from=ignored\n");
        for i in (1..=11).rev() {
            block.push_str(&format!("agi_arg_{i}: v{i}\n"));
        }
        block.push_str("agi_arg_01: not-an-arg\nagi_arg_x: nope\n\n");
        let env = AgiEnv::parse(block.as_bytes()).expect("valid");
        let want: Vec<String> = (1..=11).map(|i| format!("v{i}")).collect();
        assert_eq!(env.args(), want);
        assert_eq!(env.get("arg_01"), Some("not-an-arg"));
    }

    #[test]
    fn crlf_and_unknown_names_are_tolerated() {
        let env =
            AgiEnv::parse(b"agi_network: yes\r\nagi_future_thing: x: y\r\nagi_arg_1: a\r\n\r\n")
                .expect("valid");
        assert_eq!(env.get("network"), Some("yes"));
        assert_eq!(
            env.get("future_thing"),
            Some("x: y"),
            "split at the first `: `"
        );
        assert_eq!(env.args(), ["a"]);
        assert_eq!(find_block_end(b"a\r\n\r\nrest"), Some(5));
    }

    #[test]
    fn empty_block_is_valid() {
        assert_eq!(AgiEnv::parse(b"\n"), Ok(AgiEnv::default()));
        assert_eq!(find_block_end(b"\n"), Some(1));
        assert_eq!(find_block_end(b"\nHANGUP\n"), Some(1));
    }

    #[test]
    fn find_block_end_cases() {
        assert_eq!(find_block_end(b""), None);
        assert_eq!(find_block_end(b"agi_a: b\n"), None);
        assert_eq!(find_block_end(b"agi_a: b\n\n"), Some(10));
        assert_eq!(find_block_end(b"agi_a: b\n\nHANGUP\n"), Some(10));
        assert_eq!(find_block_end(b"agi_a: b\nagi_c: \n\n"), Some(18));
    }

    #[test]
    fn typed_errors_with_line_numbers() {
        let cases: &[(&[u8], EnvError)] = &[
            (b"not agi\n\n", EnvError::MissingPrefix { line: 1 }),
            (
                b"agi_a: 1\nagi_b 2\n\n",
                EnvError::MissingSeparator { line: 2 },
            ),
            (
                b"agi_a: 1\nagi_b:\n\n",
                EnvError::MissingSeparator { line: 2 },
            ),
            (b"agi_: 1\n\n", EnvError::BadName { line: 1 }),
            (b"agi_a b: 1\n\n", EnvError::BadName { line: 1 }),
            (b"agi_a: 1\nagi_b: \xff\n\n", EnvError::NotUtf8 { line: 2 }),
            // Not UTF-8 is reported before anything else about the same line.
            (b"agi_\xff: 1\n\n", EnvError::NotUtf8 { line: 1 }),
            (b"x\xc3\nagi_a\n\n", EnvError::NotUtf8 { line: 1 }),
            (
                b"agi_a: 1\nagi_a: \xe2\x82\n\n",
                EnvError::NotUtf8 { line: 2 },
            ),
            (
                b"agi_a: 1\nagi_a: 2\n\n",
                EnvError::DuplicateName { line: 2 },
            ),
            (b"agi_a: 1\n", EnvError::Unterminated),
            (b"agi_a: 1", EnvError::Unterminated),
            (b"", EnvError::Unterminated),
            (b"agi_a: 1\n\nHANGUP\n", EnvError::TrailingData { line: 3 }),
            (b"HANGUP\n\n", EnvError::MissingPrefix { line: 1 }),
        ];
        for (input, want) in cases {
            assert_eq!(
                AgiEnv::parse(input),
                Err(*want),
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
        assert_eq!(
            EnvError::MissingPrefix { line: 3 }.to_string(),
            "AGI environment line 3: does not start with `agi_`"
        );
    }

    /// `agi_`-block parsing, checking every line on its own: the behaviour `AgiEnv::parse`
    /// had before it was made a single pass, kept as the oracle for it.
    fn parse_line_by_line(block: &[u8]) -> Result<Vec<(String, String)>, EnvError> {
        let mut vars: Vec<(String, String)> = Vec::new();
        let mut pos = 0;
        let mut line_no = 0;
        loop {
            line_no += 1;
            let rest = &block[pos..];
            let Some(nl) = rest.iter().position(|&b| b == b'\n') else {
                return Err(EnvError::Unterminated);
            };
            let line = &rest[..nl];
            if line.is_empty() || line == b"\r" {
                if pos + nl + 1 == block.len() {
                    return Ok(vars);
                }
                return Err(EnvError::TrailingData { line: line_no + 1 });
            }
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let text =
                std::str::from_utf8(line).map_err(|_| EnvError::NotUtf8 { line: line_no })?;
            let rest = text
                .strip_prefix("agi_")
                .ok_or(EnvError::MissingPrefix { line: line_no })?;
            let (name, value) = rest
                .split_once(": ")
                .ok_or(EnvError::MissingSeparator { line: line_no })?;
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                return Err(EnvError::BadName { line: line_no });
            }
            if vars.iter().any(|(n, _)| n == name) {
                return Err(EnvError::DuplicateName { line: line_no });
            }
            vars.push((name.to_owned(), value.to_owned()));
            pos += nl + 1;
        }
    }

    fn owned_vars(env: &AgiEnv) -> Vec<(String, String)> {
        env.vars()
            .map(|(n, v)| (n.to_owned(), v.to_owned()))
            .collect()
    }

    #[test]
    fn single_pass_matches_line_by_line_on_every_capture() {
        for case in session_cases() {
            let raw = fixture(&case, "header.raw");
            let want = parse_line_by_line(&raw);
            assert_eq!(AgiEnv::parse(&raw).map(|e| owned_vars(&e)), want, "{case}");
        }
        // Many names, some sharing length, first and last bytes (Bloom filter collisions).
        let mut block = String::new();
        for a in b'a'..=b'z' {
            for b in [b'x', b'y'] {
                block.push_str(&format!(
                    "agi_{}{}_{}: v\n",
                    a as char, b as char, a as char
                ));
            }
        }
        block.push('\n');
        let env = AgiEnv::parse(block.as_bytes()).expect("distinct names");
        assert_eq!(env.vars().len(), 52);
        let repeated = format!("{}agi_zy_z: again\n\n", &block[..block.len() - 1]);
        assert_eq!(
            AgiEnv::parse(repeated.as_bytes()),
            Err(EnvError::DuplicateName { line: 53 })
        );
    }

    proptest! {
        #[test]
        fn single_pass_matches_line_by_line(lines in proptest::collection::vec(
            prop_oneof![
                "(agi_)?[a-z_0-9 :]{0,8}(: ?)?[ -~\t\r:]{0,12}".prop_map(String::into_bytes),
                "agi_(network|arg_1|arg_2|a|b|ab|ba)(: )[ -~]{0,6}".prop_map(String::into_bytes),
                // Not UTF-8, in the name, the value or instead of the separator.
                ("(agi_)?[a-z]{0,3}", prop_oneof![Just(&b"\xff"[..]), Just(&b"\xc3"[..]), Just(&b"\xe2\x82"[..])], "(: )?[a-z]{0,3}")
                    .prop_map(|(a, bad, b)| [a.as_bytes(), bad, b.as_bytes()].concat()),
                proptest::collection::vec(any::<u8>(), 0..12),
            ],
            0..12),
            raw_tail in proptest::collection::vec(any::<u8>(), 0..4),
            terminate in any::<bool>(),
        ) {
            let mut block = lines.join(&b'\n');
            if terminate {
                block.extend_from_slice(b"\n\n");
            }
            block.extend_from_slice(&raw_tail);
            let want = parse_line_by_line(&block);
            prop_assert_eq!(AgiEnv::parse(&block).map(|e| owned_vars(&e)), want);
        }

        #[test]
        fn first_two_args_are_the_first_two_args(
            numbers in proptest::collection::vec(prop_oneof![1u64..6, Just(10), Just(4_294_967_295), Just(4_294_967_296)], 0..6),
            script in prop_oneof![Just("screen"), Just("screen?a&b%41&c"), Just("screen?src=x"), Just("screen|p|q")],
        ) {
            let mut block = format!("agi_network_script: {script}\n");
            let mut seen = Vec::new();
            for n in numbers {
                if !seen.contains(&n) {
                    seen.push(n);
                    block.push_str(&format!("agi_arg_{n}: v{n}\nagi_arg_0{n}: not{n}\n"));
                }
            }
            block.push('\n');
            let env = AgiEnv::parse(block.as_bytes()).expect("valid block");
            let args = env.args();
            let want = [args.first().cloned(), args.get(1).cloned()];
            prop_assert_eq!(env.first_two_args(), want);
        }

        #[test]
        fn newlines_finds_every_newline(
            bytes in proptest::collection::vec(prop_oneof![Just(b'\n'), Just(b'\x0b'), Just(b'\x8a'), any::<u8>()], 0..80),
            start in 0usize..90,
        ) {
            let want: Vec<usize> = bytes
                .iter()
                .enumerate()
                .filter(|&(i, &b)| i >= start && b == b'\n')
                .map(|(i, _)| i)
                .collect();
            prop_assert_eq!(Newlines::new(&bytes, start).collect::<Vec<_>>(), want);
        }

        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = AgiEnv::parse(&bytes);
            if let Some(end) = find_block_end(&bytes) {
                prop_assert!(end <= bytes.len());
                prop_assert_eq!(bytes[end - 1], b'\n');
            }
        }

        #[test]
        fn parse_never_panics_on_near_valid(lines in proptest::collection::vec(
            "(agi_)?[a-z_0-9 ]{0,6}(: ?)?[ -~\\t\\r%?|&=]{0,12}", 0..12)) {
            let mut block = lines.join("\n");
            block.push_str("\n\n");
            if let Ok(env) = AgiEnv::parse(block.as_bytes()) {
                let _ = (env.script(), env.args());
                for (name, value) in env.vars() {
                    prop_assert_eq!(env.get(name), Some(value));
                }
            }
        }

        #[test]
        fn valid_blocks_round_trip(values in proptest::collection::vec("[^\n\r]{0,20}", 0..20)) {
            let mut block = String::from("agi_network_script: s\n");
            for (i, v) in values.iter().enumerate() {
                block.push_str(&format!("agi_arg_{}: {v}\n", i + 1));
            }
            block.push('\n');
            prop_assert_eq!(find_block_end(block.as_bytes()), Some(block.len()));
            let env = AgiEnv::parse(block.as_bytes()).expect("valid block");
            prop_assert_eq!(env.args(), values);
        }
    }
}
