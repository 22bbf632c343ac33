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
        clone: clone_flag(a.clone, a.mount),
        shell_pid: None,
        resume: true,
    }
}

/// `--clone` / `--mount`: asked for, or left to `project.mode`.
fn clone_flag(clone: bool, mount: bool) -> Option<bool> {
    match (clone, mount) {
        (true, _) => Some(true),
        (_, true) => Some(false),
        _ => None,
    }
}

/// `-w NAME` or `-w` alone (a new worktree, its name made up).
fn wanted(name: Option<String>) -> Wanted {
    match name.filter(|n| !n.is_empty()) {
        Some(n) => Wanted::Named(n),
        None => Wanted::MadeUp,
    }
}

/// Reads the words typed after an agent function's name (`claude WORDS`,
/// handed over as `run claude --shell-pid PID -- WORDS`) as `run` reads its
/// own command line: its options among the leading words, the agent's from
/// the first other word (or after `--`) on. The definition is clap's `run`,
/// so the function takes exactly `run`'s options; -h and --help stay the
/// agent's (`claude --help` asks the agent).
fn function_words(outer: RunArgs) -> std::result::Result<RunArgs, clap::Error> {
    use clap::{CommandFactory, FromArgMatches};
    let mode = outer.mode.as_str().to_owned();
    let cmd = crate::cli::Cli::command()
        .find_subcommand("run")
        .cloned()
        .unwrap_or_else(|| clap::Command::new("run"))
        .disable_help_flag(true)
        .bin_name(&mode)
        .override_usage(format!("{mode} [RUN OPTIONS] [--] [AGENT ARGS]..."));
    let words = [mode.clone(), mode].into_iter().chain(outer.args);
    let inner = RunArgs::from_arg_matches(&cmd.try_get_matches_from(words)?)?;
    if inner.shell_pid.is_some() {
        return Err(clap::Error::raw(
            clap::error::ErrorKind::ArgumentConflict,
            "--shell-pid is passed by the shell function itself; the agent gets it after `--`\n",
        ));
    }
    Ok(RunArgs {
        mode: outer.mode,
        shell_pid: outer.shell_pid,
        runtime: inner.runtime.or(outer.runtime),
        egress: inner.egress.or(outer.egress),
        worktree: inner.worktree.or(outer.worktree),
        clone: inner.clone || outer.clone,
        mount: inner.mount || outer.mount,
        id: inner.id.or(outer.id),
        port: inner.port.or(outer.port),
        detach: inner.detach || outer.detach,
        here: inner.here || outer.here,
        args: inner.args,
    })
}

/// `-w` before an option (`claude -w --model x`) asks for a made-up name:
/// clap hands it the option as its value, which goes back to the agent.
fn option_after_w(mut a: RunArgs) -> RunArgs {
    if let Some(Some(v)) = &a.worktree {
        if v.starts_with('-') {
            a.args.insert(0, v.clone());
            a.worktree = Some(None);
        }
    }
    a
}

pub fn run(ctx: &Ctx, a: RunArgs) -> Result<u8> {
    let a = option_after_w(a);
    let a = if a.shell_pid.is_some() {
        let mode = a.mode.clone();
        match function_words(a) {
            Ok(a) => option_after_w(a),
            Err(e) => {
                // clap's own message, as for `ai-sessctl run`.
                let _ = e.print();
                eprintln!(
                    "\nThe options {mode} takes: `ai-sessctl run --help`; `{mode} -- ARGS` gives every ARG to the agent."
                );
                return Ok(crate::core::error::exit::USAGE as u8);
            }
        }
    } else {
        a
    };
    let RunArgs {
        mode,
        shell_pid,
        runtime,
        egress,
        worktree,
        clone,
        mount,
        id,
        port,
        detach,
        here,
        args,
    } = a;
    // Typed in (or run by a script under) a shell with the integration:
    // that shell owns it, as when started through its agent function.
    let shell_pid = shell_pid.or_else(crate::service::shell::owner_from_env);
    if let Some(pid) = shell_pid {
        // Tells that shell's exit hook to run `shell-exit` (best effort:
        // without it, reconcile applies the policy once the shell is gone).
        let _ = crate::service::shell::mark_owner(&ctx.dirs, pid);
    }
    start(
        ctx,
        StartRequest {
            // `--here`: this directory, named, so taken as it is.
            path: if here {
                Some(std::env::current_dir().map_err(|e| crate::core::error::Error::io(".", e))?)
            } else {
                None
            },
            mode,
            id,
            port,
            runtime,
            egress,
            detach,
            args,
            shell_pid,
            worktree: worktree.map(wanted),
            clone: clone_flag(clone, mount),
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
                eprintln!("started {} {}", inst.id, super::list::started_at(&inst));
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
    } else if let Some(c) = &inst.clone {
        // Clone mode: the box's clone is the worktree.
        eprintln!(
            "{} works in a clone of {} in its box (branch {} there; `ai-sessctl fetch {}` brings it home)",
            inst.id,
            c.repo.display(),
            crate::core::untrusted::printable(&c.branch),
            inst.id
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
    Ok((inst.worktree.is_some() || inst.clone.is_some())
        && !ctx.effective(&inst.id)?.settings.worktree.setup.is_empty())
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
    crate::lifecycle::reachable(&inst)?;
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
                "\r\ndetached from {id}; {fate}. Back with `ai-sessctl attach {id}` (or run the agent again here).",
                id = inst.id,
                fate = fate_after_detach(ctx, &inst.id, shell)
            );
            Ok(0)
        }
        AttachEnd::Exited(code) => {
            crate::lifecycle::setup_outcome::bring_home(ctx, &engine, &inst);
            let (status, reason) = end_of(ctx, &inst.id);
            lifecycle::finish(ctx, &inst, Some(code), status, Some(reason), Some(&engine))?;
            Ok(exit_byte(code))
        }
    }
}

