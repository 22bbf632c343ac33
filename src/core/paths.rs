//! The state directory layout (DESIGN.md "State directory") and its creation
//! with private permissions.

use crate::core::error::{Error, Result};
use crate::core::types::{InstanceId, Mode};
use std::fs;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    /// The value of the `ai.home` label of the engine objects this state
    /// home makes: its root, canonical when possible.
    /// Where the activity of instance `id` is written (its status file,
    /// its setup outcome).
    pub fn activity_of(&self, id: &crate::core::types::InstanceId) -> PathBuf {
        self.root().join("activity").join(id.as_str())
    }

    pub fn home_label(&self) -> String {
        let root = self.root();
        root.canonicalize()
            .unwrap_or_else(|_| root.to_path_buf())
            .to_string_lossy()
            .into_owned()
    }

    /// `$AI_SESSIONS_HOME`, else `~/.ai-sessions`.
    pub fn from_env() -> Result<Self> {
        if let Some(dir) = std::env::var_os("AI_SESSIONS_HOME").filter(|d| !d.is_empty()) {
            return Ok(Self::new(PathBuf::from(dir)));
        }
        let home = std::env::var_os("HOME")
            .filter(|h| !h.is_empty())
            .ok_or_else(|| Error::Invalid("neither AI_SESSIONS_HOME nor HOME is set".into()))?;
        Ok(Self::new(PathBuf::from(home).join(".ai-sessions")))
    }

    pub fn new(root: PathBuf) -> Self {
        Self { root }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn registry(&self) -> PathBuf {
        self.root.join("registry.json")
    }
    pub fn registry_lock(&self) -> PathBuf {
        self.root.join("registry.lock")
    }
    pub fn config(&self) -> PathBuf {
        self.root.join("config.toml")
    }
    pub fn configs_dir(&self) -> PathBuf {
        self.root.join("configs")
    }
    pub fn instance_config(&self, id: &InstanceId) -> PathBuf {
        self.configs_dir().join(format!("{id}.toml"))
    }
    pub fn states_dir(&self) -> PathBuf {
        self.root.join("states")
    }
    /// One instance's own state (`state = "instance"`, and dirs made
    /// before agent-wide state existed).
    pub fn state_of(&self, id: &InstanceId) -> PathBuf {
        self.states_dir().join(id.as_str())
    }
    /// The state shared by an agent's instances. Never an instance's dir:
    /// ids always contain a `-`, agent names never do.
    pub fn agent_state(&self, mode: &Mode) -> PathBuf {
        self.states_dir().join(mode.as_str())
    }
    pub fn logs_dir(&self) -> PathBuf {
        self.root.join("logs")
    }
    pub fn event_log(&self) -> PathBuf {
        self.logs_dir().join("session-manager.log")
    }
    pub fn instance_log(&self, id: &InstanceId) -> PathBuf {
        self.logs_dir().join(format!("{id}.log"))
    }
    pub fn socket_of(&self, id: &InstanceId) -> PathBuf {
        self.root.join("sockets").join(format!("{id}.sock"))
    }
    /// `meter/`: the spend ledgers, a directory per instance, each
    /// written by that instance's broker only.
    pub fn meter_dir(&self) -> PathBuf {
        self.root.join("meter")
    }
    pub fn meter_of(&self, id: &InstanceId) -> PathBuf {
        self.meter_dir().join(id.as_str())
    }
    pub fn prompt_file(&self) -> PathBuf {
        self.root.join("prompt.tsv")
    }
    pub fn token_file(&self) -> PathBuf {
        self.root.join("api.token")
    }

    /// Refuses a state directory another uid owns or may write (when it
    /// exists): whoever can write there can plant a config that runs
    /// commands as us.
    pub fn check_trusted(&self) -> Result<()> {
        match fs::metadata(&self.root) {
            Ok(m) => trusted(&self.root, &m),
            Err(_) => Ok(()),
        }
    }

    /// Creates the root directory (0700) if missing and tightens it if it
    /// was created with a loose umask (never one another uid can write).
    pub fn ensure(&self) -> Result<()> {
        ensure_private_dir(&self.root)
    }

    pub fn ensure_sub(&self, dir: &Path) -> Result<()> {
        self.ensure()?;
        ensure_private_dir(dir)
    }
}

