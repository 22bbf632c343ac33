//! Directory trees the box can write (agent state dirs), walked, copied,
//! moved and removed by host code: every operation is relative to an open
//! directory fd and names one component, opened with `O_NOFOLLOW` (and
//! `O_DIRECTORY` for dirs), so a link the agent plants (or swaps in between
//! a check and a use) is never followed; a link is an entry like any other.
//! Regular files are opened `O_NONBLOCK` and checked with `fstat` (a FIFO
//! never blocks us); new files are made `O_EXCL|O_NOFOLLOW`, 0600.

use nix::dir::Dir;
use nix::errno::Errno;
use nix::fcntl::{openat, OFlag};
use nix::sys::stat::{fstat, fstatat, futimens, mkdirat, Mode, SFlag};
use nix::unistd::{unlinkat, UnlinkatFlags};
use std::ffi::{OsStr, OsString};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// How deep a walk goes: a tree deeper than this is left where it is (no
/// agent state is this deep; a crafted one must not exhaust the stack).
pub const MAX_DEPTH: usize = 64;

/// What an entry is, as `lstat` says (a link is never resolved).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File,
    Link,
    /// FIFO, socket, device: never opened.
    Other,
}

/// An open directory; the operations below never leave it.
#[derive(Debug)]
pub struct Tree(OwnedFd);

fn io_err(e: Errno) -> io::Error {
    io::Error::from_raw_os_error(e as i32)
}

/// `name` must be one path component: no `/`, not `.` or `..`.
fn component(name: &OsStr) -> io::Result<&OsStr> {
    let b = name.as_bytes();
    if b.is_empty() || b == b"." || b == b".." || b.contains(&b'/') || b.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("not a single path component: {name:?}"),
        ));
    }
    Ok(name)
}

const DIR_FLAGS: OFlag = OFlag::O_RDONLY
    .union(OFlag::O_DIRECTORY)
    .union(OFlag::O_NOFOLLOW)
    .union(OFlag::O_CLOEXEC);

