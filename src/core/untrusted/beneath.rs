//! File operations beneath a directory someone else can write (a project,
//! a worktree): a path is resolved relative to an open directory fd, never
//! leaves it, and follows no symlink at any component, so a planted
//! `.env -> ~/.ssh/id_ed25519` is refused, not read or written through.
//! `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)` where the kernel has it;
//! else one `openat(O_NOFOLLOW)` per component, which holds the same rule
//! (each step opens what is there now, relative to the step before).

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path};

/// How a directory on the way is opened: only as a place (`O_PATH`)
/// where Linux has it.
#[cfg(target_os = "linux")]
const DIR_FLAGS: libc::c_int = libc::O_PATH;
#[cfg(not(target_os = "linux"))]
const DIR_FLAGS: libc::c_int = libc::O_RDONLY;

/// An open directory: the root operations stay beneath.
pub struct Dir(OwnedFd);

impl Dir {
    /// Opens the directory `path` (trusted: the caller's own place).
    pub fn open(path: &Path) -> io::Result<Dir> {
        let c = cstr(path.as_os_str().as_bytes())?;
        // SAFETY: a valid C string; the fd is owned from here on.
        let fd = unsafe { libc::open(c.as_ptr(), DIR_FLAGS | libc::O_DIRECTORY | libc::O_CLOEXEC) };
        owned(fd).map(Dir)
    }

    /// The regular file at `rel`, for reading; refused (an error saying
    /// why) when any component is a symlink, `..`, or it is not a regular
    /// file (a FIFO never blocks the open).
    pub fn open_file(&self, rel: &Path) -> io::Result<File> {
        let f = self.open_at(rel, libc::O_RDONLY | libc::O_NONBLOCK | libc::O_NOCTTY, 0)?;
        let f = File::from(f);
        if !f.metadata()?.is_file() {
            return Err(io::Error::other("not a regular file"));
        }
        Ok(f)
    }

    /// A new file at `rel` (mode `mode`), its missing parent directories
    /// made; fails when anything is already at `rel` (a symlink included:
    /// never written through) or a parent is a symlink.
    pub fn create_new(&self, rel: &Path, mode: u32) -> io::Result<File> {
        let parts = parts(rel)?;
        let (name, dirs) = parts
            .split_last()
            .ok_or_else(|| io::Error::other("empty path"))?;
        let mut parent = self.dup()?;
        for d in dirs {
            let c = cstr(d)?;
            // SAFETY: valid fd and C string.
            unsafe { libc::mkdirat(parent.as_raw_fd(), c.as_ptr(), 0o755) };
            parent = openat(
                parent.as_raw_fd(),
                d,
                DIR_FLAGS | libc::O_DIRECTORY | libc::O_NOFOLLOW,
                0,
            )?;
        }
        let f = openat(
            parent.as_raw_fd(),
            name,
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW,
            mode,
        )?;
        Ok(File::from(f))
    }

    /// The directory `rel` beneath, each missing component made (0755);
    /// refused (an error saying why) when a component is a symlink (never
    /// followed) or not a directory.
    pub fn make_dirs(&self, rel: &Path) -> io::Result<Dir> {
        self.dirs(rel, true)
    }

    /// The directory `rel` beneath, no symlink at any component.
    pub fn sub(&self, rel: &Path) -> io::Result<Dir> {
        self.dirs(rel, false)
    }

    fn dirs(&self, rel: &Path, make: bool) -> io::Result<Dir> {
        let mut at = self.dup()?;
        for d in parts(rel)? {
            let c = cstr(d)?;
            if make {
                // SAFETY: valid fd and C string.
                unsafe { libc::mkdirat(at.as_raw_fd(), c.as_ptr(), 0o755) };
            }
            // What is there, for the refusal's reason (the open below is
            // what holds the rule).
            let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
            // SAFETY: valid fd, C string and out pointer.
            if unsafe {
                libc::fstatat(
                    at.as_raw_fd(),
                    c.as_ptr(),
                    st.as_mut_ptr(),
                    libc::AT_SYMLINK_NOFOLLOW,
                )
            } == 0
            {
                // SAFETY: fstatat succeeded and filled it.
                let mode = unsafe { st.assume_init() }.st_mode & libc::S_IFMT;
                if mode == libc::S_IFLNK {
                    return Err(symlink());
                }
                if mode != libc::S_IFDIR {
                    return Err(io::Error::other("not a directory"));
                }
            }
            at = openat(
                at.as_raw_fd(),
                d,
                DIR_FLAGS | libc::O_DIRECTORY | libc::O_NOFOLLOW,
                0,
            )?;
        }
        Ok(Dir(at))
    }

