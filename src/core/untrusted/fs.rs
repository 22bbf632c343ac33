//! Files an agent can write (its activity directory, the project, its
//! state directory are mounted read-write in its container), read as
//! hostile input: the agent may put a FIFO there (an open would block every
//! command that reads it), a symlink (to make us read a file of the host's
//! for it), or a file of any size.

use std::io::Read;
use std::path::Path;

/// At most `cap` bytes of the regular file at `path`; `None` when it is
/// absent, a symlink (never followed), a FIFO, a device or a directory (the
/// open never blocks), or unreadable.
pub fn read(path: &Path, cap: u64) -> Option<Vec<u8>> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .ok()?;
    if !f.metadata().ok()?.is_file() {
        return None;
    }
    let mut raw = Vec::new();
    f.take(cap).read_to_end(&mut raw).ok()?;
    Some(raw)
}

/// The regular file at `path` opened for locking (`flock`), created 0600
/// when `create`; `None` for what [`read`] refuses.
pub fn open_lock(path: &Path, create: bool) -> Option<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .append(create)
        .create(create)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .ok()?;
    f.metadata().ok()?.is_file().then_some(f)
}

/// A sparse file at least this big is not copied.
const SPARSE_MIN: u64 = 1 << 20;

/// How many bytes of the open regular file `f` a host-side copy takes: its
/// size now (a file the box keeps appending to never makes the copy
/// endless). A sparse file is refused: the box makes a terabyte of holes
/// for free, and the copy would write it all to the host's disk.
pub fn copy_len(f: &std::fs::File) -> std::io::Result<u64> {
    use std::os::unix::fs::MetadataExt;
    let m = f.metadata()?;
    let on_disk = m.blocks().saturating_mul(512);
    if m.len() >= SPARSE_MIN && on_disk < m.len() / 2 {
        return Err(std::io::Error::other(format!(
            "a sparse file ({} bytes, {on_disk} on disk): not copied",
            m.len()
        )));
    }
    Ok(m.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_regular_file_is_read_and_only_so_much() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("status");
        nix::unistd::mkfifo(&f, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        assert_eq!(read(&f, 64), None, "a FIFO must not block");
        std::fs::remove_file(&f).unwrap();
        let elsewhere = dir.path().join("elsewhere");
        std::fs::write(&elsewhere, "secret\n").unwrap();
        std::os::unix::fs::symlink(&elsewhere, &f).unwrap();
        assert_eq!(read(&f, 64), None, "not through a symlink");
        std::fs::remove_file(&f).unwrap();
        std::fs::create_dir(&f).unwrap();
        assert_eq!(read(&f, 64), None, "not a directory");
        std::fs::remove_dir(&f).unwrap();
        std::fs::write(&f, vec![b'x'; 10_000]).unwrap();
        assert_eq!(read(&f, 64).map(|b| b.len()), Some(64), "capped");
        assert_eq!(read(&dir.path().join("none"), 64), None);
    }

    #[test]
    fn a_sparse_file_is_not_copied() {
        let dir = tempfile::tempdir().unwrap();
        let f = std::fs::File::create(dir.path().join("holes")).unwrap();
        f.set_len(1 << 40).unwrap();
        assert!(copy_len(&f).is_err());
        std::fs::write(dir.path().join("small"), "x=1\n").unwrap();
        let f = std::fs::File::open(dir.path().join("small")).unwrap();
        assert_eq!(copy_len(&f).unwrap(), 4);
    }
}