fn owned(fd: std::os::fd::RawFd) -> OwnedFd {
    // SAFETY: `fd` was just returned by a successful open and is owned here.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

impl Tree {
    /// Opens the directory at `path`; its last component must not be a
    /// link (the components above it are the caller's own dirs).
    pub fn open(path: &Path) -> io::Result<Tree> {
        let fd = nix::fcntl::open(path, DIR_FLAGS, Mode::empty()).map_err(io_err)?;
        Ok(Tree(owned(fd)))
    }

    /// The subdirectory `name`, never through a link.
    pub fn sub(&self, name: &OsStr) -> io::Result<Tree> {
        let fd = openat(
            Some(self.0.as_raw_fd()),
            component(name)?,
            DIR_FLAGS,
            Mode::empty(),
        )
        .map_err(io_err)?;
        Ok(Tree(owned(fd)))
    }

    /// What `name` is; `NotFound` when absent.
    pub fn kind(&self, name: &OsStr) -> io::Result<Kind> {
        let st = fstatat(
            Some(self.0.as_raw_fd()),
            component(name)?,
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(io_err)?;
        Ok(kind_of(st.st_mode))
    }

    /// Whether `name` exists (as anything, a dangling link included).
    pub fn has(&self, name: &OsStr) -> bool {
        self.kind(name).is_ok()
    }

    /// The entries' names, sorted (`.` and `..` left out).
    pub fn names(&self) -> io::Result<Vec<OsString>> {
        let fd = openat(Some(self.0.as_raw_fd()), ".", DIR_FLAGS, Mode::empty()).map_err(io_err)?;
        let mut dir = Dir::from_fd(fd).map_err(io_err)?;
        let mut out = Vec::new();
        for e in dir.iter() {
            let e = e.map_err(io_err)?;
            let n = e.file_name().to_bytes();
            if n != b"." && n != b".." {
                out.push(OsStr::from_bytes(n).to_os_string());
            }
        }
        out.sort();
        Ok(out)
    }

    /// The subdirectory `name`, made `mode` when absent; an entry of
    /// another kind (a link) there is an error, never followed.
    pub fn mkdir(&self, name: &OsStr, mode: u32) -> io::Result<Tree> {
        match mkdirat(
            Some(self.0.as_raw_fd()),
            component(name)?,
            Mode::from_bits_truncate(mode as _),
        ) {
            Ok(()) | Err(Errno::EEXIST) => self.sub(name),
            Err(e) => Err(io_err(e)),
        }
    }

    /// Moves entry `name` to `to_name` in `to` (a link is moved as a
    /// link); never replaces what is there.
    pub fn rename_to(&self, name: &OsStr, to: &Tree, to_name: &OsStr) -> io::Result<()> {
        let (from, dest) = (component(name)?, component(to_name)?);
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        {
            use nix::fcntl::{renameat2, RenameFlags};
            match renameat2(
                Some(self.0.as_raw_fd()),
                from,
                Some(to.0.as_raw_fd()),
                dest,
                RenameFlags::RENAME_NOREPLACE,
            ) {
                Err(Errno::EINVAL) | Err(Errno::ENOSYS) => {}
                r => return r.map_err(io_err),
            }
        }
        if to.has(dest) {
            return Err(io::Error::from(io::ErrorKind::AlreadyExists));
        }
        nix::fcntl::renameat(Some(self.0.as_raw_fd()), from, Some(to.0.as_raw_fd()), dest)
            .map_err(io_err)
    }

    /// Opens the regular file `name` for reading: never a link, never
    /// blocking (a FIFO is refused after an open that does not wait).
    fn open_file(&self, name: &OsStr) -> io::Result<std::fs::File> {
        let fd = openat(
            Some(self.0.as_raw_fd()),
            component(name)?,
            OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(io_err)?;
        let fd = owned(fd);
        let st = fstat(fd.as_raw_fd()).map_err(io_err)?;
        if kind_of(st.st_mode) != Kind::File {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a regular file",
            ));
        }
        Ok(std::fs::File::from(fd))
    }

    /// At most `cap` bytes of the regular file `name` (more is an error).
    pub fn read_file(&self, name: &OsStr, cap: u64) -> io::Result<Vec<u8>> {
        let f = self.open_file(name)?;
        let mut buf = Vec::new();
        f.take(cap + 1).read_to_end(&mut buf)?;
        if buf.len() as u64 > cap {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("larger than {cap} bytes"),
            ));
        }
        Ok(buf)
    }

    /// Copies the regular file `name` to a new file `to_name` in `to`
    /// (0600, its modification time kept); fails when `to_name` exists.
    pub fn copy_file(&self, name: &OsStr, to: &Tree, to_name: &OsStr) -> io::Result<u64> {
        let mut src = self.open_file(name)?;
        let len = super::fs::copy_len(&src)?;
        let mut dst = to.create_file(to_name)?;
        let n = io::copy(&mut (&mut src).take(len), &mut dst)?;
        if let Ok(st) = fstat(src.as_raw_fd()) {
            let mtime = nix::sys::time::TimeSpec::new(st.st_mtime, st.st_mtime_nsec);
            let _ = futimens(dst.as_raw_fd(), &mtime, &mtime);
        }
        Ok(n)
    }

    /// A new file `name` (0600); never opens what is there, link or not.
    pub fn create_file(&self, name: &OsStr) -> io::Result<std::fs::File> {
        let fd = openat(
            Some(self.0.as_raw_fd()),
            component(name)?,
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o600),
        )
        .map_err(io_err)?;
        Ok(std::fs::File::from(owned(fd)))
    }

    /// Writes `data` as `name`, replacing it atomically (a temp file in
    /// this dir renamed over it: a link at `name` is replaced, not followed).
    pub fn write_replace(&self, name: &OsStr, data: &[u8]) -> io::Result<()> {
        let mut tmp = name.to_os_string();
        tmp.push(format!(".tmp-{}", std::process::id()));
        let _ = self.remove_file(&tmp);
        let mut f = self.create_file(&tmp)?;
        let done = f.write_all(data).and_then(|_| f.sync_all()).and_then(|_| {
            nix::fcntl::renameat(
                Some(self.0.as_raw_fd()),
                tmp.as_os_str(),
                Some(self.0.as_raw_fd()),
                component(name)?,
            )
            .map_err(io_err)
        });
        if done.is_err() {
            let _ = self.remove_file(&tmp);
        }
        done
    }

    /// Removes the entry `name` if it is not a directory (a link itself).
    pub fn remove_file(&self, name: &OsStr) -> io::Result<()> {
        unlinkat(
            Some(self.0.as_raw_fd()),
            component(name)?,
            UnlinkatFlags::NoRemoveDir,
        )
        .map_err(io_err)
    }

    /// Removes the empty directory `name`.
    pub fn remove_dir(&self, name: &OsStr) -> io::Result<()> {
        unlinkat(
            Some(self.0.as_raw_fd()),
            component(name)?,
            UnlinkatFlags::RemoveDir,
        )
        .map_err(io_err)
    }

    /// Removes `name` and everything under it; links are removed, never
    /// followed; a tree deeper than [`MAX_DEPTH`] is an error.
    pub fn remove_all(&self, name: &OsStr) -> io::Result<()> {
        self.remove_all_at(name, 0)
    }

    fn remove_all_at(&self, name: &OsStr, depth: usize) -> io::Result<()> {
        match self.kind(name)? {
            Kind::Dir => {
                if depth >= MAX_DEPTH {
                    return Err(io::Error::other("directory tree too deep"));
                }
                let sub = self.sub(name)?;
                for n in sub.names()? {
                    sub.remove_all_at(&n, depth + 1)?;
                }
                self.remove_dir(name)
            }
            _ => self.remove_file(name),
        }
    }
}