/// What becomes of `id` now that the terminal let go of it: it runs on,
/// unless a shell owns it whose exit stops it (`on_shell_exit = "stop"`):
/// then say so, and how to keep it. `shell`: the shell of this terminal.
fn fate_after_detach(ctx: &Ctx, id: &InstanceId, shell: Option<u32>) -> String {
    let owner = ctx
        .store
        .load()
        .ok()
        .and_then(|r| r.get(id).and_then(|i| i.owner_pid));
    let stops = ctx.effective(id).is_ok_and(|e| {
        e.settings.global.on_shell_exit == crate::state::config::ShellExitPolicy::Stop
    });
    match owner {
        Some(pid) if stops => {
            let whose = if shell.or_else(crate::service::shell::owner_from_env) == Some(pid) {
                "this shell".to_owned()
            } else {
                format!("its shell (pid {pid})")
            };
            format!("it stops when {whose} exits (`ai-sessctl keep {id}` keeps it running)")
        }
        _ => "it keeps running".to_owned(),
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
    use crate::state::config::EgressPolicy;
    use clap::Parser;

    /// `ai-sessctl ARGV…` as clap gives it to `run`.
    fn parsed(argv: &[&str]) -> RunArgs {
        let cli = crate::cli::Cli::try_parse_from([&["ai-sessctl"], argv].concat()).unwrap();
        match cli.command {
            crate::cli::Command::Run(a) => a,
            other => panic!("{other:?}"),
        }
    }

    /// `claude WORDS…` as the shell function hands it over.
    fn typed(words: &[&str]) -> std::result::Result<RunArgs, clap::Error> {
        let argv = [&["run", "claude", "--shell-pid", "42", "--"], words].concat();
        function_words(parsed(&argv))
    }

    #[test]
    fn the_functions_take_runs_options_before_the_agents_words() {
        let a = typed(&["--egress", "allowlist", "--model", "x", "--egress", "open"]).unwrap();
        assert_eq!(a.egress, Some(EgressPolicy::Allowlist));
        assert_eq!(a.args, ["--model", "x", "--egress", "open"]);
        assert_eq!(a.shell_pid, Some(42));
        let a = typed(&[
            "--egress=none",
            "-w",
            "feat",
            "--detach",
            "--id",
            "x-claude",
            "-p",
            "hi",
        ])
        .unwrap();
        assert_eq!(a.egress, Some(EgressPolicy::None));
        assert_eq!(a.worktree, Some(Some("feat".to_owned())));
        assert!(a.detach);
        assert_eq!(a.id.as_ref().map(|i| i.as_str()), Some("x-claude"));
        assert_eq!(a.args, ["-p", "hi"]);
        let a = typed(&["--worktree=feat", "--port", "9100", "--runtime", "docker"]).unwrap();
        assert_eq!(a.worktree, Some(Some("feat".to_owned())));
        assert_eq!(a.port.map(|p| p.get()), Some(9100));
        assert!(a.args.is_empty());
    }

    #[test]
    fn w_alone_last_or_before_an_option_asks_for_a_made_up_name() {
        let a = typed(&["-w"]).unwrap();
        assert_eq!(a.worktree, Some(None));
        let a = option_after_w(typed(&["-w", "--model", "opus"]).unwrap());
        assert_eq!(a.worktree, Some(None));
        assert_eq!(a.args, ["--model", "opus"]);
        let a = typed(&["--worktree"]).unwrap();
        assert_eq!(a.worktree, Some(None));
        assert_eq!(wanted(Some(String::new())), Wanted::MadeUp);
        assert_eq!(wanted(Some("x".into())), Wanted::Named("x".into()));
    }

    #[test]
    fn the_agents_options_and_all_after_double_dash_reach_it_untouched() {
        for words in [
            &["--model", "x", "--resume"][..],
            &["-p", "hi there", "-w", "x"],
            &["--help"],
            &["-h"],
            &["fix it", "--detach"],
            &["-c"],
            &["--model=opus", "--egress", "none"],
        ] {
            let a = typed(words).unwrap();
            assert_eq!(a.args, words, "{words:?}");
            assert!(a.egress.is_none() && a.worktree.is_none() && !a.detach);
        }
        let a = typed(&["--detach", "--", "--egress", "open", "--"]).unwrap();
        assert!(a.detach);
        assert_eq!(a.args, ["--egress", "open", "--"]);
    }

    #[test]
    fn a_bad_value_of_runs_option_is_a_usage_error() {
        let e = typed(&["--egress", "sometimes"]).unwrap_err();
        assert!(e.to_string().contains("sometimes"), "{e}");
        let e = typed(&["--shell-pid", "7"]).unwrap_err();
        assert!(e.to_string().contains("--shell-pid"), "{e}");
    }

    #[test]
    fn ai_sessctl_run_reads_the_same_rule() {
        let a = parsed(&[
            "run",
            "claude",
            "--egress",
            "allowlist",
            "--model",
            "x",
            "--id",
            "y",
        ]);
        assert_eq!(a.egress, Some(EgressPolicy::Allowlist));
        assert!(a.id.is_none());
        assert_eq!(a.args, ["--model", "x", "--id", "y"]);
        let a = parsed(&["run", "claude", "--", "--egress", "allowlist"]);
        assert!(a.egress.is_none());
        assert_eq!(a.args, ["--egress", "allowlist"]);
        // Not through a function: the help is ours.
        let e =
            crate::cli::Cli::try_parse_from(["ai-sessctl", "run", "claude", "--help"]).unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::DisplayHelp);
        let help = e
            .to_string()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        assert!(help.contains("read their words by the same rule"), "{help}");
    }
}
