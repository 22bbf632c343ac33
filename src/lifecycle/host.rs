//! The host runtime: the real agent binary (found on PATH, never a shell
//! function) in the foreground, tracked by pid + start time.

use super::LaunchSpec;
use crate::core::error::{Error, Result};
use crate::core::procinfo;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Marks our processes so `registry repair` can find them again.
pub const MARKER_ENV: &str = "AI_SESSIONS_INSTANCE";

pub fn find_binary(program: &str) -> Result<PathBuf> {
    which::which(program).map_err(|_| {
        Error::NotFound(format!(
            "agent program {program:?} is not on PATH; install it, or use the docker runtime"
        ))
    })
}

/// Starts the agent. In the foreground it shares the terminal; detached it
/// gets its own session, no stdin and its output in `log`.
fn spawn(spec: &LaunchSpec) -> Result<Child> {
    let mut argv = spec.eff.agent.command.clone();
    argv.extend(spec.args.iter().cloned());
    let argv = crate::features::worktree::setup::wrap(&spec.setup, argv);
    let bin = find_binary(&argv[0])?;
    let mut cmd = Command::new(&bin);
    cmd.args(&argv[1..]).current_dir(&spec.cwd);
    for kv in &spec.env {
        if let Some((k, v)) = kv.split_once('=') {
            cmd.env(k, v);
        }
    }
    cmd.env(MARKER_ENV, spec.id.as_str());
    if let Some(log) = spec.log.as_deref() {
        let out = crate::core::paths::open_private_append(log)?;
        let err = out.try_clone().map_err(|e| Error::io(log, e))?;
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        // SAFETY: setsid is async-signal-safe; it detaches from our terminal.
        unsafe {
            cmd.pre_exec(|| {
                nix::unistd::setsid()
                    .map(|_| ())
                    .map_err(std::io::Error::from)
            });
        }
    }
    cmd.spawn()
        .map_err(|e| Error::Other(format!("cannot start {}: {e}", bin.display())))
}

/// Stops a host agent: SIGTERM, then SIGKILL after `timeout` (or at once).
pub fn stop(pid: u32, start: Option<u64>, timeout: Duration, force: bool) {
    if !procinfo::alive(pid, start) {
        return;
    }
    let p = Pid::from_raw(pid as i32);
    // A detached agent leads its own session: signal its whole group so its
    // children go too. A foreground agent shares the shell's group: only it.
    let target = if nix::unistd::getpgid(Some(p)) == Ok(p) {
        Pid::from_raw(-(pid as i32))
    } else {
        p
    };
    let _ = kill(
        target,
        if force {
            Signal::SIGKILL
        } else {
            Signal::SIGTERM
        },
    );
    let deadline = Instant::now() + timeout;
    while procinfo::alive(pid, start) {
        if Instant::now() >= deadline {
            let _ = kill(target, Signal::SIGKILL);
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn set_paused(pid: u32, start: Option<u64>, paused: bool) -> Result<()> {
    if !procinfo::alive(pid, start) {
        return Err(Error::NotFound(format!("process {pid} is gone")));
    }
    kill(
        Pid::from_raw(pid as i32),
        if paused {
            Signal::SIGSTOP
        } else {
            Signal::SIGCONT
        },
    )
    .map_err(|e| Error::Other(format!("signal {pid}: {e}")))
}

/// Our live host agents: (instance id, pid) from their environment marker.
pub fn scan() -> Vec<(String, u32)> {
    procinfo::own_processes_with_env(MARKER_ENV)
        .into_iter()
        .map(|(pid, id)| (id, pid))
        .collect()
}

/// The host runtime: no engine, the agent is our child process.
pub struct HostRuntime;

impl super::Runtime for HostRuntime {
    fn launch(&self, spec: &LaunchSpec) -> Result<super::Launched> {
        spawn(spec).map(super::Launched::Process)
    }

    fn stop(
        &self,
        inst: &crate::state::registry::Instance,
        timeout: Duration,
        force: bool,
    ) -> Result<Option<i64>> {
        // Without a start time the pid may be anyone's by now (a
        // seed-format entry): never signalled.
        if let (Some(pid), Some(start)) = (inst.pid, inst.pid_start_time) {
            stop(pid, Some(start), timeout, force);
        }
        // Not our child (another process started it): the code is unknown.
        Ok(None)
    }

    fn set_paused(&self, inst: &crate::state::registry::Instance, paused: bool) -> Result<()> {
        match inst.pid {
            Some(pid) => set_paused(pid, inst.pid_start_time, paused),
            None => Err(Error::Invalid(format!("{} has no process", inst.id))),
        }
    }
}
