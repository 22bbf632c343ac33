//! Shell integration templates (kept as real files in `shell/` so they can
//! be shellchecked and read), their rendering for `init`, the cached copy
//! a new shell sources without running a program, and the markers that
//! tell a shell's exit hook whether it owns anything.

use crate::core::error::{Error, Result};
use crate::core::paths::StateDir;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

pub const ZSH: &str = include_str!("../../shell/ai-sessions.zsh");
pub const BASH: &str = include_str!("../../shell/ai-sessions.bash");
const ZSH_CACHE_HEADER: &str = include_str!("../../shell/cache-header.zsh");
const BASH_CACHE_HEADER: &str = include_str!("../../shell/cache-header.bash");

/// The shells the integration is written for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ShellKind {
    Zsh,
    Bash,
}

fn name(kind: ShellKind) -> &'static str {
    match kind {
        ShellKind::Zsh => "zsh",
        ShellKind::Bash => "bash",
    }
}

/// Fills the template's placeholders: the binary's absolute path (quoted
/// for the shell) and the agent names (letters only, so safe as words).
pub fn render(kind: ShellKind, bin: &str, agents: &[crate::core::types::Mode]) -> String {
    let template = match kind {
        ShellKind::Zsh => ZSH,
        ShellKind::Bash => BASH,
    };
    let names: Vec<&str> = agents.iter().map(|m| m.as_str()).collect();
    template
        .replace("@AI_SESSCTL@", &shell_words::quote(bin))
        .replace("@AI_AGENTS@", &names.join(" "))
}

/// The line install.sh puts in the rc file of `kind` (`login`: bash's login
/// file, which sh reads too): in interactive shells, source the cached
/// init script when it and the state dir are the user's own (never a file
/// another uid could have written), else run `init`, which rewrites it.
/// The cached script checks its own freshness (see `shell/cache-header.*`).
pub fn rc_line(kind: ShellKind, bin: &str, login: bool) -> String {
    let sh = name(kind);
    let bin = shell_words::quote(bin);
    let home = "${AI_SESSIONS_HOME:-${HOME-}/.ai-sessions}";
    let guard = if login {
        "[ -n \"${BASH_VERSION-}\" ] && "
    } else {
        ""
    };
    format!(
        "case $- in *i*) {guard}[ -x {bin} ] && if [ -O \"{home}\" ] && [ -O \"{home}/init.{sh}\" ]; \
         then . \"{home}/init.{sh}\" {bin}; else eval \"$({bin} init {sh})\"; fi ;; esac"
    )
}

/// `init.zsh` / `init.bash`: `init`'s output with a freshness check on top.
pub fn cache_file(dirs: &StateDir, kind: ShellKind) -> PathBuf {
    dirs.root().join(format!("init.{}", name(kind)))
}

/// What the cache of `script` holds: the header (freshness check, fallback
/// to `init`), then the script.
pub fn cache_text(kind: ShellKind, bin: &str, script: &str) -> String {
    let header = match kind {
        ShellKind::Zsh => ZSH_CACHE_HEADER,
        ShellKind::Bash => BASH_CACHE_HEADER,
    };
    let header = header.replace("@AI_SESSCTL@", &shell_words::quote(bin));
    // The header of the bash file names its dialect; the script's own
    // directive would be a second one.
    let script = script
        .strip_prefix("# shellcheck shell=bash\n")
        .unwrap_or(script);
    format!("{header}\n{script}")
}

/// Modification times the cache must be newer than: the binary's, and
/// those of config.toml and agents.list when they exist.
fn cache_inputs(dirs: &StateDir, bin: &Path) -> Vec<SystemTime> {
    [bin.to_path_buf(), dirs.config(), agents_file(dirs)]
        .iter()
        .filter_map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
        .collect()
}