    /// A path naming this very directory (`/proc/self/fd/N`, Linux), for
    /// a rule that must hold on it and not on what its path leads to later.
    pub fn fd_path(&self) -> std::path::PathBuf {
        std::path::PathBuf::from(format!("/proc/self/fd/{}", self.0.as_raw_fd()))
    }

    fn dup(&self) -> io::Result<OwnedFd> {
        self.0.try_clone()
    }

    fn open_at(&self, rel: &Path, flags: libc::c_int, mode: u32) -> io::Result<OwnedFd> {
        let parts = parts(rel)?;
        match openat2(self.0.as_raw_fd(), rel, flags, mode) {
            Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => {}
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => return Err(symlink()),
            other => return other,
        }
        self.walk(&parts, flags, mode)
    }

    /// The fallback: one `openat(O_NOFOLLOW)` per component.
    fn walk(&self, parts: &[&[u8]], flags: libc::c_int, mode: u32) -> io::Result<OwnedFd> {
        let (name, dirs) = parts
            .split_last()
            .ok_or_else(|| io::Error::other("empty path"))?;
        let mut at = self.dup()?;
        for d in dirs {
            at = openat(
                at.as_raw_fd(),
                d,
                DIR_FLAGS | libc::O_DIRECTORY | libc::O_NOFOLLOW,
                0,
            )?;
        }
        openat(at.as_raw_fd(), name, flags | libc::O_NOFOLLOW, mode)
    }
}

fn symlink() -> io::Error {
    io::Error::other("a symlink (never followed)")
}

/// The normal components of `rel`; `..`, an absolute path or nothing is an
/// error.
fn parts(rel: &Path) -> io::Result<Vec<&[u8]>> {
    let mut out = Vec::new();
    for c in rel.components() {
        match c {
            Component::Normal(n) => out.push(n.as_bytes()),
            Component::CurDir => {}
            _ => return Err(io::Error::other("not a path inside the tree")),
        }
    }
    if out.is_empty() {
        return Err(io::Error::other("empty path"));
    }
    Ok(out)
}

fn cstr(b: &[u8]) -> io::Result<std::ffi::CString> {
    std::ffi::CString::new(b).map_err(|_| io::Error::other("a NUL in the path"))
}

fn owned(fd: libc::c_int) -> io::Result<OwnedFd> {
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh fd the kernel just gave us.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn openat(at: RawFd, name: &[u8], flags: libc::c_int, mode: u32) -> io::Result<OwnedFd> {
    let c = cstr(name)?;
    // SAFETY: valid fd and C string.
    let fd = unsafe { libc::openat(at, c.as_ptr(), flags | libc::O_CLOEXEC, mode) };
    owned(fd).map_err(|e| match e.raw_os_error() {
        Some(libc::ELOOP) => symlink(),
        _ => e,
    })
}

#[cfg(not(target_os = "linux"))]
fn openat2(_: RawFd, _: &Path, _: libc::c_int, _: u32) -> io::Result<OwnedFd> {
    Err(io::Error::from_raw_os_error(libc::ENOSYS))
}

#[cfg(target_os = "linux")]
#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

#[cfg(target_os = "linux")]
fn openat2(at: RawFd, rel: &Path, flags: libc::c_int, mode: u32) -> io::Result<OwnedFd> {
    let c = cstr(rel.as_os_str().as_bytes())?;
    let how = OpenHow {
        flags: (flags | libc::O_CLOEXEC) as u64,
        mode: u64::from(mode),
        resolve: libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_MAGICLINKS,
    };
    // SAFETY: valid fd, C string and struct, its size passed.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            at,
            c.as_ptr(),
            &how as *const OpenHow,
            std::mem::size_of::<OpenHow>(),
        )
    };
    owned(libc::c_int::try_from(fd).unwrap_or(-1))
}

