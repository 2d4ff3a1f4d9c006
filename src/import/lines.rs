//! Line-oriented CSV input for the CSV readers: (possibly gzipped) text read line by line with
//! exact 1-based line numbers, split into fields by a small RFC 4180 splitter (one record per
//! line; quoted fields with `""` escapes; spaces around fields ignored).
//!
//! The formats read here never need a record spanning lines, and a reader that counts lines
//! itself can name the exact line of every bad row, blank lines included. `detect` uses the
//! same splitter ([`split`]) on the first lines it sniffs; gzip is `gzip`'s business.

use std::borrow::Cow;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use indicatif::ProgressBar;
use memchr::memchr;

use super::gzip::open_text;
use super::{BadRow, ImportError, MAX_BAD_ROWS};

/// Longest line accepted; a longer one is a bad row.
const MAX_LINE: usize = 64 * 1024;

/// A CSV file being read line by line.
pub(super) struct CsvLines {
    input: BufReader<Box<dyn Read>>,
    buf: Vec<u8>,
    line: u64,
    path: PathBuf,
}

/// One non-blank line: its number and its fields, or why it cannot be split.
pub(super) type Line<'a> = (u64, Result<Fields<'a>, String>);

impl CsvLines {
    /// Opens `path` (gzip detected by its magic); progress counts the raw bytes read.
    pub(super) fn open(path: &Path, pb: &ProgressBar) -> Result<Self, ImportError> {
        let pb = pb.clone();
        let input = open_text(path, move |file| pb.wrap_read(file))?;
        Ok(CsvLines {
            input: BufReader::with_capacity(256 * 1024, input),
            buf: Vec::with_capacity(256),
            line: 0,
            path: path.to_owned(),
        })
    }

    /// The next non-blank line, `None` at the end. I/O and decompression errors name the line.
    pub(super) fn next_line(&mut self) -> Result<Option<Line<'_>>, ImportError> {
        loop {
            self.buf.clear();
            self.line += 1;
            let read = (&mut self.input)
                .take(MAX_LINE as u64 + 1)
                .read_until(b'\n', &mut self.buf)
                .map_err(|source| read_error(&self.path, self.line, source))?;
            if read == 0 {
                return Ok(None);
            }
            if self.buf.len() > MAX_LINE && self.buf.last() != Some(&b'\n') {
                (self.input.skip_until(b'\n'))
                    .map_err(|source| read_error(&self.path, self.line, source))?;
                let reason = format!("line longer than {MAX_LINE} bytes");
                return Ok(Some((self.line, Err(reason))));
            }
            let (mut start, mut end) = (0, self.buf.len());
            if self.line == 1 && self.buf.starts_with(b"\xef\xbb\xbf") {
                start = 3;
            }
            for terminator in [b'\n', b'\r'] {
                if end > start && self.buf[end - 1] == terminator {
                    end -= 1;
                }
            }
            if self.buf[start..end].iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            return Ok(Some((self.line, split(&self.buf[start..end]))));
        }
    }
}

fn read_error(path: &Path, line: u64, source: std::io::Error) -> ImportError {
    ImportError::Read {
        path: path.to_owned(),
        line,
        source,
    }
}

/// The fields of one line.
#[derive(Debug)]
pub(super) struct Fields<'a>(Vec<Cow<'a, [u8]>>);

impl Fields<'_> {
    /// Number of fields.
    pub(super) fn len(&self) -> usize {
        self.0.len()
    }

    /// Field `i`, or empty when the line is shorter.
    pub(super) fn get(&self, i: usize) -> &[u8] {
        self.0.get(i).map_or(&[], |f| f)
    }

    /// All fields.
    pub(super) fn iter(&self) -> impl Iterator<Item = &[u8]> {
        self.0.iter().map(|f| &**f)
    }
}

