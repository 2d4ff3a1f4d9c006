//! Transparent gzip: every input file may be gzipped, which is recognized by its magic number
//! (never by its name) and decompressed on the fly.
//!
//! Used by `detect` (to sniff a file's first bytes) and by `lines` (to read a CSV file); it
//! knows nothing about formats.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

use flate2::read::MultiGzDecoder;

use super::{io_error, ImportError};

/// The gzip magic number.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Opens a text file for reading, decompressing it when it starts with the gzip magic. `wrap`
/// sees the raw (compressed) bytes, for progress reporting.
pub(super) fn open_text<R: Read + 'static>(
    path: &Path,
    wrap: impl FnOnce(File) -> R,
) -> Result<Box<dyn Read>, ImportError> {
    let mut file = File::open(path).map_err(io_error(path))?;
    let gzipped = starts_with_gzip(&mut file).map_err(io_error(path))?;
    Ok(decoded(wrap(file), gzipped))
}

/// `raw` itself, or its decompression when `gzipped`.
pub(super) fn decoded<R: Read + 'static>(raw: R, gzipped: bool) -> Box<dyn Read> {
    if gzipped {
        Box::new(MultiGzDecoder::new(raw))
    } else {
        Box::new(raw)
    }
}

/// Whether the file starts with the gzip magic. Reads the first two bytes, then rewinds.
// Hand-written: flate2 can only tell by failing to decode; two bytes say it up front.
pub(super) fn starts_with_gzip(file: &mut File) -> io::Result<bool> {
    let mut magic = [0u8; 2];
    let mut got = 0;
    while got < magic.len() {
        match file.read(&mut magic[got..])? {
            0 => break,
            n => got += n,
        }
    }
    file.seek(SeekFrom::Start(0))?;
    Ok(got == 2 && magic == GZIP_MAGIC)
}