/// Ours and writable by nobody else, or an error saying which and how to
/// fix it (as ssh does for keys).
pub fn trusted(path: &Path, m: &fs::Metadata) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let me = nix::unistd::geteuid().as_raw();
    let kind = if m.is_dir() { "directory" } else { "file" };
    if m.uid() != me {
        return Err(Error::Invalid(format!(
            "{}: refusing to use a {kind} owned by uid {}, not by you (uid {me}): whoever owns it can make ai-sessions run commands as you; `chown` it if it is yours",
            path.display(),
            m.uid()
        )));
    }
    if m.mode() & 0o022 != 0 {
        return Err(Error::Invalid(format!(
            "{}: refusing to use a {kind} writable by group or others (mode {:o}): they could make ai-sessions run commands as you; `chmod go-w` it after checking its contents",
            path.display(),
            m.mode() & 0o7777
        )));
    }
    Ok(())
}

pub fn ensure_private_dir(dir: &Path) -> Result<()> {
    match fs::metadata(dir) {
        Ok(m) if m.is_dir() => {
            trusted(dir, &m)?;
            if m.permissions().mode() & 0o077 != 0 {
                fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
                    .map_err(|e| Error::io(dir, e))?;
            }
            Ok(())
        }
        Ok(_) => Err(Error::Invalid(format!(
            "{}: exists and is not a directory",
            dir.display()
        ))),
        Err(_) => fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| Error::io(dir, e)),
    }
}

/// Opens a file for appending, created 0600.
pub fn open_private_append(path: &Path) -> Result<fs::File> {
    fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| Error::io(path, e))
}

/// Replaces `path` with `bytes` so that a reader sees the old or the new
/// content, never a mix, even across a crash. On failure (e.g. a full
/// disk) the temp file is removed and the error names `path`, not the
/// temp file.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(dir)
        .map_err(|e| Error::io(path, without_temp_path(e)))?;
    let file = tmp.as_file_mut();
    std::io::Write::write_all(file, bytes)
        .and_then(|_| file.sync_all())
        .map_err(|e| Error::io(path, e))?;
    tmp.persist(path)
        .map_err(|e| Error::io(path, without_temp_path(e.error)))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(dir, e))?;
    Ok(())
}

/// tempfile adds `at path "<dir>/.tmp-XXXX"` to its errors: a name that
/// no longer exists when the user reads it. Keep the OS error only.
fn without_temp_path(e: std::io::Error) -> std::io::Error {
    let os = e
        .get_ref()
        .and_then(|inner| inner.source())
        .and_then(|src| src.downcast_ref::<std::io::Error>())
        .and_then(|io| io.raw_os_error());
    match os {
        Some(code) => std::io::Error::from_raw_os_error(code),
        None => e,
    }
}

/// A path as the user knows it: `$HOME` written `~` (`~/src/api`), enough
/// to tell two projects of one name apart in a line of text.
pub fn home_shown(path: &str) -> String {
    match std::env::var("HOME") {
        Ok(home) if !home.is_empty() && home != "/" => match path.strip_prefix(&home) {
            Some("") => "~".to_owned(),
            Some(rest) if rest.starts_with('/') => format!("~{rest}"),
            _ => path.to_owned(),
        },
        _ => path.to_owned(),
    }
}

/// Six hex digits of the state home: engine object names differ between
/// homes (two users, two `AI_SESSIONS_HOME`s) with a project of one name.
pub fn home_digest(home_label: &str) -> String {
    use sha2::Digest;
    let d = sha2::Sha256::digest(home_label.as_bytes());
    d[..3].iter().map(|b| format!("{b:02x}")).collect()
}
