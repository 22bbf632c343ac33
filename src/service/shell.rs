//! Shell integration templates (kept as real files in `shell/` so they can
//! be shellchecked and read), their rendering for `init`, the cached copy
//! a new shell sources without running a program, and the markers that
//! tell a shell's exit hook whether it owns anything.

use crate::core::error::{Error, Result};
use crate::core::paths::StateDir;
use crate::core::types::{InstanceId, Status};
use crate::state::config::ShellExitPolicy;
use crate::state::context::Ctx;
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
    let text = format!("{header}\n{script}");
    // The zsh header compares the stamp compiled into init.zsh.zwc with the
    // one on the text's first line: a digest of the text, so any change
    // makes an older compiled copy stale.
    use sha2::Digest;
    let digest = sha2::Sha256::digest(text.as_bytes());
    let stamp: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    text.replace("@STAMP@", &stamp)
}

/// `init.zsh.zwc`: the compiled copy of the zsh cache that zsh's `.` loads
/// in its place (written by the cache's header, in the shell).
pub fn compiled_cache_file(dirs: &StateDir, kind: ShellKind) -> Option<PathBuf> {
    match kind {
        ShellKind::Zsh => Some(dirs.root().join("init.zsh.zwc")),
        ShellKind::Bash => None,
    }
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
        .map_err(|e| Error::io(&path, e))?;
    if let Some(zwc) = compiled_cache_file(dirs, kind) {
        keep_compiled_if_current(&zwc, &text, at)?;
    }
    Ok(())
}

/// The compiled copy of the zsh cache stays when it was compiled from
/// `text` (its stamp is in it), dated just after the text, which was just
/// re-dated: else the next shell would compile it again, and a shell
/// with `eval "$(ai-sessctl init zsh)"` would make every other one do so.
/// Any other copy is removed: `init` also runs when a shell found the copy
/// stale (zsh takes a copy dated within the same second as the text).
fn keep_compiled_if_current(zwc: &Path, text: &str, at: SystemTime) -> Result<()> {
    let stamp = text
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("# ai-sessions cache "))
        .filter(|s| !s.is_empty());
    let current = match (stamp, std::fs::symlink_metadata(zwc)) {
        (_, Err(e)) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        (Some(stamp), Ok(m)) if m.is_file() && m.uid() == nix::unistd::geteuid().as_raw() => {
            std::fs::read(zwc).is_ok_and(|b| b.windows(stamp.len()).any(|w| w == stamp.as_bytes()))
                && std::fs::File::open(zwc)
                    .and_then(|f| f.set_modified(at + Duration::from_millis(1)))
                    .is_ok()
        }
        _ => false,
    };
    if current {
        return Ok(());
    }
    match std::fs::remove_file(zwc) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io(zwc, e)),
        _ => Ok(()),
    }
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

/// The live instances shell `pid` owns that its exit would stop (policy
/// `stop`, and no terminal of another shell attached: that one would take
/// it over), in id order.
pub fn exit_would_stop(ctx: &Ctx, pid: u32) -> Result<Vec<InstanceId>> {
    let policy = ctx.global()?.global.on_shell_exit;
    let reg = ctx.store.load()?;
    let mut ids: Vec<InstanceId> = reg
        .instances
        .values()
        .filter(|i| {
            i.owner_pid == Some(pid) && i.status.is_live() && i.status != Status::Initializing
        })
        .filter(|i| {
            !i.live_clients()
                .filter_map(|c| c.shell.as_ref())
                .any(|s| s.pid != pid && s.alive())
        })
        .filter(|i| {
            ctx.effective(&i.id)
                .map_or(policy, |e| e.settings.global.on_shell_exit)
                == ShellExitPolicy::Stop
        })
        .map(|i| i.id.clone())
        .collect();
    ids.sort();
    Ok(ids)
}

/// What `exit` says, once, in a shell whose exit would stop `ids` (none:
/// nothing to say).
pub fn exit_warning(ids: &[InstanceId]) -> Option<String> {
    let list = ids
        .iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let (owns, stop, keep) = match ids.len() {
        0 => return None,
        1 => (
            format!("a running agent: {list}; it stops"),
            "it",
            format!("`ai-sessctl keep {list}`"),
        ),
        n => (
            format!("{n} running agents: {list}; they stop"),
            "one",
            "`ai-sessctl keep ID`".to_owned(),
        ),
    };
    Some(format!(
        "ai-sessions: this shell owns {owns} when this shell exits.\n  \
         {keep} keeps {stop} running; `exit` again exits now."
    ))
}

/// `keep ID`: no shell owns the instance any more, so no shell's exit
/// stops it. Returns the shell that owned it; the marker of that shell
/// goes once it owns nothing else (its exit then runs no program).
pub fn keep(ctx: &Ctx, id: &InstanceId) -> Result<Option<u32>> {
    let (was, owns_more) = ctx.store.update(|reg| {
        let inst = reg
            .instances
            .get_mut(id)
            .ok_or_else(|| Error::not_found(id))?;
        if !inst.status.is_live() {
            return Err(Error::Invalid(format!(
                "{id} is {}: there is nothing to keep running",
                inst.status
            )));
        }
        let was = inst.owner_pid.take();
        inst.owner_start_time = None;
        let owns_more = was.is_some_and(|p| {
            reg.instances
                .values()
                .any(|i| i.owner_pid == Some(p) && i.status.is_live())
        });
        Ok((was, owns_more))
    })?;
    if let Some(pid) = was {
        if !owns_more {
            clear_owner(&ctx.dirs, pid);
        }
        ctx.events().log(
            crate::state::events::Level::Info,
            "shell",
            "kept after its shell exits",
            serde_json::json!({"instance": id, "pid": pid}),
        );
    }
    Ok(was)
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
    fn the_exit_warning_names_what_stops_and_the_way_out() {
        assert_eq!(exit_warning(&[]), None);
        let one = [InstanceId::parse("api-claude").unwrap()];
        let text = exit_warning(&one).unwrap();
        assert!(
            text.contains("owns a running agent: api-claude; it stops when this shell exits")
                && text.contains("`ai-sessctl keep api-claude` keeps it running")
                && text.contains("`exit` again"),
            "{text}"
        );
        let two = [
            InstanceId::parse("api-claude").unwrap(),
            InstanceId::parse("web-gemini").unwrap(),
        ];
        let text = exit_warning(&two).unwrap();
        assert!(
            text.contains("owns 2 running agents: api-claude, web-gemini; they stop")
                && text.contains("`ai-sessctl keep ID` keeps one running"),
            "{text}"
        );
    }

    #[test]
    fn the_zsh_cache_is_stamped_with_its_text() {
        let a = cache_text(ShellKind::Zsh, "/usr/bin/ai-sessctl", "claude\n");
        let b = cache_text(ShellKind::Zsh, "/usr/bin/ai-sessctl", "codex\n");
        assert!(!a.contains("@STAMP@") && !a.contains("@AI_"));
        let stamp = |t: &str| t.lines().next().unwrap().to_owned();
        assert!(
            stamp(&a).starts_with("# ai-sessions cache "),
            "{}",
            stamp(&a)
        );
        // The header compares the compiled-in stamp with the first line.
        assert!(a.contains(&format!("'{}'", stamp(&a))));
        assert_ne!(stamp(&a), stamp(&b));
        assert_eq!(
            a,
            cache_text(ShellKind::Zsh, "/usr/bin/ai-sessctl", "claude\n")
        );
    }

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
