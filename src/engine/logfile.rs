//! An instance's saved output (`logs/<id>.log`): written as a stream with
//! a cap that keeps the newest part, and read from the end, so neither a
//! flood of output nor a reader ever holds the whole of it in memory.

use crate::core::error::{Error, Result};
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Block size for copying and for scanning backwards.
const BLOCK: usize = 64 * 1024;

/// A log being saved: bytes go to a private temp file beside the final
/// one; past the cap (plus some slack, so trimming is rare) the oldest
/// part is dropped. `finish` trims to the cap and puts it in place.
pub struct CappedLog {
    dest: PathBuf,
    tmp: tempfile::NamedTempFile,
    written: u64,
    cap: u64,
    /// The first write that failed (full disk): `finish` reports it.
    failed: Option<io::Error>,
}

impl CappedLog {
    pub fn create(dest: &Path, cap: u64) -> Result<Self> {
        let dir = dest.parent().unwrap_or(Path::new("."));
        // NamedTempFile is created 0600.
        let tmp = tempfile::Builder::new()
            .prefix(".saving-")
            .tempfile_in(dir)
            .map_err(|e| Error::io(dir, e))?;
        Ok(CappedLog {
            dest: dest.to_path_buf(),
            tmp,
            written: 0,
            cap: cap.max(1),
            failed: None,
        })
    }

    fn slack(&self) -> u64 {
        (self.cap / 2).max(64 * 1024)
    }

    /// Keeps the last `cap` bytes, from the start of a line when one
    /// begins within them.
    fn trim(&mut self) -> io::Result<()> {
        if self.written <= self.cap {
            return Ok(());
        }
        let file = self.tmp.as_file_mut();
        let mut from = self.written - self.cap;
        from = next_line_start(file, from, self.written)?;
        let dir = self.dest.parent().unwrap_or(Path::new("."));
        let mut fresh = tempfile::Builder::new()
            .prefix(".saving-")
            .tempfile_in(dir)?;
        file.seek(SeekFrom::Start(from))?;
        let kept = io::copy(file, fresh.as_file_mut())?;
        self.tmp = fresh;
        self.written = kept;
        Ok(())
    }

    /// Trims to the cap and replaces `dest` (the previous run's output).
    pub fn finish(mut self) -> Result<()> {
        if let Some(e) = self.failed.take() {
            return Err(Error::io(&self.dest, e));
        }
        self.trim().map_err(|e| Error::io(&self.dest, e))?;
        self.tmp
            .as_file_mut()
            .flush()
            .map_err(|e| Error::io(&self.dest, e))?;
        self.tmp
            .persist(&self.dest)
            .map_err(|e| Error::io(&self.dest, e.error))?;
        Ok(())
    }
}

impl Write for CappedLog {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let r = self.tmp.as_file_mut().write_all(buf).and_then(|()| {
            self.written += buf.len() as u64;
            if self.written > self.cap + self.slack() {
                self.trim()?;
            }
            Ok(())
        });
        if let Err(e) = r {
            let again = io::Error::new(e.kind(), e.to_string());
            self.failed.get_or_insert(e);
            return Err(again);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.tmp.as_file_mut().flush()
    }
}

/// The offset just after the first `\n` at or after `from` (or `from`
/// itself when no line ends before `end`).
fn next_line_start(file: &mut File, from: u64, end: u64) -> io::Result<u64> {
    if from == 0 {
        return Ok(0);
    }
    // Is `from` already a line start?
    file.seek(SeekFrom::Start(from - 1))?;
    let mut pos = from - 1;
    let mut buf = vec![0u8; BLOCK];
    while pos < end {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        if let Some(i) = buf[..n].iter().position(|&b| b == b'\n') {
            return Ok(pos + i as u64 + 1);
        }
        pos += n as u64;
    }
    Ok(from)
}

/// Where the last `lines` lines of `file` begin (a last line without `\n`
/// counts), scanning backwards block by block.
pub fn tail_offset(file: &mut File, lines: usize) -> io::Result<u64> {
    let len = file.metadata()?.len();
    if lines == 0 {
        return Ok(len);
    }
    let mut buf = vec![0u8; BLOCK];
    let mut end = len;
    let mut seen = 0usize;
    // A final newline ends the last line; it does not start another one.
    let mut skip_last = true;
    while end > 0 {
        let start = end.saturating_sub(BLOCK as u64);
        let n = (end - start) as usize;
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut buf[..n])?;
        for i in (0..n).rev() {
            if buf[i] != b'\n' {
                skip_last = false;
                continue;
            }
            if skip_last {
                skip_last = false;
                continue;
            }
            seen += 1;
            if seen == lines {
                return Ok(start + i as u64 + 1);
            }
        }
        end = start;
    }
    Ok(0)
}

