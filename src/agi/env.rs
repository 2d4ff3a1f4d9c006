//! The `agi_*` environment block Asterisk sends first on every AGI session.
//!
//! Data flow: `agi::connection` frames the block (everything up to and including the first empty
//! line), handing each line to an `EnvParser` as soon as it is framed and the whole block to it
//! at the end ([`AgiEnv::parse`] does the same for a block in hand); the session then reads
//! typed values ([`AgiEnv::script`], [`AgiEnv::args`], ...). Nothing here does I/O.
//!
//! # Wire format (Asterisk 20, see `shared/fixtures/asterisk-agi/README.md`)
//!
//! ```text
//! agi_network: yes\n
//! agi_network_script: screen\n
//! ...
//! agi_accountcode: \n            <- an empty value is `name: ` followed by the newline
//! agi_arg_1: 127.0.0.1:15201\n
//! agi_arg_2: Bob <sip:bob@203.0.113.7>;tag=x\n
//! \n                             <- the empty line ends the block
//! ```
//!
//! # Strictness
//!
//! * Every line must be `agi_<name>: <value>`; `<name>` is `[A-Za-z0-9_]+`. The value is
//!   everything after the first `": "`, kept as it came (leading/trailing spaces and tabs are
//!   data: `agi_arg_8:   padded  `).
//! * A `\r` right before a `\n` is tolerated and dropped (Asterisk never sends one).
//! * The same name twice is rejected ([`EnvError::DuplicateName`]), so two readers of the
//!   environment can never see different values for one name.
//! * Names starting with `arg_` are the script's arguments and must be `arg_1`, `arg_2`, ... in
//!   that order ([`EnvError::BadArgument`]), which is all Asterisk writes.
//! * The block must end with its empty line and nothing may follow it.
//!
//! # Bytes that are not UTF-8
//!
//! Asterisk passes the caller's From header and display name through as received, so a block
//! is not guaranteed to be UTF-8 (`hostile-pjsip-non-utf8-display`). Such bytes are **not** an
//! error: each invalid sequence is replaced by U+FFFD ([`AgiEnv::had_invalid_utf8`] says whether
//! that happened). This can never make a caller look better: everything that decides (the
//! source address, the From's host) is ASCII, and a replacement character in it makes it fail
//! to parse, while in a display name it only changes what is shown.

/// The parsed environment block: every `agi_<name>: <value>` line, in order.
///
/// Names are stored **without** the `agi_` prefix (`uniqueid`, `arg_1`, ...). Unknown names are
/// kept, so a newer Asterisk adding variables does not break parsing.
///
/// The block is kept as one string with the byte ranges of each name and value.
#[derive(Debug, Clone, Default)]
pub struct AgiEnv {
    /// The whole block (invalid UTF-8 replaced).
    text: String,
    /// Byte ranges of each line's name and value in `text`, in order.
    vars: Vec<Var>,
    /// Indexes into `vars` of `arg_1..=arg_N`, in order.
    args: Vec<usize>,
    /// Whether some byte of the block was not UTF-8.
    lossy: bool,
}

/// Where one `agi_<name>: <value>` line's parts are in [`AgiEnv::text`] (byte offsets).
#[derive(Debug, Clone, Copy)]
struct Var {
    name: (usize, usize),
    value: (usize, usize),
    /// [`name_key`] of the name.
    key: u64,
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
    /// An `arg_` name that is not the next argument number (`arg_1`, `arg_2`, ...).
    #[error("AGI environment line {line}: arguments must be agi_arg_1, agi_arg_2, ... in order")]
    BadArgument {
        /// 1-based line number.
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
    /// line. A block that is only `"\n"` gives an empty environment.
    pub fn parse(block: &[u8]) -> Result<AgiEnv, EnvError> {
        let mut parser = EnvParser::default();
        let mut start = 0;
        for nl in memchr::memchr_iter(b'\n', block) {
            if is_blank(block, start, nl) {
                if nl + 1 != block.len() {
                    return Err(EnvError::TrailingData {
                        line: parser.line + 2,
                    });
                }
                return parser.finish(block.to_vec());
            }
            parser.line(block, start, nl);
            // The first bad line decides, whatever follows it.
            if let Some(e) = parser.error {
                return Err(e);
            }
            start = nl + 1;
        }
        Err(EnvError::Unterminated)
    }

    /// The value of `agi_<name>`, e.g. `get("uniqueid")`. `None` when the line is absent;
    /// `Some("")` when it is present but empty (`agi_accountcode: `).
    pub fn get(&self, name: &str) -> Option<&str> {
        let key = name_key(name.as_bytes());
        let bytes = self.text.as_bytes();
        let i = self
            .vars
            .iter()
            .position(|v| v.key == key && &bytes[v.name.0..v.name.1] == name.as_bytes())?;
        Some(self.value(i))
    }

    /// The FastAGI script name, `agi_network_script`, as sent: the URL's path without its
    /// leading `/`, including any `?query` or `|...` (which this server does not read).
    ///
    /// `None` when the line is missing, which is what Asterisk does for a URL without a path
    /// (`agi://127.0.0.1:4573`) and for non-network (stdin) AGI.
    pub fn script(&self) -> Option<&str> {
        self.get("network_script")
    }

    /// The script's arguments, `agi_arg_1..=agi_arg_N` in order, empty ones included.
    pub fn args(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        self.args.iter().map(|&i| self.value(i))
    }

    /// `agi_uniqueid`, Asterisk's id of the channel (`1795611310.0`).
    pub fn uniqueid(&self) -> Option<&str> {
        self.get("uniqueid")
    }

    /// `agi_callerid`, the caller-ID number (`bob`): written by the caller.
    pub fn callerid(&self) -> Option<&str> {
        self.get("callerid")
    }

    /// Whether some bytes of the block were not UTF-8 (and were replaced by U+FFFD).
    pub fn had_invalid_utf8(&self) -> bool {
        self.lossy
    }

    /// All variables in the order received, names without the `agi_` prefix.
    pub fn vars(&self) -> impl ExactSizeIterator<Item = (&str, &str)> + '_ {
        self.vars.iter().map(|v| {
            (
                &self.text[v.name.0..v.name.1],
                &self.text[v.value.0..v.value.1],
            )
        })
    }