/// Splits one line at commas. A field may be quoted (`"a, b"`, `"say ""hi"""`); whitespace
/// around fields is dropped.
// Hand-written: no CSV crate is a dependency, and one record per line is all these formats need.
pub(super) fn split(line: &[u8]) -> Result<Fields<'_>, String> {
    let mut fields = Vec::with_capacity(8);
    let mut rest = line;
    loop {
        let field = rest.trim_ascii_start();
        if let Some(mut quoted) = field.strip_prefix(b"\"") {
            let mut value = Vec::new();
            let after = loop {
                let Some(quote) = memchr(b'"', quoted) else {
                    return Err("unterminated quoted field".into());
                };
                value.extend_from_slice(&quoted[..quote]);
                match quoted[quote + 1..].strip_prefix(b"\"") {
                    // `""` is an escaped quote.
                    Some(more) => {
                        value.push(b'"');
                        quoted = more;
                    }
                    None => break &quoted[quote + 1..],
                }
            };
            fields.push(Cow::Owned(value));
            let after = after.trim_ascii_start();
            match after.split_first() {
                None => return Ok(Fields(fields)),
                Some((b',', tail)) => rest = tail,
                Some(_) => return Err("text after a closing quote".into()),
            }
        } else {
            let end = memchr(b',', field).unwrap_or(field.len());
            fields.push(Cow::Borrowed(field[..end].trim_ascii_end()));
            if end == field.len() {
                return Ok(Fields(fields));
            }
            rest = &field[end + 1..];
        }
    }
}

/// Bad rows of one file, up to [`MAX_BAD_ROWS`] kept.
#[derive(Debug, Default)]
pub(super) struct BadRows {
    rows: Vec<BadRow>,
    total: u64,
}

impl BadRows {
    pub(super) fn push(&mut self, line: u64, reason: String) {
        self.total += 1;
        if self.rows.len() < MAX_BAD_ROWS {
            self.rows.push(BadRow { line, reason });
        }
    }

    /// `Err(BadRows)` when any row was bad.
    pub(super) fn check(self, path: &Path) -> Result<(), ImportError> {
        if self.total == 0 {
            return Ok(());
        }
        Err(ImportError::BadRows {
            path: path.to_owned(),
            total: self.total,
            rows: self.rows,
        })
    }
}

/// A field as text for messages, quoted and shortened.
pub(super) fn shown(field: &[u8]) -> String {
    let text = String::from_utf8_lossy(field);
    if text.chars().count() > 60 {
        let cut: String = text.chars().take(60).collect();
        format!("{cut:?}...")
    } else {
        format!("{text:?}")
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    fn fields(line: &str) -> Result<Vec<String>, String> {
        split(line.as_bytes()).map(|f| {
            f.iter()
                .map(|x| String::from_utf8(x.to_vec()).unwrap())
                .collect()
        })
    }

    #[test]
    fn splits_fields() {
        assert_eq!(fields("a,b,c").unwrap(), ["a", "b", "c"]);
        assert_eq!(fields(" a , b ,c ").unwrap(), ["a", "b", "c"]);
        assert_eq!(fields("a,,c,").unwrap(), ["a", "", "c", ""]);
        assert_eq!(fields("x").unwrap(), ["x"]);
        assert_eq!(
            fields(r#"1,"Korea, Republic of", "say ""hi""" ,""" "#).unwrap_err(),
            "unterminated quoted field"
        );
        assert_eq!(
            fields(r#"1,"Korea, Republic of", "say ""hi""" ,"""" "#).unwrap(),
            ["1", "Korea, Republic of", "say \"hi\"", "\""]
        );
        assert_eq!(
            fields(r#""a"b,c"#).unwrap_err(),
            "text after a closing quote"
        );
        assert_eq!(fields(r#""",x"#).unwrap(), ["", "x"]);
    }

    #[test]
    fn numbers_lines_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.csv");
        let long = "y".repeat(MAX_LINE + 10);
        fs::write(
            &path,
            format!("\u{feff}a,b\r\n\n  \r\n{long}\nc\n\"d\nlast"),
        )
        .unwrap();
        let mut lines = CsvLines::open(&path, &ProgressBar::hidden()).unwrap();
        let mut got = Vec::new();
        while let Some((line, f)) = lines.next_line().unwrap() {
            got.push((line, f.map(|f| f.len())));
        }
        assert_eq!(
            got,
            [
                (1, Ok(2)),
                (4, Err(format!("line longer than {MAX_LINE} bytes"))),
                (5, Ok(1)),
                (6, Err("unterminated quoted field".into())),
                (7, Ok(1)),
            ]
        );
    }
}
