//! `run` (attach-or-start, what the `claude` function calls), `start` and
//! `attach`.

use super::{Ctx, RunArgs, StartArgs};
use crate::core::error::{Error, Result};
use crate::core::types::{InstanceId, Status};
use crate::engine::attach::{parse_detach_keys, AttachEnd};
use crate::lifecycle;
use crate::lifecycle::docker::DockerEngine;
use crate::lifecycle::setup_wait::Watch;
use crate::service::{self, start::StartRequest, start::Started, start::Wanted};
use crate::state::registry::{Client, Instance, ProcRef, RuntimeKind};
use std::io::IsTerminal;
use std::time::{Duration, Instant};

/// `ai-sessctl start`'s arguments as a start in a project (an instance an
/// engine restart or reboot ended is brought back with its arguments).
pub fn request(a: StartArgs) -> StartRequest {
    StartRequest {
        path: a.path,
        mode: a.mode,
        id: a.id,
        port: a.port,
        runtime: a.runtime,
        egress: a.egress,
        detach: a.detach,
        args: a.args,
        worktree: a.worktree.map(wanted),
        shell_pid: None,
        resume: true,
    }
}

/// `-w NAME` or `-w` alone (a new worktree, its name made up).
fn wanted(name: Option<String>) -> Wanted {
    match name.filter(|n| !n.is_empty()) {
        Some(n) => Wanted::Named(n),
        None => Wanted::MadeUp,
    }
}

/// `claude -w NAME ARGS` from the shell function: a leading `-w NAME`,
/// `--worktree NAME` or `--worktree=NAME` is ours, the rest the agent's.
/// `-w` last or before an option (`claude -w --model x`) asks for a new
/// worktree with a made-up name, as Claude Code's own `-w` does.
fn split_worktree(mut args: Vec<String>) -> (Option<Wanted>, Vec<String>) {
    match args.first().map(String::as_str) {
        Some("-w" | "--worktree") => {
            args.remove(0);
            let named = args.first().is_some_and(|a| !a.starts_with('-'));
            let name = named.then(|| args.remove(0));
            (Some(wanted(name)), args)
        }
        Some(a) if a.starts_with("--worktree=") => {
            let name = a["--worktree=".len()..].to_owned();
            args.remove(0);
            (Some(wanted(Some(name))), args)
        }
        _ => (None, args),
    }
}

pub fn run(ctx: &Ctx, a: RunArgs) -> Result<u8> {
    let RunArgs {
        mode,
        shell_pid,
        runtime,
        egress,
        worktree,
        args,
    } = a;
    if let Some(pid) = shell_pid {
        // Tells that shell's exit hook to run `shell-exit` (best effort:
        // without it, reconcile applies the policy once the shell is gone).
        let _ = crate::service::shell::mark_owner(&ctx.dirs, pid);
    }
    let (from_args, args) = match worktree {
        Some(w) => (Some(wanted(w)), args),
        None => split_worktree(args),
    };
    start(
        ctx,
        StartRequest {
            path: None,
            mode,
            id: None,
            port: None,
            runtime,
            egress,
            detach: false,
            args,
            shell_pid,
            worktree: from_args,
            resume: true,
        },
    )
}