    fn value(&self, i: usize) -> &str {
        let v = self.vars[i];
        &self.text[v.value.0..v.value.1]
    }
}

/// Whether the line `block[start..nl]` (`nl`: its `\n`) is blank: empty, or a lone `\r`.
pub(crate) fn is_blank(block: &[u8], start: usize, nl: usize) -> bool {
    nl == start || (nl == start + 1 && block[start] == b'\r')
}

/// A block parsed line by line, as its lines arrive: `agi::connection` hands each one over
/// as soon as it has framed it, so that the work is done while the rest of the block is still
/// on its way (Asterisk writes it a line at a time), not between its last byte and the reply.
/// [`AgiEnv::parse`] goes through it too.
///
/// After the first bad line the others are only counted: the block is refused for that one,
/// as a parse of the whole block would refuse it.
pub(crate) struct EnvParser {
    vars: Vec<Var>,
    args: Vec<usize>,
    seen: KeyFilter,
    /// Lines taken so far.
    line: usize,
    error: Option<EnvError>,
}

impl Default for EnvParser {
    fn default() -> Self {
        EnvParser {
            // Asterisk 20 writes 25 lines and the arguments: one allocation.
            vars: Vec::with_capacity(32),
            args: Vec::new(),
            seen: KeyFilter::default(),
            line: 0,
            error: None,
        }
    }
}

impl EnvParser {
    /// Takes the non-blank line `block[start..nl]` (`nl`: the index of its `\n`; a `\r`
    /// before it is dropped). `block` is the block so far, from its first byte.
    pub(crate) fn line(&mut self, block: &[u8], start: usize, nl: usize) {
        self.line += 1;
        if self.error.is_none() {
            if let Err(e) = self.take(block, start, nl) {
                self.error = Some(e);
            }
        }
    }

    fn take(&mut self, bytes: &[u8], start: usize, nl: usize) -> Result<(), EnvError> {
        let line = self.line;
        let end = if nl > start && bytes[nl - 1] == b'\r' {
            nl - 1
        } else {
            nl
        };
        let var = parse_line(bytes, start, end, line)?;
        let name = &bytes[var.name.0..var.name.1];
        // The names seen are scanned only when the filter says this key may be among them:
        // for Asterisk's 25 distinct names that is one line in ten, not 300 comparisons.
        if self.seen.maybe_holds(var.key)
            && self
                .vars
                .iter()
                .any(|v| v.key == var.key && &bytes[v.name.0..v.name.1] == name)
        {
            return Err(EnvError::DuplicateName { line });
        }
        self.seen.insert(var.key);
        if let Some(number) = name.strip_prefix(b"arg_") {
            if arg_number(number) != Some(self.args.len() + 1) {
                return Err(EnvError::BadArgument { line });
            }
            self.args.push(self.vars.len());
        }
        self.vars.push(var);
        Ok(())
    }

    /// The environment of `block`: every byte up to and including the blank line that ends
    /// it, whose other lines were all handed to [`EnvParser::line`]. The block's bytes become
    /// the environment's text.
    pub(crate) fn finish(self, block: Vec<u8>) -> Result<AgiEnv, EnvError> {
        // The usual block is UTF-8: the standard check is much faster than the lossy decoder.
        match String::from_utf8(block) {
            Ok(text) => match self.error {
                Some(e) => Err(e),
                None => Ok(AgiEnv {
                    text,
                    vars: self.vars,
                    args: self.args,
                    lossy: false,
                }),
            },
            Err(not_utf8) => {
                // Replacement characters move every range after them: the lossy text is
                // parsed again, from its start.
                let text = String::from_utf8_lossy(not_utf8.as_bytes()).into_owned();
                let mut again = EnvParser::default();
                let bytes = text.as_bytes();
                let mut start = 0;
                for nl in memchr::memchr_iter(b'\n', bytes) {
                    if is_blank(bytes, start, nl) {
                        break;
                    }
                    again.line(bytes, start, nl);
                    start = nl + 1;
                }
                match again.error {
                    Some(e) => Err(e),
                    None => Ok(AgiEnv {
                        vars: again.vars,
                        args: again.args,
                        text,
                        lossy: true,
                    }),
                }
            }
        }
    }
}

