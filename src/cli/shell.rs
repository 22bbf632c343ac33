//! `init`, `completions`, `prompt`, `shell-exit`: the shell's side door.

use super::Ctx;
use crate::cli::{CompletionShell, ShellKind};
use crate::core::error::{Error, Result};
use crate::core::types::Status;
use clap::CommandFactory;
use clap_complete::env::Shells;

pub fn init(ctx: &Ctx, kind: ShellKind) -> Result<u8> {
    let bin = std::env::current_exe()
        .map_err(|e| Error::Other(format!("cannot locate ai-sessctl: {e}")))?;
    let bin = bin.to_str().ok_or_else(|| {
        Error::Invalid(format!(
            "the path of ai-sessctl ({}) is not UTF-8",
            bin.display()
        ))
    })?;
    // A broken config must not break the user's shell start: fall back to
    // the built-in agents and say so once.
    let agents = crate::state::config::agent_names(&ctx.dirs).unwrap_or_else(|e| {
        eprintln!("ai-sessctl: warning: {e}; using the default agents");
        crate::state::config::Settings::default()
            .agents
            .keys()
            .filter_map(|k| crate::core::types::Mode::parse(k).ok())
            .collect()
    });
    // Best effort: a read-only state dir must not break the shell start.
    let _ = crate::service::shell::write_agents(&ctx.dirs, &agents);
    let script = crate::service::shell::render(kind, bin, &agents);
    // The copy the rc line sources next time, without running us; a state
    // dir that cannot take it only costs the next shell this fork again.
    let _ = crate::service::shell::write_cache(&ctx.dirs, kind, std::path::Path::new(bin), &script);
    print!("{script}");
    Ok(0)
}

/// The completion script: it calls back `ai-sessctl` at TAB time, so live
/// instance ids and configured agents complete.
pub fn completions_script(shell: CompletionShell) -> Result<String> {
    let name = match shell {
        CompletionShell::Zsh => "zsh",
        CompletionShell::Bash => "bash",
        CompletionShell::Fish => "fish",
    };
    let shells = Shells::builtins();
    let completer = shells
        .completer(name)
        .ok_or_else(|| Error::Other(format!("no completer for {name}")))?;
    let cmd = crate::cli::Cli::command();
    let bin = cmd.get_name().to_owned();
    let mut buf = Vec::new();
    completer
        .write_registration("COMPLETE", &bin, &bin, &bin, &mut buf)
        .map_err(|e| Error::Other(e.to_string()))?;
    String::from_utf8(buf).map_err(|e| Error::Other(e.to_string()))
}

pub fn completions(shell: CompletionShell) -> Result<u8> {
    print!("{}", completions_script(shell)?);
    Ok(0)
}

pub fn prompt(ctx: &Ctx) -> Result<u8> {
    let mut warnings = crate::core::warning::Warnings::new();
    crate::features::activity::sync_quietly(ctx, &mut warnings);
    crate::cli::output::warnings(warnings);
    let reg = ctx.store.load()?;
    let cwd = std::env::var("PWD")
        .ok()
        .or_else(|| {
            std::env::current_dir()
                .ok()
                .map(|d| d.to_string_lossy().into_owned())
        })
        .unwrap_or_default();
    let seg = crate::state::registry::prompt_file::segment(&reg, &cwd);
    if !seg.is_empty() {
        println!("{seg}");
    }
    Ok(0)
}

/// Called from the shell's exit hook (only by a shell that ran an agent:
/// see `shell::mark_owner`): applies `on_shell_exit` to the instances this
/// shell owns. Returns at once: a stop may take the whole `stop_timeout`
/// (an agent that ignores SIGTERM), so it is handed to a detached copy of
/// this command (own session, no terminal) that does it and records the
/// result. Silent when there is nothing to do.
pub fn shell_exit(ctx: &Ctx, pid: u32, now: bool) -> Result<u8> {
    crate::service::shell::clear_owner(&ctx.dirs, pid);
    let reg = ctx.store.load()?;
    let owned: Vec<_> = reg
        .instances
        .values()
        .filter(|i| {
            i.owner_pid == Some(pid) && i.status.is_live() && i.status != Status::Initializing
        })
        .map(|i| i.id.clone())
        .collect();
    if !now {
        ctx.events().log(
            crate::state::events::Level::Info,
            "shell",
            "owner shell exited",
            serde_json::json!({"pid": pid, "instances": owned}),
        );
    }
    if owned.is_empty() {
        return Ok(0);
    }
    if now {
        crate::lifecycle::apply_shell_exit(ctx, &owned, "owner shell exited")?;
        return Ok(0);
    }
    if let Err(e) = spawn_detached(pid) {
        // No helper: do it here, late rather than never.
        eprintln!("ai-sessctl: warning: {e}; stopping in the foreground");
        crate::lifecycle::apply_shell_exit(ctx, &owned, "owner shell exited")?;
    }
    Ok(0)
}

/// `ai-sessctl shell-exit PID --now` in a new session with no terminal:
/// it outlives the shell and cannot be stopped by its hangup.
fn spawn_detached(pid: u32) -> Result<()> {
    let args = ["shell-exit".to_owned(), pid.to_string(), "--now".to_owned()];
    crate::lifecycle::spawn_helper(&args)
}

/// What `shell-exit PID --warn` returns when it warned: the shell's `exit`
/// function stays only on this status (a missing or broken binary never
/// keeps a user in their shell).
const WARNED: u8 = 10;

/// Asked by the shell's `exit`/`logout` function, once: says on stderr what
/// the exit would stop (when `warn_on_exit` is on).
pub fn exit_warning(ctx: &Ctx, pid: u32) -> Result<u8> {
    if !ctx.global()?.global.warn_on_exit {
        return Ok(0);
    }
    let ids = crate::service::shell::exit_would_stop(ctx, pid)?;
    match crate::service::shell::exit_warning(&ids) {
        Some(text) => {
            eprintln!("{text}");
            Ok(WARNED)
        }
        None => Ok(0),
    }
}

/// `keep [ID]`: the instance outlives the shell that started it.
pub fn keep(ctx: &Ctx, id: Option<crate::core::types::InstanceId>) -> Result<u8> {
    let id = crate::service::control::given_or_here(ctx, id)?;
    match crate::service::shell::keep(ctx, &id)? {
        Some(_) => eprintln!(
            "{id} keeps running after its shell exits; stop it with `ai-sessctl stop {id}`"
        ),
        None => eprintln!("{id} is owned by no shell: it keeps running until stopped"),
    }
    Ok(0)
}