pub fn start(ctx: &Ctx, req: StartRequest) -> Result<u8> {
    let (detach, shell_pid) = (req.detach, req.shell_pid);
    let made_up = req.worktree == Some(Wanted::MadeUp);
    let args = req.args.clone();
    let mut warnings = crate::core::warning::Warnings::new();
    let started = service::start::start(ctx, req, &mut warnings);
    super::output::warnings(warnings);
    let started = started?;
    if made_up {
        announce_worktree(&started);
    }
    match started {
        Started::AlreadyRunning(inst) => {
            if detach {
                eprintln!(
                    "{} is already {} on port {}",
                    inst.id, inst.status, inst.port
                );
                return Ok(0);
            }
            if !args.is_empty() {
                // Nothing silently dropped: the running agent was started
                // with other arguments (or none).
                eprintln!(
                    "{id} is already running: attaching to it; `{}` applies at its next start (`ai-sessctl stop {id}`, then run it again)",
                    args.join(" "),
                    id = inst.id
                );
            }
            attach_to(ctx, inst, None, shell_pid)
        }
        Started::Container { inst, engine } => {
            if detach {
                if has_setup(ctx, &inst)? {
                    eprintln!("{}: running worktree.setup…", inst.id);
                    crate::lifecycle::setup_wait::wait(ctx, Watch::Container(&engine), &inst)?;
                }
                println!("{}", inst.id);
                eprintln!("started {} on {}", inst.id, inst.address());
                return Ok(0);
            }
            attach_to(ctx, inst, Some(engine), shell_pid)
        }
        Started::Process { inst, child } => {
            if detach {
                detached_process(ctx, &inst, child)
            } else {
                foreground_process(ctx, &inst, child)
            }
        }
    }
}

/// Says which worktree a `-w` without a name made, so it can be found
/// (and named again) later.
fn announce_worktree(started: &Started) {
    let inst = match started {
        Started::AlreadyRunning(i) => i,
        Started::Container { inst, .. } | Started::Process { inst, .. } => inst,
    };
    if let Some(w) = &inst.worktree {
        eprintln!(
            "worktree {} (branch {}) at {}",
            w.name,
            crate::core::untrusted::printable(&w.branch),
            w.path.display()
        );
    }
}

/// A host agent started with `--detach`: its output goes to its log.
fn detached_process(ctx: &Ctx, inst: &Instance, mut child: std::process::Child) -> Result<u8> {
    if has_setup(ctx, inst)? {
        eprintln!("{}: running worktree.setup…", inst.id);
        crate::lifecycle::setup_wait::wait(ctx, Watch::Process(&mut child), inst)?;
    }
    println!("{}", inst.id);
    eprintln!(
        "started {} on the host (pid {}), output in {}",
        inst.id,
        child.id(),
        ctx.dirs.instance_log(&inst.id).display()
    );
    Ok(0)
}

/// A host agent in this terminal: waits for it and records its end.
fn foreground_process(ctx: &Ctx, inst: &Instance, mut child: std::process::Child) -> Result<u8> {
    // The agent owns the terminal; our own ^C must not kill us first.
    let _ignore = IgnoreInterrupts::new();
    let _attached = crate::features::activity::notify::attached_guard(ctx, &inst.id);
    let status = child
        .wait()
        .map_err(|e| Error::Other(format!("waiting for the agent: {e}")))?;
    let code = status.code().map(i64::from).unwrap_or_else(|| {
        use std::os::unix::process::ExitStatusExt;
        128 + i64::from(status.signal().unwrap_or(0))
    });
    let (status, reason) = end_of(ctx, &inst.id);
    lifecycle::finish(ctx, inst, Some(code), status, Some(reason), None)?;
    Ok(exit_byte(code))
}

/// How a foreground agent's end is recorded: a failed `worktree.setup`
/// (the script said why on the terminal) is an error with that reason.
fn end_of(ctx: &Ctx, id: &InstanceId) -> (Status, String) {
    match crate::features::worktree::setup::failure_reason(&ctx.dirs, id) {
        Some(why) => (Status::Error, why),
        None => (Status::Stopped, "agent exited".to_owned()),
    }
}

/// Whether the launch of `inst` ran `worktree.setup` before its agent.
fn has_setup(ctx: &Ctx, inst: &Instance) -> Result<bool> {
    Ok(inst.worktree.is_some() && !ctx.effective(&inst.id)?.settings.worktree.setup.is_empty())
}

fn exit_byte(code: i64) -> u8 {
    u8::try_from(code).unwrap_or(1)
}