/// The saved log at `path` from its last `tail` lines (all without), as
/// text: invalid UTF-8 becomes U+FFFD, one block at a time (a character
/// split between blocks is kept whole). `Ok(None)` when there is none.
/// Never read through a symlink (or from a FIFO): a link put in its place
/// is refused, not followed.
pub fn open_tail(path: &Path, tail: Option<usize>) -> Result<Option<LossyBlocks>> {
    use std::os::unix::fs::OpenOptionsExt;
    let opened = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path);
    let mut file = match opened {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(Error::Invalid(format!(
                "{}: is a symlink; not read",
                path.display()
            )))
        }
        Err(e) => return Err(Error::io(path, e)),
    };
    if !file.metadata().map_err(|e| Error::io(path, e))?.is_file() {
        return Err(Error::Invalid(format!(
            "{}: not a regular file; not read",
            path.display()
        )));
    }
    let from = match tail {
        Some(n) => tail_offset(&mut file, n).map_err(|e| Error::io(path, e))?,
        None => 0,
    };
    file.seek(SeekFrom::Start(from))
        .map_err(|e| Error::io(path, e))?;
    Ok(Some(LossyBlocks {
        file,
        carry: Vec::new(),
        done: false,
    }))
}

/// Copies the saved log (see `open_tail`) to `out`. `Ok(false)` when
/// there is none.
pub fn copy_tail(path: &Path, tail: Option<usize>, out: &mut dyn Write) -> Result<bool> {
    let Some(blocks) = open_tail(path, tail)? else {
        return Ok(false);
    };
    for block in blocks {
        let block = block.map_err(|e| Error::io(path, e))?;
        match out.write_all(block.as_bytes()) {
            Ok(()) => {}
            // A closed pipe (`logs | head`) is the reader's choice.
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(true),
            Err(e) => return Err(Error::io(path, e)),
        }
    }
    let _ = out.flush();
    Ok(true)
}

/// Blocks of a file as lossy UTF-8 text.
pub struct LossyBlocks {
    file: File,
    carry: Vec<u8>,
    done: bool,
}

impl Iterator for LossyBlocks {
    type Item = io::Result<String>;

    fn next(&mut self) -> Option<io::Result<String>> {
        if self.done {
            return None;
        }
        let mut buf = std::mem::take(&mut self.carry);
        let have = buf.len();
        buf.resize(have + BLOCK, 0);
        let n = match self.file.read(&mut buf[have..]) {
            Ok(n) => n,
            Err(e) => return Some(Err(e)),
        };
        buf.truncate(have + n);
        if n == 0 {
            self.done = true;
            return (!buf.is_empty()).then(|| Ok(String::from_utf8_lossy(&buf).into_owned()));
        }
        // Hold back an incomplete character at the end for the next block.
        let keep = match std::str::from_utf8(&buf) {
            Ok(_) => 0,
            Err(e) if e.error_len().is_none() => buf.len() - e.valid_up_to(),
            Err(_) => incomplete_tail(&buf),
        };
        self.carry = buf.split_off(buf.len() - keep);
        Some(Ok(String::from_utf8_lossy(&buf).into_owned()))
    }
}

/// Length of an incomplete UTF-8 sequence at the end of `b` (0 if none).
fn incomplete_tail(b: &[u8]) -> usize {
    for back in 1..=3.min(b.len()) {
        let c = b[b.len() - back];
        if c & 0xC0 != 0x80 {
            let need = match c {
                0xC0..=0xDF => 2,
                0xE0..=0xEF => 3,
                0xF0..=0xF7 => 4,
                _ => return 0,
            };
            return if need > back { back } else { 0 };
        }
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tail_of(text: &str, n: usize) -> String {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        let off = tail_offset(&mut f, n).unwrap();
        text[off as usize..].to_owned()
    }

    #[test]
    fn tails_count_lines_from_the_end() {
        assert_eq!(tail_of("a\nb\nc\n", 2), "b\nc\n");
        assert_eq!(tail_of("a\nb\nc", 2), "b\nc");
        assert_eq!(tail_of("a\nb\nc\n", 10), "a\nb\nc\n");
        assert_eq!(tail_of("", 3), "");
        assert_eq!(tail_of("a\n", 0), "");
        let long: String = (0..50_000).map(|i| format!("line {i}\n")).collect();
        assert_eq!(tail_of(&long, 2), "line 49998\nline 49999\n");
    }

    #[test]
    fn a_link_in_place_of_a_saved_log_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("secret");
        std::fs::write(&secret, "secret\n").unwrap();
        let p = dir.path().join("x.log");
        std::os::unix::fs::symlink(&secret, &p).unwrap();
        let mut out = Vec::new();
        assert!(copy_tail(&p, None, &mut out).is_err());
        assert!(out.is_empty());
    }

    #[test]
    fn lossy_blocks_keep_characters_whole() {
        let mut text = "é".repeat(BLOCK); // two bytes each: splits at blocks
        text.push('\u{fffd}');
        let mut bytes = text.clone().into_bytes();
        bytes.extend_from_slice(b" bad \xff end");
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("l");
        std::fs::write(&p, &bytes).unwrap();
        let got: String = open_tail(&p, None)
            .unwrap()
            .unwrap()
            .map(|b| b.unwrap())
            .collect();
        assert_eq!(got, format!("{text} bad \u{fffd} end"));
    }

    #[test]
    fn the_saved_log_keeps_the_newest_part_within_the_cap() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("x.log");
        std::fs::write(&dest, "old run\n").unwrap();
        let mut log = CappedLog::create(&dest, 100_000).unwrap();
        for i in 0..100_000 {
            writeln!(log, "line {i}").unwrap();
        }
        log.finish().unwrap();
        let text = std::fs::read_to_string(&dest).unwrap();
        assert!(text.len() <= 100_000, "{}", text.len());
        assert!(text.starts_with("line ") && text.ends_with("line 99999\n"));
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temp files left"
        );
    }
}
