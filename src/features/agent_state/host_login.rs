//! `ai-sessctl login MODE --from-host`: copies the login an agent keeps on
//! this machine into the agent's shared state (0600), never printing it,
//! with the agent's answers to its first-run questions (see `answers`).

use crate::core::error::{Error, Result};
use crate::core::paths::{ensure_private_dir, StateDir};
use crate::core::types::Mode;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Where a host login came from and where it went.
#[derive(Debug)]
pub struct HostCopy {
    pub from: String,
    pub to: PathBuf,
    /// The first-run answers kept with it, if the agent had any.
    pub answers: Option<super::Answers>,
}

/// Claude Code's file login (Linux) or Keychain item (macOS), Gemini
/// CLI's OAuth file. Other agents: name the file in the error.
pub fn copy_from_host(dirs: &StateDir, mode: &Mode) -> Result<HostCopy> {
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .ok_or_else(|| Error::Invalid("HOME is not set".into()))?;
    // The host's Claude Code honours CLAUDE_CONFIG_DIR as well (its
    // `.claude.json` then lives in it, not in HOME).
    let claude_dir = std::env::var_os("CLAUDE_CONFIG_DIR")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from);
    let (secret, from, file) = match mode.as_str() {
        "claude" => {
            let dir = claude_dir.clone().unwrap_or_else(|| home.join(".claude"));
            let path = dir.join(".credentials.json");
            if cfg!(target_os = "macos") && !path.exists() {
                (keychain("Claude Code-credentials")?, "the macOS Keychain item \"Claude Code-credentials\"".to_owned(), ".credentials.json")
            } else {
                (read_login(&path, mode)?, path.display().to_string(), ".credentials.json")
            }
        }
        "gemini" => {
            let path = home.join(".gemini/oauth_creds.json");
            (read_login(&path, mode)?, path.display().to_string(), "oauth_creds.json")
        }
        _ => {
            return Err(Error::NotFound(format!(
                "no known host login for {mode}; log in inside a container with `ai-sessctl login {mode}`"
            )))
        }
    };
    let to_dir = dirs.agent_state(mode);
    dirs.ensure_sub(&dirs.states_dir())?;
    ensure_private_dir(&to_dir)?;
    let to = to_dir.join(file);
    write_private(&to, &secret)?;
    let answers = super::answers::from_host(mode, &home, claude_dir.as_deref());
    if let Some(a) = &answers {
        super::answers::save(dirs, mode, a.clone(), false)?;
    }
    Ok(HostCopy { from, to, answers })
}

fn read_login(path: &Path, mode: &Mode) -> Result<Vec<u8>> {
    match std::fs::read(path) {
        Ok(b) if !b.is_empty() => Ok(b),
        Ok(_) => Err(Error::Invalid(format!("{}: empty", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::NotFound(format!(
            "{}: not found; log in with {mode} on this machine first, or use `ai-sessctl login {mode}`",
            path.display()
        ))),
        Err(e) => Err(Error::io(path, e)),
    }
}

/// A generic password from the macOS Keychain (`security` may ask the
/// user to allow the access); the secret goes through a pipe only.
fn keychain(service: &str) -> Result<Vec<u8>> {
    let out = std::process::Command::new("security")
        .args(["find-generic-password", "-s", service, "-w"])
        .stderr(std::process::Stdio::null())
        .output()
        .map_err(|e| Error::Other(format!("security: {e}")))?;
    if !out.status.success() {
        return Err(Error::NotFound(format!(
            "no Keychain item {service:?}; log in with claude on this Mac first"
        )));
    }
    let mut s = out.stdout;
    while s.last() == Some(&b'\n') {
        s.pop();
    }
    Ok(s)
}

/// Written to a private temp file, then renamed: never readable by others,
/// never half-written.
fn write_private(to: &Path, data: &[u8]) -> Result<()> {
    let tmp = to.with_extension("tmp-login");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| Error::io(&tmp, e))?;
    f.write_all(data)
        .and_then(|_| f.sync_all())
        .map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, to).map_err(|e| Error::io(to, e))
}