pub fn attach(ctx: &Ctx, id: InstanceId) -> Result<u8> {
    let reg = crate::lifecycle::refresh(ctx)?;
    let inst = reg.get(&id).ok_or_else(|| Error::not_found(&id))?.clone();
    if !inst.status.is_live() {
        return Err(Error::Invalid(format!(
            "{id} is {}; start it with `ai-sessctl restart {id}`",
            inst.status
        )));
    }
    attach_to(ctx, inst, None, None)
}

/// Attaches this terminal to `inst`; `shell` is the interactive shell it
/// runs in (default: our parent, as for `attach`).
fn attach_to(
    ctx: &Ctx,
    inst: Instance,
    engine: Option<DockerEngine>,
    shell: Option<u32>,
) -> Result<u8> {
    if inst.runtime == Some(RuntimeKind::Host) {
        return Err(Error::Invalid(format!(
            "{} runs on the host (pid {}) in the terminal that started it; host instances cannot be re-attached",
            inst.id,
            inst.pid.unwrap_or(0)
        )));
    }
    // Started by another terminal a moment ago: wait for it, then attach.
    let inst = match inst.container_id {
        None if inst.status == Status::Initializing => wait_for_start(ctx, &inst.id)?,
        _ => inst,
    };
    let Some(cid) = inst.container_id.clone() else {
        return Err(Error::Invalid(format!(
            "{} has no container to attach to",
            inst.id
        )));
    };
    // An engine is handed in only for a container started just now: replay
    // its first output (printed before the attach), not an old session's.
    let fresh = engine.is_some();
    let engine = match engine {
        Some(e) => e,
        None => DockerEngine::connect()?,
    };
    let eff = ctx.effective(&inst.id)?;
    let keys_spec = eff.settings.global.detach_keys.clone();
    let keys = parse_detach_keys(&keys_spec)?;
    if inst.status == Status::Paused {
        lifecycle::set_paused(ctx, &inst.id, false)?;
    }
    let _client = AttachedClient::register(ctx, &inst.id, shell);
    eprintln!("attached to {} (detach: {})", inst.id, keys_spec);
    let attached = crate::features::activity::notify::attached_guard(ctx, &inst.id);
    let end = engine.attach(&cid, &keys, fresh)?;
    drop(attached);
    match end {
        AttachEnd::Detached => {
            eprintln!(
                "\r\ndetached from {id}; it keeps running. Back with `ai-sessctl attach {id}` (or run the agent again here).",
                id = inst.id
            );
            Ok(0)
        }
        AttachEnd::Exited(code) => {
            let (status, reason) = end_of(ctx, &inst.id);
            lifecycle::finish(ctx, &inst, Some(code), status, Some(reason), Some(&engine))?;
            Ok(exit_byte(code))
        }
    }
}

/// This terminal in the entry's attached clients, for as long as it is
/// attached (best effort: a client that died is ignored by its pid).
struct AttachedClient<'a> {
    ctx: &'a Ctx,
    id: InstanceId,
    me: ProcRef,
}

impl<'a> AttachedClient<'a> {
    fn register(ctx: &'a Ctx, id: &InstanceId, shell: Option<u32>) -> Self {
        let me = ProcRef::me();
        let shell_pid = shell.unwrap_or_else(|| nix::unistd::getppid().as_raw() as u32);
        let client = Client {
            process: me.clone(),
            shell: Some(ProcRef {
                pid: shell_pid,
                start_time: crate::core::procinfo::start_time(shell_pid),
            }),
        };
        let _ = ctx.store.update(|reg| {
            if let Some(i) = reg.instances.get_mut(id) {
                i.clients.retain(|c| c.process.alive() && c.process != me);
                i.clients.push(client.clone());
            }
            Ok(())
        });
        AttachedClient {
            ctx,
            id: id.clone(),
            me,
        }
    }
}

impl Drop for AttachedClient<'_> {
    fn drop(&mut self) {
        let _ = self.ctx.store.update(|reg| {
            if let Some(i) = reg.instances.get_mut(&self.id) {
                i.clients
                    .retain(|c| c.process.alive() && c.process != self.me);
            }
            Ok(())
        });
    }
}

