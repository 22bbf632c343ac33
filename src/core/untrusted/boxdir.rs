//! A directory a box writes (the egress proxy's own log directory), read by
//! host code: opened once, and every file in it opened relative to that
//! directory's fd, never through a symlink, never blocking (a FIFO is
//! refused), never locked (the box may hold any lock on it), and read only
//! so far.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

pub struct BoxDir {
    fd: OwnedFd,
}

impl BoxDir {
    /// The directory at `path`; `None` when it is absent, not a directory
    /// or a symlink.
    pub fn open(path: &Path) -> Option<BoxDir> {
        let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
        // SAFETY: a valid C string; the fd returned is owned below.
        let fd = unsafe {
            libc::open(
                c.as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            )
        };
        // SAFETY: a fresh fd of ours.
        (fd >= 0).then(|| BoxDir {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    /// The regular file `name` (one component) in this directory, opened
    /// for reading; `None` for a symlink, a FIFO, a device, a directory, a
    /// name with a `/`, or none.
    pub fn file(&self, name: &str) -> Option<File> {
        if name.is_empty() || name.contains('/') || name == "." || name == ".." {
            return None;
        }
        let c = std::ffi::CString::new(name).ok()?;
        // SAFETY: a valid C string and a directory fd we own.
        let fd = unsafe {
            libc::openat(
                self.fd.as_raw_fd(),
                c.as_ptr(),
                libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return None;
        }
        // SAFETY: a fresh fd of ours.
        let f = unsafe { File::from_raw_fd(fd) };
        f.metadata().ok()?.is_file().then_some(f)
    }
}

/// Whole lines of `file` from `offset`, at most `cap` bytes of them: when
/// more than `cap` bytes follow `offset`, the oldest are skipped (from the
/// next line start). Returns the lines' bytes and the offset after them
/// (a last line without its `\n` is left for the next read).
pub fn read_lines_from(file: &mut File, offset: u64, cap: u64) -> std::io::Result<(Vec<u8>, u64)> {
    let len = file.metadata()?.len();
    if len <= offset {
        return Ok((Vec::new(), offset));
    }
    // When skipping, read from one byte earlier: a `\n` there means the
    // cut falls on a line start.
    let (from, skipped) = if len - offset > cap {
        (len - cap - 1, true)
    } else {
        (offset, false)
    };
    file.seek(SeekFrom::Start(from))?;
    let mut buf = Vec::new();
    file.take(len - from).read_to_end(&mut buf)?;
    let start = if skipped {
        // Land on a line start: drop the partial line we began in.
        match buf.iter().position(|&b| b == b'\n') {
            Some(i) => i + 1,
            None => buf.len(),
        }
    } else {
        0
    };
    let end = buf
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(start, |i| i + 1);
    let end = end.max(start);
    let next = from + end as u64;
    Ok((buf[start..end].to_vec(), next))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_opened_beneath_the_dir_only_if_regular() {
        let t = tempfile::tempdir().unwrap();
        let secret = t.path().join("secret");
        std::fs::write(&secret, "secret\n").unwrap();
        let d = t.path().join("box");
        std::fs::create_dir(&d).unwrap();
        std::fs::write(d.join("log"), "a\nb\npartial").unwrap();
        std::os::unix::fs::symlink(&secret, d.join("link")).unwrap();
        nix::unistd::mkfifo(
            &d.join("fifo"),
            nix::sys::stat::Mode::from_bits_truncate(0o600),
        )
        .unwrap();
        std::os::unix::fs::symlink(&d, t.path().join("dirlink")).unwrap();
        assert!(BoxDir::open(&t.path().join("dirlink")).is_none());
        let dir = BoxDir::open(&d).unwrap();
        assert!(dir.file("link").is_none(), "no symlink followed");
        assert!(dir.file("fifo").is_none(), "no FIFO, no blocking");
        assert!(dir.file("../secret").is_none());
        let mut f = dir.file("log").unwrap();
        let (lines, next) = read_lines_from(&mut f, 0, 1 << 20).unwrap();
        assert_eq!((lines.as_slice(), next), (&b"a\nb\n"[..], 4));
        let (lines, next) = read_lines_from(&mut f, 0, 9).unwrap();
        assert_eq!((lines.as_slice(), next), (&b"b\n"[..], 4), "capped");
        assert_eq!(read_lines_from(&mut f, 4, 100).unwrap().1, 4);
    }
}