fn kind_of(mode: nix::libc::mode_t) -> Kind {
    match SFlag::from_bits_truncate(mode) & SFlag::S_IFMT {
        SFlag::S_IFDIR => Kind::Dir,
        SFlag::S_IFREG => Kind::File,
        SFlag::S_IFLNK => Kind::Link,
        _ => Kind::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn links_are_entries_never_paths() {
        let t = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::create_dir(t.path().join("d")).unwrap();
        symlink(outside.path(), t.path().join("l")).unwrap();
        symlink(".", t.path().join("d/loop")).unwrap();
        let root = Tree::open(t.path()).unwrap();
        assert_eq!(root.kind(OsStr::new("l")).unwrap(), Kind::Link);
        assert!(root.sub(OsStr::new("l")).is_err(), "opened through a link");
        assert!(root.mkdir(OsStr::new("l"), 0o700).is_err());
        let d = root.sub(OsStr::new("d")).unwrap();
        assert!(d.sub(OsStr::new("loop")).is_err());
        assert!(root.create_file(OsStr::new("l")).is_err());
        root.write_replace(OsStr::new("l"), b"x").unwrap();
        assert_eq!(root.kind(OsStr::new("l")).unwrap(), Kind::File);
        assert!(std::fs::read_dir(outside.path()).unwrap().next().is_none());
        root.remove_all(OsStr::new("d")).unwrap();
        assert!(!t.path().join("d").exists());
        assert!(root.sub(OsStr::new("..")).is_err(), "left the tree");
    }

    #[test]
    fn a_fifo_is_refused_without_blocking() {
        let t = tempfile::tempdir().unwrap();
        nix::unistd::mkfifo(&t.path().join("f"), Mode::from_bits_truncate(0o600)).unwrap();
        let root = Tree::open(t.path()).unwrap();
        assert_eq!(root.kind(OsStr::new("f")).unwrap(), Kind::Other);
        assert!(root.read_file(OsStr::new("f"), 10).is_err());
    }
}