/// How long a `run` waits for another terminal's start of the same
/// instance (the time a start may take before reconcile calls it dead).
const START_WAIT: Duration = Duration::from_secs(60);

/// Waits until the start under way (by another process) completes; a
/// spinner on a terminal says what it waits for.
fn wait_for_start(ctx: &Ctx, id: &InstanceId) -> Result<Instance> {
    let tty = std::io::stderr().is_terminal();
    let frames = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];
    let t0 = Instant::now();
    let mut n = 0;
    let result = loop {
        let reg = crate::lifecycle::refresh_quietly(ctx)?;
        match reg.get(id) {
            None => break Err(Error::Invalid(format!("{id} was removed while it was starting"))),
            Some(i) if i.status == Status::Initializing => {}
            Some(i) if i.status.is_live() => break Ok(i.clone()),
            Some(i) => {
                break Err(Error::Invalid(format!(
                    "the start of {id} by another terminal did not succeed ({}{}); run it again to start it",
                    i.status,
                    i.status_reason
                        .as_deref()
                        .map(|r| format!(": {r}"))
                        .unwrap_or_default()
                )))
            }
        }
        if t0.elapsed() > START_WAIT {
            break Err(Error::Invalid(format!(
                "{id} is still starting after {}s (started by another terminal); try again",
                START_WAIT.as_secs()
            )));
        }
        if tty {
            eprint!(
                "\r{} waiting for {id} to start (started by another terminal)… ",
                frames[n % frames.len()]
            );
        }
        n += 1;
        std::thread::sleep(Duration::from_millis(100));
    };
    if tty && n > 0 {
        eprint!("\r\x1b[K");
    }
    result
}

/// Ignores SIGINT/SIGQUIT while a foreground agent runs (like a shell does).
struct IgnoreInterrupts;

impl IgnoreInterrupts {
    fn new() -> Self {
        use nix::sys::signal::{signal, SigHandler, Signal};
        // SAFETY: installing SIG_IGN has no handler code to be unsafe in.
        unsafe {
            let _ = signal(Signal::SIGINT, SigHandler::SigIgn);
            let _ = signal(Signal::SIGQUIT, SigHandler::SigIgn);
        }
        IgnoreInterrupts
    }
}

impl Drop for IgnoreInterrupts {
    fn drop(&mut self) {
        use nix::sys::signal::{signal, SigHandler, Signal};
        // SAFETY: restores the default dispositions.
        unsafe {
            let _ = signal(Signal::SIGINT, SigHandler::SigDfl);
            let _ = signal(Signal::SIGQUIT, SigHandler::SigDfl);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(args: &[&str]) -> (Option<Wanted>, Vec<String>) {
        split_worktree(args.iter().map(|a| (*a).to_owned()).collect())
    }

    #[test]
    fn a_leading_w_is_ours_with_or_without_a_name() {
        let named = |n: &str| Some(Wanted::Named(n.to_owned()));
        assert_eq!(
            split(&["-w", "feat", "-p", "x"]),
            (named("feat"), vec!["-p".into(), "x".into()])
        );
        assert_eq!(split(&["--worktree=feat"]), (named("feat"), vec![]));
        assert_eq!(split(&["--worktree", "feat"]), (named("feat"), vec![]));
        // Alone, last or before an option: a new one, its name made up.
        assert_eq!(split(&["-w"]), (Some(Wanted::MadeUp), vec![]));
        assert_eq!(
            split(&["-w", "--model", "opus"]),
            (Some(Wanted::MadeUp), vec!["--model".into(), "opus".into()])
        );
        assert_eq!(split(&["--worktree="]), (Some(Wanted::MadeUp), vec![]));
        // Not first: the agent's.
        assert_eq!(split(&["-p", "-w"]), (None, vec!["-p".into(), "-w".into()]));
    }
}