/// Copies the regular file `rel` beneath `from` to a new file `rel`
/// beneath `to` (same permission bits). `Ok(false)`: there is no such file
/// (nothing to copy); an error says why it was refused.
pub fn copy_new(from: &Dir, to: &Dir, rel: &Path) -> io::Result<bool> {
    let mut src = match from.open_file(rel) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    use std::io::Read;
    use std::os::unix::fs::PermissionsExt;
    let len = super::fs::copy_len(&src)?;
    let mode = src.metadata()?.permissions().mode() & 0o777;
    let mut dst = to.create_new(rel, mode).map_err(|e| {
        if e.kind() == io::ErrorKind::AlreadyExists {
            io::Error::other("already in the worktree (a checked-out file or symlink)")
        } else {
            e
        }
    })?;
    io::copy(&mut (&mut src).take(len), &mut dst)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink as ln;

    #[test]
    fn reads_and_creates_only_beneath_without_symlinks() {
        let t = tempfile::tempdir().unwrap();
        let (a, b) = (t.path().join("a"), t.path().join("b"));
        std::fs::create_dir_all(a.join("sub")).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        std::fs::write(t.path().join("secret"), "KEY").unwrap();
        std::fs::write(a.join("sub/ok"), "fine").unwrap();
        ln(t.path().join("secret"), a.join("link")).unwrap();
        ln(t.path(), a.join("up")).unwrap();
        let (from, to) = (Dir::open(&a).unwrap(), Dir::open(&b).unwrap());
        assert!(copy_new(&from, &to, Path::new("sub/ok")).unwrap());
        assert_eq!(std::fs::read_to_string(b.join("sub/ok")).unwrap(), "fine");
        assert!(copy_new(&from, &to, Path::new("link")).is_err());
        assert!(copy_new(&from, &to, Path::new("up/secret")).is_err());
        assert!(copy_new(&from, &to, Path::new("../secret")).is_err());
        assert!(!copy_new(&from, &to, Path::new("none")).unwrap());
        // The destination is never written through a symlink.
        ln(t.path().join("secret"), b.join("dst")).unwrap();
        std::fs::write(a.join("dst"), "payload").unwrap();
        assert!(copy_new(&from, &to, Path::new("dst")).is_err());
        ln(t.path(), b.join("d2")).unwrap();
        std::fs::create_dir_all(a.join("d2")).unwrap();
        std::fs::write(a.join("d2/secret"), "payload").unwrap();
        assert!(copy_new(&from, &to, Path::new("d2/secret")).is_err());
        assert_eq!(
            std::fs::read_to_string(t.path().join("secret")).unwrap(),
            "KEY"
        );
        // Directories: made or opened only where each component is one.
        from.make_dirs(Path::new("sub/new/deeper")).unwrap();
        assert!(a.join("sub/new/deeper").is_dir());
        let e = from.make_dirs(Path::new("up/made")).err().unwrap();
        assert!(e.to_string().contains("symlink"), "{e}");
        assert!(!t.path().join("made").exists());
        assert!(from.sub(Path::new("up")).is_err());
        assert!(from.make_dirs(Path::new("sub/ok/x")).is_err());
        assert!(from.sub(Path::new("sub/new")).is_ok());
        // The fallback (no openat2) holds the same rule.
        let ro = libc::O_RDONLY;
        assert!(from.walk(&[b"link"], ro, 0).is_err());
        assert!(from.walk(&[b"up", b"secret"], ro, 0).is_err());
        assert!(from.walk(&[b"sub", b"ok"], ro, 0).is_ok());
    }
}