/// Writes an environment block, as Asterisk would, from `(name, value)` pairs (names without
/// the `agi_` prefix): what `ipcountry reload` sends, and what tests and benches replay.
/// Names that are not `[A-Za-z0-9_]+` are refused; CR and LF in values become spaces, so the
/// block always parses back to the same pairs, but for those spaces (a parsed value can hold a
/// CR that is not at its end: the fuzz target `agi_env` found it).
pub fn encode_block(vars: &[(&str, &str)]) -> Result<Vec<u8>, EnvError> {
    let mut out = Vec::with_capacity(64 * vars.len() + 1);
    for (i, (name, value)) in vars.iter().enumerate() {
        if name.is_empty() || !name.bytes().all(is_name_byte) {
            return Err(EnvError::BadName { line: i + 1 });
        }
        out.extend_from_slice(b"agi_");
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend(
            value
                .bytes()
                .map(|b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
        );
        out.push(b'\n');
    }
    out.push(b'\n');
    Ok(out)
}

/// Splits the non-blank line `text[start..end]` (without its `\n` and any `\r` before it) into
/// the ranges of its name (without `agi_`) and value: the name is what comes before the first
/// `": "`, the value everything after it.
fn parse_line(text: &[u8], start: usize, end: usize, line: usize) -> Result<Var, EnvError> {
    let Some(rest) = text[start..end].strip_prefix(b"agi_") else {
        return Err(EnvError::MissingPrefix { line });
    };
    // One pass over the name: it runs up to the first byte that cannot be in a name, and that
    // byte must start the `": "`. Otherwise the line is refused: with no `": "` at all the
    // separator is missing; with one further on, what comes before it (the name) holds a byte
    // that cannot be in a name, or is empty.
    let sep = rest
        .iter()
        .position(|&b| !is_name_byte(b))
        .unwrap_or(rest.len());
    if sep == 0 || !rest[sep..].starts_with(b": ") {
        return Err(if memchr::memmem::find(rest, b": ").is_some() {
            EnvError::BadName { line }
        } else {
            EnvError::MissingSeparator { line }
        });
    }
    let name_start = start + 4;
    Ok(Var {
        name: (name_start, name_start + sep),
        value: (name_start + sep + 2, end),
        key: name_key(&rest[..sep]),
    })
}

/// A name's length and first eight bytes in one word. Names with different keys differ, so the
/// duplicate check and [`AgiEnv::get`] compare two names only when their keys are equal
/// (`callington` and `callingtns` share one; that costs a comparison, never a wrong answer).
fn name_key(name: &[u8]) -> u64 {
    let head = match name.first_chunk::<8>() {
        Some(head) => u64::from_le_bytes(*head),
        // Byte by byte, not a copy of a variable length (a call to `memcpy`): this runs for
        // every line of every block.
        None => name
            .iter()
            .rev()
            .fold(0, |word, &b| (word << 8) | u64::from(b)),
    };
    head ^ (name.len() as u64).rotate_right(8)
}

/// A set of [`name_key`]s that may say "maybe" for a key it does not hold, never "no" for one
/// it does (a 256-bit Bloom filter with one hash): the duplicate check's first test.
#[derive(Default)]
struct KeyFilter([u64; 4]);

impl KeyFilter {
    /// The bit of `key`: the top byte of a Fibonacci hash, which mixes all of the key's bytes.
    fn bit(key: u64) -> (usize, u64) {
        let h = (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56) as usize;
        (h >> 6, 1 << (h & 63))
    }

    fn insert(&mut self, key: u64) {
        let (word, bit) = Self::bit(key);
        self.0[word] |= bit;
    }

    fn maybe_holds(&self, key: u64) -> bool {
        let (word, bit) = Self::bit(key);
        self.0[word] & bit != 0
    }
}

/// The `N` of `arg_N`: decimal digits without a leading zero.
fn arg_number(digits: &[u8]) -> Option<usize> {
    if digits.starts_with(b"0") || digits.is_empty() || digits.len() > 9 {
        return None;
    }
    digits.iter().try_fold(0usize, |n, &b| {
        b.is_ascii_digit().then(|| n * 10 + usize::from(b - b'0'))
    })
}

/// `[A-Za-z0-9_]`, by table: this runs for every byte of every name (of the block's
/// variables, and of the variables `agi::command` sets).
pub(crate) fn is_name_byte(b: u8) -> bool {
    NAME_BYTES[usize::from(b)]
}

const NAME_BYTES: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric() || c == b'_';
        b += 1;
    }
    table
};

#[cfg(test)]
#[path = "env_tests.rs"]
pub(crate) mod tests;