/// Keeps the cache of `init`'s output for `kind` current: rewritten (0600,
/// atomically) when its text differs or it is not ours, and dated now (or
/// just after its newest input, if that is later). The shell's side tests
/// `-nt` against the binary its rc line names, which may be a wrapper this
/// process never sees: every `init` (which that test's failure leads to)
/// re-dates the file, so the next shell finds it fresh.
pub fn write_cache(dirs: &StateDir, kind: ShellKind, bin: &Path, script: &str) -> Result<()> {
    let bin_text = bin.to_str().ok_or_else(|| {
        Error::Invalid(format!(
            "the path of ai-sessctl ({}) is not UTF-8",
            bin.display()
        ))
    })?;
    let text = cache_text(kind, bin_text, script);
    let path = cache_file(dirs, kind);
    let ours = std::fs::metadata(&path)
        .is_ok_and(|m| m.uid() == nix::unistd::geteuid().as_raw() && m.is_file());
    if !ours || std::fs::read(&path).map_or(true, |old| old != text.as_bytes()) {
        dirs.ensure()?;
        crate::core::paths::atomic_write(&path, text.as_bytes())?;
    }
    let newest = cache_inputs(dirs, bin).into_iter().max();
    let at = match newest {
        // A clock tick is coarse: two writes within one share a time, and
        // `-nt` is strict.
        Some(t) => (t + Duration::from_millis(1)).max(SystemTime::now()),
        None => SystemTime::now(),
    };
    std::fs::File::options()
        .write(true)
        .open(&path)
        .and_then(|f| f.set_modified(at))
        .map_err(|e| Error::io(&path, e))
}

/// `shells/<pid>`: left by `run --shell-pid PID`, so that the exit hook of
/// that shell knows (with a file test, no fork) that it owns instances.
/// Shells that started nothing exit without running `shell-exit`.
pub fn owner_marker(dirs: &StateDir, pid: u32) -> PathBuf {
    dirs.root().join("shells").join(pid.to_string())
}

/// Leaves the marker of shell `pid` (and drops those of shells that are
/// gone without running their exit hook).
pub fn mark_owner(dirs: &StateDir, pid: u32) -> Result<()> {
    let dir = dirs.root().join("shells");
    dirs.ensure_sub(&dir)?;
    if let Ok(entries) = std::fs::read_dir(&dir) {
        for e in entries.flatten() {
            let dead = e
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
                .is_some_and(|p| p != pid && !crate::core::procinfo::alive(p, None));
            if dead {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    let path = owner_marker(dirs, pid);
    crate::core::paths::open_private_append(&path).map(|_| ())
}

/// What a shell with the integration exports: its pid, so that an
/// `ai-sessctl run` typed in it (not through its agent function, which
/// says `--shell-pid`) or run by a script under it is owned by it too.
pub const SHELL_PID_VAR: &str = "AI_SESSIONS_SHELL_PID";

/// The shell named by [`SHELL_PID_VAR`], when this process runs under it.
/// Only an ancestor counts: whatever merely inherited the variable (a
/// terminal multiplexer's server and the panes it starts, a job a service
/// runs) is no child of that shell, and an owner that is not there would
/// have its instance stopped as an orphan.
pub fn owner_from_env() -> Option<u32> {
    let pid: u32 = std::env::var(SHELL_PID_VAR).ok()?.trim().parse().ok()?;
    crate::core::procinfo::is_ancestor(pid).then_some(pid)
}

/// Removes the marker of shell `pid` (its exit hook ran).
pub fn clear_owner(dirs: &StateDir, pid: u32) {
    let _ = std::fs::remove_file(owner_marker(dirs, pid));
}

/// `agents.list`: the configured agent names on one line, so the prompt
/// hook can notice a new agent with builtins only and define its function.
pub fn agents_file(dirs: &crate::core::paths::StateDir) -> std::path::PathBuf {
    dirs.root().join("agents.list")
}

/// Rewrites `agents.list` when the agents differ from what it holds.
pub fn write_agents(
    dirs: &crate::core::paths::StateDir,
    agents: &[crate::core::types::Mode],
) -> crate::core::error::Result<()> {
    let names: Vec<&str> = agents.iter().map(|m| m.as_str()).collect();
    let text = format!("{}\n", names.join(" "));
    let path = agents_file(dirs);
    if std::fs::read(&path).is_ok_and(|old| old == text.as_bytes()) {
        return Ok(());
    }
    dirs.ensure()?;
    crate::core::paths::atomic_write(&path, text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::types::Mode;

    #[test]
    fn placeholders_are_filled_and_quoted() {
        let agents = [
            Mode::parse("claude").unwrap(),
            Mode::parse("codex").unwrap(),
        ];
        let out = render(ShellKind::Bash, "/opt/my dir/ai-sessctl", &agents);
        assert!(!out.contains("@AI_"));
        assert!(out.contains("'/opt/my dir/ai-sessctl'"));
        assert!(out.contains("claude codex"));
        let out = render(ShellKind::Zsh, "/usr/bin/ai-sessctl", &agents);
        assert!(!out.contains("@AI_"));
    }
}
